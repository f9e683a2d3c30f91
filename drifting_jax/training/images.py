"""Class-conditional image drifting: config, train state and the pure per-device step.

The recipe is Franz et al. §5.1 / Table 3 (pixel-space MNIST with DiT-S/2) with the options
of Secretly-SM App. G.1-G.2 / Table 2 (memory bank, CFG, EMA, feature-space loss):

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
* optional feature streams (:mod:`drifting_jax.training.features`): one drift problem per
  stream and group, losses summed, each stream with its own kernel-width state.

The step functions are pure ``(state, batch, rng) -> (state, metrics)``. With ``axis_name``
they run *per device* under ``shard_map`` or ``pmap`` (:mod:`drifting_jax.training.parallel`):
each device holds some class groups, computes their drift locally, and only gradients,
kernel-width observations and metrics cross devices. The run configuration is the
dataclass :class:`ImageConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from drifting_jax import normalization, schedules
from drifting_jax.deng import deng_drift_loss
from drifting_jax.models import presets
from drifting_jax.objectives import Objective, make_objective
from drifting_jax.training.features import FeatureExtractor

__all__ = ["ImageBatch", "ImageConfig", "ImageTrainState", "init_image_state",
           "make_group_loss", "make_image_objective", "make_image_optimizer",
           "make_lr_schedule", "make_stats_step", "make_train_step", "sample_cfg_scale",
           "validate_image_config"]

sg = jax.lax.stop_gradient
StepFn = Callable[[Any, Any, jax.Array], tuple[Any, dict[str, jax.Array]]]


class ImageBatch(NamedTuple):
  """One class-grouped batch (leading axis: class groups ``G``, sharded over devices).

  Attributes:
    pos: ``[G, N_pos, H, W, C]`` real images of each group's class.
    class_ids: ``[G]`` int32 class of each group.
    group_ids: ``[G]`` int32 global index of each group in the step's batch (the generator
      noise of a group is drawn from it, so it does not depend on the device layout).
    uncond: ``[G, N_unc, H, W, C]`` unconditional real images (CFG negatives) or None.
    cfg_scale: ``[G]`` CFG scale α of each group or None.
  """

  pos: jax.Array
  class_ids: jax.Array
  group_ids: jax.Array
  uncond: jax.Array | None = None
  cfg_scale: jax.Array | None = None


@flax.struct.dataclass
class ImageTrainState:
  """Everything but the memory bank that a run needs to resume (checkpointed by orbax).

  Attributes:
    step: ``[]`` int32 iterations done, warm-up (statistics-only) batches included.
    params: generator variables ``{"params": ...}`` (float32).
    ema_params: exponential moving average of ``params``.
    opt_state: optax state (its count = optimizer updates, which drives the lr schedule).
    norm: ``{stream: KernelWidthState}`` per-class kernel-width scales (Franz §5.1).
    rng: ``[2]`` uint32 run key; the noise of iteration ``t``, group ``g`` is
      ``fold_in(fold_in(rng, t), g)``.
  """

  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any
  norm: dict[str, normalization.KernelWidthState]
  rng: jax.Array


@dataclasses.dataclass
class ImageConfig:
  """Hyperparameters of a class-conditional image run (defaults: Franz et al. Table 3).

  Attributes:
    task: always ``"images"`` (lets the CLI tell image configs from toy ones).
    dataset: dataset spec of :func:`drifting_jax.data.images.load_dataset` (``"mnist"``,
      ``"digits"``, ``"npz:/file.npz"``, ...).
    dataset_split: split to train on.
    model: generator preset (:func:`drifting_jax.models.presets.get_model`).
    model_overrides: preset attribute overrides (e.g. ``{"depth": 2}``).
    dtype: generator compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters and the
      loss stay float32).
    objective: objective name (:func:`drifting_jax.objectives.objective_names`).
    bandwidth: kernel width in kernel-width-normalized units (Franz Table 2: best 0.2 for
      Gauss#/Naive-Gauss on MNIST).
    objective_kwargs: extra options of the objective (e.g. ``{"official": True}``).
    schedule, schedule_kwargs: optional bandwidth schedule (per optimizer step).
    stop_gradient: frozen-field loss (True) or the coupled ``mean ||V||^2``.
    num_classes_per_step: ``N_c`` class groups per step (divisible by the device count).
    num_pos: ``N_pos`` real samples per group.
    num_gen: ``N_gen`` generated samples per group (the negatives).
    kernel_width_norm: per-class kNN kernel-width normalization (Franz §5.1).
    norm_k, norm_decay: kNN neighbours (5) and EMA factor α (0.99).
    norm_warmup: statistics-only batches before the first optimizer update (300).
    learning_rate, b1, b2, eps, weight_decay: AdamW.
    warmup_steps: linear lr warm-up, in optimizer updates.
    lr_schedule: ``"cosine"`` (decay to ``final_lr_fraction · lr`` at ``num_steps``) or
      ``"constant"`` after the warm-up.
    final_lr_fraction: end value of the cosine decay, relative to ``learning_rate``.
    grad_clip: global-norm clipping (None = off).
    ema_decay: decay of the parameter EMA.
    num_steps: optimizer updates (the run has ``norm_warmup + num_steps`` iterations).
    guidance: train with classifier-free guidance (CFG; needs a generator with ``cfg_embed`` and the official
      ``drifting-laplace`` objective, the drift loss that supports weighted negatives).
    cfg_min, cfg_max, cfg_power: CFG-scale range and power-law exponent (Secretly-SM T. 2).
    num_uncond: ``N_unc`` unconditional real negatives per group.
    memory_bank: draw positives / unconditional negatives from a memory bank.
    bank_pos_size, bank_neg_size, bank_push: per-class and shared bank sizes, real samples
      pushed per iteration.
    feature_encoder: None (pixel-space loss) or ``"random_conv"`` (frozen random conv net).
    feature_kwargs: options of :func:`~drifting_jax.training.features.make_feature_extractor`.
    parallel: ``"auto"`` (mesh when several devices), ``"none"``, ``"mesh"``, ``"pmap"``.
    group_chunks: process each device's class groups in this many sequential chunks with
      gradient accumulation (``lax.scan``): activation memory / chunks, same gradients up
      to float summation order (must divide the groups per device).
    compiler_options: XLA options of the compiled step programs, e.g.
      ``{"xla_backend_optimization_level": 0}`` halves CPU compile time at some step speed
      (short CPU runs, tests).
    seed: run seed (initialisation, noise, data).
    log_every: JSONL log interval (iterations).
    sample_every: sample-grid interval (iterations; 0 = only at the end).
    samples_per_class: grid columns per class.
    sample_cfg_scale: CFG scale of the sample grids.
    checkpoint_every: checkpoint interval (iterations); the last one is always saved.
    max_to_keep: checkpoints kept on disk.
    progress: show a tqdm progress bar.
  """

  task: str = "images"
  dataset: str = "mnist"
  dataset_split: str = "train"
  model: str = "dit_s2"
  model_overrides: dict = dataclasses.field(default_factory=dict)
  dtype: str = "float32"
  objective: str = "naive-gauss"
  bandwidth: float = 0.2
  objective_kwargs: dict = dataclasses.field(default_factory=dict)
  schedule: str | None = None
  schedule_kwargs: dict = dataclasses.field(default_factory=dict)
  stop_gradient: bool = True
  num_classes_per_step: int = 5
  num_pos: int = 96
  num_gen: int = 96
  kernel_width_norm: bool = True
  norm_k: int = 5
  norm_decay: float = 0.99
  norm_warmup: int = 300
  learning_rate: float = 2e-4
  b1: float = 0.95
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 1e-4
  warmup_steps: int = 300
  lr_schedule: str = "cosine"
  final_lr_fraction: float = 0.0
  grad_clip: float | None = 2.0
  ema_decay: float = 0.999
  num_steps: int = 12000
  guidance: bool = False
  cfg_min: float = 1.0
  cfg_max: float = 4.0
  cfg_power: float = 3.0
  num_uncond: int = 16
  memory_bank: bool = False
  bank_pos_size: int = 128
  bank_neg_size: int = 1000
  bank_push: int = 64
  feature_encoder: str | None = None
  feature_kwargs: dict = dataclasses.field(default_factory=dict)
  parallel: str = "auto"
  group_chunks: int = 1
  compiler_options: dict = dataclasses.field(default_factory=dict)
  seed: int = 0
  log_every: int = 50
  sample_every: int = 1000
  samples_per_class: int = 10
  sample_cfg_scale: float = 1.0
  checkpoint_every: int = 1000
  max_to_keep: int = 2
  progress: bool = True


def validate_image_config(cfg: ImageConfig) -> ImageConfig:
  """Checks field values; raises ``ValueError`` naming the offending field.

  Names (dataset, model, objective, schedule) are checked where they are resolved.
  """
  if not isinstance(cfg, ImageConfig):
    raise ValueError(f"`config` must be an ImageConfig, got {type(cfg).__name__}")

  def num(name, *, integer=False, low=None, strict=True, none=False, high=None):
    v = getattr(cfg, name)
    if v is None and none:
      return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (isinstance(v, int) if integer else True)
    if ok and low is not None:
      ok = v > low if strict else v >= low
    if ok and high is not None:
      ok = v < high
    if not ok:
      bound = "" if low is None else f" {'>' if strict else '>='} {low}"
      bound += "" if high is None else f" and < {high}"
      raise ValueError(f"`{name}` must be {'an int' if integer else 'a number'}{bound}, "
                       f"got {v!r}")

  if cfg.task != "images":
    raise ValueError(f"`task` must be 'images', got {cfg.task!r}")
  for name in ("bandwidth", "learning_rate", "eps", "cfg_min"):
    num(name, low=0)
  num("grad_clip", low=0, none=True)
  for name in ("weight_decay", "final_lr_fraction"):
    num(name, low=0, strict=False)
  for name in ("b1", "b2", "ema_decay", "norm_decay"):
    num(name, low=0, strict=False, high=1)
  for name in ("num_classes_per_step", "num_pos", "log_every", "checkpoint_every",
               "max_to_keep", "samples_per_class", "num_uncond", "bank_pos_size",
               "bank_neg_size", "bank_push", "norm_k"):
    num(name, integer=True, low=0)
  num("num_gen", integer=True, low=1)  # self-interaction is masked: >= 2 samples
  num("group_chunks", integer=True, low=0)
  if cfg.num_classes_per_step % cfg.group_chunks:
    raise ValueError(f"`group_chunks` ({cfg.group_chunks}) must divide `num_classes_per_step` "
                     f"({cfg.num_classes_per_step})")
  for name in ("num_steps", "norm_warmup", "warmup_steps", "sample_every", "seed"):
    num(name, integer=True, low=0, strict=False)
  num("cfg_max", low=cfg.cfg_min, strict=False)
  num("cfg_power", low=0, strict=False)
  num("sample_cfg_scale", low=0)
  if cfg.kernel_width_norm and cfg.norm_k >= cfg.num_pos:
    raise ValueError(f"`norm_k` must be < `num_pos` ({cfg.num_pos}), got {cfg.norm_k}")
  choices = {"dtype": ("float32", "bfloat16"), "lr_schedule": ("cosine", "constant"),
             "parallel": ("auto", "none", "mesh", "pmap")}
  for name, allowed in choices.items():
    if getattr(cfg, name) not in allowed:
      raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(cfg, name)!r}")
  for name in ("model_overrides", "objective_kwargs", "schedule_kwargs", "feature_kwargs",
               "compiler_options"):
    if not isinstance(getattr(cfg, name), dict):
      raise ValueError(f"`{name}` must be a dict, got {getattr(cfg, name)!r}")
  if cfg.guidance and (cfg.objective != "drifting-laplace"
                  or not cfg.objective_kwargs.get("official", False)):
    raise ValueError("`guidance=True` needs objective='drifting-laplace' with objective_kwargs "
                     "{'official': True} (Deng et al.'s loss, the one with weighted "
                     f"negatives); got objective={cfg.objective!r}, "
                     f"objective_kwargs={cfg.objective_kwargs!r}")
  return cfg


# --------------------------------------------------------------------------- recipe pieces
def make_lr_schedule(cfg: ImageConfig) -> optax.Schedule:
  """Linear warm-up to ``learning_rate`` over ``warmup_steps`` optimizer updates, then cosine
  decay to ``final_lr_fraction · learning_rate`` at ``num_steps`` (Franz Table 3) or constant
  (Secretly-SM Table 2)."""
  if cfg.lr_schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.num_steps, cfg.warmup_steps + 1),
        end_value=cfg.final_lr_fraction * cfg.learning_rate)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1)),
       optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])


def make_image_optimizer(cfg: ImageConfig) -> optax.GradientTransformation:
  """Global-norm clipping then AdamW with the schedule of :func:`make_lr_schedule`."""
  tx = optax.adamw(make_lr_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                   weight_decay=cfg.weight_decay)
  return tx if cfg.grad_clip is None else optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                                                      tx)


def make_image_objective(cfg: ImageConfig) -> Objective:
  """The per-group objective ``fn(x [N, D], pos [M, D], step)`` named by ``cfg.objective``."""
  schedule = None
  if cfg.schedule is not None:
    schedule = schedules.get_schedule(cfg.schedule, **cfg.schedule_kwargs)
  return make_objective(cfg.objective, bandwidth=cfg.bandwidth, schedule=schedule,
                        stop_gradient=cfg.stop_gradient, **cfg.objective_kwargs)


def make_group_loss(cfg: ImageConfig, objective: Objective | None = None):
  """The loss of one drift problem, ``fn(x, pos, neg, w_neg, step) -> (loss, metrics)``.

  ``x [N, D]`` generated (differentiable), ``pos [M, D]`` real, ``neg [U, D]`` unconditional
  real negatives (or None) each weighted ``w_neg []``. Without CFG it is ``objective``
  (default :func:`make_image_objective`); with CFG it is Deng et al.'s loss with the
  extra weighted negatives (``temperatures`` from ``objective_kwargs``, default
  ``(bandwidth,)``).
  """
  if not cfg.guidance:
    objective = make_image_objective(cfg) if objective is None else objective
    return lambda x, pos, neg, w, step: objective(x, pos, step)
  temps = tuple(cfg.objective_kwargs.get("temperatures", (cfg.bandwidth,)))

  def cfg_loss(x, pos, neg, w, step):
    del step
    weight = jnp.full((1, neg.shape[0]), w, jnp.float32)
    loss, info = deng_drift_loss(x[None], pos[None], neg[None], weight_neg=weight,
                                 temperatures=temps)
    loss = loss[0]
    return loss, {"loss": loss, "drift_norm": jnp.sqrt(sg(loss) * x.shape[-1]),
                  "feature_scale": info["scale"]}

  return cfg_loss


def sample_cfg_scale(key: jax.Array, num: int, *, low: float = 1.0, high: float = 4.0,
                     power: float = 3.0) -> jax.Array:
  """``[num]`` CFG scales with density ``∝ α^(-power)`` on ``[low, high]`` (inverse CDF).

  Secretly-SM Table 2: range [1, 4], exponent 3 (Deng et al. App. A.7).
  """
  u = jax.random.uniform(key, (num,), jnp.float32)
  if abs(power - 1.0) < 1e-12:
    return low * (high / low) ** u
  e = 1.0 - power
  return (low ** e + u * (high ** e - low ** e)) ** (1.0 / e)


def init_image_state(cfg: ImageConfig, model: Any, optimizer: optax.GradientTransformation,
                     stream_names: tuple[str, ...]) -> ImageTrainState:
  """Fresh state at iteration 0 from ``cfg.seed`` (one kernel-width state per stream)."""
  def init(seed):
    init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    params = presets.init_params(model, init_key)
    norm = {name: normalization.init(model.num_classes) for name in stream_names}
    return ImageTrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
                           opt_state=optimizer.init(params), norm=norm, rng=run_key)

  # One compiled program instead of hundreds of eagerly dispatched initialisation ops.
  return jax.jit(init, compiler_options=cfg.compiler_options or None)(cfg.seed)


# ------------------------------------------------------------------------- per-device step
def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Concatenates the devices' ``[G_local, ...]`` into ``[G, ...]`` (replicated result)."""
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True,
                                                        to="invarying")


