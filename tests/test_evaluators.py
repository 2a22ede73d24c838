"""Evaluators in the training loop, in-process on tiny models: the kNN vote by hand, the schedule, each kind against
an independent computation of its number (the evaluate program, the features library, the training objective), the
host cache, and the config errors. The trainer-level checks (8 devices vs 1, resume) are in test_evaluators_e2e.py."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from tests.test_evaluate import write_labeled_shards
from videomae_jax import default_config, evaluation, evaluators, masking, metrics, objective, sharding, tasks
from videomae_jax.data import pipeline, shards
from videomae_jax.errors import ConfigError
from videomae_jax.evaluators import base, knn
from videomae_jax.models.classifier import VideoClassifier
from videomae_jax.normalization import normalize

TINY = dict(variant="custom", width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, num_frames=4,
            image_size=16, decoder_width=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32,
            compute_dtype="float32")


def test_knn_vote_by_hand():
  train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
  labels = np.array([0, 0, 1, 1, 2])
  queries = np.array([[1.0, 0.05], [0.05, 1.0], [-1.0, 0.2]])
  scores = knn.knn_scores(train, labels, queries, num_classes=3, k=2, temperature=0.1)
  assert list(scores.argmax(-1)) == [0, 1, 2]
  # Query 2's two nearest: train 4 (class 2) and train 2 (class 1), each weighted exp(cosine / 0.1).
  unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
  cosine = lambda a, b: float(unit(a) @ unit(b))  # noqa: E731
  np.testing.assert_allclose(scores[2], [0.0, np.exp(cosine(queries[2], train[2]) / 0.1),
                                         np.exp(cosine(queries[2], train[4]) / 0.1)], rtol=1e-12)
  # k larger than the train set: everyone votes; the features' scale does not matter (cosine).
  np.testing.assert_allclose(knn.knn_scores(train * 7, labels, queries, 3, k=50, temperature=0.1),
                             knn.knn_scores(train, labels, queries, 3, k=5, temperature=0.1), rtol=1e-12)


def test_schedule_start_every_and_last_step():
  evaluator = base.Evaluator()
  evaluator.schedule_from("x", default_config.evaluator_config("knn", every_steps=4, at_start=True))
  assert [s for s in range(0, 11) if evaluator.due(s, total_steps=10)] == [0, 4, 8, 10]
  evaluator.schedule_from("x", default_config.evaluator_config("knn", every_steps=4, at_start=False))
  assert [s for s in range(0, 11) if evaluator.due(s, total_steps=10)] == [4, 8, 10]
  evaluator.schedule_from("x", default_config.evaluator_config("knn", every_steps=0))
  assert not any(evaluator.due(s, total_steps=10) for s in range(0, 11))


def test_a_step_logged_twice_stays_one_line(tmp_path):
  """Evaluators flush their step before its checkpoint; a later flush at the same step joins that line."""
  path = str(tmp_path / "metrics.jsonl")
  writer = metrics.JsonlWriter(path)
  writer.write_scalars(4, {"knn/top1": 50.0})
  writer.flush()
  writer.write_scalars(4, {"train/loss": 0.5})
  writer.write_scalars(6, {"train/loss": 0.25})
  writer.flush()
  assert [json.loads(line) for line in open(path)] == [{"step": 4, "knn/top1": 50.0, "train/loss": 0.5},
                                                       {"step": 6, "train/loss": 0.25}]


def _config(kind, tmp_path, task="pretrain", **evaluator):
  config = default_config.finetune_config("custom") if task == "classify" else default_config.pretrain_config("custom")
  config.model.update(TINY)
  if task == "classify":
    config.model.num_classes = 3
  config.data.crop_on_device = False
  config.eval.path = write_labeled_shards(str(tmp_path / "shards"), num_videos=5, num_classes=3)
  config.data.sources = [dict(name="tiny", path=config.eval.path, stride=2, weight=1.0, num_videos=5)]
  config.evals.under_test = default_config.evaluator_config(kind, **{"every_steps": 1, "batch_size": 2, "stride": 2,
                                                                     **evaluator})
  with config.unlocked():
    config.evals.under_test.path = config.eval.path
    if "train_path" in config.evals.under_test:
      config.evals.under_test.train_path = config.eval.path
  return config


_PARAMS = {}  # initial parameters by (task, model): compiling the init is most of these tests' time


def _build(config):
  """(task, the one evaluator of config.evals, replicated initial params); config errors raise before the init."""
  task = tasks.from_config(config)
  mesh = sharding.make_mesh(config.mesh)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
                          jax.eval_shape(task.init_params, jax.random.key(0)))
  (evaluator,) = evaluators.from_config(config, task, abstract, mesh)
  key = (type(task).__name__, task.spec)
  if key not in _PARAMS:
    _PARAMS[key] = jax.jit(task.init_params)(jax.random.key(0))
  return task, evaluator, jax.device_put(_PARAMS[key], sharding.replicated(mesh))


def _views(config, settings):
  """Every video's test views, decoded independently of the evaluator (uint8 [V, T, S, S, 3] each)."""
  view_config = config.copy_and_resolve_references()
  view_config.eval.update(dict(num_clips=settings.num_clips, num_crops=settings.num_crops, stride=settings.stride))
  return [pipeline.test_views(record, view_config) for record in shards.read_all_records(config.eval.path)]


