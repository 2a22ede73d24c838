"""Training metrics: clu writers (TensorBoard + log) and `metrics.jsonl`, plus throughput and MFU.

Only process 0 writes. `metrics.jsonl` holds one JSON object per logged step with at least `step` and
`train/loss`; a resumed run appends, and lines for steps past the restored checkpoint (written before a crash)
are dropped first so the file always describes one uninterrupted run.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

import jax
import numpy as np
from clu import metric_writers
from etils import epath


class JsonlWriter(metric_writers.MetricWriter):
  """Writes {'step': ..., **scalars} lines; local paths and gs:// alike (object stores cannot append, so the
  file is rewritten whole at each flush: a few MB for a long run)."""

  def __init__(self, path: str):
    self.path = epath.Path(path)
    self._pending: Dict[int, Dict[str, Any]] = {}
    self._lines = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []

  def truncate_after(self, step: int) -> None:
    self._lines = [line for line in self._lines if line.strip() and json.loads(line)["step"] <= step]
    self.path.write_text("".join(self._lines))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    # Buffered until flush() so that everything logged for one step lands on one line.
    self._pending.setdefault(int(step), {}).update({k: float(np.asarray(v)) for k, v in scalars.items()})

  # Only scalars go to metrics.jsonl; TensorBoard gets the rest.
  def write_summaries(self, step, values, metadata=None): del step, values, metadata
  def write_images(self, step, images): del step, images
  def write_videos(self, step, videos): del step, videos
  def write_audios(self, step, audios, *, sample_rate): del step, audios, sample_rate
  def write_texts(self, step, texts): del step, texts
  def write_histograms(self, step, arrays, num_buckets=None): del step, arrays, num_buckets
  def write_hparams(self, hparams): del hparams

  def flush(self):
    if not self._pending:
      return
    for step in sorted(self._pending):
      self._lines.append(json.dumps({"step": step, **self._pending[step]}) + "\n")
    self._pending.clear()
    self.path.write_text("".join(self._lines))

  def close(self):
    self.flush()


def create_writer(workdir: str, restored_step: int = 0) -> metric_writers.MetricWriter:
  """TensorBoard + logging + metrics.jsonl on process 0; a no-op writer elsewhere."""
  if jax.process_index() != 0:
    return metric_writers.MultiWriter([])
  jsonl = JsonlWriter(os.path.join(workdir, "metrics.jsonl"))
  jsonl.truncate_after(restored_step)
  return metric_writers.MultiWriter([
      metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard")),
      metric_writers.LoggingWriter(),
      jsonl,
  ])


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
