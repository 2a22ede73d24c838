"""The grain pipeline: shapes, repeated augmentation, checkpointable state, process sharding, mixing, test views."""
import collections
import os

import jax
import numpy as np
import pytest

from videomae_jax import default_config
from videomae_jax import normalization
from videomae_jax.data import demo
from videomae_jax.data import pipeline
from videomae_jax.data import temporal
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
  config.eval.num_workers = 0
  config.data.crop_on_device = crop_on_device
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _pretrain(config, **kwargs):
  return pipeline.make_dataset(config, mode="pretrain", process_index=0, process_count=1, **kwargs)


def test_batches_have_the_documented_shapes_and_dtypes(demo_shards):
  batch = next(iter(_pretrain(_config(demo_shards), seed=0)))
  assert set(batch) == {"video", "label", "source"}
  assert batch["video"].shape == (8, 8, 32, 32, 3) and batch["video"].dtype == np.uint8
  assert batch["label"].dtype == np.int32 and batch["source"].dtype == np.int32
  assert set(batch["label"].tolist()) <= {0, 1, 2, 3}
  assert (batch["source"] == 0).all()
  assert (batch["video"].shape, batch["video"].dtype) == ((8, 8, 32, 32, 3), np.uint8)


@pytest.mark.parametrize("crop_on_device", [False, True])
def test_restored_iterator_state_gives_the_same_next_batches(demo_shards, crop_on_device):
  dataset = _pretrain(_config(demo_shards, crop_on_device=crop_on_device), seed=3)
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
  dataset = _pretrain(config, seed=3, num_workers=2)
  iterator = iter(dataset)
  _take(iterator, 3)
  state = iterator.get_state()
  expected = _take(iterator, 2)
  iterator.close()
  restored = iter(dataset)
  restored.set_state(state)
  got = _take(restored, 2)
  restored.close()
  in_process = _take(iter(_pretrain(config, seed=3)), 5)
  for want, have, same in zip(expected, got, in_process[3:]):
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
      np.testing.assert_array_equal(same[key], want[key])  # Worker count does not change the stream.


def test_repeated_augmentation_gives_different_crops_of_one_clip(demo_shards):
  config = _config(demo_shards, batch_size=16, repeated_aug=4, num_frames=8, image_size=32)
  batch = next(iter(_pretrain(config, seed=0)))
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
  center = transforms.short_side_crops(clip, 24, 1)[0]
  assert center.shape == (4, 24, 24, 3)


def test_clip_indices_with_stride_and_short_videos():
  rng = np.random.default_rng(0)
  indices = temporal.random_clip_indices(100, 16, 4, rng)
  assert (np.diff(indices) == 4).all() and 0 <= indices[0] <= 100 - 61
  np.testing.assert_array_equal(temporal.random_clip_indices(10, 4, 4, rng), [0, 4, 8, 9])
  np.testing.assert_array_equal(temporal.center_clip_indices(100, 4, 2), [46, 48, 50, 52])


def test_process_sharding_partitions_the_global_stream(demo_shards):
  config = _config(demo_shards)
  config.eval.path = demo_shards

  def paths(process_index, process_count, n, mode):
    stream = pipeline.record_stream(config, mode=mode, process_index=process_index, process_count=process_count,
                                    seed=0, global_batch=4)
    return [stream[i].get("path", "<pad>") for i in range(n)]

  whole = paths(0, 1, 40, "pretrain")
  assert paths(0, 2, 20, "pretrain") == whole[0::2]
  assert paths(1, 2, 20, "pretrain") == whole[1::2]
  # Test: every record exactly once, disjoint between processes (12 records, padded to 12).
  first, second = paths(0, 2, 6, "test"), paths(1, 2, 6, "test")
  assert not set(first) & set(second)
  assert len(set(first) | set(second)) == 12


def test_eval_pass_sees_every_video_once_and_pads(demo_shards):
  config = _config(demo_shards)
  config.eval.update(path=demo_shards, num_clips=1, num_crops=1)
  batches = list(pipeline.make_dataset(config, mode="test", process_index=0, process_count=1, batch_size=5))
  assert len(batches) == 3
  labels = np.concatenate([b["label"] for b in batches])
  assert (labels[12:] == -1).all() and (labels[:12] >= 0).all()
  assert sorted(collections.Counter(labels[:12].tolist()).values()) == [3, 3, 3, 3]
  assert batches[0]["video"].shape == (5, 8, 32, 32, 3)


