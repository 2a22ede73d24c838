r"""Makes a small synthetic labeled video data set whose classes differ only in their motion.

  python -m data_prep.make_demo --output_dir=/tmp/demo_videos [--num_videos_per_class=8] [--seed=0]
  python -m data_prep.build_shards --input=/tmp/demo_videos --output_dir=/tmp/demo_shards --source_name=demo

Writes OUTPUT_DIR/{down,left,right,up}/{class}_{i:03d}.mp4: 2-4 bright textured objects on a dark background, all
moving in the class's direction on a torus, so one frame tells nothing and two frames tell everything. Defaults:
4 classes x 8 videos, 64x64 px, 32 frames at 15 fps, H.264 MP4. Same seed, same bytes.

This program only reads the flags: the videos (and why they look as they do) are videomae_jax.data.demo's.
"""
from __future__ import annotations

import os
from typing import Sequence

from absl import app
from absl import flags

from videomae_jax.data import demo

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Folder for the class sub-folders of MP4 files.")
flags.DEFINE_integer("num_videos_per_class", 8, "Videos per class.")
flags.DEFINE_integer("num_frames", 32, "Frames per video.")
flags.DEFINE_integer("size", 64, "Frame height and width in pixels (even).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  paths = demo.make_demo_dataset(FLAGS.output_dir, num_videos_per_class=FLAGS.num_videos_per_class,
                                 num_frames=FLAGS.num_frames, size=FLAGS.size, seed=FLAGS.seed)
  total = sum(os.path.getsize(p) for p in paths)
  print(f"Wrote {len(paths)} videos ({total / 1e3:.0f} kB) in {len(demo.CLASSES)} classes to {FLAGS.output_dir}")


if __name__ == "__main__":
  app.run(main)
