"""Sliced Wasserstein and MMD metrics against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from conftest import cloud
from drifting_jax.metrics import mmd, sliced_wasserstein, wasserstein_1d

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sw_1d_shift_equals_shift(p):
  x = cloud(0, 500, 1, dtype=np.float32)
  sw = sliced_wasserstein(x, x + 0.7, key=KEY, num_projections=7, p=p)
  np.testing.assert_allclose(sw, 0.7, rtol=1e-5)


def test_sw_identical_is_zero_and_duplicated_set():
  x = cloud(1, 300, 3, dtype=np.float32)
  assert float(sliced_wasserstein(x, x, key=KEY)) == 0.0
  # Unequal sizes: repeating every point leaves the empirical measure unchanged.
  assert float(sliced_wasserstein(x, np.concatenate([x, x]), key=KEY)) < 1e-6
  shifted = np.concatenate([x, x])[::-1] + np.array([0.5, 0.0, 0.0], np.float32)
  one_d = sliced_wasserstein(x[:, :1], shifted[:, :1], key=KEY, num_projections=3)
  np.testing.assert_allclose(one_d, 0.5, rtol=1e-5)


def test_w1_matches_scipy_unequal_sizes():
  u = cloud(2, 37, 1)
  v = cloud(3, 53, 1, shift=0.3, scale=2.0)
  ours = wasserstein_1d(jnp.asarray(u), jnp.asarray(v), p=1.0)[0]
  np.testing.assert_allclose(ours, scipy.stats.wasserstein_distance(u[:, 0], v[:, 0]),
                             rtol=1e-6)


def test_w2_hand_computed():
  # u = {0, 1}, v = {0, 0.5, 2}: quantiles on (0,1/3],(1/3,1/2],(1/2,2/3],(2/3,1].
  u = jnp.array([[0.0], [1.0]])
  v = jnp.array([[2.0], [0.0], [0.5]])
  expected = (1 / 3) * 0 + (1 / 6) * 0.25 + (1 / 6) * 0.25 + (1 / 3) * 1.0
  np.testing.assert_allclose(wasserstein_1d(u, v, p=2.0)[0], expected, rtol=1e-6)


def test_sw2_of_2d_shift():
  # Every projection of a shift c is a 1-D shift theta.c, so SW_2^2 = |c|^2 E[cos^2] = |c|^2/2.
  x = cloud(4, 400, 2, dtype=np.float32)
  c = np.array([0.6, -0.8], np.float32)
  sw = sliced_wasserstein(x, x + c, key=KEY, num_projections=4000)
  np.testing.assert_allclose(sw, 1.0 / np.sqrt(2.0), rtol=0.03)


def test_sw_validation():
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="share D"):
    sliced_wasserstein(x, np.zeros((4, 3)), key=KEY)
  with pytest.raises(ValueError, match="num_projections"):
    sliced_wasserstein(x, x, key=KEY, num_projections=0)


def _mmd_numpy(x, y, sigma, unbiased):
  def k(a, b):
    return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * sigma**2))

  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  if unbiased:
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
  return kxx.mean() + kyy.mean() - 2 * kxy.mean()


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_matches_reference(unbiased):
  x, y = cloud(5, 40, 3), cloud(6, 30, 3, shift=0.4)
  ours = mmd(x, y, bandwidth=0.9, unbiased=unbiased)
  np.testing.assert_allclose(ours, _mmd_numpy(x, y, 0.9, unbiased), rtol=1e-4, atol=1e-6)
  multi = mmd(x, y, bandwidth=(0.5, 2.0), unbiased=unbiased)
  ref = _mmd_numpy(x, y, 0.5, unbiased) + _mmd_numpy(x, y, 2.0, unbiased)
  np.testing.assert_allclose(multi, ref, rtol=1e-4, atol=1e-6)


def test_mmd_closed_forms():
  a, b = np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])
  np.testing.assert_allclose(mmd(a, b, bandwidth=1.0), 2 - 2 * np.exp(-1.0), rtol=1e-6)
  x = cloud(7, 200, 2, dtype=np.float32)
  assert abs(float(mmd(x, x, bandwidth=0.5))) < 1e-6
  assert abs(float(mmd(x, x, bandwidth=0.5, unbiased=True))) < 1e-2
  assert float(mmd(x, x + 1.0, bandwidth=0.5)) > 0.1


def test_mmd_validation():
  x = np.zeros((4, 2))
  for bad in (0.0, -1.0, ()):
    with pytest.raises(ValueError, match="bandwidth"):
      mmd(x, x, bandwidth=bad)
  with pytest.raises(ValueError, match="at least 2"):
    mmd(x[:1], x, bandwidth=1.0, unbiased=True)


def test_metrics_reject_nan_and_overflow_eagerly_and_give_nan_under_jit():
  from drifting_jax import metrics as m
  x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
  y = x + 0.5
  bad = x.copy()
  bad[2, 1] = np.nan
  key = jax.random.PRNGKey(0)
  for call in (lambda a: m.mmd(a, y, bandwidth=1.0),
               lambda a: m.sliced_wasserstein(a, y, key=key, num_projections=4)):
    with pytest.raises(ValueError, match="`x` contains NaN or inf"):
      call(bad)
    assert np.isnan(float(jax.jit(call)(bad)))
  with pytest.raises(ValueError, match="`x` has squared norms"):
    m.sliced_wasserstein(x * 1e19, y, key=key, num_projections=4)
  with pytest.raises(ValueError, match="`u` contains NaN or inf"):
    m.wasserstein_1d(bad, y)
  with pytest.raises(ValueError, match="`u` and `v` have values up to"):
    m.wasserstein_1d(x * 1e30, y)