def test_mixing_by_weight_with_per_source_stride_and_labels(demo_shards):
  sources = [dict(name="a", path=demo_shards, num_videos=12, stride=2, weight=3),
             dict(name="b", path=demo_shards, num_videos=12, stride=1, weight=1, label_map="none")]
  config = _config(demo_shards, batch_size=32, repeated_aug=1, num_frames=4, sources=sources)
  stream = pipeline.record_stream(config, mode="pretrain", process_index=0, process_count=1, seed=0,
                                  global_batch=32)
  counts = collections.Counter(stream[i]["_source"] for i in range(400))
  strides = {stream[i]["_source"]: stream[i]["_stride"] for i in range(400)}
  assert (strides[0], strides[1]) == (2, 1)
  assert counts[0] == 300 and counts[1] == 100
  batch = next(iter(_pretrain(config, seed=0)))
  assert ((batch["source"] == 1) == (batch["label"] == -1)).all()
  assert (batch["label"][batch["source"] == 0] >= 0).all()


def test_candidate_frames_for_adaptive_selection(demo_shards):
  config = _config(demo_shards, num_frames=8)
  config.data.num_candidate_frames = 12
  batch = next(iter(_pretrain(config, seed=0)))
  assert batch["video"].shape[1] == 12
  assert pipeline.candidate_frame_count(16) == 24
  config.data.num_candidate_frames = 9
  with pytest.raises(ValueError, match="even"):
    pipeline.num_clip_frames(config)


def test_errors_say_how_to_fix(demo_shards):
  config = _config(demo_shards, batch_size=6, repeated_aug=4)
  with pytest.raises(ValueError, match="repeated_aug"):
    _pretrain(config, seed=0)
  config = _config(demo_shards, sources=[dict(name="k710", path="", stride=4, weight=1)])
  with pytest.raises(ValueError, match="build_shards"):
    _pretrain(config, seed=0)
  with pytest.raises(ValueError, match="'pretrain', 'finetune', 'distill', 'test'"):
    pipeline.make_dataset(_config(demo_shards), mode="eval", process_index=0, process_count=1)


def test_batches_become_global_arrays_and_normalize_on_device(demo_shards):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  local = next(iter(_pretrain(_config(demo_shards), seed=0)))
  batch = {key: jax.make_array_from_process_local_data(sharding, value) for key, value in local.items()}  # As train.py.
  assert isinstance(batch["video"], jax.Array) and batch["video"].shape == (8, 8, 32, 32, 3)
  assert batch["video"].sharding == sharding
  np.testing.assert_array_equal(np.asarray(batch["video"]), local["video"])
  normalized = jax.jit(normalization.normalize)(batch["video"])
  expected = ((local["video"] / 255.0 - np.array(normalization.IMAGENET_MEAN)) /
              np.array(normalization.IMAGENET_STD))
  np.testing.assert_allclose(np.asarray(normalized), expected, atol=1e-5)
  np.testing.assert_allclose(np.asarray(normalization.denormalize(normalized)), local["video"] / 255.0, atol=1e-5)


def test_opencv_and_numpy_resizes_agree(monkeypatch):
  if transforms.resize_backend() != "cv2":
    pytest.skip("OpenCV not installed: only the numpy path exists here")
  yy, xx = np.mgrid[0:60, 0:80]
  smooth = np.stack([127 + 100 * np.sin(xx / 7.0), 127 + 100 * np.cos(yy / 5.0), (xx + yy) * 1.5], -1)
  clip = np.stack([smooth, smooth[::-1]]).astype(np.uint8)
  box = (6, 4, 50, 44)
  with_cv2 = transforms.crop_resize(clip, box, 32).astype(int)
  monkeypatch.setattr(transforms, "cv2", None)
  with_numpy = transforms.crop_resize(clip, box, 32).astype(int)
  assert np.abs(with_cv2 - with_numpy).mean() < 1.5


# ------------------------------------------------------------------------------------------------------------
# Crops cut on the device (config.data.crop_on_device, the pretraining default).
# ------------------------------------------------------------------------------------------------------------


def test_device_crop_batches_carry_each_clip_once_with_its_boxes(demo_shards):
  config = _config(demo_shards, batch_size=16, repeated_aug=4, crop_on_device=True)
  assert pipeline.crop_canvas(config) == (64, 64)  # From dataset.json's max_frame_size.
  batch = next(iter(_pretrain(config, seed=0)))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "video": ((4, 8, 64, 64, 3), np.uint8), "crops": ((4, 4, 6), np.int32), "label": ((4,), np.int32),
      "source": ((4,), np.int32)}
  assert batch["video"].shape == (4, 8, 64, 64, 3) and batch["crops"].shape == (4, 4, 6)
  x, y, w, h, flip, transposed = np.moveaxis(batch["crops"], -1, 0)
  assert (x >= 0).all() and (y >= 0).all() and (x + w <= 64).all() and (y + h <= 64).all()
  assert (flip == 0).all() and (transposed == 0).all()  # no flips in pretraining; square clips
  assert len({tuple(box) for box in batch["crops"].reshape(-1, 6)}) >= 8


