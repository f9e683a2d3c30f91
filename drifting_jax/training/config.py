"""Run configurations: the toy :class:`ToyConfig`, and the config-file machinery shared with
the image runs' :class:`~drifting_jax.training.image_config.ImageConfig`.

A config file (``experiments/configs/*.py``) defines ``get_config()`` returning an
``ml_collections.ConfigDict`` that starts from :func:`config_dict` (every field at its
default, keys locked) and sets what differs::

    from drifting_jax.training import config_dict

    def get_config():
      config = config_dict("toy")          # or config_dict("images")
      config.objective = "naive-gauss"
      config.bandwidth = 0.05
      return config

The loaders turn it into the typed dataclass and validate it (a dataclass instance is
accepted too). Every field can be overridden from the command line with ``--set key=value``;
dictionary fields accept either a whole literal (``--set objective_kwargs="{'alpha': 0.01}"``)
or a dotted key (``--set objective_kwargs.alpha=0.01``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import Any

from drifting_jax.training import overrides as overrides_lib

__all__ = [
    "ToyConfig",
    "apply_overrides",
    "as_run_config",
    "config_dict",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "run_config_file",
    "validate_config",
]


@dataclasses.dataclass
class ToyConfig:
  """Hyperparameters of a toy drifting run (defaults: the CLI's default run).

  Attributes:
    dataset: toy distribution name (:func:`drifting_jax.data.toy.get`).
    dataset_kwargs: keyword arguments of the sampler (e.g. ``{"noise": 0.05}``).
    objective: objective name (:func:`drifting_jax.objectives.objective_names`).
    bandwidth: kernel bandwidth ``sigma``/temperature ``tau`` (> 0), in data units.
    schedule: optional bandwidth schedule name (:func:`drifting_jax.schedules.get_schedule`);
      when set, the bandwidth at step ``t`` is ``schedule(t)`` instead of ``bandwidth``.
    schedule_kwargs: hyperparameters of ``schedule``.
    stop_gradient: train on the frozen-field loss (True) or the coupled ``||V||^2``.
    objective_kwargs: extra keyword arguments of the objective (e.g. Sinkhorn ``alpha``).
    noise_dim: generator input dimension.
    hidden: MLP hidden width.
    depth: number of hidden layers.
    activation: MLP nonlinearity (``silu``, ``relu``, ``gelu``, ``tanh``).
    learning_rate: Adam learning rate (the peak value with a schedule).
    lr_schedule: ``"constant"`` or ``"cosine"``: after a linear warm-up over ``warmup_steps``,
      the rate stays at ``learning_rate`` or decays along a cosine to
      ``final_lr_fraction · learning_rate`` at ``num_steps``.
    warmup_steps: linear learning-rate warm-up steps (0: none).
    final_lr_fraction: end value of the cosine decay relative to ``learning_rate``.
    grad_clip: optional global-norm gradient clipping (``None`` = off).
    batch_size: generated samples per step ``N`` (>= 2: self-interaction is masked).
    data_batch_size: data samples per step ``M`` (``None`` = ``batch_size``).
    num_steps: total optimizer steps (a resumed run continues up to this step).
    seed: run seed (model init, noise and data streams).
    log_every: JSONL log interval in steps.
    checkpoint_every: checkpoint interval in steps (the last step is always saved).
    max_to_keep: checkpoints kept on disk.
    eval_every: interval of in-training sliced-Wasserstein logging (0 = off).
    eval_num_samples: samples per side for the final metrics.
    eval_num_projections: random projections of the sliced Wasserstein distance.
    eval_mmd_bandwidth: Gaussian bandwidth of the MMD metric.
    eval_seed: seed of the evaluation data / noise / projections.
    progress: show a tqdm progress bar.
  """

  dataset: str = "checkerboard"
  dataset_kwargs: dict = dataclasses.field(default_factory=dict)
  objective: str = "naive-laplace"
  bandwidth: float = 0.03
  schedule: str | None = None
  schedule_kwargs: dict = dataclasses.field(default_factory=dict)
  stop_gradient: bool = True
  objective_kwargs: dict = dataclasses.field(default_factory=dict)
  noise_dim: int = 32
  hidden: int = 256
  depth: int = 3
  activation: str = "silu"
  learning_rate: float = 1e-3
  lr_schedule: str = "cosine"
  warmup_steps: int = 100
  final_lr_fraction: float = 0.0
  grad_clip: float | None = None
  batch_size: int = 2048
  data_batch_size: int | None = None
  num_steps: int = 3400
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 500
  max_to_keep: int = 2
  eval_every: int = 0
  eval_num_samples: int = 5000
  eval_num_projections: int = 200
  eval_mmd_bandwidth: float = 0.1
  eval_seed: int = 1234
  progress: bool = True


_FIELDS = {f.name: f for f in dataclasses.fields(ToyConfig)}


def validate_config(cfg: ToyConfig) -> ToyConfig:
  """Checks field values; raises ``ValueError`` naming the offending field.

  Name checks (dataset, objective, schedule) happen where they are resolved
  (:func:`drifting_jax.training.loop.build`); this covers the numeric fields.
  """

  def positive(name, integer=False, allow_none=False):
    v = getattr(cfg, name)
    if v is None and allow_none:
      return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    if integer:
      ok = ok and isinstance(v, int)
    if not ok:
      kind = "a positive int" if integer else "a positive number"
      raise ValueError(f"`{name}` must be {kind}, got {v!r}")

  for name in ("bandwidth", "learning_rate", "eval_mmd_bandwidth"):
    positive(name)
  positive("grad_clip", allow_none=True)
  for name in ("noise_dim", "hidden", "depth", "log_every", "checkpoint_every",
               "max_to_keep", "eval_num_samples", "eval_num_projections"):
    positive(name, integer=True)
  # evaluation settings are checked here, before training, not when the final metrics run
  if cfg.eval_num_samples < 2:
    raise ValueError(f"`eval_num_samples` must be an int >= 2 (the MMD and sliced-Wasserstein "
                     f"estimates need two samples per side), got {cfg.eval_num_samples!r}")
  for name in ("seed", "eval_seed"):
    v = getattr(cfg, name)
    if not isinstance(v, int) or isinstance(v, bool):
      raise ValueError(f"`{name}` must be an int, got {v!r}")
  for name in ("batch_size", "data_batch_size"):
    v = getattr(cfg, name)
    if v is None and name == "data_batch_size":
      continue
    if not isinstance(v, int) or isinstance(v, bool) or v < 2:
      raise ValueError(f"`{name}` must be an int >= 2, got {v!r}")
  if cfg.lr_schedule not in ("constant", "cosine"):
    raise ValueError(f"`lr_schedule` must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
  v = cfg.final_lr_fraction
  if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
    raise ValueError(f"`final_lr_fraction` must be a number in [0, 1], got {v!r}")
  for name in ("num_steps", "eval_every", "warmup_steps"):
    v = getattr(cfg, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
      raise ValueError(f"`{name}` must be an int >= 0, got {v!r}")
  for name in ("dataset_kwargs", "schedule_kwargs", "objective_kwargs"):
    if not isinstance(getattr(cfg, name), dict):
      raise ValueError(f"`{name}` must be a dict, got {getattr(cfg, name)!r}")
  return cfg


def config_to_dict(cfg: ToyConfig) -> dict[str, Any]:
  """JSON-serializable dict of ``cfg``."""
  return dataclasses.asdict(cfg)


def config_from_dict(d: dict[str, Any]) -> ToyConfig:
  """Inverse of :func:`config_to_dict`; unknown keys raise ``ValueError``."""
  unknown = sorted(set(d) - set(_FIELDS))
  if unknown:
    raise ValueError(f"unknown config field(s) {unknown}; known: {sorted(_FIELDS)}")
  if "lr_schedule" not in d:  # runs written before v0.2 trained with a constant rate
    d = dict(d, lr_schedule="constant")
  return ToyConfig(**d)


def load_config(path: str | os.PathLike | None = None) -> ToyConfig:
  """Loads ``get_config()`` from a Python config file, or a ``config.json``.

  Args:
    path: ``.py`` file defining ``get_config()``, a ``.json`` dump, or ``None`` for the
      defaults (identical to ``experiments/configs/toy_default.py``).
  """
  if path is None:
    return ToyConfig()
  return load_config_file(path, ToyConfig, config_from_dict)


def load_config_file(path: str | os.PathLike, config_type: type, from_dict: Any) -> Any:
  """A ``config_type`` from a Python config file (``get_config()``) or a ``config.json``
  dump (``from_dict(dict)``).

  Raises:
    ValueError: the file does not exist or does not define a ``config_type``.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"`config` file not found: {path!r}")
  if path.endswith(".json"):
    with open(path) as f:
      return from_dict(json.load(f))
  return run_config_file(path, config_type)


