"""Motion scores for MATS / EVEREST token selection, camera-motion compensation and adaptive frame selection.

Score (the official EVEREST code; docs/upstream.md section 3): patch-embed the normalized clip with the model's own Conv3d (before positions),
stop the gradient, and take the L2 distance between the embeddings of tubelets t-1 and t at the same spatial
position; tubelet 0 copies the (0, 1) distance. The embedding is linear, so this is the norm of a learned
projection of the pixel difference: static regions score ~0.

Everything here is per clip (no reduction over the batch), static-shaped and jit-able. Only sorts, gathers,
reductions and matmuls are used: XLA's partitioners gather a batch-sharded TopK custom call or FFT onto every
device, so neither appears here.
"""
from __future__ import annotations

from typing import Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

EmbedFn = Callable[[jax.Array], jax.Array]


def motion_scores(patch_embeddings: jax.Array, grid: Tuple[int, int, int]) -> jax.Array:
  """[B, N, D] patch embeddings in (t, h, w) order -> [B, N] float32 motion scores.

  The gradient is stopped here (the official code scores under no_grad), so callers may pass live embeddings.
  """
  time, height, width = grid
  batch, num_tokens, dim = patch_embeddings.shape
  if num_tokens != time * height * width:
    raise ValueError(f"patch_embeddings have {num_tokens} tokens but grid {grid} has {time * height * width}.")
  if time < 2:
    raise ValueError(f"motion scores need at least 2 tubelets in time, grid is {grid}.")
  x = jax.lax.stop_gradient(patch_embeddings).astype(jnp.float32).reshape(batch, time, height * width, dim)
  return _distances_to_scores(x[:, 1:] - x[:, :-1])


def _distances_to_scores(differences: jax.Array) -> jax.Array:
  """[B, T'-1, HW, D] differences (t+1 minus t) -> [B, T'*HW] scores, tubelet 0 copying the first distance."""
  distance = jnp.sqrt(jnp.sum(jnp.square(differences), axis=-1))           # [B, T'-1, HW]
  scores = jnp.concatenate([distance[:, :1], distance], axis=1)
  return scores.reshape(scores.shape[0], -1)


def top_k_indices(scores: jax.Array, k: int) -> jax.Array:
  """[..., N] -> [..., k] int32 indices of the k highest scores, best first; ties go to the lower index.

  A stable sort, not lax.top_k: a batch-sharded TopK custom call is gathered onto every device by XLA's
  partitioners, a sort along the last axis stays local. (N is at most a few thousand tokens.)
  """
  return jnp.argsort(-scores, axis=-1, stable=True)[..., :k].astype(jnp.int32)


def select_top_tokens(scores: jax.Array, k: int) -> jax.Array:
  """[B, N] scores -> [B, k] int32 indices of the k highest, sorted in raster order. Deterministic (ties go to the
  lower index). EVEREST fine-tuning / inference keeps int(0.6 * N): 940 of 1568 for ViT-B."""
  if not 0 < k <= scores.shape[-1]:
    raise ValueError(f"k={k} must lie in [1, {scores.shape[-1]}].")
  return jnp.sort(top_k_indices(scores, k), axis=-1)


# ------------------------------------------------------------------------------------------------------------------
# Camera-motion compensation
# ------------------------------------------------------------------------------------------------------------------
#
# A panning camera makes every textured token "move", and the plain score then ranks background texture as high as
# the action. We remove the dominant global translation before scoring:
#   1. For each pair of consecutive tubelets (t, t+1), estimate one integer pixel shift d = (dy, dx),
#      |dy|, |dx| <= max_shift, by whole-frame block matching of their grayscale means: the shift with the lowest
#      mean absolute difference over the overlap. The largest area that moves together wins, i.e. the background.
#      Coarse to fine: an exhaustive search on frames average-pooled to >= 56 px, then +-(factor - 1) px at full
#      resolution around the coarse answer (224 px, max_shift 16: 81 + 49 candidate shifts per tubelet pair).
#      A tiny penalty on |dy| + |dx| makes ties prefer the smaller shift, so a static clip gets d = 0.
#   2. Warp tubelet t by d. Pixels that enter from outside the frame are copied from tubelet t+1, so newly
#      revealed border content scores 0 rather than high.
#   3. Score = || embed(tubelet t+1) - embed(warped tubelet t) || per token. The patch embedding is linear, so this
#      is the usual score computed on motion-compensated frames (the conv bias cancels); with d = 0 it equals the
#      plain score exactly.
# Limits: one translation per tubelet pair (no zoom/rotation; sub-pixel pans leave a small residual); when the
# background is featureless the only visible motion is the object's, a tracked object is indistinguishable from a
# pan, and the object's own motion may be removed. Cost: one extra patch embedding of T'-1 tubelets plus the
# search (about 2e7 subtractions per 16x224 clip).

_COARSE_SIZE = 56
_SHIFT_PENALTY = 1e-4   # per pixel of |dy| + |dx|, in normalized-intensity units


def _pool_factor(height: int, width: int) -> int:
  for factor in (8, 4, 2):
    if height % factor == 0 and width % factor == 0 and min(height, width) // factor >= _COARSE_SIZE:
      return factor
  return 1


