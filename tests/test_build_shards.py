"""data_prep.shard_builder and `python -m data_prep.build_shards`: bad files skipped with reasons,
timeouts, crash recovery, resumable and deterministic."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_prep import shard_builder
from videomae_jax.data import decoding
from videomae_jax.data import encoding
from videomae_jax.data import shards
from videomae_jax.data import testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = ["cats/good_0.mp4", "cats/good_1.mp4", "dogs/good_2.mp4", "dogs/good_3.mp4"]


def _make_inputs(folder, with_bad=True):
  for i, relative in enumerate(GOOD):
    testing.write_good_video(os.path.join(folder, relative), seed=i, num_frames=10 + i)
  return testing.write_bad_videos(os.path.join(folder, "dogs")) if with_bad else {}


def _shard_bytes(folder):
  return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(f"{folder}/*.array_record"))}


def _run_cli(args, env_extra=None, **kwargs):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {}))
  return subprocess.Popen([sys.executable, "-m", "data_prep.build_shards", *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("videos"))
  bad = _make_inputs(folder)
  return folder, bad


@pytest.fixture(scope="module")
def reference_build(inputs, tmp_path_factory):
  """One uninterrupted in-process build (no worker processes), the reference for byte comparisons."""
  folder, _ = inputs
  out = str(tmp_path_factory.mktemp("reference"))
  description = shard_builder.build_shards(folder, out, "pets", num_workers=0, videos_per_shard=2, progress=False)
  return out, description


def test_cli_skips_bad_files_with_reasons_and_keeps_good_ones(inputs, tmp_path):
  folder, bad = inputs
  process = _run_cli([f"--input={folder}", f"--output_dir={tmp_path}", "--source_name=pets", "--num_workers=2",
                      "--videos_per_shard=3", "--timeout_s=60"])
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr
  description = json.load(open(tmp_path / "dataset.json"))
  assert description["num_records"] == len(GOOD)
  assert description["num_inputs"] == len(GOOD) + len(bad)
  assert description["labels"] == ["cats", "dogs"]
  reasons = {f["path"]: f["reason"] for f in description["failures"]}
  assert set(reasons) == {f"dogs/{name}" for name in bad}
  for name, keyword in bad.items():
    assert keyword in reasons[f"dogs/{name}"], reasons
  records = shards.read_all_records(str(tmp_path))
  assert sorted(r["path"] for r in records) == GOOD
  assert {r["path"]: r["label"] for r in records} == {p: int(p.startswith("dogs")) for p in GOOD}
  assert {r["path"]: r["num_frames"] for r in records} == {p: 10 + i for i, p in enumerate(GOOD)}
  assert "skipped dogs/zero_bytes.mp4: empty file" in stdout


def test_same_inputs_give_identical_shards_with_and_without_workers(inputs, reference_build, tmp_path):
  folder, _ = inputs
  reference, _ = reference_build
  shard_builder.build_shards(folder, str(tmp_path), "pets", num_workers=2, videos_per_shard=2, progress=False)
  expected = _shard_bytes(reference)
  assert len(expected) == 4  # 8 inputs, 2 per shard.
  assert _shard_bytes(str(tmp_path)) == expected
  assert (json.load(open(tmp_path / "dataset.json"))["shards"] ==
          json.load(open(os.path.join(reference, "dataset.json")))["shards"])


def test_video_file_record_is_the_record_the_build_stores(inputs, reference_build):
  """Any other driver of the build (a Beam pipeline, the pictures code) makes records with this one function."""
  folder, _ = inputs
  reference, _ = reference_build
  stored = {r["path"]: r for r in shards.read_all_records(reference)}
  record = shards.video_file_record(os.path.join(folder, GOOD[2]), source_name="pets", label=1,
                                    label_name="dogs", record_path=GOOD[2])
  assert shards.serialize_record(record) == shards.serialize_record(stored[GOOD[2]])
  unlabeled = shards.video_file_record(os.path.join(folder, GOOD[0]), source_name="pictures", short_side=0)
  assert (unlabeled["label"], unlabeled["label_name"], unlabeled["source"]) == (-1, "", "pictures")
  assert unlabeled["path"] == os.path.join(folder, GOOD[0]) and unlabeled["num_frames"] == 10
  assert (unlabeled["height"], unlabeled["width"]) == (32, 48)  # short_side=0 keeps the size


def test_killed_build_resumes_to_identical_shards(inputs, reference_build, tmp_path):
  folder, _ = inputs
  reference, _ = reference_build
  args = [f"--input={folder}", f"--output_dir={tmp_path}", "--source_name=pets", "--num_workers=1",
          "--videos_per_shard=2"]
  process = _run_cli(args, env_extra={shard_builder.ENV_TEST_SLOW: "0.4"}, start_new_session=True)
  deadline = time.time() + 90
  while not glob.glob(f"{tmp_path}/*.array_record") and time.time() < deadline:
    time.sleep(0.05)
  os.killpg(process.pid, signal.SIGKILL)
  process.communicate()
  finished_before = _shard_bytes(str(tmp_path))
  assert 1 <= len(finished_before) < 4, "the kill should land between the first and the last shard"
  assert not os.path.exists(tmp_path / "dataset.json")

  process = _run_cli(args)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr
  assert "already built" in stderr
  assert _shard_bytes(str(tmp_path)) == _shard_bytes(reference)
  assert not glob.glob(f"{tmp_path}/*.tmp-*")


def test_hung_decoder_is_killed_and_the_rest_is_built(tmp_path, monkeypatch):
  folder = tmp_path / "videos"
  _make_inputs(str(folder), with_bad=False)
  monkeypatch.setenv(shard_builder.ENV_TEST_HANG, "good_1.mp4")
  start = time.time()
  description = shard_builder.build_shards(str(folder), str(tmp_path / "out"), "pets", num_workers=2,
                                           timeout_s=3, progress=False)
  assert time.time() - start < 60
  assert description["num_records"] == len(GOOD) - 1
  assert [f["path"] for f in description["failures"]] == ["cats/good_1.mp4"]
  assert description["failures"][0]["reason"].startswith("timeout")


def test_crashing_decoder_is_listed_and_replaced(tmp_path, monkeypatch):
  folder = tmp_path / "videos"
  _make_inputs(str(folder), with_bad=False)
  monkeypatch.setenv(shard_builder.ENV_TEST_CRASH, "good_2.mp4")
  description = shard_builder.build_shards(str(folder), str(tmp_path / "out"), "pets", num_workers=1,
                                           timeout_s=60, progress=False)
  assert description["num_records"] == len(GOOD) - 1
  assert description["failures"][0]["path"] == "dogs/good_2.mp4"
  assert "crashed" in description["failures"][0]["reason"]


def test_manifests_csv_and_jsonl_with_label_names(tmp_path):
  folder = tmp_path / "videos"
  _make_inputs(str(folder), with_bad=False)
  csv_path = folder / "list.csv"
  csv_path.write_text("path,label\n" + "".join(f"{p},{p.split('/')[0]}\n" for p in GOOD[:3]))
  labels_file = tmp_path / "names.txt"
  labels_file.write_text("dogs\ncats\nbirds\n")
  description = shard_builder.build_shards(str(csv_path), str(tmp_path / "csv"), "pets", num_workers=0,
                                           label_names=["dogs", "cats", "birds"], progress=False)
  assert description["labels"] == ["dogs", "cats", "birds"]
  records = shards.read_all_records(str(tmp_path / "csv"))
  assert {r["path"]: (r["label"], r["label_name"]) for r in records} == {
      "cats/good_0.mp4": (1, "cats"), "cats/good_1.mp4": (1, "cats"), "dogs/good_2.mp4": (0, "dogs")}

  jsonl_path = folder / "list.jsonl"
  jsonl_path.write_text("".join(json.dumps(dict(path=p, label=i % 3)) + "\n" for i, p in enumerate(GOOD)))
  description = shard_builder.build_shards(str(jsonl_path), str(tmp_path / "jsonl"), "pets", num_workers=0,
                                           video_format="jpeg", progress=False)
  assert description["labels"] is None
  records = shards.read_all_records(str(tmp_path / "jsonl"))
  assert [r["label"] for r in records] == [0, 1, 2, 0]
  assert records[0]["format"] == "jpeg" and len(records[0]["frames"]) == records[0]["num_frames"] == 10


def test_unknown_label_stops_before_decoding(tmp_path):
  folder = tmp_path / "videos"
  _make_inputs(str(folder), with_bad=False)
  with pytest.raises(ValueError, match="not in --label_names"):
    shard_builder.build_shards(str(folder), str(tmp_path / "out"), "pets", num_workers=0,
                               label_names=["cats"], progress=False)
  assert not os.path.exists(tmp_path / "out" / "dataset.json")


def test_short_side_resize_keeps_even_sizes(tmp_path):
  testing.write_good_video(str(tmp_path / "v" / "a.mp4"), height=40, width=62)
  shard_builder.build_shards(str(tmp_path / "v"), str(tmp_path / "out"), "s", num_workers=0, short_side=21,
                             progress=False)
  (record,) = shards.read_all_records(str(tmp_path / "out"))
  assert (record["height"], record["width"]) == (22, 32)  # 40x62 * 21/40, rounded to even
  assert record["label"] == -1 and record["source"] == "s"


def test_description_lists_frame_sizes_and_rebuilds_old_sidecars(tmp_path):
  """dataset.json's max_frame_size is the default canvas for crops on the device; a shard whose sidecar lacks
  fields (an older build_shards) is rebuilt on the next run, to the same bytes."""
  testing.write_good_video(str(tmp_path / "v" / "a.mp4"), height=40, width=62)
  testing.write_good_video(str(tmp_path / "v" / "b.mp4"), height=62, width=40, seed=1)
  out = tmp_path / "out"
  description = shard_builder.build_shards(str(tmp_path / "v"), str(out), "s", num_workers=0, short_side=0,
                                           videos_per_shard=1, progress=False)
  assert description["frame_sizes"] == {"40x62": 1, "62x40": 1}
  assert description["max_frame_size"] == [62, 62]
  before = _shard_bytes(out)
  for sidecar_path in glob.glob(f"{out}/*.array_record.json"):
    with open(sidecar_path, encoding="utf-8") as f:
      sidecar = json.load(f)
    del sidecar["frame_sizes"]
    with open(sidecar_path, "w", encoding="utf-8") as f:
      json.dump(sidecar, f)
  again = shard_builder.build_shards(str(tmp_path / "v"), str(out), "s", num_workers=0, short_side=0,
                                     videos_per_shard=1, progress=False)
  assert again == description and _shard_bytes(out) == before


def test_an_interrupted_build_is_refused_for_training(reference_build, tmp_path):
  """build_shards writes dataset.json last: shard files without it are part of the data, never a data set, and
  no setting makes the pipeline train on them."""
  from videomae_jax import default_config  # pylint: disable=import-outside-toplevel
  from videomae_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  reference, _ = reference_build
  partial = tmp_path / "partial"
  partial.mkdir()
  for path in sorted(glob.glob(f"{reference}/*.array_record*"))[:2]:  # The first shard and its sidecar.
    shutil.copy(path, partial)
  leftover = tmp_path / "leftover"
  leftover.mkdir()
  (leftover / "pets-00000-of-00004.array_record.tmp-123").write_bytes(b"")
  for folder in (partial, leftover):
    for read in (shards.read_description, shards.shard_paths):
      with pytest.raises(shards.IncompleteShardsError, match="interrupted.*same `python -m data_prep.build_shards"):
        read(str(folder))
  config = default_config.pretrain_config("S")
  config.data.sources = [dict(name="pets", path=str(partial), stride=2, weight=1)]
  config.data.num_workers = 0
  with pytest.raises(shards.IncompleteShardsError):
    pipeline.crop_canvas(config)
  config.data.crop_canvas = (32, 48)
  with pytest.raises(shards.IncompleteShardsError):
    pipeline.make_dataset(config, mode="pretrain", process_index=0, process_count=1)
  with pytest.raises(FileNotFoundError, match="build shards with"):
    shards.read_description(str(tmp_path))


def test_crashed_workers_report_their_exit_code(tmp_path, monkeypatch):
  folder = tmp_path / "videos"
  _make_inputs(str(folder), with_bad=False)
  monkeypatch.setenv(shard_builder.ENV_TEST_CRASH, "good_*.mp4")
  description = shard_builder.build_shards(str(folder), str(tmp_path / "out"), "pets", num_workers=2,
                                           timeout_s=60, progress=False)
  assert [f["reason"] for f in description["failures"]] == ["decoder crashed (worker exit code 3)"] * len(GOOD)


def _children(pid):
  """{pid: state} of the spawned worker processes whose parent is `pid` (Linux /proc)."""
  found = {}
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      with open(f"/proc/{entry}/cmdline", "rb") as f:
        command = f.read()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == pid and b"spawn_main" in command:
      found[int(entry)] = fields[0]
  return found


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_busy_workers_exit_when_the_build_is_killed(inputs, tmp_path):
  folder, _ = inputs
  process = _run_cli([f"--input={folder}", f"--output_dir={tmp_path}", "--source_name=pets", "--num_workers=2",
                      "--timeout_s=600"], env_extra={shard_builder.ENV_TEST_HANG: "*"}, start_new_session=True)
  workers = {}
  deadline = time.time() + 60
  while len(workers) < 2 and time.time() < deadline:
    workers = _children(process.pid)
    time.sleep(0.1)
  assert len(workers) == 2, "the build should have started 2 workers"
  time.sleep(5)  # Past their start-up: each is now busy on a file that hangs.
  try:
    process.kill()  # The parent only, as an out-of-memory kill would.
    process.wait()  # Not communicate(): live workers hold the output pipes open.
    process.stdout.close()
    process.stderr.close()
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
      time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
  finally:
    for pid in workers:
      if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not decoding.have_decord(), reason="decord's own FFmpeg prints the warnings")
def test_decoder_warnings_stay_out_of_the_terminal(tmp_path):
  """Decoder messages came through the progress bar without the file's name; the failure reason says it."""
  data = bytearray(encoding.encode_mp4(testing.moving_square_frames(60, 64, 96, seed=2), 10, gop_size=8))
  for i in np.random.default_rng(0).integers(len(data) // 3, len(data) - 2000, 40):
    data[i] ^= 0xFF
  (tmp_path / "videos").mkdir()
  (tmp_path / "videos" / "corrupt.mp4").write_bytes(bytes(data))
  process = _run_cli([f"--input={tmp_path / 'videos'}", f"--output_dir={tmp_path / 'out'}", "--source_name=s",
                      "--num_workers=1", "--backend=decord"])
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr
  assert "skipped corrupt.mp4: decode error after" in stdout
  assert " @ 0x" not in stderr, stderr  # FFmpeg's '[h264 @ 0x...] error while decoding MB ...'


# ------------------------------------------------------------------------------------------------------------
# Manifests: every mistake is named by its line.
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("good"))
  _make_inputs(folder, with_bad=False)
  return folder


