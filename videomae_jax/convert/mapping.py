"""Parameter names and layouts: our Flax tree <-> official VideoMAE V2 state dict <-> HuggingFace VideoMAE.

Pure numpy (the layouts: docs/upstream.md sections 5 and 6); torch is needed only to read and write files
(`from_pytorch`, `to_pytorch`).

The official layout is the hub of every conversion:

  Flax params  --flax_to_official-->  official state dict  --official_to_hf-->  HF state dict
               <--official_to_flax--                       <--hf_to_official--

Our module names follow the official ones, so a Flax path becomes an official key by joining it with dots, with
`kernel`/`scale` renamed to `weight` and the kernel transposed: Dense `[in, out]` -> Linear `[out, in]`, Conv
`[kT, kH, kW, I, O]` -> Conv3d `[O, I, kT, kH, kW]`. The fine-tuning model's keys carry no `encoder.` prefix.

Three kinds of parameter trees (docs/upstream.md section 6 lists the published files of each):
  pretrain    encoder (with its final norm) + encoder_to_decoder + mask_token + decoder
  classifier  encoder (no final norm) + fc_norm + head: the official fine-tuning model
  encoder     an encoder without decoder or head: with fc_norm (the hub's VideoMAEv2 encoders, the fine-tuning
              model with 0 classes), or with its final norm (a pretraining checkpoint's encoder, a backbone export),
              or with neither (transformers' bare VideoMAEModel with mean pooling). Its keys are the fine-tuning
              model's; ModelSpec.pooled_norm says which norm pools the features.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from videomae_jax.models import layer_stacking, posembed
from videomae_jax.models.variants import DECODER_DEPTH, VARIANTS, ModelSpec, variant_name

KIND_PRETRAIN = "pretrain"
KIND_CLASSIFIER = "classifier"
KIND_ENCODER = "encoder"
KINDS = (KIND_PRETRAIN, KIND_CLASSIFIER, KIND_ENCODER)

StateDict = Dict[str, np.ndarray]
FlaxPath = Tuple[str, ...]


class StateDictMismatchError(ValueError):
  """Weights that do not fit the model; lists every missing, unexpected and wrongly shaped key at once."""

  def __init__(self, what: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
               wrong_shapes: Iterable[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = (), hint: str = ""):
    self.missing = sorted(missing)
    self.unexpected = sorted(unexpected)
    self.wrong_shapes = sorted(wrong_shapes)
    lines = [f"{what} does not match the model:"]
    if self.missing:
      lines.append(f"  missing keys ({len(self.missing)}): {', '.join(self.missing)}")
    if self.unexpected:
      lines.append(f"  unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}")
    if self.wrong_shapes:
      shapes = ", ".join(f"{key} (expected {tuple(want)}, got {tuple(got)})" for key, want, got in self.wrong_shapes)
      lines.append(f"  wrong shapes ({len(self.wrong_shapes)}): {shapes}")
    if hint:
      lines.append(hint)
    super().__init__("\n".join(lines))


def check_kind(kind: str) -> str:
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r}; use one of {KINDS}.")
  return kind


def infer_kind(params: Mapping[str, Any]) -> str:
  """'pretrain' for a tree with a decoder, 'classifier' for one with a head, 'encoder' for an encoder alone."""
  if "decoder" in params:
    return KIND_PRETRAIN
  if "head" in params:
    return KIND_CLASSIFIER
  if "encoder" in params:
    return KIND_ENCODER
  raise ValueError(f"cannot tell the model from a parameter tree with top-level keys {sorted(params)}: expected "
                   "'decoder' (pretraining model), 'head' (classifier) or 'encoder'.")


def pooled_norm_of(params: Mapping[str, Any]) -> str:
  """ModelSpec.pooled_norm of an encoder or classifier tree: 'fc_norm', 'norm' (encoder/norm) or 'none'."""
  if "fc_norm" in params:
    return "fc_norm"
  return "norm" if "norm" in params.get("encoder", {}) else "none"


def encoder_params(params: Mapping[str, Any], kind: str) -> Dict[str, Any]:
  """The encoder-kind tree inside any kind: a classifier without its head, a pretraining model's encoder."""
  check_kind(kind)
  if kind == KIND_PRETRAIN:
    return {"encoder": params["encoder"]}
  return {key: value for key, value in params.items() if key != "head"}


