"""The train step: a pure function of (state, batch) for any task, and its one compiled, sharded form.

The train state is a plain pytree: {'step': int32, 'params': ..., 'opt_state': ..., 'rng': key data}. Every random
choice of a step (masks, token selection, stochastic depth, mixup) derives from fold_in(state['rng'], step), so a
resumed run draws exactly what an uninterrupted run draws.

A task's frozen arrays (a distillation teacher: videomae_jax.tasks.base) are the step's third argument, not part of
the state: the gradient is taken with respect to state['params'] alone, the optimizer never sees them (no moments),
checkpoints never hold them, and they are laid out by the same sharding rules as the parameters. The step is
(state, batch, frozen) -> (state, metrics), frozen None for the tasks that have none.

`build(config)` is the recipe "shardings, abstract state and batch, jit, lower, compile, count FLOPs" written once;
the trainer, `tools.inspect_config`, `benchmarks.train_step` and the planner's XLA check all call it, so they
report the same FLOPs per clip and the same compiled memory for the same config and batch. Nothing is allocated
until `CompiledStep.init_state` is called: the state is a `jax.eval_shape` result and the step is compiled ahead
of time, so a configuration that does not fit fails (with XLA's memory analysis) before any data is read.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from videomae_jax import optim, sharding, tasks

State = Dict[str, Any]
Batch = Dict[str, jax.Array]


def step_rng(state: State) -> jax.Array:
  return jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])


def loss_of_params(task: tasks.Task, batch: Batch, rng: jax.Array, frozen: Any = None) -> Callable:
  """params -> (loss, aux) of a training step; a task's frozen arrays are bound in, outside what is differentiated."""
  if frozen is None:
    return lambda params: task.loss(params, batch, rng, True)
  return lambda params: task.loss(params, batch, rng, True, frozen=frozen)


def make_train_step(task: tasks.Task, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule) -> Callable[..., Tuple[State, Dict]]:
  """(state, batch, frozen=None) -> (state, metrics) for any task."""
  def train_step(state: State, batch: Batch, frozen: Any = None):
    grad_fn = jax.value_and_grad(loss_of_params(task, batch, step_rng(state), frozen), has_aux=True)
    (loss, aux), grads = grad_fn(state["params"])
    grad_norm = optax.tree.norm(grads)
    # An update is applied only if the loss and the gradient norm are finite, so the state never takes a NaN or an
    # infinity from them. A finite gradient norm bounds every gradient entry, so AdamW's moments (sums of g and
    # g^2) and its step (mu / (sqrt(nu) + eps), plus decay) are finite too. The decision comes before the update,
    # so the update still runs in place in one fused pass: choosing between new and old values after it (a
    # `where` over parameters and moments) cost 6% of a ViT-S step on the CPU in copies and selects.
    # What the update can still do is push parameters past float32's range (an absurd learning rate): the new
    # parameters' norm catches that (a float32 norm overflows for entries above ~1e19) and the step reports it in
    # `train/nonfinite`; the loop checks every step's metrics before any checkpoint, and stops without saving.
    inputs_finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def apply_update():   # the clip takes the norm computed above (optim.clip_by_global_norm), not a second pass
      updates, new_opt_state = optimizer.update(grads, state["opt_state"], state["params"], global_norm=grad_norm)
      return optax.apply_updates(state["params"], updates), new_opt_state

    params, opt_state = jax.lax.cond(inputs_finite, apply_update, lambda: (state["params"], state["opt_state"]))
    finite = inputs_finite & _finite_norm(params)
    metrics = {"train/loss": loss, "train/grad_norm": grad_norm, "train/nonfinite": 1.0 - finite.astype(jnp.float32),
               "train/lr": schedule(state["step"]), **{f"train/{k}": v for k, v in aux.items()}}
    new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return train_step


