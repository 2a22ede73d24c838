r"""Features of whole videos for downstream tasks (temporal action detection, retrieval): one vector per window.

The library behind `python -m videomae_jax.tools.extract_features`. For every video: sliding windows of
`num_frames` frames (`frame_stride` apart inside a window), a window starting every `window_stride` frames while it
fits in the video, each window's frames resized to the model's input, and the window's pooled encoder output
(videomae_jax.models.classifier: fc_norm of the mean token for the fine-tuning model and the hub's encoders, the
mean of the normed tokens for a pretraining encoder). One float32 `[num_windows, width]` .npy per video.

The official TAD protocol (VideoMAE V2 `extract_tad_feature.py`): 16 consecutive frames every 4 frames (THUMOS14)
or every 16 (FineAction), each frame resized to 224x224 without keeping the aspect, values scaled to [0, 1] and NOT
mean/std normalized (a quirk of that script, which its published features carry), the fine-tuned classifier's
pooled features. `--resize=squash --normalization=unit --window_stride=4` reproduces it; the defaults normalize as
the model was trained (ImageNet mean/std).

Robust and restartable: videos are decoded frame by frame (memory does not grow with the video's length), a video
whose .npy exists is skipped, every .npy is written under a temporary name and renamed, a video that cannot be
read is listed with the reason and the run goes on. With several processes each takes every P-th video.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from videomae_jax import masking, sharding
from videomae_jax.convert import mapping, params_io
from videomae_jax.data import decoding, shards, transforms
from videomae_jax.models.classifier import VideoClassifier
from videomae_jax.models.variants import ModelSpec
from videomae_jax.models.vit import VideoViTEncoder
from videomae_jax.normalization import normalize
from videomae_jax.tasks.classify import finetune_masking_plan

RESIZES = ("squash", "center")           # squash: S x S, aspect not kept (official TAD); center: short side + crop
NORMALIZATIONS = ("imagenet", "unit")    # unit: [0, 1] without mean/std (official TAD features)
INDEX_FILE = "index.jsonl"
FAILURES_FILE = "failures.jsonl"


@dataclasses.dataclass(frozen=True)
class Windows:
  """Which frames each window of a video holds."""
  num_frames: int
  window_stride: int = 16
  frame_stride: int = 1

  @property
  def span(self) -> int:
    return (self.num_frames - 1) * self.frame_stride + 1

  def starts(self, num_video_frames: int) -> range:
    """Window starts: every window_stride frames while the window fits (the official range(0, F - 15, 4))."""
    return range(0, num_video_frames - self.span + 1, self.window_stride)


@dataclasses.dataclass(frozen=True)
class Video:
  """One input: a file, or a shard record (whose 'video' / 'frames' hold it)."""
  name: str                               # relative name; the .npy goes to {output_dir}/{name}.npy
  path: str = ""
  record: Optional[Dict[str, Any]] = None

  def frames(self) -> Iterator[np.ndarray]:
    if self.record is None:
      return decoding.iter_frames(self.path)
    if self.record["format"] == "mp4":
      return decoding.iter_frames(self.record["video"])
    return (decoding.decode_clip(self.record, [i])[0] for i in range(int(self.record["num_frames"])))


def list_videos(input_path: str) -> List[Video]:
  """A folder (every video file below it), a manifest (.csv or .txt: a path in the first column, relative to the
  manifest) or a shard folder (dataset.json): the videos, sorted by name."""
  if os.path.isdir(input_path) and os.path.exists(os.path.join(input_path, shards.DESCRIPTION_FILE)):
    videos = []
    for shard in shards.shard_paths(input_path):
      for record in shards.read_all_records(shard):
        videos.append(Video(name=os.path.splitext(record["path"])[0], record=record))
    return sorted(videos, key=lambda v: v.name)
  if os.path.isdir(input_path):
    found = []
    for folder, _, files in os.walk(input_path):
      found += [os.path.join(folder, f) for f in files if f.lower().endswith(decoding.VIDEO_EXTENSIONS)]
    return sorted((Video(name=os.path.splitext(os.path.relpath(p, input_path))[0], path=p) for p in found),
                  key=lambda v: v.name)
  if os.path.isfile(input_path):
    base = os.path.dirname(os.path.abspath(input_path))
    with open(input_path, newline="", encoding="utf-8-sig") as f:
      rows = [row for row in csv.reader(f) if row and row[0].strip() and row[0].strip() != "path"]
    videos = []
    for row in rows:
      path = row[0].strip()
      full = path if os.path.isabs(path) else os.path.join(base, path)
      videos.append(Video(name=os.path.splitext(path if not os.path.isabs(path) else os.path.basename(path))[0],
                          path=full))
    return sorted(videos, key=lambda v: v.name)
  raise FileNotFoundError(f"{input_path} is neither a folder of videos, a shard folder nor a manifest file.")


def prepare_frame(frame: np.ndarray, size: int, resize: str) -> np.ndarray:
  """One decoded frame -> uint8 [size, size, 3]: squashed to size x size, or short side to size + centre crop."""
  if resize == "squash":
    return transforms.resize(frame[None], size, size)[0]
  return transforms.short_side_crops(frame[None], size, 1)[0, 0]


class CountedFrames:
  """Passes frames through and counts them (the video's length is known once they have all streamed by)."""

  def __init__(self, frames: Iterator[np.ndarray]):
    self._frames, self.count = frames, 0

  def __iter__(self):
    for frame in self._frames:
      self.count += 1
      yield frame


def video_windows(frames: Iterator[np.ndarray], windows: Windows, size: int, resize: str) -> Iterator[np.ndarray]:
  """uint8 [num_frames, size, size, 3] windows as the frames stream in: only the last `span` prepared frames are
  kept, so memory does not depend on the video's length."""
  ring = np.empty((windows.span, size, size, 3), np.uint8)
  offsets = np.arange(windows.num_frames) * windows.frame_stride
  for count, frame in enumerate(frames, start=1):
    ring[(count - 1) % windows.span] = prepare_frame(frame, size, resize)
    start = count - windows.span
    if start >= 0 and start % windows.window_stride == 0:
      yield ring[(start + offsets) % windows.span]


@dataclasses.dataclass
class FeatureModel:
  """The pooled features of any loaded checkpoint: a classifier (without its head), an encoder, or a pretraining
  model's encoder; optionally keeping only the top-motion tokens of each window (MATS)."""
  spec: ModelSpec
  params: Any
  keep_ratio: float = 1.0
  normalization: str = "imagenet"

  @classmethod
  def from_loaded(cls, loaded: params_io.LoadedParams, *, keep_ratio: float = 1.0,
                  normalization: str = "imagenet") -> "FeatureModel":
    params = mapping.encoder_params(loaded.params, loaded.kind)
    spec = dataclasses.replace(loaded.spec(), num_classes=0, pooled_norm=mapping.pooled_norm_of(params))
    return cls(spec, params, keep_ratio, normalization)

  def __call__(self, params: Any, video: jax.Array) -> jax.Array:
    """uint8 windows [B, T, S, S, 3] -> features [B, width] float32; jit-able."""
    if self.normalization == "unit":
      video = video.astype(jnp.float32) / 255.0
    else:
      video = normalize(video)
    keep = None
    if self.keep_ratio < 1.0:
      plan = finetune_masking_plan(dict(finetune_keep_ratio=self.keep_ratio), self.spec)
      embed = VideoViTEncoder(dataclasses.replace(self.spec, compute_dtype="float32"), use_final_norm=False)
      embed_fn = lambda v: embed.apply({"params": {k: v2 for k, v2 in params["encoder"].items() if k != "norm"}},
                                       v, method=VideoViTEncoder.embed_patches)
      keep = masking.finetune_token_indices(plan, video, embed_fn, self.spec)
    return VideoClassifier(self.spec).apply({"params": params}, video, keep)


def _write_atomically(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  temporary = f"{path}.tmp-{os.getpid()}"
  with open(temporary, "wb") as f:
    np.save(f, array)
  os.replace(temporary, path)


class Extractor:
  """Runs a FeatureModel over videos, batching windows of one video across this process's devices."""

  def __init__(self, model: FeatureModel, windows: Windows, *, resize: str = "squash", batch_size: int = 32):
    if resize not in RESIZES:
      raise ValueError(f"resize={resize!r}; use one of {RESIZES}.")
    self.model, self.windows, self.resize = model, windows, resize
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1}, jax.local_devices())
    self.batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
    self._split = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    self._params = jax.device_put(model.params, replicated)
    self._forward = jax.jit(lambda p, v: model(p, v), in_shardings=(replicated, self._split),
                            out_shardings=replicated)

  def _run(self, batch: List[np.ndarray]) -> np.ndarray:
    valid = len(batch)
    stacked = np.stack(batch + [np.zeros_like(batch[0])] * (self.batch_size - valid))
    return np.asarray(self._forward(self._params, jax.device_put(stacked, self._split)))[:valid]

  def video_features(self, video: Video) -> Tuple[np.ndarray, int]:
    """([num_windows, width] float32, number of frames) of one video; raises DecodeError on unreadable input."""
    frames = CountedFrames(video.frames())
    outputs, batch = [], []
    for window in video_windows(frames, self.windows, self.model.spec.image_size, self.resize):
      batch.append(window)
      if len(batch) == self.batch_size:
        outputs.append(self._run(batch))
        batch = []
    if batch:
      outputs.append(self._run(batch))
    if not outputs:
      raise decoding.DecodeError(f"too short: {frames.count} frame(s), one window needs {self.windows.span}")
    return np.concatenate(outputs).astype(np.float32), frames.count


