"""Checkpoints: one orbax CheckpointManager holding the train state and the input iterator state together.

Layout: {workdir}/checkpoints/{step}/state (train state pytree), {step}/data (grain iterator, one file per
process). Saves are asynchronous (training continues while arrays are written); `wait()` before exiting.
Restores go straight onto the current mesh: the abstract state carries the target shardings, so a run saved on
8 devices restarts on 1 (or the reverse) without a host copy of the full state.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import grain
import orbax.checkpoint as ocp

STATE, DATA = "state", "data"


class Checkpointer:
  def __init__(self, workdir: str, *, max_to_keep: int = 3, async_saves: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir) if "://" not in workdir else workdir, "checkpoints")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_saves,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any = None, *, force: bool = False) -> bool:
    items = {STATE: ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

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

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

