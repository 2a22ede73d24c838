"""Checkpoints: one orbax CheckpointManager holding the train state and the input iterator state together.

Layout: {workdir}/checkpoints/{step}/state (train state pytree), {step}/data (grain iterator, one file per
process). Saves are asynchronous (training continues while arrays are written); `close()` waits before exiting.
Restores go straight onto the current mesh: the abstract state carries the target shardings, so a run saved on
8 devices restarts on 1 (or the reverse) without a host copy of the full state.

What can go wrong, and what happens:
  * A save fails in the background (disk full, quota, permissions): `raise_if_save_failed()` (the loop calls it
    every step) stops training at once with CheckpointSaveError naming the step and the newest complete
    checkpoint, which stays as it was.
  * A checkpoint is damaged (files truncated or deleted, an empty step folder, garbage metadata, flipped bytes):
    orbax itself keeps no checksums, so once a save is complete we record each file's size and CRC-32 in
    {workdir}/checkpoint_checksums/{step}.json (process 0, a few seconds per GB). `restore_latest` checks them,
    and a step that fails the check or the restore is moved to {workdir}/checkpoints_damaged/ with a warning
    naming it, and the previous step is restored instead. A checkpoint written just before a kill has no
    checksums yet; it is verified only by restoring it.
"""
from __future__ import annotations

import json
import logging
import os
import time
import zlib
from typing import Any, Callable, Optional, Tuple

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

