r"""Plan a run before paying for it: memory per device, FLOPs, time, and a mesh that fits. Pretraining,
classifier fine-tuning and distillation (the frozen teacher's parameters, forward working set and forward FLOPs
added to the student's step: docs/planning.md).

  python -m videomae_jax.tools.plan --config=configs/vitg_pretrain.py --num_devices=64 --device=h100
  python -m videomae_jax.tools.plan --config=configs/vitb_distill_from_vitg_k710.py --num_devices=64 --device=h100
  python -m videomae_jax.tools.plan --config=configs/vitg_pretrain.py --num_devices=256 --device=v5e [--json]
      [--per_device_batch=K] [--fsdp=F] [--num_slices=S] [--mfu=0.4] [--headroom=0.9] [--flops=analytic|xla]
      [--config.model.remat_policy=none ...]

Nothing is compiled by default; a few seconds on a laptop for ViT-g. The method is videomae_jax.planning's.
Exit status: 0 when a mesh fits, 1 when none does, 2 for a bad config.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from videomae_jax import hardware, planning, resolve
from videomae_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_NUM_DEVICES = flags.DEFINE_integer("num_devices", None, "Devices (GPUs or TPU chips) in the whole run.")
_DEVICE = flags.DEFINE_string("device", "h100", f"One of {sorted(hardware.DEVICES)}.")
_PER_DEVICE_BATCH = flags.DEFINE_integer("per_device_batch", None,
                                         "Clips per device per microbatch; must divide batch_size / num_devices "
                                         "(default: the largest that fits, preferring no accumulation).")
_FSDP = flags.DEFINE_integer("fsdp", None, "Evaluate only this fsdp axis size (default: the smallest that fits).")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "TPU slices or GPU nodes groups; fsdp stays inside one.")
_MFU = flags.DEFINE_float("mfu", 0.4, "Model FLOPs utilization assumed for the time estimate.")
_HEADROOM = flags.DEFINE_float("headroom", 0.9, "Fraction of device memory the plan may use.")
_FLOPS = flags.DEFINE_enum("flops", "analytic", ["analytic", "xla"], "FLOP count source.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")


def main(argv):
  del argv
  if _CONFIG.value is None or not _NUM_DEVICES.value:
    raise app.UsageError("--config=configs/<name>.py and --num_devices=N are required.")
  try:
    result = planning.make_plan(resolve.resolve(_CONFIG.value, for_training=False), num_devices=_NUM_DEVICES.value,
                                device=_DEVICE.value, per_device_batch=_PER_DEVICE_BATCH.value, fsdp=_FSDP.value,
                                num_slices=_NUM_SLICES.value, mfu=_MFU.value, headroom=_HEADROOM.value,
                                flops=_FLOPS.value)
  except (ConfigError, ValueError) as error:
    print(f"plan: {error}", file=sys.stderr)
    return 2
  if _JSON.value:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
  else:
    print(planning.format_table(result))
  return 0 if result["recommended"] else 1


if __name__ == "__main__":
  app.run(main)
