"""Class-grouped drifting losses: one drift problem per class group, as pure functions.

Class-conditional drifting (Deng et al. §3.5; Franz et al. §5.1) treats each class of a
batch as its own drift problem: ``G`` groups of ``N`` generated samples ``gen [G, N, D]``
with ``M`` real samples of the same class ``pos [G, M, D]``; the negatives are the group's
own generated samples (self-pairs excluded). These functions compute such losses with
nothing but arrays and an objective (:func:`drifting_jax.objectives.make_objective`), so a
user-written training step can use them directly; the built-in image trainer is built on
them too. Everything is jittable; ``jax.vmap`` runs over the groups.

Pieces:

* :func:`grouped_loss`: any objective ``fn(x [N, D], pos [M, D], step)`` on every group.
* Classifier-free guidance (Deng et al. §3.5, Secretly-SM Table 2): per group a CFG scale
  ``α`` (:func:`sample_cfg_scale`, density ``∝ α^(-3)`` on ``[1, 4]``) conditions the
  generator, and ``U`` unconditional real samples join the negatives, each with weight
  :func:`cfg_negative_weight` ``= (α − 1)(N − 1)/U``: the negatives then represent the
  mixture ``q̃ = (1 − γ) q_θ(·|c) + γ p(·|∅)`` with ``α = 1/(1 − γ)``.
  :func:`guided_grouped_loss` computes it with Deng et al.'s loss (the loss that takes
  weighted negatives).
* :func:`kernel_scaled`: divide every group by its class's kernel-width scale
  (:mod:`drifting_jax.normalization`) before the loss.
* :func:`stream_loss`: the sum over feature streams ``{name: [G, N, D_s]}`` of the
  group-mean losses, each stream with its own kernel-width scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation
from drifting_jax.deng import deng_drift_loss_with_info

__all__ = ["cfg_negative_weight", "grouped_loss", "guided_grouped_loss", "kernel_scaled",
           "sample_cfg_scale", "stream_loss"]

Array = jax.Array
GroupLoss = Callable[..., tuple[Array, dict[str, Array]]]
sg = jax.lax.stop_gradient


def _check_groups(gen, pos, extra: Mapping[str, Any] | None = None) -> None:
  g_shape, p_shape = np.shape(gen), np.shape(pos)
  if len(g_shape) != 3 or len(p_shape) != 3:
    raise ValueError(f"`gen` and `pos` must have shape [G, N, D] and [G, M, D], got "
                     f"{g_shape} and {p_shape}")
  if g_shape[0] != p_shape[0] or g_shape[2] != p_shape[2]:
    raise ValueError(f"`gen` {g_shape} and `pos` {p_shape} must agree in the group count G "
                     "and the dimension D")
  for name, arr in (extra or {}).items():
    shape = np.shape(arr)
    if len(shape) != 3 or shape[0] != g_shape[0] or shape[2] != g_shape[2]:
      raise ValueError(f"`{name}` must have shape [G={g_shape[0]}, U, D={g_shape[2]}], "
                       f"got {shape}")
  # NaN/inf samples raise here (eager) or register a checkify check (traced), rather than
  # reaching the objective, whose per-group vmap would only see tracers.
  for name, arr in (("gen", gen), ("pos", pos), *(extra or {}).items()):
    _validation.check_finite(name, arr)
    _validation.check_sqnorm_range(name, arr)  # eager: overflowing distances are an error


def grouped_loss(objective: Callable, gen: Array, pos: Array, *, step: Any = 0
                 ) -> tuple[Array, dict[str, Array]]:
  """Per-group loss of ``objective`` on class groups (``jax.vmap`` over ``G``).

  Args:
    objective: ``fn(x [N, D], pos [M, D], step) -> (loss [], metrics)``, e.g. from
      :func:`drifting_jax.objectives.make_objective` (negatives = ``x``, self excluded).
    gen: ``[G, N, D]`` generated samples (differentiable).
    pos: ``[G, M, D]`` real samples of each group's class.
    step: optimizer step (for bandwidth schedules), shared by all groups.

  Returns:
    ``(loss [G], metrics {name: [G]})``; average ``loss`` over groups for the batch loss.
  """
  _check_groups(gen, pos)
  return jax.vmap(objective, in_axes=(0, 0, None))(gen, pos, step)


def cfg_negative_weight(cfg_scale: Any, *, num_gen: int, num_uncond: int) -> Array:
  """Weight ``(α − 1)(N_gen − 1) / N_unc`` of each unconditional negative.

  With ``N_gen − 1`` generated negatives of weight 1 (self excluded), the unconditional
  samples then carry the fraction ``γ = (α − 1)/α`` of the total negative weight, i.e. the
  negatives represent ``(1 − γ) q_θ(·|c) + γ p(·|∅)`` with ``α = 1/(1 − γ)`` (Deng et al.
  §3.5).

  Args:
    cfg_scale: CFG scales ``α ≥ 1``, any shape (e.g. ``[G]``).
    num_gen: generated samples per group ``N_gen`` (≥ 2).
    num_uncond: unconditional negatives per group ``N_unc`` (≥ 1).

  Returns:
    Weights, the shape of ``cfg_scale`` (0 at ``α = 1``: no guidance).
  """
  for name, v, low in (("num_gen", num_gen, 2), ("num_uncond", num_uncond, 1)):
    _validation.check_int(name, v, minimum=low)
  _validation.check_real_dtype("cfg_scale", cfg_scale)
  if not isinstance(cfg_scale, jax.core.Tracer) and np.any(np.asarray(cfg_scale) < 1):
    raise ValueError(f"`cfg_scale` must be >= 1 (1 = no guidance), got {cfg_scale!r}")
  alpha = jnp.asarray(cfg_scale, jnp.float32)
  return (alpha - 1.0) * (num_gen - 1) / num_uncond


def sample_cfg_scale(key: Array, num: int, *, low: float = 1.0, high: float = 4.0,
                     power: float = 3.0) -> Array:
  """``[num]`` CFG scales with density ``∝ α^(-power)`` on ``[low, high]`` (inverse CDF).

  Secretly-SM Table 2: range [1, 4], exponent 3 (Deng et al. App. A.7).
  """
  _validation.check_positive("low", low)
  _validation.check_positive("high", high)
  if not (0 < low <= high):
    raise ValueError(f"need 0 < `low` <= `high`, got low={low!r}, high={high!r}")
  num = _validation.check_int("num", num, minimum=1)
  if not np.isfinite(power):
    raise ValueError(f"`power` must be finite, got {power!r}")
  u = jax.random.uniform(key, (num,), jnp.float32)
  if abs(power - 1.0) < 1e-12:
    return low * (high / low) ** u
  e = 1.0 - power
  return (low ** e + u * (high ** e - low ** e)) ** (1.0 / e)


def guided_grouped_loss(gen: Array, pos: Array, uncond: Array, cfg_scale: Array, *,
                        temperatures: tuple[float, ...]) -> tuple[Array, dict[str, Array]]:
  """Per-group CFG loss: Deng et al.'s loss with weighted unconditional negatives.

  Args:
    gen: ``[G, N, D]`` generated samples (generated with each group's ``cfg_scale``).
    pos: ``[G, M, D]`` real samples of each group's class.
    uncond: ``[G, U, D]`` unconditional real samples (any class), extra negatives.
    cfg_scale: ``[G]`` CFG scales ``α`` of the groups.
    temperatures: Deng et al.'s temperatures (their normalized units).

  Returns:
    ``(loss [G], metrics {name: [G]})`` with ``loss``, ``drift_norm`` (RMS norm of the
    drift in Deng's scaled units) and ``feature_scale``.
  """
  _check_groups(gen, pos, {"uncond": uncond})
  g, n, d = np.shape(gen)
  if np.shape(cfg_scale) != (g,):
    raise ValueError(f"`cfg_scale` must have shape [G={g}], got {np.shape(cfg_scale)}")
  w = cfg_negative_weight(cfg_scale, num_gen=n, num_uncond=np.shape(uncond)[1])

  def one(x, p, u, wi):
    weight = jnp.full((1, u.shape[0]), wi, jnp.float32)
    loss, info = deng_drift_loss_with_info(x[None], p[None], u[None], weight_neg=weight,
                                 temperatures=temperatures)
    loss = loss[0]
    return loss, {"loss": loss, "drift_norm": jnp.sqrt(sg(loss) * d),
                  "feature_scale": info["scale"]}

  return jax.vmap(one)(gen, pos, uncond, w)


def kernel_scaled(x: Array, scale: Array) -> Array:
  """``x [G, N, D] / scale [G]``: every group in its class's kernel-width units (Franz §5.1).

  ``scale`` is ``normalization`` state's ``scale[class_ids]`` (real and generated samples
  of a group are divided by the same scalar).
  """
  if np.ndim(x) != 3 or np.shape(scale) != np.shape(x)[:1]:
    raise ValueError(f"`x` [G, N, D] and `scale` [G] must agree, got {np.shape(x)} and "
                     f"{np.shape(scale)}")
  _validation.check_finite("x", x)
  _validation.check_finite("scale", scale)
  if _validation.is_concrete(scale) and np.any(np.asarray(scale) <= 0):
    raise ValueError(f"`scale` must be positive, got min {np.min(np.asarray(scale)):g}")
  return x / scale[:, None, None]


def stream_loss(group_loss: GroupLoss, gen: Mapping[str, Array], pos: Mapping[str, Array],
                *, scales: Mapping[str, Array] | None = None,
                extra: Mapping[str, tuple] | None = None) -> tuple[Array, dict[str, Array]]:
  """Sum over feature streams of the group-mean loss, each stream in its own width units.

  Args:
    group_loss: ``fn(gen [G, N, D_s], pos [G, M, D_s], *args) -> (loss [G], metrics)``,
      e.g. ``functools.partial(grouped_loss, objective)`` or :func:`guided_grouped_loss`.
    gen: ``{stream: [G, N, D_s]}`` generated features.
    pos: ``{stream: [G, M, D_s]}`` real features (same keys).
    scales: optional ``{stream: [G]}`` kernel-width scales; every array of a stream
      (``gen``, ``pos`` and ``extra`` arrays of rank 3) is divided by it.
    extra: optional ``{stream: args}``: further positional arguments of ``group_loss``.

  Returns:
    ``(total [], metrics)``: ``total = Σ_s mean_g loss_s``; metrics are averaged over groups
    and streams, plus ``loss/<stream>`` when there are several streams.
  """
  if set(gen) != set(pos) or not gen:
    raise ValueError(f"`gen` and `pos` must have the same non-empty stream keys, got "
                     f"{sorted(gen)} and {sorted(pos)}")
  total, metrics = 0.0, {}
  names = list(gen)
  for name in names:
    args = tuple((extra or {}).get(name, ()))
    g, p = gen[name], pos[name]
    for label, arr in (("gen", g), ("pos", p)):  # message: "`gen` stream 'a' contains ..."
      try:
        _validation.check_finite(label, arr)
        _validation.check_sqnorm_range(label, arr)
      except ValueError as e:
        raise ValueError(str(e).replace(f"`{label}`", f"`{label}` stream {name!r}", 1)) from None
    if scales is not None:
      s = scales[name]
      g, p = kernel_scaled(g, s), kernel_scaled(p, s)
      args = tuple(kernel_scaled(a, s) if np.ndim(a) == 3 else a for a in args)
    per, m = group_loss(g, p, *args)
    total = total + jnp.mean(per)
    for k, v in m.items():
      metrics[k] = metrics.get(k, 0.0) + jnp.mean(v) / len(names)
    if len(names) > 1:
      metrics[f"loss/{name}"] = jnp.mean(per)
  metrics["loss"] = total
  return total, metrics
