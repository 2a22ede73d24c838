"""Fine-tuning / inference model: encoder (no final norm) -> mean over tokens -> fc_norm -> dropout -> head."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from videomae_jax.models.variants import ModelSpec
from videomae_jax.models.vit import TRUNC_NORMAL, VideoViTEncoder, dtype_of


def scaled_init(init, scale: float):
  """The official head init: trunc-normal(0.02), then weight and bias multiplied by `init_scale`."""
  def scaled(key, shape, dtype=jnp.float32):
    return init(key, shape, dtype) * scale
  return scaled


class VideoClassifier(nn.Module):
  """Parameters: `encoder` (same tree as the pretraining encoder minus `norm`), `fc_norm`, `head`.

  `keep_indices` [B, K] (MATS token keeping) restricts both the encoder and the mean-pool to the kept tokens.
  """
  spec: ModelSpec

  @nn.compact
  def __call__(self, video: jax.Array, keep_indices: Optional[jax.Array] = None, *,
               train: bool = False) -> jax.Array:
    spec = self.spec
    if spec.num_classes <= 0:
      raise ValueError("config.model.num_classes must be set (> 0) for the classifier.")
    dtype = dtype_of(spec.compute_dtype)
    x = VideoViTEncoder(spec, use_final_norm=False, kernel_init=TRUNC_NORMAL, name="encoder")(
        video, keep_indices, train=train)
    x = jnp.mean(x.astype(jnp.float32), axis=1)
    x = nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=jnp.float32, name="fc_norm")(x)
    x = nn.Dropout(spec.head_dropout_rate, deterministic=not train)(x)
    return nn.Dense(spec.num_classes, dtype=dtype, name="head",
                    kernel_init=scaled_init(TRUNC_NORMAL, spec.head_init_scale),
                    bias_init=nn.initializers.zeros)(x).astype(jnp.float32)
