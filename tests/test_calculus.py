"""Curl, Jacobians and potentials: Fig. 5 of Franz et al. as numbers, Lemma 4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import F32_ATOL, F32_GRAD_RTOL, F32_RTOL, cloud, tol, x64

MAKERS = {"gauss": dj.gaussian, "laplace": dj.laplacian, "rq": dj.rational_quadratic}


def test_jacobian_and_curl_of_linear_field(precision):
  """V(x) = x Aᵀ: J = A and curl_(i<j) = A_ij − A_ji in the documented order."""
  a = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)))
  x = jnp.asarray(cloud(1, 3, 4))
  f = lambda z: z @ a.T
  np.testing.assert_allclose(dj.jacobian(f, x), np.broadcast_to(a, (3, 4, 4)),
                             rtol=tol(precision, 1e-12, F32_RTOL))
  i, j = dj.curl_indices(4)
  assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
  np.testing.assert_allclose(dj.curl(f, x)[0], a[i, j] - a[j, i],
                             rtol=tol(precision, 1e-12, F32_RTOL))
  # D = 2: the scalar curl ∂V_x/∂y − ∂V_y/∂x
  rot = lambda z: jnp.stack([-z[:, 1], z[:, 0]], 1)  # V = (−y, x): ∂Vx/∂y − ∂Vy/∂x = −2
  np.testing.assert_allclose(dj.curl(rot, jnp.ones((2, 2))), -2.0)
  np.testing.assert_allclose(dj.asymmetry(rot, jnp.ones((2, 2))), 1.0)
  with pytest.raises(ValueError, match="D >= 2"):
    dj.curl_indices(1)


def _data(d, seed=0):
  # a few clusters of data, queries spread between them
  pos = np.concatenate([cloud(seed, 6, d, shift=1.0, scale=0.4),
                        cloud(seed + 1, 6, d, shift=-1.0, scale=0.4)])
  x = cloud(seed + 2, 15, d, scale=1.3)
  return jnp.asarray(x), jnp.asarray(pos)


@pytest.mark.parametrize("d", [2, 5])
def test_curl_of_normalized_field_zero_only_for_gaussian(d, precision):
  """Fig. 5: curl(V_p^+) ≈ 0 for the Gaussian, clearly non-zero for Laplacian and RQ."""
  x, pos = _data(d)
  out = {}
  for name, make in MAKERS.items():
    f = lambda z, k=make(0.5): dj.sub_field(z, pos, kernel=k)
    c = jax.jit(lambda z: dj.curl(f, z))(x)  # jitted: one compile, not op-by-op jacfwd
    scale = jnp.max(jnp.abs(jax.jit(lambda z: dj.jacobian(f, z))(x)))
    out[name] = float(jnp.max(jnp.abs(c)) / scale)
  # float32: the Gaussian's relative curl is 6.8e-7 at most (round-off of forward-mode
  # derivatives of softmax means), Laplace / RQ >= 0.16: bound 1e-5 between the two
  assert out["gauss"] < tol(precision, 1e-10, 1e-5), out
  assert out["laplace"] > 1e-2 and out["rq"] > 1e-2, out


@pytest.mark.parametrize("d", [2, 5])
def test_curl_of_sharp_normalized_fields_vanishes(d):
  """The sharp-normalized field (Eq. (18)) is conservative for every kernel."""
  with x64():
    x, pos = _data(d, seed=3)
    makers = dict(MAKERS, generic=lambda s: dj.radial(lambda u: (1 + u) ** -3.0, bandwidth=s))
    for name, make in makers.items():
      f = lambda z, k=make(0.5): dj.sub_field(z, pos, kernel=k, normalization="sharp")
      c = jax.jit(lambda z: dj.curl(f, z))(x)
      scale = jnp.max(jnp.abs(jax.jit(lambda z: dj.jacobian(f, z))(x)))
      assert float(jnp.max(jnp.abs(c)) / scale) < 1e-9, name
      assert float(jax.jit(lambda z: dj.asymmetry(f, z))(x)) < 1e-9, name


def test_asymmetry_measures_non_conservatism(precision):
  x, pos = _data(2, seed=5)
  gauss = float(dj.asymmetry(lambda z: dj.sub_field(z, pos, kernel=dj.gaussian(0.5)), x))
  lap = float(dj.asymmetry(lambda z: dj.sub_field(z, pos, kernel=dj.laplacian(0.5)), x))
  assert gauss < tol(precision, 1e-10, 1e-5) and lap > 1e-3  # float32 Gaussian: 6.1e-8


def test_line_integral_potential_recovers_log_kde_ratio(precision):
  """For V# = −∇ log(q#/p#), the straight-line potential is log(q#/p#)(x) − log(q#/p#)(o)."""
  x, pos = _data(3, seed=7)
  neg = jnp.asarray(cloud(9, 8, 3, scale=0.8))
  kern = dj.rational_quadratic(0.6)
  f = lambda z: dj.drift_field(z, pos, neg, kernel=kern, normalization="sharp")
  pot = lambda z: (dj.log_kde(z, neg, kernel=kern, which="sharp")
                   - dj.log_kde(z, pos, kernel=kern, which="sharp"))
  origin = jnp.array([0.1, -0.2, 0.3])
  got = jax.jit(lambda z: dj.line_integral_potential(f, z, origin=origin, num_nodes=96))(x)
  np.testing.assert_allclose(got, pot(x) - pot(origin[None])[0],
                             rtol=tol(precision, 1e-7, F32_RTOL), atol=tol(precision, 1e-9, 1e-6))  # float32: 4.5e-7
  # and −∇L = V for this conservative field
  grad = jax.jit(jax.grad(lambda z: jnp.sum(dj.line_integral_potential(
      f, z, origin=origin, num_nodes=96))))(x)
  np.testing.assert_allclose(-grad, f(x), rtol=tol(precision, 1e-6, F32_GRAD_RTOL),
                             atol=tol(precision, 1e-8, F32_ATOL))
  with pytest.raises(ValueError, match="origin"):
    dj.line_integral_potential(f, x, origin=jnp.zeros(2))
