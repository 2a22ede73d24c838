"""The grain input pipeline: video shards (or TFDS) -> uint8 batches of views, for every mode.

  dataset = pipeline.make_dataset(config, mode="pretrain")   # 'pretrain' | 'finetune' | 'distill' | 'test'
  iterator = iter(dataset)        # a grain DatasetIterator: get_state() / set_state() checkpoint it
  batch = next(iterator)          # dict of numpy arrays; normalize on the device (videomae_jax.normalization)

Batches travel as uint8 (a quarter of float32's bytes through the host and PCIe). Per process:
  'pretrain', 'finetune', 'distill'  B = config.batch_size // process_count rows, counting R = data.repeated_aug
        views per decoded clip (row i * R + r is view r of clip i; 'distill' is 'finetune' that also takes
        unlabeled records):
          video   uint8 [B, T, S, S, 3]  (T = model.num_frames, or data.num_candidate_frames when set; S =
                  model.image_size)
          label   int32 [B]   (-1: an unlabeled source)
          source  int32 [B]   (index into config.data.sources)
        Pretraining with data.crop_on_device ships each decoded clip once in a canvas of the shards' largest short
        x long side (portrait clips transposed where the data mix orientations) plus its R crop boxes: video
        [B / R, T, Hc, Wc, 3], crops int32 [B / R, R, 6] (x, y, w, h, flip, transposed),
        label / source [B / R]; the train step cuts and resizes them (videomae_jax.device_crops) and gets the host
        path's views for the same seed.
  'test'  b = eval.batch_size // process_count videos, each with V = eval.num_clips x eval.num_crops views:
          video   uint8 [b * V, T, S, S, 3]  (video i at rows i * V ... i * V + V - 1, clip-major)
          label   int32 [b]   (-1: padding, whose views are zero, or an unlabeled video)
          valid   bool [b]    (False: padding)
        A video without a label is an error unless eval.require_labels is False (held-out reconstruction).

The stream (index-based grain MapDatasets: independent of the number of workers, and the iterator state is a few
integers):
  record_stream   training: per source ArrayRecordDataSource(shards) | tfds.data_source .seed().shuffle() (a new
                  permutation every epoch) .repeat() .map(parse, relabel, tag source and stride), mixed over
                  sources by weight (MapDataset.mix); test: the shard folder eval.path in order, padded to whole
                  global batches. Then [process_index::process_count]: each process its own disjoint part.
  .batch(records per batch, batch_fn=list)
  .random_map(views)   one element transform per mode (PretrainViews, FinetuneViews, TestViews): decode the
                       needed frames once, make the views straight into the batch buffer. Seeded by (seed,
                       process, batch index), so a restored iterator sees the same crops.
  .to_iter_dataset() .mp_prefetch(num_workers)   decoding in worker processes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import grain
import numpy as np

from videomae_jax.augment.spatial import FinetuneTrainTransform
from videomae_jax.data import decoding
from videomae_jax.data import label_maps
from videomae_jax.data import shards as shards_lib
from videomae_jax.data import temporal
from videomae_jax.data import transforms
from videomae_jax.data import video_cache
from videomae_jax.errors import ConfigError

_MIN_SHUFFLE_LENGTH = 4096
# The canvas assumed when no shard description says otherwise (shape-only uses: `inspect`, `plan`): a 16:9
# video at build_shards' default --short_side=320.
DEFAULT_CROP_CANVAS = (320, 568)


# ------------------------------------------------------------------------------------------------------------
# Sources.
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceSpec:
  """One entry of config.data.sources, resolved."""
  index: int
  name: str
  stride: int
  weight: float
  num_records: int
  labels: tuple[str, ...]


def _as_dict(source: Any) -> dict[str, Any]:
  return dict(source.to_dict() if hasattr(source, "to_dict") else source)


def open_sources(sources: Sequence[Any], default_label_map: str = "") -> list[tuple[Any, SourceSpec, "_ToRecord"]]:
  """Opens each source of config.data.sources: [(random-access data source, spec, record transform)].

  A source dict has name, weight, stride, and either `path` (a shard folder from data_prep.build_shards) or
  `tfds` (a prepared ArrayRecord TFDS data set; with split, data_dir, video_key, label_key). Optional
  `label_map`: '' keeps the shards' own labels; 'k400' | 'k600' | 'k700' | 'k710' or a file of class names
  re-indexes them by class name (label_maps.py: K710 merge); 'none' makes the source unlabeled. Sources
  without a label_map use `default_label_map` (config.data.label_set).
  """
  opened = []
  for index, source in enumerate(sources):
    source = _as_dict(source)
    name = source.get("name") or f"source{index}"
    weight = float(source.get("weight", 1.0))
    stride = int(source.get("stride", 4))
    if stride < 1:
      raise ConfigError(f"config.data.sources[{index}] ({name}): stride must be >= 1, got {stride}.")
    if source.get("tfds"):
      from videomae_jax.data import tfds_source  # pylint: disable=import-outside-toplevel
      data_source, info = tfds_source.open_tfds_source(source["tfds"], split=source.get("split", "train"),
                                                       data_dir=source.get("data_dir"))
      labels = tfds_source.label_names(info, source.get("label_key", "label"))
      kind = "tfds"
    elif source.get("path"):
      paths = shards_lib.shard_paths(source["path"])
      labels = shards_lib.read_description(source["path"]).get("labels") or []
      data_source = grain.sources.ArrayRecordDataSource(paths)
      kind = "shards"
    else:
      raise ConfigError(
          f"config.data.sources[{index}] ({name}) has neither a 'path' nor a 'tfds' name: build its shards "
          "with `python -m data_prep.build_shards --input=VIDEOS --output_dir=DIR --source_name=NAME` and set "
          f"config.data.sources[{index}].path=DIR (or give weight 0 to leave it out).")
    if len(data_source) == 0:
      raise ValueError(f"config.data.sources[{index}] ({name}) has no records.")
    label_map = source.get("label_map", default_label_map) or ""
    lookup = None
    if label_map == "none":
      lookup = np.zeros((0,), np.int32)
    elif label_map:
      if not labels:
        raise ValueError(f"config.data.sources[{index}] ({name}): label_map={label_map!r} needs class names, "
                         "but the source has none (build the shards from class folders or with --label_names).")
      lookup = label_maps.label_lookup(labels, label_map)
    spec = SourceSpec(index=index, name=name, stride=stride, weight=weight, num_records=len(data_source),
                      labels=tuple(labels))
    record_transform = _ToRecord(index, stride, kind, lookup, source.get("video_key", "video"),
                                 source.get("label_key", "label"), name)
    opened.append((data_source, spec, record_transform))
  return opened


class _ToRecord(grain.transforms.Map):
  """Raw source element -> record dict with '_source', '_stride' (its frame stride) and the (re-indexed) 'label'."""

  def __init__(self, source_index: int, stride: int, kind: str, label_lookup: np.ndarray | None, video_key: str,
               label_key: str, source_name: str):
    self._source_index = source_index
    self._stride = stride
    self._kind = kind
    self._label_lookup = label_lookup
    self._video_key = video_key
    self._label_key = label_key
    self._source_name = source_name

  def map(self, element):
    if self._kind == "tfds":
      from videomae_jax.data import tfds_source  # pylint: disable=import-outside-toplevel
      record = tfds_source.example_to_record(element, video_key=self._video_key, label_key=self._label_key,
                                             source_name=self._source_name)
    else:
      record = shards_lib.parse_record(element)
    label = int(record.get("label", -1))
    if self._label_lookup is not None:
      label = int(self._label_lookup[label]) if 0 <= label < len(self._label_lookup) else -1
    record["label"] = label
    record["_source"] = self._source_index
    record["_stride"] = self._stride
    return record


# ------------------------------------------------------------------------------------------------------------
# Views: one element transform per mode (grain workers). Each turns a list of records into one local batch.
# ------------------------------------------------------------------------------------------------------------


def _decode(record, indices, backend: str, out: np.ndarray | None = None, cache_bytes: int = 0) -> np.ndarray:
  try:
    if cache_bytes:
      cached = video_cache.clip(record, indices, cache_bytes,
                                lambda every: decoding.decode_clip(record, every, backend), out=out)
      if cached is not None:
        return cached
    return decoding.decode_clip(record, indices, backend, out=out)
  except decoding.ClipShapeError:
    raise
  except Exception as e:
    raise RuntimeError(f"Could not decode record {record.get('path', '?')!r} of source "
                       f"{record.get('_source', '?')}: {e}") from e


def _train_indices(record, clip_length: int, sampling: str, rng: np.random.Generator) -> np.ndarray:
  return temporal.clip_indices(sampling, int(record["num_frames"]), clip_length, stride=record["_stride"],
                               rng=rng)[0]


def _check_sampling(sampling: str, valid: Sequence[str], key: str) -> None:
  if sampling not in valid:
    raise ConfigError(f"config.{key}={sampling!r}; use one of {tuple(valid)}.")


@dataclasses.dataclass(frozen=True)
class PretrainViews(grain.transforms.RandomMap):
  """B / R records -> R MultiScaleCrops of one clip each, resized on the host or boxes for the device."""
  clip_length: int                # frames per clip (model.num_frames or data.num_candidate_frames)
  image_size: int
  repeats: int = 1                # data.repeated_aug
  scales: tuple[float, ...] = transforms.SCALES
  flip: bool = False
  # (height, width) of the canvas the clips are placed in when the crops are cut on the device; (0, 0): host.
  crop_canvas: tuple[int, int] = (0, 0)
  sampling: str = "random"
  backend: str = "auto"           # MP4 decoder for shard records
  cache_bytes: int = 0            # data.decoded_cache_mb (videomae_jax.data.video_cache)
  transpose: bool = False         # data.transpose_to_canvas: clips of the other orientation ride transposed
  seed_salt = ()

  def __post_init__(self):
    _check_sampling(self.sampling, temporal.TRAIN_SAMPLINGS, "data.sampling")

  @classmethod
  def from_config(cls, config) -> "PretrainViews":
    data = config.data
    return cls(clip_length=num_clip_frames(config), image_size=int(config.model.image_size),
               repeats=int(data.repeated_aug), scales=tuple(float(s) for s in data.multiscale_crop_scales),
               flip=bool(data.flip), crop_canvas=crop_canvas(config) if data.crop_on_device else (0, 0),
               sampling=str(data.sampling), backend=str(data.video_decoder),
               cache_bytes=int(data.decoded_cache_mb) << 20, transpose=data.transpose_to_canvas == "yes")

  def random_map(self, records, rng: np.random.Generator):
    if all(self.crop_canvas):
      return self._canvas_batch(records, rng)
    # Crops resized straight into the batch buffer: one allocation per batch and no copy to stack per-clip arrays
    # (that copy cost as much as a third of the decoding).
    repeats, size = self.repeats, self.image_size
    video = np.empty((len(records) * repeats, self.clip_length, size, size, 3), np.uint8)
    for i, record in enumerate(records):
      clip = _decode(record, _train_indices(record, self.clip_length, self.sampling, rng), self.backend,
                     cache_bytes=self.cache_bytes)
      transforms.multiscale_crops(clip, rng, num_crops=repeats, output_size=size, scales=self.scales,
                                  flip=self.flip, out=video[i * repeats:(i + 1) * repeats])
    return dict(video=video, **_labels(records, repeats))

  def _canvas_batch(self, records, rng: np.random.Generator):
    """The random draws are the host path's, in the same order (clip start, then per view its box and flip
    coin), so both paths give the same views for the same seed. With `transpose`, a clip of the other
    orientation than the canvas's is placed transposed (videomae_jax.device_crops)."""
    canvas_h, canvas_w = self.crop_canvas
    video = np.empty((len(records), self.clip_length, canvas_h, canvas_w, 3), np.uint8)
    crops = np.empty((len(records), self.repeats, 6), np.int32)  # device_crops.CROP_FIELDS
    for i, record in enumerate(records):
      indices = _train_indices(record, self.clip_length, self.sampling, rng)
      height, width = int(record.get("height") or 0), int(record.get("width") or 0)
      placed = transposed = False
      if 0 < height <= canvas_h and 0 < width <= canvas_w:
        try:
          # Straight into the batch.
          _decode(record, indices, self.backend, out=video[i, :, :height, :width], cache_bytes=self.cache_bytes)
          transforms.zero_padding(video[i], height, width)
          placed = True
        except decoding.ClipShapeError:
          pass  # The record's height / width are not its frames' size: place the decoded frames below.
      if not placed:
        # Size unknown (TFDS), the other orientation, larger than the canvas, or misreported: decode, then place
        # (transposed when the clip's orientation is not the canvas's, shrunk when it is still too large).
        clip = _decode(record, indices, self.backend, cache_bytes=self.cache_bytes)
        height, width = clip.shape[1:3]
        fits = height <= canvas_h and width <= canvas_w
        transposed = self.transpose and not fits and (width <= canvas_h and height <= canvas_w or
                                                      (height > width) != (canvas_h > canvas_w))
        height, width = transforms.fit_into(clip, video[i], transpose=transposed)
        if transposed:
          height, width = width, height  # The clip's own orientation, in which its boxes are drawn.
      for r in range(self.repeats):
        box = transforms.multiscale_crop_box(height, width, rng, output_size=self.image_size, scales=self.scales)
        crops[i, r] = (*box, int(self.flip and bool(rng.integers(2))), int(transposed))
    return dict(video=video, crops=crops, **_labels(records, 1))


