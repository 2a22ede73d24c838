"""What the trainer trains: the task registry, the only code that reads `config.task`.

A task is one module defining a `Task` subclass (videomae_jax.tasks.base) and naming it `TASK`. Built in:

  pretrain   VideoMAE V2 / MATS masked video pretraining (videomae_jax.tasks.pretrain)
  classify   supervised fine-tuning and post-pretraining of the classifier (videomae_jax.tasks.classify)
  distill    knowledge distillation of a classifier from a frozen teacher classifier (videomae_jax.tasks.distill)

`config.task` is one of those names or the import path of any other task module (`'my_project.my_task'`), so a
new task is one module plus a config; nothing else changes.
"""
from __future__ import annotations

from typing import Type

from videomae_jax import registry
from videomae_jax.tasks.base import Task

BUILTIN = {"pretrain": "videomae_jax.tasks.pretrain", "classify": "videomae_jax.tasks.classify",
           "distill": "videomae_jax.tasks.distill"}


def task_class(name: str) -> Type[Task]:
  """The Task subclass `TASK` of a built-in task name or of a task module's import path."""
  return registry.load_class("config.task", name, BUILTIN, "TASK", Task)


def from_config(config) -> Task:
  """The validated task of a config; raises ConfigError naming the key to change."""
  return task_class(config.task).from_config(config)
