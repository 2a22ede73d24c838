"""The ViT family against the official VideoMAE V2 definitions (docs/upstream.md sections 1 and 5): sizes,
semantics, scan/remat/bf16 options, config errors."""
import math
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import pytest

from tests.conftest import TINY_MODEL
from videomae_jax.errors import ConfigError
from videomae_jax.models import (VARIANTS, VideoClassifier, VideoMAEPretrainModel,
                                 model_spec_from_config)
from videomae_jax.models import layer_stacking, posembed
from videomae_jax.models.vit import Attention


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def pretrain_shapes(spec, batch=1, num_visible=8, num_decoder=16):
  model = VideoMAEPretrainModel(spec)
  video = jax.ShapeDtypeStruct((batch, spec.num_frames, spec.image_size, spec.image_size, 3), jnp.float32)
  enc = jax.ShapeDtypeStruct((batch, num_visible), jnp.int32)
  dec = jax.ShapeDtypeStruct((batch, num_decoder), jnp.int32)
  variables = jax.eval_shape(lambda v, e, d: model.init(jax.random.key(0), v, e, d), video, enc, dec)
  out = jax.eval_shape(lambda p, v, e, d: model.apply(p, v, e, d), variables, video, enc, dec)
  return variables["params"], out


# (variant, encoder params, pretraining total, tokens, decoder MLP hidden): docs/upstream.md section 1.
REFERENCE_SIZES = [("S", 21.88, 24.03, 1568, 768), ("B", 86.23, 94.21, 1568, 1536),
                   ("L", 303.86, 317.78, 1568, 2048), ("H", 631.60, 645.66, 1568, 2048),
                   ("g", 1011.61, 1026.31, 2048, 2234)]


@pytest.mark.parametrize("variant,encoder_m,total_m,tokens,decoder_mlp", REFERENCE_SIZES)
def test_parameter_counts_and_shapes_match_reference(variant, encoder_m, total_m, tokens, decoder_mlp):
  spec = model_spec_from_config({"variant": variant})
  params, out = pretrain_shapes(spec, batch=2, num_visible=16, num_decoder=24)
  # The reference quotes millions to two decimals (631.607M is listed as 631.60M): agree to 0.01M.
  assert abs(count(params["encoder"]) / 1e6 - encoder_m) < 0.01
  assert abs(count(params) / 1e6 - total_m) < 0.01
  assert spec.num_tokens == tokens
  assert spec.decoder_mlp_dim == decoder_mlp
  assert params["decoder"]["blocks"]["0"]["mlp"]["fc1"]["kernel"].shape == (spec.decoder_width, decoder_mlp)
  # Decoder head predicts one normalized tubelet: 3 * 2 * P * P values (1536 for P=16, 1176 for P=14).
  assert out.shape == (2, 24, 3 * 2 * spec.patch_size ** 2)
  assert out.shape[-1] == (1176 if variant == "g" else 1536)
  v = VARIANTS[variant]
  blk = params["encoder"]["blocks"]["0"]
  assert blk["attn"]["qkv"]["kernel"].shape == (v.width, 3 * v.width)
  assert "bias" not in blk["attn"]["qkv"]  # fused qkv has no bias; q_bias and v_bias are separate
  assert blk["attn"]["q_bias"].shape == blk["attn"]["v_bias"].shape == (v.width,)
  assert params["encoder"]["patch_embed"]["proj"]["kernel"].shape == (2, v.patch_size, v.patch_size, 3, v.width)
  assert set(params["encoder_to_decoder"]) == {"kernel"}
  assert params["mask_token"].shape == (1, 1, v.decoder_width)
  assert len(params["encoder"]["blocks"]) == v.depth and len(params["decoder"]["blocks"]) == 4


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_classifier_shapes_every_variant(variant):
  spec = model_spec_from_config({"variant": variant, "num_classes": 400})
  model = VideoClassifier(spec)
  video = jax.ShapeDtypeStruct((2, 16, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), video)
  logits = jax.eval_shape(lambda p, v: model.apply(p, v), variables, video)
  assert logits.shape == (2, 400)
  assert "norm" not in variables["params"]["encoder"]  # fine-tuning model: final norm is identity, fc_norm instead
  assert variables["params"]["fc_norm"]["scale"].shape == (VARIANTS[variant].width,)


