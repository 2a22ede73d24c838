"""Checkpoint conversion: official VideoMAE V2 .pth round trips, key layout, error reports, file wrappers, and
reading every checkpoint form the trainer writes (docs/upstream.md section 5)."""
import argparse
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from videomae_jax.convert import from_pytorch, mapping, params_io, to_pytorch
from videomae_jax.models import layer_stacking, model_spec_from_config
from videomae_jax.models.vit import PatchEmbed

# Small enough to init and run in well under a second on 2 CPU cores; grid (2, 4, 4) = 32 tokens.
SMALL_MODEL = dict(variant="custom", width=64, depth=2, num_heads=4, mlp_dim=128, patch_size=8, num_frames=4,
                   image_size=32, decoder_width=32, decoder_depth=2, decoder_num_heads=2, decoder_mlp_dim=64,
                   compute_dtype="float32", num_classes=5)
# What from_pytorch needs for an official file of SMALL_MODEL (heads, frames and size are not in the weights).
SMALL_IMPORT_FLAGS = dict(num_heads=4, decoder_num_heads=2, num_frames=4, image_size=32)


def small_spec(scan_layers=False, **overrides):
  return model_spec_from_config(dict(SMALL_MODEL, scan_layers=scan_layers, **overrides))


def random_params(spec, kind, seed=0):
  """Random params of the model's shapes (found with eval_shape, no init compute): kernels ~ N(0, 1/fan_in),
  LayerNorm scales 1 + noise, every bias (q/v biases too) and the mask token non-zero, so all of them are tested."""
  shapes = mapping.expected_param_shapes(dataclasses.replace(spec, scan_layers=False), kind)
  rng = np.random.default_rng(seed)
  flat = {}
  for path, shape in shapes.items():
    noise = rng.standard_normal(shape).astype(np.float32)
    if path[-1] == "kernel":
      flat[path] = (noise / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)
    elif path[-1] == "scale":
      flat[path] = (1 + 0.1 * noise).astype(np.float32)
    else:
      flat[path] = 0.1 * noise
  params = traverse_util.unflatten_dict(flat)
  return layer_stacking.stack_layers(params) if spec.scan_layers else params


def assert_trees_equal(actual, expected):
  flat_actual, flat_expected = traverse_util.flatten_dict(actual), traverse_util.flatten_dict(expected)
  assert sorted(flat_actual) == sorted(flat_expected)
  for path, value in flat_expected.items():
    assert flat_actual[path].dtype == np.float32, path
    np.testing.assert_array_equal(flat_actual[path], np.asarray(value), err_msg="/".join(path))


KINDS = [mapping.KIND_PRETRAIN, mapping.KIND_CLASSIFIER]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scan_layers", [False, True])
def test_pth_round_trip_is_bitwise(tmp_path, kind, scan_layers):
  params = random_params(small_spec(scan_layers), kind)
  path = str(tmp_path / "model.pth")
  to_pytorch.export_videomaev2(params, kind, path)
  loaded = from_pytorch.import_pytorch(path, **SMALL_IMPORT_FLAGS)
  assert loaded.kind == kind
  assert not layer_stacking.is_scanned(loaded.params)
  back = layer_stacking.stack_layers(loaded.params) if scan_layers else loaded.params
  assert_trees_equal(back, params)
  # The inferred architecture rebuilds the same model.
  spec = model_spec_from_config(loaded.model_config)
  for field in ("width", "depth", "num_heads", "mlp_dim", "patch_size", "tubelet_size", "num_frames", "image_size"):
    assert getattr(spec, field) == SMALL_MODEL.get(field, 2), field
  if kind == mapping.KIND_PRETRAIN:
    assert (spec.decoder_width, spec.decoder_depth, spec.decoder_num_heads, spec.decoder_mlp_dim) == (32, 2, 2, 64)
  else:
    assert spec.num_classes == 5


