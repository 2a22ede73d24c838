r"""The GPU measurement suite: everything the speed claims need, in one command with per-case time limits.

  python -m benchmarks.gpu_suite --output_dir=$OUT                 # on the GPU machine (docs/benchmarks.md)
  python -m benchmarks.gpu_suite --tiny --output_dir=/tmp/suite    # the same cases at a tiny size, on the CPU

Cases (each in its own process, killed at --case_timeout_s; one JSON file per case plus suite.jsonl):
  train   ViT-B V1 (tube, decoder on every token), V2 (tube + running cell), MATS (motion); ViT-g V2 and MATS; in
          bfloat16, attention 'xla' vs 'cudnn' and remat none / dots_with_no_batch_dims / full, over a short batch
          sweep that stops at the first OOM (benchmarks.train_step: clips/s, TFLOP/s, MFU, peak memory, compile s)
  torch   transformers' VideoMAEForPreTraining (VideoMAE V1) at ViT-B, bf16 autocast, torch.compile off and on,
          AdamW step included (benchmarks.torch_baseline), at the batch of our V1 row: the fair pair
  cudnn   whether cuDNN's fused attention takes ViT-g's head_dim 88, and what padding to 96 costs if it does not
  input   the input pipeline's clips per CPU second per worker (benchmarks.input_pipeline) and the host's cores
It ends with one markdown table. A case that fails or runs out of time is a row that says so; the suite goes on.

Device time is scarce (a lent GPU gives about 15 minutes for everything, at most 10 per command), so the cases run
in the order the claims need them (FIRST_CASES: the fair ViT-B V1 pair with PyTorch eager and compiled, the V2 and
MATS rows, ViT-g MFU, the head_dim check; then the rest of the sweep) and the suite stops starting cases when
--budget_s would be passed: what was measured comes back, the rest says "not run: budget".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Sequence

from absl import app, flags

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the per-case JSON files and suite.jsonl go.")
_TINY = flags.DEFINE_bool("tiny", False, "Tiny models and batches on any device: checks the suite end to end.")
_CASE_TIMEOUT = flags.DEFINE_integer("case_timeout_s", 240, "Time limit of one case, seconds.")
_ONLY = flags.DEFINE_list("only", [], "Run only cases whose name contains one of these strings.")
_BUDGET = flags.DEFINE_integer("budget_s", 540, "Start no case after this many seconds; a case's limit is cut to "
                               "what is left (the device tool allows 600 s per command).")

# What the claims of issue [8/8] need, in this order; every other case runs after these, as listed.
FIRST_CASES = ("train_B_V1_cudnn_none", "torch_B_V1_eager", "torch_B_V1_compile", "train_B_V2_cudnn_none",
               "train_B_MATS_cudnn_none", "train_g_V2_cudnn_dots_with_no_batch_dims", "cudnn_head_dim_88",
               "train_g_MATS_cudnn_dots_with_no_batch_dims", "train_B_V1_xla_none", "train_g_V2_cudnn_full")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = "tests/configs/tiny_pretrain.py"
MASKING = {  # name -> config overrides
    "V1": ["--config.masking.encoder=tube", "--config.masking.decoder=none"],
    "V2": ["--config.masking.encoder=tube", "--config.masking.decoder=running_cell"],
    "MATS": ["--config.masking.encoder=motion", "--config.masking.decoder=motion"],
}


def train_cases(tiny: bool) -> list:
  """(name, command) of the train-step sweeps."""
  # Batch sweeps: a compile per size, so few sizes; the largest that fits is the row that counts.
  models = [("B", "configs/vitb_pretrain.py", "64,128,256", ("V1", "V2", "MATS")),
            ("g", "configs/vitg_pretrain.py", "16,32,64", ("V2", "MATS"))]
  attentions = ("xla", "cudnn")
  remats = ("none", "dots_with_no_batch_dims", "full")
  dtype, steps = "bfloat16", 5
  if tiny:  # float32: CPUs emulate bfloat16 matmuls slowly
    models = [("tiny", TINY_CONFIG, "4", ("V1", "V2", "MATS"))]
    attentions, remats, dtype, steps = ("xla", "blocked"), ("none", "full"), "float32", 2
  cases = []
  for size, config, batches, maskings in models:
    for masking in maskings:
      for attention in attentions:
        for remat in remats:
          name = f"train_{size}_{masking}_{attention}_{remat}"
          cases.append((name, [sys.executable, "-m", "benchmarks.train_step", f"--config={config}",
                               f"--batch_sizes={batches}", f"--steps={steps}", *MASKING[masking],
                               f"--config.model.attention_impl={attention}", f"--config.model.remat_policy={remat}",
                               f"--config.model.compute_dtype={dtype}", "--config.data.crop_on_device=False"]))
  return cases


def torch_cases(tiny: bool, batch_size: int) -> list:
  config = TINY_CONFIG if tiny else "configs/vitb_pretrain.py"
  cases = []
  for compiled in (False, True):
    cases.append((f"torch_{'tiny' if tiny else 'B'}_V1_{'compile' if compiled else 'eager'}",
                  [sys.executable, "-m", "benchmarks.torch_baseline", f"--config={config}",
                   f"--batch_size={batch_size}", f"--compiled={compiled}", f"--bf16={not tiny}", *MASKING["V1"]]))
  return cases


def cudnn_case() -> tuple:
  code = (
      "import json, time, jax, jax.numpy as jnp\n"
      "def timed(f, *a):\n"
      "  f(*a).block_until_ready(); t = time.perf_counter()\n"
      "  for _ in range(10): r = f(*a)\n"
      "  r.block_until_ready(); return (time.perf_counter() - t) / 10 * 1e3\n"
      "out = {}\n"
      "for d in (88, 96):\n"
      "  q = jnp.ones((8, 2048, 16, d), jnp.bfloat16)\n"
      "  for impl in ('cudnn', 'xla'):\n"
      "    try:\n"
      "      f = jax.jit(lambda q, impl=impl: jax.nn.dot_product_attention(q, q, q, implementation=impl))\n"
      "      out[f'{impl}_head_dim_{d}_ms'] = timed(f, q)\n"
      "    except Exception as e:\n"
      "      out[f'{impl}_head_dim_{d}_error'] = str(e).splitlines()[0][:200]\n"
      "print(json.dumps(out))\n")
  return ("cudnn_head_dim_88", [sys.executable, "-c", code])


def input_case(tiny: bool) -> tuple:
  extra = ["--num_videos=2", "--frames_per_video=40", "--num_clips=4", "--rounds=1", "--height=64", "--width=96",
           "--image_size=32", "--num_frames=8"] if tiny else ["--num_clips=24", "--rounds=3"]
  return ("input_pipeline", [sys.executable, "-m", "benchmarks.input_pipeline", "--compare_host_crops=false",
                             *extra])


def run_case(name: str, command: Sequence[str], output_dir: str, timeout: int) -> dict:
  """Runs one case; its row: the JSON it wrote (train/torch), its last line (cudnn), or its output's tail."""
  json_path = os.path.join(output_dir, f"{name}.json")
  if command[2].startswith("benchmarks.") and "input_pipeline" not in command[2]:
    command = [*command, f"--json={json_path}"]
  start = time.time()
  try:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3"))
  except subprocess.TimeoutExpired:
    row = dict(case=name, status=f"timeout after {timeout} s")
    if os.path.exists(json_path):  # the batch sizes measured before the limit
      with open(json_path) as f:
        row["result"] = json.load(f)
    return row
  row = dict(case=name, seconds=round(time.time() - start, 1))
  if done.returncode != 0:
    row["status"] = "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:300]
    return row
  row["status"] = "ok"
  if os.path.exists(json_path):
    with open(json_path) as f:
      row["result"] = json.load(f)
  elif name.startswith("cudnn"):
    row["result"] = json.loads(done.stdout.strip().splitlines()[-1])
  else:
    row["result"] = done.stdout.strip().splitlines()[-12:]
  return row


