"""The papers' identities in float32, the library's default precision.

Each test here is the float32 twin of a float64 identity test (named in its docstring), on
the same kind of problem (a few points in 2-5 dimensions, widths 0.5-0.8). Tolerances:

* ``RTOL = 1e-5`` relative for a field against the gradient of its potential: both sides are
  softmax-weighted means over <= 10 points of O(1) coordinates, the gradient through a
  log-sum-exp; float32 round-off (eps 1.2e-7) over those short sums leaves a residual of
  1e-7 to 2e-7 relative on these problems (Eq. (18), all four kernels), 50x below the bound.
* ``CURL_TOL = 1e-4`` on the relative Jacobian asymmetry ``‖J − Jᵀ‖ / ‖J‖`` of a conservative
  field: forward-mode derivatives of the same means; the sharp fields show at most 2.2e-6,
  while the Laplace and rational-quadratic normalized fields show 1.5e-2 or more — the
  bound sits between the two by more than 40x on either side.
* ``GRAD_RTOL = 1e-4`` for the parameter-gradient identities (Eq. (6), App. C): sums over a
  10-point batch of products of the above.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import cloud
from drifting_jax import testing
from test_fields import KERNELS  # the float64 tests' kernels, so each twin checks the same
from test_kernels import _k, all_kernels

RTOL = 1e-5
CURL_TOL = 1e-4
GRAD_RTOL = 1e-4



def _problem(seed=0, n=6, m=9, k=7, d=3):
  f32 = functools.partial(cloud, dtype=np.float32)
  return (jnp.asarray(f32(seed, n, d)), jnp.asarray(f32(seed + 1, m, d, shift=0.7)),
          jnp.asarray(f32(seed + 2, k, d, shift=-0.4)))


def test_prop8_gaussian_drift_is_sigma2_grad_log_kde_float32():
  """Twin of ``test_fields.test_prop8_gaussian_drift_is_sigma2_grad_log_kde``."""
  s = 0.6
  kern = dj.gaussian(s)
  x, pos, neg = _problem()
  testing.assert_gradient_field(
      lambda z: dj.drift_field(z, pos, neg, kernel=kern),
      lambda z: dj.log_kde(z, neg, kernel=kern) - dj.log_kde(z, pos, kernel=kern), x,
      scale=s**2, rtol=RTOL, atol=1e-6)
  c = testing.assert_gradient_field(  # c fitted: sigma^2 again
      lambda z: dj.drift_field(z, pos, neg, kernel=kern),
      lambda z: dj.log_kde(z, neg, kernel=kern) - dj.log_kde(z, pos, kernel=kern), x,
      rtol=RTOL, atol=1e-6)
  assert float(c) == pytest.approx(s**2, rel=RTOL)
  assert x.dtype == jnp.float32


@pytest.mark.parametrize("name", list(KERNELS))
def test_eq18_sharp_field_is_grad_log_sharp_kde_float32(name):
  """Twin of ``test_fields.test_eq18_sharp_field_is_grad_log_sharp_kde``."""
  kern = KERNELS[name]()
  x, pos, neg = _problem(1)
  testing.assert_gradient_field(
      lambda z: dj.drift_field(z, pos, neg, kernel=kern, normalization="sharp"),
      lambda z: (dj.log_kde(z, neg, kernel=kern, which="sharp")
                 - dj.log_kde(z, pos, kernel=kern, which="sharp")), x,
      scale=1.0, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("name", list(KERNELS))
def test_prop7_unnormalized_field_is_minus_grad_mmd_potential_float32(name):
  """Twin of ``test_fields.test_prop7_unnormalized_field_is_minus_grad_mmd_potential_of_sharp``:
  ``V^unnorm[k] = −∇ (E_q k#(x, y⁻) − E_p k#(x, y⁺))`` (Eq. (13))."""
  kern = KERNELS[name]()
  x, pos, neg = _problem(2)

  def potential(z):
    mean_k = lambda y: jnp.mean(jnp.exp(kern.log(dj.pairwise_sqdist(z, y), "sharp")), 1)
    return mean_k(neg) - mean_k(pos)

  testing.assert_gradient_field(
      lambda z: dj.drift_field(z, pos, neg, kernel=kern, normalization="none"), potential, x,
      scale=1.0, rtol=RTOL, atol=1e-7)


def test_corollary18_deng_field_equals_eq26_float32():
  """Twin of ``test_fields.test_corollary18_deng_field_equals_eq26``: Eq. (26) written out
  term by term in float64 numpy, the library's float32 field against it."""
  for kern in (dj.laplacian(0.5), dj.gaussian(0.7)):
    x, pos, neg = _problem(5, n=6, m=8, k=8)
    x64_, p64, n64 = (np.asarray(a, np.float64) for a in (x, pos, neg))
    d = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1)  # noqa: E731
    if kern.name == "laplace":
      kp, kn = np.exp(-np.sqrt(d(x64_, p64)) / 0.5), np.exp(-np.sqrt(d(x64_, n64)) / 0.5)
    else:
      kp, kn = np.exp(-d(x64_, p64) / (2 * 0.49)), np.exp(-d(x64_, n64) / (2 * 0.49))
    num = np.einsum("ij,ik,jkd->id", kp, kn, p64[:, None] - n64[None]) / 64
    expect = num / (kp.mean(1) + kn.mean(1))[:, None] ** 2
    got = dj.deng_field(x, pos, neg, kernel=kern)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), expect, rtol=RTOL,
                               atol=RTOL * np.abs(expect).max())


