r"""Demo: pretrain a small video ViT on the synthetic demo set, on a laptop CPU, in a few minutes.

  python -m videomae_jax.main --config=configs/demo_pretrain.py --workdir=runs/demo

Builds 256 unlabeled demo videos and their shards under demo_data/pretrain/ if they are missing (4 classes that
differ only by the direction of motion; the labels are not used here, see videomae_jax/data/demo.py), then pretrains
a ViT (width 128, depth 4, 8 frames of 32x32, patch 8: 64 tokens per clip) to reconstruct the raw pixels of the
75% of tokens it does not see. configs/demo_finetune.py then fine-tunes it on 16 labeled videos.

Why this is plain MAE masking (random encoder masking, every hidden token a target) and not V2's dual masking: at
this size the demo must show, within minutes, a pretraining that fine-tuning can use, and here decoder masking takes
that away. Ablation on the demo (docs/demo.md; 3000 steps, configs/demo_finetune.py from each, 2-4 fine-tuning
seeds): no decoder mask 92.2-93.0% top-1, running-cell decoder mask 70.3%, motion decoder mask 74.2-75.8%, random
init 71.9-76.6%. Why is not isolated (at 64 tokens per clip a decoder mask leaves 24 targets per clip; in the V2
paper's ablation, ViT-B on SSv2 with 1568 tokens, the running cell costs 0.13 top-1: 70.28 -> 70.15). Dual masking,
MATS and the motion decoder are what the vit*_pretrain configs run; `--config.masking.encoder=tube
--config.masking.decoder=running_cell` runs them here.

Why raw-pixel targets (VideoMAE's --normlize_target False): the per-tubelet normalized target of a dark, nearly
flat background is mostly amplified codec noise; raw pixels make the loss follow the objects and the
reconstruction picture readable. The big configs keep the official normalized targets.

Measured on this project's 2-core CPU: see the README's quick start (time and loss from a fresh clone).
It leaves checkpoints (runs/demo/checkpoints), TensorBoard logs (runs/demo/tensorboard), metrics.jsonl and a
reconstruction picture (runs/demo/reconstruction.png). Every 500 steps (and at step 0) its evaluators log the kNN
top-1 of the encoder's features (knn/top1) and the held-out reconstruction loss and picture (reconstruction/...),
on the fine-tuning demo's test set (demo_data/test, built on first use); docs/demo.md has the curve.
Shorter or longer: --config.num_train_steps=N --config.checkpoint_every_steps=M.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.pretrain_config("custom")
  model = config.model
  model.width, model.depth, model.num_heads, model.mlp_dim, model.patch_size = 128, 4, 4, 512, 8
  model.decoder_width, model.decoder_depth, model.decoder_num_heads, model.decoder_mlp_dim = 64, 2, 2, 256
  model.num_frames, model.image_size = 8, 32
  model.compute_dtype = "float32"  # CPUs gain nothing from bfloat16 matmuls
  config.masking.encoder = "random"
  config.masking.encoder_ratio = 0.75
  config.masking.decoder = "none"
  config.objective.normalize_targets = False
  config.batch_size = 16
  # One view per decoded clip: with 256 videos, 16 different clips per step teach more than 4 clips seen 4 times.
  config.data.repeated_aug = 1
  # Effective lr = base_lr * 16 / 256 = 1.5e-3, the usual MAE peak lr for a small ViT.
  config.optimizer.base_lr = 0.024
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.min_lr = 1e-5
  config.num_train_steps = 4000
  config.warmup_steps = 20
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.mesh.data = -1
  config.data.sources = [dict(name="demo", path="", stride=2, weight=1.0, num_videos=256)]
  config.data.num_videos_per_epoch = 256
  config.data.demo_dir = "demo_data/pretrain"
  config.data.demo_videos_per_class = 64
  config.data.demo_seed = 0
  # Decoding in this process and keeping the decoded videos (96 MB): on 2 cores a worker process competes with the
  # train step for the same cores, and without the cache decoding was half of every step (docs/demo.md).
  config.data.num_workers = 0
  config.data.decoded_cache_mb = 256
  config.data.reconstruction_video = "videos/right/right_000.mp4"  # under demo_dir
  # Evaluators (videomae_jax.evaluators): is the representation getting better while it trains? The held-out set
  # is the fine-tuning demo's test set (demo_data/test: 128 videos, seed 1, the same folder configs/demo_finetune.py
  # tests on, so the settings below must match its own).
  config.eval.demo_dir = "demo_data/test"
  config.eval.demo_seed = 1
  config.eval.demo_videos_per_class = 32
  # kNN: the pretraining videos' labels (unused by pretraining) are the neighbours, the 128 test videos the queries.
  # Their centred views are decoded once and kept (384 clips of 8 x 32 x 32: 9 MB).
  config.evals.knn = default_config.evaluator_config(
      "knn", every_steps=500, stride=2, batch_size=32, cache_mb=64, k=20, temperature=0.07)
  # Held-out reconstruction loss of the 128 test videos with fixed masks, and the picture of the first one.
  config.evals.reconstruction = default_config.evaluator_config(
      "reconstruction", every_steps=500, stride=2, batch_size=32, cache_mb=64)
  return config
