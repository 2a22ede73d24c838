"""ImageNet normalization of clips: the constants and the two functions that use them.

Pure numerics on jax.numpy (no grain, OpenCV or data code), so device-side modules (the objective, the tasks) and
host-side ones (data transforms, pictures) share one definition. Batches travel as uint8 and are normalized on the
device: a quarter of float32's bytes through the host and PCIe.
"""
from __future__ import annotations

import jax.numpy as jnp

# torchvision's ImageNet statistics, which VideoMAE V2's loaders use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(video, dtype=None):
  """uint8 [..., 3] in [0, 255] -> (video / 255 - mean) / std, float32 (or `dtype`); jit-able.

  Float input is taken as already normalized and only cast: model code can accept either.
  """
  if video.dtype != jnp.uint8:
    return video.astype(dtype or jnp.float32)
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32) * 255.0
  std = jnp.asarray(IMAGENET_STD, jnp.float32) * 255.0
  return ((video.astype(jnp.float32) - mean) / std).astype(dtype or jnp.float32)


def denormalize(video):
  """Inverse of `normalize`: float [..., 3] -> float32 pixel values in [0, 1] (MAE targets, pictures)."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return video.astype(jnp.float32) * std + mean
