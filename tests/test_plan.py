"""videomae_jax.planning (`python -m videomae_jax.tools.plan`): memory, FLOPs, time and the recommended mesh,
checked against the recipe and against XLA."""
import json
import math
import os
import subprocess
import sys

import pytest

from configs import vitb_pretrain, vitg_pretrain
from videomae_jax import masking, resolve
from videomae_jax import planning as plan
from videomae_jax.errors import ConfigError
from videomae_jax.models.variants import model_spec_from_config

GIB = 1024 ** 3


def _vitg():
  return resolve.resolve(vitg_pretrain.get_config(), for_training=False)


def test_vitg_on_64_h100_fits_pure_data_parallel():
  result = plan.make_plan(_vitg(), num_devices=64, device="h100")
  assert round(result["params"]["total"] / 1e6, 2) == 1026.31
  assert round(result["params"]["encoder"] / 1e6, 2) == 1011.61
  rec = result["recommended"]
  assert rec["fits"] and rec["total_bytes"] < 80 * GIB * 0.9
  # 1026.31M float32 params + 2 AdamW moments + float32 grads, replicated: 16 bytes per parameter.
  assert rec["bytes"]["params"] + rec["bytes"]["optimizer"] + rec["bytes"]["gradients"] == pytest.approx(
      16 * 1026306560, rel=1e-6)
  assert rec["mesh"] == {"data": 64, "fsdp": 1}            # the smallest fsdp that fits
  assert 8192 % 64 == 0 and rec["per_device_batch"] * 64 * rec["microbatches"] == 8192
  assert rec["per_device_batch"] == 128 and rec["microbatches"] == 1
  assert result["tokens"] == {"encoder": 208, "decoder": 1232, "predicted": 1024, "total": 2048}
  time = result["time"]
  assert time["steps_per_epoch"] == 658                    # 1,348,000 videos / (8192 / 4 repeated augmentations)
  step_flops = result["flops"]["train_model_per_step"]
  assert time["step_seconds"] == pytest.approx(step_flops / (64 * 989e12 * 0.4))


def test_vitg_on_v5e_256_needs_fsdp():
  result = plan.make_plan(_vitg(), num_devices=256, device="v5e")
  rec = result["recommended"]
  assert rec["fits"] and rec["total_bytes"] < 16 * GIB
  assert rec["mesh"]["data"] * rec["mesh"]["fsdp"] == 256 and rec["mesh"]["fsdp"] > 1
  assert rec["per_device_batch"] == 32 and rec["microbatches"] == 1 and 8192 % 256 == 0
  # Every smaller fsdp was tried first and does not fit; the config's own mesh (fsdp=1) does not either.
  smaller = [c for c in result["candidates"] if c["mesh"]["fsdp"] < rec["mesh"]["fsdp"]]
  assert smaller and not any(c["fits"] for c in smaller)
  assert result["configured_mesh"]["mesh"]["fsdp"] == 1 and not result["configured_mesh"]["fits"]
  # FSDP divides the parameter state by the axis size (a few small leaves stay replicated).
  state = rec["bytes"]["params"] + rec["bytes"]["optimizer"] + rec["bytes"]["gradients"]
  assert state == pytest.approx(16 * 1026306560 / rec["mesh"]["fsdp"], rel=0.01)


def test_per_device_batch_and_fsdp_options():
  result = plan.make_plan(_vitg(), num_devices=64, device="h100", per_device_batch=32, fsdp=2)
  rec = result["recommended"]
  assert rec["mesh"] == {"data": 32, "fsdp": 2} and rec["per_device_batch"] == 32 and rec["microbatches"] == 4
  assert any("gradient accumulation" in note for note in result["notes"])
  with pytest.raises(ConfigError, match="must divide"):
    plan.make_plan(_vitg(), num_devices=64, device="h100", per_device_batch=48)
  with pytest.raises(ConfigError, match="not divisible"):
    plan.make_plan(_vitg(), num_devices=48, device="h100")
  # With several slices, fsdp stays inside one: 2 slices of 128 chips allow fsdp up to 128.
  sliced = plan.make_plan(_vitg(), num_devices=256, device="v5e", num_slices=2)
  assert all(128 % c["mesh"]["fsdp"] == 0 for c in sliced["candidates"])


