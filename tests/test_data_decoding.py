"""Clip decoding from shard records (PyAV, decord, JPEG frames), reading whole videos (rotation, variable frame
rate, bounded memory) and deterministic encoding."""
import os
import weakref

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
  assert decoding.resolve_backend("auto") == "pyav"  # decord only when asked for: it buffers without bound.
  with pytest.raises(ValueError, match="Unknown video backend"):
    decoding.resolve_backend("ffmpeg-cli")
  assert decoding.output_size(480, 640, 320) == (320, 426)
  assert decoding.output_size(200, 300, 320) == (200, 300)  # Never enlarged.


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_rotated_videos_come_upright_the_same_with_every_backend(rotation, tmp_path):
  """Phones store the sensor's frames and a display matrix; a 64x96 stream turned 90 degrees is 96x64 upright.
  Both decoders, iter_frames and the records (so clip decoding) give those upright frames."""
  source = testing.moving_square_frames(6, 64, 96, seed=2)
  path = str(tmp_path / "phone.mp4")
  testing.write_video(path, source, rotation=rotation)
  upright = np.rot90(source, rotation // 90, axes=(1, 2))  # The display matrix turns counter-clockwise.
  decoded = {}
  for backend in decoding.iter_clip_backends():
    frames, info = decoding.read_video_frames(path, short_side=0, backend=backend)
    assert info["backend"] == backend and (info["height"], info["width"]) == upright.shape[1:3]
    decoded[backend] = np.stack(frames)
    assert decoded[backend].shape == upright.shape
    assert np.abs(decoded[backend].astype(int) - upright).mean() < 6
    np.testing.assert_array_equal(decoded[backend], decoded["decord" if decoding.have_decord() else "pyav"])
    shrunk, _ = decoding.read_video_frames(path, short_side=32, backend=backend)
    assert shrunk[0].shape == ((48, 32, 3) if rotation % 180 else (32, 48, 3))
  np.testing.assert_array_equal(np.stack(list(decoding.iter_frames(path))), decoded["pyav"])
  record = shards.video_file_record(path, source_name="phone", short_side=0)
  assert (record["height"], record["width"]) == upright.shape[1:3]
  clip = decoding.decode_clip(record, range(6))
  assert np.abs(clip.astype(int) - upright).mean() < 8


def test_variable_frame_rate_is_placed_on_a_constant_rate_by_timestamp(tmp_path):
  """Frame n shows the source frame on screen at n / fps (FFmpeg's fps filter, round=near): gaps repeat a frame,
  bursts keep the last one, so a frame stride is the same time everywhere in the video."""
  times = [0, 0.1, 0.2, 0.5, 0.6, 0.65, 0.7, 1.0, 1.1, 1.2]
  source = np.stack([np.full((64, 96, 3), 20 * k, np.uint8) for k in range(len(times))])
  path = str(tmp_path / "vfr.mp4")
  testing.write_video(path, source, times=times)
  for backend in decoding.iter_clip_backends():
    frames, info = decoding.read_video_frames(path, short_side=0, backend=backend)
    assert info["backend"] == backend
    assert info["fps"] == pytest.approx(10 / 1.3)  # The average rate: 10 frames in 1.3 s.
    # Slots round(t * fps): 0, 1, 2, 4, 5, 5, 5, 8, 8, 9.
    assert [round(f.mean() / 20) for f in frames] == [0, 1, 2, 2, 3, 6, 6, 6, 8, 9], backend
    assert len(decoding.read_video_frames(path, short_side=0, backend=backend, max_frames=4)[0]) == 4


def test_records_are_made_frame_by_frame(frames, tmp_path, monkeypatch):
  """video_file_record decodes, resizes and encodes one frame at a time: memory is bounded whatever the length.
  Counted by weak references to the decoded frames (PyAV's arrays escape tracemalloc)."""
  assert encoding.encode_mp4(iter(frames), 25) == encoding.encode_mp4(frames, 25)
  assert encoding.encode_jpeg_frames(iter(frames[:3])) == encoding.encode_jpeg_frames(frames[:3])
  path = str(tmp_path / "long.mp4")
  testing.write_video(path, testing.moving_square_frames(num_frames=120, height=64, width=96))
  read_video, alive, most = decoding.read_video, [], []

  def watched_read_video(*args, **kwargs):
    info, decoded = read_video(*args, **kwargs)

    def watched():
      for frame in decoded:
        alive.append(weakref.ref(frame))
        most.append(sum(ref() is not None for ref in alive))
        yield frame

    return info, watched()

  monkeypatch.setattr(decoding, "read_video", watched_read_video)
  for backend in decoding.iter_clip_backends():
    for video_format in ("mp4", "jpeg"):
      alive.clear()
      record = shards.video_file_record(path, source_name="long", video_format=video_format, backend=backend)
      assert record["num_frames"] == 120
      assert max(most) <= 4, (backend, video_format, max(most))  # The first min_frames=2, and the current one.


def test_jpeg_records_of_long_videos_fail_with_a_reason(tmp_path):
  path = str(tmp_path / "long.mp4")
  testing.write_video(path, testing.moving_square_frames(num_frames=30))
  with pytest.raises(decoding.DecodeError, match=r"too long for jpeg: more than --max_jpeg_frames=20 frames"):
    shards.video_file_record(path, source_name="s", video_format="jpeg", max_jpeg_frames=20)
  assert shards.video_file_record(path, source_name="s", video_format="jpeg", max_jpeg_frames=20,
                                  max_frames=20)["num_frames"] == 20
  assert shards.video_file_record(path, source_name="s", video_format="jpeg")["num_frames"] == 30


def test_non_regular_and_missing_files_are_named(tmp_path):
  fifo = str(tmp_path / "pipe.mp4")
  os.mkfifo(fifo)
  with pytest.raises(decoding.DecodeError, match="not a regular file"):
    decoding.read_video(fifo)
  with pytest.raises(decoding.DecodeError, match="file not found"):
    decoding.read_video(str(tmp_path / "missing.mp4"))