# ----------------------------------------------------------------------------------------------------------------
# Flax <-> official VideoMAE V2
# ----------------------------------------------------------------------------------------------------------------

# How a Flax leaf is laid out in PyTorch.
IDENTITY, LINEAR, CONV3D = "identity", "linear", "conv3d"


def _to_torch_layout(array: np.ndarray, layout: str) -> np.ndarray:
  if layout == LINEAR:
    return np.ascontiguousarray(array.T)
  if layout == CONV3D:  # [kT, kH, kW, I, O] -> [O, I, kT, kH, kW]
    return np.ascontiguousarray(np.transpose(array, (4, 3, 0, 1, 2)))
  return array


def _from_torch_layout(array: np.ndarray, layout: str) -> np.ndarray:
  if layout == LINEAR:
    return np.ascontiguousarray(array.T)
  if layout == CONV3D:  # [O, I, kT, kH, kW] -> [kT, kH, kW, I, O]
    return np.ascontiguousarray(np.transpose(array, (2, 3, 4, 1, 0)))
  return array


def _torch_shape(flax_shape: Sequence[int], layout: str) -> Tuple[int, ...]:
  shape = tuple(int(s) for s in flax_shape)
  if layout == LINEAR:
    return shape[::-1]
  if layout == CONV3D:
    return (shape[4], shape[3], shape[0], shape[1], shape[2])
  return shape


def official_key(path: FlaxPath, kind: str) -> Tuple[str, str]:
  """Flax path -> (official state-dict key, layout). E.g. ('encoder', 'blocks', '0', 'attn', 'qkv', 'kernel') ->
  ('encoder.blocks.0.attn.qkv.weight', 'linear') for the pretraining model, 'blocks.0.attn.qkv.weight' for the
  classifier."""
  names = list(path)
  leaf, layout = names[-1], IDENTITY
  if leaf == "kernel":
    leaf, layout = "weight", (CONV3D if "patch_embed" in names else LINEAR)
  elif leaf == "scale":
    leaf = "weight"
  if kind != KIND_PRETRAIN and names[0] == "encoder":
    names = names[1:]
  return ".".join(names[:-1] + [leaf]), layout


def flax_to_official(params: Mapping[str, Any], kind: str) -> StateDict:
  """Our params (per-layer or scanned) -> official VideoMAE V2 state dict of numpy arrays. Exact (transposes only)."""
  check_kind(kind)
  if layer_stacking.is_scanned(params):
    params = layer_stacking.unstack_layers(params)
  state_dict = {}
  for path, value in traverse_util.flatten_dict(params).items():
    key, layout = official_key(path, kind)
    state_dict[key] = _to_torch_layout(np.asarray(value), layout)
  return state_dict


def model_spec_for_export(spec: ModelSpec) -> ModelSpec:
  """The spec with per-layer blocks and float32 params, whatever the training run used."""
  return dataclasses.replace(spec, scan_layers=False, remat_policy="none", compute_dtype="float32",
                             drop_path_rate=0.0)


