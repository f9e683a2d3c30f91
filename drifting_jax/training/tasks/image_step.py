"""The per-device step of class-conditional image drifting (Franz et al. §5.1 / Table 3, with
the options of Secretly-SM App. G.1-G.2 / Table 2: memory bank, CFG, EMA, feature streams).

* each step draws ``N_c`` classes with ``N_pos`` real images each (``pos [N_c, N_pos, H, W,
  C]``) and generates ``N_gen`` images per class; every class group is its own drift problem
  on flattened images ``[N_c, N, H·W·C]`` (``jax.vmap`` over classes; negatives = the group's
  own generated samples, self-interactions excluded), and the loss is the mean over groups;
* kernel-width normalization (Franz §5.1): a per-class EMA (α = 0.99) of the kNN (k = 5) mean
  distance of the real samples; real and generated samples are divided by it before the loss;
  the first ``norm_warmup`` batches (300) only update the averages (:func:`make_stats_step`),
  and the learning-rate schedule counts optimizer updates only, so it starts after them;
* AdamW (β = 0.95, 0.999), lr 2e-4, weight decay 1e-4, 300 warm-up steps + cosine decay,
  global-norm clipping 2.0 (Franz Table 3); an EMA of the parameters;
* optional CFG (Deng et al. §3.5, Secretly-SM Table 2): per group a CFG scale α ~ p(α) ∝
  α^(-3) on [1, 4] conditions the generator, and ``N_unc`` unconditional real samples join
  the negatives with weight ``(α − 1)(N_gen − 1) / N_unc`` each (the mixture
  ``q̃ = (1 − γ) q_θ(·|c) + γ p(·|∅)``, α = 1/(1 − γ)); computed with Deng et al.'s
  loss (:func:`drifting_jax.deng.deng_drift_loss`, the only one with weighted negatives);
* optional feature streams (:mod:`drifting_jax.models.encoders`): one drift problem per
  stream and group, losses summed, each stream with its own kernel-width state; the real
  images' streams come precomputed in the batch when the data holds them (the encoder is
  frozen: ``cache_real_features``).

The step functions are pure ``(state, batch, rng) -> (state, metrics)`` on a
:class:`~drifting_jax.training.state.TrainState` (with ``ema_params`` and ``norm``) and an
:class:`~drifting_jax.data.class_conditional.ImageBatch`. With ``axis_name`` they run *per
device* under ``shard_map`` or ``pmap`` (:mod:`drifting_jax.training.parallel`): each device
holds some class groups, computes their drift locally, and only gradients, kernel-width
observations and metrics cross devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from drifting_jax import grouped, normalization
from drifting_jax.data.class_conditional import ImageBatch
from drifting_jax.models import presets
from drifting_jax.models.encoders import FeatureExtractor
from drifting_jax.objectives import Objective
from drifting_jax.training.state import (TrainState, apply_gradients, build_objective,
                                         make_lr_schedule)

__all__ = ["make_group_loss", "make_stats_step", "make_train_step"]

StepFn = Callable[[Any, Any, jax.Array], tuple[Any, dict[str, jax.Array]]]
GroupLoss = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def make_group_loss(cfg: Any, objective: Objective | None = None) -> GroupLoss:
  """The per-stream loss ``fn(gen [G, N, D], pos [G, M, D], *extra, step=) -> (loss [G], m)``.

  Without CFG it is :func:`drifting_jax.grouped.grouped_loss` of ``objective`` (default
  :func:`~drifting_jax.training.state.build_objective`); with CFG it is
  :func:`drifting_jax.grouped.guided_grouped_loss` (``extra = (uncond [G, U, D],
  cfg_scale [G])``) with the ``temperatures`` of ``objective_kwargs``.
  """
  if not cfg.guidance:
    objective = build_objective(cfg) if objective is None else objective
    return lambda gen, pos, *, step: grouped.grouped_loss(objective, gen, pos, step=step)
  temps = tuple(cfg.objective_kwargs["temperatures"])  # validated: official needs them

  def cfg_loss(gen, pos, uncond, cfg_scale, *, step):
    del step
    return grouped.guided_grouped_loss(gen, pos, uncond, cfg_scale, temperatures=temps)

  return cfg_loss


# ------------------------------------------------------------------------- per-device step
def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Concatenates the devices' ``[G_local, ...]`` into ``[G, ...]`` (replicated result)."""
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True,
                                                        to="invarying")