def _manifest(folder, name, text):
  path = os.path.join(folder, name)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(text)
  return path


@pytest.mark.parametrize("name, text", [
    ("excel.csv", "\ufeffpath,label\r\ncats/good_0.mp4,cats\r\ncats/good_1.mp4,cats\r\ndogs/good_2.mp4,dogs\r\n"),
    ("reordered.csv", "Label,Path,split\ncats,cats/good_0.mp4,train\ncats,cats/good_1.mp4,train\n"
                      "dogs,dogs/good_2.mp4,val\n"),
    ("tabs.tsv", "cats/good_0.mp4\tcats\ncats/good_1.mp4\tcats\ndogs/good_2.mp4\tdogs\n"),
    ("tabs.csv", "path\tlabel\ncats/good_0.mp4\tcats\ncats/good_1.mp4\tcats\ndogs/good_2.mp4\tdogs\n"),
    ("bom.jsonl", "\ufeff" + "".join(json.dumps(dict(path=p, label=p.split("/")[0])) + "\n" for p in GOOD[:3])),
])
def test_manifests_with_a_byte_order_mark_named_columns_or_tabs(good_folder, name, text):
  listed = shard_builder.list_inputs(_manifest(good_folder, name, text))
  items, labels = listed[:2]
  assert {item["path"]: item["label_name"] for item in items} == {
      "cats/good_0.mp4": "cats", "cats/good_1.mp4": "cats", "dogs/good_2.mp4": "dogs"}
  assert labels == ["cats", "dogs"] and listed[2] == {}  # skipped: nothing (a folder listing's count)


