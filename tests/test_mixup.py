"""Mixup / CutMix with label smoothing (timm Mixup, mode 'batch') and the soft-target cross-entropy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax import mixup
from videomae_jax.mixup import MixParams, MixupConfig


def _video(batch=4, frames=2, size=4):
  values = np.arange(batch * frames * size * size * 3, dtype=np.float32).reshape(batch, frames, size, size, 3)
  return jnp.asarray(values)


def test_smooth_one_hot_values():
  targets = np.asarray(mixup.smooth_one_hot(jnp.array([0, 2]), 4, 0.1))
  np.testing.assert_allclose(targets, [[0.925, 0.025, 0.025, 0.025], [0.025, 0.025, 0.925, 0.025]], atol=1e-7)


def test_partner_reverses_batch_inside_groups():
  x = jnp.arange(8)
  np.testing.assert_array_equal(mixup.partner(x, 1), [7, 6, 5, 4, 3, 2, 1, 0])
  np.testing.assert_array_equal(mixup.partner(x, 2), [3, 2, 1, 0, 7, 6, 5, 4])


def test_mixup_blends_video_and_targets_with_lambda():
  video, labels = _video(), jnp.array([0, 1, 2, 3])
  params = MixParams(lam=jnp.float32(0.7), use_cutmix=jnp.asarray(False), box=jnp.zeros((4,), jnp.int32))
  mixed, targets = mixup.apply_mix(video, labels, params, num_classes=5, smoothing=0.1)
  np.testing.assert_allclose(mixed, 0.7 * np.asarray(video) + 0.3 * np.asarray(video)[::-1], rtol=1e-6)
  # Clip 0 (label 0) mixes with clip 3 (label 3): 0.7 * (0.92 at 0) + 0.3 * (0.92 at 3), 0.02 elsewhere.
  np.testing.assert_allclose(targets[0], [0.7 * 0.92 + 0.3 * 0.02, 0.02, 0.02, 0.7 * 0.02 + 0.3 * 0.92, 0.02],
                             atol=1e-6)
  np.testing.assert_allclose(np.sum(targets, axis=-1), np.ones(4), atol=1e-6)


def test_cutmix_pastes_partner_box_on_every_frame_and_corrects_lambda():
  video, labels = _video(), jnp.array([0, 1, 2, 3])
  box = jnp.array([1, 3, 0, 2], jnp.int32)            # rows 1-2, cols 0-1: 4 of 16 pixels
  lam = mixup.box_area_lam(box, 4, 4)
  assert float(lam) == pytest.approx(0.75)
  params = MixParams(lam=lam, use_cutmix=jnp.asarray(True), box=box)
  mixed, targets = mixup.apply_mix(video, labels, params, num_classes=4, smoothing=0.0)
  expected = np.asarray(video).copy()
  expected[:, :, 1:3, 0:2] = np.asarray(video)[::-1][:, :, 1:3, 0:2]
  np.testing.assert_array_equal(mixed, expected)
  np.testing.assert_allclose(targets[1], [0.0, 0.75, 0.25, 0.0], atol=1e-7)  # clip 1 <- clip 2
  np.testing.assert_allclose(np.sum(targets, axis=-1), np.ones(4), atol=1e-6)


def test_cutmix_box_size_follows_timm_rand_bbox():
  # lam 0.75 on 32 x 32: cut = int(32 * sqrt(0.25)) = 16, half 8; clipped at the border.
  for seed in range(20):
    box = np.asarray(mixup.cutmix_box(jax.random.key(seed), jnp.float32(0.75), 32, 32))
    y_low, y_high, x_low, x_high = box
    assert 0 <= y_low <= y_high <= 32 and 0 <= x_low <= x_high <= 32
    assert y_high - y_low <= 16 and x_high - x_low <= 16
    if 8 <= y_low and y_high <= 24:
      assert y_high - y_low == 16


def test_sampled_params_switch_between_methods_and_lambda_matches_box():
  cfg = MixupConfig()
  keys = jax.random.split(jax.random.key(0), 400)
  draws = jax.jit(jax.vmap(lambda key: mixup.sample_mix_params(key, cfg, 16, 16)))(keys)
  lam, use_cutmix, boxes = np.asarray(draws.lam), np.asarray(draws.use_cutmix), np.asarray(draws.box)
  assert 0.4 < use_cutmix.mean() < 0.6                # switch_prob 0.5
  assert np.all((lam >= 0.0) & (lam <= 1.0))
  # correct_lam: a CutMix lambda is 1 - clipped box area / frame area.
  area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
  np.testing.assert_allclose(lam[use_cutmix], 1.0 - area[use_cutmix] / 256.0, atol=1e-6)
  # Mixup lambdas follow Beta(0.8, 0.8): mean 0.5, variance 1 / (4 * 2.6) ~ 0.096.
  assert abs(lam[~use_cutmix].mean() - 0.5) < 0.06 and abs(lam[~use_cutmix].var() - 0.096) < 0.03


def test_prob_zero_and_disabled_leave_the_batch_alone():
  video, labels = _video(), jnp.array([0, 1, 2, 3])
  cfg = MixupConfig(prob=0.0)
  assert not cfg.enabled
  out, targets, params = mixup.mixup_batch(jax.random.key(0), video, labels, 4, cfg)
  np.testing.assert_array_equal(out, video)
  np.testing.assert_allclose(targets, np.asarray(mixup.smooth_one_hot(labels, 4, 0.1)))
  # Enabled with prob 1 but a draw of lam = 1 would also be a no-op; check jit and target sums instead.
  run = jax.jit(lambda key: mixup.mixup_batch(key, video, labels, 4, MixupConfig())[:2])
  for seed in range(5):
    mixed, targets = run(jax.random.key(seed))
    np.testing.assert_allclose(np.sum(targets, axis=-1), np.ones(4), atol=1e-6)
    assert mixed.shape == video.shape


def test_odd_group_is_rejected():
  with pytest.raises(ValueError, match="even"):
    mixup.mixup_batch(jax.random.key(0), _video(batch=3), jnp.array([0, 1, 2]), 4, MixupConfig())


def test_soft_target_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5)).astype(np.float32)
  targets = rng.dirichlet(np.ones(5), size=3).astype(np.float32)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  reference = -(targets * log_softmax).sum(axis=1)
  np.testing.assert_allclose(mixup.soft_target_cross_entropy(jnp.asarray(logits), jnp.asarray(targets)),
                             reference, rtol=1e-5)
  # One-hot targets reduce it to the usual cross-entropy.
  one_hot = np.eye(5, dtype=np.float32)[[1, 4, 0]]
  np.testing.assert_allclose(mixup.soft_target_cross_entropy(jnp.asarray(logits), jnp.asarray(one_hot)),
                             -log_softmax[[0, 1, 2], [1, 4, 0]], rtol=1e-5)