def _inputs(spec, batch=2, seed=1):
  video = jax.random.normal(jax.random.key(seed), (batch, spec.num_frames, spec.image_size, spec.image_size, 3))
  n = spec.num_tokens
  enc = jnp.tile(jnp.arange(0, n, 4)[None], (batch, 1)).astype(jnp.int32)
  dec = jnp.tile(jnp.arange(1, n, 2)[None], (batch, 1)).astype(jnp.int32)
  return video, enc, dec


def test_scanned_equals_unscanned_from_same_weights():
  spec = model_spec_from_config(TINY_MODEL)
  spec_scan = model_spec_from_config(dict(TINY_MODEL, scan_layers=True, remat_policy="full"))
  video, enc, dec = _inputs(spec)
  variables = VideoMAEPretrainModel(spec).init(jax.random.key(0), video, enc, dec)
  out = VideoMAEPretrainModel(spec).apply(variables, video, enc, dec)
  stacked = layer_stacking.stack_layers(variables["params"])
  assert layer_stacking.is_scanned(stacked)
  out_scan = VideoMAEPretrainModel(spec_scan).apply({"params": stacked}, video, enc, dec)
  np.testing.assert_allclose(out_scan, out, rtol=1e-5, atol=1e-5)
  # Gradients agree too (remat only changes what is stored, not what is computed).
  loss = lambda m, p: jnp.mean(m.apply({"params": p}, video, enc, dec) ** 2)
  grads = jax.grad(lambda p: loss(VideoMAEPretrainModel(spec), p))(variables["params"])
  grads_scan = jax.grad(lambda p: loss(VideoMAEPretrainModel(spec_scan), p))(stacked)
  for a, b in zip(jax.tree.leaves(layer_stacking.stack_layers(grads)), jax.tree.leaves(grads_scan)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  # And the layout conversion is exact both ways.
  back = layer_stacking.unstack_layers(stacked)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables["params"])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("remat_policy", ["none", "full"])
def test_block_stack_output_rows_are_the_last_rows_of_the_full_output(remat_policy):
  """output_rows (what a pretraining decoder keeps) computes only those rows in the last block: the same
  numbers, forward and backward, as running every row and slicing."""
  from videomae_jax.models.vit import BlockStack
  stack = BlockStack(depth=2, width=32, num_heads=4, mlp_dim=64, remat_policy=remat_policy)
  x = jax.random.normal(jax.random.key(0), (2, 40, 32))
  params = stack.init(jax.random.key(1), x, True)["params"]
  full = lambda p: stack.apply({"params": p}, x, True)[:, 40 - 24:]
  trimmed = lambda p: stack.apply({"params": p}, x, True, output_rows=24)
  np.testing.assert_allclose(trimmed(params), full(params), rtol=1e-6, atol=1e-6)
  grad = lambda f: jax.grad(lambda p: jnp.sum(jnp.sin(f(p))))(params)
  for got, want in zip(jax.tree.leaves(grad(trimmed)), jax.tree.leaves(grad(full))):   # sums over 80 rows
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize("policy", ["dots", "nothing_saveable", "dots_with_no_batch_dims"])
def test_remat_policies_do_not_change_outputs(policy):
  spec = model_spec_from_config(dict(TINY_MODEL, remat_policy=policy, scan_layers=True))
  base = model_spec_from_config(dict(TINY_MODEL, scan_layers=True))
  video, enc, dec = _inputs(spec)
  variables = VideoMAEPretrainModel(base).init(jax.random.key(0), video, enc, dec)
  f = lambda s: jax.grad(lambda p: jnp.sum(VideoMAEPretrainModel(s).apply({"params": p}, video, enc, dec)))(
      variables["params"])
  # Recomputation may fuse, hence round, differently: rounding-level differences, measured <= 3.3e-7 of each
  # gradient's largest entry (elementwise, a few near-zero entries differ by 2e-5 of themselves).
  for a, b in zip(jax.tree.leaves(f(spec)), jax.tree.leaves(f(base))):
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()