def expected_param_shapes(spec: ModelSpec, kind: str) -> Dict[FlaxPath, Tuple[int, ...]]:
  """Flat {Flax path: shape} of the per-layer model `spec` describes, found with `jax.eval_shape` (no compute)."""
  from videomae_jax.models.classifier import VideoClassifier  # pylint: disable=g-import-not-at-top
  from videomae_jax.models.pretrain import VideoMAEPretrainModel  # pylint: disable=g-import-not-at-top

  check_kind(kind)
  spec = model_spec_for_export(spec)
  video = jax.ShapeDtypeStruct((1, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
  if kind == KIND_PRETRAIN:
    index = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    model = VideoMAEPretrainModel(spec)
    variables = jax.eval_shape(lambda v, e, d: model.init(jax.random.key(0), v, e, d), video, index, index)
  else:
    if kind == KIND_CLASSIFIER and spec.num_classes <= 0:
      raise ValueError("the classifier needs num_classes > 0 in its model config.")
    if kind == KIND_ENCODER:
      spec = dataclasses.replace(spec, num_classes=0)
    model = VideoClassifier(spec)
    variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), video)
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}


def describe(spec: ModelSpec, kind: str) -> str:
  model = {KIND_PRETRAIN: "pretraining model", KIND_ENCODER: f"encoder (features pooled with {spec.pooled_norm})",
           KIND_CLASSIFIER: f"classifier ({spec.num_classes} classes)"}[kind]
  text = (f"VideoMAE V2 {model}: width {spec.width}, depth {spec.depth}, {spec.num_heads} heads, MLP {spec.mlp_dim}, "
          f"patch {spec.patch_size}, tubelet {spec.tubelet_size}")
  if kind == KIND_PRETRAIN:
    text += (f", decoder width {spec.decoder_width}, depth {spec.decoder_depth}, {spec.decoder_num_heads} heads, "
             f"MLP {spec.decoder_mlp_dim}")
  return text


def check_flax_params(params: Mapping[str, Any], spec: ModelSpec, kind: str, what: str = "parameter tree") -> None:
  """Raises StateDictMismatchError (Flax path names) unless per-layer `params` has exactly the model's leaves."""
  expected = expected_param_shapes(spec, kind)
  actual = {path: tuple(np.shape(value)) for path, value in traverse_util.flatten_dict(params).items()}
  name = "/".join
  missing = [name(p) for p in expected if p not in actual]
  unexpected = [name(p) for p in actual if p not in expected]
  wrong = [(name(p), expected[p], actual[p]) for p in expected if p in actual and actual[p] != expected[p]]
  if missing or unexpected or wrong:
    raise StateDictMismatchError(f"{what} (for the {describe(spec, kind)})", missing, unexpected, wrong)


def official_to_flax(state_dict: Mapping[str, np.ndarray], spec: ModelSpec, kind: str,
                     what: str = "state dict") -> Dict[str, Any]:
  """Official VideoMAE V2 state dict -> our per-layer params (float32 numpy) for the model `spec` describes.

  Raises StateDictMismatchError listing every missing, unexpected and wrongly shaped key.
  """
  expected = expected_param_shapes(spec, kind)
  missing, wrong, flat = [], [], {}
  consumed, not_float = set(), []
  for path, flax_shape in expected.items():
    key, layout = official_key(path, kind)
    want = _torch_shape(flax_shape, layout)
    if key not in state_dict:
      missing.append(key)
      continue
    consumed.add(key)
    value = np.asarray(state_dict[key])
    if tuple(value.shape) != want:
      wrong.append((key, want, tuple(value.shape)))
      continue
    if not np.issubdtype(value.dtype, np.floating):  # an integer weight would be cast silently
      not_float.append(f"{key} ({value.dtype})")
      continue
    flat[path] = _from_torch_layout(value, layout).astype(np.float32)
  if not_float:
    raise ValueError(f"{what}: weights must be floating point, and {len(not_float)} are not: "
                     f"{', '.join(not_float[:5])}. The file is not a model checkpoint of this kind, or was "
                     "written wrongly.")
  unexpected = [key for key in state_dict if key not in consumed]
  if missing or unexpected or wrong:
    raise StateDictMismatchError(f"{what} (for the {describe(spec, kind)})", missing, unexpected, wrong)
  return traverse_util.unflatten_dict(flat)


