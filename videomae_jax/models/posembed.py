"""Fixed 1-D sinusoid position table of VideoMAE (not a parameter, never in checkpoints).

The table is laid out over the flattened (t, h, w) token index. By default a model builds the fixed table of its
own grid, whatever the grid its weights were trained on: that is what the official fine-tuning code does at another
image size (it only interpolates a `pos_embed` stored in the checkpoint, and official checkpoints store none; at
another frame count its interpolation step fails). As an option (config.model.pos_embed_grid = the training grid)
the training grid's table is resampled instead: bicubic in space (PyTorch `F.interpolate(mode='bicubic',
align_corners=False)`, a=-0.75) and linear in time.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """Interleaved table: angle = p / 10000^(2*(j//2)/dim); sin on even channels j, cos on odd. [N, dim] float32."""
  positions = np.arange(num_positions, dtype=np.float64)[:, None]
  channels = np.arange(dim)
  angles = positions / np.power(10000.0, 2 * (channels // 2) / dim)[None, :]
  table = np.where(channels % 2 == 0, np.sin(angles), np.cos(angles))
  return table.astype(np.float32)


def _cubic_weights(x: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys cubic kernel with PyTorch's a=-0.75, for offsets x in [0, 2)."""
  x = np.abs(x)
  return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                  np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))


def _resize_matrix(size_in: int, size_out: int, mode: str) -> np.ndarray:
  """[size_out, size_in] matrix equal to 1-D `F.interpolate(..., align_corners=False)` (border clamped)."""
  matrix = np.zeros((size_out, size_in), dtype=np.float64)
  if size_in == size_out:
    return np.eye(size_in)
  scale = size_in / size_out
  for out_index in range(size_out):
    src = (out_index + 0.5) * scale - 0.5
    if mode == "linear":
      src = max(src, 0.0)  # PyTorch clamps negative source coordinates for linear modes.
      low = int(np.floor(src))
      frac = src - low
      high = min(low + 1, size_in - 1)
      low = min(low, size_in - 1)
      matrix[out_index, low] += 1 - frac
      matrix[out_index, high] += frac
    elif mode == "cubic":
      low = int(np.floor(src))
      frac = src - low
      for tap in range(-1, 3):
        weight = _cubic_weights(np.array(tap - frac))
        matrix[out_index, min(max(low + tap, 0), size_in - 1)] += weight
    else:
      raise ValueError(f"unknown mode {mode!r}")
  return matrix


def interpolate_table(table: np.ndarray, grid_in: Tuple[int, int, int],
                      grid_out: Tuple[int, int, int]) -> np.ndarray:
  """Resamples a [T*H*W, D] table from grid_in to grid_out: bicubic over (h, w), then linear over t."""
  t_in, h_in, w_in = grid_in
  if table.shape[0] != t_in * h_in * w_in:
    raise ValueError(f"table has {table.shape[0]} rows but grid {grid_in} has {t_in * h_in * w_in} positions")
  volume = table.reshape(t_in, h_in, w_in, -1).astype(np.float64)
  t_out, h_out, w_out = grid_out
  volume = np.einsum("Hh,Ww,thwd->tHWd", _resize_matrix(h_in, h_out, "cubic"),
                     _resize_matrix(w_in, w_out, "cubic"), volume)
  volume = np.einsum("Tt,thwd->Thwd", _resize_matrix(t_in, t_out, "linear"), volume)
  return volume.reshape(t_out * h_out * w_out, -1).astype(np.float32)


@functools.lru_cache(maxsize=32)
def position_table(grid: Tuple[int, int, int], dim: int,
                   source_grid: Optional[Tuple[int, int, int]] = None) -> np.ndarray:
  """The [N, dim] table for `grid`, built on `source_grid` (default: `grid` itself) and resampled if needed."""
  source_grid = tuple(source_grid) if source_grid is not None else tuple(grid)
  table = sinusoid_table(int(np.prod(source_grid)), dim)
  if tuple(source_grid) != tuple(grid):
    table = interpolate_table(table, source_grid, tuple(grid))
  table.setflags(write=False)
  return table
