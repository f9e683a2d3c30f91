"""Training: one trainer for every kind of run, with task plug-ins.

* :mod:`~drifting_jax.training.config` — the one config schema (:class:`RunConfig` and the
  tasks' subclasses), validator, loader and ``--set`` overrides;
* :mod:`~drifting_jax.training.state` — the one :class:`TrainState`, objective, optimizer,
  learning-rate schedule and update;
* :mod:`~drifting_jax.training.checkpoint` — one checkpoint tree format (orbax);
* :mod:`~drifting_jax.training.trainer` — :func:`train`, :func:`load_run`,
  :func:`sample_run`, :func:`evaluate_run`;
* :mod:`~drifting_jax.training.tasks` — the tasks (``"toy"``, ``"images"``, ``"encoder"``);
* :mod:`~drifting_jax.training.driver`, :mod:`~drifting_jax.training.rundir`,
  :mod:`~drifting_jax.training.parallel` — the loop skeleton, the run directory, data
  parallelism over devices and hosts.
"""

import warnings

from drifting_jax.training import checkpoint, config, driver, parallel, rundir, state, tasks
from drifting_jax.training.checkpoint import make_manager, resolve_checkpoint
from drifting_jax.training.config import (RunConfig, apply_overrides, as_run_config,
                                          config_dict, config_from_dict, config_to_dict,
                                          load_config, resolve_config, validate_config)
from drifting_jax.training.parallel import make_mesh, maybe_initialize_distributed
from drifting_jax.training.state import (TrainState, apply_gradients, build_objective,
                                         make_lr_schedule, make_optimizer, split_run_key)
from drifting_jax.training.tasks import (EncoderConfig, EncoderTask, ImageConfig, ImageTask,
                                         Task, ToyConfig, ToyTask, get_task, make_task,
                                         register_task, task_names)
from drifting_jax.training.tasks.toy import (evaluate, generate, make_model, make_train_step,
                                             sample_data, save_scatter)
from drifting_jax.training.trainer import (Hook, TrainResult, evaluate_run, load_run,
                                           restore_run, sample_run, train)

__all__ = [
    "EncoderConfig", "EncoderTask", "Hook", "ImageConfig", "ImageTask", "RunConfig", "Task", "ToyConfig", "ToyTask",
    "TrainResult", "TrainState", "apply_gradients", "apply_overrides", "as_run_config",
    "build_objective", "checkpoint", "config", "config_dict", "config_from_dict",
    "config_to_dict", "driver", "evaluate", "evaluate_run", "generate", "get_task",
    "load_config", "load_run", "make_lr_schedule", "make_manager", "make_mesh", "make_model",
    "make_optimizer", "make_task", "make_train_step", "maybe_initialize_distributed",
    "parallel", "register_task", "resolve_checkpoint", "resolve_config", "restore_run",
    "rundir", "sample_data", "sample_run", "save_scatter", "split_run_key", "state", "tasks",
    "task_names", "train", "validate_config",
]


# ------------------------------------------------------------ deprecated (removed in v0.4)
def train_images(config, workdir, *, overrides=None, dataset=None, objective=None,
                 force_new=False):
  """Deprecated: ``train(config, workdir, ...).metrics``."""
  _deprecated("train_images", "train(config, workdir).metrics")
  return train(config, workdir, overrides=overrides, dataset=dataset, objective=objective,
               force_new=force_new).metrics


def load_image_run(path):
  """Deprecated: ``restore_run(path)`` returns ``(task, state, run_dir)``."""
  _deprecated("load_image_run", "restore_run(path)")
  task, state, _ = restore_run(path)
  return task, state, int(state.step)


def sample_images(workdir_or_checkpoint, *, num, out_path, class_id=None, cfg_scale=None,
                  seed=0, use_ema=True):
  """Deprecated: ``sample_run(path, num=..., out=..., class_id=..., cfg_scale=...)``."""
  _deprecated("sample_images", "sample_run(path, num=..., out=...)")
  if not str(out_path).lower().endswith(".png"):
    raise ValueError(f"`out_path` must end in .png, got {out_path!r}")
  return sample_run(workdir_or_checkpoint, num=num, out=out_path, seed=seed,
                    class_id=class_id, cfg_scale=cfg_scale, use_ema=use_ema)


def evaluate_image_run(source, **options):
  """Deprecated: ``evaluate_run(path, **options)``."""
  _deprecated("evaluate_image_run", "evaluate_run(path, ...)")
  return evaluate_run(source, **options)


def make_image_objective(cfg):
  """Deprecated: :func:`build_objective`."""
  _deprecated("make_image_objective", "build_objective(cfg)")
  return build_objective(cfg)


def build(cfg, *, objective=None):
  """Deprecated: ``ToyTask(cfg)`` (model, optimizer, objective, ``sample_batch``)."""
  _deprecated("build", "ToyTask(cfg) / make_task(cfg)")
  return make_task(cfg, objective=objective)


def init_state(cfg, model=None, optimizer=None):
  """Deprecated: ``make_task(cfg).init_state()``."""
  del model, optimizer
  _deprecated("init_state", "make_task(cfg).init_state()")
  return make_task(cfg).init_state()


def _deprecated(name: str, instead: str) -> None:
  warnings.warn(f"drifting_jax.training.{name} is deprecated (v0.3) and will be removed in "
                f"v0.4; use {instead}", DeprecationWarning, stacklevel=3)
