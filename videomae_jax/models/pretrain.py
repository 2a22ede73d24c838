"""VideoMAE V2 pretraining model: encoder on visible tokens, light decoder on mask tokens (dual masking).

Decoder input (official modeling_pretrain.py; docs/upstream.md section 2):
  concat([encoder_to_decoder(encoder_out) + pos_dec[encoder_indices], mask_token + pos_dec[decoder_indices]])
and the decoder returns head(norm(x[:, -num_decoder_indices:])), one prediction of the normalized tubelet per
decoder-kept position. Which positions are visible/kept is decided outside (videomae_jax.masking) and passed in as
static-length index arrays, so the model compiles once whatever the mask.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from videomae_jax.models import posembed
from videomae_jax.models.variants import ModelSpec
from videomae_jax.models.layers import LayerNorm, TokenDense
from videomae_jax.models.vit import (TORCH_DEFAULT_KERNEL, XAVIER, BlockStack, VideoViTEncoder, dtype_of,
                                     gather_tokens, truncated_at_one_std)


class PretrainDecoder(nn.Module):
  spec: ModelSpec

  @nn.compact
  def __call__(self, x: jax.Array, num_predictions: int, train: bool = False) -> jax.Array:
    spec = self.spec
    dtype = dtype_of(spec.compute_dtype)
    x = BlockStack(depth=spec.decoder_depth, width=spec.decoder_width, num_heads=spec.decoder_num_heads,
                   mlp_dim=spec.decoder_mlp_dim, drop_path_rate=spec.drop_path_rate, dtype=dtype,
                   attention_impl=spec.attention_impl, scan_layers=spec.scan_layers,
                   remat_policy=spec.remat_policy, layer_norm_eps=spec.layer_norm_eps, name="blocks")(
                       x, deterministic=not train, output_rows=num_predictions)
    x = LayerNorm(epsilon=spec.layer_norm_eps, dtype=dtype, name="norm")(x)
    return TokenDense(spec.patch_values, dtype=dtype, kernel_init=XAVIER, name="head")(x)


class VideoMAEPretrainModel(nn.Module):
  """Parameters: `encoder`, `encoder_to_decoder` (no bias), `mask_token` [1, 1, Dd], `decoder`."""
  spec: ModelSpec

  def setup(self):
    spec = self.spec
    self.encoder = VideoViTEncoder(spec, use_final_norm=True)
    self.encoder_to_decoder = TokenDense(spec.decoder_width, use_bias=False, dtype=dtype_of(spec.compute_dtype),
                                         kernel_init=TORCH_DEFAULT_KERNEL)
    self.mask_token = self.param("mask_token", truncated_at_one_std(0.02), (1, 1, spec.decoder_width),
                                 jnp.float32)
    self.decoder = PretrainDecoder(spec)

  def patch_embeddings(self, video: jax.Array) -> jax.Array:
    """[B, T, H, W, 3] -> [B, N, width] tubelet embeddings before positions (input of the MATS motion score)."""
    return self.encoder.embed_patches(video)

  def __call__(self, video: jax.Array, encoder_indices: jax.Array, decoder_indices: jax.Array, *,
               train: bool = False) -> jax.Array:
    """video [B, T, H, W, 3]; encoder_indices [B, Ne]; decoder_indices [B, Nd] -> [B, Nd, 3*tubelet*P*P]."""
    spec = self.spec
    encoded = self.encoder(video, encoder_indices, train=train)
    visible = self.encoder_to_decoder(encoded)
    table = jnp.asarray(posembed.position_table(spec.grid, spec.decoder_width, spec.pos_embed_grid))
    batch = video.shape[0]
    table = jnp.broadcast_to(table[None], (batch,) + table.shape)
    visible = visible.astype(jnp.float32) + gather_tokens(table, encoder_indices)
    masked = self.mask_token + gather_tokens(table, decoder_indices)
    x = jnp.concatenate([visible, masked], axis=1).astype(visible.dtype)
    x = x.astype(dtype_of(spec.compute_dtype))
    return self.decoder(x, decoder_indices.shape[1], train=train)
