"""The one configuration schema of training runs: a shared base, per-task fields, one validator,
one loader and one override path.

Every run is described by a dataclass derived from :class:`RunConfig`, which holds the fields
every run has — the task, the optimizer and its learning-rate schedule, the step budget, the
logging/checkpoint cadence and the seed; runs that train a generator with a drift objective
add the objective and its bandwidth schedule (:class:`DriftRunConfig`). Each task
(:mod:`drifting_jax.training.tasks`) adds its own fields in a subclass registered with
:func:`register` under its ``TASK`` name, and may change the defaults of shared fields.

A config file (``experiments/configs/*.py``) defines ``get_config()`` returning an
``ml_collections.ConfigDict`` that starts from :func:`config_dict` (every field at its
default, keys locked) and sets what differs::

    from drifting_jax.training import config_dict

    def get_config():
      config = config_dict("toy")          # or config_dict("images")
      config.objective = "naive-gauss"
      config.bandwidth = 0.05
      return config

:func:`load_config` turns a config file (or a run's ``config.json``) into the typed
dataclass, :func:`apply_overrides` applies ``--set key=value`` overrides (dictionary fields
accept a whole literal, ``--set objective_kwargs="{'alpha': 0.01}"``, or a dotted key,
``--set objective_kwargs.alpha=0.01``), and :func:`validate_config` checks every field
against the constraints declared by the schema (``ValueError`` naming the field).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from drifting_jax import _validation
from drifting_jax.training import overrides as overrides_lib

__all__ = ["DriftRunConfig", "RunConfig", "apply_overrides", "as_run_config", "config_dict", "config_from_dict",
           "config_to_dict", "config_type", "load_config", "register", "resolve_config",
           "task_names", "validate_config"]


# ------------------------------------------------------------------------------ constraints
def _representable(v: float | int, integer: bool) -> bool:
  """Whether a config number survives the step's int32 / float32 arithmetic unchanged in kind
  (a learning rate of 1e39 would be inf in float32, one of 1e-50 silently 0)."""
  if integer:
    return abs(v) <= np.iinfo(np.int32).max
  return _validation.representable(v, np.float32)


@dataclasses.dataclass(frozen=True)
class Num:
  """A finite number (or int) in a range; ``none`` admits None."""

  low: float | None = None
  strict: bool = True
  high: float | None = None
  high_strict: bool = True
  integer: bool = False
  none: bool = False

  def __call__(self, name: str, v: Any) -> None:
    if v is None and self.none:
      return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (isinstance(v, int) if self.integer else True)
    if ok and self.low is not None:
      ok = v > self.low if self.strict else v >= self.low
    if ok and self.high is not None:
      ok = v < self.high if self.high_strict else v <= self.high
    if ok and not _representable(v, self.integer):
      raise ValueError(
          f"`{name}` must be representable in the training step's "
          f"{'int32' if self.integer else 'float32'} arithmetic ("
          f"{'|v| <= 2**31 - 1' if self.integer else '0 or 1.2e-38 <= |v| <= 3.4e38'}), "
          f"got {v!r}")
    if not ok:
      bound = "" if self.low is None else f" {'>' if self.strict else '>='} {self.low}"
      if self.high is not None:
        bound += f"{' and' if bound else ''} {'<' if self.high_strict else '<='} {self.high}"
      what = "an int" if self.integer else "a finite number"
      raise ValueError(f"`{name}` must be {what}{bound}{' or None' if self.none else ''}, "
                       f"got {v!r}")


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of a fixed set of values."""

  values: tuple

  def __call__(self, name: str, v: Any) -> None:
    if v not in self.values:
      raise ValueError(f"`{name}` must be one of {self.values}, got {v!r}")


