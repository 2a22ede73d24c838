"""The grain input pipeline: video shards (or TFDS) -> uint8 clip batches -> global jax.Arrays.

  dataset = pipeline.make_pretrain_dataset(config, process_index=jax.process_index(),
                                           process_count=jax.process_count(), seed=config.seed)
  iterator = iter(dataset)                     # a grain DatasetIterator: get_state() / set_state() checkpoint it
  for batch in pipeline.global_batches(iterator, NamedSharding(mesh, P(("data", "fsdp")))):
    video = pipeline.normalize(batch["video"])  # inside the jitted step: uint8 -> ImageNet-normalized float

Each local batch is a dict of numpy arrays, B = config.batch_size // process_count (counting repeated
augmentations):
  video   uint8 [B, T, S, S, 3]  (NTHWC; T = model.num_frames, or data.num_candidate_frames when set;
                                  S = model.image_size). Normalize on device with `normalize` (1/4 the bytes
                                  of float32 through the host and PCIe).
  label   int32 [B]  (-1: unlabeled source, or padding in eval)
  source  int32 [B]  (index into config.data.sources; -1: eval padding)

Pretraining stream, built from index-based grain MapDatasets (so it does not depend on the number of workers,
and the iterator state is a few integers):
  per source: ArrayRecordDataSource(shards) | tfds.data_source  .seed().shuffle()  (a new global permutation
      every epoch).repeat()  .map(parse record, map its label, tag the source)
  MapDataset.mix(sources, weights)              deterministic interleaving in proportion to the weights
  [process_index::process_count]                 each process its own disjoint part of the global stream
  .batch(B // R, batch_fn=list)                  lists of records
  .random_map(decode + augment)                  per record: decode one clip (its source's frame stride),
                                                 R = repeated_aug independent MultiScaleCrops resized straight
                                                 into the batch -> [B, T, S, S, 3]; a clip's R views are
                                                 neighbours. With config.data.crop_on_device (the pretraining
                                                 default) the clip is decoded straight into a canvas and only
                                                 the R boxes are drawn: video [B / R, T, Hc, Wc, 3] + crops
                                                 [B / R, R, 5]; the train step cuts and resizes them
                                                 (videomae_jax.device_crops), same views for the same seed
  .to_iter_dataset() .mp_prefetch(num_workers)   decoding in worker processes

The random_map is seeded by (seed, process_index, batch index), so a restored iterator sees the same crops.

Modes: 'pretrain' (above), 'eval' (one center-cropped, temporally centered clip per video, in order, every
video once per epoch; the last batch padded with label -1), 'finetune' (issue [5/8]: the same record stream
with videomae_jax.augment's RandAugment / random resized crop, see videomae_jax.augment.input). 'test'
(multi-clip x multi-crop views) is videomae_jax.evaluate's.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np

from videomae_jax.data import decoding
from videomae_jax.data import label_maps
from videomae_jax.data import shards as shards_lib
from videomae_jax.data import transforms

MODES = ("pretrain", "eval", "finetune", "test")
_MIN_SHUFFLE_LENGTH = 4096


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
      raise ValueError(f"config.data.sources[{index}] ({name}): stride must be >= 1, got {stride}.")
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
      raise ValueError(
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
    record_transform = _ToRecord(index, kind, lookup, source.get("video_key", "video"),
                                 source.get("label_key", "label"), name)
    opened.append((data_source, spec, record_transform))
  return opened


class _ToRecord(grain.transforms.Map):
  """Raw source element -> record dict with '_source' and the (re-indexed) 'label'."""

  def __init__(self, source_index: int, kind: str, label_lookup: np.ndarray | None, video_key: str,
               label_key: str, source_name: str):
    self._source_index = source_index
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
    return record


# ------------------------------------------------------------------------------------------------------------
# Decoding and augmentation (grain workers).
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClipOptions:
  """What one element of the pipeline decodes and produces."""
  mode: str                       # 'pretrain' | 'eval'
  clip_length: int                # frames per clip (model.num_frames or data.num_candidate_frames)
  image_size: int                 # output height = width
  strides: tuple[int, ...]        # frame stride per source index
  num_crops: int = 1              # repeated augmentation (pretrain)
  scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
  flip: bool = False
  backend: str = "auto"           # MP4 decoder for shard records
  # Pretraining crops cut on the device (videomae_jax.device_crops): the batch holds each decoded clip once in
  # a canvas of this (height, width) plus its R boxes. (0, 0): crops resized on the host.
  crop_canvas: tuple[int, int] = (0, 0)


class _DecodeAndAugment(grain.transforms.RandomMap):
  """A list of B // R records -> the local batch {'video': uint8 [B, T, S, S, 3], 'label', 'source': [B]}.

  Works on whole batches so that crops are resized straight into the batch buffer: one allocation per batch
  and no copy to stack per-clip arrays (that copy cost as much as a third of the decoding). Row i * R + r is
  view r of clip i: the R views of one decoded clip are neighbours.
  """

  def __init__(self, options: ClipOptions):
    self._options = options

  def random_map(self, records, rng: np.random.Generator):
    options = self._options
    if options.mode == "pretrain" and all(options.crop_canvas):
      return self._canvas_batch(records, rng)
    crops, size = options.num_crops, options.image_size
    batch = len(records) * crops
    video = np.empty((batch, options.clip_length, size, size, 3), np.uint8)
    label = np.empty((batch,), np.int32)
    source_index = np.empty((batch,), np.int32)
    for i, record in enumerate(records):
      rows = slice(i * crops, (i + 1) * crops)
      if record.get("_pad"):
        video[rows], label[rows], source_index[rows] = 0, -1, -1
        continue
      source = record["_source"]
      label[rows], source_index[rows] = record["label"], source
      clip = self._decode(record, self._clip_indices(record, rng))
      if options.mode == "pretrain":
        transforms.multiscale_crops(clip, rng, num_crops=crops, output_size=size, scales=options.scales,
                                    flip=options.flip, out=video[rows])
      else:
        # TODO(issue [5/8]): fine-tuning augmentation (RandAugment, random erasing) and multi-view test crops.
        transforms.center_crop(clip, size, out=video[i])
    return dict(video=video, label=label, source=source_index)

  def _canvas_batch(self, records, rng: np.random.Generator):
    """Crops on the device: {'video': uint8 [B / R, T, Hc, Wc, 3], 'crops': int32 [B / R, R, 5], 'label',
    'source': [B / R]}. The random draws are the host path's, in the same order (clip start, then per view
    its box and flip coin), so both paths give the same views for the same seed."""
    options = self._options
    canvas_h, canvas_w = options.crop_canvas
    num_clips = len(records)
    video = np.empty((num_clips, options.clip_length, canvas_h, canvas_w, 3), np.uint8)
    crops = np.empty((num_clips, options.num_crops, 5), np.int32)
    label = np.empty((num_clips,), np.int32)
    source_index = np.empty((num_clips,), np.int32)
    for i, record in enumerate(records):
      label[i], source_index[i] = record["label"], record["_source"]
      indices = self._clip_indices(record, rng)
      height, width = int(record.get("height") or 0), int(record.get("width") or 0)
      placed = False
      if 0 < height <= canvas_h and 0 < width <= canvas_w:
        try:
          # Decode straight into the batch: no per-clip array, no copy.
          self._decode(record, indices, out=video[i, :, :height, :width])
          transforms.zero_padding(video[i], height, width)
          placed = True
        except _SizeMismatch:
          pass  # The record's height / width are not its frames' size: place the decoded frames below.
      if not placed:
        # Size unknown (TFDS), larger than the canvas, or misreported: decode, then place (shrunk if needed).
        height, width = transforms.fit_into(self._decode(record, indices), video[i])
      for r in range(options.num_crops):
        x, y, crop_w, crop_h = transforms.multiscale_crop_box(height, width, rng, output_size=options.image_size,
                                                             scales=options.scales)
        flip = options.flip and bool(rng.integers(2))
        crops[i, r] = (x, y, crop_w, crop_h, int(flip))
    return dict(video=video, crops=crops, label=label, source=source_index)

  def _clip_indices(self, record, rng) -> np.ndarray:
    options = self._options
    stride = options.strides[record["_source"]]
    num_frames = int(record["num_frames"])
    if options.mode == "pretrain":
      return transforms.random_clip_indices(num_frames, options.clip_length, stride, rng)
    return transforms.center_clip_indices(num_frames, options.clip_length, stride)

  def _decode(self, record, indices, out: np.ndarray | None = None) -> np.ndarray:
    try:
      return decoding.decode_clip(record, indices, self._options.backend, out=out)
    except decoding.ClipShapeError as e:
      raise _SizeMismatch(str(e)) from e
    except Exception as e:
      raise RuntimeError(f"Could not decode record {record.get('path', '?')!r} of source "
                         f"{record['_source']}: {e}") from e


class _SizeMismatch(Exception):
  """decode_clip's frames do not have the shape of the `out` slot they were meant for."""


