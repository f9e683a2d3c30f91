"""Counts how every public function of drifting_jax meets bad and extreme inputs.

Not a test module (pytest does not collect it); run it as a script against a checkout::

    PYTHONPATH=/path/to/checkout python tests/fuzz_counts.py [--verbose] [--only NAME]

Every public callable of ``drifting_jax`` (the callables of ``drifting_jax.__all__``) and
of ``drifting_jax.metrics`` (its eagerly imported functions; the Flax feature extractors
need weights and are left out) is called on one valid problem and on a fixed set of bad or
extreme variants of it, one input class per column group:

* ``valid`` (float32 vs the float64 answer) and ``np-scalar`` (numpy / JAX scalars where a
  Python number is documented);
* ``uint8`` / ``int32`` inputs (compared with the same call on float32 copies);
* ``nan`` / ``inf`` entries (eager), points scaled to ``1e19`` / ``1e30`` (compared with
  float64), ``empty`` (zero rows) and ``wrong-rank`` inputs;
* ``wrong-option`` (non-positive widths, unknown strings, out-of-range integers, ...);
* ``traced-invalid`` (an invalid hyperparameter passed as a traced ``jit`` argument) and
  ``nan-jit`` (a NaN entry in the first input, under ``jit``).

Each call is classified as

* ``ok-correct``: matches the reference (float32/float64 copy, the valid call) where the
  input has an answer, or is NaN where NaN is the expected answer (traced-invalid
  hyperparameters: every output NaN; NaN inputs under ``jit``: the affected rows);
* ``ValueError``: a ``ValueError`` whose message names an argument in backticks;
* ``silent-nan`` / ``silent-finite-wrong``: a returned value that is non-finite (NaN, or
  inf), or finite, where the call should have raised or returned something else;
* ``crash``: any other exception (including an unclear ``ValueError``).

Inputs without an answer (eager NaN/inf for non-elementwise functions, empty or wrong-rank
inputs, wrong options) should raise: any returned value there counts as silent.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import math
import re
import sys
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import drifting_jax as dj
from drifting_jax import metrics
from drifting_jax.testing import x64

CLASSES = ("valid", "np-scalar", "uint8", "int32", "nan", "inf", "overflow-1e19",
           "overflow-1e30", "empty", "wrong-rank", "wrong-dtype", "wrong-option", "generated",
           "traced-invalid", "nan-jit")
OUTCOMES = ("ok-correct", "ValueError", "silent-nan", "silent-finite-wrong", "crash",
            "error-on-valid")
#: the generated option values (class ``generated``): every scalar option of every case meets
#: each of them; which are valid is stated per option in :data:`DOMAINS`.
BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "huge": 1e39,
       "tiny": 1e-45, "negative": -1.0, "zero": 0.0, "float-for-int": 2.5,
       "integral-float": 2.0, "string": "1", "bool": True, "none": None}
F32_TINY, F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
NAN = float("nan")
INF = float("inf")
# uint8 / int32 inputs: values in [0, high) and the factor applied to length-valued options.
INTEGER = {"uint8": (np.uint8, 256, 100.0), "int32": (np.int32, 300_000, 1e5)}




def _real(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v):
  return isinstance(v, int) and not isinstance(v, bool)


def _f32_real(v):
  """A finite real number that float32 holds at full precision (0 or a normal magnitude)."""
  return _real(v) and math.isfinite(v) and (v == 0 or F32_TINY <= abs(v) <= F32_MAX)


def _positive(v):
  return _f32_real(v) and v > 0


def _int_at_least(low):
  return lambda v: _integer(v) and low <= v <= 2**31 - 1


def _width(v):
  """A kernel width of the float32 range ``dj.width_range`` (squared widths stay normal)."""
  lo, hi = dj.width_range(np.float32)
  return _real(v) and lo <= v <= hi


#: option -> which values are valid, from each option's documented meaning (its docstring);
#: ``(case, option)`` entries override the option's default.
DOMAINS: dict[Any, Callable[[Any], bool]] = {
    "bandwidth": _width,
    "num_nodes": _int_at_least(8),
    "alpha": _positive,
    "dim": _int_at_least(1),
    ("curl_indices", "dim"): _int_at_least(2),
    "sigma0": lambda v: _positive(v) and v >= 0.03,  # >= sigma_min of the case
    "sigma_min": lambda v: _positive(v) and v <= 1.5,  # <= sigma0 of the case
    "rate": lambda v: _f32_real(v) and v >= 0,
    "total_steps": _positive,  # a horizon in the unit of `step` (a float time too)
    "sigma": _positive,
    "tau": _positive,
    "eps": lambda v: _real(v) and 0 < v < 1,
    "t_max": _positive,
    "num_points": _int_at_least(2),
    "num_steps": _int_at_least(1),
    "k": lambda v: _integer(v) and 1 <= v < 6,  # fewer than the case's points
    "num_gen": _int_at_least(2),
    "num": _int_at_least(1),
    "low": lambda v: _positive(v) and v <= 4.0,  # <= high of the case
    "high": lambda v: _f32_real(v) and v >= 1.0,  # >= low of the case
    "p": lambda v: _f32_real(v) and v >= 1,
}


def domain(case_name: str, option: str) -> Callable[[Any], bool] | None:
  return DOMAINS.get((case_name.split("/")[0], option), DOMAINS.get(option))


def cloud(seed, *shape, shift=0.0):
  return shift + np.random.default_rng(seed).standard_normal(shape)


N, M, D = 8, 6, 3
X = cloud(0, N, D)
P = cloud(1, M, D, shift=0.5)
D2 = np.sum((X[:, None] - P[None]) ** 2, -1)
XG = cloud(2, 2, 5, D)
PG = cloud(3, 2, 4, D, shift=0.5)
UG = cloud(4, 2, 3, D, shift=-0.5)
KEY = jax.random.PRNGKey(0)


@dataclasses.dataclass
class Case:
  """One public function on one valid problem and its bad variants.

  Attributes:
    name: the function (and variant).
    fn: ``fn(*arrays, **kw)`` calling it.
    arrays: the valid float64 array inputs (the data the input classes perturb).
    kw: valid keyword values (hyperparameters and options).
    length: names in ``kw`` measured in data units (scaled for integer inputs).
    options: wrong-option variants, each a dict overriding ``kw``.
    traced: ``(name, invalid value)`` pairs passed as traced ``jit`` arguments; a name
      ``"#i"`` replaces ``arrays[i]``.
    scalars: names in ``kw`` whose numpy / JAX scalar forms must give the same answer.
    elementwise: NaN / inf propagate entrywise by contract (compared with float64).
    rows: the value's leading axis follows ``arrays[0]``'s (NaN-row check under jit).
    rank_free: any rank of ``arrays[0]`` is valid (compared with float64).
    empty_ok: zero rows in ``arrays[0]`` are valid (compared with float64).
    empty_ok_args: indices ``i > 0`` of ``arrays`` whose zero rows are valid too.
    value: selects the checked value from the output (e.g. ``out[0]`` of ``*_with_info``).
    int_arrays: builds the integer inputs ``(dtype, high) -> arrays`` (default: uniform).
    nan_jit: whether the ``nan-jit`` class applies.
    reference: whether the float64 call is a reference (not for random draws, whose
      float64 stream differs).
  """
  name: str
  fn: Callable[..., Any]
  arrays: tuple = ()
  kw: dict = dataclasses.field(default_factory=dict)
  length: tuple = ()
  options: tuple = ()
  traced: tuple = ()
  scalars: tuple = ()
  elementwise: bool = False
  rows: bool = False
  rank_free: bool = False
  empty_ok: bool = False
  empty_ok_args: tuple = ()
  value: Callable[[Any], Any] = lambda out: out
  int_arrays: Callable[..., tuple] | None = None
  nan_jit: bool = True
  reference: bool = True


BW = (("bandwidth", -0.5), ("bandwidth", 0.0), ("bandwidth", NAN))
BAD_BW = ({"bandwidth": -0.5}, {"bandwidth": 0.0}, {"bandwidth": NAN}, {"bandwidth": "0.5"})


def _kernel_case(make):
  def fn(d2, bandwidth=0.5, which=None):
    kern = make(bandwidth)
    if which is not None:
      return kern.log(d2, which)
    return {w: kern.log(d2, w) for w in ("k", "sharp", "flat")}
  return Case(make.__name__, fn, (D2,), {"bandwidth": 0.5}, length=("bandwidth",),
              options=BAD_BW + ({"which": "bogus"},), traced=BW, scalars=("bandwidth",),
              elementwise=True, rows=True, rank_free=True, empty_ok=True)


def _radial(d2, bandwidth=0.5, num_nodes=32, profile=None, name="radial"):
  kern = dj.radial(profile or (lambda u: jnp.exp(-u)), bandwidth=bandwidth,
                   num_nodes=num_nodes, name=name)
  return {w: kern.log(d2, w) for w in ("k", "sharp", "flat")}


def _field_case(name, fn, **kw):
  return Case(name, fn, (X, P), {"bandwidth": 0.5, **kw.pop("kw", {})}, length=("bandwidth",),
              options=BAD_BW + kw.pop("options", ()), traced=BW, scalars=("bandwidth",),
              rows=kw.pop("rows", True), **kw)


def _gauss(bw):
  return dj.gaussian(bw)


def _sinkhorn_case(name, call, rows):
  return Case(
      name, lambda x, p, **kw: call(x, p, max_iterations=kw.pop("max_iterations", 300), **kw),
      (X, P), {"alpha": 0.5},
      options=({"alpha": -0.5}, {"alpha": 0.0}, {"epsilon": 0.0}, {"cost_power": 3},
               {"eta": INF}, {"max_iterations": 0}, {"threshold": -1.0},
               {"exclude_self": True, "neg": P}),
      traced=(("alpha", -0.5), ("alpha", 0.0), ("alpha", NAN), ("epsilon", -1e-3),
              ("eta", INF), ("eta", NAN)),
      scalars=("alpha",), rows=rows,
      value=(lambda out: out[0]) if name.endswith("_with_info") else (lambda out: out))


def _calculus_field(bandwidth, wrong=False):
  if wrong:
    return lambda z: z[:, :1]
  return lambda z: dj.drift_field(z, P, P, kernel=dj.gaussian(bandwidth))


def _calculus_case(name, call, rows, **kw):
  return Case(name, lambda x, bandwidth=0.5, wrong=False, **opts: call(
      _calculus_field(bandwidth, wrong), x, **opts), (X,), {"bandwidth": 0.5},
      length=("bandwidth",), options=({"wrong": True},) + kw.pop("options", ()),
      traced=(("bandwidth", -0.5), ("bandwidth", NAN)), rows=rows, **kw)


def _schedule(step, name="exponential", **kw):
  return dj.get_schedule(name, **kw)(step)


def _frechet_int(dtype, high):
  rng = np.random.default_rng(5)
  mu1, mu2 = rng.integers(0, high, (2, D))
  s1, s2 = (np.diag(rng.integers(1, high, D)) for _ in range(2))
  return tuple(a.astype(dtype) for a in (mu1, s1, mu2, s2))


def _frechet(mu1, s1, mu2, s2, bad=None):
  if bad == "asymmetric":
    s1 = s1 + np.triu(np.ones_like(s1), 1)
  elif bad == "not-psd":
    s1 = s1 - 3.0 * np.eye(len(s1)) * np.max(np.abs(s1))
  return metrics.frechet_distance(mu1, s1, mu2, s2)


_MU1, _MU2 = X.mean(0), P.mean(0)
_S1, _S2 = np.cov(X.T), np.cov(P.T)


def _objective(x, p, name="laplace#", bandwidth=0.5, **opts):
  return dj.make_objective(name, bandwidth=bandwidth, **opts)(x, p, 0)[0]


def _stream(gen, pos, bandwidth=0.5):
  objective = dj.make_objective("gauss#", bandwidth=bandwidth)
  return dj.stream_loss(functools.partial(dj.grouped_loss, objective), {"a": gen},
                        {"a": pos})[0]


def cases() -> list[Case]:
  deng_opts = ({"temperatures": ()}, {"temperatures": (-0.1,)}, {"temperatures": (NAN,)},
               {"weight_gen": -np.ones((2, 5))}, {"weight_pos": np.zeros((2, 4))},
               {"weight_gen": np.zeros((2, 5))}, {"weight_gen": np.ones(3)},
               {"weight_pos": np.full((2, 4), NAN)})
  deng_info_opts = tuple(o for o in deng_opts if not (
      "weight_gen" in o and np.shape(o["weight_gen"]) == (2, 5) and not np.any(o["weight_gen"])
  )) + ({"weight_gen": np.zeros((2, 5)), "weight_neg": np.zeros((2, 3))},)
  deng_traced = (("weight_gen", -np.ones((2, 5))), ("weight_pos", np.zeros((2, 4))),
                 ("weight_gen", np.full((2, 5), NAN)))
  out = [
      *(_kernel_case(make) for make in (dj.gaussian, dj.laplacian, dj.rational_quadratic)),
      Case("radial", _radial, (D2,), {"bandwidth": 0.5, "num_nodes": 32},
           length=("bandwidth",),
           options=BAD_BW + ({"num_nodes": 4}, {"num_nodes": 8.5}, {"profile": "exp"},
                             {"name": 3}),
           traced=BW, scalars=("bandwidth", "num_nodes"), elementwise=True, rows=True,
           rank_free=True, empty_ok=True),
      Case("pairwise_sqdist", lambda x, p: dj.pairwise_sqdist(x, p), (X, P), elementwise=True,
           rows=True, empty_ok=True, empty_ok_args=(1,)),
      Case("log_kde", lambda x, p, bandwidth=0.5, **kw: dj.log_kde(
          x, p, kernel=dj.laplacian(bandwidth), **kw), (X, P), {"bandwidth": 0.5},
           length=("bandwidth",),
           options=BAD_BW + ({"which": "bogus"}, {"chunk_size": 0}, {"chunk_size": 2.5},
                             {"chunk_size": "4"}, {"weights": -np.ones(M)},
                             {"weights": np.zeros(M)}, {"exclude_self": True}),
           traced=BW + (("weights", -np.ones(M)), ("weights", np.zeros(M))),
           scalars=("bandwidth",), rows=True),
      Case("log_kde/chunked", lambda x, p, bandwidth=0.5, **kw: dj.log_kde(
          x, p, kernel=dj.gaussian(bandwidth), chunk_size=4, **kw), (X, P),
           {"bandwidth": 0.5}, length=("bandwidth",), traced=BW, rows=True),
      _field_case("sub_field", lambda x, p, bandwidth=0.5, **kw: dj.sub_field(
          x, p, kernel=_gauss(bandwidth), **kw),
          options=({"normalization": "bogus"}, {"exclude_self": True})),
      _field_case("drift_field", lambda x, p, bandwidth=0.5, **kw: dj.drift_field(
          x, p, x, kernel=_gauss(bandwidth), exclude_self=True, **kw),
          options=({"normalization": "bogus"},)),
      _field_case("drift_field/sharp", lambda x, p, bandwidth=0.5: dj.drift_field(
          x, p, x, kernel=dj.laplacian(bandwidth), normalization="sharp", exclude_self=True)),
      _field_case("mmd_field", lambda x, p, bandwidth=0.5: dj.mmd_field(
          x, p, x, kernel=dj.laplacian(bandwidth), exclude_self=True)),
      _field_case("deng_field", lambda x, p, bandwidth=0.5, **kw: dj.deng_field(
          x, p, x, kernel=dj.laplacian(bandwidth), exclude_self=True, **kw),
          options=({"column_normalize": "yes"},)),
      _field_case("doubly_stochastic_field", lambda x, p, bandwidth=0.5: (
          dj.doubly_stochastic_field(x, p, x, bandwidth=bandwidth, exclude_self=True))),
      _field_case("multiscale", lambda x, p, bandwidth=0.5, **kw: dj.multiscale(
          dj.doubly_stochastic_field, kw.pop("scales", (bandwidth, 1.0)),
          exclude_self=True, **kw)(x, p, x),
          options=({"scales": ()}, {"scales": (0.5, -1.0)}, {"eps": -1.0},
                   {"bandwidth_kw": 0.5}, {"kernel": dj.gaussian(0.5)})),
      Case("drift_loss", lambda x, v: dj.drift_loss(x, v), (X, 0.1 * P[:1] + 0.0 * X)),
      _field_case("log_kde_loss", lambda x, p, bandwidth=0.5, **kw: dj.log_kde_loss(
          x, p, x, kernel=dj.laplacian(bandwidth), exclude_self=True, **kw),
          options=({"chunk_size": 0},), rows=False),
      _field_case("mmd_loss", lambda x, p, bandwidth=0.5: dj.mmd_loss(
          x, p, x, kernel=_gauss(bandwidth), exclude_self=True), rows=False),
      _field_case("kde_link_loss", lambda x, p, bandwidth=0.5, **kw: dj.kde_link_loss(
          x, p, x, kernel=_gauss(bandwidth), exclude_self=True, **{"link": "identity", **kw}),
          options=({"link": "bogus"}, {"link": 3}), rows=False),
      Case("deng_drift_loss", lambda x, p, **kw: dj.deng_drift_loss(x, p, **kw), (XG, PG),
           {"temperatures": (0.05, 0.2)}, options=deng_opts, traced=deng_traced, rows=True),
      Case("deng_drift_loss_with_info", lambda x, p, u, **kw: dj.deng_drift_loss_with_info(
          x, p, u, **kw), (XG, PG, UG), {"temperatures": (0.05,)}, options=deng_info_opts,
           traced=deng_traced + (("weight_neg", -np.ones((2, 3))),), rows=True,
           value=lambda out: out[0]),
      _sinkhorn_case("sinkhorn_drift", dj.sinkhorn_drift, rows=True),
      _sinkhorn_case("sinkhorn_drift_with_info", dj.sinkhorn_drift_with_info, rows=True),
      _sinkhorn_case("sinkhorn_loss", dj.sinkhorn_loss, rows=False),
      _sinkhorn_case("sinkhorn_loss_with_info", dj.sinkhorn_loss_with_info, rows=False),
      _calculus_case("jacobian", dj.jacobian, rows=True),
      _calculus_case("curl", dj.curl, rows=True),
      _calculus_case("asymmetry", dj.asymmetry, rows=False),
      _calculus_case("line_integral_potential", dj.line_integral_potential, rows=True,
                     options=({"num_nodes": 0}, {"num_nodes": 2.5},
                              {"origin": np.zeros(D + 1)}, {"origin": np.full(D, NAN)})),
      Case("curl_indices", lambda dim=3: dj.curl_indices(dim), (), {"dim": 3},
           options=({"dim": 1}, {"dim": 2.5}, {"dim": "3"}, {"dim": True}), scalars=("dim",)),
      Case("get_schedule/exponential", _schedule, (np.arange(8.0),),
           {"sigma0": 1.5, "rate": 0.1, "sigma_min": 0.03},
           options=({"name": "bogus"}, {"sigma0": -1.0}, {"sigma0": "1.5"},
                    {"sigma0": True}, {"rate": -1.0}, {"sigma_min": 2.0},
                    {"sigma_min": NAN}, {"total_steps": 10}),
           scalars=("sigma0", "rate", "sigma_min"), elementwise=True, rows=True,
           rank_free=True, empty_ok=True),
      Case("get_schedule/linear", lambda s, **kw: _schedule(s, "linear", **kw),
           (np.arange(8.0),), {"sigma0": 1.5, "total_steps": 6, "sigma_min": 0.03},
           options=({"total_steps": 0}, {"total_steps": INF}, {"total_steps": "6"},
                    {"rate": 0.1}),
           scalars=("sigma0", "total_steps", "sigma_min"), elementwise=True, rows=True,
           rank_free=True, empty_ok=True),
      Case("gaussian_decay_rate", lambda k, sigma=0.5: dj.gaussian_decay_rate(k, sigma),
           (np.abs(X[:, 0]) + 0.1,), {"sigma": 0.5},
           options=({"sigma": -0.5}, {"sigma": 0.0}, {"sigma": NAN}, {"sigma": "0.5"}),
           traced=(("sigma", -0.5), ("sigma", 0.0), ("sigma", NAN)), scalars=("sigma",),
           elementwise=True, rows=True, rank_free=True, empty_ok=True),
      Case("laplace_decay_rate", lambda k, tau=0.5, dim=2: dj.laplace_decay_rate(
          k, tau, dim=dim), (np.abs(X[:, 0]) + 0.1,), {"tau": 0.5, "dim": 2},
           options=({"tau": -0.5}, {"tau": 0.0}, {"dim": 0}, {"dim": 2.5}, {"dim": True}),
           traced=(("tau", -0.5), ("tau", 0.0), ("tau", NAN)), scalars=("tau", "dim"),
           elementwise=True, rows=True, rank_free=True, empty_ok=True),
      Case("optimal_mode", lambda sigma=0.5: dj.optimal_mode(sigma), (), {"sigma": 0.5},
           options=({"sigma": -0.5}, {"sigma": 0.0}, {"sigma": "0.5"}),
           traced=(("sigma", -0.5), ("sigma", 0.0), ("sigma", NAN)), scalars=("sigma",)),
      Case("fixed_convergence_time", lambda r, eps=1e-3: dj.fixed_convergence_time(r, eps=eps),
           (np.abs(X[:, 0]) + 0.1,), {"eps": 1e-3},
           options=({"eps": 0.0}, {"eps": 1.5}, {"eps": NAN}, {"eps": "0.1"}),
           scalars=("eps",), elementwise=True, rows=True, rank_free=True, empty_ok=True),
      Case("convergence_time", lambda k, t_max=20.0, **kw: dj.convergence_time(
          k, dj.schedules.constant(0.5), t_max=t_max, **kw),
           (np.abs(X[:, 0]) + 0.5,), {"t_max": 20.0, "num_points": 401},
           options=({"t_max": -1.0}, {"eps": 2.0}, {"num_points": 1}, {"num_points": 2.5},
                    {"rate_fn": "gauss"}),
           traced=(("t_max", -1.0), ("t_max", NAN)), scalars=("t_max", "num_points"),
           rows=True, empty_ok=True),
      Case("simulate_modes", lambda k, t_max=20.0, **kw: dj.simulate_modes(
          k, dj.schedules.constant(0.5), t_max=t_max, **kw),
           (np.abs(X[:, 0]) + 0.5,), {"t_max": 20.0, "num_steps": 50},
           options=({"t_max": -1.0}, {"num_steps": 0}, {"num_steps": 2.5}, {"eps": 0.0},
                    {"amplitude": NAN}, {"amplitude": "x"}),
           traced=(("t_max", -1.0), ("t_max", NAN)), scalars=("t_max", "num_steps"),
           value=lambda out: out.crossing_times, rows=True, empty_ok=True),
      Case("spectral_error", lambda a: dj.spectral_error(a), (np.abs(X),), elementwise=True,
           rows=True, rank_free=True, empty_ok=True),
      Case("knn_mean_distance", lambda x, **kw: dj.knn_mean_distance(x, **{"k": 3, **kw}),
           (X,), options=({"k": 0}, {"k": N}, {"k": 2.5}, {"k": "3"},
                          {"mask": np.ones(N - 1, bool)}, {"mask": np.zeros(N, bool)}),
           traced=(("mask", np.zeros(N, bool)),), scalars=("k",), kw={"k": 3}),
      Case("make_objective", _objective, (X, P), {"bandwidth": 0.5}, length=("bandwidth",),
           options=({"name": "bogus"}, {"bandwidth": -0.5}, {"foo": 1}, {"chunk_size": 0}),
           traced=(("bandwidth", -0.5), ("bandwidth", NAN)), scalars=("bandwidth",)),
      Case("objective_names", lambda: dj.objective_names()),
      Case("width_range", lambda dtype=np.float32: dj.width_range(dtype), (),
           {"dtype": np.float32}, options=({"dtype": np.int32}, {"dtype": "bogus"},
                                           {"dtype": np.complex64})),
      Case("grouped_loss", lambda g, p, bandwidth=0.5: dj.grouped_loss(
          dj.make_objective("laplace#", bandwidth=bandwidth), g, p)[0], (XG, PG),
           {"bandwidth": 0.5}, length=("bandwidth",), traced=(("bandwidth", -0.5),),
           rows=True),
      Case("guided_grouped_loss", lambda g, p, u, cfg_scale=np.array([1.5, 2.0]), **kw:
           dj.guided_grouped_loss(g, p, u, cfg_scale, **{"temperatures": (0.05,), **kw})[0],
           (XG, PG, UG), {"cfg_scale": np.array([1.5, 2.0])},
           options=({"temperatures": ()}, {"cfg_scale": np.array([0.5, 2.0])},
                    {"cfg_scale": np.ones(3)}),
           traced=(("cfg_scale", np.array([0.5, 0.5])),), rows=True),
      Case("cfg_negative_weight", lambda a, **kw: dj.cfg_negative_weight(
          a, **{"num_gen": 5, "num_uncond": 3, **kw}), (np.array([1.0, 1.5, 3.0]),),
           {"num_gen": 5}, options=({"num_gen": 1}, {"num_uncond": 0}, {"num_gen": 2.5}),
           scalars=("num_gen",), elementwise=True, rows=True, rank_free=True, empty_ok=True),
      Case("sample_cfg_scale", lambda **kw: dj.sample_cfg_scale(KEY, **kw),
           (), {"num": 4, "low": 1.0, "high": 4.0},
           options=({"low": -1.0}, {"low": 5.0}, {"num": 0}, {"power": NAN}),
           scalars=("num", "low", "high"), reference=False),
      Case("kernel_scaled", lambda x, s: dj.kernel_scaled(x, s), (XG, np.array([1.0, 2.0]))),
      Case("stream_loss", _stream, (XG, PG), {"bandwidth": 0.5}, length=("bandwidth",)),
      Case("metrics.mmd", lambda x, p, bandwidth=0.5, **kw: metrics.mmd(
          x, p, bandwidth=bandwidth, **kw), (X, P), {"bandwidth": 0.5}, length=("bandwidth",),
           options=BAD_BW + ({"bandwidth": ()}, {"bandwidth": (0.5, -1.0)},
                             {"unbiased": "yes"}),
           traced=BW, scalars=("bandwidth",)),
      Case("metrics.random_directions", lambda num=4, dim=3: metrics.random_directions(
          KEY, num, dim), (), {"num": 4, "dim": 3},
           options=({"num": 0}, {"dim": 0}, {"num": 2.5}), scalars=("num", "dim"),
           reference=False),
      Case("sliced_wasserstein", lambda a, b, **kw: metrics.sliced_wasserstein(
          a, b, key=KEY, **{"num_projections": 16, **kw}), (X, P), {"p": 2.0},
           options=({"p": INF}, {"p": 0.5}, {"p": NAN}, {"num_projections": 0},
                    {"num_projections": 2.5}), scalars=("p",), reference=False),
      Case("metrics.wasserstein_1d", lambda u, v, p=2.0: metrics.wasserstein_1d(u, v, p=p),
           (X, P), {"p": 2.0}, options=({"p": INF}, {"p": 0.5}, {"p": NAN}),
           traced=(("p", INF), ("p", 0.5)), scalars=("p",)),
      Case("metrics.frechet_distance", _frechet, (_MU1, _S1, _MU2, _S2),
           options=({"bad": "asymmetric"}, {"bad": "not-psd"}),
           traced=(("#1", _S1 - 3.0 * np.eye(D) * np.max(np.abs(_S1))),),
           int_arrays=_frechet_int),
      Case("metrics.frechet_distance_from_features",
           lambda a, b: metrics.frechet_distance_from_features(a, b), (X, P)),
      Case("metrics.gaussian_stats", lambda a: metrics.gaussian_stats(a), (X,)),
      Case("metrics.knn_radii", lambda a, **kw: metrics.knn_radii(
          a, **{"k": 2, "batch_size": 3, **kw}), (X,), {"k": 2},
           options=({"k": 0}, {"k": N}, {"k": 2.5}, {"k": NAN}, {"batch_size": 0}),
           scalars=("k",), rows=True),
      Case("metrics.manifold_membership", lambda q, r, rad, **kw: metrics.manifold_membership(
          q, r, rad, **{"batch_size": 4, **kw}), (X, P, np.full(M, 1.0)),
           options=({"batch_size": 0}, {"batch_size": 2.5}), rows=True, nan_jit=False),
      Case("metrics.precision_recall", lambda r, f, **kw: metrics.precision_recall(
          r, f, **{"k": 2, "batch_size": 4, **kw}), (P, X), {"k": 2},
           options=({"k": 0}, {"k": M}, {"k": 2.5}, {"k": NAN}, {"k": None},
                    {"batch_size": 0}), scalars=("k",)),
  ]
  return out


# ----------------------------------------------------------------------------- classify
def _leaves(tree):
  return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def _is_float(a):
  return np.issubdtype(a.dtype, np.inexact)


def _run(thunk):
  """``("ok", output)`` or ``(outcome, exception)`` for an exception."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      out = thunk()
      leaves = _leaves(out)
    return "ok", (out, leaves)
  except ValueError as e:
    return ("ValueError" if re.search(r"`[A-Za-z_][\w.]*`", str(e)) else "crash"), e
  except Exception as e:  # noqa: BLE001 - anything else is a crash
    return "crash", e


