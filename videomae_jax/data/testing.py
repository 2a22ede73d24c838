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
