r"""A TFDS data set builder for a folder of videos, a manifest or a glob, for users who keep their data in TFDS.

  tfds build video_folder --imports=data_prep.tfds_video_folder --manual_dir=/data/k400/train \
      --data_dir=/data/tfds --file_format=array_record --config='{"name": "k400", "short_side": 320}' \
      --beam_pipeline_options=runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing

then in config.data.sources: dict(name="k400", tfds="video_folder/k400", split="train", data_dir="/data/tfds",
weight=1, stride=4). The training process reads the prepared data set from its files (videomae_jax.data.
tfds_source); it never imports this module.

The input is the config's `input`, else `--manual_dir`: what data_prep.build_shards takes (a folder whose first
sub-folder level names the classes, a .csv / .tsv / .jsonl manifest, or a glob), listed by the same code. Each
video becomes one example {'video': Video (one JPEG per frame), 'label': ClassLabel} made by the shard builds'
own record function (shard_builder.process_video with --format=jpeg: decoded frame by frame, upright, at a
constant rate, short side shrunk, JPEG quality `jpeg_quality`) in a worker process with the per-file deadline
(worker_pool.DeadlineWorker), so a hung or crashing decoder costs its file, not the build. Files that fail are
left out and listed, with their reasons, in the data set's metadata.json ('failures'), next to 'frame_sizes'
and 'max_frame_size' (the default canvas for crops cut on the device: the Video feature's frame size is not
static). `"labeled": false` in the config builds the unlabeled data set (no label feature) for pretraining.

TFDS stores a video as one image per frame, so a video holds all its JPEGs in one example (about 30 KB a frame
at 320p); videos longer than `max_jpeg_frames` fail as 'too long for jpeg'. Our own shards
(`python -m data_prep.build_shards`, MP4 records) are ~20x smaller; use them unless the data must be in TFDS.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator

import apache_beam as beam
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from data_prep import shard_builder
from data_prep import worker_pool
from videomae_jax.data import encoding
from videomae_jax.data import shards as shards_lib


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(tfds.core.BuilderConfig):
  """The build's options (data_prep.build_shards' flags of the same names); `input` defaults to --manual_dir."""
  input: str = ""
  labeled: bool = True
  short_side: int = 320
  min_frames: int = 2
  max_frames: int = 0
  max_jpeg_frames: int = shards_lib.DEFAULT_MAX_JPEG_FRAMES
  timeout_s: float = 300.0
  jpeg_quality: int = encoding.DEFAULT_JPEG_QUALITY
  label_names_file: str = ""
  backend: str = "auto"


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Videos of a folder, manifest or glob as a TFDS data set (one 'train' split)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Records made by data_prep.shard_builder.process_video (JPEG frames)."}
  BUILDER_CONFIGS = [VideoFolderConfig(name="short_side_320", description="Short side shrunk to 320 pixels.")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder, manifest or glob of videos as --manual_dir (or the config's input)."

  def _info(self) -> tfds.core.DatasetInfo:
    features = {"video": tfds.features.Video(shape=(None, None, None, 3), encoding_format="jpeg")}
    if self.builder_config.labeled:
      features["label"] = tfds.features.ClassLabel()  # Names from the listing (_split_generators).
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                 metadata=tfds.core.BeamMetadataDict())

  def _split_generators(self, dl_manager):
    config = self.builder_config
    input_path = config.input or str(dl_manager.manual_dir)
    label_names = shard_builder.read_label_names(config.label_names_file) if config.label_names_file else None
    items, labels, skipped = shard_builder.list_inputs(input_path, label_names)
    if config.labeled:
      unlabeled = [item["path"] for item in items if item["label"] < 0]
      if unlabeled or labels is None:
        raise ValueError(f"{input_path}: {len(unlabeled)} video(s) without a class (e.g. {unlabeled[:3]}) or bare "
                         "integer labels: give every video a class name (a class folder or a manifest label), or "
                         "build with --config='{\"name\": ..., \"labeled\": false}'.")
      self.info.features["label"].names = labels
    self.info.metadata["skipped"] = skipped
    # The tasks go to a file the workers read (beam.Create would put a million of them in the job's graph,
    # which Dataflow caps), in the download folder: under --data_dir, where the workers can read.
    tasks_path = epath.Path(dl_manager.download_dir) / f"{self.name}-{config.name}-tasks.jsonl"
    tasks_path.parent.mkdir(parents=True, exist_ok=True)
    tasks_path.write_text("".join(json.dumps(dict(file=item["file"], path=item["path"], label=item["label"],
                                                  label_name=item["label_name"])) + "\n" for item in items))
    return {"train": self._generate_examples(str(tasks_path))}

  def _generate_examples(self, tasks_path: str):
    config = self.builder_config
    options = dict(source_name=self.name, short_side=config.short_side, format="jpeg", max_frames=config.max_frames,
                   crf=encoding.DEFAULT_CRF, gop_size=encoding.DEFAULT_GOP_SIZE, preset=encoding.DEFAULT_PRESET,
                   jpeg_quality=config.jpeg_quality, backend=config.backend, min_frames=config.min_frames,
                   max_jpeg_frames=config.max_jpeg_frames)
    return _Examples(tasks_path, options, config.timeout_s, config.labeled, self.info.metadata)


class _Examples(beam.PTransform):
  """Tasks file -> (key, example), with the failures and frame sizes written to the data set's metadata."""

  def __init__(self, tasks_path, options, timeout_s, labeled, metadata):
    super().__init__()
    self._tasks_path, self._options, self._timeout_s = tasks_path, options, timeout_s
    self._labeled, self._metadata = labeled, metadata

  def expand(self, root):
    outcomes = (root
                | "ReadTasks" >> beam.io.ReadFromText(self._tasks_path)
                | "ParseTasks" >> beam.Map(json.loads)
                | "Spread" >> beam.Reshuffle()
                | "MakeExamples" >> beam.ParDo(_MakeExample(self._options, self._timeout_s, self._labeled))
                .with_outputs("failures", "frame_sizes", main="examples"))
    self._metadata["failures"] = (outcomes.failures | "FailureList" >> beam.combiners.ToList()
                                  | "SortFailures" >> beam.Map(lambda found: sorted(found, key=lambda f: f["path"])))
    frame_sizes = (outcomes.frame_sizes | "CountFrameSizes" >> beam.combiners.Count.PerElement()
                   | "FrameSizeList" >> beam.combiners.ToList()
                   | "FrameSizes" >> beam.Map(lambda pairs: dict(sorted(pairs))))
    self._metadata["frame_sizes"] = frame_sizes
    self._metadata["max_frame_size"] = frame_sizes | "MaxFrameSize" >> beam.Map(shards_lib.max_frame_size)
    return outcomes.examples


class _MakeExample(beam.DoFn):
  """A task -> (path, example), or {'path', 'reason'} on the `failures` output (never an exception)."""

  def __init__(self, options: dict[str, Any], timeout_s: float, labeled: bool):
    super().__init__()
    self._options, self._timeout_s, self._labeled = options, timeout_s, labeled
    self._worker: worker_pool.DeadlineWorker | None = None

  def setup(self):
    self._worker = worker_pool.DeadlineWorker(shard_builder.process_video, timeout_s=self._timeout_s)

  def process(self, task: dict[str, Any]) -> Iterator[Any]:
    result = self._worker.run(dict(task, options=self._options))
    if not result.ok:
      yield beam.pvalue.TaggedOutput("failures", dict(path=task["path"],
                                                      reason=shard_builder.failure_reason(result.error)))
      return
    record = shards_lib.parse_record(result.value)
    yield beam.pvalue.TaggedOutput("frame_sizes", f"{record['height']}x{record['width']}")
    # The JPEGs as they are: the Video feature stores encoded frames and would otherwise encode them again.
    example = {"video": list(record["frames"])}
    if self._labeled:
      example["label"] = np.int64(record["label"])
    yield task["path"], example

  def teardown(self):
    if self._worker is not None:
      self._worker.close()
