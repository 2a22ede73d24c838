r"""Plan a run before paying for it: memory per device, FLOPs, time, and a mesh that fits.

It knows the steps of the built-in tasks: pretraining (encoder + decoder), a classifier's fine-tuning, and
distillation (the classifier's step plus a frozen teacher's forward, whose parameters and working set it adds).

The library behind `python -m videomae_jax.tools.plan`. Nothing is compiled (unless flops='xla').

The method (what each memory part counts, how FLOPs are counted, what the fit test keeps) is in docs/planning.md;
tests/test_plan.py checks the estimate against XLA's memory analysis of the real compiled step on CPU.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from videomae_jax import hardware, masking, optim, sharding, tasks, train_step
from videomae_jax.errors import ConfigError
from videomae_jax.models.variants import ModelSpec
from videomae_jax.tasks.classify import ClassificationTask
from videomae_jax.tasks.distill import DistillationTask
from videomae_jax.tasks.pretrain import PretrainTask

GIB = 1024 ** 3
REMAT_RECOMPUTES_BLOCK = ("full", "nothing_saveable")


def _dtype_bytes(name: str) -> int:
  return {"float32": 4, "bfloat16": 2}[name]


# ---------------------------------------------------------------------------------------------------------------
# Parameters


def param_shapes(config) -> List[Tuple[str, Tuple[int, ...]]]:
  """(path, shape) of every trained parameter leaf of the config's task, from jax.eval_shape of the real model init
  (exact, no allocation)."""
  import jax
  task = tasks.from_config(config)
  return _leaf_shapes(jax.eval_shape(task.init_params, jax.random.key(0)))


def _leaf_shapes(abstract) -> List[Tuple[str, Tuple[int, ...]]]:
  import jax
  leaves = jax.tree_util.tree_leaves_with_path(abstract)
  return [("/".join(str(getattr(k, "key", k)) for k in path), tuple(int(s) for s in leaf.shape))
          for path, leaf in leaves]


def _sharded_elements(path: str, shape: Tuple[int, ...], fsdp: int, min_size: int,
                      rules: Sequence[Tuple[str, str]]) -> float:
  """Elements of one leaf held per device, laid out by the trainer's own rule (videomae_jax.sharding)."""
  spec = sharding.partition_spec(shape, sharding.tactic(path, rules), fsdp, min_size)
  return math.prod(shape) / (fsdp if sharding.FSDP_AXIS in tuple(spec) else 1)


@dataclasses.dataclass(frozen=True)
class ParamSummary:
  total: int
  encoder: int
  per_device_elements: float        # parameters held per device under the fsdp axis size it was computed for
  largest_block: int                # parameters of the largest transformer block (encoder or decoder)


