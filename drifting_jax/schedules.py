"""Bandwidth schedules σ(t) for annealed drifting (§6.2 and App. E of Secretly-SM).

Every schedule is an optax-style callable ``step -> value`` (an ``optax.Schedule``): it is
a pure ``jnp`` function, works on Python numbers, concrete arrays and traced steps under
``jit``/``vmap``, and can be passed anywhere optax accepts a schedule (e.g. as a learning
rate). All bandwidth schedules are floored at ``sigma_min``:

- ``constant``:     σ(t) = σ
- ``exponential``:  σ(t) = max(σ0 e^(−r t), σmin)                       Eq. (18), App. G.3 Alg. 1
- ``linear``:       σ(t) = max(σ0 (1 − min(t, T)/T), σmin)               App. E
- ``cosine``:       σ(t) = max(σ0 cos(π min(t, T) / 2T), σmin)          App. E

**Unit of t.** The paper uses two meanings of t. In §5.2/§6.2 (Theorem 6.1, Eq. 18, the
spectral analysis of App. B.5 and F.2) t is the *continuous time* of the linearized
gradient flow, so r is a rate per unit of flow time. In the training algorithm (App. G.3,
Alg. 1, "training step t") σ(t) is evaluated at the integer *optimizer step*, so r is per
step. These schedules are unit-agnostic: ``step`` may be an integer step count (training)
or a float time (``drifting_jax.spectral``); ``rate`` and ``total_steps`` are expressed in
the same unit as ``step``. Integer steps are converted to the default float dtype (float32,
float64 under ``jax.enable_x64``).

For linear/cosine the step is clipped to [0, T] (the cosine would rise again past T), so
σ(t) = σmin for t ≥ T. App. E sweeps all three from σ0 = 1.5 to σmin = 0.03; to compare them
over a common horizon T, use ``exponential_rate_for_horizon`` so that the exponential
schedule also reaches σmin at t = T.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation

__all__ = [
    "Schedule",
    "constant",
    "exponential",
    "linear",
    "cosine",
    "exponential_rate_for_horizon",
    "get_schedule",
    "SCHEDULES",
]

Schedule = Callable[[Any], jnp.ndarray]
"""A callable ``step -> value`` (scalar or array step, returns an array of the same shape)."""


def _check_positive(name: str, value: Any) -> float:
  # Python, NumPy or JAX real scalars (not strings or bools), concrete: the schedule's
  # constants are baked into the returned function. Finite, > 0 and held by the float dtype.
  _validation.check_positive(name, value)
  return _validation.scalar(name, value)


def _check_sigmas(sigma0: Any, sigma_min: Any) -> tuple[float, float]:
  s0 = _check_positive("sigma0", sigma0)
  smin = _check_positive("sigma_min", sigma_min)
  if smin > s0:
    raise ValueError(f"`sigma_min` must be <= `sigma0` ({s0}), got {smin}.")
  return s0, smin


def _as_time(step: Any) -> jnp.ndarray:
  """Converts a (possibly integer or traced) step to the default float dtype.

  A step is a count or a time, ``>= 0`` and not NaN (``inf`` is the limit ``t → ∞``):
  a concrete step outside that raises ``ValueError``; a traced one becomes NaN (and
  registers a ``checkify`` check), so the schedule's value is NaN, never a finite number
  above its start (the exponential at a negative step) or a clipped one.
  """
  if not _validation.is_numeric(step):
    raise ValueError(f"`step` must be a number or numeric array, got {step!r}.")
  t = jnp.asarray(step)
  if not jnp.issubdtype(t.dtype, jnp.floating):
    t = t.astype(jnp.result_type(float))
  if _validation.is_concrete(step):
    bad = ~(np.asarray(t) >= 0)  # NaN compares False
    if bad.any():
      raise ValueError(f"`step` must be >= 0 and not NaN, got {np.asarray(t)[bad].ravel()[0]}.")
    return t
  _validation.traced_check(t >= 0, "`step` must be >= 0 and not NaN, got {}.", jnp.min(t))
  return jnp.where(t >= 0, t, jnp.nan)


def constant(value: Any) -> Schedule:
  """Constant bandwidth σ(t) = value (the fixed-bandwidth Gaussian of §5.2).

  Args:
    value: the bandwidth, a finite positive number.

  Returns:
    A schedule ``step -> value`` with the shape of ``step``.
  """
  v = _check_positive("value", value)

  def schedule(step: Any) -> jnp.ndarray:
    t = _as_time(step)
    return jnp.full_like(t, v)

  return schedule


def exponential(*, sigma0: Any, rate: Any, sigma_min: Any) -> Schedule:
  """Exponential annealing σ(t) = max(σ0 e^(−r t), σmin), Eq. (18) of Secretly-SM.

  Args:
    sigma0: initial bandwidth σ0 > 0.
    rate: decay rate r ≥ 0 per unit of ``step`` (r = 0 gives a constant σ0).
    sigma_min: floor σmin, 0 < σmin ≤ σ0; reached at t = log(σ0/σmin)/r.

  Returns:
    A schedule ``step -> σ(step)``.
  """
  s0, smin = _check_sigmas(sigma0, sigma_min)
  r = _validation.scalar("rate", rate, what="a finite number >= 0")
  if not math.isfinite(r) or r < 0 or not _validation.representable(r):
    raise ValueError(f"`rate` must be a finite number >= 0 that the schedule's float dtype "
                     f"holds (0 or between its tiny and max), got {rate!r}.")

  def schedule(step: Any) -> jnp.ndarray:
    t = _as_time(step)
    return jnp.maximum(s0 * jnp.exp(-r * t), smin)

  return schedule


def _check_total_steps(total_steps: Any) -> float:
  return _check_positive("total_steps", total_steps)


def linear(*, sigma0: Any, total_steps: Any, sigma_min: Any) -> Schedule:
  """Linear annealing σ(t) = max(σ0 (1 − t/T), σmin) (App. E), constant σmin for t ≥ T.

  Args:
    sigma0: initial bandwidth σ0 > 0.
    total_steps: horizon T > 0 (same unit as ``step``); σ0(1 − t/T) would reach 0 at T.
    sigma_min: floor σmin, 0 < σmin ≤ σ0.

  Returns:
    A schedule ``step -> σ(step)``.
  """
  s0, smin = _check_sigmas(sigma0, sigma_min)
  horizon = _check_total_steps(total_steps)

  def schedule(step: Any) -> jnp.ndarray:
    t = jnp.clip(_as_time(step), 0.0, horizon)
    return jnp.maximum(s0 * (1.0 - t / horizon), smin)

  return schedule


def cosine(*, sigma0: Any, total_steps: Any, sigma_min: Any) -> Schedule:
  """Cosine annealing σ(t) = max(σ0 cos(π t / 2T), σmin) (App. E), constant σmin for t ≥ T.

  Note this is the quarter-period cosine of the paper, not optax's half-period
  ``cosine_decay_schedule`` (which is σ0 (1 + cos(π t/T)) / 2).

  Args:
    sigma0: initial bandwidth σ0 > 0.
    total_steps: horizon T > 0 (same unit as ``step``).
    sigma_min: floor σmin, 0 < σmin ≤ σ0.

  Returns:
    A schedule ``step -> σ(step)``.
  """
  s0, smin = _check_sigmas(sigma0, sigma_min)
  horizon = _check_total_steps(total_steps)

  def schedule(step: Any) -> jnp.ndarray:
    t = jnp.clip(_as_time(step), 0.0, horizon)
    return jnp.maximum(s0 * jnp.cos(0.5 * jnp.pi * t / horizon), smin)

  return schedule


def exponential_rate_for_horizon(*, sigma0: Any, sigma_min: Any, total_steps: Any) -> float:
  """Rate r = log(σ0/σmin) / T at which ``exponential`` reaches σmin exactly at t = T.

  Args:
    sigma0: initial bandwidth σ0 > 0.
    sigma_min: floor σmin, 0 < σmin ≤ σ0.
    total_steps: horizon T > 0.

  Returns:
    The rate r as a Python float.
  """
  s0, smin = _check_sigmas(sigma0, sigma_min)
  horizon = _check_total_steps(total_steps)
  return math.log(s0 / smin) / horizon


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "exponential": exponential,
    "linear": linear,
    "cosine": cosine,
}


def get_schedule(name: str, **kwargs: Any) -> Schedule:
  """Builds a schedule by name: ``get_schedule("exponential", sigma0=1.5, rate=0.1, sigma_min=0.03)``.

  Args:
    name: one of ``"constant"`` (kwargs: ``value``), ``"exponential"`` (``sigma0, rate,
      sigma_min``), ``"linear"`` and ``"cosine"`` (``sigma0, total_steps, sigma_min``).
    **kwargs: the schedule's hyperparameters.

  Returns:
    The schedule callable.
  """
  if not isinstance(name, str) or name not in SCHEDULES:
    raise ValueError(f"`name` must be one of {tuple(SCHEDULES)}, got {name!r}.")
  params = inspect.signature(SCHEDULES[name]).parameters
  unknown = sorted(set(kwargs) - set(params))
  if unknown:
    raise ValueError(f"unknown option(s) {', '.join(f'`{k}`' for k in unknown)} for schedule "
                     f"{name!r}; its options are {list(params)}.")
  missing = [k for k, p in params.items() if p.default is p.empty and k not in kwargs]
  if missing:
    raise ValueError(f"schedule {name!r} needs {', '.join(f'`{k}`' for k in missing)}.")
  return SCHEDULES[name](**kwargs)
