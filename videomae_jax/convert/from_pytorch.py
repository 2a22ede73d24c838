"""Import PyTorch VideoMAE V2 weights (official `.pth` releases or HuggingFace folders) into a params export.

  python -m videomae_jax.tools.from_pytorch --input=vit_b_k710_dl_from_giant.pth --output=exports/vit_b_k710
  python -m videomae_jax.tools.from_pytorch --input=hf_videomae_folder/ --output=exports/hf_b
  python -m videomae_jax.tools.from_pytorch --input=custom.pth --output=DIR --num_heads=8 --num_frames=8

The output (model.json + orbax params/) is what `config.init_from` and `to_pytorch --checkpoint` accept.

Official files: the state dict may sit under `model` or `module` or be bare; `_orig_mod.`, `module.` and
`backbone.` prefixes are removed, and `encoder.` too on fine-tuned weights. A file with decoder keys is a
pretraining model, else a classifier. Dimensions come from the shapes; head counts from --num_heads /
--decoder_num_heads, else --variant, else the variant table by width; frames and image size (not stored in the
weights) from --num_frames / --image_size (default 16 and 224). HF folders carry all of that in config.json.
Loading is safe: torch.load(weights_only=True) or safetensors, never arbitrary unpickling.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from videomae_jax.convert import mapping, params_io, torch_io
from videomae_jax.models.variants import model_spec_from_config

logger = logging.getLogger(__name__)

HF_ARCHITECTURES = {"VideoMAEForPreTraining": mapping.KIND_PRETRAIN,
                    "VideoMAEForVideoClassification": mapping.KIND_CLASSIFIER}
OUR_LAYER_NORM_EPS = 1e-6


def _square(value: Any, name: str) -> int:
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise ValueError(f"HF config {name}={value}: only square images/patches are supported.")
    value = value[0]
  return int(value)


def hf_model_config(config: Mapping[str, Any], kind: str) -> Dict[str, Any]:
  """Our model config from a transformers VideoMAEConfig (config.json dict)."""
  if config.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"HF config hidden_act={config['hidden_act']!r}; our models use the exact 'gelu'.")
  if config.get("num_channels", 3) != 3:
    raise ValueError("HF config num_channels must be 3.")
  eps = config.get("layer_norm_eps", 1e-12)
  if eps != OUR_LAYER_NORM_EPS:
    logger.warning("HF config layer_norm_eps=%g; our models use %g (the official VideoMAE V2 value).", eps,
                   OUR_LAYER_NORM_EPS)
  width = int(config["hidden_size"])
  model = dict(width=width, depth=int(config["num_hidden_layers"]), num_heads=int(config["num_attention_heads"]),
               mlp_dim=int(config["intermediate_size"]), patch_size=_square(config["patch_size"], "patch_size"),
               tubelet_size=int(config.get("tubelet_size", 2)), num_frames=int(config.get("num_frames", 16)),
               image_size=_square(config.get("image_size", 224), "image_size"))
  if kind == mapping.KIND_PRETRAIN:
    model.update(decoder_width=int(config["decoder_hidden_size"]),
                 decoder_depth=int(config["decoder_num_hidden_layers"]),
                 decoder_num_heads=int(config["decoder_num_attention_heads"]),
                 decoder_mlp_dim=int(config["decoder_intermediate_size"]), num_classes=0)
  else:
    labels = config.get("id2label") or {}
    model["num_classes"] = int(config.get("num_labels") or len(labels))
  model["variant"] = mapping.matching_variant(model, kind)
  return model


def read_hf(folder: str) -> Tuple[Dict[str, np.ndarray], str, Dict[str, Any]]:
  """(official-layout state dict, kind, model config) of a transformers save_pretrained folder."""
  config, state_dict = torch_io.read_hf_folder(folder)
  architectures = [a for a in config.get("architectures") or [] if a in HF_ARCHITECTURES]
  kind = HF_ARCHITECTURES[architectures[0]] if architectures else mapping.infer_hf_kind(state_dict)
  official = mapping.hf_to_official(state_dict, kind)
  if not config.get("qv_bias", config.get("qkv_bias", True)):  # no q/v biases: ours are then zero
    for key, value in list(official.items()):
      if key.endswith("attn.qkv.weight"):
        width = value.shape[1]
        for name in ("q_bias", "v_bias"):
          official.setdefault(key.replace("qkv.weight", name), np.zeros((width,), np.float32))
  return official, kind, hf_model_config(config, kind)


def read_official(path: str, **infer_kwargs) -> Tuple[Dict[str, np.ndarray], str, Dict[str, Any]]:
  """(official-layout state dict, kind, model config) of an official VideoMAE V2 checkpoint file."""
  raw = torch_io.load_torch_file(path)
  state_dict = torch_io.state_dict_to_numpy(mapping.unwrap_checkpoint(raw))
  if not state_dict:
    raise ValueError(f"{path} holds no tensors under 'model', 'module' or at the top level.")
  state_dict, kind = mapping.normalize_official_state_dict(state_dict)
  infer_kwargs = {k: v for k, v in infer_kwargs.items() if v is not None}
  return state_dict, kind, mapping.infer_model_config(state_dict, kind, what=path, **infer_kwargs)


def import_pytorch(input_path: str, *, variant: Optional[str] = None, num_heads: Optional[int] = None,
                   decoder_num_heads: Optional[int] = None, num_frames: Optional[int] = None,
                   image_size: Optional[int] = None) -> params_io.LoadedParams:
  """Reads a `.pth`/`.safetensors` file or an HF folder into our per-layer params (float32 numpy)."""
  if os.path.isdir(input_path):
    state_dict, kind, model_config = read_hf(input_path)
    flags = dict(variant=variant, num_heads=num_heads, decoder_num_heads=decoder_num_heads, num_frames=num_frames,
                 image_size=image_size)
    if any(v is not None for v in flags.values()):
      logger.warning("%s is an HF folder: its config.json fixes the model; ignoring %s.", input_path,
                     {k: v for k, v in flags.items() if v is not None})
  elif os.path.isfile(input_path):
    state_dict, kind, model_config = read_official(
        input_path, variant=variant, num_heads=num_heads, decoder_num_heads=decoder_num_heads,
        num_frames=num_frames, image_size=image_size)
  else:
    raise FileNotFoundError(f"{input_path} does not exist.")
  spec = model_spec_from_config(model_config)
  params = mapping.official_to_flax(state_dict, spec, kind, what=f"weights in {input_path}")
  return params_io.LoadedParams(params, kind, model_config, None, os.path.abspath(input_path))


def convert(input_path: str, output_dir: str, *, overwrite: bool = False, **kwargs) -> params_io.LoadedParams:
  """Imports `input_path` and writes the params export `output_dir`."""
  loaded = import_pytorch(input_path, **kwargs)
  params_io.save_params_export(output_dir, loaded.params, loaded.kind, loaded.model_config, overwrite=overwrite)
  return loaded
