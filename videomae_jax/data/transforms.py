"""Host spatial ops on uint8 numpy clips [T, H, W, 3], each written once (no JAX; runs in grain workers).

Resampling, two kinds:
  `resize`       bilinear without antialiasing, half-pixel centres (torch `interpolate(mode='bilinear',
                 align_corners=False)`, which the official fine-tuning and test loaders use): OpenCV's INTER_LINEAR
                 where cv2 is installed (about 7x faster than PIL here; within one gray level of the formula),
                 else that formula in numpy. Used by pretraining's crops, fine-tuning's random resized crop and
                 the test views' short-side resize.
  `shrink_area`  area averaging (cv2 INTER_AREA, else PIL's box filter): whole videos read by data_prep, and clips
                 shrunk into the crop canvas.
Pretraining views are VideoMAE's GroupMultiScaleCrop(input_size, scales=[1, .875, .75, .66]) with its defaults
(max_distort=1, fix_crop=True, more_fix_crop=True), then a resize to input_size x input_size:
  * base = min(H, W); candidate sizes int(base * s) for each scale, snapped to input_size when within 3 px;
  * a (crop_w, crop_h) pair is drawn uniformly from the pairs of candidate sizes whose scale indices differ
    by at most max_distort (so at most one step of aspect distortion);
  * the offset is drawn uniformly from 13 fixed positions on a 5x5 grid of steps ((W - crop_w) // 4,
    (H - crop_h) // 4): the 4 corners, the center, the 4 edge midpoints and the 4 quarter points;
  * the same box on every frame; only the box is resized, not the frame.
Test views (the official test loaders): the short side resized to `short_side`, then `num_crops` square crops
spread evenly along the long side (3: left/centre/right or top/centre/bottom; 1: centre).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

try:
  import cv2
  cv2.setNumThreads(1)  # Parallelism comes from the grain workers.
except ImportError:  # pragma: no cover
  cv2 = None

SCALES = (1.0, 0.875, 0.75, 0.66)


def resize_backend() -> str:
  return "cv2" if cv2 is not None else "numpy"


# ------------------------------------------------------------------------------------------------------------
# Resampling.
# ------------------------------------------------------------------------------------------------------------


def _linear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """torch bilinear, align_corners=False: (low index, high index, weight of high) per output position."""
  source = np.maximum((np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5, 0.0)
  low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
  return low, np.minimum(low + 1, size_in - 1), (source - low).astype(np.float32)


def resize(frames: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
  """uint8 [T, H, W, C] -> [T, height, width, C] bilinear (see the module docstring); into `out` when given."""
  if out is None:
    out = np.empty((frames.shape[0], height, width, frames.shape[-1]), np.uint8)
  if cv2 is not None:
    for t in range(frames.shape[0]):
      if out[t].flags.c_contiguous:  # cv2 writes dst= in place only into a contiguous array.
        cv2.resize(frames[t], (width, height), dst=out[t], interpolation=cv2.INTER_LINEAR)
      else:
        out[t] = cv2.resize(frames[t], (width, height), interpolation=cv2.INTER_LINEAR)
    return out
  y_low, y_high, y_weight = _linear_taps(frames.shape[1], height)
  x_low, x_high, x_weight = _linear_taps(frames.shape[2], width)
  values = frames.astype(np.float32)
  rows = values[:, y_low] * (1 - y_weight)[:, None, None] + values[:, y_high] * y_weight[:, None, None]
  out[...] = np.clip(np.rint(rows[:, :, x_low] * (1 - x_weight)[:, None] + rows[:, :, x_high] * x_weight[:, None]),
                     0, 255)
  return out


def shrink_area(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  """Shrinks one RGB frame [H, W, 3] to height x width by area averaging."""
  if frame.shape[:2] == (height, width):
    return np.ascontiguousarray(frame)
  if cv2 is not None:
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  return np.asarray(Image.fromarray(frame).resize((width, height), Image.BOX))


# ------------------------------------------------------------------------------------------------------------
# Pretraining: MultiScaleCrop.
# ------------------------------------------------------------------------------------------------------------


def fixed_crop_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
  """The 13 (x, y) offsets of GroupMultiScaleCrop with more_fix_crop=True."""
  w_step = (image_w - crop_w) // 4
  h_step = (image_h - crop_h) // 4
  grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2),
          (0, 2), (4, 2), (2, 4), (2, 0),
          (1, 1), (3, 1), (1, 3), (3, 3)]
  return [(i * w_step, j * h_step) for i, j in grid]


def multiscale_crop_box(height: int, width: int, rng: np.random.Generator, *, output_size: int,
                        scales: Sequence[float] = SCALES, max_distort: int = 1) -> tuple[int, int, int, int]:
  """One GroupMultiScaleCrop box (x, y, crop_w, crop_h) for a frame of size height x width."""
  base = min(height, width)
  sizes = [int(base * s) for s in scales]
  sizes = [output_size if abs(s - output_size) < 3 else s for s in sizes]
  pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
  crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
  crop_w, crop_h = min(crop_w, width), min(crop_h, height)
  offsets = fixed_crop_offsets(width, height, crop_w, crop_h)
  x, y = offsets[int(rng.integers(len(offsets)))]
  return x, y, crop_w, crop_h


def crop_resize(clip: np.ndarray, box: tuple[int, int, int, int], output_size: int, *, flip: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
  """Cuts `box` = (x, y, w, h) from every frame of uint8 [T, H, W, 3], resizes it to [T, S, S, 3] (`resize`),
  mirrors it left-right when `flip`. Writes into `out` when given."""
  x, y, w, h = box
  out = resize(clip[:, y:y + h, x:x + w], output_size, output_size, out)
  if flip:
    out[...] = out[:, :, ::-1]
  return out


def multiscale_crops(clip: np.ndarray, rng: np.random.Generator, *, num_crops: int, output_size: int,
                     scales: Sequence[float] = SCALES, flip: bool = False,
                     out: np.ndarray | None = None) -> np.ndarray:
  """`num_crops` independent MultiScaleCrop views of one decoded clip: uint8 [num_crops, T, S, S, 3].

  Writes into `out` when given (the pipeline passes its batch buffer: no per-clip arrays, no batch copy).
  """
  _, height, width, _ = clip.shape
  if out is None:
    out = np.empty((num_crops, clip.shape[0], output_size, output_size, 3), np.uint8)
  for r in range(num_crops):
    box = multiscale_crop_box(height, width, rng, output_size=output_size, scales=scales)
    crop_resize(clip, box, output_size, flip=flip and bool(rng.integers(2)), out=out[r])
  return out


# ------------------------------------------------------------------------------------------------------------
# Pretraining crops cut on the device (videomae_jax.device_crops): the clip placed in a fixed canvas.
# ------------------------------------------------------------------------------------------------------------


def fit_into(clip: np.ndarray, out: np.ndarray, transpose: bool = False) -> tuple[int, int]:
  """Writes `clip` [T, H, W, 3] top-left into `out` [T, Hc, Wc, 3] and zeroes the rest; returns the placed (h, w)
  in the canvas.

  transpose: place each frame transposed (W x H), for a clip whose orientation differs from the canvas's. A clip
  larger than the canvas is shrunk first (aspect kept, `shrink_area`), so crops drawn inside the returned (h, w)
  stay inside the canvas.
  """
  num_frames = clip.shape[0]
  height, width = clip.shape[1:3] if not transpose else clip.shape[2:0:-1]
  canvas_h, canvas_w = out.shape[1:3]
  shrink = height > canvas_h or width > canvas_w
  if shrink:
    scale = min(canvas_h / height, canvas_w / width)
    height = max(1, min(canvas_h, int(height * scale + 0.5)))
    width = max(1, min(canvas_w, int(width * scale + 0.5)))
  if shrink or transpose:
    for t in range(num_frames):
      frame = transpose_frame(clip[t]) if transpose else clip[t]
      out[t, :height, :width] = shrink_area(frame, height, width) if shrink else frame
  else:
    out[:, :height, :width] = clip
  zero_padding(out, height, width)
  return height, width


def transpose_frame(frame: np.ndarray) -> np.ndarray:
  """[H, W, C] -> contiguous [W, H, C]. OpenCV's blocked transpose: 1.4 ms per 16 frames of 568x320, where
  numpy's strided copy takes 24 ms."""
  if cv2 is not None:
    return cv2.transpose(np.ascontiguousarray(frame))
  return np.ascontiguousarray(frame.transpose(1, 0, 2))


