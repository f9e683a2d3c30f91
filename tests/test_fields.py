"""Drift fields against the identities of Franz et al. (Props. 7, 8, 10; Eq. (18); Cor. 18)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import F32_ATOL, F32_GRAD_RTOL, F32_RTOL, cloud, tol, x64

KERNELS = {
    "gauss": lambda: dj.gaussian(0.8),
    "laplace": lambda: dj.laplacian(0.8),
    "rq": lambda: dj.rational_quadratic(0.8),
    "generic": lambda: dj.radial(lambda u: (1.0 + u) ** -3.0, bandwidth=0.8),
}


def _problem(seed=0, n=6, m=9, k=7, d=3):
  return cloud(seed, n, d), cloud(seed + 1, m, d, shift=0.7), cloud(seed + 2, k, d, shift=-0.4)


def _grad_rows(f, x):
  """Row-wise gradient of a per-point scalar function ``f: [N, D] -> [N]``."""
  return jax.jit(jax.grad(lambda z: jnp.sum(f(z))))(x)


def test_prop8_gaussian_drift_is_sigma2_grad_log_kde(precision):
  """V_p^+ = σ² ∇ log p_KDE[k] and V = σ² ∇ log(p_KDE/q_KDE) for the Gaussian (Eq. (15)-(16)).
  float32: autodiff gradients of log-sum-exps against softmax-weighted sums, F32_GRAD_RTOL."""
  s = 0.6
  kern = dj.gaussian(s)
  x, pos, neg = map(jnp.asarray, _problem())
  v_plus = dj.sub_field(x, pos, kernel=kern)
  np.testing.assert_allclose(
      v_plus, s**2 * _grad_rows(lambda z: dj.log_kde(z, pos, kernel=kern), x),
      rtol=tol(precision, 1e-9, F32_GRAD_RTOL), atol=tol(precision, 0.0, F32_ATOL))
  v = dj.drift_field(x, pos, neg, kernel=kern)
  pot = lambda z: dj.log_kde(z, pos, kernel=kern) - dj.log_kde(z, neg, kernel=kern)
  np.testing.assert_allclose(v, s**2 * _grad_rows(pot, x), rtol=tol(precision, 1e-9,
                                                                     F32_GRAD_RTOL),
                             atol=tol(precision, 1e-12, F32_ATOL))


@pytest.mark.parametrize("name", list(KERNELS))
def test_eq18_sharp_field_is_grad_log_sharp_kde(name):
  """V# = ∇ log p_KDE[k#] − ∇ log q_KDE[k#] (Eqs. (18)-(19)), every kernel."""
  with x64():
    kern = KERNELS[name]()
    x, pos, neg = map(jnp.asarray, _problem(1))
    pot = lambda z: (dj.log_kde(z, pos, kernel=kern, which="sharp")
                     - dj.log_kde(z, neg, kernel=kern, which="sharp"))
    np.testing.assert_allclose(dj.drift_field(x, pos, neg, kernel=kern, normalization="sharp"),
                               _grad_rows(pot, x), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", list(KERNELS))
def test_prop7_unnormalized_field_is_minus_grad_mmd_potential_of_sharp(name):
  """V^unnorm[k] = −∇ₓ L^MMD[k#], L^MMD[k](x) = E_q k(x, y⁻) − E_p k(x, y⁺) (Eq. (13))."""
  with x64():
    kern = KERNELS[name]()
    x, pos, neg = map(jnp.asarray, _problem(2))
    pot = lambda z: (jnp.exp(dj.log_kde(z, neg, kernel=kern, which="sharp"))
                     - jnp.exp(dj.log_kde(z, pos, kernel=kern, which="sharp")))
    np.testing.assert_allclose(dj.drift_field(x, pos, neg, kernel=kern, normalization="none"),
                               -_grad_rows(pot, x), rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("name", list(KERNELS))
def test_mmd_field_is_minus_grad_mmd_potential(name):
  """Eq. (8): V^MMD[k] = −∇ₓ L^MMD[k]."""
  with x64():
    kern = KERNELS[name]()
    x, pos, neg = map(jnp.asarray, _problem(3))
    pot = lambda z: (jnp.exp(dj.log_kde(z, neg, kernel=kern))
                     - jnp.exp(dj.log_kde(z, pos, kernel=kern)))
    np.testing.assert_allclose(dj.mmd_field(x, pos, neg, kernel=kern), -_grad_rows(pot, x),
                               rtol=1e-8, atol=1e-13)


def test_prop10_normalized_equals_sharp_only_for_gaussian(precision):
  """Gaussian: V = σ² V# exactly; Laplacian / RQ / generic: the ratio varies with x."""
  x, pos, neg = map(jnp.asarray, _problem(4, n=12))
  s = 0.8
  g = dj.gaussian(s)
  np.testing.assert_allclose(dj.drift_field(x, pos, neg, kernel=g),
                             s**2 * dj.drift_field(x, pos, neg, kernel=g,
                                                   normalization="sharp"),
                             rtol=tol(precision, 1e-10, F32_RTOL), atol=tol(precision, 0.0, F32_ATOL))
  for name in ("laplace", "rq", "generic"):
    kern = KERNELS[name]()
    # compare sub-fields, which are parallel: their norm ratio is Z#/Z, constant iff k# ∝ k
    a = dj.sub_field(x, pos, kernel=kern)
    b = dj.sub_field(x, pos, kernel=kern, normalization="sharp")
    cos = jnp.sum(a * b, 1) / jnp.linalg.norm(a, axis=1) / jnp.linalg.norm(b, axis=1)
    np.testing.assert_allclose(cos, 1.0, rtol=tol(precision, 1e-10, F32_RTOL))
    ratio = jnp.linalg.norm(a, axis=1) / jnp.linalg.norm(b, axis=1)
    assert float(jnp.std(ratio) / jnp.mean(ratio)) > 1e-2, name


def test_corollary18_deng_field_equals_eq26():
  """With N_pos = N_neg and no column normalization, Deng's joint softmax gives Eq. (26)."""
  with x64():
    for kern in (dj.laplacian(0.5), dj.gaussian(0.7)):
      x, pos, neg = map(jnp.asarray, _problem(5, n=6, m=8, k=8))
      kp = np.exp(np.asarray(kern.log_k(dj.pairwise_sqdist(x, pos))))
      kn = np.exp(np.asarray(kern.log_k(dj.pairwise_sqdist(x, neg))))
      zp, zq = kp.mean(1), kn.mean(1)
      # E_{p,q}[k⁺ k⁻ (y⁺ − y⁻)] by the explicit double sum
      num = np.einsum("ij,ik,jkd->id", kp, kn, pos[:, None] - neg[None]) / (8 * 8)
      expect = num / (zp + zq)[:, None] ** 2
      np.testing.assert_allclose(dj.deng_field(x, pos, neg, kernel=kern), expect, rtol=1e-9)
      # ... which is not the naive field of Eq. (3)
      assert not np.allclose(expect, dj.drift_field(x, pos, neg, kernel=kern), rtol=1e-2)


@pytest.mark.parametrize("column_normalize", [False, True])
def test_deng_field_antisymmetric_and_vanishes_at_p_equals_q(column_normalize):
  with x64():
    x, pos, neg = map(jnp.asarray, _problem(6, n=5, m=7, k=7))
    kern = dj.laplacian(0.6)
    f = lambda p, q: dj.deng_field(x, p, q, kernel=kern, column_normalize=column_normalize)
    np.testing.assert_allclose(f(pos, neg), -f(neg, pos), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(f(pos, pos), 0.0, atol=1e-13)


def test_doubly_stochastic_field_is_algorithm1(precision):
  """Secretly-SM Alg. 1 written out step by step in numpy (Eq. (40))."""
  s = 0.9
  x, pos = _problem(7, n=6, m=5)[:2]
  got = dj.doubly_stochastic_field(jnp.asarray(x), jnp.asarray(pos), jnp.asarray(x),
                                   bandwidth=s, exclude_self=True)
  d_pos = ((x[:, None] - pos[None]) ** 2).sum(-1)
  d_neg = ((x[:, None] - x[None]) ** 2).sum(-1)
  np.fill_diagonal(d_neg, np.inf)
  logit = np.concatenate([-d_pos, -d_neg], 1) / (2 * s**2)
  e = np.exp(logit)
  a = np.sqrt(e / e.sum(1, keepdims=True) * e / e.sum(0, keepdims=True))
  a_pos, a_neg = a[:, :5], a[:, 5:]
  w_pos = a_pos * a_neg.sum(1, keepdims=True)
  w_neg = a_neg * a_pos.sum(1, keepdims=True)
  np.testing.assert_allclose(got, w_pos @ pos - w_neg @ x, rtol=tol(precision, 1e-10, F32_RTOL))


def test_multiscale_sums_and_normalizes(precision):
  x, pos, neg = map(jnp.asarray, _problem(8))
  fn = lambda a, p, n, s: dj.drift_field(a, p, n, kernel=dj.gaussian(s))
  bws = (0.3, 1.0, 2.0)
  kerns = [dj.gaussian(s) for s in bws]
  total = dj.multiscale(dj.drift_field, kerns)(x, pos, neg)
  np.testing.assert_allclose(total, sum(fn(x, pos, neg, s) for s in bws),
                             rtol=tol(precision, 1e-12, F32_RTOL))
  normed = dj.multiscale(dj.drift_field, kerns, normalize=True)(x, pos, neg)
  expect = sum(fn(x, pos, neg, s) / jnp.sqrt(jnp.mean(fn(x, pos, neg, s) ** 2)) for s in bws)
  np.testing.assert_allclose(normed, expect, rtol=tol(precision, 1e-12, F32_RTOL))
  # numbers are passed as bandwidth=, further keywords to every call
  ds = dj.multiscale(dj.doubly_stochastic_field, bws, exclude_self=True)(x, pos, x)
  np.testing.assert_allclose(ds, sum(dj.doubly_stochastic_field(x, pos, x, bandwidth=s,
                                                                exclude_self=True)
                                     for s in bws), rtol=tol(precision, 1e-12, F32_RTOL))
  with pytest.raises(ValueError, match="scales"):
    dj.multiscale(dj.drift_field, [])
  with pytest.raises(ValueError, match="scales"):
    dj.multiscale(dj.doubly_stochastic_field, [0.1, -1.0])


def test_fields_jit_and_vmap_over_groups():
  g = 3
  xs = jnp.asarray(np.stack([cloud(s, 5, 2, dtype=np.float32) for s in range(g)]))
  ps = jnp.asarray(np.stack([cloud(s + 5, 6, 2, dtype=np.float32) for s in range(g)]))
  kern = dj.laplacian(0.5)
  fns = {
      "kde": lambda a, p: dj.drift_field(a, p, a, kernel=kern, exclude_self=True),
      "sharp": lambda a, p: dj.drift_field(a, p, a, kernel=kern, normalization="sharp",
                                           exclude_self=True),
      "none": lambda a, p: dj.drift_field(a, p, a, kernel=kern, normalization="none"),
      "mmd": lambda a, p: dj.mmd_field(a, p, a, kernel=kern, exclude_self=True),
      "deng": lambda a, p: dj.deng_field(a, p, a, kernel=kern, exclude_self=True,
                                         column_normalize=True),
      "ds": lambda a, p: dj.doubly_stochastic_field(a, p, a, bandwidth=0.7, exclude_self=True),
  }
  for name, fn in fns.items():
    out = jax.jit(jax.vmap(fn))(xs, ps)
    for i in range(g):
      np.testing.assert_allclose(out[i], fn(xs[i], ps[i]), rtol=1e-4, atol=1e-5, err_msg=name)


def test_traced_bandwidth_in_fields():
  x, pos = (jnp.asarray(a, jnp.float32) for a in _problem(9)[:2])
  f = jax.jit(lambda s: dj.doubly_stochastic_field(x, pos, x, bandwidth=s, exclude_self=True))
  np.testing.assert_allclose(f(0.5), dj.doubly_stochastic_field(x, pos, x, bandwidth=0.5, exclude_self=True),
                             rtol=1e-5, atol=1e-6)


def test_joint_softmax_field_vanishes_when_data_are_far(precision):
  """By Eq. (26), V̄ ≈ E_p[k(y⁺ − x)] / Z_q ∝ Z_p/Z_q when Z_p ≪ Z_q: Deng's joint
  normalization loses the attraction to far data, the naive field (Eq. 3) does not."""
  x = jnp.asarray(cloud(20, 16, 3, scale=0.1))
  pos = jnp.asarray(cloud(21, 16, 3, shift=3.0, scale=0.1))
  kern = dj.gaussian(0.3)
  v_deng = dj.deng_field(x, pos, x, kernel=kern, exclude_self=True)
  v_naive = dj.drift_field(x, pos, x, kernel=kern, exclude_self=True)
  log_zp_over_zq = (dj.log_kde(x, pos, kernel=kern)
                    - dj.log_kde(x, x, kernel=kern, exclude_self=True))
  assert float(jnp.max(log_zp_over_zq)) < np.log(1e-50)  # in log space: e^-150 or less
  # naive attraction points at the data with norm ≈ the distance (≈ 3√3), in float32 too:
  # its softmax over logits does not underflow
  assert float(jnp.min(jnp.linalg.norm(v_naive, axis=1))) > 4.0
  # Deng's field is ∝ Z_p/Z_q: 1e-50 or less in float64, exactly 0 in float32 (below the
  # smallest subnormal, 1.4e-45), both < 1e-40
  ratio = jnp.linalg.norm(v_deng, axis=1) / jnp.linalg.norm(v_naive, axis=1)
  assert float(jnp.max(ratio)) < 1e-40
