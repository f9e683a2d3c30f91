"""The toy task: an MLP generator drifting onto a 2-D distribution (Secretly-SM App. F).

Each step generates ``x = G(z) [batch_size, 2]`` with ``z ~ N(0, I)`` drawn from
``fold_in(noise_rng, step)``, draws ``data_batch_size`` data samples from
``fold_in(data_rng, step)``, evaluates the objective and applies one Adam update.

A run directory ends up holding, besides the trainer's files (config, checkpoints,
``metrics.jsonl``)::

    samples.png      generated vs data scatter at the end
    metrics.json     final sliced Wasserstein / MMD

The final metrics follow Secretly-SM App. F.3: the sliced 2-Wasserstein distance between
5,000 generated and 5,000 data samples with 200 random projections, plus the biased squared
Gaussian MMD. ``sliced_wasserstein_floor`` is the same distance between two independent data
sets of that size (the finite-sample floor a perfect generator would reach).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from drifting_jax import _validation
from drifting_jax.data import toy
from drifting_jax.metrics.mmd import mmd
from drifting_jax.metrics.sliced_wasserstein import sliced_wasserstein
from drifting_jax.models.mlp import MLPGenerator, sample_noise
from drifting_jax.models.presets import param_table
from drifting_jax.objectives import Objective
from drifting_jax.training import driver, rundir
from drifting_jax.training.config import (COUNT, POSITIVE, POSITIVE_INT, DriftRunConfig, Kind,
                                          Num, RunConfig, register)
from drifting_jax.training.state import (TrainState, apply_gradients, build_objective,
                                         make_optimizer, split_run_key)
from drifting_jax.training.tasks.base import Stepper, Task

__all__ = ["ToyConfig", "ToyTask", "build_objective", "evaluate", "generate", "make_model",
           "make_train_step", "sample_data", "save_scatter"]


@register
@dataclasses.dataclass
class ToyConfig(DriftRunConfig):
  """A toy drifting run (defaults: the CLI's default run); the shared fields are those of
  :class:`~drifting_jax.training.config.DriftRunConfig`.

  Attributes:
    dataset: toy distribution name (:func:`drifting_jax.data.toy.get`).
    dataset_kwargs: keyword arguments of the sampler (e.g. ``{"noise": 0.05}``).
    noise_dim: generator input dimension.
    hidden: MLP hidden width.
    depth: number of hidden layers.
    activation: MLP nonlinearity (``silu``, ``relu``, ``gelu``, ``tanh``).
    batch_size: generated samples per step ``N`` (>= 2: self-interaction is masked).
    data_batch_size: data samples per step ``M`` (``None`` = ``batch_size``).
    eval_every: interval of in-training sliced-Wasserstein logging (0 = off).
    eval_num_samples: samples per side for the final metrics.
    eval_num_projections: random projections of the sliced Wasserstein distance.
    eval_mmd_bandwidth: Gaussian bandwidth of the MMD metric.
    eval_seed: seed of the evaluation data / noise / projections.
  """

  TASK: ClassVar[str] = "toy"
  CHECKS: ClassVar[dict[str, Any]] = {
      "dataset": Kind(str), "dataset_kwargs": Kind(dict), "noise_dim": POSITIVE_INT,
      "hidden": POSITIVE_INT, "depth": POSITIVE_INT, "activation": Kind(str),
      "batch_size": Num(low=2, strict=False, integer=True),
      "data_batch_size": Num(low=2, strict=False, integer=True, none=True),
      "eval_every": COUNT, "eval_num_samples": Num(low=2, strict=False, integer=True),
      "eval_num_projections": POSITIVE_INT, "eval_mmd_bandwidth": POSITIVE,
      "eval_seed": COUNT,
  }
  AMENDABLE: ClassVar[tuple[str, ...]] = RunConfig.AMENDABLE + (
      "eval_every", "eval_num_samples", "eval_num_projections", "eval_mmd_bandwidth",
      "eval_seed")
  NOT_IN_STEP: ClassVar[tuple[str, ...]] = RunConfig.NOT_IN_STEP + (
      "dataset", "dataset_kwargs", "data_batch_size", "eval_every", "eval_num_samples",
      "eval_num_projections", "eval_mmd_bandwidth", "eval_seed")

  task: str = "toy"
  num_steps: int = 3400
  checkpoint_every: int = 500
  dataset: str = "checkerboard"
  dataset_kwargs: dict = dataclasses.field(default_factory=dict)
  noise_dim: int = 32
  hidden: int = 256
  depth: int = 3
  activation: str = "silu"
  batch_size: int = 2048
  data_batch_size: int | None = None
  eval_every: int = 0
  eval_num_samples: int = 5000
  eval_num_projections: int = 200
  eval_mmd_bandwidth: float = 0.1
  eval_seed: int = 1234

  @classmethod
  def upgrade(cls, record: dict) -> dict:
    record = dict(record)
    if "lr_schedule" not in record:  # runs written before v0.2 trained with a constant rate
      record["lr_schedule"] = "constant"
    return record


# ------------------------------------------------------------------------------ pieces
def make_model(cfg: ToyConfig, out_dim: int = 2) -> MLPGenerator:
  """The MLP generator described by ``cfg``."""
  return MLPGenerator(out_dim=out_dim, hidden=cfg.hidden, depth=cfg.depth,
                      activation=cfg.activation)


def make_train_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    objective: Objective,
    *,
    batch_size: int,
    noise_dim: int,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
  """Builds the jitted step ``(state, batch [M, D], rng) -> (state, metrics)``.

  Generates ``x = G(z) [batch_size, D]`` with ``z ~ N(0, I)`` drawn from
  ``fold_in(rng, state.step)``, evaluates ``objective(x, batch, state.step)``, and applies
  one optimizer update. ``metrics`` holds the objective's metrics (``loss``,
  ``drift_norm``, ``bandwidth``, ...) plus ``grad_norm``.
  """

  def train_step(state: TrainState, batch: jax.Array, rng: jax.Array):
    z = sample_noise(jax.random.fold_in(rng, state.step), batch_size, noise_dim)

    def loss_fn(params):
      x = model.apply(params, z)
      return objective(x, batch, state.step)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return apply_gradients(state, grads, optimizer), metrics

  return jax.jit(train_step)


def generate(cfg: ToyConfig, params: Any, key: jax.Array, num: int) -> jax.Array:
  """``[num, 2]`` generator samples ``G(z)``, ``z ~ N(0, I)`` drawn from ``key``."""
  if num < 1:
    raise ValueError(f"`num` must be >= 1, got {num}")
  z = sample_noise(key, num, cfg.noise_dim)
  return _apply(make_model(cfg), params, z)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, z):
  # Flax modules are hashable dataclasses: one compiled forward per architecture.
  return model.apply(params, z)


def sample_data(cfg: ToyConfig, key: jax.Array, num: int) -> jax.Array:
  """``[num, 2]`` samples of the run's target distribution."""
  return toy.get(cfg.dataset)(key, num, **cfg.dataset_kwargs)


