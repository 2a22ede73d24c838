r"""Input pipeline throughput per worker: pretraining clips vs decoding the same frames alone.

  python -m benchmarks.input_pipeline                       # ~1-2 min on 2 cores, prints a markdown table
  python -m benchmarks.input_pipeline --num_videos=16 --num_clips=64 --rounds=5   # steadier numbers

It makes its own videos (no downloads): synthetic moving-object clips (videomae_jax.data.demo's renderer) at
--height x --width (default 320 x 428, i.e. what build_shards stores for 4:3 sources at --short_side=320),
--frames_per_video frames at 30 fps, then builds MP4 and JPEG shards of them with data_prep.shard_builder.

For each (format, decoder, crops) it measures, in this one process with one thread (= one grain worker):
  decode only   `decoding.decode_clip` of a random 16-frame clip at stride 4 (the frames the pipeline decodes),
                RGB uint8, no crop: the floor any loader pays;
  pipeline      the real grain pipeline (make_dataset(mode='pretrain'), num_workers=0): read + parse the
                record, decode the same kind of clip, 4 repeated MultiScaleCrops, batch. Crops 'device' (the
                pretraining default, config.data.crop_on_device): the clip is decoded into the batch's canvas
                and only the 4 boxes are drawn; the train step cuts and resizes them. Crops 'cv2' / 'numpy': the
                4 crops are resized to 224 on the host with OpenCV or the numpy fallback;
and reports clips per CPU second (decoded clips; samples = 4x), the ratio of per-clip CPU times (pipeline /
decode only; goal <= 1.25), and record bytes per video and per frame. The table header gives the frame size and
length the shards really hold. Times are this process's CPU time
(time.process_time; everything runs in the calling thread), so other load on a shared machine barely moves
them; the two measurements alternate over --rounds rounds and the median round is reported.

With crops on the device the work moves to the accelerator; the last lines print what that costs per clip
here (videomae_jax.device_crops.crop_resize jitted on this machine's default JAX device, wall time), for scale.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_integer("num_videos", 4, "Synthetic videos per shard set.")
flags.DEFINE_integer("frames_per_video", 120, "Frames per synthetic video (30 fps).")
flags.DEFINE_integer("height", 320, "Frame height (the short side).")
flags.DEFINE_integer("width", 428, "Frame width.")
flags.DEFINE_integer("num_clips", 12, "Clips per measurement round.")
flags.DEFINE_integer("rounds", 3, "Alternating measurement rounds (median reported).")
flags.DEFINE_integer("repeated_aug", 4, "Crops per decoded clip.")
flags.DEFINE_integer("num_frames", 16, "Frames per clip.")
flags.DEFINE_integer("stride", 4, "Frame stride.")
flags.DEFINE_integer("image_size", 224, "Output crop size.")
flags.DEFINE_list("formats", ["mp4", "jpeg"], "Shard formats to measure.")
flags.DEFINE_list("decoders", ["pyav", "decord"], "MP4 decoders to measure (decord skipped if missing).")
flags.DEFINE_bool("compare_numpy_resize", True, "With cv2 installed, also time mp4 with the numpy resize.")
flags.DEFINE_bool("compare_host_crops", True, "Also time crops resized on the host (cv2, or numpy without it).")
flags.DEFINE_string("workdir", "", "Where to keep the videos and shards (default: a temporary folder).")
flags.DEFINE_string("input", "", "Measure these video files instead (a folder, read recursively): shards are "
                    "built from them at --short_side, as data_prep.build_shards does.")
flags.DEFINE_integer("short_side", 320, "With --input: shrink the short side to this (build_shards' default).")
FLAGS = flags.FLAGS


def _make_videos(video_dir: str, num_videos: int, num_frames: int, height: int, width: int) -> list[str]:
  from videomae_jax.data import encoding  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import testing  # pylint: disable=import-outside-toplevel
  os.makedirs(video_dir, exist_ok=True)
  paths = []
  for i in range(num_videos):
    path = os.path.join(video_dir, f"video_{i:03d}.mp4")
    if not os.path.exists(path):
      frames = testing.render_realistic(np.random.default_rng(i), num_frames, height, width)
      with open(path, "wb") as f:
        f.write(encoding.encode_mp4(frames, 30, crf=18))
    paths.append(path)
  return paths


def _config(shard_dir: str, *, repeats: int, num_frames: int, stride: int, image_size: int, decoder: str,
            crop_on_device: bool):
  from videomae_jax import default_config  # pylint: disable=import-outside-toplevel
  config = default_config.pretrain_config("B")
  config.batch_size = repeats * 4
  config.model.num_frames = num_frames
  config.model.image_size = image_size
  config.data.sources = [dict(name="bench", path=shard_dir, num_videos=0, stride=stride, weight=1)]
  config.data.repeated_aug = repeats
  config.data.num_workers = 0
  config.data.video_decoder = decoder
  config.data.crop_on_device = crop_on_device
  config.data.worker_buffer_size = 0  # No background thread: time each batch in the calling thread.
  from videomae_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  config.data.transpose_to_canvas = "yes" if pipeline.mixed_orientation(config) else "no"  # as resolve.py does
  return config


def _decode_only_round(records, num_clips, num_frames, stride, decoder, rng) -> float:
  from videomae_jax.data import decoding, temporal  # pylint: disable=import-outside-toplevel
  start = time.process_time()
  for _ in range(num_clips):
    record = records[int(rng.integers(len(records)))]
    indices = temporal.random_clip_indices(record["num_frames"], num_frames, stride, rng)
    decoding.decode_clip(record, indices, decoder)
  return (time.process_time() - start) / num_clips


def _pipeline_round(iterator, num_clips, clips_per_batch) -> float:
  num_batches = max(1, num_clips // clips_per_batch)
  start = time.process_time()
  for _ in range(num_batches):
    next(iterator)
  return (time.process_time() - start) / (num_batches * clips_per_batch)


def _force_resize_backend(name: str, cv2) -> None:
  """Makes videomae_jax.data.transforms resize with 'numpy', or else with `cv2` (None: not installed); this
  process only (the pipeline runs with num_workers=0)."""
  from videomae_jax.data import transforms  # pylint: disable=import-outside-toplevel
  transforms.cv2 = None if name == "numpy" else cv2


def run(workdir: str) -> list[dict]:
  from data_prep import shard_builder  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import decoding, pipeline, shards, transforms  # pylint: disable=import-outside-toplevel
  cv2 = transforms.cv2
  if FLAGS.input:
    video_dir, short_side = FLAGS.input, FLAGS.short_side
  else:
    video_dir, short_side = os.path.join(workdir, "videos"), FLAGS.height
    print(f"Making {FLAGS.num_videos} videos of {FLAGS.frames_per_video} frames at {FLAGS.height}x{FLAGS.width} "
          f"in {video_dir} ...", flush=True)
    _make_videos(video_dir, FLAGS.num_videos, FLAGS.frames_per_video, FLAGS.height, FLAGS.width)
  rows = []
  for video_format in FLAGS.formats:
    shard_dir = os.path.join(workdir, f"shards_{video_format}")
    shard_builder.build_shards(video_dir, shard_dir, "bench", num_workers=0, short_side=short_side,
                               video_format=video_format, progress=False)
    records = shards.read_all_records(shard_dir)
    record_bytes = [len(shards.serialize_record(r)) for r in records]
    sizes = sorted({f"{r['height']}x{r['width']}" for r in records})
    lengths = sorted({int(r["num_frames"]) for r in records})
    video = f"{'/'.join(sizes)}, {'/'.join(map(str, lengths))} fr"
    canvas = "x".join(map(str, pipeline.crop_canvas(_config(
        shard_dir, repeats=1, num_frames=1, stride=1, image_size=1, decoder="auto", crop_on_device=True))))
    decoders = FLAGS.decoders if video_format == "mp4" else ["pil"]
    _force_resize_backend("auto", cv2)
    combos = [(decoder, "device") for decoder in decoders]
    if FLAGS.compare_host_crops:
      combos += [(decoders[0], transforms.resize_backend())]
      if video_format == "mp4" and transforms.resize_backend() == "cv2" and FLAGS.compare_numpy_resize:
        combos.append((decoders[0], "numpy"))
    for decoder, resize in combos:
      if decoder == "decord" and not decoding.have_decord():
        continue
      _force_resize_backend("auto" if resize == "device" else resize, cv2)
      backend = "auto" if decoder == "pil" else decoder
      config = _config(shard_dir, repeats=FLAGS.repeated_aug, num_frames=FLAGS.num_frames, stride=FLAGS.stride,
                       image_size=FLAGS.image_size, decoder=backend, crop_on_device=resize == "device")
      iterator = iter(pipeline.make_dataset(config, mode="pretrain", process_index=0, process_count=1, seed=0))
      next(iterator)  # Warm up (imports, first open).
      rng = np.random.default_rng(0)
      _decode_only_round(records, 2, FLAGS.num_frames, FLAGS.stride, backend, rng)
      decode_times, pipeline_times = [], []
      for _ in range(FLAGS.rounds):
        decode_times.append(_decode_only_round(records, FLAGS.num_clips, FLAGS.num_frames, FLAGS.stride, backend,
                                               rng))
        pipeline_times.append(_pipeline_round(iterator, FLAGS.num_clips, config.batch_size // FLAGS.repeated_aug))
      decode_s, pipeline_s = statistics.median(decode_times), statistics.median(pipeline_times)
      rows.append(dict(format=video_format, decoder=decoder,
                       resize=f"device ({canvas} canvas)" if resize == "device" else resize, video=video,
                       kb_per_video=np.mean(record_bytes) / 1e3,
                       kb_per_frame=np.sum(record_bytes) / sum(r["num_frames"] for r in records) / 1e3,
                       decode_clips_s=1 / decode_s, pipeline_clips_s=1 / pipeline_s, ratio=pipeline_s / decode_s))
      print(f"  {video_format}/{decoder}/{resize}: decode {1 / decode_s:.1f} clips/s, "
            f"pipeline {1 / pipeline_s:.1f} clips/s, ratio {pipeline_s / decode_s:.2f}", flush=True)
  return rows


def device_crop_cost(num_clips: int = 4) -> tuple[str, float]:
  """(device, ms per clip) of cutting + resizing R crops of a clip on the default JAX device (jitted)."""
  import jax  # pylint: disable=import-outside-toplevel
  from videomae_jax import device_crops  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import transforms  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  canvas = rng.integers(0, 256, (num_clips, FLAGS.num_frames, FLAGS.height, FLAGS.width, 3), dtype=np.uint8)
  crops = np.array([[(*transforms.multiscale_crop_box(FLAGS.height, FLAGS.width, rng, output_size=FLAGS.image_size),
                      0, 0) for _ in range(FLAGS.repeated_aug)] for _ in range(num_clips)], np.int32)
  canvas, crops = jax.device_put(canvas), jax.device_put(crops)
  fn = jax.jit(device_crops.crop_resize, static_argnums=2)
  fn(canvas, crops, FLAGS.image_size).block_until_ready()
  times = []
  for _ in range(5):
    start = time.perf_counter()
    fn(canvas, crops, FLAGS.image_size).block_until_ready()
    times.append(time.perf_counter() - start)
  return str(jax.devices()[0].device_kind), statistics.median(times) / num_clips * 1e3


def table(rows: Sequence[dict]) -> str:
  videos = " + ".join(dict.fromkeys(r["video"] for r in rows))  # What the shards hold: size, frames per video.
  lines = [
      f"| shards | decoder | crops | KB / video ({videos}) | KB / frame | decode only (clips / CPU s) | "
      f"pipeline, {FLAGS.repeated_aug} crops (clips / CPU s) | samples / CPU s | pipeline / decode |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(f"| {r['format']} | {r['decoder']} | {r['resize']} | {r['kb_per_video']:.0f} | "
                 f"{r['kb_per_frame']:.1f} | {r['decode_clips_s']:.1f} | {r['pipeline_clips_s']:.1f} | "
                 f"{r['pipeline_clips_s'] * FLAGS.repeated_aug:.1f} | {r['ratio']:.2f}x |")
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  del argv
  if FLAGS.workdir:
    rows = run(FLAGS.workdir)
  else:
    with tempfile.TemporaryDirectory() as workdir:
      rows = run(workdir)
  print()
  print(f"Per worker (1 process, 1 thread, CPU time); {FLAGS.num_frames} frames at stride {FLAGS.stride} from "
        f"{rows[0]['video'] if rows else 'no'} videos -> {FLAGS.repeated_aug} x {FLAGS.image_size}^2 crops; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
  print()
  print(table(rows))
  if any(r["resize"].startswith("device") for r in rows):
    device, ms = device_crop_cost()
    print()
    print(f"Crops on the device cost {ms:.1f} ms per clip ({FLAGS.repeated_aug} x {FLAGS.num_frames} frames of "
          f"{FLAGS.image_size}^2, jitted crop_resize, wall time) on this machine's JAX device: {device}.")


if __name__ == "__main__":
  app.run(main)
