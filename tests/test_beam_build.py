"""`python -m data_prep.build_shards --runner=beam` (data_prep.beam_build): the local build's shards, byte for byte,
and its dataset.json, on Beam's DirectRunner; failures land in dataset.json; a rerun finishes a partial build."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

from data_prep import beam_build  # pylint: disable=wrong-import-position
from data_prep import shard_builder  # pylint: disable=wrong-import-position
from videomae_jax.data import shards  # pylint: disable=wrong-import-position
from videomae_jax.data import testing  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_WORKER_PROCESSES = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"


def _files(folder):
  """{name: bytes} of the shards and sidecars."""
  return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(f"{folder}/*.array_record*"))}


def _description(folder):
  with open(os.path.join(folder, "dataset.json"), encoding="utf-8") as f:
    return json.load(f)


def _small_inputs(folder):
  for i, relative in enumerate(["cats/a.mp4", "cats/b.mp4", "dogs/c.mp4"]):
    testing.write_good_video(os.path.join(folder, relative), seed=i, num_frames=8 + i)
  return testing.write_bad_videos(os.path.join(folder, "dogs"))


def test_beam_in_process_equals_the_local_build_and_lists_the_failures(tmp_path):
  """DirectRunner in this process (a few seconds): the quick check that both drivers write the same bytes."""
  videos = str(tmp_path / "videos")
  bad = _small_inputs(videos)
  local = shard_builder.build_shards(videos, str(tmp_path / "local"), "pets", num_workers=0, videos_per_shard=3,
                                     timeout_s=60, progress=False)
  on_beam = beam_build.build_shards(videos, str(tmp_path / "beam"), "pets", videos_per_shard=3, timeout_s=60)
  assert _files(tmp_path / "beam") == _files(tmp_path / "local") and len(_files(tmp_path / "local")) == 6
  assert on_beam == local == _description(tmp_path / "beam")
  reasons = {failure["path"]: failure["reason"] for failure in on_beam["failures"]}
  assert {path: next(k for k in bad.values() if k in reason) for path, reason in reasons.items()} == {
      f"dogs/{name}": keyword for name, keyword in bad.items()}
  assert not os.path.exists(tmp_path / "beam" / beam_build.TASKS_FILE)


def test_a_rerun_on_beam_finishes_a_partial_build(tmp_path):
  """Shards whose sidecar and inputs match are kept (not rewritten); missing ones are built to the same bytes."""
  videos = str(tmp_path / "videos")
  _small_inputs(videos)
  out = str(tmp_path / "out")
  beam_build.build_shards(videos, out, "pets", videos_per_shard=2, timeout_s=60)
  complete = _files(out)
  kept = os.path.join(out, "pets-00000-of-00004.array_record")
  kept_mtime = os.stat(kept).st_mtime_ns
  for name in ("pets-00001-of-00004.array_record", "pets-00003-of-00004.array_record.json", "dataset.json"):
    os.remove(os.path.join(out, name))
  again = beam_build.build_shards(videos, out, "pets", videos_per_shard=2, timeout_s=60)
  assert _files(out) == complete and again == _description(out)
  assert os.stat(kept).st_mtime_ns == kept_mtime


def test_glob_input_lists_like_the_folder_before_its_wildcard(tmp_path):
  videos = str(tmp_path / "videos")
  _small_inputs(videos)
  folder_items, folder_labels, _ = shard_builder.list_inputs(videos)
  glob_items, glob_labels, _ = shard_builder.list_inputs(os.path.join(videos, "*", "*.mp4"))
  assert glob_labels == folder_labels == ["cats", "dogs"]
  assert [(i["path"], i["label"]) for i in glob_items] == [(i["path"], i["label"]) for i in folder_items]
  only_cats, _, _ = shard_builder.list_inputs(os.path.join(videos, "cats", "*.mp4"))
  assert [(i["path"], i["label"]) for i in only_cats] == [("a.mp4", -1), ("b.mp4", -1)]


@pytest.mark.slow
def test_remote_inputs_and_output_through_urls(tmp_path):
  """gs:// folders, globs and manifests go through fsspec (data_prep.storage); file:// URLs take the same code
  path here: listed with their fingerprints, each video copied to the worker to be decoded, the shards written
  as whole objects. The records are the local build's, the failures too (a listed file that is gone included)."""
  videos = str(tmp_path / "videos")
  bad = _small_inputs(videos)
  local = shard_builder.build_shards(videos, str(tmp_path / "local"), "pets", num_workers=0, videos_per_shard=3,
                                     timeout_s=60, progress=False)
  records = {name: data for name, data in _files(tmp_path / "local").items() if name.endswith(".array_record")}
  for input_url in (f"file://{videos}", f"file://{videos}/*/*.mp4"):
    out = tmp_path / ("glob" if "*" in input_url else "folder")
    on_beam = beam_build.build_shards(input_url, f"file://{out}", "pets", videos_per_shard=3, timeout_s=60)
    assert {name: data for name, data in _files(out).items() if name.endswith(".array_record")} == records
    for failure in on_beam["failures"]:
      failure["reason"] = failure["reason"].replace("file://", "")  # Decoder errors name the file as listed.
    assert {k: v for k, v in on_beam.items() if k != "sources"} == {k: v for k, v in local.items() if k != "sources"}
    assert on_beam["sources"][0]["input"] == input_url
  # A manifest behind a URL, with a row whose file is gone.
  (tmp_path / "videos" / "list.csv").write_text("path,label\ncats/a.mp4,cats\ndogs/c.mp4,dogs\ndogs/gone.mp4,dogs\n")
  manifest = beam_build.build_shards(f"file://{videos}/list.csv", str(tmp_path / "manifest"), "pets", timeout_s=60)
  assert manifest["num_records"] == 2 and manifest["labels"] == ["cats", "dogs"]
  assert manifest["failures"] == [dict(path="dogs/gone.mp4", reason="file not found (or a broken symbolic link)")]
  assert len(bad) == 4


