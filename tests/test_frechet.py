"""Fréchet distance against closed forms and scipy.linalg.sqrtm."""

import numpy as np
import pytest
import scipy.linalg

from conftest import F32_RTOL, cloud, tol, x64

# float32 Fréchet distances through a matrix square root (eigh of 8x8 SPD products):
# measured <= 2.8e-4 relative (commuting covariances), 7.8e-5 against scipy's sqrtm at rank 3,
# 2.5e-6 for the invariances; the moments alone are F32_RTOL-accurate (<= 8.6e-7)
FRECHET_F32 = 1e-3
from drifting_jax.metrics import frechet
from drifting_jax.metrics.frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
)


def _spd(seed, f, rank=None):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((f, rank or f))
  return a @ a.T / (rank or f) + (0.0 if rank else 0.1) * np.eye(f)


def _scipy_fd(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_diagonal_closed_form(precision):
  rng = np.random.default_rng(0)
  a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
  mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  np.testing.assert_allclose(got, expected, rtol=tol(precision, 1e-12, F32_RTOL))


def test_one_dimensional(precision):
  # FD of N(m1, s1^2), N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
  got = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
  np.testing.assert_allclose(got, 9.0 + 1.0, rtol=tol(precision, 1e-13, F32_RTOL))


def test_commuting_covariances(precision):
  # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: tr sqrt(S1 S2) = sum sqrt(a b).
  q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((5, 5)))
  a, b = np.array([0.5, 1.0, 2.0, 3.0, 0.0]), np.array([2.0, 1.0, 0.5, 0.1, 4.0])
  s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
  mu = np.zeros(5)
  # S1 is singular (a has a 0): its null space enters the eigh square root at ~sqrt(eps),
  # 1.5e-8 in float64 (measured 9.5e-9 on one machine, < 1e-10 on another)
  np.testing.assert_allclose(frechet_distance(mu, s1, mu, s2),
                             np.sum((np.sqrt(a) - np.sqrt(b)) ** 2),
                             rtol=tol(precision, 1e-7, FRECHET_F32))


def test_identical_stats_zero(float64):  # float32: test_identical_stats_zero_float32
  s = _spd(2, 8)
  mu = np.arange(8.0)
  assert abs(float(frechet_distance(mu, s, mu, s))) < 1e-12
  x = cloud(3, 50, 4)
  assert abs(float(frechet_distance_from_features(x, x))) < 1e-12


def test_identical_stats_zero_float32():
  s = _spd(2, 8).astype(np.float32)
  mu = np.zeros(8, np.float32)
  assert abs(float(frechet_distance(mu, s, mu, s))) < 1e-4 * np.trace(s)


@pytest.mark.parametrize("rank", [None, 3])
def test_matches_scipy_sqrtm(precision, rank):
  f = 12
  s1, s2 = _spd(4, f, rank), _spd(5, f)
  rng = np.random.default_rng(6)
  mu1, mu2 = rng.standard_normal(f), rng.standard_normal(f)
  np.testing.assert_allclose(frechet_distance(mu1, s1, mu2, s2), _scipy_fd(mu1, s1, mu2, s2),
                             rtol=tol(precision, 1e-7, FRECHET_F32))


@pytest.mark.parametrize("rank,rtol", [(None, 1e-12), (4, 1e-7)])
def test_symmetry(precision, rank, rtol):
  # With one singular covariance, round-off in the eigh square root of its null space enters
  # at ~sqrt(eps), so agreement is looser than eps.
  s1, s2 = _spd(7, 10), _spd(8, 10, rank=rank)
  mu1, mu2 = np.ones(10), np.zeros(10)
  np.testing.assert_allclose(frechet_distance(mu1, s1, mu2, s2),
                             frechet_distance(mu2, s2, mu1, s1), rtol=tol(precision, rtol, FRECHET_F32))


def test_shared_zero_directions_float32():
  # Dead ReLU units: both covariances have the same exactly-zero rows/columns (here 56 of 64).
  # The FD equals that of the 8x8 live block; float32 must not pick up sqrt(eps) errors
  # from the 56 zero eigenvalues.
  s1, s2 = np.zeros((64, 64)), np.zeros((64, 64))
  s1[:8, :8], s2[:8, :8] = _spd(20, 8), _spd(21, 8)
  mu1, mu2 = np.zeros(64), np.full(64, 0.1)
  want = _scipy_fd(mu1[:8], s1[:8, :8], mu2[:8], s2[:8, :8]) + 56 * 0.01
  f32 = [a.astype(np.float32) for a in (mu1, s1, mu2, s2)]
  np.testing.assert_allclose(frechet_distance(*f32), want, rtol=1e-4)
  np.testing.assert_allclose(frechet_distance(f32[0], f32[1], f32[0], f32[1]), 0.0, atol=1e-5)


