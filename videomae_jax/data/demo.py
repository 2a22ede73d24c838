"""A small synthetic labeled video data set whose classes differ only in their motion.

  from videomae_jax.data import demo
  shard_dir = demo.build_demo_shards("/tmp/demo")      # videos and shards, made once, for config.data.sources
  demo.make_demo_dataset("/tmp/demo_videos")            # the videos only (`python -m data_prep.make_demo`)

Every video shows 2-4 bright textured objects (striped or checkered disks and squares) on a dark, smooth,
low-contrast background. Shapes, sizes, textures, colors, the background, start positions and speeds (1/48-1/24 of
the frame size per frame) are random per object and video; only the direction of motion depends on the class:
'down', 'left', 'right', 'up'; all objects of a video move the same way. Objects move on a torus (they leave on one
side and come back on the other), so their positions in any single frame are uniform whatever the class: one frame
tells nothing, two frames tell everything. Defaults: 4 classes x 8 videos, 64x64 px, 32 frames at 15 fps, H.264
MP4, a few seconds on 2 cores. Same seed, same bytes.

Why bright objects on a dark, nearly flat background: the pixels that carry the class (the objects) are then also
most of what a masked autoencoder has to reconstruct, so a few minutes of CPU pretraining can learn features that
fine-tuning uses. The first version (one object on a detailed random background, 96x96) did not show that:
fine-tuning from its demo pretraining stayed at chance like training from scratch (25.0% vs 21.9% top-1,
2026-11-23). The README's fine-tuning section has the numbers for this version.

`make_demo_dataset(output_dir)` writes the videos; `build_demo_shards(workdir)` makes the videos and their
shards (if missing; each video becomes a record exactly as `python -m data_prep.build_shards --short_side=0`
would make it) and returns the shard folder for config.data.sources[0].path;
`demo_arguments` reads its keyword arguments from a config's demo_* keys.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from videomae_jax.data import encoding
from videomae_jax.data import shards

CLASSES = ("down", "left", "right", "up")
_DIRECTIONS = {"down": (1, 0), "left": (0, -1), "right": (0, 1), "up": (-1, 0)}  # (dy, dx)
MIN_OBJECTS, MAX_OBJECTS = 2, 4
SPEED = (1 / 48, 1 / 24)      # object speed per frame as a fraction of the frame size (1.3-2.7 px at 64 px)
BACKGROUND_CONTRAST = 20.0    # +- this around the background's dark base color

def _smooth_texture(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
  """Random colors on a coarse grid, bilinearly upsampled: uint8 [height, width, 3]."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  coarse = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A dark, smooth, low-contrast color field: uint8 [height, width, 3], every value below 110."""
  base = rng.integers(0, 70, size=3)
  field = _smooth_texture(rng, height, width, cells=int(rng.integers(2, 5))).astype(np.float32)
  return np.clip(base + (field - 127.5) * (BACKGROUND_CONTRAST / 127.5), 0, 255).astype(np.uint8)


