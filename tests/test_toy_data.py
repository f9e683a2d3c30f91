"""Toy samplers and the closed-form 4-mode mixture of Secretly-SM App. F.1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import F32_ATOL, F32_GRAD_RTOL, F32_RTOL, tol
from drifting_jax import fields, kernels
from drifting_jax.data import toy

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("name", toy.names())
def test_sampler_shape_dtype_determinism(name):
  sampler = toy.get(name)
  a = sampler(KEY, 257)
  assert a.shape == (257, 2) and a.dtype == jnp.float32
  assert np.all(np.isfinite(a))
  np.testing.assert_array_equal(a, sampler(KEY, 257))
  assert not np.array_equal(a, sampler(jax.random.PRNGKey(1), 257))
  assert np.abs(np.asarray(a)).max() < 2.0  # the [-1, 1]^2 scale convention


def test_get_unknown_and_bad_n():
  assert toy.get("swiss-roll") is toy.swiss_roll
  with pytest.raises(ValueError, match="dataset"):
    toy.get("moons")
  with pytest.raises(ValueError, match="`n` must"):
    toy.checkerboard(KEY, 0)


def test_checkerboard_support_and_balance():
  x = np.asarray(toy.checkerboard(KEY, 8000))
  assert np.all(np.abs(x) <= 1.0)
  cells = np.floor((x + 1.0) * 2.0).astype(int).clip(0, 3)
  assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)  # only black cells
  counts = np.unique(cells[:, 0] * 4 + cells[:, 1], return_counts=True)[1]
  assert len(counts) == 8 and counts.min() > 0.8 * 1000


def test_gmm4_moments():
  x = np.asarray(toy.gmm4(KEY, 40000))
  np.testing.assert_allclose(x.mean(0), 0.0, atol=0.03)
  # Cov = sigma_p^2 I + Cov(means) = (0.0625 + 1) I for means (+-1, +-1).
  np.testing.assert_allclose(np.cov(x.T), np.eye(2) * (toy.GMM4.std**2 + 1.0), atol=0.04)


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_mixture_score_is_grad_log_prob(sigma, precision):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(50, 2)) * 1.5)
  auto = jax.grad(lambda y: jnp.sum(toy.mixture_log_prob(y, sigma=sigma)))(x)
  np.testing.assert_allclose(toy.mixture_smoothed_score(x, sigma=sigma), auto,
                             rtol=tol(precision, 1e-10, F32_GRAD_RTOL),
                             atol=tol(precision, 1e-10, F32_ATOL))
  # The smoothed density of a Gaussian mixture is the mixture with inflated variance.
  s2 = toy.GMM4.std**2 + sigma**2
  means = jnp.asarray(toy.GMM4.means)
  dens = sum(0.25 * jnp.exp(-jnp.sum((x - m) ** 2, -1) / (2 * s2)) / (2 * jnp.pi * s2)
             for m in means)
  np.testing.assert_allclose(jnp.exp(toy.mixture_log_prob(x, sigma=sigma)), dens,
                             rtol=tol(precision, 1e-10, F32_RTOL))


def test_gaussian_smoothed_score(precision):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(20, 2)))
  var = 0.7**2 + 0.3**2
  auto = jax.grad(lambda y: jnp.sum(-jnp.sum((y - 0.2) ** 2, -1) / (2 * var)))(x)
  np.testing.assert_allclose(toy.gaussian_smoothed_score(x, mean=0.2, std=0.7, sigma=0.3),
                             auto, rtol=tol(precision, 1e-12, F32_RTOL))


def test_theorem_4_1_empirical_drift_matches_analytic():
  """Secretly-SM Thm. 4.1 / App. F.1: Gaussian mean-shift drift = sigma^2 grad log(p/q)."""
  sigma, n = 0.3, 20000
  kp, kq = jax.random.split(KEY)
  pos = toy.gmm4(kp, n)
  neg = jax.random.normal(kq, (n, 2))  # q = N(0, I)
  g = jnp.linspace(-1.5, 1.5, 9)
  queries = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
  empirical = fields.drift_field(queries, pos, neg, kernel=kernels.gaussian(sigma))
  analytic = toy.gmm4_analytic_drift(queries, sigma=sigma, q_std=1.0)
  err = jnp.linalg.norm(empirical - analytic, axis=-1)
  assert float(jnp.mean(err)) < 0.02, float(jnp.mean(err))
  assert float(jnp.mean(jnp.linalg.norm(analytic, axis=-1))) > 0.1  # not a trivial match
  with pytest.raises(ValueError, match="sigma"):
    toy.gmm4_analytic_drift(queries, sigma=0.0)


@pytest.mark.parametrize("call,name", [
    (lambda k: toy.checkerboard(k, 4, noise=float("nan")), "noise"),
    (lambda k: toy.checkerboard(k, 4, noise=-0.1), "noise"),
    (lambda k: toy.swiss_roll(k, 4, noise=float("inf")), "noise"),
    (lambda k: toy.swiss_roll(k, 4, noise="0.1"), "noise"),
    (lambda k: toy.eight_gaussians(k, 4, std=float("nan")), "std"),
    (lambda k: toy.eight_gaussians(k, 4, radius=-1.0), "radius"),
    (lambda k: toy.GaussianMixture(((0.0, 0.0),), (1.0,), float("nan")), "std"),
    (lambda k: toy.GaussianMixture(((float("inf"), 0.0),), (1.0,), 1.0), "means"),
    (lambda k: toy.GaussianMixture(((0.0, 0.0),), (float("nan"),), 1.0), "weights"),
])
def test_toy_generators_refuse_non_finite_or_negative_scales(call, name):
  with pytest.raises(ValueError, match=f"`{name}` must"):
    call(jax.random.PRNGKey(0))
