r"""Progressive training, stage 2: ViT-g/14 post-pretraining on LabeledHybrid K710 (K400 + K600 + K700 train,
deduplicated, 710 classes under one merged label list).

  python -m videomae_jax.main --config=configs/vitg_k710_postpretrain.py --workdir=runs/vitg_k710 \
      --config.init_from=runs/vitg_pretrain \
      "--config.data.sources[0].path=K400_TRAIN" "--config.data.sources[1].path=K600_TRAIN" \
      "--config.data.sources[2].path=K700_TRAIN"
Each source's shard labels are re-indexed by class name into K710 (config.data.label_set='k710':
videomae_jax.data.label_maps, exact name first, then the official synonym table). The videos shared by the three
sets must be removed when building the shards (the official K710 train list has 658k videos, 67k val).
Stage 3 (configs/vitg_k400_finetune.py) takes this run's head rows through label_710to400.json.

Recipe (the official VideoMAE V2 post-pretraining; docs/upstream.md section 4): AdamW (0.9, 0.999), official lr
1e-3 at batch 128 videos -> effective 5e-4; here
base_lr 5e-4 at batch 256 clips (128 videos x 2 repeated augmentations), warmup 5, 40 epochs, drop path 0.3,
layer decay 0.9, mixup 0.8 / cutmix 1.0, label smoothing 0.1, RandAugment m7-n4, grad clip 5.0, 16 x 224 frames
at stride 4. Activation checkpointing and scanned layers, as in pretraining.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.finetune_config("g")
  config.model.num_classes = 710
  config.model.drop_path_rate = 0.3
  config.model.scan_layers = True
  config.model.remat_policy = "full"
  config.batch_size = 256
  config.optimizer.base_lr = 5e-4
  config.optimizer.layer_decay = 0.9
  config.optimizer.grad_clip_norm = 5.0
  config.total_epochs = 40
  config.warmup_epochs = 5
  default_config.use_k710(config.data)
  config.data.repeated_aug = 2
  config.eval.num_clips, config.eval.num_crops = 5, 3
  config.eval.class_names = ""
  return config
