"""Which frames each test clip reads (numpy; shared by evaluation and any test-time data path).

Kinetics-style ("uniform"), official VideoMAE V2 test mode: `num_clips` windows of num_frames * stride frames at
evenly spaced starts int(c * (F - span) / (num_clips - 1)) (1 clip: centred); a window running past the end repeats
the last frame. SSv2-style ("segment", TSN): the video is cut into num_frames equal segments of length
tick = F / num_frames; clip c takes frame int(tick * x + tick * c / num_clips) of segment x (2 clips: the segment
starts and the segment midpoints).
"""
from __future__ import annotations

from typing import List

import numpy as np

SAMPLING_MODES = ("uniform", "segment")


def uniform_clip_indices(num_video_frames: int, num_frames: int, stride: int, num_clips: int) -> List[np.ndarray]:
  """[num_clips] int arrays of num_frames frame indices each, evenly spread windows (see module docstring)."""
  if num_video_frames <= 0:
    raise ValueError("the video has no frames.")
  span = num_frames * stride
  room = max(num_video_frames - span, 0)
  if num_clips == 1:
    starts = [room // 2]
  else:
    starts = [int(c * room / (num_clips - 1)) for c in range(num_clips)]
  return [np.minimum(start + np.arange(num_frames) * stride, num_video_frames - 1) for start in starts]


def segment_clip_indices(num_video_frames: int, num_frames: int, num_clips: int) -> List[np.ndarray]:
  """[num_clips] int arrays: TSN-style segment sampling with clip c offset by c / num_clips of a segment."""
  if num_video_frames <= 0:
    raise ValueError("the video has no frames.")
  tick = num_video_frames / num_frames
  return [np.minimum((tick * np.arange(num_frames) + tick * c / num_clips).astype(np.int64), num_video_frames - 1)
          for c in range(num_clips)]


def clip_indices(mode: str, num_video_frames: int, num_frames: int, stride: int, num_clips: int) -> List[np.ndarray]:
  if mode == "uniform":
    return uniform_clip_indices(num_video_frames, num_frames, stride, num_clips)
  if mode == "segment":
    return segment_clip_indices(num_video_frames, num_frames, num_clips)
  raise ValueError(f"config.eval.sampling={mode!r}; use one of {SAMPLING_MODES}.")


def random_segment_indices(num_video_frames: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
  """Training clip of SSv2 (TSN): one uniformly random frame in each of num_frames equal segments (official
  `average_duration = F // num_frames`; shorter videos take evenly spread frames, repeating as needed)."""
  if num_video_frames <= 0:
    raise ValueError("the video has no frames.")
  segment = num_video_frames // num_frames
  if segment > 0:
    return np.arange(num_frames) * segment + rng.integers(0, segment, size=num_frames)
  return np.minimum((np.arange(num_frames) * num_video_frames / num_frames).astype(np.int64), num_video_frames - 1)
