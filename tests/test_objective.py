"""Pretraining targets and loss: numpy reference, loss only on hidden decoder-kept tokens, one compilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax import masking, objective
from videomae_jax.default_config import masking_config
from videomae_jax.models.pretrain import VideoMAEPretrainModel
from videomae_jax.models.variants import model_spec_from_config
from videomae_jax.normalization import denormalize

SPEC = model_spec_from_config(dict(variant="custom", width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=4,
                                   num_frames=4, image_size=8, decoder_width=16, decoder_num_heads=2))
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def numpy_targets(video, tubelet, patch, normalize=True):
  """Straightforward reference: loop over tubelets, (p0 p1 p2) rows x c columns, torch.std (unbiased) + 1e-6,
  flattened row-major so the channel is fastest."""
  pixels = video.astype(np.float64) * STD + MEAN
  batch, frames, height, width, _ = pixels.shape
  out = []
  for b in range(batch):
    tokens = []
    for t in range(frames // tubelet):
      for h in range(height // patch):
        for w in range(width // patch):
          block = pixels[b, t * tubelet:(t + 1) * tubelet, h * patch:(h + 1) * patch, w * patch:(w + 1) * patch]
          rows = block.reshape(-1, 3)                                   # (p0 p1 p2), c
          if normalize:
            mean = rows.mean(axis=0)
            std = np.sqrt(((rows - mean) ** 2).sum(axis=0) / (rows.shape[0] - 1))
            rows = (rows - mean) / (std + 1e-6)
          tokens.append(rows.reshape(-1))
    out.append(np.stack(tokens))
  return np.stack(out)


@pytest.mark.parametrize("normalize", [True, False])
def test_tubelet_targets_match_a_numpy_reference(normalize):
  video = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 3)).astype(np.float32)
  ours = np.asarray(objective.tubelet_targets(jnp.asarray(video), SPEC, normalize=normalize))
  assert ours.shape == (2, 8, 3 * 2 * 4 * 4) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, numpy_targets(video, 2, 4, normalize), rtol=1e-4, atol=1e-4)


def test_targets_of_chosen_tokens_are_those_tokens_targets_exactly():
  """pretrain_loss computes the targets of the decoder's tokens only: the same bits as gathering all targets."""
  video = jax.random.normal(jax.random.key(0), (2, 4, 8, 8, 3))
  indices = jnp.asarray([[7, 0, 3], [2, 2, 5]])
  for normalize in (True, False):
    every = objective.tubelet_targets(video, SPEC, normalize)
    chosen = objective.tubelet_targets(video, SPEC, normalize, token_indices=indices)
    np.testing.assert_array_equal(chosen, jnp.take_along_axis(every, indices[..., None], axis=1))


def test_tubelet_targets_of_vit_b_have_1536_values_per_token():
  spec = model_spec_from_config(dict(variant="B"))
  shape = jax.eval_shape(lambda v: objective.tubelet_targets(v, spec), jax.ShapeDtypeStruct((1, 16, 224, 224, 3),
                                                                                            jnp.float32))
  assert shape.shape == (1, 1568, 1536)


def test_patchify_round_trips_and_prediction_unnormalization_recovers_pixels():
  video = jax.random.normal(jax.random.key(0), (1, 4, 8, 8, 3))
  pixels = denormalize(video)
  np.testing.assert_allclose(objective.unpatchify(objective.patchify(pixels, SPEC), SPEC), pixels, rtol=1e-6)
  indices = jnp.asarray([[1, 5, 6]])
  targets = jnp.take_along_axis(objective.tubelet_targets(video, SPEC), indices[..., None], axis=1)
  recovered = objective.predictions_to_pixels(targets, video, indices, SPEC)
  expected = jnp.take_along_axis(objective.patchify(pixels, SPEC), indices[..., None, None], axis=1)
  np.testing.assert_allclose(recovered, expected, rtol=1e-4, atol=1e-5)


