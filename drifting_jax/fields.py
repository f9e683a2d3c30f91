"""Drift fields ``V_{p,q}(x)``: normalized, sharp-normalized, unnormalized, MMD, Deng et al.

All fields act on one drift problem, ``x [N, D]`` queries (generated samples) with positives
``pos [M, D]`` (data) and negatives ``neg [K, D]`` (generated samples, often ``x`` itself,
then pass ``exclude_self=True``). For several groups, ``jax.vmap`` over a leading axis.
Kernel sums are weighted averages of displacements ``Σ_j w_ij (y_j − x_i)`` whose weights
are formed in log domain (softmax / logsumexp), so far-away queries stay finite. With
``chunk_size`` the positives and negatives are streamed in blocks (online logsumexp and
running weighted means, :mod:`drifting_jax.streaming`): memory ``O(N · chunk_size)``, same
values, for banks far larger than ``N × M`` fits.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation, streaming
from drifting_jax.distances import sqdist as pairwise_sqdist  # inputs checked on entry
from drifting_jax.kernels import RadialKernel, check_kernel, gaussian

Array = jax.Array
NORMALIZATIONS = ("kde", "sharp", "none")


def check_problem(x, pos, neg=None, *, exclude_self: bool = False, kernel=None) -> None:
  """Validates a drift problem: ``x [N, D]``, ``pos [M, D]``, ``neg [K, D]`` (K = N if
  ``exclude_self``), and ``kernel`` when given. Raises ``ValueError`` naming the offending
  argument."""
  _validation.check_bool("exclude_self", exclude_self)
  if kernel is not None:
    check_kernel(kernel)
  _validation.check_points("x", x)
  d = np.shape(x)[1]
  _validation.check_points("pos", pos, dim=d)
  if neg is not None:
    _validation.check_points("neg", neg, dim=d)
    if exclude_self:
      _validation.check_self_excludable(x, neg)
      if np.shape(neg)[0] < 2:
        raise ValueError("`exclude_self=True` needs at least 2 negatives.")


def _displacement(weights: Array, x: Array, y: Array) -> Array:
  """``Σ_j w_ij (y_j − x_i)`` as one matrix product: ``[N, M], [N, D], [M, D] -> [N, D]``."""
  return (jnp.matmul(weights, y, precision=jax.lax.Precision.HIGHEST)
          - jnp.sum(weights, axis=1, keepdims=True) * x)


def _mask_diagonal(logits: Array, exclude_self: bool) -> Array:
  if not exclude_self:
    return logits
  n = logits.shape[0]
  return jnp.where(jnp.eye(n, logits.shape[1], dtype=bool), -jnp.inf, logits)


def sub_field(x: Array, samples: Array, *, kernel: RadialKernel, normalization: str = "kde",
              exclude_self: bool = False, chunk_size: int | None = None) -> Array:
  """One sub-field of Eq. (3) of Franz et al., e.g. the attraction ``V_p^+``.

  ``normalization="kde"``:   ``E[k(x,y)(y−x)] / E[k(x,y)]``        (Eq. (3), ``Z_p``),
  ``normalization="sharp"``: ``E[k(x,y)(y−x)] / E[k#(x,y)]``       (Eq. (18), ``Z#_p``),
  ``normalization="none"``:  ``E[k(x,y)(y−x)]``                    (Eq. (9)).

  Args:
    x: ``[N, D]`` queries.
    samples: ``[M, D]`` samples of the distribution.
    kernel: the radial kernel ``k``.
    normalization: one of ``"kde"``, ``"sharp"``, ``"none"``.
    exclude_self: drop ``j = i`` (``samples`` is ``x``, so ``M = N ≥ 2``); expectations
      then average ``M − 1``.
    chunk_size: stream ``samples`` in blocks of this size (``None``: all at once).

  Returns:
    ``[N, D]`` field values.

  Raises:
    ValueError: on wrong shapes, NaN/inf inputs (eager), an unknown ``normalization``,
      ``exclude_self=True`` with ``samples`` not shaped like ``x``, or a ``chunk_size`` that
      is not a positive integer.
  """
  _validation.check_bool("exclude_self", exclude_self)
  check_kernel(kernel)
  _validation.check_points("x", x)
  _validation.check_points("samples", samples, dim=np.shape(x)[1])
  if exclude_self:
    _validation.check_self_excludable(x, samples, "samples")
    if np.shape(samples)[0] < 2:
      raise ValueError("`exclude_self=True` needs at least 2 samples.")
  _validation.check_choice("normalization", normalization, NORMALIZATIONS)
  chunk_size = streaming.check_chunk_size(chunk_size)
  return _sub_field(x, samples, kernel, normalization, exclude_self, chunk_size)


def _streams(chunk_size, m: int) -> bool:
  return chunk_size is not None and chunk_size < m


def _sub_field(x: Array, samples: Array, kernel: RadialKernel, normalization: str,
               exclude_self: bool, chunk_size: int | None = None) -> Array:
  """:func:`sub_field` on validated inputs."""
  x, samples = _validation.as_float(x, samples, names=("x", "samples"))
  if _streams(chunk_size, samples.shape[0]):
    return _streamed_sub_field(x, samples, kernel, normalization, exclude_self, chunk_size)
  d2 = pairwise_sqdist(x, samples)
  log_k = _mask_diagonal(kernel.log_k(d2), exclude_self)
  if normalization == "kde":
    weights = jax.nn.softmax(log_k, axis=1)
  elif normalization == "sharp":
    log_z = jax.nn.logsumexp(_mask_diagonal(kernel.log_sharp(d2), exclude_self), axis=1)
    weights = jnp.exp(log_k - log_z[:, None])
  else:
    count = samples.shape[0] - (1 if exclude_self else 0)
    weights = jnp.exp(log_k) / count
  return _displacement(weights, x, samples)


def _streamed_sub_field(x, samples, kernel, normalization, exclude_self, chunk_size):
  """:func:`_sub_field` streamed over blocks of ``samples``."""
  if normalization == "sharp":
    logits = lambda d2, allowed, _: (kernel.log_k(d2), kernel.log_sharp(d2))  # noqa: E731
    mk, ms = streaming.stream_moments(x, samples, logits, chunk_size=chunk_size,
                                      means=(True, False), exclude_self=exclude_self)
    return streaming.displacement(mk, x, -ms.log_sum)
  (mk,) = streaming.stream_moments(x, samples, lambda d2, allowed, _: (kernel.log_k(d2),),
                                   chunk_size=chunk_size, means=(True,),
                                   exclude_self=exclude_self)
  if normalization == "kde":  # a row without mass has no softmax: NaN, as in one shot
    return streaming.displacement(mk, x, -mk.log_sum)
  count = samples.shape[0] - (1 if exclude_self else 0)
  return streaming.displacement(mk, x, -np.log(count))


def drift_field(x: Array, pos: Array, neg: Array, *, kernel: RadialKernel,
                normalization: str = "kde", exclude_self: bool = False,
                chunk_size: int | None = None) -> Array:
  """The drift field ``V_{p,q} = V_p^+ − V_q^-``.

  ``"kde"`` is the normalized ("naive") field of Eq. (3) of Franz et al. (Alg. 2);
  ``"sharp"`` the sharp-normalized field of Eqs. (18)–(19), ``= ∇ log(p_KDE[k#]/q_KDE[k#])``;
  ``"none"`` the unnormalized field of Eq. (9), ``= −∇ₓ L^MMD[k#]`` (Prop. 7).

  Args:
    x: ``[N, D]`` generated samples (queries).
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives (generated samples).
    kernel: the radial kernel.
    normalization: ``"kde"``, ``"sharp"`` or ``"none"``.
    exclude_self: mask ``x_i`` out of its own negatives (``neg`` is ``x``; K = N).
    chunk_size: stream ``pos`` and ``neg`` in blocks of this many samples (online
      logsumexp and running weighted sums; memory ``O(N · chunk_size)``); ``None``
      computes the ``[N, M]`` and ``[N, K]`` matrices at once.

  Returns:
    ``[N, D]`` drift vectors.
  """
  check_problem(x, pos, neg, exclude_self=exclude_self, kernel=kernel)
  _validation.check_choice("normalization", normalization, NORMALIZATIONS)
  chunk_size = streaming.check_chunk_size(chunk_size)
  x, pos, neg = _validation.as_float(x, pos, neg, names=("x", "pos", "neg"))
  v_pos = _sub_field(x, pos, kernel, normalization, False, chunk_size)
  v_neg = _sub_field(x, neg, kernel, normalization, exclude_self, chunk_size)
  return v_pos - v_neg


def mmd_field(x: Array, pos: Array, neg: Array, *, kernel: RadialKernel,
              exclude_self: bool = False, chunk_size: int | None = None) -> Array:
  """The MMD-induced field ``−∇ₓ L^MMD[k](x) = E_p[k♭(x,y)(y−x)] − E_q[k♭(x,y)(y−x)]``.

  Eq. (8) of Franz et al. (written there with ``2φ' = −k♭``; the sign here is the one that
  makes the field the negative gradient of the MMD potential of Eq. (7)). With the sharp
  kernel in place of ``k`` it is the unnormalized field of Eq. (9) (Prop. 7).
  Coincident pairs contribute zero (their displacement is zero; for kernels with a singular
  flat, e.g. the Laplacian, this is the subgradient choice).

  Args:
    x: ``[N, D]`` queries.
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives.
    kernel: the radial kernel ``k`` of the MMD.
    exclude_self: mask ``x_i`` out of its own negatives (K = N).
    chunk_size: stream ``pos`` and ``neg`` in blocks of this many samples (``None``: all
      at once).

  Returns:
    ``[N, D]`` field values.
  """
  check_problem(x, pos, neg, exclude_self=exclude_self, kernel=kernel)
  chunk_size = streaming.check_chunk_size(chunk_size)
  x, pos, neg = _validation.as_float(x, pos, neg, names=("x", "pos", "neg"))

  def log_flat_of(d2):
    positive = d2 > 0
    # k♭ may be +inf at d2 = 0; evaluate it on a safe argument and drop those pairs (only
    # exact zeros: a NaN distance stays NaN).
    dropped = jnp.where(d2 == 0, -jnp.inf, jnp.nan)
    return jnp.where(positive, kernel.log_flat(jnp.where(positive, d2, 1.0)), dropped)

  def flat_term(y, mask):
    count = y.shape[0] - (1 if mask else 0)
    if _streams(chunk_size, y.shape[0]):
      (mf,) = streaming.stream_moments(x, y, lambda d2, allowed, _: (log_flat_of(d2),),
                                       chunk_size=chunk_size, means=(True,), exclude_self=mask)
      return streaming.displacement(mf, x, -np.log(count))
    log_flat = _mask_diagonal(log_flat_of(pairwise_sqdist(x, y)), mask)
    return _displacement(jnp.exp(log_flat) / count, x, y)

  return flat_term(pos, False) - flat_term(neg, exclude_self)


def deng_field(x: Array, pos: Array, neg: Array, *, kernel: RadialKernel,
               exclude_self: bool = False, column_normalize: bool = False,
               chunk_size: int | None = None) -> Array:
  """The joint-softmax drift of Deng et al. (Franz et al. App. D, Alg. 2 of Deng et al.).

  Logits ``log k`` to ``[pos ‖ neg]`` are normalized together over the targets (a row
  softmax); with ``column_normalize`` the affinity is ``sqrt(row_softmax · column_softmax)``
  (column = over the queries), as in Deng et al.'s code. Then
  ``W_pos = A_pos · Σ_k A_neg``, ``W_neg = A_neg · Σ_j A_pos`` and
  ``V = W_pos @ pos − W_neg @ neg``. Without column normalization and with ``M = K`` this is
  Eq. (26) of Franz et al., ``E_{p,q}[k⁺k⁻(y⁺ − y⁻)] / (Z_p + Z_q)²`` (Corollary 18).

  Args:
    x: ``[N, D]`` generated samples.
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives.
    kernel: the radial kernel (Deng et al. use the Laplacian, ``exp(−‖x−y‖/τ)``).
    exclude_self: mask ``x_i`` out of its own negatives (K = N).
    column_normalize: also normalize over the queries (doubly-stochastic affinity).
    chunk_size: stream ``pos`` and ``neg`` in blocks of this many samples (``None``: all
      at once). Exact also with ``column_normalize``: a column's normalizer runs over the
      ``N`` queries, which every block holds; only the row normalizer is accumulated.

  Returns:
    ``[N, D]`` drift vectors.
  """
  check_problem(x, pos, neg, exclude_self=exclude_self, kernel=kernel)
  _validation.check_bool("column_normalize", column_normalize)
  chunk_size = streaming.check_chunk_size(chunk_size)
  x, pos, neg = _validation.as_float(x, pos, neg, names=("x", "pos", "neg"))
  m = pos.shape[0]
  if _streams(chunk_size, max(m, neg.shape[0])):
    return _streamed_deng_field(x, pos, neg, kernel, exclude_self, column_normalize,
                                chunk_size)
  logits = jnp.concatenate(
      [kernel.log_k(pairwise_sqdist(x, pos)),
       _mask_diagonal(kernel.log_k(pairwise_sqdist(x, neg)), exclude_self)], axis=1)
  if column_normalize:
    # sqrt(row · col) in log domain: same values, and no infinite sqrt' at zero affinities
    # (masked diagonal, underflow), so gradients through the field stay finite.
    affinity = jnp.exp(0.5 * (jax.nn.log_softmax(logits, axis=1)
                              + jax.nn.log_softmax(logits, axis=0)))
  else:
    affinity = jax.nn.softmax(logits, axis=1)
  a_pos, a_neg = affinity[:, :m], affinity[:, m:]
  w_pos = a_pos * jnp.sum(a_neg, axis=1, keepdims=True)
  w_neg = a_neg * jnp.sum(a_pos, axis=1, keepdims=True)
  # Σ W_pos = Σ W_neg per row, so W_pos@pos − W_neg@neg = Σ W_pos(y⁺−x) − Σ W_neg(y⁻−x).
  return _displacement(w_pos, x, pos) - _displacement(w_neg, x, neg)


def _streamed_deng_field(x, pos, neg, kernel, exclude_self, column_normalize, chunk_size):
  """:func:`deng_field` streamed over blocks of ``pos`` and ``neg``.

  With row log-normalizer ``r_i`` (over ``[pos ‖ neg]``) and column log-normalizers ``c_j``
  (over the queries), the affinity is ``A_ij = exp(l'_ij − s·r_i)`` with ``l' = l, s = 1``
  (row softmax) or ``l' = l − c/2, s = 1/2`` (sqrt of row · column softmax). Then
  ``Σ_j W⁺_ij (y⁺_j − x_i) − Σ_k W⁻_ik (y⁻_k − x_i) = S⁺_i S⁻_i (ȳ⁺_i − ȳ⁻_i)`` with
  ``S = Σ_j A_ij`` and ``ȳ`` the ``l'``-softmax means, all accumulated per row.
  """
  def logits(d2, allowed, _):
    l = kernel.log_k(d2)
    if not column_normalize:
      return l, l
    log_col = jax.nn.logsumexp(jnp.where(allowed, l, -jnp.inf), axis=0)
    return l - 0.5 * log_col[None, :], l

  mp, rp = streaming.stream_moments(x, pos, logits, chunk_size=chunk_size, means=(True, False))
  mn, rn = streaming.stream_moments(x, neg, logits, chunk_size=chunk_size, means=(True, False),
                                    exclude_self=exclude_self)
  log_row = jnp.logaddexp(rp.log_sum, rn.log_sum)
  s = 0.5 if column_normalize else 1.0
  log_mass = mp.log_sum + mn.log_sum - 2 * s * log_row
  return jnp.exp(log_mass)[:, None] * (mp.mean - mn.mean)  # means are 0 for massless rows


def doubly_stochastic_field(x: Array, pos: Array, neg: Array, *, bandwidth,
                            exclude_self: bool = False, chunk_size: int | None = None) -> Array:
  """Gaussian doubly-stochastic drift, Secretly-SM App. G.3.1, Eq. (40) and Algorithm 1.

  Gaussian logits ``−‖x−y‖²/2σ²`` over ``[pos ‖ neg]``, affinity
  ``sqrt(softmax_row · softmax_col)``, attraction/repulsion coefficients as in
  :func:`deng_field` (which this calls with the Gaussian kernel and column normalization).

  Args:
    x: ``[N, D]`` generated samples.
    pos: ``[M, D]`` data samples.
    neg: ``[K, D]`` negatives (Secretly-SM uses ``x`` itself with ``exclude_self=True``).
    bandwidth: σ > 0, possibly traced (annealing schedules, Secretly-SM §6.2).
    exclude_self: ``neg`` is ``x``: mask the self-interactions (K = N).
    chunk_size: stream ``pos`` and ``neg`` in blocks (see :func:`deng_field`).

  Returns:
    ``[N, D]`` drift vectors.
  """
  return deng_field(x, pos, neg, kernel=gaussian(bandwidth), exclude_self=exclude_self,
                    column_normalize=True, chunk_size=chunk_size)


def _check_field_kwargs(field_fn, scale, field_kwargs) -> None:
  """Raises if ``field_fn`` cannot take ``field_kwargs`` (checked on its signature)."""
  try:
    signature = inspect.signature(field_fn)
  except (TypeError, ValueError):  # no introspectable signature: let the call decide
    return
  arg = {"kernel": scale} if isinstance(scale, RadialKernel) else {"bandwidth": scale}
  try:
    signature.bind(None, None, None, **arg, **field_kwargs)
  except TypeError as e:
    raise ValueError(f"`field_fn` {getattr(field_fn, '__name__', field_fn)!r} does not take "
                     f"the scale ({next(iter(arg))}=) and the keyword arguments "
                     f"{sorted(field_kwargs)}: {e}.") from None


def multiscale(field_fn: Callable[..., Array], scales: Sequence[Any], *,
               normalize: bool = False, eps: float = 1e-8, **field_kwargs: Any
               ) -> Callable[..., Array]:
  """Sums a field over several kernels or bandwidths, ``V = Σ_k V_k`` (Deng et al.'s
  multi-temperature form).

  Args:
    field_fn: a field of this module's convention, ``field_fn(x, pos, neg, *, kernel=...)``
      or ``field_fn(x, pos, neg, *, bandwidth=...)``, e.g. :func:`drift_field` or
      :func:`doubly_stochastic_field`.
    scales: non-empty; :class:`~drifting_jax.kernels.RadialKernel` items are passed as
      ``kernel=``, positive numbers (possibly traced) as ``bandwidth=``.
    normalize: divide each ``V_k`` by its RMS ``sqrt(max(mean(V_k²), eps))`` before summing,
      as Deng et al. do so that every scale contributes equally.
    eps: floor of the mean square in the normalization (finite, ``>= 0``).
    **field_kwargs: further keyword arguments of ``field_fn`` (e.g. ``exclude_self=True``;
      not ``kernel`` or ``bandwidth``, which ``scales`` sets).

  Returns:
    ``fn(x, pos, neg) -> [N, D]``.

  Example::

    v = multiscale(drift_field, [laplacian(t) for t in (0.02, 0.05, 0.2)],
                   normalize=True, exclude_self=True)(x, pos, x)
  """
  if not callable(field_fn):
    raise ValueError(f"`field_fn` must be a field function, got {field_fn!r}.")
  if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
    raise ValueError(f"`scales` must be a non-empty sequence of kernels or bandwidths, got "
                     f"{scales!r}.")
  scales = tuple(scales)
  if not scales:
    raise ValueError("`scales` must be a non-empty sequence of kernels or bandwidths.")
  for s in scales:
    if not isinstance(s, RadialKernel):
      _validation.check_positive("scales", s)
  _validation.check_bool("normalize", normalize)
  if _validation.scalar("eps", eps) < 0 or not np.isfinite(float(eps)):
    raise ValueError(f"`eps` must be a finite number >= 0, got {eps!r}.")
  clash = sorted({"kernel", "bandwidth"} & set(field_kwargs))
  if clash:
    raise ValueError(f"`{clash[0]}` is set by `scales`; pass it there, not as a field "
                     "keyword argument.")
  _check_field_kwargs(field_fn, scales[0], field_kwargs)

  def fn(x, pos, neg):
    total = 0.0
    for s in scales:
      arg = {"kernel": s} if isinstance(s, RadialKernel) else {"bandwidth": s}
      v = field_fn(x, pos, neg, **arg, **field_kwargs)
      if normalize:
        v = v / jnp.sqrt(jnp.maximum(jnp.mean(v * v), eps))
      total = total + v
    return total

  return fn


__all__ = ["sub_field", "drift_field", "mmd_field", "deng_field", "doubly_stochastic_field",
           "multiscale", "check_problem"]
