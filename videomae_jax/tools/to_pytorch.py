r"""Export our params to PyTorch: the official VideoMAE V2 `.pth` layout or a HuggingFace transformers folder.

  python -m videomae_jax.tools.to_pytorch --workdir=DIR --format=videomaev2 --output=vit_b_pt.pth
  python -m videomae_jax.tools.to_pytorch --checkpoint=EXPORT_OR_CKPT_DIR --format=hf --output=hf_dir/

--checkpoint takes a CheckpointManager dir, one step dir or a params export. Needs `pip install -e ".[torch]"`.
"""
from __future__ import annotations

import sys

from absl import app, flags

from videomae_jax.convert import to_pytorch

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "CheckpointManager dir, step dir or params export.")
_STEP = flags.DEFINE_integer("step", None, "Training step (default: the latest).")
_FORMAT = flags.DEFINE_enum("format", None, list(to_pytorch.FORMATS), "Output layout.")
_OUTPUT = flags.DEFINE_string("output", None, ".pth file (videomaev2) or folder (hf).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output.")
# Only used when the checkpoint has no config.json / model.json beside it.
_VARIANT = flags.DEFINE_string("variant", None, "Variant whose head counts to use (S, B, L, H, g).")
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "Encoder heads.")
_DECODER_NUM_HEADS = flags.DEFINE_integer("decoder_num_heads", None, "Decoder heads.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Frames per clip (default 16).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Image size (default 224).")


def main(argv):
  del argv
  if bool(_WORKDIR.value) == bool(_CHECKPOINT.value) or not _FORMAT.value or not _OUTPUT.value:
    raise app.UsageError("give one of --workdir / --checkpoint, and --format and --output.")
  try:
    loaded = to_pytorch.convert(_WORKDIR.value or _CHECKPOINT.value, _OUTPUT.value, _FORMAT.value, step=_STEP.value,
                                overwrite=_OVERWRITE.value, variant=_VARIANT.value, num_heads=_NUM_HEADS.value,
                                decoder_num_heads=_DECODER_NUM_HEADS.value, num_frames=_NUM_FRAMES.value,
                                image_size=_IMAGE_SIZE.value)
  except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
    sys.exit(f"error: {error}")
  step = f"step {loaded.step} of " if loaded.step is not None else ""
  print(f"wrote {_OUTPUT.value} ({_FORMAT.value}, {loaded.kind} model) from {step}{loaded.path}")
  if _FORMAT.value == "hf":
    print("note: transformers uses LayerNorm eps 1e-5 in fc_norm / decoder.norm (ours: 1e-6).")


if __name__ == "__main__":
  app.run(main)
