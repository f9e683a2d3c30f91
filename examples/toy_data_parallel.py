"""The step of ``toy_own_step.py``, data-parallel over every local device with
``jax.shard_map``.

Each device draws its own noise and data (its key is ``fold_in(key, device index)``) and
solves its own drift problem (Franz et al. Eq. (3) field, Eq. (1) loss) on its ``batch``
samples; only the gradients cross devices (``lax.pmean``), so parameters and optimizer state
stay replicated. On a CPU, fake devices show it working::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/toy_data_parallel.py
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import drifting_jax as dj
from drifting_jax.data import toy


class MLP(nn.Module):
  @nn.compact
  def __call__(self, z):
    for _ in range(3):
      z = nn.silu(nn.Dense(256)(z))
    return nn.Dense(2)(z)


def main(steps: int = 2000, batch: int = 512, seed: int = 0) -> float:
  mesh = Mesh(jax.devices(), ("data",))
  model, kernel = MLP(), dj.laplacian(0.05)
  tx = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = model.init(init_key, jnp.zeros((1, 32)))
  opt_state = tx.init(params)

  def local_step(params, opt_state, key):                     # runs once per device
    key = jax.random.fold_in(key, jax.lax.axis_index("data"))
    k_noise, k_data = jax.random.split(key)
    pos, z = toy.checkerboard(k_data, batch), jax.random.normal(k_noise, (batch, 32))

    def loss_fn(p):
      x = model.apply(p, z)
      return dj.drift_loss(x, dj.drift_field(x, pos, x, kernel=kernel, exclude_self=True))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    grads, loss = jax.lax.pmean((grads, loss), "data")       # the only communication
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(jax.shard_map(local_step, mesh=mesh, in_specs=(P(), P(), P()),
                               out_specs=(P(), P(), P())))
  for _ in range(steps):
    key, sub = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, sub)
  x = model.apply(params, jax.random.normal(key, (5000, 32)))
  sw = float(dj.sliced_wasserstein(x, toy.checkerboard(jax.random.PRNGKey(1), 5000),
                                   key=jax.random.PRNGKey(2)))
  print(f"{len(jax.devices())} devices, final loss {float(loss):.3g}, sliced Wasserstein {sw:.4f}")
  return sw


if __name__ == "__main__":
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--steps", type=int, default=2000)
  main(p.parse_args().steps)