def summarize_params(shapes: Sequence[Tuple[str, Tuple[int, ...]]], spec: ModelSpec, fsdp: int,
                     min_size: int = sharding.DEFAULT_FSDP_MIN_SIZE,
                     rules: Sequence[Tuple[str, str]] = sharding.DEFAULT_RULES) -> ParamSummary:
  total = sum(math.prod(shape) for _, shape in shapes)
  encoder = sum(math.prod(shape) for path, shape in shapes if path.startswith("encoder/"))
  per_device = sum(_sharded_elements(path, shape, fsdp, min_size, rules) for path, shape in shapes)
  encoder_blocks = sum(math.prod(s) for p, s in shapes if p.startswith("encoder/blocks/"))
  decoder_blocks = sum(math.prod(s) for p, s in shapes if p.startswith("decoder/blocks/"))
  largest = max(encoder_blocks // max(spec.depth, 1), decoder_blocks // max(spec.decoder_depth, 1))
  return ParamSummary(total=total, encoder=encoder, per_device_elements=per_device, largest_block=largest)


# ---------------------------------------------------------------------------------------------------------------
# Activations (bytes per clip)


def _block_all_bytes(n: int, d: int, m: int, h: int, c: int, flash: bool) -> float:
  """Everything one block keeps for its backward pass without remat (see the module docstring)."""
  attention = n * h * 4 if flash else n * n * h * (4 + c)
  return c * (8 * n * d + 2 * n * m) + attention


def _block_saved_bytes(n: int, d: int, m: int, h: int, c: int, flash: bool, policy: str) -> float:
  if policy == "none":
    return _block_all_bytes(n, d, m, h, c, flash)
  if policy in REMAT_RECOMPUTES_BLOCK:
    return c * n * d
  if policy == "dots":
    attention = n * h * 4 if flash else n * n * h * 4
    return c * (7 * n * d + n * m) + attention
  if policy == "dots_with_no_batch_dims":
    return c * (6 * n * d + n * m)
  raise ConfigError(f"config.model.remat_policy={policy!r} is not known to the planner.")


# Attention that never keeps the [h, N, N] probabilities: cuDNN's fused kernel, and models.attention.blocked_attention
# with or without the CPU kernel's forward pass (each row's max and sum kept, a block's probabilities recomputed in
# the backward pass). 'auto' is counted as XLA's textbook attention, which keeps them.
FUSED_ATTENTION = ("cudnn", "kernel", "blocked")


def activation_bytes_per_clip(spec: ModelSpec, plan: masking.MaskingPlan) -> Dict[str, float]:
  """Bytes one clip keeps alive at the start of the backward pass, by part; 'block_working' is the transient set
  of the one block being differentiated (not multiplied by depth)."""
  c = _dtype_bytes(spec.compute_dtype)
  flash = spec.attention_impl in FUSED_ATTENTION
  policy = spec.remat_policy
  enc_n = plan.num_encoder_tokens
  dec_n = plan.num_decoder_inputs
  predicted = plan.num_decoder_tokens
  d, dd = spec.width, spec.decoder_width
  enc = dict(n=enc_n, d=d, m=spec.mlp_dim, h=spec.num_heads)
  dec = dict(n=dec_n, d=dd, m=spec.decoder_mlp_dim, h=spec.decoder_num_heads)
  pixels = spec.num_frames * spec.image_size * spec.image_size * 3
  embedded = pixels * enc_n / plan.num_tokens   # the patch embedding cuts out (and keeps) the visible tubelets only
  largest_block = max(_block_all_bytes(c=c, flash=flash, **enc), _block_all_bytes(c=c, flash=flash, **dec))
  return {
      "encoder_blocks": spec.depth * _block_saved_bytes(c=c, flash=flash, policy=policy, **enc),
      "decoder_blocks": spec.decoder_depth * _block_saved_bytes(c=c, flash=flash, policy=policy, **dec),
      "block_working": largest_block * (2 if policy in REMAT_RECOMPUTES_BLOCK else 1),
      "clip": pixels * 4 + embedded * c,
      "encoder_norm": 2 * c * enc_n * d,
      "decoder_input": dec_n * dd * (4 + c),
      "decoder_norm_head": 2 * c * predicted * dd + predicted * spec.patch_values * (c + 4 + 4),
  }


def classifier_activation_bytes_per_clip(spec: ModelSpec, num_tokens: int) -> Dict[str, float]:
  """Bytes one clip keeps alive at the start of a classifier's backward pass (its encoder on the `num_tokens` tokens
  MATS keeps, mean pool, fc_norm, head), by part; 'block_working' as in activation_bytes_per_clip."""
  c = _dtype_bytes(spec.compute_dtype)
  flash = spec.attention_impl in FUSED_ATTENTION
  policy = spec.remat_policy
  enc = dict(n=num_tokens, d=spec.width, m=spec.mlp_dim, h=spec.num_heads)
  pixels = spec.num_frames * spec.image_size * spec.image_size * 3
  return {
      "encoder_blocks": spec.depth * _block_saved_bytes(c=c, flash=flash, policy=policy, **enc),
      "block_working": _block_all_bytes(c=c, flash=flash, **enc) * (2 if policy in REMAT_RECOMPUTES_BLOCK else 1),
      # The normalized (and mixed) clip in float32, and its kept tubelets in the compute dtype (the patch
      # embedding's weight gradient).
      "clip": pixels * 4 + c * pixels * num_tokens / spec.num_tokens,
      "pooled_head": 4 * (3 * spec.width + 2 * max(spec.num_classes, 0)),
  }


# ---------------------------------------------------------------------------------------------------------------
# FLOPs (per clip)


def _block_forward_flops(n: int, d: int, m: int, rows: Optional[int] = None) -> Dict[str, float]:
  """One block on n tokens; with `rows`, only the last `rows` outputs are computed (their queries attend to all n:
  models.vit.BlockStack's output_rows): q/k/v for every token, the rest for those rows."""
  rows = n if rows is None else rows
  return {"dense": 2 * n * d * 3 * d + 2 * rows * d * (d + 2 * m), "attention": 2 * 2 * rows * n * d}


def flops_per_clip(spec: ModelSpec, plan: masking.MaskingPlan) -> Dict[str, float]:
  """Analytic matmul FLOPs per clip: forward, model train step (fwd + bwd), hardware (+ remat recompute)."""
  enc = _block_forward_flops(plan.num_encoder_tokens, spec.width, spec.mlp_dim)
  dec = _block_forward_flops(plan.num_decoder_inputs, spec.decoder_width, spec.decoder_mlp_dim)
  # The decoder's last block computes the predicted tokens' outputs only (the official model computes all).
  last = _block_forward_flops(plan.num_decoder_inputs, spec.decoder_width, spec.decoder_mlp_dim,
                              rows=plan.num_decoder_tokens)
  decoder_block, last_block = dec["dense"] + dec["attention"], last["dense"] + last["attention"]
  blocks = spec.depth * (enc["dense"] + enc["attention"]) + spec.decoder_depth * decoder_block
  computed = blocks - decoder_block + last_block
  attention = spec.depth * enc["attention"] + (spec.decoder_depth - 1) * dec["attention"] + last["attention"]
  # The official model embeds every tubelet (the papers' counts); ours cuts out and embeds the visible ones only.
  patch_embed = 2 * plan.num_tokens * spec.patch_values * spec.width
  embedded = 2 * plan.num_encoder_tokens * spec.patch_values * spec.width
  glue = (2 * plan.num_encoder_tokens * spec.width * spec.decoder_width            # encoder_to_decoder
          + 2 * plan.num_decoder_tokens * spec.decoder_width * spec.patch_values)  # decoder head
  forward = blocks + patch_embed + glue           # the official model's forward, as the papers count it
  model = 3 * (computed + glue) + 2 * embedded    # this train step's work (forward, backward, no input gradient)
  recompute = {"none": 0.0, "full": computed, "nothing_saveable": computed, "dots": 0.0,
               "dots_with_no_batch_dims": attention}[spec.remat_policy]
  return {"forward": float(forward), "train_model": float(model), "train_hardware": float(model + recompute)}


def classifier_flops_per_clip(spec: ModelSpec, num_tokens: int, scores_own_tokens: bool = True) -> Dict[str, float]:
  """Analytic matmul FLOPs per clip of a classifier whose blocks see `num_tokens` tokens: forward, train step,
  hardware. Only the kept tubelets are embedded; keeping fewer than all adds the float32 scoring embedding of
  every tubelet (no gradient), unless another model's ranking is used (`scores_own_tokens`)."""
  block = _block_forward_flops(num_tokens, spec.width, spec.mlp_dim)
  blocks = spec.depth * (block["dense"] + block["attention"])
  attention = spec.depth * block["attention"]
  patch_embed = 2 * num_tokens * spec.patch_values * spec.width
  scoring = (2 * spec.num_tokens * spec.patch_values * spec.width
             if (num_tokens < spec.num_tokens and scores_own_tokens) else 0)
  head = 2 * spec.width * max(spec.num_classes, 0)
  forward = blocks + patch_embed + head + scoring
  model = 3 * (blocks + head) + 2 * patch_embed + scoring
  recompute = {"none": 0.0, "full": blocks, "nothing_saveable": blocks, "dots": 0.0,
               "dots_with_no_batch_dims": attention}[spec.remat_policy]
  return {"forward": float(forward), "train_model": float(model), "train_hardware": float(model + recompute)}


# ---------------------------------------------------------------------------------------------------------------
# A frozen model the step runs forward only (a distillation teacher)


@dataclasses.dataclass(frozen=True)
class FrozenModel:
  """A teacher: parameters held (no gradient, no optimizer state) and one forward per clip."""
  spec: ModelSpec
  leaves: Tuple[Tuple[str, Tuple[int, ...], int], ...]   # (path, shape, bytes per element) as the step holds them
  num_tokens: int                                         # tokens its blocks see (after MATS keeping)
  forward_flops: float                                    # per clip

  @property
  def total(self) -> int:
    return sum(math.prod(shape) for _, shape, _ in self.leaves)

  @property
  def held_bytes(self) -> int:
    return sum(math.prod(shape) * size for _, shape, size in self.leaves)


def frozen_model(task) -> Optional[FrozenModel]:
  """The teacher of a distillation task, from jax.eval_shape of its real init (the dtypes it is held in); None for
  tasks without one."""
  if not isinstance(task, DistillationTask):
    return None
  import jax
  abstract = jax.eval_shape(task.init_frozen, jax.random.key(0))
  sizes = [leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract)]
  leaves = tuple((path, shape, size) for (path, shape), size in zip(_leaf_shapes(abstract), sizes))
  tokens = task.teacher_plan.num_finetune_tokens
  forward = classifier_flops_per_clip(task.teacher_spec, tokens, not task.shares_token_grid)["forward"]
  return FrozenModel(spec=task.teacher_spec, leaves=leaves, num_tokens=tokens, forward_flops=forward)


