"""Losses: Eq. (6) gradient identities on a small generator, MMD and the link family."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import F32_GRAD_RTOL, F32_RTOL, cloud, tol, x64

sg = jax.lax.stop_gradient


def _generator():
  """A tiny two-layer generator f_θ(z) = tanh(z W1 + b1) W2 + b2 in float64."""
  rng = np.random.default_rng(0)
  params = {"w1": rng.normal(size=(3, 8)) * 0.7, "b1": rng.normal(size=8) * 0.1,
            "w2": rng.normal(size=(8, 2)) * 0.7, "b2": np.zeros(2)}
  params = jax.tree_util.tree_map(jnp.asarray, params)
  z = jnp.asarray(rng.normal(size=(10, 3)))
  f = lambda p: jnp.tanh(z @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  return params, f


@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
def test_eq6_log_kde_loss_gradient_equals_sharp_drift_loss_gradient(make):
  """∇θ drift_loss(f_θ, V#) = 2 ∇θ log_kde_loss(f_θ, exclude_self=True) (Eq. (6); 2 from the square in Eq. (1))."""
  with x64():
    params, f = _generator()
    pos = jnp.asarray(cloud(1, 12, 2, shift=0.5))
    kern = make(0.6)

    def drift(p):
      x = f(p)
      v = dj.drift_field(x, pos, sg(x), kernel=kern, normalization="sharp", exclude_self=True)
      return dj.drift_loss(x, v)

    def logkde(p):
      x = f(p)
      return dj.log_kde_loss(x, pos, x, kernel=kern, exclude_self=True)

    chex.assert_trees_all_close(
        jax.jit(jax.grad(drift))(params),
        jax.tree_util.tree_map(lambda g: 2 * g, jax.jit(jax.grad(logkde))(params)),
        rtol=1e-8, atol=1e-12)


def test_eq6_gaussian_naive_drift_equals_log_kde_loss_up_to_sigma2():
  """Gauss# and Naive-Gauss train identically up to the factor σ² (Prop. 8, Eq. (6))."""
  with x64():
    params, f = _generator()
    pos = jnp.asarray(cloud(2, 12, 2))
    s = 0.5
    kern = dj.gaussian(s)
    naive = lambda p: dj.drift_loss(f(p), dj.drift_field(f(p), pos, sg(f(p)), kernel=kern,
                                                         exclude_self=True))
    sharp = lambda p: dj.log_kde_loss(f(p), pos, f(p), kernel=kern, exclude_self=True)
    chex.assert_trees_all_close(jax.jit(jax.grad(naive))(params),
                   jax.tree_util.tree_map(lambda g: 2 * s**2 * g, jax.jit(jax.grad(sharp))(params)),
                   rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
def test_mmd_loss_gradient_equals_mmd_field_drift_loss(make):
  with x64():
    params, f = _generator()
    pos = jnp.asarray(cloud(3, 12, 2, shift=-0.3))
    kern = make(0.9)
    drift = lambda p: dj.drift_loss(f(p), dj.mmd_field(f(p), pos, sg(f(p)), kernel=kern,
                                                       exclude_self=True))
    mmd = lambda p: dj.mmd_loss(f(p), pos, f(p), kernel=kern, exclude_self=True)
    chex.assert_trees_all_close(jax.jit(jax.grad(drift))(params),
                   jax.tree_util.tree_map(lambda g: 2 * g, jax.jit(jax.grad(mmd))(params)),
                   rtol=1e-8, atol=1e-12)


def test_mmd_loss_value_and_mmd2_relation(precision):
  """Value of Eq. (7) by hand, and ∇θ mmd_loss = ½ ∇θ MMD²(p, q_θ) (App. C)."""
  params, f = _generator()
  pos = jnp.asarray(cloud(4, 12, 2))
  s = 0.7
  k = lambda a, b: jnp.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * s**2))
  x = f(params)
  kxx = np.array(k(x, x))
  np.fill_diagonal(kxx, 0.0)
  expect = kxx.sum(1).mean() / 9 - np.asarray(k(x, pos)).mean()
  np.testing.assert_allclose(dj.mmd_loss(x, pos, x, kernel=dj.gaussian(s), exclude_self=True), expect,
                             rtol=tol(precision, 1e-12, F32_RTOL))

  def mmd2(p):  # unbiased within q (diagonal excluded), as in the loss
    xx = f(p)
    kq = k(xx, xx) * (1 - jnp.eye(10))
    return kq.sum() / 90 - 2 * k(xx, pos).mean() + k(pos, pos).mean()

  chex.assert_trees_all_close(jax.tree_util.tree_map(lambda g: 2 * g, jax.jit(jax.grad(
      lambda p: dj.mmd_loss(f(p), pos, f(p), kernel=dj.gaussian(s), exclude_self=True)))(params)),
      jax.jit(jax.grad(mmd2))(params), rtol=tol(precision, 1e-8, F32_GRAD_RTOL),
      atol=tol(precision, 1e-12, 1e-6))  # float32: gradients ~5e-3, errors <= 7.1e-8