def _compare(got, want):
  """``ok-correct``, ``silent-nan`` or ``silent-finite-wrong`` against a reference."""
  if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
    return "silent-finite-wrong"
  nan_only = True
  for g, w in zip(got, want):
    ok = _agree(g, w)
    if not np.all(ok):
      if not _is_float(g) or np.any(np.isfinite(g.astype(np.float64)[~ok])):
        nan_only = False
      else:
        continue
  if all(np.all(_agree(g, w)) for g, w in zip(got, want)):
    return "ok-correct"
  return "silent-nan" if nan_only else "silent-finite-wrong"


def _agree(g, w, rtol=1e-3):
  if not _is_float(g) or not _is_float(w):
    return np.array_equal(g, w)
  g, w = g.astype(np.float64), w.astype(np.float64)
  finite_w = w[np.isfinite(w)]
  atol = 1e-3 * np.max(np.abs(finite_w), initial=0.0) + 1e-6
  f32_max = float(np.finfo(np.float32).max)
  with np.errstate(invalid="ignore", over="ignore"):
    return ((np.isnan(g) & np.isnan(w)) | np.isclose(g, w, rtol=rtol, atol=atol)
            | (np.isinf(g) & (np.sign(g) == np.sign(w)) & (np.abs(w) > f32_max)))


