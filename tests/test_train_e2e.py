"""End-to-end training through `python -m videomae_jax.main`: exact resume after SIGKILL, SIGTERM checkpointing,
FSDP on 8 CPU devices against 1 device, and two processes joined by jax.distributed on localhost."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # end to end: CI's second step (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "configs", "tiny_pretrain.py")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
  from videomae_jax.data import demo
  path = str(tmp_path_factory.mktemp("demo"))
  demo.build_demo_shards(path, num_videos_per_class=4, num_frames=24, size=48)
  return path


def _env(devices: int = 1, cache: str = ""):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _command(workdir, demo_dir, *overrides, extra_flags=()):
  return [sys.executable, "-m", "videomae_jax.main", f"--config={CONFIG}", f"--workdir={workdir}",
          f"--config.data.demo_dir={demo_dir}", "--compilation_cache_dir=", *extra_flags, *overrides]


def _run(workdir, demo_dir, *overrides, devices=1, timeout=600):
  out = subprocess.run(_command(workdir, demo_dir, *overrides), env=_env(devices), capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-4000:]
  return out


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row["step"]: row["train/loss"] for row in rows if "train/loss" in row}


def _losses_or_none(workdir):
  try:
    return _losses(workdir)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _params(workdir, step):
  from videomae_jax.checkpointing import STATE
  import orbax.checkpoint as ocp
  restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), STATE))
  import jax
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(
      restored["params"])}


def _wait_for(path, process, timeout=300):
  start = time.time()
  while not os.path.exists(path):
    if process.poll() is not None:
      raise AssertionError(f"training exited early:\n{process.stderr.read()[-4000:]}")
    if time.time() - start > timeout:
      raise AssertionError(f"{path} did not appear in {timeout} s")
    time.sleep(0.2)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, demo_dir):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  _run(workdir, demo_dir)
  return workdir


def test_sigkill_and_restart_is_bitwise_identical(tmp_path, demo_dir, uninterrupted):
  workdir = str(tmp_path / "killed")
  process = subprocess.Popen(_command(workdir, demo_dir), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  _wait_for(os.path.join(workdir, "checkpoints", "4"), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "12"))
  _run(workdir, demo_dir)
  expected, resumed = _params(uninterrupted, 12), _params(workdir, 12)
  assert expected.keys() == resumed.keys()
  for key in expected:
    np.testing.assert_array_equal(resumed[key], expected[key], err_msg=key)
  assert _losses(workdir) == _losses(uninterrupted)  # the whole curve, exactly; one line per logged step
  assert sorted(_losses(workdir)) == [2, 4, 6, 8, 10, 12]


def test_sigterm_saves_that_step_and_exits_cleanly(tmp_path, demo_dir, uninterrupted):
  workdir = str(tmp_path / "terminated")
  process = subprocess.Popen(_command(workdir, demo_dir, "--config.checkpoint_every_steps=100",
                                      "--config.num_train_steps=40"),
                             env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for(os.path.join(workdir, "checkpoints"), process)
  while not _losses_or_none(workdir):  # past compilation: training steps are being logged
    assert process.poll() is None, process.stderr.read()[-3000:]
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  stderr = process.communicate(timeout=300)[1]
  assert process.returncode == 0, stderr[-3000:]
  summary = json.load(open(os.path.join(workdir, "run_summary.json")))
  assert summary["stopped_by"] == "SIGTERM"
  stopped = summary["step"]
  assert 2 <= stopped < 40
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(stopped)))
  out = _run(workdir, demo_dir, "--config.checkpoint_every_steps=100", "--config.num_train_steps=40")
  assert f"at step {stopped}" in out.stderr  # "Resumed from ... at step N"
  assert json.load(open(os.path.join(workdir, "run_summary.json")))["step"] == 40


def test_trainer_benchmark_and_inspect_report_the_same_step(tmp_path, demo_dir, uninterrupted):
  """All three compile train_step.build's step: the same FLOPs per clip and compiled memory for the same config."""
  trained = json.load(open(os.path.join(uninterrupted, "run_summary.json")))["train_step"]
  common = [f"--config={CONFIG}", f"--config.data.demo_dir={demo_dir}"]
  rows = tmp_path / "rows.json"
  for command in ([sys.executable, "-m", "benchmarks.train_step", *common, "--batch_sizes=16", "--steps=1",
                   f"--json={rows}"],
                  [sys.executable, "-m", "videomae_jax.tools.inspect_config", *common, "--batch_size=16", "--json"]):
    out = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
  inspected = json.loads(out.stdout)
  benchmarked = json.loads(rows.read_text())[0]
  assert trained["batch_size"] == benchmarked["batch_size"] == inspected["config"]["batch_size_compiled"] == 16
  assert trained["flops_per_clip"] > 0
  assert trained["flops_per_clip"] == benchmarked["flops_per_clip"] == inspected["flops"]["train_step_per_clip"]
  memory = trained["memory"]["per_device_bytes"]
  assert memory > 0 and memory == benchmarked["compiled_memory_bytes"] == inspected["memory"]["per_device_bytes"]


def test_fsdp_on_8_devices_matches_1_device(tmp_path, demo_dir, uninterrupted):
  workdir = str(tmp_path / "fsdp")
  _run(workdir, demo_dir, "--config.mesh.data=2", "--config.mesh.fsdp=4", devices=8)
  one, eight = _losses(uninterrupted), _losses(workdir)
  assert one.keys() == eight.keys()
  for step in one:
    assert abs(one[step] - eight[step]) <= 1e-5 * max(1.0, abs(one[step])), (step, one[step], eight[step])


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _two_processes(workdir, demo_dir, *overrides):
  port = _free_port()
  processes = [subprocess.Popen(
      _command(workdir, demo_dir, *overrides, extra_flags=(
          f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}")),
      env=_env(2), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
  errors = [p.communicate(timeout=600)[1] for p in processes]
  for p, err in zip(processes, errors):
    assert p.returncode == 0, err[-4000:]
  return errors


def test_two_processes_train_checkpoint_and_resume(tmp_path, demo_dir):
  workdir = str(tmp_path / "multihost")
  _two_processes(workdir, demo_dir, "--config.num_train_steps=8")
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "8"))
  first = _losses(workdir)
  errors = _two_processes(workdir, demo_dir, "--config.num_train_steps=12")
  assert any("at step 8" in e for e in errors)
  losses = _losses(workdir)
  assert sorted(losses) == [2, 4, 6, 8, 10, 12] and all(np.isfinite(list(losses.values())))
  assert {k: v for k, v in losses.items() if k <= 8} == first


def test_rerunning_a_finished_run_does_nothing(demo_dir, uninterrupted):
  """No compile, no data, no new TensorBoard file; run_summary.json stays valid JSON (no NaN) and unchanged."""
  summary = os.path.join(uninterrupted, "run_summary.json")
  before = open(summary).read()
  board = sorted(os.listdir(os.path.join(uninterrupted, "tensorboard")))
  out = _run(uninterrupted, demo_dir)
  assert "nothing to do" in out.stderr and "Compiled the train step" not in out.stderr
  assert open(summary).read() == before
  json.loads(before, parse_constant=lambda name: pytest.fail(f"{name} in run_summary.json"))
  assert sorted(os.listdir(os.path.join(uninterrupted, "tensorboard"))) == board
