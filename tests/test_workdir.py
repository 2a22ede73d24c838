"""The workdir is sacred: one trainer per workdir, validated counts, no non-finite state saved, torn metrics and
damaged checkpoints survived, a failed save stops the run, a changed config refused where it cannot continue.

Unit tests first (fast); the ones that run the trainer as a process are marked slow (CI's second step)."""
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax import default_config, train, workdir
from videomae_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "configs", "tiny_pretrain.py")


# ------------------------------------------------------------------------------------------------------------
# The lock.
# ------------------------------------------------------------------------------------------------------------


def test_a_second_lock_is_refused_naming_the_holder_and_released_on_exit(tmp_path):
  with workdir.Lock(str(tmp_path)) as first:
    with pytest.raises(workdir.WorkdirLockedError, match=rf"in use by another trainer \(host \S+, pid {os.getpid()}"):
      workdir.Lock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / workdir.LOCK_FILE).read_text())["token"] == first.holder["token"]
  assert not (tmp_path / workdir.LOCK_FILE).exists()
  with workdir.Lock(str(tmp_path)):  # free again
    pass


def test_stale_locks_are_taken_over(tmp_path, monkeypatch):
  lock_file = tmp_path / workdir.LOCK_FILE
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  # A holder on this host that is gone.
  lock_file.write_text(json.dumps(dict(host=workdir.socket.gethostname(), pid=dead.pid, started=0, token="x")))
  with workdir.Lock(str(tmp_path)) as lock:
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
  # A holder elsewhere whose heartbeat stopped.
  lock_file.write_text(json.dumps(dict(host="elsewhere", pid=1, started=0, token="y")))
  os.utime(lock_file, (time.time() - workdir.STALE_SECONDS - 5,) * 2)
  with workdir.Lock(str(tmp_path)):
    pass
  # A live holder elsewhere: refused, unless told to break it.
  lock_file.write_text(json.dumps(dict(host="elsewhere", pid=1, started=0, token="z")))
  with pytest.raises(workdir.WorkdirLockedError, match="host elsewhere, pid 1"):
    workdir.Lock(str(tmp_path)).acquire()
  with workdir.Lock(str(tmp_path), break_lock=True):
    pass


def test_a_workdir_that_is_a_file_is_a_clear_error(tmp_path):
  path = tmp_path / "run"
  path.write_text("not a folder")
  with pytest.raises(ConfigError, match=r"--workdir=.*run is a file; give a folder"):
    workdir.check_path(str(path))


# ------------------------------------------------------------------------------------------------------------
# Counts and rates.
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("keep_checkpoints", 0, r"config.keep_checkpoints=0 must be a whole number > 0"),
    ("checkpoint_every_steps", 0, r"config.checkpoint_every_steps=0"),
    ("log_every_steps", 0, r"config.log_every_steps=0"),
    ("batch_size", 0, r"config.batch_size=0"),
    ("data.repeated_aug", 0, r"config.data.repeated_aug=0"),
    ("num_train_steps", 0, r"config.num_train_steps=0 must be > 0, or -1 to run config.total_epochs"),
    ("num_train_steps", -5, r"config.num_train_steps=-5"),
    ("optimizer.base_lr", -1e-3, r"config.optimizer.base_lr=-0.001 must be >= 0"),
    ("batch_size", 15, r"must be a multiple of config.data.repeated_aug=2"),
])
def test_counts_and_rates_that_cannot_work_fail_before_anything_runs(key, value, message):
  config = default_config.pretrain_config("S")
  config.data.repeated_aug = 2
  config.num_train_steps = 10
  section, _, name = key.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(ConfigError, match=message):
    train.check_config(config)


def test_a_bad_count_is_one_message_from_the_trainer(tmp_path):
  out = subprocess.run([sys.executable, "-m", "videomae_jax.main", f"--config={CONFIG}", f"--workdir={tmp_path}/w",
                        "--config.keep_checkpoints=0", "--compilation_cache_dir="], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert "Configuration error: config.keep_checkpoints=0 must be a whole number > 0" in out.stderr
  assert not os.path.exists(tmp_path / "w" / "config.json")  # nothing written


# ------------------------------------------------------------------------------------------------------------
# A step that is not finite is not applied.
# ------------------------------------------------------------------------------------------------------------


def _tiny_step(tiny_model_config, base_lr):
  from videomae_jax import tasks, train_step  # pylint: disable=import-outside-toplevel
  config = default_config.pretrain_config("custom")
  config.model.update(tiny_model_config)
  config.num_train_steps, config.warmup_steps, config.batch_size = 10, 0, 2
  config.optimizer.base_lr = base_lr
  config.optimizer.grad_clip_norm = 0.0
  config.data.crop_on_device = False
  task = tasks.from_config(config)
  abstract = jax.eval_shape(task.init_params, jax.random.key(0))
  optimizer, schedule = train_step.make_optimizer(config, task, abstract)
  state = train_step.init_train_state(task, optimizer, 0)
  return task, state, jax.jit(train_step.make_train_step(task, optimizer, schedule))


def test_a_non_finite_gradient_leaves_the_state_as_it_was(tiny_model_config):
  task, state, step = _tiny_step(tiny_model_config, 1e-3)
  video = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 4, 32, 32, 3)), jnp.uint8)
  poisoned = dict(state, params=jax.tree.map(lambda x: x, state["params"]))
  poisoned["params"]["decoder"]["head"]["bias"] = state["params"]["decoder"]["head"]["bias"].at[0].set(np.inf)
  new_state, metrics = step(poisoned, {"video": video})   # an inf prediction: the loss and gradients are not finite
  assert float(metrics["train/nonfinite"]) == 1.0 and not np.isfinite(float(metrics["train/loss"]))
  for old, new in zip(jax.tree.leaves(poisoned["params"]), jax.tree.leaves(new_state["params"])):
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  for old, new in zip(jax.tree.leaves(poisoned["opt_state"]), jax.tree.leaves(new_state["opt_state"])):
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  new_state, metrics = step(state, {"video": video})       # and a sane step is applied
  assert float(metrics["train/nonfinite"]) == 0.0
  assert any(not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(new_state["params"])))