def test_device_crops_give_the_host_views_within_one_gray_level(demo_shards):
  """Same seed, same random draws: cutting on the device reproduces the host path's views (and flips)."""
  from videomae_jax import device_crops  # pylint: disable=import-outside-toplevel
  views = {}
  for on_device in (False, True):
    config = _config(demo_shards, batch_size=16, repeated_aug=4, crop_on_device=on_device)
    config.data.flip = True
    views[on_device] = next(iter(_pretrain(config, seed=5)))
  canvas = views[True]
  assert canvas["crops"][..., 4].any() and not canvas["crops"][..., 4].all()
  cut = np.asarray(jax.jit(device_crops.crop_resize, static_argnums=2)(canvas["video"], canvas["crops"], 32))
  difference = np.abs(cut.astype(int) - views[False]["video"].astype(int))
  assert difference.max() <= 1 and difference.mean() < 0.2
  np.testing.assert_array_equal(np.repeat(canvas["label"], 4), views[False]["label"])


def test_clips_larger_than_the_canvas_are_shrunk_into_it(demo_shards):
  config = _config(demo_shards, batch_size=8, repeated_aug=2, crop_on_device=True)
  config.data.crop_canvas = (40, 48)
  batch = next(iter(_pretrain(config, seed=0)))
  assert batch["video"].shape == (4, 8, 40, 48, 3)
  x, y, w, h, _, _ = np.moveaxis(batch["crops"], -1, 0)
  assert (x + w <= 40).all() and (y + h <= 40).all()   # 64x64 frames become 40x40 ...
  assert (batch["video"][:, :, :, 40:] == 0).all()      # ... and the rest of the canvas is zero.
  assert batch["video"][:, :, :, :40].std() > 10


def test_canvas_errors_say_how_to_fix(demo_shards, tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  old = tmp_path / "old_shards"
  shutil.copytree(demo_shards, old)
  description = json.loads((old / "dataset.json").read_text())
  del description["max_frame_size"], description["frame_sizes"]
  (old / "dataset.json").write_text(json.dumps(description))
  config = _config(str(old), crop_on_device=True)
  with pytest.raises(ValueError, match=r"crop_canvas=\(H, W\)"):
    pipeline.crop_canvas(config)
  assert pipeline.crop_canvas(config, default=(10, 20)) == (10, 20)
  config.data.crop_canvas = (64, 80)
  assert pipeline.crop_canvas(config) == (64, 80)


def test_a_record_with_a_wrong_frame_size_is_still_placed(demo_shards):
  from videomae_jax.data import shards  # pylint: disable=import-outside-toplevel
  record = dict(shards.read_all_records(demo_shards)[0], _source=0, _stride=2)
  views = pipeline.PretrainViews(clip_length=4, image_size=32, repeats=2, crop_canvas=(64, 64))
  right = views.random_map([record], np.random.default_rng(0))
  wrong = views.random_map([dict(record, height=48, width=40)], np.random.default_rng(0))
  for key in right:
    np.testing.assert_array_equal(wrong[key], right[key])


# ------------------------------------------------------------------------------------------------------------
# Fine-tuning and test streams on a tiny labeled set.
# ------------------------------------------------------------------------------------------------------------


def write_labeled_shards(folder, num_videos=5, num_classes=3, frames=12, height=20, width=28):
  """A shard folder of `num_videos` JPEG-frame videos of random pixels, labels i % num_classes."""
  from videomae_jax.data import encoding, shards  # pylint: disable=import-outside-toplevel
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
      format_version=1, labels=[f"class{c}" for c in range(num_classes)], shards=[dict(file=name)]))
  return folder


def _tiny_classifier_config(shard_dir):
  config = default_config.finetune_config("custom")
  config.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=8, num_frames=4, image_size=16,
                           num_classes=3))
  config.data.sources = [dict(name="tiny", path=shard_dir, stride=2, weight=1)]
  config.data.num_workers = 0
  config.eval.update(dict(path=shard_dir, num_clips=2, num_crops=3, stride=2, num_workers=0))
  return config


