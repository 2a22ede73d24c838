r"""VideoMAE V2's ViT-B/16, distilled from the K710-fine-tuned ViT-g/14 (the distilled ViT-B most people deploy).

  python -m videomae_jax.tools.from_pytorch --input=vit_g_hybrid_pt_1200e_k710_ft.pth --output=exports/vitg_k710
  python -m videomae_jax.main --config=configs/vitb_distill_from_vitg_k710.py --workdir=runs/vitb_distill \
      --config.init_from=exports/vitb_pretrain --config.distill.teacher=exports/vitg_k710 \
      "--config.data.sources[0].path=K400_TRAIN" "--config.data.sources[1].path=K600_TRAIN" \
      "--config.data.sources[2].path=K700_TRAIN"
  python -m videomae_jax.tools.evaluate --config=configs/vitb_distill_from_vitg_k710.py --workdir=runs/vitb_distill \
      --config.eval.path=K710_VAL_SHARDS
  python -m videomae_jax.tools.plan --config=configs/vitb_distill_from_vitg_k710.py --num_devices=64 --device=h100
The student starts from the VideoMAE V2 ViT-B pretraining (init_from: an export or a pretraining workdir; its head
starts fresh), the teacher is any 710-class ViT-g classifier this project reads (converted official weights, or a
run of configs/vitg_k710_postpretrain.py). The checkpoints hold the student alone: evaluate, label_transfer and
to_pytorch read them as any classifier.

Recipe (VideoMAE V2 paper appendix, following Beyer et al. 2022; videomae_jax.default_config.
vitg_distillation_config): KL between the student's and the teacher's softmax at temperature 3.0, the teacher on
exactly the student's views (one augmentation, mixup and cutmix drawn once for both), 100 epochs of K710, AdamW
(0.9, 0.999), base lr 1e-3 at 1024 clips per step (peak 4e-3), weight decay 0.05, cosine with 5 warmup epochs,
RandAugment m0 (mstd 0.5), mixup 0.8, cutmix 1.0, drop path 0.1, flip, MultiScaleCrop, layer decay 0.75,
gradient clipping 1.0. The teacher runs forward only in bfloat16, held as bfloat16 kernels (1.9 GiB for ViT-g).
On SSv2 the recipe uses base lr 5e-4 and batch 512 (and no flip).

What it should reach (the paper's distilled ViT-B): K400 87.1 top-1 after a further K400 fine-tuning (label_710to400
head rows: configs/vitb_k400_finetune.py with --config.init_from=runs/vitb_distill
--config.head_label_map=label_710to400.json), K600 87.4, SSv2 75.0.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.vitg_distillation_config("B")
  return config
