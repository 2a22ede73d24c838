"""Video decoding: the one place that picks a backend (decord or PyAV) and reads frames.

Two jobs:
  * `read_video(path, short_side)`: data_prep (and feature extraction) read a whole input video (any container
    FFmpeg knows) one frame at a time: upright (rotation metadata applied), resized so that its short side is
    at most `short_side`, at a constant frame rate (by timestamp), as RGB uint8 frames.
  * `decode_clip(record, frame_indices)`: the input pipeline decodes only the frames it needs from one shard
    record (an in-memory MP4 or a list of JPEG/PNG frames), as uint8 [T, H, W, 3]. Records hold frames that
    read_video already turned upright and put at a constant rate, so nothing is applied here.

Backend choice: `VIDEOMAE_VIDEO_BACKEND` (env) or the `backend` argument: 'auto' | 'decord' | 'pyav'.
'auto' means PyAV, for input files and shard records alike; 'decord' is there when asked for (x86-64 Linux
wheels). Input files: decord's decoder thread runs ahead of its reader without bound, so a reader slower than
decoding (a build that encodes each frame, or a busy machine) holds the rest of the video's frames in memory
(1.19 GB resident building one 1-minute 640x360 video, where PyAV peaked at 0.13 GB, and at 0.22 GB for 4
minutes, the output record being what grows; docs/data.md), and PyAV took less CPU per video too. Shard
records: our shards hold constant-frame-rate H.264 written by `encode_mp4`, and PyAV decodes them from memory
faster than decord does (decord copies the buffer and indexes the whole file on open; see docs/data.md for the
numbers). Both give bit-identical RGB for our shards.

Every decoder here is single-threaded on purpose: parallelism comes from worker processes (grain workers in
training, the build's worker pool in data_prep), and codec threads on top of them only oversubscribe the CPU.

Nothing here imports JAX: grain worker processes and data_prep workers import this module.
"""
from __future__ import annotations

import fractions
import importlib
import io
import itertools
import math
import os
import stat
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from videomae_jax.data import transforms

BACKENDS = ("auto", "decord", "pyav")
# File name endings taken for videos when a folder is listed (data_prep.build_shards, feature extraction).
# .mts / .m2ts: camcorder and Blu-ray MPEG transport streams (192-byte packets), which FFmpeg's mpegts demuxer reads.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv",
                    ".wmv", ".ts", ".mts", ".m2ts", ".gif")
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
  """Returns 'decord' or 'pyav' for `backend` ('auto' honours $VIDEOMAE_VIDEO_BACKEND; else PyAV, whether
  `for_shards` or not)."""
  if backend == "auto":
    backend = os.environ.get(_ENV_BACKEND, "auto") or "auto"
  if backend not in BACKENDS:
    raise ValueError(f"Unknown video backend {backend!r}: use one of {BACKENDS} "
                     f"(argument or ${_ENV_BACKEND}).")
  if backend == "auto":
    return "pyav"  # For input files too: decord buffers decoded frames without bound (module docstring).
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
# Whole-video reading (data_prep, features, pictures).
# ------------------------------------------------------------------------------------------------------------


class VideoInfo(dict):
  """Metadata of the frames `read_video` yields: fps (float) and fps_fraction ('num/den'), their constant rate;
  height, width; backend (the decoder that read them)."""