def frozen_bytes_per_device(model: FrozenModel, *, fsdp: int, per_device_batch: int, min_size: int,
                            rules: Sequence[Tuple[str, str]]) -> Dict[str, float]:
  """The teacher's memory per device: its held parameters, laid out by the trainer's rules, and the working set of
  its forward: FSDP gathers a block's weights (and prefetches the next) in the compute dtype, and one block's
  activations at a time (nothing is kept for a backward pass). Counted as if they coexisted with the student's
  saved activations; XLA may run the teacher first and need less."""
  spec = model.spec
  c = _dtype_bytes(spec.compute_dtype)
  held = sum(size * _sharded_elements(path, shape, fsdp, min_size, rules) for path, shape, size in model.leaves)
  block = sum(math.prod(shape) for path, shape, _ in model.leaves
              if path.startswith("encoder/blocks/")) // max(spec.depth, 1)
  working = 2 * block * c if fsdp > 1 else 0
  activations = per_device_batch * _block_all_bytes(model.num_tokens, spec.width, spec.mlp_dim, spec.num_heads, c,
                                                    spec.attention_impl in FUSED_ATTENTION)
  return {"teacher_params": float(held), "teacher_working": float(working + activations)}


# ---------------------------------------------------------------------------------------------------------------
# Memory for one mesh


