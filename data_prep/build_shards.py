r"""Builds video shards (ArrayRecord) for the input pipeline from a folder of videos or a manifest.

  python -m data_prep.build_shards --input=VIDEOS_DIR_OR_MANIFEST_OR_GLOB --output_dir=SHARDS --source_name=k400 \
      [--num_workers=8] [--short_side=320] [--format=mp4|jpeg] [--min_frames=2] [--timeout_s=120]
  python -m data_prep.build_shards ... --runner=beam \
      --beam_pipeline_options=runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing

Input:
  * a folder: every video file below it (by extension, see shard_builder.VIDEO_EXTENSIONS; class folders may be
    symbolic links); the first sub-folder level names the class (sorted names -> label 0..C-1); files directly
    in the folder are unlabeled (-1). Files the listing leaves out are counted by reason in dataset.json.
  * a manifest: `.csv` / `.tsv` (columns path[,label], or any columns named by a header row with `path` and
    `label`) or `.jsonl` ({"path": ..., "label": ...} per line). Relative paths are relative to the manifest's
    folder. Labels are class names (sorted unique -> 0..C-1) or integers (used as they are). Mistakes stop the
    build with an error naming the line.
  * a glob (`'/data/k400/train/*/*.mp4'`, quoted): the matching video files; the folder before the first
    wildcard is the root (its first sub-folder level names the class, as for a folder).
  * `--label_names=FILE` (one name per line, e.g. videomae_jax/data/label_maps/label_map_k400.txt) fixes the
    class order instead; a label that is not in it stops the build before any decoding.

Each video is decoded (videomae_jax.data.decoding: PyAV, or decord with --backend=decord) frame by frame,
turned upright (rotation metadata), put at a constant frame rate by timestamp, its short side shrunk to
--short_side, and re-encoded: H.264 MP4 (--format=mp4, default) or one JPEG per frame (--format=jpeg; videos
longer than --max_jpeg_frames fail). The record format and folder layout are in videomae_jax/data/shards.py
and docs/data.md.

Robustness: a file that is missing, not a regular file, empty, not a video, truncated, corrupt or shorter than
--min_frames frames is skipped and listed in dataset.json's 'failures' with the reason; a decoder that hangs
past --timeout_s is killed (its worker replaced) and the file listed as a timeout; a crashing decoder likewise.
The exit code is 0 whatever the individual files do. Each shard is written whole (temporary name, fsync,
rename) with a sidecar JSON: a rerun keeps the shards whose options and input files (size, mtime, a hash of
their head and tail) are unchanged, retries the failures a looser limit could change (a larger --timeout_s, a
smaller --min_frames, a larger --max_jpeg_frames), and yields the same bytes as a fresh build. Same inputs,
same options, same library versions -> byte-identical shards.

--runner=beam runs the same build as an Apache Beam pipeline (data_prep.beam_build; DirectRunner here,
DataflowRunner / FlinkRunner / SparkRunner with their options in --beam_pipeline_options): the same shards,
byte for byte, and the same dataset.json. --num_workers is then the runner's business (direct_num_workers,
Dataflow's max_num_workers).

This program only reads the flags: the build is data_prep.shard_builder.build_shards (or beam_build's).
"""
from __future__ import annotations

import os
from typing import Sequence

from absl import app
from absl import flags

from videomae_jax.data import decoding
from videomae_jax.data import encoding
from data_prep import shard_builder
from videomae_jax.data import shards as shards_lib

