"""Input checks and casts shared by the public functions (run at the boundary).

Every check raises ``ValueError`` naming the offending argument and what was expected.
Shape checks use static shapes, so they also run while tracing under ``jit``; value checks
(NaN/inf, positivity, squared-norm range) raise only on concrete arrays. On tracers they
register a ``jax.experimental.checkify`` check with the same message instead (only while
:func:`drifting_jax.checked` traces: :func:`registering_checks`),
and the functions that use a traced hyperparameter replace it by NaN where it is invalid
(:func:`positive_or_nan`), so that invalid traced values give NaN outputs, never finite
ones. :func:`as_float` casts inputs to a float dtype before any arithmetic.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


def is_concrete(value: Any) -> bool:
  """True when ``value`` holds concrete data (not a JAX tracer)."""
  return not isinstance(value, jax.core.Tracer)


def float_dtype(*arrays: Any) -> np.dtype:
  """``jnp.result_type(*arrays, jnp.float32)``: the float dtype :func:`as_float` casts to.

  Integers, bools, float16 and bfloat16 give float32; float64 stays float64 (under x64).
  ``None`` entries are ignored.
  """
  return jnp.result_type(*(a for a in arrays if a is not None), jnp.float32)


def check_real_dtype(name: str, x: Any) -> None:
  """Raises unless ``x`` holds real numbers: a float, integer or bool dtype.

  Complex, string and object arrays have no meaning as points, widths or weights here; JAX
  would compute with the complex values or fail with an unrelated ``TypeError``.
  """
  dtype = getattr(x, "dtype", None)
  if dtype is None:
    try:
      dtype = np.asarray(x).dtype
    except Exception:  # noqa: BLE001 - ragged or odd objects
      raise ValueError(f"`{name}` must be a real (float or integer) array, got "
                       f"{type(x).__name__}.") from None
  if not (_is_real_dtype(dtype) or jnp.issubdtype(dtype, jnp.bool_)):
    raise ValueError(f"`{name}` must be a real (float or integer) array, got dtype "
                     f"{np.dtype(dtype).name}.")


def as_float(*arrays: Any, names: tuple[str, ...] | None = None) -> Any:
  """Casts arrays to their common float dtype (:func:`float_dtype`) before any arithmetic.

  Integer images (uint8 pixels) or int32 coordinates would otherwise overflow in squared
  norms, and half floats lose small distances. Works on tracers; ``None`` passes through.

  Args:
    *arrays: array-likes (numpy, JAX, Python scalars) or ``None``.
    names: the arguments' names, for the error a complex or string array raises.

  Returns:
    The cast ``jax.Array`` for a single argument, else a tuple of them.

  Raises:
    ValueError: an array of a complex, string or object dtype.
  """
  for i, a in enumerate(arrays):
    if a is not None:
      check_real_dtype(names[i] if names else f"argument {i}", a)
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
  """Checks that ``x`` is a ``[N, D]`` array with ``N >= min_size`` (and ``D == dim``),
  finite, and (when concrete) small enough for squared distances in its float dtype."""
  shape = np.shape(x)
  if len(shape) != 2:
    raise ValueError(f"`{name}` must have rank 2 with shape [N, D], got shape {shape}.")
  if shape[0] < min_size:
    raise ValueError(f"`{name}` must contain at least {min_size} point(s), got shape {shape}.")
  if shape[1] < 1:
    raise ValueError(f"`{name}` must have at least one feature dimension (D >= 1), got "
                     f"shape {shape}.")
  if dim is not None and shape[1] != dim:
    raise ValueError(f"`{name}` must have dimension D={dim} (matching `x`), got shape {shape}.")
  check_finite(name, x)
  check_sqnorm_range(name, x)  # eager: overflowing squared distances are an error, not NaN


# Whether traced checks are registered: only while :func:`drifting_jax.checked` traces. A
# jitted program holding a ``checkify`` check carries an error effect even where the compiler
# removes the check, and such a program is dispatched by ``jax.jit``'s Python path instead of
# its C++ one (measured ad hoc: 60–80 µs more per call on this CPU, against 13 µs for a small
# call). A jit-cache-sensitive user context, so a function traced outside ``checked`` is
# retraced inside it (tests/test_bad_inputs.py).
_REGISTER_CHECKS = (jax.make_user_context(False) if hasattr(jax, "make_user_context")
                    else None)


def registering_checks():
  """Context manager under which :func:`traced_check` registers its checks."""
  if _REGISTER_CHECKS is None:
    return contextlib.nullcontext()
  return _REGISTER_CHECKS(True)


def traced_check(valid: Any, message: str, *values: Any) -> None:
  """Registers a ``checkify`` check ``valid`` (reduced with ``all``) with ``message``.

  Registered only while :func:`drifting_jax.checked` traces (:func:`registering_checks`;
  on a JAX without ``jax.make_user_context``, always): there, a false ``valid`` raises
  ``message`` formatted with ``values`` (``{}`` placeholders). Elsewhere nothing is traced,
  so a plain ``jit`` of a library function keeps ``jax.jit``'s fast dispatch.
  """
  if _REGISTER_CHECKS is not None and not _REGISTER_CHECKS.value:
    return
  checkify.debug_check(jnp.all(jnp.asarray(valid)), message,
                       *(jnp.asarray(v) for v in values))


def check_finite(name: str, x: Any) -> None:
  """Raises if a concrete ``x`` contains NaN or inf (a ``checkify`` check when traced), or is
  not a real array (:func:`check_real_dtype`)."""
  check_real_dtype(name, x)
  if not is_concrete(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
      traced_check(jnp.isfinite(x), f"`{name}` contains NaN or inf values.")
    return
  if not bool(np.all(np.isfinite(np.asarray(x)))):
    raise ValueError(f"`{name}` contains NaN or inf values.")


def _is_real_dtype(dtype: Any) -> bool:
  return bool(jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating))


def _is_real_scalar_type(value: Any) -> bool:
  """Python/NumPy/JAX real numbers (not bools, strings or containers)."""
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, numbers.Real):
    return True
  dtype = getattr(value, "dtype", None)
  return dtype is not None and _is_real_dtype(dtype)


def is_numeric(value: Any) -> bool:
  """Whether ``value`` is a real (integer or float, not bool) number or array-like."""
  if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
    return False
  dtype = getattr(value, "dtype", None)
  if dtype is None:
    try:
      dtype = np.asarray(value).dtype
    except Exception:  # noqa: BLE001 - ragged or odd objects are not numeric
      return False
  return _is_real_dtype(dtype)


def scalar(name: str, value: Any, *, what: str = "a real number") -> float:
  """A concrete real scalar (Python, NumPy or JAX number, or a one-element array) as float.

  Raises ``ValueError`` for strings, bools, ``None``, complex numbers and arrays with more
  than one element. Use :func:`check_positive` for tracers.
  """
  if not _is_real_scalar_type(value) or np.size(value) != 1:
    raise ValueError(f"`{name}` must be {what}, got {value!r}.")
  return float(np.asarray(value).reshape(()))


def representable(value: float, dtype: Any = None) -> bool:
  """Whether a real ``value`` keeps its size in ``dtype`` (default: JAX's default float):
  0, or a magnitude in ``[tiny, max]`` — not overflowing to inf, not flushed to a denormal."""
  info = np.finfo(jnp.result_type(float) if dtype is None else dtype)
  return value == 0 or float(info.tiny) <= abs(value) <= float(info.max)


def _float_name() -> str:
  return np.dtype(jnp.result_type(float)).name


def _float_range() -> str:
  info = np.finfo(jnp.result_type(float))
  return f"{float(info.tiny):.3g} to {float(info.max):.3g}"


def is_int(value: Any) -> bool:
  """Whether ``value`` is a concrete integer (Python / NumPy / JAX; not a bool or float)."""
  return (is_concrete(value) and _is_real_scalar_type(value) and np.size(value) == 1
          and np.issubdtype(np.asarray(value).dtype, np.integer))


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
  """A concrete integer (a Python int, or a NumPy / JAX integer scalar), as ``int``.

  The one rule for integer-valued options across the library: floats are refused even when
  integral (``k=2.0``), as Python's ``range``, NumPy shapes and JAX's static arguments do;
  so are bools, strings, traced values and values below ``minimum`` (``ValueError`` naming
  ``name``).
  """
  expected = {None: "an integer", 0: "a nonnegative integer", 1: "a positive integer"}.get(
      minimum, f"an integer >= {minimum}")
  if not is_concrete(value):
    raise ValueError(f"`{name}` must be a concrete integer (static under `jit`), got a "
                     "traced value.")
  if not is_int(value):
    raise ValueError(f"`{name}` must be {expected} (an int, not a float), got {value!r}.")
  v = np.asarray(value).reshape(())
  if minimum is not None and int(v) < minimum:
    raise ValueError(f"`{name}` must be {expected}, got {int(v)}.")
  return int(v)


def check_fields(obj: Any, *, positive: tuple[str, ...] = (), nonneg: tuple[str, ...] = (),
                 positive_real: tuple[str, ...] = ()) -> None:
  """Checks a module's attributes by kind: positive / nonnegative ints (:func:`check_int`) and
  positive float32-representable reals (:func:`check_positive`); ``ValueError`` names the
  attribute."""
  for name in positive:
    check_int(name, getattr(obj, name), minimum=1)
  for name in nonneg:
    check_int(name, getattr(obj, name), minimum=0)
  for name in positive_real:
    check_positive(name, getattr(obj, name))


def check_bool(name: str, value: Any) -> bool:
  """Raises unless ``value`` is a Python or NumPy bool; returns it as ``bool``."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"`{name}` must be a bool, got {value!r}.")
  return bool(value)


def positive_mask(value: Any) -> Any:
  """``isfinite(value) & (value > 0)``, elementwise (NaN gives False)."""
  value = jnp.asarray(value)
  return jnp.isfinite(value) & (value > 0)


def check_positive(name: str, value: Any) -> None:
  """Checks that a scalar ``value`` is a finite, strictly positive real number.

  Concrete values raise ``ValueError`` (strings, bools and non-scalars too); a traced value
  registers a ``checkify`` check with the same message (see :func:`positive_or_nan` for
  the NaN a traced invalid value should turn into).
  """
  if not is_concrete(value):
    if np.size(value) != 1:
      raise ValueError(f"`{name}` must be a scalar, got shape {np.shape(value)}.")
    traced_check(positive_mask(value), f"`{name}` must be a finite positive number, got {{}}.",
                 jnp.reshape(value, ()))
    return
  if np.ndim(value) and np.size(value) != 1:
    raise ValueError(f"`{name}` must be a scalar, got shape {np.shape(value)}.")
  v = scalar(name, value, what="a finite positive number")
  if not np.isfinite(v) or v <= 0:
    raise ValueError(f"`{name}` must be a finite positive number, got {v}.")
  if not representable(v):
    raise ValueError(f"`{name}` = {v:g} is outside what {_float_name()} holds at full "
                     f"precision ({_float_range()}); rescale it (or enable x64).")


def check_positive_array(name: str, value: Any) -> None:
  """:func:`check_positive` for an array of any shape (every entry finite and > 0)."""
  if not is_concrete(value):
    traced_check(positive_mask(value), f"`{name}` must be finite and positive, got {{}}.",
                 jnp.min(jnp.asarray(value)) if np.size(value) else jnp.zeros(()))
    return
  if not is_numeric(value):
    raise ValueError(f"`{name}` must be a positive number or array, got {value!r}.")
  arr = np.asarray(value, np.float64)
  if not np.all(np.isfinite(arr) & (arr > 0)):
    raise ValueError(f"`{name}` must be finite and positive, got {value!r}.")
  if not all(representable(v) for v in arr.reshape(-1)):
    raise ValueError(f"`{name}` has entries outside what {_float_name()} holds at full "
                     f"precision ({_float_range()}), got {value!r}.")


def positive_or_nan(name: str, value: Any) -> Any:
  """A positive hyperparameter that may be traced: validated, and NaN where invalid.

  Concrete values go through :func:`check_positive` (raising) and are returned unchanged.
  A traced value gets a ``checkify`` check and comes back as
  ``where(finite & > 0, value, NaN)``: whatever uses it then computes NaN, never a finite
  number (the gradient for a valid value is unchanged).
  """
  check_positive(name, value)
  if is_concrete(value):
    return value
  value = jnp.asarray(value)
  return jnp.where(positive_mask(value), value, jnp.nan)


def nan_unless(valid: Any, tree: Any) -> Any:
  """Replaces every float leaf of ``tree`` by NaN where the scalar ``valid`` is false."""
  if is_concrete(valid) and bool(np.all(np.asarray(valid))):
    return tree

  def poison(leaf):
    leaf = jnp.asarray(leaf)
    if not jnp.issubdtype(leaf.dtype, jnp.inexact):
      return leaf
    return jnp.where(valid, leaf, jnp.nan)
  return jax.tree_util.tree_map(poison, tree)


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
  """Raises if ``value`` is not one of ``choices`` (a bool never matches a number)."""
  def same(c):
    if isinstance(value, (bool, np.bool_)) != isinstance(c, (bool, np.bool_)):
      return False
    try:
      return bool(value == c)
    except Exception:  # noqa: BLE001 - arrays, tracers, odd types: not a choice
      return False
  if not any(same(c) for c in choices):
    raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def check_self_excludable(x: Any, neg: Any, name: str = "neg") -> None:
  """``exclude_self`` masks the diagonal, so ``neg`` must have as many rows as ``x``."""
  if np.shape(neg)[0] != np.shape(x)[0]:
    raise ValueError(
        f"`exclude_self=True` needs `{name}` to hold the queries themselves (same number of "
        f"rows as `x`, {np.shape(x)[0]}), got {np.shape(neg)[0]} rows.")