def _pmean(tree: Any, axis_name: str | None) -> Any:
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _streams(extractor: FeatureExtractor, images: Any) -> dict[str, jax.Array]:
  """``[G, N, H, W, C] -> {stream: [G, N, D_s] or [G, N, L_s, D_s]}`` (location streams keep
  their location axis); a dict (the real images' streams, computed once:
  :func:`~drifting_jax.data.class_conditional.with_features`) is returned as it is."""
  if isinstance(images, dict):
    return images
  g, n = images.shape[:2]
  out = extractor.apply(images.reshape(g * n, *images.shape[2:]))
  return {k: v.reshape(g, n, *v.shape[1:]) if v.ndim == 3 else v.reshape(g, n, -1)
          for k, v in out.items()}


def _location_groups(x: jax.Array) -> jax.Array:
  """``[G, N, L, D] -> [G·L, N, D]``: every location of every group its own drift problem
  (Deng et al.'s per-location features); ``[G, N, D]`` is returned as it is."""
  if x.ndim != 4:
    return x
  g, n, l, d = x.shape
  return x.transpose(0, 2, 1, 3).reshape(g * l, n, d)


def _per_location(x: jax.Array, like: jax.Array) -> jax.Array:
  """A per-group ``[G]`` value repeated over the locations of ``like`` ``[G, N, L, D]``."""
  return jnp.repeat(x, like.shape[2], axis=0) if like.ndim == 4 else x


def _update_norm(cfg: Any, norm: dict, pos_streams: dict, class_ids: jax.Array,
                 axis_name: str | None) -> dict:
  """Folds the batch's per-group kNN distances of the real samples into the class EMAs.

  Every device computes the observations of its own groups; they are all-gathered so the
  replicated state sees the whole batch, exactly as on one device.
  """
  if not cfg.kernel_width_norm:
    return norm
  ids = _gather(class_ids, axis_name)
  new = {}
  for name, state in norm.items():
    x = pos_streams[name]
    obs = normalization.observe(_location_groups(x), k=cfg.norm_k)
    if x.ndim == 4:  # one scale per class and stream: the mean over the stream's locations
      obs = jnp.mean(obs.reshape(x.shape[0], x.shape[2]), axis=1)
    # normalization.update() needs the samples of *all* groups; fold the gathered
    # observations with its EMA rule instead (same arithmetic, no sample traffic).
    new[name] = normalization.update_from_observations(state, _gather(obs, axis_name), ids,
                                                       decay=cfg.norm_decay)
  return new


def _kernel_scale(norm: dict, class_ids: jax.Array) -> jax.Array:
  return jnp.mean(jnp.stack([s.scale[class_ids] for s in norm.values()]))


def make_stats_step(cfg: Any, extractor: FeatureExtractor, *,
                    axis_name: str | None = None) -> StepFn:
  """Warm-up step (Franz §5.1): updates the kernel-width averages, no optimizer update.

  Returns:
    ``fn(state, batch, rng) -> (state, metrics)``; ``state.step`` advances by one.
  """

  def stats_step(state: TrainState, batch: ImageBatch, rng: jax.Array):
    del rng
    norm = _update_norm(cfg, state.norm, _streams(extractor, batch.pos), batch.class_ids,
                        axis_name)
    metrics = {"kernel_scale": _pmean(_kernel_scale(norm, batch.class_ids), axis_name)}
    return state.replace(step=state.step + 1, norm=norm), metrics

  return stats_step


def make_train_step(cfg: Any, model: Any, optimizer: optax.GradientTransformation,
                    extractor: FeatureExtractor, *, objective: Objective | None = None,
                    axis_name: str | None = None) -> StepFn:
  """The per-device training step ``(state, batch, rng) -> (state, metrics)``.

  For each local group ``g``: draw ``N_gen`` generator inputs from
  ``fold_in(fold_in(rng, state.step), batch.group_ids[g])``, generate with the group's class
  (and CFG scale), compute every stream's drift loss on kernel-width-normalized samples, and
  average over groups (sum over streams); with ``cfg.group_chunks > 1`` the groups are
  processed in sequential chunks whose gradients are accumulated. Gradients are averaged
  over devices with ``pmean``: the parameters are first cast to device-varying
  (``pcast``), because under ``shard_map`` the gradient w.r.t. a replicated input is
  otherwise already *summed* over devices (its transpose is a psum) and a further pmean
  would keep that sum.

  Args:
    cfg: run configuration.
    model: generator (``model.apply(vars, noise, labels, cfg_scale=, style=)``).
    optimizer: optax transformation (:func:`~drifting_jax.training.state.make_optimizer`).
    extractor: feature streams (:mod:`~drifting_jax.models.encoders`).
    objective: optional per-group objective ``fn(x, pos, step)`` overriding ``cfg``'s.
    axis_name: device axis for collectives (None on a single device).

  Returns:
    The step. ``metrics``: ``loss``, ``grad_norm`` (before clipping), ``lr``, ``drift_norm``,
    ``kernel_scale`` and the objective's other scalars (``loss/<stream>`` with several
    streams), all averaged over groups and devices.
  """
  return _make_train_step(cfg, model, optimizer, extractor, objective=objective,
                          axis_name=axis_name, with_grads=False)


