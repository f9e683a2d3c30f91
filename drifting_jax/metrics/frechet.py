"""Fréchet distance between Gaussians fitted to feature sets (the "FID" family of metrics).

For ``N(mu1, S1)`` and ``N(mu2, S2)`` the squared 2-Wasserstein (Fréchet) distance is

    FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})        (Dowson & Landau 1982)

With Inception-V3 pool3 features this is the FID of Heusel et al. (2017); with the features
of another network it is a different number on a different scale (see
:mod:`drifting_jax.metrics.features`: "FID (classifier features)" is *not* comparable to
Inception FID).

**Matrix square root.** ``S1 S2`` is not symmetric, and the usual ``scipy.linalg.sqrtm``
(Schur decomposition, complex arithmetic) has no stable JAX counterpart. We use the
symmetric form

    tr((S1 S2)^{1/2}) = tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = sum_i sqrt(lambda_i(A)),
    A = S1^{1/2} S2 S1^{1/2} = C^T C,   C = S2^{1/2} S1^{1/2},

valid for symmetric positive semi-definite ``S1, S2``: ``S1 S2`` is similar to ``A`` (when
``S1`` is invertible; by continuity otherwise), so both have the same non-negative
eigenvalues. ``S1^{1/2}`` and ``S2^{1/2}`` come from ``eigh`` (symmetrized input, tiny
negative round-off eigenvalues clipped to 0), and ``sqrt(lambda_i(A))`` are evaluated as the
singular values of ``C`` (``svd``) rather than as square roots of ``eigvalsh(A)``: the two
are equal in exact arithmetic, but forming ``A`` and taking square roots of its eigenvalues
turns round-off ``eps ||A||`` on the zero eigenvalues into errors ``sqrt(eps) ||S||`` each.
That matters in practice: ReLU features have dead units (exactly-zero rows/columns in both
covariances); for our MNIST classifier (62 of 128 dead) the ``eigvalsh`` form was 15% off
in float32, the ``svd`` form 0.03%. Everything stays real and symmetric.

**Precision.** The computation runs in float64 whenever x64 is enabled
(``jax.enable_x64(True)``), whatever the input dtype, and in float32 otherwise. For
2048-dimensional Inception features with a few thousand samples, float32 eigenvalue
round-off (``~1e-7 * ||A||`` per eigenvalue, amplified by the square root) can move FID in
the first decimal; enable x64 for numbers you report.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation

__all__ = ["frechet_distance", "frechet_distance_from_features", "gaussian_stats",
           "SYMMETRY_RTOL", "PSD_RTOL"]


def _work_dtype():
  """float64 when x64 is enabled, else float32."""
  return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_stats(mu1, sigma1, mu2, sigma2) -> None:
  for name, mu in (("mu1", mu1), ("mu2", mu2)):
    if np.ndim(mu) != 1:
      raise ValueError(f"`{name}` must be a [F] mean vector, got shape {np.shape(mu)}.")
  f = np.shape(mu1)[0]
  if np.shape(mu2)[0] != f:
    raise ValueError(f"`mu2` must have F={f} entries (matching `mu1`), got {np.shape(mu2)}.")
  for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
    if np.shape(s) != (f, f):
      raise ValueError(f"`{name}` must be a [{f}, {f}] covariance matrix (F from `mu1`), "
                       f"got shape {np.shape(s)}.")
  if f < 1:
    raise ValueError(f"`mu1` must have at least one entry, got shape {np.shape(mu1)}.")
  for name, v in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
    _validation.check_finite(name, v)


# A covariance must be symmetric and positive semi-definite. Round-off makes computed ones
# slightly asymmetric and gives their zero eigenvalues either sign (~F·eps·max|λ| in
# float32, 2e-4 for F = 2048), so both tests are relative, with room for float32 inputs.
SYMMETRY_RTOL = 1e-4
"""Largest accepted ``max|S − Sᵀ|`` relative to ``max|S|``."""
PSD_RTOL = 1e-3
"""Most negative accepted eigenvalue relative to ``max|λ|``."""


def _sqrt_psd(s: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Symmetric PSD square root via ``eigh`` (negative round-off eigenvalues clipped to 0),
  and whether ``s`` is symmetric and PSD within the tolerances above."""
  w, v = jnp.linalg.eigh(0.5 * (s + s.T))
  scale = jnp.max(jnp.abs(s))
  symmetric = jnp.max(jnp.abs(s - s.T)) <= SYMMETRY_RTOL * scale
  psd = jnp.min(w) >= -PSD_RTOL * jnp.max(jnp.abs(w))
  root = jnp.matmul(v * jnp.sqrt(jnp.maximum(w, 0.0)), v.T,
                    precision=jax.lax.Precision.HIGHEST)
  return root, jnp.stack([symmetric, psd])


