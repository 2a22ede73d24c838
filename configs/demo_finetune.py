r"""Demo: fine-tune the demo pretraining (configs/demo_pretrain.py) on the 4 motion-direction classes, then test it.

  python -m videomae_jax.main --config=configs/demo_pretrain.py --workdir=runs/demo
  python -m videomae_jax.main --config=configs/demo_finetune.py --workdir=runs/demo_ft --config.init_from=runs/demo
  python -m videomae_jax.evaluate --config=configs/demo_finetune.py --workdir=runs/demo_ft
The same without pretraining (the baseline): leave out --config.init_from and use another workdir.

Same backbone as the demo pretraining (width 128, depth 4, 4 heads, MLP 512, patch 8, 8 frames of 64x64: 256 tokens),
a 4-class head, and the full fine-tuning recipe at demo scale: layer decay 0.75, drop path 0.1, RandAugment
m7-n4, random resized crop, random erasing 0.25, mixup 0.8 / cutmix 1.0 with label smoothing 0.1, 2 repeated
augmentations, MATS keeping int(0.6 * 256) = 153 tokens per clip. No horizontal flip: left and right are classes.
Training videos: the pretraining's demo_data/ (8 per class); test videos: demo_data_test/ (another seed, 8 per
class), 2 clips x 1 crop per video (the frames are square, so 3 crops along the long side would coincide).
eval_results.json lands in the workdir; about 3 minutes of training on a 2-core CPU.

Measured (2026-11-23, 2-core CPU, 300 steps, after 300 steps of configs/demo_pretrain.py whose loss only went from
1.07 to 0.99): test top-1 25.0% from the pretraining and 21.9% from random init, i.e. chance for 4 classes. With
32 training videos the backbone memorizes textures instead of the motion direction (87.5% on the training videos
with the heavy augmentation turned off); with 512 training videos, from scratch and without augmentation, the
training accuracy is still ~35% after 1,250 steps and the test accuracy stays at chance. The demo checks the
machinery end to end; it can show the value of pretraining only once the demo pretraining itself learns something.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.finetune_config("custom")
  model = config.model
  model.width, model.depth, model.num_heads, model.mlp_dim, model.patch_size = 128, 4, 4, 512, 8
  model.num_frames, model.image_size = 8, 64
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
  config.data.sources = [dict(name="demo", path="", stride=2, weight=1.0, num_videos=32)]
  config.data.num_videos_per_epoch = 32
  config.data.demo_dir = "demo_data"
  config.data.demo_videos_per_class = 8
  config.data.num_workers = 0
  config.augment.flip = False
  config.eval.demo_dir = "demo_data_test"
  config.eval.demo_seed = 1
  config.eval.demo_videos_per_class = 8
  config.eval.num_clips = 2
  config.eval.num_crops = 1
  config.eval.stride = 2
  config.eval.batch_size = 16
  config.eval.num_workers = 0
  config.eval.class_names = ""
  return config