FLAGS = flags.FLAGS
if __name__ == "__main__":
  flags.DEFINE_string("input", None, "Folder of videos (class sub-folders), a .csv / .jsonl manifest, or a glob "
                      "of video files (quoted; the folder before the first wildcard is the root).")
  flags.DEFINE_string("output_dir", None, "Folder for the shards and dataset.json.")
  flags.DEFINE_string("source_name", None, "Name of this source (record field and shard file prefix).")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Decoding worker processes (0: in-process, no "
                       "timeout; for debugging).")
  flags.DEFINE_integer("short_side", 320, "Shrink the short side to this many pixels (0: keep the size).")
  flags.DEFINE_enum("format", "mp4", ["mp4", "jpeg"], "Stored video format.")
  flags.DEFINE_integer("min_frames", 2, "Videos with fewer decodable frames are skipped.")
  flags.DEFINE_integer("max_frames", 0, "Keep at most this many frames of each video (0: all).")
  flags.DEFINE_integer("max_jpeg_frames", shards_lib.DEFAULT_MAX_JPEG_FRAMES, "--format=jpeg: longer videos fail "
                       "as 'too long for jpeg' (a record holds all its JPEGs in memory; 0: no limit).")
  flags.DEFINE_float("timeout_s", 300.0, "Per-file time limit for decoding and encoding.")
  flags.DEFINE_integer("videos_per_shard", 128, "Input videos per shard (failed ones leave gaps).")
  flags.DEFINE_integer("crf", encoding.DEFAULT_CRF, "x264 constant rate factor (mp4).")
  flags.DEFINE_integer("gop_size", encoding.DEFAULT_GOP_SIZE, "Keyframe interval in frames (mp4).")
  flags.DEFINE_string("preset", encoding.DEFAULT_PRESET, "x264 preset (mp4).")
  flags.DEFINE_integer("jpeg_quality", encoding.DEFAULT_JPEG_QUALITY, "JPEG quality (jpeg).")
  flags.DEFINE_string("label_names", "", "Optional file of class names, one per line, fixing label indices.")
  flags.DEFINE_enum("backend", "auto", list(decoding.BACKENDS), "Decoder for the input videos.")
  flags.DEFINE_enum("runner", "local", ["local", "beam"], "local: this machine's worker processes (--num_workers); "
                    "beam: an Apache Beam pipeline (pip install -e '.[beam]'), same shards and dataset.json.")
  flags.DEFINE_string("beam_pipeline_options", "", "--runner=beam: comma-separated Beam pipeline flags as for "
                      "`tfds build`, e.g. runner=DirectRunner,direct_num_workers=2,"
                      "direct_running_mode=multi_processing or runner=DataflowRunner,project=P,region=R,... "
                      "(docs/data.md).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("input", "output_dir", "source_name"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required.")
  label_names = shard_builder.read_label_names(FLAGS.label_names) if FLAGS.label_names else None
  options = dict(short_side=FLAGS.short_side, video_format=FLAGS.format, min_frames=FLAGS.min_frames,
                 max_frames=FLAGS.max_frames, max_jpeg_frames=FLAGS.max_jpeg_frames, timeout_s=FLAGS.timeout_s,
                 videos_per_shard=FLAGS.videos_per_shard, crf=FLAGS.crf, gop_size=FLAGS.gop_size,
                 preset=FLAGS.preset, jpeg_quality=FLAGS.jpeg_quality, label_names=label_names,
                 backend=FLAGS.backend)
  if FLAGS.runner == "beam":
    try:
      from data_prep import beam_build  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise app.UsageError(f"--runner=beam needs Apache Beam ({e}): pip install -e '.[beam]'") from e
    description = beam_build.build_shards(FLAGS.input, FLAGS.output_dir, FLAGS.source_name,
                                          pipeline_options=FLAGS.beam_pipeline_options, **options)
  else:
    if FLAGS.beam_pipeline_options:
      raise app.UsageError("--beam_pipeline_options is for --runner=beam.")
    description = shard_builder.build_shards(FLAGS.input, FLAGS.output_dir, FLAGS.source_name,
                                             num_workers=FLAGS.num_workers, **options)
  not_listed = sum(entry["count"] for entry in description["skipped"].values())
  print(f"{description['num_records']} records in {len(description['shards'])} shards, "
        f"{description['num_failures']} skipped, {not_listed} files not listed: "
        f"{os.path.join(FLAGS.output_dir, shards_lib.DESCRIPTION_FILE)}")
  for failure in description["failures"]:
    print(f"  skipped {failure['path']}: {failure['reason']}")
  for reason, entry in description["skipped"].items():
    print(f"  not listed: {entry['count']} file(s), {reason}, e.g. {', '.join(entry['examples'])}")


if __name__ == "__main__":
  app.run(main)
