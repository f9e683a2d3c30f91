"""The task interface: what the one trainer (:mod:`drifting_jax.training.trainer`) needs to
know about a kind of run.

A task is a class built from its config (``Task(cfg, dataset=..., objective=...)``). The
trainer owns the run directory, the lock, the config record, checkpoints (one
:class:`~drifting_jax.training.state.TrainState` format), the NaN guard and the loop; the
task supplies:

* ``init_state()`` — the fresh state at step 0 (``template_state()``: one to restore a
  checkpoint into);
* ``total_steps`` — iterations of the whole run;
* ``start(state)`` — a :class:`Stepper` that runs iteration ``it`` (``step(it) ->
  metrics``) and hands back the current state (``state()``);
* ``events(workdir, stepper)`` — extra loop events (in-training evaluation, sample grids);
* ``record`` / ``postfix`` / ``guard`` — the log record, progress-bar fields, NaN guard;
* ``finalize(state, workdir, loop)`` — final files and metrics;
* ``sample`` / ``evaluate`` / ``describe`` — the CLI's ``sample``, ``eval`` and
  ``train --describe`` on a restored state.

What may change when a run resumes is the config class's ``AMENDABLE``; what the compiled
step depends on is every field not in its ``NOT_IN_STEP`` (the key of the compiled-step
cache, :meth:`Task.cached`).
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import jax

from drifting_jax.training import driver, rundir
from drifting_jax.training.checkpoint import CHECKPOINT_DIR
from drifting_jax.training.config import RunConfig, config_to_dict, validate_config
from drifting_jax.training.state import TrainState

__all__ = ["Stepper", "Task"]

_CACHE: dict[Any, Any] = {}
_CACHE_SIZE = 16


class Stepper(abc.ABC):
  """A running session: the state lives on the devices between iterations."""

  @abc.abstractmethod
  def step(self, it: int) -> dict[str, jax.Array]:
    """Runs iteration ``it``; returns its scalar metrics (device arrays, unsynchronized)."""

  @abc.abstractmethod
  def state(self) -> TrainState:
    """The current state in its canonical (host-layout) form: checkpoints, sampling."""


class Task(abc.ABC):
  """A kind of training run (toy 2-D, class-conditional images, ...).

  Args:
    cfg: the task's config (validated here).
    dataset: optional in-memory data replacing ``cfg``'s (task-specific).
    objective: optional objective ``fn(x, pos, step) -> (loss, metrics)`` replacing the one
      named by ``cfg`` (the compiled step is then not cached).
    load_data: False builds everything but the data (sampling from a checkpoint).
  """

  name: ClassVar[str] = ""
  config_type: ClassVar[type[RunConfig]] = RunConfig
  # files and folders of a run moved aside by ``force_new`` (besides the run record)
  run_files: ClassVar[tuple[str, ...]] = ()
  # metrics that must stay finite (the NaN guard)
  guard_keys: ClassVar[tuple[str, ...]] = ("loss", "grad_norm")
  # what the progress bar counts
  unit: ClassVar[str] = "step"

  def __init__(self, cfg: RunConfig, *, dataset: Any = None, objective: Any = None,
               load_data: bool = True):
    if not isinstance(cfg, self.config_type):
      raise ValueError(f"`config` must be a {self.config_type.__name__} for task "
                       f"{self.name!r}, got {type(cfg).__name__}")
    self.cfg = validate_config(cfg)
    self.custom_objective = objective

  # ------------------------------------------------------------------ what every task gives
  @property
  @abc.abstractmethod
  def total_steps(self) -> int:
    """Iterations of the whole run (checkpoints are named by iteration)."""

  @abc.abstractmethod
  def init_state(self) -> TrainState:
    """The fresh state at iteration 0 (from ``cfg.seed``)."""

  @classmethod
  def check_start(cls, cfg: RunConfig) -> None:
    """Checks what only a fresh start reads (an image run's ``init_from``) before the task
    is built and its data loaded; raises ``ValueError``. The trainer calls it when the run
    directory holds no checkpoint."""

  def template_state(self) -> TrainState:
    """A state shaped like this task's checkpoints, to restore one into (resuming, sampling,
    evaluating). ``init_state()`` unless the fresh state reads something a checkpoint
    replaces anyway (an image run's ``init_from``), which a finished run must not need."""
    return self.init_state()

  @abc.abstractmethod
  def start(self, state: TrainState) -> Stepper:
    """Places ``state`` (and the data) on the devices; returns the running session."""

  @abc.abstractmethod
  def finalize(self, state: TrainState, workdir: str | None,
               loop: driver.LoopResult) -> dict[str, Any]:
    """Final metrics of a finished run; writes the run's final files when ``workdir``."""

  def events(self, workdir: str | None, stepper: Stepper) -> list[driver.Event]:
    """Extra loop events (in-training evaluation, sample grids)."""
    del workdir, stepper
    return []

  def guard(self) -> rundir.StepGuard:
    """The NaN guard of the loop."""
    return rundir.StepGuard(self.guard_keys)

  def record(self, done: int, values: dict, steps_per_sec: float,
             elapsed_s: float) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of a logging step."""
    del elapsed_s
    return {"step": done, **values, "steps_per_sec": steps_per_sec}

  def postfix(self, done: int, values: dict, rate: float) -> dict[str, Any]:
    """Progress-bar fields at checked steps."""
    del done, rate
    return {"loss": f"{values.get('loss', float('nan')):.4g}"}

  def on_check(self, its: list[int], checked: list[dict[str, float]]) -> None:
    """Called with the host metrics of every guard check."""

  def progress_desc(self) -> str | None:
    return None

  def sample(self, state: TrainState, *, num: int, out: str, seed: int = 0,
             **options: Any) -> str:
    """Writes ``num`` samples of a restored state to ``out``; returns the path."""
    raise ValueError(f"task {self.name!r} cannot sample")

  def evaluate(self, state: TrainState, *, run_dir: str, out: str | None = None,
               **options: Any) -> dict[str, Any]:
    """Metrics of a restored state (written to ``out``, default ``<run_dir>/eval_metrics.json``)."""
    raise ValueError(f"task {self.name!r} has no evaluation")

  def describe(self) -> str:
    """A human-readable summary of the configured model."""
    return f"task {self.name!r}"

  # ------------------------------------------------------------------------------- shared
  @property
  def amendable(self) -> tuple[str, ...]:
    return tuple(self.config_type.AMENDABLE)

  @property
  def all_run_files(self) -> tuple[str, ...]:
    return (CHECKPOINT_DIR, rundir.CONFIG_FILE, rundir.AMENDMENTS_FILE, "metrics.jsonl",
            "metrics.json") + tuple(self.run_files)

  def step_key(self) -> str | None:
    """JSON of every config field the compiled programs depend on (None: not cacheable)."""
    if self.custom_objective is not None:
      return None
    skip = set(self.config_type.NOT_IN_STEP)
    if self.cfg.lr_schedule != "constant":
      skip.discard("num_steps")  # the horizon of the decaying learning rate
    record = {k: v for k, v in config_to_dict(self.cfg).items() if k not in skip}
    return json.dumps(record, sort_keys=True)

  def cached(self, name: Any, build: Callable[[], Any]) -> Any:
    """``build()``, reused by runs whose :meth:`step_key` is equal (one LRU cache of
    compiled programs for every task)."""
    key = self.step_key()
    if key is None:
      return build()
    key = (self.name, repr(name), key)
    if key in _CACHE:
      _CACHE[key] = _CACHE.pop(key)  # most recently used last
    else:
      if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
      _CACHE[key] = build()
    return _CACHE[key]

  @staticmethod
  def is_main_process() -> bool:
    return jax.process_index() == 0

  @staticmethod
  def default_eval_path(run_dir: str, out: str | None) -> str:
    return os.fspath(out) if out else os.path.join(run_dir, "eval_metrics.json")
