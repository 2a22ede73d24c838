"""Decoded videos kept in memory between epochs, for data sets small enough to fit (config.data.decoded_cache_mb).

A small data set is read many times: the demo's 256 videos are decoded 250 times each in its 4000 steps, and
decoding was half of every demo step on a 2-core laptop. With a budget, the first read of a video decodes all of
its frames once; later clips of it are frame lookups. The frames are the decoder's, so the clips are bit-identical
to decoding each clip. Videos larger than an eighth of the budget are never cached (one long video must not push
out every short one); beyond the budget the least recently used video goes.

The cache lives in the process that decodes: with data.num_workers=N each worker holds its own (N x the budget
at most), and TFDS records (no path) are not cached. Grain maps batches in several threads of that process, so
the cache is locked, and a video two threads want at once is decoded by one of them.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable

import numpy as np

_videos: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
_bytes = 0
_decoded = 0  # videos decoded into the cache since clear(), evicted ones included
_lock = threading.Lock()
_video_locks: dict[tuple, threading.Lock] = {}  # one per video: its first decode happens once


def clip(record, indices: np.ndarray, budget_bytes: int, decode: Callable[[np.ndarray], np.ndarray],
         out: np.ndarray | None = None) -> np.ndarray | None:
  """Frames `indices` of the record's video through the cache, or None when this video is not cached (the caller
  decodes the clip itself). `decode(indices)` decodes frames of the record."""
  global _bytes, _decoded
  num_frames = int(record.get("num_frames") or 0)
  height, width = int(record.get("height") or 0), int(record.get("width") or 0)
  if budget_bytes <= 0 or not record.get("path") or not (num_frames and height and width):
    return None
  if num_frames * height * width * 3 > budget_bytes // 8:
    return None
  key = (record.get("_source"), record["path"], num_frames)
  with _lock:
    video_lock = _video_locks.setdefault(key, threading.Lock())
  with video_lock:
    with _lock:
      video = _videos.get(key)
      if video is not None:
        _videos.move_to_end(key)
    if video is None:
      video = decode(np.arange(num_frames))  # Outside the global lock: other videos decode meanwhile.
      with _lock:
        _videos[key] = video
        _bytes += video.nbytes
        _decoded += 1
        while _bytes > budget_bytes and len(_videos) > 1:
          _bytes -= _videos.popitem(last=False)[1].nbytes
  if out is not None:
    if out.shape != (len(indices), *video.shape[1:]):
      return None  # The caller's buffer wants another size: let it decode (and raise) as without the cache.
    np.take(video, indices, axis=0, out=out)
    return out
  return video[indices]


def stats() -> dict[str, int]:
  """{'videos': held now, 'bytes': their size, 'decoded': videos decoded into the cache since clear()}."""
  with _lock:
    return dict(videos=len(_videos), bytes=_bytes, decoded=_decoded)


def clear() -> None:
  global _bytes, _decoded
  with _lock:
    _videos.clear()
    _video_locks.clear()
    _bytes = _decoded = 0
