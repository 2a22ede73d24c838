r"""Knowledge distillation of a video classifier from a frozen teacher classifier (the 'distill' task).

The VideoMAE V2 ViT-S and ViT-B that people deploy were distilled from the K710-fine-tuned ViT-g (VideoMAE V2 paper,
appendix; the official repository never released that code) with the "patient and consistent" recipe of Beyer et
al. 2022 ("Knowledge distillation: A good teacher is patient and consistent"): the student matches the teacher's
tempered softmax on exactly the views it sees itself, over a long schedule with strong augmentation.

  batch   {'video': uint8 [B, T, S, S, 3] (fine-tuning's host augmentation), 'label': int32 [B]}. The loss never
          reads the labels (-1 marks an unlabeled video), so sources without labels can be mixed in: the teacher
          labels them (input mode 'distill' of videomae_jax.data.pipeline). The metric is `agreement`: how often
          the student's top class is the teacher's.
  frozen  the teacher's params: an argument of the compiled step beside the train state (videomae_jax.train_step),
          so it gets no gradient and no optimizer state and is not in the checkpoints, which hold the student alone
          (`tools.evaluate` and the converters read them as any classifier). Kernels are held in the teacher's
          compute dtype (config.distill.teacher_model.compute_dtype, bfloat16 by default: half the memory and exactly
          the values its matmuls would cast them to), vectors in float32. Laid out by the same
          config.sharding_rules as the student, so a ViT-g teacher is FSDP-sharded when config.mesh.fsdp > 1.
  loss    normalize -> random erasing -> one mixup / cutmix draw for the batch, applied ONCE to the clips that both
          models see -> teacher (eval mode, no drop path, its compute dtype, stop_gradient) and student (train mode)
          -> T^2 * KL(softmax(teacher / T) || softmax(student / T)) per clip, averaged over the batch.
  MATS    the student keeps config.masking.finetune_keep_ratio of its tokens (as it will at test time), the teacher
          config.distill.teacher_keep_ratio of its own. Where both cut the clip into the same token grid (same patch
          and tubelet size) the motion scores are computed once, with the student's patch embedding, and both keep
          the top of that one ranking: the same kept set when the ratios are equal, nested sets otherwise. A teacher
          of another patch size (ViT-g/14 for a ViT-B/16 student) ranks its own tokens with its own embedding.

Why T^2: the gradient of KL(p_t^T || p_s^T) with respect to the student's logits is (p_s^T - p_t^T) / T, and for
large T its size falls as 1 / T^2 (Hinton et al. 2015); the factor keeps the step size of a temperature-3 loss
comparable to a cross-entropy's. It is also what big_vision's distillation trainer (the code of Beyer et al.) uses:
its 'kl' distance is t**2 * KL at temperature t. With AdamW a constant factor changes little, except against the
recipe's gradient clipping (1.0), which sees the scaled gradient.

Precomputed teacher logits are not offered: the recipe's point is consistency, the teacher seeing the student's
own randomly augmented and mixed clip, which a fixed stored view cannot give.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from videomae_jax import masking, motion
from videomae_jax.convert import params_io
from videomae_jax.errors import ConfigError
from videomae_jax.models import layer_stacking
from videomae_jax.models.classifier import VideoClassifier
from videomae_jax.models.variants import ModelSpec, model_spec_from_config
from videomae_jax.models.vit import VideoViTEncoder, dtype_of
from videomae_jax.normalization import normalize
from videomae_jax.tasks.base import Batch
from videomae_jax.tasks.classify import ClassificationTask, finetune_masking_plan

# The architecture fields a teacher checkpoint must share with config.distill.teacher_model.
ARCHITECTURE_FIELDS = ("width", "depth", "num_heads", "mlp_dim", "patch_size", "tubelet_size", "num_classes")


def tempered_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
  """[B, C] logits -> [B] T^2 * KL(softmax(teacher / T) || softmax(student / T)), in float32."""
  t = float(temperature)
  log_teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  return t * t * jnp.sum(jnp.exp(log_teacher) * (log_teacher - log_student), axis=-1)


def held_dtypes(params: Any, compute_dtype: str) -> Any:
  """Kernels (every Dense / Conv weight) cast to the compute dtype, everything else (LayerNorm, biases) float32."""
  dtype = dtype_of(compute_dtype)

  def cast(path, leaf):
    name = getattr(path[-1], "key", str(path[-1]))
    return leaf.astype(dtype if name == "kernel" else jnp.float32)
  return jax.tree_util.tree_map_with_path(cast, params)


def teacher_spec_from_config(config: Any, student: ModelSpec) -> ModelSpec:
  """config.distill.teacher_model as the teacher's ModelSpec for a forward without gradient (no remat, no drop
  path, no dropout); its clips are the student's, so frames and size must match."""
  spec = model_spec_from_config(config.distill.teacher_model)
  for name in ("num_frames", "image_size"):
    if getattr(spec, name) != getattr(student, name):
      raise ConfigError(f"config.distill.teacher_model.{name}={getattr(spec, name)} but config.model.{name}="
                        f"{getattr(student, name)}: the teacher sees the student's clips; set it to "
                        f"{getattr(student, name)}.")
  if spec.num_classes != student.num_classes:
    raise ConfigError(f"config.distill.teacher_model.num_classes={spec.num_classes} but config.model.num_classes="
                      f"{student.num_classes}: the loss compares the two softmaxes class by class; set both to the "
                      "teacher's class count.")
  return dataclasses.replace(spec, remat_policy="none", drop_path_rate=0.0, head_dropout_rate=0.0)


