"""VideoMAE V2 pretraining objective: normalized-tubelet targets and the masked reconstruction loss.

Targets (the official VideoMAE V2 `engine_for_pretraining.py` with `normlize_target`): un-normalize the
ImageNet-normalized clip, cut it into tubelets (b, (t h w), (p0 p1 p2), c), normalize each tubelet per channel by
its mean and unbiased std (+1e-6 on the std), flatten channel-fastest (p0 p1 p2 c) -> 3 * tubelet * P * P values
per token.
Loss: MSE over the values, then the mean over loss tokens (encoder-hidden and decoder-kept). Float32 throughout.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from videomae_jax.masking import Masks
from videomae_jax.models.variants import ModelSpec
from videomae_jax.models.vit import cut_tubelets, gather_tokens
from videomae_jax.normalization import denormalize

TARGET_STD_EPSILON = 1e-6


def patchify(video: jax.Array, spec: ModelSpec, token_indices: Optional[jax.Array] = None) -> jax.Array:
  """[B, T, H, W, C] -> [B, N, tubelet*P*P, C], tokens in (t, h, w) order, pixels in (p0 p1 p2) order;
  with token_indices [B, K], those tokens only: [B, K, tubelet*P*P, C]."""
  return cut_tubelets(video, (spec.tubelet_size, spec.patch_size, spec.patch_size), token_indices)


def unpatchify(tokens: jax.Array, spec: ModelSpec) -> jax.Array:
  """Inverse of `patchify`: [B, N, tubelet*P*P, C] (or flattened [B, N, tubelet*P*P*C]) -> [B, T, H, W, C]."""
  batch = tokens.shape[0]
  time, height, width = spec.grid
  ts, p = spec.tubelet_size, spec.patch_size
  x = tokens.reshape(batch, time, height, width, ts, p, p, -1)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)                  # b t p0 h p1 w p2 c
  return x.reshape(batch, time * ts, height * p, width * p, -1)


def _centered_and_std(pixels: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """[B, N, tubelet*P*P, C] -> (pixels - mean, mean, unbiased std (torch.std semantics) + 1e-6); mean and std
  [B, N, 1, C]. jnp.var's own arithmetic, with the centered pixels kept for the targets (one pass fewer)."""
  mean = jnp.mean(pixels, axis=-2, keepdims=True)
  centered = pixels - mean
  variance = jnp.sum(jnp.square(centered), axis=-2, keepdims=True) / (pixels.shape[-2] - 1)
  return centered, mean, jnp.sqrt(variance) + TARGET_STD_EPSILON


def _pixel_statistics(pixels: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """[B, N, tubelet*P*P, C] -> mean and unbiased std (torch.std semantics) + 1e-6, each [B, N, 1, C]."""
  _, mean, std = _centered_and_std(pixels)
  return mean, std


def tubelet_statistics(video: jax.Array, spec: ModelSpec) -> Tuple[jax.Array, jax.Array]:
  """Per-tubelet, per-channel mean and unbiased std (+1e-6) of the un-normalized clip: each [B, N, 1, C]."""
  return _pixel_statistics(patchify(denormalize(video), spec))


def tubelet_targets(video: jax.Array, spec: ModelSpec, normalize: bool = True,
                    token_indices: Optional[jax.Array] = None) -> jax.Array:
  """[B, T, H, W, 3] ImageNet-normalized clip -> [B, N, tubelet*P*P*3] float32 reconstruction targets.

  normalize=True: each tubelet normalized per channel (VideoMAE's default); False: raw [0, 1] pixels.
  token_indices [B, K]: the targets of those tokens only, [B, K, ...]. Each tubelet's statistics are its own, so
  gathering first gives the same numbers and skips the statistics of tokens the loss never sees (the visible
  ones in V1 mode, half of all tokens with V2's decoder mask).
  """
  pixels = patchify(denormalize(video), spec, token_indices)
  if normalize:
    centered, _, std = _centered_and_std(pixels)
    pixels = centered / std
  return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def predictions_to_pixels(predictions: jax.Array, video: jax.Array, decoder_indices: jax.Array,
                          spec: ModelSpec, normalized_targets: bool = True) -> jax.Array:
  """Undoes the target normalization: predictions [B, Nd, V] -> pixels [B, Nd, tubelet*P*P, 3] in [0, 1] (not
  clipped), using each predicted tubelet's own mean/std from `video` (what the official visualization does).
  With raw-pixel targets (normalized_targets=False) the predictions already are pixels."""
  if not normalized_targets:
    return predictions.astype(jnp.float32).reshape(predictions.shape[0], predictions.shape[1], -1, 3)
  mean, std = tubelet_statistics(video, spec)
  mean = gather_tokens(mean[:, :, 0], decoder_indices)[:, :, None]
  std = gather_tokens(std[:, :, 0], decoder_indices)[:, :, None]
  values = predictions.astype(jnp.float32).reshape(predictions.shape[0], predictions.shape[1], -1, 3)
  return values * std + mean


def reconstruction_loss(predictions: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> jax.Array:
  """predictions, targets [B, Nd, V]; loss_mask [B, Nd] (0/1) -> scalar float32.

  sum(loss_mask * mean_V((p - t)^2)) / sum(loss_mask) over the whole batch (the official MSELoss over the stacked
  loss tokens; identical to the per-clip mean when every clip has the same number of loss tokens). 0 if no token.
  """
  error = jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets.astype(jnp.float32)), axis=-1)
  weights = loss_mask.astype(jnp.float32)
  total = jnp.sum(weights)
  return jnp.where(total > 0, jnp.sum(weights * error) / jnp.maximum(total, 1e-12), 0.0)


def clip_reconstruction_errors(predictions: jax.Array, targets: jax.Array,
                               loss_mask: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Per clip: (sum over its loss tokens of the token MSE, number of loss tokens), each [B] float32. Summed over
  any set of clips, their ratio is `reconstruction_loss` of that set (held-out evaluation drops padding clips)."""
  error = jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets.astype(jnp.float32)), axis=-1)
  weights = loss_mask.astype(jnp.float32)
  return jnp.sum(weights * error, axis=-1), jnp.sum(weights, axis=-1)


def pretrain_loss(model: Any, variables: Any, video: jax.Array, masks: Masks, spec: ModelSpec,
                  train: bool = False, rngs: Optional[Dict[str, jax.Array]] = None,
                  normalize_targets: bool = True) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Runs `VideoMAEPretrainModel` on the masks and returns (loss, aux).

  aux: `loss_tokens_per_clip` (mean over the batch) and `mse_all_decoder_tokens` (MSE over every decoder
  prediction, visible ones included; a diagnostic only).
  """
  predictions = model.apply(variables, video, masks.encoder_indices, masks.decoder_indices, train=train,
                            rngs=rngs or {})
  targets = tubelet_targets(video, spec, normalize_targets, token_indices=masks.decoder_indices)
  loss = reconstruction_loss(predictions, targets, masks.loss_mask)
  aux = {
      "loss_tokens_per_clip": jnp.mean(jnp.sum(masks.loss_mask, axis=-1)),
      "mse_all_decoder_tokens": reconstruction_loss(predictions, targets, jnp.ones_like(masks.loss_mask)),
  }
  return loss, aux
