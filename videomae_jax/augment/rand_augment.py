"""Video RandAugment: timm's `rand-m{M}-n{N}-mstd{S}-inc{0|1}` policy, one draw per clip applied to every frame.

Semantics (timm / PySlowFast `rand_augment_transform`, as VideoMAE V2 fine-tuning uses it with
`rand-m7-n4-mstd0.5-inc1`, bicubic resampling and the default grey fill (128, 128, 128)):
  * choose N ops uniformly *with replacement* from the 15-op increasing list below;
  * each chosen op runs with probability 0.5; its magnitude is drawn from N(M, mstd), clipped to [0, 10];
  * signed ops (rotate, shear, translate, colour factors) flip their sign with probability 0.5;
  * the op and all of its random choices are drawn once per clip, so all frames get the same transform.
Level -> argument at magnitude m (out of 10):
  Rotate 30 m/10 deg; Shear 0.3 m/10; TranslateRel 0.45 m/10 of the size; Color/Contrast/Brightness/Sharpness
  factor 1 +- 0.9 m/10; PosterizeIncreasing 4 - int(4 m/10) bits; SolarizeIncreasing threshold 256 - int(256 m/10);
  SolarizeAdd +int(110 m/10) below 128; AutoContrast, Equalize, Invert take no argument.
Pure numpy / PIL on uint8 frames; each call takes a `np.random.Generator`, so grain's per-element rng makes it
reproducible.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (128, 128, 128)

# The `inc1` op list (timm `_RAND_INCREASING_TRANSFORMS`), in timm's order.
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                  "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                  "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# The `inc0` list: the same ops with their non-increasing levels.
PLAIN_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
             "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def _signed(value: float, rng: np.random.Generator) -> float:
  return -value if rng.random() > 0.5 else value


# Level (magnitude in [0, 10]) -> op argument. Signed levels draw their sign from `rng`.
def _level_arg(name: str, level: float, rng: np.random.Generator):
  fraction = level / MAX_LEVEL
  if name == "Rotate":
    return _signed(fraction * 30.0, rng)
  if name in ("ShearX", "ShearY"):
    return _signed(fraction * 0.3, rng)
  if name in ("TranslateXRel", "TranslateYRel"):
    return _signed(fraction * 0.45, rng)
  if name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
    return 1.0 + _signed(fraction * 0.9, rng)
  if name in ("Color", "Contrast", "Brightness", "Sharpness"):
    return fraction * 1.8 + 0.1
  if name == "PosterizeIncreasing":
    return 4 - int(fraction * 4)
  if name == "Posterize":
    return int(fraction * 4)
  if name == "SolarizeIncreasing":
    return 256 - int(fraction * 256)
  if name == "Solarize":
    return int(fraction * 256)
  if name == "SolarizeAdd":
    return int(fraction * 110)
  return None


def _affine(image: Image.Image, matrix: Tuple[float, ...], resample: int) -> Image.Image:
  return image.transform(image.size, Image.AFFINE, matrix, resample=resample, fillcolor=FILL)


def _posterize(image: Image.Image, bits: int) -> Image.Image:
  return image if bits >= 8 else ImageOps.posterize(image, max(bits, 0))


def _solarize_add(image: Image.Image, add: int, threshold: int = 128) -> Image.Image:
  table = [min(255, value + add) if value < threshold else value for value in range(256)]
  return image.point(table * len(image.getbands()))


def _apply(name: str, image: Image.Image, arg, resample: int) -> Image.Image:
  if name == "AutoContrast":
    return ImageOps.autocontrast(image)
  if name == "Equalize":
    return ImageOps.equalize(image)
  if name == "Invert":
    return ImageOps.invert(image)
  if name == "Rotate":
    return image.rotate(arg, resample=resample, fillcolor=FILL)
  if name in ("PosterizeIncreasing", "Posterize"):
    return _posterize(image, arg)
  if name in ("SolarizeIncreasing", "Solarize"):
    return ImageOps.solarize(image, arg)
  if name == "SolarizeAdd":
    return _solarize_add(image, arg)
  if name.startswith("Color"):
    return ImageEnhance.Color(image).enhance(arg)
  if name.startswith("Contrast"):
    return ImageEnhance.Contrast(image).enhance(arg)
  if name.startswith("Brightness"):
    return ImageEnhance.Brightness(image).enhance(arg)
  if name.startswith("Sharpness"):
    return ImageEnhance.Sharpness(image).enhance(arg)
  if name == "ShearX":
    return _affine(image, (1, arg, 0, 0, 1, 0), resample)
  if name == "ShearY":
    return _affine(image, (1, 0, 0, arg, 1, 0), resample)
  if name == "TranslateXRel":
    return _affine(image, (1, 0, arg * image.size[0], 0, 1, 0), resample)
  if name == "TranslateYRel":
    return _affine(image, (1, 0, 0, 0, 1, arg * image.size[1]), resample)
  raise ValueError(f"unknown RandAugment op {name!r}")


@dataclasses.dataclass(frozen=True)
class RandAugment:
  """Clip-consistent RandAugment. `RandAugment.from_string('rand-m7-n4-mstd0.5-inc1')` is the VideoMAE V2 default.

  __call__(frames uint8 [T, H, W, 3], rng) -> uint8 [T, H, W, 3].
  """
  magnitude: float = 7.0
  num_layers: int = 4
  magnitude_std: float = 0.5
  increasing: bool = True
  prob: float = 0.5
  resample: int = Image.BICUBIC

  @property
  def ops(self) -> Sequence[str]:
    return INCREASING_OPS if self.increasing else PLAIN_OPS

  @classmethod
  def from_string(cls, spec: str) -> "RandAugment":
    """Parses timm's `rand-m7-n4-mstd0.5-inc1` (keys m, n, mstd, inc; any order; missing keys keep defaults)."""
    parts = spec.split("-")
    if parts[0] != "rand":
      raise ValueError(f"RandAugment spec {spec!r} must start with 'rand-' (e.g. 'rand-m7-n4-mstd0.5-inc1').")
    values: Dict[str, float] = {}
    for part in parts[1:]:
      match = re.fullmatch(r"(mstd|inc|m|n)([0-9.]+)", part)
      if not match:
        raise ValueError(f"RandAugment spec {spec!r}: cannot read {part!r}; known keys are m, n, mstd, inc.")
      values[match.group(1)] = float(match.group(2))
    return cls(magnitude=values.get("m", 10.0), num_layers=int(values.get("n", 2)),
               magnitude_std=values.get("mstd", 0.0), increasing=bool(values.get("inc", 0)))

  def sample(self, rng: np.random.Generator) -> List[Tuple[str, object]]:
    """The clip's draw: a list of (op name, argument) actually applied, in order."""
    chosen = rng.choice(len(self.ops), size=self.num_layers, replace=True)
    plan = []
    for index in chosen:
      name = self.ops[int(index)]
      if self.prob < 1.0 and rng.random() > self.prob:
        continue
      level = self.magnitude
      if self.magnitude_std > 0:
        level = rng.normal(level, self.magnitude_std)
      level = float(min(MAX_LEVEL, max(0.0, level)))
      plan.append((name, _level_arg(name, level, rng)))
    return plan

  def apply_plan(self, frames: np.ndarray, plan: Sequence[Tuple[str, object]]) -> np.ndarray:
    if not plan:
      return frames
    images = [Image.fromarray(frame) for frame in frames]
    for name, arg in plan:
      images = [_apply(name, image, arg, self.resample) for image in images]
    return np.stack([np.asarray(image, dtype=np.uint8) for image in images])

  def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"RandAugment expects uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}.")
    return self.apply_plan(frames, self.sample(rng))

