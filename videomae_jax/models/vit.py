"""Video ViT building blocks and the encoder, exactly as the VideoMAE V2 release defines them.

Parameter names follow the PyTorch modules one-to-one (`patch_embed/proj`, `blocks/{i}/attn/qkv`, `q_bias`, ...)
so checkpoint conversion is a rename plus a transpose. With `scan_layers` the blocks live under `blocks/layers`
with a leading layer axis on every leaf; `videomae_jax.models.layer_stacking` converts between the two layouts.
"""
from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax.models import posembed
from videomae_jax.models.attention import attention_from_qkv
from videomae_jax.models.layers import LayerNorm, TokenDense, gelu
from videomae_jax.models.variants import ModelSpec

Initializer = Callable[..., jax.Array]

# The official pretraining model's `_init_weights`: xavier-uniform Linear weights (the fused qkv as one matrix).
XAVIER = nn.initializers.xavier_uniform()
# The official fine-tuning model's Linear init, timm's trunc_normal_(std=.02): its bounds are absolute (+-2), i.e.
# 100 standard deviations, so it is in effect an untruncated N(0, 0.02).
NORMAL_002 = nn.initializers.normal(stddev=0.02)
# PyTorch's default Linear / Conv3d weight init (kaiming_uniform with a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
# `_init_weights` touches Linear and LayerNorm only, so the patch embedding keeps it; `encoder_to_decoder` is
# created after that pass in the official pretraining model and keeps it too.
TORCH_DEFAULT_KERNEL = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def truncated_at_one_std(stddev: float) -> Initializer:
  """VideoMAE's own trunc_normal_(std) (used for mask_token): N(0, std) cut at +-std (a=-std, b=std), not
  rescaled, so the values lie in [-std, std] with a standard deviation of about 0.54 * std."""
  def init(key, shape, dtype=jnp.float32):
    return stddev * jax.random.truncated_normal(key, -1.0, 1.0, shape, dtype)
  return init


def torch_conv_bias(fan_in: int) -> Initializer:
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def dtype_of(name: str):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


REMAT_POLICY_FNS = {
    "full": None,  # save nothing but the block input; recompute everything in the backward pass
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def cut_tubelets(video: jax.Array, kernel_size: tuple, indices: Optional[jax.Array] = None) -> jax.Array:
  """video [B, T, H, W, C] -> its tubelets [B, N, ts * ph * pw, C], tokens in (t, h, w) order, pixels in
  (t, y, x) order within a tubelet: the rows of the patch embedding and of the reconstruction targets.

  indices [B, K] (token numbers): those tubelets only, [B, K, ...], gathered straight from the clip, not
  rearranged whole and then gathered. vmap keeps the gather per clip (no communication when the batch is sharded).
  """
  ts, ph, pw = kernel_size
  batch, frames, height, width, channels = video.shape
  grid_h, grid_w = height // ph, width // pw
  x = video.reshape(batch, frames // ts, ts, grid_h, ph, grid_w, pw, channels)
  if indices is None:
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)        # b t' h' w' (ts ph pw c)
  else:
    def tubelets(clip, clip_indices):              # [T', ts, H', ph, W', pw, C], [K] -> [K, ts, ph, pw, C]
      t, rest = clip_indices // (grid_h * grid_w), clip_indices % (grid_h * grid_w)
      return clip[t, :, rest // grid_w, :, rest % grid_w]
    x = jax.vmap(tubelets)(x, indices.astype(jnp.int32))
  return x.reshape(batch, -1, ts * ph * pw, channels)


class TubeletProjection(nn.Module):
  """The Conv3d of the official patch embedding, kernel = stride = (tubelet, P, P), as what it is: cut the clip
  into tubelets and multiply by one matrix. A convolution op computed the same numbers 1.2x slower forward and
  its weight gradient 3.8x slower (a generic convolution) on the CPU; the matmul is also what GPUs and TPUs run
  best. Parameters keep nn.Conv's names, shapes and init: `kernel` [tubelet, P, P, 3, D], `bias` [D]."""
  width: int
  kernel_size: tuple
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, keep_indices: Optional[jax.Array] = None) -> jax.Array:
    """video [B, T, H, W, C] -> [B, N, width]; with keep_indices [B, K] (token numbers in (t, h, w) order) only
    those tubelets are cut out and embedded -> [B, K, width], the same rows as embedding all and gathering."""
    ts, ph, pw = self.kernel_size
    fan_in = 3 * ts * ph * pw
    kernel = self.param("kernel", TORCH_DEFAULT_KERNEL, (ts, ph, pw, video.shape[-1], self.width), jnp.float32)
    bias = self.param("bias", torch_conv_bias(fan_in), (self.width,), jnp.float32)
    # Cut out the kept tubelets only: a masked encoder sees ~10% of them, and the embedding's matmul (forward and
    # weight gradient) and the clip's rearrangement shrink with them.
    x = cut_tubelets(video, self.kernel_size, keep_indices)
    batch, tokens = x.shape[:2]
    x = x.reshape(batch * tokens, -1).astype(self.dtype)   # [B * N, K]: a 2-D product (see TokenDense)
    x = x @ kernel.reshape(-1, self.width).astype(self.dtype) + bias.astype(self.dtype)
    return x.reshape(batch, tokens, self.width)


class PatchEmbed(nn.Module):
  """Conv3d with kernel = stride = (tubelet, P, P); [B, T, H, W, 3] -> [B, T'*H'*W', D] in (t, h, w) order."""
  width: int
  tubelet_size: int
  patch_size: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, keep_indices: Optional[jax.Array] = None) -> jax.Array:
    kernel = (self.tubelet_size, self.patch_size, self.patch_size)
    return TubeletProjection(self.width, kernel, self.dtype, name="proj")(video, keep_indices)