class _LookupOrPad(grain.transforms.Map):
  """Index -> element of `dataset`, or a padding marker past its end (eval: full last batches)."""

  def __init__(self, dataset: grain.MapDataset, length: int):
    self._dataset = dataset
    self._length = length

  def map(self, index):
    return self._dataset[index] if index < self._length else {"_pad": True}


# ------------------------------------------------------------------------------------------------------------
# Public entry points.
# ------------------------------------------------------------------------------------------------------------


def num_clip_frames(config) -> int:
  """Frames per clip in the batches: data.num_candidate_frames when set (MATS adaptive selection), else
  model.num_frames."""
  candidates = int(config.data.get("num_candidate_frames", 0) or 0)
  if candidates:
    if candidates % 2 or candidates < config.model.num_frames:
      raise ValueError(f"config.data.num_candidate_frames={candidates} must be even and >= model.num_frames="
                       f"{config.model.num_frames} (e.g. {candidate_frame_count(config.model.num_frames)}).")
    return candidates
  return int(config.model.num_frames)


# The canvas assumed when no shard description says otherwise (shape-only uses: `inspect`, `plan`): a 16:9
# video at build_shards' default --short_side=320.
DEFAULT_CROP_CANVAS = (320, 568)


def device_crops_per_clip(config, mode: str = "pretrain") -> int:
  """R (views per decoded clip) when pretraining crops are cut on the device (config.data.crop_on_device),
  else 0. Only pretraining: fine-tuning's RandAugment and the eval views stay on the host."""
  if mode != "pretrain" or not bool(config.data.get("crop_on_device", False)):
    return 0
  return int(config.data.get("repeated_aug", 1))