@dataclasses.dataclass
class MemoryEstimate:
  data: int
  fsdp: int
  per_device_batch: int
  microbatches: int
  parts: Dict[str, float]           # bytes per device, by part

  @property
  def total(self) -> float:
    return float(sum(self.parts.values()))


def estimate_memory(spec: ModelSpec, plan: masking.MaskingPlan, shapes, *, data: int, fsdp: int,
                    per_device_batch: int, microbatches: int = 1,
                    min_size: int = sharding.DEFAULT_FSDP_MIN_SIZE,
                    rules: Sequence[Tuple[str, str]] = sharding.DEFAULT_RULES, input_buffers: int = 2,
                    input_bytes_per_clip: Optional[float] = None, activations: Optional[Dict[str, float]] = None,
                    frozen: Optional[FrozenModel] = None) -> MemoryEstimate:
  """Bytes per device by part. `activations`: per clip, as activation_bytes_per_clip gives them (the default, for
  pretraining's `plan`) or classifier_activation_bytes_per_clip; `frozen`: a teacher, added as its own parts."""
  params = summarize_params(shapes, spec, fsdp, min_size, rules)
  c = _dtype_bytes(spec.compute_dtype)
  per_device_param_bytes = 4 * params.per_device_elements
  working = 2 * params.largest_block * c + (4 * params.largest_block if fsdp > 1 else 0)
  acts = activations if activations is not None else activation_bytes_per_clip(spec, plan)
  saved = sum(value for key, value in acts.items() if key != "block_working")
  clip_bytes = (spec.num_frames * spec.image_size * spec.image_size * 3 if input_bytes_per_clip is None
                else input_bytes_per_clip)
  parts = {
      "params": per_device_param_bytes,
      "optimizer": 2 * per_device_param_bytes,
      "gradients": per_device_param_bytes,
      "working_weights": float(working),
      "activations": per_device_batch * (saved + acts["block_working"]),
      "input_batch": float(input_buffers * per_device_batch * microbatches * clip_bytes),
  }
  if frozen is not None:
    parts.update(frozen_bytes_per_device(frozen, fsdp=fsdp, per_device_batch=per_device_batch, min_size=min_size,
                                         rules=rules))
  return MemoryEstimate(data=data, fsdp=fsdp, per_device_batch=per_device_batch, microbatches=microbatches,
                        parts=parts)