def test_pretrain_state_dict_has_the_official_keys_and_layouts():
  params = random_params(small_spec(), mapping.KIND_PRETRAIN)
  state_dict = mapping.flax_to_official(params, mapping.KIND_PRETRAIN)
  block = {k[len("encoder.blocks.0."):]: v.shape for k, v in state_dict.items() if k.startswith("encoder.blocks.0.")}
  assert block == {"norm1.weight": (64,), "norm1.bias": (64,), "attn.qkv.weight": (192, 64),
                   "attn.q_bias": (64,), "attn.v_bias": (64,), "attn.proj.weight": (64, 64),
                   "attn.proj.bias": (64,), "norm2.weight": (64,), "norm2.bias": (64,),
                   "mlp.fc1.weight": (128, 64), "mlp.fc1.bias": (128,), "mlp.fc2.weight": (64, 128),
                   "mlp.fc2.bias": (64,)}
  top = {k: v.shape for k, v in state_dict.items() if ".blocks." not in k}
  assert top == {"encoder.patch_embed.proj.weight": (64, 3, 2, 8, 8), "encoder.patch_embed.proj.bias": (64,),
                 "encoder.norm.weight": (64,), "encoder.norm.bias": (64,), "encoder_to_decoder.weight": (32, 64),
                 "mask_token": (1, 1, 32), "decoder.norm.weight": (32,), "decoder.norm.bias": (32,),
                 "decoder.head.weight": (384, 32), "decoder.head.bias": (384,)}
  assert len([k for k in state_dict if k.startswith("decoder.blocks.1.")]) == 13
  encoder = params["encoder"]
  np.testing.assert_array_equal(state_dict["encoder.blocks.1.mlp.fc1.weight"],
                                encoder["blocks"]["1"]["mlp"]["fc1"]["kernel"].T)
  np.testing.assert_array_equal(state_dict["encoder.norm.weight"], encoder["norm"]["scale"])
  np.testing.assert_array_equal(state_dict["encoder.patch_embed.proj.weight"][7, 2, 1, 3, 5],
                                encoder["patch_embed"]["proj"]["kernel"][1, 3, 5, 2, 7])


def test_classifier_state_dict_has_no_encoder_prefix_and_no_final_norm():
  state_dict = mapping.flax_to_official(random_params(small_spec(), mapping.KIND_CLASSIFIER),
                                        mapping.KIND_CLASSIFIER)
  assert {k.split(".")[0] for k in state_dict} == {"patch_embed", "blocks", "fc_norm", "head"}
  assert state_dict["head.weight"].shape == (5, 64) and state_dict["fc_norm.weight"].shape == (64,)
  assert "norm.weight" not in state_dict


def test_exported_conv3d_weight_computes_our_patch_embedding():
  torch = pytest.importorskip("torch")
  spec = small_spec()
  params = random_params(spec, mapping.KIND_CLASSIFIER)
  state_dict = mapping.flax_to_official(params, mapping.KIND_CLASSIFIER)
  video = np.random.default_rng(1).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
  ours = PatchEmbed(64, 2, 8).apply({"params": params["encoder"]["patch_embed"]}, jnp.asarray(video))
  theirs = torch.nn.functional.conv3d(torch.from_numpy(video.transpose(0, 4, 1, 2, 3)),
                                      torch.from_numpy(state_dict["patch_embed.proj.weight"]),
                                      torch.from_numpy(state_dict["patch_embed.proj.bias"]), stride=(2, 8, 8))
  theirs = theirs.flatten(2).transpose(1, 2).numpy()  # (t, h, w) raster order, as the official model flattens
  np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5, atol=1e-5)


def test_mismatch_error_lists_missing_unexpected_and_wrong_shape():
  state_dict = mapping.flax_to_official(random_params(small_spec(), mapping.KIND_PRETRAIN), mapping.KIND_PRETRAIN)
  del state_dict["encoder.blocks.1.attn.q_bias"]
  state_dict["encoder.blocks.1.attn.k_bias"] = np.zeros((64,), np.float32)
  state_dict["decoder.head.weight"] = np.zeros((383, 32), np.float32)
  with pytest.raises(mapping.StateDictMismatchError) as error:
    mapping.official_to_flax(state_dict, small_spec(), mapping.KIND_PRETRAIN)
  message = str(error.value)
  assert "missing keys (1): encoder.blocks.1.attn.q_bias" in message
  assert "unexpected keys (1): encoder.blocks.1.attn.k_bias" in message
  assert "wrong shapes (1): decoder.head.weight (expected (384, 32), got (383, 32))" in message
  assert error.value.missing == ["encoder.blocks.1.attn.q_bias"]


