"""Our models against HuggingFace transformers' VideoMAE loaded from our converted folders, and HF -> ours.

transformers hard-codes LayerNorm eps 1e-5 in `fc_norm` and `decoder.norm` (the official model and ours use 1e-6);
the comparisons set those two modules' eps to 1e-6 after loading, so the only differences left are float32
rounding. HF VideoMAEForPreTraining has no decoder masking: its decoder predicts every encoder-masked position, so
our model gets decoder_indices = all encoder-masked positions in raster order, the same set HF gathers with
`bool_masked_pos`.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_convert import SMALL_MODEL, assert_trees_equal, random_params
from videomae_jax.convert import from_pytorch, params_io, to_pytorch
from videomae_jax.models import VideoClassifier, VideoMAEPretrainModel, model_spec_from_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

OUR_EPS = 1e-6


def relative_error(ours, theirs):
  return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


def random_video(spec, batch, seed=0):
  """ImageNet-normalized-looking clip, NTHWC float32."""
  return np.random.default_rng(seed).standard_normal(
      (batch, spec.num_frames, spec.image_size, spec.image_size, 3)).astype(np.float32)


def tube_masks(spec, batch, num_masked_per_frame, seed=0):
  """[B, N] bool (True = hidden from the encoder): one spatial mask per sample, repeated over time."""
  rng = np.random.default_rng(seed)
  t, h, w = spec.grid
  masks = []
  for _ in range(batch):
    frame = np.zeros(h * w, bool)
    frame[rng.permutation(h * w)[:num_masked_per_frame]] = True
    masks.append(np.tile(frame, t))
  return np.stack(masks)


def hf_model(folder, kind):
  cls = transformers.VideoMAEForPreTraining if kind == "pretrain" else transformers.VideoMAEForVideoClassification
  model = cls.from_pretrained(folder, attn_implementation="eager").eval()
  if kind == "pretrain":
    model.decoder.norm.eps = OUR_EPS
  else:
    model.fc_norm.eps = OUR_EPS
  return model


def to_hf_input(video):
  return torch.from_numpy(np.ascontiguousarray(video.transpose(0, 1, 4, 2, 3)))  # (B, T, C, H, W)


def classifier_agreement(spec, params, folder, batch=2):
  video = random_video(spec, batch)
  ours = jax.jit(VideoClassifier(spec).apply)({"params": params}, jnp.asarray(video))
  with torch.no_grad():
    theirs = hf_model(folder, "classifier")(pixel_values=to_hf_input(video)).logits.numpy()
  assert theirs.shape == ours.shape == (batch, spec.num_classes)
  return relative_error(ours, theirs)


def pretrain_agreement(spec, params, folder, num_masked_per_frame, batch=2):
  video = random_video(spec, batch)
  masks = tube_masks(spec, batch, num_masked_per_frame)
  encoder_indices = np.stack([np.flatnonzero(~m) for m in masks]).astype(np.int32)
  decoder_indices = np.stack([np.flatnonzero(m) for m in masks]).astype(np.int32)
  ours = jax.jit(VideoMAEPretrainModel(spec).apply)({"params": params}, jnp.asarray(video),
                                                     jnp.asarray(encoder_indices), jnp.asarray(decoder_indices))
  with torch.no_grad():
    theirs = hf_model(folder, "pretrain")(pixel_values=to_hf_input(video),
                                          bool_masked_pos=torch.from_numpy(masks)).logits.numpy()
  assert theirs.shape == ours.shape == (batch, decoder_indices.shape[1], spec.patch_values)
  return relative_error(ours, theirs)


def small_spec_and_params(kind, seed=0):
  spec = model_spec_from_config(dict(SMALL_MODEL))
  return spec, random_params(spec, kind, seed)


def test_hf_classifier_logits_match_ours(tmp_path):
  spec, params = small_spec_and_params("classifier")
  to_pytorch.export_hf(params, "classifier", spec, str(tmp_path / "hf"))
  error = classifier_agreement(spec, params, str(tmp_path / "hf"))
  assert error < 1e-4, error


def test_hf_pretraining_reconstructions_match_ours(tmp_path):
  spec, params = small_spec_and_params("pretrain")
  to_pytorch.export_hf(params, "pretrain", spec, str(tmp_path / "hf"))
  error = pretrain_agreement(spec, params, str(tmp_path / "hf"), num_masked_per_frame=12)
  assert error < 1e-4, error


def test_hf_folder_has_the_expected_config(tmp_path):
  spec, params = small_spec_and_params("pretrain")
  to_pytorch.export_hf(params, "pretrain", spec, str(tmp_path / "hf"))
  config = transformers.VideoMAEConfig.from_pretrained(str(tmp_path / "hf"))
  assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == \
      (64, 2, 4, 128)
  assert (config.patch_size, config.tubelet_size, config.num_frames, config.image_size) == (8, 2, 4, 32)
  assert (config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads,
          config.decoder_intermediate_size) == (32, 2, 2, 64)
  assert config.layer_norm_eps == OUR_EPS and config.hidden_act == "gelu" and config.norm_pix_loss
  assert config.architectures == ["VideoMAEForPreTraining"]
  assert not config.use_mean_pooling  # how HF keeps the pretraining encoder's final norm (videomae.layernorm)


@pytest.mark.parametrize("kind", ["pretrain", "classifier"])
def test_to_pytorch_hf_then_from_pytorch_is_bitwise(tmp_path, kind):
  spec, params = small_spec_and_params(kind, seed=3)
  export = params_io.save_params_export(str(tmp_path / "export"), params, kind, SMALL_MODEL)
  to_pytorch.convert(export, str(tmp_path / "hf"), "hf")
  from_pytorch.convert(str(tmp_path / "hf"), str(tmp_path / "back"))
  loaded = params_io.load_params(str(tmp_path / "back"))
  assert loaded.kind == kind and loaded.model_config["num_heads"] == 4
  assert_trees_equal(loaded.params, params)


@pytest.mark.parametrize("kind", ["pretrain", "classifier"])
@pytest.mark.parametrize("bias_names", ["query.bias", "q_bias"])
def test_hf_models_saved_by_transformers_import_and_match(tmp_path, kind, bias_names):
  """A VideoMAE that transformers itself initialized and saved (and the older q_bias/v_bias naming) -> ours."""
  torch.manual_seed(0)
  spec = model_spec_from_config(dict(SMALL_MODEL))
  config = transformers.VideoMAEConfig(**to_pytorch.hf_config_kwargs(spec, kind))
  cls = transformers.VideoMAEForPreTraining if kind == "pretrain" else transformers.VideoMAEForVideoClassification
  model = cls(config)
  with torch.no_grad():  # non-trivial biases and norms everywhere
    for param in model.parameters():
      param.add_(0.1 * torch.randn_like(param))
  folder = str(tmp_path / "hf")
  model.save_pretrained(folder)
  if bias_names == "q_bias":  # rewrite the file with the naming of transformers < 5
    from safetensors.torch import load_file, save_file
    path = os.path.join(folder, "model.safetensors")
    tensors = {k.replace("attention.query.bias", "attention.q_bias").replace("attention.value.bias",
                                                                             "attention.v_bias"): v
               for k, v in load_file(path).items()}
    assert any(k.endswith("attention.attention.q_bias") for k in tensors)
    save_file(tensors, path, metadata={"format": "pt"})
  loaded = from_pytorch.import_pytorch(folder)
  assert loaded.kind == kind
  hf_params = model.state_dict()
  first = "videomae.encoder.layer.1.attention.attention."
  np.testing.assert_array_equal(loaded.params["encoder"]["blocks"]["1"]["attn"]["v_bias"],
                                hf_params[first + "value.bias"].numpy())
  np.testing.assert_array_equal(loaded.params["encoder"]["blocks"]["1"]["attn"]["qkv"]["kernel"][:, 64:128],
                                hf_params[first + "key.weight"].numpy().T)
  if kind == "classifier":
    error = classifier_agreement(spec, loaded.params, folder)
  else:
    error = pretrain_agreement(spec, loaded.params, folder, num_masked_per_frame=12)
  assert error < 1e-4, error


def test_hf_export_refuses_an_interpolated_position_table():
  spec = model_spec_from_config(dict(SMALL_MODEL, pos_embed_grid=(4, 4, 4)))
  with pytest.raises(ValueError, match="position table"):
    to_pytorch.hf_config_kwargs(spec, "classifier")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "pretrain"])
def test_vit_b_agrees_with_hf(tmp_path, kind):
  """ViT-B/16, 16 x 224 x 224: the full-size model, converted to HF, agrees with ours to 1e-4 relative."""
  spec = model_spec_from_config(dict(variant="B", compute_dtype="float32", num_classes=400))
  params = random_params(spec, kind, seed=1)
  to_pytorch.export_hf(params, kind, spec, str(tmp_path / "hf"))
  if kind == "classifier":
    error = classifier_agreement(spec, params, str(tmp_path / "hf"), batch=1)
  else:
    error = pretrain_agreement(spec, params, str(tmp_path / "hf"), num_masked_per_frame=176, batch=2)
  print(f"ViT-B {kind}: max |ours - HF| / max |HF| = {error:.3g}")
  assert error < 1e-4, error
