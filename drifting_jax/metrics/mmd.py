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

from drifting_jax import _validation
from drifting_jax.distances import sqdist

__all__ = ["mmd"]


def _mean_kernel(d2, bandwidths, *, drop_diagonal):
  k = sum(jnp.exp(-d2 / (2.0 * s * s)) for s in bandwidths)
  if drop_diagonal:
    n = d2.shape[0]
    return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))
  return jnp.mean(k)


@functools.partial(jax.jit, static_argnames=("bandwidths", "unbiased"))
def _mmd(x, y, bandwidths, unbiased):
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
    bandwidth: Gaussian bandwidth ``sigma > 0``, or a sequence of them (kernels summed).
    unbiased: U-statistic (needs ``N, M >= 2``) instead of the biased V-statistic.

  Returns:
    Scalar squared MMD.

  Raises:
    ValueError: on shape mismatch, non-positive bandwidth, too few samples, or (eager
      only) norms too large for squared distances in the float dtype (``‖x‖ ≳ 9e18`` in
      float32; under ``jit`` the result is NaN instead).
  """
  x, y = _validation.as_float(x, y)  # integer pixels would overflow in ‖x‖²
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"`x` and `y` must be [N, D] and [M, D], got {x.shape} and {y.shape}")
  bws = (bandwidth,) if isinstance(bandwidth, (int, float)) else tuple(bandwidth)
  if not bws or any(float(b) <= 0 for b in bws):
    raise ValueError(f"`bandwidth` must be positive, got {bandwidth!r}")
  min_n = 2 if unbiased else 1
  if x.shape[0] < min_n or y.shape[0] < min_n:
    raise ValueError(f"`x` and `y` need at least {min_n} samples each")
  _validation.check_sqnorm_range("x", x)
  _validation.check_sqnorm_range("y", y)
  return _mmd(x, y, tuple(float(b) for b in bws), unbiased)
