"""Attention alone on the CPU: our C++ kernels, the same flash attention in XLA ops, and PyTorch's
scaled_dot_product_attention (with the `torch` extra), forward and forward + backward, in alternating rounds in one
process (medians), float32.

  taskset -c 0 python -m benchmarks.attention --shapes=1x1568x6x64,1x1568x3x64 --rounds=15

Ours read the fused projection qkv as the model does (`attention_from_qkv`). Shapes are batch x tokens x heads x
head_dim: 1568 tokens x 6 heads is ViT-S's encoder on a whole 16x224 clip, x 3
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
  """bind(q, k, v, g) -> (forward, forward + backward) as calls without arguments, and their outputs as NumPy.
  As in the model, attention reads the fused projection qkv [B, N, 3, h, d] (`attention_from_qkv`)."""
  forward = jax.jit(lambda qkv: attention.attention_from_qkv(qkv, None, impl))
  both = jax.jit(lambda qkv, g: jax.vjp(lambda x: attention.attention_from_qkv(x, None, impl), qkv)[1](g)[0])

  def bind(q, k, v, g):
    qkv = jnp.stack([q, k, v], axis=2)
    calls = (lambda: jax.block_until_ready(forward(qkv)), lambda: jax.block_until_ready(both(qkv, g)))
    grads = lambda: np.moveaxis(np.asarray(both(qkv, g)), 2, 0)
    return calls, lambda: [np.asarray(forward(qkv)), *grads()]

  return bind


def _torch():
  import torch
  torch.set_num_threads(1)
  sdpa = torch.nn.functional.scaled_dot_product_attention

  def bind(q, k, v, g):   # [B, h, N, d] tensors made once, outside the timed calls
    q, k, v, g = (torch.tensor(np.asarray(x)).transpose(1, 2).contiguous() for x in (q, k, v, g))
    inputs = [x.requires_grad_() for x in (q, k, v)]

    def forward():
      with torch.no_grad():
        return sdpa(*inputs)

    def both():
      return torch.autograd.grad(sdpa(*inputs), inputs, g)

    as_numpy = lambda x: x.detach().transpose(1, 2).numpy()
    return (forward, both), lambda: [as_numpy(forward()), *(as_numpy(x) for x in both())]

  return bind


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
      x64 = [a.astype(jnp.float64) for a in (q, k, v)]
      out, vjp = jax.vjp(lambda *x: jax.nn.dot_product_attention(*x, implementation="xla"), *x64)
      exact = [np.asarray(a) for a in (out, *vjp(g.astype(jnp.float64)))]
    bound = {name: bind(q, k, v, g) for name, bind in implementations.items()}
    errors = {}
    for name, (_, outputs) in bound.items():   # warms up, and the errors (outputs and the three gradients)
      errors[name] = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(outputs(), exact))
    times = {name: ([], []) for name in bound}
    for _ in range(_ROUNDS.value):
      for name, (calls, _) in bound.items():
        for timing, call in zip(times[name], calls):
          start = time.perf_counter()
          call()
          timing.append(time.perf_counter() - start)
    for name, (forward_times, both_times) in times.items():
      print(f"| {text} | {name} | {1e3 * np.median(forward_times):.1f} | {1e3 * np.median(both_times):.1f} | "
            f"{errors[name]:.1e} |")


if __name__ == "__main__":
  app.run(main)