def evaluate(
    cfg: ToyConfig,
    params: Any,
    *,
    num_samples: int | None = None,
    num_projections: int | None = None,
    seed: int | None = None,
    samples: jax.Array | None = None,
) -> dict[str, float]:
  """Sample-quality metrics of a generator against its target distribution.

  Args:
    cfg: the run's config (model, dataset and default evaluation settings).
    params: generator parameters.
    num_samples: samples per side (default ``cfg.eval_num_samples``).
    num_projections: sliced-Wasserstein projections (default ``cfg.eval_num_projections``).
    seed: evaluation seed (default ``cfg.eval_seed``); fixes data, noise and projections.
    samples: optional precomputed ``[num_samples, 2]`` generator samples.

  Returns:
    ``{"sliced_wasserstein", "sliced_wasserstein_floor", "mmd", "num_samples",
    "num_projections", "mmd_bandwidth"}``.
  """
  n = cfg.eval_num_samples if num_samples is None else num_samples
  p = cfg.eval_num_projections if num_projections is None else num_projections
  for name, v, low in (("num_samples", n, 2), ("num_projections", p, 1)):
    _validation.check_int(name, v, minimum=low)
  n, p = int(n), int(p)
  key = jax.random.PRNGKey(cfg.eval_seed if seed is None else seed)
  k_gen, k_data, k_data2, k_proj = jax.random.split(key, 4)
  gen = generate(cfg, params, k_gen, n) if samples is None else jnp.asarray(samples)
  data = sample_data(cfg, k_data, n)
  data2 = sample_data(cfg, k_data2, n)
  sw = sliced_wasserstein(gen, data, key=k_proj, num_projections=p)
  floor = sliced_wasserstein(data2, data, key=k_proj, num_projections=p)
  return {
      "sliced_wasserstein": float(sw),
      "sliced_wasserstein_floor": float(floor),
      "mmd": float(mmd(gen, data, bandwidth=cfg.eval_mmd_bandwidth)),
      "num_samples": n,
      "num_projections": p,
      "mmd_bandwidth": cfg.eval_mmd_bandwidth,
  }


