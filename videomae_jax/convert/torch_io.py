"""The only place that touches torch, safetensors and transformers; each is imported when first needed.

Files are read safely: `torch.load(..., weights_only=True)` (no arbitrary unpickling) or safetensors.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
from typing import Any, Dict, Mapping, Tuple

import numpy as np

INSTALL_HINT = "Checkpoint conversion needs the optional PyTorch extra: pip install -e .[torch]"

HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_SAFETENSORS_INDEX = "model.safetensors.index.json"
HF_BIN = "pytorch_model.bin"


def require(module: str):
  """Imports `module` (torch, transformers, safetensors.torch) or fails with the install hint."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(f"{INSTALL_HINT} (could not import {module}: {e})") from e


def to_numpy(tensor: Any) -> np.ndarray:
  """torch tensor -> numpy, floating tensors as float32 (our params' dtype; exact for fp16/bf16/fp32 inputs)."""
  torch = require("torch")
  tensor = tensor.detach().cpu()
  if tensor.is_floating_point():
    tensor = tensor.to(torch.float32)
  return tensor.numpy()


def to_torch(array: np.ndarray):
  """numpy (including ml_dtypes bfloat16) -> contiguous CPU torch tensor of the same dtype."""
  torch = require("torch")
  array = np.asarray(array)
  if array.dtype.name == "bfloat16":
    return torch.from_numpy(np.ascontiguousarray(array.astype(np.float32))).to(torch.bfloat16)
  array = np.ascontiguousarray(array)
  if not array.flags.writeable:  # e.g. restored by orbax; torch.from_numpy wants writable memory
    array = array.copy()
  return torch.from_numpy(array)


def load_torch_file(path: str) -> Mapping[str, Any]:
  """A `.pth`/`.bin`/`.pt` file via `torch.load(weights_only=True)`, or a `.safetensors` file. Returns raw tensors.

  `argparse.Namespace` (the `args` entry the official training scripts save next to the weights) is the only
  class allowed beyond what weights_only accepts; any other pickled object makes loading fail with the list of
  what the file needs, rather than running arbitrary code.
  """
  torch = require("torch")
  kind = file_kind(path)
  if kind == "safetensors":  # whatever its name says
    try:
      return require("safetensors.torch").load_file(path, device="cpu")
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{path} is a safetensors file that cannot be read ({e}): it may be truncated; download "
                       "it again.") from e
  if kind == "unknown":
    raise ValueError(f"{path} is not a PyTorch or safetensors checkpoint (it starts with "
                     f"{_head(path)[:8]!r}): check the file name and download it again.")
  try:
    with torch.serialization.safe_globals([argparse.Namespace]):
      return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle.UnpicklingError, or RuntimeError wrapping it
    unsafe = "Unsupported global" in str(e) or "GLOBAL" in str(e)
    if not unsafe:
      first_line = (str(e).splitlines() or [""])[0][:200]
      raise ValueError(f"{path} looks like a PyTorch checkpoint but cannot be read ({type(e).__name__}: "
                       f"{first_line}): it is probably truncated or corrupt; download it again.") from e
    try:
      needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # pylint: disable=broad-except
      needed = "unknown"
    raise ValueError(
        f"{path} holds pickled objects other than tensors ({needed}), which are not loaded for safety. Re-save "
        "only the weights, e.g. torch.save({'model': checkpoint['model']}, 'weights.pth'), in a trusted "
        "environment.") from e


def _head(path: str, size: int = 16) -> bytes:
  with open(path, "rb") as f:
    return f.read(size)


def file_kind(path: str) -> str:
  """'empty' is an error; else what the bytes say: 'torch_zip' (torch.save since 1.6), 'torch_pickle' (older
  torch.save), 'safetensors' (8-byte header length, then a JSON header) or 'unknown'."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist.")
  if os.path.getsize(path) == 0:
    raise ValueError(f"{path} is empty (0 bytes): not a checkpoint; download it again.")
  head = _head(path)
  if head.startswith(b"PK\x03\x04"):
    return "torch_zip"
  if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5
    return "torch_pickle"
  if len(head) > 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < os.path.getsize(path):
    return "safetensors"
  return "unknown"


def state_dict_to_numpy(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  torch = require("torch")
  out = {}
  for key, value in state_dict.items():
    if isinstance(value, torch.Tensor):
      out[key] = to_numpy(value)
  return out


def save_pth(path: str, state_dict: Mapping[str, np.ndarray]) -> None:
  """torch.save({'model': state_dict}) as the official VideoMAE V2 scripts write it."""
  torch = require("torch")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  torch.save({"model": {key: to_torch(value) for key, value in state_dict.items()}}, path)


def save_safetensors(path: str, state_dict: Mapping[str, np.ndarray]) -> None:
  """A `.safetensors` file as transformers writes it (metadata format 'pt')."""
  require("safetensors.torch").save_file({key: to_torch(value) for key, value in state_dict.items()}, path,
                                          metadata={"format": "pt"})


def read_hf_folder(folder: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
  """(config.json dict, numpy state dict) of a `save_pretrained` folder (safetensors, sharded or not, or .bin)."""
  config_path = os.path.join(folder, HF_CONFIG)
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{folder} has no {HF_CONFIG}; expected a transformers save_pretrained folder.")
  with open(config_path) as f:
    config = json.load(f)
  single, index, binary = (os.path.join(folder, name) for name in (HF_SAFETENSORS, HF_SAFETENSORS_INDEX, HF_BIN))
  if os.path.isfile(single):
    files = [single]
  elif os.path.isfile(index):
    with open(index) as f:
      files = [os.path.join(folder, name) for name in sorted(set(json.load(f)["weight_map"].values()))]
  elif os.path.isfile(binary):
    files = [binary]
  else:
    raise FileNotFoundError(f"{folder} has none of {HF_SAFETENSORS}, {HF_SAFETENSORS_INDEX}, {HF_BIN}.")
  state_dict = {}
  for file in files:
    state_dict.update(state_dict_to_numpy(load_torch_file(file)))
  return config, state_dict
