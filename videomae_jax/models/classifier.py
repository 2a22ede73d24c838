"""Fine-tuning / inference model: encoder -> mean over tokens -> fc_norm -> dropout -> head, as the official
fine-tuning VisionTransformer. With num_classes 0 it stops before the head and returns the pooled features (the
official model with `num_classes=0`, whose head is the identity; the HuggingFace hub's VideoMAEv2 encoders).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from videomae_jax.models.variants import ModelSpec
from videomae_jax.models.vit import NORMAL_002, VideoViTEncoder, dtype_of


def scaled_init(init, scale: float):
  """The official head init: `init` (NORMAL_002), then weight and bias multiplied by `init_scale`."""
  def scaled(key, shape, dtype=jnp.float32):
    return init(key, shape, dtype) * scale
  return scaled


class VideoClassifier(nn.Module):
  """Parameters: `encoder` (the pretraining encoder's tree), `fc_norm`, `head` (num_classes > 0).

  How the tokens are pooled (spec.pooled_norm): 'fc_norm' mean over tokens, then LayerNorm `fc_norm` (the official
  fine-tuning model; its encoder has no final norm); 'norm' the encoder's own final LayerNorm `encoder/norm` on
  every token, then the mean (a pretraining encoder used for features); 'none' the mean of the last block's tokens.
  `keep_indices` [B, K] (MATS token keeping) restricts both the encoder and the mean-pool to the kept tokens.
  Returns logits [B, num_classes] float32, or the pooled features [B, width] float32 when num_classes is 0.
  """
  spec: ModelSpec

  @nn.compact
  def __call__(self, video: jax.Array, keep_indices: Optional[jax.Array] = None, *,
               train: bool = False) -> jax.Array:
    spec = self.spec
    x = VideoViTEncoder(spec, use_final_norm=spec.pooled_norm == "norm", kernel_init=NORMAL_002, name="encoder")(
        video, keep_indices, train=train)
    # The mean over tokens as a matrix-vector product: as a reduction, XLA:CPU fused it into the last block's MLP
    # and materialized that fusion's constants at full [N, mlp_dim] size (4% of a ViT-S inference).
    x = jnp.einsum("bnd,n->bd", x.astype(jnp.float32), jnp.full((x.shape[1],), 1.0 / x.shape[1], jnp.float32))
    if spec.pooled_norm == "fc_norm":
      x = nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=jnp.float32, name="fc_norm")(x)
    if spec.num_classes <= 0:
      return x
    x = nn.Dropout(spec.head_dropout_rate, deterministic=not train)(x)
    return nn.Dense(spec.num_classes, dtype=dtype_of(spec.compute_dtype), name="head",
                    kernel_init=scaled_init(NORMAL_002, spec.head_init_scale),
                    bias_init=nn.initializers.zeros)(x).astype(jnp.float32)
