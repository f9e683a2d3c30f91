"""Squared maximum mean discrepancy with Gaussian kernels (an evaluation metric).

``MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y)`` with
``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``. By default this is the *biased*
(V-statistic) estimate, which is always ``>= 0`` and exactly 0 for identical sample sets;
``unbiased=True`` gives the U-statistic (drops the ``i = j`` terms of the within-set
means; can be slightly negative). Several bandwidths are summed (a multi-scale kernel).

This is the metric; the MMD *training objective* (Franz et al. Eq. 7-9) lives in
:mod:`drifting_jax.losses`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation
from drifting_jax.distances import sqdist
from drifting_jax.kernels import width_in_range, width_range

__all__ = ["mmd"]


def _mean_kernel(d2, bandwidths, *, drop_diagonal):
  k = sum(jnp.exp(-d2 / (2.0 * bandwidths[i] * bandwidths[i]))
          for i in range(bandwidths.shape[0]))
  if drop_diagonal:
    n = d2.shape[0]
    return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))
  return jnp.mean(k)


@functools.partial(jax.jit, static_argnames=("unbiased",))
def _mmd(x, y, bandwidths, unbiased):
  # Invalid traced bandwidths (<= 0, NaN, inf) are NaN: the MMD is then NaN.
  bandwidths = jnp.where(_validation.positive_mask(bandwidths) & width_in_range(bandwidths),
                         bandwidths, jnp.nan)
  kxx = _mean_kernel(sqdist(x, x), bandwidths, drop_diagonal=unbiased)
  kyy = _mean_kernel(sqdist(y, y), bandwidths, drop_diagonal=unbiased)
  kxy = _mean_kernel(sqdist(x, y), bandwidths, drop_diagonal=False)
  return kxx + kyy - 2.0 * kxy




def mmd(
    x: jax.Array,
    y: jax.Array,
    *,
    bandwidth: float | Sequence[float],
    unbiased: bool = False,
) -> jax.Array:
  """Squared Gaussian-kernel MMD between two sample sets, in any dimension.

  Args:
    x: ``[N, D]`` samples.
    y: ``[M, D]`` samples.
    bandwidth: Gaussian bandwidth ``sigma > 0`` (a Python, NumPy or JAX scalar, possibly
      traced), or a sequence of them (kernels summed).
    unbiased: U-statistic (needs ``N, M >= 2``) instead of the biased V-statistic.

  Returns:
    Scalar squared MMD. Under ``jit``, NaN samples and a traced invalid bandwidth give
    NaN.

  Raises:
    ValueError: on shape mismatch, non-positive bandwidth, too few samples, or (eager
      only) NaN/inf samples or norms too large for squared distances in the float dtype
      (``‖x‖ ≳ 9e18`` in float32; under ``jit`` the result is NaN instead).
  """
  _validation.check_bool("unbiased", unbiased)
  if np.ndim(x) != 2 or np.ndim(y) != 2 or np.shape(x)[1] != np.shape(y)[1]:
    raise ValueError(f"`x` and `y` must be [N, D] and [M, D], got {np.shape(x)} and "
                     f"{np.shape(y)}")
  if hasattr(bandwidth, "shape"):  # numpy / JAX scalars and arrays, tracers
    bws = (bandwidth,) if np.ndim(bandwidth) == 0 else tuple(bandwidth)
  elif isinstance(bandwidth, (str, bytes)) or not hasattr(bandwidth, "__iter__"):
    bws = (bandwidth,)  # a Python number (anything else fails the check below)
  else:
    bws = tuple(bandwidth)
  if not bws:
    raise ValueError("`bandwidth` must be a positive number or a non-empty sequence of them")
  lo, hi = width_range(np.float32)
  for b in bws:
    _validation.check_positive("bandwidth", b)
    if _validation.is_concrete(b) and not lo <= float(np.asarray(b)) <= hi:
      raise ValueError(f"`bandwidth` must lie in [{lo:.3g}, {hi:.3g}] (its square and inverse "
                       f"square representable in float32), got {float(np.asarray(b)):g}.")
  min_n = 2 if unbiased else 1
  if np.shape(x)[0] < min_n or np.shape(y)[0] < min_n:
    raise ValueError(f"`x` and `y` need at least {min_n} samples each")
  _validation.check_finite("x", x)  # eager: ValueError; traced: NaN (reported by checkify)
  _validation.check_finite("y", y)
  x, y = _validation.as_float(x, y, names=("x", "y"))  # integer pixels would overflow in ‖x‖²
  _validation.check_sqnorm_range("x", x)
  _validation.check_sqnorm_range("y", y)
  return _mmd(x, y, jnp.stack([jnp.asarray(b, x.dtype) for b in bws]), unbiased)
