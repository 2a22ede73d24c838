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
      decoder_ratio=0.5,         # decoder drop fraction: running_cell 0.25/0.5/0.75 of all tokens; motion: of the
                                 # encoder-hidden tokens (unused after encoder='motion', see videomae_jax.masking)
      motion_keep_ratio=0.3,     # MATS: fraction of tokens kept by motion score (encoder='motion')
      finetune_keep_ratio=1.0,   # MATS at fine-tuning / inference: fraction of tokens kept (0.6 in EVEREST)
      camera_motion_compensation=False,  # remove the global (camera) translation before scoring motion
      camera_max_shift=16,       # pixels: largest camera translation searched between consecutive tubelets
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
  # Per-tubelet normalized pixel targets (REFERENCE.md section 2); False: raw pixels.
  config.objective = ml_collections.ConfigDict(dict(normalize_targets=True))
  config.optimizer = optimizer_config()
  config.batch_size = 8192
  config.total_epochs = 1200
  config.warmup_epochs = 120
  config.warmup_steps = -1            # >= 0 overrides warmup_epochs
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
      # Cut and resize the R crops in the train step (videomae_jax.device_crops) instead of in the grain workers:
      # the host only decodes (the resizes were ~30% on top of decoding), and the batch ships each clip once.
      # Needs (batch_size / repeated_aug) divisible by the number of devices.
      crop_on_device=True,
      crop_canvas=(0, 0),        # (height, width) clips are placed in; (0, 0): the shards' max_frame_size
      num_workers=8,             # grain worker processes decoding clips (0: in the training process)
      demo_dir="",               # build the synthetic demo shards here if missing; sources without a path use them
      demo_videos_per_class=8,   # the demo's videos: data_prep.make_demo.demo_arguments reads these demo_* keys
      demo_seed=0,
      demo_num_frames=32,
      demo_size=64,
      reconstruction_video="",   # after training, draw this video's reconstruction to {workdir}/reconstruction.png
      # Frames per clip in the batch; 0 means model.num_frames. MATS adaptive frame selection decodes about 1.5x
      # the needed frames (an even number, e.g. 24 for 16) and picks tubelets on device.
      num_candidate_frames=0,
      video_decoder="auto",      # MP4 shard decoder: auto (= pyav) | pyav | decord (videomae_jax.data.decoding)
      worker_buffer_size=2,      # local batches each grain worker prepares ahead
      # Each source may also set: label_map ('' | 'none' | 'k400' | 'k600' | 'k700' | 'k710' | file of names),
      # or tfds / split / data_dir / video_key / label_key instead of path (videomae_jax.data.pipeline).
  ))
  return config


def finetune_config(variant: str = "B") -> ml_collections.ConfigDict:
  """Supervised fine-tuning / post-pretraining defaults (REFERENCE.md section 4; videomae_jax.finetune).

  Learning rate: ours is base_lr * batch_size / 256 with batch_size counting repeated augmentations, while the
  official scripts scale by videos per step (batch_size / repeated_aug). To reproduce an official `--lr X` set
  base_lr = X / repeated_aug.
  """
  config = ml_collections.ConfigDict()
  config.task = "finetune"
  config.seed = 0
  config.model = model_config(variant)
  config.model.num_classes = 400
  config.model.drop_path_rate = 0.1
  config.model.head_init_scale = 0.001
  config.masking = masking_config()        # only finetune_keep_ratio and camera_* apply to fine-tuning
  config.optimizer = optimizer_config()
  config.optimizer.base_lr = 5e-4           # official --lr 1e-3 over videos, with 2 repeated augmentations
  config.optimizer.min_lr = 1e-6
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.05
  config.optimizer.grad_clip_norm = 0.0     # off; post-pretraining uses 5.0
  config.optimizer.layer_decay = 0.75
  config.batch_size = 512                   # clips per step, counting repeated augmentations
  config.total_epochs = 90
  config.warmup_epochs = 5
  config.num_train_steps = -1
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.init_from = ""                     # pretraining workdir / params export / converted official weights
  config.head_label_map = ""                # JSON list re-indexing a loaded head (e.g. label_710to400.json)
  config.mixup_groups = 0                   # 0: one mixing group per device (the partner stays local)
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  config.data = ml_collections.ConfigDict(dict(
      # Labeled sources: (name, shard folder, number of videos, frame stride). Several sources relabeled into one
      # merged label set (label_set='k710', videomae_jax.data.label_maps) is post-pretraining.
      sources=[dict(name="k400", path="", num_videos=240_000, stride=4, weight=240_000)],
      label_set="",                          # '' : the shards' own labels; 'k400'...'k710' or a names file
      num_videos_per_epoch=240_000,
      repeated_aug=2,                        # decode once, this many independent augmentations (in batch_size)
      sampling="random",                     # training clip: random window of num_frames * stride ('segment':
                                             # TSN-style, one random frame per segment, as SSv2)
      num_workers=8,
  ))
  config.augment = ml_collections.ConfigDict(dict(
      rand_augment="rand-m7-n4-mstd0.5-inc1",  # '' disables
      crop_scale=(0.08, 1.0),
      crop_ratio=(0.75, 4.0 / 3.0),
      flip=True,                             # False for SSv2 (left/right is in the label)
      random_erasing=0.25,                   # on device, per clip, same box on every frame
  ))
  config.mixup = ml_collections.ConfigDict(dict(
      mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1))
  config.eval = ml_collections.ConfigDict(dict(
      path="",                               # shard folder of the test / validation split
      num_clips=5,                           # temporal views (SSv2: 2)
      num_crops=3,                           # spatial views along the long side
      sampling="uniform",                    # 'uniform' windows (Kinetics) or 'segment' (SSv2, TSN-style)
      stride=4,                              # frame stride of a 'uniform' window
      short_side=0,                          # 0: resize the short side to config.model.image_size
      batch_size=16,                         # views per forward pass
      num_workers=4,                         # decoding threads
      max_videos=-1,                         # -1: all
      class_names="",                        # optional label list for the report
  ))
  return config
