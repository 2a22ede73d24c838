"""The video shard format: ArrayRecord files of msgpack records, described by a `dataset.json`.

A shard folder (what shard_builder.build_shards, i.e. `python -m data_prep.build_shards`, writes and
`config.data.sources[i].path` points at):

  dataset.json                                 description: counts, labels, shard list, failures (below)
  {name}-{i:05d}-of-{n:05d}.array_record        ArrayRecord, one record per video, group_size 1, uncompressed
  {name}-{i:05d}-of-{n:05d}.array_record.json   per-shard sidecar (inputs, records, failures) used on reruns

Each record is a msgpack map (str keys; values str / int / float / bytes / list of bytes):

  format       'mp4' (H.264 yuv420p, constant frame rate, no B-frames, keyframe every gop_size frames)
               or 'jpeg' (one baseline JPEG per frame)
  video        bytes, the whole MP4 file                   (format 'mp4')
  frames       list of bytes, one JPEG per frame           (format 'jpeg')
  num_frames   int, exact number of decoded frames
  fps          float, frames per second of the source (frames are never resampled)
  height, width  int, frame size after resizing (short side <= build's short_side; both even)
  label        int, index into dataset.json's 'labels' (-1 when unlabeled)
  label_name   str ('' when unlabeled)
  source       str, the build's --source_name
  path         str, the input path relative to the input folder (or as written in the manifest)

msgpack was chosen over tf.train.Example: it needs no TensorFlow in grain workers, keeps bytes zero-copy on
read, and packs a map in insertion order so the same record always gives the same bytes.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Mapping

import msgpack
import numpy as np

DESCRIPTION_FILE = "dataset.json"
FORMAT_VERSION = 1
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"
RECORD_KEYS = ("format", "video", "frames", "num_frames", "fps", "height", "width", "label", "label_name",
               "source", "path")


def serialize_record(record: Mapping[str, Any]) -> bytes:
  """Packs a record dict (keys in RECORD_KEYS order, missing ones left out) into bytes."""
  ordered = {key: record[key] for key in RECORD_KEYS if key in record}
  return msgpack.packb(ordered, use_bin_type=True)


def parse_record(data: bytes) -> dict[str, Any]:
  """Inverse of serialize_record."""
  return msgpack.unpackb(data, raw=False)


def shard_file_name(source_name: str, index: int, count: int) -> str:
  return f"{source_name}-{index:05d}-of-{count:05d}.array_record"


def read_description(path: str) -> dict[str, Any]:
  """Reads `path`/dataset.json, or describes a folder of bare .array_record files (no labels) without one."""
  description_path = os.path.join(path, DESCRIPTION_FILE)
  if os.path.exists(description_path):
    with open(description_path, encoding="utf-8") as f:
      return json.load(f)
  files = sorted(glob.glob(os.path.join(path, "*.array_record")))
  if not files:
    raise FileNotFoundError(
        f"No {DESCRIPTION_FILE} and no .array_record files in {path!r}: build shards with "
        f"`python -m data_prep.build_shards --input=VIDEOS --output_dir={path} --source_name=NAME`.")
  return dict(format_version=FORMAT_VERSION, labels=[], shards=[dict(file=os.path.basename(f)) for f in files])


def shard_paths(path: str) -> list[str]:
  """Absolute paths of the shards listed in `path`/dataset.json (in order)."""
  description = read_description(path)
  paths = [os.path.join(path, shard["file"]) for shard in description["shards"]]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"{len(missing)} shard(s) listed in {path}/{DESCRIPTION_FILE} are missing, e.g. "
                            f"{missing[0]}: rerun data_prep.build_shards with the same arguments.")
  return paths


def fsync_directory(path: str) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def write_bytes_atomically(path: str, data: bytes) -> None:
  """Writes `data` to a temporary name in the same folder, fsyncs it and renames it to `path`."""
  temporary = f"{path}.tmp-{os.getpid()}"
  with open(temporary, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
  fsync_directory(os.path.dirname(os.path.abspath(path)))


def write_json_atomically(path: str, value: Any) -> None:
  write_bytes_atomically(path, (json.dumps(value, indent=1, sort_keys=False) + "\n").encode("utf-8"))


def write_array_record_atomically(path: str, records: list[bytes]) -> None:
  """Writes an ArrayRecord file of `records` under a temporary name, fsyncs it, then renames it to `path`."""
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=import-outside-toplevel
  temporary = f"{path}.tmp-{os.getpid()}"
  writer = ArrayRecordWriter(temporary, ARRAY_RECORD_OPTIONS)
  for record in records:
    writer.write(record)
  writer.close()
  with open(temporary, "rb+") as f:
    os.fsync(f.fileno())
  os.replace(temporary, path)
  fsync_directory(os.path.dirname(os.path.abspath(path)))


def read_all_records(path: str) -> list[dict[str, Any]]:
  """Every record of a shard folder, parsed (small data sets and tests only)."""
  from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=import-outside-toplevel
  records = []
  for shard in shard_paths(path):
    reader = ArrayRecordReader(shard)
    records.extend(parse_record(r) for r in reader.read_all())
    reader.close()
  return records


def label_array(records: list[Mapping[str, Any]]) -> np.ndarray:
  return np.asarray([r.get("label", -1) for r in records], np.int32)