def _silent(leaves):
  """A returned value where an error was due."""
  floats = [a for a in leaves if _is_float(a)]
  return ("silent-nan" if any(np.any(~np.isfinite(a)) for a in floats)
          else "silent-finite-wrong")


def _all_nan(leaves):
  floats = [a for a in leaves if _is_float(a)]
  return bool(floats) and all(a.size == 0 or np.all(np.isnan(a)) for a in floats)


def _rows_nan(leaves, rows):
  floats = [a for a in leaves if _is_float(a)]
  if not floats:
    return False
  if rows:
    return all(a.ndim == 0 and np.isnan(a) or a.ndim > 0 and np.all(np.isnan(a[0]))
               for a in floats)
  return all(np.any(np.isnan(a)) for a in floats)


# ----------------------------------------------------------------------------- inputs
def _f32(arrays):
  return tuple(np.asarray(a, np.float32) if np.issubdtype(np.asarray(a).dtype, np.floating)
               else a for a in arrays)


def _reference(case, arrays, kw):
  """The float64 answer (``None`` when the float64 call fails or there is none)."""
  if not case.reference:
    return None
  with x64():
    status, res = _run(lambda: case.value(case.fn(*arrays, **kw)))
  return res[1] if status == "ok" else None


def _integer_inputs(case, dtype_name):
  dtype, high, scale = INTEGER[dtype_name]
  if case.int_arrays is not None:
    arrays = case.int_arrays(dtype, high)
  else:
    rng = np.random.default_rng(7)
    arrays = tuple(rng.integers(0, high, np.shape(a)).astype(dtype) for a in case.arrays)
  kw = {k: (v * scale if k in case.length else v) for k, v in case.kw.items()}
  return arrays, kw


