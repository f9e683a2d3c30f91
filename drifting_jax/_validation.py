"""Input checks and casts shared by the public functions (run at the boundary).

Every check raises ``ValueError`` naming the offending argument and what was expected.
Shape checks use static shapes, so they also run while tracing under ``jit``; value checks
(NaN/inf, positivity, squared-norm range) run only on concrete arrays and are skipped for
tracers. :func:`as_float` casts inputs to a float dtype before any arithmetic.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
  """True when ``value`` holds concrete data (not a JAX tracer)."""
  return not isinstance(value, jax.core.Tracer)


def float_dtype(*arrays: Any) -> np.dtype:
  """``jnp.result_type(*arrays, jnp.float32)``: the float dtype :func:`as_float` casts to.

  Integers, bools, float16 and bfloat16 give float32; float64 stays float64 (under x64).
  ``None`` entries are ignored.
  """
  return jnp.result_type(*(a for a in arrays if a is not None), jnp.float32)


def as_float(*arrays: Any) -> Any:
  """Casts arrays to their common float dtype (:func:`float_dtype`) before any arithmetic.

  Integer images (uint8 pixels) or int32 coordinates would otherwise overflow in squared
  norms, and half floats lose small distances. Works on tracers; ``None`` passes through.

  Args:
    *arrays: array-likes (numpy, JAX, Python scalars) or ``None``.

  Returns:
    The cast ``jax.Array`` for a single argument, else a tuple of them.
  """
  arrays = tuple(a if a is None or hasattr(a, "dtype") else jnp.asarray(a) for a in arrays)
  dtype = float_dtype(*arrays)
  out = tuple(None if a is None else jnp.asarray(a, dtype) for a in arrays)
  return out[0] if len(out) == 1 else out


def check_sqnorm_range(name: str, x: Any) -> None:
  """Raises if a concrete ``x`` is too large for squared distances in its float dtype.

  Squared distances ``‖x_i − x_j‖² ≤ 4 max_i ‖x_i‖²`` stay finite when ``max ‖x_i‖²`` is at
  most a quarter of the largest float (``‖x‖ ≲ 9e18`` in float32). Skipped under tracing,
  where :func:`drifting_jax.distances.sqdist` returns NaN instead. NaN entries are left to
  :func:`check_finite`.
  """
  if not is_concrete(x):
    return
  limit = float(jnp.finfo(float_dtype(x)).max) / 4.0
  with np.errstate(over="ignore", invalid="ignore"):
    sq = np.sum(np.square(np.asarray(x, np.float64)), axis=-1)
  top = float(np.max(sq, initial=0.0, where=~np.isnan(sq)))
  if top > limit:
    raise ValueError(
        f"`{name}` has squared norms up to {top:.3g}, beyond the range of squared distances "
        f"in {np.dtype(float_dtype(x)).name} (at most {limit:.3g}, i.e. norms below "
        f"{np.sqrt(limit):.2g}); rescale it (or enable x64).")


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
