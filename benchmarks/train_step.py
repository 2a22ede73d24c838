r"""Train-step benchmark: clips/s per device, TFLOP/s per device, MFU, peak memory and compile time.

  python -m benchmarks.train_step --config=configs/vitb_pretrain.py --batch_sizes=8,16,32 [--steps=10]
      [--json=out.json] [--config.masking.encoder=motion ...]

Runs the real train step (masking, model, loss, AdamW update) on synthetic uint8 clips (random pixels: the cost of
a step does not depend on the content), data-parallel over all local devices. With crops on the device (the
pretraining default, config.data.crop_on_device) the step also cuts the views from canvas clips (random
MultiScaleCrop boxes; the canvas is the shards' max frame size, else 320x568), so batch sizes must be multiples of
repeated_aug x devices; --config.data.crop_on_device=False times the step on ready views. The step is the trainer's
own (`videomae_jax.train_step.build`: sharding rules, FLOPs and compiled memory as in training); FLOPs are model
FLOPs from XLA's cost analysis of the unrolled step; MFU divides by the device's peak
from `videomae_jax.hardware` (none on CPU). Peak memory is the device allocator's peak where it reports one (GPU,
TPU), else XLA's memory analysis of the compiled step. A batch that does not fit is reported as OOM and the sweep
stops there.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from videomae_jax import hardware, resolve, train_step  # noqa: E402
from videomae_jax.data import transforms  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_BATCH_SIZES = flags.DEFINE_string("batch_sizes", "", "Comma-separated global batch sizes (default: 1 per device).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per batch size (after one warm-up step).")
_JSON = flags.DEFINE_string("json", "", "Also write the rows to this JSON file.")
_COMPARE_TORCH = flags.DEFINE_bool(
    "compare_torch", False, "Also time transformers' VideoMAE (PyTorch, the `torch` extra) at the config's size: "
    "its VideoMAE V1 pretraining step against ours in V1 mode (--config.masking.decoder=none), and the "
    "classifier's inference on every token; alternating rounds, medians and our/PyTorch ratios.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "--compare_torch: alternating measurement rounds (median reported).")


def _peak_memory(device, step) -> tuple[int, str]:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "allocator"
  if not step.memory:
    return 0, "unknown"
  return step.memory["per_device_bytes"], "xla"


def benchmark(config, batch_size: int, num_steps: int) -> dict:
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.batch_size = batch_size
  step = train_step.build(config)  # The trainer's own compiled step: same shardings, FLOPs and memory.
  task, devices = step.task, step.mesh.devices.size
  state = step.init_state(0)
  frozen = step.init_frozen(0)  # a distillation teacher's cost does not depend on its values
  rng = np.random.default_rng(0)
  batch = {key: jax.device_put(_synthetic(key, spec, step.abstract_batch, config, rng), step.batch_sharding)
           for key, spec in step.abstract_batch.items()}
  state, metrics = step(state, batch, frozen)  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = step(state, batch, frozen)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / num_steps
  device = jax.devices()[0]
  peak = hardware.peak_flops_per_second(device.device_kind)
  tflops = step.flops_per_clip * batch_size / devices / seconds / 1e12
  memory, memory_source = _peak_memory(device, step)
  repeats = step.abstract_batch["crops"].shape[1] if "crops" in step.abstract_batch else 0
  masking = (f"{config.masking.encoder}+{config.masking.decoder}" if task.params_kind == "pretrain" else
             f"keep {config.masking.finetune_keep_ratio}")
  return {
      "device": device.device_kind, "devices": devices, "variant": config.model.variant, "task": config.task,
      "masking": masking, "dtype": config.model.compute_dtype,
      "attention": config.model.attention_impl, "remat": config.model.remat_policy,
      "scan": bool(config.model.scan_layers), "batch_size": batch_size,
      "step_seconds": seconds, "clips_per_second_per_device": batch_size / devices / seconds,
      "tflops_per_second_per_device": tflops, "mfu": (tflops * 1e12 / peak) if peak else None,
      "peak_memory_gib": memory / 1024 ** 3, "memory_source": memory_source,
      "flops_per_clip": step.flops_per_clip, "compiled_memory_bytes": step.memory.get("per_device_bytes", 0),
      "compile_seconds": step.compile_seconds, "loss": float(metrics["train/loss"]),
      "crops": (f"device, {repeats} per clip, canvas {step.abstract_batch['video'].shape[2]}x"
                f"{step.abstract_batch['video'].shape[3]}") if repeats else "host (ready views)",
  }


def _synthetic(key, spec, abstract_batch, config, rng) -> np.ndarray:
  """Random pixels and labels; for 'crops', real MultiScaleCrop boxes inside the canvas (the step gathers them)."""
  if key == "crops":
    height, width = abstract_batch["video"].shape[2:4]
    clips, repeats, _ = spec.shape
    return np.array([[(*transforms.multiscale_crop_box(height, width, rng, output_size=config.model.image_size), 0, 0)
                      for _ in range(repeats)] for _ in range(clips)], np.int32)
  if key == "label":
    return rng.integers(0, max(1, config.model.num_classes), spec.shape).astype(spec.dtype)
  if spec.dtype == jnp.uint8:
    return rng.integers(0, 255, spec.shape, dtype=np.uint8)
  return np.zeros(spec.shape, spec.dtype)


def format_table(rows: list) -> str:
  lines = ["| device | model | masking | dtype | attention | remat | batch | clips/s/dev | TFLOP/s/dev | MFU | "
           "peak mem GiB | compile s |", "|" + "---|" * 12]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r.get('device', '')} | {r['variant']} | {r['masking']} | | | | {r['batch_size']} | "
                   f"{r['error']} | | | | |")
      continue
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
    lines.append(f"| {r['device']} x{r['devices']} | ViT-{r['variant']} | {r['masking']} | {r['dtype']} | "
                 f"{r['attention']} | {r['remat']} | {r['batch_size']} | {r['clips_per_second_per_device']:.2f} | "
                 f"{r['tflops_per_second_per_device']:.3f} | {mfu} | {r['peak_memory_gib']:.2f} "
                 f"({r['memory_source']}) | {r['compile_seconds']:.1f} |")
  return "\n".join(lines)


def compare_torch(config, batch_size: int, num_steps: int, rounds: int) -> list:
  """Our train step (V1 mode) and classifier inference against transformers' VideoMAE, same size and batch, in
  alternating rounds on this process's devices (pin the process, e.g. `taskset -c 0`, for one core)."""
  import statistics  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_baseline  # pylint: disable=import-outside-toplevel
  from videomae_jax import normalization  # pylint: disable=import-outside-toplevel
  from videomae_jax.models import VideoClassifier, model_spec_from_config  # pylint: disable=import-outside-toplevel
  if config.masking.encoder != "tube" or config.masking.decoder != "none":
    raise app.UsageError("--compare_torch times VideoMAE V1 on both sides: add --config.masking.encoder=tube "
                         "--config.masking.decoder=none")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.batch_size, config.data.repeated_aug, config.data.crop_on_device = batch_size, 1, False
  ours = train_step.build(config)
  state = ours.init_state(0)
  rng = np.random.default_rng(0)
  batch = {key: jax.device_put(_synthetic(key, spec, ours.abstract_batch, config, rng), ours.batch_sharding)
           for key, spec in ours.abstract_batch.items()}
  bf16 = config.model.compute_dtype == "bfloat16"  # the same precision on both sides: autocast for PyTorch
  theirs = torch_baseline.TrainStep(config, batch_size, ours.task.plan.num_encoder_tokens, bf16=bf16)

  def time_ours(num):
    nonlocal state
    state, metrics = ours(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(num):
      state, metrics = ours(state, batch)
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - start) / num

  spec = model_spec_from_config(dict(config.model, num_classes=400, pooled_norm="fc_norm"))
  classifier = VideoClassifier(spec)
  video = normalization.normalize(jnp.asarray(rng.integers(0, 255, (batch_size, spec.num_frames, spec.image_size,
                                                                     spec.image_size, 3), dtype=np.uint8)))
  params = jax.jit(classifier.init)(jax.random.key(0), video)
  infer = jax.jit(classifier.apply)
  jax.block_until_ready(infer(params, video))
  their_inference = torch_baseline.Inference(config, batch_size, bf16=bf16)

  def time_infer(num):
    start = time.perf_counter()
    for _ in range(num):
      logits = infer(params, video)
    jax.block_until_ready(logits)
    return (time.perf_counter() - start) / num

  # Each timing: (wall s, CPU s) per step. The process's CPU seconds count what each side computes whatever
  # else the machine runs; wall time is what a user waits for. Every call runs num_steps + 1 steps (one warm-up
  # inside the call) except time_infer's num_steps.
  times = {"ours_train": [], "torch_train": [], "ours_infer": [], "torch_infer": []}
  calls = {"ours_train": (time_ours, num_steps + 1), "torch_train": (theirs.time, num_steps + 1),
           "ours_infer": (time_infer, num_steps), "torch_infer": (their_inference.time, num_steps + 1)}
  for _ in range(rounds):
    for name, (timer, steps_run) in calls.items():
      cpu = time.process_time()
      wall = timer(num_steps)
      times[name].append((wall, (time.process_time() - cpu) / steps_run))
  median = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
  cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
  plan = ours.task.plan
  masking = f"V1 tube {plan.num_encoder_tokens} visible / {plan.num_tokens}"
  work = {"train": f"train step ({masking})", "infer": f"inference (classifier, {plan.num_tokens} tokens)"}
  return [dict(work=work[kind], batch_size=batch_size, ours=batch_size / median[f"ours_{kind}"],
               torch=batch_size / median[f"torch_{kind}"], ratio=median[f"torch_{kind}"] / median[f"ours_{kind}"],
               ours_cpu_s=cpu[f"ours_{kind}"] / batch_size, torch_cpu_s=cpu[f"torch_{kind}"] / batch_size,
               cpu_ratio=cpu[f"torch_{kind}"] / cpu[f"ours_{kind}"])
          for kind in ("train", "infer")]


