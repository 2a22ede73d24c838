"""A pretraining run small enough for end-to-end tests on a 2-core CPU (a few seconds per step at most).

  python -m videomae_jax.main --config=tests/configs/tiny_pretrain.py --workdir=DIR --config.data.demo_dir=DIR2
"""
from videomae_jax import default_config


def get_config():
  config = default_config.pretrain_config("custom")
  model = config.model
  model.width, model.depth, model.num_heads, model.mlp_dim, model.patch_size = 32, 2, 2, 64, 8
  model.decoder_width, model.decoder_depth, model.decoder_num_heads, model.decoder_mlp_dim = 16, 1, 2, 32
  model.num_frames, model.image_size = 4, 32
  model.compute_dtype = "float32"
  config.masking.encoder = "tube"
  config.masking.encoder_ratio = 0.75
  config.masking.decoder = "running_cell"
  config.batch_size = 16  # 8 decoded clips x 2 views: the clips split over 8 devices (crops on the device)
  config.optimizer.base_lr = 1e-3
  config.optimizer.grad_clip_norm = 1.0
  config.num_train_steps = 12
  config.warmup_steps = 2
  config.log_every_steps = 2
  config.checkpoint_every_steps = 4
  config.keep_checkpoints = 10
  config.fsdp_min_size = 256
  config.data.sources = [dict(name="demo", path="", stride=2, weight=1.0, num_videos=16)]
  config.data.num_videos_per_epoch = 16
  config.data.repeated_aug = 2
  config.data.demo_videos_per_class = 4
  config.data.demo_num_frames, config.data.demo_size = 24, 48  # small videos: quick to build and decode
  config.data.num_workers = 0
  return config
