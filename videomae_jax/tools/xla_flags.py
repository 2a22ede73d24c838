r"""Prints the XLA / libtpu / NCCL settings of one hardware recipe (videomae_jax.xla_flags), for launch scripts.

  python -m videomae_jax.tools.xla_flags --hardware=h100 --format=shell     # export lines, for `eval "$(...)"`
  python -m videomae_jax.tools.xla_flags --hardware=v5p --format=json

Imports nothing from jax: it runs on login nodes and before jax is installed on a TPU VM.
"""
from __future__ import annotations

import json
import os

from absl import app, flags

from videomae_jax import xla_flags

_HARDWARE = flags.DEFINE_enum("hardware", None, list(xla_flags.hardware_names()), "Hardware recipe.")
_FORMAT = flags.DEFINE_enum("format", "shell", ["shell", "json", "env"],
                            "shell: export lines; json: one object; env: KEY=VALUE lines (docker --env-file).")
_MERGE = flags.DEFINE_bool("merge_environment", False, "Merge over this process's environment (user-set flags win) "
                           "instead of printing the pure recipe.")


def main(argv):
  del argv
  if not _HARDWARE.value:
    raise app.UsageError(f"--hardware is required: one of {', '.join(xla_flags.hardware_names())}.")
  values = xla_flags.environment(_HARDWARE.value, os.environ if _MERGE.value else None)
  if _FORMAT.value == "shell":
    text = xla_flags.format_shell(values)
  elif _FORMAT.value == "json":
    text = json.dumps(values)
  else:
    text = "\n".join(f"{key}={value}" for key, value in values.items())
  if text:
    print(text)


if __name__ == "__main__":
  app.run(main)
