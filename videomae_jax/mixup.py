"""Mixup / CutMix with label smoothing on a batch of clips, on device and jit-able (timm `Mixup`, mode 'batch').

Semantics (timm `Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch',
correct_lam=True, label_smoothing=0.1)`, the VideoMAE V2 fine-tuning default):
  * one draw per batch: with probability `prob` the batch is mixed; then CutMix with probability `switch_prob`
    (when both alphas are > 0), else Mixup. lambda ~ Beta(alpha, alpha) of the chosen method.
  * the partner of clip i is clip B-1-i (the batch reversed, `x.flip(0)` in timm).
  * Mixup: x = lam * x + (1 - lam) * x[::-1].
  * CutMix: a box of height int(H * sqrt(1 - lam)) and width int(W * sqrt(1 - lam)) centred at a uniform pixel,
    clipped to the frame, is pasted from the partner; the same box on every frame of the clip. With
    `correct_lam`, lam becomes 1 - (clipped box area) / (H * W).
  * targets: smoothed one-hot (off = s / C, on = 1 - s + s / C) mixed with the same lam, so every row sums to 1.

Sharding: with `num_groups` > 1 the batch is split into that many contiguous groups and reversed inside each, so a
clip's partner lives on the same device when the batch is sharded over `num_groups` devices (the official code
mixes each GPU's local batch). lambda and the box are drawn once for the whole batch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Tuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class MixupConfig:
  """Static mixup settings (`config.mixup`). Alphas of 0 disable that method; prob 0 disables mixing."""
  mixup_alpha: float = 0.8
  cutmix_alpha: float = 1.0
  prob: float = 1.0
  switch_prob: float = 0.5
  label_smoothing: float = 0.1
  correct_lam: bool = True

  @property
  def enabled(self) -> bool:
    return self.prob > 0.0 and (self.mixup_alpha > 0.0 or self.cutmix_alpha > 0.0)

  @classmethod
  def from_config(cls, cfg: Any) -> "MixupConfig":
    if cfg is None:
      return cls(mixup_alpha=0.0, cutmix_alpha=0.0, prob=0.0, label_smoothing=0.0)
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    out = cls(mixup_alpha=float(get("mixup_alpha", 0.8)), cutmix_alpha=float(get("cutmix_alpha", 1.0)),
              prob=float(get("prob", 1.0)), switch_prob=float(get("switch_prob", 0.5)),
              label_smoothing=float(get("label_smoothing", 0.1)), correct_lam=bool(get("correct_lam", True)))
    for name in ("prob", "switch_prob", "label_smoothing"):
      value = getattr(out, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"config.mixup.{name}={value} must lie in [0, 1].")
    for name in ("mixup_alpha", "cutmix_alpha"):
      if getattr(out, name) < 0:
        raise ValueError(f"config.mixup.{name}={getattr(out, name)} must be >= 0 (0 disables it).")
    return out


class MixParams(NamedTuple):
  """One batch's draw. lam: float32 scalar (after the CutMix area correction); use_cutmix: bool scalar;
  box: int32 [4] = (y_low, y_high, x_low, x_high), half-open, used only when use_cutmix."""
  lam: jax.Array
  use_cutmix: jax.Array
  box: jax.Array


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """[B] int -> [B, C] float32 with off value s / C and on value 1 - s + s / C (timm `one_hot` with smoothing)."""
  off_value = smoothing / num_classes
  on_value = 1.0 - smoothing + off_value
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return one_hot * (on_value - off_value) + off_value


def cutmix_box(rng: jax.Array, lam: jax.Array, height: int, width: int) -> jax.Array:
  """timm `rand_bbox` (margin 0): int32 [4] (y_low, y_high, x_low, x_high) for a box of area ~ (1 - lam) H W."""
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  key_y, key_x = jax.random.split(rng)
  center_y = jax.random.randint(key_y, (), 0, height)
  center_x = jax.random.randint(key_x, (), 0, width)
  y_low = jnp.clip(center_y - cut_h // 2, 0, height)
  y_high = jnp.clip(center_y + cut_h // 2, 0, height)
  x_low = jnp.clip(center_x - cut_w // 2, 0, width)
  x_high = jnp.clip(center_x + cut_w // 2, 0, width)
  return jnp.stack([y_low, y_high, x_low, x_high]).astype(jnp.int32)


def box_area_lam(box: jax.Array, height: int, width: int) -> jax.Array:
  """The corrected CutMix lambda: 1 - clipped box area / frame area."""
  area = (box[1] - box[0]) * (box[3] - box[2])
  return 1.0 - area.astype(jnp.float32) / float(height * width)


def sample_mix_params(rng: jax.Array, cfg: MixupConfig, height: int, width: int) -> MixParams:
  """One per-batch draw of (lam, use_cutmix, box), as timm's `_params_per_batch` + `cutmix_bbox_and_lam`."""
  key_apply, key_switch, key_mixup, key_cutmix, key_box = jax.random.split(rng, 5)
  apply = jax.random.uniform(key_apply) < cfg.prob
  if cfg.mixup_alpha > 0 and cfg.cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(key_switch) < cfg.switch_prob
  else:
    use_cutmix = jnp.asarray(cfg.cutmix_alpha > 0)
  lam_mixup = (jax.random.beta(key_mixup, cfg.mixup_alpha, cfg.mixup_alpha) if cfg.mixup_alpha > 0
               else jnp.float32(1.0))
  lam_cutmix = (jax.random.beta(key_cutmix, cfg.cutmix_alpha, cfg.cutmix_alpha) if cfg.cutmix_alpha > 0
                else jnp.float32(1.0))
  use_cutmix = jnp.logical_and(apply, use_cutmix)
  lam = jnp.where(apply, jnp.where(use_cutmix, lam_cutmix, lam_mixup), 1.0).astype(jnp.float32)
  box = cutmix_box(key_box, lam, height, width)
  if cfg.correct_lam:
    lam = jnp.where(use_cutmix, box_area_lam(box, height, width), lam)
  return MixParams(lam=lam, use_cutmix=use_cutmix, box=box)


