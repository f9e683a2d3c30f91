"""Fuzz-style bad inputs for the public functions, one class of bad input per section.

1. Integer, bool and half-float inputs (uint8 pixels, int32 coordinates near 3e5): every
   function gives the answer of its float32 copy (nothing overflows in the input dtype).
2. Overflowing and non-finite squared distances (points at 1e19 and 1e30 in float32, NaN):
   every output is NaN or the float64 answer, never a finite wrong number; eager metrics
   raise a ``ValueError`` naming the argument.
3. A low-precision cross term in ``‖x‖² + ‖y‖² − 2 x·y`` (bfloat16 / TF32 matmul passes on
   accelerators, emulated by rounding since precision flags do nothing on CPU): every
   distance matmul asks for ``HIGHEST``, and the emulated low-precision form would be wrong.
"""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import cloud, x64
from drifting_jax import _validation, distances, kernels, metrics, normalization

HIGHEST = jax.lax.Precision.HIGHEST
N, M, D = 8, 6, 4


# ----------------------------------------------------------------------------- the functions
def _field_fn(p, bw):
  return lambda z: dj.drift_field(z, p, p, kernel=dj.gaussian(bw))


def _state():
  return normalization.init(2, dtype=jnp.result_type(float))  # float64 under x64


# Cases both CASES and TRACED_BANDWIDTH check (fn(x, pos, bw)).
_SHARED_BW_CASES = {
    "log_kde": lambda x, p, bw: dj.log_kde(x, p, kernel=dj.laplacian(bw), which="sharp"),
    "log_kde/chunked": lambda x, p, bw: dj.log_kde(x, x, kernel=dj.gaussian(bw),
                                                   exclude_self=True, chunk_size=3),
    "sub_field": lambda x, p, bw: dj.sub_field(x, p, kernel=dj.gaussian(bw)),
    **{f"drift_field/{norm}": functools.partial(
        lambda x, p, bw, norm: dj.drift_field(x, p, x, kernel=dj.gaussian(bw),
                                              normalization=norm, exclude_self=True),
        norm=norm) for norm in ("kde", "sharp", "none")},
}


# name -> fn(x [N, D], pos [M, D], bw): every public function of the core and the metrics
# that takes point arrays, called on the same (possibly integer) x and pos.
CASES = {
    "pairwise_sqdist": lambda x, p, bw: dj.pairwise_sqdist(x, p),
    "distances.sqdist": lambda x, p, bw: distances.sqdist(x, p),
    "distances.batched_sqdist": lambda x, p, bw: distances.batched_sqdist(x[None], p[None]),
    "distances.safe_sqrt": lambda x, p, bw: distances.safe_sqrt(x),
    "log_kernel_matrix": lambda x, p, bw: kernels.log_kernel_matrix(
        dj.laplacian(bw), x, p, "sharp"),
    # Kernels act on squared distances: integer squared distances are inputs too.
    **{f"{make.__name__}.log": functools.partial(
        lambda x, p, bw, make: {w: make(bw).log(x, w) for w in ("k", "sharp", "flat")},
        make=make) for make in (dj.gaussian, dj.laplacian, dj.rational_quadratic)},
    "radial.log": lambda x, p, bw: {
        w: dj.radial(lambda u: jnp.exp(-u), bandwidth=bw).log(x, w)
        for w in ("k", "sharp", "flat")},
    **_SHARED_BW_CASES,
    "log_kde/weights": lambda x, p, bw: dj.log_kde(x, p, kernel=dj.gaussian(bw),
                                                   weights=np.arange(1, M + 1)),
    "mmd_field": lambda x, p, bw: dj.mmd_field(x, p, x, kernel=dj.laplacian(bw),
                                               exclude_self=True),
    "deng_field": lambda x, p, bw: dj.deng_field(x, p, x, kernel=dj.laplacian(bw),
                                                 exclude_self=True),
    "doubly_stochastic_field": lambda x, p, bw: dj.doubly_stochastic_field(x, p, x,
                                                                           bandwidth=bw, exclude_self=True),
    "multiscale": lambda x, p, bw: dj.multiscale(
        dj.drift_field, (dj.gaussian(bw), dj.gaussian(2 * bw)), normalize=True)(x, p, x),
    "drift_loss": lambda x, p, bw: dj.drift_loss(x, x),
    "log_kde_loss": lambda x, p, bw: dj.log_kde_loss(x, p, x, kernel=dj.gaussian(bw), exclude_self=True),
    "mmd_loss": lambda x, p, bw: dj.mmd_loss(x, p, x, kernel=dj.gaussian(bw), exclude_self=True),
    "kde_link_loss": lambda x, p, bw: dj.kde_link_loss(x, p, x, kernel=dj.laplacian(bw),
                                                       link="identity", exclude_self=True),
    "deng_drift_loss": lambda x, p, bw: dj.deng_drift_loss(x[None], p[None]),
    "sinkhorn_drift": lambda x, p, bw: dj.sinkhorn_drift(x, p, alpha=0.5),
    "sinkhorn_loss": lambda x, p, bw: dj.sinkhorn_loss(x, p, alpha=0.5),
    "knn_mean_distance": lambda x, p, bw: dj.knn_mean_distance(x, k=3),
    "normalization.apply": lambda x, p, bw: normalization.apply(
        _state()._replace(scale=jnp.array([2.0, 4.0])), x, jnp.arange(N) % 2),
    "normalization.update": lambda x, p, bw: normalization.update(
        _state(), x[None], jnp.array([1]), k=3),
    "normalization.update_from_labels": lambda x, p, bw: normalization.update_from_labels(
        _state(), x, jnp.arange(N) % 2, k=2),
    "jacobian": lambda x, p, bw: dj.jacobian(_field_fn(p, bw), x),
    "curl": lambda x, p, bw: dj.curl(_field_fn(p, bw), x),
    "asymmetry": lambda x, p, bw: dj.asymmetry(_field_fn(p, bw), x),
    "line_integral_potential": lambda x, p, bw: dj.line_integral_potential(
        _field_fn(p, bw), x, origin=p[0], num_nodes=8),
    "metrics.mmd": lambda x, p, bw: metrics.mmd(x, p, bandwidth=(bw, 2 * bw)),
    "metrics.mmd/unbiased": lambda x, p, bw: metrics.mmd(x, p, bandwidth=bw, unbiased=True),
    "sliced_wasserstein": lambda x, p, bw: metrics.sliced_wasserstein(
        x, p, key=jax.random.PRNGKey(0), num_projections=16),
    "wasserstein_1d": lambda x, p, bw: metrics.wasserstein_1d(x, p),
    "frechet_distance": lambda x, p, bw: metrics.frechet_distance(
        x[0], jnp.diag(x[1]), p[0], jnp.diag(p[1])),
    "frechet_distance_from_features": lambda x, p, bw: metrics.frechet_distance_from_features(
        x, p),
    "gaussian_stats": lambda x, p, bw: metrics.gaussian_stats(x),
    "precision_recall": lambda x, p, bw: metrics.precision_recall(p, x, k=2, batch_size=4),
    "knn_radii": lambda x, p, bw: metrics.knn_radii(x, k=2, batch_size=3),
    "manifold_membership": lambda x, p, bw: metrics.manifold_membership(
        x, p, jnp.full((M,), bw), batch_size=4),
}


# ------------------------------------------------------ 1. integer, bool and half-float inputs
# dtype -> (values drawn from [0, high), bandwidth on that scale). int32 near 3e5: squared
# norms (~1e11) overflow int32; uint8 overflows at 16; float16/bfloat16 hold these exactly.
DTYPES = {
    "uint8": (np.uint8, 256, 100.0),
    "int32": (np.int32, 300_000, 1e5),
    "bool": (np.bool_, 2, 1.0),
    "float16": (np.float16, 256, 100.0),
    "bfloat16": (jnp.bfloat16, 256, 100.0),
}


def _integer_points(dtype_name, seed=0):
  dtype, high, bw = DTYPES[dtype_name]
  rng = np.random.default_rng(seed)
  x = rng.integers(0, high, (N, D))
  p = rng.integers(0, high, (M, D))
  return x.astype(dtype), p.astype(dtype), bw


def _float_leaves(tree):
  return [leaf for leaf in jax.tree_util.tree_leaves(tree)
          if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("case", list(CASES))
def test_non_float32_inputs_match_their_float32_copies(case, dtype_name):
  x, p, bw = _integer_points(dtype_name)
  got = CASES[case](x, p, bw)
  want = CASES[case](x.astype(np.float32), p.astype(np.float32), bw)
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)
  for leaf in _float_leaves(got):
    assert jnp.asarray(leaf).dtype == jnp.float32, (case, leaf.dtype)


