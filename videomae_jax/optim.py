"""Optimizer of the official recipes, built from optax pieces.

  lr(step)     = warmup (linear from 0) then cosine to min_lr, per step; peak = base_lr * batch_size / 256
  update       = clip_by_global_norm -> AdamW (no weight decay on 1-D params, biases, mask_token) -> layer decay
Layer decay (fine-tuning) multiplies each parameter's update by ld**(L+1-i), with the patch embedding at layer 0,
block k at k+1 and everything after the blocks (fc_norm, head) at L+1 (the official fine-tuning script; docs/upstream.md section 4). Because it scales
the whole AdamW update, it scales the decoupled weight decay too, as the per-group lr does in the official code.
Scanned blocks get a per-layer scale array on their leading axis, so scan and no-scan train identically.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from videomae_jax.models.layer_stacking import SCANNED_KEY
from videomae_jax.errors import ConfigError

NO_DECAY_NAMES = ("bias", "q_bias", "v_bias", "mask_token", "pos_embed")


def _path_names(path) -> tuple:
  return tuple(getattr(entry, "key", getattr(entry, "name", str(entry))) for entry in path)


def _is_scanned_leaf(names: tuple) -> bool:
  return any(a == "blocks" and b == SCANNED_KEY for a, b in zip(names, names[1:]))


def weight_decay_mask(params: Any) -> Any:
  """True where weight decay applies: matrices and conv kernels, never 1-D params, biases or mask_token."""
  def decide(path, leaf):
    names = _path_names(path)
    rank = leaf.ndim - (1 if _is_scanned_leaf(names) else 0)
    return rank > 1 and names[-1] not in NO_DECAY_NAMES
  return jax.tree_util.tree_map_with_path(decide, params)


def peak_learning_rate(base_lr: float, batch_size: int) -> float:
  return base_lr * batch_size / 256.0


def learning_rate_schedule(*, base_lr: float, batch_size: int, min_lr: float, warmup_steps: int,
                           total_steps: int) -> optax.Schedule:
  peak = peak_learning_rate(base_lr, batch_size)
  if total_steps <= 0:
    raise ConfigError(f"the run has {total_steps} training steps; set config.num_train_steps or total_epochs > 0.")
  # optax needs at least one cosine step after the warmup.
  warmup_steps = max(0, min(warmup_steps, total_steps - 1))
  return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
                                            decay_steps=total_steps, end_value=min(min_lr, peak))


def schedule_lengths(config) -> tuple[int, int, int]:
  """(steps per epoch, total steps, warmup steps) of a config, as Python ints.

  An epoch is config.data.num_videos_per_epoch decoded videos; a step decodes batch_size / repeated_aug of them.
  config.num_train_steps > 0 overrides total_epochs, config.warmup_steps >= 0 overrides warmup_epochs.
  """
  videos_per_step = config.batch_size / max(1, config.data.repeated_aug)
  steps_per_epoch = max(1, int(config.data.num_videos_per_epoch // videos_per_step))
  total = config.num_train_steps if config.num_train_steps > 0 else int(config.total_epochs * steps_per_epoch)
  warmup = config.warmup_steps
  if warmup is None or warmup < 0:
    warmup = int(config.warmup_epochs * steps_per_epoch)
  return steps_per_epoch, int(total), int(min(warmup, total))


def layer_ids(params: Any, depth: int) -> Any:
  """Layer index per leaf for layer decay: patch_embed 0, block k -> k+1 (scanned: an int array), rest L+1."""
  def layer_of(path, leaf):
    names = _path_names(path)
    if "patch_embed" in names:
      return 0
    if "blocks" in names:
      position = names.index("blocks")
      child = names[position + 1]
      if child == SCANNED_KEY:
        return np.arange(1, leaf.shape[0] + 1)
      return int(child) + 1
    return depth + 1
  return jax.tree_util.tree_map_with_path(layer_of, params)


def layer_decay_scales(params: Any, depth: int, layer_decay: float) -> Any:
  """Per-leaf multipliers ld**(L+1-i), shaped to broadcast against the leaf (scanned: [depth, 1, ...])."""
  def scale(ids, leaf):
    values = np.power(layer_decay, depth + 1 - np.asarray(ids, np.float64)).astype(np.float32)
    if values.ndim == 1:  # scanned leaf: one scale per layer on the leading axis
      values = values.reshape((-1,) + (1,) * (leaf.ndim - 1))
    return jnp.asarray(values)
  return jax.tree.map(scale, layer_ids(params, depth), params)


class ScaleByTreeState(NamedTuple):
  pass


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformationExtraArgs:
  """optax.clip_by_global_norm's clip (g as is when the global norm is below max_norm, else g * max_norm / norm)
  with its empty state, so checkpoints are unchanged, and two differences that matter for speed:
  - the norm may be handed in through optax.chain's extra arguments (`global_norm=`): the train step computes it
    anyway (finiteness check, metrics), and a second pass over every gradient cost ~1% of a ViT-S step on a CPU;
  - the clip is one scalar factor multiplied into each gradient, which XLA fuses into AdamW's moment updates.
    optax divides each gradient by the norm, an op XLA does not repeat inside each consumer, so it wrote a clipped
    copy of every gradient first (2% of the step). The factor and optax's quotient differ by float32 rounding.
  """
  def update_fn(updates, state, params=None, *, global_norm: Optional[jax.Array] = None, **extra_args):
    del params, extra_args
    norm = optax.tree.norm(updates) if global_norm is None else global_norm
    factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
    return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

  return optax.GradientTransformationExtraArgs(optax.init_empty_state, update_fn)


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
  """Multiplies each update leaf by the matching (broadcastable) leaf of `scales`."""
  def init_fn(params):
    del params
    return ScaleByTreeState()

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * s.astype(u.dtype), updates, scales), state

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(optimizer_cfg: Mapping[str, Any], params: Any, *, batch_size: int, warmup_steps: int,
                   total_steps: int, depth: Optional[int] = None) -> tuple[optax.GradientTransformation,
                                                                             optax.Schedule]:
  """AdamW of the recipe. `params` may be abstract (ShapeDtypeStruct); returns (optimizer, lr schedule)."""
  cfg = optimizer_cfg
  schedule = learning_rate_schedule(base_lr=cfg["base_lr"], batch_size=batch_size, min_lr=cfg["min_lr"],
                                    warmup_steps=warmup_steps, total_steps=total_steps)
  parts = []
  if cfg.get("grad_clip_norm") and cfg["grad_clip_norm"] > 0:
    parts.append(clip_by_global_norm(cfg["grad_clip_norm"]))
  parts.append(optax.adamw(schedule, b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"],
                           weight_decay=cfg["weight_decay"], mask=weight_decay_mask(params)))
  layer_decay = cfg.get("layer_decay", 1.0)
  if layer_decay is not None and layer_decay != 1.0:
    if depth is None:
      raise ConfigError("layer decay needs the encoder depth.")
    parts.append(scale_by_tree(layer_decay_scales(params, depth, layer_decay)))
  frozen = cfg.get("frozen_params", "")
  if frozen:
    # A linear probe ('encoder/.*'): these leaves get no update at all (no gradient step, no weight decay).
    pattern = re.compile(frozen)
    mask = jax.tree_util.tree_map_with_path(lambda path, _: bool(pattern.search("/".join(_path_names(path)))),
                                            params)
    parts.append(optax.masked(optax.set_to_zero(), mask))
  return optax.chain(*parts), schedule
