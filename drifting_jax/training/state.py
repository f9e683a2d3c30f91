"""The optimization recipe every task shares: the one train state, the objective, the
optimizer and its learning-rate schedule, and the update.

A training step of any task is a pure function ``(state, batch, rng) -> (state, metrics)``
on a :class:`TrainState`. Randomness is a function of the run key and the step (the noise
of step ``t`` is drawn from ``fold_in(rng, t)``), so a run is a deterministic function of
its seed and resuming from a checkpoint reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax

from drifting_jax.objectives import Objective, objective_from_settings
from drifting_jax.training.config import DriftRunConfig, RunConfig

__all__ = ["TrainState", "apply_gradients", "build_objective", "make_lr_schedule",
           "make_optimizer", "split_run_key"]


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to resume (all leaves are arrays; checkpointed by orbax).

  Attributes:
    step: ``[]`` int32, completed iterations (for image runs the kernel-width warm-up
      iterations included; see the task).
    params: model variables (a pytree).
    opt_state: optax optimizer state (its count drives the learning-rate schedule).
    rng: ``[2]`` uint32 run key (noise and data streams derive from it).
    ema_params: exponential moving average of ``params``, or None (task without EMA).
    norm: ``{stream: KernelWidthState}`` per-class kernel-width scales (Franz §5.1), or None.
    bank: a :class:`~drifting_jax.data.memory_bank.MemoryBank`, or None.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  ema_params: Any = None
  norm: Any = None
  bank: Any = None


def build_objective(cfg: DriftRunConfig) -> Objective:
  """The objective ``fn(x [N, D], pos [M, D], step) -> (loss, metrics)`` named by ``cfg``
  (with its optional bandwidth schedule); image tasks apply it per class group."""
  return objective_from_settings(cfg.objective, bandwidth=cfg.bandwidth, schedule=cfg.schedule,
                                 schedule_kwargs=cfg.schedule_kwargs,
                                 stop_gradient=cfg.stop_gradient, options=cfg.objective_kwargs)


def make_lr_schedule(cfg: RunConfig) -> optax.Schedule:
  """Linear warm-up to ``learning_rate`` over ``warmup_steps`` optimizer steps, then cosine
  decay to ``final_lr_fraction · learning_rate`` at ``num_steps`` or constant."""
  if cfg.lr_schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.num_steps, cfg.warmup_steps + 1),
        end_value=cfg.final_lr_fraction * cfg.learning_rate)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1)),
       optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])


def make_optimizer(cfg: RunConfig) -> optax.GradientTransformation:
  """Optional global-norm clipping, then Adam or AdamW at the rate of :func:`make_lr_schedule`
  (a plain number when the rate is constant without warm-up)."""
  lr = (cfg.learning_rate if cfg.lr_schedule == "constant" and not cfg.warmup_steps
        else make_lr_schedule(cfg))
  if cfg.optimizer == "adamw":
    tx = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
  else:
    tx = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  if cfg.grad_clip is None:
    return tx
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)


def apply_gradients(state: TrainState, grads: Any, optimizer: optax.GradientTransformation,
                    *, ema_decay: float | None = None) -> TrainState:
  """One optimizer update: ``step + 1``, new params and optimizer state, and the parameter
  EMA ``ema ← decay · ema + (1 − decay) · params`` when ``ema_decay`` is given."""
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if ema_decay is not None:
    ema = optax.incremental_update(params, state.ema_params, 1.0 - ema_decay)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)


def split_run_key(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(noise_rng, data_rng)``: the generator-noise and data streams of a run key."""
  return jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1)