def test_too_few_devices_fall_back_to_microbatches():
  result = plan.make_plan(_vitg(), num_devices=16, device="v5e")
  rec = result["recommended"]
  assert rec is not None and rec["fits"] and rec["microbatches"] > 1
  assert rec["per_device_batch"] * rec["microbatches"] * 16 == 8192


def test_analytic_flops_match_the_papers_gflops():
  # VideoMAE V2 reports ViT-B pretraining cost per clip (multiply-accumulates, as fvcore counts them):
  # running-cell decoder masking 25.87 G, no decoder masking (VideoMAE) 35.48 G (the decoder masking ablation).
  config = vitb_pretrain.get_config()
  spec = model_spec_from_config(config.model)
  macs = plan.flops_per_clip(spec, masking.masking_plan(config.masking, spec))["forward"] / 2
  assert macs / 1e9 == pytest.approx(25.87, rel=0.005)
  config.masking.decoder = "none"
  macs = plan.flops_per_clip(spec, masking.masking_plan(config.masking, spec))["forward"] / 2
  assert macs / 1e9 == pytest.approx(35.48, rel=0.005)


def test_remat_adds_one_forward_of_the_blocks():
  config = _vitg()
  spec = model_spec_from_config(config.model)
  flops = plan.flops_per_clip(spec, masking.masking_plan(config.masking, spec))
  assert spec.remat_policy == "full"
  assert 3 * flops["forward"] > flops["train_model"] > 2.9 * flops["forward"]   # patch embedding: no input grad
  assert flops["train_hardware"] - flops["train_model"] == pytest.approx(0.98 * flops["forward"], rel=0.02)


def test_sharding_rule_mirrors_the_trainer():
  from videomae_jax import sharding
  for shape in [(40, 1408, 4224), (1408,), (40, 6144), (512, 1176), (3, 5), (2, 14, 14, 3, 1408)]:
    for fsdp in (1, 2, 4, 7, 64):
      spec = sharding.partition_spec(shape, "fsdp", fsdp, sharding.DEFAULT_FSDP_MIN_SIZE)
      sharded = any(axis is not None for axis in spec)
      expected = math.prod(shape) / (fsdp if sharded else 1)
      assert plan._sharded_elements("encoder/blocks/0/attn/qkv/kernel", shape, fsdp, sharding.DEFAULT_FSDP_MIN_SIZE,
                                    sharding.DEFAULT_RULES) == expected, (shape, fsdp)


def test_cli_table_and_json():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  base = [sys.executable, "-m", "videomae_jax.tools.plan", "--config=configs/vitg_pretrain.py"]
  table = subprocess.run(base + ["--num_devices=64", "--device=h100"], capture_output=True, text=True, env=env,
                         timeout=300)
  assert table.returncode == 0, table.stderr
  assert "params           1026.31M" in table.stdout
  assert "recommended: mesh data=64 x fsdp=1" in table.stdout
  out = subprocess.run(base + ["--num_devices=256", "--device=v5e", "--json", "--mfu=0.5"], capture_output=True,
                       text=True, env=env, timeout=300)
  result = json.loads(out.stdout)
  assert result["recommended"]["fits"] and result["time"]["mfu"] == 0.5


# ---------------------------------------------------------------------------------------------------------------
# Against XLA on CPU