def test_classification_equals_the_evaluate_program_with_two_views(tmp_path):
  config = _config("classification", tmp_path, task="classify", num_clips=2)
  task, evaluator, params = _build(config)
  params = jax.tree.map(np.asarray, params)
  params["head"]["kernel"] = np.random.default_rng(1).normal(size=params["head"]["kernel"].shape).astype(np.float32)
  report = evaluator.evaluate(params)
  # 5 videos in batches of 2: the last batch holds a padding video, which must not count.
  assert report.scalars["num_videos"] == 5
  with config.unlocked():
    config.eval.update(dict(num_clips=2, num_crops=1, stride=2, batch_size=2, num_workers=0))
  offline = evaluation.evaluate(config, str(tmp_path / "offline"), params=params)
  assert report.scalars["top1"] == pytest.approx(offline["top1"]) and report.scalars["top5"] == 100.0
  predict = jax.jit(task.predict)
  probabilities = np.stack([np.asarray(predict(params, v)).mean(0) for v in _views(config, config.evals.under_test)])
  labels = np.array([r["label"] for r in shards.read_all_records(config.eval.path)])
  assert report.scalars["top1"] == pytest.approx(100.0 * np.mean(probabilities.argmax(-1) == labels))
  assert report.scalars["loss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(5), labels])), rel=1e-5)


def test_knn_uses_the_encoders_pooled_features_and_decodes_once(tmp_path, monkeypatch):
  config = _config("knn", tmp_path, k=3, cache_mb=16)
  task, evaluator, params = _build(config)
  calls = []
  make_dataset = pipeline.make_dataset
  monkeypatch.setattr(pipeline, "make_dataset", lambda *a, **k: calls.append(1) or make_dataset(*a, **k))
  first, second = evaluator.evaluate(params), evaluator.evaluate(params)
  assert first == second and len(calls) == 2  # the train and query sets, each decoded once and then kept
  # By hand: mean of the normed tokens of the pretraining encoder (features.py's pooled features), then the vote.
  spec = dataclasses.replace(task.spec, num_classes=0, pooled_norm="norm")
  features = np.stack([np.asarray(VideoClassifier(spec).apply({"params": {"encoder": params["encoder"]}},
                                                               normalize(v)))[0]
                       for v in _views(config, config.evals.under_test)])
  labels = np.array([r["label"] for r in shards.read_all_records(config.eval.path)])
  scores = knn.knn_scores(features, labels, features, 3, k=3, temperature=0.07)
  assert first.scalars["top1"] == pytest.approx(100.0 * np.mean(scores.argmax(-1) == labels))
  assert first.scalars["num_videos"] == first.scalars["num_train_videos"] == 5


@pytest.mark.slow  # five eager pretraining losses by hand: ~20 s of CPU
def test_reconstruction_is_the_training_objective_on_fixed_masks(tmp_path):
  config = _config("reconstruction", tmp_path, batch_size=2, seed=3)  # 3 batches, the last one padded
  config.masking.update(dict(encoder="tube", decoder="motion", encoder_ratio=0.75, decoder_ratio=0.5))
  task, evaluator, params = _build(config)
  report = evaluator.evaluate(params)
  # By hand, video by video: its masks from fold_in(fold_in(key(seed), video index), view 0), the training loss
  # on it; every clip has the plan's number of loss tokens, so the set's loss is the mean of the clips'.
  losses = []
  for i, views in enumerate(_views(config, config.evals.under_test)):
    video = normalize(views)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(3), i), 0)
    masks = masking.sample_masks_for_video(task.plan, key, video, task.embed_fn(params), task.spec)
    loss, _ = objective.pretrain_loss(task.model, {"params": params}, video, masks, task.spec,
                                      normalize_targets=task.normalize_targets)
    losses.append(float(loss))
  assert report.scalars["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
  assert evaluator.evaluate(params).scalars == report.scalars  # the same masks every time
  picture = report.images["picture"]
  assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[0] > 5 * 128  # five rows of 128 px


def test_config_errors_name_the_key(tmp_path):
  config = _config("classification", tmp_path)  # a pretraining task cannot be classified
  with pytest.raises(ConfigError, match="config.evals.under_test"):
    _build(config)
  with pytest.raises(ConfigError, match="config.evals.under_test.batch_size=0"):
    _build(_config("knn", tmp_path, batch_size=0))
  with pytest.raises(ConfigError, match="config.evals.under_test.path is empty"):
    config = _config("reconstruction", tmp_path)
    config.evals.under_test.path = ""
    _build(config)
  with pytest.raises(ConfigError, match="kind='nope'"):
    evaluators.evaluator_class("x", "nope")
  with pytest.raises(KeyError, match="kk"):
    default_config.evaluator_config("knn", kk=1)


def test_the_demo_configs_run_their_evaluators():
  """The demo pretraining checks its representation (kNN) and held-out reconstruction while it trains; the demo
  fine-tuning validates on the test set; all at several steps of the run, not only the last."""
  from configs import demo_finetune, demo_pretrain  # pylint: disable=import-outside-toplevel
  pretrain, finetune = demo_pretrain.get_config(), demo_finetune.get_config()
  assert {name: e.kind for name, e in pretrain.evals.items()} == {"knn": "knn", "reconstruction": "reconstruction"}
  assert {name: e.kind for name, e in finetune.evals.items()} == {"val": "classification"}
  for config in (pretrain, finetune):
    for settings in config.evals.values():
      assert 0 < settings.every_steps <= config.num_train_steps // 4
