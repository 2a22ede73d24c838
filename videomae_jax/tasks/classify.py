r"""Supervised fine-tuning and post-pretraining of the video classifier (the 'classify' task).

  batch   {'video': uint8 [B, T, S, S, 3] (augmented on the host: RandAugment, random resized crop, flip),
           'label': int32 [B]}
  loss    normalize -> random erasing (config.augment.random_erasing, on device) -> mixup / cutmix with label
          smoothing (config.mixup, one draw per batch) -> MATS token keeping (config.masking.finetune_keep_ratio:
          the top int(r * N) tokens by motion score of the clip the model sees, deterministic) -> VideoClassifier
          (stochastic depth config.model.drop_path_rate) -> soft-target cross-entropy.
  predict the same forward without augmentation, as softmax probabilities (videomae_jax.evaluation averages them
          over views; each view selects its own MATS tokens).
Layer-wise lr decay (config.optimizer.layer_decay) lives in videomae_jax.optim.

Initialization (`adapt_loaded_params`, config.init_from): a pretraining checkpoint or an encoder export gives its
`encoder` minus the final `norm` (the fine-tuning model mean-pools into `fc_norm`, as the official fine-tuning
does); `fc_norm` comes from the file where it has one (the hub's encoders), the head is fresh (N(0, 0.02) x
config.model.head_init_scale). A classifier checkpoint gives everything; its head is kept when the
class count matches, re-indexed through config.head_label_map when one is set (progressive training: a K710 head
-> K400 by `label_710to400.json`), and fresh otherwise.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax import label_transfer, masking, mixup
from videomae_jax.augment.random_erasing import random_erasing
from videomae_jax.errors import ConfigError
from videomae_jax.models.classifier import VideoClassifier, scaled_init
from videomae_jax.models.variants import ModelSpec, model_spec_from_config
from videomae_jax.models.vit import NORMAL_002, VideoViTEncoder
from videomae_jax.normalization import normalize
from videomae_jax.tasks.base import Batch, Task


def finetune_masking_plan(masking_cfg: Any, spec: ModelSpec) -> masking.MaskingPlan:
  """The plan of the fine-tuning fields of config.masking only (keep ratio, camera compensation).

  The pretraining encoder/decoder schemes do not apply here, so their checks (e.g. the running cell's even grid)
  must not reject a fine-tuning resolution such as 266 px / patch 14.
  """
  keys = ("finetune_keep_ratio", "camera_motion_compensation", "camera_max_shift")
  return masking.masking_plan(dict(encoder="random", decoder="none", encoder_ratio=0.5,
                                   **{key: masking_cfg[key] for key in keys if key in masking_cfg}), spec)


@dataclasses.dataclass(frozen=True)
class ClassificationTask(Task):
  """Static description of a fine-tuning step. All fields are Python values (hashable)."""
  plan: masking.MaskingPlan = None
  mixup: mixup.MixupConfig = mixup.MixupConfig()
  random_erasing: float = 0.25
  mixup_groups: int = 1                       # mix inside this many contiguous batch groups (one per device)
  head_label_map: str = ""                    # JSON list: target class i <- row map[i] of the loaded head

  input_mode = "finetune"
  params_kind = "classifier"

  @classmethod
  def from_config(cls, config: Any) -> "ClassificationTask":
    spec = model_spec_from_config(config.model)
    if spec.num_classes <= 0:
      raise ConfigError("config.model.num_classes must be set (> 0) to train a classifier (e.g. 400 for K400, "
                        "710 for K710 post-pretraining, 174 for SSv2).")
    plan = finetune_masking_plan(config.masking, spec)
    erasing = float(config.augment.random_erasing)
    if not 0.0 <= erasing <= 1.0:
      raise ConfigError(f"config.augment.random_erasing={erasing} must lie in [0, 1] (official: 0.25).")
    try:
      mix = mixup.MixupConfig.from_config(config.mixup)
    except ValueError as error:
      raise ConfigError(str(error)) from None
    groups = int(config.mixup_groups or 0) or jax.device_count()
    if config.batch_size % groups:
      groups = 1
    if mix.enabled and (config.batch_size // groups) % 2:
      raise ConfigError(f"mixup pairs clip i with clip B-1-i on each device, so the per-device batch "
                        f"{config.batch_size // groups} must be even; change config.batch_size or set "
                        "config.mixup.prob=0.")
    return cls(spec=spec, plan=plan, mixup=mix, random_erasing=erasing, mixup_groups=groups,
               head_label_map=str(config.head_label_map or ""))

  # --- model -------------------------------------------------------------------------------------------------
  @property
  def model(self) -> VideoClassifier:
    return VideoClassifier(self.spec)

  @property
  def num_classes(self) -> int:
    return self.spec.num_classes

  def init_params(self, rng: jax.Array) -> Any:
    spec = self.spec
    video = jnp.zeros((1, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
    return self.model.init(rng, video)["params"]

  def abstract_batch(self, batch_size: int, sharding=None) -> Dict[str, jax.ShapeDtypeStruct]:
    spec = self.spec
    return {"video": jax.ShapeDtypeStruct((batch_size, spec.num_frames, spec.image_size, spec.image_size, 3),
                                          jnp.uint8, sharding=sharding),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding)}

  def embed_fn(self, params: Any):
    """Clip -> patch embeddings [B, N, D] with the classifier's own (frozen) patch embedding: MATS scores, in
    float32 whatever the compute dtype (bfloat16 embeddings change about 1.5% of the kept tokens)."""
    frozen = jax.lax.stop_gradient(params["encoder"])
    encoder = VideoViTEncoder(dataclasses.replace(self.spec, compute_dtype="float32"), use_final_norm=False)
    return lambda video: encoder.apply({"params": frozen}, video,
                                       method=VideoViTEncoder.embed_patches).astype(jnp.float32)

  def keep_indices(self, params: Any, video: jax.Array) -> Optional[jax.Array]:
    """[B, num_finetune_tokens] top-motion tokens of each clip (sorted), or None when every token is kept."""
    return masking.finetune_token_indices(self.plan, video, self.embed_fn(params), self.spec)

  def logits(self, params: Any, video: jax.Array, *, train: bool = False,
             rng: Optional[jax.Array] = None) -> jax.Array:
    """Normalized (or uint8) video [B, T, S, S, 3] -> logits [B, C] float32, MATS keeping applied."""
    video = normalize(video)
    rngs = {"dropout": rng} if (train and rng is not None) else None
    return self.model.apply({"params": params}, video, self.keep_indices(params, video), train=train, rngs=rngs)

  def predict(self, params: Any, video: jax.Array) -> jax.Array:
    """uint8 video [B, T, S, S, 3] -> class probabilities [B, C] float32 (softmax of the eval-mode logits)."""
    return jax.nn.softmax(self.logits(params, video, train=False), axis=-1)

  # --- training ----------------------------------------------------------------------------------------------
  def augment(self, erase_rng: jax.Array, mix_rng: jax.Array, video: jax.Array,
              labels: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """The device-side augmentation of a normalized batch: random erasing, then one mixup / cutmix draw for the
    whole batch. Returns (clips, mixed soft targets [B, C], the mixing weight lambda)."""
    video = random_erasing(erase_rng, video, self.random_erasing)
    video, targets, mix_params = mixup.mixup_batch(mix_rng, video, labels, self.num_classes, self.mixup,
                                                   self.mixup_groups)
    return video, targets, mix_params.lam

  def loss(self, params: Any, batch: Batch, rng: jax.Array, train: bool = True) -> Tuple[jax.Array, Dict]:
    """batch {'video' [B, T, S, S, 3], 'label' [B]} -> (mean soft-target cross-entropy, aux metrics)."""
    video = normalize(batch["video"])
    labels = batch["label"].astype(jnp.int32)
    erase_rng, mix_rng, dropout_rng = jax.random.split(rng, 3)
    aux = {}
    if train:
      video, targets, aux["mix_lambda"] = self.augment(erase_rng, mix_rng, video, labels)
    else:
      targets = jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
    logits = self.model.apply({"params": params}, video, self.keep_indices(params, video), train=train,
                              rngs={"dropout": dropout_rng})
    loss = jnp.mean(mixup.soft_target_cross_entropy(logits, targets))
    aux["accuracy"] = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, aux

  # --- initialization from a checkpoint ----------------------------------------------------------------------
  def fresh_head(self, seed: int = 0) -> Dict[str, Any]:
    """{'fc_norm', 'head'} as the model initializes them: LN 1/0, head N(0, 0.02) * init_scale, bias 0."""
    spec = self.spec
    kernel = scaled_init(NORMAL_002, spec.head_init_scale)(jax.random.key(seed), (spec.width, spec.num_classes))
    return {"fc_norm": {"scale": np.ones((spec.width,), np.float32), "bias": np.zeros((spec.width,), np.float32)},
            "head": {"kernel": np.asarray(kernel, np.float32),
                     "bias": np.zeros((spec.num_classes,), np.float32)}}

  def adapt_loaded_params(self, loaded: Any, seed: int = 0) -> Dict[str, Any]:
    """A params_io.LoadedParams (any kind: pretraining, encoder, classifier; per-layer numpy) -> this
    classifier's per-layer tree.

    See the module docstring for what is kept and what is fresh. Raises ConfigError when the encoder does not fit.
    """
    source = loaded.params
    if "encoder" not in source:
      raise ConfigError(f"config.init_from={loaded.path!r} holds no 'encoder' (top-level keys {sorted(source)}).")
    encoder = {key: value for key, value in source["encoder"].items() if key != "norm"}
    out = {"encoder": encoder, **self.fresh_head(seed)}
    if "fc_norm" in source:  # a classifier's, or an encoder's that was saved with it (the hub's)
      out["fc_norm"] = {k: np.asarray(v, np.float32) for k, v in source["fc_norm"].items()}
    if "head" not in source:
      if self.head_label_map:
        raise ConfigError(f"config.head_label_map={self.head_label_map!r} re-indexes a classifier head, but "
                          f"{loaded.path!r} holds {loaded.kind} parameters without one; unset head_label_map.")
      return out
    source_classes = int(np.shape(source["head"]["bias"])[0])
    if self.head_label_map:
      label_map = label_transfer.load_label_map(self.head_label_map)
      out["head"] = label_transfer.select_head_rows(source["head"], label_map)
      if len(label_map) != self.num_classes:
        raise ConfigError(f"config.head_label_map={self.head_label_map!r} has {len(label_map)} entries but "
                          f"config.model.num_classes={self.num_classes}.")
    elif source_classes == self.num_classes:
      out["head"] = {k: np.asarray(v, np.float32) for k, v in source["head"].items()}
    else:
      logging.warning("%s has a %d-class head, this model has %d classes and no config.head_label_map: the head "
                      "starts fresh (encoder and fc_norm are loaded).", loaded.path, source_classes,
                      self.num_classes)
    return out

  def for_flop_count(self) -> "ClassificationTask":
    return dataclasses.replace(super().for_flop_count(), mixup_groups=1)


TASK = ClassificationTask
