"""The toy training loop: resume, step, log, checkpoint, guard against NaN, evaluate.

A run directory ``workdir`` ends up holding::

    config.json      the resolved ToyConfig
    checkpoints/     orbax checkpoints (params, opt_state, step, rng); resumed from latest
    metrics.jsonl    one JSON record every ``log_every`` steps
    samples.png      generated vs data scatter at the end
    metrics.json     final sliced Wasserstein / MMD (see training.evaluation)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from drifting_jax.data import toy
from drifting_jax.metrics.sliced_wasserstein import sliced_wasserstein
from drifting_jax.objectives import Objective, objective_from_settings
from drifting_jax.training import checkpoint as ckpt, driver, rundir
from drifting_jax.training.config import (
    ToyConfig,
    config_from_dict,
    config_to_dict,
    validate_config,
)
from drifting_jax.training.evaluation import evaluate, generate, sample_data, save_scatter
from drifting_jax.training.state import (
    TrainState,
    init_state,
    make_model,
    make_optimizer,
    make_train_step,
    split_run_key,
)

__all__ = ["Run", "TrainResult", "build", "build_objective", "load_run", "train"]


@dataclasses.dataclass
class Run:
  """The pieces of a run built from a config (no training state)."""

  cfg: ToyConfig
  model: Any
  optimizer: Any
  objective: Objective
  sample_batch: Callable[[jax.Array], jax.Array]  # key -> [M, 2] data batch


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns: the final state and the final metrics."""

  state: TrainState
  metrics: dict[str, float]
  workdir: str


def build_objective(cfg: ToyConfig) -> Objective:
  """The objective named by ``cfg`` (with its optional bandwidth schedule)."""
  return objective_from_settings(cfg.objective, bandwidth=cfg.bandwidth, schedule=cfg.schedule,
                                 schedule_kwargs=cfg.schedule_kwargs,
                                 stop_gradient=cfg.stop_gradient, options=cfg.objective_kwargs)


def build(cfg: ToyConfig, *, objective: Objective | None = None) -> Run:
  """Validates ``cfg`` and builds model, optimizer, objective and data sampler.

  Raises:
    ValueError: naming the offending config field.
  """
  validate_config(cfg)
  sampler = toy.get(cfg.dataset)
  m = cfg.data_batch_size or cfg.batch_size
  try:
    sampler(jax.random.PRNGKey(0), 2, **cfg.dataset_kwargs)
  except TypeError as e:
    raise ValueError(f"bad `dataset_kwargs` for {cfg.dataset!r}: {e}") from None
  return Run(
      cfg=cfg,
      model=make_model(cfg),
      optimizer=make_optimizer(cfg),
      objective=build_objective(cfg) if objective is None else objective,
      sample_batch=jax.jit(lambda key: sampler(key, m, **cfg.dataset_kwargs)),
  )


# Config fields that do not change the compiled step (runs differing only in these reuse it;
# num_steps only with a constant learning rate).
_NOT_IN_STEP = ("dataset", "dataset_kwargs", "data_batch_size", "num_steps", "seed",
                "log_every", "checkpoint_every", "max_to_keep", "eval_every",
                "eval_num_samples", "eval_num_projections", "eval_mmd_bandwidth", "eval_seed",
                "progress")


@functools.lru_cache(maxsize=8)
def _cached_train_step(key: str):
  """The jitted step for a config (keyed by its step-relevant fields, as JSON)."""
  cfg = config_from_dict({**config_to_dict(ToyConfig()), **json.loads(key)})
  run = build(cfg)
  return make_train_step(run.model, run.optimizer, run.objective,
                         batch_size=cfg.batch_size, noise_dim=cfg.noise_dim)


# Settings a resumed run may change (recorded as amendments); any other change refuses.
AMENDABLE = ("num_steps", "log_every", "checkpoint_every", "max_to_keep", "eval_every",
             "eval_num_samples", "eval_num_projections", "eval_mmd_bandwidth", "eval_seed",
             "progress")
RUN_FILES = (ckpt.CHECKPOINT_DIR, rundir.CONFIG_FILE, rundir.AMENDMENTS_FILE, "metrics.jsonl",
             "metrics.json", "samples.png")


def train(
    cfg: ToyConfig,
    workdir: str | os.PathLike,
    *,
    objective: Objective | None = None,
    force_new: bool = False,
) -> TrainResult:
  """Trains (or resumes) a toy generator in ``workdir`` up to ``cfg.num_steps``.

  Args:
    cfg: run configuration.
    workdir: run directory (created; an existing checkpoint is resumed).
    objective: optional objective override ``fn(x, pos, step) -> (loss, metrics)``
      (default: the one named by ``cfg``).
    force_new: start over even if ``workdir`` holds a run (its files are moved into
      ``workdir/replaced-<time>/``).

  Returns:
    The final state and metrics (also written to ``workdir``).

  Raises:
    ValueError: invalid config; ``rundir.ConfigMismatch`` when ``workdir`` holds a run
      with another configuration (see :mod:`drifting_jax.training.rundir`).
    rundir.RunDirLocked: another process trains in ``workdir``.
    FloatingPointError: a non-finite loss or gradient; training stops, the bad update is
      discarded and the checkpoints written so far are kept.
  """
  run = build(cfg, objective=objective)
  workdir = os.path.abspath(os.fspath(workdir))
  os.makedirs(workdir, exist_ok=True)
  with rundir.RunLock(workdir):
    if force_new:
      rundir.move_aside(workdir, RUN_FILES)
    return _train_locked(cfg, run, workdir, objective)


