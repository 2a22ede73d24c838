"""Static analysis of a configuration: counts, model FLOPs (XLA cost analysis) and compiled memory.

The library behind `python -m videomae_jax.tools.inspect_config`. Nothing here allocates device memory: the step
is `videomae_jax.train_step.build` (the trainer's own), whose state is a `jax.eval_shape` result.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax import train_step
from videomae_jax.tasks.classify import ClassificationTask, finetune_masking_plan
from videomae_jax.tasks.distill import DistillationTask
from videomae_jax.tasks.pretrain import PretrainTask


def _count(tree: Any) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


# (label, encoder, decoder, overrides): the schemes of both papers and our combination.
SCHEMES = (
    ("VideoMAE V1 (tube, no decoder mask)", "tube", "none", {}),
    ("VideoMAE V2 (tube + running cell)", "tube", "running_cell", {}),
    ("MATS / EVEREST (motion + motion)", "motion", "motion", {"encoder_ratio": 0.9, "motion_keep_ratio": 0.3}),
    ("tube + motion decoder (ours)", "tube", "motion", {"decoder_ratio": 0.5}),
)


def _tokens(task) -> Dict[str, Any]:
  plan = task.plan
  if isinstance(task, PretrainTask):
    return {"total": plan.num_tokens, "encoder": plan.num_encoder_tokens, "decoder": plan.num_decoder_inputs,
            "decoder_kept": plan.num_decoder_tokens, "loss": plan.num_loss_tokens}
  return {"total": plan.num_tokens, "kept": plan.num_finetune_tokens}


def analyze(config, batch_size: int) -> Dict[str, Any]:
  """Counts, FLOPs and memory of the config's train step compiled for `batch_size` clips on this process's
  devices (config resolved for shapes: videomae_jax.resolve)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.batch_size = batch_size
  step = train_step.build(config)
  task, spec = step.task, step.task.spec
  params = step.abstract_state["params"]
  encoder, total = _count(params["encoder"]), _count(params)
  devices = int(step.mesh.devices.size)
  token_selection = ({"encoder_masking": task.plan.encoder, "decoder_masking": task.plan.decoder}
                     if isinstance(task, PretrainTask) else {"finetune_keep_ratio": task.plan.finetune_keep_ratio})
  teacher = None
  if isinstance(task, DistillationTask):
    # The teacher is an argument of the compiled step: XLA's memory counts it among the arguments, and its forward
    # is part of the step's FLOPs; here it is also shown on its own.
    frozen = step.abstract_frozen
    teacher = {"variant": config.distill.teacher_model.variant, "params": _count(frozen),
               "held_bytes": int(sum(np.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(frozen))),
               "compute_dtype": task.teacher_spec.compute_dtype, "patch_size": task.teacher_spec.patch_size,
               "tokens": task.teacher_plan.num_finetune_tokens, "total_tokens": task.teacher_plan.num_tokens,
               "forward_per_clip": teacher_forward_flops(task)}
  return {
      "config": {"task": type(task).__name__, "variant": config.model.variant, **token_selection,
                 "batch_size_compiled": batch_size, "devices": devices, "grid": list(spec.grid),
                 "patch_size": spec.patch_size, "compute_dtype": spec.compute_dtype, "scan_layers": spec.scan_layers,
                 "remat_policy": spec.remat_policy},
      "params": {"encoder": encoder, "decoder": total - encoder, "total": total},
      "tokens": _tokens(task),
      "flops": {"train_step_per_clip": step.flops_per_clip,
                "train_step_per_device": step.flops_per_clip * batch_size / devices},
      "teacher": teacher,
      "memory": step.memory,
      "compile_seconds": round(step.compile_seconds, 2),
  }


def teacher_forward_flops(task: DistillationTask, batch_size: int = 1) -> float:
  """FLOPs of a distillation teacher's forward per clip on the tokens it keeps (XLA cost analysis of the lowered,
  unrolled forward; choosing the tokens is not counted: it may be the student's ranking)."""
  task = task.for_flop_count()
  frozen = jax.eval_shape(task.init_frozen, jax.random.key(0))
  spec, plan = task.spec, task.teacher_plan
  video = jax.ShapeDtypeStruct((batch_size, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
  keep = (jax.ShapeDtypeStruct((batch_size, plan.num_finetune_tokens), jnp.int32)
          if plan.num_finetune_tokens < plan.num_tokens else None)
  analysis = jax.jit(task.teacher_logits).lower(frozen, video, keep).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0)) / batch_size


def compare_schemes(config) -> List[Dict[str, Any]]:
  """Token counts and model FLOPs per clip of the pretraining train step for each entry of SCHEMES."""
  rows, baseline = [], None
  for label, encoder, decoder, overrides in SCHEMES:
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
      variant.masking.encoder, variant.masking.decoder = encoder, decoder
      variant.masking.update(overrides)
    task = PretrainTask.from_config(variant)
    flops = train_step.flops_per_clip(task, variant)
    baseline = baseline or flops
    plan = task.plan
    rows.append({"scheme": label, "encoder": encoder, "decoder": decoder, "encoder_tokens": plan.num_encoder_tokens,
                 "decoder_tokens": plan.num_decoder_inputs, "loss_tokens": plan.num_loss_tokens,
                 "train_gflops_per_clip": flops / 1e9, "relative_to_v1": flops / baseline})
  return rows


