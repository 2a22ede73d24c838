r"""Look at a configuration without training: parameter and token counts, FLOPs and memory of the compiled step.

  python -m videomae_jax.inspect --config=configs/vitg_pretrain.py [--json] [--batch_size=8]
      [--config.masking.encoder=motion ...]

Nothing is allocated: the train state comes from `jax.eval_shape` and the step is lowered and compiled ahead of time
for `--batch_size` clips on this process's devices. FLOPs are XLA's cost analysis of the compiled train step
(forward, backward and optimizer update) per clip, counted on the unrolled, un-rematerialized step (model FLOPs,
the numerator of MFU); memory is XLA's memory analysis of the step as configured, for one device.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from videomae_jax.analysis import analyze, compare_schemes, format_scheme_table, format_table

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips to compile the step for (on this process's devices).")
_COMPARE = flags.DEFINE_bool("compare_schemes", False,
                             "Print token counts and train-step FLOPs per clip for each masking scheme instead.")

def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config=configs/<name>.py is required.")
  if _COMPARE.value:
    rows = compare_schemes(config)
    print(json.dumps(rows) if _JSON.value else format_scheme_table(rows))
    return
  result = analyze(config, _BATCH.value)
  if _JSON.value:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
  else:
    print(format_table(result))


if __name__ == "__main__":
  app.run(main)
