"""Smoke test: the train-step benchmark runs end to end on the CPU and prints a table with real numbers."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # end to end: CI's second step (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_benchmark_prints_table(tmp_path):
  out_json = tmp_path / "rows.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.train_step", "--config=tests/configs/tiny_pretrain.py", "--batch_sizes=4,8",
       "--steps=2", f"--json={out_json}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| device | model | masking |" in result.stdout
  rows = json.loads(out_json.read_text())
  assert [row["batch_size"] for row in rows] == [4, 8]
  assert all(row["crops"].startswith("device, 2 per clip") for row in rows)  # tiny config: repeated_aug 2
  for row in rows:
    assert row["clips_per_second_per_device"] > 0 and row["tflops_per_second_per_device"] > 0
    assert row["compile_seconds"] > 0 and row["peak_memory_gib"] > 0
    assert row["mfu"] is None  # no peak FLOP/s for CPUs
