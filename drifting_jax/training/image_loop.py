"""The image training loop: data, resume, parallel steps, logs, grids, checkpoints, NaN guard.

``train_images(config, workdir)`` trains a class-conditional drifting generator
(:mod:`drifting_jax.training.images`) and leaves in ``workdir``::

    config.json        the resolved ImageConfig
    checkpoints/<it>/  orbax: params, EMA params, optimizer, kernel-width state, step, rng
                       (+ memory bank); a rerun resumes from the latest one
    metrics.jsonl      one record every ``log_every`` iterations (loss, grad/drift norms,
                       lr, kernel scale, steps/s, elapsed time)
    samples/step_*.png EMA-generator grids during training (one row per class)
    samples.png        the final grid;  metrics.json  the final metrics

The data of iteration ``t`` is a pure function of ``(seed, t)`` and of the checkpointed
memory bank, and the generator noise is ``fold_in(rng, t)``: a resumed run reproduces the
uninterrupted one bit for bit. A non-finite loss, gradient norm or kernel scale stops the
run with ``FloatingPointError`` naming the iteration; the bad update is not saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from drifting_jax.data import batching, images as image_data, memory_bank
from drifting_jax.models import presets
from drifting_jax.models.dit import image_shape
from drifting_jax.training import parallel
from drifting_jax.training import checkpoint as ckpt, driver, rundir
from drifting_jax.training.features import FeatureExtractor, make_feature_extractor
from drifting_jax.training.image_config import (ImageConfig, apply_image_overrides,
                                                image_config_from_dict, load_image_config)
from drifting_jax.training.image_sampling import _grid, load_image_run, sample_images
from drifting_jax.training.images import (ImageBatch, ImageTrainState,
                                          init_image_state, make_group_loss,
                                          make_image_optimizer,
                                          make_stats_step, _make_train_step, sample_cfg_scale,
                                          validate_image_config)

__all__ = ["ImageData", "ImageRun", "apply_image_overrides", "build_image_run",
           "image_config_from_dict", "init_bank",
           "load_image_config", "load_image_run", "make_prepare", "sample_images",
           "train_images"]

CHECKPOINT_DIR = "checkpoints"


# --------------------------------------------------------------------------------- data
class ImageData(NamedTuple):
  """The dataset on device: ``images [N, H, W, C]``, ``labels [N]``, per-class index."""

  images: jax.Array
  labels: jax.Array
  index: batching.ClassIndex


def init_bank(cfg: ImageConfig, data: ImageData, num_classes: int) -> memory_bank.MemoryBank:
  """A memory bank pre-filled with ``bank_pos_size`` random real samples of every class and
  ``bank_neg_size`` random samples in the shared buffer (so no class is ever drawn empty)."""
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 2)
  k_pos, k_neg = jax.random.split(key)
  counts = jnp.zeros((num_classes,), jnp.int32).at[:data.index.counts.shape[0]].set(
      data.index.counts)
  table = jnp.zeros((num_classes, data.index.table.shape[1]), jnp.int32).at[
      :data.index.table.shape[0]].set(data.index.table)
  slots = batching.random_subset(k_pos, counts, table.shape[1], cfg.bank_pos_size)
  filled = jnp.minimum(counts, cfg.bank_pos_size)
  neg_idx = jax.random.randint(k_neg, (cfg.bank_neg_size,), 0, data.images.shape[0])
  empty = memory_bank.init(num_classes, pos_size=cfg.bank_pos_size, neg_size=cfg.bank_neg_size,
                           feature_shape=data.images.shape[1:])
  return empty._replace(
      pos=data.images[jnp.take_along_axis(table, slots, axis=1)],  # empty classes: count 0
      pos_count=filled, pos_ptr=filled % cfg.bank_pos_size, neg=data.images[neg_idx],
      neg_count=jnp.asarray(cfg.bank_neg_size, jnp.int32), neg_ptr=jnp.zeros((), jnp.int32))


def make_prepare(cfg: ImageConfig):
  """``prepare(bank, data, step) -> (bank, ImageBatch)``: the global batch of iteration
  ``step``, a pure function of ``(cfg.seed, step, bank)``.

  Without a bank: ``N_c`` distinct classes with ``N_pos`` real images each
  (:func:`~drifting_jax.data.batching.sample_class_batch`), CFG negatives drawn uniformly
  from the dataset. With a bank: ``bank_push`` random real samples are pushed, then the
  positives and the unconditional negatives are drawn from the bank (Secretly-SM Table 2).
  """
  g, m, u = cfg.num_classes_per_step, cfg.num_pos, cfg.num_uncond
  data_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)

  def prepare(bank, data: ImageData, step):
    k_cls, k_pos, k_push, k_unc, k_cfg = jax.random.split(jax.random.fold_in(data_key, step), 5)
    n = data.images.shape[0]
    uncond = None
    if bank is None:
      batch = batching.sample_class_batch(k_cls, data.images, data.index,
                                          num_classes_per_step=g, num_pos=m)
      pos, class_ids = batch.pos, batch.class_ids
      if cfg.guidance:
        uncond = data.images[jax.random.randint(k_unc, (g, u), 0, n)]
    else:
      idx = jax.random.randint(k_push, (cfg.bank_push,), 0, n)
      bank = memory_bank.push(bank, data.images[idx], data.labels[idx])
      gumbel = jax.random.gumbel(k_cls, data.index.counts.shape)
      _, class_ids = jax.lax.top_k(jnp.where(data.index.counts > 0, gumbel, -jnp.inf), g)
      class_ids = class_ids.astype(jnp.int32)
      pos, neg = memory_bank.sample(bank, k_pos, class_ids, num_pos=m, num_neg=u)
      uncond = neg if cfg.guidance else None
    alpha = (sample_cfg_scale(k_cfg, g, low=cfg.cfg_min, high=cfg.cfg_max, power=cfg.cfg_power)
             if cfg.guidance else None)
    return bank, ImageBatch(pos, class_ids, jnp.arange(g, dtype=jnp.int32), uncond, alpha)

  return prepare


# ---------------------------------------------------------------------------------- run
# Config fields that do not change the compiled programs: runs differing only in these
# (e.g. a resumed run, or one with another dataset of the same shape) reuse them.
_NOT_IN_STEP = ("dataset", "dataset_split", "log_every", "sample_every", "samples_per_class",
                "sample_cfg_scale", "checkpoint_every", "max_to_keep", "progress")
_CACHE: dict[Any, Any] = {}

@dataclasses.dataclass
class ImageRun:
  """The pieces of an image run built from a config (no training state)."""

  cfg: ImageConfig
  model: Any
  optimizer: Any
  extractor: FeatureExtractor
  data: ImageData | None
  objective: Any = None

  @property
  def cache_key(self) -> str | None:
    """JSON of the config fields that shape the compiled steps (None: not cacheable)."""
    if self.objective is not None:
      return None
    d = dataclasses.asdict(self.cfg)
    return json.dumps({k: v for k, v in d.items() if k not in _NOT_IN_STEP}, sort_keys=True,
                      default=repr)

  def _cached(self, name: str, build):
    key = None if self.cache_key is None else (repr(name), self.cache_key)
    if key is None:
      return build()
    if key not in _CACHE:
      if len(_CACHE) >= 16:
        _CACHE.pop(next(iter(_CACHE)))
      _CACHE[key] = build()
    return _CACHE[key]

  def init(self) -> tuple[ImageTrainState, memory_bank.MemoryBank | None]:
    """Fresh ``(state, bank)`` (the bank pre-filled from the data, or None)."""
    state = self._cached("init", lambda: init_image_state(
        self.cfg, self.model, self.optimizer, self.extractor.names))
    bank = None
    if self.cfg.memory_bank:
      if self.data is None:
        bank = memory_bank.init(self.model.num_classes, pos_size=self.cfg.bank_pos_size,
                                neg_size=self.cfg.bank_neg_size,
                                feature_shape=image_shape(self.model))
      else:
        bank = init_bank(self.cfg, self.data, self.model.num_classes)
    return state, bank

  def runner(self, *, devices: Any = None) -> parallel.Runner:
    """The parallel runner of ``cfg.parallel`` (:func:`parallel.make_runner`)."""
    return self._runner_cached(devices, False)

  def _runner_cached(self, devices, with_grads: bool) -> parallel.Runner:
    """``runner``; ``with_grads`` also returns the averaged gradients (tests only)."""
    ids = None if devices is None else tuple(d.id for d in devices)
    return self._cached(("runner", ids, with_grads), lambda: self._runner(devices, with_grads))

  def _runner(self, devices, with_grads) -> parallel.Runner:
    def make_steps(axis_name):
      return (_make_train_step(self.cfg, self.model, self.optimizer, self.extractor,
                               objective=self.objective, axis_name=axis_name,
                               with_grads=with_grads),
              make_stats_step(self.cfg, self.extractor, axis_name=axis_name))
    return parallel.make_runner(self.cfg.parallel, make_steps=make_steps,
                                prepare=make_prepare(self.cfg),
                                num_groups=self.cfg.num_classes_per_step, devices=devices,
                                compiler_options=self.cfg.compiler_options)


def build_image_run(cfg: ImageConfig, *, dataset: image_data.Dataset | None = None,
                    objective: Any = None, load_data: bool = True) -> ImageRun:
  """Validates ``cfg`` and builds model, optimizer, feature streams and on-device data.

  Args:
    cfg: run configuration.
    dataset: an in-memory :class:`~drifting_jax.data.images.Dataset` used instead of
      loading ``cfg.dataset`` (tests, custom latents).
    objective: optional per-group objective ``fn(x, pos, step)`` overriding ``cfg``'s.
    load_data: False builds everything but the data (sampling from checkpoints).

  Raises:
    ValueError: naming the offending config field.
  """
  validate_image_config(cfg)
  overrides = dict(cfg.model_overrides)
  if cfg.dtype == "bfloat16":
    overrides["dtype"] = jnp.bfloat16
  model = presets.get_model(cfg.model, **overrides)
  if objective is None:
    make_group_loss(cfg)  # resolves (and validates) the objective and schedule names
  if cfg.guidance and not getattr(model, "cfg_embed", False):
    raise ValueError(f"`guidance=True` needs a generator conditioned on the CFG scale; set "
                     f"model_overrides {{'cfg_embed': True}} for model {cfg.model!r}")
  extractor = make_feature_extractor(cfg.feature_encoder, image_shape=image_shape(model),
                                     seed=cfg.seed, **cfg.feature_kwargs)
  data = None
  if load_data:
    ds = dataset if dataset is not None else image_data.load_dataset(
        cfg.dataset, split=cfg.dataset_split)
    if tuple(ds.images.shape[1:]) != image_shape(model):
      raise ValueError(f"`dataset` images have shape {tuple(ds.images.shape[1:])} but model "
                       f"{cfg.model!r} generates {image_shape(model)}")
    if ds.num_classes > model.num_classes:
      raise ValueError(f"`dataset` has {ds.num_classes} classes, model {cfg.model!r} only "
                       f"{model.num_classes}")
    index = batching.build_class_index(ds.labels, num_classes=ds.num_classes)
    if cfg.num_classes_per_step > int(np.sum(np.asarray(index.counts) > 0)):
      raise ValueError(f"`num_classes_per_step` ({cfg.num_classes_per_step}) exceeds the "
                       f"non-empty classes of the dataset")
    data = ImageData(jnp.asarray(ds.images, jnp.float32), jnp.asarray(ds.labels, jnp.int32),
                     index)
  return ImageRun(cfg, model, make_image_optimizer(cfg), extractor, data, objective)


# ---------------------------------------------------------------------------- checkpoints
def _tree(state, bank) -> dict:
  tree = {"state": flax.serialization.to_state_dict(state)}
  if bank is not None:
    tree["bank"] = bank._asdict()
  return tree


def _save(manager, it: int, state, bank) -> None:
  ckpt.save_tree(manager, it, _tree(state, bank))


def _restore(manager, state, bank, step=None, *, quarantine: bool = False):
  out = ckpt.restore_tree(manager, _tree(state, bank), step, quarantine=quarantine)
  if out is None:
    return None
  tree = out[0]
  state = flax.serialization.from_state_dict(state, tree["state"])
  if bank is not None:
    bank = memory_bank.MemoryBank(**tree["bank"])
  return state, bank


def _manager(directory: str, max_to_keep: int):
  return ckpt.make_manager(directory, max_to_keep=max_to_keep)


# ---------------------------------------------------------------------------------- loop
def _resolve(config, overrides) -> ImageConfig:
  cfg = load_image_config(config) if isinstance(config, (str, os.PathLike)) else config
  return validate_image_config(apply_image_overrides(cfg, overrides))


def _write_json(path: str, obj: Any) -> None:
  if jax.process_index() == 0:
    rundir.write_json(path, obj)


# Settings a resumed run may change (recorded as amendments); any other change refuses.
AMENDABLE = ("num_steps", "log_every", "sample_every", "samples_per_class", "sample_cfg_scale",
             "checkpoint_every", "max_to_keep", "progress", "parallel", "compiler_options")
RUN_FILES = (CHECKPOINT_DIR, rundir.CONFIG_FILE, rundir.AMENDMENTS_FILE, "metrics.jsonl",
             "metrics.json", "samples.png", "samples")


def train_images(config: ImageConfig | str | os.PathLike, workdir: str | os.PathLike, *,
                 overrides: Any = None, dataset: image_data.Dataset | None = None,
                 objective: Any = None, force_new: bool = False) -> dict[str, float]:
  """Trains (or resumes) a class-conditional image generator in ``workdir``.

  Runs ``norm_warmup`` statistics-only iterations, then ``num_steps`` optimizer iterations
  (iteration counts include the warm-up: checkpoints are named by iteration).

  Args:
    config: an :class:`ImageConfig` or a config file defining ``get_config()``.
    workdir: run directory (created; an existing checkpoint is resumed).
    overrides: ``{field: value}`` or ``["field=value", ...]`` applied to ``config``.
    dataset: in-memory dataset instead of ``config.dataset``.
    objective: per-group objective ``fn(x [N, D], pos [M, D], step)`` replacing
      ``config.objective``.
    force_new: start over even if ``workdir`` holds a run (its files are moved into
      ``workdir/replaced-<time>/``).

  Returns:
    Final metrics: the last iteration's ``loss``, ``grad_norm``, ``drift_norm``, ...,
    ``loss_avg`` (mean over the last ``log_every`` iterations), ``step``, ``wall_time_s``,
    ``steps_per_sec`` (this session).

  Raises:
    ValueError: invalid config; ``rundir.ConfigMismatch`` when ``workdir`` holds a run
      with another configuration (see :mod:`drifting_jax.training.rundir`).
    rundir.RunDirLocked: another process trains in ``workdir``.
    FloatingPointError: a non-finite loss / gradient norm / kernel scale; the run stops,
      the last good checkpoint stays.
  """
  return _train(config, workdir, overrides=overrides, dataset=dataset, objective=objective,
                force_new=force_new)


def _train_images_until(config, workdir, stop_at: int, **kwargs) -> dict[str, float]:
  """``train_images`` that stops after ``stop_at`` iterations as if the process were killed
  (no final checkpoint, grid or metrics.json): simulates preemption in tests."""
  return _train(config, workdir, stop_at=stop_at, **kwargs)


def _train(config, workdir, *, overrides: Any = None, dataset=None, objective=None,
           force_new: bool = False, stop_at: int | None = None) -> dict[str, float]:
  cfg = _resolve(config, overrides)
  run = build_image_run(cfg, dataset=dataset, objective=objective)
  workdir = os.path.abspath(os.fspath(workdir))
  os.makedirs(workdir, exist_ok=True)
  with rundir.RunLock(workdir):
    if force_new:
      rundir.move_aside(workdir, RUN_FILES)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    return _train_locked(cfg, run, workdir, stop_at)


def _train_locked(cfg: ImageConfig, run: ImageRun, workdir: str, stop_at: int | None) -> dict:
  manager = _manager(os.path.join(workdir, CHECKPOINT_DIR), cfg.max_to_keep)
  try:
    state, bank = run.init()
    latest = manager.latest_step()
    record = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if jax.process_index() == 0:  # refuse before reading the checkpoint with these shapes
      rundir.record_config(workdir, record, step=latest or 0, amendable=AMENDABLE)
    if latest is not None:
      state, bank = _restore(manager, state, bank, quarantine=jax.process_index() == 0)
    start = int(state.step)
    log = rundir.MetricsLog(os.path.join(workdir, "metrics.jsonl"), resume_step=start,
                            enabled=jax.process_index() == 0)
  except BaseException:
    manager.close()
    raise

  warm = cfg.norm_warmup if cfg.kernel_width_norm else 0
  total = warm + cfg.num_steps
  end = total if stop_at is None else min(stop_at, total)
  runner = run.runner()
  dstate, dbank, ddata = runner.place(state, bank, run.data)

  def step(it: int) -> dict:
    nonlocal dstate, dbank
    dstate, dbank, metrics = (runner.train if it >= warm else runner.stats)(
        dstate, dbank, ddata)
    return {k: v for k, v in metrics.items() if k != "grads"}

  recent: list[float] = []  # losses of the last `log_every` training iterations

  def on_check(its: list[int], checked: list[dict[str, float]]) -> None:
    nonlocal recent
    recent = (recent + [v["loss"] for i, v in zip(its, checked) if i >= warm])[-cfg.log_every:]

  def phase(done: int) -> str:
    return "train" if done > warm else "warmup"

  pbar = tqdm(total=total, initial=start, disable=not cfg.progress, unit="it",
              dynamic_ncols=True, desc=f"{cfg.model}/{cfg.objective}")
  with log:  # run_loop closes the progress bar and the manager
    out = driver.run_loop(
        start=start, end=end, total=total, step=step,
        guard=rundir.StepGuard(("loss", "grad_norm", "kernel_scale"),
                               where=lambda i: f"iteration {i} (optimizer step {i - warm})",
                               unit="iteration"),
        manager=manager, log=log, log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        save=lambda done: _save(manager, done, runner.fetch(dstate), dbank),
        events=[driver.Event(
            lambda done: (done > warm and cfg.sample_every and done % cfg.sample_every == 0
                          and done != total),
            lambda done, values: _grid(run, runner.fetch(dstate).ema_params, os.path.join(
                workdir, "samples", f"step_{done:07d}.png")))],
        record=lambda done, values, steps_per_sec, elapsed_s: {
            "step": done, "opt_step": max(done - warm, 0), "phase": phase(done), **values,
            "steps_per_sec": steps_per_sec, "elapsed_s": elapsed_s},
        on_check=on_check, progress=pbar,
        postfix=lambda done, values, rate: {
            "loss": f"{values.get('loss', math.nan):.4g}", "it_s": f"{rate:.2f}",
            "phase": phase(done)})

  last = out.values if out.checked_step > warm else {}  # metrics of training iterations only
  final = dict(last, step=int(end), wall_time_s=out.elapsed_s,
               steps_per_sec=(end - start) / max(out.elapsed_s, 1e-9),
               loss_avg=float(np.mean(recent)) if recent else math.nan)
  if end == total:
    state = runner.fetch(dstate)
    _grid(run, state.ema_params, os.path.join(workdir, "samples.png"))
    _write_json(os.path.join(workdir, "metrics.json"), final)
  return final
