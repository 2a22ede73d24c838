"""Static analysis of a configuration's train step: counts, model FLOPs (XLA cost analysis) and memory.

Shared by `python -m videomae_jax.inspect`, the trainer (MFU) and the benchmarks. Nothing here allocates device
memory: states are `jax.eval_shape` results and steps are lowered / compiled ahead of time.
"""
from __future__ import annotations

import time
from typing import Any, Dict

import jax
import numpy as np

from videomae_jax import masking, optim, steps
from videomae_jax.data import pipeline
from videomae_jax.models import model_spec_from_config
from videomae_jax.errors import ConfigError


def _count(tree: Any) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


# (label, encoder, decoder, overrides): the schemes of both papers and our combination.
SCHEMES = (
    ("VideoMAE V1 (tube, no decoder mask)", "tube", "none", {}),
    ("VideoMAE V2 (tube + running cell)", "tube", "running_cell", {}),
    ("MATS / EVEREST (motion + motion)", "motion", "motion", {"encoder_ratio": 0.9, "motion_keep_ratio": 0.3}),
    ("tube + motion decoder (ours)", "tube", "motion", {"decoder_ratio": 0.5}),
)


def pretrain_task(config) -> steps.PretrainTask:
  """The pretraining task (model spec + masking plan) of a config; raises ConfigError on bad values."""
  spec = model_spec_from_config(config.model)
  plan = masking.masking_plan(config.masking, spec)
  candidates = int(config.get("data", {}).get("num_candidate_frames", 0) or 0)
  if candidates and (candidates % spec.tubelet_size or candidates <= spec.num_frames):
    raise ConfigError(f"config.data.num_candidate_frames={candidates} must be a multiple of the tubelet size "
                      f"{spec.tubelet_size} above config.model.num_frames={spec.num_frames} (about 1.5x: "
                      f"{spec.tubelet_size * round(1.5 * spec.num_frames / spec.tubelet_size)}), or 0 for off.")
  normalize = bool(config.get("objective", {}).get("normalize_targets", True))
  crops_per_clip, canvas = 0, (0, 0)
  if "data" in config:
    crops_per_clip = pipeline.device_crops_per_clip(config)
    if crops_per_clip:
      # The trainer resolves the canvas from the shards first (train.resolve_data); shape-only uses without
      # data (inspect, plan) assume the default canvas.
      canvas = pipeline.crop_canvas(config, default=pipeline.DEFAULT_CROP_CANVAS)
  return steps.PretrainTask(spec, plan, candidate_frames=candidates, normalize_targets=normalize,
                            crops_per_clip=crops_per_clip, crop_canvas=canvas)


def _abstract_step(config, batch_size: int):
  """(jitted train step, abstract state, abstract batch, task) without allocating anything."""
  task = pretrain_task(config)
  spec = task.spec
  abstract_params = jax.eval_shape(task.init_params, jax.random.key(0))
  optimizer, schedule = optim.make_optimizer(config.optimizer, abstract_params, batch_size=config.batch_size,
                                             warmup_steps=1, total_steps=10)
  state = jax.eval_shape(lambda: steps.init_train_state(task, optimizer, config.seed))
  batch = task.abstract_batch(batch_size)
  train_step = jax.jit(steps.make_train_step(task, optimizer, schedule), donate_argnums=0)
  return train_step, state, batch, task


def train_step_flops_per_clip(config, batch_size: int = 2) -> float:
  """Model FLOPs of one train step per clip (forward + backward + update), from XLA's cost analysis.

  XLA counts a while loop's body once, so a scanned model would be under-counted by its depth; and rematerialized
  forward passes are hardware work but not model work (MFU excludes them). So the count comes from the same step
  with the layers unrolled and no remat, lowered (not compiled: the HLO cost analysis needs no compilation).
  """
  unrolled = config.copy_and_resolve_references()
  with unrolled.unlocked():
    unrolled.model.scan_layers = False
    unrolled.model.remat_policy = "none"
    if "data" in unrolled:
      # Model work only: crops cut on the device are input processing (like decoding), not in MFU's numerator.
      unrolled.data.crop_on_device = False
  train_step, state, batch, _ = _abstract_step(unrolled, batch_size)
  analysis = train_step.lower(state, batch).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0)) / batch_size