def _pmean(tree: Any, axis_name: str | None) -> Any:
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _streams(extractor: FeatureExtractor, images: jax.Array) -> dict[str, jax.Array]:
  """``[G, N, H, W, C] -> {stream: [G, N, D_s]}``."""
  g, n = images.shape[:2]
  out = extractor.apply(images.reshape(g * n, *images.shape[2:]))
  return {k: v.reshape(g, n, -1) for k, v in out.items()}


def _update_norm(cfg: ImageConfig, norm: dict, pos_streams: dict, class_ids: jax.Array,
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
    obs = jax.vmap(lambda g: normalization.knn_mean_distance(g, k=cfg.norm_k))(pos_streams[name])
    # normalization.update() needs the samples of *all* groups; fold the gathered
    # observations with its EMA rule instead (same arithmetic, no sample traffic).
    new[name] = normalization._ema_update(state, _gather(obs, axis_name), ids,
                                          jnp.ones(ids.shape, bool), cfg.norm_decay)
  return new


def _kernel_scale(norm: dict, class_ids: jax.Array) -> jax.Array:
  return jnp.mean(jnp.stack([s.scale[class_ids] for s in norm.values()]))


def make_stats_step(cfg: ImageConfig, extractor: FeatureExtractor, *,
                    axis_name: str | None = None) -> StepFn:
  """Warm-up step (Franz §5.1): updates the kernel-width averages, no optimizer update.

  Returns:
    ``fn(state, batch, rng) -> (state, metrics)``; ``state.step`` advances by one.
  """

  def stats_step(state: ImageTrainState, batch: ImageBatch, rng: jax.Array):
    del rng
    norm = _update_norm(cfg, state.norm, _streams(extractor, batch.pos), batch.class_ids,
                        axis_name)
    metrics = {"kernel_scale": _pmean(_kernel_scale(norm, batch.class_ids), axis_name)}
    return state.replace(step=state.step + 1, norm=norm), metrics

  return stats_step


def make_train_step(cfg: ImageConfig, model: Any, optimizer: optax.GradientTransformation,
                    extractor: FeatureExtractor, *, objective: Objective | None = None,
                    axis_name: str | None = None, with_grads: bool = False) -> StepFn:
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
    optimizer: optax transformation (:func:`make_image_optimizer`).
    extractor: feature streams (:mod:`~drifting_jax.training.features`).
    objective: optional per-group objective ``fn(x, pos, step)`` overriding ``cfg``'s.
    axis_name: device axis for collectives (None on a single device).
    with_grads: also return the averaged gradients as ``metrics["grads"]`` (tests).

  Returns:
    The step. ``metrics``: ``loss``, ``grad_norm`` (before clipping), ``lr``, ``drift_norm``,
    ``kernel_scale`` and the objective's other scalars (``loss/<stream>`` with several
    streams), all averaged over groups and devices.
  """
  group_loss = make_group_loss(cfg, objective)
  schedule = make_lr_schedule(cfg)
  n_gen, warm = cfg.num_gen, cfg.norm_warmup if cfg.kernel_width_norm else 0

  def train_step(state: ImageTrainState, batch: ImageBatch, rng: jax.Array):
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
      groups.update(alpha=batch.cfg_scale, unc=_streams(extractor, batch.uncond),
                    w=(batch.cfg_scale - 1.0) * (n_gen - 1) / batch.uncond.shape[1])
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
      total, metrics = 0.0, {}
      for name in extractor.names:
        scale = grp["scale"][name][:, None, None]
        unc = grp["unc"][name] / scale if cfg.guidance else None
        per, m = jax.vmap(group_loss, in_axes=(0, 0, 0 if cfg.guidance else None,
                                               0 if cfg.guidance else None, None))(
            gen_s[name] / scale, grp["pos"][name] / scale, unc, grp.get("w"), opt_step)
        total = total + jnp.mean(per)
        for k, v in m.items():
          metrics[k] = metrics.get(k, 0.0) + jnp.mean(v) / len(extractor.names)
        if len(extractor.names) > 1:
          metrics[f"loss/{name}"] = jnp.mean(per)
      metrics["loss"] = total
      return total, metrics

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
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    ema = optax.incremental_update(new_params, state.ema_params, 1.0 - cfg.ema_decay)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["lr"] = schedule(opt_step)
    if with_grads:
      metrics["grads"] = grads
    new_state = state.replace(step=state.step + 1, params=new_params, ema_params=ema,
                              opt_state=opt_state, norm=norm)
    return new_state, metrics

  return train_step