def test_from_pytorch_reports_all_mismatches_of_a_file(tmp_path):
  torch = pytest.importorskip("torch")
  state_dict = mapping.flax_to_official(random_params(small_spec(), mapping.KIND_CLASSIFIER),
                                        mapping.KIND_CLASSIFIER)
  tensors = {k: torch.from_numpy(v) for k, v in state_dict.items() if k != "blocks.0.norm2.bias"}
  tensors["blocks.0.attn.gamma"] = torch.zeros(64)
  tensors["fc_norm.bias"] = torch.zeros(65)
  torch.save({"model": tensors}, tmp_path / "bad.pth")
  with pytest.raises(mapping.StateDictMismatchError, match=r"(?s)missing keys \(1\): blocks.0.norm2.bias.*"
                     r"unexpected keys \(1\): blocks.0.attn.gamma.*wrong shapes \(1\): fc_norm.bias"):
    from_pytorch.import_pytorch(str(tmp_path / "bad.pth"), **SMALL_IMPORT_FLAGS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("wrapping", ["model", "module", "bare", "orig_mod", "backbone", "ddp", "safetensors"])
def test_from_pytorch_unwraps_files_and_strips_prefixes(tmp_path, kind, wrapping):
  torch = pytest.importorskip("torch")
  params = random_params(small_spec(), kind)
  state_dict = mapping.flax_to_official(params, kind)
  tensors = {k: torch.from_numpy(v) for k, v in state_dict.items()}
  path = str(tmp_path / "weights.pth")
  if wrapping == "model":
    torch.save({"model": tensors, "epoch": 3}, path)
  elif wrapping == "module":
    torch.save({"module": tensors}, path)
  elif wrapping == "bare":
    torch.save(tensors, path)
  elif wrapping == "orig_mod":  # torch.compile'd model
    torch.save({"model": {"_orig_mod." + k: v for k, v in tensors.items()}}, path)
  elif wrapping == "backbone":  # fine-tuned weights of a wrapped model also carry encoder.
    prefix = "backbone." + ("encoder." if kind == mapping.KIND_CLASSIFIER else "")
    torch.save({"module": {prefix + k: v for k, v in tensors.items()}}, path)
  elif wrapping == "ddp":
    torch.save({"model": {"module." + k: v for k, v in tensors.items()}}, path)
  else:
    from safetensors.torch import save_file
    path = str(tmp_path / "weights.safetensors")
    save_file(tensors, path)
  loaded = from_pytorch.import_pytorch(path, **SMALL_IMPORT_FLAGS)
  assert loaded.kind == kind
  assert_trees_equal(loaded.params, params)


def test_from_pytorch_reads_official_args_but_refuses_other_pickles(tmp_path):
  torch = pytest.importorskip("torch")
  tensors = {k: torch.from_numpy(v) for k, v in mapping.flax_to_official(
      random_params(small_spec(), mapping.KIND_CLASSIFIER), mapping.KIND_CLASSIFIER).items()}
  # The official training scripts save their argparse.Namespace next to the weights.
  torch.save({"model": tensors, "args": argparse.Namespace(lr=1e-3), "epoch": 2}, tmp_path / "ok.pth")
  assert from_pytorch.import_pytorch(str(tmp_path / "ok.pth"), **SMALL_IMPORT_FLAGS).kind == "classifier"
  torch.save({"model": tensors, "extra": OpaqueObject()}, tmp_path / "bad.pth")
  with pytest.raises(ValueError, match="not loaded for safety"):
    from_pytorch.import_pytorch(str(tmp_path / "bad.pth"), **SMALL_IMPORT_FLAGS)


class OpaqueObject:
  """A pickled class that weights_only loading must refuse."""


def test_heads_come_from_the_variant_table_by_width():
  state_dict = {"encoder.patch_embed.proj.weight": np.zeros((768, 3, 2, 16, 16), np.float32),
                "encoder.blocks.0.mlp.fc1.weight": np.zeros((3072, 768), np.float32),
                "encoder_to_decoder.weight": np.zeros((384, 768), np.float32),
                "decoder.blocks.0.mlp.fc1.weight": np.zeros((1536, 384), np.float32)}
  for i in range(12):
    state_dict[f"encoder.blocks.{i}.norm1.weight"] = np.zeros((768,), np.float32)
  for i in range(4):
    state_dict[f"decoder.blocks.{i}.norm1.weight"] = np.zeros((384,), np.float32)
  config = mapping.infer_model_config(state_dict, mapping.KIND_PRETRAIN)
  assert config["variant"] == "B" and config["num_heads"] == 12 and config["decoder_num_heads"] == 6
  assert (config["depth"], config["decoder_depth"], config["num_frames"], config["image_size"]) == (12, 4, 16, 224)
  state_dict["encoder.patch_embed.proj.weight"] = np.zeros((96, 3, 2, 16, 16), np.float32)
  with pytest.raises(ValueError, match="--num_heads"):
    mapping.infer_model_config(state_dict, mapping.KIND_PRETRAIN)


def test_fixed_pos_embed_is_dropped_and_learned_one_rejected():
  from videomae_jax.models import posembed
  state_dict = {"blocks.0.norm1.weight": np.zeros(8), "pos_embed": posembed.sinusoid_table(32, 8)[None]}
  cleaned, kind = mapping.normalize_official_state_dict(state_dict)
  assert kind == mapping.KIND_ENCODER and "pos_embed" not in cleaned  # no head: an encoder
  state_dict["pos_embed"] = state_dict["pos_embed"] + 0.1
  with pytest.raises(ValueError, match="learned or interpolated position embeddings"):
    mapping.normalize_official_state_dict(state_dict)


# ----------------------------------------------------------------------------------------------------------------
# params_io: exports and training checkpoints
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_params_export_round_trip(tmp_path, kind):
  params = random_params(small_spec(scan_layers=True), kind)
  out = params_io.save_params_export(str(tmp_path / "export"), params, kind, dict(SMALL_MODEL, scan_layers=True))
  with open(os.path.join(out, "model.json")) as f:
    meta = json.load(f)
  assert meta["kind"] == kind and meta["model"]["width"] == 64 and "scan_layers" not in meta["model"]
  loaded = params_io.load_params(out)
  assert loaded.kind == kind and loaded.step is None
  assert_trees_equal(loaded.params, layer_stacking.unstack_layers(params))
  spec, want = loaded.spec(), small_spec()
  fields = ["width", "depth", "num_heads", "mlp_dim", "patch_size", "tubelet_size", "num_frames", "image_size"]
  fields += ["decoder_width", "decoder_depth", "decoder_num_heads", "decoder_mlp_dim"] if kind == "pretrain" else \
      ["num_classes"]
  assert {f: getattr(spec, f) for f in fields} == {f: getattr(want, f) for f in fields}
  assert not spec.scan_layers and spec.compute_dtype == "float32"
  with pytest.raises(FileExistsError, match="overwrite"):
    params_io.save_params_export(out, params, kind, SMALL_MODEL)


def test_save_params_export_rejects_params_of_another_model(tmp_path):
  params = random_params(small_spec(), mapping.KIND_CLASSIFIER)
  with pytest.raises(mapping.StateDictMismatchError, match=r"wrong shapes \(2\): head/bias.*head/kernel"):
    params_io.save_params_export(str(tmp_path / "x"), params, "classifier", dict(SMALL_MODEL, num_classes=7))


def write_training_run(workdir, params, task, steps=(10, 20)):
  """A workdir the way the trainer writes it: config.json + CheckpointManager with items 'state' and 'data'."""
  import ml_collections
  import optax
  import orbax.checkpoint as ocp
  config = ml_collections.ConfigDict(dict(task=task, seed=0, model=dict(SMALL_MODEL, scan_layers=True),
                                          batch_size=8))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("state", "data"))
  for step in steps:
    step_params = jax.tree.map(lambda x, s=step: x + s, params)
    state = {"step": jnp.int32(step), "params": step_params, "opt_state": optax.adamw(1e-3).init(step_params)}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               data=ocp.args.JsonSave({"position": step})))
  manager.wait_until_finished()
  manager.close()


