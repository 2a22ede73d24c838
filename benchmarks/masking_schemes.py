r"""The masking schemes on equal budget: the same pretraining, then the same fine-tuning, over several seeds.

  python -m benchmarks.masking_schemes [--output_dir=runs/masking_schemes] [--seeds=0,1]
      [--pretrain_steps=2000] [--schemes=v1,v2,mats,ours,random] [--json=rows.json]

For every scheme and seed: `python -m videomae_jax.main --config=configs/demo_pretrain.py` with the scheme's
config.masking and config.seed=SEED for --pretrain_steps steps (batch, lr schedule, data and model as the demo's;
the kNN evaluator runs once, at the last step), then `configs/demo_finetune.py --config.init_from=...` with the
same seed (300 steps; its validation evaluator, the test set with the evaluate program's 2 views per video, gives
the fine-tuned top-1 at the last step). The fine-tuning from random initialization with the same seeds is the
baseline row. Every run is the trainer as a user runs it, in its own process; runs already finished under
--output_dir are read back, not repeated (delete a run's folder to redo it).

Prints a markdown table: tokens per clip (encoder / decoder / loss), train-step model FLOPs per clip (XLA cost
analysis, as the trainer logs), pretraining wall time (the whole process: start, compile, training, evaluation;
mean over seeds), kNN top-1 at the end of pretraining and fine-tuned top-1, each as mean (min-max) over the seeds
with the values per seed. Wall time depends on what else the machine runs; FLOPs do not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (label, config.masking overrides). The published schemes at their published ratios (docs/upstream.md;
# videomae_jax.analysis.SCHEMES), and the demo's plain MAE.
SCHEMES = {
    "v1": ("VideoMAE V1: tube 0.9, no decoder mask", dict(encoder="tube", decoder="none", encoder_ratio=0.9)),
    "v2": ("VideoMAE V2: tube 0.9 + running cell 0.5",
           dict(encoder="tube", decoder="running_cell", encoder_ratio=0.9, decoder_ratio=0.5)),
    "mats": ("MATS / EVEREST: motion 0.9, keep 0.3",
             dict(encoder="motion", decoder="motion", encoder_ratio=0.9, motion_keep_ratio=0.3)),
    "ours": ("tube 0.9 + motion decoder 0.5 (ours)",
             dict(encoder="tube", decoder="motion", encoder_ratio=0.9, decoder_ratio=0.5)),
    "random": ("random 0.75, no decoder mask (the demo)", dict(encoder="random", decoder="none", encoder_ratio=0.75)),
}
BASELINE = "scratch"  # fine-tuning from random initialization

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/masking_schemes", "Folder of every run's workdir.")
_SEEDS = flags.DEFINE_string("seeds", "0,1", "Comma-separated seeds (pretraining and fine-tuning seed alike).")
_PRETRAIN_STEPS = flags.DEFINE_integer("pretrain_steps", 2000, "Pretraining steps of every scheme.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 0, "Fine-tuning steps; 0: configs/demo_finetune.py's.")
_SCHEMES = flags.DEFINE_string("schemes", ",".join(SCHEMES), f"Comma-separated schemes among {list(SCHEMES)}.")
_BASELINE = flags.DEFINE_bool("baseline", True, "Also fine-tune from random initialization (the baseline row).")
_PRETRAIN_CONFIG = flags.DEFINE_string("pretrain_config", "configs/demo_pretrain.py", "Pretraining config file.")
_FINETUNE_CONFIG = flags.DEFINE_string("finetune_config", "configs/demo_finetune.py", "Fine-tuning config file.")
_OVERRIDES = flags.DEFINE_multi_string("override", [], "Extra --config.KEY=VALUE for every pretraining run "
                                       "(repeat the flag), e.g. --override=config.model.num_frames=16.")
_JSON = flags.DEFINE_string("json", "", "Also write the rows to this JSON file.")

RESULT_FILE = "benchmark_run.json"  # in each workdir: what this program measured there


def _metric_at_last_step(workdir: str, key: str) -> Optional[float]:
  value = None
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if key in row:
        value = row[key]
  return value


def _train(config_file: str, workdir: str, overrides: List[str]) -> Dict[str, Any]:
  """Runs the trainer once (or reads what an earlier call measured) -> {'seconds', 'summary'}."""
  result_path = os.path.join(workdir, RESULT_FILE)
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  command = [sys.executable, "-m", "videomae_jax.main", f"--config={config_file}", f"--workdir={workdir}",
             *overrides]
  print("+ " + " ".join(command), flush=True)
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  start = time.time()
  out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
  seconds = time.time() - start
  if out.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-4000:]}")
  with open(os.path.join(workdir, "run_summary.json")) as f:
    result = {"seconds": round(seconds, 1), "summary": json.load(f)}
  with open(result_path, "w") as f:
    json.dump(result, f, indent=1)
  return result


def _masking_flags(masking: Dict[str, Any]) -> List[str]:
  return [f"--config.masking.{key}={value}" for key, value in masking.items()]


def run_scheme(name: str, seeds: List[int], output_dir: str) -> Dict[str, Any]:
  """Pretrains (unless the baseline) and fine-tunes with every seed; returns the scheme's row."""
  steps = _PRETRAIN_STEPS.value
  finetune_steps = ([f"--config.num_train_steps={_FINETUNE_STEPS.value}",
                     f"--config.checkpoint_every_steps={_FINETUNE_STEPS.value}"] if _FINETUNE_STEPS.value else [])
  label, masking = SCHEMES.get(name, ("none: fine-tuning from random initialization", None))
  row = {"scheme": name, "label": label, "masking": masking, "seeds": seeds, "pretrain_steps": steps if masking
         else 0, "pretrain_seconds": [], "knn_top1": [], "finetune_top1": []}
  for seed in seeds:
    init = []
    if masking is not None:
      workdir = os.path.join(output_dir, "pretrain", name, f"seed{seed}")
      result = _train(_PRETRAIN_CONFIG.value, workdir, [
          f"--config.seed={seed}", f"--config.num_train_steps={steps}", f"--config.checkpoint_every_steps={steps}",
          # kNN once, at the end; no held-out reconstruction (each scheme's loss has other targets) or picture.
          f"--config.evals.knn.every_steps={steps}", "--config.evals.knn.at_start=False",
          "--config.evals.reconstruction.every_steps=0", "--config.data.reconstruction_video=",
          *_masking_flags(masking), *["--" + o.removeprefix("--") for o in _OVERRIDES.value]])
      row["pretrain_seconds"].append(result["seconds"])
      row["flops_per_clip"] = result["summary"]["train_step"]["flops_per_clip"]
      row["knn_top1"].append(_metric_at_last_step(workdir, "knn/top1"))
      row.update(_token_counts(workdir))
      init = [f"--config.init_from={workdir}"]
    workdir = os.path.join(output_dir, "finetune", name, f"seed{seed}")
    # Validation once, at the last step (due() always runs an evaluator at the last step).
    _train(_FINETUNE_CONFIG.value, workdir, [f"--config.seed={seed}", *init, *finetune_steps,
                                             "--config.evals.val.every_steps=1000000",
                                             "--config.evals.val.at_start=False"])
    # The validation evaluator always runs at the last step: the fine-tuned model's test top-1 (2 views per video).
    row["finetune_top1"].append(_metric_at_last_step(workdir, "val/top1"))
  return row


