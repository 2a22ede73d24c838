"""The grain pipeline: shapes, repeated augmentation, checkpointable state, process sharding, mixing, eval."""
import collections

import jax
import numpy as np
import pytest

from videomae_jax import default_config
from videomae_jax.data import demo
from videomae_jax.data import pipeline
from videomae_jax.data import transforms


@pytest.fixture(scope="module")
def demo_shards(tmp_path_factory):
  return demo.build_demo_shards(str(tmp_path_factory.mktemp("demo")), num_videos_per_class=3, num_frames=20,
                                size=64)


def _config(path, *, batch_size=8, repeated_aug=4, num_frames=8, image_size=32, sources=None,
            crop_on_device=False):
  """Host crops unless asked: most tests here look at the finished views."""
  config = default_config.pretrain_config("S")
  config.batch_size = batch_size
  config.model.num_frames = num_frames
  config.model.image_size = image_size
  config.data.sources = sources or [dict(name="demo", path=path, num_videos=12, stride=2, weight=1)]
  config.data.repeated_aug = repeated_aug
  config.data.num_workers = 0
  config.data.crop_on_device = crop_on_device
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batches_have_the_documented_shapes_and_dtypes(demo_shards):
  batch = next(iter(pipeline.make_pretrain_dataset(_config(demo_shards), process_index=0, process_count=1,
                                                   seed=0)))
  assert set(batch) == {"video", "label", "source"}
  assert batch["video"].shape == (8, 8, 32, 32, 3) and batch["video"].dtype == np.uint8
  assert batch["label"].dtype == np.int32 and batch["source"].dtype == np.int32
  assert set(batch["label"].tolist()) <= {0, 1, 2, 3}
  assert (batch["source"] == 0).all()
  shapes = pipeline.batch_shapes(_config(demo_shards))
  assert shapes["video"] == ((8, 8, 32, 32, 3), np.uint8)


@pytest.mark.parametrize("crop_on_device", [False, True])
def test_restored_iterator_state_gives_the_same_next_batches(demo_shards, crop_on_device):
  dataset = pipeline.make_pretrain_dataset(_config(demo_shards, crop_on_device=crop_on_device), process_index=0,
                                           process_count=1, seed=3)
  iterator = iter(dataset)
  _take(iterator, 3)
  state = iterator.get_state()
  expected = _take(iterator, 2)
  restored = iter(dataset)
  restored.set_state(state)
  for want, got in zip(expected, _take(restored, 2)):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.slow
def test_restored_state_with_worker_processes(demo_shards):
  config = _config(demo_shards)
  dataset = pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=3, num_workers=2)
  iterator = iter(dataset)
  _take(iterator, 3)
  state = iterator.get_state()
  expected = _take(iterator, 2)
  iterator.close()
  restored = iter(dataset)
  restored.set_state(state)
  got = _take(restored, 2)
  restored.close()
  in_process = _take(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=3)), 5)
  for want, have, same in zip(expected, got, in_process[3:]):
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
      np.testing.assert_array_equal(same[key], want[key])  # Worker count does not change the stream.


def test_repeated_augmentation_gives_different_crops_of_one_clip(demo_shards):
  config = _config(demo_shards, batch_size=16, repeated_aug=4, num_frames=8, image_size=32)
  batch = next(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)))
  video = batch["video"].reshape(4, 4, 8, 32, 32, 3).astype(np.int32)
  labels = batch["label"].reshape(4, 4)
  assert (labels == labels[:, :1]).all()
  different = 0
  for clip in video:
    for r in range(1, 4):
      different += np.abs(clip[r] - clip[0]).mean() > 1
  assert different >= 9  # Nearly all views differ (two draws may coincide: 10 crop sizes x 13 offsets).


def test_multiscale_crop_boxes_follow_group_multiscale_crop():
  rng = np.random.default_rng(0)
  height, width, output = 240, 320, 224
  sizes = [240, 210, 180, 158]  # int(240 * s) for s in (1, .875, .75, .66); none within 3 px of 224.
  boxes = {transforms.multiscale_crop_box(height, width, rng, output_size=output) for _ in range(3000)}
  for x, y, w, h in boxes:
    i, j = sizes.index(h), sizes.index(w)
    assert abs(i - j) <= 1
    assert (x, y) in transforms.fixed_crop_offsets(width, height, w, h)
  assert len({(w, h) for _, _, w, h in boxes}) == 10
  # Snapping: a base within 3 px of the output size crops exactly output_size.
  x, y, w, h = transforms.multiscale_crop_box(225, 300, np.random.default_rng(1), output_size=224,
                                              scales=(1.0,))
  assert (w, h) == (224, 224)


def test_multiscale_crops_shapes_and_variation():
  clip = np.random.default_rng(0).integers(0, 255, size=(4, 60, 80, 3), dtype=np.uint8)
  crops = transforms.multiscale_crops(clip, np.random.default_rng(0), num_crops=6, output_size=24)
  assert crops.shape == (6, 4, 24, 24, 3) and crops.dtype == np.uint8
  assert len({crops[r].tobytes() for r in range(6)}) >= 5
  center = transforms.center_crop(clip, 24)
  assert center.shape == (4, 24, 24, 3)


