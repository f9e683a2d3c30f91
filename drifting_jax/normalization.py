"""Kernel-width normalization by a per-class kNN-distance EMA (Franz et al. §5.1).

"We maintain, for each class, an exponential moving average (α = 0.99) of the mean
ℓ2-distance from each data sample to its k-nearest neighbors (k = 5) within a batch. Both
real and generated samples are divided by this scalar before being passed to the loss
function. [...] no optimization steps are taken during the first 300 batches."
(drifting-fields-are-not-conservative, §5.1 "Kernel width normalization").

Choices made where the text leaves room:

- The statistic is the mean over samples *and* over their k neighbours of the ℓ2 distance
  (not the distance to the k-th neighbour, the radius of Kynkäänniemi et al.); a sample is
  never its own neighbour. It is computed on the *real* (data) samples of each class.
- EMA initialisation: the first observation of a class sets its scale; afterwards
  scale ← α · scale + (1 − α) · observation. This is unbiased from the first batch (a
  constant statistic is reproduced exactly), unlike an EMA started at 0 or 1. Classes never
  observed keep scale 1 (``apply`` leaves them unchanged) and count 0.
- Warm-up counts *update calls* (batches), stored as ``state.step``; the caller skips the
  optimizer update while ``in_warmup(state, warmup_batches)`` is true (the paper uses 300).

Everything is a pure function of a ``KernelWidthState`` and jittable; validation runs on
static shapes and concrete Python hyperparameters only.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation, distances

__all__ = [
    "KernelWidthState",
    "knn_mean_distance",
    "init",
    "observe",
    "update",
    "update_from_labels",
    "update_from_observations",
    "apply",
    "in_warmup",
]


class KernelWidthState(NamedTuple):
  """Per-class kernel-width scales.

  Attributes:
    scale: EMA of the kNN mean distance per class, shape ``[C]`` (1 before any observation).
    count: number of updates that observed each class, shape ``[C]``, int32.
    step: number of ``update`` calls (batches) so far, shape ``[]``, int32.
  """
  scale: jnp.ndarray
  count: jnp.ndarray
  step: jnp.ndarray


def _check_k(k: Any, n: int, name: str = "x") -> int:
  k = _validation.check_int("k", k, minimum=1)
  if k >= n:
    raise ValueError(f"`k` must be < the number of samples per group N={n} in `{name}` "
                     f"(a sample is not its own neighbour), got k={k}.")
  return k


def _check_decay(decay: Any) -> None:
  if _validation.is_concrete(decay):
    d = _validation.scalar("decay", decay, what="a number in the open interval (0, 1)")
    if not 0.0 < d < 1.0:
      raise ValueError(f"`decay` must lie in the open interval (0, 1), got {decay!r}.")


def _pairwise_dist(x: jnp.ndarray) -> jnp.ndarray:
  """Euclidean distances ``[N, N]`` via the Gram expansion (NaN where the norms overflow)."""
  # sqrt has an infinite derivative at 0 (duplicates): safe_sqrt takes it on a safe value.
  return distances.safe_sqrt(distances.sqdist(x, x))


@functools.partial(jax.jit, static_argnums=1)
def _knn_mean(x: jnp.ndarray, k: int, mask: jnp.ndarray | None) -> jnp.ndarray:
  return _knn_mean_from_dist(_pairwise_dist(x), k, mask)


# Up to this many candidates (and neighbours) the k smallest are found by insertion into k
# running minima, elementwise over the rows: ~5x faster than `lax.top_k` on the CPU for the
# many small problems of per-location feature streams (its custom call sorts row by row).
_INSERTION_MAX_N, _INSERTION_MAX_K = 128, 8


def _k_smallest(values: jnp.ndarray, k: int) -> jnp.ndarray:
  """``[..., M] -> [..., k]``: the k smallest entries of every row in ascending order, with
  multiplicity (the values ``-lax.top_k(-values, k)[0]`` gives). A row with a NaN entry is
  NaN on the insertion path; ``top_k`` orders NaN arbitrarily (callers mark such rows)."""
  if values.shape[-1] > _INSERTION_MAX_N or k > _INSERTION_MAX_K:
    return -jax.lax.top_k(-values, k)[0]
  mins = [jnp.full(values.shape[:-1], jnp.inf, values.dtype) for _ in range(k)]
  for j in range(values.shape[-1]):  # insert column j into the sorted running minima
    v = values[..., j]
    for i in range(k):
      mins[i], v = jnp.minimum(mins[i], v), jnp.maximum(mins[i], v)
  return jnp.stack(mins, axis=-1)


def _knn_mean_from_dist(dist: jnp.ndarray, k: int, mask: jnp.ndarray | None) -> jnp.ndarray:
  n = dist.shape[0]
  invalid = jnp.eye(n, dtype=bool)
  if mask is not None:
    invalid = invalid | ~mask[None, :]
  nearest = _k_smallest(jnp.where(invalid, jnp.inf, dist), k)  # [N, k]
  per_sample = jnp.mean(nearest, axis=-1)  # [N]
  # A NaN distance (overflowing norms) makes its row NaN, whatever top_k does with it.
  per_sample = jnp.where(jnp.any(jnp.isnan(dist) & ~invalid, axis=-1), jnp.nan, per_sample)
  if mask is None:
    return jnp.mean(per_sample)
  w = mask.astype(dist.dtype)
  # Rows of masked-out samples may hold inf; zero them before weighting.
  per_sample = jnp.where(mask, per_sample, 0.0)
  mean = jnp.sum(per_sample * w) / jnp.maximum(jnp.sum(w), 1.0)
  # Fewer than k + 1 masked-in samples have no k neighbours: NaN, not 0 or inf.
  return jnp.where(jnp.sum(mask) > k, mean, jnp.nan)


def knn_mean_distance(x: Any, *, k: int = 5, mask: Any = None) -> jnp.ndarray:
  """Mean ℓ2 distance from each sample to its k nearest neighbours within ``x`` (§5.1).

  (1 / (N k)) Σ_i Σ_{j ∈ kNN(i)} ‖x_i − x_j‖, where kNN(i) excludes i itself.

  Args:
    x: samples, shape ``[N, D]`` (flatten images first).
    k: number of neighbours, 1 ≤ k < N.
    mask: optional boolean ``[N]``; only masked-in samples are queries and neighbours; at
      least k + 1 must be masked in (under ``jit``, fewer give NaN).

  Returns:
    A scalar (NaN under ``jit`` when squared distances overflow the float dtype).

  Raises:
    ValueError: if ``x`` is not a finite ``[N, D]`` array, ``k`` is out of range, a concrete
      ``mask`` selects fewer than k + 1 samples, or (eager only) the norms of ``x`` overflow
      squared distances (``‖x‖ ≳ 9e18`` in float32).
  """
  _validation.check_points("x", x)
  _validation.check_sqnorm_range("x", x)
  x = _validation.as_float(x, names=("x",))
  k = _check_k(k, x.shape[0])
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.shape != x.shape[:1]:
      raise ValueError(f"`mask` must have shape [N]={x.shape[:1]}, got {mask.shape}.")
    mask = mask.astype(bool)
    if _validation.is_concrete(mask) and int(np.sum(np.asarray(mask))) <= k:
      raise ValueError(f"`mask` must select at least k + 1 = {k + 1} samples (each needs k "
                       f"neighbours), got {int(np.sum(np.asarray(mask)))}.")
  return _knn_mean(x, k, mask)


def init(num_classes: int, *, dtype: Any = jnp.float32) -> KernelWidthState:
  """Initial state: scale 1, count 0 for every class, step 0.

  Args:
    num_classes: number of classes C ≥ 1 (use 1 for unconditional models).
    dtype: float dtype of ``scale``.
  """
  num_classes = _validation.check_int("num_classes", num_classes, minimum=1)
  return KernelWidthState(scale=jnp.ones((num_classes,), dtype),
                          count=jnp.zeros((num_classes,), jnp.int32),
                          step=jnp.zeros((), jnp.int32))


def _check_state(state: KernelWidthState) -> int:
  if not isinstance(state, KernelWidthState) or np.ndim(state.scale) != 1:
    raise ValueError("`state` must be a KernelWidthState with `scale` of shape [C].")
  return np.shape(state.scale)[0]


def _check_class_ids(class_ids: Any, shape: tuple[int, ...], num_classes: int,
                     name: str = "class_ids") -> jnp.ndarray:
  ids = jnp.asarray(class_ids)
  if ids.shape != shape:
    raise ValueError(f"`{name}` must have shape {shape}, got {ids.shape}.")
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"`{name}` must be integers, got dtype {ids.dtype}.")
  if _validation.is_concrete(class_ids):
    if ids.size:
      lo, hi = int(np.min(np.asarray(ids))), int(np.max(np.asarray(ids)))
      if lo < 0 or hi >= num_classes:
        raise ValueError(f"`{name}` must lie in [0, {num_classes}), got values in "
                         f"[{lo}, {hi}].")
  elif ids.size:
    # Under jit an out-of-range id cannot raise; JAX's gather would clamp it to another
    # class's scale and its scatter would drop it. The functions below turn it into NaN
    # instead, and this check names it under `drifting_jax.checked`.
    inside = ((ids >= 0) & (ids < num_classes)).ravel()
    _validation.traced_check(inside, f"`{name}` must lie in [0, {num_classes}), got {{}}.",
                             ids.ravel()[jnp.argmin(inside)])  # the first id outside
  return ids


def _ids_in_range(ids: jnp.ndarray, num_classes: int) -> jnp.ndarray:
  return jnp.all((ids >= 0) & (ids < num_classes))


@jax.jit
def _ema_update(state: KernelWidthState, obs: jnp.ndarray, ids: jnp.ndarray,
                valid: jnp.ndarray, decay: Any) -> KernelWidthState:
  """Folds per-group observations ``obs [G]`` of classes ``ids [G]`` into the EMA."""
  num_classes = state.scale.shape[0]
  w = valid.astype(state.scale.dtype)
  obs = jnp.where(valid, obs, 0.0).astype(state.scale.dtype)
  # Several groups of one class in a batch are averaged into a single observation.
  sums = jnp.zeros((num_classes,), state.scale.dtype).at[ids].add(obs * w)
  hits = jnp.zeros((num_classes,), state.scale.dtype).at[ids].add(w)
  seen = hits > 0
  batch_mean = sums / jnp.maximum(hits, 1.0)
  ema = decay * state.scale + (1.0 - decay) * batch_mean
  new_scale = jnp.where(seen, jnp.where(state.count == 0, batch_mean, ema), state.scale)
  # an out-of-range id (only possible under jit) poisons the state: NaN, not a dropped update
  new_scale = jnp.where(_ids_in_range(ids, num_classes), new_scale, jnp.nan)
  return KernelWidthState(scale=new_scale.astype(state.scale.dtype),
                          count=state.count + seen.astype(jnp.int32),
                          step=state.step + 1)


def observe(samples: Any, *, k: int = 5) -> jnp.ndarray:
  """The per-group statistic: kNN mean distance of each group of samples ``[G, N, D] -> [G]``.

  What :func:`update` folds into the EMA; computing it separately lets data-parallel steps
  observe their local groups and gather only ``[G]`` scalars (then
  :func:`update_from_observations`). Jittable.
  """
  shape = np.shape(samples)
  if len(shape) != 3:
    raise ValueError(f"`samples` must have shape [G, N, D], got shape {shape}.")
  k = _check_k(k, shape[1], "samples")
  return jax.vmap(lambda g: _knn_mean(g, k, None))(jnp.asarray(samples))


def update_from_observations(state: KernelWidthState, observations: Any, class_ids: Any, *,
                             decay: float = 0.99) -> KernelWidthState:
  """One EMA step from per-group statistics (:func:`observe`) of classes ``class_ids``.

  Args:
    state: current ``KernelWidthState`` with C classes.
    observations: ``[G]`` kNN mean distances of the batch's groups.
    class_ids: ``[G]`` class of each group (several groups of one class are averaged).
    decay: EMA factor α in (0, 1).

  Returns:
    The new state (``step`` + 1). Jittable; same arithmetic as :func:`update`.
  """
  _check_state(state)
  _check_decay(decay)
  if np.shape(observations) != np.shape(class_ids) or np.ndim(class_ids) != 1:
    raise ValueError(f"`observations` and `class_ids` must both have shape [G], got "
                     f"{np.shape(observations)} and {np.shape(class_ids)}.")
  ids = _check_class_ids(class_ids, np.shape(class_ids), _check_state(state))
  return _ema_update(state, jnp.asarray(observations), ids, jnp.ones(ids.shape, bool), decay)


def update(state: KernelWidthState, samples: Any, class_ids: Any, *, k: int = 5,
           decay: float = 0.99) -> KernelWidthState:
  """One EMA step from class-grouped real samples (§5.1).

  Args:
    state: current ``KernelWidthState`` with C classes.
    samples: real samples grouped by class, shape ``[G, N, D]``.
    class_ids: class of each group, int ``[G]`` in [0, C).
    k: number of neighbours, 1 ≤ k < N.
    decay: EMA factor α in (0, 1) (0.99 in the paper).

  Returns:
    The new state (``step`` + 1; classes absent from ``class_ids`` unchanged).
  """
  num_classes = _check_state(state)
  shape = np.shape(samples)
  if len(shape) != 3:
    raise ValueError(f"`samples` must have shape [G, N, D], got shape {shape}.")
  k = _check_k(k, shape[1], "samples")
  _check_decay(decay)
  ids = _check_class_ids(class_ids, shape[:1], num_classes)
  _validation.check_finite("samples", samples)
  x = jnp.asarray(samples, state.scale.dtype)
  _validation.check_sqnorm_range("samples", x)
  obs = jax.vmap(lambda g: _knn_mean(g, k, None))(x)
  return _ema_update(state, obs, ids, jnp.ones(shape[:1], bool), decay)


def update_from_labels(state: KernelWidthState, x: Any, labels: Any, *, k: int = 5,
                       decay: float = 0.99) -> KernelWidthState:
  """One EMA step from a flat labelled batch (the kNN search stays within each class).

  Classes with fewer than k + 1 samples in the batch are not updated.

  Args:
    state: current ``KernelWidthState`` with C classes.
    x: real samples, shape ``[N, D]``.
    labels: class of each sample, int ``[N]`` in [0, C).
    k: number of neighbours (k < N).
    decay: EMA factor α in (0, 1).

  Returns:
    The new state. Cost O(C N²) memory for the per-class masked neighbour search.
  """
  num_classes = _check_state(state)
  _validation.check_points("x", x)
  k = _check_k(k, np.shape(x)[0])
  _check_decay(decay)
  labels = _check_class_ids(labels, np.shape(x)[:1], num_classes, "labels")
  x = jnp.asarray(x, state.scale.dtype)
  _validation.check_sqnorm_range("x", x)
  return _update_from_labels(state, x, labels, k, decay)


@functools.partial(jax.jit, static_argnums=3)
def _update_from_labels(state, x, labels, k, decay):
  dist = _pairwise_dist(x)
  classes = jnp.arange(state.scale.shape[0])
  masks = labels[None, :] == classes[:, None]  # [C, N]
  obs = jax.vmap(lambda m: _knn_mean_from_dist(dist, k, m))(masks)
  valid = jnp.sum(masks, axis=1) > k
  new = _ema_update(state, obs, classes, valid, decay)
  # an out-of-range label (only possible under jit) poisons the state instead of being ignored
  ok = _ids_in_range(labels, state.scale.shape[0])
  return new._replace(scale=jnp.where(ok, new.scale, jnp.nan))


def apply(state: KernelWidthState, x: Any, class_ids: Any) -> jnp.ndarray:
  """Divides samples by their class's scale (real and generated alike, §5.1).

  Args:
    state: a ``KernelWidthState``.
    x: samples whose leading axes match ``class_ids``, e.g. ``[G, N, D]`` with ``[G]`` ids,
      or ``[N, D]`` with per-sample labels ``[N]``.
    class_ids: int class ids, shape = a prefix of ``x.shape``, in ``[0, C)``.

  Returns:
    ``x / scale[class_ids]`` broadcast over the trailing axes, same shape as ``x``.

  Raises:
    ValueError: (eager) ids outside ``[0, C)``. Under ``jit`` their rows are NaN instead (not
      another class's scale, as JAX's clamping gather would give), and
      :func:`drifting_jax.checked` names them. The update functions likewise raise eagerly
      and, under ``jit``, return an all-NaN ``scale`` for a batch with such an id.
  """
  num_classes = _check_state(state)
  x = _validation.as_float(x, names=("x",))
  ids_shape = np.shape(class_ids)
  if x.shape[:len(ids_shape)] != ids_shape:
    raise ValueError(f"`class_ids` shape {ids_shape} must be a prefix of `x` shape {x.shape}.")
  ids = _check_class_ids(class_ids, ids_shape, num_classes)
  # out-of-range ids (only possible under jit) read NaN, not a clamped neighbour class
  s = jnp.take(state.scale, ids, mode="fill", fill_value=jnp.nan)
  s = s.reshape(ids_shape + (1,) * (x.ndim - len(ids_shape)))
  return x / s.astype(x.dtype)


def in_warmup(state: KernelWidthState, warmup_batches: int) -> jnp.ndarray:
  """True while fewer than ``warmup_batches`` updates were made (skip optimization then).

  Args:
    state: a ``KernelWidthState``.
    warmup_batches: number of statistics-only batches (300 in Franz et al. §5.1), ≥ 0.

  Returns:
    A boolean scalar array (usable under ``jit`` with ``jax.lax.cond``).
  """
  if _validation.is_concrete(warmup_batches) and int(warmup_batches) < 0:
    raise ValueError(f"`warmup_batches` must be >= 0, got {warmup_batches!r}.")
  return state.step < warmup_batches
