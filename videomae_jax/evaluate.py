r"""Multi-view test of a fine-tuned classifier: softmax averaged over clips x crops per video.

  python -m videomae_jax.evaluate --config=configs/vitb_k400_finetune.py --workdir=runs/vitb_k400 \
      [--config.eval.path=SHARDS] [--params=EXPORT_OR_CHECKPOINT] [--step=N]

Reads the latest checkpoint's params of --workdir (or --params: a params export, e.g. from label_transfer, or any
path videomae_jax.convert.params_io.load_params accepts) and the labeled shard folder config.eval.path.
Per video (REFERENCE.md section 4):
  * temporal views: config.eval.num_clips clips, 'uniform' windows of num_frames * stride frames at evenly spaced
    starts (Kinetics, 5 clips) or 'segment' TSN-style sampling (SSv2, 2 clips); see videomae_jax.augment.temporal;
  * spatial views: short side resized to config.eval.short_side (default: the model's image size), then
    config.eval.num_crops square crops along the long side (3: left/centre/right or top/centre/bottom);
  * every view is classified on its own (MATS keeps each view's own top-motion tokens when
    config.masking.finetune_keep_ratio < 1) and the softmax probabilities are averaged over the views.
Writes {workdir}/eval_results.json (top1, top5, mean_class_accuracy, per_class, num_videos, views, ...) and
{workdir}/confusion_matrix.png (rows: true class, columns: predicted, each row normalized; white = 1).
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from videomae_jax.augment import spatial, temporal

RESULTS_FILE = "eval_results.json"
CONFUSION_FILE = "confusion_matrix.png"


# ------------------------------------------------------------------------------------------------------------------
# Views of one video (numpy, host)
# ------------------------------------------------------------------------------------------------------------------
def view_frame_indices(eval_cfg: Any, num_video_frames: int, num_frames: int) -> List[np.ndarray]:
  """The frame indices of each temporal view (config.eval.sampling / num_clips / stride)."""
  return temporal.clip_indices(eval_cfg.get("sampling", "uniform"), num_video_frames, num_frames,
                               int(eval_cfg.get("stride", 4)), int(eval_cfg.get("num_clips", 1)))


def make_views(clips: Sequence[np.ndarray], size: int, num_crops: int, short_side: int = 0) -> np.ndarray:
  """Temporal clips (uint8 [T, H, W, 3] each) -> uint8 [num_clips * num_crops, T, size, size, 3], clip-major."""
  views = []
  for clip in clips:
    resized = spatial.resize_short_side(clip, short_side or size)
    views.append(spatial.spatial_crops(resized, size, num_crops))
  return np.concatenate(views, axis=0)


def record_views(record: Dict[str, Any], eval_cfg: Any, num_frames: int, size: int) -> np.ndarray:
  """One shard record -> its views (decodes every needed frame once)."""
  from videomae_jax.data import decoding
  indices = view_frame_indices(eval_cfg, int(record["num_frames"]), num_frames)
  frames = decoding.decode_clip(record, np.concatenate(indices))
  clips = np.split(frames, len(indices))
  return make_views(clips, size, int(eval_cfg.get("num_crops", 1)), int(eval_cfg.get("short_side", 0) or 0))


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


def save_confusion_png(matrix: np.ndarray, path: str, max_pixels: int = 1024) -> None:
  """Row-normalized confusion matrix as a grayscale PNG (white = 1), each cell a square of >= 1 pixel."""
  from PIL import Image
  matrix = np.asarray(matrix, np.float64)
  rows = matrix.sum(axis=1, keepdims=True)
  normalized = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
  cell = max(1, max_pixels // max(1, matrix.shape[0]))
  image = np.kron(np.rint(normalized * 255).astype(np.uint8), np.ones((cell, cell), np.uint8))
  Image.fromarray(image, mode="L").save(path)


# ------------------------------------------------------------------------------------------------------------------
# Running the model over views
# ------------------------------------------------------------------------------------------------------------------
def predict_videos(predict_fn: Callable[[np.ndarray], np.ndarray], videos: Iterable[Tuple[np.ndarray, int]],
                   views_per_video: int, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
  """videos: (views uint8 [V, T, S, S, 3], label) pairs -> (probabilities [N, C] averaged over views, labels [N]).

  Views of consecutive videos are packed into batches of exactly `batch_size` (the last one padded), so
  `predict_fn` (views [batch_size, ...] -> probabilities [batch_size, C]) compiles once.
  """
  pending: List[np.ndarray] = []
  pending_count = 0
  outputs: List[np.ndarray] = []
  labels: List[int] = []

  def flush(final: bool):
    nonlocal pending, pending_count
    while pending_count >= batch_size or (final and pending_count):
      stacked = np.concatenate(pending, axis=0)
      batch, rest = stacked[:batch_size], stacked[batch_size:]
      valid = batch.shape[0]
      if valid < batch_size:
        batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
      outputs.append(np.asarray(predict_fn(batch))[:valid])
      pending = [rest] if rest.shape[0] else []
      pending_count = rest.shape[0]

  for views, label in videos:
    if views.shape[0] != views_per_video:
      raise ValueError(f"a video came with {views.shape[0]} views, expected {views_per_video}.")
    pending.append(views)
    pending_count += views.shape[0]
    labels.append(int(label))
    flush(final=False)
  flush(final=True)
  if not labels:
    return np.zeros((0, 0)), np.zeros((0,), np.int64)
  return average_view_probabilities(np.concatenate(outputs), views_per_video), np.asarray(labels, np.int64)


def _ordered_prefetch(function: Callable[[Any], Any], items: Sequence[Any], num_workers: int) -> Iterator[Any]:
  """function(item) for every item, in order, at most 2 * num_workers in flight (threads: decoding and numpy
  release the GIL)."""
  if num_workers <= 0:
    for item in items:
      yield function(item)
    return
  with concurrent.futures.ThreadPoolExecutor(num_workers) as executor:
    queue: collections.deque = collections.deque()
    iterator = iter(items)
    for item in iterator:
      queue.append(executor.submit(function, item))
      if len(queue) >= 2 * num_workers:
        yield queue.popleft().result()
    while queue:
      yield queue.popleft().result()


def shard_videos(path: str, eval_cfg: Any, num_frames: int, size: int, *, process_index: int = 0,
                 process_count: int = 1, num_workers: int = 4) -> Tuple[Iterator[Tuple[np.ndarray, int]], int,
                                                                       List[str]]:
  """(iterator of (views, label), number of videos for this process, class names) for a labeled shard folder."""
  import grain
  from videomae_jax.data import shards
  description = shards.read_description(path)
  source = grain.sources.ArrayRecordDataSource(shards.shard_paths(path))
  total = len(source)
  max_videos = int(eval_cfg.get("max_videos", -1))
  if max_videos > 0:
    total = min(total, max_videos)
  indices = list(range(process_index, total, process_count))

  def load(index: int) -> Tuple[np.ndarray, int]:
    record = shards.parse_record(source[index])
    label = int(record.get("label", -1))
    if label < 0:
      raise ValueError(f"video {record.get('path', index)} in {path} has no label; evaluation needs labeled shards.")
    return record_views(record, eval_cfg, num_frames, size), label

  return _ordered_prefetch(load, indices, num_workers), len(indices), list(description.get("labels", []))


# ------------------------------------------------------------------------------------------------------------------
# The program
# ------------------------------------------------------------------------------------------------------------------
def load_classifier_params(task: Any, workdir: str, params_path: str = "", step: Optional[int] = None) -> Any:
  """Per-layer (or, for scan_layers, stacked) numpy params of the classifier from --params or the workdir."""
  from videomae_jax.convert import params_io
  from videomae_jax.models import layer_stacking
  loaded = params_io.load_params(params_path or workdir, step=step)
  if "head" not in loaded.params:
    raise ValueError(f"{params_path or workdir} holds {loaded.kind} params, not a classifier; evaluate a "
                     "fine-tuning workdir or a classifier export.")
  params = loaded.params
  if task.spec.scan_layers:
    params = layer_stacking.stack_layers(params)
  classes = int(np.shape(params["head"]["bias"])[0])
  if classes != task.num_classes:
    raise ValueError(f"the checkpoint has a {classes}-class head but config.model.num_classes="
                     f"{task.num_classes}; set it to {classes}, or transfer the head with "
                     "videomae_jax.label_transfer.")
  logging.info("Evaluating %s params from %s (step %s).", loaded.kind, loaded.path, loaded.step)
  return params


def make_predict_fn(task: Any, params: Any, batch_size: int) -> Tuple[Callable[[np.ndarray], np.ndarray], int]:
  """A jitted views -> probabilities function over this process's devices (params replicated, batch split).

  Returns (function, batch size rounded up to a multiple of the local device count)."""
  import jax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  devices = np.asarray(jax.local_devices())
  batch_size = -(-batch_size // devices.size) * devices.size
  mesh = Mesh(devices, ("batch",))
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("batch"))
  device_params = jax.device_put(params, replicated)
  predict = jax.jit(task.predict, in_shardings=(replicated, batch_sharding), out_shardings=replicated)

  def run(views: np.ndarray) -> np.ndarray:
    return np.asarray(jax.device_get(predict(device_params, jax.device_put(views, batch_sharding))))

  return run, batch_size


def evaluate(config: Any, workdir: str, *, params: Any = None, params_path: str = "", step: Optional[int] = None,
             videos: Optional[Iterable[Tuple[np.ndarray, int]]] = None,
             class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Runs the multi-view test and writes eval_results.json + confusion_matrix.png into `workdir`.

  params / videos override the checkpoint and the shard folder (tests, notebooks). Returns the results dict.
  """
  import jax
  from videomae_jax import finetune
  from videomae_jax.label_transfer import load_label_names
  task = finetune.ClassificationTask.from_config(config)
  spec = task.spec
  eval_cfg = config.eval
  num_clips, num_crops = int(eval_cfg.num_clips), int(eval_cfg.num_crops)
  views_per_video = num_clips * num_crops
  if params is None:
    params = load_classifier_params(task, workdir, params_path, step)
  predict_fn, batch_size = make_predict_fn(task, params, int(eval_cfg.get("batch_size", 16)))
  names = list(class_names) if class_names else []
  if videos is None:
    path = eval_cfg.get("path") or _demo_test_shards(eval_cfg)
    if not path:
      raise ValueError("config.eval.path is empty: set it to the labeled shard folder of the test split.")
    videos, _, shard_names = shard_videos(path, eval_cfg, spec.num_frames, spec.image_size,
                                          process_index=jax.process_index(), process_count=jax.process_count(),
                                          num_workers=int(eval_cfg.get("num_workers", 4)))
    names = names or shard_names
  if eval_cfg.get("class_names"):
    names = load_label_names(eval_cfg.class_names)
  start = time.time()
  probabilities, labels = predict_videos(predict_fn, videos, views_per_video, batch_size)
  if jax.process_count() > 1:
    probabilities, labels = _gather_processes(probabilities, labels, task.num_classes)
  if probabilities.size == 0:
    probabilities = np.zeros((0, task.num_classes))
  names = names if len(names) == task.num_classes else None
  results = summarize(probabilities, labels, task.num_classes, names)
  matrix = np.asarray(results.pop("confusion_matrix"))
  results.update(views=views_per_video, num_clips=num_clips, num_crops=num_crops,
                 sampling=eval_cfg.get("sampling", "uniform"), keep_ratio=task.plan.finetune_keep_ratio,
                 tokens_per_view=task.plan.num_finetune_tokens, seconds=round(time.time() - start, 2))
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
      json.dump(results, f, indent=1)
    save_confusion_png(matrix, os.path.join(workdir, CONFUSION_FILE))
  logging.info("top-1 %.2f, top-5 %.2f over %d videos x %d views.", results["top1"], results["top5"],
               results["num_videos"], views_per_video)
  return results


