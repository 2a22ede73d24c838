"""MATS motion scores on real (encoded and decoded) synthetic videos, camera compensation, frame selection, CLI."""
import os
import subprocess
import sys

import av
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from videomae_jax import masking, motion
from videomae_jax.default_config import masking_config
from videomae_jax.models.pretrain import VideoMAEPretrainModel
from videomae_jax.models.variants import model_spec_from_config
from videomae_jax.normalization import IMAGENET_MEAN, IMAGENET_STD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBJECT = 16          # object side in pixels
SIZE = 64
FRAMES = 16
PATCH = 8
GRID = (FRAMES // 2, SIZE // PATCH, SIZE // PATCH)   # (8, 8, 8) = 512 tokens


# ---------------------------------------------------------------------------------------------------------------
# Synthetic videos: a moving gradient square on a blocky random texture, optionally panned by the camera.
# ---------------------------------------------------------------------------------------------------------------
def blocky_texture(rng, height, width, cell=3):
  small = rng.uniform(0, 1, (height // cell + 1, width // cell + 1, 3))
  return (np.kron(small, np.ones((cell, cell, 1)))[:height, :width] * 220 + 20).astype(np.uint8)


def make_scene(pan_per_frame=0, frames=FRAMES, size=SIZE, seed=0):
  """uint8 [F, S, S, 3] frames and the object's top-left corner per frame. The camera pans right by
  `pan_per_frame` px per frame (the background moves left); the object moves down-left 2 px per frame."""
  rng = np.random.default_rng(seed)
  background = blocky_texture(rng, size + 16, size + pan_per_frame * frames + 16)
  yy, xx = np.mgrid[:OBJECT, :OBJECT]
  square = np.stack([200 + 40 * yy / OBJECT, 60 + 100 * xx / OBJECT, 40 + 0 * xx], -1).astype(np.uint8)
  video, corners = [], []
  for f in range(frames):
    left = 8 + pan_per_frame * f
    frame = background[8:8 + size, left:left + size].copy()
    y, x = 4 + 2 * f, 44 - 2 * f
    frame[y:y + OBJECT, x:x + OBJECT] = square
    video.append(frame)
    corners.append((y, x))
  return np.stack(video), corners


def write_mp4(frames, path, crf=18):
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=8)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    stream.options = {"crf": str(crf)}
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def read_mp4(path):
  with av.open(path) as container:
    return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def normalize(frames):
  return jnp.asarray(((frames.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)[None])


def object_path_tokens(corners, grid=GRID, patch=PATCH, tubelet=2):
  """[N] bool: token (t, h, w) touches the object in a frame of tubelet t-1 or t (tubelet 0: 0 or 1), i.e. the
  tubelets its motion score compares."""
  time, height, width = grid
  on_path = np.zeros(grid, bool)
  for t in range(time):
    for compared in ((0, 1) if t == 0 else (t - 1, t)):
      for f in range(compared * tubelet, (compared + 1) * tubelet):
        y, x = corners[f]
        rows = np.arange(height)
        cols = np.arange(width)
        hit_rows = (y < (rows + 1) * patch) & (y + OBJECT > rows * patch)
        hit_cols = (x < (cols + 1) * patch) & (x + OBJECT > cols * patch)
        on_path[t] |= hit_rows[:, None] & hit_cols[None, :]
  return on_path.reshape(-1)


@pytest.fixture(scope="module")
def embed_fn():
  """The model's own patch embedding, randomly initialized (tiny custom model, 16 x 64 px, patch 8)."""
  spec = model_spec_from_config(dict(variant="custom", width=64, depth=1, num_heads=2, mlp_dim=128,
                                     patch_size=PATCH, num_frames=FRAMES, image_size=SIZE, decoder_width=32,
                                     decoder_num_heads=2, decoder_depth=1, compute_dtype="float32"))
  model = VideoMAEPretrainModel(spec)
  video = jnp.zeros((1, FRAMES, SIZE, SIZE, 3))
  indices = jnp.zeros((1, 4), jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), video, indices, indices)
  return jax.jit(lambda clip: model.apply(variables, clip, method=VideoMAEPretrainModel.patch_embeddings))


@pytest.fixture(scope="module")
def compensated_scores_fn(embed_fn):
  return jax.jit(lambda clip: motion.camera_motion_compensated_scores(clip, embed_fn, 2, PATCH, max_shift=8))


# ---------------------------------------------------------------------------------------------------------------
# Scores and selection
# ---------------------------------------------------------------------------------------------------------------
def test_motion_scores_follow_the_official_definition():
  grid = (4, 2, 3)
  embeddings = jax.random.normal(jax.random.key(0), (2, 24, 5))
  scores = np.asarray(motion.motion_scores(embeddings, grid))
  e = np.asarray(embeddings).reshape(2, 4, 6, 5)
  distance = np.sqrt(((e[:, 1:] - e[:, :-1]) ** 2).sum(-1))                  # [B, T'-1, HW]
  expected = np.concatenate([distance[:, :1], distance], axis=1).reshape(2, -1)
  np.testing.assert_allclose(scores, expected, rtol=1e-6)
  assert scores.dtype == np.float32
  gradient = jax.grad(lambda x: motion.motion_scores(x, grid).sum())(embeddings)
  np.testing.assert_array_equal(gradient, 0.0)                                 # stop_gradient inside


def test_select_top_tokens_is_sorted_deterministic_and_keeps_940_for_vit_b():
  spec = model_spec_from_config(dict(variant="B"))
  cfg = masking_config()
  cfg.finetune_keep_ratio = 0.6
  plan = masking.masking_plan(cfg, spec)
  scores = jax.random.uniform(jax.random.key(1), (2, spec.num_tokens))
  kept = np.asarray(motion.select_top_tokens(scores, plan.num_finetune_tokens))
  assert kept.shape == (2, 940) and kept.dtype == np.int32
  for b in range(2):
    np.testing.assert_array_equal(kept[b], np.sort(np.argsort(-np.asarray(scores[b]))[:940]))
  np.testing.assert_array_equal(kept, motion.select_top_tokens(scores, 940))
  ties = jnp.zeros((1, 10))
  np.testing.assert_array_equal(motion.select_top_tokens(ties, 3), [[0, 1, 2]])  # ties go to lower indices


def test_motion_selection_keeps_the_moving_object_after_video_compression(tmp_path, embed_fn):
  frames, corners = make_scene(pan_per_frame=0)
  path = str(tmp_path / "static_camera.mp4")
  write_mp4(frames, path)
  decoded = read_mp4(path)
  assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() > 0.5  # really lossy
  scores = motion.motion_scores(embed_fn(normalize(decoded)), GRID)
  keep = int(0.1 * scores.shape[1])                                            # 51 of 512
  kept = np.asarray(motion.select_top_tokens(scores, keep))[0]
  on_path = object_path_tokens(corners)
  assert on_path.sum() < 0.25 * on_path.size                                   # the path is a small part
  assert on_path[kept].mean() >= 0.9, on_path[kept].mean()


def test_camera_compensation_lets_the_object_win_over_a_panning_background(tmp_path, embed_fn,
                                                                           compensated_scores_fn):
  pan = 2                                                                      # px per frame, 4 per tubelet
  frames, corners = make_scene(pan_per_frame=pan)
  path = str(tmp_path / "panning_camera.mp4")
  write_mp4(frames, path)
  video = normalize(read_mp4(path))
  on_path = object_path_tokens(corners)
  keep = int(0.1 * on_path.size)

  plain = motion.motion_scores(embed_fn(video), GRID)
  plain_kept = np.asarray(motion.select_top_tokens(plain, keep))[0]
  assert on_path[plain_kept].mean() < 0.5, on_path[plain_kept].mean()         # mostly background

  shifts = np.asarray(jax.jit(lambda v: motion.estimate_global_shifts(v, 2, 8))(video))
  np.testing.assert_array_equal(shifts[0], np.tile([[0, -2 * pan]], (GRID[0] - 1, 1)))
  compensated_kept = np.asarray(motion.select_top_tokens(compensated_scores_fn(video), keep))[0]
  assert on_path[compensated_kept].mean() >= 0.9, on_path[compensated_kept].mean()


def test_camera_compensation_changes_nothing_for_a_static_camera(embed_fn, compensated_scores_fn):
  frames, _ = make_scene(pan_per_frame=0)
  video = normalize(frames)
  plain = motion.motion_scores(embed_fn(video), GRID)
  np.testing.assert_allclose(compensated_scores_fn(video), plain, rtol=1e-4, atol=1e-4)


def test_global_shift_search_is_exact_coarse_to_fine():
  # 128 px frames are searched on a 2x pooled copy first, then refined; odd shifts need the refinement.
  rng = np.random.default_rng(3)
  texture = blocky_texture(rng, 200, 200, cell=4).astype(np.float32) / 255.0
  steps = [(3, -5), (-1, 2), (0, 0)]
  origin = np.array([30, 30])
  frames = []
  for step in [(0, 0)] + steps:
    origin = origin - np.array(step)                                        # content moves by +step
    for _ in range(2):
      frames.append(texture[origin[0]:origin[0] + 128, origin[1]:origin[1] + 128])
  video = jnp.asarray(np.stack(frames)[None])
  shifts = np.asarray(jax.jit(lambda v: motion.estimate_global_shifts(v, 2, 8))(video))[0]
  np.testing.assert_array_equal(shifts, steps)


# ---------------------------------------------------------------------------------------------------------------
# Adaptive frame selection
# ---------------------------------------------------------------------------------------------------------------
def test_select_frames_never_picks_empty_tubelets_and_keeps_time_order():
  counts = jnp.asarray([[0, 0, 10, 10, 0, 10], [5, 0, 0, 1, 0, 0]], jnp.float32)
  chosen = np.asarray(motion.select_frames(jax.random.key(0), counts, 2))
  assert chosen.dtype == np.int32 and chosen.shape == (2, 2)
  assert set(chosen[0]) <= {2, 3, 5} and chosen[0, 0] < chosen[0, 1]
  np.testing.assert_array_equal(chosen[1], [0, 3])


def test_select_frames_samples_in_proportion_to_counts():
  counts = jnp.tile(jnp.asarray([[1.0, 2.0, 3.0, 4.0]]), (4000, 1))
  chosen = np.asarray(jax.jit(lambda k: motion.select_frames(k, counts, 1))(jax.random.key(1)))[:, 0]
  frequency = np.bincount(chosen, minlength=4) / 4000
  np.testing.assert_allclose(frequency, [0.1, 0.2, 0.3, 0.4], atol=0.03)


def test_gather_tubelets_moves_the_frames_of_a_tubelet_together():
  video = jnp.arange(2 * 12, dtype=jnp.float32).reshape(2, 12, 1, 1, 1) * jnp.ones((1, 1, 2, 2, 3))
  out = np.asarray(motion.gather_tubelets(video, jnp.asarray([[1, 4], [0, 5]]), 2))
  np.testing.assert_array_equal(out[:, :, 0, 0, 0], [[2, 3, 8, 9], [12, 13, 22, 23]])


def test_adaptive_frame_selection_picks_the_tubelets_where_things_move(embed_fn):
  # 24 candidate frames = 12 tubelets; the object moves only in frames 8..15, so only tubelets 4..8 change.
  frames, _ = make_scene(pan_per_frame=0)
  still = np.concatenate([np.repeat(frames[8:9], 8, 0), frames[8:16], np.repeat(frames[15:16], 8, 0)])
  video = normalize(still)
  select = jax.jit(lambda key, clip: motion.adaptive_frame_selection(
      key, clip, embed_fn, tubelet_size=2, patch_size=PATCH, num_frames=FRAMES // 2, keep_ratio=0.1))
  for seed in range(3):
    chosen_video, chosen = select(jax.random.key(seed), video)
    chosen = np.asarray(chosen)[0]
    assert set(chosen.tolist()) <= {4, 5, 6, 7, 8}, chosen
    assert np.all(np.diff(chosen) > 0)
    frame_ids = (chosen[:, None] * 2 + np.arange(2)).reshape(-1)
    np.testing.assert_array_equal(chosen_video[0], video[0, frame_ids])


# ---------------------------------------------------------------------------------------------------------------
# The visualization CLI on a real MP4
# ---------------------------------------------------------------------------------------------------------------
TINY_CLI_FLAGS = [
    "--config=configs/vitb_pretrain.py", "--config.model.variant=custom", "--config.model.width=64",
    "--config.model.depth=1", "--config.model.num_heads=2", "--config.model.mlp_dim=128",
    "--config.model.patch_size=8", "--config.model.image_size=64", "--config.model.num_frames=8",
    "--config.model.decoder_width=32", "--config.model.decoder_num_heads=2", "--config.model.decoder_depth=1",
]


def run_cli(args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-m", "videomae_jax.tools.visualize"] + TINY_CLI_FLAGS + args, cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-4000:]
  return result


def check_png(path, rows):
  image = np.asarray(Image.open(path).convert("RGB"))
  cell = 128                                              # 64 px frames drawn at least 128 px
  assert image.shape[1] >= 4 * cell                       # 4 tubelets -> 4 columns
  assert image.shape[0] >= rows * cell and image.shape[0] < (rows + 1) * cell + 60
  assert image.std() > 20                                 # not blank
  return image


def test_visualize_cli_draws_frames_scores_and_masks(tmp_path):
  frames, _ = make_scene(pan_per_frame=0, frames=12, size=80)   # cropped to 64 by the CLI
  video = str(tmp_path / "square.mp4")
  write_mp4(frames, video)
  output = str(tmp_path / "masks.png")
  run_cli([f"--video={video}", f"--output={output}", "--config.masking.encoder=motion",
           "--config.masking.decoder=motion"])
  check_png(output, rows=4)


@pytest.mark.slow
def test_visualize_cli_with_a_checkpoint_adds_the_reconstruction(tmp_path):
  import orbax.checkpoint as ocp
  spec = model_spec_from_config(dict(variant="custom", width=64, depth=1, num_heads=2, mlp_dim=128, patch_size=8,
                                     image_size=64, num_frames=8, decoder_width=32, decoder_num_heads=2,
                                     decoder_depth=1, compute_dtype="float32"))
  model = VideoMAEPretrainModel(spec)
  indices = jnp.zeros((1, 4), jnp.int32)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 64, 64, 3)), indices, indices)["params"]
  checkpoint = str(tmp_path / "checkpoint")
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(checkpoint, {"params": params, "step": 0})
  checkpointer.wait_until_finished()
  frames, _ = make_scene(pan_per_frame=1, frames=12, size=64)
  video = str(tmp_path / "square.mp4")
  write_mp4(frames, video)
  output = str(tmp_path / "reconstruction.png")
  run_cli([f"--video={video}", f"--output={output}", f"--checkpoint={checkpoint}"])
  check_png(output, rows=5)