@dataclasses.dataclass(frozen=True)
class FinetuneViews(grain.transforms.RandomMap):
  """B / R labeled records -> R independent FinetuneTrainTransforms (RandAugment -> random resized crop -> flip)
  of one decoded clip each. Random erasing and mixup happen on the device in the train step."""
  transform: FinetuneTrainTransform
  clip_length: int
  repeats: int = 1
  sampling: str = "random"        # data.sampling: 'segment' for SSv2
  backend: str = "auto"
  cache_bytes: int = 0            # data.decoded_cache_mb (videomae_jax.data.video_cache)
  # Fine-tuning draws from its own seed sequence, so its augmentation does not repeat pretraining's.
  seed_salt = (5,)
  labels_required = True

  def __post_init__(self):
    _check_sampling(self.sampling, temporal.TRAIN_SAMPLINGS, "data.sampling")

  @classmethod
  def from_config(cls, config) -> "FinetuneViews":
    data = config.data
    return cls(transform=FinetuneTrainTransform.from_config(config), clip_length=num_clip_frames(config),
               repeats=int(data.repeated_aug), sampling=str(data.sampling), backend=str(data.video_decoder),
               cache_bytes=int(data.decoded_cache_mb) << 20)

  def random_map(self, records, rng: np.random.Generator):
    repeats, size = self.repeats, self.transform.size
    video = np.empty((len(records) * repeats, self.clip_length, size, size, 3), np.uint8)
    for i, record in enumerate(records):
      if self.labels_required and int(record["label"]) < 0:
        raise ValueError(f"record {record.get('path', '?')!r} of source {record['_source']} has no label: "
                         "fine-tuning needs labeled shards (or a config.data.label_set that covers its class); "
                         "distillation (config.task='distill') takes unlabeled ones.")
      clip = _decode(record, _train_indices(record, self.clip_length, self.sampling, rng), self.backend,
                     cache_bytes=self.cache_bytes)
      for r in range(repeats):
        self.transform(clip, rng, out=video[i * repeats + r])
    return dict(video=video, **_labels(records, repeats))


