"""Kinetics label sets and the K710 merge (files in label_maps/, from OpenGVLab/VideoMAEv2 misc/, MIT).

K710 is the union of the K400, K600 and K700 classes with synonyms merged. A class name from any source maps to
a target label set ('k400' | 'k600' | 'k700' | 'k710', or a path to a file of names, one per line) by:
  1. the exact name in the target set;
  2. the same after normalizing (underscores to spaces, case, surrounding spaces), which handles folder names
     such as 'air_drumming';
  3. for K710, the synonym table k710_identical_label_merge.json (e.g. 'hugging' -> 'hugging (not baby)').
Exact names win over the synonym table: K710 keeps both 'throwing ball' and 'throwing ball (not baseball or
American football)', and label_710to400.json maps K400's 'throwing ball' to the former.

`k710_head_rows(target)` gives, for each class of K400/K600/K700, its K710 row: taking these rows of a K710
classifier head gives that set's head (as the official misc/label_710to400.json does for K400).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Sequence

import numpy as np

LABEL_MAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "label_maps")
LABEL_SETS = ("k400", "k600", "k700", "k710")


def _normalize(name: str) -> str:
  return " ".join(name.replace("_", " ").split()).lower()


@functools.lru_cache(maxsize=None)
def label_names(label_set: str) -> tuple[str, ...]:
  """Class names of a label set ('k400' ... 'k710' or a file path), index = position."""
  path = os.path.join(LABEL_MAP_DIR, f"label_map_{label_set}.txt") if label_set in LABEL_SETS else label_set
  if not os.path.exists(path):
    raise FileNotFoundError(f"Unknown label set {label_set!r}: use one of {LABEL_SETS} or a file of names.")
  with open(path, encoding="utf-8") as f:
    return tuple(line.strip() for line in f if line.strip())


@functools.lru_cache(maxsize=None)
def _synonyms() -> dict[str, str]:
  with open(os.path.join(LABEL_MAP_DIR, "k710_identical_label_merge.json"), encoding="utf-8") as f:
    return json.load(f)


@functools.lru_cache(maxsize=None)
def _indices(label_set: str) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
  """(exact name -> index, normalized name -> index, normalized synonym -> K710 name) of a label set."""
  names = label_names(label_set)
  synonyms = {_normalize(k): v for k, v in _synonyms().items()} if label_set == "k710" else {}
  return ({n: i for i, n in enumerate(names)}, {_normalize(n): i for i, n in enumerate(names)}, synonyms)


def label_index(name: str, label_set: str = "k710") -> int:
  """Index of class `name` (from any source) in `label_set`; raises KeyError if it has none."""
  exact, normalized, synonyms = _indices(label_set)
  if name in exact:
    return exact[name]
  if _normalize(name) in normalized:
    return normalized[_normalize(name)]
  target = synonyms.get(_normalize(name))
  if target is not None and target in exact:
    return exact[target]
  raise KeyError(f"Class {name!r} is not in label set {label_set!r} (nor a known synonym).")


def label_lookup(source_labels: Sequence[str], label_set: str) -> np.ndarray:
  """int32 [len(source_labels)]: source label index -> index in `label_set`. Raises listing unknown names."""
  lookup, unknown = [], []
  for name in source_labels:
    try:
      lookup.append(label_index(name, label_set))
    except KeyError:
      unknown.append(name)
      lookup.append(-1)
  if unknown:
    raise KeyError(f"{len(unknown)} class(es) have no index in {label_set!r}, e.g. {unknown[:5]}.")
  return np.asarray(lookup, np.int32)


def k710_head_rows(label_set: str) -> np.ndarray:
  """int32 [C]: row of the K710 head for each class of 'k400' | 'k600' | 'k700' (label_710to*.json)."""
  if label_set not in ("k400", "k600", "k700"):
    raise ValueError(f"k710_head_rows: label_set must be k400, k600 or k700, got {label_set!r}")
  with open(os.path.join(LABEL_MAP_DIR, f"label_710to{label_set[1:]}.json"), encoding="utf-8") as f:
    return np.asarray(json.load(f), np.int32)