def _object_sprite(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
  """A bright two-color striped or checkered disk or square: (rgb uint8 [size, size, 3], mask bool [size, size])."""
  yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
  if rng.random() < 0.5:
    mask = yy ** 2 + xx ** 2 <= (size / 2) ** 2
  else:
    mask = np.ones((size, size), bool)
  color_a, color_b = rng.integers(150, 256, size=(2, 3))
  period = int(rng.integers(2, 5))
  angle = rng.uniform(0, np.pi)
  stripes = (np.cos(angle) * xx + np.sin(angle) * yy) % (2 * period) < period
  if rng.random() < 0.5:
    stripes ^= (np.cos(angle + np.pi / 2) * xx + np.sin(angle + np.pi / 2) * yy) % (2 * period) < period
  rgb = np.where(stripes[..., None], color_a, color_b).astype(np.uint8)
  return rgb, mask


def render_video(rng: np.random.Generator, direction: str, *, num_frames: int = 32, size: int = 64,
                 width: int | None = None) -> np.ndarray:
  """One demo video: uint8 [num_frames, size, width or size, 3], its objects all moving in `direction`.

  2-4 bright objects (each 1/6-1/4 of `size` across, own texture, start and speed) on a dark background.
  """
  height, width = size, width or size
  dy, dx = _DIRECTIONS[direction]
  frames = np.broadcast_to(_background(rng, height, width), (num_frames, height, width, 3)).copy()
  for _ in range(int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))):
    object_size = int(rng.integers(size // 6, size // 4 + 1))
    sprite, mask = _object_sprite(rng, object_size)
    start = rng.uniform(0, size, size=2)
    speed = rng.uniform(*SPEED) * size
    for t in range(num_frames):
      y = int(round(start[0] + dy * speed * t))
      x = int(round(start[1] + dx * speed * t))
      rows = (y + np.arange(object_size)) % height  # the torus: out on one side, back in on the other
      cols = (x + np.arange(object_size)) % width
      patch = frames[t][np.ix_(rows, cols)]
      frames[t][np.ix_(rows, cols)] = np.where(mask[..., None], sprite, patch)
  return frames


def make_demo_dataset(output_dir: str, *, num_videos_per_class: int = 8, num_frames: int = 32, size: int = 64,
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


# Bump when render_video changes what it draws: demo folders built by another version are then refused, not reused.
RENDERER_VERSION = 2
DEMO_FILE = "demo.json"  # in the demo workdir: how its videos were made


def build_demo_shards(workdir: str, *, num_videos_per_class: int = 8, num_frames: int = 32, size: int = 64,
                      seed: int = 0, video_format: str = "mp4") -> str:
  """Makes the demo videos and their shards under `workdir` unless they exist; returns the shard folder.

  For trainers and tests: `config.data.sources = [dict(name='demo', path=build_demo_shards(dir), ...)]`.
  Existing shards are reused only if `workdir`/demo.json says they were made with the same arguments and renderer;
  otherwise this raises (instead of silently training on other videos, or deleting a folder it did not make).
  """
  wanted = dict(renderer_version=RENDERER_VERSION, num_videos_per_class=num_videos_per_class,
                num_frames=num_frames, size=size, seed=seed, video_format=video_format)
  shard_dir = os.path.join(workdir, "shards")
  demo_file = os.path.join(workdir, DEMO_FILE)
  built = os.path.exists(os.path.join(shard_dir, shards.DESCRIPTION_FILE))
  found = None
  if os.path.exists(demo_file):
    with open(demo_file) as f:
      found = json.load(f)
  if (found is not None and found != wanted) or (found is None and built):
    raise ValueError(
        f"{workdir} holds demo data made {'by an older version of make_demo' if found is None else f'with {found}'}"
        f", not {wanted}. Delete {workdir} to rebuild it, or point the demo at another folder "
        "(config.data.demo_dir / config.eval.demo_dir).")
  if built:
    return shard_dir
  # demo.json first: a build killed midway is then recognized as ours, and finished on the next call (the videos
  # are re-rendered byte for byte; the shards and dataset.json are written atomically, dataset.json last).
  os.makedirs(workdir, exist_ok=True)
  with open(demo_file, "w") as f:
    json.dump(wanted, f, indent=1)
  video_dir = os.path.join(workdir, "videos")
  paths = make_demo_dataset(video_dir, num_videos_per_class=num_videos_per_class, num_frames=num_frames, size=size,
                            seed=seed)
  labels = sorted(CLASSES)
  records = []
  for path in paths:  # sorted: class folders, then files, as a build orders its inputs
    name = os.path.basename(os.path.dirname(path))
    records.append(shards.video_file_record(path, source_name="demo", label=labels.index(name), label_name=name,
                                            record_path=os.path.relpath(path, video_dir), short_side=0,
                                            video_format=video_format))
  shards.write_shard_folder(shard_dir, "demo", records, labels, records_per_shard=64)
  return shard_dir


_DEMO_CONFIG_KEYS = {"demo_videos_per_class": "num_videos_per_class", "demo_seed": "seed",
                     "demo_num_frames": "num_frames", "demo_size": "size", "demo_format": "video_format"}


def demo_arguments(section, default_seed: int) -> dict:
  """build_demo_shards keyword arguments from a config section (config.data or config.eval): its demo_* keys.

  Keys the section lacks keep build_demo_shards' own defaults, except the seed (the test set's differs).
  """
  arguments = {argument: section[key] for key, argument in _DEMO_CONFIG_KEYS.items() if key in section}
  arguments.setdefault("seed", default_seed)
  return arguments
