"""Attention alone on the CPU: our C++ kernels, the same flash attention in XLA ops, and PyTorch's
scaled_dot_product_attention (with the `torch` extra), forward and forward + backward, in alternating rounds in one
process (medians), float32.

  taskset -c 0 python -m benchmarks.attention --shapes=1x1568x6x64,1x1568x3x64 --rounds=15

Shapes are batch x tokens x heads x head_dim: 1568 tokens x 6 heads is ViT-S's encoder on a whole 16x224 clip, x 3
heads its pretraining decoder. Also prints each implementation's largest error against float64 (relative to the
largest output or gradient).
"""
from __future__ import annotations

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax.models import attention

_SHAPES = flags.DEFINE_string("shapes", "1x1568x6x64,1x1568x3x64", "Comma-separated BxNxHxD shapes.")
_ROUNDS = flags.DEFINE_integer("rounds", 15, "Alternating rounds (the median is reported).")


def _ours(impl):
  forward = jax.jit(lambda q, k, v: attention.attention(q, k, v, impl))
  both = jax.jit(lambda q, k, v, g: jax.vjp(lambda *x: attention.attention(*x, impl), q, k, v)[1](g))
  return forward, both


def _torch():
  import torch
  torch.set_num_threads(1)
  sdpa = torch.nn.functional.scaled_dot_product_attention
  as_torch = lambda x: torch.tensor(np.asarray(x)).transpose(1, 2).contiguous().requires_grad_()

  def forward(q, k, v):
    with torch.no_grad():
      return sdpa(*(as_torch(x) for x in (q, k, v))).transpose(1, 2).numpy()

  def both(q, k, v, g):
    inputs = [as_torch(x) for x in (q, k, v)]
    out = sdpa(*inputs)
    return [x.transpose(1, 2).numpy() for x in torch.autograd.grad(out, inputs, as_torch(g))]

  return forward, both


def main(argv):
  del argv
  implementations = {"kernel (C++)": _ours("kernel"), "blocked (XLA ops)": _ours("blocked")}
  try:
    implementations["PyTorch SDPA"] = _torch()
  except ImportError:
    print("(PyTorch not installed: install the `torch` extra to compare)")
  print(f"one process, {jax.devices()[0].platform}, medians of {_ROUNDS.value} alternating rounds")
  print("| shape (B x N x h x d) | implementation | forward ms | forward + backward ms | error vs float64 |")
  print("|---|---|---|---|---|")
  for text in _SHAPES.value.split(","):
    shape = tuple(int(x) for x in text.split("x"))
    q, k, v, g = (jax.random.normal(jax.random.key(i), shape) for i in range(4))
    with jax.enable_x64():
      exact_fn = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")
      x64 = [a.astype(jnp.float64) for a in (q, k, v)]
      out, vjp = jax.vjp(exact_fn, *x64)
      exact = [np.asarray(a) for a in (out, *vjp(g.astype(jnp.float64)))]
    times = {name: ([], []) for name in implementations}
    errors = {}
    for name, (forward, both) in implementations.items():   # warm up, and the errors
      got = [np.asarray(forward(q, k, v)), *(np.asarray(x) for x in both(q, k, v, g))]
      errors[name] = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(got, exact))
    for _ in range(_ROUNDS.value):
      for name, (forward, both) in implementations.items():
        for timing, run in zip(times[name], (lambda: forward(q, k, v), lambda: both(q, k, v, g))):
          start = time.perf_counter()
          jax.block_until_ready(run())
          timing.append(time.perf_counter() - start)
    for name, (forward_times, both_times) in times.items():
      print(f"| {text} | {name} | {1e3 * np.median(forward_times):.1f} | {1e3 * np.median(both_times):.1f} | "
            f"{errors[name]:.1e} |")


if __name__ == "__main__":
  app.run(main)