class Attention(nn.Module):
  """Multi-head self-attention with a fused bias-free qkv matrix plus learnable q_bias, v_bias (key bias is 0)."""
  width: int
  num_heads: int
  dtype: jnp.dtype = jnp.float32
  attention_impl: str = "auto"
  kernel_init: Initializer = XAVIER

  @nn.compact
  def __call__(self, x: jax.Array, query_rows: Optional[int] = None) -> jax.Array:
    """x [B, N, width] -> [B, N, width]; with query_rows, the outputs of the last `query_rows` tokens only (they
    attend to all N tokens)."""
    batch, tokens, _ = x.shape
    head_dim = self.width // self.num_heads
    qkv = TokenDense(3 * self.width, use_bias=False, dtype=self.dtype, kernel_init=self.kernel_init,
                   name="qkv")(x)
    q_bias = self.param("q_bias", nn.initializers.zeros, (self.width,), jnp.float32)
    v_bias = self.param("v_bias", nn.initializers.zeros, (self.width,), jnp.float32)
    # The key bias is a constant zero in the official model: adding it to softmax logits would be a per-query
    # constant, which softmax ignores, so it is never a parameter.
    bias = jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias]).reshape(3, self.num_heads, head_dim)
    qkv = qkv.reshape(batch, tokens, 3, self.num_heads, head_dim)
    out = attention_from_qkv(qkv, query_rows, self.attention_impl, bias)
    out = out.reshape(batch, out.shape[1], self.width)
    return TokenDense(self.width, dtype=self.dtype, kernel_init=self.kernel_init, name="proj")(out)


class Mlp(nn.Module):
  hidden_dim: int
  out_dim: int
  dtype: jnp.dtype = jnp.float32
  kernel_init: Initializer = XAVIER

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = TokenDense(self.hidden_dim, dtype=self.dtype, kernel_init=self.kernel_init, name="fc1")(x)
    x = gelu(x)
    return TokenDense(self.out_dim, dtype=self.dtype, kernel_init=self.kernel_init, name="fc2")(x)


def drop_path(x: jax.Array, rate: jax.Array, rng: jax.Array) -> jax.Array:
  """Stochastic depth: drops the whole residual branch per sample with probability `rate` (may be traced)."""
  keep_prob = 1.0 - rate
  keep = jax.random.bernoulli(rng, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / keep_prob.astype(x.dtype), jnp.zeros_like(x))


class Block(nn.Module):
  """Pre-norm transformer block. Returns (x, None) so the same module works under `nn.scan`."""
  width: int
  num_heads: int
  mlp_dim: int
  use_drop_path: bool = False
  dtype: jnp.dtype = jnp.float32
  attention_impl: str = "auto"
  layer_norm_eps: float = 1e-6
  kernel_init: Initializer = XAVIER

  @nn.compact
  def __call__(self, x: jax.Array, drop_rate: jax.Array, deterministic: bool, output_rows: Optional[int] = None):
    """x [B, N, width] -> ([B, N, width], None); with output_rows, the last `output_rows` tokens' outputs only
    (their queries attend to all N tokens; the other tokens' queries, projection and MLP are skipped)."""
    def residual(branch):
      if self.use_drop_path and not deterministic:
        return drop_path(branch, drop_rate, self.make_rng("dropout"))
      return branch

    norm = lambda name: LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name=name)
    y = Attention(self.width, self.num_heads, self.dtype, self.attention_impl, self.kernel_init,
                  name="attn")(norm("norm1")(x), output_rows)
    if output_rows is not None:
      x = x[:, x.shape[1] - output_rows:]
    x = x + residual(y)
    y = Mlp(self.mlp_dim, self.width, self.dtype, self.kernel_init, name="mlp")(norm("norm2")(x))
    x = x + residual(y)
    return x, None


