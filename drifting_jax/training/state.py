"""Train state, optimizer and the pure jitted training step for toy generators.

The step is a pure function ``(state, batch, rng) -> (state, metrics)``: ``batch`` is the
data batch ``pos [M, D]``, ``rng`` the run's noise key; the generator noise of a step is
drawn from ``fold_in(rng, state.step)``, so a run is a deterministic function of its seed
and resuming from a checkpoint reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from drifting_jax.models.mlp import MLPGenerator, sample_noise
from drifting_jax.objectives import Objective
from drifting_jax.training.config import ToyConfig

__all__ = ["TrainState", "init_state", "make_model", "make_optimizer", "make_train_step",
           "split_run_key"]


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to resume (all leaves are arrays; checkpointed by orbax).

  Attributes:
    step: ``[]`` int32, number of completed optimizer steps.
    params: generator parameters (a pytree).
    opt_state: optax optimizer state.
    rng: ``[2]`` uint32 run key (noise and data streams derive from it).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def make_model(cfg: ToyConfig, out_dim: int = 2) -> MLPGenerator:
  """The MLP generator described by ``cfg``."""
  return MLPGenerator(out_dim=out_dim, hidden=cfg.hidden, depth=cfg.depth,
                      activation=cfg.activation)


def make_optimizer(cfg: ToyConfig) -> optax.GradientTransformation:
  """Adam (after optional global-norm clipping); learning rate: optional linear warm-up, then
  constant or cosine-decayed over ``cfg.num_steps``."""
  lr = cfg.learning_rate
  if cfg.lr_schedule == "constant" and cfg.warmup_steps:
    lr = optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
                               optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])
  elif cfg.lr_schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.num_steps, cfg.warmup_steps + 1),
        end_value=cfg.final_lr_fraction * cfg.learning_rate)
  adam = optax.adam(lr)
  if cfg.grad_clip is None:
    return adam
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adam)


def split_run_key(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(noise_rng, data_rng)``: the generator-noise and data streams of a run key."""
  return jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1)


def init_state(
    cfg: ToyConfig, model: nn.Module, optimizer: optax.GradientTransformation
) -> TrainState:
  """Fresh state at step 0 from ``cfg.seed``."""
  init_key, run_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
  params = model.init(init_key, jnp.zeros((1, cfg.noise_dim), jnp.float32))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), rng=run_key)


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
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  return jax.jit(train_step)
