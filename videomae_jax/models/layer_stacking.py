"""Convert between per-layer block parameters (`blocks/0`, `blocks/1`, ...) and scanned ones (`blocks/layers`).

A scanned model (config.model.scan_layers=True) stores each block leaf once with a leading layer axis; checkpoints
for PyTorch and the unscanned model need one subtree per layer. These functions walk the whole tree, so they apply
to the encoder and the decoder alike, and they are exact (pure stacking / slicing).
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

SCANNED_KEY = "layers"


def _is_per_layer(node: Mapping[str, Any]) -> bool:
  return bool(node) and all(key.isdigit() for key in node)


def stack_layers(params: Mapping[str, Any]) -> dict:
  """Per-layer -> scanned: every `{..., 'blocks': {'0': t0, '1': t1, ...}}` becomes `{'blocks': {'layers': t}}`."""
  out = {}
  for key, value in params.items():
    if isinstance(value, Mapping):
      if key == "blocks" and _is_per_layer(value):
        layers = [value[str(i)] for i in range(len(value))]
        out[key] = {SCANNED_KEY: jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *layers)}
      else:
        out[key] = stack_layers(value)
    else:
      out[key] = value
  return out


def unstack_layers(params: Mapping[str, Any]) -> dict:
  """Scanned -> per-layer: inverse of `stack_layers`."""
  out = {}
  for key, value in params.items():
    if isinstance(value, Mapping):
      if key == "blocks" and set(value) == {SCANNED_KEY}:
        stacked = value[SCANNED_KEY]
        depth = jax.tree.leaves(stacked)[0].shape[0]
        out[key] = {str(i): jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked) for i in range(depth)}
      else:
        out[key] = unstack_layers(value)
    else:
      out[key] = value
  return out


def is_scanned(params: Mapping[str, Any]) -> bool:
  """True if any `blocks` subtree in `params` is in the scanned layout."""
  for key, value in params.items():
    if isinstance(value, Mapping):
      if key == "blocks" and set(value) == {SCANNED_KEY}:
        return True
      if is_scanned(value):
        return True
  return False