def test_kde_link_family(precision):
  """g = log → log-KDE loss; g = identity → MMD potential of k#; a user g by hand."""
  x = jnp.asarray(cloud(5, 8, 2))
  pos = jnp.asarray(cloud(6, 9, 2, shift=1.0))
  kern = dj.laplacian(0.4)
  q = np.exp(np.asarray(dj.log_kde(x, x, kernel=kern, which="sharp", exclude_self=True)))
  p = np.exp(np.asarray(dj.log_kde(x, pos, kernel=kern, which="sharp")))
  np.testing.assert_allclose(dj.kde_link_loss(x, pos, x, kernel=kern, link="log", exclude_self=True),
                             np.mean(np.log(q) - np.log(p)), rtol=tol(precision, 1e-10, F32_RTOL))
  np.testing.assert_allclose(dj.kde_link_loss(x, pos, x, kernel=kern, exclude_self=True),
                             dj.log_kde_loss(x, pos, x, kernel=kern, exclude_self=True),
                             rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(dj.kde_link_loss(x, pos, x, kernel=kern, link="identity", exclude_self=True),
                             np.mean(q - p), rtol=tol(precision, 1e-10, F32_RTOL))
  np.testing.assert_allclose(dj.kde_link_loss(x, pos, x, kernel=kern, link=jnp.sqrt, exclude_self=True),
                             np.mean(np.sqrt(q) - np.sqrt(p)), rtol=tol(precision, 1e-10, F32_RTOL))
  # identity link: the x-gradient is minus the unnormalized field (Prop. 7)
  grad = jax.jit(jax.grad(lambda z: 8 * dj.kde_link_loss(z, pos, sg(z), kernel=kern,
                                                         link="identity",
                                                         exclude_self=True)))(x)
  np.testing.assert_allclose(-grad, dj.drift_field(x, pos, x, kernel=kern, normalization="none",
                                                   exclude_self=True),
                             rtol=tol(precision, 1e-8, F32_GRAD_RTOL),
                             atol=tol(precision, 1e-13, 1e-6))  # float32 errors <= 2.6e-8
  with pytest.raises(ValueError, match="link"):
    dj.kde_link_loss(x, pos, x, kernel=kern, link="exp", exclude_self=True)


def test_drift_loss_value_and_gradient():
  x = jnp.asarray(cloud(7, 5, 3, dtype=np.float32))
  v = jnp.asarray(cloud(8, 5, 3, dtype=np.float32))
  np.testing.assert_allclose(dj.drift_loss(x, v), np.mean(np.sum(np.asarray(v) ** 2, 1)),
                             rtol=1e-6)
  np.testing.assert_allclose(jax.grad(dj.drift_loss)(x, v), -2 * v / 5, rtol=1e-6)
  with pytest.raises(ValueError, match="field"):
    dj.drift_loss(x, v[:4])