@dataclasses.dataclass(frozen=True)
class DistillViews(FinetuneViews):
  """Fine-tuning's views of labeled and unlabeled records (label -1): a distillation student learns the teacher's
  outputs, so videos without labels count too. The same seed sequence as fine-tuning, so on the same records and
  seed a distillation run and a fine-tuning run see the same views."""
  labels_required = False


@dataclasses.dataclass(frozen=True)
class TestViews(grain.transforms.RandomMap):
  """b records -> every video's V = num_clips x num_crops views (no random draws), padding records as zeros."""
  num_frames: int
  image_size: int
  num_clips: int = 1
  num_crops: int = 1
  sampling: str = "uniform"       # eval.sampling: 'uniform' (Kinetics) | 'segment' (SSv2)
  stride: int = 4                 # frame stride of a 'uniform' window
  short_side: int = 0             # 0: image_size
  backend: str = "auto"
  require_labels: bool = True     # eval.require_labels: a video without a label is an error (classification)
  repeats = 1                     # eval.batch_size counts videos, not views
  seed_salt = ()

  def __post_init__(self):
    _check_sampling(self.sampling, temporal.TEST_SAMPLINGS, "eval.sampling")

  @classmethod
  def from_config(cls, config) -> "TestViews":
    ev = config.eval
    return cls(num_frames=int(config.model.num_frames), image_size=int(config.model.image_size),
               num_clips=int(ev.num_clips), num_crops=int(ev.num_crops), sampling=str(ev.sampling),
               stride=int(ev.stride), short_side=int(ev.short_side or 0), backend=str(config.data.video_decoder),
               require_labels=bool(ev.require_labels))

  @property
  def num_views(self) -> int:
    return self.num_clips * self.num_crops

  def views(self, record, out: np.ndarray | None = None) -> np.ndarray:
    """One record's views: uint8 [V, T, S, S, 3], clip-major (into `out` when given)."""
    size, crops = self.image_size, self.num_crops
    if out is None:
      out = np.empty((self.num_views, self.num_frames, size, size, 3), np.uint8)
    clips = temporal.clip_indices(self.sampling, int(record["num_frames"]), self.num_frames, stride=self.stride,
                                  num_clips=self.num_clips)
    frames = _decode(record, np.concatenate(clips), self.backend)  # Every needed frame decoded once.
    for c in range(self.num_clips):
      transforms.short_side_crops(frames[c * self.num_frames:(c + 1) * self.num_frames], size, crops,
                                  self.short_side, out=out[c * crops:(c + 1) * crops])
    return out

  def random_map(self, records, rng: np.random.Generator):
    del rng
    per = self.num_views
    video = np.zeros((len(records) * per, self.num_frames, self.image_size, self.image_size, 3), np.uint8)
    label = np.full((len(records),), -1, np.int32)
    valid = np.zeros((len(records),), bool)
    for i, record in enumerate(records):
      if record.get("_pad"):
        continue
      if int(record.get("label", -1)) < 0 and self.require_labels:
        raise ValueError(f"video {record.get('path', i)!r} has no label; the test needs labeled shards "
                         "(config.eval.path).")
      label[i], valid[i] = int(record.get("label", -1)), True
      self.views(record, out=video[i * per:(i + 1) * per])
    return dict(video=video, label=label, valid=valid)


