"""Files of a shard build that may live on this machine or behind a URL (gs://bucket/..., any fsspec protocol).

A build on Dataflow reads its videos from and writes its shards to Cloud Storage, where every worker sees them;
a local build uses local paths. Local paths keep the local build's behaviour exactly (atomic writes through a
temporary name, fsync, rename); a URL goes through fsspec (gcsfs for gs://, a core dependency), where an object
store makes an object visible only once it is written whole, so a reader never sees part of a file either.

Nothing here decodes: `local_copy` gives the decoders (which read local files) a temporary copy of a remote video.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
from typing import Any, Iterable, Iterator

from videomae_jax.data import decoding
from videomae_jax.data import shards as shards_lib

_HEAD_TAIL_BYTES = 64 * 1024


def is_url(path: str) -> bool:
  return "://" in path


def _fs(url: str):
  import fsspec  # pylint: disable=import-outside-toplevel
  return fsspec.core.url_to_fs(url)


def _url(url: str, path: str) -> str:
  """The URL of `path` (as the file system names it) in `url`'s file system: gs://bucket/a from bucket/a."""
  protocol = url.split("://", 1)[0]
  return path if is_url(path) else f"{protocol}://{path.lstrip('/') if protocol != 'file' else path}"


def join(base: str, *names: str) -> str:
  return posixpath.join(base, *names) if is_url(base) else os.path.join(base, *names)


def dirname(path: str) -> str:
  return posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))


def exists(path: str) -> bool:
  if not is_url(path):
    return os.path.exists(path)
  fs, inner = _fs(path)
  return fs.exists(inner)


def isdir(path: str) -> bool:
  if not is_url(path):
    return os.path.isdir(path)
  fs, inner = _fs(path)
  return fs.isdir(inner)


def isfile(path: str) -> bool:
  if not is_url(path):
    return os.path.isfile(path)
  fs, inner = _fs(path)
  return fs.isfile(inner)


def makedirs(path: str) -> None:
  if not is_url(path):
    os.makedirs(path, exist_ok=True)
    return
  fs, inner = _fs(path)
  fs.makedirs(inner, exist_ok=True)  # Object stores have no folders: nothing to do there.


def read_text(path: str) -> str:
  """The file's text; a byte order mark (Windows editors, Excel's "CSV UTF-8") is dropped."""
  if not is_url(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
      return f.read()
  fs, inner = _fs(path)
  return fs.cat_file(inner).decode("utf-8-sig")


def write_bytes(path: str, data: bytes) -> None:
  if not is_url(path):
    shards_lib.write_bytes_atomically(path, data)
    return
  fs, inner = _fs(path)
  fs.pipe_file(inner, data)


def write_lines(path: str, lines: Iterable[str]) -> None:
  """Writes the lines (each ending in a newline) as they come: whole or not at all, as write_bytes."""
  if not is_url(path):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
      f.writelines(lines)
    os.replace(temporary, path)
    return
  fs, inner = _fs(path)
  with fs.open(inner, "w", encoding="utf-8") as f:
    f.writelines(lines)


def local_path(path: str) -> str:
  """A file:// URL as a plain path (what Apache Beam's file systems take); anything else as it is."""
  return path[len("file://"):] if path.startswith("file://") else path


def write_json(path: str, value: Any) -> None:
  """JSON as shards.write_json_atomically writes it (the same bytes, local or not)."""
  write_bytes(path, (json.dumps(value, indent=1, sort_keys=False) + "\n").encode("utf-8"))


def write_array_record(path: str, records: list[bytes]) -> None:
  if not is_url(path):
    shards_lib.write_array_record_atomically(path, records)
    return
  fs, inner = _fs(path)
  with tempfile.TemporaryDirectory() as folder:  # ArrayRecord writes local files; the upload is one object.
    local = os.path.join(folder, posixpath.basename(inner))
    shards_lib.write_array_record_atomically(local, records)
    fs.put_file(local, inner)


def remove(path: str) -> None:
  if not is_url(path):
    os.remove(path)
    return
  fs, inner = _fs(path)
  fs.rm_file(inner)


def list_files(url: str, pattern: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
  """(URL, fsspec info) of every file below the folder `url`, or matching the glob `pattern` (a URL), sorted."""
  fs, inner = _fs(pattern or url)
  found = fs.glob(inner, detail=True) if pattern else fs.find(inner, detail=True)
  for name in sorted(found):
    info = found[name]
    if info.get("type", "file") == "file":
      yield _url(pattern or url, name), info


def fingerprint(url: str, info: dict[str, Any] | None = None) -> list[Any] | None:
  """[size, version, checksum] of a remote file from its listing (no read where the store keeps a checksum:
  Cloud Storage's generation and CRC32C), else [size, mtime, sha256 of its first and last 64 KiB] as for local
  files. None when it cannot be read."""
  fs, inner = _fs(url)
  try:
    info = info or fs.info(inner)
    size = int(info.get("size") or 0)
    version = info.get("generation") or info.get("mtime") or info.get("updated") or info.get("LastModified")
    checksum = info.get("crc32c") or info.get("md5Hash") or info.get("ETag")
    if not checksum:
      digest = hashlib.sha256()
      with fs.open(inner, "rb") as f:
        digest.update(f.read(_HEAD_TAIL_BYTES))
        if size > _HEAD_TAIL_BYTES:
          f.seek(max(_HEAD_TAIL_BYTES, size - _HEAD_TAIL_BYTES))
          digest.update(f.read(_HEAD_TAIL_BYTES))
      checksum = digest.hexdigest()
  except OSError:
    return None
  return [size, str(version), str(checksum)]


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """`path` itself when local, else a temporary local copy (deleted afterwards): decoders read local files.
  A remote file that is missing raises decoding.DecodeError with the local build's reason."""
  if not is_url(path):
    yield path
    return
  fs, inner = _fs(path)
  with tempfile.TemporaryDirectory() as folder:
    local = os.path.join(folder, posixpath.basename(inner) or "video")
    try:
      fs.get_file(inner, local)
    except FileNotFoundError as e:
      raise decoding.DecodeError("file not found (or a broken symbolic link)") from e
    yield local
