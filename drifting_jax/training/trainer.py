"""The one trainer: ``train(config, workdir)`` for every task, ``load_run`` / ``sample_run`` /
``evaluate_run`` on what it leaves behind.

``train`` resolves the config (a :class:`~drifting_jax.training.config.RunConfig`, a
``get_config()`` file, or None for the default toy run; plus overrides), builds its task
(:mod:`drifting_jax.training.tasks`) and runs it in ``workdir``::

    .lock                    held by the one process training here (rundir.RunLock)
    config.json              the configuration the run was started with
    config_amendments.jsonl  later changes of bookkeeping settings on resume
    checkpoints/<step>/      orbax, one TrainState format (training.checkpoint)
    metrics.jsonl            one record every ``log_every`` steps
    ...                      the task's final files (metrics.json, samples.png, ...)

An existing run is resumed from its newest checkpoint that restores (a corrupt newer one is
moved to ``corrupt-checkpoints/``); a configuration that differs from the recorded one in
anything but the task's amendable fields is refused (``rundir.ConfigMismatch``);
``force_new`` moves the old run aside. A non-finite loss or gradient stops the run with
``FloatingPointError`` before anything of that step is logged or saved. ``workdir=None``
trains in memory (no files; hooks and the returned state only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from tqdm.auto import tqdm

from drifting_jax import _validation
from drifting_jax.training import checkpoint as ckpt, driver, rundir
from drifting_jax.training.config import (RunConfig, config_from_dict, config_to_dict,
                                          resolve_config)
from drifting_jax.training.state import TrainState
from drifting_jax.training.tasks import Task, get_task, make_task

__all__ = ["Hook", "TrainResult", "evaluate_run", "load_run", "restore_run", "sample_run",
           "train"]


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns.

  Attributes:
    state: the final state (host layout).
    metrics: the task's final metrics (a run stopped by ``until``: the last checked step's
      metrics and ``step``).
    workdir: the run directory (None for an in-memory run).
  """

  state: TrainState
  metrics: dict[str, Any]
  workdir: str | None


@dataclasses.dataclass(frozen=True)
class Hook:
  """A user callback at chosen steps of the loop (the pipeline's per-step hook).

  Attributes:
    when: every that many steps (``done % when == 0``; 0: never) or a predicate
      ``when(done) -> bool``.
    callback: ``callback(done, state, values)`` with the completed step count, the current
      :class:`TrainState` (host layout) and the step's host metrics.
    in_record: the callback returns fields for the step's ``metrics.jsonl`` record.
  """

  when: int | Callable[[int], bool]
  callback: Callable[[int, TrainState, dict[str, float]], Mapping[str, Any] | None]
  in_record: bool = False


def train(config: Any = None, workdir: str | os.PathLike | None = None, *,
          overrides: Any = None, dataset: Any = None, objective: Any = None,
          force_new: bool = False, hooks: Sequence[Hook] = (),
          until: int | None = None) -> TrainResult:
  """Trains (or resumes) a run of any task in ``workdir`` up to its step budget.

  Args:
    config: a :class:`~drifting_jax.training.config.RunConfig` (``ToyConfig``,
      ``ImageConfig``), a ``get_config()`` ConfigDict, a config file, or None (the default
      toy run).
    workdir: run directory (created; an existing checkpoint is resumed), or None to train
      in memory.
    overrides: ``["field=value", ...]`` or ``{field: value}`` applied to ``config``.
    dataset: in-memory data replacing the config's (image task).
    objective: objective ``fn(x [N, D], pos [M, D], step) -> (loss, metrics)`` replacing
      the one named by the config (per class group for images).
    force_new: start over even if ``workdir`` holds a run (its files are moved into
      ``workdir/replaced-<time>/``).
    hooks: per-step callbacks (:class:`Hook`).
    until: stop after this many steps as if the process were killed (no final files; a
      later call resumes from the last checkpoint).

  Returns:
    A :class:`TrainResult`.

  Raises:
    ValueError: invalid config (naming the field); ``rundir.ConfigMismatch`` when
      ``workdir`` holds a run with another configuration.
    rundir.RunDirLocked: another process trains in ``workdir``.
    FloatingPointError: a non-finite loss or gradient; training stops, the bad update is
      discarded and the checkpoints written so far are kept.
  """
  cfg = resolve_config(config, overrides)
  if until is not None:
    until = _validation.check_int("until", until, minimum=0)
  task_type = get_task(cfg)
  if force_new or workdir is None or not ckpt.has_checkpoint(workdir):  # before the data load
    task_type.check_start(cfg)
  task = task_type(cfg, dataset=dataset, objective=objective)
  if workdir is None:
    return _train_session(task, None, hooks, until)
  workdir = os.path.abspath(os.fspath(workdir))
  os.makedirs(workdir, exist_ok=True)
  with rundir.RunLock(workdir):
    if force_new:
      rundir.move_aside(workdir, task.all_run_files)
    return _train_session(task, workdir, hooks, until)


