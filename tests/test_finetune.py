"""Fine-tuning task: layer decay, initialization from pretraining, MATS token keeping, FLOPs, a tiny train step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax import analysis, default_config, motion, optim, resolve, train_step
from videomae_jax.convert import params_io
from videomae_jax.data import demo
from videomae_jax.models import VideoClassifier, VideoMAEPretrainModel, layer_stacking, model_spec_from_config
from videomae_jax.errors import ConfigError
from videomae_jax.normalization import normalize
from videomae_jax.tasks.classify import ClassificationTask

TINY = dict(variant="custom", width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8, num_frames=4,
            image_size=16, compute_dtype="float32", decoder_width=16, decoder_num_heads=2, decoder_depth=1)


def tiny_config(num_classes=5, keep_ratio=1.0, batch_size=4, **model):
  config = default_config.finetune_config("custom")
  config.model.update(dict(TINY, num_classes=num_classes, **model))
  config.masking.finetune_keep_ratio = keep_ratio
  config.batch_size = batch_size
  config.mixup_groups = 1
  return config


def random_like(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)


# --- layer-wise lr decay (videomae_jax.optim) --------------------------------------------------------------------
@pytest.mark.parametrize("scanned", [False, True])
def test_layer_decay_scales_vit_b(scanned):
  spec = model_spec_from_config({"variant": "B", "num_classes": 400, "scan_layers": scanned})
  video = jax.ShapeDtypeStruct((1, 16, 224, 224, 3), jnp.float32)
  params = jax.eval_shape(lambda v: VideoClassifier(spec).init(jax.random.key(0), v), video)["params"]
  scales = optim.layer_decay_scales(params, depth=12, layer_decay=0.75)
  assert float(scales["encoder"]["patch_embed"]["proj"]["kernel"]) == pytest.approx(0.75 ** 13)
  assert float(scales["encoder"]["patch_embed"]["proj"]["bias"]) == pytest.approx(0.75 ** 13)
  assert float(scales["head"]["kernel"]) == 1.0 and float(scales["head"]["bias"]) == 1.0
  assert float(scales["fc_norm"]["scale"]) == 1.0
  blocks = scales["encoder"]["blocks"]
  if scanned:
    per_layer = np.asarray(blocks["layers"]["attn"]["qkv"]["kernel"]).reshape(-1)
    np.testing.assert_allclose(per_layer, [0.75 ** (12 - k) for k in range(12)], rtol=1e-6)
    assert blocks["layers"]["attn"]["qkv"]["kernel"].shape == (12, 1, 1)   # broadcasts over [12, D, 3D]
  else:
    assert float(blocks["0"]["attn"]["qkv"]["kernel"]) == pytest.approx(0.75 ** 12)
    assert float(blocks["0"]["norm1"]["scale"]) == pytest.approx(0.75 ** 12)
    assert float(blocks["5"]["mlp"]["fc2"]["bias"]) == pytest.approx(0.75 ** 7)
    assert float(blocks["11"]["attn"]["q_bias"]) == pytest.approx(0.75 ** 1)


def test_layer_decay_scales_the_adamw_update():
  config = tiny_config()
  task = ClassificationTask.from_config(config)
  params = random_like(jax.eval_shape(task.init_params, jax.random.key(0)))
  grads = random_like(params, seed=1)

  def first_update(layer_decay):
    cfg = dict(config.optimizer, layer_decay=layer_decay)
    opt, _ = optim.make_optimizer(cfg, params, batch_size=256, warmup_steps=0, total_steps=10, depth=2)
    updates, _ = opt.update(grads, opt.init(params), params)
    return updates

  plain, decayed = first_update(1.0), first_update(0.5)
  np.testing.assert_allclose(decayed["encoder"]["patch_embed"]["proj"]["kernel"],
                             0.125 * plain["encoder"]["patch_embed"]["proj"]["kernel"], rtol=1e-5)
  np.testing.assert_allclose(decayed["encoder"]["blocks"]["1"]["mlp"]["fc1"]["kernel"],
                             0.5 * plain["encoder"]["blocks"]["1"]["mlp"]["fc1"]["kernel"], rtol=1e-5)
  np.testing.assert_allclose(decayed["head"]["kernel"], plain["head"]["kernel"], rtol=1e-6)


# --- initialization from a pretraining checkpoint -----------------------------------------------------------------
def test_pretraining_encoder_goes_into_the_classifier_without_norm():
  config = tiny_config(num_classes=7)
  task = ClassificationTask.from_config(config)
  pretrain_spec = model_spec_from_config(dict(TINY))
  video = jax.ShapeDtypeStruct((1, 4, 16, 16, 3), jnp.float32)
  index = jax.ShapeDtypeStruct((1, 2), jnp.int32)
  pretrain = random_like(jax.eval_shape(
      lambda v, e, d: VideoMAEPretrainModel(pretrain_spec).init(jax.random.key(0), v, e, d), video, index, index
  )["params"])
  loaded = params_io.LoadedParams(pretrain, "pretrain", None, path="pretrain_run")
  params = task.adapt_loaded_params(loaded, seed=3)
  target = jax.eval_shape(task.init_params, jax.random.key(0))
  assert jax.tree.structure(params) == jax.tree.structure(target)            # what the trainer's init_from needs
  assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, target)
  assert "norm" in pretrain["encoder"] and "norm" not in params["encoder"]
  np.testing.assert_array_equal(params["encoder"]["blocks"]["1"]["attn"]["qkv"]["kernel"],
                                pretrain["encoder"]["blocks"]["1"]["attn"]["qkv"]["kernel"])
  np.testing.assert_array_equal(params["fc_norm"]["scale"], np.ones(32))
  np.testing.assert_array_equal(params["head"]["bias"], np.zeros(7))
  head = params["head"]["kernel"]                                            # N(0, 0.02) x init scale 0.001
  assert head.shape == (32, 7) and 0.75 * 0.02 * 0.001 < head.std() < 1.25 * 0.02 * 0.001
  # Scanned models take the same tree stacked (the trainer stacks it).
  stacked = layer_stacking.stack_layers(params)
  assert stacked["encoder"]["blocks"]["layers"]["attn"]["qkv"]["kernel"].shape == (2, 32, 96)


def test_fresh_head_when_class_count_differs_and_no_map():
  task = ClassificationTask.from_config(tiny_config(num_classes=3))
  source = random_like(jax.eval_shape(ClassificationTask.from_config(tiny_config(num_classes=9))
                                      .init_params, jax.random.key(0)))
  params = task.adapt_loaded_params(params_io.LoadedParams(source, "classifier", None, path="other"))
  assert params["head"]["kernel"].shape == (32, 3)
  np.testing.assert_array_equal(params["fc_norm"]["scale"], source["fc_norm"]["scale"])
  same = ClassificationTask.from_config(tiny_config(num_classes=9)).adapt_loaded_params(
      params_io.LoadedParams(source, "classifier", None, path="same"))
  np.testing.assert_array_equal(same["head"]["kernel"], source["head"]["kernel"])


# --- MATS token keeping -------------------------------------------------------------------------------------------
def test_mats_keeps_top_motion_tokens_and_pools_over_them():
  config = tiny_config(keep_ratio=0.6, image_size=32)   # grid 2 x 4 x 4 = 32 tokens -> keep int(0.6 * 32) = 19
  task = ClassificationTask.from_config(config)
  assert (task.plan.num_tokens, task.plan.num_finetune_tokens) == (32, 19)
  params = jax.jit(task.init_params)(jax.random.key(0))
  video = jax.random.randint(jax.random.key(1), (2, 4, 32, 32, 3), 0, 256).astype(jnp.uint8)

  def both(params, video):
    logits = task.logits(params, video)
    normalized = normalize(video)
    scores = motion.motion_scores(task.embed_fn(params)(normalized), task.spec.grid)
    keep = motion.select_top_tokens(scores, 19)
    model = VideoClassifier(task.spec)
    expected = model.apply({"params": params}, normalized, keep)
    everything = model.apply({"params": params}, normalized)
    return logits, expected, everything, keep, task.keep_indices(params, normalized)

  logits, expected, everything, keep, task_keep = jax.jit(both)(params, video)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(logits, everything)
  # Each clip selects its own tokens, deterministically.
  np.testing.assert_array_equal(task_keep, keep)
  assert keep.shape == (2, 19) and not np.array_equal(keep[0], keep[1])


def test_mats_flops_ratio_vit_b():
  """ViT-B/16, 16 x 224: keeping 940 of 1568 tokens costs about 0.55x the FLOPs per view (EVEREST: 98 / 180)."""
  report = analysis.mats_flops_report(ClassificationTask.from_config(default_config.finetune_config("B")),
                                     keep_ratio=0.6)
  assert (report["tokens_full"], report["tokens_mats"]) == (1568, 940)
  assert 0.5 < report["ratio"] < 0.6
  assert 3.4e11 < report["flops_full"] < 3.9e11          # ~180 G multiply-adds = ~360 G FLOPs


# --- the task in the trainer's step -------------------------------------------------------------------------------
def test_tiny_finetune_train_step_runs_with_finite_loss():
  config = tiny_config(keep_ratio=0.6, drop_path_rate=0.1)
  config.optimizer.layer_decay = 0.75
  task = ClassificationTask.from_config(config)
  abstract = jax.eval_shape(task.init_params, jax.random.key(0))
  optimizer, schedule = optim.make_optimizer(config.optimizer, abstract, batch_size=4, warmup_steps=1,
                                             total_steps=4, depth=2)
  state = jax.jit(lambda: train_step.init_train_state(task, optimizer, 0))()
  step = jax.jit(train_step.make_train_step(task, optimizer, schedule), donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {"video": jnp.asarray(rng.integers(0, 256, (4, 4, 16, 16, 3)), jnp.uint8),
           "label": jnp.asarray([0, 1, 2, 4], jnp.int32)}
  losses = []
  for _ in range(2):
    state, metrics = step(state, batch)
    losses.append(float(metrics["train/loss"]))
    assert 0.0 <= float(metrics["train/mix_lambda"]) <= 1.0
  assert int(state["step"]) == 2
  assert all(np.isfinite(losses)) and abs(losses[0] - np.log(5)) < 0.1   # head init scale 0.001: ~uniform
  eval_loss, aux = task.loss(state["params"], batch, jax.random.key(0), train=False)
  assert np.isfinite(float(eval_loss)) and 0.0 <= float(aux["accuracy"]) <= 1.0


def test_config_errors():
  with pytest.raises(ConfigError, match="num_classes"):
    ClassificationTask.from_config(tiny_config(num_classes=0))
  with pytest.raises(ConfigError, match="even"):
    ClassificationTask.from_config(tiny_config(batch_size=3))
  config = tiny_config(batch_size=3)
  config.mixup.prob = 0.0
  assert not ClassificationTask.from_config(config).mixup.enabled
  # Fine-tuning at a grid the running cell cannot use (odd H') is fine: only the keep ratio matters here.
  task = ClassificationTask.from_config(tiny_config(image_size=24, keep_ratio=0.6))
  assert task.plan.num_tokens == 18 and task.plan.num_finetune_tokens == 10


def test_frozen_params_make_a_linear_probe():
  """optimizer.frozen_params='encoder/.*': the encoder gets no update (not even weight decay), fc_norm and the head
  train."""
  config = tiny_config()
  task = ClassificationTask.from_config(config)
  params = random_like(jax.eval_shape(task.init_params, jax.random.key(0)))
  grads = random_like(params, seed=1)
  cfg = dict(config.optimizer, frozen_params="encoder/.*")
  opt, _ = optim.make_optimizer(cfg, params, batch_size=256, warmup_steps=0, total_steps=10, depth=2)
  updates, _ = opt.update(grads, opt.init(params), params)
  assert all(not np.any(u) for u in jax.tree.leaves(updates["encoder"]))
  assert np.any(updates["head"]["kernel"]) and np.any(updates["fc_norm"]["scale"])


def test_labels_beyond_the_head_fail_before_compiling(tmp_path):
  """The demo set has 4 classes: a 3-class head would train class 3 on an all-zero target."""
  config = tiny_config(num_classes=3)
  config.data.sources = [dict(name="demo", path=demo.build_demo_shards(str(tmp_path), num_videos_per_class=1,
                                                                        num_frames=8, size=32), weight=1.0)]
  with pytest.raises(ConfigError, match=r"has 4 classes \(labels 0..3\) but config.model.num_classes=3"):
    resolve.resolve(config)
  config.model.num_classes = 4
  assert resolve.resolve(config).model.num_classes == 4
