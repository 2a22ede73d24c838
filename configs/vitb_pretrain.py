r"""VideoMAE V2 ViT-B/16 pretraining on UnlabeledHybrid with dual masking (official recipe).

Run (after building the hybrid shards with data_prep/ and setting each config.data.sources[i].path):
  python -m videomae_jax.main --config=configs/vitb_pretrain.py --workdir=runs/vitb_pretrain
Look at the compiled step without training:
  python -m videomae_jax.tools.inspect_config --config=configs/vitb_pretrain.py

Expect: 160 encoder tokens per clip (tube masking 0.9), running-cell decoder masking 0.5, batch 4096 clips per
step counting 4 repeated augmentations, effective lr = base_lr * 4096 / 256, 1200 epochs with 120 warmup.
Parameter counts and FLOPs are printed by `tools.inspect_config` (docs/upstream.md lists the official counts).
"""
from videomae_jax import default_config


def get_config():
  config = default_config.pretrain_config("B")
  config.model.scan_layers = False
  config.model.remat_policy = "none"
  config.batch_size = 4096
  # Effective lr of the official script for this size: 2.5e-4 * 4096 / 256.
  config.optimizer.base_lr = 2.5e-4
  return config