def _normalizer(cfg: RunConfig) -> Callable[[dict], dict]:
  return lambda record: config_to_dict(config_from_dict(record, task=cfg.task))


def _train_session(task: Task, workdir: str | None, hooks: Sequence[Hook],
                   until: int | None) -> TrainResult:
  cfg = task.cfg
  main = jax.process_index() == 0
  manager = None
  if workdir is not None:
    manager = ckpt.make_manager(os.path.join(workdir, ckpt.CHECKPOINT_DIR),
                                max_to_keep=cfg.max_to_keep)
  try:
    latest = None if manager is None else manager.latest_step()
    # a fresh start, or the shapes a checkpoint restores into
    state = task.init_state() if latest is None else task.template_state()
    log = None
    if manager is not None:
      if main:  # refuse before reading the checkpoint with this config's shapes
        rundir.record_config(workdir, config_to_dict(cfg), step=latest or 0,
                             amendable=task.amendable, normalize=_normalizer(cfg))
      if latest is not None:
        state = ckpt.restore(manager, state, quarantine=main)
      log = rundir.MetricsLog(os.path.join(workdir, "metrics.jsonl"),
                              resume_step=int(state.step), enabled=main)
  except BaseException:
    if manager is not None:
      manager.close()
    raise

  start, total = int(state.step), task.total_steps
  end = total if until is None else min(until, total)
  stepper = task.start(state)
  events = list(task.events(workdir, stepper))
  for hook in hooks:
    events.append(driver.Event(
        hook.when, lambda done, values, h=hook: h.callback(done, stepper.state(), values),
        in_record=hook.in_record))
  pbar = tqdm(total=total, initial=start, disable=not cfg.progress, unit=task.unit,
              dynamic_ncols=True, desc=task.progress_desc())
  save = None if manager is None else (lambda done: ckpt.save(manager, stepper.state()))
  with log if log is not None else contextlib.nullcontext():
    # run_loop closes the progress bar and the manager
    out = driver.run_loop(
        start=start, end=end, total=total, step=stepper.step, guard=task.guard(),
        manager=manager, log=log, log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every, save=save, events=events, record=task.record,
        on_check=task.on_check, progress=pbar, postfix=task.postfix)
  state = stepper.state()
  if end == total:
    metrics = task.finalize(state, workdir, out)
  else:
    metrics = dict(out.values, step=int(end))
  return TrainResult(state=state, metrics=metrics, workdir=workdir)


# --------------------------------------------------------------------------- finished runs
def restore_run(path: str | os.PathLike, *, load_data: bool = False
                ) -> tuple[Task, TrainState, str]:
  """The task (built from the run's config), restored state and run directory of a run.

  Args:
    path: a run directory (newest checkpoint that restores), its ``checkpoints`` directory,
      or one ``checkpoints/<step>``.
    load_data: also load the task's data.

  Raises:
    ValueError: no ``config.json`` or no checkpoint found.
  """
  def build(record):
    task = make_task(config_from_dict(record), load_data=load_data)
    return task, task.template_state(), task.cfg.max_to_keep

  return ckpt.restore_run_state(path, build)


def load_run(path: str | os.PathLike) -> tuple[RunConfig, TrainState]:
  """A run's config and checkpointed state (see :func:`restore_run` for ``path``)."""
  task, state, _ = restore_run(path)
  return task.cfg, state


def sample_run(path: str | os.PathLike, *, num: int, out: str | os.PathLike, seed: int = 0,
               **options: Any) -> str:
  """Writes ``num`` samples of a trained run to ``out`` (the task's format: toy ``.npz`` or a
  scatter ``.png``; images a ``.png`` grid and an ``.npz`` side by side).

  Args:
    path: run or checkpoint path (:func:`restore_run`).
    num: number of samples (>= 1).
    out: output path ending in ``.npz`` or ``.png``.
    seed: sampling seed.
    **options: task options (images: ``class_id``, ``cfg_scale``, ``use_ema``); an option
      the task does not have raises ``ValueError``.
  """
  num = _validation.check_int("num", num, minimum=1)
  ext = os.path.splitext(os.fspath(out))[1].lower()
  if ext not in (".npz", ".png"):
    raise ValueError(f"`out` must end in .npz or .png, got {os.fspath(out)!r}")
  task, state, _ = restore_run(path)
  return task.sample(state, num=num, out=os.fspath(out), seed=seed, **options)


def evaluate_run(path: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 **options: Any) -> dict[str, Any]:
  """The task's metrics of a trained run, written as JSON to ``out`` (default
  ``<run dir>/eval_metrics.json``).

  Args:
    path: run or checkpoint path (:func:`restore_run`).
    out: metrics JSON path.
    **options: task options (toy: ``num_samples``, ``num_projections``, ``seed``; images:
      ``num_samples``, ``fid``, ``classifier``, ``inception_weights``, ``seed``, ``k``,
      ``progress``); an option the task does not have raises ``ValueError``.
  """
  task, state, run_dir = restore_run(path)
  return task.evaluate(state, run_dir=run_dir, out=None if out is None else os.fspath(out),
                       **options)