def test_same_seed_same_params_and_different_seed_differs():
  spec = model_spec_from_config(TINY_MODEL)
  video, enc, dec = _inputs(spec)
  model = VideoMAEPretrainModel(spec)
  a = model.init(jax.random.key(7), video, enc, dec)
  b = model.init(jax.random.key(7), video, enc, dec)
  c = model.init(jax.random.key(8), video, enc, dec)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert not np.array_equal(a["params"]["encoder"]["patch_embed"]["proj"]["kernel"],
                            c["params"]["encoder"]["patch_embed"]["proj"]["kernel"])


def test_initialization_follows_official_rules():
  spec = model_spec_from_config(dict(TINY_MODEL, width=256, num_heads=4, mlp_dim=512))
  video, enc, dec = _inputs(spec)
  params = VideoMAEPretrainModel(spec).init(jax.random.key(0), video, enc, dec)["params"]
  blk = params["encoder"]["blocks"]["0"]
  # xavier-uniform on the fused [D, 3D] matrix: bound sqrt(6 / (D + 3D)).
  bound = math.sqrt(6 / (256 + 3 * 256))
  qkv = np.asarray(blk["attn"]["qkv"]["kernel"])
  assert qkv.max() <= bound and qkv.min() >= -bound and qkv.max() > 0.9 * bound
  np.testing.assert_array_equal(blk["attn"]["q_bias"], 0)
  np.testing.assert_array_equal(blk["norm1"]["scale"], 1)
  np.testing.assert_array_equal(blk["mlp"]["fc1"]["bias"], 0)
  assert 0.015 < float(np.std(params["mask_token"])) < 0.025 or params["mask_token"].size < 64
  classifier = VideoClassifier(model_spec_from_config(dict(TINY_MODEL, num_classes=10)))
  head = classifier.init(jax.random.key(0), video)["params"]["head"]
  # timm's trunc_normal_(std=.02) (bounds +-2: in effect N(0, 0.02)) scaled by init_scale 0.001.
  assert 0.85 * 0.02 * 0.001 < float(np.std(head["kernel"])) < 1.15 * 0.02 * 0.001
  np.testing.assert_array_equal(head["bias"], 0)


