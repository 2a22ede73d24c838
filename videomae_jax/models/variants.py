"""Backbone sizes of the VideoMAE V2 ViT family (the VideoMAE V2 release; docs/upstream.md section 1).

Every number a model needs is resolved here once, into a frozen `ModelSpec` of Python ints, so shapes are static.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Tuple

from videomae_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Variant:
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_size: int
  decoder_width: int
  decoder_num_heads: int


# MLP hidden widths are int(width * mlp_ratio); ViT-g uses mlp_ratio 48/11, so 1408 -> 6144 and its decoder,
# which shares the encoder's ratio, 512 -> int(512 * 48 / 11) = 2234 (what the released weights hold).
VARIANTS: Mapping[str, Variant] = {
    "Ti": Variant(width=192, depth=12, num_heads=3, mlp_dim=768, patch_size=16,
                  decoder_width=96, decoder_num_heads=3),
    "S": Variant(width=384, depth=12, num_heads=6, mlp_dim=1536, patch_size=16,
                 decoder_width=192, decoder_num_heads=3),
    "B": Variant(width=768, depth=12, num_heads=12, mlp_dim=3072, patch_size=16,
                 decoder_width=384, decoder_num_heads=6),
    "L": Variant(width=1024, depth=24, num_heads=16, mlp_dim=4096, patch_size=16,
                 decoder_width=512, decoder_num_heads=8),
    "H": Variant(width=1280, depth=32, num_heads=16, mlp_dim=5120, patch_size=16,
                 decoder_width=512, decoder_num_heads=8),
    "g": Variant(width=1408, depth=40, num_heads=16, mlp_dim=6144, patch_size=14,
                 decoder_width=512, decoder_num_heads=8),
}

DECODER_DEPTH = 4
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims", "nothing_saveable")
ATTENTION_IMPLS = ("auto", "kernel", "blocked", "xla", "cudnn")
COMPUTE_DTYPES = ("float32", "bfloat16")
POOLED_NORMS = ("fc_norm", "norm", "none")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything a model needs, as plain Python values. Built by `model_spec_from_config`."""
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_size: int
  tubelet_size: int
  num_frames: int
  image_size: int
  decoder_width: int
  decoder_depth: int
  decoder_num_heads: int
  decoder_mlp_dim: int
  drop_path_rate: float = 0.0
  compute_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"
  attention_impl: str = "auto"
  # Grid (t, h, w) the sinusoid table was laid out for; None means the model's own grid. A different grid is
  # reached by interpolation (bicubic in space, linear in time), e.g. fine-tuning 16x224 weights at 32x224.
  pos_embed_grid: Optional[Tuple[int, int, int]] = None
  num_classes: int = 0
  head_init_scale: float = 0.001
  head_dropout_rate: float = 0.0
  # How the classifier pools tokens into features: 'fc_norm' (the official fine-tuning model), 'norm' (a
  # pretraining encoder's own final norm on every token, then the mean) or 'none' (videomae_jax.models.classifier).
  pooled_norm: str = "fc_norm"
  layer_norm_eps: float = 1e-6

  @property
  def grid(self) -> Tuple[int, int, int]:
    """Tubelet grid (T', H', W')."""
    return (self.num_frames // self.tubelet_size, self.image_size // self.patch_size,
            self.image_size // self.patch_size)

  @property
  def num_tokens(self) -> int:
    t, h, w = self.grid
    return t * h * w

  @property
  def tokens_per_frame(self) -> int:
    """Tokens per temporal slice (H' * W')."""
    _, h, w = self.grid
    return h * w

  @property
  def patch_values(self) -> int:
    """Pixel values in one tubelet: 3 * tubelet * P * P (the decoder head's output width)."""
    return 3 * self.tubelet_size * self.patch_size * self.patch_size

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads


def config_value(cfg: Any, key: str, default: Any = None) -> Any:
  """cfg[key] of a dict or ConfigDict (or None), `default` when missing or None."""
  if cfg is None:
    return default
  if isinstance(cfg, Mapping):
    value = cfg.get(key, default)
  else:
    value = getattr(cfg, key, default)
  return default if value is None else value


def variant_name(name: str) -> str:
  """The VARIANTS key of a variant name in any case ('b' -> 'B', 'G' -> 'g'), or 'custom'."""
  if str(name).lower() == "custom":
    return "custom"
  names = {key.lower(): key for key in VARIANTS}
  if str(name).lower() not in names:
    raise ConfigError(f"variant={name!r} is unknown; use one of {sorted(VARIANTS)} (any case) or 'custom' with "
                      "width/depth/num_heads/mlp_dim/patch_size set.")
  return names[str(name).lower()]


def model_spec_from_config(model_cfg: Any) -> ModelSpec:
  """Resolves `config.model` (variant name plus optional overrides) into a validated `ModelSpec`.

  Raises ConfigError, before anything is compiled, when shapes cannot work.
  """
  name = variant_name(config_value(model_cfg, "variant", "B"))
  base = VARIANTS.get(name)

  def pick(key, fallback=None):
    value = config_value(model_cfg, key)
    if value is None:
      value = getattr(base, key, None) if base is not None else None
    if value is None:
      value = fallback
    if value is None:
      raise ConfigError(f"config.model.{key} must be set for variant {name!r}.")
    return value

  width = int(pick("width"))
  decoder_width = int(pick("decoder_width", max(width // 2, 1)))
  mlp_dim = int(pick("mlp_dim", 4 * width))
  # The decoder shares the encoder's MLP ratio (int(Dd * ratio)); this is how ViT-g's decoder gets 2234.
  mlp_ratio = mlp_dim / width
  if name == "g":
    mlp_ratio = 48 / 11
  spec = ModelSpec(
      width=width,
      depth=int(pick("depth")),
      num_heads=int(pick("num_heads")),
      mlp_dim=mlp_dim,
      patch_size=int(pick("patch_size")),
      tubelet_size=int(pick("tubelet_size", 2)),
      num_frames=int(pick("num_frames", 16)),
      image_size=int(pick("image_size", 224)),
      decoder_width=decoder_width,
      decoder_depth=int(pick("decoder_depth", DECODER_DEPTH)),
      decoder_num_heads=int(pick("decoder_num_heads", max(1, decoder_width // 64))),
      decoder_mlp_dim=int(pick("decoder_mlp_dim", int(decoder_width * mlp_ratio))),
      drop_path_rate=float(pick("drop_path_rate", 0.0)),
      compute_dtype=str(pick("compute_dtype", "float32")),
      scan_layers=bool(pick("scan_layers", False)),
      remat_policy=str(pick("remat_policy", "none")),
      attention_impl=str(pick("attention_impl", "auto")),
      pos_embed_grid=(tuple(int(v) for v in config_value(model_cfg, "pos_embed_grid"))
                      if config_value(model_cfg, "pos_embed_grid") is not None else None),
      num_classes=int(pick("num_classes", 0)),
      head_init_scale=float(pick("head_init_scale", 0.001)),
      head_dropout_rate=float(pick("head_dropout_rate", 0.0)),
      pooled_norm=str(pick("pooled_norm", "fc_norm")),
  )
  validate_model_spec(spec)
  return spec


def validate_model_spec(spec: ModelSpec) -> None:
  """Checks divisibility and option names; each message names the key to change."""
  if spec.num_frames % spec.tubelet_size:
    lower = spec.num_frames - spec.num_frames % spec.tubelet_size
    raise ConfigError(
        f"config.model.num_frames={spec.num_frames} is not divisible by config.model.tubelet_size="
        f"{spec.tubelet_size}; use a multiple such as {lower or spec.tubelet_size} or {lower + spec.tubelet_size}.")
  if spec.image_size % spec.patch_size:
    lower = spec.image_size - spec.image_size % spec.patch_size
    raise ConfigError(
        f"config.model.image_size={spec.image_size} is not divisible by the patch size {spec.patch_size}; "
        f"use a multiple such as {lower or spec.patch_size} or {lower + spec.patch_size}, or change "
        "config.model.patch_size.")
  for prefix, width, heads in (("", spec.width, spec.num_heads),
                               ("decoder_", spec.decoder_width, spec.decoder_num_heads)):
    if width % heads:
      raise ConfigError(f"config.model.{prefix}width={width} is not divisible by config.model.{prefix}num_heads="
                        f"{heads}; pick a head count that divides the width.")
  for name, value in (("width", spec.width), ("depth", spec.depth), ("mlp_dim", spec.mlp_dim),
                      ("num_frames", spec.num_frames), ("image_size", spec.image_size)):
    if value <= 0:
      raise ConfigError(f"config.model.{name}={value} must be positive.")
  if spec.remat_policy not in REMAT_POLICIES:
    raise ConfigError(f"config.model.remat_policy={spec.remat_policy!r}; use one of {REMAT_POLICIES}.")
  if spec.attention_impl not in ATTENTION_IMPLS:
    raise ConfigError(f"config.model.attention_impl={spec.attention_impl!r}; use one of {ATTENTION_IMPLS}.")
  if spec.pooled_norm not in POOLED_NORMS:
    raise ConfigError(f"config.model.pooled_norm={spec.pooled_norm!r}; use one of {POOLED_NORMS}.")
  if spec.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"config.model.compute_dtype={spec.compute_dtype!r}; use one of {COMPUTE_DTYPES}.")
  if not 0.0 <= spec.drop_path_rate < 1.0:
    raise ConfigError(f"config.model.drop_path_rate={spec.drop_path_rate} must be in [0, 1).")
  if spec.pos_embed_grid is not None and len(spec.pos_embed_grid) != 3:
    raise ConfigError("config.model.pos_embed_grid must be (t, h, w) or None.")
