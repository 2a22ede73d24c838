"""`python -m videomae_jax.tools.extract_features` on real MP4s: shapes, equality with the model's pooled output,
restart after a kill, and memory that does not grow with the video's length."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import av
import cv2
import jax
import numpy as np
import pytest

from videomae_jax import default_config, features
from videomae_jax.convert import params_io
from videomae_jax.data import encoding
from videomae_jax.models import VideoClassifier
from videomae_jax.tasks.classify import ClassificationTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(variant="custom", width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, num_frames=4,
            image_size=32, compute_dtype="float32", num_classes=3)


def moving_frames(num_frames, height, width, seed):
  """A textured square drifting over a noisy background: uint8 [num_frames, height, width, 3]."""
  rng = np.random.default_rng(seed)
  background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
  sprite = rng.integers(130, 256, (height // 4, height // 4, 3), dtype=np.uint8)
  frames = np.broadcast_to(background, (num_frames, height, width, 3)).copy()
  for t in range(num_frames):
    y, x = (t * 3) % (height - sprite.shape[0]), (t * 5) % (width - sprite.shape[1])
    frames[t, y:y + sprite.shape[0], x:x + sprite.shape[1]] = sprite
  return frames


def write_video(path, seconds, fps=10, height=240, width=320, seed=0):
  with open(path, "wb") as f:
    f.write(encoding.encode_mp4(moving_frames(int(seconds * fps), height, width, seed), fps, preset="ultrafast"))
  return path


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory):
  config = default_config.finetune_config("custom")
  config.model.update(TINY)
  config.batch_size = 2
  task = ClassificationTask.from_config(config)
  params = jax.tree.map(np.asarray, jax.jit(task.init_params)(jax.random.key(0)))
  params = jax.tree.map(lambda p: p + np.random.default_rng(1).normal(0, 0.05, p.shape).astype(p.dtype), params)
  folder = str(tmp_path_factory.mktemp("export") / "classifier")
  return params_io.save_params_export(folder, params, "classifier", config.model), params


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("videos")
  os.makedirs(folder / "long")
  return {"short": write_video(str(folder / "short.mp4"), seconds=20, seed=1),
          "long": write_video(str(folder / "long" / "minute.mp4"), seconds=62, seed=2),
          "folder": str(folder)}


def run_tool(*flags, timeout=600):
  result = subprocess.run([sys.executable, "-m", "videomae_jax.tools.extract_features", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_shapes_and_equality_with_the_models_pooled_output(tmp_path, classifier_export, videos):
  export, params = classifier_export
  out = tmp_path / "features"
  summary = run_tool(f"--params={export}", f"--input={videos['folder']}", f"--output_dir={out}", "--window_stride=4",
                     "--normalization=unit")
  assert summary["extracted"] == 2 and summary["failed"] == 0
  index = [json.loads(line) for line in open(out / "index.jsonl")]
  assert [entry["video"] for entry in index] == ["long/minute", "short"]
  # 62 s at 10 fps = 620 frames; windows of 4 frames every 4: starts 0, 4, ..., 616.
  assert index[0]["num_frames"] == 620 and index[0]["num_windows"] == len(range(0, 620 - 4 + 1, 4)) == 155
  long_features = np.load(out / "long" / "minute.npy")
  assert long_features.shape == (155, 32) and long_features.dtype == np.float32
  # The same windows by hand: PyAV frames, OpenCV resize to 32 x 32, [0, 1], the classifier's pooled output.
  with av.open(videos["short"]) as container:
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
  squashed = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_LINEAR) for f in frames])
  windows = np.stack([squashed[s:s + 4] for s in range(0, len(frames) - 3, 4)]).astype(np.float32) / 255.0
  spec = params_io.load_params(export).spec()
  pooled = VideoClassifier(dataclasses.replace(spec, num_classes=0)).apply(
      {"params": {k: v for k, v in params.items() if k != "head"}}, windows)
  np.testing.assert_allclose(np.load(out / "short.npy"), np.asarray(pooled), rtol=1e-4, atol=1e-5)
  # ImageNet normalization (the default) gives other features for the same windows.
  other = features.FeatureModel.from_loaded(params_io.load_params(export))
  assert not np.allclose(np.asarray(other(other.params, (windows * 255).round().astype(np.uint8))), pooled)


def test_killed_midway_then_rerun_finishes_without_recomputing(tmp_path, classifier_export):
  export, _ = classifier_export
  folder = tmp_path / "videos"
  os.makedirs(folder)
  for i in range(8):
    write_video(str(folder / f"clip_{i}.mp4"), seconds=8, seed=10 + i)
  out = tmp_path / "features"
  command = [sys.executable, "-m", "videomae_jax.tools.extract_features", f"--params={export}",
             f"--input={folder}", f"--output_dir={out}", "--window_stride=2", "--batch_size=2"]
  process = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  start = time.time()
  while not (out.exists() and any(p.suffix == ".npy" for p in out.iterdir())):
    assert process.poll() is None and time.time() - start < 300
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  done_before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".npy"}
  assert 1 <= len(done_before) < 8
  summary = run_tool(*command[3:])
  assert summary["skipped"] == len(done_before) and summary["extracted"] == 8 - len(done_before)
  assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in done_before.items())
  assert sorted(p.name for p in out.iterdir() if p.suffix == ".npy") == [f"clip_{i}.npy" for i in range(8)]
  assert not [p for p in out.iterdir() if ".tmp-" in p.name]
  assert len(open(out / "index.jsonl").readlines()) == 8


def test_peak_memory_does_not_grow_with_the_video_length(tmp_path, classifier_export, videos):
  export, _ = classifier_export
  peaks = {}
  for name in ("short", "long"):
    folder = tmp_path / name
    os.makedirs(folder)
    os.symlink(videos[name], folder / "video.mp4")
    peaks[name] = run_tool(f"--params={export}", f"--input={folder}", f"--output_dir={tmp_path / (name + '_out')}",
                           "--window_stride=4")["peak_rss_mb"]
  # 20 s and 62 s of 320 x 240 frames (46 and 143 MB decoded): the peak is the same within noise.
  assert peaks["long"] < peaks["short"] + 25, peaks
