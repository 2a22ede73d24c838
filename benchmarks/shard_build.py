r"""Shard build cost: videos per CPU second, local worker pool vs Apache Beam's DirectRunner, on the same input.

  python -m benchmarks.shard_build --workdir=/tmp/shard_bench --num_videos=16 --seconds=10   # ~3-5 min, 2 cores
  python -m benchmarks.shard_build --workdir=/tmp/long --num_videos=1 --seconds=120 --make_only   # memory runs

It makes its own input (no downloads): --num_videos H.264 MP4s of --seconds at --height x --width and --fps,
Kinetics-like in bit rate (videomae_jax.data.testing.render_realistic: a textured object over a panning detailed
background, fresh sensor noise on every frame; rendered as they are encoded, so a long video costs no memory).
Then it runs `python -m data_prep.build_shards` on them once per runner, each as a child process:

  local   --num_workers=N (the worker pool)
  beam    --runner=beam --beam_pipeline_options=runner=DirectRunner,direct_num_workers=N,
          direct_running_mode=multi_processing

and reports per runner the wall time, the CPU time of the whole process tree (user + system of every finished
descendant: resource.getrusage(RUSAGE_CHILDREN), what /usr/bin/time reports), videos per CPU second and whether
the shards are byte-identical to the local build's. CPU time is what is compared: on a shared machine wall time
moves with other load, CPU time much less. Everything else is build_shards' defaults (--short_side=320, mp4).
"""
from __future__ import annotations

import glob
import os
import resource
import subprocess
import sys
import time
from typing import Iterator, Sequence

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_string("workdir", None, "Folder for the videos and the shards (videos are kept and reused).")
flags.DEFINE_integer("num_videos", 16, "Synthetic input videos.")
flags.DEFINE_float("seconds", 10.0, "Length of each video.")
flags.DEFINE_integer("height", 360, "Frame height of the input videos.")
flags.DEFINE_integer("width", 640, "Frame width of the input videos.")
flags.DEFINE_integer("fps", 30, "Frame rate of the input videos.")
flags.DEFINE_integer("num_workers", 2, "Worker processes of each runner (local pool / DirectRunner workers).")
flags.DEFINE_bool("make_only", False, "Only make the input videos (e.g. for /usr/bin/time -v runs).")
FLAGS = flags.FLAGS

_LOOP_FRAMES = 64  # Rendered once; the pan, the noise and the encoder make every frame new.


def synthetic_frames(seed: int, num_frames: int, height: int, width: int) -> Iterator[np.ndarray]:
  """Frames of a Kinetics-like clip, one at a time: a rendered loop, panned and with fresh noise per frame."""
  from videomae_jax.data import testing  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  loop = testing.render_realistic(rng, _LOOP_FRAMES, height + 32, width + 32)
  for t in range(num_frames):
    phase = t % (2 * _LOOP_FRAMES)  # Forwards, then backwards: no jump where the loop restarts.
    index = phase if phase < _LOOP_FRAMES else 2 * _LOOP_FRAMES - 1 - phase
    y, x = (t // 7) % 32, (t // 3) % 32
    frame = loop[index, y:y + height, x:x + width].astype(np.int16) + rng.integers(-3, 4, (height, width, 1))
    yield np.clip(frame, 0, 255).astype(np.uint8)


def make_videos(folder: str, num_videos: int, seconds: float, height: int, width: int, fps: int) -> list[str]:
  from videomae_jax.data import encoding  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i in range(num_videos):
    path = os.path.join(folder, f"video_{i:03d}.mp4")
    if not os.path.exists(path):
      data = encoding.encode_mp4(synthetic_frames(i, round(seconds * fps), height, width), fps, crf=20)
      with open(path + ".tmp", "wb") as f:
        f.write(data)
      os.replace(path + ".tmp", path)
    paths.append(path)
  return paths


def _children_cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def run_build(videos: str, output_dir: str, extra: Sequence[str]) -> tuple[float, float]:
  """(wall s, CPU s of the process tree) of one `python -m data_prep.build_shards` run."""
  command = [sys.executable, "-m", "data_prep.build_shards", f"--input={videos}", f"--output_dir={output_dir}",
             "--source_name=bench", *extra]
  cpu, start = _children_cpu_s(), time.monotonic()
  subprocess.run(command, check=True, capture_output=True, text=True)
  return time.monotonic() - start, _children_cpu_s() - cpu


def _shard_bytes(folder: str) -> dict[str, bytes]:
  return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(f"{folder}/*.array_record"))}


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required.")
  videos = os.path.join(FLAGS.workdir, f"videos_{FLAGS.num_videos}x{FLAGS.seconds:g}s_{FLAGS.height}p")
  paths = make_videos(videos, FLAGS.num_videos, FLAGS.seconds, FLAGS.height, FLAGS.width, FLAGS.fps)
  size_mb = sum(os.path.getsize(p) for p in paths) / 1e6
  print(f"{len(paths)} videos, {FLAGS.seconds:g} s at {FLAGS.height}x{FLAGS.width} {FLAGS.fps} fps, "
        f"{size_mb:.1f} MB: {videos}")
  if FLAGS.make_only:
    return
  n = FLAGS.num_workers
  runners = {"local": [f"--num_workers={n}"],
             "beam": ["--runner=beam", "--beam_pipeline_options=runner=DirectRunner,direct_num_workers="
                      f"{n},direct_running_mode=multi_processing"]}
  print(f"| runner | workers | videos | wall s | CPU s | videos / CPU s | CPU s / video | shards equal local |")
  print("|---|---|---|---|---|---|---|---|")
  reference = None
  for name, extra in runners.items():
    output_dir = os.path.join(FLAGS.workdir, f"shards_{name}")
    subprocess.run(["rm", "-rf", output_dir], check=True)  # A fresh build, not a resumed one.
    wall, cpu = run_build(videos, output_dir, extra)
    shards = _shard_bytes(output_dir)
    reference = shards if reference is None else reference
    print(f"| {name} | {n} | {len(paths)} | {wall:.1f} | {cpu:.1f} | {len(paths) / cpu:.3f} | "
          f"{cpu / len(paths):.2f} | {'yes' if shards == reference else 'NO'} |")


if __name__ == "__main__":
  app.run(main)
