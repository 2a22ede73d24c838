"""Optimizer recipe pieces and the sharding rules, checked with exact values."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from videomae_jax import optim, sharding
from videomae_jax.errors import ConfigError


def _params(scanned=False):
  block = {"attn": {"qkv": {"kernel": np.zeros((8, 24))}, "q_bias": np.zeros(8), "v_bias": np.zeros(8)},
           "norm1": {"scale": np.ones(8), "bias": np.zeros(8)}}
  blocks = ({"layers": jax.tree.map(lambda x: np.stack([x] * 3), block)} if scanned
            else {str(i): block for i in range(3)})
  return {"encoder": {"patch_embed": {"proj": {"kernel": np.zeros((2, 4, 4, 3, 8)), "bias": np.zeros(8)}},
                      "blocks": blocks},
          "mask_token": np.zeros((1, 1, 4)), "fc_norm": {"scale": np.ones(8)},
          "head": {"kernel": np.zeros((8, 5)), "bias": np.zeros(5)}}


@pytest.mark.parametrize("scanned", [False, True])
def test_weight_decay_mask_skips_1d_biases_and_mask_token(scanned):
  mask = optim.weight_decay_mask(_params(scanned))
  blocks = mask["encoder"]["blocks"]["layers" if scanned else "0"]
  assert blocks["attn"]["qkv"]["kernel"] is True
  assert blocks["attn"]["q_bias"] is False and blocks["norm1"]["scale"] is False
  assert mask["encoder"]["patch_embed"]["proj"]["kernel"] is True
  assert mask["encoder"]["patch_embed"]["proj"]["bias"] is False
  assert mask["mask_token"] is False  # 3-D, but never decayed (official no_weight_decay list)
  assert mask["head"]["kernel"] is True and mask["head"]["bias"] is False


@pytest.mark.parametrize("scanned", [False, True])
def test_layer_decay_scales_exact(scanned):
  scales = optim.layer_decay_scales(_params(scanned), depth=3, layer_decay=0.5)
  assert float(scales["encoder"]["patch_embed"]["proj"]["kernel"].reshape(-1)[0]) == 0.5 ** 4  # layer 0
  assert float(scales["head"]["kernel"]) == 1.0 and float(scales["fc_norm"]["scale"]) == 1.0  # layer L+1
  qkv = scales["encoder"]["blocks"]["layers"]["attn"]["qkv"]["kernel"] if scanned else np.stack(
      [scales["encoder"]["blocks"][str(i)]["attn"]["qkv"]["kernel"] for i in range(3)])
  np.testing.assert_array_equal(np.asarray(qkv).reshape(-1), [0.5 ** 3, 0.5 ** 2, 0.5 ** 1])  # block k: k+1


def test_schedule_warmup_then_cosine_to_min_lr():
  schedule = optim.learning_rate_schedule(base_lr=1e-3, batch_size=512, min_lr=1e-6, warmup_steps=10,
                                          total_steps=110)
  peak = 1e-3 * 512 / 256
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(5)), peak / 2, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10)), peak, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(60)), 1e-6 + (peak - 1e-6) * 0.5, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(110)), 1e-6, rtol=1e-5)


def test_optimizer_clips_and_decays_only_matrices():
  params = {"w": jnp.ones((4, 4)), "b": jnp.ones((4,))}
  cfg = dict(base_lr=256.0, min_lr=0.0, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.5, grad_clip_norm=1.0)
  opt, _ = optim.make_optimizer(cfg, params, batch_size=1, warmup_steps=0, total_steps=100)
  state = opt.init(params)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = opt.update(zero, state, params)
  # Zero gradient: only decoupled weight decay moves the matrix (lr 1 at step 0 x wd 0.5 x param 1); bias untouched.
  np.testing.assert_allclose(updates["w"], -0.5 * np.ones((4, 4)), rtol=1e-6)
  np.testing.assert_array_equal(updates["b"], 0)


@pytest.mark.parametrize("scale", [0.1, 10.0])   # below and above the clip norm
def test_clip_by_global_norm_is_optax_clip(scale):
  """Our clip (a handed-in norm, a multiplied factor) gives optax.clip_by_global_norm's gradients to float32
  rounding, with or without the norm handed in, and the same (empty) state, so checkpoints are unchanged."""
  grads = {"w": scale * jax.random.normal(jax.random.key(0), (8, 16)), "b": scale * jnp.arange(5.0)}
  reference, reference_state = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
  clip = optim.clip_by_global_norm(1.0)
  assert jax.tree.structure(clip.init(grads)) == jax.tree.structure(optax.clip_by_global_norm(1.0).init(grads))
  for ours, _ in (clip.update(grads, optax.EmptyState()),
                  clip.update(grads, optax.EmptyState(), global_norm=optax.tree.norm(grads))):
    for name in grads:
      np.testing.assert_allclose(ours[name], reference[name], rtol=2e-7, atol=0)
  assert float(optax.tree.norm(reference)) == pytest.approx(min(1.0, float(optax.tree.norm(grads))), rel=1e-6)


def test_mesh_shape_resolution_and_errors():
  assert sharding.mesh_shape({"data": -1, "fsdp": 4}, 8) == (2, 4)
  assert sharding.mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4)
  with pytest.raises(ConfigError, match="fsdp=3 does not divide the 8 devices"):
    sharding.mesh_shape({"data": -1, "fsdp": 3}, 8)
  with pytest.raises(ConfigError, match="set one axis to -1"):
    sharding.mesh_shape({"data": 2, "fsdp": 2}, 8)


def test_partition_spec_shards_largest_divisible_dim():
  P = jax.sharding.PartitionSpec
  assert sharding.partition_spec((1408, 4224), "fsdp", 8, 16) == P(None, "fsdp")
  assert sharding.partition_spec((6144, 1408), "fsdp", 8, 16) == P("fsdp", None)
  assert sharding.partition_spec((1408,), "fsdp", 8, 2 ** 14) == P()  # small: replicated
  assert sharding.partition_spec((40, 1410, 7), "fsdp", 8, 16) == P("fsdp", None, None)
  assert sharding.partition_spec((3, 5), "fsdp", 8, 1) == P()  # nothing divisible
  assert sharding.partition_spec((1408, 4224), "replicate", 8, 16) == P()


def test_fsdp_state_shardings_on_8_cpu_devices():
  """Parameters and AdamW moments sharded the same way; scalars replicated (own process: 8 fake devices)."""
  code = textwrap.dedent("""
    import jax, numpy as np
    from tests.conftest import TINY_MODEL
    from videomae_jax import optim, sharding, train_step, masking
    from videomae_jax.tasks.pretrain import PretrainTask
    from videomae_jax.default_config import pretrain_config
    from videomae_jax.models import model_spec_from_config
    cfg = pretrain_config("B")
    spec = model_spec_from_config(dict(TINY_MODEL, width=64))
    task = PretrainTask(spec, masking.masking_plan(cfg.masking, spec))
    params = jax.eval_shape(task.init_params, jax.random.key(0))
    opt, _ = optim.make_optimizer(cfg.optimizer, params, batch_size=8, warmup_steps=1, total_steps=10)
    state = jax.eval_shape(lambda: train_step.init_train_state(task, opt, 0))
    mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
    sh = sharding.state_shardings(state, mesh, min_size=256)
    qkv = sh["params"]["encoder"]["blocks"]["0"]["attn"]["qkv"]["kernel"]
    assert qkv.spec == jax.sharding.PartitionSpec(None, "fsdp"), qkv.spec
    adam = sh["opt_state"][1][0]
    assert adam.mu["encoder"]["blocks"]["0"]["attn"]["qkv"]["kernel"] == qkv
    assert adam.count.spec == jax.sharding.PartitionSpec()
    assert sh["step"].spec == jax.sharding.PartitionSpec()
    state = jax.jit(lambda: train_step.init_train_state(task, opt, 0), out_shardings=sh)()
    shard_shape = state["params"]["encoder"]["blocks"]["0"]["attn"]["qkv"]["kernel"].addressable_shards[0].data.shape
    assert shard_shape == (64, 48), shard_shape
    print("OK")
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
def test_sharding_rules_from_the_command_line():
  """--config.sharding_rules reaches the compiled step: replicating everything grows each device's arguments."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def argument_bytes(*overrides):
    out = subprocess.run([sys.executable, "-m", "videomae_jax.tools.inspect_config",
                          "--config=tests/configs/tiny_pretrain.py", "--config.mesh.fsdp=8",
                          "--config.data.crop_canvas=(48, 48)", "--batch_size=16", "--json", *overrides],
                         env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)["memory"]["argument_size"]

  sharded = argument_bytes()
  replicated = argument_bytes("--config.sharding_rules=(('.*', 'replicate'),)")
  assert replicated > 2 * sharded, (replicated, sharded)
