r"""Look at a configuration without training: parameter and token counts, FLOPs and memory of the compiled step.

  python -m videomae_jax.tools.inspect_config --config=configs/vitg_pretrain.py [--json] [--batch_size=8]
      [--config.masking.encoder=motion ...]
  python -m videomae_jax.tools.inspect_config --config=configs/vitb_pretrain.py --compare_schemes
  python -m videomae_jax.tools.inspect_config --config=configs/vitb_k400_finetune.py --compare_schemes

Nothing is allocated: the trainer's own step (videomae_jax.train_step.build) is compiled ahead of time for
--batch_size clips on this process's devices; FLOPs (model FLOPs per clip, XLA cost analysis) and memory (XLA's
memory analysis per device) are what the trainer logs; a distillation config's frozen teacher is an argument of
that step, so both count it, and its own line shows its parameters, held bytes and forward FLOPs. --compare_schemes
compares the masking schemes of a pretraining config, or a classifier's forward FLOPs per view with and without MATS
token keeping.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from videomae_jax import analysis, resolve, tasks
from videomae_jax.tasks.classify import ClassificationTask

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips to compile the step for (on this process's devices).")
_COMPARE = flags.DEFINE_bool("compare_schemes", False,
                             "Compare masking schemes (pretraining) or MATS token keeping (classification).")


def main(argv):
  del argv
  if _CONFIG.value is None:
    raise app.UsageError("--config=configs/<name>.py is required.")
  config = resolve.resolve(_CONFIG.value, for_training=False)
  if _COMPARE.value:
    task = tasks.from_config(config)
    if isinstance(task, ClassificationTask):
      keep = task.plan.finetune_keep_ratio if task.plan.finetune_keep_ratio < 1 else 0.6
      report = analysis.mats_flops_report(task, keep)
      print(json.dumps(report) if _JSON.value else
            f"{report['flops_full'] / 1e9:.1f} GFLOPs per view with all {report['tokens_full']} tokens, "
            f"{report['flops_mats'] / 1e9:.1f} GFLOPs keeping {report['tokens_mats']} (ratio {report['ratio']:.3f}).")
      return
    rows = analysis.compare_schemes(config)
    print(json.dumps(rows) if _JSON.value else analysis.format_scheme_table(rows))
    return
  result = analysis.analyze(config, _BATCH.value)
  if _JSON.value:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
  else:
    print(analysis.format_table(result))


if __name__ == "__main__":
  app.run(main)