# ----------------------------------------------------------------------------------------------------------------
# Official release files: unwrapping, prefixes, kind and dimensions
# ----------------------------------------------------------------------------------------------------------------

_WRAPPER_KEYS = ("model", "module", "state_dict")
_POS_EMBED_KEYS = ("pos_embed", "encoder.pos_embed", "decoder.pos_embed")


def unwrap_checkpoint(obj: Any) -> Mapping[str, Any]:
  """The state dict inside an official checkpoint file: under `model`, `module` (or `state_dict`), or bare."""
  if not isinstance(obj, Mapping):
    raise ValueError(f"expected a checkpoint dict, got {type(obj).__name__}")
  for key in _WRAPPER_KEYS:
    if isinstance(obj.get(key), Mapping):
      return obj[key]
  return obj


def _strip_prefix(key: str, prefix: str) -> str:
  return key[len(prefix):] if key.startswith(prefix) else key


# MMAction2's VideoMAE / VideoMAE V2 conversions name a few modules differently (its FFN and PatchEmbed, its head).
_MMACTION2_RENAMES = (("patch_embed.projection.", "patch_embed.proj."), (".mlp.layers.0.0.", ".mlp.fc1."),
                      (".mlp.layers.1.", ".mlp.fc2."), ("cls_head.fc_cls.", "head."))


def normalize_official_state_dict(state_dict: Mapping[str, np.ndarray]) -> Tuple[StateDict, str]:
  """Strips wrapper prefixes, renames MMAction2's modules and tells the kind: (official-layout state dict, kind).

  `_orig_mod.` (torch.compile), a leading `module.` (DistributedDataParallel), `model.` (the HuggingFace hub's
  remote-code VideoMAEv2 wrapper) and `backbone.` (MMAction2, detection backbones) are removed. A state dict with
  decoder keys is a pretraining model; one with `head` a classifier; otherwise an encoder. An `encoder.` prefix is
  removed from the latter two (a pretraining checkpoint's encoder, fine-tuning weights saved from a wrapper). Saved
  position tables (MMAction2 keeps its sinusoid as a buffer) are dropped after checking that they are the fixed
  table: learned or interpolated ones cannot be represented by our models.
  """
  cleaned = {}
  for key, value in state_dict.items():
    new = key.replace("_orig_mod.", "")
    for prefix in ("module.", "model.", "backbone."):
      new = _strip_prefix(new, prefix)
    for old, replacement in _MMACTION2_RENAMES:
      new = new.replace(old, replacement) if old.startswith(".") else (
          replacement + new[len(old):] if new.startswith(old) else new)
    if new in cleaned:
      raise ValueError(f"two keys map to {new!r} after removing prefixes (one was {key!r}).")
    cleaned[new] = value
  kind = KIND_ENCODER
  if any(k.startswith(("decoder.", "encoder_to_decoder.")) or k == "mask_token" for k in cleaned):
    kind = KIND_PRETRAIN
  else:
    cleaned = {_strip_prefix(k, "encoder."): v for k, v in cleaned.items()}
    if "head.weight" in cleaned:
      kind = KIND_CLASSIFIER
  for key in _POS_EMBED_KEYS:
    if key in cleaned:
      _check_fixed_pos_embed(key, np.asarray(cleaned.pop(key)))
  return cleaned, kind


def _check_fixed_pos_embed(key: str, table: np.ndarray) -> None:
  table = table.reshape(-1, table.shape[-1]).astype(np.float32)
  fixed = posembed.sinusoid_table(table.shape[0], table.shape[1])
  if not np.allclose(table, fixed, atol=1e-4):
    raise ValueError(f"{key} is not the fixed sinusoid table; learned or interpolated position embeddings are not "
                     "supported (our models rebuild the fixed table from num_frames and image_size).")


