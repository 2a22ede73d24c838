"""A process pool where every task has a deadline: a hung or crashed worker is killed and replaced.

`concurrent.futures.ProcessPoolExecutor` cannot cancel a running task, and one segfaulting decoder breaks the
whole pool. Here each worker runs one task at a time; the parent waits on the workers' pipes and process
sentinels, kills a worker whose task ran past `timeout_s` (reporting the task as timed out), and starts a new
worker in place of one that was killed or died.

Workers are started with 'spawn': the parent may run threads (tqdm) and decoders keep global state, neither of
which survives fork well. If the parent is killed, its workers exit within a second, busy or not (a thread in
each watches the parent's pid).

shard_builder.build_shards runs one decode-and-encode task per input video here (hence "decoding" in the
failure reasons).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator

_STARTUP_ALLOWANCE_S = 120.0
_PARENT_POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class TaskResult:
  """Outcome of one task: `ok` with `value`, or not ok with `error` (a reason for humans)."""
  index: int
  ok: bool
  value: Any = None
  error: str = ""


def _exit_with_parent() -> None:
  """Exits this worker as soon as its parent is gone: a killed build would otherwise leave a busy worker decoding
  until its file ends (a hung decoder: forever). An orphan is adopted by another process, so its parent pid
  changes; polling works on every POSIX system, unlike Linux's PR_SET_PDEATHSIG."""
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(_PARENT_POLL_S)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_main(connection, function: Callable[[Any], Any]) -> None:
  _exit_with_parent()
  while True:
    try:
      message = connection.recv()
    except (EOFError, OSError):
      return
    if message is None:
      return
    index, argument = message
    try:
      connection.send(("started", index))  # The deadline runs from here, not from the (slow) worker start-up.
    except (BrokenPipeError, OSError):
      return
    try:
      result = TaskResult(index, True, function(argument))
    except Exception as e:  # pylint: disable=broad-except
      result = TaskResult(index, False, error=f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    try:
      connection.send(result)
    except (BrokenPipeError, OSError):
      return


class _Worker:

  def __init__(self, context, function):
    self.connection, child_connection = context.Pipe(duplex=True)
    self.process = context.Process(target=_worker_main, args=(child_connection, function), daemon=True)
    self.process.start()
    child_connection.close()
    self.task: int | None = None
    self.deadline = 0.0
    self.timeout_s = 0.0
    self.broken = False

  def submit(self, index: int, argument: Any, timeout_s: float) -> None:
    self.task = index
    # Until the worker reports the task started (after its imports), allow for a slow start-up.
    self.deadline = time.monotonic() + timeout_s + _STARTUP_ALLOWANCE_S
    self.timeout_s = timeout_s
    self.connection.send((index, argument))

  def outcome(self, ready: set[Any], now: float) -> TaskResult | None:
    """This worker's task's result once it is known, else None (still working). After a timeout or a death the
    result is a failure and `broken` is set: the caller replaces the worker. `ready` is what
    multiprocessing.connection.wait returned."""
    if self.connection in ready:
      try:
        result = self.connection.recv()
      except (EOFError, OSError):
        result = None
      if isinstance(result, tuple) and result[0] == "started":
        self.deadline = time.monotonic() + self.timeout_s
        return None
      if result is not None:
        self.task = None
        return result
    died = self.process.sentinel in ready or self.connection in ready
    timed_out = now >= self.deadline
    if not died and not timed_out:
      return None
    index, self.task, self.broken = self.task, None, True
    if died:
      self.process.join(timeout=5)  # Its pipe closes a moment before the process can be reaped.
    if timed_out and not died:
      return TaskResult(index, False, error=f"timeout: decoding took longer than {self.timeout_s:g} s")
    return TaskResult(index, False, error=f"decoder crashed ({_describe_exit(self.process.exitcode)})")

  def handles(self) -> list[Any]:
    return [self.connection, self.process.sentinel]

  def kill(self) -> None:
    if self.process.is_alive():
      self.process.kill()
    self.process.join(timeout=10)
    self.connection.close()

  def stop(self) -> None:
    try:
      self.connection.send(None)
    except (BrokenPipeError, OSError):
      pass
    self.process.join(timeout=5)
    if self.process.is_alive():
      self.process.kill()
      self.process.join(timeout=5)
    self.connection.close()


def run_with_deadlines(function: Callable[[Any], Any], arguments: Iterable[tuple[int, Any]], *,
                       num_workers: int, timeout_s: float) -> Iterator[TaskResult]:
  """Runs `function(argument)` for each `(index, argument)` in worker processes; yields results as they finish.

  `function` must be importable by name (a module-level function) since workers are spawned. A task that runs
  longer than `timeout_s` yields a failed TaskResult ('timeout ...') and its worker is replaced; so does a task
  whose worker dies (segfault, os._exit). `arguments` is read lazily, one task per idle worker, so the caller
  can bound how much work is in flight.
  """
  if num_workers < 1:
    raise ValueError(f"num_workers must be >= 1, got {num_workers}")
  context = multiprocessing.get_context("spawn")
  pending = iter(arguments)
  workers = [_Worker(context, function) for _ in range(num_workers)]
  exhausted = False
  try:
    while True:
      for worker in workers:
        if worker.task is None and not exhausted:
          try:
            index, argument = next(pending)
          except StopIteration:
            exhausted = True
            break
          worker.submit(index, argument, timeout_s)
      busy = [w for w in workers if w.task is not None]
      if not busy:
        if exhausted:
          return
        continue
      wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
      ready = set(multiprocessing.connection.wait([h for w in busy for h in w.handles()], timeout=wait_s))
      now = time.monotonic()
      for position, worker in enumerate(workers):
        if worker.task is None:
          continue
        result = worker.outcome(ready, now)
        if result is None:
          continue
        if worker.broken:
          worker.kill()
          workers[position] = _Worker(context, function)
        yield result
  finally:
    for worker in workers:
      if worker.task is None:
        worker.stop()
      else:
        worker.kill()


def _describe_exit(exit_code: int | None) -> str:
  if exit_code is None:
    return "worker closed its pipe and did not exit"
  if exit_code < 0:
    try:
      return f"worker killed by {signal.Signals(-exit_code).name}"  # SIGSEGV: the decoder; SIGKILL: e.g. out of memory
    except ValueError:
      return f"worker killed by signal {-exit_code}"
  return f"worker exit code {exit_code}"


class DeadlineWorker:
  """One worker process for callers that hand over one task at a time and wait for it (a Beam DoFn): the same
  deadline, crash isolation and failure reasons as run_with_deadlines, the process kept between tasks.

    worker = DeadlineWorker(function, timeout_s=300)
    result = worker.run(argument)          # a TaskResult, never an exception from the task
    worker.close()
  """

  def __init__(self, function: Callable[[Any], Any], *, timeout_s: float):
    self._function, self._timeout_s = function, timeout_s
    self._context = multiprocessing.get_context("spawn")
    self._worker: _Worker | None = None
    self._count = 0

  def run(self, argument: Any) -> TaskResult:
    if self._worker is None:
      self._worker = _Worker(self._context, self._function)  # Started on first use: after a crash, lazily again.
    worker, self._count = self._worker, self._count + 1
    worker.submit(self._count, argument, self._timeout_s)
    while True:
      wait_s = max(0.0, worker.deadline - time.monotonic())
      ready = set(multiprocessing.connection.wait(worker.handles(), timeout=wait_s))
      result = worker.outcome(ready, time.monotonic())
      if result is None:
        continue
      if worker.broken:
        worker.kill()
        self._worker = None
      return result

  def close(self) -> None:
    if self._worker is not None:
      self._worker.stop()
      self._worker = None