@pytest.mark.parametrize("name, text, message", [
    ("header.csv", "video,label\ncats/good_0.mp4,cats\n", r"header.csv, line 1: .* header naming a 'path' column"),
    ("semicolons.csv", "cats/good_0.mp4;cats\n", r"semicolons.csv, line 1: .*neither a video path"),
    ("broken.jsonl", '{"path": "cats/good_0.mp4"}\n{"path": "cats/good_1.mp4",\n',
     r"broken.jsonl, line 2: not JSON"),
    ("no_path.jsonl", '{"path": "cats/good_0.mp4"}\n\n{"file": "cats/good_1.mp4"}\n',
     r"no_path.jsonl, line 3: expected an object with a 'path' string"),
    ("empty.csv", "cats/good_0.mp4,cats\n,dogs\n", r"empty.csv, line 2: empty path"),
    ("unlabeled.csv", "cats/good_0.mp4,cats\ncats/good_1.mp4\ndogs/good_2.mp4,\ndogs/good_3.mp4,dogs\n",
     r"unlabeled.csv: 2 of 4 rows have no label \(lines 2, 3\)"),
    ("twice.csv", "cats/good_0.mp4,cats\ndogs/good_2.mp4,dogs\ncats/./good_0.mp4,cats\n",
     r"twice.csv: lines 1 \('cats/good_0.mp4'\) and 3 \('cats/./good_0.mp4'\) name the same file"),
    ("columns.csv", "cats/good_0.mp4,cats,train\n", r"columns.csv, line 1: 3 columns; without a header row"),
    ("elsewhere.csv", "videos/cats/good_0.mp4,cats\n", r"None of the 1 files .*elsewhere.csv lists exists"),
])
def test_manifest_mistakes_are_errors_naming_the_line(good_folder, name, text, message):
  with pytest.raises(ValueError, match=message):
    shard_builder.list_inputs(_manifest(good_folder, name, text))