@pytest.mark.parametrize("d", [2, 5])
def test_sharp_fields_are_conservative_float32(d):
  """Twin of ``test_calculus.test_curl_of_sharp_normalized_fields_vanishes``."""
  x, pos, _ = _problem(3, n=5, m=8, d=d)
  for name, make in KERNELS.items():
    kern = make()
    testing.assert_conservative(
        lambda z, k=kern: dj.sub_field(z, pos, kernel=k, normalization="sharp"), x,
        rtol=CURL_TOL, atol=1e-7)


@pytest.mark.parametrize("name", ["laplace", "rq"])
def test_normalized_fields_of_other_kernels_are_not_conservative_float32(name):
  """Twin of ``test_calculus.test_curl_of_normalized_field_zero_only_for_gaussian``: the
  float32 tolerance above still tells a non-conservative field apart (Prop. 10)."""
  x, pos, _ = _problem(3, n=5, m=8, d=2)
  kern = KERNELS[name]()
  testing.assert_conservative(lambda z: dj.sub_field(z, pos, kernel=dj.gaussian(0.8)), x,
                              rtol=CURL_TOL, atol=1e-7)
  with pytest.raises(AssertionError, match="relative asymmetry"):
    testing.assert_conservative(lambda z: dj.sub_field(z, pos, kernel=kern), x,
                                rtol=CURL_TOL, atol=1e-7)


def _generator():
  w = jnp.asarray(cloud(11, 2, 2, dtype=np.float32)) * 0.5
  b = jnp.asarray(cloud(12, 1, 2, dtype=np.float32))[0]
  z = jnp.asarray(cloud(13, 10, 2, dtype=np.float32))
  return {"w": w, "b": b}, (lambda p, zz: jnp.tanh(zz @ p["w"] + p["b"])), z


def test_eq6_gauss_sharp_loss_trains_like_naive_gauss_field_float32():
  """Twin of ``test_losses.test_eq6_gaussian_naive_drift_equals_log_kde_loss_up_to_sigma2``:
  the parameter gradient of Gauss# is that of the stop-gradient Naive-Gauss loss / (2σ²)."""
  params, gen, z = _generator()
  pos = jnp.asarray(cloud(2, 12, 2, dtype=np.float32))
  s = 0.5
  kern = dj.gaussian(s)
  c = testing.assert_loss_trains_like_field(
      lambda x: dj.log_kde_loss(x, pos, x, kernel=kern, exclude_self=True),
      lambda x: dj.drift_field(x, pos, x, kernel=kern, exclude_self=True), gen, params, z,
      rtol=GRAD_RTOL)
  np.testing.assert_allclose(c, 1.0 / (2 * s**2), rtol=GRAD_RTOL)


@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
def test_mmd_loss_trains_like_mmd_field_float32(make):
  """Twin of ``test_losses.test_mmd_loss_gradient_equals_mmd_field_drift_loss``."""
  params, gen, z = _generator()
  pos = jnp.asarray(cloud(3, 12, 2, shift=-0.3, dtype=np.float32))
  kern = make(0.9)
  c = testing.assert_loss_trains_like_field(
      lambda x: dj.mmd_loss(x, pos, x, kernel=kern, exclude_self=True),
      lambda x: dj.mmd_field(x, pos, x, kernel=kern, exclude_self=True), gen, params, z,
      rtol=GRAD_RTOL)
  np.testing.assert_allclose(c, 0.5, rtol=GRAD_RTOL)


