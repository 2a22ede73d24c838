"""Builds video shards (ArrayRecord) from a folder of videos or a manifest (`python -m data_prep.build_shards`).

  from data_prep import shard_builder
  description = shard_builder.build_shards("/data/k400/train", "/shards/k400", "k400", num_workers=8)

Input:
  * a folder: every video file below it (by extension, see VIDEO_EXTENSIONS), following symbolic links to
    folders (a folder reached twice is listed once); the first sub-folder level names the class (sorted names
    -> label 0..C-1); files directly in the folder are unlabeled (-1). What the listing leaves out (other
    extensions, broken links, FIFOs and other non-regular files) is counted in dataset.json's 'skipped'.
  * a glob ('/data/k400/train/*/*.mp4'; '**' spans folders): the video files it matches, listed as the folder
    before the first wildcard would be (paths relative to it, its first sub-folder level the class).
  * a manifest: `.csv` (columns path[,label]; a first row naming a `path` column is a header, and then columns
    are found by name), `.tsv` (the same with tabs; a .csv whose first line has tabs and no comma is read so
    too) or `.jsonl` ({"path": ..., "label": ...} per line). A byte order mark (Excel's "CSV UTF-8") is
    ignored. Relative paths are relative to the manifest's folder. Labels are class names (sorted unique ->
    0..C-1) or integers (used as they are); every row has one or none does. Anything ambiguous (a header
    without a `path` column, extra columns without a header, broken JSON, an empty path, the same file listed
    twice under any spelling, rows without labels in a labelled list, no listed file existing) is a ValueError
    naming the line.
  * `label_names` (e.g. the lines of videomae_jax/data/label_maps/label_map_k400.txt) fixes the class order
    instead; a label that is not in it stops the build before any decoding.

Each video is decoded (videomae_jax.data.decoding: PyAV, or decord if asked for) one frame at a time,
turned upright, put at a constant frame rate, its short side shrunk to `short_side`, and re-encoded as it
comes: H.264 MP4 (video_format='mp4', default) or one JPEG per frame ('jpeg', at most `max_jpeg_frames`).
`videomae_jax.data.shards.video_file_record` is that one step for one file and the only place records are
made, so this build, the demo set and the pictures write the same records. The record format and folder
layout are in videomae_jax/data/shards.py and docs/data.md.

Robustness: a file that is missing, not a regular file, empty, not a video, truncated, corrupt, shorter than
`min_frames` frames or too long for JPEG is skipped and listed in dataset.json's 'failures' with the reason; a
decoder that hangs past `timeout_s` is killed (its worker replaced, data_prep.worker_pool) and the file listed
as a timeout; a crashing decoder likewise. Individual files never fail the build. Inputs are assigned to
shards by sorted path; each shard is written whole (temporary name, fsync, rename) with a sidecar JSON. A rerun
keeps a finished shard when its options and inputs are the same (each input by size, mtime and a hash of its
first and last 64 KiB) and the limits (min_frames, max_jpeg_frames, timeout_s) would not change which of its
inputs are records: a larger timeout_s retries the timeouts, a smaller min_frames the 'too short' failures.
So an interrupted build rerun with the same arguments finishes the job, and any rerun yields the same bytes as
a fresh build with its arguments. Same inputs, same options, same library versions -> byte-identical shards.

Inputs and the output folder may be URLs (gs://..., data_prep.storage): a remote folder or glob is listed with
each file's fingerprint from its metadata, a remote manifest is read as a local one, each video is decoded from
a local copy, and shards, sidecars and dataset.json are uploaded whole.

A build is a plan (plan_build: the listing, the shards, the finished ones), records made by process_video, each
shard written by write_shard, and dataset.json by finish_build. build_shards runs the plan on this machine's
worker pool; data_prep.beam_build runs the same plan on Apache Beam and so writes the same bytes.
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import fnmatch
import glob
import hashlib
import io
import json
import math
import os
import posixpath
import stat
import sys
import time
from typing import Any, Iterator, Mapping, Sequence

from absl import logging

from data_prep import storage
from data_prep import worker_pool

from videomae_jax.data import decoding
from videomae_jax.data import encoding
from videomae_jax.data import shards as shards_lib

VIDEO_EXTENSIONS = decoding.VIDEO_EXTENSIONS

# Test hooks (environment variables read by the worker processes): a file whose base name matches the glob in
# HANG sleeps forever, in CRASH kills its worker, and SLOW adds that many seconds to every file.
ENV_TEST_HANG = "VIDEOMAE_DATA_PREP_TEST_HANG"
ENV_TEST_CRASH = "VIDEOMAE_DATA_PREP_TEST_CRASH"
ENV_TEST_SLOW = "VIDEOMAE_DATA_PREP_TEST_SLOW"

# ------------------------------------------------------------------------------------------------------------
# Inputs.
# ------------------------------------------------------------------------------------------------------------


def read_label_names(path: str) -> list[str]:
  """The class names of a label file (one per line, blank lines ignored), e.g. for `label_names`."""
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def list_inputs(input_path: str, label_names: Sequence[str] | None = None
                ) -> tuple[list[dict[str, Any]], list[str] | None, dict[str, Any]]:
  """Returns (items, labels, skipped).

  items: [{'path': relative, 'file': absolute, 'label': int, 'label_name': str}] sorted by path (manifest items
  also have 'line'). labels: the class names (index = label), or None when the manifest gives bare integer
  labels. skipped: what a folder listing left out, {reason: {'count', 'examples'}} (manifests: {}).
  """
  skipped: dict[str, Any] = {}
  if storage.is_url(input_path) and not storage.isfile(input_path):
    items = _list_remote(input_path, skipped)
  elif os.path.isdir(input_path):
    items = _list_folder(input_path, skipped)
  elif storage.isfile(input_path):
    items = _read_manifest(input_path)
  elif _has_wildcard(input_path):
    items = _list_glob(input_path, skipped)
  else:
    raise FileNotFoundError(f"--input {input_path!r} is neither a folder, a manifest file nor a glob.")
  if not items:
    raise ValueError(f"No videos found in {input_path!r} (extensions: {' '.join(VIDEO_EXTENSIONS)}; skipped: "
                     f"{_skipped_summary(skipped) or 'nothing'}).")
  items.sort(key=lambda item: item["path"])

  integer_labels = [item for item in items if isinstance(item.get("label_name"), int)]
  if integer_labels and len(integer_labels) == len(items) and not label_names:
    for item in items:
      item["label"], item["label_name"] = item["label_name"], ""
    return items, None, skipped
  if label_names:
    labels = list(label_names)
  else:
    labels = sorted({str(item["label_name"]) for item in items if item["label_name"] != ""})
  index = {name: i for i, name in enumerate(labels)}
  unknown = sorted({str(item["label_name"]) for item in items
                    if item["label_name"] != "" and str(item["label_name"]) not in index})
  if unknown:
    raise ValueError(f"{len(unknown)} label(s) are not in --label_names, e.g. {unknown[:5]}: fix the names or "
                     "the label file.")
  for item in items:
    name = "" if item["label_name"] == "" else str(item["label_name"])
    item["label_name"], item["label"] = name, index[name] if name else -1
  return items, labels, skipped


def _list_folder(folder: str, skipped: dict[str, Any]) -> list[dict[str, Any]]:
  """Every video file below `folder`, following symbolic links to folders (class folders are often links);
  a folder reached twice (a link loop, or two links to one folder) is listed once."""
  items, seen = [], set()

  def unreadable(error: OSError) -> None:
    _skip(skipped, "unreadable folder", _relative(error.filename, folder))

  for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
    dirs.sort()
    status = os.stat(root)
    if (status.st_dev, status.st_ino) in seen:
      dirs.clear()
      _skip(skipped, "folder reached twice (symbolic link loop or second link)", _relative(root, folder))
      continue
    seen.add((status.st_dev, status.st_ino))
    for name in sorted(files):
      full = os.path.join(root, name)
      relative = _relative(full, folder)
      reason = _not_listed_because(full)
      if reason:
        _skip(skipped, reason, relative)
        continue
      class_name = relative.split("/")[0] if "/" in relative else ""
      items.append(dict(path=relative, file=full, label_name=class_name))
  return items


def _has_wildcard(path: str) -> bool:
  return any(c in path for c in "*?[")


def _list_glob(pattern: str, skipped: dict[str, Any]) -> list[dict[str, Any]]:
  """The video files a glob matches ('**' spans folders). The root is the folder before the first wildcard, so
  `/data/k400/*/*.mp4` lists as the folder /data/k400 does: paths relative to it, the first level the class."""
  parts = pattern.replace(os.sep, "/").split("/")
  fixed = next(i for i, part in enumerate(parts) if _has_wildcard(part))
  root = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else ".")
  items = []
  for full in sorted(glob.glob(pattern, recursive=True)):
    if os.path.isdir(full):
      continue
    relative = _relative(full, root)
    reason = _not_listed_because(full)
    if reason:
      _skip(skipped, reason, relative)
      continue
    items.append(dict(path=relative, file=full, label_name=relative.split("/")[0] if "/" in relative else ""))
  return items


def _list_remote(url: str, skipped: dict[str, Any]) -> list[dict[str, Any]]:
  """The video files below a remote folder (gs://bucket/k400/train) or matching a remote glob, listed as a local
  folder or glob is (object stores have no links or FIFOs); each item keeps its listing's fingerprint, so a
  million inputs cost no reads before decoding."""
  pattern = url if _has_wildcard(url) else ""
  root = url
  if pattern:
    parts = url.split("/")
    root = "/".join(parts[:next(i for i, part in enumerate(parts) if _has_wildcard(part))])
  if not pattern and not storage.isdir(url):
    raise FileNotFoundError(f"--input {url!r} is neither a folder, a manifest file nor a glob.")
  items = []
  for full, info in storage.list_files(url, pattern):
    relative = posixpath.relpath(full.split("://", 1)[1], root.split("://", 1)[1])
    if not full.lower().endswith(VIDEO_EXTENSIONS):
      _skip(skipped, "not a video file name (extension)", relative)
      continue
    items.append(dict(path=relative, file=full, label_name=relative.split("/")[0] if "/" in relative else "",
                      fingerprint=storage.fingerprint(full, info)))
  return items


def _not_listed_because(path: str) -> str:
  if not os.path.exists(path):  # Follows links: a broken one, maybe to a whole class folder.
    return "broken symbolic link"
  if not path.lower().endswith(VIDEO_EXTENSIONS):
    return "not a video file name (extension)"
  return "" if os.path.isfile(path) else "not a regular file (FIFO, socket or device)"


def _relative(path: str, folder: str) -> str:
  return os.path.relpath(path, folder).replace(os.sep, "/")


def _skip(skipped: dict[str, Any], reason: str, path: str, max_examples: int = 5) -> None:
  entry = skipped.setdefault(reason, dict(count=0, examples=[]))
  entry["count"] += 1
  if len(entry["examples"]) < max_examples:
    entry["examples"].append(path)


def _skipped_summary(skipped: dict[str, Any]) -> str:
  return ", ".join(f"{entry['count']} {reason}" for reason, entry in sorted(skipped.items()))


# Manifest header names: the video column and the label column.
_PATH_COLUMN, _LABEL_COLUMN = "path", "label"


def _read_manifest(path: str) -> list[dict[str, Any]]:
  """Items of a .csv / .tsv / .jsonl manifest, each with its line number; a ValueError names the line of
  anything it cannot read without guessing."""
  base = storage.dirname(path)
  rows = _jsonl_rows(path) if path.lower().endswith(".jsonl") else _csv_rows(path, base)
  items = []
  for line, relative, label in rows:
    if not relative:
      raise ValueError(f"{path}, line {line}: empty path.")
    if isinstance(label, str) and label.lstrip("-").isdigit():
      label = int(label)
    absolute = os.path.isabs(relative) or storage.is_url(relative)
    items.append(dict(path=relative, file=relative if absolute else storage.join(base, relative),
                      label_name=label, line=line))
  if items and not any(storage.exists(item["file"]) for item in items):
    raise ValueError(f"None of the {len(items)} files {path} lists exists (line {items[0]['line']}: "
                     f"{items[0]['file']!r}): paths are relative to the manifest's folder, columns are separated "
                     "by ',' (.csv) or tabs (.tsv).")
  _check_distinct_files(items, path)
  unlabeled = [item["line"] for item in items if item["label_name"] == ""]
  if unlabeled and len(unlabeled) < len(items):
    # A manifest is labelled or not: a row without a label in a labelled list is a mistake (a stray comma, a
    # missing cell) far more often than a wish to mix in unlabeled videos (build those as a second source).
    raise ValueError(f"{path}: {len(unlabeled)} of {len(items)} rows have no label (lines "
                     f"{', '.join(map(str, unlabeled[:10]))}{', ...' if len(unlabeled) > 10 else ''}): label every "
                     "row, or none.")
  return items


def _check_distinct_files(items: Sequence[dict[str, Any]], path: str) -> None:
  first_line: dict[str, dict[str, Any]] = {}
  for item in items:
    file = item["file"]
    key = file.split("://", 1)[0] + "://" + posixpath.normpath(file.split("://", 1)[1]) if storage.is_url(file) else (
        os.path.realpath(file))
    if key in first_line:
      other = first_line[key]
      raise ValueError(f"{path}: lines {other['line']} ({other['path']!r}) and {item['line']} ({item['path']!r}) "
                       "name the same file: list each video once.")
    first_line[key] = item


def _jsonl_rows(path: str) -> list[tuple[int, str, Any]]:
  rows = []
  for line, text in enumerate(storage.read_text(path).split("\n"), start=1):
    if not text.strip():
      continue
    try:
      entry = json.loads(text)
    except ValueError as e:
      raise ValueError(f"{path}, line {line}: not JSON ({e}).") from e
    if not isinstance(entry, dict) or not isinstance(entry.get(_PATH_COLUMN), str):
      raise ValueError(f"{path}, line {line}: expected an object with a {_PATH_COLUMN!r} string, got "
                       f"{text.strip()[:100]}")
    label = entry.get(_LABEL_COLUMN)
    if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
      raise ValueError(f"{path}, line {line}: the label must be a name or an integer, got {label!r}.")
    rows.append((line, entry[_PATH_COLUMN].strip(), "" if label is None else label))
  return rows


def _csv_rows(path: str, base: str) -> list[tuple[int, str, str]]:
  """Rows of a .csv (commas) or .tsv (tabs; also a .csv whose first line has tabs and no comma). Excel's "CSV
  UTF-8" starts with a byte order mark, read away by utf-8-sig (else the header's first cell is not 'path').
  A first row naming a 'path' column is a header (columns by name, others ignored); without one the columns
  are path[,label]."""
  text = storage.read_text(path)
  first_line = next((line for line in text.splitlines() if line.strip()), "")
  tabs = path.lower().endswith(".tsv") or ("\t" in first_line and "," not in first_line)
  reader = csv.reader(io.StringIO(text), delimiter="\t" if tabs else ",")
  rows, columns = [], None  # columns: (path, label or None) positions named by a header row.
  for cells in reader:
    cells = [cell.strip() for cell in cells]
    if not any(cells):
      continue
    if not rows and columns is None and _is_header(cells, path, reader.line_num, base):
      names = [cell.lower() for cell in cells]
      columns = (names.index(_PATH_COLUMN), names.index(_LABEL_COLUMN) if _LABEL_COLUMN in names else None)
      continue
    if columns is None and len(cells) > 2:
      raise ValueError(f"{path}, line {reader.line_num}: {len(cells)} columns; without a header row the columns "
                       f"are path[,label]. Add a header naming the {_PATH_COLUMN!r} and {_LABEL_COLUMN!r} columns.")
    path_column, label_column = columns or (0, 1)
    if len(cells) <= path_column:
      raise ValueError(f"{path}, line {reader.line_num}: no {_PATH_COLUMN!r} cell.")
    label = cells[label_column] if label_column is not None and label_column < len(cells) else ""
    rows.append((reader.line_num, cells[path_column], label))
  return rows


def _is_header(cells: list[str], path: str, line: int, base: str) -> bool:
  """Whether the first row is a header: it names a 'path' column. A first cell that is neither an existing file
  nor a video file name is ambiguous (a header with other names, or another delimiter): an error."""
  if _PATH_COLUMN in (cell.lower() for cell in cells):
    return True
  first = cells[0]
  if first.lower().endswith(VIDEO_EXTENSIONS) or storage.exists(storage.join(base, first)):
    return False
  raise ValueError(f"{path}, line {line}: {','.join(cells)[:100]!r} is neither a video path nor a header naming a "
                   f"{_PATH_COLUMN!r} column: name the columns {_PATH_COLUMN}[,{_LABEL_COLUMN}], or separate them by "
                   "',' (.csv) or tabs (.tsv).")


# ------------------------------------------------------------------------------------------------------------
# One video: the record-making function (build_shards runs it in its worker processes).
# ------------------------------------------------------------------------------------------------------------


def _test_hooks(name: str) -> None:
  pattern = os.environ.get(ENV_TEST_HANG)
  if pattern and fnmatch.fnmatch(name, pattern):
    time.sleep(3600)
  pattern = os.environ.get(ENV_TEST_CRASH)
  if pattern and fnmatch.fnmatch(name, pattern):
    os._exit(3)  # pylint: disable=protected-access
  slow = os.environ.get(ENV_TEST_SLOW)
  if slow:
    time.sleep(float(slow))


def process_video(task: dict[str, Any]) -> bytes:
  """The worker task of build_shards: `video_file_record` of one input, serialized.

  `task` is {'file', 'path', 'label', 'label_name', 'options'}: the options build_shards fingerprints (its
  'backend' already resolved, so every worker decodes with the same one) and the limits min_frames and
  max_jpeg_frames. Raises as video_file_record does.
  """
  _test_hooks(posixpath.basename(task["file"]))
  options = dict(task["options"])
  options["video_format"] = options.pop("format")
  with storage.local_copy(task["file"]) as local:  # A remote video (gs://...) is decoded from a local copy.
    try:
      record = shards_lib.video_file_record(local, label=task["label"], label_name=task["label_name"],
                                           record_path=task["path"], **options)
    except decoding.DecodeError as e:
      if local == task["file"]:
        raise
      raise decoding.DecodeError(str(e).replace(local, task["file"])) from e  # The file's name, not the copy's.
  return shards_lib.serialize_record(record)


def failure_reason(error: str) -> str:
  # Exceptions come back as 'DecodeError: reason'; keep the reason for our own, the type for anything else.
  prefix = "DecodeError: "
  return error[len(prefix):] if error.startswith(prefix) else error


# ------------------------------------------------------------------------------------------------------------
# The build.
# ------------------------------------------------------------------------------------------------------------


# Failures a looser limit could turn into records: reason prefix -> the limit that caused them.
_LIMIT_OF_FAILURE = {"timeout:": "timeout_s", "too short:": "min_frames", "too long for jpeg:": "max_jpeg_frames"}
_HEAD_TAIL_BYTES = 64 * 1024
_SIDECAR_KEYS = {"fingerprint", "num_records", "failures", "label_counts", "frame_sizes", "limits", "num_frames_range"}


def _file_fingerprint(path: str) -> list[Any] | None:
  """[size, mtime in ns, sha256 of the first and last 64 KiB] of an input (None when it is not a readable
  regular file): a file replaced by another of the same size, even with its mtime kept, changes it."""
  if storage.is_url(path):
    return storage.fingerprint(path)
  try:
    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
      return None  # Never opened: a FIFO would block.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      digest.update(f.read(_HEAD_TAIL_BYTES))
      if status.st_size > _HEAD_TAIL_BYTES:
        f.seek(max(_HEAD_TAIL_BYTES, status.st_size - _HEAD_TAIL_BYTES))
        digest.update(f.read(_HEAD_TAIL_BYTES))
  except OSError:
    return None
  return [status.st_size, status.st_mtime_ns, digest.hexdigest()]


def _shard_fingerprint(options: dict[str, Any], items: Sequence[dict[str, Any]]) -> str:
  described = [(item["path"], item["label"], item["label_name"], item["fingerprint"]) for item in items]
  text = json.dumps(dict(options=options, inputs=described), sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_sidecar(path: str) -> dict[str, Any] | None:
  try:
    return json.loads(storage.read_text(path))
  except (OSError, ValueError):
    return None


def finished_shards(plan: BuildPlan) -> dict[int, dict[str, Any]]:
  """{shard index: sidecar} of the shards in plan.output_dir that this build would write as they are."""
  sidecars = {}
  for i, name in enumerate(plan.names):
    sidecar = _read_sidecar(storage.join(plan.output_dir, name + ".json"))
    if (sidecar is not None and storage.exists(storage.join(plan.output_dir, name))
        and _reusable(sidecar, plan.fingerprints[i], plan.limits, plan.options["format"])):
      sidecars[i] = sidecar
  return sidecars


def _reusable(sidecar: dict[str, Any] | None, fingerprint: str, limits: dict[str, Any], video_format: str) -> bool:
  """Whether a finished shard is what this build would write: the same options and inputs (fingerprint), no
  failure that a looser limit now could turn into a record (a timeout with a larger timeout_s, 'too short'
  with a smaller min_frames, ...), and no record that a tighter limit now would turn away."""
  if sidecar is None or sidecar.get("fingerprint") != fingerprint or not _SIDECAR_KEYS <= sidecar.keys():
    return False  # Another build, or a sidecar from an older build_shards (it is rebuilt to the same bytes).
  old = sidecar["limits"]
  for failure in sidecar["failures"]:
    limit = next((name for prefix, name in _LIMIT_OF_FAILURE.items() if failure["reason"].startswith(prefix)), None)
    if limit and _looser(limit, limits[limit], old[limit]):
      return False
  shortest, longest = sidecar["num_frames_range"] or (None, None)
  if shortest is not None and shortest < limits["min_frames"]:
    return False
  return not (video_format == "jpeg" and longest is not None and 0 < limits["max_jpeg_frames"] < longest)


def _looser(limit: str, new: float, old: float) -> bool:
  if limit == "min_frames":
    return new < old
  return bool(old) and (not new or new > old)  # 0 is no limit (max_jpeg_frames); timeout_s is always > 0.


@dataclasses.dataclass
class BuildPlan:
  """What a build (local, or data_prep.beam_build's pipeline) has to do, decided before any decoding.

  Inputs are sorted by path and cut into shards of `videos_per_shard`; shard i holds inputs
  [i * videos_per_shard, (i + 1) * videos_per_shard). `sidecars` has the shards already built (a rerun keeps
  them); `todo` the others. Every driver makes records with `process_video`, writes each shard with
  `write_shard` and ends with `finish_build`, so all drivers write the same bytes.
  """
  input_path: str
  output_dir: str
  options: dict[str, Any]  # What a record is made of (fingerprinted).
  limits: dict[str, Any]  # What only decides which inputs become records (min_frames, max_jpeg_frames, timeout_s).
  items: list[dict[str, Any]]
  labels: list[str] | None
  skipped: dict[str, Any]
  videos_per_shard: int
  names: list[str]
  fingerprints: list[str]
  sidecars: dict[int, dict[str, Any]]

  @property
  def num_shards(self) -> int:
    return len(self.names)

  @property
  def todo(self) -> list[int]:
    return [i for i in range(self.num_shards) if i not in self.sidecars]

  def shard_items(self, shard: int) -> list[dict[str, Any]]:
    return self.items[shard * self.videos_per_shard:(shard + 1) * self.videos_per_shard]

  def tasks(self) -> Iterator[tuple[int, dict[str, Any]]]:
    """(input index, process_video's task) for every input of the shards still to build, in order."""
    task_options = dict(self.options, min_frames=self.limits["min_frames"],
                        max_jpeg_frames=self.limits["max_jpeg_frames"])
    for shard in self.todo:
      for position, item in enumerate(self.shard_items(shard)):
        yield (shard * self.videos_per_shard + position,
               dict(file=item["file"], path=item["path"], label=item["label"], label_name=item["label_name"],
                    options=task_options))


def plan_build(input_path: str, output_dir: str, source_name: str, *, short_side: int = 320,
               video_format: str = "mp4", min_frames: int = 2, max_frames: int = 0,
               max_jpeg_frames: int = shards_lib.DEFAULT_MAX_JPEG_FRAMES, timeout_s: float = 300.0,
               videos_per_shard: int = 128, crf: int = encoding.DEFAULT_CRF,
               gop_size: int = encoding.DEFAULT_GOP_SIZE, preset: str = encoding.DEFAULT_PRESET,
               jpeg_quality: int = encoding.DEFAULT_JPEG_QUALITY, label_names: Sequence[str] | None = None,
               backend: str = "auto") -> BuildPlan:
  """Lists and fingerprints the inputs, cuts them into shards and finds the shards a rerun keeps; removes
  temporary files an interrupted build left. Raises ValueError (a bad argument or manifest) before any
  decoding."""
  if not source_name or any(c in source_name for c in "/\\ "):
    raise ValueError(f"--source_name must be a non-empty name without '/', '\\' or spaces, got {source_name!r}")
  if video_format not in ("mp4", "jpeg"):
    raise ValueError(f"--format must be 'mp4' or 'jpeg', got {video_format!r}")
  if videos_per_shard < 1:
    raise ValueError(f"--videos_per_shard must be >= 1, got {videos_per_shard}")
  items, labels, skipped = list_inputs(input_path, label_names)
  options = dict(source_name=source_name, short_side=short_side, format=video_format, max_frames=max_frames,
                 crf=crf, gop_size=gop_size, preset=preset, jpeg_quality=jpeg_quality,
                 backend=decoding.resolve_backend(backend))
  limits = dict(min_frames=min_frames, max_jpeg_frames=max_jpeg_frames, timeout_s=timeout_s)
  storage.makedirs(output_dir)
  if not storage.is_url(output_dir):  # Object stores get whole objects, never temporary files.
    for stale in glob.glob(os.path.join(output_dir, "*.tmp-*")):
      os.remove(stale)  # Left by an interrupted build; never a finished file.
  unknown = [item for item in items if "fingerprint" not in item]  # Remote listings come with theirs.
  with concurrent.futures.ThreadPoolExecutor(16) as pool:  # Reads: threads overlap the disk's latency.
    for item, fingerprint in zip(unknown, pool.map(_file_fingerprint, [item["file"] for item in unknown])):
      item["fingerprint"] = fingerprint
  num_shards = math.ceil(len(items) / videos_per_shard)
  names = [shards_lib.shard_file_name(source_name, i, num_shards) for i in range(num_shards)]
  fingerprints = [_shard_fingerprint(options, items[i * videos_per_shard:(i + 1) * videos_per_shard])
                  for i in range(num_shards)]
  plan = BuildPlan(input_path=input_path, output_dir=output_dir, options=options, limits=limits, items=items,
                   labels=labels, skipped=skipped, videos_per_shard=videos_per_shard, names=names,
                   fingerprints=fingerprints, sidecars={})
  plan.sidecars = finished_shards(plan)
  logging.info("%d videos -> %d shards in %s (%d already built).", len(items), num_shards, output_dir,
               num_shards - len(plan.todo))
  return plan


def build_shards(input_path: str, output_dir: str, source_name: str, *, num_workers: int | None = None,
                 progress: bool = True, **options: Any) -> dict[str, Any]:
  """Builds (or finishes) the shard folder `output_dir` on this machine with `num_workers` decoding processes
  (0: in this process, no timeout); returns the description written to dataset.json. `options` are
  plan_build's (short_side, video_format, min_frames, timeout_s, videos_per_shard, label_names, ...)."""
  num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
  plan = plan_build(input_path, output_dir, source_name, **options)
  tasks = list(plan.tasks())
  if num_workers == 0:
    results = (_run_inline(index, task) for index, task in tasks)
  else:
    # Spawned workers unpickle the task function by its module name, data_prep.shard_builder, never __main__, so
    # the workers import this file whatever program started the build.
    results = worker_pool.run_with_deadlines(process_video, tasks, num_workers=min(num_workers, len(tasks) or 1),
                                             timeout_s=plan.limits["timeout_s"])
  progress_bar = _progress_bar(len(plan.items), len(plan.items) - len(tasks), enabled=progress)
  outcomes: dict[int, dict[int, worker_pool.TaskResult]] = {shard: {} for shard in plan.todo}
  try:
    for result in results:
      shard, position = divmod(result.index, plan.videos_per_shard)
      outcomes[shard][position] = result
      progress_bar.update(1)
      if len(outcomes[shard]) == len(plan.shard_items(shard)):
        plan.sidecars[shard] = write_shard(plan.output_dir, plan.names[shard], plan.fingerprints[shard], plan.limits,
                                           plan.shard_items(shard), outcomes.pop(shard))
  finally:
    progress_bar.close()
    if hasattr(results, "close"):
      results.close()
  return finish_build(plan)


def finish_build(plan: BuildPlan) -> dict[str, Any]:
  """Writes dataset.json (last: its presence marks a finished build) once every shard has its sidecar."""
  missing = plan.todo
  if missing:
    raise RuntimeError(f"{len(missing)} shard(s) of {plan.output_dir} were not written, e.g. {plan.names[missing[0]]}: "
                       "rerun the same command to finish the build (finished shards are kept).")
  description = _describe(plan)
  storage.write_json(storage.join(plan.output_dir, shards_lib.DESCRIPTION_FILE), description)
  logging.info("Wrote %d records in %d shards, %d failures, %d files skipped%s: %s", description["num_records"],
               plan.num_shards, description["num_failures"], sum(entry["count"] for entry in plan.skipped.values()),
               f" ({_skipped_summary(plan.skipped)})" if plan.skipped else "", plan.output_dir)
  return description


def _run_inline(index: int, task: dict[str, Any]) -> worker_pool.TaskResult:
  try:
    return worker_pool.TaskResult(index, True, process_video(task))
  except Exception as e:  # pylint: disable=broad-except
    return worker_pool.TaskResult(index, False, error=f"{type(e).__name__}: {e}")


def write_shard(output_dir: str, name: str, fingerprint: str, limits: Mapping[str, Any],
                items: Sequence[Mapping[str, Any]], outcomes: Mapping[int, worker_pool.TaskResult]) -> dict[str, Any]:
  """Writes the shard `name` (its sidecar, then its ArrayRecord file) and returns the sidecar.

  `items` are the shard's inputs in order ({'path', 'label'}: BuildPlan.shard_items) and `outcomes` maps each
  position to process_video's result, in any order: a Beam worker holds only its shard, not the plan.
  """
  records, failures, label_counts, frame_sizes, num_frames = [], [], {}, {}, []
  for position, item in enumerate(items):
    outcome = outcomes[position]
    if outcome.ok:
      records.append(outcome.value)
      label_counts[str(item["label"])] = label_counts.get(str(item["label"]), 0) + 1
      record = shards_lib.parse_record(outcome.value)
      size = f"{record['height']}x{record['width']}"
      frame_sizes[size] = frame_sizes.get(size, 0) + 1
      num_frames.append(record["num_frames"])
    else:
      failures.append(dict(path=item["path"], reason=failure_reason(outcome.error)))
  # The limits in force and the records' frame counts decide on a rerun with other limits whether this shard
  # still is what the build would write (_reusable).
  sidecar = dict(fingerprint=fingerprint, num_records=len(records), failures=failures,
                 label_counts=label_counts, frame_sizes=dict(sorted(frame_sizes.items())), limits=dict(limits),
                 num_frames_range=[min(num_frames), max(num_frames)] if num_frames else None)
  # Sidecar first: a shard file that exists always has its sidecar.
  storage.write_json(storage.join(output_dir, name + ".json"), sidecar)
  storage.write_array_record(storage.join(output_dir, name), records)
  return sidecar


def _describe(plan: BuildPlan) -> dict[str, Any]:
  input_path, options, limits, items, labels, skipped, names, sidecars = (
      plan.input_path, plan.options, plan.limits, plan.items, plan.labels, plan.skipped, plan.names, plan.sidecars)
  import av  # pylint: disable=import-outside-toplevel
  failures = [f for i in range(len(names)) for f in sidecars[i]["failures"]]
  label_counts: dict[str, int] = {}
  for i in range(len(names)):
    for label, count in sidecars[i]["label_counts"].items():
      label_counts[label] = label_counts.get(label, 0) + count
  num_records = sum(sidecars[i]["num_records"] for i in range(len(names)))
  # Frame sizes (HxW -> videos) and their maximum: the pipeline's default canvas for crops cut on the device
  # (config.data.crop_canvas).
  frame_sizes: dict[str, int] = {}
  for i in range(len(names)):
    for size, count in sidecars[i]["frame_sizes"].items():
      frame_sizes[size] = frame_sizes.get(size, 0) + count
  versions = dict(av=av.__version__)
  if options["backend"] == "decord":
    import decord  # pylint: disable=import-outside-toplevel
    versions["decord"] = decord.__version__
  source_name = options["source_name"]
  return dict(
      format_version=shards_lib.FORMAT_VERSION,
      source_name=source_name,
      video_format=options["format"],
      record_encoding="msgpack",
      num_records=num_records,
      num_inputs=len(items),
      num_failures=len(failures),
      labels=labels,
      label_counts={k: label_counts[k] for k in sorted(label_counts, key=int)},
      frame_sizes=dict(sorted(frame_sizes.items())),
      max_frame_size=shards_lib.max_frame_size(frame_sizes),
      sources=[dict(name=source_name, input=input_path if storage.is_url(input_path) else os.path.abspath(input_path),
                    num_records=num_records)],
      shards=[dict(file=name, num_records=sidecars[i]["num_records"]) for i, name in enumerate(names)],
      failures=failures,
      skipped=dict(sorted(skipped.items())),
      build=dict(options, **limits, versions=versions),
  )


class _NoProgress:

  def update(self, n):
    pass

  def close(self):
    pass


def _progress_bar(total: int, initial: int, enabled: bool):
  if not enabled:
    return _NoProgress()
  import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm.tqdm(total=total, initial=initial, unit="video", desc="build_shards", file=sys.stderr,
                   dynamic_ncols=True)
