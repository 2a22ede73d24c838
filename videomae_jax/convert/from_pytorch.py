"""Import PyTorch VideoMAE V2 weights (every published layout) into a params export.

  python -m videomae_jax.tools.from_pytorch --input=vit_b_k710_dl_from_giant.pth --output=exports/vit_b_k710
  python -m videomae_jax.tools.from_pytorch --input=hf_videomae_folder/ --output=exports/hf_b
  python -m videomae_jax.tools.from_pytorch --input=custom.pth --output=DIR --num_heads=8 --num_frames=8

The output (model.json + orbax params/) is what `config.init_from` and `to_pytorch --checkpoint` accept.

What is read (docs/upstream.md section 6 lists the published files):
  * official `.pth` / `.safetensors` files, fp32 or fp16, under `model` / `module` or bare: pretraining models
    (with decoder), fine-tuned and distilled classifiers, and encoders alone (a pretraining checkpoint's encoder, a
    backbone export); MMAction2's conversions (`backbone.` / `cls_head.` names, its saved position table checked
    to be the fixed one). Prefixes `_orig_mod.`, `module.`, `model.`, `backbone.` and, without a decoder,
    `encoder.` are removed. Dimensions come from the shapes; head counts from --num_heads / --decoder_num_heads,
    else --variant (any case), else the variant table by width; frames and image size (not in the weights) from
    --num_frames / --image_size (default 16 and 224).
  * HuggingFace hub VideoMAEv2 folders (`OpenGVLab/VideoMAEv2-*`: remote code, config.json with a nested
    `model_config`, `model.`-prefixed safetensors): the fine-tuning model, usually with 0 classes (an encoder).
  * transformers VideoMAE folders (4.x `q_bias` / `v_bias`, 5.x `query.bias` / `value.bias`):
    VideoMAEForPreTraining, VideoMAEForVideoClassification and the bare VideoMAEModel (an encoder).
Loading is safe: torch.load(weights_only=True) or safetensors, never arbitrary unpickling.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from videomae_jax.convert import mapping, params_io, torch_io
from videomae_jax.models.variants import model_spec_from_config

logger = logging.getLogger(__name__)

HF_ARCHITECTURES = {"VideoMAEForPreTraining": mapping.KIND_PRETRAIN,
                    "VideoMAEForVideoClassification": mapping.KIND_CLASSIFIER,
                    "VideoMAEModel": mapping.KIND_ENCODER}
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
  elif kind == mapping.KIND_CLASSIFIER:
    if not config.get("use_mean_pooling", True):
      raise ValueError("HF config use_mean_pooling=False: that classifier reads the first token, which ours "
                       "(and the official VideoMAE V2 fine-tuning model) never do.")
    labels = config.get("id2label") or {}
    model["num_classes"] = int(config.get("num_labels") or len(labels))
  else:  # the bare VideoMAEModel: a final layernorm only without mean pooling
    model.update(num_classes=0, pooled_norm="none" if config.get("use_mean_pooling", True) else "norm")
  model["variant"] = mapping.matching_variant(model, kind)
  return model


def read_hf(folder: str) -> Tuple[Dict[str, np.ndarray], str, Dict[str, Any]]:
  """(official-layout state dict, kind, model config) of a transformers save_pretrained folder."""
  config, state_dict = torch_io.read_hf_folder(folder)
  architectures = [a for a in config.get("architectures") or [] if a in HF_ARCHITECTURES]
  kind = HF_ARCHITECTURES[architectures[0]] if architectures else mapping.infer_hf_kind(state_dict)
  if kind == mapping.KIND_ENCODER:  # the bare model's keys have no `videomae.` prefix
    state_dict = {key if key.startswith("videomae.") else f"videomae.{key}": v for key, v in state_dict.items()}
  official = mapping.hf_to_official(state_dict, kind)
  if not config.get("qv_bias", config.get("qkv_bias", True)):  # no q/v biases: ours are then zero
    for key, value in list(official.items()):
      if key.endswith("attn.qkv.weight"):
        width = value.shape[1]
        for name in ("q_bias", "v_bias"):
          official.setdefault(key.replace("qkv.weight", name), np.zeros((width,), np.float32))
  return official, kind, hf_model_config(config, kind)


HUB_MODEL_TYPE = "VideoMAEv2_Base"  # what the hub's config.json says for every size


def hub_model_config(config: Mapping[str, Any], kind: str) -> Dict[str, Any]:
  """Our model config from a hub VideoMAEv2 config.json (its nested `model_config`: the official fine-tuning
  VisionTransformer's arguments)."""
  model_config = config["model_config"]
  required = {"use_learnable_pos_emb": False, "cos_attn": False, "in_chans": 3, "qkv_bias": True,
              "use_mean_pooling": True, "init_values": 0}  # init_values > 0 would be layer scale
  for key, value in required.items():
    if key in model_config and (model_config[key] or 0) != (value or 0):
      raise ValueError(f"hub model_config {key}={model_config[key]!r}: only {key}={value!r} (the released "
                       "VideoMAE V2 models) converts.")
  if model_config.get("layer_norm_eps", OUR_LAYER_NORM_EPS) != OUR_LAYER_NORM_EPS:
    logger.warning("hub model_config layer_norm_eps=%g; our models use %g.", model_config["layer_norm_eps"],
                   OUR_LAYER_NORM_EPS)
  width = int(model_config["embed_dim"])
  model = dict(width=width, depth=int(model_config["depth"]), num_heads=int(model_config["num_heads"]),
               mlp_dim=int(width * float(model_config["mlp_ratio"])),
               patch_size=_square(model_config["patch_size"], "patch_size"),
               tubelet_size=int(model_config.get("tubelet_size", 2)),
               num_frames=int(model_config.get("num_frames", 16)),
               image_size=_square(model_config.get("img_size", 224), "img_size"),
               num_classes=int(model_config.get("num_classes", 0) or 0))
  if kind == mapping.KIND_ENCODER:
    model["pooled_norm"] = "fc_norm"
  model["variant"] = mapping.matching_variant(model, kind)
  return model


def is_hub_folder(folder: str) -> bool:
  """A HuggingFace hub VideoMAEv2 (remote code) folder: its config.json nests the model's arguments."""
  path = os.path.join(folder, torch_io.HF_CONFIG)
  if not os.path.isfile(path):
    return False
  with open(path) as f:
    return "model_config" in json.load(f)


def read_hub(folder: str) -> Tuple[Dict[str, np.ndarray], str, Dict[str, Any], Dict[str, Any]]:
  """(official-layout state dict, kind, model config, config.json) of a hub VideoMAEv2 folder."""
  config, state_dict = torch_io.read_hf_folder(folder)
  state_dict, kind = mapping.normalize_official_state_dict(state_dict)
  return state_dict, kind, hub_model_config(config, kind), config


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
  hub_config = None
  if os.path.isdir(input_path) and is_hub_folder(input_path):
    state_dict, kind, model_config, hub_config = read_hub(input_path)
  elif os.path.isdir(input_path):
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
  return params_io.LoadedParams(params, kind, model_config, None, os.path.abspath(input_path), hub_config)


def convert(input_path: str, output_dir: str, *, overwrite: bool = False, **kwargs) -> params_io.LoadedParams:
  """Imports `input_path` and writes the params export `output_dir`."""
  loaded = import_pytorch(input_path, **kwargs)
  params_io.save_params_export(output_dir, loaded.params, loaded.kind, loaded.model_config, overwrite=overwrite,
                               hub_config=loaded.hub_config)
  return loaded
