"""The Task interface: everything the trainer, the step builder and the tools need to know about one kind of step.

A task is a frozen dataclass of Python values (hashable, fixed before tracing): its `spec` and whatever else fixes
its shapes. The trainer never branches on which task it runs; it calls the methods below (docs/architecture.md
has the interface at a glance). `input_mode` names the input pipeline's mode that feeds the task
(videomae_jax.data.pipeline), `params_kind` the layout of its parameters for conversion and init_from.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Tuple

import jax

from videomae_jax.errors import ConfigError
from videomae_jax.models.variants import ModelSpec

Batch = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
  spec: ModelSpec

  input_mode: ClassVar[str] = "pretrain"
  params_kind: ClassVar[str] = ""

  @classmethod
  def from_config(cls, config: Any) -> "Task":
    raise NotImplementedError

  def init_params(self, rng: jax.Array) -> Any:
    raise NotImplementedError

  def abstract_batch(self, batch_size: int, sharding=None) -> Dict[str, jax.ShapeDtypeStruct]:
    raise NotImplementedError

  def loss(self, params: Any, batch: Batch, rng: jax.Array, train: bool = True) -> Tuple[jax.Array, Dict]:
    """A task with frozen arrays (below) takes them as a keyword: loss(params, batch, rng, train, frozen=...)."""
    raise NotImplementedError

  # Frozen arrays: what the loss reads but never trains (a distillation teacher). They are an argument of the
  # compiled step beside the train state, so they get no gradient and no optimizer state and are not checkpointed;
  # a restarted run reads them again from where the config says. Most tasks have none (None).
  def init_frozen(self, rng: jax.Array) -> Any:
    """Randomly initialized frozen arrays: their shapes and dtypes for compiling, stand-ins for benchmarks."""
    del rng
    return None

  def load_frozen(self) -> Any:
    """The real frozen arrays as host numpy, laid out as init_frozen's; ConfigError (naming the key) when they
    cannot be read or do not fit. Called by the trainer before it compiles anything."""
    return None

  def adapt_loaded_params(self, loaded: Any, seed: int = 0) -> Dict[str, Any]:
    """Per-layer params for this task from a params_io.LoadedParams; by default they must be of our kind."""
    if loaded.kind != self.params_kind:
      raise ConfigError(f"config.init_from={loaded.path!r} holds {loaded.kind} parameters; this task needs "
                        f"{self.params_kind} parameters.")
    return loaded.params

  def for_flop_count(self) -> "Task":
    """This task as its model FLOPs are counted: layers unrolled (XLA counts a scanned body once), no
    rematerialization (recomputation is hardware work, not model work; MFU excludes it) and the textbook attention
    (the CPU's blocked attention loops over query blocks, whose body XLA would also count once)."""
    return dataclasses.replace(self, spec=dataclasses.replace(self.spec, scan_layers=False, remat_policy="none",
                                                              attention_impl="xla"))

  def check_batch_size(self, batch_size: int, num_devices: int) -> None:
    """Every array of the batch is split over all devices along its first axis."""
    if batch_size % num_devices:
      raise ConfigError(f"config.batch_size={batch_size} is not divisible by the {num_devices} devices of the "
                        f"mesh; use a multiple of {num_devices}.")
    for name, array in self.abstract_batch(batch_size).items():
      if array.shape[0] % num_devices:
        raise ConfigError(f"the batch's '{name}' has {array.shape[0]} rows per step, which the {num_devices} "
                          f"devices cannot split evenly; change config.batch_size.")