def _block_indices(state_dict: Mapping[str, Any], prefix: str) -> List[int]:
  pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
  return sorted({int(m.group(1)) for m in map(pattern.match, state_dict) if m})


def _need(state_dict: Mapping[str, np.ndarray], keys: Sequence[str], what: str) -> None:
  missing = [k for k in keys if k not in state_dict]
  if missing:
    hint = f"  keys present start with: {sorted({k.split('.')[0] for k in state_dict})}"
    raise StateDictMismatchError(f"{what} (reading the model's dimensions)", missing=missing, hint=hint)


def _heads_for_width(width: int, attribute: str, width_attribute: str) -> Optional[int]:
  heads = {getattr(v, attribute) for v in VARIANTS.values() if getattr(v, width_attribute) == width}
  return heads.pop() if len(heads) == 1 else None


def infer_model_config(state_dict: Mapping[str, np.ndarray], kind: str, *, variant: Optional[str] = None,
                       num_heads: Optional[int] = None, decoder_num_heads: Optional[int] = None,
                       num_frames: int = 16, image_size: int = 224, what: str = "state dict") -> Dict[str, Any]:
  """Model config (the `config.model` fields that fix the architecture) of an official-layout state dict.

  Widths, depths, MLP sizes, patch and tubelet come from the shapes. Head counts are not in the weights: they come
  from `num_heads` / `decoder_num_heads`, else from `variant`, else from the variant table by width (S 384/6,
  B 768/12, L 1024/16, H 1280/16, g 1408/16; decoders 192/3, 384/6, 512/8). Frames and image size are not in the
  weights either (the position table is fixed), so they are arguments.
  """
  check_kind(kind)
  prefix = "encoder." if kind == KIND_PRETRAIN else ""
  embed_key, fc1_key = f"{prefix}patch_embed.proj.weight", f"{prefix}blocks.0.mlp.fc1.weight"
  needed = [embed_key, fc1_key]
  needed += {KIND_PRETRAIN: ["encoder_to_decoder.weight", "decoder.blocks.0.mlp.fc1.weight"],
             KIND_CLASSIFIER: ["head.weight", "fc_norm.weight"], KIND_ENCODER: []}[kind]
  _need(state_dict, needed, what)
  embed = np.shape(state_dict[embed_key])
  if len(embed) != 5 or embed[3] != embed[4] or embed[1] != 3:
    raise ValueError(f"{embed_key} has shape {tuple(embed)}; expected [width, 3, tubelet, P, P].")
  width, tubelet, patch = int(embed[0]), int(embed[2]), int(embed[3])
  config = dict(width=width, depth=len(_block_indices(state_dict, f"{prefix}blocks.")),
                mlp_dim=int(np.shape(state_dict[fc1_key])[0]), patch_size=patch, tubelet_size=tubelet,
                num_frames=int(num_frames), image_size=int(image_size))
  base = None
  if variant is not None:
    base = VARIANTS.get(variant_name(variant))  # None for 'custom'
    if base is not None and base.width != width:
      raise ValueError(f"variant {variant!r} has width {base.width} but the weights have width {width}.")
  heads = num_heads or (base.num_heads if base else _heads_for_width(width, "num_heads", "width"))
  if not heads:
    raise ValueError(f"cannot tell the number of attention heads for width {width}; pass --num_heads.")
  config["num_heads"] = int(heads)
  if kind == KIND_PRETRAIN:
    decoder_width = int(np.shape(state_dict["encoder_to_decoder.weight"])[0])
    decoder_heads = decoder_num_heads or (
        base.decoder_num_heads if base and base.decoder_width == decoder_width else
        _heads_for_width(decoder_width, "decoder_num_heads", "decoder_width"))
    if not decoder_heads:
      raise ValueError(f"cannot tell the decoder's number of attention heads for width {decoder_width}; "
                       "pass --decoder_num_heads.")
    config.update(decoder_width=decoder_width, decoder_depth=len(_block_indices(state_dict, "decoder.blocks.")),
                  decoder_num_heads=int(decoder_heads),
                  decoder_mlp_dim=int(np.shape(state_dict["decoder.blocks.0.mlp.fc1.weight"])[0]),
                  num_classes=0)
  elif kind == KIND_CLASSIFIER:
    config["num_classes"] = int(np.shape(state_dict["head.weight"])[0])
  else:
    config.update(num_classes=0, pooled_norm="fc_norm" if "fc_norm.weight" in state_dict else
                  "norm" if "norm.weight" in state_dict else "none")
  config["variant"] = matching_variant(config, kind)
  return config


