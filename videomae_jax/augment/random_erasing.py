"""Random erasing (timm `RandomErasing(0.25, mode='pixel', max_count=1)`, PySlowFast `cube=True`), on device.

It runs inside the jitted train step on the ImageNet-normalized batch, where timm's 'pixel' mode fills the box
with N(0, 1) values, so the fill is exact (on uint8 host frames it would be clipped and quantized).
Per clip: with probability `probability`, up to 10 tries of area ~ U(0.02, 1/3) * H * W and aspect
exp(U(log 0.3, log 1/0.3)), h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)); the first try with
h < H and w < W is used, top-left uniform (inclusive). The same box on every frame of the clip (the official
video code's `cube` mode); fresh N(0, 1) noise per pixel and frame.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _erase_one(key: jax.Array, clip: jax.Array, probability: float, min_area: float, max_area: float,
               min_aspect: float, attempts: int) -> jax.Array:
  _, height, width, _ = clip.shape
  key_apply, key_area, key_aspect, key_top, key_left, key_noise = jax.random.split(key, 6)
  target_area = jax.random.uniform(key_area, (attempts,), minval=min_area, maxval=max_area) * (height * width)
  log_aspect = jax.random.uniform(key_aspect, (attempts,), minval=math.log(min_aspect),
                                  maxval=math.log(1.0 / min_aspect))
  aspect = jnp.exp(log_aspect)
  box_h = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  box_w = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  fits = (box_h < height) & (box_w < width)
  first = jnp.argmax(fits)
  box_h, box_w = box_h[first], box_w[first]
  top = jax.random.randint(key_top, (), 0, height - box_h + 1)
  left = jax.random.randint(key_left, (), 0, width - box_w + 1)
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
  erase = (jax.random.uniform(key_apply) < probability) & jnp.any(fits)
  noise = jax.random.normal(key_noise, clip.shape, clip.dtype)
  return jnp.where(erase & inside[None, :, :, None], noise, clip)


def random_erasing(rng: jax.Array, video: jax.Array, probability: float | jax.Array = 0.25, *, min_area: float = 0.02,
                   max_area: float = 1.0 / 3.0, min_aspect: float = 0.3, attempts: int = 10) -> jax.Array:
  """[B, T, H, W, C] normalized float video -> the same with one box per erased clip filled with N(0, 1).

  One independent draw per clip (a key per clip), so it is batch-local under batch sharding.
  """
  if isinstance(probability, (int, float)) and probability <= 0:
    return video  # may also be a traced scalar
  keys = jax.random.split(rng, video.shape[0])
  return jax.vmap(lambda key, clip: _erase_one(key, clip, probability, min_area, max_area, min_aspect, attempts))(
      keys, video)
