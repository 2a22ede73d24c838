"""Fine-tuning augmentations (REFERENCE.md section 4): host side on uint8 clips, random erasing on device.

Order, as in the official fine-tuning loader: RandAugment on the decoded frames -> random resized crop (one box per
clip) -> horizontal flip (not SSv2) -> [on device, inside the train step] normalize -> random erasing -> mixup/cutmix.

Host side (data workers, numpy/PIL, one `np.random.Generator` per element):
  transform = FinetuneTrainTransform.from_config(config)      # config.augment.*, config.model.image_size
  clip = transform(frames_uint8_THWC, rng)                    # -> uint8 [T, size, size, 3]
  grain: `AugmentVideo(transform)` is a grain RandomMap over dict elements {'video': ..., ...}; repeated
  augmentation applies it `config.data.repeated_aug` times to the same decoded frames (`repeated_views`).
Device side: `random_erasing(rng, normalized_video, probability)` (called by finetune.ClassificationTask.loss).
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple

import numpy as np

from videomae_jax.augment import spatial, temporal
from videomae_jax.augment.rand_augment import RandAugment
from videomae_jax.augment.random_erasing import random_erasing
from videomae_jax.augment.spatial import (random_horizontal_flip, random_resized_crop, resize_bilinear,
                                          resize_short_side, spatial_crops)

__all__ = ["FinetuneTrainTransform", "AugmentVideo", "RandAugment", "random_erasing", "random_resized_crop",
           "random_horizontal_flip", "resize_bilinear", "resize_short_side", "spatial_crops", "repeated_views",
           "spatial", "temporal"]


@dataclasses.dataclass(frozen=True)
class FinetuneTrainTransform:
  """RandAugment -> random resized crop -> flip, identical on every frame of a clip.

  __call__(frames uint8 [T, H, W, 3], rng np.random.Generator) -> uint8 [T, size, size, 3].
  """
  size: int
  rand_augment: Optional[RandAugment] = RandAugment()
  scale: Tuple[float, float] = spatial.DEFAULT_SCALE
  ratio: Tuple[float, float] = spatial.DEFAULT_RATIO
  flip: bool = True

  @classmethod
  def from_config(cls, config: Any) -> "FinetuneTrainTransform":
    """config.model.image_size and config.augment.{rand_augment, crop_scale, crop_ratio, flip}."""
    aug = config.augment
    spec = aug.get("rand_augment", "") or ""
    return cls(size=int(config.model.image_size),
               rand_augment=RandAugment.from_string(spec) if spec else None,
               scale=tuple(float(v) for v in aug.get("crop_scale", spatial.DEFAULT_SCALE)),
               ratio=tuple(float(v) for v in aug.get("crop_ratio", spatial.DEFAULT_RATIO)),
               flip=bool(aug.get("flip", True)))

  def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}.")
    if self.rand_augment is not None:
      frames = self.rand_augment(frames, rng)
    frames = spatial.random_resized_crop(frames, rng, self.size, self.scale, self.ratio)
    if self.flip:
      frames = spatial.random_horizontal_flip(frames, rng)
    return np.ascontiguousarray(frames)


def repeated_views(frames: np.ndarray, rng: np.random.Generator, transform: FinetuneTrainTransform,
                   count: int) -> List[np.ndarray]:
  """Repeated augmentation: `count` independent augmentations of one decoded clip (same label)."""
  return [transform(frames, rng) for _ in range(count)]


try:  # grain is a dependency of the data pipeline; the transforms above do not need it.
  import grain

  class AugmentVideo(grain.transforms.RandomMap):
    """grain RandomMap: element[key] (uint8 [T, H, W, 3]) -> transform(element[key], rng)."""

    def __init__(self, transform: FinetuneTrainTransform, key: str = "video"):
      self.transform = transform
      self.key = key

    def random_map(self, element, rng: np.random.Generator):
      element = dict(element)
      element[self.key] = self.transform(element[self.key], rng)
      return element
except ImportError:  # pragma: no cover
  AugmentVideo = None
