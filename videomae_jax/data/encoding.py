"""Deterministic video encoding for shards, the demo data set and tests (PyAV / libx264, PIL JPEG).

The same frames and options give the same bytes (on one machine type and library versions): x264 kept off its
AVX-512 code (see x264_cpu_flags), freshly allocated frames with explicit timestamps (x264 reads frame fields),
one encoder thread and one scaler thread, fixed x264 options, and FFmpeg's bitexact flags (no encoder version
strings or creation times in the container).
"""
from __future__ import annotations

import fractions
import functools
import io
import itertools
import os
import platform
from typing import Iterable

import numpy as np

DEFAULT_CRF = 23
DEFAULT_GOP_SIZE = 32
DEFAULT_PRESET = "fast"
DEFAULT_JPEG_QUALITY = 90


@functools.lru_cache(maxsize=None)
def x264_cpu_flags() -> str:
  """x264's `asm` list for this CPU without AVX-512 (x86-64 Linux), or '' to let x264 detect (elsewhere).

  With its AVX-512 code, x264's macroblock-tree rate control encoded identical frames differently now and then
  within one process (the result depended on what the process had done before); capped at AVX2 it is stable
  (tests/test_data_demo.py, tests/test_build_shards.py). Turning macroblock-tree off also fixes it, but costs
  40-60% more bytes at equal PSNR on our test clips.
  """
  if platform.machine().lower() not in ("x86_64", "amd64") or not os.path.exists("/proc/cpuinfo"):
    return ""
  with open("/proc/cpuinfo", encoding="utf-8") as f:
    flag_lines = [line for line in f if line.startswith("flags")]
  if not flag_lines:
    return ""
  cpu = set(flag_lines[0].split(":", 1)[1].split())
  if "avx512f" not in cpu:
    return ""  # Nothing to cap: let x264 pick, with its cache and speed hints.
  x264_names = [("sse", "MMX2"), ("sse", "SSE"), ("sse2", "SSE2"), ("pni", "SSE3"), ("ssse3", "SSSE3"),
                ("sse4_1", "SSE4.1"), ("sse4_2", "SSE4.2"), ("abm", "LZCNT"), ("avx", "AVX"), ("fma", "FMA3"),
                ("bmi1", "BMI1"), ("bmi2", "BMI2"), ("avx2", "AVX2")]
  return ",".join(name for flag, name in x264_names if flag in cpu) + ",Cache64"


def encode_mp4(frames: Iterable[np.ndarray] | np.ndarray, fps: float | str | fractions.Fraction = 30, *,
               crf: int = DEFAULT_CRF, gop_size: int = DEFAULT_GOP_SIZE, preset: str = DEFAULT_PRESET,
               tune: str = "") -> bytes:
  """Encodes RGB uint8 frames [H, W, 3] (H and W even) as H.264 (yuv420p) in MP4; returns the file bytes.

  `frames` may be any iterable (e.g. decoding.read_video's iterator): frames are encoded as they come, so
  memory holds the encoder's lookahead, not the video. A keyframe every `gop_size` frames and no B-frames, so
  a clip decoder seeks to the keyframe before its first frame and decodes forward from there (random access
  cost: at most `gop_size - 1` extra frames). `fps` may be a float, a Fraction or a 'num/den' string.
  """
  import av  # pylint: disable=import-outside-toplevel
  from av.codec.context import Flags  # pylint: disable=import-outside-toplevel
  from av.video.reformatter import VideoReformatter  # pylint: disable=import-outside-toplevel
  frames = iter(frames)
  first = next(frames, None)
  if first is None:
    raise ValueError("encode_mp4 needs at least one frame")
  frames = itertools.chain([first], frames)
  height, width = first.shape[:2]
  if height % 2 or width % 2:
    raise ValueError(f"H.264 yuv420p needs even frame sizes, got {height}x{width}")
  rate = fractions.Fraction(fps).limit_denominator(1001)
  time_base = 1 / rate
  x264_params = (f"keyint={gop_size}:min-keyint={gop_size}:scenecut=0:bframes=0:"
                 "threads=1:lookahead-threads=1:sliced-threads=0")
  cpu_flags = x264_cpu_flags()
  if cpu_flags:
    x264_params += f":asm={cpu_flags}"
  options = {"crf": str(crf), "preset": preset, "x264-params": x264_params}
  if tune:
    options["tune"] = tune
  buffer = io.BytesIO()
  reformatter = VideoReformatter()
  with av.open(buffer, mode="w", format="mp4",
               options={"fflags": "+bitexact"}) as container:
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    stream.codec_context.thread_type = "NONE"
    stream.codec_context.flags |= int(Flags.bitexact)
    stream.options = options
    for index, frame in enumerate(frames):
      video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
      video_frame = reformatter.reformat(video_frame, format="yuv420p", threads=1)
      # A fresh frame around the converted pixels, with explicit timestamps: a reformatted frame carries
      # fields that are not reliably initialized (pts among them), which x264 reads (rate control, frame
      # types), and identical inputs then encoded differently now and then.
      video_frame = av.VideoFrame.from_ndarray(video_frame.to_ndarray(), format="yuv420p")
      video_frame.pts = index
      video_frame.time_base = time_base
      for packet in stream.encode(video_frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return buffer.getvalue()


def encode_jpeg_frames(frames: Iterable[np.ndarray] | np.ndarray,
                       quality: int = DEFAULT_JPEG_QUALITY) -> list[bytes]:
  """Encodes each RGB uint8 frame (any iterable) as a baseline JPEG (4:2:0, fixed quality, no metadata)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  encoded = []
  for frame in frames:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=quality, subsampling=2, optimize=False)
    encoded.append(buffer.getvalue())
  return encoded
