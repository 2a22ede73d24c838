r"""Draws what the masking does to one video: frames, motion scores, encoder tokens, decoder targets, reconstruction.

The library behind `python -m videomae_jax.tools.visualize` and the trainer's {workdir}/reconstruction.png.
One column per tubelet (its first frame). Rows: the frames; the motion score heat map (the model's own patch
embedding, random init without a checkpoint; camera-compensated when config.masking.camera_motion_compensation);
the tokens the encoder sees; the decoder's targets (red: loss tokens, blue: decoder-kept but visible, no loss);
with a checkpoint, the reconstruction (visible patches as given, predicted patches un-normalized with each
tubelet's own mean and std, the rest dark). The clip is what the evaluation pipeline makes of the file (one
centred view, videomae_jax.data.pipeline.test_views), so pictures and tests see videos the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from videomae_jax import masking, objective
from videomae_jax.convert import params_io
from videomae_jax.data import pipeline, shards
from videomae_jax.models.pretrain import VideoMAEPretrainModel
from videomae_jax.models.variants import model_spec_from_config
from videomae_jax.normalization import denormalize, normalize

LABEL_WIDTH = 150
MIN_CELL = 128


def load_clip(path: str, config: Any, stride: int = 0) -> np.ndarray:
  """uint8 [1, T, S, S, 3]: the centred view of a video file, as the test pipeline makes it. stride 0 spreads the
  frames over the whole video (segment sampling); stride > 0 takes a centred window of frames `stride` apart."""
  record = shards.video_file_record(path, source_name="picture", short_side=0)
  view_config = config.copy_and_resolve_references()
  with view_config.unlocked():
    view_config.eval.update(dict(num_clips=1, num_crops=1, short_side=0, stride=max(stride, 1),
                                 sampling="uniform" if stride > 0 else "segment"))
  return pipeline.test_views(record, view_config)


_HEAT_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float32)


def heat_colors(values: np.ndarray) -> np.ndarray:
  """Values in [0, 1] -> RGB float in [0, 255] (an inferno-like ramp)."""
  position = np.clip(values, 0, 1) * (len(_HEAT_ANCHORS) - 1)
  low = np.floor(position).astype(int).clip(0, len(_HEAT_ANCHORS) - 2)
  fraction = (position - low)[..., None]
  return _HEAT_ANCHORS[low] * (1 - fraction) + _HEAT_ANCHORS[low + 1] * fraction


def _token_map(values: np.ndarray, grid, patch_size: int) -> np.ndarray:
  """[N] per-token values -> [T', H, W] pixel map (each token's value on its patch)."""
  time, height, width = grid
  return np.kron(values.reshape(time, height, width), np.ones((1, patch_size, patch_size), values.dtype))


def render_rows(frames: np.ndarray, scores: np.ndarray, visible: np.ndarray, loss: np.ndarray,
                kept_visible: np.ndarray, grid, patch_size: int, reconstruction=None):
  """frames [T', S, S, 3] float in [0, 1] (one per tubelet); token arrays [N]. Returns [(label, [T', S, S, 3])]."""
  gray = frames.mean(-1, keepdims=True) * 0.35 + 0.1
  heat = _token_map(scores / max(float(scores.max()), 1e-12), grid, patch_size)
  heat_rgb = heat_colors(heat) / 255.0
  visible_map = _token_map(visible.astype(np.float32), grid, patch_size)[..., None]
  loss_map = _token_map(loss.astype(np.float32), grid, patch_size)[..., None]
  kept_visible_map = _token_map(kept_visible.astype(np.float32), grid, patch_size)[..., None]
  red, blue = np.array([1.0, 0.1, 0.1]), np.array([0.2, 0.4, 1.0])
  targets = gray * (1 - loss_map - kept_visible_map)
  targets = targets + loss_map * (0.45 * frames + 0.55 * red) + kept_visible_map * (0.45 * frames + 0.55 * blue)
  targets_label = "decoder targets\nred: loss" + ("\nblue: seen, no loss" if kept_visible.any() else "")
  rows = [("frames", frames),
          (f"motion score\n0 .. {float(scores.max()):.3g}", 0.35 * frames + 0.65 * heat_rgb),
          ("encoder input", visible_map * frames + (1 - visible_map) * gray),
          (targets_label, targets)]
  if reconstruction is not None:
    rows.append(("reconstruction", reconstruction))
  return rows


def draw_grid(rows, title: str, cell: int) -> Image.Image:
  """Lays out rows of equally sized images with a label column and a title line."""
  columns = len(rows[0][1])
  title_height = 22 * (title.count("\n") + 1)
  canvas = Image.new("RGB", (LABEL_WIDTH + columns * (cell + 4), title_height + len(rows) * (cell + 4)),
                     (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  draw.multiline_text((4, 4), title, fill=(0, 0, 0))
  for r, (label, images) in enumerate(rows):
    top = title_height + r * (cell + 4)
    draw.multiline_text((4, top + 4), label, fill=(0, 0, 0))
    if label.startswith("motion score"):  # the heat map's scale: 0 on the left, the clip's largest score right
      ramp = heat_colors(np.linspace(0, 1, LABEL_WIDTH - 16))[None].repeat(10, axis=0)
      canvas.paste(Image.fromarray(ramp.round().astype(np.uint8)), (4, top + min(40, cell - 10)))
    for c, image in enumerate(images):
      pixels = (np.clip(np.asarray(image), 0, 1) * 255).round().astype(np.uint8)
      tile = Image.fromarray(pixels).resize((cell, cell), Image.NEAREST)
      canvas.paste(tile, (LABEL_WIDTH + c * (cell + 4), top))
  return canvas


def picture_arrays(model: VideoMAEPretrainModel, plan: masking.MaskingPlan, spec, variables: Any, video: jax.Array,
                   key: jax.Array, normalized_targets: bool, reconstruct: bool = True) -> Dict[str, jax.Array]:
  """What the picture shows of the first clip of `video` (normalized [B, T, S, S, 3]), jit-able: its pixels, motion
  scores, masks and (with `reconstruct`) the predicted pixels. The masks are drawn for the whole batch from `key`,
  so clip 0 gets the masks it gets in a loss computed with the same key (videomae_jax.evaluators.reconstruction)."""
  embed_fn = lambda clip: model.apply(variables, clip, method=VideoMAEPretrainModel.patch_embeddings)
  scores = masking.clip_motion_scores(plan, video, embed_fn, spec)
  masks = masking.sample_masks(plan, key, video.shape[0], scores if plan.needs_motion_scores else None)
  masks = jax.tree.map(lambda x: x[:1], masks)
  first = video[:1]
  out = {"pixels": denormalize(first)[0], "scores": scores[0], "encoder_indices": masks.encoder_indices[0],
         "decoder_indices": masks.decoder_indices[0], "loss_mask": masks.loss_mask[0]}
  if reconstruct:
    predictions = model.apply(variables, first, masks.encoder_indices, masks.decoder_indices)
    out["predicted"] = objective.predictions_to_pixels(predictions, first, masks.decoder_indices, spec,
                                                       normalized_targets)[0]
  return out


def render_picture(arrays: Dict[str, Any], spec, title: str) -> Image.Image:
  """The picture (videomae_jax.visualization's rows) from `picture_arrays`' output, on the host."""
  arrays = {key: np.asarray(value) for key, value in arrays.items()}
  num_tokens = int(np.prod(spec.grid))
  encoder_indices, decoder_indices = arrays["encoder_indices"], arrays["decoder_indices"]
  loss_mask = arrays["loss_mask"] > 0
  visible = np.zeros(num_tokens, bool)
  visible[encoder_indices] = True
  loss = np.zeros(num_tokens, bool)
  loss[decoder_indices[loss_mask]] = True
  kept_visible = np.zeros(num_tokens, bool)
  kept_visible[decoder_indices[~loss_mask]] = True
  pixels = arrays["pixels"]                                         # [T, S, S, 3]
  reconstruction = None
  if "predicted" in arrays:
    tokens = np.asarray(objective.patchify(jnp.asarray(pixels)[None], spec))[0].copy()   # [N, ts*P*P, 3]
    shown = np.where(visible[:, None, None], tokens, 0.15)
    shown[decoder_indices] = np.where(loss_mask[:, None, None], arrays["predicted"], shown[decoder_indices])
    reconstruction = np.asarray(objective.unpatchify(jnp.asarray(shown)[None], spec))[0][::spec.tubelet_size]
  rows = render_rows(pixels[::spec.tubelet_size], arrays["scores"], visible, loss, kept_visible, spec.grid,
                     spec.patch_size, reconstruction)
  return draw_grid(rows, title, cell=max(spec.image_size, MIN_CELL))


def visualize(config: Any, video_path: str, output_path: str, checkpoint: Optional[str] = None, seed: int = 0,
              stride: int = 0) -> Image.Image:
  """Builds the picture for one video and writes it to `output_path`; returns it."""
  # float32 and per-layer parameters whatever the training used (checkpoints load unscanned).
  spec = dataclasses.replace(model_spec_from_config(config.model), compute_dtype="float32", scan_layers=False,
                             remat_policy="none")
  plan = masking.masking_plan(config.masking, spec)
  video = normalize(jnp.asarray(load_clip(video_path, config, stride)))
  model = VideoMAEPretrainModel(spec)
  init_key, mask_key = jax.random.split(jax.random.key(seed))
  if checkpoint:
    variables = {"params": params_io.load_params(checkpoint).params}
  else:
    dummy = jnp.zeros((1, plan.num_encoder_tokens), jnp.int32), jnp.zeros((1, plan.num_decoder_tokens), jnp.int32)
    variables = jax.jit(model.init)(init_key, video, *dummy)
  arrays = jax.jit(functools.partial(picture_arrays, model, plan, spec,
                                     normalized_targets=bool(config.objective.normalize_targets),
                                     reconstruct=bool(checkpoint)))(variables, video, mask_key)
  loss_tokens = int(np.asarray(arrays["loss_mask"]).sum())
  title = (f"{os.path.basename(video_path)}  grid {spec.grid}  encoder={plan.encoder}: {plan.num_encoder_tokens}/"
           f"{plan.num_tokens} visible  decoder={plan.decoder}: {plan.num_decoder_tokens} predicted, "
           f"{loss_tokens} with loss\n"
           f"motion scores: {'camera-compensated' if plan.camera_motion_compensation else 'plain'}; "
           f"weights: {checkpoint or 'random init'}")
  image = render_picture(arrays, spec, title)
  image.save(output_path)
  return image
