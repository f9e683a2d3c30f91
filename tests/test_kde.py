"""log-KDE (Def. 2): against direct sums, leave-one-out, weights, and streaming."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import F32_RTOL, cloud, tol


def _direct(kern, x, y, which, weights=None, exclude_self=False):
  d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
  vals = np.exp(np.asarray(kern.log(jnp.asarray(d2), which)))
  w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
  mat = vals * w[None]
  if exclude_self:
    np.fill_diagonal(mat, 0.0)
    norm = w.sum() - w
  else:
    norm = np.full(len(x), w.sum())
  return np.log(mat.sum(1) / norm)


@pytest.mark.parametrize("which", ["k", "sharp", "flat"])
@pytest.mark.parametrize("make", [dj.gaussian, dj.laplacian, dj.rational_quadratic])
def test_log_kde_matches_direct_sum(make, which, precision):
  kern = make(0.8)
  x, y = cloud(0, 7, 3), cloud(1, 9, 3, shift=0.5)
  w = np.random.default_rng(2).uniform(0.1, 2.0, 9)
  np.testing.assert_allclose(dj.log_kde(x, y, kernel=kern, which=which),
                             _direct(kern, x, y, which), rtol=tol(precision, 1e-10, F32_RTOL))
  np.testing.assert_allclose(dj.log_kde(x, y, kernel=kern, which=which, weights=w),
                             _direct(kern, x, y, which, w), rtol=tol(precision, 1e-10, F32_RTOL))


def test_exclude_self_is_leave_one_out_over_n_minus_1(precision):
  kern = dj.gaussian(0.5)
  x = cloud(3, 8, 2)
  got = dj.log_kde(x, x, kernel=kern, exclude_self=True)
  np.testing.assert_allclose(got, _direct(kern, x, x, "k", exclude_self=True),
                             rtol=tol(precision, 1e-10, F32_RTOL))
  # by hand for one point: log( Σ_{j≠0} k(x0, xj) / 7 )
  d2 = ((x[0] - x[1:]) ** 2).sum(-1)
  np.testing.assert_allclose(got[0], np.log(np.exp(-d2 / (2 * 0.25)).sum() / 7),
                             rtol=tol(precision, 1e-12, F32_RTOL))
  w = np.linspace(0.5, 2.0, 8)
  np.testing.assert_allclose(dj.log_kde(x, x, kernel=kern, weights=w, exclude_self=True),
                             _direct(kern, x, x, "k", w, exclude_self=True),
                             rtol=tol(precision, 1e-10, F32_RTOL))


@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 64])
def test_chunked_equals_unchunked(chunk, precision):
  kern = dj.laplacian(0.3)
  x = cloud(4, 10, 4)
  y = cloud(5, 13, 4, shift=3.0)  # far-ish: exercises the running max
  w = np.random.default_rng(6).uniform(0.0, 1.0, 13)
  # jitted: an eager call of the streamed path compiles its scan on every call
  def log_kde(a, b, weights=None, **kw):
    return jax.jit(lambda a, b, w: dj.log_kde(a, b, weights=w, kernel=kern, **kw))(
        a, b, weights)
  for which in ("k", "sharp"):
    full = log_kde(x, y, which=which, weights=w)
    np.testing.assert_allclose(log_kde(x, y, which=which, weights=w, chunk_size=chunk),
                               full, rtol=tol(precision, 1e-12, F32_RTOL))
  loo = log_kde(x, x, exclude_self=True)
  np.testing.assert_allclose(log_kde(x, x, exclude_self=True, chunk_size=chunk), loo,
                             rtol=tol(precision, 1e-12, F32_RTOL))


def test_chunked_gradients_equal_unchunked():
  x, y = jnp.asarray(cloud(7, 6, 3, dtype=np.float32)), jnp.asarray(cloud(8, 11, 3,
                                                                          dtype=np.float32))
  kern = dj.rational_quadratic(0.7)
  f = lambda xx, c: jnp.sum(dj.log_kde(xx, y, kernel=kern, which="sharp", chunk_size=c))
  grad = jax.jit(jax.grad(f), static_argnums=1)
  np.testing.assert_allclose(grad(x, 4), grad(x, None), rtol=1e-5, atol=1e-6)


def test_jit_and_vmap_over_groups():
  kern = dj.gaussian(0.6)
  xs = jnp.asarray(np.stack([cloud(s, 5, 2, dtype=np.float32) for s in range(3)]))
  ys = jnp.asarray(np.stack([cloud(s + 10, 6, 2, dtype=np.float32) for s in range(3)]))
  f = jax.jit(jax.vmap(lambda a, b: dj.log_kde(a, b, kernel=kern, chunk_size=4)))
  out = f(xs, ys)
  for g in range(3):
    np.testing.assert_allclose(out[g], dj.log_kde(xs[g], ys[g], kernel=kern), rtol=1e-5)


def test_bad_inputs():
  kern = dj.gaussian(1.0)
  x = jnp.ones((4, 2))
  with pytest.raises(ValueError, match="samples"):
    dj.log_kde(x, jnp.ones((4, 3)), kernel=kern)
  with pytest.raises(ValueError, match="samples"):
    dj.log_kde(x, jnp.ones((0, 2)), kernel=kern)
  with pytest.raises(ValueError, match="x"):
    dj.log_kde(jnp.ones(4), x, kernel=kern)
  with pytest.raises(ValueError, match="weights"):
    dj.log_kde(x, x, kernel=kern, weights=jnp.ones(3))
  with pytest.raises(ValueError, match="weights"):
    dj.log_kde(x, x, kernel=kern, weights=-jnp.ones(4))
  with pytest.raises(ValueError, match="exclude_self"):
    dj.log_kde(x, jnp.ones((5, 2)), kernel=kern, exclude_self=True)
  with pytest.raises(ValueError, match="chunk_size"):
    dj.log_kde(x, x, kernel=kern, chunk_size=0)
  with pytest.raises(ValueError, match="x"):
    dj.log_kde(x.at[0, 0].set(jnp.nan), x, kernel=kern)
