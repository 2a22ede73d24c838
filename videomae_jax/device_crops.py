"""Pretraining crops on the accelerator: MultiScaleCrop boxes drawn on the host, cut and resized in the train step.

Why: with 4 repeated augmentations the host would resize 4 x 16 = 64 frames per decoded clip. With OpenCV that is
~7 ms per 320p clip on one core, about 30% on top of decoding the clip (~24 ms), and it is the whole cost of the
pipeline beyond decoding (`python -m benchmarks.input_pipeline`). In the train step the same bilinear resampling
is two gathers and two lerps per view, at most ~200 MB of memory traffic per 320p clip (the float32 rows between
the passes dominate): an estimated ~60 us on an H100 at 3 TB/s, against ~1.5 ms of ViT-B train-step compute per
clip (4 views x 154 GFLOPs at 40% MFU) and ~15 ms for ViT-g. Not measured on an accelerator (none was available
to us yet); on the 2-core CPU it is ~20 ms per clip; on TPU, where gathers are slow, it is untested. So with `config.data.crop_on_device=True` (the pretraining default) a
grain worker decodes the clip straight into a fixed-size canvas, draws the R boxes with the same random sequence
the host path uses (videomae_jax.data.transforms.multiscale_crop_box, then the flip coin), and the batch carries

  video  uint8 [B / R, T, Hc, Wc, 3]   the decoded clips, top-left aligned in an Hc x Wc canvas, zero padded
  crops  int32 [B / R, R, 6]           per view: x, y, w, h (pixels, inside the clip's own upright frame), flip
                                       (0 / 1), transposed (0 / 1: the clip lies transposed in the canvas)

A clip whose orientation differs from the canvas's (a portrait video among landscape ones) is placed transposed,
so the canvas is the largest short side x the largest long side, not the largest height x the largest width
(one portrait 568x320 video among 320x640 ones made every clip ship in 568x640, 1.8x the area). The step turns
such clips upright before cutting: the batch is padded to a square canvas and each transposed clip swapped (one
select). That costs 1.5-2x the crops' time on the 2-core CPU (41-47 vs 21-28 ms per 320x428 clip), so it is
compiled in only where the data mix orientations (config.data.transpose_to_canvas, read from the shards by
videomae_jax.resolve). A lax.cond on "any clip transposed" cost 12 ms per clip on the CPU even when false (and
a host round trip for the predicate on GPUs); turning the finished views instead was 8x slower: XLA fused the
select into the gathers.

and `crop_resize` below turns that into the uint8 [B, T, S, S, 3] batch the host path would have produced (view r
of clip c at row c * R + r). It also moves fewer bytes to the device: one 320x428 clip is 6.6 MB, its four
224^2 crops 9.6 MB.

Resampling matches OpenCV's INTER_LINEAR, which the host path uses: sample centers at (i + 0.5) * scale - 0.5
inside the box, clamped to the box edges (the box is resized as if it were the whole image), no antialiasing.
OpenCV rounds its weights to 11 bits, this is float32: outputs differ by at most one gray level (tested).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Fields of one view's crop record.
CROP_FIELDS = ("x", "y", "w", "h", "flip", "transposed")


def _taps(offset: jax.Array, length: jax.Array, output_size: int):
  """Source indices (low, high) and the weight of `high` for each of `output_size` samples across one box side."""
  scale = length.astype(jnp.float32) / output_size
  position = (jnp.arange(output_size, dtype=jnp.float32) + 0.5) * scale - 0.5
  position = jnp.clip(position, 0.0, (length - 1).astype(jnp.float32))
  low = jnp.floor(position).astype(jnp.int32)
  high = jnp.minimum(low + 1, length - 1)
  return offset + low, offset + high, position - low.astype(jnp.float32)


def _crop_one(frames: jax.Array, crop: jax.Array, output_size: int) -> jax.Array:
  """uint8 [T, H, W, 3] (upright), int32 [6] -> uint8 [T, S, S, 3]."""
  x, y, w, h, flip = crop[0], crop[1], crop[2], crop[3], crop[4]
  top, bottom, wy = _taps(y, h, output_size)
  left, right, wx = _taps(x, w, output_size)
  # A flipped view is the resized box mirrored left-right: read the columns in reverse order.
  mirrored = flip > 0
  left, right, wx = (jnp.where(mirrored, v[::-1], v) for v in (left, right, wx))
  # Separable: whole rows first (contiguous reads), then columns of the S resampled rows. On the 2-core CPU this
  # is 4x faster than gathering the four corner pixels of every output pixel (20 vs 87 ms per 320p clip, 4 x 16
  # frames of 224^2); a dense-matrix (einsum) form was 16x slower there.
  wy = wy[None, :, None, None]
  rows = frames[:, top].astype(jnp.float32) * (1 - wy) + frames[:, bottom].astype(jnp.float32) * wy  # [T, S, W, 3]
  wx = wx[None, None, :, None]
  out = rows[:, :, left] * (1 - wx) + rows[:, :, right] * wx                                          # [T, S, S, 3]
  return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)


def crop_resize(canvas: jax.Array, crops: jax.Array, output_size: int, transposed_clips: bool = False) -> jax.Array:
  """uint8 [C, T, Hc, Wc, 3] clips and int32 [C, R, 6] boxes -> uint8 [C * R, T, S, S, 3] (S = output_size).

  Row c * R + r is view r of clip c, as in the host path. Jit-able; shapes are static (the boxes are data).
  transposed_clips (static): some clips may lie transposed in the canvas (their crops' `transposed` field).
  """
  if canvas.ndim != 5 or crops.ndim != 3 or crops.shape[-1] != len(CROP_FIELDS):
    raise ValueError(f"crop_resize wants canvas [C, T, H, W, 3] and crops [C, R, {len(CROP_FIELDS)}], got "
                     f"{canvas.shape} and {crops.shape}.")
  per_clip = jax.vmap(lambda frames, boxes: jax.vmap(lambda box: _crop_one(frames, box, output_size))(boxes))
  crops = crops.astype(jnp.int32)
  if transposed_clips:
    transposed = crops[:, 0, CROP_FIELDS.index("transposed"), None, None, None, None] > 0  # per clip
    side = max(canvas.shape[2:4])
    square = jnp.pad(canvas, ((0, 0), (0, 0), (0, side - canvas.shape[2]), (0, side - canvas.shape[3]), (0, 0)))
    canvas = jnp.where(transposed, square.swapaxes(2, 3), square)         # every clip upright
  views = per_clip(canvas, crops)                                         # [C, R, T, S, S, 3]
  return views.reshape((-1,) + views.shape[2:])
