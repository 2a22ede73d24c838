r"""Demo: fine-tune the demo pretraining (configs/demo_pretrain.py) on the 4 motion-direction classes, then test it.

  python -m videomae_jax.main --config=configs/demo_pretrain.py --workdir=runs/demo
  python -m videomae_jax.main --config=configs/demo_finetune.py --workdir=runs/demo_ft --config.init_from=runs/demo
  python -m videomae_jax.tools.evaluate --config=configs/demo_finetune.py --workdir=runs/demo_ft
The same budget from random initialization (the baseline): leave out --config.init_from, use another workdir.

Same backbone as the demo pretraining (width 128, depth 4, 4 heads, MLP 512, patch 8, 8 frames of 32x32: 64
tokens) with a 4-class head. Training set: 4 labeled videos per class (demo_data/labeled/, another seed than the
pretraining's 256 unlabeled videos); test set: 32 videos per class (demo_data/test/, a third seed), 2 clips x 1
crop per video (the frames are square, so 3 crops along the long side would coincide). 300 steps of 16 clips.

Kept from the official recipe: layer decay 0.75, drop path 0.1, AdamW with warmup and cosine decay, 2 repeated
augmentations, random resized crops, MATS keeping int(0.6 * 64) = 38 tokens per clip in training and test.
Left out, because a 16-video, 300-step run is not what they are for: RandAugment, random erasing and mixup /
cutmix (they regularize long runs on hundreds of thousands of videos; here they would mostly slow down both
runs that the demo compares; `--config.augment.rand_augment=rand-m7-n4-mstd0.5-inc1 --config.mixup.prob=1.0
--config.augment.random_erasing=0.25` turn them back on). No horizontal flip: left and right are classes.

Results: the README's fine-tuning section (both top-1 numbers, measured from a fresh clone). eval_results.json
and confusion_matrix.png land in the workdir.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.finetune_config("custom")
  model = config.model
  model.width, model.depth, model.num_heads, model.mlp_dim, model.patch_size = 128, 4, 4, 512, 8
  model.num_frames, model.image_size = 8, 32
  model.compute_dtype = "float32"  # CPUs gain nothing from bfloat16 matmuls
  model.num_classes = 4
  model.drop_path_rate = 0.1
  config.masking.finetune_keep_ratio = 0.6
  config.batch_size = 16            # 8 decoded clips x 2 repeated augmentations
  config.optimizer.base_lr = 1e-2   # peak lr 1e-2 * 16 / 256 = 6.25e-4: a small model and a short run
  config.optimizer.layer_decay = 0.75
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.min_lr = 1e-6
  config.num_train_steps = 300
  config.warmup_steps = 20
  config.log_every_steps = 10
  config.checkpoint_every_steps = 100
  config.mesh.data = -1
  config.data.sources = [dict(name="demo", path="", stride=2, weight=1.0, num_videos=16)]
  config.data.num_videos_per_epoch = 16
  config.data.demo_dir = "demo_data/labeled"
  config.data.demo_videos_per_class = 4
  config.data.demo_seed = 2
  config.data.num_workers = 0
  config.data.decoded_cache_mb = 64  # the 16 training videos, decoded once (configs/demo_pretrain.py)
  config.augment.rand_augment = ""
  config.augment.crop_scale = (0.5, 1.0)
  config.augment.flip = False
  config.augment.random_erasing = 0.0
  config.mixup.prob = 0.0
  config.eval.demo_dir = "demo_data/test"
  config.eval.demo_seed = 1
  config.eval.demo_videos_per_class = 32
  config.eval.num_clips = 2
  config.eval.num_crops = 1
  config.eval.stride = 2
  config.eval.batch_size = 16
  config.eval.num_workers = 0
  config.eval.class_names = ""
  # Validation during training (videomae_jax.evaluators.classification): the test set with the evaluate program's
  # 2 views per video, every 50 steps and at the end, so the last value is the evaluate program's top-1. Nothing
  # is chosen by it (no early stopping, no checkpoint selection): it shows the curve, the test stays a test.
  config.evals.val = default_config.evaluator_config(
      "classification", every_steps=50, num_clips=2, stride=2, batch_size=16, cache_mb=64)
  return config