def test_reconstruction_loss_is_the_weighted_mean_of_per_token_mse():
  predictions = jnp.asarray([[[1.0, 1.0], [0.0, 2.0], [3.0, 3.0]]])
  targets = jnp.zeros_like(predictions)
  loss_mask = jnp.asarray([[1.0, 1.0, 0.0]])
  # Per-token MSE 1, 2, 9; only the first two count -> 1.5.
  assert float(objective.reconstruction_loss(predictions, targets, loss_mask)) == pytest.approx(1.5)
  assert float(objective.reconstruction_loss(predictions, targets, jnp.zeros_like(loss_mask))) == 0.0
  bf16 = objective.reconstruction_loss(predictions.astype(jnp.bfloat16), targets, loss_mask)
  assert bf16.dtype == jnp.float32


def test_loss_ignores_predictions_at_visible_decoder_positions():
  spec = model_spec_from_config(dict(variant="B"))
  plan = masking.masking_plan(masking_config(), spec)
  masks = jax.jit(masking.sample_masks, static_argnums=(0, 2))(plan, jax.random.key(0), 2)
  visible_kept = np.asarray(masks.loss_mask) == 0
  assert visible_kept.sum(axis=1).tolist() == [80, 80]                 # 784 kept - 704 loss
  targets = jax.random.normal(jax.random.key(1), (2, 784, 16))
  predictions = jax.random.normal(jax.random.key(2), (2, 784, 16))
  base = objective.reconstruction_loss(predictions, targets, masks.loss_mask)
  changed = jnp.where(jnp.asarray(visible_kept)[..., None], 1e3, predictions)
  assert float(objective.reconstruction_loss(changed, targets, masks.loss_mask)) == pytest.approx(float(base))
  hidden_changed = jnp.where(jnp.asarray(~visible_kept)[..., None], predictions + 1.0, predictions)
  assert float(objective.reconstruction_loss(hidden_changed, targets, masks.loss_mask)) > float(base) + 0.5


@pytest.mark.parametrize("encoder, decoder, with_grad", [("tube", "running_cell", False), ("motion", "motion", True)])
def test_jitted_pretrain_loss_compiles_once_over_steps(tiny_model_config, encoder, decoder, with_grad):
  # 4 slices make the running-cell loss count exact; one block each keeps the compile short.
  spec = model_spec_from_config(dict(tiny_model_config, num_frames=8, depth=1, decoder_depth=1))
  cfg = masking_config()
  cfg.encoder, cfg.decoder = encoder, decoder
  if encoder == "motion":
    cfg.motion_keep_ratio = 0.5
  plan = masking.masking_plan(cfg, spec)
  model = VideoMAEPretrainModel(spec)
  video_shape = (2, spec.num_frames, spec.image_size, spec.image_size, 3)
  dummy = (jnp.zeros((2, plan.num_encoder_tokens), jnp.int32), jnp.zeros((2, plan.num_decoder_tokens), jnp.int32))
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros(video_shape), *dummy)
  traces = []

  @jax.jit
  def step(variables, video, rng):
    traces.append(1)
    mask_rng, dropout_rng = jax.random.split(rng)
    embed_fn = lambda clip: model.apply(variables, clip, method=VideoMAEPretrainModel.patch_embeddings)
    masks = masking.sample_masks_for_video(plan, mask_rng, video, embed_fn, spec)

    def loss_fn(params):
      return objective.pretrain_loss(model, {"params": params}, video, masks, spec, train=True,
                                     rngs={"dropout": dropout_rng})

    if not with_grad:
      loss, aux = loss_fn(variables["params"])
      return loss, aux, {}
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    return loss, aux, grads

  losses = []
  for i in range(3):
    video = jax.random.normal(jax.random.key(10 + i), video_shape)
    loss, aux, grads = step(variables, video, jax.random.key(20 + i))
    losses.append(float(loss))
    assert plan.loss_tokens_exact
    assert np.isfinite(loss) and float(aux["loss_tokens_per_clip"]) == plan.num_loss_tokens
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert len(traces) == 1
  assert len(set(losses)) == 3                                          # really different inputs
