"""TFDS data sets with a video feature as pipeline sources (`tfds.data_source`, ArrayRecord file format).

A TFDS `tfds.features.Video` is stored as one encoded image (PNG or JPEG) per frame. We open the split with
`deserialize_method=DESERIALIZE_NO_DECODE`, which hands back the tf.train.Example with the encoded frames, and
decode only the frames a clip needs (videomae_jax.data.decoding), as for our own JPEG shards. Decoding every
frame of every video (the default TFDS path) would cost T_video / T_clip times more.

Config: `dict(name='my_videos', tfds='my_videos:1.0.0', split='train', data_dir='/data/tfds', weight=1,
stride=4, video_key='video', label_key='label')` in config.data.sources. The data set must already be prepared
with file_format='array_record' (nothing is downloaded: download=False).
"""
from __future__ import annotations

import importlib.util
from typing import Any

from videomae_jax.errors import ConfigError


def _tfds():
  """tensorflow_datasets, or a ConfigError that says which extra to install.

  TFDS and TensorFlow are not in the core install: tfds reads ArrayRecord without TensorFlow, but its Video
  feature imports TensorFlow as soon as the data set's features are loaded (tfds 4.9.10).
  """
  missing = [m for m in ("tensorflow_datasets", "tensorflow") if importlib.util.find_spec(m) is None]
  if missing:
    raise ConfigError(f"config.data.sources has a TFDS source, which needs {' and '.join(missing)} (not in the "
                      "core install): pip install 'videomae_jax[tfds]'. Our own shard folders (data_prep."
                      "build_shards) need neither.")
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  return tfds


def open_tfds_source(name: str, *, split: str = "train", data_dir: str | None = None):
  """(random-access source of tf.train.Example, DatasetInfo) for a prepared ArrayRecord TFDS data set."""
  tfds = _tfds()
  source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                            deserialize_method=tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE)
  return source, source.dataset_info


def frame_size(name: str, *, data_dir: str | None = None, video_key: str = "video") -> tuple[int, int] | None:
  """(height, width) of a TFDS video feature with a static frame size, else the data set's metadata
  'max_frame_size' (written by data_prep.tfds_video_folder, whose videos keep their own sizes), else None."""
  tfds = _tfds()
  info = tfds.builder(name, data_dir=data_dir or None).info
  if video_key not in info.features.keys():
    return None
  shape = tuple(info.features[video_key].shape)  # (frames, height, width, channels)
  if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
    return int(shape[1]), int(shape[2])
  metadata = info.metadata
  if metadata is not None and "max_frame_size" in metadata.keys() and metadata["max_frame_size"]:
    height, width = metadata["max_frame_size"]
    return int(height), int(width)
  return None


def label_names(info, label_key: str) -> list[str]:
  """Class names of a ClassLabel feature (index = label), or [] when there is none."""
  feature = info.features[label_key] if label_key and label_key in info.features.keys() else None
  names = getattr(feature, "names", None)
  return list(names) if names else []


def example_to_record(example: Any, *, video_key: str, label_key: str, source_name: str) -> dict[str, Any]:
  """A tf.train.Example of a TFDS video data set -> a shard-style record (format 'frames')."""
  features = example.features.feature
  if video_key not in features:
    raise KeyError(f"TFDS example has no feature {video_key!r} (has {sorted(features.keys())}): set "
                   "video_key in the source config.")
  frames = list(features[video_key].bytes_list.value)
  label = -1
  if label_key and label_key in features:
    values = features[label_key].int64_list.value
    label = int(values[0]) if len(values) else -1
  return dict(format="frames", frames=frames, num_frames=len(frames), label=label, source=source_name)