# One kernel evaluation and its derivative: measured residuals 0.6e-7 to 5.8e-7 relative
# (a few eps) for all five kernels, so 5e-6 leaves ~10x.
KERNEL_RTOL = 5e-6


@pytest.mark.parametrize("idx", range(5))
def test_sharp_and_flat_gradient_identities_float32(idx):
  """Twins of ``test_kernels.test_sharp_gradient_identity`` and
  ``test_flat_gradient_identity_and_flat_of_sharp``: ``∇ₓ k# = k (y − x)`` (Eq. (10)),
  ``∇ₓ k = k♭ (y − x)`` (Eq. (11)) and ``−2 d k#/d(r²) = k`` (Eq. (12)), in float32."""
  kern = all_kernels()[idx]
  xs = cloud(0, 6, 3, scale=0.8, dtype=np.float32)
  ys = cloud(1, 6, 3, scale=0.8, dtype=np.float32)
  grad_sharp, grad_k = jax.jit(jax.grad(_k(kern, "sharp"))), jax.jit(jax.grad(_k(kern, "k")))
  for x, y in zip(xs, ys):
    x, y = jnp.asarray(x), jnp.asarray(y)
    for got, weight in ((grad_sharp(x, y), _k(kern, "k")(x, y)),
                        (grad_k(x, y), _k(kern, "flat")(x, y))):
      assert got.dtype == jnp.float32
      want = np.asarray(weight, np.float64) * np.asarray(y - x, np.float64)
      np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=KERNEL_RTOL,
                                 atol=KERNEL_RTOL * np.abs(want).max())
  r2 = jnp.array([0.0, 0.03, 0.5, 2.0, 9.0], jnp.float32)
  d_sharp = jax.jit(jax.vmap(jax.grad(lambda t: jnp.exp(kern.log_sharp(t)))))(r2)
  np.testing.assert_allclose(-2.0 * np.asarray(d_sharp, np.float64),
                             np.exp(np.asarray(kern.log_k(r2), np.float64)), rtol=KERNEL_RTOL)


@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
def test_eq6_log_kde_loss_trains_like_sharp_field_float32(make):
  """Twin of ``test_losses.test_eq6_log_kde_loss_gradient_equals_sharp_drift_loss_gradient``:
  ``∇θ log_kde_loss = ½ ∇θ drift_loss(f_θ, V#)`` for every kernel (Eq. (6))."""
  params, gen, z = _generator()
  pos = jnp.asarray(cloud(1, 12, 2, shift=0.5, dtype=np.float32))
  kern = make(0.6)
  c = testing.assert_loss_trains_like_field(
      lambda x: dj.log_kde_loss(x, pos, x, kernel=kern, exclude_self=True),
      lambda x: dj.drift_field(x, pos, x, kernel=kern, normalization="sharp",
                               exclude_self=True), gen, params, z, rtol=GRAD_RTOL)
  np.testing.assert_allclose(c, 0.5, rtol=GRAD_RTOL)


@pytest.mark.parametrize("name", list(KERNELS))
def test_eq8_mmd_field_is_minus_grad_mmd_potential_float32(name):
  """Twin of ``test_fields.test_mmd_field_is_minus_grad_mmd_potential``:
  ``V^MMD[k] = −∇ₓ (E_q k(x, y⁻) − E_p k(x, y⁺))`` (Eq. (8))."""
  kern = KERNELS[name]()
  x, pos, neg = _problem(3)
  testing.assert_gradient_field(
      lambda z: dj.mmd_field(z, pos, neg, kernel=kern),
      lambda z: (jnp.exp(dj.log_kde(z, neg, kernel=kern))
                 - jnp.exp(dj.log_kde(z, pos, kernel=kern))), x,
      scale=1.0, rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("column_normalize", [False, True])
def test_deng_field_antisymmetric_and_zero_at_p_equals_q_float32(column_normalize):
  """Twin of ``test_fields.test_deng_field_antisymmetric_and_vanishes_at_p_equals_q``:
  swapping the roles of p and q flips the sign (the same sums, mirrored), and the field at
  p = q vanishes (measured: exactly 0 in float32 here; the bound allows a few eps)."""
  x, pos, neg = _problem(6, n=5, m=7, k=7)
  kern = dj.laplacian(0.6)
  f = lambda p, q: dj.deng_field(x, p, q, kernel=kern, column_normalize=column_normalize)
  v = f(pos, neg)
  np.testing.assert_allclose(v, -f(neg, pos), rtol=RTOL, atol=RTOL * float(jnp.abs(v).max()))
  np.testing.assert_allclose(f(pos, pos), 0.0, atol=1e-6)
