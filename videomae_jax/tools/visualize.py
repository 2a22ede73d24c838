r"""Draws what the masking does to one video: frames, motion scores, encoder tokens, decoder targets, reconstruction.

  python -m videomae_jax.tools.visualize --video=clip.mp4 --config=configs/vitb_pretrain.py --output=masks.png
  python -m videomae_jax.tools.visualize --video=clip.mp4 --config=configs/vitb_pretrain.py \
      --config.masking.encoder=motion --config.masking.decoder=motion --checkpoint=CHECKPOINT_DIR

The picture is videomae_jax.visualization's (its docstring says what each row shows).
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from videomae_jax import visualization

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_VIDEO = flags.DEFINE_string("video", None, "Video file to visualize (anything PyAV decodes).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir, checkpoint step directory or params "
                                  "export; random init without it (then no reconstruction row).")
_OUTPUT = flags.DEFINE_string("output", "masks.png", "Where to write the PNG.")
_SEED = flags.DEFINE_integer("seed", 0, "Masking seed (and init seed without a checkpoint).")
_STRIDE = flags.DEFINE_integer("stride", 0, "Frame stride of the clip, centred in the video; 0 spreads the "
                               "frames evenly over the whole video.")


def main(argv):
  del argv
  if _CONFIG.value is None or not _VIDEO.value:
    raise app.UsageError("--config and --video are required.")
  visualization.visualize(_CONFIG.value, _VIDEO.value, _OUTPUT.value, _CHECKPOINT.value, _SEED.value,
                          _STRIDE.value)
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
