"""Kernels: the defining identities of sharp and flat (Def. 6, Eq. (10)–(12)), Table 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from drifting_jax import kernels
from conftest import F32_ATOL, F32_RTOL, cloud, tol, x64

BW = 0.7


def named_kernels():
  return [dj.gaussian(BW), dj.laplacian(BW), dj.rational_quadratic(BW)]


def generic_kernels():
  """Generic profiles through :func:`radial`: RQ with exponent 3 and a Gaussian-Cauchy mix."""
  return [
      dj.radial(lambda u: (1.0 + u) ** -3.0, bandwidth=BW, name="rq3"),
      dj.radial(lambda u: 0.5 * jnp.exp(-0.5 * u) + 0.5 / (1.0 + u) ** 2, bandwidth=BW,
                name="mix"),
  ]


def all_kernels():
  return named_kernels() + generic_kernels()


def _k(kern, which):
  return lambda x, y: jnp.exp(kern.log(jnp.sum((x - y) ** 2), which))


@pytest.mark.parametrize("idx", range(5))
def test_sharp_gradient_identity(idx):
  """∇ₓ k#(x, y) = k(x, y)(y − x), Eq. (10)."""
  with x64():
    kern = all_kernels()[idx]
    xs, ys = cloud(0, 6, 3, scale=0.8), cloud(1, 6, 3, scale=0.8)
    for x, y in zip(xs, ys):
      grad = jax.grad(_k(kern, "sharp"))(jnp.asarray(x), jnp.asarray(y))
      expect = _k(kern, "k")(x, y) * (y - x)
      np.testing.assert_allclose(grad, expect, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("idx", range(5))
def test_flat_gradient_identity_and_flat_of_sharp(idx):
  """∇ₓ k = k♭ (y − x) (Eq. (11)) and (k#)♭ = k, i.e. −2 d k#/d(r²) = k (Eq. (12))."""
  with x64():
    kern = all_kernels()[idx]
    xs, ys = cloud(2, 6, 3, scale=0.8), cloud(3, 6, 3, scale=0.8)
    for x, y in zip(xs, ys):
      grad = jax.grad(_k(kern, "k"))(jnp.asarray(x), jnp.asarray(y))
      np.testing.assert_allclose(grad, _k(kern, "flat")(x, y) * (y - x), rtol=1e-7,
                                 atol=1e-12)
    r2 = jnp.array([0.0, 0.03, 0.5, 2.0, 9.0])
    d_sharp = jax.vmap(jax.grad(lambda t: jnp.exp(kern.log_sharp(t))))(r2)
    np.testing.assert_allclose(-2.0 * d_sharp, jnp.exp(kern.log_k(r2)), rtol=1e-7)


def test_table1_closed_forms(precision):
  """Table 1 of Franz et al. evaluated directly from its formulas."""
  s = 0.9
  r = np.array([0.0, 0.1, 0.5, 1.3, 4.0])
  r2 = r**2
  gk = np.exp(-r2 / (2 * s**2))
  lk = np.exp(-r / s)
  qk = (1 + r2 / s**2) ** -2
  np.testing.assert_allclose(np.exp(dj.gaussian(s).log_sharp(r2)), s**2 * gk,
                             rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(np.exp(dj.gaussian(s).log_flat(r2)), gk / s**2,
                             rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(np.exp(dj.laplacian(s).log_k(r2)), lk,
                             rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(np.exp(dj.laplacian(s).log_sharp(r2)), s * (r + s) * lk,
                             rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(np.exp(dj.laplacian(s).log_flat(r2[1:])),
                             lk[1:] / (s * r[1:]), rtol=tol(precision, 1e-12, F32_RTOL))
  assert np.isposinf(dj.laplacian(s).log_flat(0.0))  # singular at zero distance
  np.testing.assert_allclose(np.exp(dj.rational_quadratic(s).log_sharp(r2)),
                             s**2 / 2 * np.sqrt(qk), rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(np.exp(dj.rational_quadratic(s).log_flat(r2)),
                             4 / s**2 * qk**1.5, rtol=tol(precision, 1e-12, F32_RTOL))


@pytest.mark.parametrize("name,log_profile", [
    ("gauss", lambda u: -0.5 * u),
    ("laplace", lambda u: -jnp.sqrt(u)),
    ("rq", lambda u: -2.0 * jnp.log1p(u)),
])
def test_radial_quadrature_matches_closed_forms(name, log_profile, precision):
  """Eq. (12) by quadrature (generic profile, given as log φ) equals Table 1's closed forms,
  from zero distance to 300 bandwidths."""
  s = 1.7
  r2 = jnp.array([0.0, 1e-3, 0.2, 1.0, 7.0, 60.0, 1e3, 1e5]) * s**2
  generic = dj.radial(log_profile, bandwidth=s, log_profile=True)
  closed = kernels.get(name, s)
  np.testing.assert_allclose(generic.log_k(r2), closed.log_k(r2),
                             rtol=tol(precision, 1e-12, F32_RTOL),
                             atol=tol(precision, 1e-12, F32_ATOL))
  np.testing.assert_allclose(generic.log_sharp(r2), closed.log_sharp(r2),
                             rtol=tol(precision, 1e-6, F32_RTOL),
                             atol=tol(precision, 1e-6, F32_ATOL))
  pos = r2 > 0
  np.testing.assert_allclose(generic.log_flat(r2[pos]), closed.log_flat(r2[pos]),
                             rtol=tol(precision, 1e-9, F32_RTOL))


def test_log_profile_option_equals_plain_profile(precision):
  r2 = jnp.linspace(0.0, 5.0, 7)
  a = dj.radial(lambda u: (1 + u) ** -2.5, bandwidth=0.4)
  b = dj.radial(lambda u: -2.5 * jnp.log1p(u), bandwidth=0.4, log_profile=True)
  np.testing.assert_allclose(a.log_sharp(r2), b.log_sharp(r2), rtol=tol(precision, 1e-12, F32_RTOL))


def test_traced_bandwidth_under_jit_and_vmap():
  r2 = jnp.array([0.0, 0.5, 2.0])

  @jax.jit
  def f(bw):
    return dj.laplacian(bw).log_sharp(r2)

  for bw in (0.3, 2.0):
    np.testing.assert_allclose(f(bw), dj.laplacian(bw).log_sharp(r2), rtol=1e-6)
  out = jax.vmap(lambda bw: dj.gaussian(bw).log_k(r2))(jnp.array([0.5, 1.0]))
  np.testing.assert_allclose(out[1], -0.5 * r2, rtol=1e-6)
  # a kernel is a pytree whose leaf is the bandwidth
  leaves = jax.tree_util.tree_leaves(dj.rational_quadratic(0.5))
  assert len(leaves) == 1 and float(leaves[0]) == 0.5


def test_pairwise_sqdist(precision):
  x, y = cloud(4, 5, 3), cloud(5, 4, 3)
  ref = ((x[:, None] - y[None]) ** 2).sum(-1)
  np.testing.assert_allclose(dj.pairwise_sqdist(x, y), ref,
                             rtol=tol(precision, 1e-10, F32_RTOL),
                             atol=tol(precision, 1e-12, F32_ATOL))
  assert np.all(np.asarray(dj.pairwise_sqdist(x, x)) >= 0)


@pytest.mark.parametrize("bw", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_bandwidth_raises(bw):
  for make in (dj.gaussian, dj.laplacian, dj.rational_quadratic):
    with pytest.raises(ValueError, match="bandwidth"):
      make(bw)
  with pytest.raises(ValueError, match="bandwidth"):
    dj.radial(lambda u: jnp.exp(-u), bandwidth=bw)


def test_unknown_kernel_name_and_which():
  with pytest.raises(ValueError, match="name"):
    kernels.get("cauchy", 1.0)
  with pytest.raises(ValueError, match="which"):
    dj.gaussian(1.0).log(jnp.ones(2), "double-sharp")