def _labels(records, repeats: int) -> dict[str, np.ndarray]:
  """'label' and 'source' [len(records) * repeats] int32, each record's repeated over its views."""
  return dict(label=np.repeat(np.asarray([r["label"] for r in records], np.int32), repeats),
              source=np.repeat(np.asarray([r["_source"] for r in records], np.int32), repeats))


# The one place a mode picks its behaviour.
_VIEWS = {"pretrain": PretrainViews, "finetune": FinetuneViews, "distill": DistillViews, "test": TestViews}
MODES = tuple(_VIEWS)


def test_views(record, config) -> np.ndarray:
  """The test views of one record: uint8 [V, T, S, S, 3], exactly what mode='test' batches hold for it.

  Reads config.eval.{num_clips, num_crops, sampling, stride, short_side}, config.model.{num_frames, image_size}
  and config.data.video_decoder. `record` needs 'format', 'num_frames' and 'video' (MP4 bytes) or 'frames'.
  """
  return TestViews.from_config(config).views(record)


class _LookupOrPad(grain.transforms.Map):
  """Index -> element of `dataset`, or a padding marker past its end (test: whole last batches)."""

  def __init__(self, dataset: grain.MapDataset, length: int):
    self._dataset = dataset
    self._length = length

  def map(self, index):
    return self._dataset[index] if index < self._length else {"_pad": True}


