r"""ViT-B/16 fine-tuning on Kinetics-400 from a VideoMAE V2 pretraining (16 frames x 224, stride 4).

  python -m videomae_jax.main --config=configs/vitb_k400_finetune.py --workdir=runs/vitb_k400 \
      --config.init_from=runs/vitb_pretrain "--config.data.sources[0].path=K400_TRAIN_SHARDS"
  python -m videomae_jax.tools.evaluate --config=configs/vitb_k400_finetune.py --workdir=runs/vitb_k400 \
      --config.eval.path=K400_VAL_SHARDS
init_from also takes a params export of converted official weights (python -m videomae_jax.tools.from_pytorch).

Recipe (the official VideoMAE ViT-B Kinetics script; docs/upstream.md section 4): AdamW (0.9, 0.999), wd 0.05,
official lr 1e-3
per 256 videos -> base_lr 5e-4 here (our batch counts the 2 repeated augmentations), batch 512 clips = 256 videos,
75 epochs with 5 warmup, cosine to 1e-6, layer decay 0.75, drop path 0.1, RandAugment m7-n4, random resized crop
+ flip, random erasing 0.25, mixup 0.8 / cutmix 1.0, label smoothing 0.1. Test: 5 clips x 3 crops, short side 224.
Expect about 81-82% top-1 for the VideoMAE-pretrained ViT-B (V1 reports 81.5 at 1600 epochs of pretraining).
MATS (EVEREST) fine-tuning and inference: --config.masking.finetune_keep_ratio=0.6 keeps 940 of 1568 tokens per
view, ~0.55x the FLOPs (`python -m videomae_jax.tools.inspect_config --config=configs/vitb_k400_finetune.py
--compare_schemes`).
"""
from videomae_jax import default_config


def get_config():
  config = default_config.finetune_config("B")
  config.model.num_classes = 400
  config.model.drop_path_rate = 0.1
  config.batch_size = 512
  config.optimizer.base_lr = 5e-4
  config.optimizer.layer_decay = 0.75
  config.total_epochs = 75
  config.warmup_epochs = 5
  config.data.sources = [dict(name="k400", path="", num_videos=240_000, stride=4, weight=1.0)]
  config.data.num_videos_per_epoch = 240_000
  config.data.repeated_aug = 2
  config.augment.flip = True
  config.eval.num_clips, config.eval.num_crops, config.eval.sampling, config.eval.stride = 5, 3, "uniform", 4
  return config
