r"""Multi-view test of a classifier: softmax averaged over clips x crops per video, top-1 / top-5 / per class.

The library behind `python -m videomae_jax.tools.evaluate`. Per video (the official VideoMAE V2 test protocol):
  * temporal views: config.eval.num_clips clips, 'uniform' windows of num_frames * stride frames at evenly spaced
    starts (Kinetics, 5 clips) or 'segment' TSN-style sampling (SSv2, 2 clips);
  * spatial views: short side resized to config.eval.short_side (default: the model's image size), then
    config.eval.num_crops square crops along the long side (3: left/centre/right or top/centre/bottom);
  * every view is classified on its own (MATS keeps each view's own top-motion tokens when
    config.masking.finetune_keep_ratio < 1) and the softmax probabilities are averaged over the views.
The views come from the input pipeline's 'test' mode (videomae_jax.data.pipeline): decoded in grain workers,
config.eval.batch_size videos per step over all processes, split over every device of the mesh like a training
batch (parameters laid out by config.sharding_rules), so it runs on pods and in the training loop alike.
Writes {workdir}/eval_results.json (top1, top5, mean_class_accuracy, per_class, num_videos, views, ...) and
{workdir}/confusion_matrix.png (rows: true class, columns: predicted, each row normalized; white = 1).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, Optional, Sequence

import jax
import numpy as np
from PIL import Image, ImageDraw

from videomae_jax import label_transfer, sharding
from videomae_jax.convert import params_io
from videomae_jax.data import pipeline, shards
from videomae_jax.errors import ConfigError
from videomae_jax.models import layer_stacking
from videomae_jax.tasks.classify import ClassificationTask

RESULTS_FILE = "eval_results.json"
CONFUSION_FILE = "confusion_matrix.png"


# ------------------------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------------------------
def average_view_probabilities(view_probabilities: np.ndarray, views_per_video: int) -> np.ndarray:
  """[N * V, C] per-view probabilities, videos contiguous -> [N, C] mean over each video's V views."""
  view_probabilities = np.asarray(view_probabilities, np.float64)
  if view_probabilities.shape[0] % views_per_video:
    raise ValueError(f"{view_probabilities.shape[0]} views are not a whole number of videos of "
                     f"{views_per_video} views.")
  return view_probabilities.reshape(-1, views_per_video, view_probabilities.shape[-1]).mean(axis=1)