def _finite_norm(tree) -> jax.Array:
  """Whether the global norm of a tree's floating leaves is finite (no NaN or inf, no entry above ~1e19)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
  return jnp.isfinite(optax.tree.norm(leaves)) if leaves else jnp.array(True)


def init_train_state(task: tasks.Task, optimizer: optax.GradientTransformation, seed: int) -> State:
  """Deterministic from `seed`; run under jax.jit(out_shardings=...) to create the state already sharded."""
  init_rng, step_key = jax.random.split(jax.random.key(seed))
  params = task.init_params(init_rng)
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params),
          "rng": jax.random.key_data(step_key)}


def make_optimizer(config, task: tasks.Task, abstract_params: Any):
  """(optimizer, lr schedule) of config.optimizer over the config's schedule length."""
  _, total_steps, warmup_steps = optim.schedule_lengths(config)
  return optim.make_optimizer(config.optimizer, abstract_params, batch_size=config.batch_size,
                              warmup_steps=warmup_steps, total_steps=total_steps, depth=task.spec.depth)


def flops_per_clip(task: tasks.Task, config, batch_size: int = 2) -> float:
  """Model FLOPs of one train step per clip (forward + backward + update), from XLA's cost analysis.

  The one FLOP counter (the trainer's MFU, inspect, the benchmark, the planner). XLA counts a while loop's body
  once and rematerialized passes are not model work, so it counts `task.for_flop_count()` (layers unrolled, no
  remat, no input processing), lowered but not compiled: the HLO cost analysis needs no compilation.
  """
  task = task.for_flop_count()
  abstract_params = jax.eval_shape(task.init_params, jax.random.key(0))
  optimizer, schedule = make_optimizer(config, task, abstract_params)
  state = jax.eval_shape(lambda: init_train_state(task, optimizer, 0))
  frozen = jax.eval_shape(task.init_frozen, jax.random.key(0))  # a teacher's forward is work the step does
  lowered = jax.jit(make_train_step(task, optimizer, schedule)).lower(state, task.abstract_batch(batch_size), frozen)
  analysis = lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", 0.0)) / batch_size


MEMORY_FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                 "generated_code_size_in_bytes", "alias_size_in_bytes")


def memory_analysis(compiled) -> Dict[str, int]:
  """XLA's memory analysis of a compiled step, per device, with `per_device_bytes` = arguments + outputs +
  temporaries - aliased (donated) bytes. Empty where the backend gives none."""
  memory = compiled.memory_analysis()
  if memory is None:
    return {}
  fields = {name.replace("_in_bytes", ""): int(getattr(memory, name, 0)) for name in MEMORY_FIELDS}
  fields["per_device_bytes"] = (fields["argument_size"] + fields["output_size"] + fields["temp_size"]
                                - fields["alias_size"])
  return fields


@dataclasses.dataclass
class CompiledStep:
  """A task's train step compiled for a mesh and a global batch size, with what it needs around it."""
  task: tasks.Task
  mesh: jax.sharding.Mesh
  batch_size: int
  optimizer: optax.GradientTransformation
  schedule: optax.Schedule
  state_shardings: Any
  batch_sharding: jax.sharding.NamedSharding
  abstract_state: Any                     # ShapeDtypeStructs carrying the state shardings (restore targets)
  abstract_batch: Dict[str, jax.ShapeDtypeStruct]
  frozen_shardings: Any                   # the task's frozen arrays (None for most tasks), laid out as parameters
  abstract_frozen: Any
  compiled: Any                           # jax.stages.Compiled: (state, batch, frozen) -> (state, metrics)
  compile_seconds: float
  flops_per_clip: float                   # model FLOPs (the numerator of MFU)
  memory: Dict[str, int]                  # XLA's memory analysis per device

  def init_state(self, seed: int) -> State:
    """A fresh train state, created already sharded (no host copy of the full model)."""
    return jax.jit(lambda: init_train_state(self.task, self.optimizer, seed),
                   out_shardings=self.state_shardings)()

  def init_frozen(self, seed: int = 0) -> Any:
    """Randomly initialized frozen arrays, already sharded: stand-ins where the real ones do not matter
    (benchmarks, shape checks). None when the task has none."""
    return jax.jit(lambda: self.task.init_frozen(jax.random.key(seed)), out_shardings=self.frozen_shardings)()

  def put_frozen(self, host_frozen: Any) -> Any:
    """The task's frozen arrays (host numpy, task.load_frozen) on the mesh, leaf by leaf in their shardings."""
    if host_frozen is None:
      return None
    return jax.tree.map(lambda leaf, abstract, s: jax.device_put(np.asarray(leaf, abstract.dtype), s),
                        host_frozen, self.abstract_frozen, self.frozen_shardings)

  def __call__(self, state: State, batch: Batch, frozen: Any = None):
    return self.compiled(state, batch, frozen)

  def describe(self) -> Dict[str, Any]:
    """The numbers every caller reports: FLOPs per clip and memory per device."""
    return {"batch_size": self.batch_size, "devices": int(self.mesh.devices.size),
            "flops_per_clip": self.flops_per_clip, "compile_seconds": round(self.compile_seconds, 2),
            "memory": dict(self.memory)}


