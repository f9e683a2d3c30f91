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

import ast
import dataclasses
import json
import math
import os
import time
import typing
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from drifting_jax.data import batching, images as image_data, memory_bank
from drifting_jax.models import presets
from drifting_jax.models.dit import image_shape
from drifting_jax.training import parallel
from drifting_jax.training.checkpoint import resolve_checkpoint
from drifting_jax.training.config import run_config_file
from drifting_jax.training.features import FeatureExtractor, make_feature_extractor
from drifting_jax.training.images import (ImageBatch, ImageConfig, ImageTrainState,
                                          init_image_state, make_group_loss,
                                          make_image_optimizer,
                                          make_stats_step, make_train_step, sample_cfg_scale,
                                          validate_image_config)

__all__ = ["ImageData", "ImageRun", "apply_image_overrides", "build_image_run", "init_bank",
           "load_image_config", "load_image_run", "make_prepare", "sample_images",
           "train_images"]

CHECKPOINT_DIR = "checkpoints"


# ------------------------------------------------------------------------------- config
def load_image_config(path: str | os.PathLike) -> ImageConfig:
  """Runs ``get_config()`` of a Python config file (or reads a ``config.json`` dump)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"`config` file not found: {path!r}")
  if path.endswith(".json"):
    with open(path) as f:
      d = json.load(f)
    if "cfg" in d and "guidance" not in d:  # runs written before v0.2 named the flag `cfg`
      d["guidance"] = d.pop("cfg")
    return ImageConfig(**d)
  return run_config_file(path, ImageConfig)


_FIELDS = {f.name for f in dataclasses.fields(ImageConfig)}


def _parse(name: str, text: str) -> Any:
  """Parses ``--set`` text for field ``name`` (a Python literal; strings may be bare)."""
  low = text.strip().lower()
  if low in ("none", "null"):
    return None
  if low in ("true", "false"):
    return low == "true"
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  hint = typing.get_type_hints(ImageConfig).get(name)
  if hint is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if hint is str and not isinstance(value, str):
    value = text
  return value


def apply_image_overrides(cfg: ImageConfig, overrides: Any) -> ImageConfig:
  """A copy of ``cfg`` with overrides: a dict ``{field: value}`` or ``["field=value", ...]``.

  Dotted keys set an entry of a dict field (``"model_overrides.depth=2"``).

  Raises:
    ValueError: malformed item or unknown field.
  """
  cfg = dataclasses.replace(cfg, **{k: dict(v) for k, v in dataclasses.asdict(cfg).items()
                                    if isinstance(v, dict)})
  if overrides is None:
    return cfg
  if isinstance(overrides, dict):
    items = list(overrides.items())
  else:
    items = []
    for item in overrides:
      if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"`overrides` items must be 'key=value', got {item!r}")
      key, text = item.split("=", 1)
      key = key.strip().replace("-", "_")
      items.append((key, _parse(key.partition(".")[0], text) if "." not in key else
                    _parse("", text)))
  for key, value in items:
    field, _, sub = key.partition(".")
    if field not in _FIELDS:
      raise ValueError(f"unknown config field {field!r} in `overrides`; known: {sorted(_FIELDS)}")
    if sub:
      if not isinstance(getattr(cfg, field), dict):
        raise ValueError(f"`{field}` is not a dict; cannot set {key!r}")
      getattr(cfg, field)[sub] = value
    else:
      setattr(cfg, field, value)
  return cfg


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

  def runner(self, *, devices: Any = None, with_grads: bool = False) -> parallel.Runner:
    """The parallel runner of ``cfg.parallel`` (:func:`parallel.make_runner`)."""
    ids = None if devices is None else tuple(d.id for d in devices)
    return self._cached(("runner", ids, with_grads), lambda: self._runner(devices, with_grads))

  def _runner(self, devices, with_grads) -> parallel.Runner:
    def make_steps(axis_name):
      return (make_train_step(self.cfg, self.model, self.optimizer, self.extractor,
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
  manager.save(it, args=ocp.args.StandardSave(_tree(state, bank)), force=True)


def _restore(manager, state, bank, step=None):
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  tree = manager.restore(step, args=ocp.args.StandardRestore(_tree(state, bank)))
  state = flax.serialization.from_state_dict(state, tree["state"])
  if bank is not None:
    bank = memory_bank.MemoryBank(**tree["bank"])
  return state, bank


def _manager(directory: str, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


# ------------------------------------------------------------------------------ sampling
def _generate(model, params, key, labels, cfg_scale: float):
  """``[len(labels), H, W, C]`` samples for ``labels`` (CFG scale broadcast)."""
  noise = presets.sample_image_noise(key, model, labels.shape[0])
  return model.apply(params, noise.noise, labels, style=noise.style,
                     cfg_scale=jnp.full(labels.shape, cfg_scale, jnp.float32))


_generate_jit = jax.jit(_generate, static_argnums=0)


def _save_grid(images, path: str, nrow: int) -> None:
  x = np.asarray(images)
  x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1]  # latents: preview the first channels
  image_data.save_image_grid(np.clip(x, -1.0, 1.0), path, nrow=nrow)


def _grid(run: ImageRun, params, path: str) -> None:
  cfg, model = run.cfg, run.model
  classes = min(model.num_classes, 10)
  labels = jnp.repeat(jnp.arange(classes, dtype=jnp.int32), cfg.samples_per_class)
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)
  images = _generate_jit(model, params, key, labels, cfg.sample_cfg_scale)
  if jax.process_index() == 0:
    _save_grid(images, path, cfg.samples_per_class)


# ---------------------------------------------------------------------------------- loop
def _resolve(config, overrides) -> ImageConfig:
  cfg = load_image_config(config) if isinstance(config, (str, os.PathLike)) else config
  return validate_image_config(apply_image_overrides(cfg, overrides))


def _write_json(path: str, obj: Any) -> None:
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


def _trim_log(path: str, last_step: int) -> None:
  """Drops log records past the resumed iteration (they are recomputed)."""
  if not os.path.isfile(path) or jax.process_index() != 0:
    return
  with open(path) as f:
    keep = [l for l in f if l.strip() and json.loads(l).get("step", 0) <= last_step]
  with open(path, "w") as f:
    f.writelines(keep)


def _warn_changed_config(workdir: str, cfg: ImageConfig) -> None:
  """Warns when a resumed run's config differs from the saved one (bookkeeping aside)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return
  with open(path) as f:
    old = json.load(f)
  new = json.loads(json.dumps(dataclasses.asdict(cfg)))
  changed = sorted(k for k in new if k not in _NOT_IN_STEP and old.get(k) != new[k])
  if changed:
    tqdm.write(f"warning: resuming {workdir} with changed config fields {changed}")