def matching_variant(config: Mapping[str, Any], kind: str) -> str:
  """The VARIANTS name whose dimensions equal `config`'s, or 'custom'."""
  for name, v in VARIANTS.items():
    same = (v.width, v.depth, v.num_heads, v.mlp_dim, v.patch_size) == (
        config["width"], config["depth"], config["num_heads"], config["mlp_dim"], config["patch_size"])
    if same and kind == KIND_PRETRAIN:
      same = (v.decoder_width, v.decoder_num_heads, DECODER_DEPTH) == (
          config["decoder_width"], config["decoder_num_heads"], config["decoder_depth"])
    if same:
      return name
  return "custom"


# ----------------------------------------------------------------------------------------------------------------
# Official <-> HuggingFace transformers VideoMAE
# ----------------------------------------------------------------------------------------------------------------

# (official prefix, HF prefix) per kind; block keys get the per-block renames below.
_HF_PREFIXES = {
    KIND_PRETRAIN: (("encoder.patch_embed.proj.", "videomae.embeddings.patch_embeddings.projection."),
                    ("encoder.blocks.", "videomae.encoder.layer."),
                    # HF keeps the encoder's final norm only with use_mean_pooling=False (see to_pytorch.hf_config).
                    ("encoder.norm.", "videomae.layernorm."),
                    ("decoder.blocks.", "decoder.decoder_layers."),
                    ("decoder.norm.", "decoder.norm."),
                    ("decoder.head.", "decoder.head."),
                    ("encoder_to_decoder.", "encoder_to_decoder."),
                    ("mask_token", "mask_token")),
    KIND_CLASSIFIER: (("patch_embed.proj.", "videomae.embeddings.patch_embeddings.projection."),
                      ("blocks.", "videomae.encoder.layer."),
                      ("fc_norm.", "fc_norm."),
                      ("head.", "classifier.")),
    # The bare VideoMAEModel (its keys without the `videomae.` prefix; from_pytorch / to_pytorch add and drop it).
    KIND_ENCODER: (("patch_embed.proj.", "videomae.embeddings.patch_embeddings.projection."),
                   ("blocks.", "videomae.encoder.layer."),
                   ("norm.", "videomae.layernorm."),
                   ("fc_norm.", "fc_norm.")),
}
_HF_BLOCK = (("norm1.", "layernorm_before."), ("norm2.", "layernorm_after."),
             ("attn.proj.", "attention.output.dense."), ("mlp.fc1.", "intermediate.dense."),
             ("mlp.fc2.", "output.dense."))
_HF_QKV = ("attention.attention.query.weight", "attention.attention.key.weight", "attention.attention.value.weight")
# transformers >= 5 names the q/v biases as ordinary projection biases (and has no key bias); older versions keep
# the official `q_bias` / `v_bias` parameters. `hf_bias_names` picks one.
HF_BIAS_NAMES_PROJECTION = ("attention.attention.query.bias", "attention.attention.value.bias")
HF_BIAS_NAMES_SEPARATE = ("attention.attention.q_bias", "attention.attention.v_bias")


def _rename(key: str, pairs: Sequence[Tuple[str, str]], reverse: bool = False) -> Optional[str]:
  for official, hf in pairs:
    source, target = (hf, official) if reverse else (official, hf)
    if key.startswith(source):
      return target + key[len(source):]
  return None


