"""Clip sampling and spatial augmentation on uint8 numpy clips [T, H, W, 3] (no JAX; runs in grain workers).

Pretraining augmentation is VideoMAE's GroupMultiScaleCrop(input_size, scales=[1, .875, .75, .66]) with its
defaults (max_distort=1, fix_crop=True, more_fix_crop=True), then a resize to input_size x input_size:
  * base = min(H, W); candidate sizes int(base * s) for each scale, snapped to input_size when within 3 px;
  * a (crop_w, crop_h) pair is drawn uniformly from the pairs of candidate sizes whose scale indices differ
    by at most max_distort (so at most one step of aspect distortion);
  * the offset is drawn uniformly from 13 fixed positions on a 5x5 grid of steps ((W - crop_w) // 4,
    (H - crop_h) // 4): the 4 corners, the center, the 4 edge midpoints and the 4 quarter points;
  * the same box is applied to every frame of the clip.
Each crop is cut before resizing (resize only the box, not the frame) and resized with OpenCV's bilinear
INTER_LINEAR when cv2 is installed (about 7x faster than PIL here), else PIL's bilinear (the official code's).
The two differ by under one gray level on average; PIL's bilinear antialiases when shrinking, cv2's does not
(the shrink factor here is at most 1/0.7).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_cv2 = None
_cv2_checked = False


def _get_cv2():
  """cv2 (single-threaded: parallelism comes from the grain workers) or None if it is not installed."""
  global _cv2, _cv2_checked  # pylint: disable=global-statement
  if not _cv2_checked:
    _cv2_checked = True
    try:
      import cv2  # pylint: disable=import-outside-toplevel
      cv2.setNumThreads(1)
      _cv2 = cv2
    except ImportError:
      _cv2 = None
  return _cv2


def resize_backend() -> str:
  return "cv2" if _get_cv2() is not None else "pil"


# ------------------------------------------------------------------------------------------------------------
# Temporal sampling.
# ------------------------------------------------------------------------------------------------------------


def clip_span(clip_length: int, stride: int) -> int:
  """Number of source frames covered by `clip_length` frames taken every `stride` frames."""
  return (clip_length - 1) * stride + 1


def random_clip_indices(num_frames: int, clip_length: int, stride: int, rng: np.random.Generator) -> np.ndarray:
  """Frame indices of a clip at a uniformly random start (VideoMAE's training sampler with one segment).

  Videos shorter than the span start at 0 and repeat their last frame.
  """
  span = clip_span(clip_length, stride)
  start = int(rng.integers(0, num_frames - span + 1)) if num_frames >= span else 0
  return np.minimum(start + stride * np.arange(clip_length), num_frames - 1)


def center_clip_indices(num_frames: int, clip_length: int, stride: int) -> np.ndarray:
  """Frame indices of the clip centered in the video (the eval path's single temporal view)."""
  span = clip_span(clip_length, stride)
  start = max(0, (num_frames - span) // 2)
  return np.minimum(start + stride * np.arange(clip_length), num_frames - 1)


# ------------------------------------------------------------------------------------------------------------
# Spatial boxes.
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
                        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), max_distort: int = 1
                        ) -> tuple[int, int, int, int]:
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


def center_square_box(height: int, width: int) -> tuple[int, int, int, int]:
  """The centered min(H, W) square: resizing it to S equals 'short side to S, then center crop S x S'."""
  side = min(height, width)
  return (width - side) // 2, (height - side) // 2, side, side


# ------------------------------------------------------------------------------------------------------------
# Crop + resize.
# ------------------------------------------------------------------------------------------------------------


def crop_resize(clip: np.ndarray, box: tuple[int, int, int, int], output_size: int, *, flip: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
  """Cuts `box` = (x, y, w, h) from every frame of uint8 [T, H, W, 3] and resizes it: [T, S, S, 3] uint8.

  Bilinear (cv2 if installed, else PIL). `flip` mirrors left-right. Writes into `out` when given.
  """
  x, y, w, h = box
  num_frames = clip.shape[0]
  if out is None:
    out = np.empty((num_frames, output_size, output_size, 3), np.uint8)
  cv2 = _get_cv2()
  if (w, h) == (output_size, output_size):
    out[...] = clip[:, y:y + h, x:x + w]
  elif cv2 is not None:
    for t in range(num_frames):
      cv2.resize(clip[t, y:y + h, x:x + w], (output_size, output_size), dst=out[t],
                 interpolation=cv2.INTER_LINEAR)
  else:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    for t in range(num_frames):
      image = Image.fromarray(clip[t])
      out[t] = np.asarray(image.resize((output_size, output_size), Image.BILINEAR, box=(x, y, x + w, y + h)))
  if flip:
    out[...] = out[:, :, ::-1]
  return out


def multiscale_crops(clip: np.ndarray, rng: np.random.Generator, *, num_crops: int, output_size: int,
                     scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), flip: bool = False,
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


def center_crop(clip: np.ndarray, output_size: int, out: np.ndarray | None = None) -> np.ndarray:
  """Eval view: short side to `output_size`, center crop: uint8 [T, S, S, 3] (into `out` when given)."""
  _, height, width, _ = clip.shape
  return crop_resize(clip, center_square_box(height, width), output_size, out=out)


def fit_into(clip: np.ndarray, out: np.ndarray) -> tuple[int, int]:
  """Writes `clip` [T, H, W, 3] top-left into `out` [T, Hc, Wc, 3] and zeroes the rest; returns the placed (h, w).

  A clip larger than the canvas is shrunk first (aspect kept, area averaging), so crops drawn inside the
  returned (h, w) stay inside the canvas. (Crops cut on the device, videomae_jax.device_crops.)
  """
  num_frames, height, width, _ = clip.shape
  canvas_h, canvas_w = out.shape[1:3]
  if height > canvas_h or width > canvas_w:
    scale = min(canvas_h / height, canvas_w / width)
    new_h, new_w = max(1, min(canvas_h, int(height * scale + 0.5))), max(1, min(canvas_w, int(width * scale + 0.5)))
    cv2 = _get_cv2()
    for t in range(num_frames):
      if cv2 is not None:  # (dst= would not write through a strided view: assign the result)
        out[t, :new_h, :new_w] = cv2.resize(clip[t], (new_w, new_h), interpolation=cv2.INTER_AREA)
      else:
        from PIL import Image  # pylint: disable=import-outside-toplevel
        out[t, :new_h, :new_w] = np.asarray(Image.fromarray(clip[t]).resize((new_w, new_h), Image.BOX))
    height, width = new_h, new_w
  else:
    out[:, :height, :width] = clip
  zero_padding(out, height, width)
  return height, width


def zero_padding(out: np.ndarray, height: int, width: int) -> None:
  """Zeroes out[:, height:] and out[:, :height, width:] (the canvas around a top-left clip of height x width)."""
  out[:, height:] = 0
  out[:, :height, width:] = 0
