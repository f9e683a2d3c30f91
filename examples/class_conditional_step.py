"""Your own class-conditional step: grouped drifting with kernel-width normalization and CFG.

Four classes of 2-D data (one Gaussian blob each). Every step draws ``G`` class groups with
``M`` real samples each, generates ``N`` samples per group with a CFG scale
``α ~ p(α) ∝ α^-3`` on [1, 4] (``dj.sample_cfg_scale``), and computes Deng et al.'s loss
per group with ``U`` unconditional real samples as extra negatives of weight
``(α − 1)(N − 1)/U`` (``dj.guided_grouped_loss`` → ``dj.cfg_negative_weight``). Samples
are divided by their class's kernel-width scale, an EMA of the kNN mean distance
(Franz et al. §5.1: ``dj.normalization.observe`` / ``update_from_observations``; the first
``warmup`` batches only update the EMA). Nothing but public functions, Flax and optax.

    python examples/class_conditional_step.py --steps 600
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import drifting_jax as dj
from drifting_jax import normalization

C, G, N, M, U, NOISE = 4, 4, 64, 64, 16, 8
CENTERS = jnp.asarray([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])


def sample_class(key, classes, n):
  """``[len(classes), n, 2]``: ``n`` samples of each class (a blob of radius ~0.3)."""
  noise = 0.3 * jax.random.normal(key, (classes.shape[0], n, 2))
  return CENTERS[classes][:, None, :] + noise


class Generator(nn.Module):
  @nn.compact
  def __call__(self, z, labels, cfg_scale):
    h = jnp.concatenate([z, jax.nn.one_hot(labels, C), cfg_scale[:, None]], axis=-1)
    for _ in range(3):
      h = nn.silu(nn.Dense(128)(h))
    return nn.Dense(2)(h)


def main(steps: int = 600, warmup: int = 20, seed: int = 0) -> float:
  model = Generator()
  tx = optax.adamw(optax.cosine_decay_schedule(2e-3, steps), b1=0.95)
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = model.init(init_key, jnp.zeros((1, NOISE)), jnp.zeros((1,), int), jnp.ones((1,)))
  opt_state, norm = tx.init(params), normalization.init(C)

  def batch(key):
    k_cls, k_pos, k_unc = jax.random.split(key, 3)
    classes = jax.random.choice(k_cls, C, (G,), replace=False)            # [G]
    uncond = sample_class(k_unc, jax.random.randint(k_unc, (G * U,), 0, C), 1)
    return classes, sample_class(k_pos, classes, M), uncond.reshape(G, U, 2)

  @jax.jit
  def stats_step(norm, key):  # warm-up: only the kernel-width EMA moves
    classes, pos, _ = batch(key)
    return normalization.update_from_observations(norm, normalization.observe(pos), classes)

  @jax.jit
  def step(params, opt_state, norm, key):
    k_batch, k_alpha, k_noise = jax.random.split(key, 3)
    classes, pos, uncond = batch(k_batch)                                 # [G, M, 2] ...
    norm = normalization.update_from_observations(norm, normalization.observe(pos), classes)
    scale = norm.scale[classes]                                           # [G]
    alpha = dj.sample_cfg_scale(k_alpha, G)                               # [G] in [1, 4]
    z = jax.random.normal(k_noise, (G * N, NOISE))

    def loss_fn(p):
      x = model.apply(p, z, jnp.repeat(classes, N), jnp.repeat(alpha, N)).reshape(G, N, 2)
      loss, _ = dj.guided_grouped_loss(
          dj.kernel_scaled(x, scale), dj.kernel_scaled(pos, scale),
          dj.kernel_scaled(uncond, scale), alpha, temperatures=(0.05, 0.2))
      return jnp.mean(loss)                                               # mean over groups

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, norm, loss

  for _ in range(warmup):
    key, sub = jax.random.split(key)
    norm = stats_step(norm, sub)
  for _ in range(steps):
    key, sub = jax.random.split(key)
    params, opt_state, norm, loss = step(params, opt_state, norm, sub)

  # Class accuracy at CFG scale 1: the nearest class centre of each sample is its label.
  labels = jnp.repeat(jnp.arange(C), 500)
  x = model.apply(params, jax.random.normal(key, (labels.shape[0], NOISE)), labels,
                  jnp.ones(labels.shape))
  nearest = jnp.argmin(dj.pairwise_sqdist(x, CENTERS), axis=1)
  acc = float(jnp.mean(nearest == labels))
  spread = float(jnp.mean(jnp.linalg.norm(x - CENTERS[labels], axis=1)))
  print(f"final loss {float(loss):.3g}, class accuracy {acc:.3f}, mean distance to the class "
        f"centre {spread:.3f} (data: {0.3 * (jnp.pi / 2) ** 0.5:.3f})")
  return acc


if __name__ == "__main__":
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--steps", type=int, default=600)
  main(p.parse_args().steps)
