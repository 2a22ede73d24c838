"""Dual masking and MATS token selection: exact token counts, official running-cell maps, static shapes."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax import masking
from videomae_jax.default_config import masking_config
from videomae_jax.errors import ConfigError
from videomae_jax.models.variants import model_spec_from_config

VIT_B = model_spec_from_config(dict(variant="B"))
VIT_G = model_spec_from_config(dict(variant="g"))
SMALL = model_spec_from_config(dict(variant="custom", width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=8,
                                    num_frames=8, image_size=32, decoder_width=16, decoder_num_heads=2))


# Eager vmap dispatch is slow on CPU; every test draws through one jitted function (plan and batch static).
draw = jax.jit(masking.sample_masks, static_argnums=(0, 2))


def make_cfg(**overrides):
  cfg = masking_config()
  cfg.update(overrides)
  return cfg


def as_sets(masks):
  return ([set(row.tolist()) for row in np.asarray(masks.encoder_indices)],
          [set(row.tolist()) for row in np.asarray(masks.decoder_indices)])


def check_well_formed(plan, masks, batch):
  enc, dec, loss = (np.asarray(masks.encoder_indices), np.asarray(masks.decoder_indices),
                    np.asarray(masks.loss_mask))
  assert enc.shape == (batch, plan.num_encoder_tokens) and enc.dtype == np.int32
  assert dec.shape == (batch, plan.num_decoder_tokens) and dec.dtype == np.int32
  assert loss.shape == (batch, plan.num_decoder_tokens) and loss.dtype == np.float32
  for b in range(batch):
    assert np.all(np.diff(enc[b]) > 0), "encoder indices must be strictly increasing (sorted, unique)"
    assert np.all(np.diff(dec[b]) > 0), "decoder indices must be strictly increasing (sorted, unique)"
    assert enc[b].min() >= 0 and enc[b].max() < plan.num_tokens and dec[b].max() < plan.num_tokens
    hidden = ~np.isin(dec[b], enc[b])
    np.testing.assert_array_equal(loss[b], hidden.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# Official running-cell generator, transcribed: a queue with a pointer that advances once per slice.
# ---------------------------------------------------------------------------------------------------------------
class OfficialCell:

  def __init__(self, num_masks, num_patches):
    self.size = num_masks + num_patches
    self.queue = np.hstack([np.ones(num_masks), np.zeros(num_patches)])
    self.queue_ptr = 0

  def set_ptr(self, pos):
    self.queue_ptr = pos

  def get_cell(self):
    return self.queue[(np.arange(self.size) + self.queue_ptr) % self.size]

  def run_cell(self):
    self.queue_ptr += 1


class OfficialRunningCellGenerator:

  def __init__(self, input_size, mask_ratio=0.5):
    frames, height, width = input_size
    num_masks = int(4 * mask_ratio)
    cell = OfficialCell(num_masks, 4 - num_masks)
    all_maps = []
    for ptr_pos in range(cell.size):
      cell.set_ptr(ptr_pos)
      per_slice = []
      for _ in range(frames):
        cell.run_cell()
        unit = cell.get_cell().reshape(2, 2)
        per_slice.append(np.tile(unit, [height // 2, width // 2]).flatten())
      all_maps.append(np.stack(per_slice, axis=0))
    self.all_mask_maps = np.stack(all_maps, axis=0)   # [4, T', H'W'], 1 = dropped


@pytest.mark.parametrize("grid", [(8, 14, 14), (8, 16, 16), (5, 4, 6)])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_running_cell_maps_equal_the_official_generator(grid, ratio):
  ours = masking.running_cell_maps(grid, ratio).reshape(4, grid[0], -1)
  official = OfficialRunningCellGenerator(grid, ratio).all_mask_maps.astype(bool)
  np.testing.assert_array_equal(ours, official)


def test_running_cell_keeps_every_position_in_exactly_2_of_4_consecutive_slices():
  maps = masking.running_cell_maps((16, 14, 14), 0.5)
  kept = ~maps
  for offset in range(4):
    for start in range(16 - 3):
      np.testing.assert_array_equal(kept[offset, start:start + 4].sum(axis=0), 2)
  # The dropped unit by pointer p % 4, as the official masking_generator.py produces them (docs/upstream.md
  # section 2; offset 0 starts at p = 1).
  expected_units = {1: [[1, 0], [0, 1]], 2: [[0, 0], [1, 1]], 3: [[0, 1], [1, 0]], 0: [[1, 1], [0, 0]]}
  for t in range(4):
    np.testing.assert_array_equal(maps[0, t, :2, :2], expected_units[(t + 1) % 4])


# ---------------------------------------------------------------------------------------------------------------
# Token counts of the real backbones (index arithmetic only, no model).
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, visible, kept, decoder_inputs, loss_tokens", [
    (VIT_B, 160, 784, 944, 704),
    (VIT_G, 208, 1024, 1232, 920),
])
def test_tube_and_running_cell_counts_for_vit_b_and_g(spec, visible, kept, decoder_inputs, loss_tokens):
  plan = masking.masking_plan(make_cfg(), spec)
  assert (plan.num_encoder_tokens, plan.num_decoder_tokens, plan.num_decoder_inputs, plan.num_loss_tokens) == (
      visible, kept, decoder_inputs, loss_tokens)
  assert plan.loss_tokens_exact
  batch = 8
  masks = draw(plan, jax.random.key(3), batch)
  check_well_formed(plan, masks, batch)
  np.testing.assert_array_equal(np.asarray(masks.loss_mask).sum(-1), loss_tokens)   # every sample
  # Tube: the same spatial positions are visible on every temporal slice.
  per_frame = spec.tokens_per_frame
  enc = np.asarray(masks.encoder_indices).reshape(batch, spec.grid[0], -1)
  np.testing.assert_array_equal(enc % per_frame, np.broadcast_to(enc[:, :1] % per_frame, enc.shape))
  np.testing.assert_array_equal(enc // per_frame, np.broadcast_to(np.arange(spec.grid[0])[None, :, None],
                                                                  enc.shape))
  # Decoder-kept set is one of the 4 official maps.
  maps = masking.running_cell_maps(spec.grid, 0.5).reshape(4, -1)
  for row in np.asarray(masks.decoder_indices):
    kept_mask = np.zeros(spec.num_tokens, bool)
    kept_mask[row] = True
    assert any(np.array_equal(kept_mask, ~m) for m in maps)


def test_running_cell_map_is_drawn_uniformly_per_sample():
  plan = masking.masking_plan(make_cfg(), SMALL)
  masks = draw(plan, jax.random.key(0), 800)
  kept_maps = ~masking.running_cell_maps(SMALL.grid, 0.5).reshape(4, -1)
  kept = np.zeros((800, SMALL.num_tokens), bool)
  np.put_along_axis(kept, np.asarray(masks.decoder_indices), True, axis=1)
  which = (kept[:, None, :] == kept_maps[None]).all(-1)          # [800, 4]
  np.testing.assert_array_equal(which.sum(-1), 1)                 # every sample uses exactly one official map
  counts = which.sum(0)
  assert counts.min() > 150, counts                               # 200 expected each


def test_motion_encoder_and_decoder_counts_for_vit_b():
  plan = masking.masking_plan(make_cfg(encoder="motion", decoder="motion", encoder_ratio=0.9,
                                       motion_keep_ratio=0.3), VIT_B)
  assert (plan.num_motion_kept, plan.num_encoder_tokens, plan.num_decoder_tokens, plan.num_decoder_inputs,
          plan.num_loss_tokens) == (470, 156, 314, 470, 314)
  batch = 4
  scores = jax.random.uniform(jax.random.key(1), (batch, plan.num_tokens))
  masks = draw(plan, jax.random.key(2), batch, scores)
  check_well_formed(plan, masks, batch)
  np.testing.assert_array_equal(np.asarray(masks.loss_mask).sum(-1), 314)
  enc, dec = as_sets(masks)
  for b in range(batch):
    top = set(np.argsort(-np.asarray(scores[b]))[:470].tolist())
    assert enc[b] | dec[b] == top and not enc[b] & dec[b]


def test_motion_encoder_shuffles_the_kept_set_per_sample():
  plan = masking.masking_plan(make_cfg(encoder="motion", decoder="motion"), VIT_B)
  scores = jnp.tile(jax.random.uniform(jax.random.key(1), (1, plan.num_tokens)), (3, 1))
  enc, dec = as_sets(draw(plan, jax.random.key(5), 3, scores))
  assert enc[0] != enc[1] and enc[1] != enc[2]
  assert enc[0] | dec[0] == enc[1] | dec[1]


def test_finetune_keep_ratio_0_6_keeps_940_tokens_for_vit_b():
  plan = masking.masking_plan(make_cfg(finetune_keep_ratio=0.6), VIT_B)
  assert plan.num_finetune_tokens == 940
  assert masking.masking_plan(make_cfg(), VIT_B).num_finetune_tokens == 1568


def test_tube_encoder_with_motion_decoder_reconstructs_the_top_hidden_tokens():
  plan = masking.masking_plan(make_cfg(encoder="tube", decoder="motion", decoder_ratio=0.5), VIT_B)
  assert (plan.num_encoder_tokens, plan.num_decoder_tokens, plan.num_loss_tokens) == (160, 704, 704)
  scores = jax.random.uniform(jax.random.key(7), (2, plan.num_tokens))
  masks = draw(plan, jax.random.key(8), 2, scores)
  check_well_formed(plan, masks, 2)
  np.testing.assert_array_equal(np.asarray(masks.loss_mask), 1.0)
  for b in range(2):
    enc = np.asarray(masks.encoder_indices[b])
    hidden_scores = np.asarray(scores[b]).copy()
    hidden_scores[enc] = -np.inf
    np.testing.assert_array_equal(np.asarray(masks.decoder_indices[b]), np.sort(np.argsort(-hidden_scores)[:704]))


def test_random_encoder_counts_and_running_cell_expected_loss():
  plan = masking.masking_plan(make_cfg(encoder="random"), VIT_B)
  assert plan.num_encoder_tokens == 1568 - int(0.9 * 1568) == 157
  assert not plan.loss_tokens_exact and plan.expected_loss_tokens == pytest.approx(784 - 157 / 2)
  masks = draw(plan, jax.random.key(0), 32)
  check_well_formed(plan, masks, 32)
  assert abs(float(np.asarray(masks.loss_mask).sum(-1).mean()) - plan.expected_loss_tokens) < 3.0


def test_no_decoder_mask_reconstructs_every_hidden_token():
  plan = masking.masking_plan(make_cfg(decoder="none"), VIT_B)
  assert (plan.num_decoder_tokens, plan.num_loss_tokens, plan.num_decoder_inputs) == (1408, 1408, 1568)
  masks = draw(plan, jax.random.key(0), 2)
  check_well_formed(plan, masks, 2)
  np.testing.assert_array_equal(np.asarray(masks.loss_mask), 1.0)
  motion_plan = masking.masking_plan(make_cfg(encoder="motion", decoder="none"), VIT_B)
  assert (motion_plan.num_encoder_tokens, motion_plan.num_decoder_tokens) == (156, 1412)


def test_loss_count_is_not_exact_when_slices_are_not_a_multiple_of_4():
  spec = model_spec_from_config(dict(variant="custom", width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=8,
                                     num_frames=4, image_size=32))
  plan = masking.masking_plan(make_cfg(), spec)
  assert plan.num_decoder_tokens == 16 and not plan.loss_tokens_exact


@pytest.mark.parametrize("overrides, spec, key_in_message", [
    (dict(encoder="block"), VIT_B, "config.masking.encoder"),
    (dict(decoder="random"), VIT_B, "config.masking.decoder"),
    (dict(encoder_ratio=1.0), VIT_B, "encoder_ratio"),
    (dict(encoder_ratio=0.0), VIT_B, "encoder_ratio"),
    (dict(decoder_ratio=0.6), VIT_B, "decoder_ratio"),
    (dict(motion_keep_ratio=1.5), VIT_B, "motion_keep_ratio"),
    (dict(encoder="motion", motion_keep_ratio=0.05), VIT_B, "raise motion_keep_ratio"),
    (dict(encoder="motion", decoder="running_cell"), VIT_B, "decoder='motion'"),
    (dict(camera_motion_compensation=True), VIT_B, "camera_motion_compensation"),
    (dict(finetune_keep_ratio=0.0), VIT_B, "finetune_keep_ratio"),
    (dict(), model_spec_from_config(dict(variant="B", image_size=208)), "config.model.image_size"),
    (dict(encoder="tube", encoder_ratio=0.05), SMALL, "hides 0 of 16"),
])
def test_bad_configs_raise_config_error_naming_the_key(overrides, spec, key_in_message):
  with pytest.raises(ConfigError, match=key_in_message.replace("(", r"\(")):
    masking.masking_plan(make_cfg(**overrides), spec)


def test_motion_plan_without_scores_fails_clearly():
  plan = masking.masking_plan(make_cfg(encoder="motion", decoder="motion"), VIT_B)
  with pytest.raises(ValueError, match="needs motion_scores"):
    masking.sample_masks(plan, jax.random.key(0), 2)


def test_sample_masks_compiles_once_for_any_key():
  plan = masking.masking_plan(make_cfg(encoder="motion", decoder="motion"), VIT_B)
  traces = []

  @jax.jit
  def draw(rng, scores):
    traces.append(1)
    return masking.sample_masks(plan, rng, 2, scores)

  for seed in range(3):
    scores = jax.random.uniform(jax.random.key(100 + seed), (2, plan.num_tokens))
    draw(jax.random.key(seed), scores)
  assert len(traces) == 1


_NO_COMMUNICATION_SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from videomae_jax import masking, motion
    from videomae_jax.default_config import masking_config
    from videomae_jax.models.variants import model_spec_from_config
    from videomae_jax.models.vit import PatchEmbed, gather_tokens
    from videomae_jax.objective import tubelet_targets

    assert jax.device_count() == 8, jax.devices()
    spec = model_spec_from_config(dict(variant="custom", width=32, depth=1, num_heads=2, mlp_dim=64,
                                       patch_size=8, num_frames=8, image_size=32))
    embed = PatchEmbed(32, 2, 8)
    video = jax.random.normal(jax.random.key(0), (16, 8, 32, 32, 3))
    params = embed.init(jax.random.key(1), video[:1])
    mesh = Mesh(np.array(jax.devices()), ("data",))
    video = jax.device_put(video, NamedSharding(mesh, P("data")))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    plans = []
    for encoder, decoder, camera in [("tube", "running_cell", False), ("motion", "motion", False),
                                     ("tube", "motion", True), ("random", "none", False)]:
      cfg = masking_config()
      cfg.encoder, cfg.decoder, cfg.camera_motion_compensation, cfg.camera_max_shift = encoder, decoder, camera, 4
      plans.append(masking.masking_plan(cfg, spec))

    def step(params, video, rng):
      embed_fn = lambda v: embed.apply(params, v)
      embeddings = embed_fn(video)
      targets = tubelet_targets(video, spec)
      outputs = []
      for i, plan in enumerate(plans):
        masks = masking.sample_masks_for_video(plan, jax.random.fold_in(rng, i), video, embed_fn, spec)
        outputs += [gather_tokens(embeddings, masks.encoder_indices), gather_tokens(targets, masks.decoder_indices),
                    masks.loss_mask]
      keep = motion.select_top_tokens(motion.motion_scores(embeddings, spec.grid), 20)
      outputs.append(gather_tokens(embeddings, keep))
      return outputs

    data = NamedSharding(mesh, P("data"))
    compiled = jax.jit(step, out_shardings=data).lower(params, video, jax.random.key(2)).compile()
    hlo = compiled.as_text()
    found = [op for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
             if op in hlo]
    print("COLLECTIVES", found)
    outputs = compiled(params, video, jax.random.key(2))
    print("SHARDS", outputs[0].sharding.spec, len(outputs[0].addressable_shards))
    # The detector itself: a reduction over the sharded batch must show up as a collective.
    summed = jax.jit(lambda v: jnp.sum(v)).lower(video).compile().as_text()
    print("DETECTOR", "all-reduce" in summed)
""")


def test_masks_and_motion_scores_need_no_cross_device_communication():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _NO_COMMUNICATION_SCRIPT], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
  assert result.returncode == 0, result.stderr[-4000:]
  assert "COLLECTIVES []" in result.stdout, result.stdout
  assert "SHARDS P('data',) 8" in result.stdout, result.stdout
  assert "DETECTOR True" in result.stdout, result.stdout