def test_uint8_pixels_give_the_float_field_and_mmd():
  """The reported cases: uint8 pixels overflowed ‖x‖² (off by 66 on a scale of 102)."""
  x, p, _ = _integer_points("uint8", seed=1)
  xf, pf = x.astype(np.float32), p.astype(np.float32)
  kern = dj.gaussian(100.0)
  chex.assert_trees_all_close(dj.drift_field(x, p, x, kernel=kern),
                              dj.drift_field(xf, pf, xf, kernel=kern), rtol=1e-6, atol=1e-5)
  chex.assert_trees_all_close(metrics.mmd(x, p, bandwidth=100.0),
                              metrics.mmd(xf, pf, bandwidth=100.0), rtol=1e-6)
  assert float(metrics.mmd(x, p, bandwidth=100.0)) > 0.1


def test_as_float_dtypes():
  for dtype in (np.uint8, np.int32, np.int64, np.bool_, np.float16, jnp.bfloat16):
    assert _validation.as_float(np.zeros(3, dtype)).dtype == jnp.float32
  a, b = _validation.as_float(np.zeros(3, np.uint8), np.zeros(2, np.float16))
  assert a.dtype == b.dtype == jnp.float32
  assert _validation.as_float(None) is None
  assert _validation.as_float([[1, 2]]).dtype == jnp.float32  # nested lists too
  with x64():
    assert _validation.as_float(np.zeros(3, np.float64)).dtype == jnp.float64
    assert _validation.as_float(np.zeros(3, np.uint8)).dtype == jnp.float32
    assert distances.sqdist(np.ones((2, 3)), np.ones((1, 3))).dtype == jnp.float64
    a, b = _validation.as_float(np.zeros(3, np.float32), np.zeros(3, np.float64))
    assert a.dtype == b.dtype == jnp.float64


# ------------------------------------------- 2. overflowing and non-finite squared distances
# Functions whose distances overflow float32 for points at 1e19 (some pairs) and 1e30 (all).
# Eager metrics raise instead (tested below), so they are called under jit here.
OVERFLOW_CASES = {
    "pairwise_sqdist": CASES["pairwise_sqdist"],
    **{f"log_kde/{make.__name__}": functools.partial(
        lambda x, p, bw, make: dj.log_kde(x, p, kernel=make(bw)), make=make)
       for make in (dj.gaussian, dj.laplacian, dj.rational_quadratic)},
    **{f"drift_field/{name}/{norm}": functools.partial(
        lambda x, p, bw, make, norm: dj.drift_field(x, p, x, kernel=make(bw),
                                                    normalization=norm, exclude_self=True),
        make=make, norm=norm)
       for name, make in (("gauss", dj.gaussian), ("laplace", dj.laplacian))
       for norm in ("kde", "sharp", "none")},
    **{f"{case}/laplace": functools.partial(
        lambda x, p, bw, case: CASES[case](x, p, bw), case=case)
       for case in ("mmd_field", "deng_field", "kde_link_loss")},
    "mmd_loss/laplace": lambda x, p, bw: dj.mmd_loss(x, p, x, kernel=dj.laplacian(bw), exclude_self=True),
    "log_kde_loss/laplace": lambda x, p, bw: dj.log_kde_loss(x, p, x, kernel=dj.laplacian(bw), exclude_self=True),
    "doubly_stochastic_field": CASES["doubly_stochastic_field"],
    "deng_drift_loss": CASES["deng_drift_loss"],
    "sinkhorn_drift": CASES["sinkhorn_drift"],
    "knn_mean_distance/jit": jax.jit(CASES["knn_mean_distance"], static_argnums=2),
    "metrics.mmd/jit": jax.jit(CASES["metrics.mmd"], static_argnums=2),
    "precision_recall/jit": jax.jit(CASES["precision_recall"], static_argnums=2),
    "knn_radii/jit": jax.jit(CASES["knn_radii"], static_argnums=2),
}


def _assert_nan_or_close(got, want, case, *, allow_nan=True):
  """Each entry is NaN (if allowed), within float32 round-off of the float64 value, or the
  float32 rounding (±inf) of a float64 value beyond the float32 range: never a wrong
  number."""
  f32_max = float(np.finfo(np.float32).max)
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    finite_w = w[np.isfinite(w)]
    atol = 1e-3 * np.max(np.abs(finite_w), initial=0.0)
    ok = (np.isclose(g, w, rtol=1e-3, atol=atol)
          | (np.isinf(g) & (np.sign(g) == np.sign(w)) & (np.abs(w) > f32_max)))
    ok |= np.isnan(g) & (allow_nan | np.isnan(w))  # NaN only where NaN is allowed or true
    assert np.all(ok), (case, g[~ok], w[~ok])


@pytest.mark.filterwarnings("ignore:sinkhorn_drift:RuntimeWarning")  # NaN costs do not converge
@pytest.mark.parametrize("scale", [1e19, 1e30])
@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
def test_overflowing_distances_are_nan_not_finite(case, scale):
  """Points whose squared distances overflow float32: an eager call raises a ValueError
  naming the argument (or returns the float32-correct answer, for functions that rescale
  first); under ``jit`` the answer is NaN or correct — never a finite wrong number."""
  x = cloud(0, N, D) * scale
  p = cloud(1, M, D) * scale
  bw = 0.5
  fn = OVERFLOW_CASES[case]
  x32, p32 = x.astype(np.float32), p.astype(np.float32)
  with x64():  # the true value: no overflow in float64
    try:
      want = fn(x, p, bw)
    except ValueError:  # computes in float32 whatever the input (deng_drift_loss): no answer
      want = None
  try:
    eager = fn(x32, p32, bw)
  except ValueError as e:
    assert re.search(r"`\w+` has squared norms up to", str(e)), str(e)
  else:  # a function that rescales first; a "/jit" case is traced, so NaN is its answer
    assert want is not None, case
    _assert_nan_or_close(eager, want, case, allow_nan=case.endswith("/jit"))
  traced = jax.jit(fn, static_argnums=2)(x32, p32, bw)
  if want is not None:
    _assert_nan_or_close(traced, want, case)
  if scale == 1e30 or want is None:  # nothing can be right
    assert all(np.all(np.isnan(np.asarray(leaf))) for leaf in _float_leaves(traced)), case


def test_laplacian_log_kde_at_1e19_is_not_a_small_number():
  """The reported case: a NaN squared distance read as 0 by the Laplacian's safe sqrt."""
  x = jnp.asarray(cloud(2, 5, 3, dtype=np.float32)) * 1e19
  pos = jnp.asarray(cloud(3, 6, 3, dtype=np.float32)) * 1e19
  with pytest.raises(ValueError, match="`x` has squared norms"):
    dj.log_kde(x, pos, kernel=dj.laplacian(0.5))
  out = np.asarray(jax.jit(lambda a, b: dj.log_kde(a, b, kernel=dj.laplacian(0.5)))(x, pos))
  assert np.all(np.isnan(out) | (out < -1e17)), out


@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
@pytest.mark.parametrize("which", ["k", "sharp", "flat"])
def test_kernels_keep_nan_and_zero_apart(make, which):
  kern = make(0.5)
  assert np.isnan(float(kern.log(jnp.nan, which)))
  assert not np.isnan(float(kern.log(0.0, which)))
  grad = jax.grad(lambda d2: kern.log(d2, which))(0.0)  # safe gradient at zero distance
  assert not np.isnan(float(grad))


def test_safe_sqrt_and_sqdist_propagate_nan():
  d = distances.safe_sqrt(jnp.array([0.0, 4.0, jnp.nan, jnp.inf, -1.0]))
  chex.assert_trees_all_close(d, jnp.array([0.0, 2.0, jnp.nan, jnp.inf, jnp.nan]))
  chex.assert_trees_all_close(jax.grad(lambda v: distances.safe_sqrt(v))(0.0), 0.0)
  assert np.isnan(float(jnp.maximum(jnp.nan, 0.0)))  # the clamp relies on this
  x = jnp.array([[0.0, 1.0], [jnp.nan, 0.0], [jnp.inf, 0.0], [1e30, 0.0]])
  d2 = distances.sqdist(x, x[:1])
  chex.assert_trees_all_close(d2, jnp.array([[0.0], [jnp.nan], [jnp.nan], [jnp.nan]]))
  # Round-off below zero is clamped, and the gradient at x = y is finite (zero).
  y = jnp.asarray(cloud(4, 3, 5, scale=100.0, dtype=np.float32))
  assert float(jnp.min(distances.sqdist(y, y))) >= 0.0
  grad = jax.grad(lambda a: jnp.sum(distances.sqdist(a, y)))(y)
  chex.assert_tree_all_finite(grad)