def num_clip_frames(config) -> int:
  """Frames per clip in the batches: data.num_candidate_frames when set (MATS adaptive selection), else
  model.num_frames."""
  candidates = int(config.data.num_candidate_frames or 0)
  if candidates:
    if candidates % 2 or candidates < config.model.num_frames:
      raise ConfigError(f"config.data.num_candidate_frames={candidates} must be even and >= model.num_frames="
                       f"{config.model.num_frames} (e.g. {candidate_frame_count(config.model.num_frames)}).")
    return candidates
  return int(config.model.num_frames)


def crop_canvas(config, *, default: tuple[int, int] | None = None) -> tuple[int, int]:
  """(height, width) of the canvas for crops cut on the device.

  config.data.crop_canvas when set (both > 0); else the largest short side x the largest long side over the
  weighted sources (landscape: portrait clips are placed transposed, videomae_jax.device_crops), from their
  shard descriptions (`frame_sizes`, else `max_frame_size`, written by data_prep.build_shards) or a TFDS video
  feature's static shape. Clips larger than the canvas are shrunk to fit on the host (aspect kept); smaller
  ones are zero padded. Where the sizes cannot be read, returns `default` if given, else raises.
  """
  canvas = tuple(int(v) for v in (config.data.crop_canvas or (0, 0)))
  if len(canvas) != 2:
    raise ConfigError(f"config.data.crop_canvas must be (height, width), got {canvas}.")
  if all(v > 0 for v in canvas):
    return canvas
  shorts, longs = [], []
  for index, source in enumerate(config.data.sources):
    source = _as_dict(source)
    if float(source.get("weight", 1.0)) <= 0:
      continue
    size, why = None, ""
    try:
      if source.get("tfds"):
        from videomae_jax.data import tfds_source  # pylint: disable=import-outside-toplevel
        size = tfds_source.frame_size(source["tfds"], data_dir=source.get("data_dir"),
                                      video_key=source.get("video_key", "video"))
        why = "its TFDS video feature has no static frame size"
      elif source.get("path"):
        description = shards_lib.read_description(source["path"])
        size = _landscape_size(description.get("frame_sizes")) or description.get("max_frame_size")
        why = "its dataset.json has no frame_sizes (shards from an older build_shards)"
      else:
        why = "it has no path yet"
    except (FileNotFoundError, OSError) as e:
      if default is not None:
        return tuple(default)
      # Not a canvas question: the source itself is missing, and setting a canvas would not help.
      raise ConfigError(f"config.data.sources[{index}] ({source.get('name')}): {e}") from e
    if not size:
      if default is not None:
        return tuple(default)
      raise ConfigError(f"config.data.crop_on_device needs the canvas size, and config.data.sources[{index}] "
                       f"({source.get('name')}) does not give it: {why}. Set config.data.crop_canvas=(H, W) "
                       "(e.g. (320, 568) for 16:9 at --short_side=320) or config.data.crop_on_device=False.")
    shorts.append(min(int(v) for v in size))
    longs.append(max(int(v) for v in size))
  if not shorts:
    raise ConfigError("config.data.sources lists no source with weight > 0.")
  return max(shorts), max(longs)