@pytest.mark.parametrize("task,kind", [("pretrain", "pretrain"), ("finetune", "classifier")])
def test_load_params_reads_a_checkpoint_manager_workdir(tmp_path, task, kind):
  params = random_params(small_spec(scan_layers=True), kind)  # scanned, as with config.model.scan_layers=True
  workdir = str(tmp_path / "run")
  write_training_run(workdir, params, task)
  latest = params_io.load_params(workdir)
  assert (latest.kind, latest.step) == (kind, 20)
  assert latest.model_config["width"] == 64 and latest.model_config["depth"] == 2
  expected = layer_stacking.unstack_layers(jax.tree.map(lambda x: x + 20, params))
  assert_trees_equal(latest.params, expected)
  checkpoints = os.path.join(workdir, "checkpoints")
  for source, step in [(workdir, 10), (checkpoints, 10), (checkpoints, None), (os.path.join(checkpoints, "10"), None),
                       (os.path.join(checkpoints, "10", "state"), None)]:
    loaded = params_io.load_params(source, step=step)
    want = 20 if (step is None and source == checkpoints) else 10
    assert loaded.step == want and loaded.kind == kind and loaded.model_config == latest.model_config
    np.testing.assert_array_equal(loaded.params["encoder"]["blocks"]["1"]["attn"]["q_bias"],
                                  np.asarray(params["encoder"]["blocks"]["layers"]["attn"]["q_bias"][1]) + want)
  with pytest.raises(FileNotFoundError, match="steps there: \\[10, 20\\]"):
    params_io.load_params(workdir, step=30)


