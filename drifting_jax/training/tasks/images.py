"""The class-conditional image task: a generator drifting onto a labelled image set, class
group by class group (Franz et al. §5.1 / Table 3; Secretly-SM App. G.1-G.2 / Table 2).

The run has ``norm_warmup`` statistics-only iterations (kernel-width averages only), then
``num_steps`` optimizer iterations; checkpoints are named by iteration. The step is
:mod:`~drifting_jax.training.tasks.image_step`, run on one device, a device mesh or ``pmap``
(:mod:`drifting_jax.training.parallel`); the batch of iteration ``t`` is a pure function of
``(seed, t)`` and the checkpointed memory bank
(:func:`drifting_jax.data.class_conditional.make_batch_fn`), so a resumed run reproduces the
uninterrupted one bit for bit.

A run directory ends up holding, besides the trainer's files (config, checkpoints with
params, EMA params, optimizer, kernel-width state, rng and memory bank, ``metrics.jsonl``
with loss, grad/drift norms, lr, kernel scale, steps/s, elapsed time)::

    samples/step_*.png  EMA-generator grids during training (one row per class)
    samples.png         the final grid;   metrics.json  the final training metrics

Evaluation (:meth:`ImageTask.evaluate`) samples a class-balanced set from the EMA generator
and scores it with Inception FID and/or FID on classifier features, with precision, recall
and F1 (:mod:`drifting_jax.metrics.image_scores`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation, normalization
from drifting_jax.data import class_conditional, images as image_data, memory_bank
from drifting_jax.metrics import image_scores
from drifting_jax.models import presets
from drifting_jax.models.conditioning import image_shape
from drifting_jax.models.encoders import mae_extractor, make_feature_extractor
from drifting_jax.training import checkpoint as ckpt, driver, parallel, rundir
from drifting_jax.training.config import (COUNT, POSITIVE, POSITIVE_INT, UNIT, Choice,
                                          DriftRunConfig, Kind, Num, RunConfig,
                                          config_from_dict, register)
from drifting_jax.training.state import TrainState, make_optimizer
from drifting_jax.training.tasks import image_step
from drifting_jax.training.tasks.base import Stepper, Task
from drifting_jax.training.tasks.encoder import load_encoder

__all__ = ["ImageConfig", "ImageTask", "feature_table", "generate_images"]


@register
@dataclasses.dataclass
class ImageConfig(DriftRunConfig):
  """A class-conditional image run (defaults: Franz et al. Table 3 — AdamW β = (0.95, 0.999),
  lr 2e-4, weight decay 1e-4, 300 warm-up steps + cosine, clipping 2.0, Naive-Gauss at
  kernel width 0.2); the shared fields are those of
  :class:`~drifting_jax.training.config.DriftRunConfig`.

  Attributes:
    dataset: dataset spec of :func:`drifting_jax.data.images.load_dataset` (``"mnist"``,
      ``"digits"``, ``"npz:/file.npz"``, ...).
    dataset_split: split to train on.
    model: generator preset (:func:`drifting_jax.models.presets.get_model`).
    model_overrides: preset attribute overrides (e.g. ``{"depth": 2}``).
    dtype: generator compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters and the
      loss stay float32).
    num_classes_per_step: ``N_c`` class groups per step (``parallel="mesh"`` / ``"pmap"``:
      divisible by the device count; ``"auto"`` uses the devices that divide it).
    num_pos: ``N_pos`` real samples per group.
    num_gen: ``N_gen`` generated samples per group (the negatives).
    kernel_width_norm: per-class kNN kernel-width normalization (Franz §5.1).
    norm_k, norm_decay: kNN neighbours (5) and EMA factor α (0.99).
    norm_warmup: statistics-only batches before the first optimizer update (300).
    ema_decay: decay of the parameter EMA.
    guidance: train with classifier-free guidance (CFG; needs a generator with
      ``cfg_embed`` and the official ``drifting-laplace`` objective, the drift loss that
      supports weighted negatives).
    cfg_min, cfg_max, cfg_power: CFG-scale range and power-law exponent (Secretly-SM T. 2).
    num_uncond: ``N_unc`` unconditional real negatives per group.
    memory_bank: draw positives / unconditional negatives from a memory bank.
    bank_pos_size, bank_neg_size, bank_push: per-class and shared bank sizes, real samples
      pushed per iteration.
    feature_encoder: None (pixel-space loss), ``"random_conv"`` / ``"mae_random"`` (frozen
      random encoders) or ``"mae:<encoder run dir>"`` (a trained encoder of the ``encoder``
      task, frozen; Deng et al.'s multi-scale features).
    feature_kwargs: options of :func:`~drifting_jax.models.encoders.make_feature_extractor`
      (``mae:`` runs: those of :func:`~drifting_jax.models.encoders.mae_extractor` —
      ``stages``, ``feature_sets``, ``patch_sizes``, ``include_pixels``).
    parallel: ``"auto"`` (mesh when several devices), ``"none"``, ``"mesh"``, ``"pmap"``.
    group_chunks: process each device's class groups in this many sequential chunks with
      gradient accumulation (``lax.scan``): activation memory / chunks, same gradients up
      to float summation order (must divide the groups per device).
    compiler_options: XLA options of the compiled step programs, e.g.
      ``{"xla_backend_optimization_level": 0}`` halves CPU compile time at some step speed
      (short CPU runs, tests).
    sample_every: sample-grid interval (iterations; 0 = only at the end).
    samples_per_class: grid columns per class.
    sample_cfg_scale: CFG scale of the sample grids.
    cache_real_features: compute the frozen encoder's streams of every training image once
      at start (a progress bar; memory: N × the streams' size in float32, e.g. 3.2 GB for
      MNIST's 60k images with ``mnist_features_cpu``'s streams, 13,520 numbers per image;
      twice that while it is built) and draw the real samples' features from that table
      instead of encoding the positives every step (the same values up to float round-off;
      not with ``memory_bank``).
    init_from: an image run (directory or ``checkpoints/<it>``) with the same generator
      whose parameters and EMA initialize this run (its optimizer starts afresh): e.g.
      pixel-space pre-training followed by feature-space fine-tuning.

  ``log_every`` and ``checkpoint_every`` count iterations (warm-up included).
  """

  TASK: ClassVar[str] = "images"
  CHECKS: ClassVar[dict[str, Any]] = {
      "dataset": Kind(str), "dataset_split": Kind(str), "model": Kind(str),
      "model_overrides": Kind(dict), "dtype": Choice(("float32", "bfloat16")),
      "num_classes_per_step": POSITIVE_INT, "num_pos": POSITIVE_INT,
      "num_gen": Num(low=1, integer=True),  # self-interaction is masked: >= 2 samples
      "kernel_width_norm": Kind(bool), "norm_k": POSITIVE_INT, "norm_decay": UNIT,
      "norm_warmup": COUNT, "ema_decay": UNIT, "guidance": Kind(bool), "cfg_min": POSITIVE,
      "cfg_power": Num(low=0, strict=False), "num_uncond": POSITIVE_INT,
      "memory_bank": Kind(bool), "bank_pos_size": POSITIVE_INT, "bank_neg_size": POSITIVE_INT,
      "bank_push": POSITIVE_INT, "feature_encoder": Kind(str, none=True),
      "feature_kwargs": Kind(dict), "parallel": Choice(("auto", "none", "mesh", "pmap")),
      "group_chunks": POSITIVE_INT, "compiler_options": Kind(dict), "sample_every": COUNT,
      "samples_per_class": POSITIVE_INT, "sample_cfg_scale": POSITIVE,
      "init_from": Kind(str, none=True), "cache_real_features": Kind(bool),
  }
  AMENDABLE: ClassVar[tuple[str, ...]] = RunConfig.AMENDABLE + (
      "sample_every", "samples_per_class", "sample_cfg_scale", "parallel", "compiler_options")
  # the seed is compiled into the batch preparation: it is part of the step here
  NOT_IN_STEP: ClassVar[tuple[str, ...]] = (
      "num_steps", "log_every", "checkpoint_every", "max_to_keep", "progress", "dataset",
      "dataset_split", "sample_every", "samples_per_class", "sample_cfg_scale", "init_from")

  task: str = "images"
  objective: str = "naive-gauss"
  bandwidth: float = 0.2
  optimizer: str = "adamw"
  learning_rate: float = 2e-4
  b1: float = 0.95
  weight_decay: float = 1e-4
  warmup_steps: int = 300
  grad_clip: float | None = 2.0
  num_steps: int = 12000
  dataset: str = "mnist"
  dataset_split: str = "train"
  model: str = "dit_s2"
  model_overrides: dict = dataclasses.field(default_factory=dict)
  dtype: str = "float32"
  num_classes_per_step: int = 5
  num_pos: int = 96
  num_gen: int = 96
  kernel_width_norm: bool = True
  norm_k: int = 5
  norm_decay: float = 0.99
  norm_warmup: int = 300
  ema_decay: float = 0.999
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
  sample_every: int = 1000
  samples_per_class: int = 10
  sample_cfg_scale: float = 1.0
  init_from: str | None = None
  cache_real_features: bool = False

  def check(self) -> None:
    super().check()
    if self.cache_real_features and self.memory_bank:
      raise ValueError("`cache_real_features=True` needs `memory_bank=False` (the bank stores "
                       "images, the cache their features)")
    Num(low=self.cfg_min, strict=False)("cfg_max", self.cfg_max)
    if self.num_classes_per_step % self.group_chunks:
      raise ValueError(f"`group_chunks` ({self.group_chunks}) must divide "
                       f"`num_classes_per_step` ({self.num_classes_per_step})")
    if self.kernel_width_norm and self.norm_k >= self.num_pos:
      raise ValueError(f"`norm_k` must be < `num_pos` ({self.num_pos}), got {self.norm_k}")
    if self.guidance and (self.objective != "drifting-laplace"
                          or not self.objective_kwargs.get("official", False)):
      raise ValueError("`guidance=True` needs objective='drifting-laplace' with "
                       "objective_kwargs {'official': True} (Deng et al.'s loss, the one with "
                       f"weighted negatives); got objective={self.objective!r}, "
                       f"objective_kwargs={self.objective_kwargs!r}")

  @classmethod
  def upgrade(cls, record: dict) -> dict:
    record = dict(record)
    if "cfg" in record and "guidance" not in record:  # before v0.2 the flag was `cfg`
      record["guidance"] = record.pop("cfg")
    return record


# ----------------------------------------------------------------------------- sampling
def _generate(model, params, key, labels, cfg_scale: float):
  noise = presets.sample_image_noise(key, model, labels.shape[0])
  return model.apply(params, noise.noise, labels, style=noise.style,
                     cfg_scale=jnp.full(labels.shape, cfg_scale, jnp.float32))


_generate_jit = jax.jit(_generate, static_argnums=0)


def generate_images(model: Any, params: Any, key: jax.Array, labels: jax.Array,
                    cfg_scale: float = 1.0) -> jax.Array:
  """``[len(labels), H, W, C]`` samples of ``model`` for ``labels`` (CFG scale broadcast)."""
  return _generate_jit(model, params, key, jnp.asarray(labels, jnp.int32), float(cfg_scale))


def _save_grid(images, path: str, nrow: int) -> None:
  x = np.asarray(images)
  x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1]  # latents: preview the first channels
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  image_data.save_image_grid(np.clip(x, -1.0, 1.0), path, nrow=nrow)


def feature_table(extractor: Any, images: Any, *, batch_size: int = 500,
                  progress: bool = False) -> dict[str, jax.Array]:
  """The extractor's streams of every image, ``{stream: [N, D_s] or [N, L_s, D_s]}`` (the
  shapes the training step gives the streams of a batch), computed in batches.

  Args:
    extractor: a :class:`~drifting_jax.models.encoders.FeatureExtractor`.
    images: ``[N, H, W, C]`` images.
    batch_size: images per compiled call (the last batch is padded, not recompiled).
    progress: show a progress bar.
  """
  from drifting_jax.metrics.features import _batched

  @jax.jit
  def streams(x):  # the shapes image_step gives a batch's streams, per image
    return {k: v if v.ndim == 3 else v.reshape(v.shape[0], -1)
            for k, v in extractor.apply(x).items()}

  table = _batched(streams, np.asarray(images), batch_size, progress=progress,
                   desc="real features")  # one host copy, filled in place
  return {name: jax.device_put(table.pop(name)) for name in list(table)}


def _feature_extractor(cfg: ImageConfig, shape: tuple[int, int, int]):
  """The feature streams of ``cfg``: pixels, a bundled encoder, or a trained encoder run
  (``feature_encoder="mae:<run dir>"``, its ``feature_kwargs`` those of
  :func:`~drifting_jax.models.encoders.mae_extractor`)."""
  name = cfg.feature_encoder
  try:
    if name is not None and name.startswith("mae:"):
      module, variables = load_encoder(name[len("mae:"):], image_shape=shape)
      return mae_extractor(module, variables, image_shape=shape, **cfg.feature_kwargs)
    return make_feature_extractor(name, image_shape=shape, seed=cfg.seed, **cfg.feature_kwargs)
  except TypeError as e:  # an option the extractor does not have
    raise ValueError(f"`feature_kwargs` {cfg.feature_kwargs!r} do not fit feature_encoder "
                     f"{name!r}: {e}") from None


def _source_config(path: str, record: dict) -> ImageConfig:
  """The config of the ``init_from`` run at ``path`` (``record``: its ``config.json``)."""
  if record.get("task") != "images":
    raise ValueError(f"`init_from` {path!r} is not an image run (expected a config.json "
                     f"with task 'images', found {record.get('task', 'toy')!r})")
  return dataclasses.replace(config_from_dict(record), init_from=None)


def _make_model(cfg: ImageConfig) -> Any:
  """The generator of ``cfg`` (``model`` with ``model_overrides`` and ``dtype``)."""
  overrides = dict(cfg.model_overrides)
  if cfg.dtype == "bfloat16":
    overrides["dtype"] = jnp.bfloat16
  return presets.get_model(cfg.model, **overrides)


def _check_fits(path: str, src: ImageConfig, params: Any, template: Any) -> None:
  """``params`` (of the ``init_from`` run ``src``) have ``template``'s tree, shapes, dtypes."""
  spec = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
  if jax.tree.structure(params) != jax.tree.structure(template) or spec(params) != spec(
      template):
    raise ValueError(f"`init_from` {path!r} trained another generator ({src.model} with "
                     f"overrides {src.model_overrides}): its parameters do not fit")


