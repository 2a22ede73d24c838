"""Builds video shards (ArrayRecord) from a folder of videos or a manifest (`python -m data_prep.build_shards`).

  from data_prep import shard_builder
  description = shard_builder.build_shards("/data/k400/train", "/shards/k400", "k400", num_workers=8)

Input:
  * a folder: every video file below it (by extension, see VIDEO_EXTENSIONS); the first sub-folder level names
    the class (sorted names -> label 0..C-1); files directly in the folder are unlabeled (-1).
  * a manifest: `.csv` (columns path[,label]; an optional header row `path,label`) or `.jsonl`
    ({"path": ..., "label": ...} per line). Relative paths are relative to the manifest's folder. Labels are
    class names (sorted unique -> 0..C-1) or integers (used as they are).
  * `label_names` (e.g. the lines of videomae_jax/data/label_maps/label_map_k400.txt) fixes the class order
    instead; a label that is not in it stops the build before any decoding.

Each video is decoded (videomae_jax.data.decoding: decord, or PyAV where decord is missing), its short side
shrunk to `short_side`, and re-encoded: H.264 MP4 (video_format='mp4', default) or one JPEG per frame
('jpeg'). `videomae_jax.data.shards.video_file_record` is that one step for one file and the only place records
are made, so this build, the demo set and the pictures write the same records. The record format and folder
layout are in videomae_jax/data/shards.py and docs/data.md.

Robustness: a file that is empty, not a video, truncated, corrupt or shorter than `min_frames` frames is
skipped and listed in dataset.json's 'failures' with the reason; a decoder that hangs past `timeout_s` is
killed (its worker replaced, data_prep.worker_pool) and the file listed as a timeout; a crashing
decoder likewise. Individual files never fail the build. Inputs are assigned to shards by sorted path; each
shard is written whole (temporary name, fsync, rename) with a sidecar JSON, so an interrupted build rerun with
the same arguments skips the finished shards and yields the same bytes as an uninterrupted one. Same inputs,
same options, same library versions -> byte-identical shards.
"""
from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Sequence

from absl import logging

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
                ) -> tuple[list[dict[str, Any]], list[str] | None]:
  """Returns ([{'path': relative, 'file': absolute, 'label': int, 'label_name': str}] sorted by path, labels).

  `labels` is the list of class names (index = label), or None when the manifest gives bare integer labels.
  """
  if os.path.isdir(input_path):
    items = []
    for root, dirs, files in os.walk(input_path):
      dirs.sort()
      for name in sorted(files):
        if name.lower().endswith(VIDEO_EXTENSIONS):
          full = os.path.join(root, name)
          relative = os.path.relpath(full, input_path).replace(os.sep, "/")
          class_name = relative.split("/")[0] if "/" in relative else ""
          items.append(dict(path=relative, file=full, label_name=class_name))
  elif os.path.isfile(input_path):
    items = _read_manifest(input_path)
  else:
    raise FileNotFoundError(f"--input {input_path!r} is neither a folder nor a manifest file.")
  if not items:
    raise ValueError(f"No videos found in {input_path!r} (extensions: {' '.join(VIDEO_EXTENSIONS)}).")
  items.sort(key=lambda item: item["path"])
  duplicates = [a["path"] for a, b in zip(items, items[1:]) if a["path"] == b["path"]]
  if duplicates:
    raise ValueError(f"{len(duplicates)} path(s) are listed twice in the input, e.g. {duplicates[0]!r}.")

  integer_labels = [item for item in items if isinstance(item.get("label_name"), int)]
  if integer_labels and len(integer_labels) == len(items) and not label_names:
    for item in items:
      item["label"], item["label_name"] = item["label_name"], ""
    return items, None
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
  return items, labels


