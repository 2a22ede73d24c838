"""Read parameters from any checkpoint this project writes, and write the portable params export.

Accepted by `load_params` (all give per-layer numpy params; opt_state and the data iterator are never read):
  * a training workdir: `{workdir}/config.json` + `{workdir}/checkpoints/` (latest step unless `step` is given);
  * a CheckpointManager directory: `{dir}/{step}/state` (items `state` and `data`; `state['params']` is read);
  * one step directory `{dir}/{step}` or its `state` item directory;
  * a params export (what `save_params_export` and `from_pytorch` write, what `config.init_from` accepts):
      {export}/model.json   {"kind": "pretrain"|"classifier", "model": {variant, width, depth, ...}}
      {export}/params/      orbax StandardCheckpointer save of the per-layer params tree.

Restoring uses numpy restore types, so a checkpoint written on a GPU/TPU mesh reads on any host, and the
optimizer state, often twice the size of the params, is never loaded.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Union

import jax
import numpy as np
from etils import epath

from videomae_jax.convert import mapping
from videomae_jax.errors import ConfigError
from videomae_jax.models import layer_stacking
from videomae_jax.models.variants import ModelSpec, model_spec_from_config, variant_name

MODEL_JSON = "model.json"
PARAMS_DIR = "params"
CONFIG_JSON = "config.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM = "state"
EXPORT_FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


def _path(path: PathLike) -> epath.Path:
  """Local paths made absolute; cloud paths (gs://...) as they are, so everything here works on both."""
  path = os.fspath(path)
  return epath.Path(path if "://" in path else os.path.abspath(path))

@dataclasses.dataclass(frozen=True)
class LoadedParams:
  """Params as nested dicts of numpy arrays in the per-layer layout (`blocks/0`, `blocks/1`, ...).

  kind: 'pretrain' (VideoMAEPretrainModel), 'classifier' (VideoClassifier) or 'encoder' (an encoder alone:
    VideoClassifier with 0 classes; videomae_jax.convert.mapping).
  model_config: the architecture fields of `config.model` (see `architecture_config`), or None when the
    checkpoint has no config beside it.
  step: the training step for a training checkpoint, else None.
  hub_config: the config.json of a HuggingFace hub VideoMAEv2 folder it was read from, kept so that exporting it
    to the hub layout again writes the same file.
  """
  params: Dict[str, Any]
  kind: str
  model_config: Optional[Dict[str, Any]]
  step: Optional[int] = None
  path: str = ""
  hub_config: Optional[Dict[str, Any]] = None

  def spec(self) -> ModelSpec:
    """ModelSpec (per-layer, float32) to rebuild the model; raises if no model config came with the params."""
    if self.model_config is None:
      raise ValueError(f"{self.path} has no model config (no config.json or model.json beside it).")
    return mapping.model_spec_for_export(model_spec_from_config(self.model_config))


def architecture_config(model_config: Any, kind: str) -> Dict[str, Any]:
  """The architecture fields of a `config.model` (dict or ConfigDict) with every dimension explicit.

  Explicit numbers keep an export readable even if the variant table changes; `variant` is kept as a label.
  """
  mapping.check_kind(kind)
  spec = model_spec_from_config(model_config)
  variant = model_config.get("variant") if isinstance(model_config, Mapping) else getattr(model_config, "variant",
                                                                                         None)
  out = dict(variant=variant_name(variant) if variant else "custom", width=spec.width, depth=spec.depth,
             num_heads=spec.num_heads, mlp_dim=spec.mlp_dim, patch_size=spec.patch_size,
             tubelet_size=spec.tubelet_size, num_frames=spec.num_frames, image_size=spec.image_size,
             pos_embed_grid=list(spec.pos_embed_grid) if spec.pos_embed_grid is not None else None,
             num_classes=spec.num_classes if kind == mapping.KIND_CLASSIFIER else 0)
  if kind == mapping.KIND_ENCODER:
    out["pooled_norm"] = spec.pooled_norm
  if kind == mapping.KIND_PRETRAIN:
    out.update(decoder_width=spec.decoder_width, decoder_depth=spec.decoder_depth,
               decoder_num_heads=spec.decoder_num_heads, decoder_mlp_dim=spec.decoder_mlp_dim)
  return out


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------

# Files our writers put in an output folder (params exports, hub and transformers folders): --overwrite replaces
# a folder only when it holds some of them, so it never empties a folder that was something else.
OUTPUT_MARKERS = (MODEL_JSON, PARAMS_DIR, "config.json", "model.safetensors", "model.safetensors.index.json",
                  "pytorch_model.bin")


def prepare_output(path: PathLike, *, overwrite: bool, folder: bool = True) -> epath.Path:
  """Checks an --output before anything is converted; with `overwrite`, removes the old output whole (no stale
  files of it stay beside the new one). `folder`: the output is a folder (else one file)."""
  output = _path(path)
  if not output.exists():
    return output
  if folder and not output.is_dir():
    raise FileExistsError(f"--output={path} is a file; name the folder to write (it is created).")
  if not folder and output.is_dir():
    raise FileExistsError(f"--output={path} is a folder; name the file to write (e.g. {path}/model.pth).")
  if folder and not any(output.iterdir()):
    return output
  if not overwrite:
    raise FileExistsError(f"{path} exists; choose another --output or pass --overwrite.")
  if folder:
    names = sorted(p.name for p in output.iterdir())
    if not any(name in OUTPUT_MARKERS for name in names):
      raise FileExistsError(f"--overwrite replaces an earlier output of ours, and {path} holds other files "
                            f"({', '.join(names[:5])}); choose another --output or empty it yourself.")
    output.rmtree()
  else:
    output.unlink()
  return output


def save_params_export(output_dir: PathLike, params: Mapping[str, Any], kind: str, model_config: Any, *,
                       overwrite: bool = False, hub_config: Optional[Mapping[str, Any]] = None) -> str:
  """Writes `{output_dir}/params` (orbax, per-layer layout, numpy) and `{output_dir}/model.json`.

  `params` may be scanned or per-layer, numpy or jax arrays. Checks them against `model_config` first, so an
  export always rebuilds its model. Returns the absolute output directory.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  mapping.check_kind(kind)
  output_dir = _path(output_dir)
  if layer_stacking.is_scanned(params):
    params = layer_stacking.unstack_layers(params)
  params = jax.tree.map(np.asarray, dict(params))
  model = architecture_config(model_config, kind)
  mapping.check_flax_params(params, model_spec_from_config(model), kind, what="params to export")
  prepare_output(output_dir, overwrite=overwrite)
  output_dir.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(output_dir / PARAMS_DIR, params, force=overwrite)
  meta = {"format_version": EXPORT_FORMAT_VERSION, "kind": kind, "model": model}
  if hub_config is not None:
    meta["hub_config"] = dict(hub_config)
  (output_dir / MODEL_JSON).write_text(json.dumps(meta, indent=2) + "\n")
  return os.fspath(output_dir)


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------

def _is_export(path: epath.Path) -> bool:
  return (path / MODEL_JSON).exists() and (path / PARAMS_DIR).is_dir()


def _is_pytree_dir(path: epath.Path) -> bool:
  return (path / "_METADATA").exists() or (path / "manifest.ocdbt").exists()


def checkpoint_steps(checkpoint_dir: PathLike) -> list:
  """Finished steps of a CheckpointManager directory (numbered folders holding a `state` item), ascending.

  Orbax writes a step under a temporary name and renames it when complete, so unfinished saves are skipped."""
  checkpoint_dir = _path(checkpoint_dir)
  if not checkpoint_dir.is_dir():
    return []
  return sorted(int(child.name) for child in checkpoint_dir.iterdir()
                if child.name.isdigit() and (child / STATE_ITEM).is_dir())


def _restore_numpy(item_dir: epath.Path, subtree: Optional[str]) -> Dict[str, Any]:
  """Restores (a top-level `subtree` of) the pytree saved in `item_dir` as numpy arrays, ignoring saved shardings."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  # Orbax warns that the item folder has no step-level _CHECKPOINT_METADATA; that is expected here.
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(item_dir)
    tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", None)
    tree = tree if tree is not None else getattr(metadata, "item_metadata", metadata)
    if subtree is not None:
      if not isinstance(tree, Mapping) or subtree not in tree:
        found = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(f"{item_dir} holds no '{subtree}' entry (top-level keys: {found}).")
      tree = {subtree: tree[subtree]}
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = checkpointer.restore(item_dir, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=subtree is not None))
  finally:
    absl_logger.setLevel(level)
  restored = restored[subtree] if subtree is not None else restored
  return jax.tree.map(np.asarray, _plain_dicts(restored))


