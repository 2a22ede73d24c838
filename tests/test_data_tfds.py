"""A TFDS data set with a video feature (ArrayRecord) as a pipeline source, built here: no downloads."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from videomae_jax import default_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from videomae_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from videomae_jax.data import tfds_source  # pylint: disable=g-import-not-at-top,wrong-import-position


class TinyVideos(tfds.core.GeneratorBasedBuilder):
  """Six videos of 8-13 frames, 32x40, two classes; the label is visible in the frame brightness."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "video": tfds.features.Video(shape=(None, 32, 40, 3), encoding_format="png"),
        "label": tfds.features.ClassLabel(names=["dark", "bright"]),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(6):
      label = i % 2
      video = np.full((8 + i, 32, 40, 3), 40 + 160 * label, np.uint8)
      video[:, :, :, 0] = np.arange(8 + i, dtype=np.uint8)[:, None, None] * 10  # red = frame index x 10
      yield i, {"video": video, "label": label}


# TFDS looks for the builder's code through its package when the module name is dotted ('tests.test_...'),
# which needs the optional `importlib_resources` package; a one-part module name skips that lookup.
TinyVideos.__module__ = "tiny_videos_builder"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = TinyVideos(data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return data_dir


def test_tfds_source_feeds_the_pipeline(tfds_dir):
  config = default_config.pretrain_config("S")
  config.batch_size = 4
  config.model.num_frames = 4
  config.model.image_size = 16
  config.data.repeated_aug = 2
  config.data.num_workers = 0
  config.data.crop_on_device = False
  config.data.sources = [dict(name="tiny", tfds="tiny_videos", split="train", data_dir=tfds_dir, stride=2,
                              weight=1)]
  batch = next(iter(pipeline.make_dataset(config, mode="pretrain", process_index=0, process_count=1, seed=0)))
  assert batch["video"].shape == (4, 4, 16, 16, 3)
  green = batch["video"][..., 1].mean(axis=(1, 2, 3))
  np.testing.assert_allclose(green, np.where(batch["label"] == 1, 200, 40), atol=2)
  red = batch["video"][:, :, 8, 8, 0].astype(int)
  assert (np.diff(red, axis=1) == 20).all()  # Stride 2 in frames: red steps by 2 x 10.


def test_tfds_source_with_crops_on_the_device(tfds_dir):
  config = default_config.pretrain_config("S")
  config.batch_size, config.model.num_frames, config.model.image_size = 4, 4, 16
  config.data.repeated_aug, config.data.num_workers = 2, 0
  config.data.sources = [dict(name="tiny", tfds="tiny_videos", split="train", data_dir=tfds_dir, stride=2,
                              weight=1)]
  assert pipeline.crop_canvas(config) == (32, 40)  # The Video feature's static frame size.
  batch = next(iter(pipeline.make_dataset(config, mode="pretrain", process_index=0, process_count=1, seed=0)))
  assert batch["video"].shape == (2, 4, 32, 40, 3) and batch["crops"].shape == (2, 2, 6)
  green = batch["video"][..., 1].mean(axis=(1, 2, 3))
  np.testing.assert_allclose(green, np.where(batch["label"] == 1, 200, 40), atol=2)


def test_only_the_needed_frames_are_decoded_from_the_example(tfds_dir):
  source, info = tfds_source.open_tfds_source("tiny_videos", split="train", data_dir=tfds_dir)
  assert len(source) == 6 and tfds_source.label_names(info, "label") == ["dark", "bright"]
  record = tfds_source.example_to_record(source[3], video_key="video", label_key="label", source_name="tiny")
  assert record["num_frames"] == len(record["frames"]) and record["label"] in (0, 1)
  assert isinstance(record["frames"][0], bytes)  # Still encoded: decode_clip decodes only the clip's frames.
