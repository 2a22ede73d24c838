"""Published weight layouts in and out, encoder-only weights, and init matching the official classes.

Every layout is built here from our own weights with the published key names and config fields (docs/upstream.md
section 6), converted back, and must compute what the source computed."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videomae_jax import masking
from videomae_jax.convert import mapping, params_io
from videomae_jax.models import VideoClassifier, VideoMAEPretrainModel, model_spec_from_config, posembed

torch = pytest.importorskip("torch")
from videomae_jax.convert import from_pytorch, to_pytorch, torch_io  # noqa: E402  pylint: disable=wrong-import-position

SMALL = dict(variant="custom", width=32, depth=2, num_heads=4, mlp_dim=64, patch_size=8, num_frames=4,
             image_size=32, decoder_width=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32,
             compute_dtype="float32")
CONVERT_FLAGS = dict(num_heads=4, decoder_num_heads=2, num_frames=4, image_size=32)


def random_tree(shapes, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0, 0.2, size=s.shape).astype(np.float32), shapes)


def classifier_params(num_classes, seed=0):
  spec = model_spec_from_config(dict(SMALL, num_classes=num_classes))
  video = jax.ShapeDtypeStruct((1, 4, 32, 32, 3), jnp.float32)
  shapes = jax.eval_shape(lambda v: VideoClassifier(spec).init(jax.random.key(0), v), video)["params"]
  return spec, random_tree(shapes, seed)


def pretrain_params(seed=0):
  spec = model_spec_from_config(SMALL)
  video, index = jax.ShapeDtypeStruct((1, 4, 32, 32, 3), jnp.float32), jax.ShapeDtypeStruct((1, 2), jnp.int32)
  shapes = jax.eval_shape(lambda v, e, d: VideoMAEPretrainModel(spec).init(jax.random.key(0), v, e, d),
                          video, index, index)["params"]
  return spec, random_tree(shapes, seed)


VIDEO = jnp.asarray(np.random.default_rng(7).normal(size=(2, 4, 32, 32, 3)), jnp.float32)


def outputs(spec, params):
  """Logits of a classifier, pooled features of an encoder (VideoClassifier with 0 classes)."""
  return np.asarray(VideoClassifier(spec).apply({"params": params}, VIDEO))


def imported_outputs(path, **flags):
  loaded = from_pytorch.import_pytorch(str(path), **flags)
  return loaded, outputs(loaded.spec(), loaded.params)


def assert_close(got, want, rtol):
  np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def official(params, kind):
  return mapping.flax_to_official(params, kind)


# --- the HuggingFace hub's VideoMAEv2 folders ----------------------------------------------------------------------
HUB_MODEL_CONFIG_KEYS = ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads",
                         "mlp_ratio", "qkv_bias", "qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate",
                         "norm_layer", "layer_norm_eps", "init_values", "use_learnable_pos_emb", "tubelet_size",
                         "use_mean_pooling", "with_cp", "num_frames", "cos_attn")


def write_hub_folder(folder, params):
  """OpenGVLab/VideoMAEv2-Base as published: remote code, a nested model_config, model.-prefixed safetensors of
  the fine-tuning VisionTransformer with 0 classes (encoder + fc_norm, no head, no norm, no pos_embed)."""
  os.makedirs(folder, exist_ok=True)
  config = {"architectures": ["VideoMAEv2"], "model_type": "VideoMAEv2_Base",
            "auto_map": {"AutoConfig": "modeling_config.VideoMAEv2Config",
                         "AutoModel": "modeling_videomaev2.VideoMAEv2"},
            "model_config": dict(img_size=32, patch_size=8, in_chans=3, num_classes=0, embed_dim=32, depth=2,
                                 num_heads=4, mlp_ratio=2, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                                 attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer="nn.LayerNorm",
                                 layer_norm_eps=1e-6, init_values=0.0, use_learnable_pos_emb=False, tubelet_size=2,
                                 use_mean_pooling=True, with_cp=False, num_frames=4, cos_attn=False),
            "torch_dtype": "float32", "transformers_version": "4.38.1"}
  assert set(config["model_config"]) == set(HUB_MODEL_CONFIG_KEYS)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  state = {f"model.{key}": value for key, value in official(params, "encoder").items()}
  assert "model.fc_norm.weight" in state and not any(k.startswith(("model.head", "model.norm")) for k in state)
  torch_io.save_safetensors(os.path.join(folder, "model.safetensors"), state)
  return config, state


def test_hub_folder_converts_and_round_trips(tmp_path):
  spec, params = classifier_params(num_classes=0)
  config, state = write_hub_folder(tmp_path / "hub", params)
  loaded, features = imported_outputs(tmp_path / "hub")
  assert loaded.kind == "encoder" and loaded.model_config["pooled_norm"] == "fc_norm"
  assert features.shape == (2, 32)
  assert_close(features, outputs(spec, params), 1e-5)
  export = tmp_path / "export"
  from_pytorch.convert(str(tmp_path / "hub"), str(export))
  to_pytorch.convert(str(export), str(tmp_path / "hub_again"), "hub")
  with open(tmp_path / "hub_again" / "config.json") as f:
    assert json.load(f) == config
  written = torch_io.load_torch_file(str(tmp_path / "hub_again" / "model.safetensors"))
  assert sorted(written) == sorted(state)
  assert all(np.array_equal(torch_io.to_numpy(written[k]), state[k]) for k in state)


def test_a_model_trained_here_exports_to_the_hub_layout(tmp_path):
  spec, params = classifier_params(num_classes=5)
  export = params_io.save_params_export(str(tmp_path / "export"), params, "classifier", dict(SMALL, num_classes=5))
  to_pytorch.convert(export, str(tmp_path / "hub"), "hub")
  config = json.load(open(tmp_path / "hub" / "config.json"))
  assert config["model_type"] == "VideoMAEv2_Base" and set(config["model_config"]) == set(HUB_MODEL_CONFIG_KEYS)
  assert config["model_config"]["num_classes"] == 5 and config["model_config"]["mlp_ratio"] == 2.0
  loaded, logits = imported_outputs(tmp_path / "hub")
  assert loaded.kind == "classifier"
  assert_close(logits, outputs(spec, params), 1e-5)


# --- official .pth files ---------------------------------------------------------------------------------------------
def test_fp16_distilled_classifier_under_module(tmp_path):
  """distill/vit_{s,b}_k710_dl_from_giant.pth: a float16 fine-tuned model under 'module'."""
  spec, params = classifier_params(num_classes=7)
  path = str(tmp_path / "vit_s_k710_dl_from_giant.pth")
  torch.save({"module": {k: torch.from_numpy(v).half() for k, v in official(params, "classifier").items()}}, path)
  loaded, logits = imported_outputs(path, **CONVERT_FLAGS)
  assert loaded.kind == "classifier" and loaded.model_config["num_classes"] == 7
  assert_close(logits, outputs(spec, params), 1e-2)


@pytest.mark.parametrize("layout", ["pretraining_encoder", "backbone"])
def test_encoder_only_files(tmp_path, layout):
  """A pretraining checkpoint's encoder (`encoder.*` under 'model') and a backbone export (bare `blocks.*`,
  `patch_embed.*`, `norm.*`): features are the mean of the encoder's normed tokens."""
  spec, params = pretrain_params()
  state = {k: v for k, v in official(params, "pretrain").items() if k.startswith("encoder.")}
  if layout == "backbone":
    state = {k[len("encoder."):]: v for k, v in state.items()}
  path = str(tmp_path / f"{layout}.pth")
  torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
  loaded, features = imported_outputs(path, **CONVERT_FLAGS)
  assert loaded.kind == "encoder" and loaded.model_config["pooled_norm"] == "norm"
  tokens = VideoMAEPretrainModel(spec).apply({"params": params}, VIDEO, method=lambda m, v: m.encoder(v))
  assert_close(features, np.asarray(tokens).mean(axis=1), 1e-5)


