"""The Evaluator interface: what the training loop knows about an evaluator, and the one way one is compiled.

An evaluator is built once per run (`from_config`: its data, its jitted function compiled ahead of time for the
run's mesh and parameter shardings) and then asked, after a train step, whether it is `due` and, if so, to
`evaluate` the parameters in memory. It returns a `Report` (scalars and pictures, without its name: the loop
prefixes '{name}/'). Evaluators never write, checkpoint or branch on the task's kind beyond checking that the task
gives them what they need (a ConfigError otherwise); the loop never branches on the evaluator's kind.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict

import jax
import ml_collections
import numpy as np

from videomae_jax import sharding


@dataclasses.dataclass
class Report:
  """What one evaluation measured: scalars (floats) and pictures (uint8 [H, W, 3])."""
  scalars: Dict[str, float]
  images: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Evaluator:
  """Base class. Subclasses set `name`, `every_steps`, `at_start` (usually through `schedule_from`) in
  `from_config` and implement `evaluate`."""
  name: str = ""
  every_steps: int = 0
  at_start: bool = False

  @classmethod
  def from_config(cls, name: str, settings: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                  task: Any, abstract_params: Any, mesh: jax.sharding.Mesh) -> "Evaluator":
    """settings: config.evals[name]; abstract_params: ShapeDtypeStructs carrying the train state's parameter
    shardings (what `evaluate` will be given)."""
    raise NotImplementedError

  def schedule_from(self, name: str, settings: ml_collections.ConfigDict) -> None:
    self.name, self.every_steps, self.at_start = name, int(settings.every_steps), bool(settings.at_start)

  def due(self, step: int, total_steps: int) -> bool:
    """Step 0 is before any training (only fresh runs get there); the last step is always evaluated, so a run
    ends with every evaluator's final numbers whatever every_steps is."""
    if self.every_steps <= 0:
      return False
    if step == 0:
      return self.at_start
    return step % self.every_steps == 0 or step == total_steps

  def evaluate(self, params: Any) -> Report:
    raise NotImplementedError


def compile_on_mesh(fn: Callable, mesh: jax.sharding.Mesh, *abstract_args: Any):
  """`fn` jitted and compiled once, ahead of time, for arguments laid out as `abstract_args` say (their
  ShapeDtypeStructs carry the shardings: parameters as in the train state, batches split over every device); the
  outputs come back replicated, so every process reads all of them."""
  return jax.jit(fn, out_shardings=sharding.replicated(mesh)).lower(*abstract_args).compile()