def read_video(source: str | bytes, short_side: int | None = 320, backend: str = "auto",
               max_frames: int = 0) -> tuple[VideoInfo, Iterator[np.ndarray]]:
  """Opens a video: its info and an iterator over its frames, RGB uint8 [H, W, 3], decoded one at a time.

  `source` is a file path (any container FFmpeg knows) or the bytes of one (a shard record's 'video').
  The frames are
    * upright: the stream's rotation (display matrix, e.g. phone videos) is applied, so a 320x240 stream
      rotated by 90 degrees gives 240x320 frames (quarter turns; other angles are rounded to one; mirroring
      in the matrix is not applied, by either decoder);
    * shrunk so that the short side is at most `short_side` (never enlarged; even sizes, see output_size);
      `short_side=None` keeps the decoded size exactly;
    * at the constant rate info['fps'] (the stream's average rate): frame n shows the source frame shown at
      time n / fps (by timestamp), so a variable-frame-rate source has frames repeated or dropped where its
      rate strays, and a frame stride means the same time everywhere. Constant-rate sources pass unchanged;
    * at most `max_frames` (> 0), the first ones.
  Memory stays bounded whatever the video's length. Raises DecodeError with the reason (what data_prep
  records) when the file is missing, not a regular file, empty, not a video, truncated or corrupt; errors past
  the first frame are raised while iterating.
  """
  if isinstance(source, str):
    _check_file(source)
  rate, declared_frames = _probe(source)
  backend = "pyav" if isinstance(source, bytes) else resolve_backend(backend)
  timed = _decord_frames(source, short_side) if backend == "decord" else _pyav_frames(source, short_side)
  first = next(timed, None)
  height, width = first[1].shape[:2] if first is not None else (0, 0)
  info = VideoInfo(fps=float(rate), fps_fraction=f"{rate.numerator}/{rate.denominator}", height=height,
                   width=width, backend=backend)
  frames = _checked_length(itertools.chain([] if first is None else [first], timed), declared_frames)
  return info, _constant_rate(frames, rate, max_frames)


def read_video_frames(path: str, short_side: int | None = 320, backend: str = "auto",
                      max_frames: int = 0) -> tuple[list[np.ndarray], VideoInfo]:
  """`read_video`'s frames in a list, for short videos (tests, pictures)."""
  info, frames = read_video(path, short_side, backend, max_frames)
  return list(frames), info


def iter_frames(source: str | bytes) -> Iterator[np.ndarray]:
  """Every frame of a video at its decoded size (PyAV), as `read_video` gives them, one at a time; raises
  DecodeError with the reason while iterating."""
  yield from read_video(source, None, "pyav")[1]


def _check_file(path: str) -> None:
  # A FIFO or a device has size 0 and opening it can block forever: say what it is instead of decoding it.
  try:
    status = os.stat(path)
  except FileNotFoundError as e:
    raise DecodeError("file not found (or a broken symbolic link)") from e
  if not stat.S_ISREG(status.st_mode):
    raise DecodeError("not a regular file (a FIFO, socket or device)")
  if status.st_size == 0:
    raise DecodeError("empty file (0 bytes)")


def _open_pyav(source: str | bytes):
  import av  # pylint: disable=import-outside-toplevel
  try:
    container = av.open(io.BytesIO(source) if isinstance(source, bytes) else source)
  except Exception as e:  # pylint: disable=broad-except
    raise DecodeError(f"cannot open as video (not a video, truncated or corrupt): {_short(e)}") from e
  if not container.streams.video:
    container.close()
    raise DecodeError("no video stream")
  stream = container.streams.video[0]
  stream.thread_type = "NONE"
  stream.codec_context.thread_count = 1
  return container, stream


def _probe(source: str | bytes) -> tuple[fractions.Fraction, int]:
  """(frame rate, frames the container declares or 0)."""
  container, stream = _open_pyav(source)
  with container:
    rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(30)
    if not stream.codec_context.height or not stream.codec_context.width:
      raise DecodeError("video stream has no frame size")
    return fractions.Fraction(rate).limit_denominator(1001), int(stream.frames or 0)


def _size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
  return (height, width) if short_side is None else output_size(height, width, short_side)