def test_variant_names_are_case_insensitive():
  _, params = classifier_params(num_classes=3)
  state = official(dict(params), "classifier")
  for name in ("custom", "CUSTOM"):
    assert mapping.infer_model_config(state, "classifier", variant=name, num_heads=4)["width"] == 32
  spec = model_spec_from_config({"variant": "b"})
  assert spec.width == 768 and model_spec_from_config({"variant": "G"}).patch_size == 14


# --- MMAction2 -------------------------------------------------------------------------------------------------------
def mmaction2_state(params):
  """mmaction2's VideoMAE(V2) conversion: backbone./cls_head. names, FFN layers, PatchEmbed projection, and the
  sinusoid position table saved as a buffer."""
  out = {}
  for key, value in official(params, "classifier").items():
    key = key.replace("patch_embed.proj.", "patch_embed.projection.").replace(".mlp.fc1.", ".mlp.layers.0.0.")
    key = key.replace(".mlp.fc2.", ".mlp.layers.1.")
    out["cls_head.fc_cls." + key[len("head."):] if key.startswith("head.") else "backbone." + key] = value
  out["backbone.pos_embed"] = posembed.sinusoid_table(2 * 4 * 4, 32)[None]
  return out


def test_mmaction2_conversion(tmp_path):
  spec, params = classifier_params(num_classes=6)
  state = mmaction2_state(params)
  assert "backbone.blocks.1.mlp.layers.0.0.weight" in state and "cls_head.fc_cls.bias" in state
  path = str(tmp_path / "mmaction2.pth")
  torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state.items()},
              "meta": {}}, path)
  loaded, logits = imported_outputs(path, **CONVERT_FLAGS)
  assert loaded.kind == "classifier"
  assert_close(logits, outputs(spec, params), 1e-5)
  state["backbone.pos_embed"] = state["backbone.pos_embed"] + 0.5  # learned or interpolated: refused
  torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state.items()}}, path)
  with pytest.raises(ValueError, match="not the fixed sinusoid table"):
    from_pytorch.import_pytorch(path, **CONVERT_FLAGS)


