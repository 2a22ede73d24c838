"""Masked video pretraining: VideoMAE V2 dual masking, MATS / EVEREST motion-aware selection and our variants.

  batch  {'video': uint8 [B, T, S, S, 3]}   ready views, or with crops on the device (config.data.crop_on_device)
         {'video': uint8 [B / R, T, Hc, Wc, 3], 'crops': int32 [B / R, R, 6]}   decoded clips in a canvas + R boxes
  loss   cut the views (videomae_jax.device_crops) -> normalize -> [adaptive frame selection] -> masks
         (videomae_jax.masking, motion scores from the model's own patch embedding) -> VideoMAEPretrainModel ->
         MSE on the loss tokens (videomae_jax.objective)
Every random draw of a step comes from the step's rng, so a resumed run draws exactly what it would have drawn.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp

from videomae_jax import device_crops, masking, motion, objective
from videomae_jax.errors import ConfigError
from videomae_jax.models import VideoMAEPretrainModel, model_spec_from_config
from videomae_jax.normalization import normalize
from videomae_jax.tasks.base import Batch, Task


@dataclasses.dataclass(frozen=True)
class PretrainTask(Task):
  """The model spec and the masking plan (every token count) of a pretraining step."""
  plan: masking.MaskingPlan = None
  # MATS adaptive frame selection: clips arrive with this many candidate frames (about 1.5x num_frames) and the
  # step keeps num_frames of them, in time order, weighted by their count of high-motion tokens. 0: off.
  candidate_frames: int = 0
  # VideoMAE's per-tubelet normalized targets (the official objective); False: raw pixels (VideoMAE's
  # --normlize_target False), easier to read in a reconstruction picture.
  normalize_targets: bool = True
  # Crops cut on the device: batches hold B / R decoded clips in a canvas of crop_canvas = (height, width) and R
  # crop boxes each; 0: ready views.
  crops_per_clip: int = 0
  crop_canvas: Tuple[int, int] = (0, 0)
  transposed_clips: bool = False  # config.data.transpose_to_canvas: some clips ride transposed in the canvas

  input_mode = "pretrain"
  params_kind = "pretrain"

  @classmethod
  def from_config(cls, config: Any) -> "PretrainTask":
    spec = model_spec_from_config(config.model)
    plan = masking.masking_plan(config.masking, spec)
    candidates = int(config.data.num_candidate_frames or 0)
    if candidates and (candidates % spec.tubelet_size or candidates <= spec.num_frames):
      raise ConfigError(f"config.data.num_candidate_frames={candidates} must be a multiple of the tubelet size "
                        f"{spec.tubelet_size} above config.model.num_frames={spec.num_frames} (about 1.5x: "
                        f"{spec.tubelet_size * round(1.5 * spec.num_frames / spec.tubelet_size)}), or 0 for off.")
    crops_per_clip, canvas = 0, (0, 0)
    if config.data.crop_on_device:
      crops_per_clip = int(config.data.repeated_aug)
      canvas = tuple(int(v) for v in config.data.crop_canvas)
      if len(canvas) != 2 or min(canvas) <= 0:
        raise ConfigError(f"config.data.crop_canvas={canvas}: crops on the device need the canvas (height, width) "
                          "the clips are shipped in. videomae_jax.resolve.resolve(config) reads it from the "
                          "shards; or set it, or config.data.crop_on_device=False.")
    return cls(spec=spec, plan=plan, candidate_frames=candidates,
               normalize_targets=bool(config.objective.normalize_targets), crops_per_clip=crops_per_clip,
               crop_canvas=canvas, transposed_clips=config.data.transpose_to_canvas == "yes")

  @property
  def model(self) -> VideoMAEPretrainModel:
    return VideoMAEPretrainModel(self.spec)

  def init_params(self, rng: jax.Array) -> Any:
    spec = self.spec
    video = jnp.zeros((1, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
    encoder_indices = jnp.zeros((1, self.plan.num_encoder_tokens), jnp.int32)
    decoder_indices = jnp.zeros((1, self.plan.num_decoder_tokens), jnp.int32)
    return self.model.init(rng, video, encoder_indices, decoder_indices)["params"]

  def embed_fn(self, params: Any) -> Callable[[jax.Array], jax.Array]:
    """Clip -> tubelet embeddings with the model's own patch embedding, without gradient (MATS scores), in
    float32 whatever the compute dtype, as EVEREST scores (bfloat16 changes about 1.5% of the selected tokens)."""
    frozen = jax.lax.stop_gradient(params)
    scorer = VideoMAEPretrainModel(dataclasses.replace(self.spec, compute_dtype="float32"))
    return lambda video: scorer.apply({"params": frozen}, video, method=VideoMAEPretrainModel.patch_embeddings)

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
    """batch['video'] [B, T, H, W, 3] (uint8, or float already normalized) -> (scalar loss, aux metrics)."""
    video = batch["video"]
    if "crops" in batch:
      video = device_crops.crop_resize(video, batch["crops"], self.spec.image_size, self.transposed_clips)
    video = normalize(video)
    mask_rng, dropout_rng, frame_rng = jax.random.split(rng, 3)
    if self.candidate_frames:
      video, _ = motion.adaptive_frame_selection(
          frame_rng, video, self.embed_fn(params), tubelet_size=self.spec.tubelet_size,
          patch_size=self.spec.patch_size, num_frames=self.spec.num_frames, keep_ratio=self.plan.motion_keep_ratio,
          camera_motion_compensation=self.plan.camera_motion_compensation, max_shift=self.plan.camera_max_shift)
    masks = masking.sample_masks_for_video(self.plan, mask_rng, video, self.embed_fn(params), self.spec)
    loss, aux = objective.pretrain_loss(self.model, {"params": params}, video, masks, self.spec, train=train,
                                        rngs={"dropout": dropout_rng}, normalize_targets=self.normalize_targets)
    if self.plan.loss_tokens_exact:
      del aux["loss_tokens_per_clip"]  # a constant
      if self.plan.num_loss_tokens == self.plan.num_decoder_tokens:
        del aux["mse_all_decoder_tokens"]  # every decoder token carries loss: the loss itself
    return loss, aux

  def for_flop_count(self) -> "PretrainTask":
    # Crops cut on the device are input processing (like decoding), not model work.
    return dataclasses.replace(super().for_flop_count(), crops_per_clip=0, crop_canvas=(0, 0))

  def check_batch_size(self, batch_size: int, num_devices: int) -> None:
    if self.crops_per_clip and (batch_size % self.crops_per_clip or (batch_size // self.crops_per_clip)
                                % num_devices):
      raise ConfigError(
          f"config.data.crop_on_device=True ships batch_size / repeated_aug = {batch_size / self.crops_per_clip:g} "
          f"decoded clips per step, which the {num_devices} devices cannot split evenly: use a batch_size that "
          f"is a multiple of {num_devices * self.crops_per_clip} (devices x repeated_aug), or "
          "config.data.crop_on_device=False.")
    super().check_batch_size(batch_size, num_devices)


TASK = PretrainTask
