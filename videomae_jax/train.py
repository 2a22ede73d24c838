"""The training program, top to bottom: config checks, mesh, input, model and optimizer, sharded state, compiled
step, checkpoints, loop. `python -m videomae_jax.main` calls `run(config, workdir)`.

A run is identified by its workdir: starting again restores the latest checkpoint (train state and input
iterator together) and continues exactly where it stopped. Every random choice derives from (seed, step), so a
resumed run is bitwise identical to an uninterrupted one on the same hardware.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import periodic_actions
from etils import epath

from videomae_jax import checkpointing, metrics, optim, preemption, sharding, steps
from videomae_jax.errors import ConfigError


class NonFiniteLossError(FloatingPointError):
  pass


# ---------------------------------------------------------------------------------------------------------------
# Configuration checks: everything that can be wrong with the config fails here, before compiling or reading data.
# ---------------------------------------------------------------------------------------------------------------
def build_task(config: ml_collections.ConfigDict):
  """The task object of config.task: init_params, abstract_batch, loss (see steps.PretrainTask)."""
  if config.task == "pretrain":
    from videomae_jax import analysis  # the same task `inspect` analyzes
    return analysis.pretrain_task(config)
  if config.task == "finetune":
    from videomae_jax import finetune
    return finetune.ClassificationTask.from_config(config)
  raise ConfigError(f"config.task={config.task!r}; use 'pretrain' or 'finetune'.")


def schedule_lengths(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(steps per epoch, total steps, warmup steps) as Python ints."""
  videos_per_step = config.batch_size / max(1, config.data.get("repeated_aug", 1))
  steps_per_epoch = max(1, int(config.data.num_videos_per_epoch // videos_per_step))
  total = config.num_train_steps if config.num_train_steps > 0 else int(config.total_epochs * steps_per_epoch)
  warmup = config.get("warmup_steps", -1)
  if warmup is None or warmup < 0:
    warmup = int(config.warmup_epochs * steps_per_epoch)
  return steps_per_epoch, int(total), int(min(warmup, total))


def check_batch(config: ml_collections.ConfigDict, mesh) -> int:
  """Returns the per-process batch; raises if the global batch cannot be split evenly."""
  devices = mesh.devices.size
  if config.batch_size % devices:
    raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the {devices} devices of the "
                      f"mesh; use a multiple of {devices}.")
  repeated = config.data.get("repeated_aug", 1)
  local = config.batch_size // jax.process_count()
  if local % repeated:
    raise ConfigError(f"the per-process batch {local} is not divisible by config.data.repeated_aug={repeated}.")
  if config.task == "pretrain" and config.data.get("crop_on_device", False):
    clips = config.batch_size // repeated
    if clips % devices:
      raise ConfigError(
          f"config.data.crop_on_device=True ships batch_size / repeated_aug = {clips} decoded clips per step, "
          f"which the {devices} devices cannot split evenly: use a batch_size that is a multiple of "
          f"{devices * repeated} (devices x repeated_aug), or config.data.crop_on_device=False.")
  return local


# ---------------------------------------------------------------------------------------------------------------
# Input pipeline
# ---------------------------------------------------------------------------------------------------------------
def prepare_demo_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.data.demo_dir: build the synthetic demo shards there if missing and point the sources at them.

  config.data.demo_videos_per_class, demo_seed (default 0), demo_num_frames and demo_size choose the videos: the
  demo pretraining and fine-tuning use different ones, and the test set (config.eval.demo_*) yet another seed.
  """
  demo_dir = config.data.get("demo_dir", "")
  if not demo_dir:
    return config
  from data_prep import make_demo
  if jax.process_index() == 0:
    make_demo.build_demo_shards(demo_dir, **make_demo.demo_arguments(config.data, default_seed=0))
  from jax.experimental import multihost_utils
  multihost_utils.sync_global_devices("demo shards built")
  shard_dir = os.path.join(demo_dir, "shards")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for source in config.data.sources:
      if not source.get("path"):
        source["path"] = shard_dir
  return config


def resolve_crop_canvas(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Pretraining with crops on the device: fixes config.data.crop_canvas from the shards (max frame size) so
  that the compiled step and the pipeline agree on the batch shape."""
  from videomae_jax.data import pipeline
  if config.task != "pretrain" or not pipeline.device_crops_per_clip(config):
    return config
  try:
    canvas = pipeline.crop_canvas(config)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.crop_canvas = canvas
  logging.info("Crops on the device: clips are shipped in a %dx%d canvas, %d views each.", canvas[0], canvas[1],
               pipeline.device_crops_per_clip(config))
  return config


def make_input(config: ml_collections.ConfigDict):
  """The grain iterator of this process's batches (checkpointable: get_state / set_state)."""
  from videomae_jax.data import pipeline
  mode = "pretrain" if config.task == "pretrain" else "finetune"
  dataset = pipeline.make_dataset(config, mode=mode, process_index=jax.process_index(),
                                  process_count=jax.process_count(), seed=config.seed)
  return iter(dataset)


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------
def run(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains until config.num_train_steps (or preemption). Returns a summary (last step, last loss, stopped)."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  # From here on SIGTERM / SIGUSR1 only ask for a checkpoint at the next step boundary.
  handler = preemption.PreemptionHandler(config.get("preemption_check_every_steps", 10)).install()
  try:
    return _run(config, workdir, handler)
  finally:
    handler.uninstall()


def _run(config: ml_collections.ConfigDict, workdir: str, handler: preemption.PreemptionHandler) -> Dict[str, Any]:
  task = build_task(config)  # A bad model or masking config fails here, before any data is built or read.
  config = resolve_crop_canvas(prepare_demo_data(config))
  task = build_task(config)  # Again, with the canvas of the data.
  steps_per_epoch, total_steps, warmup_steps = schedule_lengths(config)

  # Mesh -----------------------------------------------------------------------------------------------------
  mesh = sharding.make_mesh(config.mesh)
  local_batch = check_batch(config, mesh)
  logging.info("Mesh %s over %d devices (%d processes); batch %d (%d per process); %d steps (%d per epoch).",
               dict(mesh.shape), mesh.devices.size, jax.process_count(), config.batch_size, local_batch,
               total_steps, steps_per_epoch)

  # Model and optimizer --------------------------------------------------------------------------------------
  abstract_params = jax.eval_shape(task.init_params, jax.random.key(0))
  optimizer, schedule = optim.make_optimizer(config.optimizer, abstract_params, batch_size=config.batch_size,
                                             warmup_steps=warmup_steps, total_steps=total_steps,
                                             depth=task.spec.depth)

  # Sharded state: created already sharded (no host copy of the full model) ----------------------------------
  abstract_state = jax.eval_shape(lambda: steps.init_train_state(task, optimizer, config.seed))
  rules = [tuple(rule) for rule in config.get("sharding_rules", sharding.DEFAULT_RULES)]
  state_shardings = sharding.state_shardings(abstract_state, mesh, rules,
                                             config.get("fsdp_min_size", sharding.DEFAULT_FSDP_MIN_SIZE))
  batch_sharding = sharding.batch_sharding(mesh)

  data_iterator = make_input(config)
  checkpointer = checkpointing.Checkpointer(workdir, max_to_keep=config.keep_checkpoints,
                                            async_saves=config.get("async_checkpointing", True))
  restored_step = checkpointer.latest_step()
  if restored_step is not None:
    target = checkpointing.abstract_with_shardings(abstract_state, state_shardings)
    _, state = checkpointer.restore(target, data_iterator, step=restored_step)
    logging.info("Resumed from %s at step %d.", checkpointer.directory, restored_step)
  else:
    state = jax.jit(lambda: steps.init_train_state(task, optimizer, config.seed), out_shardings=state_shardings)()
    if config.get("init_from"):
      state = dict(state, params=load_initial_params(config, task, state["params"], state_shardings["params"]))
      state = dict(state, opt_state=jax.jit(optimizer.init, out_shardings=state_shardings["opt_state"])(
          state["params"]))

  # Compile ahead of time: memory problems show up before any data is read ------------------------------------
  abstract_batch = task.abstract_batch(config.batch_size, batch_sharding)
  train_step = jax.jit(steps.make_train_step(task, optimizer, schedule),
                       in_shardings=(state_shardings, jax.tree.map(lambda _: batch_sharding, abstract_batch)),
                       out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)
  compile_start = time.time()
  compiled = train_step.lower(checkpointing.abstract_with_shardings(abstract_state, state_shardings),
                              abstract_batch).compile()
  from videomae_jax import analysis
  if config.task == "finetune":
    from videomae_jax import finetune
    flops_per_clip = finetune.train_step_flops_per_clip(config)
  else:
    flops_per_clip = analysis.train_step_flops_per_clip(config)
  flops_per_step = flops_per_clip * config.batch_size / mesh.devices.size
  memory = compiled.memory_analysis()
  logging.info("Compiled the train step in %.1f s: %.3g model FLOPs per device per step. Memory per device: %s",
               time.time() - compile_start, flops_per_step, _describe_memory(memory))

  # Loop ----------------------------------------------------------------------------------------------------
  start_step = int(restored_step or 0)
  writer = metrics.create_writer(workdir, start_step)
  progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                             every_steps=config.log_every_steps)
  peak = _peak_flops(jax.devices()[0])
  pending, last_loss, stopped_by = [], math.nan, None
  window_start, data_wait, window_steps = time.time(), 0.0, 0
  step = start_step
  try:
    while step < total_steps:
      wait_start = time.time()
      local = next(data_iterator)
      batch = {key: jax.make_array_from_process_local_data(batch_sharding, np.asarray(local[key]))
               for key in abstract_batch}
      data_wait += time.time() - wait_start
      state, step_metrics = compiled(state, batch)
      step += 1
      window_steps += 1
      pending.append(step_metrics)
      progress(step)
      is_last = step == total_steps
      checkpoint_now = step % config.checkpoint_every_steps == 0 or is_last
      if step % config.log_every_steps == 0 or checkpoint_now:
        last_loss = _write_metrics(writer, step, pending)
        pending = []
        elapsed = time.time() - window_start
        writer.write_scalars(step, metrics.throughput_metrics(
            steps=window_steps, seconds=elapsed, data_wait_seconds=data_wait, clips_per_step=config.batch_size,
            flops_per_step_per_device=flops_per_step, num_devices=mesh.devices.size,
            peak_flops_per_device=peak))
        window_start, data_wait, window_steps = time.time(), 0.0, 0
        writer.flush()
      if handler.should_stop(step) and not is_last:
        stopped_by = handler.signal_name or "preemption"
        checkpoint_now = True
      if checkpoint_now:
        if pending:
          last_loss = _write_metrics(writer, step, pending)
          pending = []
        checkpointer.save(step, state, data_iterator, force=True)
      if stopped_by:
        logging.warning("Stopping at step %d after %s; checkpoint saved.", step, stopped_by)
        break
  finally:
    checkpointer.close()
    writer.flush()
  summary = {"step": step, "last_loss": last_loss, "stopped_by": stopped_by, "total_steps": total_steps}
  if jax.process_index() == 0:
    (epath.Path(workdir) / "run_summary.json").write_text(json.dumps(summary, indent=1))
    if config.task == "pretrain" and step == total_steps and config.data.get("reconstruction_video", ""):
      write_reconstruction_picture(config, workdir, checkpointer.directory, step)
  return summary


def write_reconstruction_picture(config, workdir: str, checkpoint_dir: str, step: int) -> None:
  """{workdir}/reconstruction.png: frames, motion scores, masks and the model's reconstruction of one video."""
  from videomae_jax import visualize
  video = config.data.reconstruction_video
  if config.data.get("demo_dir") and not os.path.isabs(video):
    video = os.path.join(config.data.demo_dir, video)
  output = os.path.join(workdir, "reconstruction.png")
  visualize.visualize(config, video, output, checkpoint=os.path.join(checkpoint_dir, str(step), "state"))
  logging.info("Wrote %s", output)


def _write_metrics(writer, step: int, pending: list) -> float:
  """Averages the metrics of the steps since the last write; raises on a non-finite loss (before any save)."""
  values = jax.device_get(pending)
  losses = np.asarray([v["train/loss"] for v in values], np.float64)
  if not np.all(np.isfinite(losses)):
    first_bad = step - len(losses) + 1 + int(np.argmin(np.isfinite(losses)))
    raise NonFiniteLossError(
        f"train/loss became {losses[~np.isfinite(losses)][0]} at step {first_bad}. The run stopped without saving "
        "this state; the last good checkpoint is kept. Lower config.optimizer.base_lr, raise warmup_epochs, or "
        "use config.model.compute_dtype='float32' to investigate.")
  mean = {key: float(np.mean([np.asarray(v[key]) for v in values])) for key in values[0]}
  writer.write_scalars(step, mean)
  return mean["train/loss"]


def _describe_memory(memory) -> str:
  if memory is None:
    return "unavailable"
  gib = 1024 ** 3
  return (f"arguments {memory.argument_size_in_bytes / gib:.2f} GiB, outputs {memory.output_size_in_bytes / gib:.2f}"
          f" GiB, temporaries {memory.temp_size_in_bytes / gib:.2f} GiB, aliased "
          f"{memory.alias_size_in_bytes / gib:.2f} GiB")


def _peak_flops(device) -> Optional[float]:
  try:
    from videomae_jax import hardware
    return hardware.peak_flops_per_second(device.device_kind)
  except Exception:  # noqa: BLE001 - unknown hardware: no MFU, everything else still logged
    return None


def load_initial_params(config, task, params, shardings):
  """config.init_from: parameters only (a params export, a workdir, or a converted official checkpoint)."""
  from videomae_jax.convert import params_io
  from videomae_jax.models import layer_stacking
  loaded = params_io.load_params(config.init_from)
  # A fine-tuning task takes the encoder of a pretraining checkpoint (fresh fc_norm / head) or re-indexes a head.
  adapt = getattr(task, "adapt_loaded_params", None)
  source = adapt(loaded, seed=config.seed) if adapt is not None else loaded.params
  if task.spec.scan_layers:
    source = layer_stacking.stack_layers(source)
  flat_target = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
  flat_source = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(source)}
  missing = sorted(set(flat_target) - set(flat_source))
  unexpected = sorted(set(flat_source) - set(flat_target))
  wrong = sorted(k for k in set(flat_target) & set(flat_source)
                 if tuple(flat_target[k].shape) != tuple(np.shape(flat_source[k])))
  if missing or wrong:
    raise ConfigError(f"config.init_from={config.init_from!r} does not fit this model: missing {missing[:10]}, "
                      f"wrong shapes {wrong[:10]}, unexpected {unexpected[:10]}.")
  leaves = [jax.device_put(np.asarray(flat_source[jax.tree_util.keystr(p)], leaf.dtype), s)
            for (p, leaf), s in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(shardings))]
  logging.info("Initialized %d parameter arrays from config.init_from=%s (%d arrays there unused: %s).",
               len(leaves), config.init_from, len(unexpected), unexpected[:5])
  return jax.tree.unflatten(jax.tree.structure(params), leaves)
