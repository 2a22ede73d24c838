"""Peak bf16 FLOP/s and memory of the accelerators we plan and launch for; one table, no jax import.

Used by `videomae_jax.planning` (memory fit, time per step) and by the trainer for MFU:

  from videomae_jax import hardware
  peak = hardware.peak_flops_per_second(jax.devices()[0].device_kind)   # None for CPU / unknown devices
  mfu = flops_per_step / step_seconds / (peak * jax.device_count())

Peaks are dense (no 2:4 sparsity) bf16 matrix-unit FLOP/s per device as the vendors state them: per GPU, per TPU
chip (a v4 or v5p chip is one JAX device: its two TensorCores run as one "megacore"). Memory is what one device
can address, in bytes; the planner keeps `headroom` of it (0.9 by default, the same fraction the GPU launch
recipe gives XLA through XLA_PYTHON_CLIENT_MEM_FRACTION, see videomae_jax.xla_flags).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, Optional

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Device:
  name: str                        # short name used on command lines (--device=h100)
  platform: str                    # 'gpu' | 'tpu' | 'cpu'; picks the XLA flag recipe family
  peak_flops: Optional[float]      # dense bf16 FLOP/s per device; None where no meaningful peak exists (CPU)
  memory_bytes: int                # HBM per device
  description: str


DEVICES: Dict[str, Device] = {d.name: d for d in (
    Device("h100", "gpu", 989e12, 80 * GIB, "NVIDIA H100 SXM 80GB (HBM3)"),
    Device("h100-pcie", "gpu", 756e12, 80 * GIB, "NVIDIA H100 PCIe 80GB"),
    Device("h200", "gpu", 989e12, 141 * GIB, "NVIDIA H200 141GB (HBM3e); same tensor cores as H100 SXM"),
    Device("a100", "gpu", 312e12, 80 * GIB, "NVIDIA A100 80GB"),
    Device("a100-40gb", "gpu", 312e12, 40 * GIB, "NVIDIA A100 40GB"),
    Device("v4", "tpu", 275e12, 32 * GIB, "Cloud TPU v4 chip (megacore, one JAX device)"),
    Device("v5e", "tpu", 197e12, 16 * GIB, "Cloud TPU v5e chip (v5litepod-N has N chips)"),
    Device("v5p", "tpu", 459e12, 95 * GIB, "Cloud TPU v5p chip (megacore; v5p-N has N/2 chips)"),
    Device("v6e", "tpu", 918e12, 32 * GIB, "Cloud TPU v6e (Trillium) chip"),
    # No peak for CPUs: MFU is not meaningful there. Memory is a nominal 16 GiB for planning tests only.
    Device("cpu", "cpu", None, 16 * GIB, "host CPU (no peak FLOP/s; plans give memory, not time)"),
)}

# jax `device.device_kind` strings (lower-cased) -> table entry. Checked in order; first match wins, so the more
# specific patterns come first.
_DEVICE_KIND_PATTERNS = (
    (r"h100.*pcie", "h100-pcie"),
    (r"h200|gh200", "h200"),
    (r"h100", "h100"),
    (r"a100.*40\s*gb", "a100-40gb"),
    (r"a100", "a100"),
    (r"tpu v4", "v4"),
    (r"tpu v5 ?lite|tpu v5e|v5litepod", "v5e"),
    (r"tpu v5p?$|tpu v5p", "v5p"),
    (r"tpu v6 ?lite|tpu v6e|trillium", "v6e"),
    (r"^cpu$", "cpu"),
)


def lookup(device: str) -> Device:
  """A short name ('h100', 'v5e', ...) or a jax device_kind ('NVIDIA H100 80GB HBM3', 'TPU v5 lite') -> Device.

  Raises ValueError naming the known devices when nothing matches.
  """
  key = device.strip().lower()
  if key in DEVICES:
    return DEVICES[key]
  for pattern, name in _DEVICE_KIND_PATTERNS:
    if re.search(pattern, key):
      return DEVICES[name]
  raise ValueError(f"unknown device {device!r}; use one of {sorted(DEVICES)} or a jax device_kind such as "
                   "'NVIDIA H100 80GB HBM3', 'TPU v4', 'TPU v5 lite', 'TPU v5p'.")


def peak_flops_per_second(device_kind: str) -> Optional[float]:
  """Dense bf16 peak FLOP/s of one device, or None for CPUs and devices not in the table (MFU then unknown)."""
  try:
    return lookup(device_kind).peak_flops
  except ValueError:
    return None


def memory_bytes(device_kind: str) -> Optional[int]:
  """Memory of one device in bytes, or None for devices not in the table."""
  try:
    return lookup(device_kind).memory_bytes
  except ValueError:
    return None