def _train_locked(cfg: ToyConfig, run: Run, workdir: str, objective) -> TrainResult:
  if objective is None:
    # num_steps sets the decay horizon of a learning-rate schedule: then it is in the key
    skip = _NOT_IN_STEP if cfg.lr_schedule == "constant" else tuple(
        k for k in _NOT_IN_STEP if k != "num_steps")
    step_fn = _cached_train_step(json.dumps(
        {k: v for k, v in config_to_dict(cfg).items() if k not in skip}, sort_keys=True))
  else:
    step_fn = make_train_step(run.model, run.optimizer, run.objective,
                              batch_size=cfg.batch_size, noise_dim=cfg.noise_dim)
  manager = ckpt.make_manager(os.path.join(workdir, ckpt.CHECKPOINT_DIR),
                              max_to_keep=cfg.max_to_keep)
  try:
    state = init_state(cfg, run.model, run.optimizer)
    latest = manager.latest_step()
    # the recorded config must match before the checkpoint is read with this one's shapes
    rundir.record_config(workdir, config_to_dict(cfg), step=latest or 0, amendable=AMENDABLE)
    if latest is not None:
      state = ckpt.restore(manager, state, quarantine=True)
    start = int(state.step)
    log = rundir.MetricsLog(os.path.join(workdir, "metrics.jsonl"), resume_step=start)
  except BaseException:
    manager.close()
    raise

  noise_rng, data_rng = split_run_key(state.rng)
  eval_key = jax.random.PRNGKey(cfg.eval_seed)

  def step(it: int) -> dict:
    nonlocal state
    batch = run.sample_batch(jax.random.fold_in(data_rng, it))
    state, metrics = step_fn(state, batch, noise_rng)
    return metrics

  pbar = tqdm(total=cfg.num_steps, initial=start, disable=not cfg.progress, unit="step",
              dynamic_ncols=True)
  with log:  # run_loop closes the progress bar and the manager
    driver.run_loop(
        start=start, end=cfg.num_steps, total=cfg.num_steps, step=step,
        guard=rundir.StepGuard(("loss", "grad_norm")), manager=manager, log=log,
        log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
        save=lambda done: ckpt.save(manager, state),
        events=[driver.Event(cfg.eval_every, lambda done, values: {
            "sliced_wasserstein": _quick_sw(cfg, state.params, eval_key)}, in_record=True)],
        progress=pbar,
        postfix=lambda done, values, rate: {
            "loss": f"{values['loss']:.3e}",
            "drift": f"{values.get('drift_norm', math.nan):.2e}"})

  return TrainResult(state=state, metrics=finalize(cfg, state.params, workdir),
                     workdir=workdir)


def _quick_sw(cfg: ToyConfig, params: Any, key: jax.Array, num: int = 2048) -> float:
  """In-training sliced Wasserstein on ``num`` samples (fixed noise, data, projections)."""
  k_gen, k_data, k_proj = jax.random.split(key, 3)
  gen = generate(cfg, params, k_gen, num)
  data = sample_data(cfg, k_data, num)
  return float(sliced_wasserstein(gen, data, key=k_proj,
                                  num_projections=cfg.eval_num_projections))


def finalize(cfg: ToyConfig, params: Any, workdir: str) -> dict[str, float]:
  """Writes ``samples.png`` and ``metrics.json`` for ``params``; returns the metrics."""
  key = jax.random.PRNGKey(cfg.eval_seed)
  k_gen, k_data = jax.random.split(key)
  gen = np.asarray(generate(cfg, params, k_gen, cfg.eval_num_samples))
  metrics = evaluate(cfg, params, samples=gen)
  data = np.asarray(sample_data(cfg, k_data, cfg.eval_num_samples))
  title = (f"{cfg.objective} on {cfg.dataset} (bandwidth {cfg.bandwidth:g}) - "
           f"SW {metrics['sliced_wasserstein']:.4f}")
  save_scatter(os.path.join(workdir, "samples.png"), gen, data, title=title)
  rundir.write_json(os.path.join(workdir, "metrics.json"), metrics)
  return metrics


def load_run(path: str | os.PathLike) -> tuple[ToyConfig, TrainState]:
  """Loads a run's config and checkpointed state.

  Args:
    path: a run directory, its ``checkpoints`` directory, or one ``checkpoints/<step>``.

  Returns:
    ``(cfg, state)`` restored at the given (default: latest) step.

  Raises:
    ValueError: no ``config.json`` or no checkpoint found.
  """
  ckpt_dir, step, run_dir = ckpt.resolve_checkpoint(path)
  record = rundir.load_config_record(run_dir)
  if record is None:
    raise ValueError(f"`workdir` {run_dir!r} has no config.json")
  cfg = config_from_dict(record)
  run = build(cfg)
  manager = ckpt.make_manager(ckpt_dir, max_to_keep=cfg.max_to_keep)
  try:
    state = ckpt.restore(manager, init_state(cfg, run.model, run.optimizer), step)
  finally:
    manager.close()
  if state is None:
    raise ValueError(f"`checkpoint` directory {ckpt_dir!r} holds no checkpoint")
  return cfg, state
