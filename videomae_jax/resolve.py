"""Fills the values of a config that depend on data, once, before anything else reads the config.

  config = resolve.resolve(config)                     # the trainer: builds missing demo data, reads the shards
  config = resolve.resolve(config, evaluation=True)     # the test program: the demo's test set too
  config = resolve.resolve(config, for_training=False)  # shape-only tools (inspect, benchmarks, plan)

What it fills:
  * the demo's data (config.data.demo_dir, and config.eval.demo_dir when evaluating or when training runs
    evaluators): the synthetic shards are built there if missing (process 0; the others wait) and every training
    source without a path, an empty config.eval.path and a relative config.data.reconstruction_video point into
    them;
  * the evaluators' data (config.evals): an empty `path` is config.eval.path (the held-out set), an empty
    `train_path` (kNN's labeled neighbours) the first training source's shard folder;
  * config.data.crop_canvas, with crops on the device: the largest short side x the largest long side of the
    weighted sources (their dataset.json, or a TFDS video feature's static shape), so the compiled step and the
    pipeline agree on the batch shape. Shape-only tools without data fall back to a 16:9 canvas at build_shards'
    default short side;
  * config.data.transpose_to_canvas 'auto': 'yes' when those shards mix portrait and landscape clips (the other
    orientation rides transposed in the canvas, videomae_jax.device_crops), else 'no'.
The trainer writes the resolved config to {workdir}/config.json: that file is the config that ran.
"""
from __future__ import annotations

import logging
import os

import jax
import ml_collections
from jax.experimental import multihost_utils

from videomae_jax.data import demo, pipeline
from videomae_jax.errors import ConfigError


def _demo_shards(section, default_seed: int, build: bool) -> str:
  """The shard folder of the demo set described by a config section's demo_* keys (built if asked)."""
  if build:
    if jax.process_index() == 0:
      try:
        demo.build_demo_shards(section.demo_dir, **demo.demo_arguments(section, default_seed=default_seed))
      except ValueError as error:  # a bad demo setting, or a demo_dir made with other settings: the user's fix
        raise ConfigError(str(error)) from error
    multihost_utils.sync_global_devices(f"demo shards in {section.demo_dir}")
  return os.path.join(section.demo_dir, "shards")


def _check_label_counts(config: ml_collections.ConfigDict) -> None:
  """A classifier's labels must index its head: a label >= num_classes would train on an all-zero target."""
  for index, name, count in pipeline.label_count(config):
    if count > config.model.num_classes:
      raise ConfigError(f"config.data.sources[{index}] ({name}) has {count} classes (labels 0..{count - 1}) but "
                        f"config.model.num_classes={config.model.num_classes}; set num_classes to {count} or more, "
                        "or relabel the source (its label_map, or config.data.label_set).")


def _fill_evaluator_paths(config: ml_collections.ConfigDict) -> None:
  """An evaluator's empty `path` evaluates on config.eval.path; an empty `train_path` reads the first training
  source with a path (kNN's neighbours: a pretraining set's own labels, which pretraining never reads)."""
  sources = [source for source in config.data.sources if source.get("path") and float(source.get("weight", 1.0)) > 0]
  for settings in config.evals.values():
    if "path" in settings and not settings.path:
      settings.path = config.eval.path
    if "train_path" in settings and not settings.train_path and sources:
      settings.train_path = sources[0]["path"]


def resolve(config: ml_collections.ConfigDict, *, for_training: bool = True,
            evaluation: bool = False) -> ml_collections.ConfigDict:
  """A copy of `config` with its data-dependent values filled in (see the module docstring)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    if config.data.demo_dir:
      shards = _demo_shards(config.data, 0, build=for_training)
      for source in config.data.sources:
        if not source.get("path") and not source.get("tfds"):
          source["path"] = shards
      if config.data.reconstruction_video and not os.path.isabs(config.data.reconstruction_video):
        config.data.reconstruction_video = os.path.join(config.data.demo_dir, config.data.reconstruction_video)
    evaluators_on = any(int(settings.every_steps) > 0 for settings in config.evals.values())
    if config.eval.demo_dir and not config.eval.path and (evaluation or (for_training and evaluators_on)):
      config.eval.path = _demo_shards(config.eval, 1, build=True)
    _fill_evaluator_paths(config)
    if for_training and config.model.num_classes > 0:
      _check_label_counts(config)
    if config.data.crop_on_device and not min(config.data.crop_canvas) > 0:
      try:
        canvas = pipeline.crop_canvas(config, default=None if for_training else pipeline.DEFAULT_CROP_CANVAS)
      except ValueError as error:
        raise ConfigError(str(error)) from error
      config.data.crop_canvas = tuple(int(v) for v in canvas)
      logging.info("Crops on the device: clips are shipped in a %dx%d canvas, %d views each.", *canvas,
                   config.data.repeated_aug)
  if config.data.transpose_to_canvas not in ("auto", "yes", "no"):
    raise ConfigError(f"config.data.transpose_to_canvas={config.data.transpose_to_canvas!r}: use 'auto', 'yes' "
                      "or 'no'.")
  if config.data.crop_on_device and config.data.transpose_to_canvas == "auto":
    config.data.transpose_to_canvas = "yes" if pipeline.mixed_orientation(config) else "no"
    if config.data.transpose_to_canvas == "yes":
      logging.info("The shards mix portrait and landscape clips: clips of the canvas's other orientation ride "
                   "transposed and are turned upright in the train step.")
  return config