def _wrong_rank(a):
  a = np.asarray(a)
  if a.ndim >= 3:
    return a.reshape(a.shape[0], -1)
  if a.ndim == 2:
    return a.reshape(-1)
  return a.reshape(1, -1, 1)


def _scalar_forms(value):
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return ()
  if isinstance(value, int):
    return (np.int64(value), jnp.asarray(value, jnp.int32))
  return (np.float32(value), jnp.asarray(value, jnp.float32))


def evaluate(case: Case):
  """Yields ``(class, description, outcome, detail)`` for every call of one case."""
  fn, kw, value = case.fn, case.kw, case.value
  arrays32 = _f32(case.arrays)

  def call(arrays, kwargs):
    return _run(lambda: value(fn(*arrays, **kwargs)))

  ref = _reference(case, case.arrays, kw)
  status, res = call(arrays32, kw)
  if status == "ok":
    outcome = _compare(res[1], ref) if ref is not None else "ok-correct"
    yield "valid", "", outcome, ""
  else:
    yield "valid", "", status, str(res)[:200]
  valid32 = res[1] if status == "ok" else None

  for name in case.scalars:
    for form in _scalar_forms(kw[name]):
      s, r = call(arrays32, {**kw, name: form})
      if s == "ok":
        s = _compare(r[1], valid32) if valid32 is not None else "ok-correct"
      yield "np-scalar", f"{name}={type(form).__name__}", s, "" if s != "crash" else str(r)[:200]

  if case.arrays:
    for dtype_name in INTEGER:
      arrays, ikw = _integer_inputs(case, dtype_name)
      s, r = call(arrays, ikw)
      if s == "ok":
        want = call(_f32(tuple(a.astype(np.float32) for a in arrays)), ikw)
        s = _compare(r[1], want[1][1]) if want[0] == "ok" else "silent-finite-wrong"
      yield dtype_name, "", s, str(r)[:200] if s in ("crash",) else ""

    for cls, bad in (("nan", NAN), ("inf", INF)):
      a0 = np.array(case.arrays[0], np.float64)
      if a0.size == 0:
        continue
      a0.flat[0] = bad
      arrays = (a0,) + tuple(case.arrays[1:])
      s, r = call(_f32(arrays), kw)
      if s == "ok":
        if case.elementwise:
          want = _reference(case, arrays, kw)
          s = _compare(r[1], want) if want is not None else _silent(r[1])
        else:
          s = _silent(r[1])
      yield cls, "", s, str(r)[:200] if s == "crash" else ""

    for cls, scale in (("overflow-1e19", 1e19), ("overflow-1e30", 1e30)):
      arrays = tuple(np.asarray(a, np.float64) * scale for a in case.arrays)
      s, r = call(_f32(arrays), kw)
      if s == "ok":
        want = _reference(case, arrays, kw)
        s = _compare(r[1], want) if want is not None else _silent(r[1])
      yield cls, "", s, str(r)[:200] if s == "crash" else ""

    a0 = np.asarray(case.arrays[0])
    if a0.ndim >= 1:
      empty = (a0[:0],) + tuple(case.arrays[1:])
      s, r = call(_f32(empty), kw)
      if s == "ok":
        if case.empty_ok:
          want = _reference(case, empty, kw)
          s = _compare(r[1], want) if want is not None else "ok-correct"
        else:
          s = _silent(r[1])
      yield "empty", "", s, str(r)[:200] if s == "crash" else ""

    ranked = (_wrong_rank(a0),) + tuple(case.arrays[1:])
    s, r = call(_f32(ranked), kw)
    if s == "ok":
      if case.rank_free:
        want = _reference(case, ranked, kw)
        s = _compare(r[1], want) if want is not None else "ok-correct"
      else:
        s = _silent(r[1])
    yield "wrong-rank", "", s, str(r)[:200] if s == "crash" else ""

  for i in range(1, len(case.arrays)):  # the other array arguments, one at a time
    yield from _other_array(case, i, arrays32, call)

  for i, a in enumerate(case.arrays):
    for desc, wrong in (("complex64", np.asarray(a, np.complex64) + 0j),
                        ("str", np.asarray(a).astype(str))):
      arrays = arrays32[:i] + (wrong,) + arrays32[i + 1:]
      s, r = call(arrays, kw)
      if s == "ok":
        s = _silent(r[1])
      yield "wrong-dtype", f"#{i}={desc}", s, str(r)[:200] if s == "crash" else ""

  for name, v0 in kw.items():
    valid = domain(case.name, name)
    if valid is None or not _real(v0):
      continue
    for label, bad in BAD.items():
      s, r = call(arrays32, {**kw, name: bad})
      if valid(bad):
        if s == "ValueError":
          s = "error-on-valid"
        elif s == "ok" and case.reference:
          want = _reference(case, case.arrays, {**kw, name: bad})
          s = _compare(r[1], want) if want is not None else _silent(r[1])
        elif s == "ok":
          s = "ok-correct" if not _silent_any(r[1]) else "silent-nan"
      elif s == "ok":
        s = _silent(r[1])
      yield "generated", f"{name}={label}", s, str(r)[:200] if s in ("crash", "error-on-valid") else ""

  for opt in case.options:
    s, r = call(arrays32, {**kw, **opt})
    if s == "ok":
      s = _silent(r[1])
    yield "wrong-option", _describe(opt), s, str(r)[:200] if s in ("crash",) else ""

  for name, bad in case.traced:
    def traced(arrays, t, name=name):
      if name.startswith("#"):
        arrays = list(arrays)
        arrays[int(name[1:])] = t
        return value(fn(*arrays, **kw))
      return value(fn(*arrays, **{**kw, name: t}))
    bad32 = np.asarray(bad, np.float32) if np.asarray(bad).dtype.kind == "f" else bad
    s, r = _run(lambda: jax.jit(traced)(arrays32, bad32))
    if s == "ok":
      s = "ok-correct" if _all_nan(r[1]) else _silent_traced(r[1])
    yield "traced-invalid", f"{name}={_short(bad)}", s, str(r)[:200] if s == "crash" else ""

  if case.arrays and case.nan_jit and np.asarray(case.arrays[0]).size:
    a0 = np.array(arrays32[0])
    a0.flat[0] = np.nan
    arrays = (a0,) + tuple(arrays32[1:])
    s, r = _run(lambda: value(jax.jit(fn)(*arrays, **kw)) if not kw else
                jax.jit(lambda *a: value(fn(*a, **kw)))(*arrays))
    if s == "ok":
      if case.elementwise:  # the float64 answer under jit (eager calls may raise on NaN)
        with x64():
          a64 = (np.asarray(a0, np.float64),) + tuple(case.arrays[1:])
          w = _run(lambda: jax.jit(lambda *a: value(fn(*a, **kw)))(*a64))
        s = _compare(r[1], w[1][1]) if w[0] == "ok" else _silent(r[1])
      else:
        s = "ok-correct" if _rows_nan(r[1], case.rows) else "silent-finite-wrong"
    yield "nan-jit", "", s, str(r)[:200] if s == "crash" else ""