def save_scatter(
    path: str | os.PathLike, generated: np.ndarray, data: np.ndarray, *, title: str = ""
) -> None:
  """Writes a two-panel scatter PNG: data (left) and generated samples (right)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  generated = np.asarray(generated)
  data = np.asarray(data)
  both = np.concatenate([generated, data])
  lo = np.percentile(both, 0.5, axis=0)
  hi = np.percentile(both, 99.5, axis=0)
  pad = 0.1 * (hi - lo)
  fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
  for ax, pts, name, color in ((axes[0], data, "data", "0.25"),
                               (axes[1], generated, "generated", "tab:orange")):
    ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, c=color, linewidths=0)
    ax.set_title(f"{name} (n={len(pts)})")
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_aspect("equal")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(os.fspath(path), dpi=120)
  plt.close(fig)


# -------------------------------------------------------------------------------- task
class _ToyStepper(Stepper):
  def __init__(self, task: "ToyTask", state: TrainState, step_fn):
    self._task, self._state, self._step_fn = task, state, step_fn
    self._noise_rng, self._data_rng = split_run_key(state.rng)

  def step(self, it: int) -> dict[str, jax.Array]:
    batch = self._task.sample_batch(jax.random.fold_in(self._data_rng, it))
    self._state, metrics = self._step_fn(self._state, batch, self._noise_rng)
    return metrics

  def state(self) -> TrainState:
    return self._state


class ToyTask(Task):
  """The toy task (see the module docstring). ``dataset`` is not supported (the data is the
  named toy distribution)."""

  name = "toy"
  config_type = ToyConfig
  run_files = ("samples.png",)

  def __init__(self, cfg: ToyConfig, *, dataset: Any = None, objective: Any = None,
               load_data: bool = True):
    del load_data
    super().__init__(cfg, objective=objective)
    if dataset is not None:
      raise ValueError("`dataset` is not supported by the toy task (set `config.dataset`)")
    sampler = toy.get(cfg.dataset)
    try:
      sampler(jax.random.PRNGKey(0), 2, **cfg.dataset_kwargs)
    except TypeError as e:
      raise ValueError(f"bad `dataset_kwargs` for {cfg.dataset!r}: {e}") from None
    m = cfg.data_batch_size or cfg.batch_size
    self.model = make_model(cfg)
    self.optimizer = make_optimizer(cfg)
    self.objective = build_objective(cfg) if objective is None else objective
    self.sample_batch = jax.jit(lambda key: sampler(key, m, **cfg.dataset_kwargs))

  @property
  def total_steps(self) -> int:
    return self.cfg.num_steps

  def init_state(self) -> TrainState:
    init_key, run_key = jax.random.split(jax.random.PRNGKey(self.cfg.seed))
    params = self.model.init(init_key, jnp.zeros((1, self.cfg.noise_dim), jnp.float32))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.optimizer.init(params), rng=run_key)

  def train_step(self):
    """The jitted step ``(state, batch, noise_rng) -> (state, metrics)`` (cached)."""
    return self.cached("train_step", lambda: make_train_step(
        self.model, self.optimizer, self.objective, batch_size=self.cfg.batch_size,
        noise_dim=self.cfg.noise_dim))

  def start(self, state: TrainState) -> Stepper:
    return _ToyStepper(self, state, self.train_step())

  def events(self, workdir, stepper):
    key = jax.random.PRNGKey(self.cfg.eval_seed)
    return [driver.Event(self.cfg.eval_every, lambda done, values: {
        "sliced_wasserstein": self._quick_sw(stepper.state().params, key)}, in_record=True)]

  def postfix(self, done, values, rate):
    return {"loss": f"{values['loss']:.3e}",
            "drift": f"{values.get('drift_norm', math.nan):.2e}"}

  def _quick_sw(self, params: Any, key: jax.Array, num: int = 2048) -> float:
    """In-training sliced Wasserstein on ``num`` samples (fixed noise, data, projections)."""
    k_gen, k_data, k_proj = jax.random.split(key, 3)
    gen = generate(self.cfg, params, k_gen, num)
    data = sample_data(self.cfg, k_data, num)
    return float(sliced_wasserstein(gen, data, key=k_proj,
                                    num_projections=self.cfg.eval_num_projections))

  def finalize(self, state, workdir, loop):
    cfg = self.cfg
    key = jax.random.PRNGKey(cfg.eval_seed)
    k_gen, k_data = jax.random.split(key)
    gen = np.asarray(generate(cfg, state.params, k_gen, cfg.eval_num_samples))
    metrics = evaluate(cfg, state.params, samples=gen)
    if workdir is not None:
      data = np.asarray(sample_data(cfg, k_data, cfg.eval_num_samples))
      title = (f"{cfg.objective} on {cfg.dataset} (bandwidth {cfg.bandwidth:g}) - "
               f"SW {metrics['sliced_wasserstein']:.4f}")
      save_scatter(os.path.join(workdir, "samples.png"), gen, data, title=title)
      rundir.write_json(os.path.join(workdir, "metrics.json"), metrics)
    return metrics

  def sample(self, state, *, num, out, seed=0, **options):
    _no_options(options)
    ext = os.path.splitext(os.fspath(out))[1].lower()
    k_gen, k_data = jax.random.split(jax.random.PRNGKey(seed))
    samples = np.asarray(generate(self.cfg, state.params, k_gen, num))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if ext == ".npz":
      np.savez(out, samples=samples, step=int(state.step))
    else:
      data = np.asarray(sample_data(self.cfg, k_data, num))
      save_scatter(out, samples, data,
                   title=f"{self.cfg.objective} on {self.cfg.dataset}, step {int(state.step)}")
    return os.fspath(out)

  def evaluate(self, state, *, run_dir, out=None, num_samples=None, num_projections=None,
               seed=None, progress=False, **options):
    del progress  # a few seconds: no progress bar
    _no_options(options)
    metrics = evaluate(self.cfg, state.params, num_samples=num_samples,
                       num_projections=num_projections, seed=seed)
    metrics["step"] = int(state.step)
    rundir.write_json(self.default_eval_path(run_dir, out), metrics)
    return metrics

  def describe(self) -> str:
    cfg = self.cfg
    shapes = jax.eval_shape(self.model.init, jax.random.PRNGKey(0),
                            sample_noise(jax.random.PRNGKey(0), 2, cfg.noise_dim))
    return param_table(f"toy MLP generator: noise {cfg.noise_dim} -> 2, {cfg.depth} x "
                       f"{cfg.hidden} ({cfg.activation})", shapes["params"])


def _no_options(options: dict) -> None:
  given = sorted(k for k, v in options.items() if v is not None)
  if given:
    raise ValueError(f"option(s) {given} apply to image runs only, not to toy runs")
