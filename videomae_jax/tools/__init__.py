"""Programs: each parses absl flags and calls library functions (`python -m videomae_jax.tools.NAME --help`).

  evaluate        multi-view test of a classifier checkpoint
  inspect_config  counts, FLOPs and compiled memory of a config's train step, without training
  plan            memory, FLOPs and time of a run on N devices, and a mesh that fits, without compiling
  visualize       what the masking does to one video (and the reconstruction, with a checkpoint)
  to_pytorch      our params -> the official VideoMAE V2 .pth or a HuggingFace folder
  from_pytorch    official / HuggingFace weights -> our params export (config.init_from)
  label_transfer  re-index a merged classifier head (K710 -> K400 / K600 / K700)
  xla_flags       the XLA / libtpu / NCCL flag recipes per hardware, for launch scripts
The trainer is `python -m videomae_jax.main`; shard building is `python -m data_prep.build_shards`.
"""