def _read_manifest(path: str) -> list[dict[str, Any]]:
  base = os.path.dirname(os.path.abspath(path))
  rows: list[tuple[str, Any]] = []
  if path.endswith(".jsonl"):
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.strip():
          entry = json.loads(line)
          rows.append((entry["path"], entry.get("label", "")))
  else:
    with open(path, encoding="utf-8", newline="") as f:
      for i, row in enumerate(csv.reader(f)):
        if not row or (i == 0 and row[0].strip().lower() == "path"):
          continue
        rows.append((row[0].strip(), row[1].strip() if len(row) > 1 else ""))
  items = []
  for relative, label in rows:
    if isinstance(label, str) and label.lstrip("-").isdigit():
      label = int(label)
    if label is None:
      label = ""
    items.append(dict(path=relative, file=relative if os.path.isabs(relative) else os.path.join(base, relative),
                      label_name=label))
  return items


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

  `task` is {'file', 'path', 'label', 'label_name', 'options'}, options as build_shards fingerprints them (its
  'backend' already resolved, so every worker decodes with the same one). Raises as video_file_record does.
  """
  _test_hooks(os.path.basename(task["file"]))
  options = dict(task["options"])
  options["video_format"] = options.pop("format")
  record = shards_lib.video_file_record(task["file"], label=task["label"], label_name=task["label_name"],
                             record_path=task["path"], **options)
  return shards_lib.serialize_record(record)


def _failure_reason(error: str) -> str:
  # Exceptions come back as 'DecodeError: reason'; keep the reason for our own, the type for anything else.
  prefix = "DecodeError: "
  return error[len(prefix):] if error.startswith(prefix) else error


# ------------------------------------------------------------------------------------------------------------
# The build.
# ------------------------------------------------------------------------------------------------------------


def _fingerprint(options: dict[str, Any], items: Sequence[dict[str, Any]]) -> str:
  described = [(item["path"], item["label"], item["label_name"], _size(item["file"])) for item in items]
  text = json.dumps(dict(options=options, inputs=described), sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _size(path: str) -> int:
  try:
    return os.path.getsize(path)
  except OSError:
    return -1


def _read_sidecar(path: str) -> dict[str, Any] | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def build_shards(input_path: str, output_dir: str, source_name: str, *, num_workers: int | None = None,
                 short_side: int = 320, video_format: str = "mp4", min_frames: int = 2, max_frames: int = 0,
                 timeout_s: float = 300.0, videos_per_shard: int = 128, crf: int = encoding.DEFAULT_CRF,
                 gop_size: int = encoding.DEFAULT_GOP_SIZE, preset: str = encoding.DEFAULT_PRESET,
                 jpeg_quality: int = encoding.DEFAULT_JPEG_QUALITY, label_names: Sequence[str] | None = None,
                 backend: str = "auto", progress: bool = True) -> dict[str, Any]:
  """Builds (or finishes) the shard folder `output_dir`; returns the description written to dataset.json."""
  if not source_name or any(c in source_name for c in "/\\ "):
    raise ValueError(f"--source_name must be a non-empty name without '/', '\\' or spaces, got {source_name!r}")
  if video_format not in ("mp4", "jpeg"):
    raise ValueError(f"--format must be 'mp4' or 'jpeg', got {video_format!r}")
  if videos_per_shard < 1:
    raise ValueError(f"--videos_per_shard must be >= 1, got {videos_per_shard}")
  num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
  items, labels = list_inputs(input_path, label_names)
  resolved_backend = decoding.resolve_backend(backend)
  options = dict(source_name=source_name, short_side=short_side, format=video_format, min_frames=min_frames,
                 max_frames=max_frames, crf=crf, gop_size=gop_size, preset=preset, jpeg_quality=jpeg_quality,
                 backend=resolved_backend)
  os.makedirs(output_dir, exist_ok=True)
  for stale in glob.glob(os.path.join(output_dir, "*.tmp-*")):
    os.remove(stale)  # Left by an interrupted build; never a finished file.

  num_shards = math.ceil(len(items) / videos_per_shard)
  shard_items = [items[i * videos_per_shard:(i + 1) * videos_per_shard] for i in range(num_shards)]
  names = [shards_lib.shard_file_name(source_name, i, num_shards) for i in range(num_shards)]
  fingerprints = [_fingerprint(options, shard) for shard in shard_items]
  sidecars: dict[int, dict[str, Any]] = {}
  for i, name in enumerate(names):
    sidecar = _read_sidecar(os.path.join(output_dir, name + ".json"))
    if (os.path.exists(os.path.join(output_dir, name)) and sidecar is not None
        and sidecar.get("fingerprint") == fingerprints[i]):
      if "frame_sizes" not in sidecar:
        # A shard from before sidecars listed frame sizes: read them from its records once (no re-encoding).
        sidecar["frame_sizes"] = _frame_sizes_of_shard(os.path.join(output_dir, name))
        shards_lib.write_json_atomically(os.path.join(output_dir, name + ".json"), sidecar)
      sidecars[i] = sidecar
  todo = [i for i in range(num_shards) if i not in sidecars]
  logging.info("%d videos -> %d shards in %s (%d already built).", len(items), num_shards, output_dir,
               num_shards - len(todo))

  tasks = []
  for shard in todo:
    for position, item in enumerate(shard_items[shard]):
      tasks.append((shard * videos_per_shard + position,
                    dict(file=item["file"], path=item["path"], label=item["label"],
                         label_name=item["label_name"], options=options)))
  if num_workers == 0:
    results = (_run_inline(index, task) for index, task in tasks)
  else:
    # Spawned workers unpickle the task function by its module name, videomae_jax.data.shard_builder: a library
    # module, never __main__, so the workers import this file whatever program started the build.
    results = worker_pool.run_with_deadlines(process_video, tasks, num_workers=min(num_workers, len(tasks) or 1),
                                             timeout_s=timeout_s)
  progress_bar = _progress_bar(len(items), len(items) - len(tasks), enabled=progress)
  outcomes: dict[int, dict[int, worker_pool.TaskResult]] = {shard: {} for shard in todo}
  try:
    for result in results:
      shard, position = divmod(result.index, videos_per_shard)
      outcomes[shard][position] = result
      progress_bar.update(1)
      if len(outcomes[shard]) == len(shard_items[shard]):
        sidecars[shard] = _write_shard(output_dir, names[shard], fingerprints[shard], shard_items[shard],
                                       outcomes.pop(shard))
  finally:
    progress_bar.close()
    if hasattr(results, "close"):
      results.close()

  description = _describe(input_path, source_name, options, items, labels, names, sidecars, timeout_s)
  shards_lib.write_json_atomically(os.path.join(output_dir, shards_lib.DESCRIPTION_FILE), description)
  logging.info("Wrote %d records in %d shards, %d failures: %s", description["num_records"], num_shards,
               description["num_failures"], output_dir)
  return description


def _run_inline(index: int, task: dict[str, Any]) -> worker_pool.TaskResult:
  try:
    return worker_pool.TaskResult(index, True, process_video(task))
  except Exception as e:  # pylint: disable=broad-except
    return worker_pool.TaskResult(index, False, error=f"{type(e).__name__}: {e}")


def _write_shard(output_dir: str, name: str, fingerprint: str, items: Sequence[dict[str, Any]],
                 outcomes: dict[int, worker_pool.TaskResult]) -> dict[str, Any]:
  records, failures, label_counts, frame_sizes = [], [], {}, {}
  for position, item in enumerate(items):
    outcome = outcomes[position]
    if outcome.ok:
      records.append(outcome.value)
      label_counts[str(item["label"])] = label_counts.get(str(item["label"]), 0) + 1
      record = shards_lib.parse_record(outcome.value)
      size = f"{record['height']}x{record['width']}"
      frame_sizes[size] = frame_sizes.get(size, 0) + 1
    else:
      failures.append(dict(path=item["path"], reason=_failure_reason(outcome.error)))
  sidecar = dict(fingerprint=fingerprint, num_records=len(records), failures=failures,
                 label_counts=label_counts, frame_sizes=dict(sorted(frame_sizes.items())))
  # Sidecar first: a shard file that exists always has its sidecar.
  shards_lib.write_json_atomically(os.path.join(output_dir, name + ".json"), sidecar)
  shards_lib.write_array_record_atomically(os.path.join(output_dir, name), records)
  return sidecar


def _frame_sizes_of_shard(path: str) -> dict[str, int]:
  from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=import-outside-toplevel
  reader = ArrayRecordReader(path)
  sizes: dict[str, int] = {}
  for data in reader.read_all():
    record = shards_lib.parse_record(data)
    size = f"{record['height']}x{record['width']}"
    sizes[size] = sizes.get(size, 0) + 1
  reader.close()
  return dict(sorted(sizes.items()))


def _describe(input_path, source_name, options, items, labels, names, sidecars, timeout_s) -> dict[str, Any]:
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
      sources=[dict(name=source_name, input=os.path.abspath(input_path), num_records=num_records)],
      shards=[dict(file=name, num_records=sidecars[i]["num_records"]) for i, name in enumerate(names)],
      failures=failures,
      build=dict(options, timeout_s=timeout_s, versions=versions),
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