# --- transformers 4.x / 5.x VideoMAE folders -------------------------------------------------------------------------
@pytest.mark.parametrize("bias_names", ["query.bias", "q_bias"])
@pytest.mark.parametrize("pooled_norm", ["norm", "none"])
def test_transformers_bare_videomae_model(tmp_path, bias_names, pooled_norm):
  """The bare VideoMAEModel (an encoder): 5.x names the q/v biases query.bias / value.bias, 4.x q_bias / v_bias."""
  spec, params = pretrain_params()
  encoder = mapping.encoder_params(params, "pretrain")
  if pooled_norm == "none":
    encoder = {"encoder": {k: v for k, v in encoder["encoder"].items() if k != "norm"}}
  model_config = dict(SMALL, pooled_norm=pooled_norm)
  export = params_io.save_params_export(str(tmp_path / "export"), encoder, "encoder", model_config)
  folder = tmp_path / "hf"
  to_pytorch.convert(export, str(folder), "hf")
  config = json.load(open(folder / "config.json"))
  assert config["architectures"] == ["VideoMAEModel"] and config["use_mean_pooling"] == (pooled_norm == "none")
  if bias_names == "q_bias":  # an older transformers' file
    state = torch_io.load_torch_file(str(folder / "model.safetensors"))
    state = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
             .replace("attention.attention.value.bias", "attention.attention.v_bias"): v for k, v in state.items()}
    assert any(k.endswith("q_bias") for k in state)
    torch_io.save_safetensors(str(folder / "model.safetensors"), {k: torch_io.to_numpy(v) for k, v in state.items()})
  loaded, features = imported_outputs(folder)
  assert loaded.kind == "encoder" and loaded.model_config["pooled_norm"] == pooled_norm
  source_spec = model_spec_from_config(model_config)
  assert_close(features, outputs(dataclasses.replace(source_spec, num_classes=0), encoder), 1e-5)


# --- init as the official classes do it ------------------------------------------------------------------------------
def test_init_matches_the_official_classes():
  spec = model_spec_from_config({"variant": "B", "num_frames": 4, "image_size": 32, "compute_dtype": "float32"})
  video = jnp.zeros((1, 4, 32, 32, 3))
  index = jnp.zeros((1, 2), jnp.int32)
  params = jax.jit(VideoMAEPretrainModel(spec).init)(jax.random.key(0), video, index, index)["params"]
  # encoder_to_decoder keeps PyTorch's default Linear init: U(+-1/sqrt(768)), std 1/sqrt(3 * 768) = 0.0208.
  weights = np.asarray(params["encoder_to_decoder"]["kernel"])
  assert np.abs(weights).max() <= 1 / np.sqrt(768) and abs(weights.std() - 1 / np.sqrt(3 * 768)) < 0.0005
  # mask_token: N(0, 0.02) cut at +-0.02 (VideoMAE's own trunc_normal_), std 0.02 * 0.5396 = 0.0108.
  token = np.asarray(params["mask_token"])
  assert np.abs(token).max() <= 0.02 and 0.0095 < token.std() < 0.0122
  # The fine-tuning model: Linear layers and head from timm's trunc_normal_(std=.02), bounds +-2: untruncated.
  classifier = model_spec_from_config({"variant": "B", "num_frames": 4, "image_size": 32, "num_classes": 400})
  params = jax.jit(VideoClassifier(classifier).init)(jax.random.key(1), video)["params"]
  qkv = np.asarray(params["encoder"]["blocks"]["0"]["attn"]["qkv"]["kernel"])
  assert abs(qkv.std() - 0.02) < 0.0005 and np.abs(qkv).max() > 3 * 0.02   # no cut at 2 std
  head = np.asarray(params["head"]["kernel"])
  assert abs(head.std() - 0.02 * 0.001) < 0.0005 * 0.001 and np.abs(head).max() > 3 * 0.02 * 0.001
  np.testing.assert_array_equal(params["head"]["bias"], 0.0)