def _pyav_frames(source: str | bytes, short_side: int | None) -> Iterator[tuple[Any, np.ndarray]]:
  """(time in seconds from the first frame or None, upright RGB frame) for every decoded frame."""
  from av.video.reformatter import VideoReformatter  # pylint: disable=import-outside-toplevel
  container, stream = _open_pyav(source)
  reformatter, count, origin = VideoReformatter(), 0, None
  with container:
    try:
      for frame in container.decode(stream):
        if count == 0:
          # The display matrix's rotation, counter-clockwise as FFmpeg's av_display_rotation_get reports it;
          # turning the frame that way is what the ffmpeg command line does by default (fftools autorotate).
          turns = round(frame.rotation / 90) % 4
          height, width = _size(*((frame.width, frame.height) if turns % 2 else (frame.height, frame.width)),
                                short_side)
          if turns % 2:
            height, width = width, height  # The size before turning.
          origin = frame.pts
        # AREA: the scaler's box filter, like decord's path (transforms.shrink_area, cv2.INTER_AREA).
        rgb = reformatter.reformat(frame, width, height, "rgb24", interpolation="AREA", threads=1).to_ndarray()
        time = None if frame.pts is None or origin is None else (frame.pts - origin) * stream.time_base
        count += 1
        yield time, np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
    except Exception as e:  # pylint: disable=broad-except
      raise DecodeError(f"decode error after {count} frames (truncated or corrupt): {_short(e)}") from e


def _decord_frames(path: str, short_side: int | None) -> Iterator[tuple[Any, np.ndarray]]:
  """As _pyav_frames, with decord: it applies the stream's rotation itself (VideoReader::GetRotation, the same
  convention), so its frames come upright at the turned size."""
  import decord  # pylint: disable=import-outside-toplevel
  # decord's own FFmpeg copy prints decoder warnings straight to stderr, through the build's progress bar and
  # without the file's name; what matters comes back in the exception, which names the file's failure.
  decord.logging.set_level(decord.logging.QUIET)
  count = 0
  try:
    reader = decord.VideoReader(path, num_threads=1)
    times = reader.get_frame_timestamp(list(range(len(reader))))[:, 0].tolist()
    # One frame at a time: batches of native frames next to the small resized ones fragmented the heap (1.2 GB
    # resident for 2 minutes of 640x360 read in batches of 32, 0.26 GB read like this).
    for time in times:
      frame = reader.next().asnumpy()
      if count == 0:
        if frame.ndim != 3 or frame.shape[2] != 3:
          # 48-pixel-wide frames come as [H, 48, 4]: their rows padded to 64 pixels, read as 4 channels.
          raise DecodeError(f"decord gave frames of shape {frame.shape}")
        height, width = _size(*frame.shape[:2], short_side)
      count += 1
      # Native size, then shrunk here: decord's own resizing fails on some frame sizes (buffer size checks
      # with padded widths).
      yield time - times[0], transforms.shrink_area(frame, height, width)
  except Exception as e:  # pylint: disable=broad-except
    raise DecodeError(f"decode error after {count} frames (truncated or corrupt): {_short(e)}") from e


def _checked_length(timed: Iterator[tuple[Any, np.ndarray]], declared_frames: int):
  count = 0
  for item in timed:
    count += 1
    yield item
  if declared_frames and count < 0.95 * declared_frames:
    # The stream ended early without a decoder error: data missing at the end (a cut-off download).
    raise DecodeError(f"truncated: decoded {count} of the {declared_frames} frames the container declares")


def _constant_rate(timed: Iterator[tuple[Any, np.ndarray]], rate: fractions.Fraction,
                   max_frames: int) -> Iterator[np.ndarray]:
  """Frames at `rate` from (time, frame) pairs: each source frame holds from its slot round(time * rate) until
  the next frame's slot (so gaps repeat it, and of several frames on one slot the last is kept); frames without
  a time take the slot after the previous one. Like FFmpeg's fps filter with round=near."""
  held, held_slot, emitted = None, -1, 0
  for time, frame in timed:
    slot = held_slot + 1 if time is None else math.floor(time * rate + fractions.Fraction(1, 2))
    while held is not None and emitted < slot:
      yield held
      emitted += 1
      if emitted == max_frames:
        return
    held, held_slot = frame, slot
  if held is not None:
    yield held


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
