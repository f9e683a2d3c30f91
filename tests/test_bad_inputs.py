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
    "log_kde": lambda x, p, bw: dj.log_kde(x, p, kernel=dj.laplacian(bw), which="sharp"),
    "log_kde/weights": lambda x, p, bw: dj.log_kde(x, p, kernel=dj.gaussian(bw),
                                                   weights=np.arange(1, M + 1)),
    "log_kde/chunked": lambda x, p, bw: dj.log_kde(x, x, kernel=dj.gaussian(bw),
                                                   exclude_self=True, chunk_size=3),
    "sub_field": lambda x, p, bw: dj.sub_field(x, p, kernel=dj.gaussian(bw)),
    **{f"drift_field/{norm}": functools.partial(
        lambda x, p, bw, norm: dj.drift_field(x, p, x, kernel=dj.gaussian(bw),
                                              normalization=norm, exclude_self=True),
        norm=norm) for norm in ("kde", "sharp", "none")},
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


def _assert_nan_or_close(got, want, case):
  """Each entry is NaN, within float32 round-off of the float64 value, or the float32
  rounding (±inf) of a float64 value beyond the float32 range: never a wrong number."""
  f32_max = float(np.finfo(np.float32).max)
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    finite_w = w[np.isfinite(w)]
    atol = 1e-3 * np.max(np.abs(finite_w), initial=0.0)
    ok = (np.isnan(g) | np.isclose(g, w, rtol=1e-3, atol=atol)
          | (np.isinf(g) & (np.sign(g) == np.sign(w)) & (np.abs(w) > f32_max)))
    assert np.all(ok), (case, g[~ok], w[~ok])


@pytest.mark.filterwarnings("ignore:sinkhorn_drift:RuntimeWarning")  # NaN costs do not converge
@pytest.mark.parametrize("scale", [1e19, 1e30])
@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
def test_overflowing_distances_are_nan_not_finite(case, scale):
  x = cloud(0, N, D) * scale
  p = cloud(1, M, D) * scale
  bw = 0.5
  got = OVERFLOW_CASES[case](x.astype(np.float32), p.astype(np.float32), bw)
  with x64():  # the true value: no overflow in float64
    want = OVERFLOW_CASES[case](x, p, bw)
  _assert_nan_or_close(got, want, case)
  if scale == 1e30:  # every norm overflows: nothing can be right
    assert all(np.all(np.isnan(np.asarray(leaf))) for leaf in _float_leaves(got)), case


def test_laplacian_log_kde_at_1e19_is_not_a_small_number():
  """The reported case: a NaN squared distance read as 0 by the Laplacian's safe sqrt."""
  x = jnp.asarray(cloud(2, 5, 3, dtype=np.float32)) * 1e19
  pos = jnp.asarray(cloud(3, 6, 3, dtype=np.float32)) * 1e19
  out = np.asarray(dj.log_kde(x, pos, kernel=dj.laplacian(0.5)))
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
  v = dj.mmd_field(x * 1e30, x, x, kernel=dj.laplacian(0.5))
  assert np.all(np.isnan(np.asarray(v)))


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
