"""Multi-view evaluation: view averaging, top-k, per-class accuracy, and the whole program on a tiny labeled set."""
import json
import os

import jax
import numpy as np
import pytest

from videomae_jax import default_config, evaluation
from videomae_jax.convert import params_io
from videomae_jax.data import encoding, pipeline, shards
from videomae_jax.tasks.classify import ClassificationTask

TINY = dict(variant="custom", width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, num_frames=4,
            image_size=16, compute_dtype="float32", num_classes=3)


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_view_average_and_top_k_by_hand():
  # Two videos, three views each, three classes.
  logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0],      # video 0
                     [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])     # video 1
  probs = evaluation.average_view_probabilities(softmax(logits), 3)
  e2, e1, e3 = np.exp(2.0), np.e, np.exp(3.0)
  video0_class0 = (e2 / (e2 + 2) + 1 / (e1 + 2) + 1 / 3) / 3
  video1_class2 = (e3 / (e3 + 2) + 1 / (e1 + 2) + 1 / (e2 + 2)) / 3
  assert probs[0, 0] == pytest.approx(video0_class0) and probs[1, 2] == pytest.approx(video1_class2)
  np.testing.assert_allclose(probs.sum(-1), [1.0, 1.0])
  # video 0 -> class 0 (0.444 vs 0.339 / 0.217); video 1 -> class 2 (0.409 vs 0.243 / 0.348).
  results = evaluation.summarize(probs, np.array([0, 1]), 3, ["a", "b", "c"])
  assert results["top1"] == 50.0 and results["top5"] == 100.0
  assert results["per_class"]["a"] == {"accuracy": 100.0, "num_videos": 1}
  assert results["per_class"]["b"] == {"accuracy": 0.0, "num_videos": 1}
  assert results["per_class"]["c"] == {"accuracy": None, "num_videos": 0}
  assert results["mean_class_accuracy"] == 50.0
  assert results["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_top5_and_ties():
  probs = np.array([[0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
  np.testing.assert_array_equal(evaluation.top_k_correct(probs, np.array([1, 2]), 5), [True, True])
  np.testing.assert_array_equal(evaluation.top_k_correct(probs, np.array([1, 1]), 5), [True, False])
  np.testing.assert_array_equal(evaluation.top_k_correct(probs, np.array([0, 6]), 1), [True, True])
  # Ties go to the lower class index: class 2..6 tie at 0.1, the top 5 are 0, 1, 2, 3, 4.
  np.testing.assert_array_equal(evaluation.top_k_correct(probs[:1], np.array([4]), 5), [True])
  np.testing.assert_array_equal(evaluation.top_k_correct(probs[:1], np.array([6]), 5), [False])


def test_each_videos_views_are_averaged_and_padding_dropped():
  # A test batch is video-major (the V views of video i at rows i*V ... i*V+V-1); label -1 marks padding videos.
  rng = np.random.default_rng(0)
  views = softmax(rng.normal(size=(4 * 6, 5)))
  labels = np.array([0, 3, -1, -1])
  probs, kept = evaluation.video_probabilities(views, labels, views_per_video=6)
  np.testing.assert_allclose(probs, np.stack([views[0:6].mean(0), views[6:12].mean(0)]), rtol=1e-12)
  np.testing.assert_array_equal(kept, [0, 3])


def write_labeled_shards(folder, num_videos=5, num_classes=3, frames=12, height=20, width=28, named=True):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  records = []
  for i in range(num_videos):
    clip = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    records.append(shards.serialize_record(dict(
        format="jpeg", frames=encoding.encode_jpeg_frames(clip), num_frames=frames, fps=10.0, height=height,
        width=width, label=i % num_classes, label_name=f"class{i % num_classes}", source="tiny", path=f"{i}.mp4")))
  name = shards.shard_file_name("tiny", 0, 1)
  shards.write_array_record_atomically(os.path.join(folder, name), records)
  shards.write_json_atomically(os.path.join(folder, shards.DESCRIPTION_FILE), dict(
      format_version=1, labels=[f"class{c}" for c in range(num_classes)] if named else None,
      shards=[dict(file=name)]))
  return folder


def test_evaluate_writes_results_from_a_params_export(tmp_path):
  config = default_config.finetune_config("custom")
  config.model.update(TINY)
  config.masking.finetune_keep_ratio = 0.6
  config.batch_size = 2
  config.eval.update(dict(path=write_labeled_shards(str(tmp_path / "shards")), num_clips=2, num_crops=3,
                          stride=2, batch_size=4, num_workers=2))
  task = ClassificationTask.from_config(config)
  params = jax.tree.map(np.asarray, jax.jit(task.init_params)(jax.random.key(0)))
  params["head"]["kernel"] = np.random.default_rng(1).normal(size=params["head"]["kernel"].shape).astype(np.float32)
  export = params_io.save_params_export(str(tmp_path / "export"), params, "classifier", config.model)
  workdir = str(tmp_path / "eval")
  results = evaluation.evaluate(config, workdir, params_path=export)

  with open(os.path.join(workdir, evaluation.RESULTS_FILE)) as f:
    saved = json.load(f)
  for key in ("top1", "top5", "num_videos", "views", "per_class", "mean_class_accuracy"):
    assert key in saved
  assert saved["num_videos"] == 5 and saved["views"] == 6 and saved["top5"] == 100.0   # 3 classes
  assert set(saved["per_class"]) == {"class0", "class1", "class2"}
  assert os.path.getsize(os.path.join(workdir, evaluation.CONFUSION_FILE)) > 0
  # The same numbers by hand: decode each video's 2 x 3 views, softmax, average, argmax.
  records = shards.read_all_records(config.eval.path)
  views = [pipeline.test_views(r, config) for r in records]
  assert views[0].shape == (6, 4, 16, 16, 3)
  predict = jax.jit(task.predict)
  by_hand = np.stack([np.asarray(predict(params, v)).mean(0) for v in views])
  labels = np.array([r["label"] for r in records])
  assert results["top1"] == pytest.approx(100.0 * np.mean(by_hand.argmax(-1) == labels))


def test_integer_labelled_shards_and_the_saved_confusion_matrix(tmp_path):
  """Shards built from a manifest of integer labels have `labels: null` in dataset.json (a documented case)."""
  config = default_config.finetune_config("custom")
  config.model.update(TINY)
  config.batch_size = 2
  config.eval.update(dict(path=write_labeled_shards(str(tmp_path / "shards"), named=False), num_clips=1,
                          num_crops=1, batch_size=2, num_workers=0))
  task = ClassificationTask.from_config(config)
  params = jax.tree.map(np.asarray, jax.jit(task.init_params)(jax.random.key(0)))
  results = evaluation.evaluate(config, str(tmp_path / "eval"), params=params)
  assert results["num_videos"] == 5 and set(results["per_class"]) == {"0", "1", "2"}
  saved = json.load(open(tmp_path / "eval" / evaluation.RESULTS_FILE))
  assert np.asarray(saved["confusion_matrix"]).sum() == 5 and np.shape(saved["confusion_matrix"]) == (3, 3)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  picture = np.asarray(Image.open(tmp_path / "eval" / evaluation.CONFUSION_FILE).convert("RGB"))
  assert picture.shape[0] > 3 * 12 and (picture[..., 2] > picture[..., 0] + 50).any()  # shaded blue cells
