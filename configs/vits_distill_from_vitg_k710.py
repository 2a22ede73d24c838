r"""VideoMAE V2's ViT-S/16, distilled from the K710-fine-tuned ViT-g/14.

  python -m videomae_jax.main --config=configs/vits_distill_from_vitg_k710.py --workdir=runs/vits_distill \
      --config.init_from=exports/vits_pretrain --config.distill.teacher=exports/vitg_k710 \
      "--config.data.sources[0].path=K400_TRAIN" "--config.data.sources[1].path=K600_TRAIN" \
      "--config.data.sources[2].path=K700_TRAIN"
  python -m videomae_jax.tools.evaluate --config=configs/vits_distill_from_vitg_k710.py --workdir=runs/vits_distill \
      --config.eval.path=K710_VAL_SHARDS
  python -m videomae_jax.tools.plan --config=configs/vits_distill_from_vitg_k710.py --num_devices=64 --device=h100
The same recipe as configs/vitb_distill_from_vitg_k710.py (its docstring and default_config.
vitg_distillation_config), with a ViT-S student initialized from the VideoMAE V2 ViT-S pretraining
(configs/vits_pretrain.py, or an export of it). The teacher's forward is most of the step's work here: ViT-g on 2048
tokens is about 45x the ViT-S forward and 15x the student's whole train step (`tools.plan`: 5085.6 of 5425.0
GFLOPs per clip).

What it should reach (the paper's distilled ViT-S): K400 83.7 top-1, 84.0 after a further K400 fine-tuning.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.vitg_distillation_config("S")
  return config