def _config_types() -> dict[str, type]:
  from drifting_jax.training.image_config import ImageConfig  # imports this module
  return {"toy": ToyConfig, "images": ImageConfig}


def config_dict(kind: str = "toy") -> Any:
  """Every field of a run configuration at its default, as an ``ml_collections.ConfigDict``.

  The starting point of a config file's ``get_config()``. Its keys are locked, so a
  misspelt field raises ``AttributeError`` and a value of another type ``TypeError``
  (ml_collections' type safety; an int is accepted for a float field); the free-form dict
  fields (``objective_kwargs``, ``model_overrides``, ...) stay open for new keys.

  Args:
    kind: ``"toy"`` (:class:`ToyConfig`) or ``"images"``
      (:class:`~drifting_jax.training.image_config.ImageConfig`).
  """
  import ml_collections

  types = _config_types()
  if kind not in types:
    raise ValueError(f"`kind` must be one of {sorted(types)}, got {kind!r}")
  cfg = types[kind]()
  out = ml_collections.ConfigDict(dataclasses.asdict(cfg))
  out.lock()
  for f in dataclasses.fields(cfg):
    if isinstance(getattr(cfg, f.name), dict):
      out[f.name].unlock()
  return out


def as_run_config(obj: Any, config_type: type | tuple[type, ...] | None = None) -> Any:
  """The typed configuration (``ToyConfig`` / ``ImageConfig``) of a ``get_config()`` value.

  Args:
    obj: an ``ml_collections.ConfigDict`` (an image config has ``task="images"``) or a
      ``ToyConfig`` / ``ImageConfig`` instance (returned as is).
    config_type: the type(s) the result must be (``None``: either).

  Raises:
    ValueError: ``obj`` is neither, has unknown fields, or is not of ``config_type``.
  """
  types = _config_types()
  if isinstance(obj, tuple(types.values())):
    cfg = obj
  elif type(obj).__module__.startswith("ml_collections"):
    from drifting_jax.training.image_config import image_config_from_dict
    d = obj.to_dict()
    cfg = image_config_from_dict(d) if d.get("task") == "images" else config_from_dict(d)
  else:
    raise ValueError(f"`get_config()` must return an ml_collections.ConfigDict (see "
                     f"config_dict()), a ToyConfig or an ImageConfig, got {type(obj).__name__}")
  if config_type is not None and not isinstance(cfg, config_type):
    want = " or ".join(t.__name__ for t in _as_tuple(config_type))
    raise ValueError(f"`config` get_config() must describe a {want}, got "
                     f"{type(cfg).__name__}")
  return cfg