def _small_config(remat: str, scan: bool = True, compute_dtype: str = "float32"):
  config = vitg_pretrain.get_config()
  config.model.update(dict(variant="custom", width=128, depth=2, num_heads=4, mlp_dim=512, patch_size=8,
                           num_frames=8, image_size=64, decoder_width=64, decoder_num_heads=2, decoder_depth=1,
                           compute_dtype=compute_dtype, scan_layers=scan, remat_policy=remat,
                           attention_impl="xla"))  # what the planner assumes for 'auto' (blocked on the CPU)
  # Half the tokens visible, so blocks (not the clip itself) dominate the activations, as in real configs.
  config.masking.encoder_ratio = 0.5
  config.batch_size = 8
  config.data.crop_canvas = (80, 106)  # 4:3 frames at this config's scale (320x428 for 224-px views).
  return config


def _compare_with_xla(config):
  """(plan's bytes / XLA's bytes, analytic model FLOPs / XLA's) for one CPU device and config.batch_size clips."""
  from videomae_jax import analysis
  result = analysis.analyze(config, config.batch_size)
  spec = model_spec_from_config(config.model)
  masks = masking.masking_plan(config.masking, spec)
  # One input buffer: XLA sees only the batch in use, not the prefetched one.
  estimate = plan.estimate_memory(spec, masks, plan.param_shapes(config), data=1, fsdp=1,
                                  per_device_batch=config.batch_size, input_buffers=1,
                                  input_bytes_per_clip=plan.input_bytes_per_view(config))
  flops = plan.flops_per_clip(spec, masks)["train_model"]
  return estimate.total / result["memory"]["per_device_bytes"], flops / result["flops"]["train_step_per_clip"]


# The planner's figure is meant to be within 30% of XLA's memory analysis of the real compiled step. On this
# config (XLA:CPU, float32) it reads 1.35x XLA's with remat 'full' and 1.08x with 'none' (2026-11-30; it read
# 1.11x and 0.95x while the train step's non-finite guard chose between old and new parameters and moments after
# the update, which kept both in memory: XLA's number fell by that 14% when the update became in place; and 1.31x
# and 1.06x before the patch embedding and the targets stopped rearranging the whole clip, which XLA kept and
# the planner never counted). Why they differ:
#  * remat 'full': the planner budgets two full blocks (recomputed forward + its cotangents) for the block being
#    differentiated; XLA frees parts of the recomputed block as soon as their cotangents are formed, and fuses
#    the softmax with its neighbours, so it needs less (planner high).
#  * remat 'none': XLA:CPU also keeps copies the planner does not count (q/k/v transposed to the attention
#    einsum layout, LayerNorm statistics, the erf GELU's intermediates) (planner low).
#  * Both: the input pipeline's prefetched batch and XLA's fragmentation are outside XLA's number; on GPU/TPU the
#    headroom (10%) covers them.
# Only scanned stacks are compared: without scan XLA:CPU's scheduler does not realize remat's savings (it
# reported more memory with remat than without on this config), while the scanned step is what ViT-g/H use.
# FLOPs: XLA also counts elementwise work (LayerNorm, GELU, softmax, the optimizer), about 5% on this config;
# the analytic count is matmuls only.
def test_memory_and_flops_match_xla_on_cpu():
  memory_ratio, flops_ratio = _compare_with_xla(_small_config("full"))
  assert 0.7 < memory_ratio < 1.4, memory_ratio  # the planner on the safe side: see the note above
  assert 0.9 < flops_ratio <= 1.0, flops_ratio


@pytest.mark.slow
@pytest.mark.parametrize("remat, compute_dtype", [("none", "float32"), ("full", "bfloat16")])
def test_memory_matches_xla_on_cpu_other_settings(remat, compute_dtype):
  memory_ratio, _ = _compare_with_xla(_small_config(remat, compute_dtype=compute_dtype))
  assert 0.7 < memory_ratio < 1.3, memory_ratio


@pytest.mark.slow
def test_steps_per_epoch_match_the_trainer():
  from videomae_jax import optim
  for config in (_vitg(), vitb_pretrain.get_config()):
    assert plan.make_plan(resolve.resolve(config, for_training=False), num_devices=64,
                          device="h100")["time"]["steps_per_epoch"] == optim.schedule_lengths(config)[0]
