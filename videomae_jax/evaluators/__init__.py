"""Evaluators that run inside training (big_vision style): the registry, the only code that reads a kind.

config.evals holds named entries, each `default_config.evaluator_config(kind, ...)`: its kind, its data, its
frequency. Built in:

  classification   top-1 / top-5 of the classifier on a held-out labeled set (fine-tuning)
  knn              k-nearest-neighbour top-1 of the encoder's pooled features, labeled train / held-out pair
                   (pretraining: is the representation getting better?)
  reconstruction   held-out reconstruction loss and the reconstruction picture (pretraining)

A kind is one of those names or the import path of any module that defines `EVALUATOR` (a
videomae_jax.evaluators.base.Evaluator subclass). The trainer builds them with `from_config` and, after each train
step, runs the due ones with `run_due`: results are logged as '{name}/{metric}' at that step, `perf/eval_seconds`
says how long they took (kept out of the throughput numbers).
"""
from __future__ import annotations

import logging
import time
from typing import Any, List, Sequence, Type

import jax

from videomae_jax import metrics, registry
from videomae_jax.errors import ConfigError
from videomae_jax.evaluators.base import Evaluator, Report

BUILTIN = {"classification": "videomae_jax.evaluators.classification", "knn": "videomae_jax.evaluators.knn",
           "reconstruction": "videomae_jax.evaluators.reconstruction"}


def evaluator_class(name: str, kind: str) -> Type[Evaluator]:
  """The Evaluator subclass `EVALUATOR` of a built-in kind or of a module's import path."""
  return registry.load_class(f"config.evals.{name}.kind", kind, BUILTIN, "EVALUATOR", Evaluator)


def from_config(config, task: Any, abstract_params: Any, mesh: jax.sharding.Mesh) -> List[Evaluator]:
  """Every evaluator of config.evals with every_steps > 0, built and compiled for the run's mesh."""
  built = []
  for name, settings in config.evals.items():
    if int(settings.every_steps) < 0:
      raise ConfigError(f"config.evals.{name}.every_steps={settings.every_steps} must be >= 0 (0: never).")
    if int(settings.every_steps) == 0:
      continue
    start = time.time()
    built.append(evaluator_class(name, settings.kind).from_config(name, settings, config, task, abstract_params,
                                                                  mesh))
    logging.info("Evaluator %s (%s, every %d steps) ready in %.1f s.", name, settings.kind,
                 int(settings.every_steps), time.time() - start)
  return built


def run_due(evaluators: Sequence[Evaluator], step: int, total_steps: int, params: Any,
            writer: metrics.Writer) -> float:
  """Runs the evaluators due at `step` on `params` and writes their results at `step`; returns the seconds spent
  (0.0 when none was due). The pending train step is waited for first, so its time is not counted here."""
  due = [evaluator for evaluator in evaluators if evaluator.due(step, total_steps)]
  if not due:
    return 0.0
  jax.block_until_ready(params)
  start = time.time()
  for evaluator in due:
    began = time.time()
    report: Report = evaluator.evaluate(params)
    scalars = {f"{evaluator.name}/{key}": value for key, value in report.scalars.items()}
    scalars[f"{evaluator.name}/seconds"] = time.time() - began
    writer.write_scalars(step, scalars)
    if report.images:
      writer.write_images(step, {f"{evaluator.name}/{key}": image for key, image in report.images.items()})
  seconds = time.time() - start
  writer.write_scalars(step, {"perf/eval_seconds": seconds})
  return seconds