def _param_shapes(model: Any) -> Any:
  return jax.eval_shape(lambda key: presets.init_params(model, key), jax.random.PRNGKey(0))


def _check_init_from(path: str, model: Any) -> None:
  """``init_from`` is an image run whose config's generator has ``model``'s parameters
  (tree, shapes, dtypes; cheap: no data, no checkpoint read — :func:`_pretrained` restores
  and checks the checkpoint itself)."""
  if not os.path.exists(path):
    raise ValueError(f"`init_from` {path!r} does not exist (expected the directory of a "
                     f"finished image run)")
  try:
    _, _, run_dir = ckpt.resolve_checkpoint(path)
  except ValueError as e:
    raise ValueError(f"`init_from` {path!r} is not an image run ({e})") from None
  record = rundir.load_config_record(run_dir)
  if record is None:
    raise ValueError(f"`init_from` {run_dir!r} has no config.json")
  src = _source_config(path, record)
  _check_fits(path, src, _param_shapes(_make_model(src)), _param_shapes(model))


def _pretrained(path: str, template: Any) -> tuple[Any, Any]:
  """``(params, ema_params)`` of the image run at ``path``, checked against ``template``."""
  def build(record):
    src = ImageTask(_source_config(path, record), load_data=False)
    return src, src.template_state(), src.cfg.max_to_keep

  try:
    src, state, _ = ckpt.restore_run_state(path, build, what="`init_from`")
  except ValueError as e:
    msg = str(e).splitlines()[0]
    raise ValueError(msg if msg.startswith("`init_from`") else
                     f"`init_from` {path!r} is not an image run ({msg})") from None
  _check_fits(path, src.cfg, state.params, template)
  return state.params, state.ema_params