def test_attention_matches_explicit_reference():
  """q_bias and v_bias are added, the key bias is zero, scale head_dim**-0.5, rows of qkv are [q; k; v]."""
  width, heads, tokens = 32, 4, 6
  attn = Attention(width, heads)
  x = jax.random.normal(jax.random.key(0), (2, tokens, width))
  params = attn.init(jax.random.key(1), x)["params"]
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)
  out = attn.apply({"params": params}, x)
  w = np.asarray(params["qkv"]["kernel"], np.float64)
  qkv = np.asarray(x, np.float64) @ w + np.concatenate([params["q_bias"], np.zeros(width), params["v_bias"]])
  q, k, v = np.split(qkv, 3, axis=-1)
  split = lambda a: a.reshape(2, tokens, heads, width // heads).transpose(0, 2, 1, 3)
  q, k, v = split(q), split(k), split(v)
  logits = q @ k.transpose(0, 1, 3, 2) * (width // heads) ** -0.5
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(2, tokens, width)
  expected = ctx @ np.asarray(params["proj"]["kernel"]) + np.asarray(params["proj"]["bias"])
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def _kernel_or_skip():
  from videomae_jax.models import cpu_attention_kernel
  if not cpu_attention_kernel.available():
    pytest.skip("the CPU attention kernel did not build here (no C++ compiler?)")
  return cpu_attention_kernel


def test_cpu_attention_kernel_builds_where_there_is_a_compiler(monkeypatch, tmp_path):
  """Where a C++ compiler exists (CI's machines have one), the kernels build from an empty cache, a second build is
  the cached library, and 'auto' runs them on one CPU device: a broken build must fail here, not fall back
  silently."""
  import shutil
  from videomae_jax.models import attention, cpu_attention_kernel
  if shutil.which(os.environ.get("CXX", "c++")) is None:
    pytest.skip("no C++ compiler here")
  monkeypatch.setenv("VIDEOMAE_JAX_KERNEL_CACHE", str(tmp_path))
  library = cpu_attention_kernel.build()
  assert library.parent == tmp_path and library.stat().st_size > 0
  assert [p.name for p in tmp_path.iterdir()] == [library.name]          # no partial files left behind
  built = library.stat().st_mtime_ns
  assert cpu_attention_kernel.build() == library and library.stat().st_mtime_ns == built   # not rebuilt
  assert cpu_attention_kernel.available()
  assert attention.kernel_by_default() == (jax.device_count() == 1)


@pytest.mark.parametrize("tokens,head_dim", [(6, 16), (944, 16), (200, 16), (200, 88)])
def test_blocked_attention_equals_textbook_attention_and_its_gradients(tokens, head_dim):
  """attention.blocked_attention (the CPU default), with its forward pass in XLA ops or in the C++ kernel, and the
  prescaled XLA path compute what jax's dot_product_attention computes, outputs and gradients. Against float64, ours
  in float32 errs at most 3x what jax's own float32 errs in the outputs, and 5x in the gradients: the flash backward
  recomputes the probabilities from each row's saved max and sum, and takes rowsum(dout * out) for the softmax's
  Jacobian, a few roundings more (measured: outputs alike; dq 3.3e-5 vs 0.94e-5 at 944 tokens where |dq| reaches
  12.8, 2.6e-6 of it; the C++ kernels: outputs 0.7-1.1x, gradients 0.7-2.3x). Head width 88 (ViT-g's) is no
  multiple of the kernels' vector width."""
  from videomae_jax.models import attention
  shape = (2, tokens, 3, head_dim)
  q, k, v = (2.0 * jax.random.normal(jax.random.key(i), shape) for i in range(3))
  cotangent = jax.random.normal(jax.random.key(3), shape)
  textbook = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, scale=head_dim ** -0.5, implementation="xla")
  def results(f, dtype):
    args = [a.astype(dtype) for a in (q, k, v)]
    out, vjp = jax.vjp(f, *args)
    return [np.asarray(x, np.float64) for x in (out, *vjp(cotangent.astype(dtype)))]
  with jax.enable_x64():
    exact = results(textbook, jnp.float64)
  textbook_error = [np.abs(a - b).max() for a, b in zip(results(textbook, jnp.float32), exact)]
  _kernel_or_skip()
  for impl in ("blocked", "kernel", "xla"):
    ours = results(lambda q, k, v: attention.attention(q, k, v, impl), jnp.float32)
    for name, got, want, reference_error in zip(("out", "dq", "dk", "dv"), ours, exact, textbook_error):
      scale = np.abs(want).max()
      factor = 3 if name == "out" else 5
      assert np.abs(got - want).max() <= max(factor * reference_error, 1e-6 * scale), (impl, name)


def test_cpu_attention_kernel_outputs_and_softmax_statistics():
  """The kernel's output, row max and 1/sum against float64, over the shapes its code paths split on: keys not a
  multiple of its key tile (padding keys must not enter the max: here every score is below -90, where a zero would
  win it and underflow every exp), query rows not a multiple of its row tiles, several query blocks, fewer queries
  than keys (the pretraining decoder's trimmed last block), a head width that is no multiple of the vector width,
  and extra batch dimensions (vmap)."""
  kernel = _kernel_or_skip()
  def reference(q, k, v, scale, xp):  # the textbook order, in float64 (numpy) or in XLA's float32 (jnp)
    scores = xp.einsum("...qhd,...khd->...hqk", q * scale, k)
    peak = scores.max(-1)
    weights = xp.exp(scores - peak[..., None])
    total = weights.sum(-1)
    return xp.einsum("...hqk,...khd->...qhd", weights / total[..., None], v), peak, 1 / total
  def check(got, q, k, v, scale):
    """At most 3x the error of XLA's float32 textbook attention against float64 (scores of -100 carry float32
    roundings of ~1e-5 into every probability, whoever computes them)."""
    exact = reference(*(np.asarray(x, np.float64) for x in (q, k, v)), scale, np)
    xla = reference(q, k, v, scale, jnp)
    for name, g, w, x in zip(("out", "peak", "inverse_total"), got, exact, xla):
      assert g.shape == w.shape, name
      error, reference_error = np.abs(np.asarray(g, np.float64) - w).max(), np.abs(np.asarray(x, np.float64) - w).max()
      assert error <= max(3 * reference_error, 1e-6 * np.abs(w).max()), (name, error, reference_error)
  def forward(q, k, v, scale):  # the queries are the last tokens of qkv [..., N, 3, h, d]; the kernel adds the bias
    pad = [(0, 0)] * (q.ndim - 3) + [(k.shape[-3] - q.shape[-3], 0), (0, 0), (0, 0)]
    qkv = jnp.stack([jnp.pad(q, pad), k, v], axis=-3)
    bias = jnp.zeros(qkv.shape[-3:]).at[::2].set(1.0)      # exact: q and v were shifted by 1 and are shifted back
    return kernel.attention_forward(qkv - bias, bias, q.shape[-3], scale)
  for batch, queries, keys, heads, head_dim in [(2, 37, 50, 2, 88), (1, 200, 200, 3, 64), (3, 5, 33, 1, 16),
                                                  (1, 300, 1568, 2, 64)]:
    q, k, v = (jax.random.normal(jax.random.key(i), (batch, n, heads, head_dim))
               for i, n in enumerate((queries, keys, keys)))
    check(forward(q, k, v, head_dim ** -0.5), q, k, v, head_dim ** -0.5)
    k = k.at[..., 0].add(-8.0)                        # score ~ scale * 60 * (N(0, 1) - 8) + N(0, scale^2 d)
    q = q.at[..., 0].set(60.0 + 0.1 * q[..., 0])
    scale = head_dim ** -0.5 * 4.0
    assert float(jnp.max(reference(q, k, v, scale, jnp)[1])) < -90
    check(forward(q, k, v, scale), q, k, v, scale)
  stacked = [jax.random.normal(jax.random.key(i), (4, 2, 40, 2, 16)) for i in range(3)]
  check(jax.vmap(lambda q, k, v: forward(q, k, v, 0.25))(*stacked), *stacked, 0.25)


def test_cpu_attention_kernel_reads_and_differentiates_qkv_with_fewer_queries():
  """attention_from_qkv with query_rows < N (the pretraining decoder's trimmed last block) and a bias: the kernels'
  output and gradients with respect to the whole qkv and the bias equal XLA's path on the slices (q's gradient zero
  for the tokens that are no queries), to float32 rounding."""
  _kernel_or_skip()
  from videomae_jax.models import attention
  qkv = jax.random.normal(jax.random.key(0), (2, 70, 3, 2, 24))
  bias = jax.random.normal(jax.random.key(2), (3, 2, 24))
  cotangent = jax.random.normal(jax.random.key(1), (2, 30, 2, 24))
  def run(impl):
    out, vjp = jax.vjp(lambda x, b: attention.attention_from_qkv(x, 30, impl, b), qkv, bias)
    return (out, *vjp(cotangent))
  got, want = run("kernel"), run("blocked")
  for name, g, w in zip(("out", "d qkv", "d bias"), got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=name)
  np.testing.assert_array_equal(got[1][:, :40, 0], 0)
  biases = jnp.stack([bias, -bias])                  # vmapped over biases: each [3, h, d] serves its own clips
  mapped = lambda impl: jax.vmap(lambda b: attention.attention_from_qkv(qkv, 30, impl, b))(biases)
  np.testing.assert_allclose(mapped("kernel"), mapped("blocked"), rtol=1e-5, atol=1e-5)


def test_cpu_attention_kernel_falls_back_without_a_compiler(monkeypatch, tmp_path, caplog):
  """No compiler (or a failed build): 'auto' warns once, says why, and runs XLA's ops with the same results;
  'kernel' asked for by name is an error that says what to do."""
  from videomae_jax.models import attention, cpu_attention_kernel
  monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
  monkeypatch.setenv("VIDEOMAE_JAX_KERNEL_CACHE", str(tmp_path / "cache"))
  cpu_attention_kernel.available.cache_clear()
  try:
    q, k, v = (jax.random.normal(jax.random.key(i), (1, 40, 2, 16)) for i in range(3))
    with caplog.at_level("WARNING"):
      assert not attention.kernel_by_default()
    assert "no C++ compiler found" in caplog.text and "no-such-compiler" in caplog.text
    np.testing.assert_array_equal(attention.attention(q, k, v, "auto"), attention.attention(q, k, v, "blocked"))
    with pytest.raises(cpu_attention_kernel.KernelUnavailable, match="install a C\\+\\+ compiler"):
      attention.attention(q, k, v, "kernel")
  finally:
    cpu_attention_kernel.available.cache_clear()


_SHARDED_ATTENTION_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from videomae_jax.models.attention import attention
    assert jax.device_count() == 8, jax.devices()
    data = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    q, k, v, cotangent = (jax.device_put(jax.random.normal(jax.random.key(i), (8, 200, 2, 16)), data)
                          for i in range(4))
    def forward_and_backward(q, k, v, cotangent):
      out, vjp = jax.vjp(lambda q, k, v: attention(q, k, v, "auto"), q, k, v)
      return (out, *vjp(cotangent))
    hlo = jax.jit(forward_and_backward, out_shardings=data).lower(q, k, v, cotangent).compile().as_text()
    print("COLLECTIVES", [op for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute",
                                        "reduce-scatter") if op in hlo])
