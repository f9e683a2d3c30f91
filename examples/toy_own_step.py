"""Your own training step: a Flax MLP trained on the checkerboard with a drifting loss.

Nothing but public functions: ``dj.drift_field`` (Franz et al. Eq. (3), the "naive"
normalized field) and ``dj.drift_loss`` (Eq. (1): ``mean ‖x − sg(x + V)‖²``) inside a
user-written ``@jax.jit`` step with optax. Swap in ``dj.log_kde_loss(x, pos, x, kernel=k, exclude_self=True)``
(Eq. (20), the conservative sharp-kernel loss) for the two loss lines to train Laplace#.

    python examples/toy_own_step.py --steps 2000
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import drifting_jax as dj
from drifting_jax.data import toy


class MLP(nn.Module):
  @nn.compact
  def __call__(self, z):
    for _ in range(3):
      z = nn.silu(nn.Dense(256)(z))
    return nn.Dense(2)(z)


def main(steps: int = 2000, batch: int = 1024, seed: int = 0) -> float:
  model, kernel = MLP(), dj.laplacian(0.05)
  tx = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = model.init(init_key, jnp.zeros((1, 32)))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, key):
    k_noise, k_data = jax.random.split(key)
    pos = toy.checkerboard(k_data, batch)                     # data   [M, 2]
    z = jax.random.normal(k_noise, (batch, 32))               # noise  [N, 32]

    def loss_fn(p):
      x = model.apply(p, z)                                   # samples [N, 2]
      v = dj.drift_field(x, pos, x, kernel=kernel, exclude_self=True)
      return dj.drift_loss(x, v)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for i in range(steps):
    key, sub = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, sub)
  x = model.apply(params, jax.random.normal(key, (5000, 32)))
  sw = float(dj.sliced_wasserstein(x, toy.checkerboard(jax.random.PRNGKey(1), 5000),
                                   key=jax.random.PRNGKey(2)))
  print(f"final loss {float(loss):.3g}, sliced Wasserstein to fresh data {sw:.4f}")
  return sw


if __name__ == "__main__":
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--steps", type=int, default=2000)
  main(p.parse_args().steps)
