"""videomae_jax: VideoMAE V2 (dual masking) and MATS/EVEREST (motion-aware token selection) in JAX/Flax."""

__version__ = "0.1.0"