def format_comparison(rows: list, config) -> str:
  import torch  # pylint: disable=import-outside-toplevel
  lines = [f"ViT-{config.model.variant} {config.model.num_frames}x{config.model.image_size}, "
           f"{config.model.compute_dtype}; {jax.devices()[0].device_kind} (JAX {jax.__version__}) vs PyTorch "
           f"{torch.__version__} eager{' (bf16 autocast)' if config.model.compute_dtype == 'bfloat16' else ''} with "
           f"{torch.get_num_threads()} threads; cores available: "
           f"{len(os.sched_getaffinity(0))}",
           "| work | batch | ours clips/s | PyTorch clips/s | ours / PyTorch | ours CPU s/clip | PyTorch CPU s/clip "
           "| ours / PyTorch (CPU) |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['work']} | {r['batch_size']} | {r['ours']:.3f} | {r['torch']:.3f} | {r['ratio']:.2f}x "
                 f"| {r['ours_cpu_s']:.3f} | {r['torch_cpu_s']:.3f} | {r['cpu_ratio']:.2f}x |")
  return "\n".join(lines)


def main(argv):
  del argv
  if _CONFIG.value is None:
    raise app.UsageError("--config is required")
  config = resolve.resolve(_CONFIG.value, for_training=False)
  if _COMPARE_TORCH.value:
    rows = []
    for batch_size in [int(s) for s in _BATCH_SIZES.value.split(",") if s] or [1]:
      rows += compare_torch(config, batch_size, _STEPS.value, _ROUNDS.value)
    print(format_comparison(rows, config))
    if _JSON.value:
      with open(_JSON.value, "w") as f:
        json.dump(rows, f, indent=1)
    return
  sizes = [int(s) for s in _BATCH_SIZES.value.split(",") if s] or [jax.device_count()]
  rows = []
  for batch_size in sizes:
    try:
      rows.append(benchmark(config, batch_size, _STEPS.value))
    except Exception as error:  # noqa: BLE001 - an OOM ends the sweep with a row that says so
      message = str(error)
      if "RESOURCE_EXHAUSTED" not in message and "Out of memory" not in message:
        raise
      rows.append({"variant": config.model.variant, "masking": f"{config.masking.encoder}+{config.masking.decoder}",
                   "batch_size": batch_size, "error": "OOM"})
      break
    finally:
      if _JSON.value:  # after every batch size: a sweep stopped by a time limit keeps the rows it measured
        with open(_JSON.value, "w") as f:
          json.dump(rows, f, indent=1)
  print(format_table(rows))
  crops = {r["crops"] for r in rows if "crops" in r}
  if crops:
    print(f"Crops: {', '.join(sorted(crops))} (crops on the device are part of the timed step).")


if __name__ == "__main__":
  app.run(main)
