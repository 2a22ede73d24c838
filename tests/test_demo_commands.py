"""The README's demo commands with the real demo configs, shortened (few videos, few steps): pretrain, fine-tune
from that pretraining, evaluate. Guards the configs and the commands users run first; the accuracy numbers come
from the full-length run (docs/demo.md)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # end to end: CI's second step (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, config, workdir, *overrides):
  # No JAX_PLATFORMS: the run finds its backend as a user's does (and must not print JAX's TPU probe).
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("JAX_PLATFORMS", None)  # (conftest sets it for the tests in this process)
  env.pop("TPU_SKIP_MDS_QUERY", None)  # set by this process's own import of jax, not by a user
  out = subprocess.run([sys.executable, "-m", module, f"--config={os.path.join(ROOT, 'configs', config)}",
                        f"--workdir={workdir}", *overrides], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-4000:]
  return out


def test_demo_pretrain_finetune_evaluate(tmp_path):
  data = tmp_path / "demo_data"
  pretrain, finetune = str(tmp_path / "demo"), str(tmp_path / "demo_ft")
  # The evaluators (kNN, held-out reconstruction) every 2 steps: at 0, 2 and 4; their held-out set is the test set.
  out = _run("videomae_jax.main", "demo_pretrain.py", pretrain, f"--config.data.demo_dir={data}/pretrain",
             "--config.data.demo_videos_per_class=2", "--config.num_train_steps=4",
             "--config.checkpoint_every_steps=4", "--config.log_every_steps=2", "--compilation_cache_dir=",
             f"--config.eval.demo_dir={data}/test", "--config.eval.demo_videos_per_class=2",
             "--config.evals.knn.every_steps=2", "--config.evals.reconstruction.every_steps=2")
  # JAX's TPU probe and the TPU_* defaults its import writes into os.environ are not the user's settings.
  assert "Unable to initialize backend" not in out.stderr and "TPU_SKIP_MDS_QUERY" not in out.stderr
  assert "XLA / runtime flags set:" in out.stderr
  with open(os.path.join(data, "pretrain", "demo.json")) as f:
    assert json.load(f)["seed"] == 0
  assert os.path.exists(os.path.join(pretrain, "checkpoints", "4"))
  # config.json is the config that ran: the demo's shard folder and the canvas read from its shards filled in.
  ran = json.load(open(os.path.join(pretrain, "config.json")))
  assert ran["data"]["sources"][0]["path"] == os.path.join(data, "pretrain", "shards")
  assert ran["data"]["crop_canvas"] == [64, 64] and ran["data"]["crop_on_device"]
  assert os.path.exists(os.path.join(pretrain, "reconstruction.png"))
  rows = [json.loads(line) for line in open(os.path.join(pretrain, "metrics.jsonl"))]
  knn = {row["step"]: row["knn/top1"] for row in rows if "knn/top1" in row}
  assert sorted(knn) == [0, 2, 4] and all(0 <= v <= 100 for v in knn.values())
  assert all(row["knn/num_videos"] == 8 and row["knn/num_train_videos"] == 8 for row in rows if "knn/top1" in row)
  assert [row["step"] for row in rows if "reconstruction/loss" in row] == [0, 2, 4]
  common = [f"--config.data.demo_dir={data}/labeled", f"--config.eval.demo_dir={data}/test",
            "--config.data.demo_videos_per_class=1", "--config.eval.demo_videos_per_class=2"]
  out = _run("videomae_jax.main", "demo_finetune.py", finetune, f"--config.init_from={pretrain}", *common,
             "--config.num_train_steps=4", "--config.checkpoint_every_steps=4", "--config.log_every_steps=2",
             "--compilation_cache_dir=", "--config.evals.val.every_steps=2")
  assert "parameter arrays from config.init_from=" in out.stderr
  rows = [json.loads(line) for line in open(os.path.join(finetune, "metrics.jsonl"))]
  val = {row["step"]: row for row in rows if "val/top1" in row}
  assert sorted(val) == [0, 2, 4] and all(row["val/num_videos"] == 8 for row in val.values())
  ran = json.load(open(os.path.join(finetune, "config.json")))
  assert ran["task"] == "classify" and ran["data"]["sources"][0]["path"] == os.path.join(data, "labeled", "shards")
  _run("videomae_jax.tools.evaluate", "demo_finetune.py", finetune, *common)
  with open(os.path.join(finetune, "eval_results.json")) as f:
    results = json.load(f)
  assert results["num_videos"] == 8 and results["views"] == 2  # 2 test videos per class x 4, 2 clips x 1 crop
  assert 0 <= results["top1"] <= results["top5"] <= 100
  assert os.path.exists(os.path.join(finetune, "confusion_matrix.png"))
  seeds = {name: json.load(open(os.path.join(data, name, "demo.json")))["seed"] for name in ("labeled", "test")}
  assert seeds == {"labeled": 2, "test": 1}  # three disjoint video sets