def summary(rows: list) -> str:
  lines = ["| case | status | result |", "|---|---|---|"]
  for row in rows:
    result = row.get("result", "")
    if isinstance(result, list) and result and isinstance(result[0], dict):
      result = "; ".join(
          f"b{r.get('batch_size')}: " + (r["error"] if "error" in r else
                                          f"{r.get('clips_per_second_per_device', r.get('clips_per_second', 0)):.2f}"
                                          f" clips/s" + (f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") else ""))
          for r in result)
    elif isinstance(result, list):
      result = " / ".join(line for line in result if line.startswith("|"))[:400]
    lines.append(f"| {row['case']} | {row['status']} | {result} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if not _OUTPUT_DIR.value:
    raise app.UsageError("--output_dir is required")
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  tiny = _TINY.value
  cases = train_cases(tiny) + torch_cases(tiny, 4 if tiny else 64) + [input_case(tiny)]
  if not tiny:
    cases.append(cudnn_case())
  if _ONLY.value:
    cases = [c for c in cases if any(part in c[0] for part in _ONLY.value)]
  rank = {name: i for i, name in enumerate(FIRST_CASES)}
  cases = sorted(cases, key=lambda c: rank.get(c[0], len(rank)))   # stable: the rest keep their order
  rows, start = [], time.time()
  with open(os.path.join(_OUTPUT_DIR.value, "suite.jsonl"), "a") as log:
    for name, command in cases:
      left = int(_BUDGET.value - (time.time() - start))
      if left < 20:
        row = dict(case=name, status="not run: budget")
      else:
        row = run_case(name, command, _OUTPUT_DIR.value, min(_CASE_TIMEOUT.value, left))
      print(f"{name}: {row['status']}", flush=True)
      log.write(json.dumps(row) + "\n")
      log.flush()
      rows.append(row)
  print(summary(rows))


if __name__ == "__main__":
  app.run(main)