def test_to_pytorch_cli_reads_a_workdir_and_from_pytorch_cli_reads_it_back(tmp_path):
  pytest.importorskip("torch")
  params = random_params(small_spec(scan_layers=True), mapping.KIND_PRETRAIN)
  workdir = str(tmp_path / "run")
  write_training_run(workdir, params, "pretrain", steps=(5,))
  pth = str(tmp_path / "out" / "pretrain.pth")
  run_tool("to_pytorch", f"--workdir={workdir}", "--format=videomaev2", f"--output={pth}")
  with pytest.raises(FileExistsError):
    to_pytorch.convert(workdir, pth, "videomaev2")
  export = str(tmp_path / "export")
  run_tool("from_pytorch", f"--input={pth}", f"--output={export}", "--num_heads=4", "--decoder_num_heads=2",
           "--num_frames=4", "--image_size=32")
  loaded = params_io.load_params(export)
  assert_trees_equal(loaded.params, layer_stacking.unstack_layers(jax.tree.map(lambda x: x + 5, params)))
  # And the export converts again (to_pytorch --checkpoint accepts a params export).
  pth_again = str(tmp_path / "again.pth")
  to_pytorch.convert(export, pth_again, "videomaev2")
  import torch
  first, second = (torch.load(p, weights_only=True)["model"] for p in (pth, pth_again))
  assert sorted(first) == sorted(second) and all(torch.equal(first[k], second[k]) for k in first)


def run_tool(name, *flags):
  """Runs `python -m videomae_jax.tools.NAME` (the programs users run) and checks its exit status."""
  result = subprocess.run([sys.executable, "-m", f"videomae_jax.tools.{name}", *flags], capture_output=True,
                          text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-2000:]
  return result


def test_non_convert_modules_do_not_import_torch_and_convert_says_how_to_install_it():
  code = (
      "import sys\n"
      "import videomae_jax, videomae_jax.models, videomae_jax.default_config\n"
      "from videomae_jax.convert import mapping, params_io, to_pytorch, from_pytorch, torch_io\n"
      "assert not [m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules], sys.modules.keys()\n"
      "sys.modules['torch'] = None  # as if torch were not installed\n"
      "try:\n"
      "  torch_io.load_torch_file('x.pth')\n"
      "except ImportError as e:\n"
      "  assert 'pip install -e .[torch]' in str(e), e\n"
      "else:\n"
      "  raise AssertionError('no ImportError')\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-2000:]


def test_encoder_only_weights_are_an_encoder():
  """Once refused ("only full pretraining models ... and fine-tuned classifiers convert"); now a kind of its own
  (tests/test_weights.py converts every published encoder-only layout and checks the features)."""
  state_dict = mapping.flax_to_official(random_params(small_spec(), mapping.KIND_PRETRAIN), mapping.KIND_PRETRAIN)
  encoder_only = {k: v for k, v in state_dict.items() if k.startswith("encoder.")}
  cleaned, kind = mapping.normalize_official_state_dict(encoder_only)
  config = mapping.infer_model_config(cleaned, kind, **SMALL_IMPORT_FLAGS)
  assert kind == mapping.KIND_ENCODER and "norm.weight" in cleaned
  assert config["num_classes"] == 0 and config["pooled_norm"] == "norm" and config["width"] == 64


# ------------------------------------------------------------------------------------------------------------
# Bad inputs and outputs: a clear message, nothing half written.
# ------------------------------------------------------------------------------------------------------------


def _small_pth(path, kind=mapping.KIND_CLASSIFIER):
  import torch  # pylint: disable=import-outside-toplevel
  state = mapping.flax_to_official(random_params(small_spec(), kind), kind)
  torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}}, str(path))
  return state


