r"""Demo: pretrain a small video ViT on the synthetic demo set, on a laptop CPU, in a few minutes.

  python -m videomae_jax.main --config=configs/demo_pretrain.py --workdir=runs/demo

Builds the demo videos and shards under demo_data/ if they are missing (4 classes that differ only by the
direction of motion), then pretrains a ViT (width 128, depth 4, 8 frames of 64x64, patch 8: 256 tokens per clip)
with dual masking and motion-aware selection: tube masking hides 75% of the tokens from the encoder (64 visible),
and the decoder reconstructs the highest-motion half of the hidden tokens (decoder='motion', 96 targets).
Measured on the 2-core CPU (2026-11-23): 300 steps in 1m41s (fresh clone, idle machine; about 3 min when busy); train/loss (raw-pixel MSE) 0.17 at step
20 -> 0.040 at step 300. It leaves checkpoints (runs/demo/checkpoints), TensorBoard logs (runs/demo/tensorboard),
metrics.jsonl and a reconstruction picture (runs/demo/reconstruction.png).
Shorter or longer: --config.num_train_steps=N --config.checkpoint_every_steps=M.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.pretrain_config("custom")
  model = config.model
  model.width, model.depth, model.num_heads, model.mlp_dim, model.patch_size = 128, 4, 4, 512, 8
  model.decoder_width, model.decoder_depth, model.decoder_num_heads, model.decoder_mlp_dim = 64, 2, 2, 256
  model.num_frames, model.image_size = 8, 64
  model.compute_dtype = "float32"  # CPUs gain nothing from bfloat16 matmuls
  config.masking.encoder = "tube"
  config.masking.encoder_ratio = 0.75
  config.masking.decoder = "motion"
  config.masking.decoder_ratio = 0.5
  # Raw-pixel targets (VideoMAE's --normlize_target False): on the demo's random smooth colour fields the
  # per-tubelet normalized target is mostly unpredictable noise, so its loss barely moves in a CPU-sized run;
  # raw pixels show learning clearly and make the reconstruction picture readable. The big configs keep the
  # official normalized targets.
  config.objective.normalize_targets = False
  config.batch_size = 16  # 4 decoded clips x 4 repeated augmentations
  # Effective lr = base_lr * 16 / 256 = 1.5e-3, the usual MAE peak lr for a small ViT.
  config.optimizer.base_lr = 0.024
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.min_lr = 1e-5
  config.num_train_steps = 300
  config.warmup_steps = 20
  config.log_every_steps = 10
  config.checkpoint_every_steps = 100
  config.mesh.data = -1
  config.data.sources = [dict(name="demo", path="", stride=2, weight=1.0, num_videos=32)]
  config.data.num_videos_per_epoch = 32
  config.data.demo_dir = "demo_data"
  config.data.demo_videos_per_class = 8
  config.data.num_workers = 0
  config.data.reconstruction_video = "videos/right/right_000.mp4"  # under demo_dir
  return config
