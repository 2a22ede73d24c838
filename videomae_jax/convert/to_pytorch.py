"""Export our params to PyTorch: the official `.pth` layout, a HuggingFace hub VideoMAEv2 folder or a transformers
folder, so a model trained here can be published where users look.

  python -m videomae_jax.tools.to_pytorch --workdir=DIR --format=videomaev2 --output=vit_b_pt.pth
  python -m videomae_jax.tools.to_pytorch --checkpoint=EXPORT_OR_CKPT_DIR --format=hf --output=hf_dir/

--workdir reads the latest step of a training run (or --step); --checkpoint takes a CheckpointManager dir, one step
dir or a params export (see params_io). Formats:
  videomaev2  torch.save({'model': state_dict}) with the official key names (pretraining model: encoder./decoder.
              keys; fine-tuned model and encoders: bare block keys plus fc_norm / head / norm).
  hub         the HuggingFace hub's VideoMAEv2 layout (`OpenGVLab/VideoMAEv2-*`): config.json with the model's
              arguments nested under `model_config`, model.safetensors with `model.`-prefixed keys of the
              fine-tuning model (encoder + fc_norm, and the head of a classifier). The remote code it names
              (modeling_videomaev2.py, modeling_config.py) is the hub repository's: copy it next to the files. A
              folder imported from the hub is written back with its own config.json.
  hf          a transformers `save_pretrained` folder (config.json + model.safetensors) for
              `VideoMAEForPreTraining`, `VideoMAEForVideoClassification` or, for an encoder pooled without
              fc_norm, the bare `VideoMAEModel`.

HF differences to know: transformers hard-codes LayerNorm eps 1e-5 in `fc_norm` and `decoder.norm` (ours and the
official model use 1e-6), so HF outputs differ from ours by about 1e-5 relative unless those two modules' `eps` is
set to 1e-6 after loading. A pretraining export sets `use_mean_pooling=False`, because that is how HF keeps the
encoder's final LayerNorm (`videomae.layernorm`); a classifier export sets it True (mean pool -> fc_norm).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

from videomae_jax.convert import mapping, params_io, torch_io
from videomae_jax.models import layer_stacking
from videomae_jax.models.variants import ModelSpec, model_spec_from_config


FORMATS = ("videomaev2", "hub", "hf")
HF_CLASSES = {mapping.KIND_PRETRAIN: "VideoMAEForPreTraining",
              mapping.KIND_CLASSIFIER: "VideoMAEForVideoClassification",
              mapping.KIND_ENCODER: "VideoMAEModel"}
HUB_CONFIG = {"architectures": ["VideoMAEv2"], "model_type": "VideoMAEv2_Base",
              "auto_map": {"AutoConfig": "modeling_config.VideoMAEv2Config",
                           "AutoModel": "modeling_videomaev2.VideoMAEv2"}}


def export_videomaev2(params: Mapping[str, Any], kind: str, output_path: str) -> Dict[str, np.ndarray]:
  """Writes the official VideoMAE V2 `.pth` (state dict under `model`); returns the numpy state dict written."""
  state_dict = mapping.flax_to_official(params, kind)
  torch_io.save_pth(output_path, state_dict)
  return state_dict


def hub_model_config(spec: ModelSpec, kind: str) -> Dict[str, Any]:
  """The official fine-tuning VisionTransformer's arguments for `spec` (the hub config.json's `model_config`)."""
  return dict(img_size=spec.image_size, patch_size=spec.patch_size, in_chans=3,
              num_classes=spec.num_classes if kind == mapping.KIND_CLASSIFIER else 0, embed_dim=spec.width,
              depth=spec.depth, num_heads=spec.num_heads, mlp_ratio=spec.mlp_dim / spec.width, qkv_bias=True,
              qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer="nn.LayerNorm",
              layer_norm_eps=spec.layer_norm_eps, init_values=0.0, use_learnable_pos_emb=False,
              tubelet_size=spec.tubelet_size, use_mean_pooling=True, with_cp=False, num_frames=spec.num_frames,
              cos_attn=False)


def export_hub(params: Mapping[str, Any], kind: str, spec: ModelSpec, output_dir: str,
               hub_config: Optional[Mapping[str, Any]] = None) -> Dict[str, np.ndarray]:
  """Writes a hub VideoMAEv2 folder (config.json + model.safetensors); returns the numpy state dict written.

  `hub_config` (the config.json a folder was imported from) is written back with its model_config fields set
  from `spec`, so a hub folder round-trips to the same file."""
  if kind == mapping.KIND_PRETRAIN or spec.pooled_norm != "fc_norm":
    raise ValueError("the hub layout holds the fine-tuning model (encoder + fc_norm [+ head]); this is a "
                     f"{mapping.describe(spec, kind)}. Export it with --format=videomaev2 or --format=hf.")
  if spec.pos_embed_grid is not None and tuple(spec.pos_embed_grid) != spec.grid:
    raise ValueError("the hub model builds the position table for its own grid; this model interpolates one.")
  config = dict(hub_config) if hub_config else dict(HUB_CONFIG)
  config["model_config"] = {**dict(config.get("model_config") or {}), **hub_model_config(spec, kind)}
  state_dict = {f"model.{key}": value for key, value in mapping.flax_to_official(params, kind).items()}
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, torch_io.HF_CONFIG), "w") as f:
    json.dump(config, f, indent=2)
  torch_io.save_safetensors(os.path.join(output_dir, torch_io.HF_SAFETENSORS), state_dict)
  return state_dict


def hf_config_kwargs(spec: ModelSpec, kind: str) -> Dict[str, Any]:
  """`VideoMAEConfig` fields for the model `spec` describes."""
  mapping.check_kind(kind)
  if spec.pos_embed_grid is not None and tuple(spec.pos_embed_grid) != spec.grid:
    raise ValueError(f"the model interpolates its position table from grid {spec.pos_embed_grid} to {spec.grid}; "
                     "HF VideoMAE always builds the table for its own grid, so it would compute something else.")
  kwargs = dict(
      hidden_size=spec.width, num_hidden_layers=spec.depth, num_attention_heads=spec.num_heads,
      intermediate_size=spec.mlp_dim, patch_size=spec.patch_size, tubelet_size=spec.tubelet_size,
      num_frames=spec.num_frames, image_size=spec.image_size, num_channels=3, qkv_bias=True,
      hidden_act="gelu",  # exact erf GELU in transformers, as in the official model
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=spec.layer_norm_eps,
      norm_pix_loss=True,
      # HF keeps the encoder's final norm (videomae.layernorm) only without mean pooling: the pretraining model
      # (and an encoder pooled with its norm) needs it, the classifier (mean pool -> fc_norm) must not have it.
      use_mean_pooling=spec.pooled_norm != "norm" if kind == mapping.KIND_ENCODER else
      kind == mapping.KIND_CLASSIFIER)
  if kind == mapping.KIND_PRETRAIN:
    kwargs.update(decoder_hidden_size=spec.decoder_width, decoder_num_hidden_layers=spec.decoder_depth,
                  decoder_num_attention_heads=spec.decoder_num_heads, decoder_intermediate_size=spec.decoder_mlp_dim)
  elif kind == mapping.KIND_CLASSIFIER:
    kwargs.update(num_labels=spec.num_classes)
  elif spec.pooled_norm == "fc_norm":
    raise ValueError("transformers' bare VideoMAEModel has no fc_norm; export this encoder with --format=hub (or "
                     "--format=videomaev2).")
  return kwargs


def export_hf(params: Mapping[str, Any], kind: str, spec: ModelSpec, output_dir: str) -> Dict[str, np.ndarray]:
  """Writes a transformers `save_pretrained` folder; returns the numpy HF state dict written.

  The expected names and shapes come from the installed transformers' own model class (built on the meta device,
  so nothing is allocated), so the folder loads with `from_pretrained` without missing or unexpected keys.
  """
  torch = torch_io.require("torch")
  transformers = torch_io.require("transformers")
  spec = mapping.model_spec_for_export(spec)
  if layer_stacking.is_scanned(params):
    params = layer_stacking.unstack_layers(params)
  mapping.check_flax_params(params, spec, kind, what="params")
  config = transformers.VideoMAEConfig(**hf_config_kwargs(spec, kind))
  model_class = getattr(transformers, HF_CLASSES[kind])
  config.architectures = [model_class.__name__]
  with torch.device("meta"):
    expected = {key: tuple(value.shape) for key, value in model_class(config).state_dict().items()}
  # transformers >= 5 has query.bias/value.bias; older versions kept the official q_bias/v_bias parameters.
  separate = any(key.endswith(mapping.HF_BIAS_NAMES_SEPARATE[0]) for key in expected)
  bias_names = mapping.HF_BIAS_NAMES_SEPARATE if separate else mapping.HF_BIAS_NAMES_PROJECTION
  state_dict = mapping.official_to_hf(mapping.flax_to_official(params, kind), kind, bias_names)
  if kind == mapping.KIND_ENCODER:  # the bare VideoMAEModel's keys carry no `videomae.` prefix
    state_dict = {key[len("videomae."):] if key.startswith("videomae.") else key: v for key, v in state_dict.items()}
  for key, shape in expected.items():  # a version with a key-projection bias: it is zero in our model
    if key.endswith("attention.attention.key.bias") and key not in state_dict:
      state_dict[key] = np.zeros(shape, np.float32)
  missing = [key for key in expected if key not in state_dict]
  unexpected = [key for key in state_dict if key not in expected]
  wrong = [(key, expected[key], tuple(value.shape)) for key, value in state_dict.items()
           if key in expected and tuple(value.shape) != expected[key]]
  if missing or unexpected or wrong:
    raise mapping.StateDictMismatchError(f"HF state dict for transformers {transformers.__version__} "
                                         f"{model_class.__name__}", missing, unexpected, wrong)
  os.makedirs(output_dir, exist_ok=True)
  config.save_pretrained(output_dir)
  torch_io.save_safetensors(os.path.join(output_dir, torch_io.HF_SAFETENSORS), state_dict)
  return state_dict


def resolve_model_config(loaded: params_io.LoadedParams, *, variant: Optional[str] = None,
                         num_heads: Optional[int] = None, decoder_num_heads: Optional[int] = None,
                         num_frames: Optional[int] = None, image_size: Optional[int] = None) -> Dict[str, Any]:
  """The checkpoint's own model config, else one read from the weights' shapes plus the given head counts/sizes."""
  if loaded.model_config is not None:
    return loaded.model_config
  return mapping.infer_model_config(mapping.flax_to_official(loaded.params, loaded.kind), loaded.kind,
                                    variant=variant, num_heads=num_heads, decoder_num_heads=decoder_num_heads,
                                    num_frames=num_frames or 16, image_size=image_size or 224,
                                    what=f"params from {loaded.path}")


def convert(source: str, output: str, fmt: str, *, step: Optional[int] = None, overwrite: bool = False,
            **config_overrides) -> params_io.LoadedParams:
  """Reads `source` (anything params_io.load_params accepts) and writes `output` in format `fmt`."""
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt!r}; use one of {FORMATS}.")
  loaded = params_io.load_params(source, step=step)
  params_io.prepare_output(output, overwrite=overwrite, folder=fmt != "videomaev2")
  model_config = resolve_model_config(loaded, **config_overrides)
  spec = mapping.model_spec_for_export(model_spec_from_config(model_config))
  mapping.check_flax_params(loaded.params, spec, loaded.kind, what=f"params from {loaded.path}")
  if fmt == "videomaev2":
    export_videomaev2(loaded.params, loaded.kind, output)
  elif fmt == "hub":
    export_hub(loaded.params, loaded.kind, spec, output, loaded.hub_config)
  else:
    export_hf(loaded.params, loaded.kind, spec, output)
  return loaded