""")


def test_blocked_attention_keeps_a_sharded_batch_on_its_devices():
  """Its loops run over heads and query blocks, never over the batch: with clips sharded across devices, forward
  and backward need no communication (a loop over clips gathered every clip onto every device). 'auto' leaves the
  CPU kernel out on several devices: XLA would gather a custom call's operands."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _SHARDED_ATTENTION_SCRIPT], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
  assert result.returncode == 0, result.stderr[-4000:]
  assert "COLLECTIVES []" in result.stdout, result.stdout


def test_patch_embedding_is_the_conv3d_as_one_matmul():
  """TubeletProjection keeps nn.Conv's parameters (names, shapes, init) and computes its outputs and gradients."""
  from videomae_jax.models.vit import PatchEmbed
  video = jax.random.normal(jax.random.key(0), (2, 4, 32, 48, 3))
  embed = PatchEmbed(width=24, patch_size=16, tubelet_size=2)
  params = embed.init(jax.random.key(1), video)["params"]
  conv = nn.Conv(24, kernel_size=(2, 16, 16), strides=(2, 16, 16), padding="VALID")
  conv_params = conv.init(jax.random.key(1), video)["params"]
  assert jax.tree.map(jnp.shape, params["proj"]) == jax.tree.map(jnp.shape, conv_params)
  by_conv = lambda p, x: conv.apply({"params": p["proj"]}, x).reshape(2, -1, 24)
  by_matmul = lambda p, x: embed.apply({"params": p}, x)
  np.testing.assert_allclose(by_matmul(params, video), by_conv(params, video), rtol=1e-5, atol=1e-5)
  loss = lambda f: jax.grad(lambda p, x: jnp.sum(jnp.sin(f(p, x))), argnums=(0, 1))(params, video)
  for got, want in zip(jax.tree.leaves(loss(by_matmul)), jax.tree.leaves(loss(by_conv))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_patch_embedding_of_kept_tokens_embeds_those_tubelets_only():
  """With keep_indices the embedding cuts out those tubelets only (a masked encoder's ~10%): the same rows, and the
  same parameter gradients, as embedding every tubelet and gathering the kept ones."""
  from videomae_jax.models.vit import PatchEmbed, gather_tokens
  video = jax.random.normal(jax.random.key(0), (2, 4, 32, 48, 3))             # a 2 x 2 x 3 token grid
  embed = PatchEmbed(width=24, patch_size=16, tubelet_size=2)
  params = embed.init(jax.random.key(1), video)["params"]
  keep = jnp.array([[11, 0, 5], [3, 7, 10]])
  everything = lambda p: gather_tokens(embed.apply({"params": p}, video), keep)
  kept_only = lambda p: embed.apply({"params": p}, video, keep)
  np.testing.assert_array_equal(kept_only(params), everything(params))
  grad = lambda f: jax.grad(lambda p: jnp.sum(jnp.sin(f(p))))(params)
  for got, want in zip(jax.tree.leaves(grad(kept_only)), jax.tree.leaves(grad(everything))):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_gelu_is_exact_erf_form():
  """vit.gelu is the exact GELU (not the tanh approximation) to float32 precision: within 2e-6 of float64 over
  [-8, 8], where PyTorch's float32 nn.GELU (the official activation, the same formula) errs 1.2e-6."""
  from videomae_jax.models.layers import gelu
  spec = model_spec_from_config(TINY_MODEL)
  x = np.linspace(-8, 8, 4001)
  exact = 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))
  np.testing.assert_allclose(np.asarray(gelu(jnp.asarray(x, jnp.float32)), np.float64), exact, rtol=0, atol=2e-6)
  assert abs(float(gelu(jnp.float32(1.0))) - float(nn.gelu(1.0, approximate=True))) > 1e-4
  assert spec.layer_norm_eps == 1e-6