def zero_padding(out: np.ndarray, height: int, width: int) -> None:
  """Zeroes out[:, height:] and out[:, :height, width:] (the canvas around a top-left clip of height x width)."""
  out[:, height:] = 0
  out[:, :height, width:] = 0


# ------------------------------------------------------------------------------------------------------------
# Test views: short side, then crops along the long side.
# ------------------------------------------------------------------------------------------------------------


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
  """Output (height, width) with the short side equal to `size` (the long side truncated, as the official Resize)."""
  if height <= width:
    return size, int(size * width / height)
  return int(size * height / width), size


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
  return resize(frames, *short_side_size(frames.shape[1], frames.shape[2], size))


def crop_offsets(long_side: int, size: int, num_crops: int) -> list[int]:
  """Start offsets of `num_crops` crops along the long side: int(i * (long - size) / (n - 1)); 1 crop: centred."""
  if size > long_side:
    raise ValueError(f"crop {size} is larger than the frame side {long_side}; resize the short side first.")
  if num_crops == 1:
    return [(long_side - size) // 2]
  step = (long_side - size) / (num_crops - 1)
  return [int(i * step) for i in range(num_crops)]


def spatial_crops(frames: np.ndarray, size: int, num_crops: int, out: np.ndarray | None = None) -> np.ndarray:
  """[T, H, W, C] with min(H, W) >= size -> [num_crops, T, size, size, C]: crops along the long side (3: left/
  centre/right for landscape, top/centre/bottom for portrait), the short side centred. Into `out` when given."""
  _, height, width, channels = frames.shape
  if min(height, width) < size:
    raise ValueError(f"frames {height}x{width} are smaller than the crop {size}; resize the short side first.")
  if out is None:
    out = np.empty((num_crops, frames.shape[0], size, size, channels), frames.dtype)
  portrait = height >= width
  across = ((width if portrait else height) - size) // 2
  for k, along in enumerate(crop_offsets(height if portrait else width, size, num_crops)):
    top, left = (along, across) if portrait else (across, along)
    out[k] = frames[:, top:top + size, left:left + size]
  return out


def short_side_crops(clip: np.ndarray, size: int, num_crops: int, short_side: int = 0,
                     out: np.ndarray | None = None) -> np.ndarray:
  """One test clip's spatial views: short side to `short_side` (0: `size`), then `spatial_crops`."""
  return spatial_crops(resize_short_side(clip, short_side or size), size, num_crops, out)
