"""Top-1 / top-5 of the classifier being trained on a held-out labeled set, during fine-tuning.

The protocol of `python -m videomae_jax.tools.evaluate` (videomae_jax.evaluation) with the evaluator's own views:
every video's `num_clips` x `num_crops` views classified on their own by the task's `predict` (MATS keeping
included), softmax averaged per video. One view per video by default, which is cheap enough to run often; the
official multi-view numbers are `num_clips=5, num_crops=3` here or the evaluate program after training.
Scalars: top1, top5 (percent), loss (mean negative log-likelihood of the averaged probabilities), num_videos.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from videomae_jax import evaluation
from videomae_jax.errors import ConfigError
from videomae_jax.evaluators import base, data


class ClassificationEvaluator(base.Evaluator):

  def __init__(self, task: Any, eval_set: data.EvalSet, compiled: Any):
    self.task, self.eval_set, self.compiled = task, eval_set, compiled

  @classmethod
  def from_config(cls, name, settings, config, task, abstract_params, mesh):
    if not callable(getattr(task, "predict", None)):
      raise ConfigError(f"config.evals.{name} (kind 'classification') needs a task that predicts classes "
                        f"(config.task='classify'); {type(task).__name__} does not. Use kind 'knn' to measure a "
                        "pretraining's representation.")
    eval_set = data.EvalSet(config, settings, mesh, path=settings.path, max_videos=settings.max_videos,
                            require_labels=True, key=f"config.evals.{name}.path")

    def predict(params, batch):
      return task.predict(params, batch["video"]), batch["label"], batch["valid"]

    evaluator = cls(task, eval_set, base.compile_on_mesh(predict, mesh, abstract_params, eval_set.abstract_batch()))
    evaluator.schedule_from(name, settings)
    return evaluator

  def evaluate(self, params: Any) -> base.Report:
    probabilities, labels = data.per_video_outputs(self.compiled, params, self.eval_set)
    nll = -np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-12))
    return base.Report({
        "top1": float(100.0 * np.mean(np.argmax(probabilities, axis=-1) == labels)),
        "top5": float(100.0 * np.mean(evaluation.top_k_correct(probabilities, labels, 5))),
        "loss": float(np.mean(nll)),
        "num_videos": float(len(labels)),
    })


EVALUATOR = ClassificationEvaluator
