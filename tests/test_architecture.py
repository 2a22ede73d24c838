"""The layout the architecture promises (docs/architecture.md): no import cycles, library modules never import the
data_prep programs, device-side code never pulls in grain or OpenCV, every program starts, and a new task is one
module plus a config."""
import ast
import json
import os
import re
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import videomae_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.dirname(videomae_jax.__file__)
# Device-side code: what runs inside the jitted step. It must import neither the input pipeline's libraries nor
# the programs, so it stays cheap to import and free of host-only dependencies.
DEVICE_SIDE = ("videomae_jax.masking", "videomae_jax.motion", "videomae_jax.objective", "videomae_jax.models",
               "videomae_jax.device_crops", "videomae_jax.normalization", "videomae_jax.mixup",
               "videomae_jax.tasks", "videomae_jax.tasks.pretrain", "videomae_jax.tasks.classify",
               "videomae_jax.tasks.distill", "videomae_jax.train_step")


def _modules():
  """{module name: source file} of every module of the package."""
  found = {"videomae_jax": os.path.join(PACKAGE_DIR, "__init__.py")}
  for info in pkgutil.walk_packages([PACKAGE_DIR], prefix="videomae_jax."):
    spec = info.module_finder.find_spec(info.name.rsplit(".", 1)[-1])
    found[info.name] = spec.origin
  return found


def _imports(name, path, modules):
  """Modules of the package that `name` imports anywhere in its file (top level or inside functions)."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
  targets = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      for alias in node.names:
        full = f"{base}.{alias.name}"
        targets.add(full if full in modules else base)
  return {t for t in targets if t in modules and t != name}


def test_no_import_cycles_and_no_library_module_imports_data_prep():
  modules = _modules()
  graph = {name: _imports(name, path, modules) for name, path in modules.items()}
  for name, path in modules.items():
    text = open(path, encoding="utf-8").read()
    assert "data_prep" not in {n.split(".")[0] for n in _raw_imports(text)}, f"{name} imports data_prep"
  # Any cycle shows up as a back edge of a depth-first search.
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for child in sorted(graph[node]):
      if state.get(child) == "open":
        cycle = stack[stack.index(child):] + [child]
        raise AssertionError("import cycle: " + " -> ".join(cycle))
      if child not in state:
        visit(child)
    stack.pop()
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node)


def _raw_imports(text):
  names = set()
  for node in ast.walk(ast.parse(text)):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and not node.level:
      names.add(node.module or "")
  return names


def test_every_library_module_imports_without_optional_packages_and_device_side_code_needs_no_grain_or_opencv():
  library = sorted(name for name in _modules() if ".tools." not in name)
  code = textwrap.dedent(f"""
    import importlib, sys
    for name in {list(DEVICE_SIDE)!r}:
      importlib.import_module(name)
    heavy = sorted(m for m in ("grain", "cv2", "data_prep", "tensorflow") if m in sys.modules)
    assert not heavy, "device-side code imported " + ", ".join(heavy)
    for name in {library!r}:
      importlib.import_module(name)
    # The core install has neither (TensorBoard files come from tensorboard's protos; TFDS is an extra).
    optional = sorted(m for m in ("tensorflow", "tensorflow_datasets", "torch") if m in sys.modules)
    assert not optional, "the library imported the optional " + ", ".join(optional)
    print("OK")
  """)
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


PROGRAMS = sorted([name for name in _modules() if ".tools." in name] + [
    "videomae_jax.main", "data_prep.build_shards", "data_prep.make_demo", "benchmarks.input_pipeline",
    "benchmarks.train_step", "benchmarks.gpu_suite", "benchmarks.torch_baseline", "benchmarks.shard_build"])


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_starts_and_explains_each_of_its_flags(program):
  result = subprocess.run([sys.executable, "-m", program, "--helpshort"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  output = result.stdout + result.stderr
  # Every program is an absl app, and absl exits with status 1 after printing the help (its convention, the same
  # for all of ours); what matters is that it got there (no traceback).
  assert result.returncode == 1 and "Traceback" not in output, output[-3000:]
  assert f"python -m {program}" in output and "flags:" in output
  undescribed = re.findall(r"^\s+(--\S+):\s*$", output, flags=re.M)
  assert not undescribed, f"flags without a description: {undescribed}"


THROWAWAY_TASK = '''
"""A task this repository does not know: regress each clip's mean color with 6 parameters."""
import dataclasses

import jax
import jax.numpy as jnp

from videomae_jax import default_config
from videomae_jax.models import model_spec_from_config
from videomae_jax.normalization import normalize
from videomae_jax.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class MeanColorTask(Task):
  input_mode = "pretrain"
  params_kind = "mean_color"

  @classmethod
  def from_config(cls, config):
    return cls(spec=model_spec_from_config(config.model))

  def init_params(self, rng):
    return {"scale": jnp.zeros((3,)), "bias": jax.random.normal(rng, (3,))}

  def abstract_batch(self, batch_size, sharding=None):
    spec = self.spec
    return {"video": jax.ShapeDtypeStruct((batch_size, spec.num_frames, spec.image_size, spec.image_size, 3),
                                          jnp.uint8, sharding=sharding)}

  def loss(self, params, batch, rng, train=True):
    color = normalize(batch["video"]).mean(axis=(1, 2, 3))
    prediction = params["bias"] + params["scale"] * jnp.mean(color, axis=-1, keepdims=True)
    return jnp.mean(jnp.square(prediction - color)), {}


TASK = MeanColorTask


def get_config():
  config = default_config.pretrain_config("custom")
  config.task = "mean_color_task"  # this module's import path: the registry imports it and takes TASK
  config.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=8, num_frames=4, image_size=32,
                           compute_dtype="float32"))
  config.batch_size, config.num_train_steps, config.warmup_steps = 4, 6, 1
  config.log_every_steps = config.checkpoint_every_steps = 2
  config.optimizer.base_lr, config.optimizer.grad_clip_norm = 2.0, 0.0
  config.data.update(dict(repeated_aug=1, crop_on_device=False, num_workers=0, num_videos_per_epoch=8,
                          demo_videos_per_class=1, demo_num_frames=8, demo_size=32))
  config.data.sources = [dict(name="demo", path="", stride=1, weight=1.0, num_videos=4)]
  return config
'''


def test_a_new_task_is_one_module_and_trains_through_main(tmp_path):
  (tmp_path / "mean_color_task.py").write_text(THROWAWAY_TASK)
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
  result = subprocess.run([sys.executable, "-m", "videomae_jax.main", f"--config={tmp_path / 'mean_color_task.py'}",
                           f"--workdir={workdir}", f"--config.data.demo_dir={tmp_path / 'demo'}",
                           "--compilation_cache_dir="], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  losses = [json.loads(line)["train/loss"] for line in open(workdir / "metrics.jsonl")]
  assert len(losses) == 3 and losses[-1] < losses[0]
  assert json.loads((workdir / "config.json").read_text())["task"] == "mean_color_task"
  assert (workdir / "checkpoints" / "6").is_dir()