def _shift_image(image: jax.Array, shift: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """image [..., H, W], shift (dy, dx) -> (out, valid [H, W]): out(y, x) = image(y - dy, x - dx) where valid."""
  height, width = image.shape[-2:]
  rows = jnp.arange(height) - shift[0]
  cols = jnp.arange(width) - shift[1]
  valid = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
  moved = jnp.take(jnp.take(image, jnp.clip(rows, 0, height - 1), axis=-2), jnp.clip(cols, 0, width - 1), axis=-1)
  return moved, valid


def _best_shifts(previous: jax.Array, following: jax.Array, start: jax.Array, radius: int) -> jax.Array:
  """previous, following [P, H, W]; start [P, 2] int -> [P, 2]: start + the offset in [-radius, radius]^2 with the
  lowest mean absolute difference over the overlap (plus a small penalty on the total shift)."""
  span = np.arange(-radius, radius + 1)
  offsets = jnp.asarray(np.stack(np.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2), jnp.int32)

  def costs(offset):                                             # [2] -> [P]
    def one(prev, foll, origin):
      shift = origin + offset
      moved, valid = _shift_image(prev, shift)
      mean_difference = jnp.sum(jnp.where(valid, jnp.abs(moved - foll), 0.0)) / jnp.maximum(jnp.sum(valid), 1)
      return mean_difference + _SHIFT_PENALTY * jnp.sum(jnp.abs(shift))
    return jax.vmap(one)(previous, following, start)

  # lax.map keeps only a chunk of shifted frames alive at a time (49 full-resolution copies would not be small).
  all_costs = jax.lax.map(costs, offsets, batch_size=min(int(offsets.shape[0]), 16))    # [C, P]
  return start + offsets[jnp.argmin(all_costs, axis=0)]


def estimate_global_shifts(video: jax.Array, tubelet_size: int, max_shift: int) -> jax.Array:
  """[B, T, H, W, C] -> [B, T'-1, 2] int32 (dy, dx): tubelet t+1 ~= tubelet t moved by (dy, dx) pixels."""
  batch, frames, height, width, _ = video.shape
  time = frames // tubelet_size
  gray = jnp.mean(video.astype(jnp.float32), axis=-1).reshape(batch, time, tubelet_size, height, width).mean(2)
  factor = _pool_factor(height, width)

  def one_clip(clip):                                            # [T', H, W] -> [T'-1, 2]
    coarse = clip.reshape(time, height // factor, factor, width // factor, factor).mean((2, 4))
    origin = jnp.zeros((time - 1, 2), jnp.int32)
    shifts = _best_shifts(coarse[:-1], coarse[1:], origin, -(-max_shift // factor)) * factor
    if factor > 1:
      shifts = _best_shifts(clip[:-1], clip[1:], shifts, factor - 1)
    return jnp.clip(shifts, -max_shift, max_shift)

  return jax.vmap(one_clip)(gray)


def _warp(tubelet: jax.Array, fill: jax.Array, shift: jax.Array) -> jax.Array:
  """tubelet, fill [F, H, W, C]; shift (dy, dx): out(y, x) = tubelet(y - dy, x - dx), else fill's pixel."""
  moved, valid = _shift_image(jnp.moveaxis(tubelet, -1, 1), shift)             # [F, C, H, W]
  return jnp.where(valid[None, :, :, None], jnp.moveaxis(moved, 1, -1), fill)


def camera_motion_compensated_scores(video: jax.Array, embed_fn: EmbedFn, tubelet_size: int, patch_size: int,
                                     max_shift: int = 16) -> jax.Array:
  """[B, T, H, W, 3] normalized clip -> [B, N] motion scores after removing the global (camera) translation.

  embed_fn: clip [B, T*, H, W, 3] -> [B, (T*/tubelet) * H'W', D] patch embeddings (any frame count that is a
  multiple of the tubelet), e.g. `lambda v: model.apply(variables, v, method=VideoMAEPretrainModel.patch_embeddings)`.
  See the comment block above for the method and its limits. Gradient stopped.
  """
  video = jax.lax.stop_gradient(video).astype(jnp.float32)
  batch, frames, height, width, channels = video.shape
  time = frames // tubelet_size
  if time < 2:
    raise ValueError(f"motion scores need at least 2 tubelets in time, the clip has {frames} frames.")
  tokens_per_frame = (height // patch_size) * (width // patch_size)
  shifts = estimate_global_shifts(video, tubelet_size, max_shift)                     # [B, T'-1, 2]
  tubelets = video.reshape(batch, time, tubelet_size, height, width, channels)
  warped = jax.vmap(jax.vmap(_warp))(tubelets[:, :-1], tubelets[:, 1:], shifts)       # [B, T'-1, ts, H, W, C]
  warped = warped.reshape(batch, (time - 1) * tubelet_size, height, width, channels)
  # One embedding call on [clip, warped previous tubelets]: a single conv in the traced graph.
  embedded = embed_fn(jnp.concatenate([video, warped], axis=1))
  embedded = jax.lax.stop_gradient(embedded).astype(jnp.float32)
  embedded = embedded.reshape(batch, 2 * time - 1, tokens_per_frame, -1)
  following, warped_previous = embedded[:, 1:time], embedded[:, time:]
  return _distances_to_scores(following - warped_previous)


def video_motion_scores(video: jax.Array, embed_fn: EmbedFn, tubelet_size: int, patch_size: int,
                        camera_motion_compensation: bool = False, max_shift: int = 16) -> jax.Array:
  """[B, T, H, W, 3] -> [B, N] scores from a clip: plain MATS, or camera-compensated."""
  if camera_motion_compensation:
    return camera_motion_compensated_scores(video, embed_fn, tubelet_size, patch_size, max_shift)
  _, frames, height, width, _ = video.shape
  grid = (frames // tubelet_size, height // patch_size, width // patch_size)
  return motion_scores(embed_fn(video), grid)


# ------------------------------------------------------------------------------------------------------------------
# Adaptive ("information-intensive") frame selection
# ------------------------------------------------------------------------------------------------------------------
#
# The paper decodes ~1.5x the needed frames, counts the selected (top-motion) tokens in each candidate tubelet and
# samples the needed number of tubelets without replacement with probability proportional to the count, kept in
# time order. Static form: Gumbel-top-k over log(count + eps); sort the chosen indices; gather whole tubelets.


def tubelet_token_counts(scores: jax.Array, num_tubelets: int, k: int) -> jax.Array:
  """[B, T'c * H'W'] scores of a candidate clip -> [B, T'c] float32 number of top-k tokens in each tubelet.

  Tokens with a score of exactly 0 (bit-identical frames) do not count: they are in the top k only by tie-break.
  """
  tokens_per_frame = scores.shape[1] // num_tubelets
  top = top_k_indices(scores, k)                                                      # [B, k]
  moving = (jnp.take_along_axis(scores, top, axis=1) > 0).astype(jnp.float32)
  one_hot = jax.nn.one_hot(top // tokens_per_frame, num_tubelets, dtype=jnp.float32)  # [B, k, T'c]
  return jnp.sum(one_hot * moving[..., None], axis=1)


def select_frames(rng: jax.Array, token_counts: jax.Array, num_needed: int, eps: float = 1e-6) -> jax.Array:
  """[B, T'c] counts -> [B, num_needed] int32 tubelet indices, sampled without replacement with probability
  proportional to the count (Gumbel-top-k over log(count + eps)), sorted in time order. One key per clip."""
  batch, num_candidates = token_counts.shape
  if not 0 < num_needed <= num_candidates:
    raise ValueError(f"num_needed={num_needed} must lie in [1, {num_candidates}] candidate tubelets.")
  keys = jax.random.split(rng, batch)
  gumbel = jax.vmap(lambda key: jax.random.gumbel(key, (num_candidates,)))(keys)
  logits = jnp.log(token_counts.astype(jnp.float32) + eps) + gumbel
  return jnp.sort(top_k_indices(logits, num_needed), axis=-1)


def gather_tubelets(video: jax.Array, tubelet_indices: jax.Array, tubelet_size: int) -> jax.Array:
  """[B, T_cand, H, W, C] clip, [B, k] tubelet indices -> [B, k * tubelet_size, H, W, C] (frames of a tubelet stay
  together and in order)."""
  frame_indices = (tubelet_indices[:, :, None] * tubelet_size + jnp.arange(tubelet_size)[None, None]).reshape(
      tubelet_indices.shape[0], -1)
  return jnp.take_along_axis(video, frame_indices[:, :, None, None, None], axis=1)


def adaptive_frame_selection(rng: jax.Array, candidate_video: jax.Array, embed_fn: EmbedFn, *, tubelet_size: int,
                             patch_size: int, num_frames: int, keep_ratio: float = 0.3,
                             camera_motion_compensation: bool = False,
                             max_shift: int = 16) -> Tuple[jax.Array, jax.Array]:
  """Oversampled clip [B, T_cand, H, W, 3] -> ([B, num_frames, H, W, 3], chosen tubelet indices [B, num_frames/ts]).

  Scores the candidate clip, counts the top int(keep_ratio * N_cand) tokens per candidate tubelet and samples the
  needed tubelets in proportion (`select_frames`). Token selection then runs on the returned clip as usual.
  """
  candidate_frames = candidate_video.shape[1]
  if candidate_frames % tubelet_size or num_frames % tubelet_size:
    raise ValueError(f"frame counts ({candidate_frames} candidates, {num_frames} needed) must be multiples of the "
                     f"tubelet size {tubelet_size}.")
  num_candidates = candidate_frames // tubelet_size
  scores = video_motion_scores(candidate_video, embed_fn, tubelet_size, patch_size, camera_motion_compensation,
                               max_shift)
  k = max(1, int(keep_ratio * scores.shape[1]))
  counts = tubelet_token_counts(scores, num_candidates, k)
  chosen = select_frames(rng, counts, num_frames // tubelet_size)
  return gather_tubelets(candidate_video, chosen, tubelet_size), chosen
