"""The training loop, top to bottom: mesh, compiled step, input, state (fresh, init_from or restored), loop.

`python -m videomae_jax.main` resolves the config (videomae_jax.resolve) and calls `run(config, workdir)`; the
task (videomae_jax.tasks) holds everything specific to what is trained, so nothing here branches on it.

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
from typing import Any, Dict

import jax
import ml_collections
import numpy as np
from etils import epath

from videomae_jax import (checkpointing, evaluators, hardware, metrics, optim, preemption, sharding, tasks, train_step,
                          visualization)
from videomae_jax.convert import params_io
from videomae_jax.data import pipeline
from videomae_jax.errors import ConfigError, NonFiniteLossError
from videomae_jax.models import layer_stacking

SUMMARY_FILE = "run_summary.json"


def run(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains until the end of the schedule (or preemption). Returns a summary (last step, last loss, stopped).

  `python -m videomae_jax.main` also takes the workdir's lock and checks a restart's config
  (videomae_jax.workdir); called directly, the caller owns the workdir."""
  check_config(config)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  # From here on SIGTERM / SIGUSR1 only ask for a checkpoint at the next step boundary.
  handler = preemption.PreemptionHandler(config.preemption_check_every_steps).install()
  try:
    return _run(config, workdir, handler)
  finally:
    handler.uninstall()


def check_config(config: ml_collections.ConfigDict) -> None:
  """The trainer's own counts and rates, before anything is written or compiled: a ConfigError listing every
  value that cannot work (instead of a ZeroDivisionError after compiling, or a silent 1200-epoch default)."""
  problems = []
  for key in ("batch_size", "data.repeated_aug", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
              "preemption_check_every_steps", "data.num_videos_per_epoch"):
    value = config
    for part in key.split("."):
      value = value[part]
    if not (isinstance(value, int) and value > 0):
      problems.append(f"config.{key}={value!r} must be a whole number > 0")
  if not problems and config.batch_size % config.data.repeated_aug:
    problems.append(f"config.batch_size={config.batch_size} must be a multiple of config.data.repeated_aug="
                    f"{config.data.repeated_aug} (each decoded clip gives that many views)")
  if config.num_train_steps == -1:
    if not config.total_epochs > 0:
      problems.append(f"config.total_epochs={config.total_epochs!r} must be > 0 (or set config.num_train_steps)")
  elif not config.num_train_steps > 0:
    problems.append(f"config.num_train_steps={config.num_train_steps!r} must be > 0, or -1 to run "
                    "config.total_epochs")
  if config.warmup_steps < -1:
    problems.append(f"config.warmup_steps={config.warmup_steps} must be >= 0, or -1 to use config.warmup_epochs")
  if config.warmup_epochs < 0:
    problems.append(f"config.warmup_epochs={config.warmup_epochs} must be >= 0")
  for key in ("base_lr", "min_lr", "weight_decay"):
    if config.optimizer[key] < 0:
      problems.append(f"config.optimizer.{key}={config.optimizer[key]} must be >= 0")
  if config.data.num_workers < 0:
    problems.append(f"config.data.num_workers={config.data.num_workers} must be >= 0 (0: decode in this process)")
  if problems:
    raise ConfigError("; ".join(problems) + ".")


