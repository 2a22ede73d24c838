"""Training metrics: TensorBoard event files, the log, `metrics.jsonl`; throughput and MFU.

TensorBoard events are written with the `tensorboard` package's protos and record framing, so training needs no
TensorFlow (2 GB of the install; MaxText does the same), and through etils.epath, so gs:// workdirs work like local
ones (fsspec / gcsfs without TensorFlow). Only process 0 writes.
`metrics.jsonl` holds one JSON object per logged step (train metrics, evaluator results, or both); a resumed run
appends, and lines for steps past the restored checkpoint (written before a crash) are dropped first so the file
always describes one uninterrupted run. Both files are rewritten whole under a temporary name and renamed over the old
one (object stores replace an object atomically anyway), so a kill mid-write leaves the previous version, never
a torn or empty file; a torn last line from an older version is dropped with a warning.
"""
from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from typing import Any, Dict, Mapping, Sequence

import jax
import numpy as np
from etils import epath
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class Writer:
  """What the trainer writes metrics to: scalars and images per step."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    del step, scalars

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: {name: uint8 [H, W, 3]}."""
    del step, images

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self.flush()


def _replace(path: epath.Path, data: bytes) -> None:
  """Writes `data` as `path` whole: a temporary file renamed over it locally; one object write on gs://."""
  if "://" in str(path):
    path.write_bytes(data)
    return
  temporary = f"{path}.tmp-{os.getpid()}"
  with open(temporary, "wb") as f:
    f.write(data)
  os.replace(temporary, str(path))


def _parse_lines(text: str, path: epath.Path) -> list:
  lines, torn = [], 0
  for line in text.splitlines(keepends=True):
    try:
      if line.strip():
        json.loads(line)
        lines.append(line if line.endswith("\n") else line + "\n")
    except ValueError:
      torn += 1
  if torn:
    logging.warning("%s: dropped %d unreadable line(s) (a write cut short before this version).", path, torn)
  return lines


class JsonlWriter(Writer):
  """Writes {'step': ..., **scalars} lines; local paths and gs:// alike (object stores cannot append, so the
  file is rewritten whole at each flush: a few MB for a long run)."""

  def __init__(self, path: str):
    self.path = epath.Path(path)
    self._pending: Dict[int, Dict[str, Any]] = {}
    self._lines = _parse_lines(self.path.read_text(), self.path) if self.path.exists() else []

  def truncate_after(self, step: int) -> None:
    self._lines = [line for line in self._lines if json.loads(line)["step"] <= step]
    _replace(self.path, "".join(self._lines).encode())

  def write_scalars(self, step, scalars):
    # Buffered until flush() so that everything logged for one step lands on one line.
    self._pending.setdefault(int(step), {}).update({k: float(np.asarray(v)) for k, v in scalars.items()})

  def flush(self):
    if not self._pending:
      return
    for step in sorted(self._pending):
      row = {"step": step, **self._pending[step]}
      last = json.loads(self._lines[-1]) if self._lines else None
      if last is not None and last["step"] == step:  # a second flush at one step (evaluators, then a checkpoint)
        self._lines[-1] = json.dumps({**last, **row}) + "\n"
      else:
        self._lines.append(json.dumps(row) + "\n")
    self._pending.clear()
    _replace(self.path, "".join(self._lines).encode())


class TensorBoardWriter(Writer):
  """Scalars and images as TensorBoard events (`tensorboard --logdir WORKDIR`): one event file per run start,
  rewritten whole at each flush (object stores cannot append; a long run's file is a few MB)."""

  def __init__(self, logdir: str):
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self._path = epath.Path(logdir) / name
    self._buffer = io.BytesIO()
    self._records = RecordWriter(self._buffer)
    self._records.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    self._dirty = False  # a run that logs nothing leaves no file

  def _add(self, step: int, values: Sequence[summary_pb2.Summary.Value]) -> None:
    event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=list(values)))
    self._records.write(event.SerializeToString())
    self._dirty = True

  def write_scalars(self, step, scalars):
    self._add(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(np.asarray(v))) for k, v in scalars.items()])

  def write_images(self, step, images):
    values = []
    for tag, image in images.items():
      png = io.BytesIO()
      Image.fromarray(np.asarray(image, np.uint8)).save(png, format="PNG")
      values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
          height=image.shape[0], width=image.shape[1], colorspace=image.shape[2], encoded_image_string=png.getvalue())))
    self._add(step, values)

  def flush(self):
    if self._dirty:
      self._path.parent.mkdir(parents=True, exist_ok=True)
      _replace(self._path, self._buffer.getvalue())
      self._dirty = False


class LoggingWriter(Writer):
  """One log line per step and kind."""

  def write_scalars(self, step, scalars):
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(np.asarray(v)):.6g}" for k, v in sorted(scalars.items())))


class MultiWriter(Writer):
  def __init__(self, writers: Sequence[Writer]):
    self._writers = list(writers)

  def write_scalars(self, step, scalars):
    for writer in self._writers:
      writer.write_scalars(step, scalars)

  def write_images(self, step, images):
    for writer in self._writers:
      writer.write_images(step, images)

  def flush(self):
    for writer in self._writers:
      writer.flush()

  def close(self):
    for writer in self._writers:
      writer.close()


def create_writer(workdir: str, restored_step: int = 0) -> Writer:
  """TensorBoard + logging + metrics.jsonl on process 0; a no-op writer elsewhere."""
  if jax.process_index() != 0:
    return MultiWriter([])
  jsonl = JsonlWriter(os.path.join(workdir, "metrics.jsonl"))
  jsonl.truncate_after(restored_step)
  return MultiWriter([TensorBoardWriter(os.path.join(workdir, "tensorboard")), LoggingWriter(), jsonl])


def throughput_metrics(*, steps: int, seconds: float, data_wait_seconds: float, clips_per_step: int,
                       flops_per_step_per_device: float, num_devices: int,
                       peak_flops_per_device: float | None) -> Dict[str, float]:
  """clips/s per device, TFLOP/s per device, MFU and the share of time spent waiting for input."""
  seconds = max(seconds, 1e-9)
  out = {
      "perf/steps_per_second": steps / seconds,
      "perf/clips_per_second_per_device": steps * clips_per_step / seconds / num_devices,
      "perf/tflops_per_second_per_device": steps * flops_per_step_per_device / seconds / 1e12,
      "perf/data_wait_fraction": data_wait_seconds / seconds,
  }
  if peak_flops_per_device:
    out["perf/mfu"] = steps * flops_per_step_per_device / seconds / peak_flops_per_device
  return out