def test_finetune_dataset_batches_repeated_augmentations_with_labels(tmp_path):
  config = _tiny_classifier_config(write_labeled_shards(str(tmp_path / "shards")))
  config.batch_size = 8
  finetune = lambda: pipeline.make_dataset(config, mode="finetune", process_index=0, process_count=1, seed=3)
  batches = [next(iter(finetune())) for _ in range(2)]
  batch = batches[0]
  assert batch["video"].shape == (8, 4, 16, 16, 3) and batch["video"].dtype == np.uint8
  labels = batch["label"]
  np.testing.assert_array_equal(labels[0::2], labels[1::2])          # the 2 views of a clip are neighbours
  assert set(labels.tolist()) <= {0, 1, 2}
  assert not np.array_equal(batch["video"][0], batch["video"][1])   # independent augmentations
  np.testing.assert_array_equal(batches[0]["video"], batches[1]["video"])   # same seed, same batch
  config.data.sampling = "segment"
  batch = next(iter(finetune()))
  assert batch["video"].shape == (8, 4, 16, 16, 3)


@pytest.mark.parametrize("process_count", [1, 2])
def test_test_mode_gives_every_video_once_with_its_views(tmp_path, process_count):
  from videomae_jax.data import shards  # pylint: disable=import-outside-toplevel
  config = _tiny_classifier_config(write_labeled_shards(str(tmp_path / "shards")))
  config.eval.batch_size = 2  # Videos per global batch: 5 videos -> 3 batches, the last one padded.
  records = shards.read_all_records(config.eval.path)
  videos, labels = {}, {}
  for process in range(process_count):
    batches = list(pipeline.make_dataset(config, mode="test", process_index=process, process_count=process_count))
    assert len(batches) == 3
    for j, batch in enumerate(batches):
      local = 2 // process_count
      assert batch["video"].shape == (local * 6, 4, 16, 16, 3) and batch["label"].shape == (local,)
      for i in range(local):
        index = (j * local + i) * process_count + process  # Global position: strided over the processes.
        videos[index], labels[index] = batch["video"][i * 6:(i + 1) * 6], int(batch["label"][i])
  assert sorted(videos) == list(range(6))
  for index, record in enumerate(records):
    assert labels[index] == record["label"]
    np.testing.assert_array_equal(videos[index], pipeline.test_views(record, config))
  assert labels[5] == -1 and not videos[5].any()


@pytest.mark.parametrize("backend", ["numpy", "cv2"])
def test_test_views_are_the_evaluate_views(tmp_path, monkeypatch, backend):
  """The views evaluate.record_views made: 'uniform' clips, the short side resized (torch bilinear), crops along
  the long side. Exact with the numpy resize it used; OpenCV's within one gray level."""
  from videomae_jax.data import decoding, shards  # pylint: disable=import-outside-toplevel
  config = _tiny_classifier_config(write_labeled_shards(str(tmp_path / "shards")))
  config.eval.short_side = 18
  record = shards.read_all_records(config.eval.path)[1]
  # 12 frames, 4 at stride 2, 2 clips: span 8, starts 0 and 4. Frames 20x28 -> 18x25; crops 16 at top 1, left
  # int(i * 9 / 2) = 0, 4, 9.
  frames = decoding.decode_clip(record, range(12))
  monkeypatch.setattr(transforms, "cv2", None)
  old = []
  for start in (0, 4):
    resized = transforms.resize(frames[start:start + 8:2], 18, 25)
    old.extend(resized[:, 1:17, left:left + 16] for left in (0, 4, 9))
  old = np.stack(old).astype(int)
  if backend == "cv2":
    monkeypatch.undo()
    if transforms.cv2 is None:
      pytest.skip("OpenCV not installed")
  views = pipeline.test_views(record, config).astype(int)
  assert views.shape == (6, 4, 16, 16, 3)
  if backend == "numpy":
    np.testing.assert_array_equal(views, old)
  else:
    assert np.abs(views - old).max() <= 1


def test_a_tfds_source_without_tensorflow_names_the_extra(monkeypatch):
  import importlib.util  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import tfds_source  # pylint: disable=import-outside-toplevel
  from videomae_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
  with pytest.raises(ConfigError, match=r"needs tensorflow .*pip install 'videomae_jax\[tfds\]'"):
    tfds_source.frame_size("tiny_videos", data_dir="/nonexistent")