def _make_train_step(cfg, model, optimizer, extractor, *, objective, axis_name,
                     with_grads: bool) -> StepFn:
  """:func:`make_train_step`; ``with_grads`` also returns the averaged gradients as
  ``metrics["grads"]`` (tests compare them across parallel modes)."""
  group_loss = make_group_loss(cfg, objective)
  schedule = make_lr_schedule(cfg)
  n_gen, warm = cfg.num_gen, cfg.norm_warmup if cfg.kernel_width_norm else 0

  def train_step(state: TrainState, batch: ImageBatch, rng: jax.Array):
    opt_step = state.step - warm
    g = batch.class_ids.shape[0]
    chunks = cfg.group_chunks
    if g % chunks:
      raise ValueError(f"`group_chunks` ({chunks}) must divide the class groups per device "
                       f"({g})")
    pos_s = _streams(extractor, batch.pos)
    norm = _update_norm(cfg, state.norm, pos_s, batch.class_ids, axis_name)
    # Everything a group's loss needs, with the group axis leading (chunked below).
    groups = dict(gid=batch.group_ids, cls=batch.class_ids, pos=pos_s,
                  scale={k: norm[k].scale[batch.class_ids] for k in extractor.names})
    if cfg.guidance:
      groups.update(alpha=batch.cfg_scale, unc=_streams(extractor, batch.uncond))
    step_key = jax.random.fold_in(rng, state.step)

    def loss_fn(params, grp):
      """Mean loss of the groups in ``grp`` (sum over streams) and its metrics."""
      n = grp["cls"].shape[0]
      noise = jax.vmap(lambda gid: presets.sample_image_noise(
          jax.random.fold_in(step_key, gid), model, n_gen))(grp["gid"])
      flat = lambda a: None if a is None else a.reshape(n * n_gen, *a.shape[2:])
      alpha = jnp.repeat(grp["alpha"], n_gen) if cfg.guidance else None
      images = model.apply(params, flat(noise.noise), jnp.repeat(grp["cls"], n_gen),
                           cfg_scale=alpha, style=flat(noise.style))
      gen_s = _streams(extractor, images.reshape(n, n_gen, *images.shape[1:]))
      pos_s = grp["pos"]
      extra = ({k: (_location_groups(grp["unc"][k]), _per_location(grp["alpha"], pos_s[k]))
                for k in extractor.names} if cfg.guidance else None)
      return grouped.stream_loss(
          functools.partial(group_loss, step=opt_step),
          {k: _location_groups(v) for k, v in gen_s.items()},
          {k: _location_groups(v) for k, v in pos_s.items()},
          scales={k: _per_location(v, pos_s[k]) for k, v in grp["scale"].items()},
          extra=extra)

    params = state.params
    if axis_name is not None:  # see the docstring: makes the gradient device-local
      params = jax.lax.pcast(params, axis_name, to="varying")
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
    if chunks == 1:
      (_, metrics), grads = value_and_grad(params, groups)
    else:  # gradient accumulation over chunks of groups: activation memory / chunks
      split = jax.tree_util.tree_map(
          lambda a: a.reshape(chunks, g // chunks, *a.shape[1:]), groups)
      (_, m0), g0 = value_and_grad(params, jax.tree_util.tree_map(lambda a: a[0], split))

      def body(carry, grp):
        (_, m), gr = value_and_grad(params, grp)
        return jax.tree_util.tree_map(jnp.add, carry, (gr, m)), None

      (grads, metrics), _ = jax.lax.scan(
          body, (g0, m0), jax.tree_util.tree_map(lambda a: a[1:], split))
      grads, metrics = jax.tree_util.tree_map(lambda a: a / chunks, (grads, metrics))
    metrics["kernel_scale"] = _kernel_scale(norm, batch.class_ids)
    grads, metrics = _pmean((grads, metrics), axis_name)
    new_state = apply_gradients(state, grads, optimizer, ema_decay=cfg.ema_decay)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["lr"] = schedule(opt_step)
    if with_grads:
      metrics["grads"] = grads
    return new_state.replace(norm=norm), metrics

  return train_step
