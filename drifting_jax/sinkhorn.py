"""Sinkhorn-divergence drift on top of ott-jax (Secretly-SM §6.3, App. G.4, Alg. 2).

For generated particles ``x`` (``q = 1/N Σ δ_{x_i}``) and data ``pos`` (``p``), the drift is
the difference of two entropic barycentric maps (Secretly-SM Eqs. 23–24, 44–45)::

    V(x_i) = η (T_{q→p}(x_i) − T_{q→q}(x_i)),   T_{q→p}(x_i) = N Σ_j π_qp[i, j] y_j,

where ``π_qp`` and ``π_qq`` solve the entropic OT problem of Eq. (41) with cost
``‖x − y‖^r``. Without diagonal masking this is, up to the positive factor ``N η / 2``,
``−∇_x`` of the Sinkhorn divergence ``S_ε(q, p)`` (Eq. 22) for ``r = 2``.

Both couplings are computed by ott-jax's log-domain ``Sinkhorn`` solver (its updates are
Eqs. 42–43) on explicit-cost ``Geometry`` objects. Notes on ott-jax:

* ``ε = α · mean(C_qp)`` is always passed explicitly (and stop-gradiented, like ott's own
  relative ε): ott's default ε is derived from the cost statistics, which are ``inf``/NaN
  once the self-cost diagonal is masked.
* Gradients *through* the drift (not needed by the stop-gradient loss) use ott's unrolled
  backprop (``implicit_diff=None``): ott's default implicit differentiation solves a
  singular Schur system that is near zero when the coupling is close to a permutation
  (small α, or unmasked ``q = q``), and lineax then fails with non-finite outputs in
  float32.
* The masked diagonal is a true ``+inf`` entry. ott's log-domain kernel handles it exactly:
  ``exp((f_i + g_i − inf)/ε) = 0`` in the logsumexp, and potentials stay finite because every
  row/column keeps ``N − 1 ≥ 1`` finite entries; values and gradients are
  finite in float32. A large finite value would instead depend on the data scale.
* ott's stopping rule is the L1 marginal error ``‖π^T 1 − b‖_1 < threshold`` checked every
  10 iterations (not the potential change of App. G.4). In float32 it plateaus near 1e-6,
  so thresholds below ~1e-5 will not be met; the default is 1e-3. The last update is on the
  row potential, so the row sums of ``N π`` are 1 up to rounding and ``T`` is a convex
  combination even before convergence.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from drifting_jax import _validation, distances

__all__ = ["SinkhornDriftInfo", "sinkhorn_drift", "sinkhorn_drift_with_info", "sinkhorn_loss",
           "sinkhorn_loss_with_info"]


class SinkhornDriftInfo(NamedTuple):
  """Diagnostics of one Sinkhorn drift evaluation (for ``vmap``-ed calls, each gets ``[G]``).

  Attributes:
    epsilon: ``[]`` entropic regularization used (``α · mean(C_qp)`` or the given ``ε``).
    converged_qp: ``[]`` bool, whether the ``q→p`` solve met ``threshold``.
    converged_qq: ``[]`` bool, whether the ``q→q`` solve met ``threshold``.
    n_iters_qp: ``[]`` int, Sinkhorn iterations run for ``π_qp``.
    n_iters_qq: ``[]`` int, Sinkhorn iterations run for ``π_qq``.
    error_qp: ``[]`` last recorded L1 marginal error of the ``q→p`` solve.
    error_qq: ``[]`` last recorded L1 marginal error of the ``q→q`` solve.
    pi_qp: ``[N, M]`` coupling ``π_qp`` (marginals ``1/N``, ``1/M``).
    pi_qq: ``[N, K]`` coupling ``π_qq`` (zero diagonal with ``exclude_self``).
    t_qp: ``[N, D]`` barycentric map ``T_{q→p}(x_i)`` (Eq. 44).
    t_qq: ``[N, D]`` barycentric map ``T_{q→q}(x_i)`` (Eq. 44).
  """

  epsilon: jax.Array
  converged_qp: jax.Array
  converged_qq: jax.Array
  n_iters_qp: jax.Array
  n_iters_qq: jax.Array
  error_qp: jax.Array
  error_qq: jax.Array
  pi_qp: jax.Array
  pi_qq: jax.Array
  t_qp: jax.Array
  t_qq: jax.Array


def _cost(a: jax.Array, b: jax.Array, power: int) -> jax.Array:
  """``[N, M]`` cost ``‖a_i − b_j‖^power`` for ``a [N, D]``, ``b [M, D]``."""
  # Expanded form keeps memory at O(NM) instead of O(NMD); NaN where the norms overflow.
  sq = distances.sqdist(a, b)
  if power == 2:
    return sq
  # r = 1: double-where so the gradient at zero distance is 0 instead of 0 * inf = NaN.
  return distances.safe_sqrt(sq)


def _solve(cost: jax.Array, epsilon: jax.Array, *, threshold: float, max_iterations: int):
  """Runs ott's log-domain Sinkhorn (Eqs. 42–43) on an explicit cost matrix."""
  geom = geometry.Geometry(cost_matrix=cost, epsilon=epsilon)
  solver = ott_sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations,
                                 implicit_diff=None)
  out = solver(linear_problem.LinearProblem(geom))
  n_iters = out.n_iters
  # Errors are recorded every `inner_iterations`; entries after termination are -1.
  errors = out.errors.reshape(out.errors.shape[0], -1)[:, 0]
  error = errors[jnp.maximum(n_iters // out.inner_iterations - 1, 0)]
  return out.matrix, out.converged, n_iters, error


def _warn_if_not_converged(info: SinkhornDriftInfo, threshold: float) -> None:
  """Warns (eager mode only) when a solve missed the threshold; under jit, read ``info``."""
  for name in ("qp", "qq"):
    converged = getattr(info, f"converged_{name}")
    if not _validation.is_concrete(converged) or bool(np.all(np.asarray(converged))):
      continue
    n_iters, error = getattr(info, f"n_iters_{name}"), getattr(info, f"error_{name}")
    # Under eager `grad` the error is a tracer while the flag is concrete.
    error = np.asarray(error) if _validation.is_concrete(error) else "?"
    warnings.warn(
        f"sinkhorn_drift: the q→{name[1]} Sinkhorn solve did not converge (n_iters="
        f"{np.asarray(n_iters)}, marginal error={error}, threshold={threshold}); increase "
        "`max_iterations` or `alpha`, or loosen `threshold`.", RuntimeWarning, stacklevel=3)


@functools.partial(jax.jit, static_argnames=("cost_power", "exclude_self", "max_iterations"))
def _drift_core(x, pos, neg, alpha, epsilon, eta, threshold, *, cost_power, exclude_self,
                max_iterations):
  """Algorithm 2 on validated inputs. Jitted so that eager calls hit the compilation cache
  instead of re-tracing ott's loops (~1 s per call on CPU); inlined under an outer jit."""
  if neg is None:
    x, pos = _validation.as_float(x, pos, names=("x", "pos"))
  else:
    x, pos, neg = _validation.as_float(x, pos, neg, names=("x", "pos", "neg"))
  dtype = x.dtype
  n = x.shape[0]

  c_qp = _cost(x, pos, cost_power)
  if neg is None:  # the samples of q are x itself
    c_xx = _cost(x, x, cost_power)
    c_qq = 0.5 * (c_xx + c_xx.T)  # symmetrize for fp robustness (Alg. 2, line 2)
    diag = jnp.eye(n, dtype=bool)
    c_qq = jnp.where(diag, jnp.inf if exclude_self else 0.0, c_qq)
    neg = x
  else:  # a separate sample of q; with exclude_self, neg[i] is x[i] (same shape)
    c_qq = _cost(x, neg, cost_power)
    if exclude_self:
      c_qq = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, c_qq)
  # Traced hyperparameters cannot raise: invalid ones (α ≤ 0, ε ≤ 0, NaN, non-finite η)
  # make every output NaN below. The solves then run with a harmless ε (that of α = 1).
  valid = _validation.positive_mask(alpha) & jnp.isfinite(eta)
  if epsilon is not None:
    valid = valid & _validation.positive_mask(epsilon)
  if epsilon is None:
    # Floor: if all points coincide, mean(C_qp) = 0 and any ε gives the uniform coupling.
    epsilon = jnp.maximum(alpha * jnp.mean(c_qp), jnp.finfo(dtype).tiny)
  epsilon = jnp.where(valid, epsilon, jnp.maximum(jnp.mean(c_qp), jnp.finfo(dtype).tiny))
  # ε is a scale normalization, not part of the field: no gradient through it (it would
  # also meet the +inf diagonal as d(C/ε)/dε · 0 = inf · 0 = NaN).
  epsilon = jax.lax.stop_gradient(jnp.asarray(epsilon, dtype))

  pi_qp, conv_qp, it_qp, err_qp = _solve(
      c_qp, epsilon, threshold=threshold, max_iterations=max_iterations)
  pi_qq, conv_qq, it_qq, err_qq = _solve(
      c_qq, epsilon, threshold=threshold, max_iterations=max_iterations)

  t_qp = n * (pi_qp @ pos)  # Eq. (44); N corrects for the uniform source marginal 1/N
  t_qq = n * (pi_qq @ neg)
  v = eta * (t_qp - t_qq)  # Eq. (45)

  info = SinkhornDriftInfo(
      epsilon=epsilon, converged_qp=conv_qp, converged_qq=conv_qq, n_iters_qp=it_qp,
      n_iters_qq=it_qq, error_qp=err_qp, error_qq=err_qq, pi_qp=pi_qp, pi_qq=pi_qq,
      t_qp=t_qp, t_qq=t_qq)
  return _validation.nan_unless(valid, (v, info))


def _validate(x, pos, neg, *, alpha, epsilon, cost_power, exclude_self, eta, max_iterations,
              threshold):
  _validation.check_points("x", x, min_size=2 if exclude_self else 1)
  _validation.check_points("pos", pos, dim=np.shape(x)[1])
  if neg is not None:
    _validation.check_points("neg", neg, dim=np.shape(x)[1])
    if exclude_self:
      _validation.check_self_excludable(x, neg)
  _validation.check_choice("cost_power", cost_power, (1, 2))
  _validation.check_bool("exclude_self", exclude_self)
  _validation.check_positive("alpha", alpha)
  if epsilon is not None:
    _validation.check_positive("epsilon", epsilon)
  _validation.check_positive("threshold", threshold)
  max_iterations = _validation.check_int("max_iterations", max_iterations, minimum=1)
  if _validation.is_concrete(eta):
    if not np.isfinite(_validation.scalar("eta", eta, what="a finite number")):
      raise ValueError(f"`eta` must be a finite number, got {eta}.")
  else:
    _validation.traced_check(jnp.isfinite(eta), "`eta` must be a finite number, got {}.", eta)
  return int(cost_power), bool(exclude_self), max_iterations


def sinkhorn_drift_with_info(
    x: jax.Array,
    pos: jax.Array,
    neg: jax.Array | None = None,
    *,
    alpha: float = 0.05,
    epsilon: float | None = None,
    cost_power: int = 2,
    exclude_self: bool = False,
    eta: float = 1.0,
    max_iterations: int = 2000,
    threshold: float = 1e-3,
) -> tuple[jax.Array, SinkhornDriftInfo]:
  """Sinkhorn-divergence drift ``V = η (T_{q→p} − T_{q→q})`` and its solver diagnostics.

  Steps of Algorithm 2 (Secretly-SM, Eq. 45): costs ``C_qp = ‖x_i − y_j‖^r`` and, with
  ``neg=None`` (the samples of ``q`` are ``x`` itself), the symmetrized self-cost
  ``C_qq = ½(C + Cᵀ)``; with ``exclude_self`` the diagonal of ``C_qq`` is ``+inf`` so
  ``π_qq`` has zero diagonal and ``T_{q→q}(x_i)`` is a leave-one-out entropic centroid of the
  other particles (App. G.4, "Diagonal masking"); ``ε = α · mean(C_qp)``; log-domain
  Sinkhorn (Eqs. 41–43, via ott-jax) for ``π_qp`` and ``π_qq``; barycentric maps (Eq. 44).
  A separate sample ``neg`` of ``q`` gives ``C_qq = ‖x_i − neg_j‖^r`` (and, with
  ``exclude_self``, ``neg[i]`` is taken to be ``x[i]``: its diagonal is masked).

  One drift problem per call; for groups ``[G, N, D]`` use ``jax.vmap``. Under ``jit`` /
  ``vmap`` no convergence warning can be issued: read ``info.converged_qp`` /
  ``info.converged_qq``. In eager mode a ``RuntimeWarning`` is raised when a solve did not
  converge. ``cost_power``, ``exclude_self`` and ``max_iterations`` must be static under
  ``jit``.

  Args:
    x: ``[N, D]`` generated particles (``q``).
    pos: ``[M, D]`` data samples (``p``).
    neg: optional ``[K, D]`` samples of ``q`` for ``T_{q→q}`` (default: ``x``).
    alpha: dimensionless temperature, ``ε = α · mean(C_qp)`` (> 0).
    epsilon: absolute ``ε`` (> 0) overriding ``α · mean(C_qp)`` when given (e.g. the fixed
      ``ε = 1e-4`` of Secretly-SM App. F.4). Either way ``ε`` is stop-gradiented.
    cost_power: ``r`` in ``‖x − y‖^r``, 1 or 2.
    exclude_self: mask the self-cost diagonal (needs ``N ≥ 2``; Secretly-SM App. G.4 and
      the ``sinkhorn`` objective use it). Without it, and with ``r = 2`` and ``neg=None``,
      ``V ∝ −∇_x S_ε(q, p)`` exactly (Prop. 6.2).
    eta: drift scale ``η`` (finite).
    max_iterations: maximum Sinkhorn iterations per solve (``T`` in Alg. 2).
    threshold: tolerance on ott's L1 marginal error (see module notes for float32).

  Returns:
    ``(V [N, D], info)``: the drift (float32 unless the inputs are wider) and a
    :class:`SinkhornDriftInfo`.

  Raises:
    ValueError: on wrong ranks/dimensions, empty sets, ``cost_power ∉ {1, 2}``,
      ``alpha ≤ 0``, ``epsilon ≤ 0``, non-finite ``eta``, ``N < 2`` with ``exclude_self``,
      ``neg`` not shaped like ``x`` with ``exclude_self``, or (eager only) NaN/inf inputs.
      Traced ``alpha``, ``epsilon`` or ``eta`` that are invalid cannot raise under ``jit``:
      the drift and every float diagnostic are then NaN.
  """
  cost_power, exclude_self, max_iterations = _validate(
      x, pos, neg, alpha=alpha, epsilon=epsilon, cost_power=cost_power,
      exclude_self=exclude_self, eta=eta, max_iterations=max_iterations, threshold=threshold)
  v, info = _drift_core(x, pos, neg, alpha, epsilon, eta, threshold, cost_power=cost_power,
                        exclude_self=exclude_self, max_iterations=max_iterations)
  _warn_if_not_converged(info, threshold)
  return v, info


def sinkhorn_drift(x: jax.Array, pos: jax.Array, neg: jax.Array | None = None,
                   **kwargs: Any) -> jax.Array:
  """``[N, D]`` Sinkhorn-divergence drift; see :func:`sinkhorn_drift_with_info` (same
  arguments) for the definition and the diagnostics."""
  return sinkhorn_drift_with_info(x, pos, neg, **kwargs)[0]


def sinkhorn_loss_with_info(x: jax.Array, pos: jax.Array, neg: jax.Array | None = None,
                            **kwargs: Any) -> tuple[jax.Array, SinkhornDriftInfo]:
  """Stop-gradient Sinkhorn drift loss ``mean_i ‖x_i − sg(x_i + V(x_i))‖²`` (Eq. 46).

  The drift is a frozen field (JKO / stop-gradient, Secretly-SM §5.3), so it is computed on
  ``stop_gradient`` inputs and no gradient flows through the Sinkhorn solves; the gradient
  w.r.t. ``x`` is ``−2 V / N``.

  Args:
    x: ``[N, D]`` generated particles (differentiable).
    pos: ``[M, D]`` data samples.
    neg: optional ``[K, D]`` samples of ``q`` (default ``x``).
    **kwargs: keyword hyperparameters of :func:`sinkhorn_drift_with_info`.

  Returns:
    ``(loss [], info)``.
  """
  for name, a in (("x", x), ("pos", pos), ("neg", neg)):
    if a is not None:
      _validation.check_real_dtype(name, a)  # before stop_gradient sees a string array
  sg = jax.lax.stop_gradient
  v, info = sinkhorn_drift_with_info(sg(x), sg(pos), None if neg is None else sg(neg),
                                     **kwargs)
  x = jnp.asarray(x, v.dtype)
  loss = jnp.mean(jnp.sum((x - sg(x + v)) ** 2, -1))
  return loss, info


def sinkhorn_loss(x: jax.Array, pos: jax.Array, neg: jax.Array | None = None,
                  **kwargs: Any) -> jax.Array:
  """``[]`` stop-gradient Sinkhorn drift loss; see :func:`sinkhorn_loss_with_info`."""
  return sinkhorn_loss_with_info(x, pos, neg, **kwargs)[0]