def analyze(config, batch_size: int) -> Dict[str, Any]:
  """Counts, FLOPs and memory of the pretraining train step for `batch_size` clips (no allocation).

  With crops on the device the compiled step (memory) includes them and takes batch_size / R canvases;
  batch_size must then be a multiple of R = config.data.repeated_aug.
  """
  repeats = pipeline.device_crops_per_clip(config) if "data" in config else 0
  if repeats and batch_size % repeats:
    raise ConfigError(f"batch size {batch_size} is not a multiple of config.data.repeated_aug={repeats} (crops "
                      "on the device take whole clips): use a multiple, or config.data.crop_on_device=False.")
  train_step, state, batch, task = _abstract_step(config, batch_size)
  spec, plan = task.spec, task.plan
  start = time.time()
  compiled = train_step.lower(state, batch).compile()
  compile_seconds = time.time() - start
  memory = compiled.memory_analysis()
  flops_per_clip = train_step_flops_per_clip(config, min(batch_size, 2))
  params = state["params"]
  encoder = _count(params["encoder"])
  total = _count(params)
  devices = jax.local_device_count()
  clips_per_device = batch_size / devices
  memory_fields = {}
  if memory is not None:
    for name in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                 "generated_code_size_in_bytes", "alias_size_in_bytes"):
      memory_fields[name.replace("_in_bytes", "")] = int(getattr(memory, name, 0))
  per_device_bytes = (memory_fields.get("argument_size", 0) + memory_fields.get("output_size", 0)
                      + memory_fields.get("temp_size", 0) - memory_fields.get("alias_size", 0))
  return {
      "config": {"variant": config.model.variant, "encoder_masking": plan.encoder, "decoder_masking": plan.decoder,
                 "batch_size_compiled": batch_size, "devices": devices,
                 "grid": list(spec.grid), "patch_size": spec.patch_size, "compute_dtype": spec.compute_dtype,
                 "scan_layers": spec.scan_layers, "remat_policy": spec.remat_policy},
      "params": {"encoder": encoder, "decoder": total - encoder, "total": total},
      "tokens": {"total": plan.num_tokens, "encoder": plan.num_encoder_tokens,
                 "decoder": plan.num_encoder_tokens + plan.num_decoder_tokens,
                 "decoder_kept": plan.num_decoder_tokens, "loss": plan.num_loss_tokens},
      "flops": {"train_step_per_clip": flops_per_clip,
                "train_step_per_device": flops_per_clip * clips_per_device},
      "memory": {"per_device_bytes": int(per_device_bytes), **memory_fields},
      "compile_seconds": round(compile_seconds, 2),
  }


def compare_schemes(config) -> list:
  """Token counts and model FLOPs per clip of the train step for each entry of SCHEMES."""
  rows = []
  baseline = None
  for label, encoder, decoder, overrides in SCHEMES:
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
      variant.masking.encoder, variant.masking.decoder = encoder, decoder
      for key, value in overrides.items():
        variant.masking[key] = value
    plan = pretrain_task(variant).plan
    flops = train_step_flops_per_clip(variant)
    baseline = baseline or flops
    rows.append({"scheme": label, "encoder": encoder, "decoder": decoder, "encoder_tokens": plan.num_encoder_tokens,
                 "decoder_tokens": plan.num_decoder_inputs, "loss_tokens": plan.num_loss_tokens,
                 "train_gflops_per_clip": flops / 1e9, "relative_to_v1": flops / baseline})
  return rows


def format_scheme_table(rows: list) -> str:
  lines = ["| scheme | encoder tokens | decoder tokens | loss tokens | train GFLOPs/clip | vs V1 |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['scheme']} | {r['encoder_tokens']} | {r['decoder_tokens']} | {r['loss_tokens']} | "
                 f"{r['train_gflops_per_clip']:.1f} | {r['relative_to_v1']:.3f} |")
  return "\n".join(lines)


def format_table(result: Dict[str, Any]) -> str:
  c, p, t, f, m = (result[k] for k in ("config", "params", "tokens", "flops", "memory"))
  gib = 1024 ** 3
  rows = [
      ("model", f"ViT-{c['variant']}/{c['patch_size']}, grid {c['grid']}, {c['compute_dtype']}, "
                f"scan={c['scan_layers']}, remat={c['remat_policy']}"),
      ("masking", f"encoder={c['encoder_masking']}, decoder={c['decoder_masking']}"),
      ("params encoder", f"{p['encoder'] / 1e6:.2f}M"),
      ("params decoder", f"{p['decoder'] / 1e6:.2f}M"),
      ("params total", f"{p['total'] / 1e6:.2f}M"),
      ("tokens per clip", f"{t['total']}"),
      ("encoder tokens", f"{t['encoder']}"),
      ("decoder tokens", f"{t['decoder']} ({t['decoder_kept']} mask tokens)"),
      ("loss tokens", f"{t['loss']}"),
      ("train step FLOPs per clip", f"{f['train_step_per_clip'] / 1e9:.1f} GFLOPs (XLA cost analysis)"),
      ("memory per device", f"{m['per_device_bytes'] / gib:.2f} GiB for {c['batch_size_compiled']} clips on "
                            f"{c['devices']} device(s) (args {m.get('argument_size', 0) / gib:.2f}, temp "
                            f"{m.get('temp_size', 0) / gib:.2f} GiB)"),
      ("compile time", f"{result['compile_seconds']} s"),
  ]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


