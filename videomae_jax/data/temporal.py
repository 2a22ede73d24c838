"""Which frames of a video each clip reads: every temporal sampling, once (numpy only; runs in grain workers).

Training draws one clip per decoded record:
  'random'   num_frames frames `stride` apart at a uniformly random start (VideoMAE's training sampler with one
             segment; the pretraining default); a video shorter than the span starts at 0 and repeats its last
             frame.
  'segment'  TSN sampling for SSv2 (the official `_sample_train_indices`): one uniformly random frame in each of
             num_frames equal segments of F // num_frames frames; shorter videos take evenly spread frames.
Testing takes `num_clips` fixed clips per video:
  'uniform'  Kinetics: windows of num_frames * stride frames at evenly spaced starts int(c * (F - span) /
             (num_clips - 1)) (1 clip: centred); a window running past the end repeats the last frame.
  'segment'  SSv2: num_frames equal segments of tick = F / num_frames frames; clip c takes frame
             int(tick * x + tick * c / num_clips) of segment x (2 clips: the segment starts and their midpoints).
`center_clip_indices` is the one centred window at a stride (a single deterministic view, e.g. for pictures).
"""
from __future__ import annotations

import numpy as np

TRAIN_SAMPLINGS = ("random", "segment")
TEST_SAMPLINGS = ("uniform", "segment")


def _check(num_video_frames: int) -> None:
  if num_video_frames <= 0:
    raise ValueError("the video has no frames.")


def _window(start: int, num_video_frames: int, num_frames: int, stride: int) -> np.ndarray:
  return np.minimum(start + stride * np.arange(num_frames), num_video_frames - 1)


def clip_span(num_frames: int, stride: int) -> int:
  """Source frames covered by `num_frames` frames taken every `stride` frames."""
  return (num_frames - 1) * stride + 1


def random_clip_indices(num_video_frames: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
  """Training 'random': a window at a uniformly random start (see the module docstring)."""
  span = clip_span(num_frames, stride)
  start = int(rng.integers(0, num_video_frames - span + 1)) if num_video_frames >= span else 0
  return _window(start, num_video_frames, num_frames, stride)


def center_clip_indices(num_video_frames: int, num_frames: int, stride: int) -> np.ndarray:
  """The window centred in the video."""
  return _window(max(0, (num_video_frames - clip_span(num_frames, stride)) // 2), num_video_frames, num_frames,
                 stride)


def random_segment_indices(num_video_frames: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
  """Training 'segment' (TSN, SSv2): one random frame per segment (see the module docstring)."""
  _check(num_video_frames)
  segment = num_video_frames // num_frames
  if segment > 0:
    return np.arange(num_frames) * segment + rng.integers(0, segment, size=num_frames)
  return np.minimum((np.arange(num_frames) * num_video_frames / num_frames).astype(np.int64), num_video_frames - 1)


def uniform_clip_indices(num_video_frames: int, num_frames: int, stride: int, num_clips: int) -> list[np.ndarray]:
  """Test 'uniform' (Kinetics): [num_clips] evenly spread windows (see the module docstring)."""
  _check(num_video_frames)
  room = max(num_video_frames - num_frames * stride, 0)
  starts = [room // 2] if num_clips == 1 else [int(c * room / (num_clips - 1)) for c in range(num_clips)]
  return [_window(start, num_video_frames, num_frames, stride) for start in starts]


def segment_clip_indices(num_video_frames: int, num_frames: int, num_clips: int) -> list[np.ndarray]:
  """Test 'segment' (SSv2): [num_clips] TSN clips, clip c offset by c / num_clips of a segment."""
  _check(num_video_frames)
  tick = num_video_frames / num_frames
  return [np.minimum((tick * np.arange(num_frames) + tick * c / num_clips).astype(np.int64), num_video_frames - 1)
          for c in range(num_clips)]


def clip_indices(sampling: str, num_video_frames: int, num_frames: int, *, stride: int = 1, num_clips: int = 1,
                 rng: np.random.Generator | None = None) -> list[np.ndarray]:
  """The frame indices of each clip by sampling name: with `rng`, the one random training clip
  (TRAIN_SAMPLINGS, config.data.sampling); without, the `num_clips` test clips (TEST_SAMPLINGS, config.eval)."""
  if rng is not None:
    if sampling == "random":
      return [random_clip_indices(num_video_frames, num_frames, stride, rng)]
    if sampling == "segment":
      return [random_segment_indices(num_video_frames, num_frames, rng)]
    raise ValueError(f"config.data.sampling={sampling!r}; use one of {TRAIN_SAMPLINGS}.")
  if sampling == "uniform":
    return uniform_clip_indices(num_video_frames, num_frames, stride, num_clips)
  if sampling == "segment":
    return segment_clip_indices(num_video_frames, num_frames, num_clips)
  raise ValueError(f"config.eval.sampling={sampling!r}; use one of {TEST_SAMPLINGS}.")