def forward_flops_per_view(task: ClassificationTask, batch_size: int = 1) -> float:
  """FLOPs of the classifier's forward for one view (the MATS scoring pass included), XLA cost analysis of the
  lowered, unrolled forward. XLA counts a multiply-add as 2 FLOPs; the papers quote multiply-accumulates (ViT-B/16
  16x224: 180 G)."""
  task = task.for_flop_count()
  task = dataclasses.replace(task, spec=dataclasses.replace(task.spec, drop_path_rate=0.0))
  params = jax.eval_shape(task.init_params, jax.random.key(0))
  spec = task.spec
  video = jax.ShapeDtypeStruct((batch_size, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.uint8)
  analysis = jax.jit(lambda p, v: task.logits(p, v, train=False)).lower(params, video).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0)) / batch_size


def mats_flops_report(task: ClassificationTask, keep_ratio: float = 0.6) -> Dict[str, float]:
  """Forward FLOPs per view with every token and with MATS keeping `keep_ratio` of them."""
  full = dataclasses.replace(task, plan=finetune_masking_plan(dict(finetune_keep_ratio=1.0), task.spec))
  kept = dataclasses.replace(task, plan=finetune_masking_plan(dict(finetune_keep_ratio=keep_ratio), task.spec))
  flops_full, flops_kept = forward_flops_per_view(full), forward_flops_per_view(kept)
  return {"flops_full": flops_full, "flops_mats": flops_kept, "ratio": flops_kept / flops_full,
          "tokens_full": full.plan.num_tokens, "tokens_mats": kept.plan.num_finetune_tokens,
          "keep_ratio": keep_ratio}


def format_scheme_table(rows: list) -> str:
  lines = ["| scheme | encoder tokens | decoder tokens | loss tokens | train GFLOPs/clip | vs V1 |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['scheme']} | {r['encoder_tokens']} | {r['decoder_tokens']} | {r['loss_tokens']} | "
                 f"{r['train_gflops_per_clip']:.1f} | {r['relative_to_v1']:.3f} |")
  return "\n".join(lines)


def _size(num_bytes: float) -> str:
  return f"{num_bytes / 1024 ** 3:.2f} GiB" if num_bytes >= 1024 ** 3 else f"{num_bytes / 1024 ** 2:.1f} MiB"


def format_table(result: Dict[str, Any]) -> str:
  c, p, t, f, m = (result[k] for k in ("config", "params", "tokens", "flops", "memory"))
  gib = 1024 ** 3
  rows = [
      ("task", c["task"]),
      ("model", f"ViT-{c['variant']}/{c['patch_size']}, grid {c['grid']}, {c['compute_dtype']}, "
                f"scan={c['scan_layers']}, remat={c['remat_policy']}"),
  ]
  if "encoder_masking" in c:
    rows += [("masking", f"encoder={c['encoder_masking']}, decoder={c['decoder_masking']}"),
             ("params encoder", f"{p['encoder'] / 1e6:.2f}M"),
             ("params decoder", f"{p['decoder'] / 1e6:.2f}M"),
             ("params total", f"{p['total'] / 1e6:.2f}M"),
             ("tokens per clip", f"{t['total']}"),
             ("encoder tokens", f"{t['encoder']}"),
             ("decoder tokens", f"{t['decoder']} ({t['decoder_kept']} mask tokens)"),
             ("loss tokens", f"{t['loss']}")]
  else:
    rows += [("MATS keep ratio", f"{c['finetune_keep_ratio']}"),
             ("params total", f"{p['total'] / 1e6:.2f}M"),
             ("tokens per clip", f"{t['total']} ({t['kept']} kept)")]
  teacher = result.get("teacher")
  if teacher:
    rows.append(("teacher", f"ViT-{teacher['variant']}/{teacher['patch_size']}, {teacher['params'] / 1e6:.2f}M "
                            f"params held in {_size(teacher['held_bytes'])} ({teacher['compute_dtype']} "
                            f"kernels), {teacher['tokens']} of {teacher['total_tokens']} tokens, "
                            f"{teacher['forward_per_clip'] / 1e9:.2f} GFLOPs forward per clip"))
  rows += [
      ("train step FLOPs per clip", f"{f['train_step_per_clip'] / 1e9:.1f} GFLOPs (XLA cost analysis"
                                    + (", the teacher's forward included)" if teacher else ")")),
      ("memory per device", f"{m.get('per_device_bytes', 0) / gib:.2f} GiB for {c['batch_size_compiled']} clips "
                            f"on {c['devices']} device(s) (args {m.get('argument_size', 0) / gib:.2f}, temp "
                            f"{m.get('temp_size', 0) / gib:.2f} GiB)"),
      ("compile time", f"{result['compile_seconds']} s"),
  ]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
