r"""Import PyTorch VideoMAE V2 weights (official `.pth` releases or HuggingFace folders) into a params export.

  python -m videomae_jax.tools.from_pytorch --input=vit_b_k710_dl_from_giant.pth --output=exports/vit_b_k710
  python -m videomae_jax.tools.from_pytorch --input=hf_videomae_folder/ --output=exports/hf_b
  python -m videomae_jax.tools.from_pytorch --input=custom.pth --output=DIR --num_heads=8 --num_frames=8

The output is what `config.init_from` and `to_pytorch --checkpoint` accept. Needs `pip install -e ".[torch]"`.
"""
from __future__ import annotations

import sys

from absl import app, flags

from videomae_jax.convert import from_pytorch

_INPUT = flags.DEFINE_string("input", None, ".pth / .safetensors file, or an HF save_pretrained folder.")
_OUTPUT = flags.DEFINE_string("output", None, "Params export folder to write.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output.")
_VARIANT = flags.DEFINE_string("variant", None, "S, B, L, H, g ...: head counts of that variant.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "Encoder heads.")
_DECODER_NUM_HEADS = flags.DEFINE_integer("decoder_num_heads", None, "Decoder heads.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", None, "Frames per clip (official files: default 16).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Image size (official files: default 224).")


def main(argv):
  del argv
  if not _INPUT.value or not _OUTPUT.value:
    raise app.UsageError("--input and --output are required.")
  try:
    loaded = from_pytorch.convert(_INPUT.value, _OUTPUT.value, overwrite=_OVERWRITE.value, variant=_VARIANT.value,
                                  num_heads=_NUM_HEADS.value, decoder_num_heads=_DECODER_NUM_HEADS.value,
                                  num_frames=_NUM_FRAMES.value, image_size=_IMAGE_SIZE.value)
  except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
    sys.exit(f"error: {error}")
  model = loaded.model_config
  print(f"wrote {_OUTPUT.value}: {loaded.kind} model, variant {model['variant']} (width {model['width']}, depth "
        f"{model['depth']}, {model['num_heads']} heads), {model['num_frames']} frames at {model['image_size']} px")


if __name__ == "__main__":
  app.run(main)