def official_to_hf(state_dict: Mapping[str, np.ndarray], kind: str,
                   bias_names: Tuple[str, str] = HF_BIAS_NAMES_PROJECTION) -> StateDict:
  """Official state dict -> HF VideoMAE names. The fused qkv weight is split by rows into query/key/value."""
  check_kind(kind)
  block_prefixes = [pair for pair in _HF_PREFIXES[kind] if pair[0].endswith("blocks.")]
  out = {}
  for key, value in state_dict.items():
    block = next(((o, h) for o, h in block_prefixes if key.startswith(o)), None)
    if block is None:
      new = _rename(key, _HF_PREFIXES[kind])
      out[new if new is not None else key] = value
      continue
    index, rest = key[len(block[0]):].split(".", 1)
    head = f"{block[1]}{index}."
    if rest == "attn.qkv.weight":
      for name, part in zip(_HF_QKV, np.split(np.asarray(value), 3, axis=0)):
        out[head + name] = np.ascontiguousarray(part)
    elif rest in ("attn.q_bias", "attn.v_bias"):
      out[head + bias_names[rest == "attn.v_bias"]] = value
    else:
      new = _rename(rest, _HF_BLOCK)
      out[head + (new if new is not None else rest)] = value
  return out


def hf_to_official(state_dict: Mapping[str, np.ndarray], kind: str) -> StateDict:
  """HF VideoMAE state dict -> official names; inverse of `official_to_hf` for either bias naming.

  A key-projection bias, if a checkpoint has one, is dropped: it adds q.b_k to every logit of a query row, which
  softmax ignores, so the official model (no key bias) computes the same function. Keys that have no official
  counterpart keep their HF names, so they show up as unexpected keys.
  """
  check_kind(kind)
  block_prefixes = [pair for pair in _HF_PREFIXES[kind] if pair[0].endswith("blocks.")]
  separate = dict(zip(HF_BIAS_NAMES_SEPARATE, HF_BIAS_NAMES_PROJECTION))
  out, qkv_parts = {}, {}
  for key, value in state_dict.items():
    block = next(((o, h) for o, h in block_prefixes if key.startswith(h)), None)
    if block is None:
      new = _rename(key, _HF_PREFIXES[kind], reverse=True)
      out[new if new is not None else key] = value
      continue
    index, rest = key[len(block[1]):].split(".", 1)
    head = f"{block[0]}{index}."
    rest = separate.get(rest, rest)
    if rest in _HF_QKV:
      qkv_parts.setdefault(head, {})[rest] = (key, value)
    elif rest == "attention.attention.key.bias":
      continue
    elif rest in HF_BIAS_NAMES_PROJECTION:
      out[head + ("attn.q_bias" if rest == HF_BIAS_NAMES_PROJECTION[0] else "attn.v_bias")] = value
    else:
      new = _rename(rest, _HF_BLOCK, reverse=True)
      out[head + new if new is not None else key] = value
  for head, parts in qkv_parts.items():
    if len(parts) == 3:
      out[head + "attn.qkv.weight"] = np.concatenate([np.asarray(parts[name][1]) for name in _HF_QKV], axis=0)
    else:  # incomplete: keep what is there under its HF name; the fused key will be reported missing
      out.update({key: value for key, value in parts.values()})
  return out


def infer_hf_kind(state_dict: Mapping[str, Any]) -> str:
  """VideoMAEForPreTraining (a decoder), VideoMAEForVideoClassification (a classifier) or the bare VideoMAEModel."""
  if any(k.startswith("decoder.") or k == "mask_token" for k in state_dict):
    return KIND_PRETRAIN
  if any(k.startswith("classifier.") for k in state_dict):
    return KIND_CLASSIFIER
  return KIND_ENCODER
