"""Sliced Wasserstein distance between two empirical distributions.

For unit directions ``theta_l`` (``l = 1..L``, uniform on the sphere) the sliced
``p``-Wasserstein distance is

    SW_p(mu, nu) = ( (1/L) sum_l W_p^p(theta_l # mu, theta_l # nu) )^(1/p),

where each 1-D ``W_p^p`` between empirical measures is computed *exactly* by quantile
matching, ``W_p^p = int_0^1 |F^-1(u) - G^-1(u)|^p du``: both empirical quantile
functions are step functions, constant between consecutive breakpoints of
``{i/N} U {j/M}``, so the integral is a finite weighted sum. This handles ``N != M``
without resampling. The default is ``p = 2`` (the project's reported "SW", as in
Secretly-SM App. F.3: 200 projections, 5k vs 5k samples).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation

__all__ = ["random_directions", "sliced_wasserstein", "wasserstein_1d"]


def random_directions(key: jax.Array, num: int, dim: int) -> jax.Array:
  """``[num, dim]`` directions drawn uniformly on the unit sphere ``S^{dim-1}``."""
  num = _validation.check_int("num", num, minimum=1)
  dim = _validation.check_int("dim", dim, minimum=1)
  v = jax.random.normal(key, (num, dim))
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def wasserstein_1d(u: jax.Array, v: jax.Array, *, p: float = 2.0) -> jax.Array:
  """Exact ``W_p^p`` between 1-D empirical measures, batched over a trailing axis.

  Args:
    u: ``[N, L]`` samples of ``L`` one-dimensional distributions (uniform weights).
    v: ``[M, L]`` samples of the ``L`` distributions to compare with.
    p: ground-cost power ``|a - b|^p`` (``p >= 1``).

  Returns:
    ``[L]`` values of ``W_p^p`` (not yet raised to ``1/p``). Under ``jit``, NaN samples
    give NaN, and so does a traced ``p`` that is not finite and ``>= 1``.

  Raises:
    ValueError: unless ``u`` and ``v`` are non-empty ``[N, L]`` / ``[M, L]`` arrays, and
      ``p`` (when concrete) is finite and ``>= 1``; eagerly also for NaN/inf samples and
      for values so large that ``|u − v|^p`` overflows the float dtype.
  """
  if np.ndim(u) != 2 or np.ndim(v) != 2 or np.shape(u)[1] != np.shape(v)[1]:
    raise ValueError(f"`u` and `v` must be [N, L] and [M, L] arrays with one L, got shapes "
                     f"{np.shape(u)} and {np.shape(v)}")
  if np.shape(u)[0] < 1 or np.shape(v)[0] < 1:
    raise ValueError(f"`u` and `v` must be non-empty, got shapes {np.shape(u)} and "
                     f"{np.shape(v)}")
  p = _check_p(p)
  for name, a in (("u", u), ("v", v)):
    _validation.check_finite(name, a)
  u, v = _validation.as_float(u, v, names=("u", "v"))
  _check_power_range(u, v, p)
  n, m = u.shape[0], v.shape[0]
  u = jnp.sort(u, axis=0)
  v = jnp.sort(v, axis=0)
  # Breakpoints of both step quantile functions; on (b_{k-1}, b_k] both are constant.
  breaks = jnp.sort(
      jnp.concatenate([jnp.arange(1, n + 1) / n, jnp.arange(1, m + 1) / m])
  ).astype(u.dtype)
  widths = jnp.diff(breaks, prepend=jnp.zeros((1,), u.dtype))  # [N + M]
  mid = breaks - 0.5 * widths
  iu = jnp.clip(jnp.floor(mid * n).astype(jnp.int32), 0, n - 1)
  iv = jnp.clip(jnp.floor(mid * m).astype(jnp.int32), 0, m - 1)
  diff = jnp.abs(u[iu] - v[iv])  # [N + M, L]
  return jnp.sum(widths[:, None] * diff**p, axis=0)


def _check_power_range(u, v, p):
  """Eager: ``|u − v|^p`` must stay below the largest float (``(max|u| + max|v|)^p``)."""
  if not all(map(_validation.is_concrete, (u, v, p))):
    return
  top = float(np.max(np.abs(np.asarray(u, np.float64)), initial=0.0)
              + np.max(np.abs(np.asarray(v, np.float64)), initial=0.0))
  limit = float(jnp.finfo(u.dtype).max) ** (1.0 / float(np.asarray(p)))
  if top > limit:
    raise ValueError(f"`u` and `v` have values up to {top:.3g} in total, beyond what "
                     f"|u - v|^{float(np.asarray(p)):g} can hold in {u.dtype} (at most "
                     f"{limit:.3g}); rescale them (or enable x64).")


def _check_p(p):
  """``p``: a finite number ``>= 1``; a traced one becomes NaN when it is not."""
  if _validation.is_concrete(p):
    value = _validation.scalar("p", p, what="a finite number >= 1")
    if not np.isfinite(value) or value < 1 or not _validation.representable(value):
      raise ValueError(f"`p` must be a finite number >= 1 (and float32-representable), got "
                       f"{p!r}")
    return p
  p = jnp.asarray(p)
  valid = jnp.isfinite(p) & (p >= 1)
  _validation.traced_check(valid, "`p` must be a finite number >= 1, got {}.", p)
  return jnp.where(valid, p, jnp.nan)


@functools.partial(jax.jit, static_argnames=("num_projections", "p"))
def _sliced(x, y, key, num_projections, p):
  theta = random_directions(key, num_projections, x.shape[-1])  # [L, D]
  wpp = wasserstein_1d(x @ theta.T, y @ theta.T, p=p)  # [L]
  return jnp.mean(wpp) ** (1.0 / p)


def sliced_wasserstein(
    x: jax.Array,
    y: jax.Array,
    *,
    key: jax.Array,
    num_projections: int = 200,
    p: float = 2.0,
) -> jax.Array:
  """Monte-Carlo sliced ``p``-Wasserstein distance ``SW_p(x, y)``.

  Args:
    x: ``[N, D]`` samples of the first distribution.
    y: ``[M, D]`` samples of the second distribution (``M`` may differ from ``N``).
    key: PRNG key for the random projection directions.
    num_projections: number ``L`` of directions.
    p: Wasserstein order (default 2; use 1 for ``SW_1``).

  Returns:
    Scalar ``SW_p`` (same units as the data). For a 1-D pure shift ``y = x + c`` it
    equals ``|c|``; in ``D`` dimensions ``SW_2 -> |c| / sqrt(D)``. Under ``jit``, NaN
    samples give NaN.

  Raises:
    ValueError: on rank/dimension mismatch, empty inputs, a ``num_projections`` that is
      not a positive integer, or a ``p`` that is not a finite number ``>= 1`` (``p`` is
      static under ``jit``); eagerly also for NaN/inf samples and for norms whose squared
      distances overflow the float dtype (``‖x‖ ≳ 9e18`` in float32).
  """
  x, y = _validation.as_float(x, y, names=("x", "y"))
  if x.ndim != 2 or y.ndim != 2:
    raise ValueError(f"`x` and `y` must be [N, D] and [M, D], got {x.shape} and {y.shape}")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"`x` and `y` must share D, got {x.shape[1]} and {y.shape[1]}")
  if x.shape[0] < 1 or y.shape[0] < 1:
    raise ValueError("`x` and `y` must be non-empty")
  num_projections = _validation.check_int("num_projections", num_projections, minimum=1)
  if not _validation.is_concrete(p):
    raise ValueError("`p` must be a concrete number (it is static), got a traced value")
  p = _check_p(p)
  for name, a in (("x", x), ("y", y)):
    _validation.check_finite(name, a)  # eager: ValueError; traced: NaN
    _validation.check_sqnorm_range(name, a)  # |θ·(x − y)|² ≤ ‖x − y‖² must not overflow
  return _sliced(x, y, key, num_projections, float(np.asarray(p)))