@jax.jit
def _trace_sqrt_product(sigma1: jax.Array, sigma2: jax.Array
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``tr((S1 S2)^{1/2}) = tr((S1^{1/2} S2 S1^{1/2})^{1/2})`` = nuclear norm of
  ``S2^{1/2} S1^{1/2}`` (see the module docstring for why not ``eigvalsh``), and the
  ``[symmetric, psd]`` flags of both inputs."""
  root1, ok1 = _sqrt_psd(sigma1)
  root2, ok2 = _sqrt_psd(sigma2)
  c = jnp.matmul(root2, root1, precision=jax.lax.Precision.HIGHEST)
  return jnp.sum(jnp.linalg.svd(c, compute_uv=False)), ok1, ok2


@jax.jit
def _frechet_with_flags(mu1, sigma1, mu2, sigma2):
  diff = mu1 - mu2
  trace_sqrt, ok1, ok2 = _trace_sqrt_product(sigma1, sigma2)
  value = jnp.dot(diff, diff) + jnp.trace(sigma1) + jnp.trace(sigma2) - 2.0 * trace_sqrt
  return value, ok1, ok2


def _frechet(mu1, sigma1, mu2, sigma2):
  """The Fréchet distance of covariances that are PSD by construction."""
  return _frechet_with_flags(mu1, sigma1, mu2, sigma2)[0]


def frechet_distance(mu1: jax.Array, sigma1: jax.Array, mu2: jax.Array,
                     sigma2: jax.Array) -> jax.Array:
  """Fréchet distance ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` of two Gaussians.

  Args:
    mu1: ``[F]`` mean of the first Gaussian.
    sigma1: ``[F, F]`` symmetric positive semi-definite covariance of the first Gaussian.
    mu2: ``[F]`` mean of the second Gaussian.
    sigma2: ``[F, F]`` covariance of the second Gaussian.

  Returns:
    Scalar Fréchet distance (a *squared* distance, in squared feature units), in float64
    when x64 is enabled and float32 otherwise. It is symmetric in its two arguments up to
    round-off, and may be slightly negative (``~ -eps * tr(S)``) for identical inputs;
    it is not clipped. Not meant to be differentiated (``eigh`` / ``svd`` gradients are
    undefined at repeated or zero eigenvalues).

  Raises:
    ValueError: if the shapes are not ``[F]`` / ``[F, F]`` with one ``F``, an input
      contains NaN or inf, or a covariance is not symmetric (``max|S − Sᵀ| >``
      :data:`SYMMETRY_RTOL` ``· max|S|``) or not positive semi-definite (an eigenvalue
      below ``−``:data:`PSD_RTOL` ``· max|λ|``). Under ``jit`` such a covariance gives NaN.
  """
  _check_stats(mu1, sigma1, mu2, sigma2)
  dt = _work_dtype()
  value, ok1, ok2 = _frechet_with_flags(*(jnp.asarray(a, dt) for a in (mu1, sigma1, mu2,
                                                                      sigma2)))
  if _validation.is_concrete(value) and _validation.is_concrete(ok1):
    for name, ok in (("sigma1", ok1), ("sigma2", ok2)):
      symmetric, psd = (bool(b) for b in np.asarray(ok))
      if not symmetric:
        raise ValueError(f"`{name}` must be a symmetric covariance matrix (max |S - S^T| "
                         f"within {SYMMETRY_RTOL:g} of max |S|).")
      if not psd:
        raise ValueError(f"`{name}` must be positive semi-definite (eigenvalues >= "
                         f"-{PSD_RTOL:g} * max |eigenvalue|).")
    return value
  for name, ok in (("sigma1", ok1), ("sigma2", ok2)):
    _validation.traced_check(ok, f"`{name}` must be a symmetric positive semi-definite "
                             "covariance matrix.")
  return jnp.where(jnp.all(ok1) & jnp.all(ok2), value, jnp.nan)


def gaussian_stats(features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and unbiased covariance of a feature set (the statistics FID compares).

  The covariance uses the ``N - 1`` normalization (as ``numpy.cov`` and pytorch-fid), and
  is computed from mean-centred features, in float64 when x64 is enabled.

  Args:
    features: ``[N, F]`` feature vectors, ``N >= 2``.

  Returns:
    ``(mu [F], sigma [F, F])``.

  Raises:
    ValueError: if ``features`` is not ``[N, F]`` with ``N >= 2``, or is not finite.
  """
  _validation.check_points("features", features, min_size=2)
  return _stats(jnp.asarray(features, _work_dtype()))


@jax.jit
def _stats(x):
  mu = jnp.mean(x, axis=0)
  xc = x - mu
  sigma = jnp.matmul(xc.T, xc, precision=jax.lax.Precision.HIGHEST) / (x.shape[0] - 1)
  return mu, sigma


def frechet_distance_from_features(features1: jax.Array, features2: jax.Array) -> jax.Array:
  """Fréchet distance between Gaussians fitted (:func:`gaussian_stats`) to two feature sets.

  Args:
    features1: ``[N, F]`` features of the first sample set (e.g. real images), ``N >= 2``.
    features2: ``[M, F]`` features of the second sample set (e.g. generated images).

  Returns:
    Scalar Fréchet distance, see :func:`frechet_distance`. Note that the estimate is biased
    upward for finite ``N, M`` (compare models at equal sample sizes).

  Raises:
    ValueError: on rank or feature-dimension mismatch, fewer than 2 samples, or non-finite
      features.
  """
  _validation.check_points("features1", features1, min_size=2)
  _validation.check_points("features2", features2, min_size=2)
  if np.shape(features2)[1] != np.shape(features1)[1]:
    raise ValueError(f"`features2` must have F={np.shape(features1)[1]} columns (matching "
                     f"`features1`), got shape {np.shape(features2)}.")
  n1, n2, f = np.shape(features1)[0], np.shape(features2)[0], np.shape(features1)[1]
  if max(n1, n2) < f:  # rank-deficient covariances: the [N1, N2] Gram form is exact
    dt = _work_dtype()
    return _frechet_gram(jnp.asarray(features1, dt), jnp.asarray(features2, dt))
  mu1, s1 = gaussian_stats(features1)
  mu2, s2 = gaussian_stats(features2)
  return _frechet(mu1, s1, mu2, s2)


@jax.jit
def _frechet_gram(x1, x2):
  """The Fréchet distance from ``N < F`` samples without ``[F, F]`` matrices.

  With centred, scaled features ``A_k = (X_k − mu_k) / sqrt(N_k − 1)`` (``S_k = A_kᵀ A_k``),
  the non-zero eigenvalues of ``S1 S2 = A1ᵀ (A1 A2ᵀ) A2`` are those of ``M Mᵀ``,
  ``M = A1 A2ᵀ [N1, N2]``, so ``tr((S1 S2)^{1/2})`` is the nuclear norm of ``M`` and
  ``tr(S_k) = ||A_k||_F²``: the same value as the ``[F, F]`` computation, at
  ``O(N1 N2 (F + min(N1, N2)))`` instead of ``O(F³)`` (seconds instead of minutes for
  Inception's F = 2048 on a CPU), with no eigenvalue clipping.
  """
  mu1, mu2 = jnp.mean(x1, axis=0), jnp.mean(x2, axis=0)
  a1 = (x1 - mu1) / jnp.sqrt(x1.shape[0] - 1.0)
  a2 = (x2 - mu2) / jnp.sqrt(x2.shape[0] - 1.0)
  m = jnp.matmul(a1, a2.T, precision=jax.lax.Precision.HIGHEST)
  trace_sqrt = jnp.sum(jnp.linalg.svd(m, compute_uv=False))
  diff = mu1 - mu2
  return jnp.dot(diff, diff) + jnp.sum(a1 * a1) + jnp.sum(a2 * a2) - 2.0 * trace_sqrt
