"""Deng et al.'s drift loss, computed exactly as their public JAX implementation does.

See Deng et al. (the public implementation's ``drift_loss``) and Franz et al. App. D. Per group, with generated ``gen [C_g, S]``, negatives ``neg [C_n, S]``
and positives ``pos [C_p, S]``:

1. targets ``[sg(gen), neg, pos]`` with weights; distances ``sqrt(max(‖·‖², 1e-8))``;
2. ``scale = mean(dist · w) / mean(w)`` over the whole tensor; coordinates are divided by
   ``max(scale/√S, 1e-3)`` and distances by ``max(scale, 1e-3)``;
3. 100 is added to the normalized distance on the gen–gen diagonal (self-interaction);
4. per temperature ``R``: logits ``−dist/R``; ``A = sqrt(max(softmax_targets · softmax_gen,
   1e-6))`` times the target weights; positive coefficients ``A_pos · Σ A_neg``, negative
   ones ``−A_neg · Σ A_pos``; force ``coef @ targets − Σcoef · x``, divided by its RMS
   ``sqrt(max(mean(force²), 1e-8))`` (whole tensor) and summed over ``R``;
5. ``goal = sg(scaled gen + force)``; loss per group ``mean_{C_g,S} (gen/scale_in − goal)²``.

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

  old_gen = sg(gen)
  targets = jnp.concatenate([old_gen, neg, pos], axis=1)            # [B, T, S]
  w_targets = jnp.concatenate([w_gen, w_neg, w_pos], axis=1)        # [B, T]
  # Squared distances are clamped at 0 and NaN on overflow; max(NaN, 1e-8) stays NaN.
  dist = jnp.sqrt(jnp.maximum(distances.batched_sqdist(old_gen, targets), 1e-8))  # [B, C_g, T]

  scale = jnp.mean(dist * w_targets[:, None, :]) / jnp.mean(w_targets)
  scale_inputs = jnp.maximum(scale / jnp.sqrt(float(s)), 1e-3)
  old_gen_scaled = old_gen / scale_inputs
  targets_scaled = targets / scale_inputs
  dist_normed = dist / jnp.maximum(scale, 1e-3)
  self_mask = jnp.pad(jnp.eye(c_g, dtype=jnp.float32), ((0, 0), (0, targets.shape[1] - c_g)))
  dist_normed = dist_normed + _SELF_MASK * self_mask[None]

  split = c_g + neg.shape[1]
  info = {"scale": scale}
  force = jnp.zeros_like(old_gen_scaled)
  for r in temperatures:
    logits = -dist_normed / r
    # sqrt(max(softmax_targets · softmax_gen, 1e-6)) computed in log domain as
    # max(exp(logits − (lse_targets + lse_gen)/2), 1e-3): the same numbers without the
    # product and the square root.
    lse_t = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    lse_g = jax.nn.logsumexp(logits, axis=-2, keepdims=True)
    affinity = jnp.maximum(jnp.exp(logits - 0.5 * (lse_t + lse_g)), 1e-3)
    affinity = affinity * w_targets[:, None, :]
    a_neg, a_pos = affinity[..., :split], affinity[..., split:]
    coef = jnp.concatenate([-a_neg * jnp.sum(a_pos, -1, keepdims=True),
                            a_pos * jnp.sum(a_neg, -1, keepdims=True)], axis=-1)
    force_r = (jnp.einsum("bit,bts->bis", coef, targets_scaled,
                          precision=jax.lax.Precision.HIGHEST)
               - jnp.sum(coef, -1)[..., None] * old_gen_scaled)
    mean_sq = jnp.mean(force_r * force_r)
    info[f"loss_{r}"] = mean_sq
    force = force + force_r / jnp.sqrt(jnp.maximum(mean_sq, 1e-8))

  goal = sg(old_gen_scaled + force)
  loss = jnp.mean(jnp.square(gen / scale_inputs - goal), axis=(-1, -2))
  # Traced invalid weights (negative, non-finite, or a group without positive or negative
  # weight) make everything NaN: the feature scale mixes all groups.
  return _validation.nan_unless(weights_valid, (loss, info))


__all__ = ["deng_drift_loss", "deng_drift_loss_with_info"]
