"""The one lookup behind `config.task` and `config.evals.*.kind`: a built-in name or the import path of a module
that defines the class (tasks.TASK, evaluators.EVALUATOR), so a new one is one module and no edit here."""
from __future__ import annotations

import importlib
from typing import Mapping, Type

from videomae_jax.errors import ConfigError


def load_class(key: str, name: str, builtin: Mapping[str, str], attribute: str, base: type) -> Type:
  """The `attribute` of module `builtin[name]` (else of module `name`), checked to be a `base` subclass.
  `key` is the config key that named it, for the error."""
  module_name = builtin.get(name, name)
  expected = f"{attribute} (a {base.__module__}.{base.__name__} subclass)"
  try:
    module = importlib.import_module(module_name)
  except (ImportError, ValueError) as error:
    raise ConfigError(f"{key}={name!r} is unknown ({error}); use one of {sorted(builtin)} or the import path of a "
                      f"module that defines {expected}.") from error
  cls = getattr(module, attribute, None)
  if not (isinstance(cls, type) and issubclass(cls, base)):
    raise ConfigError(f"{key}={name!r}: {module_name} defines no {expected}.")
  return cls
