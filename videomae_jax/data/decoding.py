"""Video decoding: the one place that picks a backend (decord or PyAV) and reads frames.

Two jobs:
  * `read_video_frames(path, short_side)`: data_prep reads a whole input video (any container FFmpeg knows),
    resized so that its short side is at most `short_side`, as RGB uint8 frames.
  * `decode_clip(record, frame_indices)`: the input pipeline decodes only the frames it needs from one shard
    record (an in-memory MP4 or a list of JPEG/PNG frames), as uint8 [T, H, W, 3].

Backend choice: `VIDEOMAE_VIDEO_BACKEND` (env) or the `backend` argument: 'auto' | 'decord' | 'pyav'.
For reading input files 'auto' means decord where it is installed (x86-64 Linux wheels), else PyAV. For shard
records 'auto' means PyAV: our shards hold constant-frame-rate H.264 written by `encode_mp4`, and PyAV decodes
them from memory faster than decord does (decord copies the buffer and indexes the whole file on open; see
docs/data.md for the numbers). Both give bit-identical RGB for our shards.

Every decoder here is single-threaded on purpose: parallelism comes from worker processes (grain workers in
training, the build's worker pool in data_prep), and codec threads on top of them only oversubscribe the CPU.

Nothing here imports JAX: grain worker processes and data_prep workers import this module.
"""
from __future__ import annotations

import fractions
import importlib
import io
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from videomae_jax.data import transforms

BACKENDS = ("auto", "decord", "pyav")
# File name endings taken for videos when a folder is listed (data_prep.build_shards, feature extraction).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv",
                    ".wmv", ".ts")
_ENV_BACKEND = "VIDEOMAE_VIDEO_BACKEND"


class DecodeError(Exception):
  """A video that cannot be decoded; the message is the reason data_prep records for it."""


class ClipShapeError(ValueError):
  """decode_clip's `out` does not have the decoded clip's shape (nothing was written to it)."""


def have_decord() -> bool:
  try:
    importlib.import_module("decord")
  except ImportError:
    return False
  return True


def resolve_backend(backend: str = "auto", *, for_shards: bool = False) -> str:
  """Returns 'decord' or 'pyav' for `backend` ('auto' honours $VIDEOMAE_VIDEO_BACKEND)."""
  if backend == "auto":
    backend = os.environ.get(_ENV_BACKEND, "auto") or "auto"
  if backend not in BACKENDS:
    raise ValueError(f"Unknown video backend {backend!r}: use one of {BACKENDS} "
                     f"(argument or ${_ENV_BACKEND}).")
  if backend == "auto":
    return "pyav" if for_shards or not have_decord() else "decord"
  if backend == "decord" and not have_decord():
    raise ValueError("Video backend 'decord' was asked for but decord is not installed "
                     "(pip install decord==0.6.0, x86-64 Linux only), or use backend 'pyav'.")
  return backend


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
  """(height, width) after shrinking the short side to `short_side` (never enlarging), both even.

  Even sizes because H.264 in yuv420p needs them. `short_side <= 0` keeps the size (made even).
  """
  scale = 1.0 if short_side <= 0 or min(height, width) <= short_side else short_side / min(height, width)
  new_h = max(2, int(height * scale / 2 + 0.5) * 2)
  new_w = max(2, int(width * scale / 2 + 0.5) * 2)
  return new_h, new_w


# ------------------------------------------------------------------------------------------------------------
# Whole-video reading (data_prep).
# ------------------------------------------------------------------------------------------------------------


class VideoInfo(dict):
  """Metadata of a decoded input video: fps (float), fps_fraction (str 'num/den'), height, width."""