def test_broken_input_files_say_what_is_wrong(tmp_path):
  good = tmp_path / "good.pth"
  state = _small_pth(good)
  cases = {
      "empty.pth": (b"", r"is empty \(0 bytes\): not a checkpoint"),
      "truncated.pth": (good.read_bytes()[: good.stat().st_size // 2], r"looks like a PyTorch checkpoint but cannot "
                        r"be read .*truncated or corrupt"),
      "random.pth": (np.random.default_rng(0).bytes(4096), r"is not a PyTorch or safetensors checkpoint"),
  }
  for name, (data, message) in cases.items():
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=message):
      from_pytorch.import_pytorch(str(tmp_path / name), **SMALL_IMPORT_FLAGS)
  # A safetensors file under a .pth name is read as what it is.
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp_path / "misnamed.pth"))
  assert from_pytorch.import_pytorch(str(tmp_path / "misnamed.pth"), **SMALL_IMPORT_FLAGS).kind == "classifier"
  # An integer tensor where a weight belongs.
  import torch  # pylint: disable=import-outside-toplevel
  bad = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
  bad["head.weight"] = bad["head.weight"].to(torch.int64)
  torch.save({"model": bad}, str(tmp_path / "int.pth"))
  with pytest.raises(ValueError, match=r"weights must be floating point, and 1 are not: head.weight \(int64\)"):
    from_pytorch.import_pytorch(str(tmp_path / "int.pth"), **SMALL_IMPORT_FLAGS)


def test_outputs_a_file_for_a_folder_and_overwrite_leaves_nothing_stale(tmp_path):
  source = tmp_path / "good.pth"
  _small_pth(source)
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(FileExistsError, match=r"is a file; name the folder to write"):
    from_pytorch.convert(str(source), str(tmp_path / "a_file"), **SMALL_IMPORT_FLAGS)
  export = tmp_path / "export"
  from_pytorch.convert(str(source), str(export), **SMALL_IMPORT_FLAGS)
  (export / "stale_from_an_old_export.bin").write_bytes(b"old")
  with pytest.raises(FileExistsError, match="pass --overwrite"):
    from_pytorch.convert(str(source), str(export), **SMALL_IMPORT_FLAGS)
  from_pytorch.convert(str(source), str(export), overwrite=True, **SMALL_IMPORT_FLAGS)
  assert sorted(os.listdir(export)) == ["model.json", "params"]
  other = tmp_path / "my_notes"
  other.mkdir()
  (other / "notes.txt").write_text("keep me")
  with pytest.raises(FileExistsError, match=r"holds other files \(notes.txt\)"):
    from_pytorch.convert(str(source), str(other), overwrite=True, **SMALL_IMPORT_FLAGS)
  assert (other / "notes.txt").read_text() == "keep me"
  with pytest.raises(FileExistsError, match=r"is a folder; name the file to write"):
    to_pytorch.convert(str(export), str(export), "videomaev2", overwrite=True)


def test_from_pytorch_cli_on_an_empty_file_is_one_line(tmp_path):
  (tmp_path / "empty.pth").write_bytes(b"")
  out = subprocess.run([sys.executable, "-m", "videomae_jax.tools.from_pytorch", f"--input={tmp_path}/empty.pth",
                        f"--output={tmp_path}/out"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert out.stderr.strip().endswith("is empty (0 bytes): not a checkpoint; download it again.")
