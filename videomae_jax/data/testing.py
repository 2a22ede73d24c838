"""Tiny video files for tests: good ones, and each kind of bad file the shard builder must survive."""
from __future__ import annotations

import fractions
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


def write_video(path: str, frames: np.ndarray, *, fps: int = 10, times: list[float] | None = None,
                rotation: int = 0, codec: str = "libx264", pix_fmt: str = "yuv420p", container_format: str = "",
                options: dict[str, str] | None = None) -> None:
  """Writes RGB frames with PyAV in the container the file name (or `container_format`) names: timestamps
  `times` in seconds (variable frame rate) instead of 1 / fps apart, and `rotation` degrees counter-clockwise
  in the display matrix (what phones write; -90 is the old `rotate=90` tag)."""
  import av  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with av.open(path, "w", format=container_format or None, options=options or {}) as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = pix_fmt
    if times is not None:
      stream.codec_context.time_base = fractions.Fraction(1, 1000)
    if rotation:
      stream.set_display_rotation(rotation)
    for index, frame in enumerate(frames):
      video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
      if times is not None:
        video_frame.pts, video_frame.time_base = round(times[index] * 1000), fractions.Fraction(1, 1000)
      for packet in stream.encode(video_frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


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


def render_realistic(rng: np.random.Generator, num_frames: int, height: int, width: int) -> np.ndarray:
  """A moving textured object over a detailed background that the camera pans across, with sensor noise.

  Decoding cost grows with the bit rate, so the test videos should compress about like real footage: at
  320p this gives roughly 4-8 KB per frame in our shards (Kinetics at 320p is of that order), where the
  smooth demo videos give ~1 KB.
  """
  from videomae_jax.data import demo  # pylint: disable=import-outside-toplevel
  pan = rng.uniform(-2, 2, size=2)
  margin = int(np.ceil(np.abs(pan).max() * num_frames)) + 1
  texture = demo._smooth_texture  # pylint: disable=protected-access
  coarse = texture(rng, height + 2 * margin, width + 2 * margin, cells=48)
  detail = rng.normal(0, 12, size=coarse.shape[:2] + (1,))
  background = np.clip(coarse + detail, 0, 255)
  foreground = demo.render_video(rng, "right", num_frames=num_frames, size=height, width=width)
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    y, x = (margin + np.round(pan * t)).astype(int)
    frame = background[y:y + height, x:x + width].copy()
    moving = foreground[t].min(axis=-1, keepdims=True) >= 128  # The demo's objects: bright; its background: dark.
    frame = np.where(moving, foreground[t], frame) + rng.normal(0, 3, size=(height, width, 1))
    frames[t] = np.clip(frame, 0, 255)
  return frames
