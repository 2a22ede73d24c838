r"""Progressive training's head transfer: cut a merged classifier head (K710) down to a target label set.

  python -m videomae_jax.tools.label_transfer --input=runs/vitg_k710 --label_map=k400 \
      --output=exports/vitg_k710_to_k400

--label_map is 'k400' | 'k600' | 'k700' (the official K710 maps, shipped in the package) or a JSON list whose entry
i is the source row of target class i. Writes a params export whose head has len(label_map) classes
(videomae_jax.label_transfer); fine-tune from it with config.init_from, or evaluate it directly.
"""
from __future__ import annotations

import sys

from absl import app, flags

from videomae_jax import label_transfer

_INPUT = flags.DEFINE_string("input", None, "Training workdir, checkpoint dir or params export of a classifier.")
_LABEL_MAP = flags.DEFINE_string("label_map", None, "'k400' | 'k600' | 'k700' or a JSON list of source rows.")
_OUTPUT = flags.DEFINE_string("output", None, "Params export directory to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output.")


def main(argv):
  del argv
  if not (_INPUT.value and _LABEL_MAP.value and _OUTPUT.value):
    raise app.UsageError("--input, --label_map and --output are required.")
  try:
    out = label_transfer.convert_checkpoint(_INPUT.value, _LABEL_MAP.value, _OUTPUT.value, step=_STEP.value,
                                            overwrite=_OVERWRITE.value)
  except (ValueError, FileNotFoundError, FileExistsError) as error:
    sys.exit(f"error: {error}")
  print(f"wrote {out} ({len(label_transfer.load_label_map(_LABEL_MAP.value))} classes)")


if __name__ == "__main__":
  app.run(main)
