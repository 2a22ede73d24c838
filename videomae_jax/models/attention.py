"""Multi-head attention, softmax(q k^T / sqrt(d)) v on [B, N, h, d] arrays, with the kernel each backend runs best.

`attention(..., 'auto')` is `blocked_attention` on the CPU and `jax.nn.dot_product_attention` elsewhere (cuDNN's
fused kernel on GPUs where it applies, XLA's otherwise). `blocked_attention` is flash attention: XLA:CPU has no
fused attention kernel, and the textbook order streams the [h, N, N] scores through memory several times per
layer, forward and backward. Its backward pass is written in XLA ops; its forward pass is too, or, on a single CPU
device where it builds, a C++ kernel called through XLA's FFI (`cpu_attention_kernel`, csrc/), which runs the
attention's small-contraction products at ~1.3x XLA:CPU's speed; both return the same output and softmax
statistics (to float32 rounding), so the backward pass cannot tell which ran.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from videomae_jax.models import cpu_attention_kernel

# Query rows per block of `blocked_attention`: a block's [block, N] scores (one head) stay in the CPU's L2 cache.
ATTENTION_QUERY_BLOCK = 128


def _query_block(tokens: int) -> int:
  """The largest divisor of `tokens` in [64, ATTENTION_QUERY_BLOCK] (no padding), else ATTENTION_QUERY_BLOCK."""
  if tokens <= ATTENTION_QUERY_BLOCK:
    return tokens
  for block in range(ATTENTION_QUERY_BLOCK, 63, -1):
    if tokens % block == 0:
      return block
  return ATTENTION_QUERY_BLOCK


def _rows(x: jax.Array, block: int) -> jax.Array:
  """[N, ...] -> [N / block, block, ...]: the operand of a lax.map / lax.scan over query blocks."""
  return x.reshape(x.shape[0] // block, block, *x.shape[1:])


def _head_forward(q, k, v, block):
  """One (clip, head): q [Nq, d] (already scaled), k, v [Nk, d] -> out [Nq, d], and each query's score max and
  1 / sum of exp(score - max) (the softmax statistics the backward pass recomputes the probabilities from).

  Scores are laid out [keys, queries], as in the backward pass: k [Nk, d] is then the large operand of q k^T and
  v^T [d, Nk] of p v, the layout in which XLA:CPU's matmuls ran this forward pass fastest (4% over [queries, keys]);
  the max and the sum over keys are columnwise, in cache."""
  v_t = v.T                                                                        # [d, Nk], once per head

  def one_block(q_rows):
    logits_t = jnp.dot(k, q_rows.T, preferred_element_type=jnp.float32)          # [Nk, block]
    peak = jnp.max(logits_t, axis=0)                                             # any constant is exact; this is safe
    weights_t = jnp.exp(logits_t - peak)
    total = jnp.sum(weights_t, axis=0)
    out_t = jnp.dot(v_t, weights_t.astype(v.dtype), preferred_element_type=jnp.float32) / total  # [d, block]
    return out_t.astype(v.dtype), peak, 1.0 / total

  out_t, peak, inverse_total = jax.lax.map(one_block, _rows(q, block))
  return jnp.swapaxes(out_t, 1, 2).reshape(q.shape), (peak.reshape(-1), inverse_total.reshape(-1))


def _head_backward(q, k, v, out, softmax_stats, grad_out, block):
  """One (clip, head): the gradients of `_head_forward` from its saved softmax statistics (flash attention's
  backward pass).

  Per query block the probabilities are recomputed from the saved max and 1/sum with one product (q k^T), not the
  forward's two, and the softmax's Jacobian reduces to p * (dp - rowsum(dout * out)). Products are laid out
  [keys, queries] (transposed scores) so that each is a plain or a right-transposed matmul: XLA:CPU runs those
  with its fast matmul library, and a left-transposed one ([block, Nk]^T x [block, d]) as a slower generic dot.
  dk and dv accumulate over the blocks in float32; dq comes out per block, transposed.
  """
  peak, inverse_total = softmax_stats
  delta = jnp.sum(grad_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)   # [Nq]
  k_t = k.T                                                                           # [d, Nk], once per head

  def one_block(carry, rows):
    dk, dv = carry
    q_rows, grad_rows, peak_rows, inverse_total_rows, delta_rows = rows
    logits_t = jnp.dot(k, q_rows.T, preferred_element_type=jnp.float32)                 # [Nk, block]
    probs_t = jnp.exp(logits_t - peak_rows) * inverse_total_rows
    dv = dv + jnp.dot(probs_t.astype(grad_rows.dtype), grad_rows, preferred_element_type=jnp.float32)
    dprobs_t = jnp.dot(v, grad_rows.T, preferred_element_type=jnp.float32)
    dlogits_t = probs_t * (dprobs_t - delta_rows)
    dk = dk + jnp.dot(dlogits_t.astype(q_rows.dtype), q_rows, preferred_element_type=jnp.float32)
    dq_t = jnp.dot(k_t, dlogits_t.astype(k.dtype), preferred_element_type=jnp.float32)     # [d, block]
    return (dk, dv), dq_t

  zeros = jnp.zeros(k.shape, jnp.float32)
  (dk, dv), dq_t = jax.lax.scan(one_block, (zeros, zeros), (
      _rows(q, block), _rows(grad_out, block), _rows(peak, block), _rows(inverse_total, block), _rows(delta, block)))
  return jnp.swapaxes(dq_t, 1, 2).reshape(q.shape), dk, dv


def _heads_first(x: jax.Array) -> jax.Array:
  """[B, N, h, d] -> [h, B, N, d]: the outer loop runs over heads, never over the batch, which may be sharded
  across devices (a loop over a sharded axis would gather it onto every device)."""
  return x.transpose(2, 0, 1, 3)


def _heads_back(x: jax.Array) -> jax.Array:
  return x.transpose(1, 2, 0, 3)


def _per_head(function, block):
  """One head of every clip: `function` of one (clip, head) mapped over the clips, a batch dimension of each
  product. A batch of one clip runs the 2-D products themselves (a dimension of size one left in every product
  cost 3% of the attention's time)."""
  one_clip = functools.partial(function, block=block)

  def every_clip(*arrays):
    if arrays[0].shape[0] == 1:
      return jax.tree.map(lambda x: x[None], one_clip(*jax.tree.map(lambda x: x[0], arrays)))
    return jax.vmap(one_clip)(*arrays)

  return every_clip


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _flash(query, key, value, block):
  return _flash_forward(query, key, value, block)[0]


def _flash_forward(query, key, value, block):
  scaled = query * jnp.asarray(query.shape[-1] ** -0.5, query.dtype)   # scale [N, d], not the [N, N] scores
  q, k, v = _heads_first(scaled), _heads_first(key), _heads_first(value)
  out, softmax_stats = jax.lax.map(lambda head: _per_head(_head_forward, block)(*head), (q, k, v))
  return _heads_back(out), (q, k, v, out, softmax_stats)


def _flash_backward(block, saved, grad_out):
  q, k, v, out, softmax_stats = saved
  dq, dk, dv = jax.lax.map(lambda head: _per_head(_head_backward, block)(*head),
                           (q, k, v, out, softmax_stats, _heads_first(grad_out)))
  dq = dq * q.shape[-1] ** -0.5   # q was scaled before q k^T
  return _heads_back(dq).astype(q.dtype), _heads_back(dk).astype(k.dtype), _heads_back(dv).astype(v.dtype)


_flash.defvjp(_flash_forward, _flash_backward)


def blocked_attention(query: jax.Array, key: jax.Array, value: jax.Array) -> jax.Array:
  """softmax(q k^T / sqrt(d)) v for [B, N, h, d] arrays, computed like flash attention, in XLA ops.

  The same math as the textbook order, rearranged for a CPU: q is scaled before q k^T ([N, d] values, not
  [N, N]); each head runs on its own, in blocks of ~128 query rows whose [block, N] scores stay in cache;
  the softmax's division is applied to the [block, d] output; only the output and each row's max and 1/sum are kept
  for the backward pass, which recomputes a block's probabilities with one matmul (see `_head_backward`). No
  [h, N, N] array exists at any time. On one CPU core at N = 1568 (ViT-S, 6 heads) forward + backward takes
  104 ms (the textbook order: 845 ms; PyTorch's fused CPU kernel: 86 ms). Scores, softmax and gradient
  accumulation run in float32 whatever the inputs' dtype (on the CPU, the products too).
  """
  dtype = query.dtype
  if dtype != jnp.float32 and jax.default_backend() == "cpu":
    # XLA:CPU's generic dot (what it runs for small shapes) has no bfloat16 x bfloat16 -> float32 kernel.
    query, key, value = (x.astype(jnp.float32) for x in (query, key, value))
  tokens = query.shape[1]
  block = _query_block(tokens)
  padded = -(-tokens // block) * block
  if padded != tokens:  # padded query rows attend like any other and are cut off; keys are never padded
    query = jnp.pad(query, ((0, 0), (0, padded - tokens), (0, 0), (0, 0)))
  return _flash(query, key, value, block)[:, :tokens].astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _kernel_attention(qkv, bias, query_rows):
  return _kernel_forward(qkv, bias, query_rows)[0]


def _kernel_forward(qkv, bias, query_rows):
  out, peak, inverse_total = cpu_attention_kernel.attention_forward(qkv, bias, query_rows, qkv.shape[-1] ** -0.5)
  return out, (qkv, bias, out, peak, inverse_total)


def _kernel_backward(query_rows, saved, grad_out):
  qkv, bias, out, peak, inverse_total = saved
  grad_qkv = cpu_attention_kernel.attention_backward(qkv, bias, out, peak, inverse_total, grad_out, query_rows,
                                                     qkv.shape[-1] ** -0.5)
  return grad_qkv, grad_qkv.sum(axis=tuple(range(grad_qkv.ndim - 3)))


_kernel_attention.defvjp(_kernel_forward, _kernel_backward)


def kernel_attention(qkv: jax.Array, query_rows: int, bias: Optional[jax.Array] = None) -> jax.Array:
  """Flash attention in the C++ kernels of `cpu_attention_kernel` (CPU only; they must be available): the fused
  projection qkv [B, N, 3, h, d] plus bias [3, h, d] (default 0) -> [B, query_rows, h, d], the queries of the last
  `query_rows` tokens attending to all N. The same math as `blocked_attention`, forward and backward; the kernels
  read qkv as it is and add the bias as they pack it (no slices or bias pass), and write qkv's gradient as one
  array. One CPU core, N = 1568 (ViT-S), `benchmarks/attention.py`: at PyTorch's speed forward and backward (6
  heads forward 28 ms in a quiet hour; 3 heads forward + backward 63 vs 68 ms), the XLA ops 1.25-1.3x slower."""
  dtype = qkv.dtype
  bias = jnp.zeros(qkv.shape[-3:], jnp.float32) if bias is None else bias.astype(jnp.float32)
  return _kernel_attention(qkv.astype(jnp.float32), bias, query_rows).astype(dtype)


def kernel_by_default() -> bool:
  """Whether 'auto' runs the C++ kernels: on a single CPU device, where they built. With several devices
  (`--xla_force_host_platform_device_count`) XLA's ops run instead: XLA gathers a custom call's operands onto every
  device, and `blocked_attention` keeps a sharded batch where it is."""
  return jax.default_backend() == "cpu" and jax.device_count() == 1 and cpu_attention_kernel.available()


def _runs_kernel(implementation: str) -> bool:
  if implementation == "kernel":
    if jax.default_backend() != "cpu":
      raise ValueError(f"attention_impl='kernel' is the CPU's kernel; this run's backend is "
                       f"{jax.default_backend()!r}: use 'auto'.")
    if not cpu_attention_kernel.available():
      raise cpu_attention_kernel.KernelUnavailable(
          "attention_impl='kernel': the CPU attention kernel could not be built or loaded (the warning above says "
          "why); install a C++ compiler (or set $CXX), or use attention_impl='auto', which falls back to XLA's ops.")
    return True
  return implementation == "auto" and kernel_by_default()


def attention_from_qkv(qkv: jax.Array, query_rows: Optional[int] = None, implementation: str = "auto",
                       bias: Optional[jax.Array] = None) -> jax.Array:
  """The model's fused projection qkv [B, N, 3, h, d] plus bias [3, h, d] (default none) -> [B, Nq, h, d]: the
  queries of the last Nq = query_rows tokens (default all N) attending to every token. The C++ kernels read qkv as
  it is and add the bias themselves; the other implementations add it and get q, k and v sliced out (`attention`)."""
  tokens = qkv.shape[1]
  query_rows = tokens if query_rows is None else query_rows
  if _runs_kernel(implementation):
    return kernel_attention(qkv, query_rows, bias)
  if bias is not None:
    qkv = qkv + bias.astype(qkv.dtype)
  return attention(qkv[:, tokens - query_rows:, 0], qkv[:, :, 1], qkv[:, :, 2], implementation)


def attention(query: jax.Array, key: jax.Array, value: jax.Array, implementation: str = "auto") -> jax.Array:
  """[B, Nq, h, d] queries, [B, N, h, d] keys and values -> [B, Nq, h, d]. 'auto': on the CPU the C++ kernels
  where `kernel_by_default()`, else `blocked_attention`; jax.nn.dot_product_attention elsewhere (cuDNN's fused kernel
  on GPUs where it applies, XLA's otherwise); 'kernel' (CPU only) | 'blocked' | 'xla' | 'cudnn' force one."""
  if _runs_kernel(implementation):
    # The kernels take one qkv array whose last Nq tokens are the queries: q goes in front-padded with zeros.
    query_rows = query.shape[1]
    query = jnp.pad(query, ((0, 0), (key.shape[1] - query_rows, 0), (0, 0), (0, 0)))
    return kernel_attention(jnp.stack([query, key, value], axis=2), query_rows)
  if implementation == "blocked" or (implementation == "auto" and jax.default_backend() == "cpu"):
    return blocked_attention(query, key, value)
  if implementation == "cudnn":                                   # the fused kernel applies the scale for free
    return jax.nn.dot_product_attention(query, key, value, scale=query.shape[-1] ** -0.5, implementation="cudnn")
  # XLA's path (and 'auto', which falls back to it) scales the [h, N, N] logits in a pass of their own, forward
  # and backward; scaling q ([N, d]) first is the same math with two full-size passes fewer.
  query = query * jnp.asarray(query.shape[-1] ** -0.5, query.dtype)
  return jax.nn.dot_product_attention(query, key, value, scale=1.0,
                                      implementation=None if implementation == "auto" else implementation)
