"""Clip decoding from shard records (PyAV, decord, JPEG frames) and deterministic encoding."""
import numpy as np
import pytest

from videomae_jax.data import decoding
from videomae_jax.data import encoding
from videomae_jax.data import shards
from videomae_jax.data import testing


@pytest.fixture(scope="module")
def frames():
  return testing.moving_square_frames(num_frames=40, height=64, width=96, seed=3)


@pytest.fixture(scope="module")
def mp4_record(frames):
  return dict(format="mp4", video=encoding.encode_mp4(frames, 25, gop_size=8), num_frames=len(frames))


def test_encoding_is_deterministic(frames):
  assert encoding.encode_mp4(frames, 25) == encoding.encode_mp4(frames, 25)
  assert encoding.encode_jpeg_frames(frames[:3]) == encoding.encode_jpeg_frames(frames[:3])


@pytest.mark.parametrize("backend", list(decoding.iter_clip_backends()))
def test_clip_decoding_equals_full_decoding(mp4_record, backend, tmp_path):
  path = tmp_path / "v.mp4"
  path.write_bytes(mp4_record["video"])
  full, info = decoding.read_video_frames(str(path), short_side=0, backend="pyav")
  assert len(full) == 40 and info["fps"] == 25
  indices = [17, 3, 3, 39, 24, 0]  # Any order, repeats, across keyframes (gop 8), the last frame.
  clip = decoding.decode_clip(mp4_record, indices, backend)
  assert clip.shape == (6, 64, 96, 3) and clip.dtype == np.uint8
  np.testing.assert_array_equal(clip, np.stack([full[i] for i in indices]))
  # Lossy, but close to the source frames.
  assert np.abs(clip.astype(int) - frames_for(indices)).mean() < 6


def frames_for(indices):
  source = testing.moving_square_frames(num_frames=40, height=64, width=96, seed=3)
  return source[indices].astype(int)


def test_jpeg_records_decode_only_the_needed_frames(frames):
  record = dict(format="jpeg", frames=encoding.encode_jpeg_frames(frames), num_frames=len(frames))
  record["frames"][5] = b"corrupt"  # Never decoded below.
  clip = decoding.decode_clip(record, [0, 4, 8, 8])
  assert clip.shape == (4, 64, 96, 3)
  assert np.abs(clip.astype(int) - frames[[0, 4, 8, 8]]).mean() < 8  # JPEG 4:2:0 on sharp color blocks.
  assert shards.parse_record(shards.serialize_record(record)) == record


def test_backend_choice():
  assert decoding.resolve_backend("pyav") == "pyav"
  assert decoding.resolve_backend("auto", for_shards=True) == "pyav"
  assert decoding.resolve_backend("auto") == ("decord" if decoding.have_decord() else "pyav")
  with pytest.raises(ValueError, match="Unknown video backend"):
    decoding.resolve_backend("ffmpeg-cli")
  assert decoding.output_size(480, 640, 320) == (320, 426)
  assert decoding.output_size(200, 300, 320) == (200, 300)  # Never enlarged.
