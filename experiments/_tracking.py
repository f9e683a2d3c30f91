"""Toy runs tracked with Secretly-SM App. F.3's metrics, on the pipeline's per-step hook.

Shared by ``stop_gradient.py`` (Secretly-SM Figs. 3-4) and ``sinkhorn_vs_laplace.py``
(App. F.4): a toy config trains in memory through :func:`drifting_jax.training.train`; a
:class:`~drifting_jax.training.Hook` evaluates the sliced Wasserstein distance (fixed noise,
data and projections) and F.3's drift norm ``V̄`` (Laplacian kernel, τ = 0.05, target
detached) every ``eval_every`` steps, records the training loss, optional gradients and
snapshots, and times the steps. A non-finite step stops training there (the guard checks
every step), and the state of the last finite step is kept: a result, not a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from drifting_jax.metrics.sliced_wasserstein import sliced_wasserstein
from drifting_jax.models.mlp import sample_noise
from drifting_jax.objectives import make_objective
from drifting_jax.training import Hook, ToyConfig, make_task, sample_data, split_run_key, train

__all__ = ["F3_OBJECTIVE", "F3_TAU", "sw_floor", "train_tracked"]

F3_OBJECTIVE = "naive-laplace"  # the drift norm V̄ of F.3: Laplacian kernel, tau = 0.05
F3_TAU = 0.05

_EVAL_CACHE: dict[tuple, Callable] = {}


def _eval_fn(model, drift_num: int, eval_projections: int) -> Callable:
  """Jitted ``(params, z, data, key) -> (SW, V̄)``."""
  key = (model, drift_num, eval_projections)
  if key not in _EVAL_CACHE:
    drift_obj = make_objective(F3_OBJECTIVE, bandwidth=F3_TAU)  # V_sg, the target detached

    @jax.jit
    def fn(params, z, data, k_proj):
      gen = model.apply(params, z)
      sw = sliced_wasserstein(gen, data, key=k_proj, num_projections=eval_projections)
      vbar = drift_obj(jax.lax.stop_gradient(gen[:drift_num]), data[:drift_num], 0)[1]
      return sw, vbar["drift_norm"]

    _EVAL_CACHE[key] = fn
  return _EVAL_CACHE[key]


def sw_floor(dataset: str, num: int, projections: int, seed: int = 4321) -> float:
  """SW between two independent ``num``-sample data sets (estimator noise floor)."""
  cfg = ToyConfig(dataset=dataset)
  k1, k2, kp = jax.random.split(jax.random.PRNGKey(seed), 3)
  return float(sliced_wasserstein(sample_data(cfg, k1, num), sample_data(cfg, k2, num),
                                  key=kp, num_projections=projections))


def train_tracked(
    cfg: ToyConfig,
    *,
    eval_every: int,
    eval_num: int,
    eval_projections: int,
    drift_num: int,
    grad_every: int = 0,
    objective=None,
    snapshot_steps: tuple[int, ...] = (),
    snapshot_fn: Callable[[Any, jax.Array], dict] | None = None,
    final_eval_num: int | None = None,
    final_eval_projections: int | None = None,
) -> dict[str, Any]:
  """Trains ``cfg`` in memory and logs SW and the F.3 drift norm every ``eval_every`` steps.

  Args:
    cfg: run config (the toy task's step).
    eval_every: logging interval (step 0 and the last step are always logged).
    eval_num: generated / data samples per side for SW.
    eval_projections: SW projections.
    drift_num: generated and data points of the drift norm ``V̄`` (Laplacian, tau 0.05).
    grad_every: if > 0, also collect flattened training gradients every that many steps
      (the gradient of step ``t``'s loss at the state step ``t`` updates).
    objective: optional objective override (e.g. a custom Sinkhorn objective).
    snapshot_steps: steps at which ``snapshot_fn(params, data_key)`` is recorded.
    snapshot_fn: see ``snapshot_steps``.
    final_eval_num: samples per side of the final SW (default ``eval_num``); F.3: 5,000.
    final_eval_projections: projections of the final SW (default ``eval_projections``).

  Returns:
    ``history`` (lists per logged step: step, sw, drift_norm, train loss / drift norm),
    ``params``, ``params0``, ``grads`` (``[K, P]`` array or None), ``step_time_s`` (mean
    wall time between steps after the first, evaluations excluded), ``stopped`` (None or a
    message when a non-finite loss stopped training), ``snapshots``, ``final``, ``model``,
    ``run`` (the task).
  """
  task = make_task(cfg, objective=objective)
  state0 = task.init_state()
  model = task.model
  noise_rng, data_rng = split_run_key(state0.rng)

  k_gen, k_data, k_proj = jax.random.split(jax.random.PRNGKey(cfg.eval_seed), 3)
  z_eval = sample_noise(k_gen, eval_num, cfg.noise_dim)
  data_eval = sample_data(cfg, k_data, eval_num)
  eval_jit = _eval_fn(model, drift_num, eval_projections)

  grad_fn = None
  if grad_every:
    @jax.jit
    def grad_fn(params, batch, step):
      z = sample_noise(jax.random.fold_in(noise_rng, step), cfg.batch_size, cfg.noise_dim)
      g = jax.grad(lambda p: task.objective(model.apply(p, z), batch, step)[0])(params)
      return ravel_pytree(g)[0]

  hist = {k: [] for k in ("step", "sw", "drift_norm", "train_loss", "train_drift_norm")}
  grads, snapshots = [], {}
  last = {"state": state0, "loss": math.nan, "drift_norm": math.nan, "t": None,
          "time": 0.0, "timed": 0}

  def log(step, params):
    sw, vbar = eval_jit(params, z_eval, data_eval, k_proj)
    hist["step"].append(step)
    hist["sw"].append(float(sw))
    hist["drift_norm"].append(float(vbar))
    hist["train_loss"].append(last["loss"])
    hist["train_drift_norm"].append(last["drift_norm"])

  def before(it, state):  # the gradient of step `it`'s batch at the state it updates
    if grad_fn is not None and it % grad_every == 0:
      batch = task.sample_batch(jax.random.fold_in(data_rng, it))
      grads.append(np.asarray(grad_fn(state.params, batch, state.step)))

  def each_step(done, state, values):
    now = time.perf_counter()
    if last["t"] is not None and done > 1:
      last["time"] += now - last["t"]
      last["timed"] += 1
    last.update(state=state, loss=values["loss"], drift_norm=values["drift_norm"])
    if done % eval_every == 0 or done == cfg.num_steps:
      log(done, state.params)
    if snapshot_fn is not None and done in snapshot_steps:
      snapshots[done] = snapshot_fn(state.params, jax.random.fold_in(data_rng, 10**6 + done))
    if done < cfg.num_steps:
      before(done, state)
    last["t"] = time.perf_counter()

  log(0, state0.params)
  if snapshot_fn is not None and 0 in snapshot_steps:
    snapshots[0] = snapshot_fn(state0.params, jax.random.fold_in(data_rng, 10**6))
  before(0, state0)
  stopped = None
  try:  # the hook runs every step, so the guard checks every step
    train(cfg, None, objective=objective, hooks=[Hook(1, each_step)])
  except FloatingPointError:
    stopped = f"non-finite loss/grad at step {int(last['state'].step)}; training stopped"
  state = last["state"]
  if hist["step"][-1] != int(state.step):
    log(int(state.step), state.params)
  fn = final_eval_num or eval_num
  fp = final_eval_projections or eval_projections
  kf_gen, kf_data = jax.random.split(jax.random.fold_in(k_gen, 1))
  final_sw, final_vbar = _eval_fn(model, min(drift_num, fn), fp)(
      state.params, sample_noise(kf_gen, fn, cfg.noise_dim), sample_data(cfg, kf_data, fn),
      k_proj)
  final = {"sw": float(final_sw), "drift_norm": float(final_vbar), "num_samples": fn,
           "num_projections": fp}
  return {"history": hist, "final": final, "params": state.params, "params0": state0.params,
          "grads": np.stack(grads) if grads else None,
          "step_time_s": last["time"] / max(last["timed"], 1), "stopped": stopped,
          "snapshots": snapshots, "model": model, "run": task}