def _as_tuple(t: Any) -> tuple:
  return t if isinstance(t, tuple) else (t,)


def run_config_file(path: str, config_type: type | tuple[type, ...] | None = None) -> Any:
  """Executes a Python config file and returns its ``get_config()`` as the typed
  configuration (:func:`as_run_config`), checked to be a ``config_type``."""
  spec = importlib.util.spec_from_file_location("_drifting_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"`config` file {path!r} must define get_config()")
  try:  # a locked ConfigDict raises AttributeError / TypeError for a misspelt or mistyped key
    return as_run_config(module.get_config(), config_type)
  except (AttributeError, TypeError, KeyError, ValueError) as e:
    raise ValueError(f"`config` file {path!r}: {str(e).strip(chr(39))}") from e


def apply_overrides(cfg: ToyConfig, overrides: list[str] | None) -> ToyConfig:
  """Returns a copy of ``cfg`` with ``key=value`` overrides applied.

  Args:
    cfg: base config.
    overrides: strings ``"field=value"`` or ``"dict_field.key=value"``; values are
      parsed as Python literals and coerced to the field's type
      (:mod:`drifting_jax.training.overrides`; non-finite floats are rejected).

  Raises:
    ValueError: malformed override, unknown field, or a value of the wrong type.
  """
  return overrides_lib.apply(cfg, list(overrides or ()))