def top_k_correct(probabilities: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """[N] bool: the label is among the k highest scores (ties broken towards the lower class index)."""
  k = min(k, probabilities.shape[-1])
  order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
  return np.any(order == np.asarray(labels)[:, None], axis=-1)


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[C, C] int64 counts, rows = true class, columns = predicted class."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
  return matrix


def summarize(probabilities: np.ndarray, labels: np.ndarray, num_classes: int,
              class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Top-1 / top-5 (percent), per-class accuracy (percent; None for classes without videos) and the confusion."""
  probabilities = np.asarray(probabilities)
  labels = np.asarray(labels, np.int64)
  predictions = np.argmax(probabilities, axis=-1)
  matrix = confusion_matrix(predictions, labels, num_classes)
  counts = matrix.sum(axis=1)
  per_class = [None if counts[c] == 0 else float(100.0 * matrix[c, c] / counts[c]) for c in range(num_classes)]
  present = [value for value in per_class if value is not None]
  names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
  return {
      "top1": float(100.0 * np.mean(predictions == labels)) if len(labels) else float("nan"),
      "top5": float(100.0 * np.mean(top_k_correct(probabilities, labels, 5))) if len(labels) else float("nan"),
      "mean_class_accuracy": float(np.mean(present)) if present else float("nan"),
      "num_videos": int(len(labels)),
      "per_class": {names[c]: {"accuracy": per_class[c], "num_videos": int(counts[c])} for c in range(num_classes)},
      "confusion_matrix": matrix.tolist(),
  }


def save_confusion_png(matrix: np.ndarray, path: str, class_names: Optional[Sequence[str]] = None,
                       title: str = "", max_pixels: int = 1024) -> None:
  """The confusion matrix as a picture: rows are the true classes, columns the predicted ones, each cell shaded by
  its share of the row (white 0, dark blue 1) and, while the cells are large enough, labelled with its count;
  class names along both axes while they fit, and a title."""
  matrix = np.asarray(matrix, np.int64)
  classes = matrix.shape[0]
  names = list(class_names) if class_names and len(class_names) == classes else [str(c) for c in range(classes)]
  rows = matrix.sum(axis=1, keepdims=True)
  share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
  cell = max(1, min(48, max_pixels // max(1, classes)))
  labelled = cell >= 12                     # room for names and counts
  margin = 8 + (min(16, max(len(n) for n in names)) * 6 + 8 if labelled else 0)
  header = 40 + margin
  lines = (title or "confusion matrix", "rows: true class, columns: predicted class (shade: share of the row)")
  width = max(margin + 20 + classes * cell + 8, 16 + 6 * max(len(line) for line in lines))
  image = Image.new("RGB", (width, header + classes * cell + 8), "white")
  draw = ImageDraw.Draw(image)
  for number, line in enumerate(lines):
    draw.text((8, 6 + 14 * number), line, fill="black")
  left, top = margin + 20, header
  for i in range(classes):
    for j in range(classes):
      shade = int(round(255 * (1 - share[i, j])))
      draw.rectangle([left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1],
                     fill=(shade, shade, 255))
      if labelled and matrix[i, j]:
        draw.text((left + j * cell + 2, top + i * cell + 2), str(matrix[i, j]),
                  fill="white" if share[i, j] > 0.5 else "black")
  if labelled:
    for k, name in enumerate(names):
      draw.text((8, top + k * cell + 2), name[:16], fill="black")
      label = Image.new("RGB", (margin - 8, 12), "white")
      ImageDraw.Draw(label).text((0, 0), name[:16], fill="black")
      image.paste(label.rotate(90, expand=True), (left + k * cell + 1, 40))
  image.save(path)


# ------------------------------------------------------------------------------------------------------------------
# Running the model over the test views
# ------------------------------------------------------------------------------------------------------------------
def load_classifier_params(task: ClassificationTask, path: str, step: Optional[int] = None) -> Any:
  """Per-layer (or, for scan_layers, stacked) numpy params of the classifier from a workdir, checkpoint or export."""
  loaded = params_io.load_params(path, step=step)
  if loaded.kind != task.params_kind:
    raise ValueError(f"{path} holds {loaded.kind} params, not a classifier; evaluate a fine-tuning workdir or a "
                     "classifier export.")
  params = loaded.params
  if task.spec.scan_layers:
    params = layer_stacking.stack_layers(params)
  classes = int(np.shape(params["head"]["bias"])[0])
  if classes != task.spec.num_classes:
    raise ValueError(f"the checkpoint has a {classes}-class head but config.model.num_classes="
                     f"{task.spec.num_classes}; set it to {classes}, or transfer the head with "
                     "python -m videomae_jax.tools.label_transfer.")
  logging.info("Evaluating %s params from %s (step %s).", loaded.kind, loaded.path, loaded.step)
  return params


def video_probabilities(view_probabilities: np.ndarray, labels: np.ndarray, views_per_video: int):
  """[B * V, C] per-view probabilities (video-major) and [B] labels (-1: padding) -> ([N, C] averaged over each
  video's views, [N] labels) for the real videos."""
  probabilities = average_view_probabilities(view_probabilities, views_per_video)
  keep = np.asarray(labels) >= 0
  return probabilities[keep], np.asarray(labels, np.int64)[keep]


def predict_test_set(config: Any, task: ClassificationTask, params: Any):
  """(probabilities [N, C] averaged over views, labels [N]) for every video of config.eval.path, on every process.

  The views of a step are one global batch split over all devices; the probabilities and labels come back
  replicated, so every process sees every video.
  """
  views = int(config.eval.num_clips) * int(config.eval.num_crops)
  mesh = sharding.make_mesh(config.mesh)
  batch = int(config.eval.batch_size)
  if batch % jax.process_count() or (batch * views) % mesh.devices.size:
    raise ConfigError(f"config.eval.batch_size={batch} videos x {views} views must split over "
                      f"{jax.process_count()} processes and {mesh.devices.size} devices; use a multiple of "
                      f"{np.lcm(jax.process_count(), mesh.devices.size // np.gcd(mesh.devices.size, views))}.")
  param_shardings = sharding.param_shardings(params, mesh, [tuple(r) for r in config.sharding_rules],
                                             int(config.fsdp_min_size))
  params = jax.device_put(params, param_shardings)
  split, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  predict = jax.jit(lambda p, video, labels: (task.predict(p, video), labels),
                    in_shardings=(param_shardings, split, split), out_shardings=replicated)
  outputs, labels = [], []
  for local in pipeline.make_dataset(config, mode="test", process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    video = jax.make_array_from_process_local_data(split, np.asarray(local["video"]))
    label = jax.make_array_from_process_local_data(split, np.asarray(local["label"]))
    probabilities, label = predict(params, video, label)
    kept_probabilities, kept_labels = video_probabilities(np.asarray(probabilities), np.asarray(label), views)
    outputs.append(kept_probabilities)
    labels.append(kept_labels)
  if not labels:
    return np.zeros((0, task.spec.num_classes)), np.zeros((0,), np.int64)
  return np.concatenate(outputs), np.concatenate(labels)


def evaluate(config: Any, workdir: str, *, params: Any = None, params_path: str = "", step: Optional[int] = None,
             class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Runs the multi-view test of config.eval.path and writes eval_results.json + confusion_matrix.png into
  `workdir`. Params: `params`, else those of `params_path` (any path params_io.load_params reads), else the
  latest (or `step`) checkpoint of `workdir`. Returns the results dict."""
  task = ClassificationTask.from_config(config)
  if not config.eval.path:
    raise ConfigError("config.eval.path is empty: set it to the labeled shard folder of the test split.")
  if params is None:
    params = load_classifier_params(task, params_path or workdir, step)
  start = time.time()
  probabilities, labels = predict_test_set(config, task, params)
  num_classes = task.spec.num_classes
  names = list(class_names or [])
  if config.eval.class_names:
    names = label_transfer.load_label_names(config.eval.class_names)
  names = names or list(shards.read_description(config.eval.path).get("labels") or [])
  results = summarize(probabilities, labels, num_classes, names if len(names) == num_classes else None)
  matrix = np.asarray(results["confusion_matrix"])
  results.update(views=int(config.eval.num_clips) * int(config.eval.num_crops), num_clips=int(config.eval.num_clips),
                 num_crops=int(config.eval.num_crops), sampling=config.eval.sampling,
                 keep_ratio=task.plan.finetune_keep_ratio, tokens_per_view=task.plan.num_finetune_tokens,
                 seconds=round(time.time() - start, 2))
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
      json.dump(results, f, indent=1)
    save_confusion_png(matrix, os.path.join(workdir, CONFUSION_FILE), names,
                       f"{results['num_videos']} videos x {results['views']} views: top-1 {results['top1']:.1f}%, "
                       f"top-5 {results['top5']:.1f}%")
  logging.info("top-1 %.2f, top-5 %.2f over %d videos x %d views.", results["top1"], results["top5"],
               results["num_videos"], results["views"])
  return results
