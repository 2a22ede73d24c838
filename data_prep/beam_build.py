"""Builds video shards on Apache Beam: the shards and dataset.json of data_prep.shard_builder, on any runner.

  from data_prep import beam_build
  description = beam_build.build_shards(
      "/data/k400/train", "/shards/k400", "k400",
      pipeline_options="runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing")

(`python -m data_prep.build_shards --runner=beam --beam_pipeline_options=...`.) The launcher plans the build as
the local build does (shard_builder.plan_build: the inputs listed, sorted by path and fingerprinted, cut into
shards of `videos_per_shard`, finished shards found), writes the tasks of the shards still to build to a JSON
lines file in the output folder and runs the pipeline

  read the tasks -> spread them over the workers -> make each record -> group by shard -> write each shard
                                                         '-> failures (a side output) -'

then writes dataset.json from the shards' sidecars (shard_builder.finish_build). Records are made by
shard_builder.process_video in a worker process per DoFn instance with the local build's per-file deadline
(worker_pool.DeadlineWorker), so a hung or crashing decoder fails its file, never the job, and a failure
carries the local build's reason. Shard assignment is the sorted input order and each shard is written by
shard_builder.write_shard with its records in that order, whatever order the runner delivers them: the bytes
equal the local build's for the same inputs, options and library versions. Each shard is written whole, with
its sidecar, by the worker that groups it; a rerun over a partly built output keeps the finished shards (the
local build's rules) and runs only the rest.

`pipeline_options` is TFDS's `--beam_pipeline_options` form: comma-separated `key=value` pipeline flags
(runner=DataflowRunner,project=...,region=...). Runners other than DirectRunner need the output folder and the
inputs where every worker reads and writes them: gs:// URLs (any fsspec protocol: data_prep.storage) for
the output folder and for the input folder, glob or manifest, whose videos are copied to the worker to be
decoded. The workers get this package with --setup_file (docs/data.md).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from absl import logging
import apache_beam as beam
from apache_beam.options import pipeline_options as beam_options

from data_prep import shard_builder
from data_prep import storage
from data_prep import worker_pool

TASKS_FILE = "build_tasks.jsonl"
_FAILURES = "failures"
_METRICS_NAMESPACE = "build_shards"


def parse_pipeline_options(text: str) -> beam_options.PipelineOptions:
  """'runner=DirectRunner,direct_num_workers=2' -> PipelineOptions, as `tfds build --beam_pipeline_options`."""
  flags = [f"--{option.strip()}" for option in text.split(",") if option.strip()] if text else []
  return beam_options.PipelineOptions(flags)


def build_shards(input_path: str, output_dir: str, source_name: str, *, pipeline_options: str = "",
                 **options: Any) -> dict[str, Any]:
  """Builds (or finishes) the shard folder `output_dir` with a Beam pipeline; returns dataset.json's content.

  `options` are shard_builder.plan_build's (short_side, video_format, min_frames, timeout_s, videos_per_shard,
  label_names, ...): the same options give the local build's bytes.
  """
  plan = shard_builder.plan_build(input_path, output_dir, source_name, **options)
  if plan.todo:
    tasks_path = storage.join(output_dir, TASKS_FILE)
    storage.write_lines(tasks_path, _task_lines(plan.tasks()))
    with beam.Pipeline(options=parse_pipeline_options(pipeline_options)) as pipeline:
      _ = pipeline | "BuildShards" >> BuildShards(storage.local_path(tasks_path), plan)
    storage.remove(tasks_path)
    plan.sidecars = shard_builder.finished_shards(plan)
  return shard_builder.finish_build(plan)


def _task_lines(tasks: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[str]:
  """One JSON line per input to decode, for a file rather than beam.Create: a million tasks would otherwise ride
  in the job's graph (Dataflow caps its size), and the runner splits a file's reading over its workers."""
  for index, task in tasks:
    row = {key: value for key, value in task.items() if key != "options"}
    yield json.dumps(dict(row, index=index)) + "\n"


class BuildShards(beam.PTransform):
  """Tasks file -> shards written (the PCollection of (shard index, sidecar))."""

  def __init__(self, tasks_path: str, plan: shard_builder.BuildPlan):
    super().__init__()
    self._tasks_path = tasks_path
    self._task_options = dict(plan.options, min_frames=plan.limits["min_frames"],
                              max_jpeg_frames=plan.limits["max_jpeg_frames"])
    # Per shard still to build: its file name, fingerprint and number of inputs (a few hundred bytes each: the
    # plan's items stay on the launcher).
    self._shards = {shard: (plan.names[shard], plan.fingerprints[shard], len(plan.shard_items(shard)))
                    for shard in plan.todo}
    self._plan_fields = dict(output_dir=plan.output_dir, limits=plan.limits, videos_per_shard=plan.videos_per_shard)

  def expand(self, tasks_path_root):
    outcomes = (tasks_path_root
                | "ReadTasks" >> beam.io.ReadFromText(self._tasks_path)
                | "ParseTasks" >> beam.Map(json.loads)
                # Breaks fusion with the read: the tasks file is small and would otherwise stay in one bundle.
                | "Spread" >> beam.Reshuffle()
                | "MakeRecords" >> beam.ParDo(
                    MakeRecord(self._task_options, self._plan_fields["limits"]["timeout_s"],
                               self._plan_fields["videos_per_shard"])).with_outputs(_FAILURES, main="records"))
    return ({"records": outcomes.records, _FAILURES: outcomes[_FAILURES]}
            | "GroupByShard" >> beam.CoGroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShard(self._shards, self._plan_fields["output_dir"],
                                                     self._plan_fields["limits"])))


class MakeRecord(beam.DoFn):
  """A task -> (shard, outcome) for a record, or the same on the `failures` side output.

  The record is made by shard_builder.process_video in a worker process with a deadline (the local build's
  timeout and crash handling): an outcome is (position in the shard, path, label, ok, record bytes or reason).
  """

  def __init__(self, task_options: dict[str, Any], timeout_s: float, videos_per_shard: int):
    super().__init__()
    self._task_options, self._timeout_s, self._videos_per_shard = task_options, timeout_s, videos_per_shard
    self._worker: worker_pool.DeadlineWorker | None = None
    self._records = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "records")
    self._failures = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "failures")

  def setup(self):
    self._worker = worker_pool.DeadlineWorker(shard_builder.process_video, timeout_s=self._timeout_s)

  def process(self, task: dict[str, Any]) -> Iterator[Any]:
    shard, position = divmod(task["index"], self._videos_per_shard)
    result = self._worker.run(dict(task, options=self._task_options))
    if result.ok:
      self._records.inc()
      yield shard, (position, task["path"], task["label"], True, result.value)
    else:
      self._failures.inc()
      logging.warning("build_shards: %s failed: %s", task["path"], shard_builder.failure_reason(result.error))
      yield beam.pvalue.TaggedOutput(_FAILURES, (shard, (position, task["path"], task["label"], False,
                                                         result.error)))

  def teardown(self):
    if self._worker is not None:
      self._worker.close()


class WriteShard(beam.DoFn):
  """(shard, {'records': outcomes, 'failures': outcomes}) -> the shard and its sidecar written (write_shard)."""

  def __init__(self, shards: dict[int, tuple[str, str, int]], output_dir: str, limits: dict[str, Any]):
    super().__init__()
    self._shards, self._output_dir, self._limits = shards, output_dir, limits

  def process(self, element: tuple[int, dict[str, Iterable[Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
    shard, grouped = element
    name, fingerprint, size = self._shards[shard]
    outcomes = sorted(list(grouped["records"]) + list(grouped[_FAILURES]), key=lambda outcome: outcome[0])
    if [outcome[0] for outcome in outcomes] != list(range(size)):
      # A runner retries a failed bundle whole, so an input is never lost or doubled: this is a bug, and
      # failing the shard (the job) is better than writing a shard without some of its inputs.
      raise RuntimeError(f"shard {name}: got the outcomes of positions {[o[0] for o in outcomes]}, "
                         f"expected 0..{size - 1}")
    items = [dict(path=path, label=label) for _, path, label, _, _ in outcomes]
    results = {position: worker_pool.TaskResult(position, ok, value=value if ok else None,
                                                error="" if ok else value)
               for position, _, _, ok, value in outcomes}
    yield shard, shard_builder.write_shard(self._output_dir, name, fingerprint, self._limits, items, results)