@dataclasses.dataclass(frozen=True)
class DistillationTask(ClassificationTask):
  """The student is this ClassificationTask's classifier (`spec`, `plan`, mixup, random erasing); the teacher is
  described by the fields below. All fields are Python values (hashable)."""
  teacher_spec: ModelSpec = None
  teacher_plan: masking.MaskingPlan = None
  temperature: float = 3.0
  teacher_path: str = ""                      # config.distill.teacher, read by load_frozen

  input_mode = "distill"

  @classmethod
  def from_config(cls, config: Any) -> "DistillationTask":
    student = ClassificationTask.from_config(config)
    teacher_spec = teacher_spec_from_config(config, student.spec)
    temperature = float(config.distill.temperature)
    if not temperature > 0:
      raise ConfigError(f"config.distill.temperature={temperature} must be > 0 (VideoMAE V2's distillation: 3.0).")
    teacher_masking = dict(config.masking.to_dict(), finetune_keep_ratio=float(config.distill.teacher_keep_ratio))
    try:
      teacher_plan = finetune_masking_plan(teacher_masking, teacher_spec)
    except ConfigError as error:
      raise ConfigError(f"config.distill.teacher_keep_ratio: {error}") from None
    fields = {field.name: getattr(student, field.name) for field in dataclasses.fields(ClassificationTask)}
    return cls(**fields, teacher_spec=teacher_spec, teacher_plan=teacher_plan, temperature=temperature,
               teacher_path=str(config.distill.teacher or ""))

  # --- the teacher -------------------------------------------------------------------------------------------
  @property
  def teacher(self) -> VideoClassifier:
    return VideoClassifier(self.teacher_spec)

  @property
  def shares_token_grid(self) -> bool:
    """Whether teacher and student cut a clip into the same tokens (then one motion ranking serves both)."""
    return (self.teacher_spec.patch_size, self.teacher_spec.tubelet_size) == (self.spec.patch_size,
                                                                              self.spec.tubelet_size)

  def init_frozen(self, rng: jax.Array) -> Any:
    spec = self.teacher_spec
    video = jnp.zeros((1, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
    return held_dtypes(self.teacher.init(rng, video)["params"], spec.compute_dtype)

  def load_frozen(self) -> Any:
    """The teacher of config.distill.teacher (any classifier params_io.load_params reads: a workdir, a checkpoint,
    a params export of converted official weights), checked against config.distill.teacher_model."""
    path = self.teacher_path
    if not path:
      raise ConfigError("config.distill.teacher is empty: set it to the teacher classifier (a fine-tuning workdir, "
                        "a checkpoint or a params export, e.g. from python -m videomae_jax.tools.from_pytorch).")
    try:
      loaded = params_io.load_params(path)
    except (FileNotFoundError, ValueError) as error:
      raise ConfigError(f"config.distill.teacher={path!r} cannot be read: {error}") from None
    if loaded.kind != "classifier":
      raise ConfigError(f"config.distill.teacher={path!r} holds {loaded.kind} parameters; the teacher must be a "
                        "classifier (a fine-tuned model with its head).")
    if loaded.model_config is not None:
      found = model_spec_from_config(loaded.model_config)
      wrong = [f"{name} {getattr(found, name)} (config: {getattr(self.teacher_spec, name)})"
               for name in ARCHITECTURE_FIELDS if getattr(found, name) != getattr(self.teacher_spec, name)]
      if wrong:
        raise ConfigError(f"config.distill.teacher={path!r} is not the model config.distill.teacher_model "
                          f"describes: {', '.join(wrong)}. Set config.distill.teacher_model to the teacher's "
                          "architecture.")
    params = loaded.params
    if self.teacher_spec.scan_layers:
      params = layer_stacking.stack_layers(params)
    target = jax.eval_shape(self.init_frozen, jax.random.key(0))
    leaves, _ = params_io.fit_params(
        params, target, f"config.distill.teacher={path!r} does not fit config.distill.teacher_model")
    return jax.tree.unflatten(jax.tree.structure(target), leaves)

  def teacher_embed_fn(self, frozen: Any):
    """Clip -> the teacher's own patch embeddings [B, N_t, D_t] in float32 (its MATS scores)."""
    encoder = VideoViTEncoder(dataclasses.replace(self.teacher_spec, compute_dtype="float32"), use_final_norm=False)
    return lambda video: encoder.apply({"params": frozen["encoder"]}, video,
                                       method=VideoViTEncoder.embed_patches).astype(jnp.float32)

  def kept_tokens(self, params: Any, frozen: Any,
                  video: jax.Array) -> Tuple[Optional[jax.Array], Optional[jax.Array]]:
    """(student's, teacher's) MATS token indices of a normalized clip batch; None where a model keeps all."""
    plans = (self.plan, self.teacher_plan)
    if self.shares_token_grid and any(plan.num_finetune_tokens < plan.num_tokens for plan in plans):
      scores = masking.clip_motion_scores(self.plan, video, self.embed_fn(params), self.spec)
      student, teacher = (motion.select_top_tokens(scores, plan.num_finetune_tokens)
                          if plan.num_finetune_tokens < plan.num_tokens else None for plan in plans)
      return student, teacher
    teacher = masking.finetune_token_indices(self.teacher_plan, video, self.teacher_embed_fn(frozen),
                                             self.teacher_spec)
    return self.keep_indices(params, video), teacher

  def teacher_logits(self, frozen: Any, video: jax.Array, keep: Optional[jax.Array]) -> jax.Array:
    """Normalized clips -> the teacher's logits [B, C] float32: eval mode, no gradient."""
    return jax.lax.stop_gradient(self.teacher.apply({"params": frozen}, video, keep, train=False))

  # --- training ----------------------------------------------------------------------------------------------
  def loss(self, params: Any, batch: Batch, rng: jax.Array, train: bool = True,
           frozen: Any = None) -> Tuple[jax.Array, Dict]:
    """batch {'video', 'label'} and the teacher's params `frozen` -> (mean tempered KL, aux metrics)."""
    if frozen is None:
      raise ValueError("the distillation loss needs the teacher's params: loss(..., frozen=teacher_params).")
    video = normalize(batch["video"])
    labels = batch["label"].astype(jnp.int32)
    # The classification task's split, so a distillation run draws the augmentation of a fine-tuning run.
    erase_rng, mix_rng, dropout_rng = jax.random.split(rng, 3)
    aux = {}
    if train:
      # Consistent teaching: one augmentation of the batch, and both models look at its result.
      video, _, aux["mix_lambda"] = self.augment(erase_rng, mix_rng, video, labels)
    student_keep, teacher_keep = self.kept_tokens(params, frozen, video)
    teacher = self.teacher_logits(frozen, video, teacher_keep)
    student = self.model.apply({"params": params}, video, student_keep, train=train, rngs={"dropout": dropout_rng})
    loss = jnp.mean(tempered_kl(student, teacher, self.temperature))
    # How often the student's top class is the teacher's. (No accuracy against labels: a batch of unlabeled clips
    # has none, and a per-step ratio over a varying number of labeled clips would average into nonsense.)
    aux["agreement"] = jnp.mean((jnp.argmax(student, axis=-1) == jnp.argmax(teacher, axis=-1)).astype(jnp.float32))
    return loss, aux

  def for_flop_count(self) -> "DistillationTask":
    return dataclasses.replace(super().for_flop_count(),
                               teacher_spec=dataclasses.replace(self.teacher_spec, scan_layers=False,
                                                                attention_impl="xla"))


TASK = DistillationTask