# -------------------------------------------------------------------------------- task
class _ImageStepper(Stepper):
  def __init__(self, task: "ImageTask", state: TrainState):
    self._task = task
    self._runner = task.runner()
    self._state, self._bank, self._data = self._runner.place(state.replace(bank=None),
                                                             state.bank, task.data)

  def step(self, it: int) -> dict[str, jax.Array]:
    fn = self._runner.train if it >= self._task.warmup else self._runner.stats
    self._state, self._bank, metrics = fn(self._state, self._bank, self._data)
    return {k: v for k, v in metrics.items() if k != "grads"}

  def state(self) -> TrainState:
    return self._runner.fetch(self._state).replace(bank=self._bank)


class ImageTask(Task):
  """The class-conditional image task (see the module docstring).

  ``dataset``: an in-memory :class:`~drifting_jax.data.images.Dataset` used instead of
  loading ``cfg.dataset`` (tests, custom latents); ``objective``: a per-group objective
  ``fn(x [N, D], pos [M, D], step)`` replacing ``cfg.objective``.
  """

  name = "images"
  config_type = ImageConfig
  run_files = ("samples.png", "samples")
  guard_keys = ("loss", "grad_norm", "kernel_scale")
  unit = "it"

  def __init__(self, cfg: ImageConfig, *, dataset: image_data.Dataset | None = None,
               objective: Any = None, load_data: bool = True):
    super().__init__(cfg, objective=objective)
    model = _make_model(cfg)
    if objective is None:
      image_step.make_group_loss(cfg)  # resolves (and validates) the objective and schedule
    if cfg.guidance and not getattr(model, "cfg_embed", False):
      raise ValueError(f"`guidance=True` needs a generator conditioned on the CFG scale; set "
                       f"model_overrides {{'cfg_embed': True}} for model {cfg.model!r}")
    self.model = model
    self._recent: list[float] = []  # losses of the last `log_every` training iterations
    self.optimizer = make_optimizer(cfg)
    self.objective = objective
    self.extractor = _feature_extractor(cfg, image_shape(model))
    self.data = None
    if load_data:
      ds = (image_data.check_dataset(dataset) if dataset is not None else
            image_data.load_dataset(cfg.dataset, split=cfg.dataset_split))
      if tuple(ds.images.shape[1:]) != image_shape(model):
        raise ValueError(f"`dataset` images have shape {tuple(ds.images.shape[1:])} but model "
                         f"{cfg.model!r} generates {image_shape(model)}")
      if ds.num_classes > model.num_classes:
        raise ValueError(f"`dataset` has {ds.num_classes} classes, model {cfg.model!r} only "
                         f"{model.num_classes}")
      data = class_conditional.class_data(ds.images, ds.labels, num_classes=ds.num_classes)
      if cfg.num_classes_per_step > class_conditional.nonempty_classes(data):
        raise ValueError(f"`num_classes_per_step` ({cfg.num_classes_per_step}) exceeds the "
                         f"non-empty classes of the dataset")
      if cfg.cache_real_features:
        data = class_conditional.with_features(
            data, feature_table(self.extractor, data.images, progress=cfg.progress))
      self.data = data

  # ---------------------------------------------------------------------------- building
  @property
  def warmup(self) -> int:
    """Statistics-only iterations before the first optimizer update."""
    return self.cfg.norm_warmup if self.cfg.kernel_width_norm else 0

  @property
  def total_steps(self) -> int:
    return self.warmup + self.cfg.num_steps

  @classmethod
  def check_start(cls, cfg: ImageConfig) -> None:
    """``init_from`` is an image run of this generator (before the data and a feature table
    load, which take minutes)."""
    if cfg.init_from:
      _check_init_from(cfg.init_from, _make_model(cfg))

  def init_state(self) -> TrainState:
    """Fresh state at iteration 0 (one kernel-width state per stream; the memory bank
    pre-filled from the data; the generator and its EMA from ``init_from``, if set)."""
    return self._fresh_state(pretrained=True)

  def template_state(self) -> TrainState:
    """The fresh state without reading ``init_from`` (a checkpoint replaces it)."""
    return self._fresh_state(pretrained=False)

  def _fresh_state(self, *, pretrained: bool) -> TrainState:
    cfg, model, optimizer, names = self.cfg, self.model, self.optimizer, self.extractor.names

    def init(seed):
      init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
      params = presets.init_params(model, init_key)
      norm = {name: normalization.init(model.num_classes) for name in names}
      return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                        opt_state=optimizer.init(params), rng=run_key, ema_params=params,
                        norm=norm)

    # One compiled program instead of hundreds of eagerly dispatched initialisation ops.
    state = self.cached("init", lambda: jax.jit(
        init, compiler_options=cfg.compiler_options or None))(cfg.seed)
    if cfg.init_from and pretrained:
      params, ema = _pretrained(cfg.init_from, state.params)
      state = state.replace(params=params, ema_params=ema, opt_state=optimizer.init(params))
    if not cfg.memory_bank:
      return state
    if self.data is None:
      bank = memory_bank.init(model.num_classes, pos_size=cfg.bank_pos_size,
                              neg_size=cfg.bank_neg_size, feature_shape=image_shape(model))
    else:
      bank = class_conditional.fill_bank(self.data, num_classes=model.num_classes,
                                         pos_size=cfg.bank_pos_size,
                                         neg_size=cfg.bank_neg_size, seed=cfg.seed)
    return state.replace(bank=bank)

  def batch_fn(self):
    """``(bank, data, step) -> (bank, ImageBatch)`` of this config."""
    cfg = self.cfg
    return class_conditional.make_batch_fn(
        seed=cfg.seed, num_classes_per_step=cfg.num_classes_per_step, num_pos=cfg.num_pos,
        num_uncond=cfg.num_uncond, guidance=cfg.guidance, bank_push=cfg.bank_push,
        cfg_min=cfg.cfg_min, cfg_max=cfg.cfg_max, cfg_power=cfg.cfg_power)

  def runner(self, *, devices: Any = None, with_grads: bool = False) -> parallel.Runner:
    """The parallel runner of ``cfg.parallel`` (cached); ``with_grads`` also returns the
    averaged gradients as ``metrics["grads"]`` (tests compare parallel modes with it)."""
    ids = None if devices is None else tuple(d.id for d in devices)

    def build():
      def make_steps(axis_name):
        return (image_step._make_train_step(self.cfg, self.model, self.optimizer,
                                            self.extractor, objective=self.objective,
                                            axis_name=axis_name, with_grads=with_grads),
                image_step.make_stats_step(self.cfg, self.extractor, axis_name=axis_name))
      return parallel.make_runner(self.cfg.parallel, make_steps=make_steps,
                                  prepare=self.batch_fn(),
                                  num_groups=self.cfg.num_classes_per_step, devices=devices,
                                  compiler_options=self.cfg.compiler_options)

    return self.cached(("runner", ids, with_grads), build)

  # ------------------------------------------------------------------------------ loop
  def start(self, state: TrainState) -> Stepper:
    if self.data is None:
      raise ValueError("this ImageTask was built with load_data=False; it cannot train")
    self._recent: list[float] = []
    return _ImageStepper(self, state)

  def guard(self) -> rundir.StepGuard:
    warm = self.warmup
    return rundir.StepGuard(self.guard_keys,
                            where=lambda i: f"iteration {i} (optimizer step {i - warm})",
                            unit="iteration")

  def _phase(self, done: int) -> str:
    return "train" if done > self.warmup else "warmup"

  def record(self, done, values, steps_per_sec, elapsed_s):
    return {"step": done, "opt_step": max(done - self.warmup, 0), "phase": self._phase(done),
            **values, "steps_per_sec": steps_per_sec, "elapsed_s": elapsed_s}

  def postfix(self, done, values, rate):
    return {"loss": f"{values.get('loss', math.nan):.4g}", "it_s": f"{rate:.2f}",
            "phase": self._phase(done)}

  def on_check(self, its, checked):
    """Keeps the losses of the last ``log_every`` training iterations (``loss_avg``)."""
    self._recent = (self._recent + [v["loss"] for i, v in zip(its, checked)
                              if i >= self.warmup])[-self.cfg.log_every:]

  def progress_desc(self) -> str:
    return f"{self.cfg.model}/{self.cfg.objective}"

  def events(self, workdir, stepper):
    if workdir is None:
      return []
    cfg, warm, total = self.cfg, self.warmup, self.total_steps
    return [driver.Event(
        lambda done: (done > warm and cfg.sample_every and done % cfg.sample_every == 0
                      and done != total),
        lambda done, values: self.grid(stepper.state().ema_params, os.path.join(
            workdir, "samples", f"step_{done:07d}.png")))]

  def finalize(self, state, workdir, loop):
    recent = self._recent
    last = loop.values if loop.checked_step > self.warmup else {}  # training iterations only
    start = int(loop.start)
    final = dict(last, step=int(self.total_steps), wall_time_s=loop.elapsed_s,
                 steps_per_sec=(self.total_steps - start) / max(loop.elapsed_s, 1e-9),
                 loss_avg=float(np.mean(recent)) if recent else math.nan)
    if workdir is not None:
      self.grid(state.ema_params, os.path.join(workdir, "samples.png"))
      if self.is_main_process():
        rundir.write_json(os.path.join(workdir, "metrics.json"), final)
    return final

  # ------------------------------------------------------------------ sample / evaluate
  def grid(self, params: Any, path: str) -> None:
    """Writes a grid of ``samples_per_class`` samples of each of the first 10 classes."""
    cfg, model = self.cfg, self.model
    classes = min(model.num_classes, 10)
    labels = jnp.repeat(jnp.arange(classes, dtype=jnp.int32), cfg.samples_per_class)
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)
    images = generate_images(model, params, key, labels, cfg.sample_cfg_scale)
    if self.is_main_process():
      _save_grid(images, path, cfg.samples_per_class)

  def sample(self, state, *, num, out, seed=0, class_id=None, cfg_scale=None, use_ema=True,
             **options):
    """Writes ``num`` images as a PNG grid and an ``.npz`` (samples ``[num, H, W, C]``,
    labels, iteration) side by side (``out`` may name either); classes ``0, 1, ...`` in
    turn, or ``class_id``; the run's ``sample_cfg_scale`` unless ``cfg_scale``."""
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
      raise ValueError(f"option(s) {given} do not apply to image runs")
    num = _validation.check_int("num", num, minimum=1)
    classes = self.model.num_classes
    if class_id is not None and not 0 <= int(class_id) < classes:
      raise ValueError(f"`class_id` must lie in [0, {classes}), got {class_id}")
    labels = (jnp.full((num,), int(class_id), jnp.int32) if class_id is not None
              else jnp.arange(num, dtype=jnp.int32) % min(classes, 10))
    scale = self.cfg.sample_cfg_scale if cfg_scale is None else float(cfg_scale)
    params = state.ema_params if use_ema else state.params
    samples = np.asarray(generate_images(self.model, params, jax.random.PRNGKey(seed), labels,
                                         scale))
    png = os.path.splitext(os.fspath(out))[0] + ".png"
    _save_grid(samples, png, nrow=math.ceil(math.sqrt(num)) if class_id is not None
               else min(classes, 10))
    np.savez(os.path.splitext(png)[0] + ".npz", samples=samples, labels=np.asarray(labels),
             step=int(state.step))
    return os.fspath(out)

  def evaluate(self, state, *, run_dir, out=None, num_samples=None, fid=None, classifier=None,
               inception_weights=None, k: int = 3, seed=None, progress: bool = False,
               **options):
    """FID, precision, recall and F1 on classifier and/or Inception features.

    Args:
      state: the restored state (its EMA generator is sampled).
      run_dir: the run directory (samples ``eval_samples.{png,npz}`` are written there).
      out: JSON path for the metrics (default ``<run_dir>/eval_metrics.json``).
      num_samples: generated samples, classes in turn (default 10,000; also the number of
        real test images, capped by the split's size for the classifier metric).
      fid: one of :data:`~drifting_jax.metrics.image_scores.FID_KINDS` (default
        ``"classifier"``).
      classifier: classifier weights (default: the project's MNIST classifier).
      inception_weights: converted TF-FID weights (default ``$DRIFTING_JAX_INCEPTION`` or
        the cache file of ``drifting-jax convert-inception``).
      k: neighbourhood size of precision/recall.
      seed: sampling seed (default 0).
      progress: progress bars for the Inception passes.

    Returns:
      The keys of :func:`~drifting_jax.metrics.image_scores.classifier_scores` and/or
      :func:`~drifting_jax.metrics.image_scores.inception_scores`, and the settings.
    """
    given = sorted(k_ for k_, v in options.items() if v is not None)
    if given:
      raise ValueError(f"option(s) {given} do not apply to image runs")
    num_samples = 10_000 if num_samples is None else num_samples
    fid = fid or "classifier"
    seed = seed or 0
    num_samples = _validation.check_int("num_samples", num_samples, minimum=k + 1)
    if fid not in image_scores.FID_KINDS:
      raise ValueError(f"`fid` must be one of {image_scores.FID_KINDS}, got {fid!r}.")
    use_classifier, use_inception = fid in ("classifier", "both"), fid in ("inception", "both")
    if use_inception:  # fail before the expensive sampling
      inception_weights = image_scores.inception_weights_path(inception_weights)
    metrics: dict[str, Any] = {"k": k, "iteration": int(state.step), "seed": seed}
    if use_classifier:
      from drifting_jax.metrics.features import classifier_features, load_classifier
      path = (pathlib.Path(classifier) if classifier is not None
              else image_scores.DEFAULT_MNIST_CLASSIFIER)
      if not path.is_file():
        raise ValueError(f"`classifier` weights not found at {path}; train them with "
                         "`python experiments/train_mnist_classifier.py` or pass --classifier.")
      params = load_classifier(path)
      # Embed the real split first: a classifier that does not fit the images fails here,
      # before the (expensive) sampling.
      real_images = image_data.load_dataset(self.cfg.dataset, split="test").images[:num_samples]
      f_real = classifier_features(params, real_images)

    png = os.path.join(run_dir, "eval_samples.png")
    self.sample(state, num=num_samples, out=png, seed=seed)
    with np.load(os.path.splitext(png)[0] + ".npz") as data:
      fake, fake_labels = data["samples"], data["labels"]
    metrics["num_generated"] = int(fake.shape[0])
    metrics["fraction_outside_data_range"] = float(np.mean(np.abs(fake) > 1.0))
    if use_classifier:
      metrics.update(image_scores.classifier_scores(fake, fake_labels, real_features=f_real,
                                                    params=params, k=k),
                     real_split=f"{self.cfg.dataset}:test", classifier=str(path))
    if use_inception:
      metrics.update(image_scores.inception_scores(fake, dataset=self.cfg.dataset,
                                                   n=num_samples, weights=inception_weights,
                                                   k=k, progress=progress))
    rundir.write_json(self.default_eval_path(run_dir, out), metrics)
    return metrics

  def describe(self) -> str:
    return presets.describe(self.model)