def test_an_overflowing_update_is_flagged(tiny_model_config):
  # One AdamW step moves each weight by ~lr: far past float32's norm range, with a finite loss and gradients.
  task, state, step = _tiny_step(tiny_model_config, 1e32)
  video = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 4, 32, 32, 3)), jnp.uint8)
  _, metrics = step(state, {"video": video})
  assert float(metrics["train/nonfinite"]) == 1.0
  assert np.isfinite(float(metrics["train/loss"])) and np.isfinite(float(metrics["train/grad_norm"]))


# ------------------------------------------------------------------------------------------------------------
# Restarts with another config.
# ------------------------------------------------------------------------------------------------------------


def test_config_changes_are_sorted_into_refused_and_allowed():
  old = default_config.pretrain_config("S")
  new = default_config.pretrain_config("S")
  new.model.num_heads, new.batch_size, new.num_train_steps, new.optimizer.base_lr = 12, 512, 99, 1e-4
  new.data.num_workers, new.mesh.fsdp = 2, 4
  refused, allowed = workdir.config_changes(json.loads(old.to_json()), json.loads(new.to_json()))
  assert refused == ["batch_size: 8192 -> 512", "model.num_heads: null -> 12"]
  assert allowed == ["data.num_workers: 8 -> 2", "mesh.fsdp: 1 -> 4", "num_train_steps: -1 -> 99",
                     "optimizer.base_lr: 0.00015 -> 0.0001"]


# ------------------------------------------------------------------------------------------------------------
# metrics.jsonl
# ------------------------------------------------------------------------------------------------------------


