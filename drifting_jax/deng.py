"""Deng et al.'s drift loss, computed exactly as their public JAX implementation does.

See Deng et al. (the public implementation's ``drift_loss``) and Franz et al. App. D. Per
group, with generated ``gen [C_g, S]``, negatives ``neg [C_n, S]`` and positives
``pos [C_p, S]``:

1. targets ``[sg(gen), neg, pos]`` with weights; distances ``sqrt(max(‖·‖², 1e-8))``;
2. ``scale = mean(dist · w) / mean(w)`` over the whole tensor; coordinates are divided by
   ``max(scale/√S, 1e-3)`` and distances by ``max(scale, 1e-3)``;
3. 100 is added to the normalized distance on the gen–gen diagonal (self-interaction);
4. per temperature ``R``: logits ``−dist/R``; ``A = sqrt(max(softmax_targets · softmax_gen,
   1e-6))`` times the target weights; positive coefficients ``A_pos · Σ A_neg``, negative
   ones ``−A_neg · Σ A_pos``; force ``coef @ targets − Σcoef · x``, divided by its RMS
   ``sqrt(max(mean(force²), 1e-8))`` (whole tensor) and summed over ``R``;
5. ``goal = sg(scaled gen + force)``; loss per group ``mean_{C_g,S} (gen/scale_in − goal)²``.

The targets are centred on their mean per group before the distances: the coefficients of
step 4 sum to zero per row, so the force and the distances do not change, and far from the
origin ``‖x‖² + ‖y‖² − 2x·y`` keeps its digits. Problems with fewer than 2¹⁷ ``[B, C, T]``
entries (the shapes training calls, e.g. Franz et al.'s (5, 96, 784)) are bound by their
matmuls and by the number of operations: they follow the algorithm as written, on the
concatenated targets, with two max-shifted softmaxes per temperature; when ``S`` is large
against ``T``, ``mean(force²)`` comes from the targets' Gram matrix and the normalized
forces are summed before one force matmul. Larger ones evaluate step 4 with one exponential
per entry and temperature, the scheme below. With normalized distances ``d``, their row
minima ``ρ_i``, column minima ``κ_t`` and group minimum ``g``, let
``E = exp(−(d − (ρ_i + κ_t)/2)/R)`` (at most 1). The row normalizer of the softmax over the
targets is ``Σ_t exp(−(d − ρ_i)/R) = e^{(ρ_i − g)/2R} Σ_t E · e^{−(κ_t − g)/2R}``, the column
one ``Σ_i exp(−(d − κ_t)/R) = e^{(κ_t − g)/2R} Σ_i E · e^{−(ρ_i − g)/2R}`` (two weighted sums of
the same ``E``), and ``sqrt(softmax_targets · softmax_gen) = E / sqrt(row · column
normalizer)``: no logsumexp pass and no square root over ``[B, C, T]``. The positive and
negative coefficients never need concatenating: the force is ``Σ A_neg · (A_pos @ pos) −
Σ A_pos · (A_neg @ [gen, neg])`` and the ``Σ coef · x`` term is exactly 0. The scheme is exact
while every ``(ρ_i − g)/R`` and ``(κ_t − g)/R`` stays below 140 (the weighted sums keep every
term that matters above float32's smallest normal number); otherwise (an isolated sample at
a small temperature) ``lax.cond`` takes the log-domain evaluation with two logsumexps.
Large problems run the temperatures in a ``lax.scan`` so that one temperature's
``[B, C, T]`` buffers are live at a time.

Everything is computed in float32. The paper-level simplification (no feature scaling, one
temperature, no drift normalization) is :func:`drifting_jax.fields.deng_field` (Eq. (26)).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation, distances

Array = jax.Array
sg = jax.lax.stop_gradient

_SELF_MASK = 100.0


def _check_group(name, arr, b=None, s=None):
  shape = np.shape(arr)
  if len(shape) != 3:
    raise ValueError(f"`{name}` must have rank 3 with shape [B, C, S], got {shape}.")
  if shape[2] < 1:
    raise ValueError(f"`{name}` must have at least one feature dimension (S >= 1), got "
                     f"{shape}.")
  if b is not None and (shape[0] != b or shape[2] != s):
    raise ValueError(f"`{name}` must have shape [{b}, C, {s}] (batch and feature size of "
                     f"`x`), got {shape}.")
  _validation.check_finite(name, arr)
  if _validation.is_concrete(arr):  # computed in float32, whatever the input dtype
    _validation.check_sqnorm_range(name, np.asarray(arr, np.float32))


def _weights(name, w, like):
  if w is None:
    return jnp.ones(like.shape[:2], jnp.float32)
  if np.shape(w) != like.shape[:2]:
    raise ValueError(f"`{name}` must have shape {like.shape[:2]} ([B, C]), got {np.shape(w)}.")
  if _validation.is_concrete(w):
    arr = np.asarray(w)
    if not (_validation.is_numeric(arr) or arr.dtype == np.bool_) or not np.all(
        np.isfinite(arr)) or np.any(arr < 0):
      raise ValueError(f"`{name}` must hold finite nonnegative weights, got min "
                       f"{np.min(arr) if arr.size else 0:g}.")
  else:
    _validation.traced_check(jnp.isfinite(w) & (w >= 0),
                             f"`{name}` must hold finite nonnegative weights.")
  return jnp.asarray(w, jnp.float32)


def _check_weight_sums(w_gen, w_neg, w_pos):
  """Each group needs positive total weight on its positives and on its negatives (the
  generated samples and ``neg``): without one of them the force is identically zero.

  Returns the validity of traced weights (a scalar; ``True`` when all are concrete)."""
  pos_ok = jnp.sum(w_pos, axis=1) > 0
  neg_ok = jnp.sum(w_gen, axis=1) + jnp.sum(w_neg, axis=1) > 0
  if all(_validation.is_concrete(w) for w in (w_gen, w_neg, w_pos)):
    for name, ok in (("weight_pos", pos_ok), ("weight_gen` / `weight_neg", neg_ok)):
      bad = np.flatnonzero(~np.asarray(ok))
      if bad.size:
        raise ValueError(f"`{name}` must have a positive sum in every group; group(s) "
                         f"{bad.tolist()} have total weight 0.")
    return True
  _validation.traced_check(pos_ok, "`weight_pos` must have a positive sum in every group.")
  _validation.traced_check(neg_ok, "`weight_gen` / `weight_neg` must have a positive sum in "
                           "every group.")
  finite = [jnp.all(jnp.isfinite(w) & (w >= 0)) for w in (w_gen, w_neg, w_pos)]
  return jnp.all(pos_ok) & jnp.all(neg_ok) & finite[0] & finite[1] & finite[2]


def _check_temperatures(temperatures) -> tuple[float, ...]:
  if isinstance(temperatures, (str, bytes)) or not hasattr(temperatures, "__iter__"):
    raise ValueError(f"`temperatures` must be a non-empty sequence of positive numbers, got "
                     f"{temperatures!r}.")
  temperatures = tuple(temperatures)
  if not temperatures:
    raise ValueError("`temperatures` must be non-empty.")
  for r in temperatures:
    if not _validation.is_concrete(r):
      raise ValueError("`temperatures` must be concrete numbers (they name the `loss_<R>` "
                       "diagnostics), got a traced value; close over them instead.")
    _validation.check_positive("temperatures", r)
  return tuple(float(np.asarray(r).reshape(())) for r in temperatures)


_ONE_EXP_RANGE = 140.0
_HI = jax.lax.Precision.HIGHEST


# Problems with at least this many [B, C, T] entries (buffers of >= 512 KiB) take the
# one-exponential path and run the temperatures one at a time; smaller ones are bound by
# per-op overhead, not by the elementwise passes, and take the unrolled log-domain path.
_LARGE_ENTRIES = 2 ** 17


def _sum_over_temperatures(force_at, temperatures, out_shape, sequential):
  """``Σ_R f_R / sqrt(max(mean(f_R²), 1e-8))`` and the ``mean(f_R²)`` (step 4).

  ``force_at(r)`` is ``f_R`` (``out_shape``, ``[B, C_g, S]``). ``sequential`` runs the
  temperatures in a ``lax.scan``, so one temperature's ``[B, C, T]`` buffers are live at a
  time (an unrolled loop lets XLA schedule all of them at once: 43 instead of 28 MiB of
  temporaries at (1, 1024, 256), above glibc's mmap threshold).
  """
  def step(total, r):
    f = force_at(r)
    mean_sq = jnp.mean(f * f)
    return total + f / jnp.sqrt(jnp.maximum(mean_sq, 1e-8)), mean_sq

  if sequential:
    total, mean_sqs = jax.lax.scan(step, jnp.zeros(out_shape, jnp.float32),
                                   jnp.asarray(temperatures, jnp.float32))
    return total, tuple(mean_sqs[k] for k in range(len(temperatures)))
  total, mean_sqs = 0.0, []
  for r in temperatures:
    total, mean_sq = step(total, r)
    mean_sqs.append(mean_sq)
  return total, tuple(mean_sqs)


def _force(a_n, a_p, t_n, t_p):
  """``Σ A_neg · (A_pos @ pos) − Σ A_pos · (A_neg @ [gen, neg])``: ``coef @ targets`` without
  concatenating the coefficients (the ``Σ coef · x`` term is exactly 0)."""
  return (jnp.sum(a_n, -1, keepdims=True) * jnp.einsum("bit,bts->bis", a_p, t_p, precision=_HI)
          - jnp.sum(a_p, -1, keepdims=True) * jnp.einsum("bit,bts->bis", a_n, t_n,
                                                         precision=_HI))


def _force_one_exp(dn_n, dn_p, t_n, t_p, w_n, w_p, row_min, col_min_n, col_min_p, group_min,
                   temperatures, *, sequential):
  """Step 4 with one exponential per entry (module notes); ``dn_*`` ``[B, C_g, T_*]``."""
  g = group_min[:, None]
  half_row = 0.5 * row_min[..., None]

  def force_at(r):
    e_n = jnp.exp(-(dn_n - half_row - 0.5 * col_min_n[:, None, :]) / r)
    e_p = jnp.exp(-(dn_p - half_row - 0.5 * col_min_p[:, None, :]) / r)
    row_w = jnp.exp(-(row_min - g) / (2 * r))
    row_sum = (jnp.einsum("bit,bt->bi", e_n, jnp.exp(-(col_min_n - g) / (2 * r)), precision=_HI)
               + jnp.einsum("bit,bt->bi", e_p, jnp.exp(-(col_min_p - g) / (2 * r)),
                            precision=_HI))
    # 1 / sqrt(row normalizer) and 1 / sqrt(column normalizer)
    u = jax.lax.rsqrt(row_sum) * jnp.exp(-(row_min - g) / (4 * r))
    v_n = (jax.lax.rsqrt(jnp.einsum("bit,bi->bt", e_n, row_w, precision=_HI))
           * jnp.exp(-(col_min_n - g) / (4 * r)))
    v_p = (jax.lax.rsqrt(jnp.einsum("bit,bi->bt", e_p, row_w, precision=_HI))
           * jnp.exp(-(col_min_p - g) / (4 * r)))
    a_n = jnp.maximum(e_n * u[..., None] * v_n[:, None, :], 1e-3) * w_n[:, None, :]
    a_p = jnp.maximum(e_p * u[..., None] * v_p[:, None, :], 1e-3) * w_p[:, None, :]
    return _force(a_n, a_p, t_n, t_p)

  return _sum_over_temperatures(force_at, temperatures, dn_n.shape[:2] + t_n.shape[2:],
                                sequential)


def _force_log_domain(dn_n, dn_p, t_n, t_p, w_n, w_p, temperatures, *, sequential):
  """Step 4 with two logsumexps per temperature (exact at any distance spread); the negative
  and positive blocks stay separate buffers, as in :func:`_force_one_exp`."""
  def force_at(r):
    l_n, l_p = -dn_n / r, -dn_p / r
    # sqrt(max(softmax_targets · softmax_gen, 1e-6)) = max(exp(logits − (lse_t + lse_g)/2), 1e-3)
    lse_t = jnp.logaddexp(jax.nn.logsumexp(l_n, axis=-1),
                          jax.nn.logsumexp(l_p, axis=-1))[..., None]            # [B, C_g, 1]
    lse_n = jax.nn.logsumexp(l_n, axis=-2, keepdims=True)                       # [B, 1, T_n]
    lse_p = jax.nn.logsumexp(l_p, axis=-2, keepdims=True)
    a_n = jnp.maximum(jnp.exp(l_n - 0.5 * (lse_t + lse_n)), 1e-3) * w_n[:, None, :]
    a_p = jnp.maximum(jnp.exp(l_p - 0.5 * (lse_t + lse_p)), 1e-3) * w_p[:, None, :]
    return _force(a_n, a_p, t_n, t_p)

  return _sum_over_temperatures(force_at, temperatures, dn_n.shape[:2] + t_n.shape[2:],
                                sequential)


def _force_switch(temperatures):
  """``(ok, operands) -> (force, mean squares)``: the one-exponential evaluation where ``ok``,
  else the log-domain one, as a ``lax.cond``.

  Under ``jax.vmap`` a ``cond`` with a batched predicate becomes a ``select`` that evaluates
  both branches; the batching rule instead takes one ``cond`` on ``all(ok)`` over the batch
  (every member on the one-exponential path, or every member on the log-domain path: both
  are exact where they are taken).
  """
  def one_exp(ops):
    return _force_one_exp(*ops, temperatures, sequential=True)

  def log_domain(ops):
    return _force_log_domain(*ops[:6], temperatures, sequential=True)

  @jax.custom_batching.custom_vmap
  def switch(ok, ops):
    return jax.lax.cond(ok, one_exp, log_domain, ops)

  @switch.def_vmap
  def _batched(axis_size, in_batched, ok, ops):
    ok_batched, ops_batched = in_batched
    ops = jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), ops,
        ops_batched)
    out = jax.lax.cond(jnp.all(ok) if ok_batched else ok, jax.vmap(one_exp),
                       jax.vmap(log_domain), ops)
    return out, jax.tree_util.tree_map(lambda _: True, out)

  return switch


def _gram_is_cheaper(c_g: int, n_t: int, s: int, n_r: int) -> bool:
  """Whether the Gram evaluation of :func:`_loss_small` needs fewer multiply-adds than the
  direct one (a static choice from the shapes; 10 % margin for its extra small passes).

  Direct: the ``[C_g, T] × [T, S]`` distance matmul and one force matmul per temperature.
  Gram: the same distance matmul, the ``[T − C_g]²`` block of the targets' Gram matrix, one
  ``[C_g, T] × [T, T]`` product per temperature (the force's mean square) and one force
  matmul — cheaper when ``S`` is large against ``T`` (Franz et al.'s (96 + 96) × 784).
  """
  if _GRAM is not None:
    return _GRAM
  direct = (n_r + 1) * c_g * n_t * s
  gram = (2 * c_g * n_t * s + (n_t - c_g) ** 2 * s
          + n_r * c_g * (c_g * n_t + (n_t - c_g) ** 2))
  return gram < 0.9 * direct


#: Tests force either evaluation of the small path (``None``: chosen by the shapes).
_GRAM: bool | None = None


def _loss_small(gen, neg, pos, weights, temperatures):
  """Steps 1–5 for small problems (fewer than ``_LARGE_ENTRIES`` ``[B, C, T]`` entries),
  bound by their matmuls and the number of operations rather than by the elementwise passes:
  the targets ``[sg(gen), neg, pos]`` stay concatenated (one distance matrix, one pair of
  max-shifted softmaxes per temperature), as in the reference algorithm; the dropped
  ``Σ coef · x`` term and the folded input scale save passes. ``weights`` is ``None`` (all 1:
  no weight arithmetic is traced) or ``(w_gen, w_neg, w_pos)``.

  The coefficients of every row sum to zero (``−A_neg Σ A_pos + A_pos Σ A_neg``), so the
  force ``coef @ targets`` is unchanged by a shift of the targets: they are centred on their
  mean per group (smaller norms, less cancellation in the distances). When
  :func:`_gram_is_cheaper`, the mean square of each temperature's force is
  ``Σ_i coef_i G coef_iᵀ / (C_g S)`` with the centred targets' Gram matrix ``G`` (its
  ``[C_g, T]`` rows are the distances' cross term), and the normalized forces are summed
  *before* the one force matmul ``(Σ_R k_R coef_R) @ targets``. The temperatures'
  coefficients are stacked along the rows (``[B, R·C_g, T]``), so each product is batch-major
  (no transposes) and the direct evaluation's force products are one product.

  Returns:
    ``(loss [B], scale, mean squared force per temperature)``.
  """
  b, c_g, s = gen.shape
  old_gen = sg(gen)
  n_t, n_neg = c_g + neg.shape[1] + pos.shape[1], c_g + neg.shape[1]
  centre = (jnp.sum(old_gen, 1, keepdims=True) + jnp.sum(neg, 1, keepdims=True)
            + jnp.sum(pos, 1, keepdims=True)) / n_t                          # [B, 1, S]
  # one materialized buffer (XLA would otherwise recompute the centring into each consumer)
  targets = jax.lax.optimization_barrier(
      jnp.concatenate([old_gen - centre, neg - centre, pos - centre], axis=1))  # [B, T, S]
  use_gram = _gram_is_cheaper(c_g, n_t, s, len(temperatures))
  sq = jnp.sum(targets * targets, axis=-1)                                   # [B, T]
  cross = jnp.einsum("bis,bts->bit", targets[:, :c_g], targets, precision=_HI)  # [B, C_g, T]
  d2 = sq[:, :c_g, None] + sq[:, None, :] - 2.0 * cross
  # clamped at 0 (and 1e-8) as distances.sqdist; an overflow (inf, or NaN from inf − inf)
  # reaches the feature scale, which is then NaN, and so is every output — the guard sits
  # on that scalar, not on [B, C_g, T] (a select there kept XLA from fusing the distances
  # into the product that computes them)
  dist = jnp.sqrt(jnp.maximum(d2, 1e-8))                                     # [B, C_g, T]
  if weights is None:
    w = None
    scale = jnp.mean(dist)
  else:
    w = jnp.concatenate(weights, axis=1)                                   # [B, T]
    scale = jnp.sum(dist * w[:, None, :]) / (c_g * jnp.sum(w))
  scale = jnp.where(jnp.isfinite(scale), scale, jnp.nan)
  scale_inputs = jnp.maximum(scale / jnp.sqrt(float(s)), 1e-3)
  self_mask = np.pad(np.eye(c_g, dtype=np.float32), ((0, 0), (0, n_t - c_g)))
  dn = dist / jnp.maximum(scale, 1e-3) + _SELF_MASK * self_mask
  is_neg = np.arange(n_t) < n_neg                                            # static [T]
  sum_mask = np.stack([is_neg, ~is_neg], axis=1).astype(np.float32)          # [T, 2]
  # The force is linear in the targets: it is computed on the unscaled targets and the
  # 1 / scale_inputs folded into its mean square and its normalization (no [B, T, S] pass).
  inv_sq = 1.0 / jnp.square(scale_inputs)
  n_r = len(temperatures)
  coefs = []
  for r in temperatures:
    logits = -dn / r
    # the two softmaxes (over the targets, over the generated samples), max-shifted
    e_t = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))          # [B, C_g, T]
    e_g = jnp.exp(logits - jnp.max(logits, axis=-2, keepdims=True))
    soft = ((e_t / jnp.sum(e_t, axis=-1, keepdims=True))
            * (e_g / jnp.sum(e_g, axis=-2, keepdims=True)))
    a = jnp.sqrt(jnp.maximum(soft, 1e-6))
    if w is not None:
      a = a * w[:, None, :]
    # the row sums over the negatives and over the positives as one product with a
    # constant [T, 2] mask (two sliced sums materialized both slices first)
    sums = jnp.einsum("bit,tk->bik", a, sum_mask, precision=_HI)
    sum_n, sum_p = sums[..., :1], sums[..., 1:]
    # coefficients −A_neg · Σ A_pos and A_pos · Σ A_neg; Σ coef · x is exactly 0
    coefs.append(a * jnp.where(is_neg, -sum_p, sum_n))
  # the temperatures stacked along the rows, [B, R·C_g, T]: batch-major operands, so the
  # products below need no transposes, and one product serves every temperature
  stacked = jnp.concatenate(coefs, axis=1)
  if use_gram:
    # Σ_i coef_i G coef_iᵀ with G = [[X, Y], [Yᵀ, Z]] (gen / other targets blocks, cross =
    # [X, Y]) = Σ (c_g @ cross) ⊙ [c_g, 2 c_o] + Σ (c_o @ Z) ⊙ c_o, no [T, T] buffer
    rest = targets[:, c_g:]
    zz = jnp.einsum("bis,bjs->bij", rest, rest, precision=_HI)                # [B, T-C, T-C]
    twice = np.where(np.arange(n_t) < c_g, 1.0, 2.0).astype(np.float32)
    quad = (jnp.sum((jnp.einsum("bki,bit->bkt", stacked[..., :c_g], cross, precision=_HI)
                     * stacked * twice).reshape(b, n_r, -1), axis=(0, 2))
            + jnp.sum((jnp.einsum("bkt,btu->bku", stacked[..., c_g:], zz, precision=_HI)
                       * stacked[..., c_g:]).reshape(b, n_r, -1), axis=(0, 2)))
    # (a mean square: round-off may take the quadratic form a hair below 0)
    mean_sq = jnp.maximum(quad, 0.0) / (b * c_g * s) * inv_sq                # [R]
    k = jax.lax.rsqrt(jnp.maximum(mean_sq, 1e-8)) / scale_inputs
    total = jnp.einsum("bit,bts->bis", sum(k[i] * coefs[i] for i in range(n_r)), targets,
                       precision=_HI)
  else:
    f_all = jnp.einsum("bkt,bts->bks", stacked, targets,
                       precision=_HI)  # scale_inputs · force, [B, R·C_g, S]
    f = [f_all[:, i * c_g:(i + 1) * c_g] for i in range(n_r)]
    # per temperature (a [B, R, C_g, S] buffer reduced over axes (0, 2, 3), and summed over R,
    # took 4× the time of the product itself at (1, 256, 256))
    mean_sq = jnp.stack([jnp.mean(jnp.square(fi)) for fi in f]) * inv_sq       # [R]
    k = jax.lax.rsqrt(jnp.maximum(mean_sq, 1e-8)) / scale_inputs
    total = sum(k[i] * f[i] for i in range(n_r))
  per_r = tuple(mean_sq[i] for i in range(n_r))
  goal = sg(old_gen / scale_inputs + total)
  loss = jnp.mean(jnp.square(gen / scale_inputs - goal), axis=(-1, -2))
  return loss, scale, per_r


def deng_drift_loss(x: Array, pos: Array, neg: Array | None = None, **kwargs) -> Array:
  """``[B]`` Deng et al.'s multi-temperature drift loss per group; see
  :func:`deng_drift_loss_with_info` (same arguments) for the definition."""
  return deng_drift_loss_with_info(x, pos, neg, **kwargs)[0]


def deng_drift_loss_with_info(x: Array, pos: Array, neg: Array | None = None, *,
                              weight_gen: Array | None = None, weight_pos: Array | None = None,
                              weight_neg: Array | None = None,
                              temperatures: Sequence[float] = (0.02, 0.05, 0.2)
                              ) -> tuple[Array, dict]:
  """Deng et al.'s multi-temperature drift loss on grouped inputs, with diagnostics.

  The generated samples are their own negatives (self-pairs masked, step 3 of the module
  notes); ``neg`` adds further, optionally weighted, negatives.

  Args:
    x: ``[B, C_g, S]`` generated features (differentiable), one drift problem per group.
    pos: ``[B, C_p, S]`` positive (data) features.
    neg: optional ``[B, C_n, S]`` extra negatives (e.g. unconditional samples for CFG).
    weight_gen: optional ``[B, C_g]`` weights of the generated targets (default 1).
    weight_pos: optional ``[B, C_p]`` weights of the positives (default 1).
    weight_neg: optional ``[B, C_n]`` weights of the negatives (default 1).
      Weights must be finite and nonnegative, and every group needs a positive total on its
      positives and on its negatives (``weight_gen`` and ``weight_neg`` together; an
      all-zero ``weight_neg`` alone is fine). Traced invalid weights give NaN outputs.
    temperatures: the temperatures ``R`` (logits ``−dist/R`` on normalized distances),
      a non-empty sequence of concrete positive numbers.

  Returns:
    ``(loss [B], info)`` where ``info`` holds ``scale`` (the feature scale) and
    ``loss_<R>`` (the mean squared force before its normalization, per temperature).

  Raises:
    ValueError: on wrong shapes, empty groups, NaN/inf inputs (eager), invalid weights
      (eager) or temperatures.
  """
  gen = x
  _check_group("x", gen)
  b, c_g, s = np.shape(gen)
  if c_g < 1:
    raise ValueError("`x` must hold at least one sample per group.")
  _check_group("pos", pos, b, s)
  if np.shape(pos)[1] < 1:
    raise ValueError("`pos` must hold at least one sample per group.")
  temperatures = _check_temperatures(temperatures)

  gen = jnp.asarray(gen, jnp.float32)
  pos = jnp.asarray(pos, jnp.float32)
  if neg is None:
    neg = jnp.zeros((b, 0, s), jnp.float32)
  else:
    _check_group("neg", neg, b, s)
    neg = jnp.asarray(neg, jnp.float32)
  w_gen = _weights("weight_gen", weight_gen, gen)
  w_pos = _weights("weight_pos", weight_pos, pos)
  w_neg = _weights("weight_neg", weight_neg, neg)
  weights_valid = (True if weight_gen is None and weight_pos is None and weight_neg is None
                   else _check_weight_sums(w_gen, w_neg, w_pos))

  if b * c_g * (c_g + neg.shape[1] + pos.shape[1]) < _LARGE_ENTRIES:
    given = not (weight_gen is None and weight_pos is None and weight_neg is None)
    loss, scale, per_r = _loss_small(gen, neg, pos, (w_gen, w_neg, w_pos) if given else None,
                                     temperatures)
    info = {"scale": scale, **{f"loss_{r}": v for r, v in zip(temperatures, per_r)}}
    return _validation.nan_unless(weights_valid, (loss, info))
  old_gen = sg(gen)
  # Centred on the targets' mean per group (distances and the force, whose coefficients sum
  # to zero per row, do not change; less cancellation in the distances).
  centre = ((jnp.sum(old_gen, 1, keepdims=True) + jnp.sum(neg, 1, keepdims=True)
             + jnp.sum(pos, 1, keepdims=True)) / (c_g + neg.shape[1] + pos.shape[1]))
  centred_gen, pos_c = old_gen - centre, pos - centre
  t_neg = jnp.concatenate([centred_gen, neg - centre], axis=1)      # [B, T_n, S]
  w_tneg = jnp.concatenate([w_gen, w_neg], axis=1)                  # [B, T_n]
  # Squared distances are clamped at 0 and NaN on overflow; max(NaN, 1e-8) stays NaN.
  dist_n = jnp.sqrt(jnp.maximum(distances.batched_sqdist(centred_gen, t_neg), 1e-8))
  dist_p = jnp.sqrt(jnp.maximum(distances.batched_sqdist(centred_gen, pos_c), 1e-8))

  n_t = t_neg.shape[1] + pos.shape[1]
  w_mean = (jnp.sum(w_tneg) + jnp.sum(w_pos)) / (b * n_t)
  scale = ((jnp.sum(dist_n * w_tneg[:, None, :]) + jnp.sum(dist_p * w_pos[:, None, :]))
           / (b * c_g * n_t) / w_mean)
  scale_inputs = jnp.maximum(scale / jnp.sqrt(float(s)), 1e-3)
  old_gen_scaled = old_gen / scale_inputs
  self_mask = jnp.pad(jnp.eye(c_g, dtype=jnp.float32), ((0, 0), (0, t_neg.shape[1] - c_g)))
  dn_n = dist_n / jnp.maximum(scale, 1e-3) + _SELF_MASK * self_mask[None]
  dn_p = dist_p / jnp.maximum(scale, 1e-3)
  operands = (dn_n, dn_p, t_neg / scale_inputs, pos_c / scale_inputs, w_tneg, w_pos)

  row_min = jnp.minimum(jnp.min(dn_n, -1), jnp.min(dn_p, -1))               # [B, C_g]
  col_min_n, col_min_p = jnp.min(dn_n, -2), jnp.min(dn_p, -2)                # [B, T_*]
  group_min = jnp.min(row_min, -1)
  spread = jnp.maximum(jnp.max(row_min, -1), jnp.maximum(
      jnp.max(col_min_n, -1), jnp.max(col_min_p, -1))) - group_min
  one_exp_ok = jnp.all(spread < _ONE_EXP_RANGE * min(temperatures))
  # Only the stop-gradiented goal uses the force: nothing differentiates through the switch.
  force, per_r = _force_switch(temperatures)(
      one_exp_ok, sg(operands + (row_min, col_min_n, col_min_p, group_min)))
  info = {"scale": scale, **{f"loss_{r}": v for r, v in zip(temperatures, per_r)}}

  goal = sg(old_gen_scaled + force)
  loss = jnp.mean(jnp.square(gen / scale_inputs - goal), axis=(-1, -2))
  # Traced invalid weights (negative, non-finite, or a group without positive or negative
  # weight) make everything NaN: the feature scale mixes all groups.
  return _validation.nan_unless(weights_valid, (loss, info))


__all__ = ["deng_drift_loss", "deng_drift_loss_with_info"]
