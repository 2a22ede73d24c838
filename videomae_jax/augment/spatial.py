"""Spatial geometry of fine-tuning and testing, on uint8 clips [T, H, W, 3] (numpy, for the data workers).

Training (official VideoMAE V2 `spatial_sampling(..., aspect_ratio=(0.75, 4/3), scale=(0.08, 1.0))`):
  `random_resized_crop_box`: up to 10 tries of area ~ U(scale) * H * W and aspect exp(U(log ratio)),
  w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect)), accepted when 0 < w <= W and 0 < h <= H, top-left
  uniform (inclusive); otherwise a centre crop with the aspect clamped into `ratio`. One box per clip.
  The box is resized to size x size with bilinear interpolation, align_corners=False and no antialiasing
  (`torch.nn.functional.interpolate(mode='bilinear')`), then the clip is flipped horizontally with probability
  0.5 (not for SSv2, where left/right is in the label).
Testing: the short side is resized to `size` (bilinear), then `num_crops` crops of size x size are spread evenly
along the long side (3: left/centre/right or top/centre/bottom; 1: centre).
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np

DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (0.75, 4.0 / 3.0)


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: Sequence[float] = DEFAULT_SCALE, ratio: Sequence[float] = DEFAULT_RATIO,
                            attempts: int = 10) -> Tuple[int, int, int, int]:
  """(top, left, crop_height, crop_width) of the official `_get_param_spatial_crop` (log-uniform aspect)."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    target_area = rng.uniform(scale[0], scale[1]) * area
    aspect = math.exp(rng.uniform(*log_ratio))
    crop_w = int(round(math.sqrt(target_area * aspect)))
    crop_h = int(round(math.sqrt(target_area / aspect)))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      top = int(rng.integers(0, height - crop_h + 1))
      left = int(rng.integers(0, width - crop_w + 1))
      return top, left, crop_h, crop_w
  in_ratio = width / height
  if in_ratio < min(ratio):
    crop_w = width
    crop_h = int(round(crop_w / min(ratio)))
  elif in_ratio > max(ratio):
    crop_h = height
    crop_w = int(round(crop_h * max(ratio)))
  else:
    crop_w, crop_h = width, height
  return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _linear_taps(size_in: int, size_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PyTorch bilinear, align_corners=False: (low index, high index, weight of high) per output position."""
  scale = size_in / size_out
  source = np.maximum((np.arange(size_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
  low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
  high = np.minimum(low + 1, size_in - 1)
  return low, high, (source - low).astype(np.float32)


def resize_bilinear(frames: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
  """[T, H, W, C] uint8 -> [T, out_height, out_width, C] uint8, torch bilinear (align_corners=False), rounded."""
  _, height, width, _ = frames.shape
  if (height, width) == (out_height, out_width):
    return frames
  y_low, y_high, y_weight = _linear_taps(height, out_height)
  x_low, x_high, x_weight = _linear_taps(width, out_width)
  values = frames.astype(np.float32)
  rows = values[:, y_low] * (1 - y_weight)[None, :, None, None] + values[:, y_high] * y_weight[None, :, None, None]
  out = rows[:, :, x_low] * (1 - x_weight)[None, None, :, None] + rows[:, :, x_high] * x_weight[None, None, :, None]
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def random_resized_crop(frames: np.ndarray, rng: np.random.Generator, size: int,
                        scale: Sequence[float] = DEFAULT_SCALE,
                        ratio: Sequence[float] = DEFAULT_RATIO) -> np.ndarray:
  """[T, H, W, C] -> [T, size, size, C]: one random box for the whole clip, resized bilinearly."""
  top, left, crop_h, crop_w = random_resized_crop_box(rng, frames.shape[1], frames.shape[2], scale, ratio)
  return resize_bilinear(frames[:, top:top + crop_h, left:left + crop_w], size, size)


def random_horizontal_flip(frames: np.ndarray, rng: np.random.Generator, prob: float = 0.5) -> np.ndarray:
  if rng.random() < prob:
    return frames[:, :, ::-1]
  return frames


def short_side_size(height: int, width: int, size: int) -> Tuple[int, int]:
  """Output (height, width) with the short side equal to `size` (the long side truncated, as the official Resize)."""
  if height <= width:
    return size, int(size * width / height)
  return int(size * height / width), size


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
  out_h, out_w = short_side_size(frames.shape[1], frames.shape[2], size)
  return resize_bilinear(frames, out_h, out_w)


def crop_offsets(long_side: int, size: int, num_crops: int) -> List[int]:
  """Start offsets of `num_crops` crops along the long side: int(i * (long - size) / (n - 1)); 1 crop: centred."""
  if size > long_side:
    raise ValueError(f"crop {size} is larger than the frame side {long_side}; resize the short side first.")
  if num_crops == 1:
    return [(long_side - size) // 2]
  step = (long_side - size) / (num_crops - 1)
  return [int(i * step) for i in range(num_crops)]


def spatial_crops(frames: np.ndarray, size: int, num_crops: int) -> np.ndarray:
  """[T, H, W, C] with min(H, W) == size -> [num_crops, T, size, size, C]: crops along the long side (3: left/
  centre/right for landscape, top/centre/bottom for portrait). Also centres the short side if it exceeds `size`."""
  _, height, width, _ = frames.shape
  if min(height, width) < size:
    raise ValueError(f"frames {height}x{width} are smaller than the crop {size}; resize the short side first.")
  crops = []
  if height >= width:
    left = (width - size) // 2
    for top in crop_offsets(height, size, num_crops):
      crops.append(frames[:, top:top + size, left:left + size])
  else:
    top = (height - size) // 2
    for left in crop_offsets(width, size, num_crops):
      crops.append(frames[:, top:top + size, left:left + size])
  return np.stack(crops)