def crop_canvas(config, *, default: tuple[int, int] | None = None) -> tuple[int, int]:
  """(height, width) of the canvas for crops cut on the device.

  config.data.crop_canvas when set (both > 0); else the largest frame height and width over the weighted
  sources, from their shard descriptions (`max_frame_size`, written by data_prep.build_shards) or a TFDS video
  feature's static shape. Clips larger than the canvas are shrunk to fit on the host (aspect kept); smaller
  ones are zero padded. Where the sizes cannot be read, returns `default` if given, else raises.
  """
  canvas = tuple(int(v) for v in (config.data.get("crop_canvas") or (0, 0)))
  if len(canvas) != 2:
    raise ValueError(f"config.data.crop_canvas must be (height, width), got {canvas}.")
  if all(v > 0 for v in canvas):
    return canvas
  heights, widths = [], []
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
        size = shards_lib.read_description(source["path"]).get("max_frame_size")
        why = "its dataset.json has no max_frame_size (shards from an older build_shards)"
      else:
        why = "it has no path yet"
    except (FileNotFoundError, OSError) as e:
      why = f"its description cannot be read ({e})"
    if not size:
      if default is not None:
        return tuple(default)
      raise ValueError(f"config.data.crop_on_device needs the canvas size, and config.data.sources[{index}] "
                       f"({source.get('name')}) does not give it: {why}. Set config.data.crop_canvas=(H, W) "
                       "(e.g. (320, 568) for 16:9 at --short_side=320) or config.data.crop_on_device=False.")
    heights.append(int(size[0]))
    widths.append(int(size[1]))
  if not heights:
    raise ValueError("config.data.sources lists no source with weight > 0.")
  return max(heights), max(widths)


def candidate_frame_count(num_frames: int, ratio: float = 1.5) -> int:
  """About `ratio` x num_frames candidate frames, rounded to an even number (whole tubelets of 2)."""
  return max(num_frames, 2 * int(round(num_frames * ratio / 2)))


