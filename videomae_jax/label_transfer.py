r"""Progressive training's head transfer: cut a merged classifier head (K710) down to a target label set (K400 /
K600 / K700) by taking rows.

  python -m videomae_jax.tools.label_transfer --input=runs/vitg_k710 --label_map=label_710to400.json \
      --output=exports/vitg_k710_to_k400
writes a params export (videomae_jax.convert.params_io) whose head has len(label_map) classes; fine-tune from it
with config.init_from, or evaluate it directly. Inside a fine-tuning run the same happens on load when
config.head_label_map is set (videomae_jax.tasks.classify.ClassificationTask.adapt_loaded_params).

Label maps (videomae_jax/data/label_maps, from the official release): `label_710to400.json` is a list whose entry i
is the K710 index of K400 class i, so the K400 head is `head[label_map]` (PyTorch rows; the columns of our Dense
kernel [D, C]); 'k400' / 'k600' / 'k700' name those files. Merging the sources' labels into K710 for
post-pretraining is videomae_jax.data.label_maps (`label_lookup(names, 'k710')`).
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np


def load_label_map(path: str) -> np.ndarray:
  """Head rows (one per target class) -> int64 [C_target].

  `path`: a JSON list of source-row indices, or 'k400' / 'k600' / 'k700' for the official K710 -> target maps
  (videomae_jax.data.label_maps.k710_head_rows).
  """
  if path in ("k400", "k600", "k700"):
    from videomae_jax.data import label_maps
    return label_maps.k710_head_rows(path).astype(np.int64)
  with open(path) as f:
    values = json.load(f)
  array = np.asarray(values, np.int64)
  if array.ndim != 1 or array.size == 0 or np.any(array < 0):
    raise ValueError(f"{path} must hold a non-empty JSON list of non-negative class indices.")
  return array


def load_label_names(path: str) -> list:
  """One class name per line, line number = class index."""
  with open(path) as f:
    return [line.rstrip("\n") for line in f if line.strip()]


def select_head_rows(head: Mapping[str, Any], label_map: Sequence[int]) -> Dict[str, np.ndarray]:
  """{'kernel' [D, C_src], 'bias' [C_src]} -> the head of the target classes: kernel[:, map], bias[map]."""
  kernel = np.asarray(head["kernel"])
  bias = np.asarray(head["bias"])
  label_map = np.asarray(label_map, np.int64)
  if label_map.max() >= bias.shape[0]:
    raise ValueError(f"the label map points at class {int(label_map.max())} but the head has {bias.shape[0]} "
                     "classes; is it the right map for this checkpoint (e.g. label_710to400.json needs a "
                     "710-class head)?")
  return {"kernel": kernel[:, label_map], "bias": bias[label_map]}


def transfer_head(params: Mapping[str, Any], label_map: Sequence[int]) -> Dict[str, Any]:
  """Classifier params {'encoder', 'fc_norm', 'head'} -> the same with `head` re-indexed by `label_map`."""
  if "head" not in params:
    raise ValueError(f"params hold no classifier head (top-level keys {sorted(params)}).")
  out = dict(params)
  out["head"] = select_head_rows(params["head"], label_map)
  return out


def convert_checkpoint(input_path: str, label_map_path: str, output_dir: str, *, step: Optional[int] = None,
                       overwrite: bool = False) -> str:
  """Reads a classifier checkpoint / export, re-indexes its head and writes a params export."""
  from videomae_jax.convert import params_io
  loaded = params_io.load_params(input_path, step=step)
  if loaded.kind != "classifier":
    raise ValueError(f"{input_path} is a {loaded.kind} checkpoint; a head transfer needs a classifier.")
  label_map = load_label_map(label_map_path)
  params = transfer_head(loaded.params, label_map)
  if loaded.model_config is None:
    raise ValueError(f"{input_path} carries no model config (config.json / model.json); cannot write an export.")
  model_config = dict(loaded.model_config, num_classes=int(len(label_map)))
  return params_io.save_params_export(output_dir, params, "classifier", model_config, overwrite=overwrite)
