r"""Train: python -m videomae_jax.main --config=configs/<name>.py --workdir=DIR [--config.key=value ...]

The workdir identifies the run: starting the same command again resumes from its latest checkpoint. Several
processes (TPU pod workers, SLURM nodes, or local processes given --coordinator_address/--num_processes/
--process_id) run the same command; `jax.distributed.initialize` connects them.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import jax
import numpy as np
from absl import app, flags
from jax.experimental import multihost_utils
from ml_collections import config_flags

import videomae_jax
from videomae_jax import checkpointing, resolve, tasks, train, xla_flags
from videomae_jax import workdir as workdir_lib
from videomae_jax.errors import ConfigError, NonFiniteLossError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for multi-process runs outside TPU/SLURM auto-detection.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                 "auto: initialize jax.distributed on TPU pods, SLURM and when "
                                 "--coordinator_address is given.")
_BREAK_LOCK = flags.DEFINE_bool("break_lock", False,
                                 "Take the workdir's lock even if another trainer seems to hold it (only when that "
                                 "trainer is known to be gone).")
_CACHE_DIR = flags.DEFINE_string("compilation_cache_dir", os.path.expanduser("~/.cache/videomae_jax/xla"),
                                 "Persistent XLA compilation cache ('' disables it).")


def _wants_distributed() -> bool:
  if _DISTRIBUTED.value != "auto":
    return _DISTRIBUTED.value == "on"
  if _COORDINATOR.value:
    return True
  if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    return True
  return bool(os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",")) or bool(
      os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))


class _QuietLibraries(logging.Filter):
  """Keeps library INFO chatter out of the training log (warnings and errors still pass): orbax's per-save lines,
  and JAX's "Unable to initialize backend 'tpu'" on every machine without a TPU."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return True
    if "/orbax/" in record.pathname:
      return False
    return not (record.pathname.endswith("xla_bridge.py") and str(record.msg).startswith("Unable to initialize"))


def main(argv):
  del argv
  user_flags = xla_flags.active(videomae_jax.ENVIRONMENT_AT_START)
  for handler in logging.getLogger().handlers + logging.getLogger("absl").handlers:
    handler.addFilter(_QuietLibraries())
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError("--config=configs/<name>.py and --workdir=DIR are required.")
  if _wants_distributed():
    kwargs = {}
    if _COORDINATOR.value:
      kwargs = dict(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                    process_id=_PROCESS_ID.value)
    jax.distributed.initialize(**kwargs)
  if _CACHE_DIR.value:
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
  workdir = _WORKDIR.value  # a local path or gs://bucket/run
  try:
    # Counts and the workdir's kind first: nothing is built, read or written for a config that cannot run.
    train.check_config(_CONFIG.value)
    workdir_lib.check_path(workdir)
    summary = _train(resolve.resolve(_CONFIG.value), workdir, user_flags)
  except _ONE_MESSAGE_ERRORS as error:
    # What the user must know or change, as one message: a traceback would bury it.
    kind = "Configuration error" if isinstance(error, ConfigError) else "Training stopped"
    logging.error("%s: %s", kind, error)
    sys.exit(f"{kind}: {error}")
  logging.info("Finished: %s", json.dumps(summary))


_ONE_MESSAGE_ERRORS = (ConfigError, NonFiniteLossError, checkpointing.CheckpointSaveError,
                       checkpointing.NoUsableCheckpointError)


def _train(config, workdir: str, user_flags: dict[str, str]):
  """Checks the config, takes the workdir, writes the resolved config (the one that runs) and trains."""
  tasks.from_config(config)  # A bad model or task fails here, before anything is written or compiled.
  folder = workdir_lib.check_path(workdir)
  lock = workdir_lib.Lock(workdir, break_lock=_BREAK_LOCK.value)
  refusal = None
  if jax.process_index() == 0:  # one lock per run: process 0 holds it for all
    try:
      lock.acquire()
    except workdir_lib.WorkdirLockedError as error:
      refusal = error
  if multihost_utils.broadcast_one_to_all(np.int32(refusal is not None)):
    raise refusal or workdir_lib.WorkdirLockedError(f"{folder} is in use by another trainer (see process 0).")
  try:
    allowed = workdir_lib.check_restart(config, folder, checkpointing.latest_saved_step(workdir))
    for change in allowed:
      logging.info("Config changed since the last start (allowed on restart): %s", change)
    if jax.process_index() == 0:
      (folder / workdir_lib.CONFIG_FILE).write_text(config.to_json_best_effort(indent=1, sort_keys=True))
    logging.info("JAX %s, %d processes, %d devices (%s).", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.devices()[0].device_kind)
    logging.info("XLA / runtime flags set: %s", json.dumps(user_flags))
    return train.run(config, workdir)
  finally:
    if jax.process_index() == 0:
      lock.release()


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