def _token_counts(workdir: str) -> Dict[str, int]:
  """The scheme's tokens per clip (all, encoder, decoder inputs, loss) from the config that ran there."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  from videomae_jax import masking  # pylint: disable=import-outside-toplevel
  from videomae_jax.models.variants import model_spec_from_config  # pylint: disable=import-outside-toplevel
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  plan = masking.masking_plan(config.masking, model_spec_from_config(config.model))
  return {"tokens": plan.num_tokens, "encoder_tokens": plan.num_encoder_tokens,
          "decoder_tokens": plan.num_decoder_inputs, "loss_tokens": plan.num_loss_tokens}


def _spread(values: List[Optional[float]]) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  each = ", ".join(f"{v:.1f}" for v in values)
  return f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f}; {each})"


def format_table(rows: List[Dict[str, Any]]) -> str:
  lines = ["| scheme | tokens: encoder / decoder / loss | train MFLOPs / clip | pretraining wall time | "
           "kNN top-1 after pretraining | fine-tuned top-1 |", "|---|---|---|---|---|---|"]
  for r in rows:
    if r["masking"] is None:
      lines.append(f"| {r['label']} | | | | | {_spread(r['finetune_top1'])} |")
      continue
    seconds = sum(r["pretrain_seconds"]) / len(r["pretrain_seconds"])
    lines.append(f"| {r['label']} | {r['encoder_tokens']} / {r['decoder_tokens']} / {r['loss_tokens']} of "
                 f"{r['tokens']} | {r['flops_per_clip'] / 1e6:.1f} | {seconds / 60:.1f} min | "
                 f"{_spread(r['knn_top1'])} | {_spread(r['finetune_top1'])} |")
  return "\n".join(lines)


def main(argv):
  del argv
  seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
  names = [s.strip() for s in _SCHEMES.value.split(",") if s.strip()]
  unknown = sorted(set(names) - set(SCHEMES))
  if unknown or len(seeds) < 1:
    raise app.UsageError(f"--schemes: unknown {unknown}; use some of {list(SCHEMES)}; --seeds: at least one seed.")
  output_dir = os.path.abspath(_OUTPUT_DIR.value)
  rows = [run_scheme(name, seeds, output_dir) for name in names]
  if _BASELINE.value:
    rows.append(run_scheme(BASELINE, seeds, output_dir))
  print(format_table(rows))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
