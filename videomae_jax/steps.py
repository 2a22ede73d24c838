"""Pure, jit-able step functions shared by training, `inspect` and the benchmarks.

The train state is a plain pytree: {'step': int32, 'params': ..., 'opt_state': ..., 'rng': key data}. Every random
choice of a step (masks, token selection, stochastic depth) derives from fold_in(state['rng'], step), so a resumed
run draws exactly what an uninterrupted run draws.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from videomae_jax import device_crops, masking, motion, objective
from videomae_jax.data import pipeline
from videomae_jax.models import VideoMAEPretrainModel
from videomae_jax.models.variants import ModelSpec

State = Dict[str, Any]
Batch = Dict[str, jax.Array]


def normalize_video(video: jax.Array) -> jax.Array:
  """uint8 [..., 3] in [0, 255] -> ImageNet-normalized float32 (the pipeline's `normalize`, on device). Float
  input is taken as already normalized."""
  if video.dtype != jnp.uint8:
    return video.astype(jnp.float32)
  return pipeline.normalize(video)


@dataclasses.dataclass(frozen=True)
class PretrainTask:
  """Everything static about a pretraining step: the model spec and the masking plan (token counts)."""
  spec: ModelSpec
  plan: masking.MaskingPlan
  # MATS adaptive frame selection: clips arrive with this many candidate frames (about 1.5x num_frames) and the
  # step keeps num_frames of them, in time order, weighted by their count of high-motion tokens. 0: off.
  candidate_frames: int = 0
  # VideoMAE's per-tubelet normalized targets (the official objective); False: raw pixels (VideoMAE's
  # --normlize_target False), easier to read in a reconstruction picture.
  normalize_targets: bool = True
  # Crops cut on the device (config.data.crop_on_device): batches hold B / R decoded clips in a canvas of
  # crop_canvas = (height, width) and R crop boxes each (videomae_jax.device_crops); 0: ready views.
  crops_per_clip: int = 0
  crop_canvas: Tuple[int, int] = (0, 0)

  @property
  def model(self) -> VideoMAEPretrainModel:
    return VideoMAEPretrainModel(self.spec)

  def example_inputs(self, batch_size: int):
    spec = self.spec
    video = jnp.zeros((batch_size, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
    encoder_indices = jnp.zeros((batch_size, self.plan.num_encoder_tokens), jnp.int32)
    decoder_indices = jnp.zeros((batch_size, self.plan.num_decoder_tokens), jnp.int32)
    return video, encoder_indices, decoder_indices

  def init_params(self, rng: jax.Array) -> Any:
    return self.model.init(rng, *self.example_inputs(1))["params"]

  def embed_fn(self, params: Any) -> Callable[[jax.Array], jax.Array]:
    """Clip -> tubelet embeddings with the model's own patch embedding, without gradient (MATS scores)."""
    frozen = jax.lax.stop_gradient(params)
    return lambda video: self.model.apply({"params": frozen}, video,
                                          method=VideoMAEPretrainModel.patch_embeddings).astype(jnp.float32)

  def abstract_batch(self, batch_size: int, sharding=None) -> Dict[str, jax.ShapeDtypeStruct]:
    """The batch of `batch_size` samples (views, counting repeated augmentation) the step takes."""
    spec = self.spec
    frames = self.candidate_frames or spec.num_frames
    if self.crops_per_clip:
      clips = batch_size // self.crops_per_clip
      height, width = self.crop_canvas
      return {"video": jax.ShapeDtypeStruct((clips, frames, height, width, 3), jnp.uint8, sharding=sharding),
              "crops": jax.ShapeDtypeStruct((clips, self.crops_per_clip, len(device_crops.CROP_FIELDS)),
                                            jnp.int32, sharding=sharding)}
    return {"video": jax.ShapeDtypeStruct((batch_size, frames, spec.image_size, spec.image_size, 3),
                                          jnp.uint8, sharding=sharding)}

  def loss(self, params: Any, batch: Batch, rng: jax.Array, train: bool = True):
    """batch['video'] [B, T, H, W, 3] (uint8, or float already normalized) -> (scalar loss, aux metrics).

    With batch['crops'] (crops on the device), batch['video'] is [B / R, T, Hc, Wc, 3] uint8 clips and the
    views are cut here first.
    """
    video = batch["video"]
    if "crops" in batch:
      video = device_crops.crop_resize(video, batch["crops"], self.spec.image_size)
    video = normalize_video(video)
    mask_rng, dropout_rng, frame_rng = jax.random.split(rng, 3)
    if self.candidate_frames:
      video, _ = motion.adaptive_frame_selection(
          frame_rng, video, self.embed_fn(params), tubelet_size=self.spec.tubelet_size,
          patch_size=self.spec.patch_size, num_frames=self.spec.num_frames, keep_ratio=self.plan.motion_keep_ratio,
          camera_motion_compensation=self.plan.camera_motion_compensation, max_shift=self.plan.camera_max_shift)
    masks = masking.sample_masks_for_video(self.plan, mask_rng, video, self.embed_fn(params), self.spec)
    return objective.pretrain_loss(self.model, {"params": params}, video, masks, self.spec, train=train,
                                   rngs={"dropout": dropout_rng}, normalize_targets=self.normalize_targets)


def step_rng(state: State) -> jax.Array:
  return jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])


def make_train_step(task: Any, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule) -> Callable[[State, Batch], Tuple[State, Dict]]:
  """(state, batch) -> (state, metrics) for any task with `loss(params, batch, rng, train)`."""
  def train_step(state: State, batch: Batch):
    grad_fn = jax.value_and_grad(lambda p: task.loss(p, batch, step_rng(state), True), has_aux=True)
    (loss, aux), grads = grad_fn(state["params"])
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"train/loss": loss, "train/grad_norm": optax.global_norm(grads),
               "train/lr": schedule(state["step"]), **{f"train/{k}": v for k, v in aux.items()}}
    new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return train_step


def init_train_state(task: Any, optimizer: optax.GradientTransformation, seed: int) -> State:
  """Deterministic from `seed`; run under jax.jit(out_shardings=...) to create the state already sharded."""
  init_rng, step_key = jax.random.split(jax.random.key(seed))
  params = task.init_params(init_rng)
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params),
          "rng": jax.random.key_data(step_key)}