def test_translation_and_rotation_invariance(precision):
  x, y = cloud(9, 40, 6), cloud(10, 30, 6, shift=0.5, scale=2.0)
  base = frechet_distance_from_features(x, y)
  shift = np.random.default_rng(11).standard_normal(6) * 5
  np.testing.assert_allclose(frechet_distance_from_features(x + shift, y + shift), base,
                             rtol=tol(precision, 1e-10, FRECHET_F32))
  q, _ = np.linalg.qr(np.random.default_rng(12).standard_normal((6, 6)))
  np.testing.assert_allclose(frechet_distance_from_features(x @ q.T, y @ q.T), base, rtol=tol(precision, 1e-10, FRECHET_F32))


def test_gaussian_stats_matches_numpy(precision):
  x = cloud(13, 25, 4)
  mu, sigma = gaussian_stats(x)
  np.testing.assert_allclose(mu, x.mean(0), rtol=tol(precision, 1e-12, F32_RTOL))
  np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=tol(precision, 1e-12, F32_RTOL))
  # Features through the same function: FD == FD of the numpy statistics.
  y = cloud(14, 30, 4, shift=1.0)
  np.testing.assert_allclose(
      frechet_distance_from_features(x, y),
      _scipy_fd(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)),
      rtol=tol(precision, 1e-9, F32_RTOL))


def test_large_sample_approaches_population_value():
  # Two large Gaussian samples in float32: the estimate is near the population FD.
  rng = np.random.default_rng(15)
  x = rng.standard_normal((20000, 3)).astype(np.float32)
  y = (rng.standard_normal((20000, 3)) * 2.0 + 1.0).astype(np.float32)
  np.testing.assert_allclose(frechet_distance_from_features(x, y), 3 * 1.0 + 3 * 1.0, rtol=0.03)


def test_x64_gives_float64():
  with x64():
    x = cloud(16, 10, 3, dtype=np.float32)
    assert frechet_distance_from_features(x, x + 1).dtype == np.float64
  assert frechet_distance_from_features(x, x + 1).dtype == np.float32


def test_validation():
  s = np.eye(3)
  with pytest.raises(ValueError, match="mu2"):
    frechet_distance(np.zeros(3), s, np.zeros(4), s)
  with pytest.raises(ValueError, match="sigma2"):
    frechet_distance(np.zeros(3), s, np.zeros(3), np.eye(4))
  with pytest.raises(ValueError, match="mu1"):
    frechet_distance(np.zeros((3, 1)), s, np.zeros(3), s)
  with pytest.raises(ValueError, match="sigma1.*NaN"):
    frechet_distance(np.zeros(3), s * np.nan, np.zeros(3), s)
  with pytest.raises(ValueError, match="features2.*F=3"):
    frechet_distance_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match="features1.*at least 2"):
    frechet_distance_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
  bad = np.zeros((5, 3))
  bad[2, 1] = np.inf
  with pytest.raises(ValueError, match="features2.*NaN or inf"):
    frechet_distance_from_features(np.zeros((5, 3)), bad)
  with pytest.raises(ValueError, match="features"):
    gaussian_stats(np.zeros(5))


def test_gram_form_for_few_samples_equals_covariance_form():
  """With N < F samples (rank-deficient covariances) the distance is computed from the
  [N1, N2] Gram matrix (nuclear norm of A1 A2ᵀ); it equals the [F, F] eigh/svd form, in
  float64 to 2e-8 relative and in float32 to 1e-4: the [F, F] form has F − N zero
  eigenvalues whose round-off ``ε·max λ`` its square roots amplify to ``~sqrt(ε)`` each
  (the Gram form has no such eigenvalues)."""
  rng = np.random.default_rng(3)
  x1 = rng.normal(size=(30, 200))
  x2 = rng.normal(size=(50, 200)) * 1.3 + 0.2
  x1[:, :7] = 0.0  # dead ReLU units
  x2[:, :7] = 0.0
  with x64():
    gram = float(frechet.frechet_distance_from_features(x1, x2))
    full = float(frechet.frechet_distance(*frechet.gaussian_stats(x1),
                                          *frechet.gaussian_stats(x2)))
    np.testing.assert_allclose(gram, full, rtol=2e-8)
  gram32 = float(frechet.frechet_distance_from_features(x1.astype(np.float32),
                                                        x2.astype(np.float32)))
  np.testing.assert_allclose(gram32, full, rtol=1e-4)
