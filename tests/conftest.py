"""Shared test fixtures: tiny model configs that compile in seconds on a 2-core CPU."""
import os

# Tests must never touch a real accelerator or pre-allocate memory, and must be deterministic.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

TINY_MODEL = dict(variant="custom", width=64, depth=3, num_heads=4, mlp_dim=128, patch_size=8, num_frames=4,
                  image_size=32, decoder_width=32, decoder_num_heads=2, decoder_depth=2, compute_dtype="float32")


@pytest.fixture
def tiny_model_config():
  return dict(TINY_MODEL)


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: runs a program end to end, trains for real, or takes more than ~10 s "
                          "on a 2-core CPU: left out of the README's quick check, run by CI's second step (-m slow)")
