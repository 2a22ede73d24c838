"""The fine-tuning input stream: the data pipeline's record stream, decoded and augmented by this package.

  dataset = input.make_finetune_dataset(config, process_index=jax.process_index(),
                                        process_count=jax.process_count(), seed=config.seed)
  batch = next(iter(dataset))   # {'video': uint8 [B, T, S, S, 3], 'label': int32 [B], 'source': int32 [B]}

Records come from `videomae_jax.data.pipeline.record_stream` (shuffled, mixed over config.data.sources by weight,
labels re-indexed by config.data.label_set, e.g. 'k710' for post-pretraining on K400 + K600 + K700; each process
its own part of the global stream), batched as lists of B / R records (R = config.data.repeated_aug). Per record:
one temporal clip (config.data.sampling: 'random' window of num_frames frames at the source's stride, or
'segment' TSN sampling for SSv2) decoded once, then R independent `FinetuneTrainTransform`s (RandAugment ->
random resized crop -> flip), rows i * R + r. Random erasing and mixup happen on device in the train step.
The per-batch rng is seeded by (seed, process index, batch index), so a restored iterator repeats its crops.
"""
from __future__ import annotations

from typing import Optional

import grain
import numpy as np

from videomae_jax.augment import FinetuneTrainTransform, temporal
from videomae_jax.data import decoding, pipeline, transforms

SAMPLINGS = ("random", "segment")


class DecodeAndAugment(grain.transforms.RandomMap):
  """A list of B / R records -> {'video': uint8 [B, T, S, S, 3], 'label': int32 [B], 'source': int32 [B]}."""

  def __init__(self, transform: FinetuneTrainTransform, clip_length: int, strides, repeats: int,
               sampling: str = "random", backend: str = "auto"):
    if sampling not in SAMPLINGS:
      raise ValueError(f"config.data.sampling={sampling!r}; use one of {SAMPLINGS}.")
    self._transform = transform
    self._clip_length = clip_length
    self._strides = tuple(strides)
    self._repeats = repeats
    self._sampling = sampling
    self._backend = backend

  def random_map(self, records, rng: np.random.Generator):
    size, repeats = self._transform.size, self._repeats
    batch = len(records) * repeats
    video = np.empty((batch, self._clip_length, size, size, 3), np.uint8)
    label = np.empty((batch,), np.int32)
    source = np.empty((batch,), np.int32)
    for i, record in enumerate(records):
      if int(record["label"]) < 0:
        raise ValueError(f"record {record.get('path', '?')!r} of source {record['_source']} has no label: "
                         "fine-tuning needs labeled shards (or a config.data.label_set that covers its class).")
      num_frames = int(record["num_frames"])
      if self._sampling == "segment":
        indices = temporal.random_segment_indices(num_frames, self._clip_length, rng)
      else:
        indices = transforms.random_clip_indices(num_frames, self._clip_length, self._strides[record["_source"]],
                                                 rng)
      try:
        clip = decoding.decode_clip(record, indices, self._backend)
      except Exception as e:
        raise RuntimeError(f"Could not decode record {record.get('path', '?')!r}: {e}") from e
      for r in range(repeats):
        video[i * repeats + r] = self._transform(clip, rng)
      label[i * repeats:(i + 1) * repeats] = record["label"]
      source[i * repeats:(i + 1) * repeats] = record["_source"]
    return dict(video=video, label=label, source=source)


def make_finetune_dataset(config, *, process_index: Optional[int] = None, process_count: Optional[int] = None,
                          seed: Optional[int] = None, num_workers: Optional[int] = None) -> grain.IterDataset:
  """This process's fine-tuning batches, forever (a checkpointable grain IterDataset); see the module docstring."""
  if process_index is None or process_count is None:
    import jax
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  data = config.data
  seed = int(config.get("seed", 0) if seed is None else seed)
  repeats = int(data.get("repeated_aug", 1))
  local = pipeline.local_batch_size(int(config.batch_size), process_count, repeats)
  records, options = pipeline.record_stream(config, mode="pretrain", process_index=process_index,
                                            process_count=process_count, seed=seed,
                                            global_batch=local * process_count)
  transform = FinetuneTrainTransform.from_config(config)
  augment = DecodeAndAugment(transform, options.clip_length, options.strides, repeats,
                             str(data.get("sampling", "random")), options.backend)
  augment_seed = int(np.random.SeedSequence([seed, process_index, 5]).generate_state(1)[0])
  dataset = records.batch(local // repeats, drop_remainder=True, batch_fn=list).random_map(augment,
                                                                                         seed=augment_seed)
  buffer_size = int(data.get("worker_buffer_size", 2))
  iter_dataset = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1 if buffer_size > 0 else 0, prefetch_buffer_size=buffer_size))
  num_workers = int(data.get("num_workers", 0) if num_workers is None else num_workers)
  if num_workers > 0:
    iter_dataset = iter_dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=max(1, buffer_size)))
  return iter_dataset