def test_drop_path_reaches_the_decoder():
  """Encoder depth 1 has no drop path (rates rise from 0), so only the decoder can make two draws differ."""
  spec = model_spec_from_config(dict(SMALL, depth=1, decoder_depth=2, drop_path_rate=0.5))
  video = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 32, 32, 3)), jnp.float32)
  encoder_index, decoder_index = jnp.tile(jnp.arange(4)[None], (8, 1)), jnp.tile(jnp.arange(4, 12)[None], (8, 1))
  model = VideoMAEPretrainModel(spec)
  params = model.init(jax.random.key(0), video, encoder_index, decoder_index)["params"]
  run = lambda seed: np.asarray(model.apply({"params": params}, video, encoder_index, decoder_index, train=True,
                                            rngs={"dropout": jax.random.key(seed)}))
  assert not np.allclose(run(1), run(2))


@pytest.mark.parametrize("image_size, visible, kept", [(160, 79, 240), (224, 156, 470), (240, 179, 540),
                                                       (320, 319, 960)])
def test_everest_visible_counts(image_size, visible, kept):
  """EVEREST computes int((1 - 0.9) * N) without any epsilon: 79 / 179 / 319, not 80 / 180 / 320."""
  spec = model_spec_from_config({"variant": "B", "image_size": image_size})
  plan = masking.masking_plan(dict(encoder="motion", decoder="motion", encoder_ratio=0.9, motion_keep_ratio=0.3),
                              spec)
  assert (plan.num_encoder_tokens, plan.num_motion_kept) == (visible, kept)


# --- fine-tuning from encoder-only weights through main ----------------------------------------------------------
DEMO_MODEL = dict(variant="custom", width=128, depth=4, num_heads=4, mlp_dim=512, patch_size=8, num_frames=8,
                  image_size=32, decoder_width=64, decoder_depth=2, decoder_num_heads=2, decoder_mlp_dim=256)


@pytest.mark.slow
def test_finetuning_from_an_encoder_only_export_equals_the_full_checkpoint(tmp_path):
  """configs/demo_finetune.py started from a pretraining model and from its encoder alone (the .pth a backbone
  export holds, converted) trains bitwise the same: the classifier takes the encoder, fc_norm and head start
  fresh either way."""
  spec = model_spec_from_config(DEMO_MODEL)
  video, index = jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32), jax.ShapeDtypeStruct((1, 2), jnp.int32)
  shapes = jax.eval_shape(lambda v, e, d: VideoMAEPretrainModel(spec).init(jax.random.key(0), v, e, d),
                          video, index, index)["params"]
  params = random_tree(shapes, seed=3)
  full = params_io.save_params_export(str(tmp_path / "full"), params, "pretrain", DEMO_MODEL)
  backbone = {k[len("encoder."):]: torch.from_numpy(v) for k, v in official(params, "pretrain").items()
              if k.startswith("encoder.")}
  torch.save({"model": backbone}, str(tmp_path / "backbone.pth"))
  encoder = from_pytorch.convert(str(tmp_path / "backbone.pth"), str(tmp_path / "encoder"), num_heads=4,
                                 num_frames=8, image_size=32)
  assert encoder.kind == "encoder"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  runs = {}
  for name, init_from in (("full", full), ("encoder", str(tmp_path / "encoder"))):
    workdir = tmp_path / f"ft_{name}"
    result = subprocess.run(
        [sys.executable, "-m", "videomae_jax.main", f"--config={root}/configs/demo_finetune.py",
         f"--workdir={workdir}", f"--config.init_from={init_from}", f"--config.data.demo_dir={tmp_path}/labeled",
         "--config.data.demo_videos_per_class=1", "--config.num_train_steps=4", "--config.log_every_steps=2",
         "--config.checkpoint_every_steps=4", "--compilation_cache_dir="],
        cwd=root, capture_output=True, text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    runs[name] = [row["train/loss"] for row in rows if "train/loss" in row]  # (evaluator rows have none)
    assert len(runs[name]) == 2
  assert len(runs["full"]) == 2 and runs["full"] == runs["encoder"]