def _run(config: ml_collections.ConfigDict, workdir: str, handler: preemption.PreemptionHandler) -> Dict[str, Any]:
  task = tasks.from_config(config)  # A bad model, masking or task config fails here, before compiling.
  steps_per_epoch, total_steps, _ = optim.schedule_lengths(config)
  checkpointer = checkpointing.Checkpointer(workdir, max_to_keep=config.keep_checkpoints,
                                            async_saves=config.async_checkpointing)
  restored_step = checkpointer.latest_step()
  if restored_step is not None and restored_step >= total_steps:
    # Nothing to train: no compile, no data, no new TensorBoard file or picture; the summary is the one written.
    checkpointer.close()
    logging.info("%s already holds the last step (%d of %d): nothing to do.", checkpointer.directory,
                 restored_step, total_steps)
    path = epath.Path(workdir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else {"step": restored_step, "total_steps": total_steps}

  # A task's frozen arrays (a distillation teacher) are read and checked first: a bad path fails before compiling.
  # They are not in the checkpoints, so a resumed run reads them again here.
  host_frozen = task.load_frozen()

  # Mesh and the compiled step: memory problems show up before any data is read ------------------------------
  mesh = sharding.make_mesh(config.mesh)
  step = train_step.build(config, mesh=mesh, task=task)
  frozen = step.put_frozen(host_frozen)
  del host_frozen
  logging.info("Mesh %s over %d devices (%d processes); batch %d; %d steps (%d per epoch).", dict(mesh.shape),
               mesh.devices.size, jax.process_count(), config.batch_size, total_steps, steps_per_epoch)
  flops_per_step = step.flops_per_clip * config.batch_size / mesh.devices.size
  logging.info("Compiled the train step in %.1f s: %.3g model FLOPs per device per step. Memory per device: %s",
               step.compile_seconds, flops_per_step, _describe_memory(step.memory))
  # The evaluators of config.evals, compiled for the state's parameter layout (their config errors show here too).
  evals = evaluators.from_config(config, task, step.abstract_state["params"], mesh)

  # Input and state --------------------------------------------------------------------------------------------
  def make_iterator():
    return iter(pipeline.make_dataset(config, mode=task.input_mode, process_index=jax.process_index(),
                                      process_count=jax.process_count(), seed=config.seed))

  if restored_step is not None:
    # The newest checkpoint that passes its checksums and restores; damaged ones are set aside with a warning.
    restored_step, state, data_iterator = checkpointer.restore_latest(step.abstract_state, make_iterator)
    logging.info("Resumed from %s at step %d.", checkpointer.directory, restored_step)
  else:
    data_iterator = make_iterator()
    state = step.init_state(config.seed)
    if config.init_from:
      params = _load_initial_params(config, task, state["params"], step.state_shardings["params"])
      opt_state = jax.jit(step.optimizer.init, out_shardings=step.state_shardings["opt_state"])(params)
      state = dict(state, params=params, opt_state=opt_state)

  # Loop ----------------------------------------------------------------------------------------------------
  start_step = int(restored_step or 0)
  # A fresh run drops whatever an earlier attempt without a checkpoint logged (its step-0 evaluations included).
  writer = metrics.create_writer(workdir, -1 if restored_step is None else start_step)
  peak = hardware.peak_flops_per_second(jax.devices()[0].device_kind)
  pending, last_loss, stopped_by = [], math.nan, None
  window_start, data_wait, window_steps = time.time(), 0.0, 0
  current = start_step
  try:
    if restored_step is None and evaluators.run_due(evals, 0, total_steps, state["params"], writer):
      writer.flush()  # the initial parameters' numbers; a resumed run has them already
    while current < total_steps:
      wait_start = time.time()
      local = next(data_iterator)
      batch = {key: jax.make_array_from_process_local_data(step.batch_sharding, np.asarray(local[key]))
               for key in step.abstract_batch}
      data_wait += time.time() - wait_start
      state, step_metrics = step(state, batch, frozen)
      checkpointer.raise_if_save_failed()  # a background save that failed stops the run here, not a save later
      current += 1
      window_steps += 1
      pending.append(step_metrics)
      is_last = current == total_steps
      checkpoint_now = current % config.checkpoint_every_steps == 0 or is_last
      # Evaluators run after the step and before its checkpoint: a run resumed from this step's checkpoint has
      # their results (metrics.jsonl keeps lines up to the restored step) and never repeats them.
      eval_seconds = evaluators.run_due(evals, current, total_steps, state["params"], writer)
      # The evaluations' time is not training time: the throughput window leaves it out.
      window_start += eval_seconds
      if current % config.log_every_steps == 0 or checkpoint_now:
        last_loss = _write_metrics(writer, current, pending, config, checkpointer.latest_step)
        pending = []
        throughput = metrics.throughput_metrics(
            steps=window_steps, seconds=time.time() - window_start, data_wait_seconds=data_wait,
            clips_per_step=config.batch_size, flops_per_step_per_device=flops_per_step,
            num_devices=mesh.devices.size, peak_flops_per_device=peak)
        writer.write_scalars(current, throughput)
        logging.info("Step %d of %d, ETA %.1f min.", current, total_steps,
                     (total_steps - current) / throughput["perf/steps_per_second"] / 60)
        window_start, data_wait, window_steps = time.time(), 0.0, 0
        writer.flush()
      elif eval_seconds:
        writer.flush()  # everything logged for this step is one line, on disk before its checkpoint
      if handler.should_stop(current) and not is_last:
        stopped_by = handler.signal_name or "preemption"
        checkpoint_now = True
      if checkpoint_now:
        if pending:
          last_loss = _write_metrics(writer, current, pending, config, checkpointer.latest_step)
          pending = []
          writer.flush()
        checkpointer.save(current, state, data_iterator, force=True)
      if stopped_by:
        logging.warning("Stopping at step %d after %s; checkpoint saved.", current, stopped_by)
        break
  finally:
    checkpointer.close()
    writer.close()
  summary = {"step": current, "last_loss": None if math.isnan(last_loss) else last_loss, "stopped_by": stopped_by,
             "total_steps": total_steps, "train_step": step.describe()}
  if jax.process_index() == 0:
    (epath.Path(workdir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    if current == total_steps and config.data.reconstruction_video:
      output = os.path.join(workdir, "reconstruction.png")
      visualization.visualize(config, config.data.reconstruction_video, output,
                              checkpoint=os.path.join(checkpointer.directory, str(current), checkpointing.STATE))
      logging.info("Wrote %s", output)
  return summary


def _write_metrics(writer, step: int, pending: list, config, last_checkpoint) -> float:
  """Averages the metrics of the steps since the last write; raises (before any save) when a step was not finite.

  Called before every checkpoint, with every step's metrics since the last call, so no saved checkpoint holds
  what a flagged step made. The step never applies an update from a non-finite loss or gradient; an update that
  pushed parameters past float32's range is flagged after the fact (train_step: `train/nonfinite`) and is only
  in memory. The message says which checkpoint a restart resumes from."""
  values = jax.device_get(pending)
  bad = [i for i, v in enumerate(values) if v["train/nonfinite"] > 0 or not np.isfinite(v["train/loss"])]
  if bad:
    first = values[bad[0]]
    first_bad = step - len(values) + 1 + bad[0]
    grad_norm = float(first["train/grad_norm"])
    if not np.isfinite(first["train/loss"]):
      what = f"train/loss became {float(first['train/loss'])}; that update was not applied"
    elif not np.isfinite(grad_norm):
      what = f"the gradients were not finite (train/grad_norm {grad_norm}); that update was not applied"
    else:
      what = (f"the update made non-finite or overflowing parameters (train/grad_norm {grad_norm:.3g}); they were "
              "never saved")
    latest = last_checkpoint()
    resume = (f"The newest checkpoint, step {latest}, holds finite parameters (every saved state passed the same "
              "check) and a restart resumes from it." if latest is not None else
              "No checkpoint was saved yet: a restart begins from scratch.")
    warmup = (f"config.warmup_steps (now {config.warmup_steps})" if config.warmup_steps >= 0 else
              f"config.warmup_epochs (now {config.warmup_epochs})")
    raise NonFiniteLossError(
        f"At step {first_bad} {what}, and the run stopped without saving. {resume} "
        f"Lower config.optimizer.base_lr (now {config.optimizer.base_lr}) or raise {warmup} before restarting; "
        "config.model.compute_dtype='float32' helps to investigate.")
  mean = {key: float(np.mean([np.asarray(v[key]) for v in values])) for key in values[0]}
  writer.write_scalars(step, mean)
  return mean["train/loss"]


def _describe_memory(memory: Dict[str, int]) -> str:
  if not memory:
    return "unavailable"
  gib = 1024 ** 3
  return (f"arguments {memory['argument_size'] / gib:.2f} GiB, outputs {memory['output_size'] / gib:.2f} GiB, "
          f"temporaries {memory['temp_size'] / gib:.2f} GiB, aliased {memory['alias_size'] / gib:.2f} GiB")


def _load_initial_params(config, task: tasks.Task, params, shardings):
  """config.init_from: parameters only (a params export, a workdir, or a converted official checkpoint), adapted
  by the task (a classifier takes a pretraining encoder, a head can be re-indexed) and checked leaf by leaf."""
  loaded = params_io.load_params(config.init_from)
  source = task.adapt_loaded_params(loaded, seed=config.seed)
  if task.spec.scan_layers:
    source = layer_stacking.stack_layers(source)
  leaves, unexpected = params_io.fit_params(source, params,
                                            f"config.init_from={config.init_from!r} does not fit this model")
  leaves = [jax.device_put(leaf, s) for leaf, s in zip(leaves, jax.tree.leaves(shardings))]
  logging.info("Initialized %d parameter arrays from config.init_from=%s (%d arrays there unused: %s).",
               len(leaves), config.init_from, len(unexpected), unexpected[:5])
  return jax.tree.unflatten(jax.tree.structure(params), leaves)