def test_the_same_file_by_absolute_and_relative_path_is_an_error(good_folder):
  path = _manifest(good_folder, "mixed.csv", f"cats/good_0.mp4\n{os.path.join(good_folder, 'cats', 'good_0.mp4')}\n")
  with pytest.raises(ValueError, match=r"lines 1 .* and 2 .* name the same file"):
    shard_builder.list_inputs(path)


# ------------------------------------------------------------------------------------------------------------
# Reruns: inputs are compared by content, failures retried when a limit got looser.
# ------------------------------------------------------------------------------------------------------------


def _same_size(data, other):
  """`data` padded with a trailing MP4 'free' box (which demuxers skip) to the size of `other`."""
  missing = len(other) - len(data)
  assert missing >= 8
  return data + missing.to_bytes(4, "big") + b"free" + bytes(missing - 8)


def test_an_input_replaced_by_one_of_the_same_size_and_mtime_is_read_again(tmp_path):
  videos = tmp_path / "videos" / "cats"
  small, large = sorted([encoding.encode_mp4(testing.moving_square_frames(10, 32, 48, seed), 10, gop_size=4)
                         for seed in (1, 5)], key=len)
  os.makedirs(videos)
  (videos / "a.mp4").write_bytes(large)
  testing.write_good_video(str(videos / "b.mp4"), num_frames=10, seed=2)
  args = dict(num_workers=0, videos_per_shard=1, progress=False)
  shard_builder.build_shards(str(tmp_path / "videos"), str(tmp_path / "out"), "s", **args)
  before = _shard_bytes(tmp_path / "out")
  stamp = os.stat(videos / "a.mp4").st_mtime_ns
  (videos / "a.mp4").write_bytes(_same_size(small, large))
  os.utime(videos / "a.mp4", ns=(stamp, stamp))
  shard_b = os.stat(tmp_path / "out" / "s-00001-of-00002.array_record").st_mtime_ns
  again = shard_builder.build_shards(str(tmp_path / "videos"), str(tmp_path / "out"), "s", **args)
  fresh = shard_builder.build_shards(str(tmp_path / "videos"), str(tmp_path / "fresh"), "s", **args)
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "fresh")
  assert _shard_bytes(tmp_path / "out")["s-00000-of-00002.array_record"] != before["s-00000-of-00002.array_record"]
  assert os.stat(tmp_path / "out" / "s-00001-of-00002.array_record").st_mtime_ns == shard_b  # Not rebuilt.
  assert again["shards"] == fresh["shards"] and again["failures"] == fresh["failures"] == []