def _other_array(case, i, arrays32, call):
  """NaN / inf entries, zero rows and a wrong rank in ``arrays[i]`` (``i > 0``)."""
  ai = np.asarray(case.arrays[i], np.float64)
  for cls, bad in (("nan", NAN), ("inf", INF)):
    if ai.size == 0:
      continue
    a = ai.copy()
    a.flat[0] = bad
    arrays = case.arrays[:i] + (a,) + case.arrays[i + 1:]
    s, r = call(_f32(arrays), case.kw)
    if s == "ok":
      if case.elementwise:
        want = _reference(case, arrays, case.kw)
        s = _compare(r[1], want) if want is not None else _silent(r[1])
      else:
        s = _silent(r[1])
    yield cls, f"#{i}", s, str(r)[:200] if s == "crash" else ""
  if ai.ndim >= 1:
    arrays = case.arrays[:i] + (ai[:0],) + case.arrays[i + 1:]
    s, r = call(_f32(arrays), case.kw)
    if s == "ok":
      if i in case.empty_ok_args:
        want = _reference(case, arrays, case.kw)
        s = _compare(r[1], want) if want is not None else "ok-correct"
      else:
        s = _silent(r[1])
    yield "empty", f"#{i}", s, str(r)[:200] if s == "crash" else ""
  arrays = arrays32[:i] + (np.asarray(_wrong_rank(arrays32[i])),) + arrays32[i + 1:]
  s, r = call(arrays, case.kw)
  if s == "ok":
    s = "ok-correct" if case.rank_free and i == 0 else _silent(r[1])
  yield "wrong-rank", f"#{i}", s, str(r)[:200] if s == "crash" else ""


