"""Input checks shared by the public functions (run at the boundary, never inside traced code).

Every check raises ``ValueError`` naming the offending argument and what was expected.
Shape checks use static shapes, so they also run while tracing under ``jit``; value checks
(NaN/inf, positivity) run only on concrete arrays and are skipped for tracers.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_concrete(value: Any) -> bool:
  """True when ``value`` holds concrete data (not a JAX tracer)."""
  return not isinstance(value, jax.core.Tracer)


def check_points(name: str, x: Any, *, dim: int | None = None, min_size: int = 1) -> None:
  """Checks that ``x`` is a ``[N, D]`` array with ``N >= min_size`` (and ``D == dim``)."""
  shape = np.shape(x)
  if len(shape) != 2:
    raise ValueError(f"`{name}` must have rank 2 with shape [N, D], got shape {shape}.")
  if shape[0] < min_size:
    raise ValueError(f"`{name}` must contain at least {min_size} point(s), got shape {shape}.")
  if dim is not None and shape[1] != dim:
    raise ValueError(f"`{name}` must have dimension D={dim} (matching `x`), got shape {shape}.")
  check_finite(name, x)


def check_finite(name: str, x: Any) -> None:
  """Raises if a concrete ``x`` contains NaN or inf (skipped under tracing)."""
  if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
    raise ValueError(f"`{name}` contains NaN or inf values.")


def check_positive(name: str, value: Any) -> None:
  """Raises if a concrete scalar ``value`` is not finite and strictly positive."""
  if not is_concrete(value):
    return
  arr = np.asarray(value)
  if arr.shape != () and arr.size != 1:
    raise ValueError(f"`{name}` must be a scalar, got shape {arr.shape}.")
  v = float(arr.reshape(()))
  if not np.isfinite(v) or v <= 0:
    raise ValueError(f"`{name}` must be a finite positive number, got {v}.")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  """Raises if ``value`` is not one of ``choices``."""
  if value not in choices:
    raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def check_self_excludable(x: Any, neg: Any, name: str = "neg") -> None:
  """``exclude_self`` masks the diagonal, so ``neg`` must have as many rows as ``x``."""
  if np.shape(neg)[0] != np.shape(x)[0]:
    raise ValueError(
        f"`exclude_self=True` needs `{name}` to hold the queries themselves (same number of "
        f"rows as `x`, {np.shape(x)[0]}), got {np.shape(neg)[0]} rows.")