def test_decoded_video_cache_gives_the_same_batches_and_decodes_each_video_once(tmp_path):
  from videomae_jax.data import video_cache  # pylint: disable=import-outside-toplevel
  folder = demo.build_demo_shards(str(tmp_path / "demo"), num_videos_per_class=2, num_frames=16, size=32, seed=0)
  batches = {}
  for cache_mb in (0, 16):
    config = default_config.pretrain_config("S")
    config.batch_size, config.model.num_frames, config.model.image_size = 4, 4, 16
    config.data.num_workers, config.data.decoded_cache_mb, config.data.repeated_aug = 0, cache_mb, 1
    config.data.crop_on_device = False
    config.data.sources = [dict(name="demo", path=folder, stride=2, weight=1)]
    video_cache.clear()
    iterator = iter(pipeline.make_dataset(config, mode="pretrain", process_index=0, process_count=1, seed=3))
    batches[cache_mb] = [next(iterator)["video"] for _ in range(8)]  # 32 clips of 8 videos: 4 epochs
    iterator.close()
  for uncached, cached in zip(batches[0], batches[16]):
    np.testing.assert_array_equal(uncached, cached)
  assert video_cache.stats() == dict(videos=8, bytes=8 * 16 * 32 * 32 * 3, decoded=8)  # each video decoded once
  video_cache.clear()


def test_decoded_video_cache_keeps_the_budget_and_skips_videos_too_large_for_it():
  from videomae_jax.data import video_cache  # pylint: disable=import-outside-toplevel
  video_cache.clear()
  budget = 8 * 10 * 4 * 4 * 3  # eight videos of 10 frames of 4x4
  decode = lambda path: (lambda every: np.full((len(every), 4, 4, 3), ord(path[0]), np.uint8))  # noqa: E731
  for name in "abcdefghij":
    record = dict(path=name, num_frames=10, height=4, width=4, _source=0)
    clip = video_cache.clip(record, np.array([2, 5]), budget, decode(name))
    assert clip.shape == (2, 4, 4, 3) and (clip == ord(name)).all()
  assert video_cache.stats() == dict(videos=8, bytes=budget, decoded=10)  # 'a' and 'b' went
  big = dict(path="z", num_frames=20, height=4, width=4, _source=0)  # a quarter of the budget: more than 1/8
  assert video_cache.clip(big, np.array([0]), budget, decode("z")) is None
  video_cache.clear()


def test_portrait_clips_ride_transposed_in_a_landscape_canvas_and_give_the_host_views(tmp_path):
  """Two landscape (32x48) and two portrait (48x32) videos: the canvas is 32x48, not 48x48, and cutting on the
  device still gives the host path's views (and flips) in each clip's own orientation."""
  from videomae_jax import device_crops  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import encoding, shards  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  records = []
  for i, (height, width) in enumerate([(32, 48), (48, 32), (32, 48), (48, 32)]):
    frames = np.repeat(rng.integers(0, 256, (1, height // 4, width // 4, 3), dtype=np.uint8), 4, axis=1)
    frames = np.repeat(np.repeat(frames, 4, axis=2), 12, axis=0)  # 12 frames of smooth-ish blocks
    frames[:, :4, :4] = 255  # a bright top-left corner: a transposed clip must not read it elsewhere
    records.append(dict(format="mp4", video=encoding.encode_mp4(frames, 10), num_frames=12, fps=10.0,
                        height=height, width=width, label=0, label_name="", source="mixed", path=f"v{i}.mp4"))
  folder = str(tmp_path / "mixed")
  shards.write_shard_folder(folder, "mixed", records, [])
  views = {}
  for on_device in (False, True):
    config = _config(folder, batch_size=8, repeated_aug=2, num_frames=4, image_size=16, crop_on_device=on_device)
    config.data.sources = [dict(name="mixed", path=folder, stride=2, weight=1)]
    config.data.flip = True
    if on_device:
      assert pipeline.crop_canvas(config) == (32, 48)  # was (48, 48): the largest height x the largest width
      from videomae_jax import resolve  # pylint: disable=import-outside-toplevel
      config = resolve.resolve(config)
      assert config.data.transpose_to_canvas == "yes" and tuple(config.data.crop_canvas) == (32, 48)
    views[on_device] = next(iter(_pretrain(config, seed=1)))
  canvas = views[True]
  assert canvas["video"].shape == (4, 4, 32, 48, 3)
  transposed = canvas["crops"][..., 5]
  assert transposed.any() and not transposed.all()
  cut = np.asarray(jax.jit(device_crops.crop_resize, static_argnums=(2, 3))(canvas["video"], canvas["crops"], 16,
                                                                          True))
  difference = np.abs(cut.astype(int) - views[False]["video"].astype(int))
  assert difference.max() <= 1 and difference.mean() < 0.2
