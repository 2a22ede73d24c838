"""data_prep.tfds_video_folder: `tfds build` on Beam's DirectRunner writes ArrayRecord that trains through main."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("apache_beam")
pytest.importorskip("tensorflow_datasets")
pytest.importorskip("mlcroissant")  # tfds 4.9.10's command line imports it.

from videomae_jax.data import tfds_source  # pylint: disable=wrong-import-position
from videomae_jax.data import testing  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.slow  # a `tfds build` and a training run: CI's second step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "configs", "tiny_pretrain.py")


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  videos = str(tmp_path_factory.mktemp("videos"))
  for i in range(6):
    testing.write_good_video(os.path.join(videos, ("cats", "dogs")[i % 2], f"v{i}.mp4"), num_frames=12 + i,
                             height=48, width=64, seed=i)
  bad = testing.write_bad_videos(os.path.join(videos, "dogs"))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  result = subprocess.run(
      [sys.executable, "-m", "tensorflow_datasets.scripts.cli.main", "build", "video_folder",
       "--imports=data_prep.tfds_video_folder", f"--manual_dir={videos}", f"--data_dir={data_dir}",
       "--file_format=array_record", '--config={"name": "tiny", "short_side": 40}',
       "--beam_pipeline_options=runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  return data_dir, bad


def test_tfds_build_writes_array_record_with_the_failures_in_its_metadata(tfds_dir):
  data_dir, bad = tfds_dir
  source, info = tfds_source.open_tfds_source("video_folder/tiny", split="train", data_dir=data_dir)
  assert len(source) == 6 and tfds_source.label_names(info, "label") == ["cats", "dogs"]
  records = [tfds_source.example_to_record(source[i], video_key="video", label_key="label", source_name="t")
             for i in range(len(source))]
  assert sorted(r["num_frames"] for r in records) == [12, 13, 14, 15, 16, 17]
  assert sorted(r["label"] for r in records) == [0, 0, 0, 1, 1, 1]
  assert tfds_source.frame_size("video_folder/tiny", data_dir=data_dir) == (40, 54)  # 48x64, short side 40.
  failures = {f["path"]: f["reason"] for f in info.metadata["failures"]}
  assert set(failures) == {f"dogs/{name}" for name in bad}
  assert all(keyword in failures[f"dogs/{name}"] for name, keyword in bad.items())


TFDS_CONFIG = """
import importlib.util

spec = importlib.util.spec_from_file_location("tiny_pretrain", {config!r})
tiny_pretrain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny_pretrain)


def get_config():
  config = tiny_pretrain.get_config()  # config.data.sources is a list: a config file sets it, flags cannot.
  config.data.sources = [dict(name="tiny", tfds="video_folder/tiny", split="train", data_dir={data_dir!r}, stride=2,
                              weight=1.0, num_videos=6)]
  config.num_train_steps = 4
  return config
"""


def test_the_tfds_data_set_trains_through_main(tfds_dir, tmp_path):
  data_dir, _ = tfds_dir
  config = tmp_path / "tfds_pretrain.py"
  config.write_text(TFDS_CONFIG.format(config=CONFIG, data_dir=data_dir))
  workdir = tmp_path / "run"
  result = subprocess.run([sys.executable, "-m", "videomae_jax.main", f"--config={config}", f"--workdir={workdir}",
                           "--compilation_cache_dir="], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  losses = [json.loads(line)["train/loss"] for line in open(workdir / "metrics.jsonl") if "train/loss" in line]
  assert len(losses) == 2 and all(0 < loss < float("inf") for loss in losses)  # Steps 2 and 4.
  written = json.loads((workdir / "config.json").read_text())
  assert written["data"]["sources"][0]["tfds"] == "video_folder/tiny"
  assert written["data"]["crop_canvas"] == [40, 54]  # resolve read it from the data set's metadata.json.