class BlockStack(nn.Module):
  """`depth` blocks: a Python loop (params `0`, `1`, ...) or one `nn.scan` (params `layers`, stacked on axis 0).

  Both give identical outputs from the same weights. Stochastic depth rates rise linearly from 0 to
  `drop_path_rate` over the depth, as in the official model.
  """
  depth: int
  width: int
  num_heads: int
  mlp_dim: int
  drop_path_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention_impl: str = "auto"
  scan_layers: bool = False
  remat_policy: str = "none"
  layer_norm_eps: float = 1e-6
  kernel_init: Initializer = XAVIER

  def _block_class(self):
    block_cls = Block
    if self.remat_policy != "none":
      # static_argnums counts `self` as 0: arguments 3 and 4 are `deterministic` and `output_rows` (Python values;
      # nn.scan passes no `output_rows`).
      block_cls = nn.remat(Block, policy=REMAT_POLICY_FNS[self.remat_policy],
                           static_argnums=(3,) if self.scan_layers else (3, 4),
                           prevent_cse=not self.scan_layers)
    return block_cls

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool, output_rows: Optional[int] = None) -> jax.Array:
    """x [B, N, width] -> [B, N, width], or with output_rows the last `output_rows` tokens [B, output_rows, width]:
    what a caller keeps of the output (a pretraining decoder predicts its mask tokens only). The last block then
    computes those rows alone, and, unrolled, skips the others' queries, projection and MLP (the same numbers)."""
    rates = np.linspace(0.0, self.drop_path_rate, self.depth, dtype=np.float32) if self.depth > 1 else \
        np.zeros((self.depth,), np.float32)
    kwargs = dict(width=self.width, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                  use_drop_path=self.drop_path_rate > 0, dtype=self.dtype, attention_impl=self.attention_impl,
                  layer_norm_eps=self.layer_norm_eps, kernel_init=self.kernel_init)
    block_cls = self._block_class()
    if self.scan_layers:
      scanned = nn.scan(block_cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                        in_axes=(0, nn.broadcast), length=self.depth)
      x, _ = scanned(**kwargs, name="layers")(x, jnp.asarray(rates), deterministic)
      return x if output_rows is None else x[:, x.shape[1] - output_rows:]   # scanned layers share one shape
    for index in range(self.depth):
      rows = output_rows if index == self.depth - 1 else None
      x, _ = block_cls(**kwargs, name=str(index))(x, jnp.asarray(rates[index]), deterministic, rows)
    return x


def gather_tokens(tokens: jax.Array, indices: jax.Array) -> jax.Array:
  """tokens [B, N, D], indices [B, K] int -> [B, K, D]. Batch-local: no communication when B is sharded."""
  return jnp.take_along_axis(tokens, indices[..., None].astype(jnp.int32), axis=1)


class VideoViTEncoder(nn.Module):
  """Video ViT encoder: tubelet embedding + fixed sinusoid positions + blocks (+ final LayerNorm).

  `keep_indices` [B, K] selects which tokens enter the blocks (masking and token selection live outside the
  module and hand it a static-length index array). Output [B, K, width].
  """
  spec: ModelSpec
  use_final_norm: bool = True
  kernel_init: Initializer = XAVIER

  def setup(self):
    spec = self.spec
    dtype = dtype_of(spec.compute_dtype)
    self.patch_embed = PatchEmbed(spec.width, spec.tubelet_size, spec.patch_size, dtype)
    self.blocks = BlockStack(
        depth=spec.depth, width=spec.width, num_heads=spec.num_heads, mlp_dim=spec.mlp_dim,
        drop_path_rate=spec.drop_path_rate, dtype=dtype, attention_impl=spec.attention_impl,
        scan_layers=spec.scan_layers, remat_policy=spec.remat_policy, layer_norm_eps=spec.layer_norm_eps,
        kernel_init=self.kernel_init)
    if self.use_final_norm:
      self.norm = LayerNorm(epsilon=spec.layer_norm_eps, dtype=dtype)

  def embed_patches(self, video: jax.Array) -> jax.Array:
    """[B, T, H, W, 3] -> patch embeddings [B, N, width] before position embedding (the MATS score input)."""
    return self.patch_embed(video)

  def __call__(self, video: jax.Array, keep_indices: Optional[jax.Array] = None, *,
               train: bool = False) -> jax.Array:
    spec = self.spec
    expected = (spec.num_frames, spec.image_size, spec.image_size, 3)
    if tuple(video.shape[1:]) != expected:
      raise ValueError(f"encoder expects video [B, {', '.join(map(str, expected))}] (NTHWC), got {video.shape}")
    table = jnp.asarray(posembed.position_table(spec.grid, spec.width, spec.pos_embed_grid))[None]
    if keep_indices is None:
      x, positions = self.patch_embed(video), table
    else:  # embed the kept tubelets only: the same rows as embedding every tubelet and gathering them
      table = jnp.broadcast_to(table, (video.shape[0],) + table.shape[1:])
      x, positions = self.patch_embed(video, keep_indices), gather_tokens(table, keep_indices)
    x = (x.astype(jnp.float32) + positions).astype(x.dtype)
    x = self.blocks(x, deterministic=not train)
    if self.use_final_norm:
      x = self.norm(x)
    return x