# ---------------------------------------------------------------------------------------------------------------
# The plan


def _divisors(n: int) -> List[int]:
  return [k for k in range(1, n + 1) if n % k == 0]


def input_bytes_per_view(config) -> Optional[float]:
  """With crops on the device (config.data.crop_on_device), the input bytes per sample: 1 / R of a uint8 canvas
  clip (T x Hc x Wc x 3, config.data.crop_canvas as videomae_jax.resolve fills it). None: S x S views."""
  if not config.data.crop_on_device:
    return None
  height, width = config.data.crop_canvas
  frames = config.data.num_candidate_frames or config.model.num_frames
  return frames * height * width * 3 / config.data.repeated_aug


def make_plan(config, *, num_devices: int, device: str, per_device_batch: Optional[int] = None,
              fsdp: Optional[int] = None, num_slices: int = 1, mfu: float = 0.4, headroom: float = 0.9,
              flops: str = "analytic") -> Dict[str, Any]:
  """Everything the table shows, as a JSON-able dict. Raises ConfigError when no mesh can work at all."""
  dev = hardware.lookup(device)
  task = tasks.from_config(config)
  spec, plan = task.spec, task.plan
  if isinstance(task, PretrainTask):
    activations, analytic = activation_bytes_per_clip(spec, plan), flops_per_clip(spec, plan)
    tokens = {"encoder": plan.num_encoder_tokens, "decoder": plan.num_decoder_inputs,
              "predicted": plan.num_decoder_tokens, "total": plan.num_tokens}
    step_kind = {"encoder_masking": plan.encoder, "decoder_masking": plan.decoder}
  elif isinstance(task, ClassificationTask):
    kept = plan.num_finetune_tokens
    activations, analytic = classifier_activation_bytes_per_clip(spec, kept), classifier_flops_per_clip(spec, kept)
    tokens = {"kept": kept, "total": plan.num_tokens}
    step_kind = {"finetune_keep_ratio": plan.finetune_keep_ratio}
  else:
    raise ConfigError(f"config.task={config.task!r}: the planner knows the steps of the pretrain, classify and "
                      "distill tasks; use python -m videomae_jax.tools.inspect_config (XLA's numbers) for this one.")
  teacher = frozen_model(task)
  if teacher is not None:  # the teacher's forward is work every step does (and the trainer's MFU counts)
    analytic = {"forward": analytic["forward"], "train_model": analytic["train_model"] + teacher.forward_flops,
                "train_hardware": analytic["train_hardware"] + teacher.forward_flops}
  shapes = param_shapes(config)
  min_size = int(config.fsdp_min_size)
  rules = [tuple(rule) for rule in config.sharding_rules]
  batch = int(config.batch_size)
  if num_devices <= 0 or num_devices % num_slices:
    raise ConfigError(f"--num_devices={num_devices} must be a positive multiple of --num_slices={num_slices}.")
  if batch % num_devices:
    raise ConfigError(f"config.batch_size={batch} is not divisible by {num_devices} devices; use a device count "
                      f"that divides it or set --config.batch_size to a multiple of {num_devices}.")
  clips_per_device = batch // num_devices
  if per_device_batch is not None and (per_device_batch <= 0 or clips_per_device % per_device_batch):
    raise ConfigError(f"--per_device_batch={per_device_batch} must divide the {clips_per_device} clips each "
                      f"device gets per step (batch {batch} / {num_devices} devices); choose one of "
                      f"{_divisors(clips_per_device)}.")
  devices_per_slice = num_devices // num_slices
  fsdp_options = [fsdp] if fsdp else _divisors(devices_per_slice)
  if fsdp and devices_per_slice % fsdp:
    raise ConfigError(f"--fsdp={fsdp} must divide the {devices_per_slice} devices of a slice/node group "
                      "(FSDP stays on the fast links inside a slice).")
  batch_options = [per_device_batch] if per_device_batch else sorted(_divisors(clips_per_device), reverse=True)
  budget = headroom * dev.memory_bytes

  def estimate(f: int, k: int) -> MemoryEstimate:
    return estimate_memory(spec, plan, shapes, data=num_devices // f, fsdp=f, per_device_batch=k,
                           microbatches=clips_per_device // k, min_size=min_size, rules=rules,
                           input_bytes_per_clip=input_bytes_per_view(config), activations=activations,
                           frozen=teacher)

  chosen, tried = None, []
  for k in batch_options:
    for f in fsdp_options:
      candidate = estimate(f, k)
      tried.append(candidate)
      if candidate.total <= budget:
        chosen = candidate
        break
    if chosen is not None:
      break

  # What the config's own mesh would need, for comparison.
  configured = None
  try:
    cfg_data, cfg_fsdp = sharding.mesh_shape(config.mesh, num_devices)
    configured = estimate(cfg_fsdp, clips_per_device)
  except ConfigError:
    configured = None

  if flops == "xla":
    model_per_clip = train_step.flops_per_clip(task, config)
    hardware_per_clip = model_per_clip * analytic["train_hardware"] / analytic["train_model"]
    flops_source = "XLA cost analysis of the lowered, unrolled step (hardware FLOPs scaled by the analytic remat)"
    forward = analytic["forward"]
  else:
    model_per_clip, hardware_per_clip = analytic["train_model"], analytic["train_hardware"]
    forward = analytic["forward"]
    flops_source = "analytic matmul FLOPs (2*m*n*k per matmul, x3 fwd+bwd, +1 forward of the blocks for remat)"
  step_flops = model_per_clip * batch
  epoch_steps, total_steps, _ = optim.schedule_lengths(config)
  result: Dict[str, Any] = {
      "config": {"task": type(task).__name__, "variant": config.model.variant, "batch_size": batch,
                 "compute_dtype": spec.compute_dtype, "remat_policy": spec.remat_policy,
                 "scan_layers": spec.scan_layers, "attention_impl": spec.attention_impl, **step_kind,
                 "total_epochs": float(config.total_epochs),
                 "num_videos_per_epoch": int(config.data.num_videos_per_epoch),
                 "repeated_aug": int(config.data.get("repeated_aug", 1))},
      "device": {"name": dev.name, "description": dev.description, "count": num_devices, "slices": num_slices,
                 "memory_bytes": dev.memory_bytes, "peak_flops": dev.peak_flops, "headroom": headroom},
      "params": {"total": summarize_params(shapes, spec, 1).total,
                 "encoder": summarize_params(shapes, spec, 1).encoder},
      "tokens": tokens,
      "activations_per_clip_bytes": activations,
      "teacher": None if teacher is None else {
          "variant": config.distill.teacher_model.variant, "params": teacher.total, "held_bytes": teacher.held_bytes,
          "compute_dtype": teacher.spec.compute_dtype, "patch_size": teacher.spec.patch_size,
          "tokens": teacher.num_tokens, "total_tokens": teacher.spec.num_tokens,
          "forward_per_clip": teacher.forward_flops},
      "flops": {"source": flops_source, "forward_per_clip": forward, "train_model_per_clip": model_per_clip,
                "train_hardware_per_clip": hardware_per_clip, "train_model_per_step": step_flops},
      "candidates": [_estimate_dict(e, budget) for e in tried],
      "configured_mesh": _estimate_dict(configured, budget) if configured else None,
      "recommended": _estimate_dict(chosen, budget) if chosen else None,
  }
  if dev.peak_flops:
    step_seconds = step_flops / (num_devices * dev.peak_flops * mfu)
    result["time"] = {"mfu": mfu, "step_seconds": step_seconds, "steps_per_epoch": epoch_steps,
                      "epoch_hours": epoch_steps * step_seconds / 3600, "total_steps": total_steps,
                      "total_hours": total_steps * step_seconds / 3600,
                      "device_hours": total_steps * step_seconds * num_devices / 3600}
  else:
    result["time"] = {"mfu": mfu, "steps_per_epoch": epoch_steps, "step_seconds": None,
                      "note": f"{dev.name} has no peak FLOP/s in videomae_jax.hardware; no time estimate."}
  notes = []
  if chosen is None:
    notes.append(f"Nothing fits in {headroom:.0%} of {dev.memory_bytes / GIB:.0f} GiB even with fsdp="
                 f"{fsdp_options[-1]} and {batch_options[-1]} clip(s) per device: use more devices, "
                 "config.model.remat_policy='full', or a smaller config.batch_size.")
  elif chosen.microbatches > 1:
    notes.append(f"{clips_per_device} clips per device only fit as {chosen.microbatches} microbatches of "
                 f"{chosen.per_device_batch}: that needs gradient accumulation, which the trainer does not do; "
                 f"alternatively use {num_devices * chosen.microbatches} devices.")
  if num_slices > 1:
    notes.append("Several slices/nodes: the data axis spans them (DCN); fsdp stays inside one slice.")
  result["notes"] = notes
  return result


