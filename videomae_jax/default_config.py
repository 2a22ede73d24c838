"""Default experiment configuration; files in configs/ start from these and set the recipe values.

Keys (a config file may override any of them, and so may `--config.key=value` on the command line):
  task                  'pretrain' or 'finetune'
  model.*               backbone (see videomae_jax.models.variants.model_spec_from_config)
  masking.*             encoder / decoder masking and MATS token selection (videomae_jax.masking)
  data.*                input pipeline (videomae_jax.data)
  optimizer.*           AdamW recipe; lr = base_lr * batch_size / 256
  batch_size            global clips per step, counting repeated augmentations
  total_epochs, warmup_epochs, num_train_steps (-1: derived from epochs and data.num_videos_per_epoch)
  mesh.*                device mesh axis sizes (-1: the rest)
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def model_config(variant: str = "B") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      variant=variant,
      # Optional explicit dimensions; unset means the variant's (REFERENCE.md section 1).
      width=config_dict.placeholder(int),
      depth=config_dict.placeholder(int),
      num_heads=config_dict.placeholder(int),
      mlp_dim=config_dict.placeholder(int),
      patch_size=config_dict.placeholder(int),
      decoder_width=config_dict.placeholder(int),
      decoder_depth=config_dict.placeholder(int),
      decoder_num_heads=config_dict.placeholder(int),
      decoder_mlp_dim=config_dict.placeholder(int),
      num_frames=16,
      image_size=224,
      tubelet_size=2,
      drop_path_rate=0.0,
      compute_dtype="bfloat16",
      scan_layers=False,
      remat_policy="none",
      attention_impl="auto",
      pos_embed_grid=config_dict.placeholder(tuple),
      num_classes=0,
      head_init_scale=0.001,
      head_dropout_rate=0.0,
  ))


def masking_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      encoder="tube",            # tube | random | motion
      decoder="running_cell",    # none | running_cell | motion
      encoder_ratio=0.9,         # fraction of tokens hidden from the encoder
      decoder_ratio=0.5,         # fraction of tokens the decoder drops (running_cell / motion decoder)
      motion_keep_ratio=0.3,     # MATS: fraction of tokens kept by motion score (encoder='motion')
      finetune_keep_ratio=1.0,   # MATS at fine-tuning / inference: fraction of tokens kept (0.6 in EVEREST)
      camera_motion_compensation=False,  # subtract the global (camera) motion before scoring
  ))


def optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      base_lr=1.5e-4,            # scaled by batch_size / 256
      min_lr=1e-5,
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      weight_decay=0.05,
      grad_clip_norm=0.02,
      layer_decay=1.0,           # fine-tuning: scale ld**(L+1-i)
  ))


def pretrain_config(variant: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "pretrain"
  config.seed = 0
  config.model = model_config(variant)
  config.masking = masking_config()
  config.optimizer = optimizer_config()
  config.batch_size = 8192
  config.total_epochs = 1200
  config.warmup_epochs = 120
  config.num_train_steps = -1
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.init_from = ""
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  config.data = ml_collections.ConfigDict(dict(
      # UnlabeledHybrid (REFERENCE.md section 4): (name, shard folder, number of clips, frame stride).
      sources=[
          dict(name="k710", path="", num_videos=658_000, stride=4, weight=658_000),
          dict(name="ssv2", path="", num_videos=169_000, stride=2, weight=169_000),
          dict(name="ava", path="", num_videos=21_000, stride=4, weight=21_000),
          dict(name="webvid", path="", num_videos=250_000, stride=4, weight=250_000),
          dict(name="instagram", path="", num_videos=250_000, stride=4, weight=250_000),
      ],
      num_videos_per_epoch=1_348_000,
      repeated_aug=4,            # decode once, this many independent crops + masks (counted in batch_size)
      multiscale_crop_scales=(1.0, 0.875, 0.75, 0.66),
      flip=False,
      num_workers=8,
  ))
  return config
