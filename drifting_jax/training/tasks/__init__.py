"""Training tasks: the kinds of run the one trainer runs, by name.

* ``"toy"`` — :class:`~drifting_jax.training.tasks.toy.ToyTask` (MLP generator, 2-D data);
* ``"images"`` — :class:`~drifting_jax.training.tasks.images.ImageTask` (class-conditional
  image generators, data-parallel);
* ``"encoder"`` — :class:`~drifting_jax.training.tasks.encoder.EncoderTask` (masked-autoencoder
  pre-training of the feature encoder that image runs compute their loss on).

A new kind of run subclasses :class:`~drifting_jax.training.tasks.base.Task` and its config
:class:`~drifting_jax.training.config.RunConfig` (registered with
:func:`~drifting_jax.training.config.register`), and is added with :func:`register_task`.
"""

from __future__ import annotations

from typing import Any

from drifting_jax.training.config import RunConfig
from drifting_jax.training.tasks.base import Stepper, Task
from drifting_jax.training.tasks.encoder import EncoderConfig, EncoderTask
from drifting_jax.training.tasks.images import ImageConfig, ImageTask
from drifting_jax.training.tasks.toy import ToyConfig, ToyTask

__all__ = ["EncoderConfig", "EncoderTask", "ImageConfig", "ImageTask", "Stepper", "Task", "ToyConfig", "ToyTask", "get_task",
           "make_task", "register_task", "task_names"]

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
  """Registers a :class:`Task` subclass under ``cls.name`` (usable as a class decorator)."""
  if not (isinstance(cls, type) and issubclass(cls, Task) and cls.name):
    raise ValueError(f"`cls` must be a Task subclass with a name, got {cls!r}")
  if cls.config_type.TASK != cls.name:
    raise ValueError(f"task {cls.name!r}: its config_type's TASK is "
                     f"{cls.config_type.TASK!r}")
  _TASKS[cls.name] = cls
  return cls


register_task(ToyTask)
register_task(ImageTask)
register_task(EncoderTask)


def task_names() -> list[str]:
  """The registered task names."""
  return sorted(_TASKS)


def get_task(name: str | RunConfig) -> type[Task]:
  """The task class of a name or a config."""
  name = name.task if isinstance(name, RunConfig) else name
  if name not in _TASKS:
    raise ValueError(f"`task` must be one of {task_names()}, got {name!r}")
  return _TASKS[name]


def make_task(cfg: RunConfig, **kwargs: Any) -> Task:
  """The built task of a config (``kwargs``: ``dataset``, ``objective``, ``load_data``)."""
  return get_task(cfg)(cfg, **kwargs)