def local_batch_size(batch_size: int, process_count: int, repeats: int = 1) -> int:
  """Per-process batch (clips counting repeats); checks divisibility with a message that says how to fix it."""
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} is not divisible by the {process_count} processes.")
  local = batch_size // process_count
  if local % repeats:
    raise ValueError(f"The per-process batch {local} (batch_size={batch_size} / {process_count} processes) is "
                     f"not divisible by data.repeated_aug={repeats}.")
  return local


def record_stream(config, *, mode: str, process_index: int, process_count: int, seed: int, global_batch: int,
                  num_epochs: int | None = None) -> tuple[grain.MapDataset, ClipOptions]:
  """This process's stream of record dicts before decoding (with '_source'), and the clip options.

  Pretrain: the infinite shuffled, mixed global stream, element k of process p being global element
  k * process_count + p. Eval: every record once in source order, padded ({'_pad': True}) to a multiple of
  `global_batch`, strided the same way. Exposed for tests and tools (record['path'] names the video).
  """
  data = config.data
  repeats = int(data.get("repeated_aug", 1)) if mode == "pretrain" else 1
  sources = [s for s in data.sources if float(_as_dict(s).get("weight", 1.0)) > 0]
  if not sources:
    raise ValueError("config.data.sources lists no source with weight > 0.")
  opened = open_sources(sources, str(data.get("label_set", "") or ""))
  options = ClipOptions(
      mode="pretrain" if mode == "pretrain" else "eval",
      clip_length=num_clip_frames(config),
      image_size=int(config.model.image_size),
      strides=tuple(spec.stride for _, spec, _ in opened),
      num_crops=repeats,
      scales=tuple(float(s) for s in data.get("multiscale_crop_scales", (1.0, 0.875, 0.75, 0.66))),
      flip=bool(data.get("flip", False)),
      backend=str(data.get("video_decoder", "auto")),
      crop_canvas=crop_canvas(config) if device_crops_per_clip(config, mode) else (0, 0),
  )
  seeds = np.random.SeedSequence(seed).generate_state(len(opened))

  if mode == "pretrain":
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
    dataset = dataset[process_index::process_count]
  else:
    per_source = [grain.MapDataset.source(data_source).map(to_record) for data_source, _, to_record in opened]
    dataset = per_source[0] if len(per_source) == 1 else grain.MapDataset.concatenate(per_source)
    total = len(dataset)
    padded = math.ceil(total / global_batch) * global_batch
    dataset = grain.MapDataset.range(padded).map(_LookupOrPad(dataset, total))
    dataset = dataset[process_index::process_count]
    if num_epochs is not None and num_epochs > 1:
      dataset = dataset.repeat(num_epochs)
  return dataset, options