@dataclasses.dataclass(frozen=True)
class Kind:
  """An instance of a Python type (``str``, ``bool``, ``dict``); ``none`` admits None."""

  type: type
  none: bool = False

  def __call__(self, name: str, v: Any) -> None:
    if v is None and self.none:
      return
    if not isinstance(v, self.type) or (self.type is not bool and isinstance(v, bool)):
      raise ValueError(f"`{name}` must be a {self.type.__name__}"
                       f"{' or None' if self.none else ''}, got {v!r}")


POSITIVE = Num(low=0)
POSITIVE_INT = Num(low=0, integer=True)
COUNT = Num(low=0, strict=False, integer=True)      # an int >= 0
UNIT = Num(low=0, strict=False, high=1)             # [0, 1)


# ----------------------------------------------------------------------------------- schema
@dataclasses.dataclass
class RunConfig:
  """The fields every training run has (each task subclasses it; see :func:`register`).

  Attributes:
    task: the task name (:mod:`drifting_jax.training.tasks`); fixed by the subclass.
    optimizer: ``"adam"`` or ``"adamw"`` (decoupled ``weight_decay``).
    learning_rate: peak learning rate.
    b1, b2, eps: Adam moments' decays and epsilon.
    weight_decay: AdamW's decoupled weight decay (0 with ``"adam"``).
    lr_schedule: ``"constant"`` or ``"cosine"``: after a linear warm-up over ``warmup_steps``
      optimizer steps the rate stays at ``learning_rate`` or decays along a cosine to
      ``final_lr_fraction · learning_rate`` at ``num_steps``.
    warmup_steps: linear learning-rate warm-up steps (0: none).
    final_lr_fraction: end value of the cosine decay relative to ``learning_rate``.
    grad_clip: global-norm gradient clipping (None: off).
    num_steps: optimizer steps of the run (a resumed run continues up to it).
    seed: run seed (initialisation, noise and data streams).
    log_every: ``metrics.jsonl`` interval.
    checkpoint_every: checkpoint interval (the last step is always saved).
    max_to_keep: checkpoints kept on disk.
    progress: show a progress bar.
  """

  TASK: ClassVar[str] = ""
  # constraints of the fields, merged along the class hierarchy (see validate_config)
  CHECKS: ClassVar[dict[str, Any]] = {
      "task": Kind(str),
      "optimizer": Choice(("adam", "adamw")), "learning_rate": POSITIVE, "b1": UNIT, "b2": UNIT,
      "eps": POSITIVE, "weight_decay": Num(low=0, strict=False),
      "lr_schedule": Choice(("constant", "cosine")), "warmup_steps": COUNT,
      "final_lr_fraction": Num(low=0, strict=False, high=1, high_strict=False),
      "grad_clip": Num(low=0, none=True),
      "num_steps": COUNT, "seed": COUNT, "log_every": POSITIVE_INT,
      "checkpoint_every": POSITIVE_INT, "max_to_keep": POSITIVE_INT, "progress": Kind(bool),
  }
  # fields a resumed run may change (recorded as amendments); any other change refuses
  AMENDABLE: ClassVar[tuple[str, ...]] = ("num_steps", "log_every", "checkpoint_every",
                                          "max_to_keep", "progress")
  # fields the compiled training programs do not depend on (num_steps only with a constant
  # learning rate: it is the horizon of a decaying schedule)
  NOT_IN_STEP: ClassVar[tuple[str, ...]] = ("num_steps", "seed", "log_every",
                                            "checkpoint_every", "max_to_keep", "progress")

  task: str = ""
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.0
  lr_schedule: str = "cosine"
  warmup_steps: int = 100
  final_lr_fraction: float = 0.0
  grad_clip: float | None = None
  num_steps: int = 1000
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 1000
  max_to_keep: int = 2
  progress: bool = True

  def __post_init__(self):
    if not self.task:
      self.task = self.TASK

  def check(self) -> None:
    """Constraints between fields (subclasses extend it; field constraints: ``CHECKS``)."""
    if self.optimizer == "adam" and self.weight_decay != 0:
      raise ValueError(f"`weight_decay` ({self.weight_decay}) needs optimizer='adamw'")

  @classmethod
  def upgrade(cls, record: dict) -> dict:
    """A recorded config (``config.json``) written by an earlier version, in today's fields."""
    return dict(record)

  @classmethod
  def checks(cls) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
      out.update(vars(klass).get("CHECKS", {}))
    return out


