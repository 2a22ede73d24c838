"""Fine-tuning's spatial augmentation on uint8 clips [T, H, W, 3] (numpy, for the data workers).

Official VideoMAE V2 `spatial_sampling(..., aspect_ratio=(0.75, 4/3), scale=(0.08, 1.0))`:
`random_resized_crop_box` makes up to 10 tries of area ~ U(scale) * H * W and aspect exp(U(log ratio)),
w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect)), accepted when 0 < w <= W and 0 < h <= H, top-left
uniform (inclusive); otherwise a centre crop with the aspect clamped into `ratio`. One box per clip, resized to
size x size with videomae_jax.data.transforms.resize (bilinear, align_corners=False, no antialiasing: torch
`interpolate(mode='bilinear')`), then the clip is flipped horizontally with probability 0.5 (not for SSv2, where
left/right is in the label). With config.augment.crop='multiscale' the box is instead pretraining's MultiScaleCrop
(videomae_jax.data.transforms.multiscale_crop_box), as VideoMAE V2's distillation recipe lists.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from videomae_jax.augment.rand_augment import RandAugment
from videomae_jax.data import transforms
from videomae_jax.errors import ConfigError

CROPS = ("random_resized", "multiscale")
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


@dataclasses.dataclass(frozen=True)
class FinetuneTrainTransform:
  """RandAugment -> random resized crop -> flip, identical on every frame of a clip.

  __call__(frames uint8 [T, H, W, 3], rng, out=None) -> uint8 [T, size, size, 3] (written into `out` if given).
  """
  size: int
  rand_augment: Optional[RandAugment] = RandAugment()
  scale: Tuple[float, float] = DEFAULT_SCALE
  ratio: Tuple[float, float] = DEFAULT_RATIO
  flip: bool = True
  # MultiScaleCrop's scales of the short side instead of the random resized crop when set (config.augment.crop =
  # 'multiscale': VideoMAE V2's distillation recipe crops as its pretraining does).
  multiscale_scales: Tuple[float, ...] = ()

  @classmethod
  def from_config(cls, config: Any) -> "FinetuneTrainTransform":
    """config.model.image_size, config.augment.{rand_augment, crop_scale, crop_ratio, flip, crop} and, for the
    multiscale crop, config.data.multiscale_crop_scales."""
    aug = config.augment
    spec = aug.rand_augment or ""
    crop = str(aug.get("crop", "random_resized"))
    if crop not in CROPS:
      raise ConfigError(f"config.augment.crop={crop!r}; use one of {CROPS}.")
    return cls(size=int(config.model.image_size),
               rand_augment=RandAugment.from_string(spec) if spec else None,
               scale=tuple(float(v) for v in aug.crop_scale), ratio=tuple(float(v) for v in aug.crop_ratio),
               flip=bool(aug.flip),
               multiscale_scales=(tuple(float(v) for v in config.data.multiscale_crop_scales)
                                  if crop == "multiscale" else ()))

  def __call__(self, frames: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}.")
    if self.rand_augment is not None:
      frames = self.rand_augment(frames, rng)
    if self.multiscale_scales:
      box = transforms.multiscale_crop_box(frames.shape[1], frames.shape[2], rng, output_size=self.size,
                                           scales=self.multiscale_scales)
    else:
      top, left, crop_h, crop_w = random_resized_crop_box(rng, frames.shape[1], frames.shape[2], self.scale,
                                                          self.ratio)
      box = (left, top, crop_w, crop_h)
    # The flip coin is drawn after the box, as the official loader does.
    return transforms.crop_resize(frames, box, self.size, flip=self.flip and rng.random() < 0.5, out=out)
