r"""ViT-B/16 fine-tuning on Something-Something V2 (174 classes; 16 frames x 224, TSN segment sampling, no flip).

  python -m videomae_jax.main --config=configs/vitb_ssv2_finetune.py --workdir=runs/vitb_ssv2 \
      --config.init_from=runs/vitb_pretrain_ssv2 "--config.data.sources[0].path=SSV2_TRAIN_SHARDS"
  python -m videomae_jax.tools.evaluate --config=configs/vitb_ssv2_finetune.py --workdir=runs/vitb_ssv2 \
      --config.eval.path=SSV2_VAL_SHARDS

Recipe (the official VideoMAE ViT-B SSv2 script; docs/upstream.md section 4): official lr 5e-4 per 256 videos ->
base_lr 2.5e-4
here (2 repeated augmentations counted in the batch), batch 384 clips, 40 epochs with 5 warmup, layer decay 0.75,
drop path 0.1, RandAugment m7-n4, random resized crop WITHOUT flip (left/right is part of the label, e.g. 'pushing
something from left to right'), random erasing 0.25, mixup 0.8 / cutmix 1.0, label smoothing 0.1.
Training clips: one random frame in each of 16 equal segments (config.data.sampling='segment').
Test: 2 clips x 3 crops, TSN-style (segment starts and segment midpoints), short side 224.
Expect about 70% top-1 (VideoMAE ViT-B, 800 epochs on SSv2: 69.6; V2 paper's ViT-B: 70.2-70.3).
"""
from videomae_jax import default_config


def get_config():
  config = default_config.finetune_config("B")
  config.model.num_classes = 174
  config.model.drop_path_rate = 0.1
  config.batch_size = 384
  config.optimizer.base_lr = 2.5e-4
  config.optimizer.layer_decay = 0.75
  config.total_epochs = 40
  config.warmup_epochs = 5
  config.data.sources = [dict(name="ssv2", path="", num_videos=168_913, stride=2, weight=1.0)]
  config.data.num_videos_per_epoch = 168_913
  config.data.sampling = "segment"
  config.augment.flip = False
  config.eval.num_clips, config.eval.num_crops, config.eval.sampling = 2, 3, "segment"
  return config
