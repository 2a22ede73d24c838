r"""Window features of whole videos, one [num_windows, width] .npy per video (temporal action detection, retrieval).

  python -m videomae_jax.tools.extract_features --params=exports/vit_g_k710_ft --input=/data/thumos14/videos \
      --output_dir=/features/th14_vitg_16_4 --window_stride=4 --resize=squash --normalization=unit
  python -m videomae_jax.tools.extract_features --params=runs/vitb_k400 --input=SHARDS_OR_MANIFEST \
      --output_dir=DIR [--keep_ratio=0.6] [--batch_size=32]

--params: any checkpoint params_io reads (a training workdir, a checkpoint, a params export, e.g. converted
official or hub weights: classifier, encoder or pretraining model). --input: a folder of videos, a manifest (.csv /
.txt, a path per line) or a shard folder. The first example is the official THUMOS14 protocol (videomae_jax.features
says what each flag does). Writes DIR/{video}.npy, DIR/index.jsonl and DIR/failures.jsonl; a rerun skips the
videos already done. Several processes (--distributed on a pod or SLURM) split the videos.
"""
from __future__ import annotations

import json
import resource
import sys

import jax
import tqdm
from absl import app, flags
from jax.experimental import multihost_utils

from videomae_jax import features
from videomae_jax.convert import params_io

_PARAMS = flags.DEFINE_string("params", None, "Workdir, checkpoint or params export to take the model from.")
_INPUT = flags.DEFINE_string("input", None, "Folder of videos, manifest (.csv / .txt) or shard folder.")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where the .npy files and index.jsonl go.")
_WINDOW_STRIDE = flags.DEFINE_integer("window_stride", 16, "Frames between window starts (THUMOS14: 4).")
_FRAME_STRIDE = flags.DEFINE_integer("frame_stride", 1, "Frames between the frames of a window.")
_RESIZE = flags.DEFINE_enum("resize", "squash", list(features.RESIZES), "squash: to S x S (official TAD); "
                            "center: short side to S, centre crop.")
_NORMALIZATION = flags.DEFINE_enum("normalization", "imagenet", list(features.NORMALIZATIONS),
                                   "imagenet: as trained; unit: [0, 1] without mean/std (official TAD features).")
_KEEP_RATIO = flags.DEFINE_float("keep_ratio", 1.0, "MATS: keep this fraction of tokens by motion score.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Windows per forward pass (over this process's devices).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (TPU pods, SLURM).")


def main(argv):
  del argv
  if not (_PARAMS.value and _INPUT.value and _OUTPUT.value):
    raise app.UsageError("--params, --input and --output_dir are required.")
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  try:
    loaded = params_io.load_params(_PARAMS.value)
    model = features.FeatureModel.from_loaded(loaded, keep_ratio=_KEEP_RATIO.value,
                                              normalization=_NORMALIZATION.value)
    windows = features.Windows(model.spec.num_frames, _WINDOW_STRIDE.value, _FRAME_STRIDE.value)
    extractor = features.Extractor(model, windows, resize=_RESIZE.value, batch_size=_BATCH_SIZE.value)
    videos = features.list_videos(_INPUT.value)
  except (ValueError, FileNotFoundError) as error:
    sys.exit(f"error: {error}")
  process, count = jax.process_index(), jax.process_count()
  with tqdm.tqdm(total=len(videos[process::count]), unit="video", disable=process != 0) as bar:
    summary = features.extract(extractor, videos, _OUTPUT.value, process_index=process, process_count=count,
                               progress=bar.update)
  if count > 1:
    multihost_utils.sync_global_devices("features extracted")
  if process == 0:
    summary["indexed"], summary["failed_total"] = features.merge_index(_OUTPUT.value)
  summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