def test_bfloat16_path_runs_and_stays_close_to_float32():
  spec32 = model_spec_from_config(TINY_MODEL)
  spec16 = model_spec_from_config(dict(TINY_MODEL, compute_dtype="bfloat16"))
  video, enc, dec = _inputs(spec32)
  variables = VideoMAEPretrainModel(spec32).init(jax.random.key(0), video, enc, dec)
  out32 = VideoMAEPretrainModel(spec32).apply(variables, video, enc, dec)
  out16 = VideoMAEPretrainModel(spec16).apply(variables, video, enc, dec)
  assert out16.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))  # params stay float32
  rel = float(jnp.linalg.norm(out16.astype(jnp.float32) - out32) / jnp.linalg.norm(out32))
  assert rel < 0.02, rel


def test_drop_path_only_in_training_and_per_sample():
  spec = model_spec_from_config(dict(TINY_MODEL, drop_path_rate=0.5))
  video, enc, dec = _inputs(spec, batch=8)
  model = VideoMAEPretrainModel(spec)
  variables = model.init(jax.random.key(0), video, enc, dec)
  eval_a = model.apply(variables, video, enc, dec)
  eval_b = VideoMAEPretrainModel(model_spec_from_config(TINY_MODEL)).apply(variables, video, enc, dec)
  np.testing.assert_allclose(eval_a, eval_b, rtol=1e-6)
  train_a = model.apply(variables, video, enc, dec, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = model.apply(variables, video, enc, dec, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)


def test_encoder_keep_indices_gather_tokens():
  """Positions are added before the gather, and attention is permutation-equivariant: keeping every token in a
  permuted order gives the permuted full output, so kept tokens carry their own positions."""
  spec = model_spec_from_config(TINY_MODEL)
  video, _, _ = _inputs(spec)
  from videomae_jax.models import VideoViTEncoder
  encoder = VideoViTEncoder(spec)
  variables = encoder.init(jax.random.key(0), video)
  full = encoder.apply(variables, video)
  order = jnp.stack([jax.random.permutation(jax.random.key(i), spec.num_tokens) for i in range(2)])
  permuted = encoder.apply(variables, video, order.astype(jnp.int32))
  np.testing.assert_allclose(permuted, jnp.take_along_axis(full, order[..., None], axis=1), rtol=1e-4, atol=1e-5)


def test_sinusoid_table_formula():
  table = posembed.sinusoid_table(1568, 768)
  p, j = 37, 101
  angle = p / 10000 ** (2 * (j // 2) / 768)
  np.testing.assert_allclose(table[p, j], math.cos(angle), rtol=1e-5)  # odd channel -> cos
  np.testing.assert_allclose(table[p, j - 1], math.sin(angle), rtol=1e-5)
  assert table.shape == (1568, 768)


def test_position_table_interpolation():
  # Same grid: untouched. Doubling time with linear interpolation keeps the end points' neighbours exact.
  same = posembed.position_table((8, 14, 14), 64, (8, 14, 14))
  np.testing.assert_array_equal(same, posembed.sinusoid_table(8 * 14 * 14, 64))
  table = posembed.position_table((16, 14, 14), 64, (8, 14, 14))
  assert table.shape == (16 * 14 * 14, 64)
  source = posembed.sinusoid_table(8 * 196, 64).reshape(8, 196, 64)
  out = table.reshape(16, 196, 64)
  np.testing.assert_allclose(out[0], source[0], rtol=1e-6, atol=1e-6)  # clamped at the start
  np.testing.assert_allclose(out[1], 0.75 * source[0] + 0.25 * source[1], rtol=1e-5, atol=1e-6)
  # A model at 32 frames built on the 16-frame table runs.
  spec = model_spec_from_config(dict(TINY_MODEL, num_frames=8, pos_embed_grid=(2, 4, 4)))
  video, enc, dec = _inputs(spec)
  assert VideoMAEPretrainModel(spec).init(jax.random.key(0), video, enc, dec)


def test_position_interpolation_matches_torch_when_available():
  torch = pytest.importorskip("torch")
  src = posembed.sinusoid_table(8 * 14 * 14, 32)
  ours = posembed.interpolate_table(src, (8, 14, 14), (4, 19, 19))
  t = torch.tensor(src).reshape(8, 14, 14, 32).permute(0, 3, 1, 2)  # (T, D, H, W): bicubic per time slice
  t = torch.nn.functional.interpolate(t, size=(19, 19), mode="bicubic", align_corners=False)
  t = t.permute(2, 3, 1, 0).reshape(19 * 19, 32, 8)  # linear over time
  t = torch.nn.functional.interpolate(t, size=4, mode="linear", align_corners=False)
  expected = t.reshape(19, 19, 32, 4).permute(3, 0, 1, 2).reshape(-1, 32).numpy()
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides,message", [
    (dict(num_frames=15), "num_frames=15 is not divisible by config.model.tubelet_size=2"),
    (dict(image_size=230), "image_size=230 is not divisible by the patch size 16"),
    (dict(num_heads=5), "not divisible by config.model.num_heads=5"),
    (dict(remat_policy="sometimes"), "remat_policy='sometimes'"),
    (dict(variant="XL"), "variant='XL' is unknown"),
])
def test_bad_config_says_what_to_change(overrides, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    model_spec_from_config(dict({"variant": "B"}, **overrides))