def test_metrics_survive_a_torn_last_line_and_a_failed_rewrite(tmp_path, monkeypatch):
  from videomae_jax import metrics  # pylint: disable=import-outside-toplevel
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 2, "train/loss": 1.0}\n{"step": 4, "train/loss": 0.5}\n{"step": 6, "train/lo')
  writer = metrics.JsonlWriter(str(path))
  writer.truncate_after(4)
  assert [json.loads(line)["step"] for line in open(path)] == [2, 4]
  before = path.read_text()

  def killed(*args):
    raise KeyboardInterrupt("killed between writing and renaming")

  monkeypatch.setattr(os, "replace", killed)
  writer.write_scalars(6, {"train/loss": 0.25})
  with pytest.raises(KeyboardInterrupt):
    writer.flush()
  assert path.read_text() == before  # the old file, whole


# ------------------------------------------------------------------------------------------------------------
# The trainer as a process (slow).
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
  from videomae_jax.data import demo  # pylint: disable=import-outside-toplevel
  path = str(tmp_path_factory.mktemp("demo"))
  demo.build_demo_shards(path, num_videos_per_class=4, num_frames=24, size=48)
  return path


def _command(run_dir, demo_dir, *overrides):
  return [sys.executable, "-m", "videomae_jax.main", f"--config={CONFIG}", f"--workdir={run_dir}",
          f"--config.data.demo_dir={demo_dir}", "--compilation_cache_dir=", *overrides]


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
              PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run(run_dir, demo_dir, *overrides, ok=True, **kwargs):
  out = subprocess.run(_command(run_dir, demo_dir, *overrides), env=_env(), capture_output=True, text=True,
                       timeout=600, cwd=ROOT, **kwargs)
  if ok:
    assert out.returncode == 0, out.stderr[-4000:]
  return out


def _steps(run_dir):
  return [json.loads(line)["step"] for line in open(os.path.join(run_dir, "metrics.jsonl"))]


@pytest.mark.slow
def test_a_second_trainer_on_the_same_workdir_is_refused_and_the_first_finishes(tmp_path, demo_dir):
  run_dir = tmp_path / "run"
  first = subprocess.Popen(_command(run_dir, demo_dir, "--config.num_train_steps=40"), env=_env(), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    start = time.time()
    while not (run_dir / workdir.LOCK_FILE).exists():
      assert first.poll() is None and time.time() - start < 300, "the first trainer did not start"
      time.sleep(0.2)
    second = _run(run_dir, demo_dir, "--config.seed=7", "--config.optimizer.base_lr=0.01", ok=False)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"in use by another trainer (host" in second.stderr and f"pid {first.pid}," in second.stderr
  finally:
    _, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-3000:]
  assert _steps(run_dir)[-1] == 40 and json.loads((run_dir / "config.json").read_text())["seed"] == 0
  assert not (run_dir / workdir.LOCK_FILE).exists()


@pytest.mark.slow
def test_restarts_refuse_what_cannot_continue_and_allow_the_rest(tmp_path, demo_dir):
  run_dir = tmp_path / "run"
  _run(run_dir, demo_dir, "--config.num_train_steps=4")
  saved = (run_dir / "config.json").read_text()
  out = _run(run_dir, demo_dir, "--config.num_train_steps=8", "--config.model.num_heads=4",
             "--config.batch_size=32", ok=False)
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert "model.num_heads: 2 -> 4" in out.stderr and "batch_size: 16 -> 32" in out.stderr
  assert "input iterator's saved position counts batches" in out.stderr
  assert (run_dir / "config.json").read_text() == saved  # the workdir still describes its run
  out = _run(run_dir, demo_dir, "--config.num_train_steps=8", "--config.log_every_steps=4")
  assert "Config changed since the last start (allowed on restart): num_train_steps: 4 -> 8" in out.stderr
  assert _steps(run_dir) == [2, 4, 8]


@pytest.mark.slow
def test_a_diverging_run_stops_without_saving_non_finite_parameters(tmp_path, demo_dir):
  run_dir = tmp_path / "run"
  out = _run(run_dir, demo_dir, "--config.optimizer.base_lr=1e32", "--config.warmup_steps=0",
             "--config.optimizer.grad_clip_norm=0", "--config.checkpoint_every_steps=1", "--config.log_every_steps=1",
             ok=False)
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert "Training stopped: At step 1 the update made non-finite or overflowing parameters" in out.stderr
  assert "they were never saved" in out.stderr and "No checkpoint was saved yet" in out.stderr
  assert "config.warmup_steps (now 0)" in out.stderr
  assert not os.path.exists(run_dir / "checkpoints" / "1")


@pytest.mark.slow
def test_damaged_checkpoints_are_set_aside_and_the_one_before_restores(tmp_path, demo_dir):
  run_dir = tmp_path / "run"
  _run(run_dir, demo_dir, "--config.num_train_steps=8", "--config.checkpoint_every_steps=2")
  assert sorted(os.listdir(run_dir / "checkpoint_checksums")) == ["2.json", "4.json", "6.json", "8.json"]
  # Flip one byte in the largest file of step 8 (same size: only the checksum can tell), truncate one of 6.
  def largest(step):
    files = [os.path.join(d, f) for d, _, names in os.walk(run_dir / "checkpoints" / str(step)) for f in names]
    return max(files, key=os.path.getsize)
  with open(largest(8), "r+b") as f:
    f.seek(os.path.getsize(largest(8)) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  with open(largest(6), "r+b") as f:
    f.truncate(10)
  out = _run(run_dir, demo_dir, "--config.num_train_steps=10", "--config.checkpoint_every_steps=2")
  assert "Checkpoint step 8 in" in out.stderr and "Checkpoint step 6 in" in out.stderr
  assert "differ from their checksums" in out.stderr and "Resumed from" in out.stderr and "at step 4." in out.stderr
  assert sorted(name.split("-")[0] for name in os.listdir(run_dir / "checkpoints_damaged")) == ["6", "8"]
  assert _steps(run_dir)[-1] == 10


@pytest.mark.slow
def test_a_failed_save_stops_the_run_at_that_save(tmp_path, demo_dir):
  run_dir = tmp_path / "run"
  _run(run_dir, demo_dir, "--config.num_train_steps=2")  # compiles nothing new below: same workdir, same config

  def small_files():  # checkpoint array files are larger than this; metrics and configs are smaller
    resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

  out = _run(run_dir, demo_dir, "--config.num_train_steps=60", "--config.checkpoint_every_steps=20",
             "--config.log_every_steps=1", ok=False, preexec_fn=small_files)
  assert out.returncode == 1
  # (orbax and asyncio log the failed writes with their tracebacks, even at exit; none passes through our code)
  # (no line start asserted: orbax's background threads may print their tracebacks into the middle of the line)
  assert "Training stopped: Saving the checkpoint of step 20 " in out.stderr, out.stderr[-3000:]
  assert not re.search(r'File ".*/videomae_jax/', out.stderr), out.stderr[-3000:]
  assert "the newest complete checkpoint is step 2 and is untouched" in out.stderr
  assert max(_steps(run_dir)) < 40  # stopped soon after that save failed, not at the next save (step 40)
  assert sorted(os.listdir(run_dir / "checkpoints"))[0] == "2"