def _silent_any(leaves):
  return any(np.any(~np.isfinite(a)) for a in leaves if _is_float(a))


def _silent_traced(leaves):
  floats = [a for a in leaves if _is_float(a)]
  if floats and all(np.all(~np.isfinite(a) | np.isnan(a)) for a in floats):
    return "silent-nan"
  return "silent-finite-wrong"


def _short(v):
  a = np.asarray(v)
  if a.ndim == 0:
    return repr(v) if not isinstance(v, float) else f"{v:g}"
  return f"array{a.shape}[{a.flat[0]:g}]"


def _describe(opt):
  parts = []
  for k, v in opt.items():
    if isinstance(v, np.ndarray):
      parts.append(f"{k}={_short(v)}")
    elif isinstance(v, float):
      parts.append(f"{k}={v:g}")
    else:
      parts.append(f"{k}={v!r}")
  return ", ".join(parts)


# ----------------------------------------------------------------------------- main
def public_callables():
  """The fuzzed names: callables of ``drifting_jax.__all__`` and ``metrics``' functions."""
  names = []
  for name in dj.__all__:
    obj = getattr(dj, name)
    if callable(obj) and not isinstance(obj, type):
      names.append(name)
  for name in ("mmd", "random_directions", "wasserstein_1d",
               "frechet_distance", "frechet_distance_from_features", "gaussian_stats",
               "knn_radii", "manifold_membership", "precision_recall"):
    names.append(f"metrics.{name}")  # metrics.sliced_wasserstein is dj.sliced_wasserstein
  return names


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--verbose", "-v", action="store_true",
                      help="print every call that is not ok-correct / ValueError")
  parser.add_argument("--only", default=None, help="substring filter on case names")
  parser.add_argument("--by-function", action="store_true", help="also print per function")
  args = parser.parse_args(argv)

  all_cases = cases()
  covered = {c.name.split("/")[0] for c in all_cases}
  missing = [n for n in public_callables() if n not in covered and n != "checked"]
  counts = collections.Counter()
  per_fn = collections.defaultdict(collections.Counter)
  for case in all_cases:
    if args.only and args.only not in case.name:
      continue
    try:
      results = list(evaluate(case))
    except Exception as e:  # noqa: BLE001 - a harness error must not hide the other cases
      print(f"  harness error in {case.name}: {type(e).__name__}: {e}")
      continue
    for cls, desc, outcome, detail in results:
      counts[cls, outcome] += 1
      per_fn[case.name][outcome] += 1
      if args.verbose and outcome not in ("ok-correct", "ValueError"):
        print(f"  {case.name:32s} {cls:15s} {desc:28s} -> {outcome} {detail}")
  width = 20
  print(f"\n{'class':15s}" + "".join(f"{o:>{width}s}" for o in OUTCOMES) + f"{'total':>8s}")
  for cls in CLASSES:
    row = [counts[cls, o] for o in OUTCOMES]
    print(f"{cls:15s}" + "".join(f"{v:>{width}d}" for v in row) + f"{sum(row):>8d}")
  tot = [sum(counts[c, o] for c in CLASSES) for o in OUTCOMES]
  print(f"{'total':15s}" + "".join(f"{v:>{width}d}" for v in tot) + f"{sum(tot):>8d}")
  if args.by_function:
    print()
    for name, c in per_fn.items():
      print(f"{name:40s} " + " ".join(f"{o}={c[o]}" for o in OUTCOMES if c[o]))
  if missing:
    print(f"\nnot fuzzed (no case): {', '.join(missing)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