def mixed_orientation(config) -> bool:
  """Whether the weighted shard sources hold both portrait and landscape clips (dataset.json's frame_sizes):
  what config.data.transpose_to_canvas='auto' becomes."""
  portrait = landscape = False
  for source in config.data.sources:
    source = _as_dict(source)
    if float(source.get("weight", 1.0)) <= 0 or not source.get("path"):
      continue
    try:
      sizes = shards_lib.read_description(source["path"]).get("frame_sizes") or {}
    except (FileNotFoundError, OSError):
      continue
    for size in sizes:
      height, width = (int(v) for v in size.split("x"))
      portrait, landscape = portrait or height > width, landscape or width > height
  return portrait and landscape


def _landscape_size(frame_sizes) -> list[int] | None:
  """[largest short side, largest long side] over dataset.json's {'HxW': count}."""
  dims = [sorted(int(v) for v in size.split("x")) for size in frame_sizes or {}]
  return [max(d[0] for d in dims), max(d[1] for d in dims)] if dims else None


def label_count(config) -> list[tuple[int, str, int]]:
  """(index, name, number of classes its labels can take) of each weighted shard source of config.data.sources,
  after its label map: the merged set's size, or the shards' own class names, or one more than their largest
  integer label (dataset.json's label_counts). Read from the descriptions, without opening the shards."""
  counts = []
  for index, source in enumerate(config.data.sources):
    source = _as_dict(source)
    if float(source.get("weight", 1.0)) <= 0 or not source.get("path"):
      continue
    label_map = source.get("label_map", str(config.data.label_set or "")) or ""
    if label_map == "none":
      continue
    description = shards_lib.read_description(source["path"])
    if label_map:
      count = len(label_maps.label_names(label_map))
    elif description.get("labels"):
      count = len(description["labels"])
    else:
      labels = [int(k) for k in (description.get("label_counts") or {}) if int(k) >= 0]
      count = max(labels) + 1 if labels else 0
    counts.append((index, source.get("name") or f"source{index}", count))
  return counts


