"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019), batched.

Each feature set ``Phi`` approximates its manifold by the union of balls
``B(phi, r_k(phi))``, where ``r_k(phi)`` is the distance from ``phi`` to its ``k``-th nearest
neighbour in ``Phi`` *excluding itself* (``k = 3`` by default, as in the paper).
A sample ``x`` lies on the manifold if ``||x - phi|| <= r_k(phi)`` for some ``phi`` in ``Phi``
(Eq. (1) of the paper, ``f(x, Phi)``). Then

    precision = mean over generated x of f(x, Phi_real)   (how many samples look real)
    recall    = mean over real y      of f(y, Phi_gen)    (how much of the data is covered)
    F1        = 2 / (1 / precision + 1 / recall)          (0 when either is 0)

The paper uses VGG-16 fc2 features; any feature extractor can be used
(:mod:`drifting_jax.metrics.features`), and the numbers are only comparable for the same
features, ``k`` and sample sizes.

**Memory.** Nothing of size ``N x M`` is ever formed: both passes (k-NN radii, and
membership) walk over ``[batch_size, batch_size]`` blocks of squared distances inside one
jitted ``lax.map`` (rows) / ``lax.scan`` (columns) program, keeping a running top-``k`` of
the smallest distances per row (radii) or a running ``any()`` (membership). Memory is
``O((N + M) F + batch_size^2)``, so 50k x 50k sets of 2048-d features are fine.
Distances are compared squared (``||a||^2 + ||b||^2 - 2 a.b``, clipped at 0, with
``HIGHEST`` matmul precision, :func:`drifting_jax.distances.sqdist`); ties count as inside
(``<=``), as in the reference code.

**Range.** Features whose squared norms overflow the float dtype (``||x|| > ~9e18`` in
float32) raise ``ValueError`` in eager calls; under ``jit`` the radii and the scores are NaN
(never a finite wrong number).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation
from drifting_jax.distances import sqdist

__all__ = ["PrecisionRecall", "knn_radii", "manifold_membership", "precision_recall"]


class PrecisionRecall(NamedTuple):
  """Improved precision / recall and their harmonic mean (all scalars in ``[0, 1]``; NaN
  under ``jit`` when the features overflow squared distances)."""
  precision: jax.Array
  recall: jax.Array
  f1: jax.Array


# ----------------------------------------------------------------------------- block kernels