STATE, DATA = "state", "data"
CHECKSUMS, DAMAGED = "checkpoint_checksums", "checkpoints_damaged"


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written; training stopped at once."""


class NoUsableCheckpointError(RuntimeError):
  """Every checkpoint of the workdir is damaged."""


def _files(folder: epath.Path) -> list:
  """Every file under `folder` (epath has no recursive glob on every backend)."""
  found = []
  for path in folder.iterdir():
    found.extend(_files(path) if path.is_dir() else [path])
  return found


def _file_checksums(step_dir: epath.Path) -> dict:
  """{relative path: [size, crc32]} of every file under a step folder."""
  sums = {}
  for path in sorted(_files(step_dir)) if step_dir.exists() else []:
    crc, size = 0, 0
    with path.open("rb") as f:
      while chunk := f.read(1 << 24):
        crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    sums[str(path.relative_to(step_dir))] = [size, crc]
  return sums


def latest_saved_step(workdir: str) -> Optional[int]:
  """The newest finished checkpoint step of a workdir, without opening a manager (None: none). Unfinished saves
  live in temporary folders whose names are not plain step numbers."""
  folder = epath.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []
  return max(steps) if steps else None


class Checkpointer:
  def __init__(self, workdir: str, *, max_to_keep: int = 3, async_saves: bool = True):
    self.workdir = epath.Path(os.path.abspath(workdir) if "://" not in workdir else workdir)
    self.directory = str(self.workdir / "checkpoints")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_saves,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler()})
    self._unverified: list[int] = []   # saved steps whose checksums are not recorded yet
    self._saving_step: Optional[int] = None  # the save in flight (or the one just asked for)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  # -- saving ------------------------------------------------------------------------------------------------------
  def save(self, step: int, state: Any, data_iterator: Any = None, *, force: bool = False) -> bool:
    self.raise_if_save_failed()
    items = {STATE: ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    previous = self._saving_step
    self._saving_step = step
    try:
      saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    except Exception as error:
      # orbax first waits for the save in flight: its failure surfaces here, and is that save's.
      if previous is not None and not (epath.Path(self.directory) / str(previous)).exists():
        self._saving_step = previous
      raise self._save_error(error) from error
    if saved:
      self._unverified.append(step)
    return saved

  def raise_if_save_failed(self) -> None:
    """Raises CheckpointSaveError when a background save failed; records checksums of finished saves.

    orbax reports some failed writes only when the next save starts (or never, as an unretrieved future), so a
    save counts as failed as soon as it is no longer in progress and its step folder was not finalized."""
    try:
      self.manager.check_for_errors()
    except Exception as error:
      raise self._save_error(error) from error
    if self._unverified and not self.manager.is_saving_in_progress():
      missing = [s for s in self._unverified if not (epath.Path(self.directory) / str(s)).exists()]
      if missing:
        try:
          self.manager.wait_until_finished()
        except Exception as error:
          raise self._save_error(error) from error
        raise self._save_error(RuntimeError(f"step {missing[0]} was not finalized (see the log above)"))
      self._record_checksums()

  def _save_error(self, error: BaseException) -> CheckpointSaveError:
    complete = [s for s in self.manager.all_steps() if s != self._saving_step]
    newest = f"the newest complete checkpoint is step {max(complete)}" if complete else "no checkpoint is complete"
    return CheckpointSaveError(
        f"Saving the checkpoint of step {self._saving_step} to {self.directory} failed ({type(error).__name__}: "
        f"{error}). Training stopped here; {newest} and is untouched. Fix the cause (free disk space, quota, "
        "permissions) and start the same command again: it resumes from there.")

  def _record_checksums(self) -> None:
    if jax.process_index() == 0:
      for step in self._unverified:
        step_dir = epath.Path(self.directory) / str(step)
        if step_dir.exists():  # (max_to_keep may have removed it already)
          target = self.workdir / CHECKSUMS / f"{step}.json"
          target.parent.mkdir(parents=True, exist_ok=True)
          target.write_text(json.dumps(_file_checksums(step_dir)))
      self._forget_removed_steps()
    self._unverified = []

  def _forget_removed_steps(self) -> None:
    folder = self.workdir / CHECKSUMS
    if folder.exists():
      kept = set(self.manager.all_steps())
      for path in folder.glob("*.json"):
        if path.stem.isdigit() and int(path.stem) not in kept:
          path.unlink()

  # -- restoring ---------------------------------------------------------------------------------------------------
  def damage(self, step: int) -> Optional[str]:
    """Why step `step` fails its recorded checksums, or None (also when none were recorded)."""
    record = self.workdir / CHECKSUMS / f"{step}.json"
    if not record.exists():
      return None
    expected = json.loads(record.read_text())
    found = _file_checksums(epath.Path(self.directory) / str(step))
    missing = sorted(set(expected) - set(found))
    if missing:
      return f"{len(missing)} file(s) missing, e.g. {missing[0]}"
    changed = sorted(name for name in expected if list(found[name]) != list(expected[name]))
    if changed:
      return f"{len(changed)} file(s) differ from their checksums, e.g. {changed[0]}"
    return None

  def restore(self, abstract_state: Any, data_iterator: Any = None,
              step: Optional[int] = None) -> Tuple[int, Any]:
    """Restores into `abstract_state` (ShapeDtypeStructs with shardings); the iterator is restored in place."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {self.directory}")
    items = {STATE: ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return step, restored[STATE]

  def restore_latest(self, abstract_state: Any, make_iterator: Callable[[], Any]) -> Tuple[int, Any, Any]:
    """(step, state, data iterator) of the newest checkpoint that passes its checksums and restores; damaged
    steps are moved aside to {workdir}/checkpoints_damaged with a warning naming each."""
    while True:
      step = self.latest_step()
      if step is None:
        raise NoUsableCheckpointError(
            f"Every checkpoint under {self.directory} was damaged (moved to {self.workdir / DAMAGED}). Start a new "
            "--workdir, or move that folder back if you can repair it.")
      # Every process must try the same step: process 0 decides from the checksums.
      reason = self.damage(step) if jax.process_index() == 0 else None
      bad = bool(multihost_utils.broadcast_one_to_all(np.int32(reason is not None)))
      error = None
      if not bad:
        iterator = make_iterator()
        try:
          return (*self.restore(abstract_state, iterator, step=step), iterator)
        except Exception as exception:  # pylint: disable=broad-except
          if jax.process_count() > 1:  # the other processes may be inside the restore: no safe way to go on
            raise RuntimeError(f"Restoring checkpoint step {step} from {self.directory} failed: {exception}. "
                               f"Move {self.directory}/{step} aside and start again to resume from the step "
                               "before it.") from exception
          error = f"{type(exception).__name__}: {str(exception)[:300]}"
      self._set_aside(step, reason or error)

  def _set_aside(self, step: int, reason: str) -> None:
    target = self.workdir / DAMAGED / f"{step}-{int(time.time())}"
    logging.warning("Checkpoint step %d in %s is damaged (%s): moved to %s; trying the step before it.", step,
                    self.directory, reason, target)
    if jax.process_index() == 0:
      target.parent.mkdir(parents=True, exist_ok=True)
      (epath.Path(self.directory) / str(step)).rename(target)
      record = self.workdir / CHECKSUMS / f"{step}.json"
      if record.exists():
        record.unlink()
    multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
    self.manager.reload()

  def close(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as error:
      raise self._save_error(error) from error
    finally:
      self.manager.close()
    if self._unverified:
      self._record_checksums()
