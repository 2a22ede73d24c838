"""Evaluators in the trainer, end to end through `python -m videomae_jax.main`: the same numbers on 8 (fake CPU)
devices with FSDP as on 1 (fine-tuning in one process; pretraining in two processes of 4 devices joined by
jax.distributed), and a run resumed after a crash re-evaluates nothing twice and loses nothing."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.test_train_e2e import _env, _free_port

pytestmark = pytest.mark.slow  # end to end: CI's second step (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "configs", "tiny_evals.py")
EVAL_PREFIXES = ("knn/", "reconstruction/", "val/")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """The demo sets of tests/configs/tiny_evals.py, built once (training: 12 videos, held out: 8)."""
  from videomae_jax.data import demo
  root = tmp_path_factory.mktemp("data")
  demo.build_demo_shards(str(root / "train"), num_videos_per_class=3, num_frames=24, size=48, seed=0)
  demo.build_demo_shards(str(root / "test"), num_videos_per_class=2, num_frames=24, size=48, seed=1)
  return root


def _command(workdir, data, task, *extra):
  return [sys.executable, "-m", "videomae_jax.main", f"--config={CONFIG}:{task}",
          f"--workdir={workdir}", f"--config.data.demo_dir={data / 'train'}",
          f"--config.eval.demo_dir={data / 'test'}", "--compilation_cache_dir=", *extra]


def _run(workdir, data, task, *overrides, devices=1):
  out = subprocess.run(_command(workdir, data, task, *overrides), env=_env(devices), capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-4000:]
  return out


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _evaluations(workdir):
  """{step: {metric: value}} of the evaluators' results (their timings left out)."""
  found = {}
  for row in _rows(workdir):
    values = {k: v for k, v in row.items() if k.startswith(EVAL_PREFIXES) and not k.endswith("/seconds")}
    if values:
      assert row["step"] not in found, f"step {row['step']} logged twice"
      found[row["step"]] = values
  return found


def _assert_same(expected, found, rel=1e-4):
  assert expected.keys() == found.keys()
  for step in expected:
    assert expected[step].keys() == found[step].keys(), step
    for key, value in expected[step].items():
      # Top-1 values are counts of videos: exact; losses are float sums over devices in another order.
      assert found[step][key] == pytest.approx(value, rel=rel, abs=1e-6), (step, key, value, found[step][key])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, data):
  runs = {}
  for task in ("pretrain", "classify"):
    workdir = str(tmp_path_factory.mktemp(f"one_{task}"))
    _run(workdir, data, task)
    runs[task] = workdir
  return runs


def test_every_evaluator_logs_at_its_steps_with_its_time_apart(one_device):
  pretrain, classify = _evaluations(one_device["pretrain"]), _evaluations(one_device["classify"])
  assert sorted(pretrain) == sorted(classify) == [0, 4, 8, 12]  # at the start, every 4 steps, the last step
  assert {"knn/top1", "knn/num_videos", "knn/num_train_videos", "reconstruction/loss"} <= set(pretrain[12])
  assert pretrain[12]["knn/num_videos"] == 8 and pretrain[12]["knn/num_train_videos"] == 12  # padding left out
  assert {"val/top1", "val/top5", "val/loss"} <= set(classify[12]) and classify[12]["val/num_videos"] == 8
  assert all(0 <= row["knn/top1"] <= 100 and row["reconstruction/loss"] > 0 for row in pretrain.values())
  rows = {row["step"]: row for row in _rows(one_device["pretrain"])}
  assert rows[4]["perf/eval_seconds"] >= rows[4]["knn/seconds"] + rows[4]["reconstruction/seconds"] > 0
  assert "train/loss" in rows[4] and "perf/steps_per_second" in rows[4]  # one line per step: training and evals
  board = os.listdir(os.path.join(one_device["pretrain"], "tensorboard"))
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
  events = event_accumulator.EventAccumulator(os.path.join(one_device["pretrain"], "tensorboard", board[0]),
                                              size_guidance={"images": 0})
  events.Reload()
  assert [e.step for e in events.Images("reconstruction/picture")] == [0, 4, 8, 12]
  assert [e.step for e in events.Scalars("knn/top1")] == [0, 4, 8, 12]


def test_8_devices_with_fsdp_give_the_numbers_of_1_device(tmp_path, data, one_device):
  """Fine-tuning (classification); the pretraining evaluators run on 8 devices in the two-process test below."""
  workdir = str(tmp_path / "classify")
  _run(workdir, data, "classify", "--config.mesh.data=2", "--config.mesh.fsdp=4", devices=8)
  _assert_same(_evaluations(one_device["classify"]), _evaluations(workdir))


def test_two_processes_with_8_devices_give_the_numbers_of_one(tmp_path, data, one_device):
  """kNN and reconstruction with two processes of 4 devices each, parameters FSDP-sharded across both."""
  workdir = str(tmp_path / "two")
  port = _free_port()
  processes = [subprocess.Popen(
      _command(workdir, data, "pretrain", f"--coordinator_address=localhost:{port}", "--num_processes=2",
               f"--process_id={i}", "--config.mesh.data=2", "--config.mesh.fsdp=4"), env=_env(4), cwd=ROOT,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
  errors = [p.communicate(timeout=900)[1] for p in processes]
  for p, err in zip(processes, errors):
    assert p.returncode == 0, err[-4000:]
  _assert_same(_evaluations(one_device["pretrain"]), _evaluations(workdir))


def test_a_crashed_run_resumes_without_evaluating_twice(tmp_path, data, one_device):
  """The state a run killed after its step-4 checkpoint leaves (deterministically: the finished run's workdir with
  the checkpoints past 4 removed, its metrics.jsonl still holding the steps past 4): the restart resumes from 4,
  drops the lines past it, evaluates 8 and 12 once each and never 0 or 4 again, with the same numbers."""
  workdir = str(tmp_path / "crashed")
  shutil.copytree(one_device["pretrain"], workdir)
  for step in os.listdir(os.path.join(workdir, "checkpoints")):
    if step.isdigit() and int(step) > 4:
      shutil.rmtree(os.path.join(workdir, "checkpoints", step))
  assert 12 in _evaluations(workdir)  # lines past the checkpoint, as a crash leaves them
  out = _run(workdir, data, "pretrain")
  assert "Resumed from" in out.stderr  # from the checkpoint of step 4, not started over
  evaluated = [int(m) for m in re.findall(r"\[(\d+)\] .*knn/top1=", out.stderr)]
  assert evaluated == [8, 12], evaluated  # what this process evaluated: nothing before its checkpoint
  _assert_same(_evaluations(one_device["pretrain"]), _evaluations(workdir), rel=0)  # bitwise: same params