def _read_jsonl(path: str) -> List[Dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def extract(extractor: Extractor, videos: Sequence[Video], output_dir: str, *, process_index: int = 0,
            process_count: int = 1, progress: Optional[Callable[[int], Any]] = None) -> Dict[str, Any]:
  """Writes {output_dir}/{name}.npy for this process's videos (every process_count-th, from process_index), and
  this process's index and failure lines ({output_dir}/index.part-{p}.jsonl, failures.part-{p}.jsonl). Videos
  whose .npy exists are skipped. Returns counts for this process."""
  os.makedirs(output_dir, exist_ok=True)
  mine = list(videos)[process_index::process_count]
  index_part = os.path.join(output_dir, f"index.part-{process_index:05d}.jsonl")
  failure_part = os.path.join(output_dir, f"failures.part-{process_index:05d}.jsonl")
  known = {entry["video"]: entry for entry in _read_jsonl(index_part)}
  failures: Dict[str, Dict[str, Any]] = {}
  done = skipped = windows = 0
  start = time.time()
  with open(index_part, "a", encoding="utf-8") as index:
    for video in mine:
      target = os.path.join(output_dir, video.name + ".npy")
      for stale in glob.glob(glob.escape(target) + ".tmp-*"):
        os.remove(stale)  # left by a run killed while writing: never a finished file
      if os.path.exists(target):
        skipped += 1
      else:
        try:
          features, num_frames = extractor.video_features(video)
        except decoding.DecodeError as error:
          failures[video.name] = {"video": video.name, "reason": str(error)}
        else:
          _write_atomically(target, features)
          entry = {"video": video.name, "features": video.name + ".npy", "num_windows": int(features.shape[0]),
                   "width": int(features.shape[1]), "num_frames": int(num_frames)}
          if video.name not in known:
            index.write(json.dumps(entry) + "\n")
            index.flush()
          known[video.name] = entry
          done += 1
          windows += int(features.shape[0])
      if progress is not None:
        progress(1)
  with open(failure_part, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(line) + "\n" for line in failures.values())
  return {"videos": len(mine), "extracted": done, "skipped": skipped, "failed": len(failures),
          "windows": windows, "seconds": round(time.time() - start, 2)}


def merge_index(output_dir: str) -> Tuple[int, int]:
  """Joins every process's parts into {output_dir}/index.jsonl and failures.jsonl (sorted by video); returns
  (videos indexed, videos failed)."""
  entries, failures = {}, {}
  for name in sorted(os.listdir(output_dir)):
    if name.startswith("index.part-"):
      entries.update({e["video"]: e for e in _read_jsonl(os.path.join(output_dir, name))})
    elif name.startswith("failures.part-"):
      failures.update({e["video"]: e for e in _read_jsonl(os.path.join(output_dir, name))})
  for file_name, lines in ((INDEX_FILE, entries), (FAILURES_FILE, failures)):
    temporary = os.path.join(output_dir, file_name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(lines[key]) + "\n" for key in sorted(lines))
    os.replace(temporary, os.path.join(output_dir, file_name))
  return len(entries), len(failures)
