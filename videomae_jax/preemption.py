"""Preemption: a signal asks for a checkpoint at the next step boundary and a clean exit.

SIGTERM (cloud preemption, `kill`, SLURM at the time limit) and SIGUSR1 (SLURM's `--signal=USR1@300` warning) only
set a flag; the training loop polls `should_stop(step)` between steps. With several processes every process must
agree on the same stop step, or some would wait forever in a collective: the local flags are combined with a tiny
all-gather. On Cloud TPU, JAX's preemption sync point (fed by the TPU maintenance-event notice) is polled as well.
"""
from __future__ import annotations

import logging
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class PreemptionHandler:
  SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

  def __init__(self, multihost_check_every_steps: int = 10):
    # A cross-process check blocks the host until the devices catch up, so it runs only every few steps; every
    # process checks at the same steps, hence they agree on where to stop.
    self.multihost_check_every_steps = max(1, int(multihost_check_every_steps))
    self._requested = threading.Event()
    self._previous = {}
    self.signal_name = None

  def install(self) -> "PreemptionHandler":
    if threading.current_thread() is not threading.main_thread():
      return self
    for sig in self.SIGNALS:
      self._previous[sig] = signal.signal(sig, self._on_signal)
    return self

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _on_signal(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    logging.warning("Received %s: will checkpoint at the next step boundary and exit.", self.signal_name)
    self._requested.set()

  def should_stop(self, step: int) -> bool:
    local = self._requested.is_set()
    if jax.process_count() > 1:
      if step % self.multihost_check_every_steps:
        return False
      flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
      local = bool(np.max(flags))
      try:
        # Cloud TPU maintenance notices arrive through the coordination service, not as a signal.
        local = local or multihost_utils.reached_preemption_sync_point(step)
      except (RuntimeError, ValueError):
        pass  # no preemption sync manager on this platform
    return local
