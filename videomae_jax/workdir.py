"""A run's folder and what may happen to it: one trainer at a time, restarts only with a config that fits.

  folder = workdir.check_path(path)               # a folder or gs:// prefix, not a file (ConfigError otherwise)
  with workdir.Lock(path):                        # a second trainer on the same workdir is refused
    changes = workdir.check_restart(config, path)   # refuses a config the saved run cannot continue with
    ...train...

The lock is `{workdir}/lock.json`: who holds it (host, pid, start time) and a heartbeat. Local disks and shared
filesystems (NFS v3+, Lustre, GPFS) create it atomically (O_CREAT | O_EXCL), so of two trainers started at once
exactly one gets it. Object stores (gs://) have no exclusive create through etils.epath: there the lock is written,
read back after a second and kept only if it is still ours, which catches a second trainer started more than about
a second later, not two started in the same second. The holder refreshes the heartbeat every 20 s and deletes the
file when it exits; a lock is stale (taken over with a warning) when its holder was on this host and is gone, or
when its heartbeat is more than 2 minutes old (a killed trainer on another host). `--break_lock` takes any lock.

A restart compares the config with the one the run was saved with ({workdir}/config.json): architecture, data,
batch, seed and optimizer-structure changes are refused with the list of keys (the checkpoint could not be restored
into them, or the input iterator's position would mean other data); run-length, logging, checkpointing, mesh,
input-speed, evaluation and learning-rate changes are allowed and logged.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

from etils import epath

from videomae_jax.errors import ConfigError

LOCK_FILE = "lock.json"
CONFIG_FILE = "config.json"
HEARTBEAT_SECONDS = 20.0
STALE_SECONDS = 120.0

# Keys a restart may change: how long, how often, where the arrays live, how fast the input is, the lr's size.
# Everything else describes the model, the data stream or the optimizer's state structure.
RESTART_SAFE = (
    "num_train_steps", "total_epochs", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
    "async_checkpointing", "preemption_check_every_steps", "init_from", "mesh.", "sharding_rules", "fsdp_min_size",
    "model.remat_policy", "model.attention_impl", "data.num_workers", "data.worker_buffer_size",
    "data.decoded_cache_mb", "data.video_decoder", "data.reconstruction_video", "eval.", "evals.",
    "optimizer.base_lr", "optimizer.min_lr", "optimizer.weight_decay", "warmup_epochs", "warmup_steps",
)


class WorkdirLockedError(ConfigError):
  """Another trainer holds the workdir."""


def check_path(path: str) -> epath.Path:
  """The workdir as an epath.Path; a ConfigError when it names an existing file."""
  folder = epath.Path(path if "://" in path else os.path.abspath(path))
  if folder.exists() and not folder.is_dir():
    raise ConfigError(f"--workdir={path} is a file; give a folder (it is created if missing).")
  return folder


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class Lock:
  """`with Lock(workdir):` holds {workdir}/lock.json for this process (see the module docstring)."""

  def __init__(self, path: str, *, break_lock: bool = False):
    self.folder = check_path(path)
    self.path = self.folder / LOCK_FILE
    self.local = "://" not in str(self.folder)
    self.break_lock = break_lock
    self.holder = dict(host=socket.gethostname(), pid=os.getpid(), started=time.time(), token=uuid.uuid4().hex)
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  # -- acquire / release ------------------------------------------------------------------------------------------
  def __enter__(self) -> "Lock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    self.folder.mkdir(parents=True, exist_ok=True)
    created = self._create()
    if not created:
      found = self._read()
      reason = self._stale_reason(found)
      if reason is None:
        raise WorkdirLockedError(self._refusal(found))
      logging.warning("Taking over the lock of %s: %s (held by %s).", self.folder, reason, _describe(found))
      self._write()
    if not created or not self.local:
      time.sleep(1.0)  # a second taker (or gs:// writer) in the same second would have replaced ours by now
    if (self._read() or {}).get("token") != self.holder["token"]:
      raise WorkdirLockedError(self._refusal(self._read()))
    self._thread = threading.Thread(target=self._beat, name="workdir-lock-heartbeat", daemon=True)
    self._thread.start()

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
      self._thread = None
    try:
      if (self._read() or {}).get("token") == self.holder["token"]:
        self.path.unlink()
    except OSError as error:  # the run itself is safe; a stale lock only costs the next start a takeover
      logging.warning("Could not remove %s: %s", self.path, error)

  # -- the file ---------------------------------------------------------------------------------------------------
  def _content(self) -> bytes:
    return json.dumps(dict(self.holder, heartbeat=time.time())).encode()

  def _create(self) -> bool:
    """Exclusive create where the filesystem has one; False when a lock file exists."""
    if self.local:
      try:
        descriptor = os.open(str(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(descriptor, "wb") as f:
        f.write(self._content())
        f.flush()
        os.fsync(f.fileno())
      return True
    if self.path.exists():
      return False
    self.path.write_bytes(self._content())
    return True

  def _write(self) -> None:
    if self.local:  # whole or not at all: a reader never sees half a lock
      temporary = f"{self.path}.{self.holder['token']}"
      with open(temporary, "wb") as f:
        f.write(self._content())
        f.flush()
        os.fsync(f.fileno())
      os.replace(temporary, str(self.path))
    else:
      self.path.write_bytes(self._content())

  def _read(self) -> Optional[Dict[str, Any]]:
    for _ in range(3):  # a lock being written right now: read again
      try:
        return json.loads(self.path.read_text())
      except FileNotFoundError:
        return None
      except (ValueError, OSError):
        time.sleep(0.2)
    return {}

  def _age(self, found: Dict[str, Any]) -> float:
    try:
      beat = self.path.stat().mtime if self.local else float(found.get("heartbeat", 0))
    except OSError:
      beat = float(found.get("heartbeat", 0))
    return max(0.0, time.time() - beat)

  def _stale_reason(self, found: Optional[Dict[str, Any]]) -> Optional[str]:
    if found is None:
      return "it was released meanwhile"
    if self.break_lock:
      return "--break_lock"
    if not found:
      return "it is unreadable"
    if found.get("host") == self.holder["host"] and not _pid_alive(int(found.get("pid", -1))):
      return f"process {found.get('pid')} on this host is gone"
    age = self._age(found)
    if age > STALE_SECONDS:
      return f"no heartbeat for {age:.0f} s"
    return None

  def _refusal(self, found: Optional[Dict[str, Any]]) -> str:
    found = found or {}
    return (f"{self.folder} is in use by another trainer ({_describe(found)}, heartbeat {self._age(found):.0f} s "
            f"ago). Wait for it to finish, use another --workdir, or, if that trainer is gone (a lock without "
            f"heartbeat for {STALE_SECONDS:.0f} s is taken over by itself), pass --break_lock.")

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      try:
        if self.local:
          os.utime(str(self.path))
        else:
          self.path.write_bytes(self._content())
      except OSError as error:
        logging.warning("Could not refresh the workdir lock %s: %s", self.path, error)


def _describe(found: Dict[str, Any]) -> str:
  started = found.get("started")
  when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
  return f"host {found.get('host', '?')}, pid {found.get('pid', '?')}, started {when}"


# ----------------------------------------------------------------------------------------------------------------
# Restarting with another config.
# ----------------------------------------------------------------------------------------------------------------


def _flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
  if isinstance(tree, dict):
    out: Dict[str, Any] = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def config_changes(previous: Dict[str, Any], current: Dict[str, Any]) -> Tuple[List[str], List[str]]:
  """(refused, allowed) lines 'key: old -> new' between two configs as JSON dicts; keys only one side has (a
  newer or older version of the schema) are neither."""
  old, new = _flatten(previous), _flatten(current)
  refused, allowed = [], []
  for key in sorted(set(old) & set(new)):
    if json.dumps(old[key], sort_keys=True) == json.dumps(new[key], sort_keys=True):
      continue
    line = f"{key}: {json.dumps(old[key])} -> {json.dumps(new[key])}"
    safe = any(key == s or (s.endswith(".") and key.startswith(s)) for s in RESTART_SAFE)
    (allowed if safe else refused).append(line)
  return refused, allowed


def check_restart(config: Any, folder: epath.Path, restored_step: Optional[int]) -> List[str]:
  """Refuses (ConfigError) a config the saved run cannot continue with; returns the allowed changes to log.
  Nothing to compare when the run has no checkpoint yet (a first start, or one that failed before saving)."""
  saved = folder / CONFIG_FILE
  if restored_step is None or not saved.exists():
    return []
  previous = json.loads(saved.read_text())
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  refused, allowed = config_changes(previous, current)
  if refused:
    why = ""
    if any(line.startswith(("batch_size:", "data.repeated_aug:")) for line in refused):
      why = (" (the input iterator's saved position counts batches of the old size: the same position would "
             "mean other data)")
    raise ConfigError(
        f"{folder} holds a run at step {restored_step} trained with another config, and these changes cannot "
        f"continue it{why}:\n  " + "\n  ".join(refused) + "\nUndo them, or start a new --workdir (with "
        f"--config.init_from={folder} to begin from this run's weights).")
  return allowed
