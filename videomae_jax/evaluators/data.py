"""An evaluator's videos: one shard folder's test views as global arrays, batch after batch, the same every time.

The views come from the input pipeline's 'test' mode (videomae_jax.data.pipeline: every video once, in order,
`num_clips` x `num_crops` deterministic views each, the last batch padded), so the evaluators see videos exactly as
`python -m videomae_jax.tools.evaluate` does. Each process decodes its own part of every global batch, and the
parts become one array split over every device of the mesh, as a training batch is. The batch shape never
changes (padding videos have `valid` False), so an evaluator's function compiles once.

With `cache_mb` > 0 the decoded local batches of the first pass are kept in host memory when they fit, and later
evaluations read them instead of decoding again: the demo's sets are a few MB, a pod's held-out set is not.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videomae_jax import sharding
from videomae_jax.data import pipeline, shards
from videomae_jax.errors import ConfigError

BATCH_KEYS = ("video", "label", "valid", "index")


class EvalSet:
  """The test views of `path` with an evaluator's view settings; iterate `batches()` for global arrays."""

  def __init__(self, config: ml_collections.ConfigDict, settings: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
               *, path: str, max_videos: int, require_labels: bool, key: str):
    """settings: the evaluator's config.evals entry (views, batch_size, num_workers, cache_mb); key: how the
    config names `path`, for messages."""
    if not path:
      raise ConfigError(f"{key} is empty: set it to a shard folder (python -m data_prep.build_shards), or set "
                        "config.eval.path / config.eval.demo_dir, which an empty path defaults to.")
    self.path, self.mesh = path, mesh
    batch, devices, processes = int(settings.batch_size), mesh.devices.size, jax.process_count()
    if batch <= 0 or batch % devices or batch % processes:
      raise ConfigError(f"{key.rsplit('.', 1)[0]}.batch_size={batch} videos must split over the {devices} devices "
                        f"and {processes} processes; use a multiple of {np.lcm(devices, processes)}.")
    self.config = config.copy_and_resolve_references()
    with self.config.unlocked():
      self.config.eval.update(dict(
          path=path, max_videos=int(max_videos), require_labels=bool(require_labels), batch_size=batch,
          num_workers=int(settings.num_workers), num_clips=int(settings.num_clips), num_crops=int(settings.num_crops),
          sampling=str(settings.sampling), stride=int(settings.stride), short_side=int(settings.short_side)))
    self.views_per_video = int(settings.num_clips) * int(settings.num_crops)
    self.batch_size = batch
    self._cache_bytes = int(settings.cache_mb) << 20
    self._cache: Optional[List[Dict[str, np.ndarray]]] = None
    self._split = sharding.batch_sharding(mesh)
    try:
      description = shards.read_description(path)
    except (FileNotFoundError, OSError, ValueError) as error:
      raise ConfigError(f"{key}={path!r} is not a shard folder ({error}).") from error
    self.label_names = list(description.get("labels") or [])

  def abstract_batch(self) -> Dict[str, jax.ShapeDtypeStruct]:
    """The global batch's shapes, carrying the batch sharding."""
    spec = self.config.model
    size = int(spec.image_size)
    return {"video": jax.ShapeDtypeStruct((self.batch_size * self.views_per_video, int(spec.num_frames), size, size,
                                           3), jnp.uint8, sharding=self._split),
            "label": jax.ShapeDtypeStruct((self.batch_size,), jnp.int32, sharding=self._split),
            "valid": jax.ShapeDtypeStruct((self.batch_size,), jnp.bool_, sharding=self._split),
            "index": jax.ShapeDtypeStruct((self.batch_size,), jnp.int32, sharding=self._split)}

  def _local_batches(self) -> Iterator[Dict[str, np.ndarray]]:
    if self._cache is not None:
      yield from self._cache
      return
    kept: Optional[List[Dict[str, np.ndarray]]] = [] if self._cache_bytes > 0 else None
    size = 0
    process, processes = jax.process_index(), jax.process_count()
    per_process = self.batch_size // processes
    for number, local in enumerate(pipeline.make_dataset(self.config, mode="test", process_index=process,
                                                         process_count=processes)):
      # The pipeline strides the videos over the processes (process p's k-th video of batch j is video
      # j * batch_size + k * processes + p): its index in the set, so that what depends on the video (the
      # reconstruction evaluator's masks) does not depend on the number of processes.
      local = {key: np.asarray(local[key]) for key in BATCH_KEYS if key != "index"}
      local["index"] = (number * self.batch_size + np.arange(per_process) * processes + process).astype(np.int32)
      if kept is not None:
        size += sum(value.nbytes for value in local.values())
        if size <= self._cache_bytes:
          kept.append(local)
        else:
          logging.info("The views of %s do not fit in %d MB: they are decoded at every evaluation.", self.path,
                       self._cache_bytes >> 20)
          kept = None
      yield local
    if kept is not None:
      self._cache = kept

  def batches(self) -> Iterator[Dict[str, jax.Array]]:
    """Global batches {'video' [b * V, T, S, S, 3] uint8, 'label' [b] int32, 'valid' [b] bool, 'index' [b] int32
    (each video's position in the set)}, b = batch_size videos (video i's V views at rows i * V ... i * V + V - 1).
    The order of the videos in a batch depends on the number of processes; `index` does not."""
    for local in self._local_batches():
      yield {key: jax.make_array_from_process_local_data(self._split, local[key]) for key in BATCH_KEYS}


def per_video(values: np.ndarray, views_per_video: int) -> np.ndarray:
  """[b * V, ...] per-view outputs -> [b, ...] means over each video's V views."""
  values = np.asarray(values)
  return values.reshape((-1, views_per_video) + values.shape[1:]).mean(axis=1)


def per_video_outputs(compiled: Any, params: Any, eval_set: EvalSet) -> Tuple[np.ndarray, np.ndarray]:
  """Runs `compiled(params, batch) -> (per-view values, label, valid)` over the set: (float64 [n, ...] values
  averaged over each video's views, int64 [n] labels) of its n real videos (padding dropped)."""
  values, labels = [], []
  for batch in eval_set.batches():
    view_values, label, valid = (np.asarray(x) for x in compiled(params, batch))
    values.append(per_video(view_values.astype(np.float64), eval_set.views_per_video)[valid])
    labels.append(label[valid])
  return np.concatenate(values), np.concatenate(labels).astype(np.int64)