def _blocks(x: jax.Array, block: int) -> jax.Array:
  """``[N, F] -> [ceil(N / block), block, F]``, zero-padded (padding is masked by index)."""
  n = x.shape[0]
  nb = -(-n // block)
  return jnp.pad(x, ((0, nb * block - n), (0, 0))).reshape(nb, block, x.shape[1])


@functools.partial(jax.jit, static_argnames=("k", "n", "block"))
def _knn_sq_radii(x: jax.Array, *, k: int, n: int, block: int) -> jax.Array:
  """``[n]`` squared distance to the k-th nearest neighbour, self excluded (NaN for a row
  that met a NaN distance, i.e. overflowing norms)."""
  xb = _blocks(x, block)
  nb = xb.shape[0]
  idx = jnp.arange(nb * block).reshape(nb, block)

  def row(args):
    rows, ridx = args
    def col(carry, cargs):  # best: [block, k] smallest squared distances so far (ascending)
      best, bad = carry
      cols, cidx = cargs
      d2 = sqdist(rows, cols)
      drop = (cidx[None, :] >= n) | (cidx[None, :] == ridx[:, None])  # padding and self
      bad = bad | jnp.any(jnp.isnan(d2) & ~drop, axis=1)
      d2 = jnp.where(drop | jnp.isnan(d2), jnp.inf, d2)
      neg_top, _ = jax.lax.top_k(-jnp.concatenate([best, d2], axis=1), k)
      return (-neg_top, bad), None
    init = (jnp.full((block, k), jnp.inf, x.dtype), jnp.zeros((block,), bool))
    (best, bad), _ = jax.lax.scan(col, init, (xb, idx))
    return jnp.where(bad, jnp.nan, best[:, k - 1])

  return jax.lax.map(row, (xb, idx)).reshape(-1)[:n]


def _membership(queries, ref, ref_sq_radii, *, batch_size: int):
  """``([M] bool, [M] bool)``: query within the (squared) radius of at least one reference
  point, and whether the query met a NaN distance or radius (overflowing norms)."""
  m, n = queries.shape[0], ref.shape[0]
  return _membership_blocks(queries, ref, ref_sq_radii, n_ref=n, n_query=m,
                            row_block=min(batch_size, m), col_block=min(batch_size, n))


@functools.partial(jax.jit, static_argnames=("n_ref", "n_query", "row_block", "col_block"))
def _membership_blocks(queries, ref, ref_sq_radii, *, n_ref: int, n_query: int,
                       row_block: int, col_block: int):
  qb = _blocks(queries, row_block)
  rb = _blocks(ref, col_block)
  nrb = rb.shape[0]
  # Padded reference points get radius -inf: nothing is ever inside them.
  radii = jnp.pad(ref_sq_radii, (0, nrb * col_block - n_ref), constant_values=-jnp.inf)
  radii = radii.reshape(nrb, col_block)

  def row(rows):
    def col(carry, cargs):
      inside, bad = carry
      cols, rad = cargs
      d2 = sqdist(rows, cols)
      hit = jnp.any(d2 <= rad[None, :], axis=1)
      bad = bad | jnp.any(jnp.isnan(d2) | jnp.isnan(rad[None, :]), axis=1)
      return (inside | hit, bad), None
    init = (jnp.zeros((row_block,), bool), jnp.zeros((row_block,), bool))
    (inside, bad), _ = jax.lax.scan(col, init, (rb, radii))
    return inside, bad

  inside, bad = jax.lax.map(row, qb)
  return inside.reshape(-1)[:n_query], bad.reshape(-1)[:n_query]


# ----------------------------------------------------------------------------- public API


def _check_k(k: int, n: int, name: str) -> int:
  k = _validation.check_int("k", k, minimum=1)
  if k >= n:
    raise ValueError(f"`k`={k} nearest neighbours (self excluded) need more than k samples in "
                     f"`{name}`, got {n}.")
  return k


def _check_batch_size(batch_size: int) -> int:
  return _validation.check_int("batch_size", batch_size, minimum=1)


def _as_features(name: str, x) -> jax.Array:
  _validation.check_points(name, x)
  _validation.check_sqnorm_range(name, x)
  return _validation.as_float(x, names=("x",))


def knn_radii(features: jax.Array, *, k: int = 3, batch_size: int = 5000) -> jax.Array:
  """Distance from every point to its ``k``-th nearest neighbour in the same set.

  The point itself is excluded (an exact duplicate of it still counts, at distance 0).

  Args:
    features: ``[N, F]`` feature vectors, ``N > k``.
    k: neighbourhood size.
    batch_size: rows / columns per distance block (memory ``~ batch_size^2``).

  Returns:
    ``[N]`` radii ``r_k`` (not squared).

  Raises:
    ValueError: if ``features`` is not a finite ``[N, F]`` array, or ``k >= N``, or (eager
      only) its norms overflow squared distances (under ``jit`` those radii are NaN).
  """
  x = _as_features("features", features)
  k = _check_k(k, x.shape[0], "features")
  batch_size = _check_batch_size(batch_size)
  n = x.shape[0]
  return jnp.sqrt(_knn_sq_radii(x, k=int(k), n=n, block=min(int(batch_size), n)))


def manifold_membership(queries: jax.Array, reference: jax.Array, radii: jax.Array, *,
                        batch_size: int = 5000) -> jax.Array:
  """Which queries lie in the union of balls ``B(reference_j, radii_j)`` (closed balls).

  Args:
    queries: ``[M, F]`` points to test.
    reference: ``[N, F]`` ball centres.
    radii: ``[N]`` ball radii (e.g. :func:`knn_radii` of ``reference``).
    batch_size: rows / columns per distance block.

  Returns:
    ``[M]`` bool. A bool cannot hold NaN: under ``jit``, queries whose distances overflow
    (or whose balls have NaN radii) read as outside; eager calls raise instead.

  Raises:
    ValueError: on shape mismatch, non-finite inputs, negative radii, or norms that
      overflow squared distances.
  """
  r = _as_features("reference", reference)
  q = _as_features("queries", queries)
  dtype = jnp.promote_types(r.dtype, q.dtype)
  q, r = q.astype(dtype), r.astype(dtype)
  if q.shape[1] != r.shape[1]:
    raise ValueError(f"`queries` must have F={r.shape[1]} columns (matching `reference`), got "
                     f"shape {q.shape}.")
  if np.shape(radii) != (r.shape[0],):
    raise ValueError(f"`radii` must have shape [{r.shape[0]}] (one per reference point), got "
                     f"{np.shape(radii)}.")
  _validation.check_finite("radii", radii)
  if _validation.is_concrete(radii) and np.any(np.asarray(radii) < 0):
    raise ValueError(f"`radii` must be nonnegative, got min {np.min(np.asarray(radii)):g}.")
  batch_size = _check_batch_size(batch_size)
  radii = jnp.asarray(radii, q.dtype)
  return _membership(q, r, radii * radii, batch_size=int(batch_size))[0]


def precision_recall(real_features: jax.Array, fake_features: jax.Array, *, k: int = 3,
                     batch_size: int = 5000) -> PrecisionRecall:
  """Improved precision, recall and F1 of generated vs real features (Kynkäänniemi et al.).

  Args:
    real_features: ``[N, F]`` features of real samples, ``N > k``.
    fake_features: ``[M, F]`` features of generated samples, ``M > k``.
    k: neighbourhood size for the manifold radii (paper default 3).
    batch_size: rows / columns per distance block; peak memory is a few
      ``[batch_size, batch_size]`` arrays (5000: ~100 MB in float32).

  Returns:
    :class:`PrecisionRecall` of scalars: ``precision`` (fraction of fake samples inside
    the real manifold), ``recall`` (fraction of real samples inside the fake manifold) and
    ``f1 = 2 P R / (P + R)`` (0 when ``P = R = 0``).

  Raises:
    ValueError: on rank / feature-dimension mismatch, non-finite features, a non-positive
      ``k`` or ``batch_size``, ``k >= N`` or ``k >= M``, or (eager only) norms that overflow
      squared distances (under ``jit`` the scores are then NaN).
  """
  real = _as_features("real_features", real_features)
  fake = _as_features("fake_features", fake_features)
  if fake.shape[1] != real.shape[1]:
    raise ValueError(f"`fake_features` must have F={real.shape[1]} columns (matching "
                     f"`real_features`), got shape {fake.shape}.")
  k = _check_k(k, real.shape[0], "real_features")
  _check_k(k, fake.shape[0], "fake_features")
  batch_size = _check_batch_size(batch_size)
  dtype = jnp.promote_types(real.dtype, fake.dtype)
  real, fake = real.astype(dtype), fake.astype(dtype)
  n, m, k, bs = real.shape[0], fake.shape[0], int(k), int(batch_size)
  r_real = _knn_sq_radii(real, k=k, n=n, block=min(bs, n))
  r_fake = _knn_sq_radii(fake, k=k, n=m, block=min(bs, m))
  in_real, bad_fake = _membership(fake, real, r_real, batch_size=bs)
  in_fake, bad_real = _membership(real, fake, r_fake, batch_size=bs)
  # NaN distances or radii (overflowing norms) make the scores NaN, not a finite guess.
  bad = jnp.any(bad_fake) | jnp.any(bad_real)
  precision = jnp.where(bad, jnp.nan, jnp.mean(in_real.astype(dtype)))
  recall = jnp.where(bad, jnp.nan, jnp.mean(in_fake.astype(dtype)))
  total = precision + recall
  f1 = jnp.where(total > 0, 2.0 * precision * recall / jnp.where(total > 0, total, 1.0), 0.0)
  f1 = jnp.where(bad, jnp.nan, f1)
  return PrecisionRecall(precision, recall, f1)
