r"""The PyTorch side of our speed comparisons: transformers' VideoMAE at the size of one of our configs.

  python -m benchmarks.torch_baseline --config=configs/vitb_pretrain.py --batch_size=64 [--compiled] [--bf16]
      [--device=cuda] [--json=out.json]      # one train-step row (benchmarks.gpu_suite runs it)

  step = torch_baseline.TrainStep(config, batch_size, visible_per_clip)   # a VideoMAE V1 pretraining step
  seconds = step.time(num_steps)
  infer = torch_baseline.Inference(config, batch_size)                            # classifier forward, all tokens

The pair is "same work, which framework is faster": `VideoMAEForPreTraining` does VideoMAE V1 (tube masking; the
decoder sees every token and predicts the masked ones, per-patch normalized targets), which is our pretraining
with `masking.decoder='none'`. A step is forward, loss, backward, global-norm clipping and AdamW, on synthetic
clips with the same number of visible tokens per clip as ours. Needs the `torch` extra.
"""
from __future__ import annotations

import time

import numpy as np


def _vit_config(config, *, classifier: bool):
  import transformers  # pylint: disable=import-outside-toplevel
  from videomae_jax.models import model_spec_from_config  # pylint: disable=import-outside-toplevel
  spec = model_spec_from_config(config.model)
  kwargs = dict(image_size=spec.image_size, patch_size=spec.patch_size, num_channels=3, num_frames=spec.num_frames,
                tubelet_size=spec.tubelet_size, hidden_size=spec.width, num_hidden_layers=spec.depth,
                num_attention_heads=spec.num_heads, intermediate_size=spec.mlp_dim, hidden_act="gelu",
                qkv_bias=True, layer_norm_eps=spec.layer_norm_eps, attn_implementation="sdpa")
  if classifier:
    kwargs.update(use_mean_pooling=True, num_labels=max(2, int(config.model.num_classes or 400)))
  else:
    kwargs.update(decoder_hidden_size=spec.decoder_width, decoder_num_hidden_layers=spec.decoder_depth,
                  decoder_num_attention_heads=spec.decoder_num_heads, decoder_intermediate_size=spec.decoder_mlp_dim,
                  norm_pix_loss=bool(config.objective.normalize_targets), use_mean_pooling=False)
  return transformers.VideoMAEConfig(**kwargs), spec


def tube_mask(spec, batch_size: int, visible_per_clip: int, rng: np.random.Generator) -> np.ndarray:
  """bool [B, N]: True = masked, the same `visible_per_clip` per clip, as a tube (the same cells in every
  tubelet), like our tube masking."""
  time_steps, height, width = spec.grid
  cells = height * width
  per_step = visible_per_clip // time_steps
  mask = np.ones((batch_size, time_steps, cells), bool)
  for b in range(batch_size):
    mask[b, :, rng.choice(cells, per_step, replace=False)] = False
  return mask.reshape(batch_size, -1)


class TrainStep:
  """One VideoMAE V1 pretraining step of transformers' VideoMAEForPreTraining (forward + loss + backward + clip +
  AdamW), at the size of `config`."""

  def __init__(self, config, batch_size: int, visible_per_clip: int, *, compiled: bool = False, bf16: bool = False,
               device: str = "cpu"):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    vit_config, spec = _vit_config(config, classifier=False)
    self.torch, self.device, self.bf16 = torch, device, bf16
    self.model = transformers.VideoMAEForPreTraining(vit_config).to(device).train()
    opt = config.optimizer
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, betas=(opt.b1, opt.b2), eps=opt.eps,
                                       weight_decay=opt.weight_decay)
    self.clip = float(opt.grad_clip_norm)
    rng = np.random.default_rng(0)
    self.pixels = torch.from_numpy(rng.standard_normal(
        (batch_size, spec.num_frames, 3, spec.image_size, spec.image_size)).astype(np.float32)).to(device)
    self.mask = torch.from_numpy(tube_mask(spec, batch_size, visible_per_clip, rng)).to(device)
    self.forward = torch.compile(self._forward) if compiled else self._forward

  def _forward(self, pixels, mask):
    return self.model(pixel_values=pixels, bool_masked_pos=mask).loss

  def step(self) -> float:
    torch = self.torch
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
      loss = self.forward(self.pixels, self.mask)
    loss.backward()
    if self.clip > 0:
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
    self.optimizer.step()
    return float(loss.detach())

  def time(self, num_steps: int) -> float:
    """Seconds per step (after one warm-up step)."""
    self.step()
    self._sync()
    start = time.perf_counter()
    for _ in range(num_steps):
      self.step()
    self._sync()
    return (time.perf_counter() - start) / num_steps

  def _sync(self):
    if self.device.startswith("cuda"):
      self.torch.cuda.synchronize()


class Inference:
  """transformers' VideoMAEForVideoClassification forward on every token (no masking), without gradients."""

  def __init__(self, config, batch_size: int, *, compiled: bool = False, bf16: bool = False, device: str = "cpu"):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    vit_config, spec = _vit_config(config, classifier=True)
    self.torch, self.device, self.bf16 = torch, device, bf16
    self.model = transformers.VideoMAEForVideoClassification(vit_config).to(device).eval()
    self.pixels = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (batch_size, spec.num_frames, 3, spec.image_size, spec.image_size)).astype(np.float32)).to(device)
    self.forward = torch.compile(self.model) if compiled else self.model

  def time(self, num_steps: int) -> float:
    torch = self.torch
    with torch.no_grad(), torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                                         enabled=self.bf16):
      self.forward(pixel_values=self.pixels)
      start = time.perf_counter()
      for _ in range(num_steps):
        logits = self.forward(pixel_values=self.pixels).logits
      float(logits.float().sum())
      if self.device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / num_steps


def main(argv):
  """One row: clips/s of the V1 train step of transformers' VideoMAE at the config's size."""
  del argv
  import json  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from videomae_jax import masking  # pylint: disable=import-outside-toplevel
  from videomae_jax.models import model_spec_from_config  # pylint: disable=import-outside-toplevel
  values = flags.FLAGS
  config = values.config
  plan = masking.masking_plan(config.masking, model_spec_from_config(config.model))
  device = values.device or ("cuda" if torch.cuda.is_available() else "cpu")
  step = TrainStep(config, values.batch_size, plan.num_encoder_tokens, compiled=values.compiled, bf16=values.bf16,
                   device=device)
  seconds = step.time(values.steps)
  row = dict(framework=f"torch {torch.__version__}", device=device, compiled=values.compiled, bf16=values.bf16,
             batch_size=values.batch_size, visible_tokens=plan.num_encoder_tokens, step_seconds=seconds,
             clips_per_second=values.batch_size / seconds,
             peak_memory_gib=(torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None))
  print(json.dumps(row))
  if values.json:
    with open(values.json, "w") as f:
      json.dump([row], f, indent=1)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "Experiment config file (its model size and masking).",
                                  lock_config=True)
  flags.DEFINE_integer("batch_size", 8, "Clips per step.")
  flags.DEFINE_integer("steps", 5, "Timed steps (after one warm-up step).")
  flags.DEFINE_bool("compiled", False, "torch.compile the forward pass.")
  flags.DEFINE_bool("bf16", False, "bfloat16 autocast.")
  flags.DEFINE_string("device", "", "cpu | cuda ('' : cuda when available).")
  flags.DEFINE_string("json", "", "Also write the row to this JSON file.")
  app.run(main)