def _probe_pyav(path: str) -> tuple[int, int, fractions.Fraction, int]:
  import av  # pylint: disable=import-outside-toplevel
  try:
    container = av.open(path)
  except Exception as e:  # pylint: disable=broad-except
    raise DecodeError(f"cannot open as video (not a video, truncated or corrupt): {_short(e)}") from e
  with container:
    if not container.streams.video:
      raise DecodeError("no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(30)
    height, width = stream.codec_context.height, stream.codec_context.width
    declared_frames = int(stream.frames or 0)
  if not height or not width:
    raise DecodeError("video stream has no frame size")
  return height, width, fractions.Fraction(rate).limit_denominator(1001), declared_frames


def read_video_frames(path: str, short_side: int = 320, backend: str = "auto",
                      max_frames: int = 0) -> tuple[list[np.ndarray], VideoInfo]:
  """Decodes a whole video file into RGB uint8 frames [H, W, 3] with the short side at most `short_side`.

  Raises DecodeError (with a reason that data_prep reports) for empty, non-video, truncated or corrupt files.
  `max_frames > 0` stops after that many frames (long videos).
  """
  if os.path.getsize(path) == 0:
    raise DecodeError("empty file (0 bytes)")
  height, width, rate, declared_frames = _probe_pyav(path)
  new_h, new_w = output_size(height, width, short_side)
  backend = resolve_backend(backend)
  if backend == "decord":
    try:
      frames = _read_decord(path, new_h, new_w, max_frames)
    except DecodeError:
      # decord 0.6 rejects some streams PyAV reads fine (e.g. frame widths below 64: a padded-buffer size
      # check), so a decord failure is only final if PyAV fails too.
      backend = "pyav"
      frames = _read_pyav(path, new_h, new_w, max_frames)
  else:
    frames = _read_pyav(path, new_h, new_w, max_frames)
  expected = min(declared_frames, max_frames) if max_frames else declared_frames
  if expected and len(frames) < 0.95 * expected:
    # The stream ended early without a decoder error: data missing at the end (a cut-off download).
    raise DecodeError(f"truncated: decoded {len(frames)} of the {declared_frames} frames the container declares")
  info = VideoInfo(fps=float(rate), fps_fraction=f"{rate.numerator}/{rate.denominator}",
                   height=new_h, width=new_w, source_height=height, source_width=width, backend=backend)
  return frames, info


def iter_frames(source: str | bytes) -> Iterator[np.ndarray]:
  """Every frame of a video, RGB uint8 [H, W, 3], decoded one at a time (PyAV, one thread), so memory stays
  bounded whatever the video's length. `source`: a file path (any container FFmpeg knows) or the bytes of one
  (an MP4 shard record's 'video'). Raises DecodeError with the reason when it cannot be read."""
  import av  # pylint: disable=import-outside-toplevel
  from av.video.reformatter import VideoReformatter  # pylint: disable=import-outside-toplevel
  if isinstance(source, str) and os.path.getsize(source) == 0:
    raise DecodeError("empty file (0 bytes)")
  try:
    container = av.open(io.BytesIO(source) if isinstance(source, bytes) else source)
  except Exception as e:  # pylint: disable=broad-except
    raise DecodeError(f"cannot open as video (not a video, truncated or corrupt): {_short(e)}") from e
  reformatter, count = VideoReformatter(), 0
  with container:
    if not container.streams.video:
      raise DecodeError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.codec_context.thread_count = 1
    try:
      for frame in container.decode(stream):
        rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
        count += 1
        yield rgb
    except DecodeError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise DecodeError(f"decode error after {count} frames (truncated or corrupt): {_short(e)}") from e


def _read_pyav(path: str, height: int, width: int, max_frames: int) -> list[np.ndarray]:
  import av  # pylint: disable=import-outside-toplevel
  from av.video.reformatter import VideoReformatter  # pylint: disable=import-outside-toplevel
  reformatter = VideoReformatter()
  frames = []
  try:
    with av.open(path) as container:
      stream = container.streams.video[0]
      stream.thread_type = "NONE"
      stream.codec_context.thread_count = 1
      for frame in container.decode(stream):
        rgb = reformatter.reformat(frame, width, height, "rgb24", interpolation="AREA", threads=1)
        frames.append(rgb.to_ndarray())
        if max_frames and len(frames) >= max_frames:
          break
  except Exception as e:  # pylint: disable=broad-except
    raise DecodeError(f"decode error after {len(frames)} frames (truncated or corrupt): {_short(e)}") from e
  return frames


def _read_decord(path: str, height: int, width: int, max_frames: int) -> list[np.ndarray]:
  import decord  # pylint: disable=import-outside-toplevel
  frames = []
  try:
    # Native size: decord's own resizing fails on some frame sizes (buffer size checks with padded widths).
    reader = decord.VideoReader(path, num_threads=1)
    total = len(reader) if not max_frames else min(len(reader), max_frames)
    for start in range(0, total, 32):
      batch = reader.get_batch(list(range(start, min(total, start + 32)))).asnumpy()
      frames.extend(transforms.shrink_area(frame, height, width) for frame in batch)
  except Exception as e:  # pylint: disable=broad-except
    raise DecodeError(f"decode error after {len(frames)} frames (truncated or corrupt): {_short(e)}") from e
  return frames


def _short(error: BaseException, limit: int = 200) -> str:
  text = " ".join(str(error).split()) or type(error).__name__
  return text[:limit]


# ------------------------------------------------------------------------------------------------------------
# Clip decoding from shard records (input pipeline).
# ------------------------------------------------------------------------------------------------------------


def decode_clip(record: Mapping[str, Any], frame_indices: Sequence[int], backend: str = "auto",
                out: np.ndarray | None = None) -> np.ndarray:
  """Decodes frames `frame_indices` (any order, repeats allowed) of a record: uint8 [T, H, W, 3].

  `record` is a shard record (see videomae_jax.data.shards): 'format' 'mp4' with 'video' bytes, or 'jpeg' /
  'frames' with 'frames' a list of encoded images. Only the needed frames are decoded: for MP4 a seek to the
  keyframe before the first one, then decoding up to the last one. With `out` (uint8 [T, H, W, 3], e.g. a slot
  of a batch buffer) the frames are written there instead of into a new array, and `out` is returned.
  """
  indices = np.asarray(frame_indices, dtype=np.int64)
  fmt = record["format"]
  if fmt == "mp4":
    if resolve_backend(backend, for_shards=True) == "decord":
      return _into(_clip_decord(record["video"], indices), out)
    frames = _clip_pyav(record["video"], indices)
  elif fmt in ("jpeg", "frames"):
    frames = _clip_images(record["frames"], indices)
  else:
    raise ValueError(f"Unknown record format {fmt!r}")
  if out is None:
    return np.stack([frames[i] for i in indices.tolist()])
  shape = (len(indices),) + frames[int(indices[0])].shape
  if out.shape != shape:
    raise ClipShapeError(f"decode_clip: out has shape {out.shape}, the clip is {shape} (record "
                     f"{record.get('path', '?')!r} says {record.get('height')}x{record.get('width')}).")
  for position, i in enumerate(indices.tolist()):
    out[position] = frames[i]
  return out


def _into(clip: np.ndarray, out: np.ndarray | None) -> np.ndarray:
  if out is None:
    return clip
  if out.shape != clip.shape:
    raise ClipShapeError(f"decode_clip: out has shape {out.shape}, the clip is {clip.shape}.")
  np.copyto(out, clip)
  return out


def _clip_images(frames: Sequence[bytes], indices: np.ndarray) -> dict[int, np.ndarray]:
  """{frame index: RGB uint8 [H, W, 3]} for the distinct indices."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  decoded = {}
  for i in np.unique(indices):
    with Image.open(io.BytesIO(frames[int(i)])) as image:
      decoded[int(i)] = np.asarray(image.convert("RGB"))
  return decoded


def _clip_decord(data: bytes, indices: np.ndarray) -> np.ndarray:
  import decord  # pylint: disable=import-outside-toplevel
  reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
  return reader.get_batch(indices.tolist()).asnumpy()


def _clip_pyav(data: bytes, indices: np.ndarray) -> dict[int, np.ndarray]:
  """{frame index: RGB uint8 [H, W, 3]} for the distinct indices."""
  import av  # pylint: disable=import-outside-toplevel
  from av.video.reformatter import VideoReformatter  # pylint: disable=import-outside-toplevel
  needed = set(indices.tolist())
  first, last = int(indices.min()), int(indices.max())
  decoded: dict[int, np.ndarray] = {}
  reformatter = VideoReformatter()
  with av.open(io.BytesIO(data)) as container:
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.codec_context.thread_count = 1
    rate = stream.average_rate
    time_base = stream.time_base
    start_pts = stream.start_time or 0
    if first > 0 and rate:
      # Seek to the keyframe at or before the first needed frame (our shards: one every `gop_size` frames).
      container.seek(start_pts + int(first / rate / time_base), stream=stream, backward=True, any_frame=False)
    position = None
    for frame in container.decode(stream):
      if frame.pts is not None and rate:
        position = int(round((frame.pts - start_pts) * time_base * rate))
      else:
        position = 0 if position is None else position + 1
      if position in needed and position not in decoded:
        decoded[position] = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
      if position >= last:
        break
  if len(decoded) < len(needed):
    # Fewer frames than the record says (should not happen for shards we wrote): repeat the last decoded one.
    if not decoded:
      raise DecodeError("no frame decoded")
    last_seen = max(decoded)
    for i in needed - decoded.keys():
      decoded[i] = decoded[max((k for k in decoded if k <= i), default=last_seen)]
  return decoded


def iter_clip_backends() -> Iterator[str]:
  """Backends that can decode MP4 shard records on this machine (for benchmarks and tests)."""
  if have_decord():
    yield "decord"
  yield "pyav"
