"""Held-out reconstruction loss of a pretraining run, and the reconstruction picture as a TensorBoard image.

The training loss is measured on the clips being trained on, each with fresh masks; this one is measured on videos
the run never trains on, with the same masks at every evaluation (each view's drawn from the evaluator's `seed`,
the video's index in the set and the view's number: the same whatever the batch, device and process layout), so
successive values differ only by the parameters. The objective is the task's own: its masking plan (motion
scores from the current patch embedding where the scheme uses them), its targets (normalized tubelets or raw
pixels), the mean over every loss token of the real videos (padding left out). Each video is its test view (a
centred window at the evaluator's stride): neither device crops nor MATS adaptive frame selection, which are input
processing of training clips.
Scalars: loss, num_videos. Image: picture (the first video: frames, motion scores, the encoder's tokens, the
decoder's targets and their reconstruction; videomae_jax.visualization), when `picture` is on.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from videomae_jax import masking, objective, visualization
from videomae_jax.errors import ConfigError
from videomae_jax.evaluators import base, data
from videomae_jax.models.vit import gather_tokens
from videomae_jax.normalization import normalize
from videomae_jax.tasks.pretrain import PretrainTask


def view_keys(seed: int, index: jax.Array, views: int) -> jax.Array:
  """[b * views] mask keys of b videos' views: fold_in(fold_in(key(seed), video index), view number)."""
  base_key = jax.random.key(seed)
  return jax.vmap(lambda i: jax.vmap(lambda v: jax.random.fold_in(jax.random.fold_in(base_key, i), v))(
      jax.numpy.arange(views)))(index).reshape(-1)


def _one_clip_masks(plan, key, clip, embed_fn, spec):
  """One clip's masks (`sample_masks_for_video` on a batch of one), without the batch axis."""
  return jax.tree.map(lambda x: x[0], masking.sample_masks_for_video(plan, key, clip[None], embed_fn, spec))


class ReconstructionEvaluator(base.Evaluator):

  def __init__(self, task: PretrainTask, eval_set: data.EvalSet, compiled: Any, picture: Any, seed: int):
    self.task, self.eval_set, self.compiled, self.picture, self.seed = task, eval_set, compiled, picture, seed

  @classmethod
  def from_config(cls, name, settings, config, task, abstract_params, mesh):
    if not isinstance(task, PretrainTask):
      raise ConfigError(f"config.evals.{name} (kind 'reconstruction') needs a pretraining task (config.task="
                        f"'pretrain'), not {type(task).__name__}.")
    # Test views: num_frames frames at image_size, ready (videomae_jax.tasks.pretrain.PretrainTask.for_flop_count
    # leaves crops out the same way).
    task = dataclasses.replace(task, candidate_frames=0, crops_per_clip=0, crop_canvas=(0, 0))
    eval_set = data.EvalSet(config, settings, mesh, path=settings.path, max_videos=settings.max_videos,
                            require_labels=False, key=f"config.evals.{name}.path")
    spec, plan, model = task.spec, task.plan, task.model
    seed = int(settings.seed)

    views = eval_set.views_per_video

    def clip_errors(params, batch):
      video = normalize(batch["video"])
      masks = jax.vmap(lambda key, clip: _one_clip_masks(plan, key, clip, task.embed_fn(params), spec))(
          view_keys(seed, batch["index"], views), video)
      predictions = model.apply({"params": params}, video, masks.encoder_indices, masks.decoder_indices)
      targets = gather_tokens(objective.tubelet_targets(video, spec, task.normalize_targets), masks.decoder_indices)
      return (*objective.clip_reconstruction_errors(predictions, targets, masks.loss_mask), batch["valid"])

    abstract_batch = eval_set.abstract_batch()
    compiled = base.compile_on_mesh(clip_errors, mesh, abstract_params, abstract_batch)
    picture = None
    if settings.picture:
      def picture_arrays(params, batch):
        # The first row (the set's first video, its first view) with the masks its loss was measured with.
        key = view_keys(seed, batch["index"][:1], 1)[0]
        return visualization.picture_arrays(model, plan, spec, {"params": params}, normalize(batch["video"][:1]),
                                            key, task.normalize_targets)
      picture = base.compile_on_mesh(picture_arrays, mesh, abstract_params, abstract_batch)
    evaluator = cls(task, eval_set, compiled, picture, seed)
    evaluator.schedule_from(name, settings)
    return evaluator

  def evaluate(self, params: Any) -> base.Report:
    error_sum = token_count = 0.0
    videos, first = 0, None
    views = self.eval_set.views_per_video
    for batch in self.eval_set.batches():
      errors, tokens, valid = (np.asarray(x, np.float64) for x in self.compiled(params, batch))
      valid_views = np.repeat(valid > 0, views)
      error_sum += float(errors[valid_views].sum())
      token_count += float(tokens[valid_views].sum())
      videos += int(valid.sum())
      first = batch if first is None else first
    report = base.Report({"loss": error_sum / max(token_count, 1e-12), "num_videos": float(videos)})
    if self.picture is not None and first is not None:
      arrays = self.picture(params, first)
      if jax.process_index() == 0:  # the only process that writes
        plan = self.task.plan
        title = (f"first video of {self.eval_set.path}\nencoder={plan.encoder}: {plan.num_encoder_tokens}/"
                 f"{plan.num_tokens} visible, decoder={plan.decoder}: {plan.num_decoder_tokens} predicted")
        report.images["picture"] = np.asarray(visualization.render_picture(arrays, self.task.spec, title))
    return report


EVALUATOR = ReconstructionEvaluator
