"""videomae_jax: VideoMAE V2 (dual masking) and MATS/EVEREST (motion-aware token selection) in JAX/Flax."""
import os as _os

__version__ = "0.1.0"

# The environment as the user launched us, taken before anything imports jax: importing jax writes its own TPU_*
# defaults into os.environ (even on a CPU), which the run log must not list as flags the user set.
ENVIRONMENT_AT_START = dict(_os.environ)