def _plain_dicts(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {str(k): _plain_dicts(v) for k, v in tree.items()}
  return tree


def _find_training_config(start: epath.Path, levels: int = 3) -> Optional[Dict[str, Any]]:
  """Looks for the run's config.json in `start` and up to `levels` parent folders."""
  path = start
  for _ in range(levels + 1):
    if (path / CONFIG_JSON).exists():
      return json.loads((path / CONFIG_JSON).read_text())
    path = path.parent
  return None


def load_params(path: PathLike, step: Optional[int] = None) -> LoadedParams:
  """Per-layer numpy params from a workdir, a CheckpointManager dir, a step dir, a `state` item dir or an export.

  step: for a workdir or CheckpointManager dir, the step to read (default: the latest).
  """
  path = _path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"{path} does not exist or is not a directory.")

  if _is_export(path):
    meta = json.loads((path / MODEL_JSON).read_text())
    kind = mapping.check_kind(meta["kind"])
    params = _restore_numpy(path / PARAMS_DIR, subtree=None)
    return LoadedParams(layer_stacking.unstack_layers(params), kind, dict(meta["model"]), None, os.fspath(path),
                        meta.get("hub_config"))

  if (path / CHECKPOINTS_DIR).is_dir():
    checkpoint_dir = path / CHECKPOINTS_DIR
  elif checkpoint_steps(path):
    checkpoint_dir = path
  else:
    checkpoint_dir = None

  if checkpoint_dir is not None:
    steps = checkpoint_steps(checkpoint_dir)
    if not steps:
      raise FileNotFoundError(f"{checkpoint_dir} holds no finished checkpoint (no '<step>/{STATE_ITEM}' folder).")
    if step is None:
      step = steps[-1]
    elif step not in steps:
      raise FileNotFoundError(f"step {step} is not in {checkpoint_dir}; steps there: {steps}.")
    item_dir = checkpoint_dir / str(step) / STATE_ITEM
  elif (path / STATE_ITEM).is_dir():
    item_dir = path / STATE_ITEM
  elif _is_pytree_dir(path):
    item_dir = path
  else:
    raise FileNotFoundError(
        f"{path} is none of: a training workdir (config.json + {CHECKPOINTS_DIR}/), a CheckpointManager directory "
        f"(<step>/{STATE_ITEM}), a step directory, or a params export ({MODEL_JSON} + {PARAMS_DIR}/).")

  step_name = item_dir.parent.name
  found_step = int(step_name) if step_name.isdigit() else None
  params = layer_stacking.unstack_layers(_restore_numpy(item_dir, subtree="params"))
  config = _find_training_config(item_dir)
  kind = mapping.infer_kind(params)  # The tree tells: a decoder is pretraining, a head is a classifier.
  model_config = architecture_config(config["model"], kind) if config and config.get("model") else None
  return LoadedParams(params, kind, model_config, found_step, os.fspath(path))


def fit_params(source: Any, target: Any, what: str) -> tuple:
  """`source` (loaded params, per-layer or stacked like `target`) as the leaves of `target` (arrays or
  ShapeDtypeStructs), in its leaf order and dtypes, checked key by key: (numpy leaves, source keys left unused).
  A target leaf missing from `source`, or of another shape, is a ConfigError that starts with `what`."""
  target_leaves = jax.tree_util.tree_leaves_with_path(target)
  flat_target = {jax.tree_util.keystr(p): leaf for p, leaf in target_leaves}
  flat_source = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(source)}
  missing = sorted(set(flat_target) - set(flat_source))
  unexpected = sorted(set(flat_source) - set(flat_target))
  wrong = sorted(k for k in set(flat_target) & set(flat_source)
                 if tuple(flat_target[k].shape) != tuple(np.shape(flat_source[k])))
  if missing or wrong:
    raise ConfigError(f"{what}: missing {missing[:10]}, wrong shapes {wrong[:10]}, unexpected {unexpected[:10]}.")
  leaves = [np.asarray(flat_source[jax.tree_util.keystr(p)], leaf.dtype) for p, leaf in target_leaves]
  return leaves, unexpected