def test_mmd_field_drops_only_exact_zeros():
  """Coincident pairs are dropped (singular k♭); a NaN distance is not."""
  x = jnp.asarray(cloud(5, 4, 2, dtype=np.float32))
  v = dj.mmd_field(x, x, x, kernel=dj.laplacian(0.5))
  chex.assert_tree_all_finite(v)
  v = jax.jit(lambda a: dj.mmd_field(a, x, x, kernel=dj.laplacian(0.5)))(x * 1e30)
  assert np.all(np.isnan(np.asarray(v)))  # traced: NaN (an eager call raises instead)


EAGER_RANGE_CHECKS = {
    "knn_mean_distance": (lambda x, p: dj.knn_mean_distance(x, k=2), "`x`"),
    "normalization.update": (lambda x, p: normalization.update(
        _state(), x[None], jnp.array([0]), k=2), "`samples`"),
    "normalization.update_from_labels": (lambda x, p: normalization.update_from_labels(
        _state(), x, jnp.arange(N) % 2, k=2), "`x`"),
    "metrics.mmd": (lambda x, p: metrics.mmd(p, x, bandwidth=1.0), "`y`"),
    "precision_recall": (lambda x, p: metrics.precision_recall(p, x, k=2),
                         "`fake_features`"),
    "knn_radii": (lambda x, p: metrics.knn_radii(x, k=2), "`features`"),
    "manifold_membership": (lambda x, p: metrics.manifold_membership(
        x, p, jnp.ones((M,))), "`queries`"),
}


@pytest.mark.parametrize("case", list(EAGER_RANGE_CHECKS))
def test_eager_metrics_reject_overflowing_norms(case):
  fn, match = EAGER_RANGE_CHECKS[case]
  x = cloud(6, N, D, dtype=np.float32)
  p = cloud(7, M, D, dtype=np.float32)
  fn(x, p)  # in range: fine
  with pytest.raises(ValueError, match=match):
    fn(x * 1e19, p)
  with x64():  # float64 holds these squared norms
    fn(x.astype(np.float64) * 1e19, p.astype(np.float64))


def test_jitted_precision_recall_and_knn_mean_are_nan_at_1e30():
  x = cloud(8, N, D, dtype=np.float32) * 1e30
  p = cloud(9, M, D, dtype=np.float32)
  pr = jax.jit(lambda a, b: metrics.precision_recall(a, b, k=2))(p, x)
  assert all(np.isnan(float(v)) for v in pr), pr
  assert np.isnan(float(jax.jit(lambda a: dj.knn_mean_distance(a, k=2))(x)))


# -------------------------------------------------------------- 3. low-precision cross term
def _dot_precisions(jaxpr, out):
  """The ``precision`` of every ``dot_general`` in a jaxpr, sub-jaxprs included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.append(eqn.params["precision"])
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if hasattr(sub, "eqns"):
          _dot_precisions(sub, out)
        elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
          _dot_precisions(sub.jaxpr, out)
  return out


# Every matmul of these functions is a distance or a kernel-weighted displacement.
PRECISION_CASES = ["pairwise_sqdist", "distances.sqdist", "distances.batched_sqdist",
                   "log_kde", "log_kde/chunked", "drift_field/kde", "drift_field/sharp",
                   "mmd_field", "deng_field", "doubly_stochastic_field", "mmd_loss",
                   "kde_link_loss", "deng_drift_loss", "knn_mean_distance",
                   "normalization.update_from_labels", "metrics.mmd", "precision_recall",
                   "knn_radii", "manifold_membership"]


@pytest.mark.parametrize("case", PRECISION_CASES)
def test_distance_matmuls_ask_for_highest_precision(case):
  x = jnp.asarray(cloud(10, N, D, dtype=np.float32))
  p = jnp.asarray(cloud(11, M, D, dtype=np.float32))
  precisions = _dot_precisions(jax.make_jaxpr(lambda a, b: CASES[case](a, b, 0.5))(x, p).jaxpr,
                               [])
  assert precisions, case
  assert all(pr == (HIGHEST, HIGHEST) for pr in precisions), (case, precisions)


def test_sinkhorn_costs_ask_for_highest_precision():
  """Both cost matrices use the helper (the barycentric maps are not distances)."""
  x = jnp.asarray(cloud(12, N, D, dtype=np.float32))
  precisions = _dot_precisions(jax.make_jaxpr(lambda a: dj.sinkhorn_drift(a, a + 1.0))(x).jaxpr,
                               [])
  assert precisions.count((HIGHEST, HIGHEST)) >= 2, precisions


def _round_bf16(a):
  return np.asarray(jnp.asarray(a, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32))


def _round_tf32(a):
  """Round float32 to TF32's 10 explicit mantissa bits (round half up on the magnitude)."""
  bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
  bits = (bits + 0x1000) & ~np.uint64(0x1FFF)
  return bits.astype(np.uint32).view(np.float32)


def _emulated_sqdist(a, b, round_inputs):
  """float32 norms, cross term from rounded inputs: one bf16/TF32 matmul pass."""
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  cross = round_inputs(a) @ round_inputs(b).T
  return np.maximum(np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2 * cross, 0)


def _gaussian_field_from_sqdist(sqdist_fn, x, pos, neg, bw):
  """The kde-normalized Gaussian drift of `drift_field`, from given squared distances."""
  def sub(y):
    logits = -sqdist_fn(x, y) / (2 * bw * bw)
    w = np.exp(logits - logits.max(1, keepdims=True))
    return (w / w.sum(1, keepdims=True)) @ np.asarray(y, np.float32) - np.asarray(x, np.float32)
  return sub(pos) - sub(neg)


# Offset 3 per coordinate (‖x‖² ≈ 72), spread 0.05, bandwidth 0.1: distances are ~1e-3 of
# the norms, as for features far from the origin. Tolerance: 2e-3 of the largest drift.
FIELD_TOL = 2e-3


@pytest.mark.parametrize("round_inputs", [_round_bf16, _round_tf32], ids=["bf16", "tf32"])
def test_low_precision_cross_term_would_break_the_field(round_inputs):
  d, bw = 8, 0.1
  x = 3.0 + 0.05 * cloud(13, 16, d)
  pos = 3.1 + 0.05 * cloud(14, 12, d)
  with x64():
    ref = np.asarray(dj.drift_field(x, pos, x, kernel=dj.gaussian(bw)))
  scale = np.max(np.abs(ref))
  x32, pos32 = x.astype(np.float32), pos.astype(np.float32)
  got = np.asarray(dj.drift_field(x32, pos32, x32, kernel=dj.gaussian(bw)))
  assert np.max(np.abs(got - ref)) < FIELD_TOL * scale
  # The emulation formula is the field: with the helper's distances it matches as well ...
  exact = _gaussian_field_from_sqdist(lambda a, b: np.asarray(distances.sqdist(a, b)),
                                      x32, pos32, x32, bw)
  assert np.max(np.abs(exact - ref)) < FIELD_TOL * scale
  # ... while a cross term from bf16/TF32-rounded inputs is off by far more.
  low = _gaussian_field_from_sqdist(
      lambda a, b: _emulated_sqdist(a, b, round_inputs), x32, pos32, x32, bw)
  assert np.max(np.abs(low - ref)) > 20 * FIELD_TOL * scale


# ------------------------------------------- 4. invalid traced hyperparameters give NaN
def _kernel_logs(make):
  return lambda x, p, bw: {w: make(bw).log(dj.pairwise_sqdist(x, p), w)
                           for w in ("k", "sharp", "flat")}


def _sinkhorn(name):
  """``sinkhorn_drift`` with the hyperparameter ``name`` set to the traced value."""
  return lambda x, p, v: dj.sinkhorn_drift(x, p, **{"alpha": 0.5, "max_iterations": 200,
                                                    name: v})


