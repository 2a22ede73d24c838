r"""Multi-view test of a fine-tuned classifier: softmax averaged over clips x crops per video.

  python -m videomae_jax.tools.evaluate --config=configs/vitb_k400_finetune.py --workdir=runs/vitb_k400 \
      [--config.eval.path=SHARDS] [--params=EXPORT_OR_CHECKPOINT] [--step=N]

Reads the latest checkpoint's params of --workdir (or --params: a params export, e.g. from label_transfer, or any
path videomae_jax.convert.params_io.load_params reads) and tests on the labeled shard folder config.eval.path
(the demo configs build their test set when missing). Writes {workdir}/eval_results.json and
{workdir}/confusion_matrix.png; the protocol is videomae_jax.evaluation's.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from videomae_jax import evaluation, resolve
from videomae_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Classification config file (model, masking, eval).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Fine-tuning workdir: params are read here, results written here.")
_PARAMS = flags.DEFINE_string("params", "", "Read params from this export / checkpoint instead of --workdir.")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (-1: latest).")


def main(argv):
  del argv
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError("--config and --workdir are required.")
  try:
    config = resolve.resolve(_CONFIG.value, for_training=False, evaluation=True)
    results = evaluation.evaluate(config, _WORKDIR.value, params_path=_PARAMS.value,
                                  step=None if _STEP.value < 0 else _STEP.value)
  except ConfigError as error:
    sys.exit(f"Configuration error: {error}")
  print(json.dumps({k: results[k] for k in ("top1", "top5", "mean_class_accuracy", "num_videos", "views")}))


if __name__ == "__main__":
  app.run(main)