def _scalars(metrics: dict) -> dict[str, float]:
  return {k: float(v) for k, v in metrics.items() if k != "grads"}


def train_images(config: ImageConfig | str | os.PathLike, workdir: str | os.PathLike, *,
                 overrides: Any = None, dataset: image_data.Dataset | None = None,
                 objective: Any = None, stop_at: int | None = None) -> dict[str, float]:
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
    stop_at: stop after this many iterations as if the process were killed (no final
      checkpoint, grid or metrics.json): simulates preemption in tests.

  Returns:
    Final metrics: the last iteration's ``loss``, ``grad_norm``, ``drift_norm``, ...,
    ``loss_avg`` (mean over the last ``log_every`` iterations), ``step``, ``wall_time_s``,
    ``steps_per_sec`` (this session).

  Raises:
    ValueError: invalid config.
    FloatingPointError: a non-finite loss / gradient norm / kernel scale; the run stops,
      the last good checkpoint stays.
  """
  cfg = _resolve(config, overrides)
  run = build_image_run(cfg, dataset=dataset, objective=objective)
  workdir = os.path.abspath(os.fspath(workdir))
  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  manager = _manager(os.path.join(workdir, CHECKPOINT_DIR), cfg.max_to_keep)
  state, bank = run.init()
  restored = _restore(manager, state, bank)
  if restored is not None:
    state, bank = restored
    _warn_changed_config(workdir, cfg)
  start = int(state.step)
  _write_json(os.path.join(workdir, "config.json"), dataclasses.asdict(cfg))
  log_path = os.path.join(workdir, "metrics.jsonl")
  _trim_log(log_path, start)

  warm = cfg.norm_warmup if cfg.kernel_width_norm else 0
  total = warm + cfg.num_steps
  end = total if stop_at is None else min(stop_at, total)
  runner = run.runner()
  dstate, dbank, ddata = runner.place(state, bank, run.data)
  pbar = tqdm(total=total, initial=start, disable=not cfg.progress, unit="it",
              dynamic_ncols=True, desc=f"{cfg.model}/{cfg.objective}")
  t0, recent, last = time.perf_counter(), [], {}
  t_log, it_log = t0, start
  try:
    with open(log_path, "a") as log:
      for it in range(start, end):
        train = it >= warm
        new_state, new_bank, metrics = (runner.train if train else runner.stats)(
            dstate, dbank, ddata)
        values = _scalars(metrics)
        bad = [k for k in ("loss", "grad_norm", "kernel_scale")
               if k in values and not math.isfinite(values[k])]
        if bad:
          manager.wait_until_finished()
          good = manager.latest_step()
          raise FloatingPointError(
              f"non-finite {', '.join(f'{k}={values[k]}' for k in bad)} at iteration {it} "
              f"(optimizer step {it - warm}); training stopped, the update was discarded. "
              f"Last good checkpoint: {'none' if good is None else f'iteration {good}'} in "
              f"{manager.directory}")
        dstate, dbank, done = new_state, new_bank, it + 1
        if train:
          last = values
          recent = (recent + [values["loss"]])[-cfg.log_every:]
        pbar.update(1)
        if done % 10 == 0 or done == end:
          rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
          pbar.set_postfix(loss=f"{values.get('loss', math.nan):.4g}", it_s=f"{rate:.2f}",
                           phase="train" if train else "warmup")
        if done % cfg.log_every == 0 or done == total:
          now = time.perf_counter()
          record = {"step": done, "opt_step": max(done - warm, 0),
                    "phase": "train" if train else "warmup", **values,
                    "steps_per_sec": (done - it_log) / max(now - t_log, 1e-9),
                    "elapsed_s": now - t0}
          if jax.process_index() == 0:
            log.write(json.dumps(record) + "\n")
            log.flush()
          t_log, it_log = now, done
        if train and cfg.sample_every and done % cfg.sample_every == 0 and done != total:
          _grid(run, runner.fetch(dstate).ema_params,
                os.path.join(workdir, "samples", f"step_{done:07d}.png"))
        if done % cfg.checkpoint_every == 0 or done == total:
          _save(manager, done, runner.fetch(dstate), dbank)
  finally:
    pbar.close()
    manager.wait_until_finished()
    manager.close()

  elapsed = time.perf_counter() - t0
  final = dict(last, step=int(end), wall_time_s=elapsed,
               steps_per_sec=(end - start) / max(elapsed, 1e-9),
               loss_avg=float(np.mean(recent)) if recent else math.nan)
  if end == total:
    state = runner.fetch(dstate)
    _grid(run, state.ema_params, os.path.join(workdir, "samples.png"))
    _write_json(os.path.join(workdir, "metrics.json"), final)
  return final


def load_image_run(path: str | os.PathLike) -> tuple[ImageRun, ImageTrainState, int]:
  """Config (from the run's ``config.json``) and restored state of a run or checkpoint.

  Args:
    path: a run directory, its ``checkpoints`` directory or one ``checkpoints/<it>``.

  Returns:
    ``(run, state, iteration)`` (``run`` has no data loaded).
  """
  ckpt_dir, step, run_dir = resolve_checkpoint(path)
  cfg_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(cfg_path):
    raise ValueError(f"`workdir_or_checkpoint` {run_dir!r} has no config.json")
  run = build_image_run(load_image_config(cfg_path), load_data=False)
  state, bank = run.init()
  manager = _manager(ckpt_dir, run.cfg.max_to_keep)
  try:
    restored = _restore(manager, state, bank, step)
  finally:
    manager.close()
  if restored is None:
    raise ValueError(f"`workdir_or_checkpoint` {ckpt_dir!r} holds no checkpoint")
  return run, restored[0], int(restored[0].step)


def sample_images(workdir_or_checkpoint: str | os.PathLike, *, num: int,
                  class_id: int | None = None, out_path: str | os.PathLike,
                  cfg_scale: float | None = None, seed: int = 0,
                  use_ema: bool = True) -> str:
  """Generates ``num`` images of a trained run; writes a PNG grid and an ``.npz``.

  Args:
    workdir_or_checkpoint: run directory (latest checkpoint) or ``checkpoints/<it>``.
    num: number of images (>= 1).
    class_id: class to generate (None: classes ``0, 1, ...`` in turn).
    out_path: ``.png`` path; the samples (``[num, H, W, C]``), labels and iteration are
      also saved to the same path with suffix ``.npz``.
    cfg_scale: CFG scale (default: the run's ``sample_cfg_scale``).
    seed: sampling seed.
    use_ema: sample the EMA parameters (default) or the raw ones.

  Returns:
    The PNG path.
  """
  if not isinstance(num, int) or num < 1:
    raise ValueError(f"`num` must be a positive int, got {num!r}")
  out_path = os.fspath(out_path)
  if not out_path.lower().endswith(".png"):
    raise ValueError(f"`out_path` must end in .png, got {out_path!r}")
  run, state, it = load_image_run(workdir_or_checkpoint)
  classes = run.model.num_classes
  if class_id is not None and not 0 <= int(class_id) < classes:
    raise ValueError(f"`class_id` must lie in [0, {classes}), got {class_id}")
  labels = (jnp.full((num,), int(class_id), jnp.int32) if class_id is not None
            else jnp.arange(num, dtype=jnp.int32) % min(classes, 10))
  scale = run.cfg.sample_cfg_scale if cfg_scale is None else float(cfg_scale)
  params = state.ema_params if use_ema else state.params
  samples = np.asarray(_generate_jit(run.model, params, jax.random.PRNGKey(seed), labels, scale))
  _save_grid(samples, out_path, nrow=math.ceil(math.sqrt(num)) if class_id is not None
             else min(classes, 10))
  np.savez(os.path.splitext(out_path)[0] + ".npz", samples=samples, labels=np.asarray(labels),
           step=it)
  return out_path
