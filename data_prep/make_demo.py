r"""Makes a small synthetic labeled video data set whose classes differ only in their motion.

  python -m data_prep.make_demo --output_dir=/tmp/demo_videos [--num_videos_per_class=8] [--seed=0]
  python -m data_prep.build_shards --input=/tmp/demo_videos --output_dir=/tmp/demo_shards --source_name=demo

Every video shows one textured object on a textured static background. The object's shape, size, texture and
colors, the background, the start position and the speed are random per video; only the direction of motion
depends on the class: 'down', 'left', 'right', 'up'. The object moves on a torus (it leaves on one side and
comes back on the other), so its position in any single frame is uniform whatever the class: one frame tells
nothing, two frames tell everything. Defaults: 4 classes x 8 videos, 96x96 px, 32 frames at 15 fps, H.264 MP4,
about 0.5 MB in all, a few seconds on 2 cores. Same seed, same bytes.

In Python: `make_demo_dataset(output_dir)` writes the videos; `build_demo_shards(workdir)` makes the videos and
their shards (if missing) and returns the shard folder for config.data.sources[0].path.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from videomae_jax.data import encoding

CLASSES = ("down", "left", "right", "up")
_DIRECTIONS = {"down": (1, 0), "left": (0, -1), "right": (0, 1), "up": (-1, 0)}  # (dy, dx)

if __name__ == "__main__":
  from absl import flags
  flags.DEFINE_string("output_dir", None, "Folder for the class sub-folders of MP4 files.")
  flags.DEFINE_integer("num_videos_per_class", 8, "Videos per class.")
  flags.DEFINE_integer("num_frames", 32, "Frames per video.")
  flags.DEFINE_integer("size", 96, "Frame height and width in pixels (even).")
  flags.DEFINE_integer("seed", 0, "Random seed.")


def _smooth_texture(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
  """Random colors on a coarse grid, bilinearly upsampled: uint8 [height, width, 3]."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  coarse = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def _object_sprite(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
  """A textured disk or square: (rgb uint8 [size, size, 3], mask bool [size, size])."""
  yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
  if rng.random() < 0.5:
    mask = yy ** 2 + xx ** 2 <= (size / 2) ** 2
  else:
    mask = np.ones((size, size), bool)
  color_a, color_b = rng.integers(0, 256, size=(2, 3))
  period = int(rng.integers(3, 7))
  angle = rng.uniform(0, np.pi)
  stripes = (np.cos(angle) * xx + np.sin(angle) * yy) % (2 * period) < period
  if rng.random() < 0.5:
    stripes ^= (np.cos(angle + np.pi / 2) * xx + np.sin(angle + np.pi / 2) * yy) % (2 * period) < period
  rgb = np.where(stripes[..., None], color_a, color_b).astype(np.uint8)
  return rgb, mask


def render_video(rng: np.random.Generator, direction: str, *, num_frames: int = 32, size: int = 96,
                 width: int | None = None, cells: int | None = None) -> np.ndarray:
  """One demo video: uint8 [num_frames, size, width or size, 3] with the object moving in `direction`.

  `cells` sets the background's texture grid (default 3-6 cells: smooth); more cells, more detail.
  """
  height, width = size, width or size
  background = _smooth_texture(rng, height, width, cells=cells or int(rng.integers(3, 7)))
  object_size = int(rng.integers(size // 5, size // 3))
  sprite, mask = _object_sprite(rng, object_size)
  layer = np.zeros((height, width, 3), np.uint8)
  layer_mask = np.zeros((height, width), bool)
  layer[:object_size, :object_size] = sprite
  layer_mask[:object_size, :object_size] = mask
  start = rng.uniform(0, size, size=2)
  speed = rng.uniform(1.0, 2.5) * size / 96
  dy, dx = _DIRECTIONS[direction]
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    y = int(round(start[0] + dy * speed * t)) % height
    x = int(round(start[1] + dx * speed * t)) % width
    moved_mask = np.roll(layer_mask, (y, x), axis=(0, 1))
    frames[t] = np.where(moved_mask[..., None], np.roll(layer, (y, x), axis=(0, 1)), background)
  return frames


def make_demo_dataset(output_dir: str, *, num_videos_per_class: int = 8, num_frames: int = 32, size: int = 96,
                      fps: int = 15, seed: int = 0, classes: Sequence[str] = CLASSES) -> list[str]:
  """Writes `output_dir`/{class}/{class}_{i:03d}.mp4 for every class; returns the file paths (sorted).

  Deterministic in `seed`; rewrites files that exist.
  """
  if size % 2:
    raise ValueError(f"size must be even (H.264 yuv420p), got {size}")
  paths = []
  for class_index, name in enumerate(classes):
    if name not in _DIRECTIONS:
      raise ValueError(f"Unknown demo class {name!r}: use some of {CLASSES}")
    os.makedirs(os.path.join(output_dir, name), exist_ok=True)
    for i in range(num_videos_per_class):
      rng = np.random.default_rng(np.random.SeedSequence([seed, class_index, i]))
      frames = render_video(rng, name, num_frames=num_frames, size=size)
      path = os.path.join(output_dir, name, f"{name}_{i:03d}.mp4")
      data = encoding.encode_mp4(frames, fps, crf=20, gop_size=num_frames, preset="medium")
      with open(path, "wb") as f:
        f.write(data)
      paths.append(path)
  return sorted(paths)


def build_demo_shards(workdir: str, *, num_videos_per_class: int = 8, num_frames: int = 32, size: int = 96,
                      seed: int = 0, num_workers: int = 0, video_format: str = "mp4") -> str:
  """Makes the demo videos and their shards under `workdir` unless dataset.json exists; returns the shard folder.

  For trainers and tests: `config.data.sources = [dict(name='demo', path=build_demo_shards(dir), ...)]`.
  `num_workers=0` decodes in this process (no worker start-up cost; fine for these tiny files).
  """
  from data_prep import build_shards  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import shards  # pylint: disable=import-outside-toplevel
  shard_dir = os.path.join(workdir, "shards")
  if os.path.exists(os.path.join(shard_dir, shards.DESCRIPTION_FILE)):
    return shard_dir
  video_dir = os.path.join(workdir, "videos")
  make_demo_dataset(video_dir, num_videos_per_class=num_videos_per_class, num_frames=num_frames, size=size,
                    seed=seed)
  build_shards.build_shards(video_dir, shard_dir, "demo", num_workers=num_workers, short_side=0,
                            video_format=video_format, videos_per_shard=64, progress=False)
  return shard_dir


def main(argv: Sequence[str]) -> None:
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel,redefined-outer-name,reimported
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  options = flags.FLAGS
  if not options.output_dir:
    raise app.UsageError("--output_dir is required.")
  paths = make_demo_dataset(options.output_dir, num_videos_per_class=options.num_videos_per_class,
                            num_frames=options.num_frames, size=options.size, seed=options.seed)
  total = sum(os.path.getsize(p) for p in paths)
  print(f"Wrote {len(paths)} videos ({total / 1e3:.0f} kB) in {len(CLASSES)} classes to {options.output_dir}")


if __name__ == "__main__":
  from absl import app
  app.run(main)