# name -> fn(x, pos, h): h is the traced hyperparameter; every case is called with the
# invalid values of its group under jit, and must give NaN in every float output.
TRACED_BANDWIDTH = {
    **{f"{make.__name__}.log": _kernel_logs(make)
       for make in (dj.gaussian, dj.laplacian, dj.rational_quadratic)},
    "radial.log": lambda x, p, bw: dj.radial(lambda u: jnp.exp(-u), bandwidth=bw,
                                             num_nodes=16).log(dj.pairwise_sqdist(x, p)),
    **_SHARED_BW_CASES,
    "mmd_field": lambda x, p, bw: dj.mmd_field(x, p, x, kernel=dj.laplacian(bw)),
    "deng_field": lambda x, p, bw: dj.deng_field(x, p, x, kernel=dj.laplacian(bw),
                                                 column_normalize=True),
    "doubly_stochastic_field": lambda x, p, bw: dj.doubly_stochastic_field(
        x, p, x, bandwidth=bw, exclude_self=True),
    "multiscale": lambda x, p, bw: dj.multiscale(dj.doubly_stochastic_field, (bw, 1.0))(
        x, p, x),
    "log_kde_loss": lambda x, p, bw: dj.log_kde_loss(x, p, x, kernel=dj.gaussian(bw),
                                                     exclude_self=True),
    "mmd_loss": lambda x, p, bw: dj.mmd_loss(x, p, x, kernel=dj.gaussian(bw),
                                             exclude_self=True),
    "kde_link_loss": lambda x, p, bw: dj.kde_link_loss(x, p, x, kernel=dj.gaussian(bw),
                                                       link="identity"),
    "jacobian": lambda x, p, bw: dj.jacobian(_field_fn(p, bw), x),
    "curl": lambda x, p, bw: dj.curl(_field_fn(p, bw), x),
    "line_integral_potential": lambda x, p, bw: dj.line_integral_potential(
        _field_fn(p, bw), x, num_nodes=4),
    "metrics.mmd": lambda x, p, bw: metrics.mmd(x, p, bandwidth=bw),
    "metrics.mmd/multi": lambda x, p, bw: metrics.mmd(x, p, bandwidth=(1.0, bw)),
    "gaussian_decay_rate": lambda x, p, bw: dj.gaussian_decay_rate(x, bw),
    "laplace_decay_rate": lambda x, p, bw: dj.laplace_decay_rate(x, bw, dim=2),
    "optimal_mode": lambda x, p, bw: dj.optimal_mode(bw),
    "make_objective/schedule": lambda x, p, bw: dj.make_objective(
        "gauss#", schedule=lambda t: bw)(x, p, 0)[0],
}
TRACED_OTHER = {  # name -> (fn(x, pos, h), invalid values of h)
    "sinkhorn_drift/alpha": (_sinkhorn("alpha"), [-0.5, 0.0, np.nan, np.inf]),
    "sinkhorn_drift/epsilon": (_sinkhorn("epsilon"), [-1e-3, 0.0, np.nan]),
    "sinkhorn_drift/eta": (_sinkhorn("eta"), [np.inf, -np.inf, np.nan]),
    "sinkhorn_loss_with_info/alpha": (lambda x, p, a: dj.sinkhorn_loss_with_info(
        x, p, alpha=a, exclude_self=True, max_iterations=200), [-0.5]),
    "deng_drift_loss/weight_gen": (lambda x, p, w: dj.deng_drift_loss(
        x[None], p[None], weight_gen=w), [-np.ones((1, N)), np.zeros((1, N)),
                                          np.full((1, N), np.nan)]),
    "deng_drift_loss/weight_pos": (lambda x, p, w: dj.deng_drift_loss_with_info(
        x[None], p[None], weight_pos=w), [np.zeros((1, M)), -np.ones((1, M))]),
    "deng_drift_loss/weight_neg": (lambda x, p, w: dj.deng_drift_loss(
        x[None], p[None], p[None], weight_neg=w), [-np.ones((1, M))]),
    "log_kde/weights": (lambda x, p, w: dj.log_kde(x, p, kernel=dj.gaussian(0.5), weights=w),
                        [-np.ones(M), np.zeros(M)]),
    "knn_mean_distance/mask": (lambda x, p, m: dj.knn_mean_distance(x, k=3, mask=m),
                               [np.zeros(N, bool), np.arange(N) < 3]),
    "convergence_time/t_max": (lambda x, p, t: dj.convergence_time(
        jnp.abs(x[:, 0]) + 0.5, dj.schedules.constant(0.5), t_max=t, num_points=101),
                               [-1.0, 0.0, np.nan]),
    "simulate_modes/t_max": (lambda x, p, t: dj.simulate_modes(
        jnp.abs(x[:, 0]) + 0.5, dj.schedules.constant(0.5), t_max=t, num_steps=10
    ).crossing_times, [-1.0, np.nan]),
    "fixed_convergence_time/rate": (lambda x, p, r: dj.fixed_convergence_time(r),
                                    [-np.ones(3), np.full(3, np.nan)]),
    "wasserstein_1d/p": (lambda x, p, q: metrics.wasserstein_1d(x, p, p=q),
                         [0.5, np.inf, np.nan]),
    "frechet_distance/sigma1": (lambda x, p, s: metrics.frechet_distance(
        x.mean(0), s, p.mean(0), jnp.eye(D)), [-jnp.eye(D), jnp.eye(D) + jnp.triu(
            jnp.ones((D, D)), 1)]),
}


def _traced_cases():
  for name, fn in TRACED_BANDWIDTH.items():
    for bad in (-0.5, 0.0, np.nan, np.inf):
      yield pytest.param(fn, bad, id=f"{name}-{bad}")
  for name, (fn, bads) in TRACED_OTHER.items():
    for i, bad in enumerate(bads):
      yield pytest.param(fn, bad, id=f"{name}-{i}")


def _all_nan(tree):
  leaves = _float_leaves(tree)
  return bool(leaves) and all(np.all(np.isnan(np.asarray(leaf))) for leaf in leaves)


@pytest.mark.filterwarnings("ignore:sinkhorn_drift:RuntimeWarning")
@pytest.mark.parametrize("fn,bad", list(_traced_cases()))
def test_traced_invalid_hyperparameters_give_nan(fn, bad):
  x = jnp.asarray(cloud(20, N, D, dtype=np.float32))
  p = jnp.asarray(cloud(21, M, D, shift=0.5, dtype=np.float32))
  bad = jnp.asarray(bad, jnp.float32) if np.asarray(bad).dtype.kind == "f" else bad
  out = jax.jit(fn)(x, p, bad)
  assert _all_nan(out), out


@pytest.mark.parametrize("case", ["log_kde", "drift_field/kde", "mmd_field", "deng_field",
                                  "doubly_stochastic_field", "mmd_loss", "log_kde_loss",
                                  "metrics.mmd", "gaussian_decay_rate", "curl"])
def test_valid_traced_hyperparameters_are_unchanged(case):
  """The NaN guard changes nothing for valid values: same values, finite gradients."""
  fn = TRACED_BANDWIDTH[case]
  x = jnp.asarray(cloud(22, N, D, dtype=np.float32))
  p = jnp.asarray(cloud(23, M, D, shift=0.5, dtype=np.float32))
  # both jitted (traced vs constant bandwidth): eager and jitted float32 differ by op
  # fusion alone, up to 3.5e-5 absolute on the MMD field's cancelling sums on some CPUs
  chex.assert_trees_all_close(jax.jit(fn)(x, p, jnp.float32(0.7)),
                              jax.jit(lambda a, b: fn(a, b, 0.7))(x, p), rtol=1e-4, atol=1e-5)
  total = lambda a, bw: sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(fn(a, p, bw)))
  grads = jax.jit(jax.grad(total, argnums=(0, 1)))(x, jnp.float32(0.7))
  chex.assert_tree_all_finite(grads)


def test_nan_guard_compiles_to_no_callback():
  """The checkify checks are no-ops outside ``checked``: nothing of them is compiled."""
  x = jnp.asarray(cloud(24, N, D, dtype=np.float32))
  fn = jax.jit(lambda a, bw: dj.drift_field(a, a + 1.0, a, kernel=dj.gaussian(bw),
                                            exclude_self=True))
  hlo = fn.lower(x, 0.5).compile().as_text()
  assert not re.search(r"custom-call\(", hlo), [l for l in hlo.splitlines() if "custom-call(" in l]