def test_a_rerun_with_looser_or_tighter_limits_equals_a_fresh_build(tmp_path):
  """Limits (min_frames, max_jpeg_frames, timeout_s) only decide which inputs become records: a rerun rebuilds
  the shards whose failures a looser limit could turn into records, or whose records a tighter one turns away."""
  videos = tmp_path / "videos" / "cats"
  os.makedirs(videos)
  (videos / "one.mp4").write_bytes(encoding.encode_mp4(testing.moving_square_frames(1, 32, 48), 10))
  testing.write_good_video(str(videos / "ten.mp4"), num_frames=10)
  out = str(tmp_path / "out")

  def build(folder, **limits):
    return shard_builder.build_shards(str(tmp_path / "videos"), folder, "s", num_workers=0, videos_per_shard=1,
                                      video_format="jpeg", progress=False, **limits)

  first = build(out, min_frames=2, max_jpeg_frames=5)
  assert [f["reason"].split(":")[0] for f in first["failures"]] == ["too short", "too long for jpeg"]
  for step, limits in enumerate([dict(min_frames=1, max_jpeg_frames=5), dict(min_frames=1, max_jpeg_frames=0),
                                 dict(min_frames=11, max_jpeg_frames=0), dict(min_frames=2, max_jpeg_frames=8)]):
    again = build(out, **limits)
    fresh = build(str(tmp_path / f"fresh{step}"), **limits)
    assert _shard_bytes(out) == _shard_bytes(tmp_path / f"fresh{step}"), limits
    assert {k: v for k, v in again.items() if k != "sources"} == {k: v for k, v in fresh.items() if k != "sources"}
    assert again["sources"][0]["num_records"] == fresh["sources"][0]["num_records"]
  assert [f["reason"].split(":")[0] for f in again["failures"]] == ["too short", "too long for jpeg"]