def test_pipeline_options_are_tfds_style_flags():
  options = beam_build.parse_pipeline_options(TWO_WORKER_PROCESSES).get_all_options()
  assert (options["runner"], options["direct_num_workers"], options["direct_running_mode"]) == (
      "DirectRunner", 2, "multi_processing")


def _mixed_inputs(folder):
  """Good videos of several sizes, codecs and containers, and broken ones."""
  frames = testing.moving_square_frames(12, 48, 64, seed=3)
  testing.write_good_video(os.path.join(folder, "cats", "h264_small.mp4"), num_frames=10, seed=1)
  testing.write_good_video(os.path.join(folder, "cats", "h264_tall.mp4"), num_frames=14, height=64, width=36, seed=2)
  testing.write_video(os.path.join(folder, "cats", "mpeg4.avi"), frames, codec="mpeg4")
  testing.write_video(os.path.join(folder, "dogs", "anim.gif"), frames[:8], codec="gif", pix_fmt="rgb8")
  testing.write_video(os.path.join(folder, "dogs", "mjpeg.mkv"), frames, codec="mjpeg", pix_fmt="yuvj420p")
  testing.write_video(os.path.join(folder, "dogs", "rotated.mp4"), frames, rotation=-90)
  testing.write_video(os.path.join(folder, "dogs", "large.mp4"), testing.moving_square_frames(9, 120, 160, seed=4))
  testing.write_good_video(os.path.join(folder, "dogs", "hangs.mp4"), num_frames=10, seed=5)
  return testing.write_bad_videos(os.path.join(folder, "dogs"))


@pytest.mark.slow
def test_beam_with_two_worker_processes_writes_the_local_builds_bytes(tmp_path):
  """The closing check: DirectRunner with 2 worker processes over good videos of several sizes and codecs plus
  broken ones (and one that hangs past --timeout_s) writes the local build's shards and dataset.json."""
  videos = str(tmp_path / "videos")
  bad = _mixed_inputs(videos)
  common = [f"--input={videos}", "--source_name=mixed", "--videos_per_shard=4", "--short_side=40", "--timeout_s=5"]
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             **{shard_builder.ENV_TEST_HANG: "hangs.mp4"})
  for runner in (["--num_workers=2"], ["--runner=beam", f"--beam_pipeline_options={TWO_WORKER_PROCESSES}"]):
    out = tmp_path / runner[0].split("=")[1]
    result = subprocess.run([sys.executable, "-m", "data_prep.build_shards", *common, f"--output_dir={out}",
                             *runner], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
  local, on_beam = tmp_path / "2", tmp_path / "beam"
  assert _files(on_beam) == _files(local) and len(_files(local)) == 2 * 3  # 12 inputs, 4 per shard.
  assert _description(on_beam) == _description(local)
  description = _description(local)
  reasons = {failure["path"]: failure["reason"] for failure in description["failures"]}
  assert set(reasons) == {f"dogs/{name}" for name in bad} | {"dogs/hangs.mp4"}
  assert reasons["dogs/hangs.mp4"].startswith("timeout")
  records = {r["path"]: r for r in shards.read_all_records(str(on_beam))}
  assert len(records) == description["num_records"] == 7
  assert (records["dogs/rotated.mp4"]["height"], records["dogs/rotated.mp4"]["width"]) == (54, 40)  # Upright.
  assert (records["dogs/large.mp4"]["height"], records["dogs/large.mp4"]["width"]) == (40, 54)
  assert len({(r["height"], r["width"]) for r in records.values()}) == 4
  assert np.all([r["num_frames"] >= 8 for r in records.values()])