def _demo_test_shards(eval_cfg: Any) -> str:
  """config.eval.demo_dir: the demo's held-out test set (another seed than the training videos), built if missing."""
  if not eval_cfg.get("demo_dir"):
    return ""
  import jax
  from data_prep import make_demo
  from jax.experimental import multihost_utils
  if jax.process_index() == 0:
    make_demo.build_demo_shards(eval_cfg.demo_dir, **make_demo.demo_arguments(eval_cfg, default_seed=1))
  multihost_utils.sync_global_devices("demo test shards built")
  return os.path.join(eval_cfg.demo_dir, "shards")


def _gather_processes(probabilities: np.ndarray, labels: np.ndarray, num_classes: int):
  """Every process's videos on every process (padded to the longest, then trimmed)."""
  from jax.experimental import multihost_utils
  counts = multihost_utils.process_allgather(np.asarray([labels.shape[0]]))
  longest = int(np.max(counts))
  padded_p = np.zeros((longest, num_classes), np.float64)
  padded_l = np.full((longest,), -1, np.int64)
  padded_p[:labels.shape[0]] = probabilities.reshape(-1, num_classes)
  padded_l[:labels.shape[0]] = labels
  all_p = multihost_utils.process_allgather(padded_p)
  all_l = multihost_utils.process_allgather(padded_l)
  keep = all_l.reshape(-1) >= 0
  return all_p.reshape(-1, num_classes)[keep], all_l.reshape(-1)[keep]


def main(argv):
  del argv
  from absl import flags
  config = flags.FLAGS["config"].value
  workdir = flags.FLAGS["workdir"].value
  if config is None or not workdir:
    raise ValueError("--config and --workdir are required.")
  step = flags.FLAGS["step"].value
  results = evaluate(config, workdir, params_path=flags.FLAGS["params"].value, step=None if step < 0 else step)
  print(json.dumps({k: results[k] for k in ("top1", "top5", "mean_class_accuracy", "num_videos", "views")}))


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Fine-tuning config file (model, masking, eval).",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "Fine-tuning workdir: params are read here, results written here.")
  flags.DEFINE_string("params", "", "Read params from this export / checkpoint instead of --workdir.")
  flags.DEFINE_integer("step", -1, "Checkpoint step (-1: latest).")
  app.run(main)
