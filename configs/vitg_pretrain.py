r"""VideoMAE V2 ViT-g/14 pretraining on UnlabeledHybrid with dual masking (official recipe).

Run (after building the hybrid shards with data_prep/ and setting each config.data.sources[i].path):
  python -m videomae_jax.main --config=configs/vitg_pretrain.py --workdir=runs/vitg_pretrain
Look at the compiled step without training:
  python -m videomae_jax.tools.inspect_config --config=configs/vitg_pretrain.py

Expect: 208 encoder tokens per clip (tube masking 0.9), running-cell decoder masking 0.5, batch 8192 clips per
step counting 4 repeated augmentations, effective lr = base_lr * 8192 / 256, 1200 epochs with 120 warmup.
Parameter counts and FLOPs are printed by `tools.inspect_config` (docs/upstream.md lists the official counts).
"""
from videomae_jax import default_config


def get_config():
  config = default_config.pretrain_config("g")
  config.model.scan_layers = True
  config.model.remat_policy = "full"
  config.batch_size = 8192
  # Effective lr of the official script for this size: 1.5e-4 * 8192 / 256.
  config.optimizer.base_lr = 1.5e-4
  return config