def make_dataset(config, *, mode: str = "pretrain", process_index: int | None = None,
                 process_count: int | None = None, seed: int | None = None, batch_size: int | None = None,
                 num_epochs: int | None = None, num_workers: int | None = None) -> grain.IterDataset:
  """The input pipeline for `mode` as a grain IterDataset of local batches (see the module docstring).

  Reads: config.batch_size (global, counting repeated augmentations), config.seed, config.model.num_frames,
  config.model.image_size, config.data.{sources, repeated_aug, multiscale_crop_scales, flip, num_workers,
  num_candidate_frames, video_decoder, worker_buffer_size, label_set, crop_on_device, crop_canvas}; missing
  optional keys take defaults.
  process_index / process_count default to jax.process_index() / jax.process_count(); seed to config.seed;
  batch_size to config.batch_size; num_workers to config.data.num_workers (0: decode in this process).
  `num_epochs` (eval): passes over the data (None: 1). Pretraining always repeats forever.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if mode == "finetune":
    # Fine-tuning augmentation (issue [5/8]) lives in videomae_jax.augment and reuses record_stream.
    try:
      from videomae_jax.augment import input as finetune_input  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise NotImplementedError("mode='finetune' needs videomae_jax.augment (issue [5/8]).") from e
    return finetune_input.make_finetune_dataset(config, process_index=process_index, process_count=process_count,
                                                seed=seed, num_workers=num_workers)
  if mode == "test":
    raise NotImplementedError("mode='test': multi-clip x multi-crop test views are videomae_jax.evaluate "
                              "(issue [5/8]); mode='eval' gives one center view per video.")
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
  data = config.data
  seed = int(config.get("seed", 0) if seed is None else seed)
  batch_size = int(config.batch_size if batch_size is None else batch_size)
  num_workers = int(data.get("num_workers", 0) if num_workers is None else num_workers)
  repeats = int(data.get("repeated_aug", 1)) if mode == "pretrain" else 1
  local = local_batch_size(batch_size, process_count, repeats)

  dataset, options = record_stream(config, mode=mode, process_index=process_index,
                                   process_count=process_count, seed=seed, global_batch=local * process_count,
                                   num_epochs=num_epochs)
  # Records are batched first (a list), then decoded and augmented per batch, seeded by (seed, process, batch
  # index): a restored iterator state gives the same crops.
  augment_seed = int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])
  dataset = dataset.batch(local // repeats, drop_remainder=True, batch_fn=list)
  dataset = dataset.random_map(_DecodeAndAugment(options), seed=augment_seed)
  buffer_size = int(data.get("worker_buffer_size", 2))
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


def make_pretrain_dataset(config, *, process_index: int | None = None, process_count: int | None = None,
                          seed: int | None = None, num_workers: int | None = None) -> grain.IterDataset:
  """Pretraining batches, forever: `make_dataset(config, mode='pretrain', ...)`."""
  return make_dataset(config, mode="pretrain", process_index=process_index, process_count=process_count,
                      seed=seed, num_workers=num_workers)


def make_eval_dataset(config, *, process_index: int | None = None, process_count: int | None = None,
                      batch_size: int | None = None, num_epochs: int | None = 1,
                      num_workers: int | None = None) -> grain.IterDataset:
  """Every video once (per epoch), center crop of the centered clip, padded to full batches with label -1."""
  return make_dataset(config, mode="eval", process_index=process_index, process_count=process_count,
                      batch_size=batch_size, num_epochs=num_epochs, num_workers=num_workers)


def batch_shapes(config, *, process_count: int = 1, mode: str = "pretrain") -> dict[str, tuple[tuple[int, ...], Any]]:
  """Global batch shapes and dtypes {'video': ((B, T, S, S, 3), uint8), ...}, e.g. to compile before reading.

  With crops on the device (pretraining, config.data.crop_on_device): video ((B / R, T, Hc, Wc, 3), uint8),
  crops ((B / R, R, 5), int32), label and source ((B / R,), int32).
  """
  del process_count  # The global batch does not depend on it; kept for symmetry with make_dataset.
  batch = int(config.batch_size)
  size = int(config.model.image_size)
  frames = num_clip_frames(config)
  repeats = device_crops_per_clip(config, mode)
  if repeats:
    clips = batch // repeats
    height, width = crop_canvas(config)
    return dict(video=((clips, frames, height, width, 3), np.uint8), crops=((clips, repeats, 5), np.int32),
                label=((clips,), np.int32), source=((clips,), np.int32))
  return dict(video=((batch, frames, size, size, 3), np.uint8),
              label=((batch,), np.int32), source=((batch,), np.int32))


def global_batches(iterator: Iterator[Mapping[str, np.ndarray]], sharding) -> Iterator[dict[str, Any]]:
  """Turns each process-local batch into global jax.Arrays split along the batch axis by `sharding`.

  `sharding` is one jax.sharding.Sharding for every field (its first mesh axes shard the batch), or a dict
  of shardings by field. Uses jax.make_array_from_process_local_data, so every process passes its own part.
  """
  import jax  # pylint: disable=import-outside-toplevel
  for local in iterator:
    yield {key: jax.make_array_from_process_local_data(
        sharding[key] if isinstance(sharding, Mapping) else sharding, value) for key, value in local.items()}


def normalize(video, dtype=None):
  """uint8 [..., 3] -> (video / 255 - ImageNet mean) / std, jit-able. dtype defaults to float32."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  mean = jnp.asarray(transforms.IMAGENET_MEAN, jnp.float32) * 255.0
  std = jnp.asarray(transforms.IMAGENET_STD, jnp.float32) * 255.0
  out = (video.astype(jnp.float32) - mean) / std
  return out.astype(dtype or jnp.float32)


def denormalize(video):
  """Inverse of normalize: float [..., 3] -> float in [0, 1] (for the MAE target and visualisation)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  mean = jnp.asarray(transforms.IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(transforms.IMAGENET_STD, jnp.float32)
  return video.astype(jnp.float32) * std + mean
