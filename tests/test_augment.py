"""Fine-tuning augmentations: clip-consistent RandAugment, random resized crop, flips, test views, random erasing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax.augment import rand_augment, spatial
from videomae_jax.augment.rand_augment import RandAugment
from videomae_jax.augment.random_erasing import random_erasing
from videomae_jax.data import temporal, transforms


def _clip(frames=4, height=32, width=48, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


# --- RandAugment ------------------------------------------------------------------------------------------------
def test_rand_augment_spec_parsing():
  policy = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
  assert (policy.magnitude, policy.num_layers, policy.magnitude_std, policy.increasing) == (7.0, 4, 0.5, True)
  assert len(policy.ops) == 15 and "SolarizeIncreasing" in policy.ops and "Solarize" not in policy.ops
  with pytest.raises(ValueError, match="rand-"):
    RandAugment.from_string("auto-m7")


def test_level_arguments_at_magnitude_7():
  rng = np.random.default_rng(0)
  assert abs(rand_augment._level_arg("Rotate", 7.0, rng)) == pytest.approx(21.0)
  assert abs(rand_augment._level_arg("ShearX", 7.0, rng)) == pytest.approx(0.21)
  assert abs(rand_augment._level_arg("TranslateXRel", 7.0, rng)) == pytest.approx(0.315)
  assert abs(rand_augment._level_arg("ColorIncreasing", 7.0, rng) - 1.0) == pytest.approx(0.63)
  assert rand_augment._level_arg("PosterizeIncreasing", 7.0, rng) == 2     # 4 - int(2.8)
  assert rand_augment._level_arg("SolarizeIncreasing", 7.0, rng) == 77     # 256 - int(179.2)
  assert rand_augment._level_arg("SolarizeAdd", 7.0, rng) == 77            # int(77.0)


def test_solarize_add_and_posterize_pixel_values():
  from PIL import Image
  image = Image.fromarray(np.array([[[100, 127, 128], [200, 250, 10]]], np.uint8))
  out = np.asarray(rand_augment._apply("SolarizeAdd", image, 77, Image.BICUBIC))
  np.testing.assert_array_equal(out, [[[177, 204, 128], [200, 250, 87]]])
  out = np.asarray(rand_augment._apply("PosterizeIncreasing", image, 2, Image.BICUBIC))
  np.testing.assert_array_equal(out, [[[64, 64, 128], [192, 192, 0]]])


def test_rand_augment_is_the_same_transform_on_every_frame():
  policy = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
  clip = _clip()
  for seed in range(8):
    plan = policy.sample(np.random.default_rng(seed))
    together = policy.apply_plan(clip, plan)
    one_by_one = np.concatenate([policy.apply_plan(clip[t:t + 1], plan) for t in range(clip.shape[0])])
    np.testing.assert_array_equal(together, one_by_one)
  # Identical frames stay identical, and the same seed gives the same output.
  still = np.repeat(_clip(frames=1), 6, axis=0)
  out = policy(still, np.random.default_rng(3))
  assert all(np.array_equal(out[0], out[t]) for t in range(6))
  np.testing.assert_array_equal(policy(clip, np.random.default_rng(5)), policy(clip, np.random.default_rng(5)))


def test_rand_augment_draws_ops_with_replacement_and_prob_half():
  policy = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
  lengths = [len(policy.sample(np.random.default_rng(seed))) for seed in range(400)]
  assert abs(np.mean(lengths) - 2.0) < 0.2          # 4 ops, each applied with probability 0.5


# --- spatial ----------------------------------------------------------------------------------------------------
def test_random_resized_crop_box_in_range_and_fallback():
  rng = np.random.default_rng(0)
  for _ in range(200):
    top, left, h, w = spatial.random_resized_crop_box(rng, 120, 160)
    assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 160
    assert 0.08 * 0.5 <= h * w / (120 * 160) <= 1.0
  # Impossible scale: the fallback is a centred crop with the aspect clamped into the ratio range.
  assert spatial.random_resized_crop_box(rng, 100, 300, scale=(2.0, 3.0)) == (0, 83, 100, 133)
  assert spatial.random_resized_crop_box(rng, 300, 100, scale=(2.0, 3.0)) == (83, 0, 133, 100)
  assert spatial.random_resized_crop_box(rng, 100, 110, scale=(2.0, 3.0)) == (0, 0, 100, 110)


@pytest.mark.parametrize("backend", ["cv2", "numpy"])
def test_resize_bilinear_matches_torch_interpolate(backend, monkeypatch):
  torch = pytest.importorskip("torch")
  if backend == "numpy":
    monkeypatch.setattr(transforms, "cv2", None)
  elif transforms.cv2 is None:
    pytest.skip("OpenCV not installed")
  clip = _clip(frames=2, height=20, width=30)
  for out_h, out_w in ((12, 17), (40, 45), (20, 30)):
    ours = transforms.resize(clip, out_h, out_w)
    tensor = torch.from_numpy(clip.astype(np.float32)).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(tensor, size=(out_h, out_w), mode="bilinear", align_corners=False)
    ref = np.clip(np.rint(ref.permute(0, 2, 3, 1).numpy()), 0, 255)
    assert np.max(np.abs(ours.astype(np.int32) - ref.astype(np.int32))) <= 1


def test_train_transform_shape_flip_and_determinism():
  clip = _clip(frames=4, height=40, width=56)
  transform = spatial.FinetuneTrainTransform(size=24, flip=False)
  out = transform(clip, np.random.default_rng(0))
  assert out.shape == (4, 24, 24, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, transform(clip, np.random.default_rng(0)))
  # No RandAugment, full-frame crop box: the flip is a mirror of the plain resize.
  plain = spatial.FinetuneTrainTransform(size=24, rand_augment=None, scale=(1.0, 1.0), ratio=(1.4, 1.4), flip=True)
  flips = 0
  for seed in range(20):
    out = plain(clip, np.random.default_rng(seed))
    resized = transforms.resize(clip, 24, 24)
    if np.array_equal(out, resized[:, :, ::-1]):
      flips += 1
    else:
      np.testing.assert_array_equal(out, resized)
  assert 3 <= flips <= 17


def test_test_crops_along_the_long_side():
  landscape = _clip(frames=2, height=224, width=298)
  crops = transforms.spatial_crops(landscape, 224, 3)
  assert crops.shape == (3, 2, 224, 224, 3)
  for crop, left in zip(crops, (0, 37, 74)):
    np.testing.assert_array_equal(crop, landscape[:, :, left:left + 224])
  portrait = _clip(frames=1, height=300, width=224)
  crops = transforms.spatial_crops(portrait, 224, 3)
  for crop, top in zip(crops, (0, 38, 76)):
    np.testing.assert_array_equal(crop, portrait[:, top:top + 224])
  np.testing.assert_array_equal(transforms.spatial_crops(landscape, 224, 1)[0], landscape[:, :, 37:261])
  assert transforms.short_side_size(256, 340, 224) == (224, 297)
  assert transforms.resize_short_side(_clip(frames=1, height=64, width=96), 32).shape == (1, 32, 48, 3)


def test_temporal_views():
  clips = temporal.uniform_clip_indices(100, 16, 4, 5)          # span 64, room 36: starts 0, 9, 18, 27, 36
  assert [int(c[0]) for c in clips] == [0, 9, 18, 27, 36]
  np.testing.assert_array_equal(clips[4], 36 + 4 * np.arange(16))
  short = temporal.uniform_clip_indices(20, 8, 4, 2)            # shorter than a window: repeat the last frame
  np.testing.assert_array_equal(short[0], [0, 4, 8, 12, 16, 19, 19, 19])
  segments = temporal.segment_clip_indices(32, 8, 2)            # tick 4: segment starts, then midpoints
  np.testing.assert_array_equal(segments[0], [0, 4, 8, 12, 16, 20, 24, 28])
  np.testing.assert_array_equal(segments[1], [2, 6, 10, 14, 18, 22, 26, 30])
  assert [int(c[0]) for c in temporal.uniform_clip_indices(100, 16, 4, 1)] == [18]


# --- random erasing (device) ------------------------------------------------------------------------------------
def test_random_erasing_one_box_per_clip_on_every_frame():
  video = jnp.full((200, 2, 16, 20, 3), 7.0)
  erase = jax.jit(lambda key, probability: random_erasing(key, video, probability))
  changed = np.asarray(erase(jax.random.key(0), 1.0)) != 7.0
  for clip in changed:
    box = clip[0].any(-1)                            # [H, W]
    assert np.array_equal(clip[1].any(-1), box)      # the same box on every frame
    rows, cols = np.nonzero(box.any(1))[0], np.nonzero(box.any(0))[0]
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert box.sum() == height * width                # a rectangle
    assert 0.02 * 320 * 0.5 <= height * width <= 320 / 3 * 1.5
  erased = (np.asarray(erase(jax.random.key(1), 0.25)) != 7.0).reshape(200, -1).any(axis=1)
  assert 0.15 < erased.mean() < 0.35                # probability 0.25 per clip
  np.testing.assert_array_equal(random_erasing(jax.random.key(0), video, 0.0), video)


def test_random_segment_indices():
  indices = temporal.random_segment_indices(32, 8, np.random.default_rng(0))
  assert np.all((indices >= np.arange(8) * 4) & (indices < np.arange(8) * 4 + 4))
  np.testing.assert_array_equal(temporal.random_segment_indices(4, 8, np.random.default_rng(0)),
                                [0, 0, 1, 1, 2, 2, 3, 3])
