r"""Progressive training, stage 3: ViT-g/14 fine-tuning on K400 from the K710 post-pretraining, whose 710-class
head becomes the 400-class head by taking rows (label_710to400.json; config.head_label_map='k400').

  python -m videomae_jax.main --config=configs/vitg_k400_finetune.py --workdir=runs/vitg_k400 \
      --config.init_from=runs/vitg_k710 "--config.data.sources[0].path=K400_TRAIN"
  python -m videomae_jax.tools.evaluate --config=configs/vitg_k400_finetune.py --workdir=runs/vitg_k400 \
      --config.eval.path=K400_VAL
The transferred model can also be tested before any K400 training:
  python -m videomae_jax.tools.label_transfer --input=runs/vitg_k710 --label_map=k400 --output=exports/vitg_k710_k400
  python -m videomae_jax.tools.evaluate --config=configs/vitg_k400_finetune.py --workdir=runs/vitg_k710_as_k400 \
      --params=exports/vitg_k710_k400

Target (VideoMAE V2 paper; docs/upstream.md section 4): 88.5% top-1 at 16 x 224, 5 clips x 3 crops. The schedule
of this short stage is
not published: the values below (5 epochs, 1 warmup, base_lr 1e-4 at 256 clips, drop path 0.3, layer decay
0.9, the usual augmentation) are our starting point; check them against the official script before a full run.
"""
from videomae_jax import default_config


def get_config():
  config = default_config.finetune_config("g")
  config.model.num_classes = 400
  config.model.drop_path_rate = 0.3
  config.model.scan_layers = True
  config.model.remat_policy = "full"
  config.head_label_map = "k400"
  config.batch_size = 256
  config.optimizer.base_lr = 1e-4
  config.optimizer.layer_decay = 0.9
  config.optimizer.grad_clip_norm = 5.0
  config.total_epochs = 5
  config.warmup_epochs = 1
  config.data.sources = [dict(name="k400", path="", num_videos=240_000, stride=4, weight=1.0)]
  config.data.label_set = "k400"
  config.data.num_videos_per_epoch = 240_000
  config.eval.num_clips, config.eval.num_crops = 5, 3
  return config
