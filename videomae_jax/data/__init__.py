"""Video data: shard format, decoding, augmentation and the grain input pipeline.

  from videomae_jax import data
  dataset = data.make_pretrain_dataset(config, process_index=..., process_count=..., seed=...)
  batches = data.global_batches(iter(dataset), sharding)   # {'video', 'label', 'source'} jax.Arrays
  video = data.normalize(batch['video'])                    # in the jitted step

Modules: decoding (backend choice, clip decoding), encoding (deterministic MP4 / JPEG), shards (record format),
shard_builder (videos -> shards; worker_pool runs its decoders), demo (the synthetic demo set), transforms (clip
sampling, MultiScaleCrop), label_maps (Kinetics K400/600/700/710), tfds_source, pipeline.
Attributes are imported lazily so that worker processes that only decode never import JAX.
"""
import importlib

_PIPELINE_NAMES = ("make_dataset", "make_pretrain_dataset", "make_eval_dataset", "global_batches", "normalize",
                   "denormalize", "batch_shapes", "num_clip_frames", "candidate_frame_count", "local_batch_size")
_SUBMODULES = ("decoding", "encoding", "shards", "shard_builder", "worker_pool", "demo", "transforms", "label_maps",
               "tfds_source", "pipeline")


def __getattr__(name):
  if name in _PIPELINE_NAMES:
    return getattr(importlib.import_module("videomae_jax.data.pipeline"), name)
  if name in _SUBMODULES:
    return importlib.import_module(f"videomae_jax.data.{name}")
  raise AttributeError(f"module 'videomae_jax.data' has no attribute {name!r}")


__all__ = list(_PIPELINE_NAMES + _SUBMODULES)
