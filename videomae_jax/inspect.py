r"""Look at a configuration without training: parameter and token counts, FLOPs and memory of the compiled step.

  python -m videomae_jax.inspect --config=configs/vitg_pretrain.py [--json] [--batch_size=8]
      [--config.masking.encoder=motion ...]

Nothing is allocated: the train state comes from `jax.eval_shape` and the step is lowered and compiled ahead of time
for `--batch_size` clips on this process's devices. FLOPs are XLA's cost analysis of the compiled train step
(forward, backward and optimizer update) per clip, counted on the unrolled, un-rematerialized step (model FLOPs,
the numerator of MFU); memory is XLA's memory analysis of the step as configured, for one device.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict

from absl import app, flags
from ml_collections import config_flags

import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax import masking, optim, steps
from videomae_jax.models import model_spec_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips to compile the step for (on this process's devices).")


def _count(tree: Any) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def pretrain_task(config) -> steps.PretrainTask:
  spec = model_spec_from_config(config.model)
  plan = masking.masking_plan(config.masking, spec)
  return steps.PretrainTask(spec, plan)


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
  train_step, state, batch, _ = _abstract_step(unrolled, batch_size)
  analysis = train_step.lower(state, batch).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0)) / batch_size


def analyze(config, batch_size: int) -> Dict[str, Any]:
  """Counts, FLOPs and memory of the pretraining train step for `batch_size` clips (no allocation)."""
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


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config=configs/<name>.py is required.")
  result = analyze(config, _BATCH.value)
  if _JSON.value:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
  else:
    print(format_table(result))


if __name__ == "__main__":
  app.run(main)
