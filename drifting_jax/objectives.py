"""Training objectives by name (Franz et al. §5.1, Secretly-SM §6), as ``fn(x, pos, step)``.

``make_objective(name, bandwidth=..., ...)`` returns a pure function

    fn(x [N, D], pos [M, D], step) -> (loss [], metrics {str: []})

for one drift problem: generated samples ``x`` (carrying gradients to the generator), data
``pos``, and the optimizer ``step`` (used by bandwidth schedules). The negatives are the
generated samples themselves (``neg = x``, self-interaction masked). ``metrics`` always
holds ``loss``, ``drift_norm`` (``mean_i ||V(x_i)||``, the quantity of Secretly-SM Fig. 4)
and, for objectives with a kernel width, ``bandwidth`` (the width used at ``step``);
``sinkhorn`` adds ``sinkhorn_epsilon`` and ``sinkhorn_converged`` instead.

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
``gauss-annealed``     ``gauss-ds`` with ``sigma(t) = max(sigma0 e^(-r t), bandwidth)``, Eq. (18)
``sinkhorn``           Sinkhorn-divergence drift, Secretly-SM §6.3, Alg. 2 (no kernel width:
                       ``bandwidth=None``; its temperature is ``alpha``)
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

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation
from drifting_jax import fields, kernels, losses, schedules
from drifting_jax.deng import deng_drift_loss_with_info

__all__ = ["FAMILIES", "KERNEL_NAMES", "FamilySpec", "Objective", "family_spec", "make_objective",
           "objective_from_settings",
           "objective_names", "parse_objective"]

Objective = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, dict[str, jax.Array]]]

KERNEL_NAMES = ("gauss", "laplace", "rq")
_FIELD_FAMILIES = ("naive", "sharp", "drifting", "mmd")
_STANDALONE = ("gauss-ds", "gauss-annealed", "sinkhorn")
sg = jax.lax.stop_gradient
_REQUIRED = object()  # marks an option without a default


@dataclasses.dataclass(frozen=True)
class FamilySpec:
  """The options of one objective family, declared once.

  Attributes:
    options: ``{name: default}`` of the family's keyword options (``_REQUIRED``: no default).
    uses_bandwidth: the family's field has a kernel width (``bandwidth`` required, > 0;
      otherwise ``bandwidth`` must be None).
    coupled: the family supports ``stop_gradient=False``.
  """

  options: Mapping[str, Any]
  uses_bandwidth: bool = True
  coupled: bool = True


_SINKHORN_DEFAULTS = {"alpha": 0.05, "cost_power": 2, "exclude_self": True, "eta": 1.0,
                      "max_iterations": 2000, "threshold": 1e-3}
FAMILIES: Mapping[str, FamilySpec] = {
    "naive": FamilySpec({"scales": (), "chunk_size": None}),
    "sharp": FamilySpec({"scales": (), "chunk_size": None}),
    "drifting": FamilySpec({"chunk_size": None}),
    "drifting-official": FamilySpec({"temperatures": _REQUIRED}, uses_bandwidth=False,
                                    coupled=False),
    "mmd": FamilySpec({"chunk_size": None}),
    "logkde": FamilySpec({"chunk_size": None}),
    "gauss-ds": FamilySpec({"chunk_size": None}),
    "gauss-annealed": FamilySpec({"sigma0": 1.0, "rate": 3e-3, "chunk_size": None}),
    "sinkhorn": FamilySpec(_SINKHORN_DEFAULTS, uses_bandwidth=False),
}


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


def family_spec(name: str, official: bool = False) -> FamilySpec:
  """The :class:`FamilySpec` of objective ``name`` (``official``: Deng et al.'s loss)."""
  family, _ = parse_objective(name)
  return FAMILIES["drifting-official" if family == "drifting" and official else family]


def _positive(name: str, value: Any) -> float:
  if isinstance(value, jax.Array) and value.ndim == 0 and not isinstance(value, jax.core.Tracer):
    value = value.item()  # a concrete JAX scalar
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
      not math.isfinite(float(value)) or float(value) <= 0:
    raise ValueError(f"`{name}` must be a positive number, got {value!r}")
  return float(value)


def _resolve_options(name: str, family: str, kname: str | None, official: bool,
                     bandwidth: Any, schedule: Any, given: dict) -> tuple[float | None, dict]:
  """Checks ``bandwidth`` and the options against the family's spec; returns both."""
  spec = family_spec(name, official)
  unknown = sorted(set(given) - set(spec.options))
  if unknown:
    raise ValueError(f"unknown option(s) {', '.join(f'`{k}`' for k in unknown)} for "
                     f"objective {name!r}"
                     + (" with official=True" if official else "")
                     + f"; its options are {sorted(spec.options) or 'none'}")
  missing = sorted(k for k, v in spec.options.items() if v is _REQUIRED and k not in given)
  if missing:
    raise ValueError(f"objective {name!r}" + (" with official=True" if official else "")
                     + f" needs the option(s) {missing}")
  opts = {**{k: v for k, v in spec.options.items() if v is not _REQUIRED}, **given}
  if not spec.uses_bandwidth:
    if bandwidth is not None or schedule is not None:
      what = ("Deng et al.'s loss uses `temperatures`" if official else
              "its temperature is `alpha`")
      raise ValueError(f"objective {name!r} has no kernel width ({what}): pass "
                       f"bandwidth=None and no schedule, got bandwidth={bandwidth!r}")
    bw = None
  elif schedule is not None:
    if not callable(schedule):
      raise ValueError(f"`schedule` must be a callable step -> bandwidth, got {schedule!r}")
    if bandwidth is not None:
      raise ValueError("pass either `bandwidth` or `schedule` (a step -> bandwidth "
                       f"callable), not both; got bandwidth={bandwidth!r}")
    if family == "gauss-annealed":
      raise ValueError("`gauss-annealed` builds its own schedule from sigma0, rate and "
                       "bandwidth (= sigma_min); use another objective with `schedule`")
    bw = None
  else:
    bw = _positive("bandwidth", bandwidth)
  for m in opts.get("scales", ()):
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 0:
      raise ValueError(f"`scales` must hold positive numbers, got {opts['scales']!r}")
  if family == "gauss-annealed":
    _positive("sigma0", opts["sigma0"])
    if not isinstance(opts["rate"], (int, float)) or opts["rate"] < 0:
      raise ValueError(f"`rate` must be a number >= 0, got {opts['rate']!r}")
    if opts["sigma0"] < bw:
      raise ValueError(f"`sigma0` ({opts['sigma0']}) must be >= bandwidth = sigma_min ({bw})")
  if official:
    temps = opts["temperatures"]
    if not isinstance(temps, (tuple, list)) or not temps:
      raise ValueError(f"`temperatures` must be a non-empty tuple, got {temps!r}")
    opts["temperatures"] = tuple(_positive("temperatures", t) for t in temps)
    if kname != "laplace":
      raise ValueError(f"`official=True` needs the Laplacian kernel, got objective {name!r}")
  chunk = opts.get("chunk_size")
  if chunk is not None:
    opts["chunk_size"] = _validation.check_int("chunk_size", chunk, minimum=1)
  return bw, opts


def _mean_norm(v: jax.Array) -> jax.Array:
  # sqrt of a clamped square sum: the norm's gradient stays finite at V = 0.
  return jnp.mean(jnp.sqrt(jnp.maximum(jnp.sum(v * v, axis=-1), 1e-30)))


def make_objective(
    name: str,
    *,
    bandwidth: float | None = None,
    schedule: Callable[[Any], jax.Array] | None = None,
    stop_gradient: bool = True,
    official: bool = False,
    **options: Any,
) -> Objective:
  """Builds the objective ``fn(x [N, D], pos [M, D], step) -> (loss, metrics)``.

  Args:
    name: objective name (see the module table / :func:`objective_names`).
    bandwidth: the kernel width of the field: ``sigma`` (Gaussian, rational quadratic),
      ``tau`` (Laplacian), > 0, in the units of the samples the objective sees. For
      ``gauss-annealed`` it is the width the annealing ends at (``sigma_min`` of Eq. (18)).
      Must be None for ``sinkhorn`` and for Deng et al.'s loss (``official=True``), which
      have no kernel width, and when ``schedule`` is given.
    schedule: optional ``step -> bandwidth`` callable (e.g. from
      :func:`drifting_jax.schedules.get_schedule`) instead of a fixed ``bandwidth``.
    stop_gradient: frozen-field / stop-gradient loss (True) or the coupled loss
      ``mean ||V||^2`` with gradients through ``V`` (False, Secretly-SM Thm. 5.6(ii)).
    official: ``drifting-laplace`` only: Deng et al.'s exact multi-temperature loss
      (:func:`drifting_jax.deng.deng_drift_loss`) instead of their field with
      :func:`drifting_jax.losses.drift_loss`.
    **options: the family's options (:data:`FAMILIES`; anything else raises):
      ``naive-<k>``, ``sharp-<k>``: ``scales`` (tuple of positive multipliers ``m``; the
      field is ``Σ_m V_{m·σ} / RMS(V_{m·σ})``, every width normalized to unit RMS and summed
      as in Deng et al.'s multi-temperature loss; default: the single width ``σ``);
      every kernel family (``naive``, ``sharp``, ``drifting``, ``mmd``, ``<k>#``,
      ``gauss-ds``, ``gauss-annealed``): ``chunk_size``, streaming the positives and
      negatives of the field (and of the KDE losses) in blocks of this size (None: at once);
      ``gauss-annealed``: ``sigma0`` (default 1.0) and ``rate`` per step (default 3e-3) of
      ``σ(t) = max(σ0 e^(-r t), bandwidth)``;
      ``drifting-laplace`` with ``official=True``: ``temperatures`` (required; Deng et
      al.'s normalized units, e.g. ``(0.02, 0.05, 0.2)``);
      ``sinkhorn``: ``alpha``, ``cost_power``, ``exclude_self``, ``eta``,
      ``max_iterations``, ``threshold`` of :func:`drifting_jax.sinkhorn.sinkhorn_drift`.

  Returns:
    The objective function; it is pure and jittable (``step`` may be traced).

  Raises:
    ValueError: unknown ``name``; an option the family does not have (or a missing required
      one); a ``bandwidth`` that is missing, not positive, or given where the objective has
      no kernel width.
  """
  family, kname = parse_objective(name)
  if not isinstance(official, bool):
    raise ValueError(f"`official` must be a bool, got {official!r}")
  if official and family != "drifting":
    raise ValueError(f"`official=True` is an option of 'drifting-laplace', not of {name!r}")
  if family_spec(name, official).coupled is False and not stop_gradient:
    raise ValueError(f"objective {name!r}" + (" with official=True" if official else "")
                     + " is a stop-gradient loss; it needs `stop_gradient=True`")
  bw, opts = _resolve_options(name, family, kname, official, bandwidth, schedule,
                              dict(options))
  if family == "gauss-annealed":
    schedule = schedules.exponential(sigma0=opts["sigma0"], rate=opts["rate"], sigma_min=bw)
  temperatures = opts.get("temperatures", ())
  chunk_size = opts.get("chunk_size")
  scales = tuple(opts.get("scales", ()))
  sk_kw = opts if family == "sinkhorn" else {}

  def bandwidth_at(step):  # the default float dtype: float32, or float64 under x64
    dtype = jnp.result_type(float)
    if schedule is None:
      return jnp.asarray(bw, dtype)
    return jnp.asarray(schedule(step), dtype)

  def field(x, pos, neg, sigma, extra):
    """``[N, D]`` drift ``V(x)`` with negatives ``neg`` (``x`` itself, masked).

    Diagnostics (Sinkhorn epsilon / convergence) are added to the dict ``extra``.
    """
    if family in ("gauss-ds", "gauss-annealed"):
      return fields.doubly_stochastic_field(x, pos, neg, bandwidth=sigma, exclude_self=True,
                                            chunk_size=chunk_size)
    if family == "sinkhorn":
      from drifting_jax import sinkhorn  # ott-jax loads on first use
      v, info = sinkhorn.sinkhorn_drift_with_info(x, pos, **sk_kw)
      extra["sinkhorn_epsilon"] = sg(info.epsilon)
      extra["sinkhorn_converged"] = jnp.logical_and(info.converged_qp,
                                                    info.converged_qq).astype(jnp.float32)
      return v
    kern = kernels.get(kname, sigma)
    if family in ("naive", "sharp"):
      norm = "kde" if family == "naive" else "sharp"
      if scales:  # Σ_m V_{mσ} / RMS(V_{mσ})
        return fields.multiscale(
            fields.drift_field, [kernels.get(kname, sigma * m) for m in scales],
            normalize=True, normalization=norm, exclude_self=True,
            chunk_size=chunk_size)(x, pos, neg)
      return fields.drift_field(x, pos, neg, kernel=kern, normalization=norm,
                                exclude_self=True, chunk_size=chunk_size)
    if family == "drifting":
      return fields.deng_field(x, pos, neg, kernel=kern, exclude_self=True,
                               column_normalize=True, chunk_size=chunk_size)
    if family == "logkde":  # -grad of the per-sample log-KDE potential, Eq. (19)
      return fields.drift_field(x, pos, neg, kernel=kern, normalization="sharp",
                                exclude_self=True, chunk_size=chunk_size)
    return fields.mmd_field(x, pos, neg, kernel=kern, exclude_self=True,  # Eq. (8)
                            chunk_size=chunk_size)

  def potential_loss(x, pos, sigma):
    kern = kernels.get(kname, sigma)
    if family == "logkde":
      return losses.log_kde_loss(x, pos, x, kernel=kern, exclude_self=True,
                                 chunk_size=chunk_size)
    return losses.mmd_loss(x, pos, x, kernel=kern, exclude_self=True, chunk_size=chunk_size)

  def objective(x, pos, step):
    has_width = bw is not None or schedule is not None
    sigma = bandwidth_at(step) if has_width else None
    metrics = {"bandwidth": sigma} if has_width else {}
    if official:
      per_group, info = deng_drift_loss_with_info(x[None], pos[None], temperatures=temperatures)
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


def objective_from_settings(name: str, *, bandwidth: float | None, schedule: str | None = None,
                            schedule_kwargs: Mapping[str, Any] | None = None,
                            stop_gradient: bool = True,
                            options: Mapping[str, Any] | None = None) -> Objective:
  """:func:`make_objective` from a run configuration's fields.

  A configuration always carries a ``bandwidth``; it is passed on only where the objective
  has a kernel width and no named ``schedule`` (``schedules.get_schedule(schedule,
  **schedule_kwargs)``) replaces it. ``options`` may hold ``official``.
  """
  options = dict(options or {})
  official = options.pop("official", False)
  sched = None
  if schedule is not None:
    sched = schedules.get_schedule(schedule, **dict(schedule_kwargs or {}))
  uses = family_spec(name, bool(official)).uses_bandwidth
  return make_objective(name, bandwidth=bandwidth if uses and sched is None else None,
                        schedule=sched, stop_gradient=stop_gradient, official=official,
                        **options)
