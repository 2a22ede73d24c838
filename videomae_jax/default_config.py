"""The config schema: every key the code reads, declared once with what it means. configs/*.py start from here.

`base_config()` declares every key with a neutral default; `pretrain_config()` and `finetune_config()` set the
official recipes on top (VideoMAE V2 paper and its released scripts). Config files return a config built from one
of them; `python -m videomae_jax.main` locks it, so `--config.KEY=VALUE` overrides any declared key and a typo
fails at once. Data-dependent values (the crop canvas, the demo's shard folders) are filled in by
`videomae_jax.resolve.resolve` before the run's `config.json` is written, so that file is the config that ran.
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def model_config(variant: str = "B") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      variant=variant,                       # Ti | S | B | L | H | g | custom (docs/models.md has the table)
      # Explicit dimensions; unset means the variant's.
      width=config_dict.placeholder(int),
      depth=config_dict.placeholder(int),
      num_heads=config_dict.placeholder(int),
      mlp_dim=config_dict.placeholder(int),
      patch_size=config_dict.placeholder(int),
      decoder_width=config_dict.placeholder(int),
      decoder_depth=config_dict.placeholder(int),
      decoder_num_heads=config_dict.placeholder(int),
      decoder_mlp_dim=config_dict.placeholder(int),
      num_frames=16,                         # frames per clip the model sees
      image_size=224,                        # square input side in pixels
      tubelet_size=2,                        # frames per tubelet (patch depth)
      drop_path_rate=0.0,                    # stochastic depth of the encoder blocks
      compute_dtype="bfloat16",              # float32 | bfloat16 (matmuls; parameters stay float32)
      scan_layers=False,                     # one nn.scan over the blocks: compile time independent of depth
      remat_policy="none",                   # none | full | dots | dots_with_no_batch_dims | nothing_saveable
      attention_impl="auto",                 # auto | kernel (CPU) | blocked | xla | cudnn (models.attention)
      pos_embed_grid=config_dict.placeholder(tuple),  # (t, h, w) the position table was laid out for; None: own grid
      num_classes=0,                         # classifier classes (0: no head)
      pooled_norm="fc_norm",                 # classifier pooling: fc_norm (official) | norm | none (models.classifier)
      head_init_scale=0.001,                 # the classifier head's init is scaled by this (official init_scale)
      head_dropout_rate=0.0,                 # dropout before the classifier head
  ))


def masking_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      encoder="tube",            # tube | random | motion
      decoder="running_cell",    # none | running_cell | motion
      encoder_ratio=0.9,         # fraction of tokens hidden from the encoder
      decoder_ratio=0.5,         # decoder drop fraction: running_cell 0.25/0.5/0.75 of all tokens; motion: of the
                                 # encoder-hidden tokens (unused after encoder='motion', see videomae_jax.masking)
      motion_keep_ratio=0.3,     # MATS: fraction of tokens kept by motion score (encoder='motion')
      finetune_keep_ratio=1.0,   # MATS at fine-tuning / inference: fraction of tokens kept (0.6 in EVEREST)
      camera_motion_compensation=False,  # remove the global (camera) translation before scoring motion
      camera_max_shift=16,       # pixels: largest camera translation searched between consecutive tubelets
  ))


def optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      base_lr=1.5e-4,            # peak lr = base_lr * batch_size / 256
      min_lr=1e-5,               # end of the cosine decay
      b1=0.9,                    # AdamW betas and epsilon
      b2=0.95,
      eps=1e-8,
      weight_decay=0.05,         # decoupled; never on 1-D params, biases or mask_token
      grad_clip_norm=0.02,       # global-norm clipping; 0: off
      layer_decay=1.0,           # fine-tuning: update of layer i scaled by ld**(L+1-i); 1.0: off
      frozen_params="",          # regex of '/'-joined parameter paths never updated ('encoder/.*': a linear probe)
  ))


def data_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      # Training sources, each dict(name, path | tfds (+ split, data_dir, video_key, label_key), num_videos, stride,
      # weight, label_map): shard folders from data_prep.build_shards (or TFDS data sets), mixed by weight, each
      # read at its own frame stride; label_map '' | 'none' | 'k400' | 'k600' | 'k700' | 'k710' | names file.
      sources=[dict(name="train", path="", num_videos=0, stride=4, weight=1.0)],
      label_set="",              # relabel every source into this merged set ('k710': post-pretraining)
      num_videos_per_epoch=1,    # videos per epoch (the schedule's epoch length)
      repeated_aug=1,            # decode once, this many independent views (counted in batch_size)
      sampling="random",         # training clip: 'random' window at the source's stride | 'segment' (TSN, SSv2)
      multiscale_crop_scales=(1.0, 0.875, 0.75, 0.66),  # pretraining MultiScaleCrop scales
      flip=False,                # pretraining: random horizontal flip of each view
      # Pretraining: cut and resize the views in the train step (videomae_jax.device_crops) instead of in the
      # workers, which then only decode. Needs (batch_size / repeated_aug) divisible by the number of devices.
      crop_on_device=False,
      crop_canvas=(0, 0),        # (height, width) the decoded clips are placed in; (0, 0): the shards' max size
      # Place clips of the other orientation transposed in the canvas (portrait among landscape): 'yes' | 'no' |
      # 'auto' = 'yes' when the weighted shards hold both orientations (resolve.py). Unresolved 'auto' is 'no'.
      transpose_to_canvas="auto",
      num_workers=8,             # grain worker processes decoding clips (0: in the training process)
      decoded_cache_mb=0,        # keep decoded videos in memory up to this size, per worker (data.video_cache)
      worker_buffer_size=2,      # local batches each grain worker prepares ahead
      # Frames per clip in the batch; 0 means model.num_frames. MATS adaptive frame selection decodes about 1.5x
      # the needed frames (an even number, e.g. 24 for 16) and picks tubelets on the device.
      num_candidate_frames=0,
      video_decoder="auto",      # MP4 shard decoder: auto (= pyav) | pyav | decord
      demo_dir="",               # build the synthetic demo shards here if missing; sources without a path use them
      demo_videos_per_class=8,   # the demo's videos (videomae_jax.data.demo.build_demo_shards)
      demo_seed=0,
      demo_num_frames=32,
      demo_size=64,
      demo_format="mp4",         # shard format of the demo videos: mp4 | jpeg (videomae_jax.data.demo)
      reconstruction_video="",   # pretraining: draw this video's reconstruction to {workdir}/reconstruction.png
  ))


def augment_config() -> ml_collections.ConfigDict:
  """Fine-tuning augmentation (host: RandAugment, random resized crop, flip; device: random erasing)."""
  return ml_collections.ConfigDict(dict(
      rand_augment="",           # timm-style spec, e.g. 'rand-m7-n4-mstd0.5-inc1'; '' disables
      crop_scale=(0.08, 1.0),    # random resized crop: area fraction range
      crop_ratio=(0.75, 4.0 / 3.0),  # random resized crop: aspect ratio range
      flip=True,                 # random horizontal flip (False for SSv2: left/right is in the label)
      crop="random_resized",     # random_resized (crop_scale, crop_ratio) | multiscale (data.multiscale_crop_scales)
      random_erasing=0.0,        # probability of erasing one box per clip (same box on every frame)
  ))


def mixup_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      mixup_alpha=0.0,           # Beta(alpha, alpha) mixing weight; 0: no mixup
      cutmix_alpha=0.0,          # Beta(alpha, alpha) box area; 0: no cutmix
      prob=0.0,                  # probability of mixing a batch at all
      switch_prob=0.5,           # with both on, probability of cutmix instead of mixup
      label_smoothing=0.0,       # applied to the (mixed) one-hot targets
  ))


def eval_config() -> ml_collections.ConfigDict:
  """Multi-view test of a classifier (videomae_jax.evaluation)."""
  return ml_collections.ConfigDict(dict(
      path="",                   # labeled shard folder of the test / validation split
      num_clips=1,               # temporal views per video (Kinetics 5, SSv2 2)
      num_crops=1,               # spatial views along the long side (3)
      sampling="uniform",        # 'uniform' windows (Kinetics) | 'segment' (SSv2, TSN-style)
      stride=4,                  # frame stride of a 'uniform' window
      short_side=0,              # resize the short side to this first; 0: config.model.image_size
      batch_size=4,              # videos per step, all processes together (each with num_clips x num_crops views)
      num_workers=4,             # grain worker processes decoding the views (0: in this process)
      max_videos=-1,             # evaluate only the first N videos; -1: all
      class_names="",            # label list for the report; '': the shards' own names
      require_labels=True,       # every test video must have a label (False: unlabeled held-out sets)
      demo_dir="",               # build the demo test set here if missing and evaluate on it
      demo_videos_per_class=8,   # the demo test set's videos
      demo_seed=1,
      demo_num_frames=32,
      demo_size=64,
      demo_format="mp4",
  ))


def distill_config() -> ml_collections.ConfigDict:
  """Knowledge distillation into config.model (the student) from a frozen classifier (videomae_jax.tasks.distill)."""
  config = ml_collections.ConfigDict(dict(
      teacher="",                # the teacher's weights: a params export, workdir or checkpoint (params_io.load_params)
      temperature=3.0,           # softmax temperature of both models in the KL (VideoMAE V2's distillation: 3.0)
      teacher_keep_ratio=1.0,    # MATS at the teacher: fraction of its tokens kept (1.0: all)
  ))
  # The teacher's architecture, config.model's keys (its num_frames and image_size must be the student's: both see
  # the same clips); compute_dtype is the teacher's forward and the dtype its kernels are held in.
  config.teacher_model = model_config("g")
  return config


# Keys of each built-in evaluator kind beyond the common ones (videomae_jax.evaluators), with their defaults.
_EVALUATOR_KEYS = {
    "classification": dict(),
    "knn": dict(
        train_path="",           # labeled shard folder of the neighbours; '': the first training source
        train_max_videos=-1,     # only the first N videos of train_path; -1: all
        k=20,                    # neighbours that vote
        temperature=0.07,        # vote weight exp(cosine similarity / temperature) (DINO's weighted kNN)
    ),
    "reconstruction": dict(
        seed=0,                  # the masks: the same draw at every evaluation, so the curve compares like with like
        picture=True,            # also the reconstruction picture of the set's first video, as a TensorBoard image
    ),
}


def evaluator_config(kind: str, **values) -> ml_collections.ConfigDict:
  """One entry of config.evals: the keys every evaluator reads, those of its kind, then `values` (a key that is
  not declared fails)."""
  config = ml_collections.ConfigDict(dict(
      kind=kind,                 # classification | knn | reconstruction | import path of a module defining EVALUATOR
      every_steps=1000,          # after every this many train steps and after the last one; 0: never
      at_start=True,             # also before the first step of a fresh run (the numbers of the initial parameters)
      path="",                   # shard folder evaluated on (held out); '': config.eval.path
      max_videos=-1,             # only the first N videos of `path`; -1: all
      batch_size=16,             # videos per evaluation step, all processes together (a multiple of the devices)
      num_workers=0,             # grain worker processes decoding the views (0: in the training process)
      cache_mb=0,                # keep the decoded views in host memory when they fit in this many MB per process
      num_clips=1,               # temporal views per video (their outputs are averaged per video)
      num_crops=1,               # spatial views along the long side
      sampling="uniform",        # 'uniform' windows | 'segment' (TSN-style, SSv2)
      stride=4,                  # frame stride of a 'uniform' window
      short_side=0,              # resize the short side to this first; 0: config.model.image_size
      **_EVALUATOR_KEYS.get(kind, {}),
  ))
  unknown = sorted(set(values) - set(config.keys()))
  if unknown:
    raise KeyError(f"evaluator_config({kind!r}) has no key(s) {unknown}; its keys: {sorted(config.keys())}.")
  config.update(values)
  return config


def base_config() -> ml_collections.ConfigDict:
  """Every key, with neutral defaults (no recipe)."""
  config = ml_collections.ConfigDict(dict(
      task="pretrain",                      # what is trained: pretrain | classify | distill | a task module path
      seed=0,                               # every random draw derives from (seed, step)
  ))
  config.model = model_config()
  config.masking = masking_config()
  # Per-tubelet normalized pixel targets (VideoMAE's default); False: raw pixels.
  config.objective = ml_collections.ConfigDict(dict(normalize_targets=True))
  config.optimizer = optimizer_config()
  config.batch_size = 256                   # global clips per step, counting repeated augmentations
  config.total_epochs = 100.0               # run length in epochs of data.num_videos_per_epoch videos ...
  config.num_train_steps = -1               # ... or in steps (> 0 wins)
  config.warmup_epochs = 5.0                # linear warmup in epochs ...
  config.warmup_steps = -1                  # ... or in steps (>= 0 wins)
  config.log_every_steps = 50               # metrics to TensorBoard and metrics.jsonl
  config.checkpoint_every_steps = 1000      # train state + input iterator
  config.keep_checkpoints = 3               # newest checkpoints kept
  config.async_checkpointing = True         # write checkpoints while training continues
  config.preemption_check_every_steps = 10  # multi-process runs agree on a stop step this often
  config.init_from = ""                     # parameters only: a workdir, a step directory or a params export
  config.head_label_map = ""                # classify: JSON list re-indexing a loaded head (label_710to400.json)
  config.mixup_groups = 0                   # classify: mix inside this many batch groups; 0: one per device
  config.mesh = ml_collections.ConfigDict(dict(
      data=-1,                              # pure data parallel axis (-1: the devices fsdp leaves)
      fsdp=1,                               # parameters, gradients and optimizer state sharded over this axis
  ))
  # (regex, tactic) pairs matched against '/'-joined parameter paths, first match wins; tactics 'fsdp' (largest
  # divisible dimension) and 'replicate' (videomae_jax.sharding).
  config.sharding_rules = ((".*", "fsdp"),)
  config.fsdp_min_size = 2 ** 14            # leaves smaller than this stay replicated under 'fsdp'
  config.data = data_config()
  config.augment = augment_config()
  config.mixup = mixup_config()
  config.eval = eval_config()
  config.distill = distill_config()
  # Evaluators run inside training: {name: default_config.evaluator_config(kind, ...)}; their metrics are logged
  # as '{name}/...' at the step they ran (videomae_jax.evaluators).
  config.evals = ml_collections.ConfigDict()
  return config


def pretrain_config(variant: str) -> ml_collections.ConfigDict:
  """VideoMAE V2 pretraining on UnlabeledHybrid (ViT-g recipe: AdamW 0.9/0.95, 1200 epochs, dual masking)."""
  config = base_config()
  config.model.variant = variant
  config.batch_size = 8192
  config.total_epochs = 1200.0
  config.warmup_epochs = 120.0
  # UnlabeledHybrid: (name, shard folder, number of clips, frame stride); 1.35M clips.
  config.data.sources = [
      dict(name="k710", path="", num_videos=658_000, stride=4, weight=658_000),
      dict(name="ssv2", path="", num_videos=169_000, stride=2, weight=169_000),
      dict(name="ava", path="", num_videos=21_000, stride=4, weight=21_000),
      dict(name="webvid", path="", num_videos=250_000, stride=4, weight=250_000),
      dict(name="instagram", path="", num_videos=250_000, stride=4, weight=250_000),
  ]
  config.data.num_videos_per_epoch = 1_348_000
  config.data.repeated_aug = 4
  config.data.crop_on_device = True
  return config


def finetune_config(variant: str = "B") -> ml_collections.ConfigDict:
  """Supervised fine-tuning / post-pretraining (the official fine-tuning defaults; videomae_jax.tasks.classify).

  Learning rate: ours is base_lr * batch_size / 256 with batch_size counting repeated augmentations, while the
  official scripts scale by videos per step (batch_size / repeated_aug). To reproduce an official `--lr X` set
  base_lr = X / repeated_aug.
  """
  config = base_config()
  config.update(task="classify")
  config.model.variant = variant
  config.model.num_classes = 400
  config.model.drop_path_rate = 0.1
  config.optimizer.base_lr = 5e-4           # official --lr 1e-3 over videos, with 2 repeated augmentations
  config.optimizer.min_lr = 1e-6
  config.optimizer.b2 = 0.999
  config.optimizer.grad_clip_norm = 0.0     # off; post-pretraining uses 5.0
  config.optimizer.layer_decay = 0.75
  config.batch_size = 512
  config.total_epochs = 90.0
  config.warmup_epochs = 5.0
  config.data.sources = [dict(name="k400", path="", num_videos=240_000, stride=4, weight=240_000)]
  config.data.num_videos_per_epoch = 240_000
  config.data.repeated_aug = 2
  config.augment.rand_augment = "rand-m7-n4-mstd0.5-inc1"
  config.augment.random_erasing = 0.25
  config.mixup.update(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1))
  config.eval.num_clips = 5
  config.eval.num_crops = 3
  return config


def use_k710(data: ml_collections.ConfigDict) -> None:
  """config.data for Kinetics-710 (VideoMAE V2's post-pretraining and distillation set): K400, K600 and K700
  training videos mixed by size, labels on the 710-class set; the paths are the user's."""
  data.sources = [
      dict(name="k400", path="", num_videos=240_000, stride=4, weight=240_000),
      dict(name="k600", path="", num_videos=180_000, stride=4, weight=180_000),
      dict(name="k700", path="", num_videos=238_000, stride=4, weight=238_000),
  ]
  data.label_set = "k710"
  data.num_videos_per_epoch = 658_000


def vitg_distillation_config(student_variant: str) -> ml_collections.ConfigDict:
  """VideoMAE V2's distillation of its ViT-S / ViT-B from the K710-fine-tuned ViT-g (paper appendix; the official
  repository never released the code), the "patient and consistent" recipe of Beyer et al. 2022
  (videomae_jax.tasks.distill): 100 epochs of K710, the teacher on exactly the student's views, KL at temperature 3.

  Learning rate: the recipe's base lr 1e-3 at 1024 videos per step, one view each (no repeated augmentation), so our
  base_lr * batch_size / 256 gives the same peak, 4e-3.
  """
  config = finetune_config(student_variant)
  config.task = "distill"
  config.model.num_classes = 710
  config.model.drop_path_rate = 0.1
  config.optimizer.base_lr = 1e-3
  config.optimizer.b2 = 0.999
  config.optimizer.weight_decay = 0.05
  config.optimizer.layer_decay = 0.75
  config.optimizer.grad_clip_norm = 1.0
  config.batch_size = 1024
  config.total_epochs = 100.0
  config.warmup_epochs = 5.0
  use_k710(config.data)
  config.data.repeated_aug = 1
  config.augment.rand_augment = "rand-m0-n4-mstd0.5-inc1"  # magnitude 0 with std 0.5: mild, as the recipe
  config.augment.crop = "multiscale"
  config.augment.flip = True
  config.augment.random_erasing = 0.0
  # One draw per batch applied to the clip both models see; the targets are the teacher's, so no label smoothing.
  config.mixup.update(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.0))
  config.distill.temperature = 3.0
  teacher = config.distill.teacher_model
  teacher.variant, teacher.num_classes, teacher.compute_dtype = "g", 710, "bfloat16"
  teacher.scan_layers = True  # 40 blocks: one scanned body compiles in a fraction of the time
  config.eval.num_clips, config.eval.num_crops = 5, 3
  return config
