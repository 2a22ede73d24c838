"""videomae_jax.data.demo (`python -m data_prep.make_demo`): small, deterministic, labeled by motion only."""
import json
import os
import time

import numpy as np
import pytest

from videomae_jax.data import decoding
from videomae_jax.data import demo
from videomae_jax.data import shards


def _shift_between(frame_a, frame_b, background):
  """(dy, dx) in [-4, 4]^2 that best maps the moving objects of frame_a onto frame_b."""
  mask_a = np.abs(frame_a.astype(int) - background).sum(-1) > 60
  mask_b = np.abs(frame_b.astype(int) - background).sum(-1) > 60
  scores = {(dy, dx): (np.roll(mask_a, (dy, dx), axis=(0, 1)) & mask_b).sum()
            for dy in range(-4, 5) for dx in range(-4, 5)}
  return max(scores, key=scores.get)


def test_demo_videos_are_small_quick_deterministic_and_move_by_class(tmp_path):
  start = time.time()
  paths = demo.make_demo_dataset(str(tmp_path / "a"), num_videos_per_class=2)
  assert time.time() - start < 30
  assert len(paths) == 8 and sorted(os.listdir(tmp_path / "a")) == sorted(demo.CLASSES)
  assert sum(os.path.getsize(p) for p in paths) < 200_000
  again = demo.make_demo_dataset(str(tmp_path / "b"), num_videos_per_class=2)
  assert [open(p, "rb").read() for p in paths] == [open(p, "rb").read() for p in again]
  expected = {"down": (1, 0), "left": (0, -1), "right": (0, 1), "up": (-1, 0)}
  for path in paths:
    frames, info = decoding.read_video_frames(path, short_side=0, backend="pyav")
    assert len(frames) == 32 and frames[0].shape == (64, 64, 3) and info["fps"] == 15
    background = np.median(np.stack(frames), axis=0)
    dy, dx = _shift_between(frames[10], frames[11], background)  # 1.3-2.7 px per frame
    want = expected[os.path.basename(os.path.dirname(path))]
    assert (np.sign(dy), np.sign(dx)) == want, (path, dy, dx)


def test_single_frames_do_not_reveal_the_class():
  # The object moves on a torus from a uniform start: its position in one frame is uniform for every class.
  positions = {name: [] for name in demo.CLASSES}
  for name in demo.CLASSES:
    for seed in range(40):
      frames = demo.render_video(np.random.default_rng(seed), name, num_frames=8, size=32)
      background = np.median(frames, axis=0)
      ys, xs = np.nonzero(np.abs(frames[4].astype(int) - background).sum(-1) > 60)
      if len(ys):
        positions[name].append((ys.mean(), xs.mean()))
  means = np.array([np.mean(positions[name], axis=0) for name in demo.CLASSES])
  assert np.abs(means - means.mean(axis=0)).max() < 5


def test_build_demo_shards_in_process_reuses_only_what_it_was_asked_for(tmp_path):
  args = dict(num_videos_per_class=1, num_frames=8, size=32)
  shard_dir = demo.build_demo_shards(str(tmp_path), **args)
  description = shards.read_description(shard_dir)
  assert description["num_records"] == 4 and description["labels"] == sorted(demo.CLASSES)
  mtime = os.path.getmtime(os.path.join(shard_dir, shards.DESCRIPTION_FILE))
  assert demo.build_demo_shards(str(tmp_path), **args) == shard_dir  # the same request reuses the shards
  assert os.path.getmtime(os.path.join(shard_dir, shards.DESCRIPTION_FILE)) == mtime
  with pytest.raises(ValueError, match="Delete .* to rebuild it"):  # another request is refused, nothing deleted
    demo.build_demo_shards(str(tmp_path), **dict(args, seed=5))
  assert shards.read_description(shard_dir)["num_records"] == 4
  os.remove(os.path.join(tmp_path, demo.DEMO_FILE))  # shards from before demo.json existed: refused too
  with pytest.raises(ValueError, match="older version of make_demo"):
    demo.build_demo_shards(str(tmp_path), **args)


def test_build_demo_shards_finishes_a_build_killed_midway(tmp_path):
  args = dict(num_videos_per_class=1, num_frames=8, size=32)
  reference = demo.build_demo_shards(str(tmp_path / "whole"), **args)
  # Killed after demo.json and some videos were written, before the shards: the next call finishes the build.
  os.makedirs(tmp_path / "killed")
  with open(tmp_path / "killed" / demo.DEMO_FILE, "w") as f:
    json.dump(dict(renderer_version=demo.RENDERER_VERSION, video_format="mp4", seed=0, **args), f)
  demo.make_demo_dataset(str(tmp_path / "killed" / "videos"), classes=("down",), num_videos_per_class=1,
                         num_frames=8, size=32)
  finished = demo.build_demo_shards(str(tmp_path / "killed"), **args)
  assert shards.read_description(finished)["num_records"] == 4
  for name in sorted(os.listdir(reference)):
    if name.endswith(".array_record"):
      assert open(os.path.join(reference, name), "rb").read() == open(os.path.join(finished, name), "rb").read()


def test_a_demo_folder_made_with_other_settings_is_a_config_error_naming_the_fix(tmp_path):
  from videomae_jax import default_config, resolve  # pylint: disable=import-outside-toplevel
  from videomae_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  config = default_config.pretrain_config("S")
  config.data.demo_dir, config.data.demo_videos_per_class, config.data.num_workers = str(tmp_path / "d"), 1, 0
  resolve.resolve(config)
  config.data.demo_size = 32
  with pytest.raises(ConfigError, match=r"Delete .* to rebuild it, or point the demo at another folder"):
    resolve.resolve(config)
