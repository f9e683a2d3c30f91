"""Kernel sums streamed over blocks of samples: online logsumexp and running weighted means.

Every field and KDE of this library reduces, per query ``x_i``, to sums over the samples
``y_j`` of the form ``Σ_j exp(l_ij)`` and ``Σ_j exp(l_ij) y_j`` for some logits ``l_ij``
(a log kernel, shifted and masked). :func:`stream_moments` computes them over blocks of
``chunk_size`` samples with ``jax.lax.scan``, rescaling the running sums to a running
maximum (the online softmax), so memory is ``O(N · chunk_size)`` instead of ``O(N · M)``
while the result equals the one-shot computation up to float rounding. The scan body is
rematerialized (``jax.checkpoint``), so reverse-mode gradients stream too: the backward pass
keeps only the running sums of each block, ``O(N · D)`` per block.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from drifting_jax import _validation
from drifting_jax.distances import sqdist as pairwise_sqdist  # inputs checked by the callers

Array = jax.Array
# logits_fn(d2 [N, C], allowed [N, C], columns) -> tuple of [N, C] logits
LogitsFn = Callable[[Array, Array, Any], Sequence[Array]]


class Moments(NamedTuple):
  """Per-query sums over the samples for one logit matrix ``l``.

  Attributes:
    log_sum: ``[N]`` ``log Σ_j exp(l_ij)`` (``-inf`` for a row without mass).
    mean: ``[N, D]`` ``Σ_j softmax_j(l_i) y_j``, the weighted mean of the samples (0 for a
      row without mass, so that callers decide what such a row means); ``None`` when not
      requested.
  """

  log_sum: Array
  mean: Array | None


def check_chunk_size(chunk_size: Any) -> int | None:
  """``None`` or a positive ``int`` (``ValueError`` naming ``chunk_size`` otherwise)."""
  if chunk_size is None:
    return None
  return _validation.check_int("chunk_size", chunk_size, minimum=1)


def dense_moments(x: Array, y: Array, logits_fn: LogitsFn, *, means: Sequence[bool],
                  exclude_self: bool = False, columns: Any = None) -> tuple[Moments, ...]:
  """:func:`stream_moments` in one block (the ``[N, M]`` matrices at once)."""
  n, m = x.shape[0], y.shape[0]
  valid = jnp.ones((n, m), bool)
  if exclude_self:
    valid = ~jnp.eye(n, m, dtype=bool)
  logits = logits_fn(pairwise_sqdist(x, y), valid, columns)
  out = []
  for l, want in zip(logits, means, strict=True):
    l = jnp.where(valid, l, -jnp.inf)
    log_sum = jax.nn.logsumexp(l, axis=1)
    mean = None
    if want:
      shift = jnp.where(jnp.isfinite(log_sum), log_sum, 0.0)
      w = jnp.exp(l - shift[:, None])
      mean = jnp.matmul(w, y, precision=jax.lax.Precision.HIGHEST)
    out.append(Moments(log_sum, mean))
  return tuple(out)


def stream_moments(x: Array, y: Array, logits_fn: LogitsFn, *, chunk_size: int | None,
                   means: Sequence[bool], exclude_self: bool = False,
                   columns: Any = None) -> tuple[Moments, ...]:
  """Streams ``log Σ_j exp(l_ij)`` and ``Σ_j softmax_j(l_i) y_j`` over blocks of ``y``.

  Args:
    x: ``[N, D]`` queries (validated, float).
    y: ``[M, D]`` samples (validated, float).
    logits_fn: ``(d2, allowed, columns) -> (l_1, ..., l_T)``: the ``[N, C]`` logit
      matrices of one block from its squared distances ``d2 [N, C]``, the mask
      ``allowed [N, C]`` (False for ``j = i`` under ``exclude_self``) and the block of
      ``columns``. Disallowed entries are set to ``-inf`` afterwards; a column-wise
      operation (e.g. a softmax over the queries) must apply ``allowed`` itself. Blocks
      hold ``chunk_size`` samples, the last one the remainder.
    chunk_size: samples per block; ``None`` (or ``>= M``) computes everything at once.
    means: one flag per logit matrix: also accumulate the weighted mean of ``y``.
    exclude_self: mask ``j = i`` (``y`` is ``x``-like, ``M = N``).
    columns: optional pytree of per-sample ``[M, ...]`` arrays streamed with ``y`` (e.g.
      log weights).

  Returns:
    One :class:`Moments` per logit matrix.
  """
  m = y.shape[0]
  if chunk_size is None or chunk_size >= m:
    return dense_moments(x, y, logits_fn, means=means, exclude_self=exclude_self,
                         columns=columns)
  n, d = x.shape
  num_full = m // chunk_size
  row_ids = jnp.arange(n)

  def accumulate(carry, yb, cb, start):
    """Folds one block ``yb [C, D]`` (samples ``start .. start + C − 1``) into the sums."""
    allowed = jnp.ones((n, yb.shape[0]), bool)
    if exclude_self:
      allowed = row_ids[:, None] != (start + jnp.arange(yb.shape[0]))[None, :]
    logits = logits_fn(pairwise_sqdist(x, yb), allowed, cb)
    new = []
    for (run_max, run_sum, run_y), l, want in zip(carry, logits, means, strict=True):
      l = jnp.where(allowed, l, -jnp.inf)
      new_max = jnp.maximum(run_max, jnp.max(l, axis=1))
      # Shift by a finite value: while everything seen is -inf, exp(-inf - (-inf)) is NaN.
      shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
      scale = jnp.exp(run_max - shift)
      w = jnp.exp(l - shift[:, None])
      run_sum = run_sum * scale + jnp.sum(w, axis=1)
      if want:
        run_y = run_y * scale[:, None] + jnp.matmul(w, yb, precision=jax.lax.Precision.HIGHEST)
      new.append((new_max, run_sum, run_y))
    return tuple(new)

  @jax.checkpoint
  def body(carry, i):
    # Blocks are sliced from the bank inside the loop: no padded or reshaped copy of it.
    start = i * chunk_size
    yb = jax.lax.dynamic_slice_in_dim(y, start, chunk_size)
    cb = jax.tree_util.tree_map(
        lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk_size), columns)
    return accumulate(carry, yb, cb, start), None

  init = tuple((jnp.full((n,), -jnp.inf, x.dtype), jnp.zeros((n,), x.dtype),
                jnp.zeros((n, d) if want else (), x.dtype)) for want in means)
  final, _ = jax.lax.scan(body, init, jnp.arange(num_full))
  tail = num_full * chunk_size
  if tail < m:  # the last, shorter block
    final = jax.checkpoint(accumulate, static_argnums=3)(
        final, y[tail:], jax.tree_util.tree_map(lambda a: a[tail:], columns), tail)
  out = []
  for (run_max, run_sum, run_y), want in zip(final, means, strict=True):
    shift = jnp.where(jnp.isfinite(run_max), run_max, 0.0)
    log_sum = jnp.log(run_sum) + shift
    mean = None
    if want:
      has_mass = run_sum > 0
      mean = run_y / jnp.where(has_mass, run_sum, 1.0)[:, None]
    out.append(Moments(log_sum, mean))
  return tuple(out)


def displacement(moments: Moments, x: Array, log_scale: Array | float = 0.0) -> Array:
  """``exp(log_sum + log_scale) · (mean − x)`` = ``Σ_j exp(l_ij + log_scale)(y_j − x_i)``.

  Rows without mass contribute 0 (their weights are all zero); a ``log_scale`` of ``+inf``
  or NaN still propagates.
  """
  log_w = moments.log_sum + log_scale
  has_mass = moments.log_sum > -jnp.inf
  mean = jnp.where(has_mass[:, None], moments.mean, x)
  return jnp.exp(log_w)[:, None] * (mean - x)


__all__ = ["Moments", "check_chunk_size", "dense_moments", "displacement", "stream_moments"]