@dataclasses.dataclass
class DriftRunConfig(RunConfig):
  """The fields of every run that trains a generator with a drift objective.

  Attributes:
    objective: objective name (:func:`drifting_jax.objectives.objective_names`).
    bandwidth: kernel bandwidth ``sigma`` / temperature ``tau`` (> 0).
    objective_kwargs: extra options of the objective (e.g. Sinkhorn ``alpha``).
    schedule: optional bandwidth schedule (:func:`drifting_jax.schedules.get_schedule`); the
      bandwidth at optimizer step ``t`` is then ``schedule(t)``.
    schedule_kwargs: hyperparameters of ``schedule``.
    stop_gradient: train on the frozen-field loss (True) or the coupled ``||V||^2``.
  """

  CHECKS: ClassVar[dict[str, Any]] = {
      "objective": Kind(str), "bandwidth": POSITIVE, "objective_kwargs": Kind(dict),
      "schedule": Kind(str, none=True), "schedule_kwargs": Kind(dict),
      "stop_gradient": Kind(bool),
  }

  objective: str = "naive-laplace"
  bandwidth: float = 0.03
  objective_kwargs: dict = dataclasses.field(default_factory=dict)
  schedule: str | None = None
  schedule_kwargs: dict = dataclasses.field(default_factory=dict)
  stop_gradient: bool = True


_TYPES: dict[str, type[RunConfig]] = {}


def register(cls: type[RunConfig]) -> type[RunConfig]:
  """Class decorator: registers a task's config type under ``cls.TASK``."""
  if not (isinstance(cls, type) and issubclass(cls, RunConfig) and cls.TASK):
    raise ValueError(f"`cls` must be a RunConfig subclass with a TASK name, got {cls!r}")
  _TYPES[cls.TASK] = cls
  return cls


def task_names() -> list[str]:
  """The registered task names."""
  return sorted(_TYPES)


def config_type(task: str) -> type[RunConfig]:
  """The config dataclass of ``task``."""
  if task not in _TYPES:
    raise ValueError(f"`task` must be one of {task_names()}, got {task!r}")
  return _TYPES[task]


# ------------------------------------------------------------------------------- validation
def validate_config(cfg: RunConfig) -> RunConfig:
  """Checks every field against the schema's constraints, then the cross-field ones.

  Raises:
    ValueError: naming the offending field and the expectation.
  """
  if not isinstance(cfg, RunConfig):
    raise ValueError(f"`config` must be a RunConfig (e.g. ToyConfig, ImageConfig), got "
                     f"{type(cfg).__name__}")
  if cfg.task != cfg.TASK:
    raise ValueError(f"`task` must be {cfg.TASK!r} for a {type(cfg).__name__}, got "
                     f"{cfg.task!r}")
  for name, check in type(cfg).checks().items():
    check(name, getattr(cfg, name))
  cfg.check()
  return cfg


# --------------------------------------------------------------------------- dict and files
def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
  """The JSON record of ``cfg`` (tuples become lists)."""
  return json.loads(json.dumps(dataclasses.asdict(cfg), default=repr))


def config_from_dict(d: Mapping[str, Any], task: str | None = None) -> RunConfig:
  """The typed config of a record (``config.json``); the task is ``d["task"]`` (records of
  toy runs written before v0.3 have none: ``"toy"``).

  Raises:
    ValueError: unknown task or unknown fields.
  """
  d = dict(d)
  task = task or d.get("task") or "toy"
  cls = config_type(task)
  d = cls.upgrade(d)
  d.setdefault("task", task)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - names)
  if unknown:
    raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
  return cls(**d)