def test_a_timeout_is_retried_with_a_larger_timeout(tmp_path, monkeypatch):
  testing.write_good_video(str(tmp_path / "videos" / "a.mp4"))
  monkeypatch.setenv(shard_builder.ENV_TEST_SLOW, "2")
  args = dict(num_workers=1, progress=False)
  first = shard_builder.build_shards(str(tmp_path / "videos"), str(tmp_path / "out"), "s", timeout_s=0.5, **args)
  assert first["failures"][0]["reason"].startswith("timeout")
  again = shard_builder.build_shards(str(tmp_path / "videos"), str(tmp_path / "out"), "s", timeout_s=60, **args)
  assert again["num_records"] == 1 and again["failures"] == []


# ------------------------------------------------------------------------------------------------------------
# Folder listing: GIF and transport streams, linked class folders, and what was left out.
# ------------------------------------------------------------------------------------------------------------


def test_folders_list_gif_and_transport_streams_follow_links_and_count_what_they_skip(tmp_path):
  frames = testing.moving_square_frames(8, 32, 48)
  videos, elsewhere = tmp_path / "videos", tmp_path / "elsewhere"
  testing.write_video(str(videos / "cats" / "clip.gif"), frames, codec="gif", pix_fmt="rgb8")
  testing.write_video(str(videos / "cats" / "clip.mts"), frames, container_format="mpegts",
                      options={"mpegts_m2ts_mode": "1"})
  testing.write_video(str(videos / "cats" / "clip.m2ts"), frames)
  testing.write_good_video(str(elsewhere / "dogs" / "good.mp4"))
  os.symlink(elsewhere / "dogs", videos / "dogs")  # A class folder that is a link.
  os.symlink(videos, videos / "cats" / "loop")  # A link loop.
  os.symlink(tmp_path / "missing.mp4", videos / "cats" / "broken.mp4")
  os.symlink(tmp_path / "gone", videos / "birds")  # A class folder whose target is gone.
  os.mkfifo(videos / "cats" / "pipe.mp4")
  (videos / "cats" / "notes.txt").write_text("not a video")
  description = shard_builder.build_shards(str(videos), str(tmp_path / "out"), "s", num_workers=0, progress=False)
  records = {r["path"]: r for r in shards.read_all_records(str(tmp_path / "out"))}
  assert sorted(records) == ["cats/clip.gif", "cats/clip.m2ts", "cats/clip.mts", "dogs/good.mp4"]
  assert description["labels"] == ["cats", "dogs"] and description["failures"] == []
  assert all(r["num_frames"] == 8 for p, r in records.items() if p.startswith("cats"))
  assert description["skipped"] == {
      "broken symbolic link": dict(count=2, examples=["birds", "cats/broken.mp4"]),
      "folder reached twice (symbolic link loop or second link)": dict(count=1, examples=["cats/loop"]),
      "not a regular file (FIFO, socket or device)": dict(count=1, examples=["cats/pipe.mp4"]),
      "not a video file name (extension)": dict(count=1, examples=["cats/notes.txt"])}