def candidate_frame_count(num_frames: int, ratio: float = 1.5) -> int:
  """About `ratio` x num_frames candidate frames, rounded to an even number (whole tubelets of 2)."""
  return max(num_frames, 2 * int(round(num_frames * ratio / 2)))


# ------------------------------------------------------------------------------------------------------------
# The stream and the entry point.
# ------------------------------------------------------------------------------------------------------------


def record_stream(config, *, mode: str, process_index: int, process_count: int, seed: int,
                  global_batch: int) -> grain.MapDataset:
  """This process's stream of record dicts before decoding (with '_source' and '_stride'; record['path'] names
  the video).

  Training ('pretrain', 'finetune', 'distill'): the infinite shuffled global stream of config.data.sources mixed by
  weight, element k of process p being global element k * process_count + p. 'test': every record of
  config.eval.path (its first eval.max_videos when > 0) once, in order, padded ({'_pad': True}) to a multiple of
  `global_batch`, strided over the processes the same way.
  """
  if mode == "test":
    path = config.eval.path
    if not path:
      raise ConfigError("config.eval.path is empty: set it to the labeled shard folder of the test split.")
    (data_source, _, to_record), = open_sources([dict(name="test", path=path)])
    dataset = grain.MapDataset.source(data_source).map(to_record)
    max_videos = int(config.eval.max_videos)
    total = min(len(dataset), max_videos) if max_videos > 0 else len(dataset)
    padded = math.ceil(total / global_batch) * global_batch
    return grain.MapDataset.range(padded).map(_LookupOrPad(dataset, total))[process_index::process_count]
  sources = [s for s in config.data.sources if float(_as_dict(s).get("weight", 1.0)) > 0]
  if not sources:
    raise ConfigError("config.data.sources lists no source with weight > 0.")
  opened = open_sources(sources, str(config.data.label_set or ""))
  seeds = np.random.SeedSequence(seed).generate_state(len(opened))
  per_source = []
  for i, (data_source, _, to_record) in enumerate(opened):
    dataset = grain.MapDataset.source(data_source)
    if len(dataset) < _MIN_SHUFFLE_LENGTH:
      # grain's index_shuffle costs milliseconds per element on tiny ranges (~20 ms at 6 elements, 5 us at
      # 10k): shuffle a few copies of a small source together instead (each record still once per copy).
      dataset = dataset.repeat(math.ceil(_MIN_SHUFFLE_LENGTH / len(dataset)))
    per_source.append(dataset.seed(int(seeds[i])).shuffle().repeat().map(to_record))
  dataset = (per_source[0] if len(per_source) == 1 else
             grain.MapDataset.mix(per_source, [spec.weight for _, spec, _ in opened]))
  return dataset[process_index::process_count]


