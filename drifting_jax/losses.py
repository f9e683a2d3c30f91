"""Scalar training objectives: the stop-gradient drift loss, log-KDE, MMD and link losses.

Every loss takes the generated batch ``x [N, D]`` (carrying gradients to the generator),
data ``pos [M, D]`` and negatives ``neg [K, D]``; negatives are stop-gradiented inside
(``q = sg(q_θ)`` as in Eq. (6)/(20) of Franz et al.), and with ``exclude_self`` (``neg`` is
``x``) a sample is left out of its own negative estimate.

The parameter gradients obey Eq. (6): for a conservative field ``V = −∇ₓ L``,
``∇_θ drift_loss(x, V) = 2 ∇_θ mean_i L(x_i)`` (the factor 2 comes from the square in
Eq. (1) and is dropped in the paper's Eq. (6)). Thus ``log_kde_loss`` trains like the
sharp-normalized field and ``mmd_loss`` like the MMD field.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from drifting_jax import _validation
from drifting_jax.fields import check_problem
from drifting_jax.kde import log_kde
from drifting_jax.kernels import RadialKernel

Array = jax.Array
sg = jax.lax.stop_gradient


def drift_loss(x: Array, field: Array) -> Array:
  """The stop-gradient objective, Eq. (1) of Franz et al.: ``mean_i ‖x_i − sg(x_i + V_i)‖²``.

  Its value is ``mean ‖V‖²``; its gradient moves each ``x_i`` along ``V_i``.

  Args:
    x: ``[N, D]`` generated samples (differentiable).
    field: ``[N, D]`` drift ``V(x)`` (stop-gradiented here).

  Returns:
    Scalar loss.

  Raises:
    ValueError: unless ``x`` is ``[N, D]`` with ``N >= 1`` and ``field`` has its shape, or
      (eager) when either contains NaN or inf.
  """
  _validation.check_points("x", x)
  if jnp.shape(x) != jnp.shape(field):
    raise ValueError(f"`field` must have the shape of `x` {jnp.shape(x)}, got "
                     f"{jnp.shape(field)}.")
  _validation.check_finite("field", field)
  x, field = _validation.as_float(x, field, names=("x", "field"))
  target = sg(x + field)
  return jnp.mean(jnp.sum(jnp.square(x - target), axis=-1))


def log_kde_loss(x: Array, pos: Array, neg: Array, *, kernel: RadialKernel,
                 exclude_self: bool = False, chunk_size: int | None = None) -> Array:
  """The log-KDE loss, Eq. (20) / Alg. 1 of Franz et al., with the sharp kernel.

  ``mean_i [log q_KDE[k#](x_i) − log p_KDE[k#](x_i)]`` with ``q`` built from ``sg(neg)``.
  Its per-sample ``x``-gradient is minus the sharp-normalized field, Eq. (19); for the
  Gaussian (``k# = σ²k``) it is the Gaussian log-KDE loss, whose field is the Gaussian
  drift divided by σ² (Prop. 8). Objective names ``gauss#``, ``laplace#``.

  Args:
    x: ``[N, D]`` generated samples.
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives (usually ``x``; stop-gradiented).
    kernel: the radial kernel ``k`` (its sharp is used).
    exclude_self: leave-one-out estimate of ``q`` (``neg`` is ``x``; divides by ``N − 1``).
    chunk_size: optional streaming block size for the KDEs (gradients stream too).

  Returns:
    Scalar loss.
  """
  return kde_link_loss(x, pos, neg, kernel=kernel, link="log", exclude_self=exclude_self,
                       chunk_size=chunk_size)


def mmd_loss(x: Array, pos: Array, neg: Array, *, kernel: RadialKernel,
             exclude_self: bool = False, chunk_size: int | None = None) -> Array:
  """Squared-MMD objective in stop-gradient form, Eq. (7) of Franz et al. (App. C).

  ``mean_i [E_{y⁻∼sg(q)} k(x_i, y⁻) − E_{y⁺∼p} k(x_i, y⁺)]``; its θ-gradient is half the
  gradient of ``MMD²_k(p, q_θ)``, and its ``x``-gradient is minus :func:`~drifting_jax.
  fields.mmd_field`. Objective name ``mmd-<kernel>``.

  Args:
    x: ``[N, D]`` generated samples.
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives (usually ``x``; stop-gradiented).
    kernel: the radial kernel ``k``.
    exclude_self: drop the ``i = j`` negative pair (``neg`` is ``x``).
    chunk_size: optional streaming block size for the KDEs (gradients stream too).

  Returns:
    Scalar loss.
  """
  check_problem(x, pos, neg, exclude_self=exclude_self, kernel=kernel)
  x, pos, neg = _validation.as_float(x, pos, neg, names=("x", "pos", "neg"))
  neg = sg(neg)
  log_q = log_kde(x, neg, kernel=kernel, exclude_self=exclude_self, chunk_size=chunk_size)
  log_p = log_kde(x, pos, kernel=kernel, chunk_size=chunk_size)
  return jnp.mean(jnp.exp(log_q) - jnp.exp(log_p))


LINKS = {"log": None, "identity": jnp.exp}


def kde_link_loss(x: Array, pos: Array, neg: Array, *, kernel: RadialKernel,
                  link: str | Callable[[Array], Array] = "log", exclude_self: bool = False,
                  chunk_size: int | None = None) -> Array:
  """The link-function family ``mean_i [g(q_KDE[k#](x_i)) − g(p_KDE[k#](x_i))]``.

  The future-work family of Franz et al. §6; conservative for any differentiable ``g``.
  ``link="log"`` is the log-KDE loss (Eq. (20)); ``link="identity"`` is the MMD potential of
  the sharp kernel (Eq. (7) with ``k#``, whose field is the unnormalized drift of Eq. (9),
  Prop. 7); a callable ``g`` receives the KDE values (not their logs).

  Args:
    x: ``[N, D]`` generated samples.
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives (stop-gradiented).
    kernel: the radial kernel ``k`` (its sharp ``k#`` enters the KDEs).
    link: ``"log"``, ``"identity"`` or a callable ``g``.
    exclude_self: leave-one-out estimate of ``q`` (``neg`` is ``x``).
    chunk_size: optional streaming block size for the KDEs.

  Returns:
    Scalar loss.
  """
  check_problem(x, pos, neg, exclude_self=exclude_self, kernel=kernel)
  if isinstance(link, str):
    if link not in LINKS:
      raise ValueError(f"`link` must be one of {tuple(LINKS)} or a callable, got {link!r}.")
    g = LINKS[link]
  elif callable(link):
    g = lambda log_v: link(jnp.exp(log_v))  # noqa: E731
  else:
    raise ValueError(f"`link` must be a string or a callable, got {type(link).__name__}.")
  x, pos, neg = _validation.as_float(x, pos, neg, names=("x", "pos", "neg"))
  log_q = log_kde(x, sg(neg), kernel=kernel, which="sharp", exclude_self=exclude_self,
                  chunk_size=chunk_size)
  log_p = log_kde(x, pos, kernel=kernel, which="sharp", chunk_size=chunk_size)
  if g is None:  # log link: stay in log domain
    return jnp.mean(log_q - log_p)
  return jnp.mean(g(log_q) - g(log_p))


__all__ = ["drift_loss", "log_kde_loss", "mmd_loss", "kde_link_loss"]
