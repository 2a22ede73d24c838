"""Checkpoint conversion to and from PyTorch (official VideoMAE V2 `.pth` and HuggingFace transformers).

  mapping      Flax tree <-> official state dict <-> HF state dict (numpy only)
  params_io    load_params (workdir, CheckpointManager dir, step dir, params export) / save_params_export
  to_pytorch   CLI: our checkpoint -> .pth (videomaev2) or HF folder
  from_pytorch CLI: .pth / HF folder -> params export
  torch_io     the only module that imports torch, safetensors or transformers (lazily); safe file loading

torch is an optional dependency (pip install -e .[torch]); importing this package does not need it.
"""
