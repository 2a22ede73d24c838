"""k-nearest-neighbour accuracy of the encoder's pooled features: the representation's health during pretraining.

The usual self-supervised check (DINO's weighted kNN, Wu et al. 2018): the features of a labeled train set and of a
held-out set come from the parameters in memory (no checkpoint round trip); each held-out video's k most
cosine-similar train videos vote for their class with weight exp(similarity / temperature); the class with the
largest vote is the prediction. No training, no hyperparameter search, so the number moves only with the encoder.

Features: the mean over tokens of the encoder's output (a pretraining encoder's final norm on every token first;
a classifier's fc_norm after the mean, head left out), as videomae_jax.features makes them; every token is
kept; a video's views are averaged. The vote runs on the host in float64, in chunks of held-out videos, so
its memory stays bounded for large sets.
Scalars: top1 (and top5 with more than 5 classes), percent; num_videos, num_train_videos.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from videomae_jax import evaluation
from videomae_jax.convert import mapping
from videomae_jax.errors import ConfigError
from videomae_jax.evaluators import base, data
from videomae_jax.models.classifier import VideoClassifier
from videomae_jax.normalization import normalize

QUERY_CHUNK = 1024


def knn_scores(train_features: np.ndarray, train_labels: np.ndarray, query_features: np.ndarray, num_classes: int,
               k: int, temperature: float) -> np.ndarray:
  """[Q, num_classes] weighted votes of each query's k nearest train features (cosine similarity; ties go to the
  lower train index)."""
  def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

  train, queries = unit(train_features), unit(query_features)
  train_labels = np.asarray(train_labels, np.int64)
  k = min(int(k), len(train))
  scores = np.zeros((len(queries), num_classes), np.float64)
  for start in range(0, len(queries), QUERY_CHUNK):
    similarity = queries[start:start + QUERY_CHUNK] @ train.T
    nearest = np.argsort(-similarity, axis=-1, kind="stable")[:, :k]
    weights = np.exp(np.take_along_axis(similarity, nearest, axis=-1) / temperature)
    rows = np.repeat(np.arange(len(nearest)), k)
    np.add.at(scores[start:start + QUERY_CHUNK], (rows, train_labels[nearest].ravel()), weights.ravel())
  return scores


class KnnEvaluator(base.Evaluator):

  def __init__(self, train_set: data.EvalSet, query_set: data.EvalSet, compiled: Any, num_classes: int, k: int,
               temperature: float):
    self.train_set, self.query_set, self.compiled = train_set, query_set, compiled
    self.num_classes, self.k, self.temperature = num_classes, k, temperature

  @classmethod
  def from_config(cls, name, settings, config, task, abstract_params, mesh):
    key = f"config.evals.{name}"
    if int(settings.k) < 1 or not float(settings.temperature) > 0:
      raise ConfigError(f"{key}.k={settings.k} must be >= 1 and {key}.temperature={settings.temperature} > 0.")
    if "encoder" not in abstract_params or getattr(task, "params_kind", "") not in (mapping.KIND_PRETRAIN,
                                                                                     mapping.KIND_CLASSIFIER):
      raise ConfigError(f"{key} (kind 'knn') needs a task whose parameters hold a video encoder (pretrain or "
                        f"classify); {type(task).__name__} has none.")
    train_set = data.EvalSet(config, settings, mesh, path=settings.train_path, max_videos=settings.train_max_videos,
                             require_labels=True, key=f"{key}.train_path")
    query_set = data.EvalSet(config, settings, mesh, path=settings.path, max_videos=settings.max_videos,
                             require_labels=True, key=f"{key}.path")
    kind = task.params_kind
    encoder_keys = tuple(mapping.encoder_params(abstract_params, kind))
    spec = dataclasses.replace(task.spec, num_classes=0, drop_path_rate=0.0,
                               pooled_norm=mapping.pooled_norm_of({k: abstract_params[k] for k in encoder_keys}))
    model = VideoClassifier(spec)

    def features(params, batch):
      encoder = {k: params[k] for k in encoder_keys}
      return model.apply({"params": encoder}, normalize(batch["video"])), batch["label"], batch["valid"]

    compiled = base.compile_on_mesh(features, mesh, abstract_params, query_set.abstract_batch())
    names = train_set.label_names or query_set.label_names
    evaluator = cls(train_set, query_set, compiled, len(names), int(settings.k), float(settings.temperature))
    evaluator.schedule_from(name, settings)
    return evaluator

  def evaluate(self, params: Any) -> base.Report:
    train_features, train_labels = data.per_video_outputs(self.compiled, params, self.train_set)
    query_features, query_labels = data.per_video_outputs(self.compiled, params, self.query_set)
    num_classes = max(self.num_classes, int(train_labels.max()) + 1, int(query_labels.max()) + 1)
    scores = knn_scores(train_features, train_labels, query_features, num_classes, self.k, self.temperature)
    scalars = {"top1": float(100.0 * np.mean(evaluation.top_k_correct(scores, query_labels, 1))),
               "num_videos": float(len(query_labels)), "num_train_videos": float(len(train_labels))}
    if num_classes > 5:
      scalars["top5"] = float(100.0 * np.mean(evaluation.top_k_correct(scores, query_labels, 5)))
    return base.Report(scalars)


EVALUATOR = KnnEvaluator