def test_a_fifo_in_a_manifest_is_not_an_empty_file(tmp_path):
  testing.write_good_video(str(tmp_path / "good.mp4"))
  os.mkfifo(tmp_path / "pipe.mp4")
  manifest = _manifest(str(tmp_path), "list.csv", "good.mp4\npipe.mp4\n")
  description = shard_builder.build_shards(manifest, str(tmp_path / "out"), "s", num_workers=1, timeout_s=30,
                                           progress=False)
  assert description["failures"] == [dict(path="pipe.mp4", reason="not a regular file (a FIFO, socket or device)")]


def test_deadline_worker_runs_files_one_at_a_time_and_survives_hangs_and_crashes(tmp_path, monkeypatch):
  """worker_pool.DeadlineWorker, what a Beam DoFn runs each file in: the pool's reasons, a new worker after a
  hang or a crash, the same record bytes as the in-process build."""
  from data_prep import worker_pool  # pylint: disable=import-outside-toplevel
  for name in ("hangs.mp4", "crashes.mp4", "good.mp4"):
    testing.write_good_video(str(tmp_path / name), num_frames=6)
  monkeypatch.setenv(shard_builder.ENV_TEST_HANG, "hangs.mp4")
  monkeypatch.setenv(shard_builder.ENV_TEST_CRASH, "crashes.mp4")
  options = dict(source_name="s", short_side=320, format="mp4", max_frames=0, crf=23, gop_size=32, preset="fast",
                 jpeg_quality=90, backend="pyav", min_frames=2, max_jpeg_frames=900)

  def task(name):
    return dict(file=str(tmp_path / name), path=name, label=-1, label_name="", options=options)

  worker = worker_pool.DeadlineWorker(shard_builder.process_video, timeout_s=3)
  try:
    outcomes = [worker.run(task(name)) for name in ("good.mp4", "hangs.mp4", "crashes.mp4", "good.mp4")]
  finally:
    worker.close()
  assert [o.ok for o in outcomes] == [True, False, False, True]
  assert outcomes[1].error == "timeout: decoding took longer than 3 s"
  assert outcomes[2].error == "decoder crashed (worker exit code 3)"
  assert outcomes[0].value == outcomes[3].value == shard_builder.process_video(task("good.mp4"))