def test_clip_indices_with_stride_and_short_videos():
  rng = np.random.default_rng(0)
  indices = transforms.random_clip_indices(100, 16, 4, rng)
  assert (np.diff(indices) == 4).all() and 0 <= indices[0] <= 100 - 61
  np.testing.assert_array_equal(transforms.random_clip_indices(10, 4, 4, rng), [0, 4, 8, 9])
  np.testing.assert_array_equal(transforms.center_clip_indices(100, 4, 2), [46, 48, 50, 52])


def test_process_sharding_partitions_the_global_stream(demo_shards):
  config = _config(demo_shards)

  def paths(process_index, process_count, n, mode):
    stream, _ = pipeline.record_stream(config, mode=mode, process_index=process_index,
                                       process_count=process_count, seed=0, global_batch=4)
    return [stream[i].get("path", "<pad>") for i in range(n)]

  whole = paths(0, 1, 40, "pretrain")
  assert paths(0, 2, 20, "pretrain") == whole[0::2]
  assert paths(1, 2, 20, "pretrain") == whole[1::2]
  # Eval: every record exactly once, disjoint between processes (12 records, padded to 12).
  first, second = paths(0, 2, 6, "eval"), paths(1, 2, 6, "eval")
  assert not set(first) & set(second)
  assert len(set(first) | set(second)) == 12


def test_eval_pass_sees_every_video_once_and_pads(demo_shards):
  config = _config(demo_shards)
  batches = list(pipeline.make_eval_dataset(config, process_index=0, process_count=1, batch_size=5))
  assert len(batches) == 3
  labels = np.concatenate([b["label"] for b in batches])
  assert (labels[12:] == -1).all() and (labels[:12] >= 0).all()
  assert sorted(collections.Counter(labels[:12].tolist()).values()) == [3, 3, 3, 3]
  assert batches[0]["video"].shape == (5, 8, 32, 32, 3)


def test_mixing_by_weight_with_per_source_stride_and_labels(demo_shards):
  sources = [dict(name="a", path=demo_shards, num_videos=12, stride=2, weight=3),
             dict(name="b", path=demo_shards, num_videos=12, stride=1, weight=1, label_map="none")]
  config = _config(demo_shards, batch_size=32, repeated_aug=1, num_frames=4, sources=sources)
  stream, options = pipeline.record_stream(config, mode="pretrain", process_index=0, process_count=1, seed=0,
                                           global_batch=32)
  assert options.strides == (2, 1)
  counts = collections.Counter(stream[i]["_source"] for i in range(400))
  assert counts[0] == 300 and counts[1] == 100
  batch = next(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)))
  assert ((batch["source"] == 1) == (batch["label"] == -1)).all()
  assert (batch["label"][batch["source"] == 0] >= 0).all()


def test_candidate_frames_for_adaptive_selection(demo_shards):
  config = _config(demo_shards, num_frames=8)
  config.data.num_candidate_frames = 12
  batch = next(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)))
  assert batch["video"].shape[1] == 12
  assert pipeline.candidate_frame_count(16) == 24
  config.data.num_candidate_frames = 9
  with pytest.raises(ValueError, match="even"):
    pipeline.num_clip_frames(config)


def test_errors_say_how_to_fix(demo_shards):
  config = _config(demo_shards, batch_size=6, repeated_aug=4)
  with pytest.raises(ValueError, match="repeated_aug"):
    pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)
  config = _config(demo_shards, sources=[dict(name="k710", path="", stride=4, weight=1)])
  with pytest.raises(ValueError, match="build_shards"):
    pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)
  with pytest.raises(NotImplementedError, match=r"\[5/8\]"):
    pipeline.make_dataset(_config(demo_shards), mode="test", process_index=0, process_count=1)


def test_global_batches_on_one_cpu_device(demo_shards):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  dataset = pipeline.make_pretrain_dataset(_config(demo_shards), process_index=0, process_count=1, seed=0)
  local = next(iter(dataset))
  batch = next(pipeline.global_batches(iter(dataset), sharding))
  assert isinstance(batch["video"], jax.Array) and batch["video"].shape == (8, 8, 32, 32, 3)
  assert batch["video"].sharding == sharding
  np.testing.assert_array_equal(np.asarray(batch["video"]), local["video"])
  normalized = jax.jit(pipeline.normalize)(batch["video"])
  expected = (local["video"] / 255.0 - np.array(transforms.IMAGENET_MEAN)) / np.array(transforms.IMAGENET_STD)
  np.testing.assert_allclose(np.asarray(normalized), expected, atol=1e-5)
  np.testing.assert_allclose(np.asarray(pipeline.denormalize(normalized)), local["video"] / 255.0, atol=1e-5)