def test_jitted_library_function_has_no_effect_outside_checked():
  """Outside ``checked`` no check is traced: the jaxpr has no (checkify error) effect, which
  would send every call of the jitted function through JAX's slower Python dispatch."""
  x = jnp.asarray(cloud(24, N, D, dtype=np.float32))[None]
  fns = {"deng_drift_loss": lambda a: dj.deng_drift_loss(a, a + 1.0),
         "drift_field": lambda a: dj.drift_field(a[0], a[0] + 1.0, a[0],
                                                 kernel=dj.gaussian(0.5))}
  for name, fn in fns.items():
    assert not jax.make_jaxpr(fn)(x).effects, name
    with _validation.registering_checks():  # what `checked` traces under
      assert jax.make_jaxpr(fn)(x).effects, name


def test_checked_retraces_a_function_jitted_outside():
  """A jitted function first traced outside ``checked`` (no checks in its cached program)
  still raises inside it: the check setting is part of jit's cache key."""
  fn = jax.jit(_mmd_loss)
  x = jnp.asarray(_X)
  assert np.isnan(float(fn(x, jnp.float32(-0.5))))            # plain jit: NaN
  with pytest.raises(ValueError, match="bandwidth"):
    dj.checked(fn)(x, jnp.float32(-0.5))
  assert np.isnan(float(fn(x, jnp.float32(-0.5))))            # and plain again afterwards


# ------------------------------------------------ 5. NaN inputs under jit: NaN rows, not 0
# name -> fn(x) with a NaN in x[0, 0]: the affected outputs are NaN (rows of x for fields
# and KDEs, the whole value for losses and scalar summaries); the others stay finite.
NAN_ROWS = {  # row-wise outputs whose other rows do not depend on x[0]
    "log_kde": lambda x, p: dj.log_kde(x, p, kernel=dj.laplacian(0.5)),
    "log_kde/chunked": lambda x, p: dj.log_kde(x, p, kernel=dj.gaussian(0.5), chunk_size=4),
    "log_kde/sharp": lambda x, p: dj.log_kde(x, p, kernel=dj.rational_quadratic(0.5),
                                             which="sharp"),
    "sub_field": lambda x, p: dj.sub_field(x, p, kernel=dj.gaussian(0.5)),
    "drift_field/pos-neg": lambda x, p: dj.drift_field(x, p, p + 1.0, kernel=dj.gaussian(0.5)),
    "mmd_field": lambda x, p: dj.mmd_field(x, p, p + 1.0, kernel=dj.laplacian(0.5)),
    "deng_field": lambda x, p: dj.deng_field(x, p, p + 1.0, kernel=dj.laplacian(0.5)),
    "pairwise_sqdist": lambda x, p: dj.pairwise_sqdist(x, p),
    "jacobian": lambda x, p: dj.jacobian(_field_fn(p, 0.5), x),
    "gaussian_decay_rate": lambda x, p: dj.gaussian_decay_rate(x[:, 0], 0.5),
    "convergence_time": lambda x, p: dj.convergence_time(
        jnp.abs(x[:, 0]) + 0.5, dj.schedules.constant(0.5), t_max=500.0, num_points=2001),
    "simulate_modes": lambda x, p: dj.simulate_modes(
        jnp.abs(x[:, 0]) + 0.5, dj.schedules.constant(0.5), t_max=500.0,
        num_steps=200).crossing_times,
}
NAN_ALL = {  # outputs that depend on every x (x is also the negatives, or a summary)
    "drift_field/self": lambda x, p: dj.drift_field(x, p, x, kernel=dj.gaussian(0.5),
                                                    exclude_self=True),
    "doubly_stochastic_field": lambda x, p: dj.doubly_stochastic_field(x, p, x, bandwidth=0.5),
    "drift_loss": lambda x, p: dj.drift_loss(x, jnp.ones_like(x)),
    "log_kde_loss": lambda x, p: dj.log_kde_loss(x, p, x, kernel=dj.gaussian(0.5),
                                                 exclude_self=True),
    "mmd_loss": lambda x, p: dj.mmd_loss(x, p, x, kernel=dj.gaussian(0.5), exclude_self=True),
    "kde_link_loss": lambda x, p: dj.kde_link_loss(x, p, x, kernel=dj.laplacian(0.5),
                                                   link="identity"),
    "deng_drift_loss": lambda x, p: dj.deng_drift_loss(x[None], p[None]),
    "sinkhorn_drift": lambda x, p: dj.sinkhorn_drift(x, p, max_iterations=100),
    "asymmetry": lambda x, p: dj.asymmetry(_field_fn(p, 0.5), x),
    "knn_mean_distance": lambda x, p: dj.knn_mean_distance(x, k=2),
    "metrics.mmd": lambda x, p: metrics.mmd(x, p, bandwidth=0.5),
    "sliced_wasserstein": lambda x, p: metrics.sliced_wasserstein(
        x, p, key=jax.random.PRNGKey(0), num_projections=8),
    "frechet_distance_from_features": lambda x, p: metrics.frechet_distance_from_features(x, p),
    "precision_recall": lambda x, p: metrics.precision_recall(p, x, k=2).precision,
}


@pytest.mark.filterwarnings("ignore:sinkhorn_drift:RuntimeWarning")
@pytest.mark.parametrize("case", list(NAN_ROWS) + list(NAN_ALL))
def test_nan_inputs_under_jit_give_nan_rows(case):
  x = cloud(25, N, D, dtype=np.float32)
  p = jnp.asarray(cloud(26, M, D, shift=0.5, dtype=np.float32))
  x[0, 0] = np.nan
  out = np.asarray(jax.jit(NAN_ROWS.get(case) or NAN_ALL[case])(jnp.asarray(x), p))
  if case in NAN_ROWS:
    assert np.all(np.isnan(out[0])), out[0]
    assert np.all(np.isfinite(out[1:])), out[1:]
  else:
    assert np.any(np.isnan(out)), out


def test_asymmetry_and_convergence_time_are_nan_not_zero_or_inf():
  """The reported cases: a NaN Jacobian counted as 0, a NaN mode as never converged."""
  x = jnp.asarray(cloud(27, 4, 2, dtype=np.float32)).at[1, 0].set(jnp.nan)
  p = jnp.asarray(cloud(28, 5, 2, dtype=np.float32))
  assert np.isnan(float(jax.jit(lambda a: dj.asymmetry(_field_fn(p, 0.5), a))(x)))
  t = jax.jit(lambda k: dj.convergence_time(k, dj.schedules.constant(0.5), t_max=100.0,
                                            num_points=101))(jnp.array([1.0, jnp.nan]))
  assert np.isfinite(float(t[0])) and np.isnan(float(t[1]))


# ------------------------------------------- 6. every option validated (eager ValueError)
_X = cloud(29, N, D, dtype=np.float32)
_P = cloud(30, M, D, shift=0.5, dtype=np.float32)
_K = dj.gaussian(0.5)
_S = np.cov(_X.T)