def make_dataset(config, *, mode: str, process_index: int | None = None, process_count: int | None = None,
                 seed: int | None = None, batch_size: int | None = None,
                 num_workers: int | None = None) -> grain.IterDataset:
  """This process's batches for `mode` (MODES) as a checkpointable grain IterDataset (the module docstring has
  the layouts). Training repeats forever; 'test' is one pass.

  Reads config.seed, config.model.{num_frames, image_size}, config.data.* (sources, label_set, repeated_aug,
  sampling, multiscale_crop_scales, flip, crop_on_device, crop_canvas, num_candidate_frames, video_decoder,
  num_workers, worker_buffer_size), config.augment.* ('finetune', 'distill') and config.eval.* ('test').
  process_index / process_count default to jax.process_index() / jax.process_count(); seed to config.seed;
  batch_size to config.batch_size (training: global, counting repeated views) or config.eval.batch_size ('test':
  videos over all processes); num_workers to data.num_workers or eval.num_workers (0: decode in this process).
  """
  if mode not in _VIEWS:
    raise ValueError(f"mode={mode!r}: use one of {MODES}.")
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
  test = mode == "test"
  batch_key = "config.eval.batch_size" if test else "config.batch_size"
  batch_size = int(batch_size if batch_size is not None else config.eval.batch_size if test else config.batch_size)
  workers = (config.eval if test else config.data).num_workers
  num_workers = int(workers if num_workers is None else num_workers)
  seed = int(config.seed if seed is None else seed)
  views = _VIEWS[mode].from_config(config)
  if batch_size % process_count:
    raise ConfigError(f"{batch_key}={batch_size} is not divisible by the {process_count} processes.")
  local = batch_size // process_count
  if local % views.repeats:
    raise ConfigError(f"The per-process batch {local} ({batch_key}={batch_size} / {process_count} processes) is "
                      f"not divisible by config.data.repeated_aug={views.repeats}.")

  records = record_stream(config, mode=mode, process_index=process_index, process_count=process_count, seed=seed,
                          global_batch=batch_size)
  # Records are batched first (a list), then decoded per batch, so views are made straight into the batch.
  views_seed = int(np.random.SeedSequence([seed, process_index, *views.seed_salt]).generate_state(1)[0])
  dataset = records.batch(local // views.repeats, drop_remainder=True, batch_fn=list).random_map(views,
                                                                                               seed=views_seed)
  buffer_size = int(config.data.worker_buffer_size)
  # One thread per worker: batches are the unit of work, and the parallelism is in the worker processes.
  # worker_buffer_size=0 computes each batch on demand in the calling thread (benchmarks, debugging).
  iter_dataset = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1 if buffer_size > 0 else 0, prefetch_buffer_size=buffer_size))
  if num_workers > 0:
    from absl import flags  # pylint: disable=import-outside-toplevel
    if not flags.FLAGS.is_parsed():
      # grain's worker processes read absl flags; outside an absl app (tests, notebooks) use their defaults.
      flags.FLAGS.mark_as_parsed()
    iter_dataset = iter_dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=max(1, buffer_size)))
  return iter_dataset

