"""The CPU attention kernels (csrc/attention_cpu.cc, flash attention forward and backward) as XLA FFI custom calls.

Built on first use with the machine's C++ compiler (`$CXX`, else `c++`; about 4 s), for the machine's own vector
width (`-march=native`), into a cache keyed by the source, the compiler, jaxlib and the CPU's feature flags (a home
directory shared by different machines gets one build per kind of machine); later processes load the cached
library. Where no compiler is found or the build fails, `available()` is False with a warning saying why, and
attention runs on XLA's ops (`attention.blocked_attention`): same results, slower. `VIDEOMAE_JAX_CPU_KERNEL=0`
turns the kernel off; `VIDEOMAE_JAX_KERNEL_CACHE` moves the cache (default `~/.cache/videomae_jax/kernels`).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

SOURCE = pathlib.Path(__file__).parent / "csrc" / "attention_cpu.cc"
# FFI target -> the library's handler symbol.
TARGETS = {"videomae_jax_attention_forward": "VideomaeAttentionForward",
           "videomae_jax_attention_backward": "VideomaeAttentionBackward"}


class KernelUnavailable(RuntimeError):
  pass


def _cpu_flags() -> str:
  """The CPU's feature flags (what -march=native compiles for), or the platform's name where /proc is absent."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith(("flags", "Features")):
        return line
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _cache_dir() -> pathlib.Path:
  if os.environ.get("VIDEOMAE_JAX_KERNEL_CACHE"):
    return pathlib.Path(os.environ["VIDEOMAE_JAX_KERNEL_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "videomae_jax" / "kernels"


def build() -> pathlib.Path:
  """The compiled library's path: from the cache, else compiled now (raises KernelUnavailable, saying why)."""
  compiler = shutil.which(os.environ.get("CXX", "c++"))
  if compiler is None:
    raise KernelUnavailable(f"no C++ compiler found (looked for {os.environ.get('CXX', 'c++')!r}; set $CXX)")
  version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
  key = hashlib.sha256("\n".join([SOURCE.read_text(), version, jax.__version__, jaxlib.__version__,
                                  _cpu_flags()]).encode()).hexdigest()[:16]
  library = _cache_dir() / f"attention_cpu-{key}.so"
  if library.exists():
    return library
  library.parent.mkdir(parents=True, exist_ok=True)
  logging.info("videomae_jax: building the CPU attention kernel into %s (once per machine type)", library)
  errors = []
  # -march=native: the machine's vector width (the source adapts to AVX-512, AVX2 or SSE/NEON); compilers that
  # reject it (Apple's clang on arm64) get a build without it.
  for arch in (["-march=native"], []):
    with tempfile.NamedTemporaryFile(dir=library.parent, suffix=".so", delete=False) as tmp:
      partial = tmp.name
    command = [compiler, "-O3", *arch, "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}",
               str(SOURCE), "-o", partial]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
      os.replace(partial, library)   # atomic: processes building at once each install a whole library
      return library
    os.unlink(partial)
    errors.append(f"{' '.join(command)}:\n{result.stderr[-2000:]}")
  raise KernelUnavailable("the C++ build failed:\n" + "\n".join(errors))


@functools.cache
def available() -> bool:
  """Whether the kernel is built, loaded and registered with XLA:CPU (once per process)."""
  if os.environ.get("VIDEOMAE_JAX_CPU_KERNEL", "1") == "0":
    return False
  try:
    library = ctypes.cdll.LoadLibrary(str(build()))
    for target, symbol in TARGETS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
  except (KernelUnavailable, OSError, AttributeError) as error:
    logging.warning("videomae_jax: the CPU attention kernel is unavailable (%s); attention runs on XLA's ops "
                    "(same results, slower).", error)
    return False
  return True


def _check(*arrays):
  if not available():
    raise KernelUnavailable("the CPU attention kernel is unavailable (see the warning logged above)")
  if any(x.dtype != jnp.float32 for x in arrays):
    raise TypeError(f"the CPU attention kernel takes float32, got {[str(x.dtype) for x in arrays]}")


def attention_forward(qkv: jax.Array, bias: jax.Array, query_rows: int, scale: float):
  """softmax(q k^T * scale) v from the fused projection qkv [..., N, 3, h, d] plus bias [3, h, d] (float32), for
  the queries of its last `query_rows` tokens: the output [..., query_rows, h, d] and each query's score max and
  1 / sum of exp(score - max), both [..., h, query_rows]. Requires `available()`."""
  _check(qkv, bias)
  *batch, _, _, heads, _ = qkv.shape
  stats = jax.ShapeDtypeStruct((*batch, heads, query_rows), jnp.float32)
  out = jax.ShapeDtypeStruct((*batch, query_rows, *qkv.shape[-2:]), jnp.float32)
  call = jax.ffi.ffi_call("videomae_jax_attention_forward", (out, stats, stats), vmap_method="broadcast_all")
  return call(qkv, bias, query_rows=np.int64(query_rows), scale=np.float32(scale))


def attention_backward(qkv, bias, out, peak, inverse_total, grad_out, query_rows: int, scale: float) -> jax.Array:
  """The gradient with respect to qkv (and, summed over clips and tokens, the bias) of `attention_forward`'s
  output, from its saved output and statistics and the output's cotangent (zero for the q of tokens that were no
  queries)."""
  _check(qkv, bias, out, peak, inverse_total, grad_out)
  call = jax.ffi.ffi_call("videomae_jax_attention_backward", jax.ShapeDtypeStruct(qkv.shape, jnp.float32),
                          vmap_method="broadcast_all")
  return call(qkv, bias, out, peak, inverse_total, grad_out, query_rows=np.int64(query_rows),
              scale=np.float32(scale))
