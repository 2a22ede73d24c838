"""Dual masking (VideoMAE V2) and motion-aware token selection (MATS / EVEREST), with static shapes.

Every count is a Python int fixed by `masking_plan(config.masking, spec)` before anything is traced, so a training
step compiles once whatever masks are drawn. Masks are returned as sorted index arrays (raster (t, h, w) order)
that the models gather with, plus a float loss weight per decoder position.

All sampling is per sample (`jax.vmap` over one key per clip) and reads only that clip's motion scores, so when the
batch axis is sharded no device talks to another (tests/test_masking.py checks the compiled HLO on 8 devices). Top-k
selections are stable sorts (`motion.top_k_indices`), because XLA gathers a batch-sharded TopK custom call.

Encoder schemes (which tokens the encoder sees):
  tube     official VideoMAE: per clip one spatial mask hiding int(encoder_ratio * H'W') patches, repeated on every
           temporal slice. ViT-B/16: 20 visible per slice -> 160 of 1568; ViT-g/14: 26 -> 208 of 2048.
  random   int(encoder_ratio * N) tokens hidden uniformly at random.
  motion   MATS: keep the top int(motion_keep_ratio * N) tokens by motion score, shuffle them per clip, the first
           int((1 - encoder_ratio) * N) are visible, the rest of the kept set are the reconstruction targets.
           ViT-B: 470 kept, 156 visible, 314 targets. The other tokens are neither encoded nor reconstructed.

Decoder schemes (at which positions the decoder places mask tokens and predicts):
  none          VideoMAE V1: every encoder-hidden position; all of them carry loss.
  running_cell  official VideoMAE V2 generator (see `running_cell_maps`); the decoder keeps the cell's 0s, visible
                positions included (their outputs get no loss). ViT-B: 784 kept, 80 of them visible, 704 loss.
  motion        the highest-motion hidden positions, all with loss.
                * encoder tube/random: top int((1 - decoder_ratio) * num_hidden) hidden tokens by motion score
                  (ViT-B, tube 0.9, decoder_ratio 0.5: 704 of 1408), picked deterministically per clip.
                * encoder motion: the kept-but-hidden part of the MATS set (ViT-B: 314), which is exactly the top
                  (K - visible) hidden tokens by score; decoder_ratio is not used.
Not allowed: encoder 'motion' with decoder 'running_cell' (the overlap of the motion set and the cell map has no
fixed size).
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Callable, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax import motion
from videomae_jax.errors import ConfigError
from videomae_jax.models.variants import ModelSpec, config_value

ENCODER_SCHEMES = ("tube", "random", "motion")
DECODER_SCHEMES = ("none", "running_cell", "motion")
RUNNING_CELL_RATIOS = (0.25, 0.5, 0.75)

def _count(fraction: float, total: int) -> int:
  """int(fraction * total), exactly the official expression, float error included: EVEREST's visible count
  int((1 - 0.9) * N) is 79 / 179 / 319 at 160 / 240 / 320 px (not 80 / 180 / 320), and we match it."""
  return int(fraction * total)


@dataclasses.dataclass(frozen=True)
class MaskingPlan:
  """Static token counts of one masking configuration (all Python values; hashable, usable as a static arg)."""
  encoder: str
  decoder: str
  grid: Tuple[int, int, int]
  num_tokens: int
  num_encoder_tokens: int        # visible tokens the encoder sees (Ne)
  num_decoder_tokens: int        # mask-token positions the decoder predicts (Nd) = predictions per clip
  num_loss_tokens: int           # loss tokens per clip; exact when `loss_tokens_exact`, else the rounded mean
  loss_tokens_exact: bool
  expected_loss_tokens: float    # mean loss tokens per clip (equals num_loss_tokens when exact)
  num_motion_kept: int           # encoder 'motion': size K of the MATS kept set; 0 otherwise
  num_finetune_tokens: int       # fine-tuning / inference: tokens kept by motion score (N when keep ratio is 1)
  encoder_ratio: float
  decoder_ratio: float
  motion_keep_ratio: float
  finetune_keep_ratio: float
  camera_motion_compensation: bool
  camera_max_shift: int          # pixels; largest global translation searched between consecutive tubelets

  @property
  def tokens_per_frame(self) -> int:
    return self.grid[1] * self.grid[2]

  @property
  def num_hidden_tokens(self) -> int:
    """Tokens the encoder does not see (N - Ne)."""
    return self.num_tokens - self.num_encoder_tokens

  @property
  def num_decoder_inputs(self) -> int:
    """Decoder sequence length: visible tokens + mask tokens (ViT-B dual masking: 160 + 784 = 944)."""
    return self.num_encoder_tokens + self.num_decoder_tokens

  @property
  def needs_motion_scores(self) -> bool:
    """Whether `sample_masks` needs `motion_scores`."""
    return self.encoder == "motion" or self.decoder == "motion"

  @property
  def uses_motion(self) -> bool:
    """Whether any motion score is computed in pretraining or fine-tuning."""
    return self.needs_motion_scores or self.num_finetune_tokens < self.num_tokens


@functools.lru_cache(maxsize=None)
def running_cell_maps(grid: Tuple[int, int, int], decoder_ratio: float = 0.5) -> np.ndarray:
  """The 4 running-cell decoder masks of the official generator: [4, T', H', W'] bool, True = dropped.

  A 2x2 cell holds the queue [1]*d + [0]*(4-d) with d = 4 * decoder_ratio (d = 2: [1, 1, 0, 0]). Map `offset`
  gives slice t the pointer p = offset + t + 1 and the unit queue[(arange(4) + p) % 4] reshaped 2x2 (row-major),
  tiled over H' x W'. With decoder_ratio 0.5 every position is kept in exactly 2 of any 4 consecutive slices.
  Computed once per (grid, ratio) in numpy; traced code embeds it as a constant and picks one map per clip.
  """
  time, height, width = grid
  num_dropped = int(round(4 * decoder_ratio))
  queue = np.array([1] * num_dropped + [0] * (4 - num_dropped), dtype=bool)
  maps = np.zeros((4, time, height, width), dtype=bool)
  for offset in range(4):
    for t in range(time):
      pointer = offset + t + 1
      unit = queue[(np.arange(4) + pointer) % 4].reshape(2, 2)
      maps[offset, t] = np.tile(unit, (height // 2, width // 2))
  maps.flags.writeable = False   # cached: shared by every caller
  return maps


def masking_plan(masking_cfg: Any, spec: ModelSpec) -> MaskingPlan:
  """Validates `config.masking` against the model grid and fixes every token count.

  Raises ConfigError naming the key to change (and to what) before anything is compiled.
  """
  encoder = config_value(masking_cfg, "encoder", "tube")
  decoder = config_value(masking_cfg, "decoder", "running_cell")
  if encoder not in ENCODER_SCHEMES:
    raise ConfigError(f"config.masking.encoder={encoder!r} is unknown; use one of {ENCODER_SCHEMES}.")
  if decoder not in DECODER_SCHEMES:
    raise ConfigError(f"config.masking.decoder={decoder!r} is unknown; use one of {DECODER_SCHEMES}.")

  def ratio(key, default, low_open=True, high_open=True):
    value = config_value(masking_cfg, key, default)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
      raise ConfigError(f"config.masking.{key}={value!r} must be a number.")
    value = float(value)
    low_ok = value > 0.0 if low_open else value >= 0.0
    high_ok = value < 1.0 if high_open else value <= 1.0
    if not (low_ok and high_ok):
      interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
      raise ConfigError(f"config.masking.{key}={value} must lie in {interval}.")
    return value

  encoder_ratio = ratio("encoder_ratio", 0.9)
  decoder_ratio = ratio("decoder_ratio", 0.5, low_open=False)
  motion_keep_ratio = ratio("motion_keep_ratio", 0.3, high_open=False)
  finetune_keep_ratio = ratio("finetune_keep_ratio", 1.0, high_open=False)
  camera = config_value(masking_cfg, "camera_motion_compensation", False)
  if not isinstance(camera, (bool, np.bool_)):
    raise ConfigError(f"config.masking.camera_motion_compensation={camera!r} must be True or False.")
  camera = bool(camera)
  camera_max_shift = config_value(masking_cfg, "camera_max_shift", 16)
  if (isinstance(camera_max_shift, (bool, np.bool_)) or not isinstance(camera_max_shift, numbers.Integral)
      or camera_max_shift < 0):
    raise ConfigError(f"config.masking.camera_max_shift={camera_max_shift!r} must be an int >= 0 (pixels).")

  time, height, width = spec.grid
  per_frame = height * width
  num_tokens = time * per_frame
  if camera and camera_max_shift >= spec.image_size // 2:
    raise ConfigError(f"config.masking.camera_max_shift={camera_max_shift} must be below half the image size "
                      f"({spec.image_size // 2}); the official pans are a few pixels per tubelet, 16 is plenty.")

  # --- encoder ---
  num_motion_kept = 0
  if encoder == "tube":
    masked_per_frame = _count(encoder_ratio, per_frame)
    if masked_per_frame == 0 or masked_per_frame == per_frame:
      raise ConfigError(
          f"config.masking.encoder_ratio={encoder_ratio} hides {masked_per_frame} of {per_frame} patches per "
          f"slice with tube masking; choose a ratio that hides between 1 and {per_frame - 1} (e.g. 0.9).")
    num_encoder = time * (per_frame - masked_per_frame)
  elif encoder == "random":
    masked = _count(encoder_ratio, num_tokens)
    if masked == 0 or masked == num_tokens:
      raise ConfigError(f"config.masking.encoder_ratio={encoder_ratio} hides {masked} of {num_tokens} tokens; "
                        f"choose a ratio that hides between 1 and {num_tokens - 1} (e.g. 0.9).")
    num_encoder = num_tokens - masked
  else:  # motion
    num_motion_kept = _count(motion_keep_ratio, num_tokens)
    num_encoder = _count(1.0 - encoder_ratio, num_tokens)
    if num_encoder == 0:
      raise ConfigError(f"config.masking.encoder_ratio={encoder_ratio} leaves no visible token of {num_tokens}; "
                        "lower it (MATS uses 0.9).")
    if num_motion_kept <= num_encoder:
      raise ConfigError(
          f"config.masking.motion_keep_ratio={motion_keep_ratio} keeps {num_motion_kept} tokens but the encoder "
          f"alone takes {num_encoder} (1 - encoder_ratio); raise motion_keep_ratio above 1 - encoder_ratio = "
          f"{1.0 - encoder_ratio:.3g} (MATS: 0.3 with encoder_ratio 0.9).")

  num_hidden = num_tokens - num_encoder

  # --- decoder ---
  if decoder == "none":
    num_decoder = num_hidden
    num_loss, exact, expected = num_hidden, True, float(num_hidden)
  elif decoder == "running_cell":
    if encoder == "motion":
      raise ConfigError("config.masking.decoder='running_cell' cannot follow encoder='motion': the motion set picks "
                        "its own reconstruction targets. Set config.masking.decoder='motion' (MATS) or 'none'.")
    if not any(abs(decoder_ratio - r) < 1e-9 for r in RUNNING_CELL_RATIOS):
      raise ConfigError(f"config.masking.decoder_ratio={decoder_ratio} is not supported by the running cell (a 2x2 "
                        f"cell drops a whole number of its 4 patches); use one of {RUNNING_CELL_RATIOS} "
                        "(official: 0.5).")
    if height % 2 or width % 2:
      raise ConfigError(
          f"config.masking.decoder='running_cell' needs an even patch grid, but image_size {spec.image_size} / "
          f"patch {spec.patch_size} gives {height}x{width}; set config.model.image_size to a multiple of "
          f"{2 * spec.patch_size} or config.masking.decoder to 'none' or 'motion'.")
    maps = running_cell_maps(tuple(spec.grid), decoder_ratio)
    kept = ~maps                                         # [4, T', H', W']
    num_decoder = int(kept[0].sum())
    # A visible tube position (the same spatial spot on every slice) costs one loss token per slice in which
    # the cell keeps it; when that number is the same for every spot and every map, the count is exact.
    kept_slices = kept.sum(axis=1)                       # [4, H', W']
    if encoder == "tube":
      visible_per_frame = num_encoder // time
      exact = bool(np.all(kept_slices == kept_slices.flat[0]))
      expected_visible_kept = visible_per_frame * float(kept_slices.mean())
    else:  # random: the overlap with the visible set varies per clip
      exact = False
      expected_visible_kept = num_encoder * num_decoder / num_tokens
    expected = num_decoder - expected_visible_kept
    num_loss = int(round(expected))
  else:  # motion
    if encoder == "motion":
      num_decoder = num_motion_kept - num_encoder
    else:
      num_decoder = _count(1.0 - decoder_ratio, num_hidden)
      if num_decoder == 0:
        raise ConfigError(f"config.masking.decoder_ratio={decoder_ratio} leaves no hidden token to reconstruct "
                          f"(of {num_hidden}); lower it (0.5 matches the running cell's loss count).")
    num_loss, exact, expected = num_decoder, True, float(num_decoder)

  num_finetune = num_tokens if finetune_keep_ratio >= 1.0 else _count(finetune_keep_ratio, num_tokens)
  if num_finetune == 0:
    raise ConfigError(f"config.masking.finetune_keep_ratio={finetune_keep_ratio} keeps no token of {num_tokens}; "
                      "raise it (EVEREST: 0.6) or use 1.0 to keep all.")

  plan = MaskingPlan(
      encoder=encoder, decoder=decoder, grid=tuple(spec.grid), num_tokens=num_tokens,
      num_encoder_tokens=num_encoder, num_decoder_tokens=num_decoder, num_loss_tokens=num_loss,
      loss_tokens_exact=exact, expected_loss_tokens=float(expected), num_motion_kept=num_motion_kept,
      num_finetune_tokens=num_finetune, encoder_ratio=encoder_ratio, decoder_ratio=decoder_ratio,
      motion_keep_ratio=motion_keep_ratio, finetune_keep_ratio=finetune_keep_ratio,
      camera_motion_compensation=camera, camera_max_shift=int(camera_max_shift))
  if camera and not plan.uses_motion:
    raise ConfigError("config.masking.camera_motion_compensation=True has no effect: no motion score is used "
                      "(encoder and decoder are not 'motion' and finetune_keep_ratio is 1.0). Set it to False.")
  if (time < 2) and plan.uses_motion:
    raise ConfigError(f"motion scores need at least 2 tubelets in time, the grid has {time}; raise "
                      "config.model.num_frames or use no motion scheme.")
  return plan


@flax.struct.dataclass
class Masks:
  """One batch of masks. Indices are int32 in sorted raster order; loss_mask is float32 0/1.

  encoder_indices [B, Ne]: tokens the encoder sees.
  decoder_indices [B, Nd]: positions the decoder predicts (its mask tokens).
  loss_mask       [B, Nd]: 1 where the position is hidden from the encoder (and decoder-kept), else 0.
  """
  encoder_indices: jax.Array
  decoder_indices: jax.Array
  loss_mask: jax.Array


def _where(mask: jax.Array, count: int) -> jax.Array:
  """Sorted indices of the first `count` True entries of a 1-D mask (static `count`)."""
  return jnp.nonzero(mask, size=count, fill_value=0)[0].astype(jnp.int32)


def _sorted_top(scores: jax.Array, count: int) -> jax.Array:
  return jnp.sort(motion.top_k_indices(scores, count))


def _sample_one(plan: MaskingPlan, key: jax.Array, scores: Optional[jax.Array]) -> Masks:
  """Masks of one clip; scores [N] float32 or None."""
  num_tokens = plan.num_tokens
  time = plan.grid[0]
  per_frame = plan.tokens_per_frame
  encoder_key, decoder_key = jax.random.split(key)
  targets = None

  if plan.encoder == "tube":
    visible_per_frame = plan.num_encoder_tokens // time
    spatial = _sorted_top(jax.random.uniform(encoder_key, (per_frame,)), visible_per_frame)
    encoder_indices = (jnp.arange(time, dtype=jnp.int32)[:, None] * per_frame + spatial[None]).reshape(-1)
  elif plan.encoder == "random":
    encoder_indices = _sorted_top(jax.random.uniform(encoder_key, (num_tokens,)), plan.num_encoder_tokens)
  else:  # motion: top-K by score, shuffled; the first Ne are visible, the rest are the targets
    kept = motion.top_k_indices(scores, plan.num_motion_kept)
    kept = kept[jax.random.permutation(encoder_key, plan.num_motion_kept)]
    encoder_indices = jnp.sort(kept[:plan.num_encoder_tokens]).astype(jnp.int32)
    targets = jnp.sort(kept[plan.num_encoder_tokens:]).astype(jnp.int32)

  visible = jnp.zeros((num_tokens,), bool).at[encoder_indices].set(True)

  if plan.decoder == "none":
    decoder_indices = _where(~visible, plan.num_decoder_tokens)
  elif plan.decoder == "running_cell":
    maps = jnp.asarray(running_cell_maps(plan.grid, plan.decoder_ratio).reshape(4, num_tokens))
    dropped = maps[jax.random.randint(decoder_key, (), 0, 4)]
    decoder_indices = _where(~dropped, plan.num_decoder_tokens)
  elif targets is not None:  # motion decoder after the motion encoder
    decoder_indices = targets
  else:  # motion decoder after tube/random: the highest-scoring hidden tokens
    hidden_scores = jnp.where(visible, -jnp.inf, scores)
    decoder_indices = _sorted_top(hidden_scores, plan.num_decoder_tokens)

  loss_mask = (~visible[decoder_indices]).astype(jnp.float32)
  return Masks(encoder_indices=encoder_indices, decoder_indices=decoder_indices, loss_mask=loss_mask)


def sample_masks(plan: MaskingPlan, rng: jax.Array, batch_size: int,
                 motion_scores: Optional[jax.Array] = None) -> Masks:
  """Draws one set of masks per clip. Static shapes: [B, Ne], [B, Nd], [B, Nd] from `plan`.

  motion_scores [B, N] float32 (from `videomae_jax.motion`) are required when `plan.needs_motion_scores`.
  Each clip uses its own key (`jax.random.split(rng, batch_size)`) and its own scores only.
  """
  if plan.needs_motion_scores:
    if motion_scores is None:
      raise ValueError(f"masking encoder={plan.encoder!r} / decoder={plan.decoder!r} needs motion_scores [B, N]; "
                       "compute them with videomae_jax.motion (or use sample_masks_for_video).")
    if tuple(motion_scores.shape) != (batch_size, plan.num_tokens):
      raise ValueError(f"motion_scores must be [{batch_size}, {plan.num_tokens}], got {motion_scores.shape}.")
    scores = jnp.asarray(motion_scores, jnp.float32)
  else:
    scores = None
  keys = jax.random.split(rng, batch_size)
  if scores is None:
    return jax.vmap(lambda key: _sample_one(plan, key, None))(keys)
  return jax.vmap(lambda key, s: _sample_one(plan, key, s))(keys, scores)


EmbedFn = Callable[[jax.Array], jax.Array]


def clip_motion_scores(plan: MaskingPlan, video: jax.Array, embed_fn: EmbedFn, spec: ModelSpec) -> jax.Array:
  """[B, T, H, W, 3] normalized clip -> [B, N] motion scores, camera-compensated when the plan says so.

  embed_fn maps a clip to patch embeddings before positions, e.g.
  `lambda v: model.apply(variables, v, method=VideoMAEPretrainModel.patch_embeddings)`.
  """
  if plan.camera_motion_compensation:
    return motion.camera_motion_compensated_scores(video, embed_fn, spec.tubelet_size, spec.patch_size,
                                                   max_shift=plan.camera_max_shift)
  return motion.motion_scores(embed_fn(video), spec.grid)


def sample_masks_for_video(plan: MaskingPlan, rng: jax.Array, video: jax.Array, embed_fn: EmbedFn,
                           spec: ModelSpec) -> Masks:
  """`sample_masks` for a batch of clips, computing motion scores first only when the plan needs them."""
  scores = clip_motion_scores(plan, video, embed_fn, spec) if plan.needs_motion_scores else None
  return sample_masks(plan, rng, video.shape[0], scores)


def finetune_token_indices(plan: MaskingPlan, video: jax.Array, embed_fn: EmbedFn,
                           spec: ModelSpec) -> Optional[jax.Array]:
  """MATS at fine-tuning / inference: [B, num_finetune_tokens] top-motion tokens (sorted), or None to keep all."""
  if plan.num_finetune_tokens >= plan.num_tokens:
    return None
  return motion.select_top_tokens(clip_motion_scores(plan, video, embed_fn, spec), plan.num_finetune_tokens)
