"""The video shard format: ArrayRecord files of msgpack records, described by a `dataset.json`.

A shard folder (what `python -m data_prep.build_shards` writes and `config.data.sources[i].path` points at):

  dataset.json                                 description: counts, labels, shard list, failures (below)
  {name}-{i:05d}-of-{n:05d}.array_record        ArrayRecord, one record per video, group_size 1, uncompressed
  {name}-{i:05d}-of-{n:05d}.array_record.json   per-shard sidecar (inputs, records, failures) used on reruns

Each record is a msgpack map (str keys; values str / int / float / bytes / list of bytes):

  format       'mp4' (H.264 yuv420p, constant frame rate, no B-frames, keyframe every gop_size frames)
               or 'jpeg' (one baseline JPEG per frame)
  video        bytes, the whole MP4 file                   (format 'mp4')
  frames       list of bytes, one JPEG per frame           (format 'jpeg')
  num_frames   int, exact number of decoded frames
  fps          float, the constant frame rate of the stored frames: the source's average rate (a variable-rate
               source is placed on that rate by timestamp, see decoding.read_video)
  height, width  int, frame size after turning upright and resizing (short side <= build's short_side; both even)
  label        int, index into dataset.json's 'labels' (-1 when unlabeled)
  label_name   str ('' when unlabeled)
  source       str, the build's --source_name
  path         str, the input path relative to the input folder (or as written in the manifest)

msgpack was chosen over tf.train.Example: it needs no TensorFlow in grain workers, keeps bytes zero-copy on
read, and packs a map in insertion order so the same record always gives the same bytes.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
from typing import Any, Iterator, Mapping

import msgpack

from videomae_jax.data import decoding
from videomae_jax.data import encoding

DESCRIPTION_FILE = "dataset.json"
FORMAT_VERSION = 1
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"
# A JPEG record holds every frame (about 30 KB each at 320p) in one record: 900 frames is 30 s at 30 fps.
DEFAULT_MAX_JPEG_FRAMES = 900
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


class IncompleteShardsError(ValueError):
  """A shard folder whose build did not finish (shard files but no dataset.json)."""


def read_description(path: str) -> dict[str, Any]:
  """Reads `path`/dataset.json. A folder without one is refused: build_shards writes dataset.json last, so shard
  files without it are an interrupted build, and training on them would silently use part of the data."""
  description_path = os.path.join(path, DESCRIPTION_FILE)
  if os.path.exists(description_path):
    with open(description_path, encoding="utf-8") as f:
      return json.load(f)
  leftovers = sorted(glob.glob(os.path.join(path, "*.array_record*")) + glob.glob(os.path.join(path, "*.tmp-*")))
  if leftovers:
    raise IncompleteShardsError(
        f"{path!r} has {len(leftovers)} shard file(s) (e.g. {os.path.basename(leftovers[0])}) but no "
        f"{DESCRIPTION_FILE}: its build was interrupted. Finish it by running the same `python -m "
        "data_prep.build_shards ...` command again (finished shards are kept); it writes dataset.json last.")
  raise FileNotFoundError(
      f"No {DESCRIPTION_FILE} in {path!r}: build shards with "
      f"`python -m data_prep.build_shards --input=VIDEOS --output_dir={path} --source_name=NAME`.")


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


def video_file_record(path: str, *, source_name: str, label: int = -1, label_name: str = "",
                      record_path: str | None = None, short_side: int = 320, video_format: str = "mp4",
                      min_frames: int = 2, max_frames: int = 0, max_jpeg_frames: int = DEFAULT_MAX_JPEG_FRAMES,
                      crf: int = encoding.DEFAULT_CRF, gop_size: int = encoding.DEFAULT_GOP_SIZE,
                      preset: str = encoding.DEFAULT_PRESET, jpeg_quality: int = encoding.DEFAULT_JPEG_QUALITY,
                      backend: str = "auto") -> dict[str, Any]:
  """Decodes, resizes and re-encodes the video file `path`: one shard record (a dict, the format above).

  Frame by frame (decoding.read_video: upright, short side at most `short_side`, constant rate), so memory is
  bounded whatever the video's length. `serialize_record` packs the record. `record_path` is the record's
  'path' field (default `path` as given; the build stores the path relative to its input folder).
  `short_side=0` keeps the frame size. `max_frames > 0` keeps the first frames only. A JPEG record keeps every
  frame's JPEG in memory and in one record (about 30 KB a frame at 320p), so a video longer than
  `max_jpeg_frames` frames (0: no limit) fails as 'too long for jpeg'. The other arguments are
  data_prep.build_shards'. Raises decoding.DecodeError (or any exception) with the reason the file is skipped:
  missing, not a regular file, empty, not a video, truncated, corrupt, fewer than `min_frames` frames, or too
  long for JPEG.
  """
  if video_format not in ("mp4", "jpeg"):
    raise ValueError(f"--format must be 'mp4' or 'jpeg', got {video_format!r}")

  def make(backend: str) -> dict[str, Any]:
    info, frames = decoding.read_video(path, short_side, backend, max_frames)
    # The first min_frames frames decide 'too short' before anything is encoded.
    head = list(itertools.islice(frames, max(min_frames, 1)))
    if len(head) < max(min_frames, 1):
      raise decoding.DecodeError(f"too short: {len(head)} frame(s) < --min_frames={max(min_frames, 1)}")
    counted = _CountedFrames(itertools.chain(head, frames), max_jpeg_frames if video_format == "jpeg" else 0)
    record = dict(format=video_format, fps=info["fps"], height=info["height"], width=info["width"], label=label,
                  label_name=label_name, source=source_name, path=path if record_path is None else record_path)
    if video_format == "mp4":
      record["video"] = encoding.encode_mp4(counted, info["fps_fraction"], crf=crf, gop_size=gop_size,
                                            preset=preset)
    else:
      record["frames"] = encoding.encode_jpeg_frames(counted, jpeg_quality)
    record["num_frames"] = counted.count
    return record

  backend = decoding.resolve_backend(backend)
  try:
    return make(backend)
  except decoding.DecodeError:
    if backend != "decord":
      raise
    # decord 0.6 fails on streams PyAV reads (GIF, MPEG-TS, 48-pixel-wide frames), so a decord failure is final
    # only if PyAV fails too; what was encoded is redone.
    return make("pyav")


class _CountedFrames:
  """Iterates `frames`, counting them; more than `limit` (> 0) raises 'too long for jpeg'."""

  def __init__(self, frames: Iterator[Any], limit: int):
    self.frames, self.limit, self.count = frames, limit, 0

  def __iter__(self) -> Iterator[Any]:
    for frame in self.frames:
      self.count += 1
      if self.limit and self.count > self.limit:
        raise decoding.DecodeError(f"too long for jpeg: more than --max_jpeg_frames={self.limit} frames; use "
                                   "--format=mp4, --max_frames or a larger --max_jpeg_frames")
      yield frame


def write_shard_folder(output_dir: str, source_name: str, records: list[Mapping[str, Any]], labels: list[str], *,
                       records_per_shard: int = 128) -> dict[str, Any]:
  """Writes `records` (dicts, in order) as a shard folder in one go and returns the description it wrote.

  For small generated sets (the demo): no workers, no resume, no failures. Shards are cut and named as
  data_prep.build_shards cuts and names them, so the same records give the same shard bytes.
  """
  os.makedirs(output_dir, exist_ok=True)
  count = -(-len(records) // records_per_shard)
  names = [shard_file_name(source_name, i, count) for i in range(count)]
  frame_sizes: dict[str, int] = {}
  for record in records:
    size = f"{record['height']}x{record['width']}"
    frame_sizes[size] = frame_sizes.get(size, 0) + 1
  for i, name in enumerate(names):
    part = records[i * records_per_shard:(i + 1) * records_per_shard]
    write_array_record_atomically(os.path.join(output_dir, name), [serialize_record(r) for r in part])
  description = dict(format_version=FORMAT_VERSION, source_name=source_name, record_encoding="msgpack",
                     num_records=len(records), labels=list(labels), frame_sizes=dict(sorted(frame_sizes.items())),
                     max_frame_size=max_frame_size(frame_sizes),
                     shards=[dict(file=name, num_records=min(records_per_shard, len(records) - i * records_per_shard))
                             for i, name in enumerate(names)])
  write_json_atomically(os.path.join(output_dir, DESCRIPTION_FILE), description)
  return description


def max_frame_size(frame_sizes: Mapping[str, int]) -> list[int] | None:
  """[largest height, largest width] over {'HxW': count}: the default canvas for crops cut on the device."""
  dims = [tuple(int(v) for v in size.split("x")) for size in frame_sizes]
  return [max(h for h, _ in dims), max(w for _, w in dims)] if dims else None
