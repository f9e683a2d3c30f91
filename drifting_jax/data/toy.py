"""Toy 2-D target distributions for drifting generators.

All samplers share the signature ``sample(key, n) -> [n, 2]`` float32 and are pure
functions of the PRNG key, so they can be called inside ``jax.jit`` (``n`` static).

Scale convention: every distribution lives roughly in ``[-1, 1]^2``, the scale of the
toy demo of Deng et al. (2026) whose Laplacian temperature ``tau = 0.05`` Secretly-SM
App. F.3/F.4 reuse (3-layer MLP, batch 2048, Adam 1e-3). Kernel bandwidths in the toy
configs are therefore expressed in these units.

``gmm4`` is the 4-mode Gaussian mixture of Secretly-SM App. F.1. That appendix does not
state the mixture parameters, so we fix them here (documented on :data:`GMM4`): means at
``(+-1, +-1)``, equal weights, isotropic component std ``sigma_p = 0.25``; the reference
``q = N(0, sigma_q^2 I)`` defaults to ``sigma_q = 1``. The closed-form smoothed scores of
Eq. (37) are :func:`mixture_smoothed_score` and :func:`gaussian_smoothed_score`, and
:func:`gmm4_analytic_drift` is the score-difference drift of Theorem 4.1 / Eq. (6).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from drifting_jax import _validation

Sampler = Callable[[jax.Array, int], jax.Array]

__all__ = [
    "GMM4",
    "GaussianMixture",
    "checkerboard",
    "eight_gaussians",
    "gaussian_smoothed_score",
    "get",
    "gmm4",
    "gmm4_analytic_drift",
    "mixture_log_prob",
    "mixture_smoothed_score",
    "names",
    "swiss_roll",
]


def _check_n(n: int) -> int:
  if not isinstance(n, int) or isinstance(n, bool) or n < 1:
    raise ValueError(f"`n` must be a positive int, got {n!r}")
  return n


#: the largest scale (noise std, radius) whose float32 samples cannot overflow: a standard
#: normal draw in float32 is below 6 in magnitude (jax.random.normal's inverse-CDF range)
_MAX_SCALE = 1e37


def _check_scale(name: str, value, *, positive: bool = False) -> float:
  """A finite real number ``>= 0`` (``> 0`` when ``positive``), e.g. a noise std."""
  what = "a finite number > 0" if positive else "a finite number >= 0"
  v = _validation.scalar(name, value, what=what)
  if not math.isfinite(v) or v < 0 or (positive and v == 0):
    raise ValueError(f"`{name}` must be {what}, got {value!r}")
  if v > _MAX_SCALE:
    raise ValueError(f"`{name}` must be at most {_MAX_SCALE:g} (float32 samples of that "
                     f"scale stay finite), got {value!r}")
  return v


def checkerboard(key: jax.Array, n: int, *, noise: float = 0.0) -> jax.Array:
  """Uniform samples on the 8 black cells of a 4x4 checkerboard on ``[-1, 1]^2``.

  Cells have side 0.5; cell ``(i, j)`` (``i, j`` in 0..3) is black when ``i + j`` is
  even, i.e. the layout of Deng et al.'s toy demo.

  Args:
    key: PRNG key.
    n: number of samples.
    noise: std of optional isotropic Gaussian jitter (0 = exact support).

  Returns:
    ``[n, 2]`` float32 samples.
  """
  _check_n(n)
  k_parity, k_i, k_j, k_u, k_eps = jax.random.split(key, 5)
  b = jax.random.randint(k_parity, (n,), 0, 2)
  i = 2 * jax.random.randint(k_i, (n,), 0, 2) + b
  j = 2 * jax.random.randint(k_j, (n,), 0, 2) + b
  u = jax.random.uniform(k_u, (n, 2))
  cells = jnp.stack([i, j], axis=1).astype(jnp.float32)
  x = (cells + u) / 2.0 - 1.0
  if _check_scale("noise", noise):
    x = x + noise * jax.random.normal(k_eps, (n, 2))
  return x.astype(jnp.float32)


def swiss_roll(key: jax.Array, n: int, *, noise: float = 0.02) -> jax.Array:
  """2-D Swiss roll ``t (cos t, sin t) / (4.5 pi)``, ``t ~ U[pi/2, 4.5 pi]``.

  Args:
    key: PRNG key.
    n: number of samples.
    noise: std of isotropic Gaussian jitter added after scaling.

  Returns:
    ``[n, 2]`` float32 samples in roughly ``[-1, 1]^2``.
  """
  _check_n(n)
  k_t, k_eps = jax.random.split(key)
  t = jax.random.uniform(k_t, (n,), minval=0.5 * math.pi, maxval=4.5 * math.pi)
  x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1) / (4.5 * math.pi)
  if _check_scale("noise", noise):
    x = x + noise * jax.random.normal(k_eps, (n, 2))
  return x.astype(jnp.float32)


def eight_gaussians(
    key: jax.Array, n: int, *, radius: float = 0.8, std: float = 0.05
) -> jax.Array:
  """Equal-weight mixture of 8 Gaussians on a circle.

  Args:
    key: PRNG key.
    n: number of samples.
    radius: circle radius of the 8 means (angles ``2 pi k / 8``).
    std: isotropic component standard deviation.

  Returns:
    ``[n, 2]`` float32 samples.
  """
  _check_n(n)
  _check_scale("radius", radius)
  _check_scale("std", std)
  k_c, k_eps = jax.random.split(key)
  angles = 2.0 * math.pi * jnp.arange(8) / 8.0
  means = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
  idx = jax.random.randint(k_c, (n,), 0, 8)
  x = means[idx] + std * jax.random.normal(k_eps, (n, 2))
  return x.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
  """Isotropic Gaussian mixture ``p = sum_k w_k N(mu_k, sigma_p^2 I)``.

  Attributes:
    means: ``[K, D]`` component means ``mu_k``.
    weights: ``[K]`` mixture weights ``w_k`` (sum to 1).
    std: shared isotropic component standard deviation ``sigma_p``.
  """

  means: tuple[tuple[float, ...], ...]
  weights: tuple[float, ...]
  std: float

  def __post_init__(self):
    if len(self.means) != len(self.weights) or not self.means:
      raise ValueError("`means` and `weights` must be non-empty with equal length")
    _check_scale("std", self.std, positive=True)
    if not all(math.isfinite(float(v)) for m in self.means for v in m):
      raise ValueError(f"`means` must be finite, got {self.means}")
    if (not all(math.isfinite(float(w)) for w in self.weights)
        or abs(sum(self.weights) - 1.0) > 1e-6 or min(self.weights) < 0):
      raise ValueError(f"`weights` must be non-negative and sum to 1, got {self.weights}")

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """Draws ``[n, D]`` float32 samples."""
    _check_n(n)
    k_c, k_eps = jax.random.split(key)
    means = jnp.asarray(self.means, jnp.float32)
    idx = jax.random.choice(k_c, means.shape[0], (n,), p=jnp.asarray(self.weights))
    x = means[idx] + self.std * jax.random.normal(k_eps, (n, means.shape[1]))
    return x.astype(jnp.float32)

  def log_prob(self, x: jax.Array, *, sigma: float = 0.0) -> jax.Array:
    """``log p_sigma(x)`` for ``x: [N, D]``; see :func:`mixture_log_prob`."""
    return mixture_log_prob(x, self, sigma=sigma)

  def score(self, x: jax.Array, *, sigma: float = 0.0) -> jax.Array:
    """``grad log p_sigma(x)`` ``[N, D]``; see :func:`mixture_smoothed_score`."""
    return mixture_smoothed_score(x, self, sigma=sigma)


#: The 4-mode mixture used for Secretly-SM App. F.1 (parameters chosen here; the paper
#: does not list them): means (+-1, +-1), equal weights, sigma_p = 0.25.
GMM4 = GaussianMixture(
    means=((-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)),
    weights=(0.25, 0.25, 0.25, 0.25),
    std=0.25,
)


def gmm4(key: jax.Array, n: int) -> jax.Array:
  """Samples ``[n, 2]`` from :data:`GMM4` (Secretly-SM App. F.1)."""
  return GMM4.sample(key, n)


def _component_logits(x: jax.Array, mixture: GaussianMixture, s2: jax.Array) -> jax.Array:
  """``log w_k + log N(x; mu_k, s2 I)`` for ``x: [N, D]`` -> ``[N, K]``."""
  means = jnp.asarray(mixture.means, x.dtype)
  d = x.shape[-1]
  sq = jnp.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)
  log_norm = -0.5 * d * jnp.log(2.0 * math.pi * s2)
  return jnp.log(jnp.asarray(mixture.weights, x.dtype)) + log_norm - 0.5 * sq / s2


def mixture_log_prob(
    x: jax.Array, mixture: GaussianMixture = GMM4, *, sigma: float = 0.0
) -> jax.Array:
  """Log-density of the smoothed mixture ``p_sigma = p * N(0, sigma^2 I)``.

  Each component's variance is inflated to ``s^2 = sigma_p^2 + sigma^2``
  (Secretly-SM App. F.1); ``sigma = 0`` gives ``log p`` itself.

  Args:
    x: ``[N, D]`` query points.
    mixture: the mixture ``p``.
    sigma: smoothing bandwidth (>= 0).

  Returns:
    ``[N]`` log-densities.
  """
  x = jnp.asarray(x)
  s2 = jnp.asarray(mixture.std**2 + sigma**2, x.dtype)
  return jax.nn.logsumexp(_component_logits(x, mixture, s2), axis=-1)


def mixture_smoothed_score(
    x: jax.Array, mixture: GaussianMixture = GMM4, *, sigma: float = 0.0
) -> jax.Array:
  """Closed-form score ``grad log p_sigma(x)``, Eq. (37) of Secretly-SM.

  ``grad log p_sigma(x) = sum_k w_k phi_k(x) (mu_k - x) / (s^2 sum_k w_k phi_k(x))`` with
  ``phi_k = N(mu_k, s^2 I)``, ``s^2 = sigma_p^2 + sigma^2`` (responsibilities computed as a
  softmax in log-domain).

  Args:
    x: ``[N, D]`` query points.
    mixture: the mixture ``p``.
    sigma: smoothing bandwidth (>= 0).

  Returns:
    ``[N, D]`` scores.
  """
  x = jnp.asarray(x)
  s2 = jnp.asarray(mixture.std**2 + sigma**2, x.dtype)
  resp = jax.nn.softmax(_component_logits(x, mixture, s2), axis=-1)  # [N, K]
  means = jnp.asarray(mixture.means, x.dtype)
  return (resp @ means - x) / s2


def gaussian_smoothed_score(
    x: jax.Array, *, mean: float | jax.Array = 0.0, std: float = 1.0, sigma: float = 0.0
) -> jax.Array:
  """Score of ``q_sigma = N(mu_q, (sigma_q^2 + sigma^2) I)``, Eq. (37) of Secretly-SM.

  Args:
    x: ``[N, D]`` query points.
    mean: ``mu_q`` (scalar or ``[D]``).
    std: ``sigma_q``.
    sigma: smoothing bandwidth (>= 0).

  Returns:
    ``[N, D]`` scores ``-(x - mu_q) / (sigma_q^2 + sigma^2)``.
  """
  x = jnp.asarray(x)
  return -(x - mean) / (std**2 + sigma**2)


def gmm4_analytic_drift(
    x: jax.Array,
    *,
    sigma: float,
    q_std: float = 1.0,
    q_mean: float | jax.Array = 0.0,
    mixture: GaussianMixture = GMM4,
) -> jax.Array:
  """Analytic Gaussian drift ``V = sigma^2 (grad log p_sigma - grad log q_sigma)``.

  Theorem 4.1 / Eq. (6) of Secretly-SM with ``p`` = ``mixture`` and
  ``q = N(q_mean, q_std^2 I)``, both smoothed by ``N(0, sigma^2 I)`` (App. F.1).

  Args:
    x: ``[N, D]`` query points.
    sigma: Gaussian kernel bandwidth (> 0).
    q_std: std of the reference Gaussian ``q``.
    q_mean: mean of ``q``.
    mixture: the target mixture ``p``.

  Returns:
    ``[N, D]`` drift vectors.
  """
  if sigma <= 0:
    raise ValueError(f"`sigma` must be positive, got {sigma}")
  sp = mixture_smoothed_score(x, mixture, sigma=sigma)
  sq = gaussian_smoothed_score(x, mean=q_mean, std=q_std, sigma=sigma)
  return sigma**2 * (sp - sq)


_SAMPLERS: dict[str, Sampler] = {
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "eight_gaussians": eight_gaussians,
    "gmm4": gmm4,
}


def names() -> tuple[str, ...]:
  """Names accepted by :func:`get`."""
  return tuple(_SAMPLERS)


def get(name: str) -> Sampler:
  """Returns the sampler ``(key, n) -> [n, 2]`` registered under ``name``.

  Args:
    name: one of :func:`names` (``-`` and ``_`` are interchangeable).

  Raises:
    ValueError: if ``name`` is unknown.
  """
  key = str(name).replace("-", "_")
  if key not in _SAMPLERS:
    raise ValueError(f"`dataset` must be one of {sorted(_SAMPLERS)}, got {name!r}")
  return _SAMPLERS[key]