def _estimate_dict(estimate: Optional[MemoryEstimate], budget: float) -> Optional[Dict[str, Any]]:
  if estimate is None:
    return None
  return {"mesh": {"data": estimate.data, "fsdp": estimate.fsdp}, "per_device_batch": estimate.per_device_batch,
          "microbatches": estimate.microbatches, "bytes": {k: float(v) for k, v in estimate.parts.items()},
          "total_bytes": estimate.total, "budget_bytes": budget, "fits": estimate.total <= budget}


def format_table(result: Dict[str, Any]) -> str:
  c, d, p, t, f, tm = (result[k] for k in ("config", "device", "params", "tokens", "flops", "time"))
  teacher = result.get("teacher")
  rows: List[Tuple[str, str]] = [
      ("model", f"ViT-{c['variant']}, {c['compute_dtype']}, remat={c['remat_policy']}, scan={c['scan_layers']}, "
                f"attention={c['attention_impl']}"),
  ]
  if "encoder_masking" in c:
    rows.append(("masking", f"encoder={c['encoder_masking']} ({t['encoder']} tokens), decoder="
                            f"{c['decoder_masking']} ({t['decoder']} tokens, {t['predicted']} predicted) of "
                            f"{t['total']}"))
  else:
    rows.append(("tokens", f"{t['kept']} of {t['total']} per clip (MATS keep ratio {c['finetune_keep_ratio']})"))
  rows.append(("params", f"{p['total'] / 1e6:.2f}M (encoder {p['encoder'] / 1e6:.2f}M)"))
  if teacher:
    rows.append(("teacher", f"ViT-{teacher['variant']}/{teacher['patch_size']}, {teacher['params'] / 1e6:.2f}M "
                            f"params held in {teacher['held_bytes'] / GIB:.2f} GiB ({teacher['compute_dtype']} "
                            f"kernels), forward only on {teacher['tokens']} of {teacher['total_tokens']} tokens"))
  if teacher:
    student_train = f["train_model_per_clip"] - teacher["forward_per_clip"]
    flops_row = (f"{f['forward_per_clip'] / 1e9:.1f} G student forward; train step "
                 f"{f['train_model_per_clip'] / 1e9:.1f} G = student {student_train / 1e9:.1f} G + teacher forward "
                 f"{teacher['forward_per_clip'] / 1e9:.1f} G; {f['train_hardware_per_clip'] / 1e9:.1f} G with remat "
                 "recompute")
  else:
    flops_row = (f"{f['forward_per_clip'] / 1e9:.1f} G forward, {f['train_model_per_clip'] / 1e9:.1f} G train "
                 f"step, {f['train_hardware_per_clip'] / 1e9:.1f} G with remat recompute")
  rows += [
      ("devices", f"{d['count']} x {d['name']} ({d['description']}), {d['memory_bytes'] / GIB:.0f} GiB each, "
                  f"budget {d['headroom']:.0%}" + (f", {d['slices']} slices" if d["slices"] > 1 else "")),
      ("global batch", f"{c['batch_size']} clips ({c['batch_size'] // d['count']} per device)"),
      ("FLOPs per clip", flops_row),
      ("FLOPs per step", f"{f['train_model_per_step'] / 1e15:.2f} PFLOP ({f['source']})"),
  ]
  if tm.get("step_seconds"):
    rows += [
        ("time per step", f"{tm['step_seconds']:.3f} s at MFU {tm['mfu']:.2f}"),
        ("steps per epoch", f"{tm['steps_per_epoch']} ({c['num_videos_per_epoch']} videos / "
                            f"({c['batch_size']} / {c['repeated_aug']} repeated aug))"),
        ("time per epoch", f"{tm['epoch_hours'] * 60:.1f} min"),
        ("whole run", f"{tm['total_steps']} steps, {tm['total_hours']:.1f} h, "
                      f"{tm['device_hours']:.0f} device-hours"),
    ]
  else:
    rows.append(("time", tm["note"]))
  lines = [_rows(rows), "", "memory per device (GiB):"]
  header = ("mesh data x fsdp", "batch", "params", "opt", "grads", "weights", "activ.", "input",
            *(("teacher",) if teacher else ()), "total", "fits")
  table = [header]
  shown = list(result["candidates"])
  if result["configured_mesh"] and result["configured_mesh"] not in shown:
    shown.append(result["configured_mesh"])
  for entry in shown:
    b = entry["bytes"]
    batch = f"{entry['per_device_batch']}" + (f" x{entry['microbatches']}" if entry["microbatches"] > 1 else "")
    table.append((f"{entry['mesh']['data']} x {entry['mesh']['fsdp']}", batch,
                  *(f"{b[k] / GIB:.2f}" for k in ("params", "optimizer", "gradients", "working_weights",
                                                  "activations", "input_batch")),
                  *((f"{(b['teacher_params'] + b['teacher_working']) / GIB:.2f}",) if teacher else ()),
                  f"{entry['total_bytes'] / GIB:.2f}",
                  f"yes (<= {entry['budget_bytes'] / GIB:.1f})" if entry["fits"] else "no"))
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  lines += ["  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
  rec = result["recommended"]
  lines.append("")
  if rec:
    overrides = f"--config.mesh.data=-1 --config.mesh.fsdp={rec['mesh']['fsdp']}"
    lines.append(f"recommended: mesh data={rec['mesh']['data']} x fsdp={rec['mesh']['fsdp']}, "
                 f"{rec['per_device_batch']} clips per device per microbatch"
                 + (f" x {rec['microbatches']} microbatches" if rec["microbatches"] > 1 else "")
                 + f", {rec['total_bytes'] / GIB:.2f} GiB of {d['memory_bytes'] / GIB:.0f} GiB  ->  {overrides}")
  else:
    lines.append("recommended: none fits")
  cfg = result["configured_mesh"]
  if cfg:
    lines.append(f"config's mesh: data={cfg['mesh']['data']} x fsdp={cfg['mesh']['fsdp']}: "
                 f"{cfg['total_bytes'] / GIB:.2f} GiB, {'fits' if cfg['fits'] else 'does NOT fit'}")
  lines += [f"note: {note}" for note in result["notes"]]
  return "\n".join(lines)


def _rows(rows: Sequence[Tuple[str, str]]) -> str:
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
