"""The one place that decides how arrays are laid out on devices.

Mesh: two axes, `data` (pure data parallel: params replicated) and `fsdp` (params, gradients and optimizer state
sharded; the batch is sharded over both). Sizes come from config.mesh (-1: all remaining devices). On several TPU
slices or GPU nodes the `data` axis is laid across slices/nodes (`create_hybrid_device_mesh`), so the heavy FSDP
all-gathers stay on the fast intra-slice links.

Parameters: `config.sharding_rules` is a list of (regex, tactic) pairs matched against the '/'-joined parameter path;
the first match wins. Tactics:
  fsdp       shard the largest dimension divisible by the fsdp axis size, if the leaf has at least
             `config.fsdp_min_size` elements; otherwise replicate
  replicate  keep a full copy on every device
Optimizer state leaves that mirror parameters get the parameter's sharding; everything else is replicated.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence, Tuple

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from videomae_jax.errors import ConfigError

DATA_AXIS, FSDP_AXIS = "data", "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
DEFAULT_RULES = ((".*", "fsdp"),)
DEFAULT_FSDP_MIN_SIZE = 2 ** 14


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> Tuple[int, int]:
  data, fsdp = int(mesh_cfg.get("data", -1)), int(mesh_cfg.get("fsdp", 1))
  if data == -1 and fsdp == -1:
    raise ConfigError("config.mesh.data and config.mesh.fsdp cannot both be -1; set one of them.")
  if data == -1:
    if num_devices % fsdp:
      raise ConfigError(f"config.mesh.fsdp={fsdp} does not divide the {num_devices} devices; use a divisor.")
    data = num_devices // fsdp
  if fsdp == -1:
    if num_devices % data:
      raise ConfigError(f"config.mesh.data={data} does not divide the {num_devices} devices; use a divisor.")
    fsdp = num_devices // data
  if data * fsdp != num_devices:
    raise ConfigError(f"config.mesh data={data} x fsdp={fsdp} = {data * fsdp} devices, but {num_devices} are "
                      "available; set one axis to -1 to use the rest.")
  return data, fsdp


def make_mesh(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  data, fsdp = mesh_shape(mesh_cfg, len(devices))
  num_slices = len({getattr(d, "slice_index", 0) for d in devices})
  num_granules = num_slices if num_slices > 1 else jax.process_count()
  if num_granules > 1 and data % num_granules == 0 and devices[0].platform != "cpu":
    # data across slices (DCN / inter-node), fsdp inside a slice or node (ICI / NVLink).
    grid = mesh_utils.create_hybrid_device_mesh((data // num_granules, fsdp), (num_granules, 1), devices,
                                                allow_split_physical_axes=True)
  else:
    try:
      grid = mesh_utils.create_device_mesh((data, fsdp), devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):
      grid = np.asarray(devices).reshape(data, fsdp)
  return Mesh(grid, (DATA_AXIS, FSDP_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every device."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _path(path) -> str:
  return "/".join(str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))
                  for entry in path)


def partition_spec(shape: Tuple[int, ...], tactic: str, fsdp_size: int, min_size: int) -> P:
  if tactic == "replicate" or fsdp_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  if tactic != "fsdp":
    raise ConfigError(f"unknown sharding tactic {tactic!r} in config.sharding_rules; use 'fsdp' or 'replicate'.")
  # Largest dimension divisible by the axis size; ties go to the last dimension (contiguous slices).
  candidates = [(size, index) for index, size in enumerate(shape) if size % fsdp_size == 0]
  if not candidates:
    return P()
  _, dim = max(candidates)
  spec = [None] * len(shape)
  spec[dim] = FSDP_AXIS
  return P(*spec)


def tactic(path: str, rules: Sequence[Tuple[str, str]]) -> str:
  """The tactic of the first rule whose regex matches the '/'-joined parameter path; 'replicate' if none does."""
  for pattern, chosen in rules:
    if re.search(pattern, path):
      return chosen
  return "replicate"


def param_shardings(params: Any, mesh: Mesh, rules: Sequence[Tuple[str, str]] = DEFAULT_RULES,
                    min_size: int = DEFAULT_FSDP_MIN_SIZE) -> Any:
  """NamedSharding per parameter leaf (params may be abstract)."""
  fsdp_size = mesh.shape[FSDP_AXIS]
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: NamedSharding(mesh, partition_spec(tuple(leaf.shape), tactic(_path(path), rules),
                                                            fsdp_size, min_size)), params)


def state_shardings(abstract_state: Mapping[str, Any], mesh: Mesh, rules=DEFAULT_RULES,
                    min_size: int = DEFAULT_FSDP_MIN_SIZE) -> Any:
  """Shardings for {'step', 'params', 'opt_state', 'rng'}: optimizer moments follow their parameters."""
  params = param_shardings(abstract_state["params"], mesh, rules, min_size)
  by_shape = {}
  for leaf, sharding in zip(jax.tree.leaves(abstract_state["params"]), jax.tree.leaves(params)):
    by_shape.setdefault(tuple(leaf.shape), sharding)

  # optax states hold trees shaped like params (mu, nu) plus scalars (count); match moments by tree structure.
  param_def = jax.tree.structure(abstract_state["params"])

  def shard_opt(node):
    if jax.tree.structure(node) == param_def:
      return params
    return None

  def opt_tree(state):
    matched = shard_opt(state)
    if matched is not None:
      return matched
    if isinstance(state, tuple) and hasattr(state, "_fields"):
      return type(state)(*(opt_tree(child) for child in state))
    if isinstance(state, (tuple, list)):
      return type(state)(opt_tree(child) for child in state)
    if isinstance(state, Mapping):
      return {key: opt_tree(value) for key, value in state.items()}
    return jax.tree.map(lambda leaf: replicated(mesh), state)

  return {key: (params if key == "params" else opt_tree(value) if key == "opt_state"
                else jax.tree.map(lambda _: replicated(mesh), value))
          for key, value in abstract_state.items()}
