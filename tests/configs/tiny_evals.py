"""tests/configs/tiny_pretrain.py with every evaluator of a pretraining run (kNN, held-out reconstruction), or
(`:classify`) a tiny fine-tuning run with the classification evaluator; evaluated every 4 steps.

  python -m videomae_jax.main --config=tests/configs/tiny_evals.py --workdir=DIR --config.data.demo_dir=DIR2 \
      --config.eval.demo_dir=DIR3
  python -m videomae_jax.main --config=tests/configs/tiny_evals.py:classify ...
The held-out set (eval.demo_dir) is 8 small demo videos; batches of 8 videos split over up to 8 devices, the last
one padded (12 train videos for kNN: 1.5 batches).
"""
import importlib.util
import os

from videomae_jax import default_config


def _tiny_pretrain():
  spec = importlib.util.spec_from_file_location("tiny_pretrain", os.path.join(os.path.dirname(__file__),
                                                                               "tiny_pretrain.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config(task="pretrain"):
  config = _tiny_pretrain()
  if task == "classify":
    pretrain = config
    config = default_config.finetune_config("custom")
    config.model.update(pretrain.model.to_dict())
    config.model.update(dict(num_classes=4, drop_path_rate=0.1))
    for key in ("batch_size", "num_train_steps", "warmup_steps", "log_every_steps", "checkpoint_every_steps",
                "keep_checkpoints", "fsdp_min_size"):
      config[key] = pretrain[key]
    config.optimizer.update(dict(base_lr=1e-2, grad_clip_norm=1.0))
    config.masking.finetune_keep_ratio = 0.75
    config.data.update(pretrain.data.to_dict())
    config.data.crop_on_device = False
    config.augment.update(dict(rand_augment="", random_erasing=0.0, flip=False))
    config.mixup.prob = 0.0
  config.data.demo_videos_per_class = 3
  config.eval.update(dict(demo_videos_per_class=2, demo_num_frames=24, demo_size=48))
  common = dict(every_steps=4, batch_size=8, stride=2, cache_mb=16)
  if task == "classify":
    config.evals.val = default_config.evaluator_config("classification", num_clips=2, **common)
  else:
    config.evals.knn = default_config.evaluator_config("knn", k=5, **common)
    config.evals.reconstruction = default_config.evaluator_config("reconstruction", **common)
  return config
