"""Tiny video files for tests: good ones, and each kind of bad file the shard builder must survive."""
from __future__ import annotations

import os

import numpy as np

from videomae_jax.data import encoding


def moving_square_frames(num_frames: int = 12, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
  """uint8 [num_frames, height, width, 3]: a bright square moving right over a blocky random background."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, 120, size=(-(-height // 8), -(-width // 8), 3), dtype=np.uint8)
  background = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]
  frames = np.repeat(background[None], num_frames, axis=0)
  for t in range(num_frames):
    x = (2 * t + 3 * seed) % (width - 8)
    frames[t, 8:16, x:x + 8] = (255, 200, 50)
  return frames


def write_good_video(path: str, *, num_frames: int = 12, height: int = 32, width: int = 48, seed: int = 0,
                     fps: int = 10) -> bytes:
  """Writes an H.264 MP4 of moving_square_frames; returns its bytes."""
  data = encoding.encode_mp4(moving_square_frames(num_frames, height, width, seed), fps, gop_size=4)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return data


def write_bad_videos(folder: str) -> dict[str, str]:
  """Writes one file of each bad kind into `folder`; returns {file name: expected reason keyword}."""
  os.makedirs(folder, exist_ok=True)
  good = encoding.encode_mp4(moving_square_frames(12, 32, 48, seed=7), 10, gop_size=4)
  with open(os.path.join(folder, "truncated.mp4"), "wb") as f:
    f.write(good[:len(good) // 2])
  open(os.path.join(folder, "zero_bytes.mp4"), "wb").close()
  with open(os.path.join(folder, "text.mp4"), "w", encoding="utf-8") as f:
    f.write("this is not a video\n" * 20)
  with open(os.path.join(folder, "one_frame.mp4"), "wb") as f:
    f.write(encoding.encode_mp4(moving_square_frames(1, 32, 48), 10))
  return {"truncated.mp4": "cannot open", "zero_bytes.mp4": "empty", "text.mp4": "cannot open",
          "one_frame.mp4": "too short"}
