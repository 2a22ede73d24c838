r"""Demo: distill the demo's fine-tuned classifier into a smaller ViT, on a laptop CPU, and test it.

  python -m videomae_jax.main --config=configs/demo_pretrain.py --workdir=runs/demo
  python -m videomae_jax.main --config=configs/demo_finetune.py --workdir=runs/demo_ft --config.init_from=runs/demo
  python -m videomae_jax.main --config=configs/demo_distill.py --workdir=runs/demo_distill \
      --config.distill.teacher=runs/demo_ft
  python -m videomae_jax.tools.evaluate --config=configs/demo_distill.py --workdir=runs/demo_distill
The same student trained on the labels alone, with the same steps, batch, optimizer and augmentation (the baseline):
  python -m videomae_jax.main --config=configs/demo_distill.py:labels --workdir=runs/demo_labels
  python -m videomae_jax.tools.evaluate --config=configs/demo_distill.py --workdir=runs/demo_labels

Teacher: the demo fine-tuned classifier (configs/demo_finetune.py: width 128, depth 4, 4 heads, 8 frames of 32x32,
patch 8, 4 classes), held and run in bfloat16. Student: width 64, depth 2, 2 heads, MLP 256, the same patch (so
teacher and student keep the same MATS tokens: 38 of 64, both at ratio 0.6), from random initialization (the demo
has no pretrained model of this size), about 1/7 of the teacher's parameters (0.12M of 0.84M).

Data: the 16 labeled videos of the fine-tuning (demo_data/labeled) and the 256 videos of the pretraining
(demo_data/pretrain) read without their labels (label_map 'none'): the distillation loss never reads a label, the
teacher labels every clip, which is the classic gain of distillation: unlabeled videos become training signal.
The labels-only baseline (':labels') can use only the 16 labeled videos. Everything else is the same in both runs:
600 steps of 16 clips (8 decoded videos x 2 views), AdamW, lr 1e-2 * 16 / 256 with warmup and cosine decay,
random resized crops, no flip (left and right are classes), no RandAugment, mixup or random erasing (as
configs/demo_finetune.py says, they serve long runs on many videos), KL at temperature 3.

Results over 2 seeds: docs/demo.md ("Distillation").
"""
from videomae_jax import default_config


def get_config(arg: str = ""):
  """arg '' : distillation; 'labels': the same student and schedule trained on the labeled videos' labels alone."""
  if arg not in ("", "labels"):
    raise ValueError(f"configs/demo_distill.py:{arg}: use no argument (distillation) or ':labels' (the baseline).")
  config = default_config.finetune_config("custom")
  config.task = "distill" if arg == "" else "classify"
  model = config.model
  model.width, model.depth, model.num_heads, model.mlp_dim, model.patch_size = 64, 2, 2, 256, 8
  model.num_frames, model.image_size = 8, 32
  model.compute_dtype = "float32"  # CPUs gain nothing from bfloat16 matmuls; the teacher still runs in bfloat16
  model.num_classes = 4
  model.drop_path_rate = 0.1
  config.masking.finetune_keep_ratio = 0.6
  teacher = config.distill.teacher_model
  teacher.variant, teacher.width, teacher.depth, teacher.num_heads, teacher.mlp_dim = "custom", 128, 4, 4, 512
  teacher.patch_size, teacher.num_frames, teacher.image_size, teacher.num_classes = 8, 8, 32, 4
  teacher.compute_dtype = "bfloat16"
  config.distill.teacher_keep_ratio = 0.6  # what the teacher was fine-tuned and tested with
  config.distill.temperature = 3.0
  config.batch_size = 16            # 8 decoded clips x 2 repeated augmentations
  config.optimizer.base_lr = 1e-2   # peak lr 1e-2 * 16 / 256 = 6.25e-4, as configs/demo_finetune.py
  config.optimizer.layer_decay = 1.0  # a randomly initialized student has no pretrained layers to protect
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.min_lr = 1e-6
  config.num_train_steps = 600
  config.warmup_steps = 20
  config.log_every_steps = 50
  config.checkpoint_every_steps = 600
  config.mesh.data = -1
  # The labeled videos are configs/demo_finetune.py's (built here too if missing); the unlabeled ones are the
  # pretraining's, which the teacher's pretraining built.
  labeled = dict(name="labeled", path="", stride=2, weight=16.0, num_videos=16)
  unlabeled = dict(name="unlabeled", path="demo_data/pretrain/shards", stride=2, weight=256.0, num_videos=256,
                   label_map="none")
  config.data.sources = [labeled, unlabeled] if arg == "" else [labeled]
  config.data.num_videos_per_epoch = 272 if arg == "" else 16
  config.data.demo_dir = "demo_data/labeled"
  config.data.demo_videos_per_class = 4
  config.data.demo_seed = 2
  config.data.num_workers = 0
  config.data.decoded_cache_mb = 256  # the 272 training videos, decoded once (configs/demo_pretrain.py)
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
  return config
