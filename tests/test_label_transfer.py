"""K710 -> K400 head transfer by the official label map, on our params tree, on load and as a CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from videomae_jax import default_config, label_transfer
from videomae_jax.tasks.classify import ClassificationTask
from videomae_jax.convert import params_io
from videomae_jax.data import label_maps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LABEL_DIR = label_maps.LABEL_MAP_DIR
WIDTH = 8


def _k710_head():
  """A 710-class head whose column j is filled with j (kernel) and whose bias j is 1000 + j: rows are traceable."""
  kernel = np.tile(np.arange(710, dtype=np.float32)[None], (WIDTH, 1))
  return {"kernel": kernel, "bias": 1000.0 + np.arange(710, dtype=np.float32)}


def _names(label_set):
  return label_transfer.load_label_names(os.path.join(LABEL_DIR, f"label_map_{label_set}.txt"))


def test_label_map_picks_the_row_of_the_same_class_name():
  label_map = label_transfer.load_label_map(os.path.join(LABEL_DIR, "label_710to400.json"))
  assert label_map.shape == (400,)
  np.testing.assert_array_equal(label_map, label_transfer.load_label_map("k400"))
  head = label_transfer.select_head_rows(_k710_head(), label_map)
  assert head["kernel"].shape == (WIDTH, 400) and head["bias"].shape == (400,)
  k400, k710 = _names("k400"), _names("k710")
  for name in ("abseiling", "air drumming", "yoga", "zumba", "throwing ball", "playing guitar", "sipping cup"):
    i = k400.index(name)
    row = int(head["bias"][i] - 1000)
    assert k710[row] == name                         # the K400 class reads the K710 row of the same class
    np.testing.assert_array_equal(head["kernel"][:, i], np.full(WIDTH, row))
  # Exactly the official list, and every K400 name lands on its own name in K710.
  assert label_map[0] == k710.index("abseiling") == 341 and label_map[1] == 158
  assert all(k710[label_map[i]] == k400[i] for i in range(400))


def test_transfer_head_keeps_the_rest_and_rejects_a_wrong_map():
  params = {"encoder": {"x": np.ones(3)}, "fc_norm": {"scale": np.ones(WIDTH)}, "head": _k710_head()}
  out = label_transfer.transfer_head(params, [5, 0, 709])
  np.testing.assert_array_equal(out["head"]["bias"], [1005.0, 1000.0, 1709.0])
  assert out["encoder"] is params["encoder"]
  with pytest.raises(ValueError, match="710"):
    label_transfer.select_head_rows({"kernel": np.zeros((WIDTH, 400)), "bias": np.zeros(400)},
                                    label_transfer.load_label_map("k400") * 0 + 500)


def _tiny_classifier_config(num_classes):
  config = default_config.finetune_config("custom")
  config.model.update(dict(width=WIDTH, depth=1, num_heads=2, mlp_dim=16, patch_size=8, num_frames=4,
                           image_size=16, compute_dtype="float32", num_classes=num_classes))
  config.batch_size = 2
  return config


def test_head_label_map_applies_on_load():
  config = _tiny_classifier_config(400)
  config.head_label_map = "k400"
  task = ClassificationTask.from_config(config)
  encoder = {"patch_embed": {"proj": {"kernel": np.zeros((2, 8, 8, 3, WIDTH), np.float32)}}}
  loaded = params_io.LoadedParams(
      params={"encoder": encoder, "fc_norm": {"scale": np.full(WIDTH, 2.0, np.float32),
                                              "bias": np.zeros(WIDTH, np.float32)}, "head": _k710_head()},
      kind="classifier", model_config=None, path="k710_run")
  params = task.adapt_loaded_params(loaded)
  label_map = label_transfer.load_label_map("k400")
  np.testing.assert_array_equal(params["head"]["bias"], 1000.0 + label_map)
  np.testing.assert_array_equal(params["fc_norm"]["scale"], np.full(WIDTH, 2.0))  # loaded, not fresh


def test_cli_writes_a_400_class_export(tmp_path):
  import jax
  config = _tiny_classifier_config(710)
  task = ClassificationTask.from_config(config)
  shapes = jax.eval_shape(task.init_params, jax.random.key(0))    # tracing only: no compile
  params = jax.tree.map(lambda s: np.random.default_rng(0).normal(size=s.shape).astype(s.dtype), shapes)
  params["head"] = _k710_head()
  source = params_io.save_params_export(str(tmp_path / "k710"), params, "classifier", config.model)
  map_path = tmp_path / "map.json"
  map_path.write_text(json.dumps([709, 3, 3]))
  result = subprocess.run([sys.executable, "-m", "videomae_jax.tools.label_transfer", f"--input={source}",
                           f"--label_map={map_path}", f"--output={tmp_path / 'k3'}"], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr[-2000:]
  loaded = params_io.load_params(str(tmp_path / "k3"))
  assert loaded.model_config["num_classes"] == 3
  np.testing.assert_array_equal(loaded.params["head"]["bias"], [1709.0, 1003.0, 1003.0])
  np.testing.assert_array_equal(loaded.params["encoder"]["patch_embed"]["proj"]["kernel"],
                                params["encoder"]["patch_embed"]["proj"]["kernel"])