BAD_OPTIONS = {  # name -> (thunk, regex the ValueError must match)
    "deng/weight_gen<0": (lambda: dj.deng_drift_loss(_X[None], _P[None],
                                                     weight_gen=-np.ones((1, N))), "weight_gen"),
    "deng/weight_pos=0": (lambda: dj.deng_drift_loss(_X[None], _P[None],
                                                     weight_pos=np.zeros((1, M))), "weight_pos"),
    "deng/all-zero-negatives": (lambda: dj.deng_drift_loss_with_info(
        _X[None], _P[None], _P[None], weight_gen=np.zeros((1, N)),
        weight_neg=np.zeros((1, M))), "weight_gen"),
    "deng/weight_neg-nan": (lambda: dj.deng_drift_loss(
        _X[None], _P[None], _P[None], weight_neg=np.full((1, M), np.nan)), "weight_neg"),
    "deng/temperatures-empty": (lambda: dj.deng_drift_loss(_X[None], _P[None],
                                                           temperatures=()), "temperatures"),
    "deng/temperatures-negative": (lambda: dj.deng_drift_loss(
        _X[None], _P[None], temperatures=(0.1, -0.1)), "temperatures"),
    "deng/temperatures-traced": (lambda: jax.jit(lambda t: dj.deng_drift_loss(
        _X[None], _P[None], temperatures=(t,)))(0.1), "temperatures"),
    **{f"{fn.__name__}/wrong-shape-field": (functools.partial(
        lambda fn: fn(lambda z: z[:, :1], _X), fn=fn), "field_fn")
       for fn in (dj.jacobian, dj.curl, dj.asymmetry, dj.line_integral_potential)},
    "curl/field-returns-tuple": (lambda: dj.curl(lambda z: (z, z), _X), "field_fn"),
    "curl/not-callable": (lambda: dj.curl("field", _X), "field_fn"),
    "curl_indices/dim=1": (lambda: dj.curl_indices(1), "dim"),
    "curl_indices/dim=2.5": (lambda: dj.curl_indices(2.5), "dim"),
    "line_integral_potential/num_nodes": (lambda: dj.line_integral_potential(
        _field_fn(_P, 0.5), _X, num_nodes=0), "num_nodes"),
    "line_integral_potential/origin-nan": (lambda: dj.line_integral_potential(
        _field_fn(_P, 0.5), _X, origin=np.full(D, np.nan)), "origin"),
    "sub_field/exclude_self-rows": (lambda: dj.sub_field(_X, _P, kernel=_K, exclude_self=True),
                                    "samples"),
    "sub_field/nan": (lambda: dj.sub_field(np.full((2, D), np.nan), _P, kernel=_K), "`x`"),
    "sub_field/dim": (lambda: dj.sub_field(_X, _P[:, :2], kernel=_K), "samples"),
    "sub_field/normalization": (lambda: dj.sub_field(_X, _P, kernel=_K, normalization="x"),
                                "normalization"),
    "sub_field/kernel": (lambda: dj.sub_field(_X, _P, kernel=0.5), "kernel"),
    "drift_field/normalization": (lambda: dj.drift_field(_X, _P, _X, kernel=_K,
                                                         normalization="kde#"),
                                  "normalization"),
    "drift_field/exclude_self-not-bool": (lambda: dj.drift_field(_X, _P, _X, kernel=_K,
                                                                 exclude_self="yes"),
                                          "exclude_self"),
    "deng_field/column_normalize": (lambda: dj.deng_field(_X, _P, _X, kernel=_K,
                                                          column_normalize=1),
                                    "column_normalize"),
    "multiscale/eps": (lambda: dj.multiscale(dj.drift_field, [_K], eps=-1.0), "eps"),
    "multiscale/kernel-kwarg": (lambda: dj.multiscale(dj.drift_field, [_K], kernel=_K),
                                "kernel"),
    "multiscale/unknown-kwarg": (lambda: dj.multiscale(dj.drift_field, [_K], bogus=1),
                                 "field_fn"),
    "multiscale/string-scale": (lambda: dj.multiscale(dj.doubly_stochastic_field, ["0.5"]),
                                "scales"),
    "log_kde/which": (lambda: dj.log_kde(_X, _P, kernel=_K, which="sharp#"), "which"),
    "log_kde/chunk_size=2.5": (lambda: dj.log_kde(_X, _P, kernel=_K, chunk_size=2.5),
                               "chunk_size"),
    "log_kde/chunk_size-str": (lambda: dj.log_kde(_X, _P, kernel=_K, chunk_size="4"),
                               "chunk_size"),
    "log_kde/zero-weights": (lambda: dj.log_kde(_X, _P, kernel=_K, weights=np.zeros(M)),
                             "weights"),
    "kernel/string-bandwidth": (lambda: dj.gaussian("0.5"), "bandwidth"),
    "kernel/bool-bandwidth": (lambda: dj.laplacian(True), "bandwidth"),
    "radial/num_nodes": (lambda: dj.radial(jnp.exp, num_nodes=8.5), "num_nodes"),
    "radial/profile": (lambda: dj.radial("exp"), "profile"),
    "radial/name": (lambda: dj.radial(jnp.exp, name=3), "name"),
    "radial/log_profile": (lambda: dj.radial(jnp.exp, log_profile="yes"), "log_profile"),
    "kernels.get/name": (lambda: kernels.get(["gauss"], 0.5), "name"),
    "drift_loss/rank": (lambda: dj.drift_loss(_X[0], _X[0]), "`x`"),
    "pairwise_sqdist/rank": (lambda: dj.pairwise_sqdist(_X[0], _P), "`x`"),
    "sinkhorn/cost_power-bool": (lambda: dj.sinkhorn_drift(_X, _P, cost_power=True),
                                 "cost_power"),
    "sinkhorn/max_iterations": (lambda: dj.sinkhorn_drift(_X, _P, max_iterations=2.5),
                                "max_iterations"),
    "sinkhorn/eta-str": (lambda: dj.sinkhorn_drift(_X, _P, eta="1"), "eta"),
    "sliced_wasserstein/p=inf": (lambda: metrics.sliced_wasserstein(
        _X, _P, key=jax.random.PRNGKey(0), p=np.inf), "`p`"),
    "sliced_wasserstein/p=nan": (lambda: metrics.sliced_wasserstein(
        _X, _P, key=jax.random.PRNGKey(0), p=np.nan), "`p`"),
    "sliced_wasserstein/num_projections": (lambda: metrics.sliced_wasserstein(
        _X, _P, key=jax.random.PRNGKey(0), num_projections=2.5), "num_projections"),
    "wasserstein_1d/p": (lambda: metrics.wasserstein_1d(_X, _P, p=0.5), "`p`"),
    "wasserstein_1d/empty": (lambda: metrics.wasserstein_1d(_X[:0], _P), "non-empty"),
    "wasserstein_1d/rank": (lambda: metrics.wasserstein_1d(_X[:, 0], _P), "`u`"),
    "random_directions/num": (lambda: metrics.random_directions(jax.random.PRNGKey(0), 0, 3),
                              "num"),
    "frechet/asymmetric": (lambda: metrics.frechet_distance(
        _X.mean(0), _S + np.triu(np.ones_like(_S), 1), _P.mean(0), _S), "sigma1"),
    "frechet/not-psd": (lambda: metrics.frechet_distance(
        _X.mean(0), _S, _P.mean(0), _S - 2 * np.max(np.abs(_S)) * np.eye(D)), "sigma2"),
    "metrics.mmd/bandwidth-empty": (lambda: metrics.mmd(_X, _P, bandwidth=()), "bandwidth"),
    "metrics.mmd/bandwidth-str": (lambda: metrics.mmd(_X, _P, bandwidth="0.5"), "bandwidth"),
    "metrics.mmd/unbiased": (lambda: metrics.mmd(_X, _P, bandwidth=0.5, unbiased="yes"),
                             "unbiased"),
    "knn_mean_distance/k=2.5": (lambda: dj.knn_mean_distance(_X, k=2.5), "`k`"),
    "knn_mean_distance/mask": (lambda: dj.knn_mean_distance(_X, k=3, mask=np.arange(N) < 3),
                               "mask"),
    "knn_radii/k=nan": (lambda: metrics.knn_radii(_X, k=np.nan), "`k`"),
    "precision_recall/k=None": (lambda: metrics.precision_recall(_P, _X, k=None), "`k`"),
    "precision_recall/batch_size": (lambda: metrics.precision_recall(_P, _X, batch_size=2.5),
                                    "batch_size"),
    "manifold_membership/negative-radii": (lambda: metrics.manifold_membership(
        _X, _P, -np.ones(M)), "radii"),
    "normalization.init/bool": (lambda: normalization.init(True), "num_classes"),
    "get_schedule/unknown-option": (lambda: dj.get_schedule(
        "exponential", sigma0=1.0, rate=0.1, sigma_min=0.1, total_steps=5), "total_steps"),
    "get_schedule/missing-option": (lambda: dj.get_schedule("linear", sigma0=1.0,
                                                            sigma_min=0.1), "total_steps"),
    "get_schedule/string-value": (lambda: dj.get_schedule("constant", value="0.5"), "value"),
    "get_schedule/bool-value": (lambda: dj.get_schedule("constant", value=True), "value"),
    "gaussian_decay_rate/sigma<=0": (lambda: dj.gaussian_decay_rate(1.0, 0.0), "sigma"),
    "gaussian_decay_rate/sigma-str": (lambda: dj.gaussian_decay_rate(1.0, "0.5"), "sigma"),
    "laplace_decay_rate/tau": (lambda: dj.laplace_decay_rate(1.0, -1.0), "tau"),
    "laplace_decay_rate/dim-bool": (lambda: dj.laplace_decay_rate(1.0, 1.0, dim=True), "dim"),
    "optimal_mode/sigma": (lambda: dj.optimal_mode(-0.5), "sigma"),
    "fixed_convergence_time/rate": (lambda: dj.fixed_convergence_time(-1.0), "rate"),
    "fixed_convergence_time/eps-str": (lambda: dj.fixed_convergence_time(1.0, eps="0.1"),
                                       "eps"),
    "convergence_time/nan-mode": (lambda: dj.convergence_time(
        np.array([1.0, np.nan]), dj.schedules.constant(0.5), t_max=1.0), "`k`"),
    "convergence_time/rate_fn": (lambda: dj.convergence_time(
        np.ones(2), dj.schedules.constant(0.5), t_max=1.0, rate_fn="gauss"), "rate_fn"),
    "simulate_modes/amplitude": (lambda: dj.simulate_modes(
        np.ones(2), dj.schedules.constant(0.5), t_max=1.0, num_steps=4, amplitude=np.nan),
                                 "amplitude"),
    "checked/not-callable": (lambda: dj.checked(3), "fn"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_raise_naming_the_argument(case):
  thunk, match = BAD_OPTIONS[case]
  with pytest.raises(ValueError, match=match):
    thunk()


def test_cfg_style_zero_negative_weights_stay_valid():
  """An all-zero ``weight_neg`` (CFG scale 1) is fine while the generated negatives count."""
  uncond = _P[None] + 1.0
  loss = dj.deng_drift_loss(_X[None], _P[None], uncond, weight_neg=np.zeros((1, M)))
  chex.assert_tree_all_finite(loss)
  traced = jax.jit(lambda w: dj.deng_drift_loss(_X[None], _P[None], uncond, weight_neg=w))
  chex.assert_trees_all_close(traced(jnp.zeros((1, M))), loss, rtol=1e-5)


# name -> (fn(value), Python value): numpy and JAX scalars give the Python value's answer.
SCALAR_OPTIONS = {
    "metrics.mmd/bandwidth": (lambda b: metrics.mmd(_X, _P, bandwidth=b), 0.5),
    "metrics.mmd/bandwidths": (lambda b: metrics.mmd(_X, _P, bandwidth=(b, 1.0)), 0.5),
    "gaussian": (lambda b: dj.drift_field(_X, _P, _X, kernel=dj.gaussian(b)), 0.5),
    "doubly_stochastic_field": (lambda b: dj.doubly_stochastic_field(_X, _P, _X, bandwidth=b),
                                0.5),
    "multiscale": (lambda b: dj.multiscale(dj.doubly_stochastic_field, (b,))(_X, _P, _X), 0.5),
    "radial/num_nodes": (lambda n: dj.radial(lambda u: jnp.exp(-u), num_nodes=n).log(1.0,
                                                                                     "sharp"),
                         16),
    "log_kde/chunk_size": (lambda c: dj.log_kde(_X, _P, kernel=_K, chunk_size=c), 4),
    "knn_mean_distance/k": (lambda k: dj.knn_mean_distance(_X, k=k), 3),
    "precision_recall/k": (lambda k: metrics.precision_recall(_P, _X, k=k), 2),
    "sliced_wasserstein/p": (lambda q: metrics.sliced_wasserstein(
        _X, _P, key=jax.random.PRNGKey(0), num_projections=8, p=q), 2.0),
    "sliced_wasserstein/num_projections": (lambda n: metrics.sliced_wasserstein(
        _X, _P, key=jax.random.PRNGKey(0), num_projections=n), 8),
    "sinkhorn/alpha": (lambda a: dj.sinkhorn_drift(_X, _P, alpha=a, max_iterations=50), 0.5),
    "sinkhorn/max_iterations": (lambda n: dj.sinkhorn_drift(_X, _P, max_iterations=n), 50),
    "deng/temperatures": (lambda t: dj.deng_drift_loss(_X[None], _P[None], temperatures=(t,)),
                          0.05),
    "get_schedule/sigma0": (lambda s: dj.get_schedule("exponential", sigma0=s, rate=0.1,
                                                      sigma_min=0.1)(3), 1.5),
    "laplace_decay_rate/dim": (lambda d: dj.laplace_decay_rate(2.0, 0.5, dim=d), 2),
    "convergence_time/num_points": (lambda n: dj.convergence_time(
        np.ones(2), dj.schedules.constant(0.5), t_max=20.0, num_points=n), 101),
    "simulate_modes/num_steps": (lambda n: dj.simulate_modes(
        np.ones(2), dj.schedules.constant(0.5), t_max=20.0, num_steps=n).crossing_times, 10),
    "curl_indices/dim": (lambda d: dj.curl_indices(d), 3),
    "normalization.init": (lambda c: normalization.init(c).scale, 2),
}


def _scalar_forms(value):
  if isinstance(value, int):
    return [np.int64(value), np.int32(value), jnp.asarray(value, jnp.int32)]
  return [np.float32(value), np.float64(value), jnp.asarray(value, jnp.float32)]


@pytest.mark.filterwarnings("ignore:sinkhorn_drift:RuntimeWarning")
@pytest.mark.parametrize("case", list(SCALAR_OPTIONS))
def test_numpy_and_jax_scalars_are_accepted(case):
  fn, value = SCALAR_OPTIONS[case]
  want = fn(value)
  for form in _scalar_forms(value):
    chex.assert_trees_all_close(fn(form), want, rtol=1e-6, atol=1e-7)


# ----------------------------------------------- 7. dj.checked: errors instead of NaN in jit
def _mmd_loss(x, bw):
  return dj.mmd_loss(x, _P, x, kernel=dj.gaussian(bw), exclude_self=True)


CHECKED = {  # name -> (fn, args with an invalid traced value, regex of the error)
    "bandwidth": (_mmd_loss, (_X, -0.5), r"`bandwidth` must be a finite positive number, "
                                         r"got -0\.5"),
    "nan-input": (_mmd_loss, (np.where(np.arange(N)[:, None] == 2, np.nan, _X), 0.5),
                  "`x` contains NaN"),
    "nan-pos": (lambda x, p: dj.drift_field(x, p, x, kernel=_K), (_X, np.full((M, D), np.nan)),
                "`pos` contains NaN"),
    "alpha": (lambda x, a: dj.sinkhorn_drift(x, _P, alpha=a, max_iterations=50), (_X, -1.0),
              "`alpha` must be a finite positive number, got -1"),
    "epsilon": (lambda x, e: dj.sinkhorn_drift(x, _P, epsilon=e, max_iterations=50),
                (_X, 0.0), "`epsilon`"),
    "eta": (lambda x, e: dj.sinkhorn_drift(x, _P, eta=e, max_iterations=50), (_X, np.inf),
            "`eta` must be a finite number"),
    "weight_gen": (lambda x, w: dj.deng_drift_loss(x[None], _P[None], weight_gen=w),
                   (_X, -np.ones((1, N))), "`weight_gen` must hold finite nonnegative"),
    "weight_pos-zero": (lambda x, w: dj.deng_drift_loss(x[None], _P[None], weight_pos=w),
                        (_X, np.zeros((1, M))), "`weight_pos` must have a positive sum"),
    "metrics.mmd": (lambda x, b: metrics.mmd(x, _P, bandwidth=b), (_X, 0.0), "`bandwidth`"),
    "schedule": (lambda x, s: dj.make_objective("gauss#", schedule=lambda t: s)(x, _P, 0)[0],
                 (_X, -1.0), "`bandwidth`"),
    "frechet": (lambda s: metrics.frechet_distance(_X.mean(0), s, _P.mean(0), _S),
                (-np.eye(D),), "`sigma1` must be a symmetric positive semi-definite"),
    "wasserstein_1d": (lambda x, q: metrics.wasserstein_1d(x, _P, p=q), (_X, 0.5), "`p`"),
    "gaussian_decay_rate": (lambda k, s: dj.gaussian_decay_rate(k, s), (_X, -1.0), "`sigma`"),
}


def _as_arrays(args):
  return tuple(jnp.asarray(a, jnp.float32) for a in args)


@pytest.mark.filterwarnings("ignore:sinkhorn_drift:RuntimeWarning")
@pytest.mark.parametrize("case", list(CHECKED))
def test_checked_raises_naming_the_argument(case):
  fn, args, match = CHECKED[case]
  with pytest.raises(ValueError, match=match):
    dj.checked(jax.jit(fn))(*_as_arrays(args))


def test_checked_forms():
  """checked(jit(fn)), checked(fn), jit(checked(fn)), vmap and grad; valid values pass."""
  x, bad, good = jnp.asarray(_X), jnp.float32(-0.5), jnp.float32(0.5)
  want = _mmd_loss(x, 0.5)
  for wrapped in (dj.checked(jax.jit(_mmd_loss)), dj.checked(_mmd_loss),
                  jax.jit(dj.checked(_mmd_loss))):
    chex.assert_trees_all_close(wrapped(x, good), want, rtol=1e-6)
  match = "`bandwidth` must be a finite positive number"
  with pytest.raises(ValueError, match=match):
    dj.checked(_mmd_loss)(x, bad)
  with pytest.raises(ValueError, match=match):  # a concrete Python float raises eagerly
    dj.checked(jax.jit(_mmd_loss, static_argnums=1))(x, -0.5)
  with pytest.raises(ValueError, match=match):
    dj.checked(jax.vmap(_mmd_loss, (None, 0)))(x, jnp.array([0.5, -0.5]))
  with pytest.raises(ValueError, match=match):
    dj.checked(jax.jit(jax.grad(_mmd_loss)))(x, bad)
  # Inside an outer transformation the error comes from the running program.
  with pytest.raises(jax.errors.JaxRuntimeError, match=match):
    jax.block_until_ready(jax.jit(dj.checked(_mmd_loss))(x, bad))
  with pytest.raises(jax.errors.JaxRuntimeError, match=match):
    jax.block_until_ready(jax.vmap(dj.checked(_mmd_loss), (None, 0))(x, jnp.array([0.5, -1.])))
  chex.assert_tree_all_finite(jax.grad(dj.checked(_mmd_loss))(x, good))


def test_checked_reports_nan_outputs_and_float_checks():
  from jax.experimental import checkify
  f = jax.jit(lambda a: jnp.log(a - 10.0))
  with pytest.raises(FloatingPointError, match="returned NaN in its output"):
    dj.checked(f)(jnp.asarray(_X))
  assert np.all(np.isnan(np.asarray(dj.checked(f, check_outputs=False)(jnp.asarray(_X)))))
  with pytest.raises(FloatingPointError, match="nan generated by primitive: log"):
    dj.checked(f, errors=checkify.float_checks)(jnp.asarray(_X))
  # The first failed check wins: the invalid input, not the NaN it produces downstream.
  with pytest.raises(ValueError, match="`x` contains NaN"):
    dj.checked(jax.jit(_mmd_loss))(jnp.asarray(_X).at[0, 0].set(jnp.nan), 0.5)


# --- extreme widths, kernels outside their domain, bad user profiles ----------------------
@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
@pytest.mark.parametrize("width", [1e-30, 1e-20, 1e20, 1e30])
def test_unrepresentable_widths_raise_naming_the_range(make, width):
  lo, hi = kernels.width_range()
  assert lo == pytest.approx(np.sqrt(np.finfo(np.float32).tiny))
  assert hi == pytest.approx(np.sqrt(np.finfo(np.float32).max))
  with pytest.raises(ValueError, match=r"`bandwidth` must lie in \[1\.08e-19, 1\.84e\+19\]"):
    make(width)
  with pytest.raises(ValueError, match="`bandwidth` must lie in"):
    make(1.0).with_bandwidth(width)
  with pytest.raises(ValueError, match="`bandwidth` must lie in"):
    dj.doubly_stochastic_field(cloud(0, 4, 2), cloud(1, 3, 2), cloud(0, 4, 2),
                               bandwidth=width)


@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
def test_widths_at_the_range_ends_give_finite_fields(make):
  """Just inside the range the kernels compute (the nearest positive dominates at the small
  end, all positives weigh the same at the large end): finite, not NaN."""
  x, pos = cloud(0, 5, 2) * 1e-19, cloud(1, 4, 2) * 1e-19
  lo, hi = kernels.width_range()
  for width, (a, b) in ((2 * lo, (x, pos)), (hi / 2, (x * 1e19, pos * 1e19))):
    field = dj.drift_field(a, b, a, kernel=make(width))
    assert np.all(np.isfinite(np.asarray(field)))


def test_traced_unrepresentable_width_is_nan_and_checked():
  x, pos = cloud(0, 5, 2), cloud(1, 4, 2)
  fn = lambda s: dj.drift_field(x, pos, x, kernel=dj.gaussian(1.0).with_bandwidth(s))
  assert np.all(np.isnan(np.asarray(jax.jit(fn)(1e-30))))
  assert np.all(np.isfinite(np.asarray(jax.jit(fn)(0.5))))


def test_float64_widths_have_the_float64_range():
  with x64():
    lo, hi = kernels.width_range()
    assert lo < 1e-150 and hi > 1e150
    x, pos = cloud(0, 5, 2) * 1e-29, cloud(1, 4, 2) * 1e-29
    assert np.all(np.isfinite(np.asarray(dj.drift_field(x, pos, x, kernel=dj.gaussian(1e-30)))))


@pytest.mark.parametrize("which", ["k", "sharp", "flat"])
def test_negative_squared_distances_raise_eagerly_and_are_nan_traced(which):
  kern = dj.gaussian(0.7)
  d2 = jnp.array([-1.0, 0.5])
  with pytest.raises(ValueError, match="`sqdist` must be >= 0"):
    kern.log(d2, which)
  out = np.asarray(jax.jit(lambda d: kern.log(d, which))(d2))
  assert np.isnan(out[0]) and np.isfinite(out[1])


@pytest.mark.parametrize("profile,log_profile,match", [
    (lambda u: jnp.exp(u), False, "non-increasing"),
    (lambda u: 1.0 - u, False, "positive and finite"),
    (lambda u: u, True, "non-increasing"),
    (lambda u: jnp.sqrt(u - 1.0), False, "positive and finite"),
    (lambda u: jnp.stack([u, u]), False, "elementwise"),
])
def test_radial_refuses_profiles_that_are_not_kernels(profile, log_profile, match):
  with pytest.raises(ValueError, match=match):
    dj.radial(profile, bandwidth=1.0, log_profile=log_profile)


def test_radial_accepts_decreasing_positive_profiles():
  for profile, log_profile in ((lambda u: jnp.exp(-u), False), (lambda u: (1 + u) ** -2.0, False),
                               (lambda u: -2.0 * jnp.log1p(u), True)):
    kern = dj.radial(profile, bandwidth=0.5, log_profile=log_profile)
    assert np.all(np.isfinite(np.asarray(kern.log_k(jnp.array([0.0, 1.0, 4.0])))))


@pytest.mark.parametrize("call", [
    lambda x, p: dj.drift_field(x, p, x, kernel=dj.gaussian(1.0)),
    lambda x, p: dj.mmd_loss(x, p, x, kernel=dj.gaussian(1.0)),
    lambda x, p: dj.sinkhorn_drift(x, p, alpha=0.5),
    lambda x, p: dj.log_kde(x, p, kernel=dj.gaussian(1.0)),
    lambda x, p: dj.deng_drift_loss(x[None], p[None]),
])
def test_zero_feature_dimension_raises(call):
  """S = D = 0 raised nowhere and gave NaN in Deng's loss (0/0 feature normalization)."""
  with pytest.raises(ValueError, match=r"at least one feature dimension \([DS] >= 1\)"):
    call(np.zeros((4, 0), np.float32), np.zeros((3, 0), np.float32))


_INT_OPTIONS = [  # (call with an integer option given as `v`, the option's name, a valid int)
    (lambda v: normalization.init(v), "num_classes", 2),
    (lambda v: normalization.knn_mean_distance(cloud(0, 8, 2), k=v), "k", 2),
    (lambda v: metrics.sliced_wasserstein(cloud(0, 8, 2), cloud(1, 8, 2), num_projections=v,
                                          key=jax.random.PRNGKey(0)), "num_projections", 2),
    (lambda v: dj.radial(lambda u: jnp.exp(-u), num_nodes=v), "num_nodes", 8),
    (lambda v: dj.grouped.sample_cfg_scale(jax.random.PRNGKey(0), v), "num", 2),
    (lambda v: dj.make_objective("drifting-laplace", bandwidth=0.5, chunk_size=v),
     "chunk_size", 2),
]


@pytest.mark.parametrize("call,name,valid", _INT_OPTIONS)
def test_one_rule_for_integer_options(call, name, valid):
  """Integer options take ints (Python, NumPy or JAX integer scalars) and refuse floats, even
  integral ones, and bools — in every function alike."""
  call(valid)
  call(np.int64(valid))
  call(jnp.int32(valid))
  for bad in (float(valid), np.float32(valid), True, str(valid)):
    with pytest.raises(ValueError, match=f"`{name}` must be"):
      call(bad)