def test_opencv_and_pil_resizes_agree(monkeypatch):
  if transforms.resize_backend() != "cv2":
    pytest.skip("OpenCV not installed: only the PIL path exists here")
  yy, xx = np.mgrid[0:60, 0:80]
  smooth = np.stack([127 + 100 * np.sin(xx / 7.0), 127 + 100 * np.cos(yy / 5.0), (xx + yy) * 1.5], -1)
  clip = np.stack([smooth, smooth[::-1]]).astype(np.uint8)
  box = (6, 4, 50, 44)
  with_cv2 = transforms.crop_resize(clip, box, 32).astype(int)
  monkeypatch.setattr(transforms, "_cv2", None)
  monkeypatch.setattr(transforms, "_cv2_checked", True)
  with_pil = transforms.crop_resize(clip, box, 32).astype(int)
  assert np.abs(with_cv2 - with_pil).mean() < 1.5


# ------------------------------------------------------------------------------------------------------------
# Crops cut on the device (config.data.crop_on_device, the pretraining default).
# ------------------------------------------------------------------------------------------------------------


def test_device_crop_batches_carry_each_clip_once_with_its_boxes(demo_shards):
  config = _config(demo_shards, batch_size=16, repeated_aug=4, crop_on_device=True)
  assert pipeline.crop_canvas(config) == (64, 64)  # From dataset.json's max_frame_size.
  batch = next(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      k: (shape, np.dtype(dtype)) for k, (shape, dtype) in pipeline.batch_shapes(config).items()}
  assert batch["video"].shape == (4, 8, 64, 64, 3) and batch["crops"].shape == (4, 4, 5)
  x, y, w, h, flip = np.moveaxis(batch["crops"], -1, 0)
  assert (x >= 0).all() and (y >= 0).all() and (x + w <= 64).all() and (y + h <= 64).all()
  assert (flip == 0).all()  # config.data.flip is False for pretraining.
  assert len({tuple(box) for box in batch["crops"].reshape(-1, 5)}) >= 8


def test_device_crops_give_the_host_views_within_one_gray_level(demo_shards):
  """Same seed, same random draws: cutting on the device reproduces the host path's views (and flips)."""
  from videomae_jax import device_crops  # pylint: disable=import-outside-toplevel
  views = {}
  for on_device in (False, True):
    config = _config(demo_shards, batch_size=16, repeated_aug=4, crop_on_device=on_device)
    config.data.flip = True
    views[on_device] = next(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=5)))
  canvas = views[True]
  assert canvas["crops"][..., 4].any() and not canvas["crops"][..., 4].all()
  cut = np.asarray(jax.jit(device_crops.crop_resize, static_argnums=2)(canvas["video"], canvas["crops"], 32))
  difference = np.abs(cut.astype(int) - views[False]["video"].astype(int))
  assert difference.max() <= 1 and difference.mean() < 0.2
  np.testing.assert_array_equal(np.repeat(canvas["label"], 4), views[False]["label"])


def test_clips_larger_than_the_canvas_are_shrunk_into_it(demo_shards):
  config = _config(demo_shards, batch_size=8, repeated_aug=2, crop_on_device=True)
  config.data.crop_canvas = (40, 48)
  batch = next(iter(pipeline.make_pretrain_dataset(config, process_index=0, process_count=1, seed=0)))
  assert batch["video"].shape == (4, 8, 40, 48, 3)
  x, y, w, h, _ = np.moveaxis(batch["crops"], -1, 0)
  assert (x + w <= 40).all() and (y + h <= 40).all()   # 64x64 frames become 40x40 ...
  assert (batch["video"][:, :, :, 40:] == 0).all()      # ... and the rest of the canvas is zero.
  assert batch["video"][:, :, :, :40].std() > 10


def test_canvas_errors_say_how_to_fix(demo_shards, tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  old = tmp_path / "old_shards"
  shutil.copytree(demo_shards, old)
  description = json.loads((old / "dataset.json").read_text())
  del description["max_frame_size"]
  (old / "dataset.json").write_text(json.dumps(description))
  config = _config(str(old), crop_on_device=True)
  with pytest.raises(ValueError, match=r"crop_canvas=\(H, W\)"):
    pipeline.crop_canvas(config)
  assert pipeline.crop_canvas(config, default=(10, 20)) == (10, 20)
  config.data.crop_canvas = (64, 80)
  assert pipeline.crop_canvas(config) == (64, 80)


def test_a_record_with_a_wrong_frame_size_is_still_placed(demo_shards):
  from videomae_jax.data import shards  # pylint: disable=import-outside-toplevel
  record = dict(shards.read_all_records(demo_shards)[0], _source=0)
  options = pipeline.ClipOptions(mode="pretrain", clip_length=4, image_size=32, strides=(2,), num_crops=2,
                                 crop_canvas=(64, 64))
  augment = pipeline._DecodeAndAugment(options)  # pylint: disable=protected-access
  right = augment.random_map([record], np.random.default_rng(0))
  wrong = augment.random_map([dict(record, height=48, width=40)], np.random.default_rng(0))
  for key in right:
    np.testing.assert_array_equal(wrong[key], right[key])