def partner(x: jax.Array, num_groups: int = 1) -> jax.Array:
  """The batch reversed inside each of `num_groups` contiguous groups (num_groups=1: x[::-1])."""
  batch = x.shape[0]
  if batch % num_groups:
    raise ValueError(f"batch {batch} is not divisible into {num_groups} mixup groups.")
  grouped = x.reshape((num_groups, batch // num_groups) + x.shape[1:])
  return jnp.flip(grouped, axis=1).reshape(x.shape)


def apply_mix(video: jax.Array, labels: jax.Array, params: MixParams, num_classes: int, smoothing: float,
              num_groups: int = 1) -> Tuple[jax.Array, jax.Array]:
  """video [B, T, H, W, C] float, labels [B] int -> (mixed video, soft targets [B, num_classes] float32)."""
  height, width = video.shape[2], video.shape[3]
  other = partner(video, num_groups)
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  y_low, y_high, x_low, x_high = params.box[0], params.box[1], params.box[2], params.box[3]
  inside = (rows >= y_low) & (rows < y_high) & (cols >= x_low) & (cols < x_high)          # [H, W]
  cut = jnp.where(inside[None, None, :, :, None], other, video)
  lam = params.lam.astype(video.dtype)
  blended = video * lam + other * (1 - lam)
  mixed = jnp.where(params.use_cutmix, cut, blended)
  targets = smooth_one_hot(labels, num_classes, smoothing)
  targets = targets * params.lam + partner(targets, num_groups) * (1.0 - params.lam)
  return mixed, targets


def mixup_batch(rng: jax.Array, video: jax.Array, labels: jax.Array, num_classes: int, cfg: MixupConfig,
                num_groups: int = 1) -> Tuple[jax.Array, jax.Array, MixParams]:
  """Draws one (lam, method, box) for the batch and mixes it. Returns (video, soft targets, params).

  With mixing disabled the video is returned unchanged and the targets are the smoothed one-hot labels.
  """
  if not cfg.enabled:
    targets = smooth_one_hot(labels, num_classes, cfg.label_smoothing)
    none = MixParams(jnp.float32(1.0), jnp.asarray(False), jnp.zeros((4,), jnp.int32))
    return video, targets, none
  if (video.shape[0] // num_groups) % 2:
    raise ValueError(f"mixup pairs clip i with clip B-1-i inside each group; the group size "
                     f"{video.shape[0] // num_groups} must be even (timm asserts an even batch).")
  params = sample_mix_params(rng, cfg, video.shape[2], video.shape[3])
  mixed, targets = apply_mix(video, labels, params, num_classes, cfg.label_smoothing, num_groups)
  return mixed, targets, params


def soft_target_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """[B, C] logits, [B, C] target distributions -> [B] float32: sum_c -target_c * log_softmax(logits)_c."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(targets.astype(jnp.float32) * log_probs, axis=-1)
