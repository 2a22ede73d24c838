r"""XLA / libtpu / NCCL settings per hardware, in one place (the launch scripts and the trainer read them here).

  python -m videomae_jax.tools.xla_flags --hardware=h100 --format=shell     # export lines, for `eval "$(...)"`
  python -m videomae_jax.tools.xla_flags --hardware=v5p --format=json

In Python, before the first jax call that touches a device (XLA reads XLA_FLAGS and libtpu reads LIBTPU_INIT_ARGS
once, when the backend starts):

  from videomae_jax import xla_flags
  applied = xla_flags.apply("h100")     # {'XLA_FLAGS': '...', 'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.90', ...}
  logging.info("XLA settings: %s", xla_flags.active())

Settings already in the environment win: `apply` only appends flags whose name is not yet in XLA_FLAGS /
LIBTPU_INIT_ARGS and only sets variables that are unset, so `XLA_FLAGS=--xla_gpu_enable_triton_gemm=true bash
launch/...` tries a variation without editing this file. This module imports nothing from jax.

Why these flags (ViT-g pretraining is data parallel or FSDP: all-gathers of weights, reduce-scatters/all-reduces
of gradients, a scan over 40 identical blocks):
  GPU  latency-hiding scheduler + pipelined collectives + while-loop double buffering overlap the per-layer
       weight all-gathers / gradient reduce-scatters with the scanned blocks' matmuls; combine thresholds batch
       the many per-layer collectives into fewer large NCCL calls; cuBLAS for the large dense GEMMs (the Triton
       GEMM autotuning mostly costs compile time at these shapes - flip it with the override above to measure);
       CUDA_DEVICE_MAX_CONNECTIONS=1 keeps XLA's launch order on the device so async collectives really overlap
       (Hopper/Ampere advice; not for Blackwell); XLA gets 90% of the GPU, the rest is for NCCL/cuDNN workspaces.
  TPU  async collective fusion for all-gather and all-reduce with compute/collective overlap on the TensorCore,
       and the data-parallel all-reduce optimisation (which matters most for the DCN all-reduce across slices).
       Several are libtpu defaults already; naming them keeps the recipe stable across libtpu versions.
Every GPU flag here is checked against the installed jaxlib by tests/test_launch.py (XLA aborts on unknown
flags); TPU flags are parsed by libtpu only, on a TPU VM.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Dict, Mapping, MutableMapping, Optional, Tuple

_GPU_XLA_FLAGS: Tuple[str, ...] = (
    "--xla_gpu_enable_latency_hiding_scheduler=true",
    "--xla_gpu_enable_highest_priority_async_stream=true",
    "--xla_gpu_enable_pipelined_all_gather=true",
    "--xla_gpu_enable_pipelined_reduce_scatter=true",
    "--xla_gpu_enable_pipelined_all_reduce=true",
    "--xla_gpu_enable_while_loop_double_buffering=true",
    "--xla_gpu_all_reduce_combine_threshold_bytes=134217728",
    "--xla_gpu_all_gather_combine_threshold_bytes=134217728",
    "--xla_gpu_reduce_scatter_combine_threshold_bytes=134217728",
    "--xla_gpu_enable_all_gather_combine_by_dim=false",
    "--xla_gpu_enable_reduce_scatter_combine_by_dim=false",
    "--xla_gpu_enable_triton_gemm=false",
)

_GPU_ENV: Dict[str, str] = {
    "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.90",
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
}

_TPU_LIBTPU_FLAGS: Tuple[str, ...] = (
    "--xla_tpu_enable_async_collective_fusion=true",
    "--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true",
    "--xla_tpu_enable_async_collective_fusion_multiple_steps=true",
    "--xla_tpu_overlap_compute_collective_tc=true",
    "--xla_enable_async_all_gather=true",
    "--xla_enable_async_all_reduce=true",
    "--xla_tpu_enable_data_parallel_all_reduce_opt=true",
    "--xla_tpu_data_parallel_opt_different_sized_ops=true",
)

# hardware name -> (XLA_FLAGS flags, LIBTPU_INIT_ARGS flags, other environment variables)
RECIPES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...], Dict[str, str]]] = {
    "h100": (_GPU_XLA_FLAGS, (), _GPU_ENV),
    "h200": (_GPU_XLA_FLAGS, (), _GPU_ENV),
    "a100": (_GPU_XLA_FLAGS, (), _GPU_ENV),
    "v4": ((), _TPU_LIBTPU_FLAGS, {}),
    "v5e": ((), _TPU_LIBTPU_FLAGS, {}),
    "v5p": ((), _TPU_LIBTPU_FLAGS, {}),
    "v6e": ((), _TPU_LIBTPU_FLAGS, {}),
    "cpu": ((), (), {}),
}
_ALIASES = {"h100-pcie": "h100", "a100-40gb": "a100", "gpu": "h100", "tpu": "v5p"}

# Variables worth logging at start-up: what the run actually used, whoever set it.
_LOGGED_PREFIXES = ("XLA_", "LIBTPU_", "TPU_", "MEGASCALE_", "NCCL_", "CUDA_DEVICE_MAX_CONNECTIONS",
                    "CUDA_VISIBLE_DEVICES", "JAX_")


def hardware_names() -> Tuple[str, ...]:
  return tuple(sorted(RECIPES)) + tuple(sorted(_ALIASES))


def _recipe(hardware: str):
  name = _ALIASES.get(hardware.lower(), hardware.lower())
  if name not in RECIPES:
    raise ValueError(f"unknown hardware {hardware!r}; use one of {', '.join(hardware_names())}.")
  return RECIPES[name]


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def _merge_flags(existing: str, recipe: Tuple[str, ...]) -> str:
  """Existing flags first and untouched; recipe flags appended unless a flag of that name is already there."""
  present = {_flag_name(token) for token in existing.split()}
  added = [flag for flag in recipe if _flag_name(flag) not in present]
  return " ".join(part for part in (existing.strip(), " ".join(added)) if part)


def environment(hardware: str, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
  """The variables the recipe for `hardware` sets, merged over `base` (default: empty, i.e. the pure recipe)."""
  base = {} if base is None else base
  xla, libtpu, env = _recipe(hardware)
  out: Dict[str, str] = {}
  if xla:
    out["XLA_FLAGS"] = _merge_flags(base.get("XLA_FLAGS", ""), xla)
  if libtpu:
    out["LIBTPU_INIT_ARGS"] = _merge_flags(base.get("LIBTPU_INIT_ARGS", ""), libtpu)
  for key, value in env.items():
    out[key] = base.get(key, value)
  return out


def apply(hardware: str, environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
  """Sets the recipe's variables in `environ` (default os.environ) and returns them, to log.

  Call before jax starts a backend; a warning is printed if one has already started (the flags would be ignored).
  """
  environ = os.environ if environ is None else environ
  bridge = sys.modules.get("jax._src.xla_bridge")
  if bridge is not None and getattr(bridge, "_backends", None):
    print(f"videomae_jax.xla_flags.apply({hardware!r}): a jax backend is already initialized; XLA_FLAGS and "
          "LIBTPU_INIT_ARGS set now take no effect in this process.", file=sys.stderr)
  values = environment(hardware, environ)
  environ.update(values)
  return values


def active(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
  """The XLA / libtpu / NCCL / JAX variables currently set, whoever set them: what a run should log."""
  environ = os.environ if environ is None else environ
  return {key: environ[key] for key in sorted(environ) if key.startswith(_LOGGED_PREFIXES)}


def format_shell(values: Mapping[str, str]) -> str:
  """`export KEY='value'` lines (bash-safe quoting)."""
  return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in values.items())