def build(config, *, mesh: Optional[jax.sharding.Mesh] = None, task: Optional[tasks.Task] = None,
          count_flops: bool = True) -> CompiledStep:
  """Compiles the train step of `config` (resolved: videomae_jax.resolve) for config.batch_size on `mesh`.

  mesh defaults to config.mesh over all devices; parameters follow config.sharding_rules and
  config.fsdp_min_size, the optimizer state follows the parameters, the batch is split over every device and the
  state is donated. Raises ConfigError before compiling when the batch cannot be split.
  """
  task = task or tasks.from_config(config)
  mesh = mesh if mesh is not None else sharding.make_mesh(config.mesh)
  batch_size = int(config.batch_size)
  task.check_batch_size(batch_size, mesh.devices.size)
  abstract_params = jax.eval_shape(task.init_params, jax.random.key(0))
  optimizer, schedule = make_optimizer(config, task, abstract_params)
  abstract_state = jax.eval_shape(lambda: init_train_state(task, optimizer, config.seed))
  rules = [tuple(rule) for rule in config.sharding_rules]
  state_shardings = sharding.state_shardings(abstract_state, mesh, rules, int(config.fsdp_min_size))
  batch_sharding = sharding.batch_sharding(mesh)
  abstract_batch = task.abstract_batch(batch_size, batch_sharding)
  # A teacher follows the parameters' rules: FSDP-sharded where they are, so a ViT-g teacher fits beside its student.
  abstract_frozen = jax.eval_shape(task.init_frozen, jax.random.key(0))
  frozen_shardings = (None if abstract_frozen is None else
                      sharding.param_shardings(abstract_frozen, mesh, rules, int(config.fsdp_min_size)))
  step = jax.jit(make_train_step(task, optimizer, schedule),
                 in_shardings=(state_shardings, jax.tree.map(lambda _: batch_sharding, abstract_batch),
                               frozen_shardings),
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)
  abstract_state = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                                abstract_state, state_shardings)
  if abstract_frozen is not None:
    abstract_frozen = jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                                   abstract_frozen, frozen_shardings)
  start = time.time()
  compiled = step.lower(abstract_state, abstract_batch, abstract_frozen).compile()
  compile_seconds = time.time() - start
  return CompiledStep(task=task, mesh=mesh, batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                      state_shardings=state_shardings, batch_sharding=batch_sharding, abstract_state=abstract_state,
                      abstract_batch=abstract_batch, frozen_shardings=frozen_shardings,
                      abstract_frozen=abstract_frozen, compiled=compiled, compile_seconds=compile_seconds,
                      flops_per_clip=flops_per_clip(task, config) if count_flops else 0.0,
                      memory=memory_analysis(compiled))