def config_dict(task: str = "toy") -> Any:
  """Every field of ``task``'s configuration at its default, as an ``ml_collections.ConfigDict``.

  The starting point of a config file's ``get_config()``. Its keys are locked, so a
  misspelt field raises ``AttributeError`` and a value of another type ``TypeError``
  (ml_collections' type safety; an int is accepted for a float field); the free-form dict
  fields (``objective_kwargs``, ``model_overrides``, ...) stay open for new keys.

  Args:
    task: a registered task name (``"toy"``, ``"images"``).
  """
  import ml_collections

  cfg = config_type(task)()
  out = ml_collections.ConfigDict(dataclasses.asdict(cfg))
  out.lock()
  for f in dataclasses.fields(cfg):
    if isinstance(getattr(cfg, f.name), dict):
      out[f.name].unlock()
  return out


def as_run_config(obj: Any) -> RunConfig:
  """The typed configuration of a ``get_config()`` value.

  Args:
    obj: an ``ml_collections.ConfigDict`` (its ``task`` field names the type) or a
      :class:`RunConfig` instance (returned as is).

  Raises:
    ValueError: ``obj`` is neither, or has unknown fields.
  """
  if isinstance(obj, RunConfig):
    return obj
  if type(obj).__module__.startswith("ml_collections"):
    return config_from_dict(obj.to_dict())
  raise ValueError(f"`get_config()` must return an ml_collections.ConfigDict (see "
                   f"config_dict()) or a RunConfig, got {type(obj).__name__}")


def load_config(path: str | os.PathLike | None = None) -> RunConfig:
  """Loads a Python config file (``get_config()``) or a run's ``config.json``.

  Args:
    path: ``.py`` file defining ``get_config()``, a ``.json`` record, or ``None`` for the
      default toy run (identical to ``experiments/configs/toy_default.py``).

  Raises:
    ValueError: the file does not exist or does not describe a run configuration.
  """
  if path is None:
    return config_type("toy")()
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"`config` file not found: {path!r}")
  if path.endswith(".json"):
    with open(path) as f:
      try:
        return config_from_dict(json.load(f))
      except json.JSONDecodeError as e:
        raise ValueError(f"`config` file {path!r} is not valid JSON ({e})") from None
  spec = importlib.util.spec_from_file_location("_drifting_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"`config` file {path!r} must define get_config()")
  try:  # a locked ConfigDict raises AttributeError / TypeError for a misspelt or mistyped key
    return as_run_config(module.get_config())
  except (AttributeError, TypeError, KeyError, ValueError) as e:
    raise ValueError(f"`config` file {path!r}: {str(e).strip(chr(39))}") from e


def apply_overrides(cfg: RunConfig, overrides: Any) -> RunConfig:
  """A copy of ``cfg`` with overrides applied.

  Args:
    cfg: base config.
    overrides: ``["field=value", "dict_field.key=value", ...]`` (values parsed as Python
      literals and coerced to the field's type by :mod:`drifting_jax.training.overrides`;
      non-finite floats are rejected), or a dict ``{field: value}`` of typed values.

  Raises:
    ValueError: malformed override, unknown field, or a value of the wrong type.
  """
  if isinstance(overrides, str):
    raise ValueError(f"`overrides` must be a list of 'key=value' strings or a dict, got the "
                     f"string {overrides!r}")
  return overrides_lib.apply(cfg, overrides if isinstance(overrides, dict)
                             else list(overrides or ()))


def resolve_config(config: Any = None, overrides: Any = None) -> RunConfig:
  """The validated config of ``config`` (a :class:`RunConfig`, a ``get_config()``
  ConfigDict, a config file path, or None for the default toy run) with ``overrides``."""
  if config is None or isinstance(config, (str, os.PathLike)):
    cfg = load_config(config)
  else:
    cfg = as_run_config(config)
  return validate_config(apply_overrides(cfg, overrides))
