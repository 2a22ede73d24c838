"""What the trainer trains: the task registry, the only code that reads `config.task`.

A task is one module defining a `Task` subclass (videomae_jax.tasks.base) and naming it `TASK`. Built in:

  pretrain   VideoMAE V2 / MATS masked video pretraining (videomae_jax.tasks.pretrain)
  classify   supervised fine-tuning and post-pretraining of the classifier (videomae_jax.tasks.classify)
  distill    knowledge distillation of a classifier from a frozen teacher classifier (videomae_jax.tasks.distill)

`config.task` is one of those names or the import path of any other task module (`'my_project.my_task'`), so a
new task is one module plus a config; nothing else changes.
"""
from __future__ import annotations

import importlib
from typing import Type

from videomae_jax.errors import ConfigError
from videomae_jax.tasks.base import Task

BUILTIN = {"pretrain": "videomae_jax.tasks.pretrain", "classify": "videomae_jax.tasks.classify",
           "distill": "videomae_jax.tasks.distill"}


def task_class(name: str) -> Type[Task]:
  """The Task subclass `TASK` of a built-in task name or of a task module's import path."""
  module_name = BUILTIN.get(name, name)
  try:
    module = importlib.import_module(module_name)
  except (ImportError, ValueError) as error:
    raise ConfigError(f"config.task={name!r} is unknown ({error}); use one of {sorted(BUILTIN)} or the import "
                      "path of a module that defines TASK (a videomae_jax.tasks.base.Task subclass).") from error
  cls = getattr(module, "TASK", None)
  if not (isinstance(cls, type) and issubclass(cls, Task)):
    raise ConfigError(f"config.task={name!r}: {module_name} defines no TASK (a videomae_jax.tasks.base.Task "
                      "subclass).")
  return cls


def from_config(config) -> Task:
  """The validated task of a config; raises ConfigError naming the key to change."""
  return task_class(config.task).from_config(config)
