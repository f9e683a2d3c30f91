"""Training objectives by name (Franz et al. §5.1, Secretly-SM §6), as ``fn(x, pos, step)``.

``make_objective(name, bandwidth=..., ...)`` returns a pure function

    fn(x [N, D], pos [M, D], step) -> (loss [], metrics {str: []})

for one drift problem: generated samples ``x`` (carrying gradients to the generator), data
``pos``, and the optimizer ``step`` (used by bandwidth schedules). The negatives are the
generated samples themselves (``neg = x``, self-interaction masked). ``metrics`` always
holds ``loss``, ``drift_norm`` (``mean_i ||V(x_i)||``, the quantity of Secretly-SM Fig. 4)
and ``bandwidth`` (the bandwidth used at ``step``; unused by ``sinkhorn``, which adds
``sinkhorn_epsilon`` and ``sinkhorn_converged`` instead).

=====================  =========================================================================
name                   objective
=====================  =========================================================================
``naive-<k>``          ``drift_loss`` with the field of Eq. (3) of Franz et al. (``"kde"``)
``sharp-<k>``          ``drift_loss`` with the sharp-normalized field, Eq. (19) of Franz et al.
``drifting-<k>``       ``drift_loss`` with Deng et al.'s joint softmax field, doubly-stochastic
                       (column-normalized) as in their code (Franz App. D, Eq. (26));
                       ``official=True`` switches to :func:`drifting_jax.deng.deng_drift_loss`
``<k>#``               log-KDE loss with the sharp kernel, Eq. (20) / Alg. 1 of Franz et al.
``mmd-<k>``            squared-MMD loss, Eq. (7) of Franz et al.
``gauss-ds``           Gaussian doubly-stochastic drift, Secretly-SM App. G.3.1, Alg. 1
``gauss-annealed``     ``gauss-ds`` with ``sigma(t) = max(sigma0 e^(-r t), sigma_min)``, Eq. (18)
``sinkhorn``           Sinkhorn-divergence drift, Secretly-SM §6.3, Alg. 2 (``bandwidth`` unused;
                       its temperature is ``alpha``)
=====================  =========================================================================

``<k>`` is ``gauss``, ``laplace`` or ``rq``. For the loss-based objectives (``#``, ``mmd``)
``V`` is the field whose negative is the per-sample potential's gradient: the
sharp-normalized field (Eq. (19)) for ``#`` and the MMD field (Eq. (8)) for ``mmd``.

``stop_gradient=False`` trains on the *coupled* loss ``mean_i ||V(x_i)||^2`` with gradients
flowing through ``V``, including through the negatives ``neg = x`` (Secretly-SM
Theorem 5.6(ii), "drift collapse"); the default ``True`` is the frozen-field loss
``mean_i ||x_i - sg(x_i + V_i)||^2`` (Eq. (16)) or the stop-gradient potential loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from drifting_jax import fields, kernels, losses, schedules
from drifting_jax.deng import deng_drift_loss

__all__ = ["KERNEL_NAMES", "Objective", "make_objective", "objective_names", "parse_objective"]

Objective = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, dict[str, jax.Array]]]

KERNEL_NAMES = ("gauss", "laplace", "rq")
_FIELD_FAMILIES = ("naive", "sharp", "drifting", "mmd")
_STANDALONE = ("gauss-ds", "gauss-annealed", "sinkhorn")
_SINKHORN_KEYS = ("alpha", "cost_power", "mask_self", "step", "max_iterations", "threshold")
sg = jax.lax.stop_gradient


def objective_names() -> tuple[str, ...]:
  """Every accepted objective name."""
  names = [f"{fam}-{k}" for fam in _FIELD_FAMILIES for k in KERNEL_NAMES]
  names += [f"{k}#" for k in KERNEL_NAMES]
  return tuple(names) + _STANDALONE


def parse_objective(name: str) -> tuple[str, str | None]:
  """Splits an objective name into ``(family, kernel)``.

  Families: ``naive``, ``sharp``, ``drifting``, ``mmd``, ``logkde`` (the ``<k>#`` names),
  ``gauss-ds``, ``gauss-annealed``, ``sinkhorn`` (kernel ``None`` for the last three).

  Raises:
    ValueError: if ``name`` is not in :func:`objective_names`.
  """
  if not isinstance(name, str) or name not in objective_names():
    raise ValueError(f"`objective` must be one of {objective_names()}, got {name!r}")
  if name in _STANDALONE:
    return name, None
  if name.endswith("#"):
    return "logkde", name[:-1]
  family, kernel = name.split("-", 1)
  return family, kernel


def _mean_norm(v: jax.Array) -> jax.Array:
  # sqrt of a clamped square sum: the norm's gradient stays finite at V = 0.
  return jnp.mean(jnp.sqrt(jnp.maximum(jnp.sum(v * v, axis=-1), 1e-30)))


def make_objective(
    name: str,
    *,
    bandwidth: float,
    schedule: Callable[[Any], jax.Array] | None = None,
    stop_gradient: bool = True,
    **kw: Any,
) -> Objective:
  """Builds the objective ``fn(x [N, D], pos [M, D], step) -> (loss, metrics)``.

  Args:
    name: objective name (see the module table / :func:`objective_names`).
    bandwidth: kernel bandwidth ``sigma`` (temperature ``tau`` for the Laplacian), > 0.
      For ``gauss-annealed`` it is the default floor ``sigma_min``.
    schedule: optional ``step -> bandwidth`` callable (e.g. from
      :func:`drifting_jax.schedules.get_schedule`); overrides ``bandwidth`` per step.
    stop_gradient: frozen-field / stop-gradient loss (True) or the coupled loss
      ``mean ||V||^2`` with gradients through ``V`` (False, Secretly-SM Thm. 5.6(ii)).
    **kw: objective-specific options:
      ``gauss-annealed``: ``sigma0`` (default 1.0), ``rate`` per step (default 3e-3),
      ``sigma_min`` (default ``bandwidth``), used when ``schedule`` is None;
      ``sinkhorn``: ``alpha``, ``cost_power``, ``mask_self``, ``step``,
      ``max_iterations``, ``threshold`` of :func:`drifting_jax.sinkhorn.sinkhorn_drift`;
      ``drifting-<k>``: ``official`` (bool) and ``temperatures`` (tuple, default
      ``(bandwidth,)``) to use Deng et al.'s exact multi-temperature loss (Laplacian only);
      ``<k>#``: ``chunk_size`` of the streamed KDEs;
      ``naive-<k>``, ``sharp-<k>``: ``scales`` (tuple of positive multipliers ``m``): the
      field is ``Σ_m V_{m·σ} / RMS(V_{m·σ})``, every width normalized to unit RMS and summed
      as in Deng et al.'s multi-temperature loss (default: the single width ``σ``).

  Returns:
    The objective function; it is pure and jittable (``step`` may be traced).

  Raises:
    ValueError: unknown ``name`` or option, non-positive ``bandwidth``.
  """
  family, kname = parse_objective(name)
  try:
    bw = float(bandwidth)
  except (TypeError, ValueError):
    raise ValueError(f"`bandwidth` must be a positive number, got {bandwidth!r}") from None
  if not math.isfinite(bw) or bw <= 0:
    raise ValueError(f"`bandwidth` must be a positive number, got {bandwidth!r}")
  if schedule is not None and not callable(schedule):
    raise ValueError(f"`schedule` must be a callable step -> bandwidth, got {schedule!r}")

  kw = dict(kw)
  if family == "gauss-annealed" and schedule is None:
    schedule = schedules.exponential(
        sigma0=kw.pop("sigma0", 1.0),
        rate=kw.pop("rate", 3e-3),
        sigma_min=kw.pop("sigma_min", bw),
    )
  official = bool(kw.pop("official", False)) if family == "drifting" else False
  temperatures = tuple(kw.pop("temperatures", (bw,))) if family == "drifting" else ()
  chunk_size = kw.pop("chunk_size", None) if family == "logkde" else None
  scales = tuple(kw.pop("scales", ())) if family in ("naive", "sharp") else ()
  for m in scales:
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 0:
      raise ValueError(f"`scales` must hold positive numbers, got {scales!r}")
  sk_kw = {k: kw.pop(k) for k in _SINKHORN_KEYS if k in kw} if family == "sinkhorn" else {}
  if kw:
    raise ValueError(f"unknown option(s) {sorted(kw)} for objective {name!r}")
  if official and kname != "laplace":
    raise ValueError(f"`official=True` needs the Laplacian kernel, got objective {name!r}")
  if official and not stop_gradient:
    raise ValueError("`official=True` is a stop-gradient loss; it needs `stop_gradient=True`")

  def bandwidth_at(step):
    if schedule is None:
      return jnp.asarray(bw, jnp.float32)
    return jnp.asarray(schedule(step), jnp.float32)

  def field(x, pos, neg, sigma, extra):
    """``[N, D]`` drift ``V(x)`` with negatives ``neg`` (``x`` itself, masked).

    Diagnostics (Sinkhorn epsilon / convergence) are added to the dict ``extra``.
    """
    if family in ("gauss-ds", "gauss-annealed"):
      return fields.doubly_stochastic_field(x, pos, neg, bandwidth=sigma, exclude_self=True)
    if family == "sinkhorn":
      from drifting_jax import sinkhorn  # ott-jax loads on first use
      v, info = sinkhorn.sinkhorn_drift(x, pos, return_info=True, **sk_kw)
      extra["sinkhorn_epsilon"] = sg(info.epsilon)
      extra["sinkhorn_converged"] = jnp.logical_and(info.converged_qp,
                                                    info.converged_qq).astype(jnp.float32)
      return v
    kern = kernels.get(kname, sigma)
    if family in ("naive", "sharp"):
      norm = "kde" if family == "naive" else "sharp"
      if scales:  # Σ_m V_{mσ} / RMS(V_{mσ})
        return fields.multiscale(
            lambda x_, p_, n_, s: fields.drift_field(x_, p_, n_, kernel=kernels.get(kname, s),
                                                     normalization=norm, exclude_self=True),
            [sigma * m for m in scales], normalize=True)(x, pos, neg)
      return fields.drift_field(x, pos, neg, kernel=kern, normalization=norm,
                                exclude_self=True)
    if family == "drifting":
      return fields.deng_field(x, pos, neg, kernel=kern, exclude_self=True,
                               column_normalize=True)
    if family == "logkde":  # -grad of the per-sample log-KDE potential, Eq. (19)
      return fields.drift_field(x, pos, neg, kernel=kern, normalization="sharp",
                                exclude_self=True)
    return fields.mmd_field(x, pos, neg, kernel=kern, exclude_self=True)  # Eq. (8)

  def potential_loss(x, pos, sigma):
    kern = kernels.get(kname, sigma)
    if family == "logkde":
      return losses.log_kde_loss(x, pos, x, kernel=kern, exclude_self=True,
                                 chunk_size=chunk_size)
    return losses.mmd_loss(x, pos, x, kernel=kern, exclude_self=True)

  def objective(x, pos, step):
    sigma = bandwidth_at(step)
    metrics = {"bandwidth": sigma}
    if official:
      per_group, info = deng_drift_loss(x[None], pos[None], temperatures=temperatures)
      loss = per_group[0]
      # The official loss is mean_{C,S} V^2 in Deng's scaled units: report the RMS norm.
      metrics["drift_norm"] = jnp.sqrt(sg(loss) * x.shape[-1])
      metrics["feature_scale"] = info["scale"]
    elif not stop_gradient:
      v = field(x, pos, x, sigma, metrics)  # gradients flow through V and through neg = x
      loss = jnp.mean(jnp.sum(v * v, axis=-1))
      metrics["drift_norm"] = sg(_mean_norm(v))
    elif family in ("logkde", "mmd"):
      loss = potential_loss(x, pos, sigma)
      metrics["drift_norm"] = _mean_norm(field(sg(x), sg(pos), sg(x), sigma, metrics))
    else:
      xs = sg(x)
      v = field(xs, sg(pos), xs, sigma, metrics)
      loss = losses.drift_loss(x, v)
      metrics["drift_norm"] = _mean_norm(v)
    metrics["loss"] = loss
    return loss, metrics

  return objective
