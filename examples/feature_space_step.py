"""Your own feature-space step: the drift loss on a frozen encoder's multi-scale features.

Deng et al. (§3.4) compute the drift loss not on pixels but on features of a frozen encoder
trained as a masked autoencoder. On scikit-learn's 8×8 digits (shipped with scikit-learn):

1. pre-train a small :class:`drifting_jax.models.mae.MAEResNet` with ``mae_loss`` (2×2
   patches zeroed with probability 0.5, the full image reconstructed) and freeze it;
2. ``mae_extractor`` turns it into a pure function ``images -> {stream: features}``: the
   stage outputs per location (``[B, L, D]``: every location is its own drift problem) and
   their global mean and std, plus the pixels;
3. each step draws ``G`` classes with ``M`` real images each, generates ``N`` images per
   class, and sums over streams the group-mean Naive-Gauss loss in kernel-width-normalized
   units (``dj.stream_loss``; one kNN width per class and stream, Franz et al. §5.1).
   Gradients reach the generator through the encoder; the encoder receives none.

Nothing but public functions, Flax and optax::

    python examples/feature_space_step.py --steps 300
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import drifting_jax as dj
from drifting_jax import normalization
from drifting_jax.data.images import load_digits
from drifting_jax.models import mae
from drifting_jax.models.encoders import mae_extractor

G, M, N, NOISE = 4, 32, 32, 16


class Generator(nn.Module):
  """``(noise [B, NOISE], labels [B]) -> images [B, 8, 8, 1]`` in [-1, 1]."""

  @nn.compact
  def __call__(self, z, labels):
    h = jnp.concatenate([z, jax.nn.one_hot(labels, 10)], axis=-1)
    for _ in range(2):
      h = nn.silu(nn.Dense(256)(h))
    return jnp.tanh(nn.Dense(64)(h)).reshape(-1, 8, 8, 1)


def pretrain_encoder(images, steps: int, key):
  """A few hundred masked-autoencoder steps of a 2-stage encoder (8×8 and 4×4 maps)."""
  encoder = mae.get_encoder("mae_mnist_cpu", widths=(16, 32), blocks=(1, 1))
  variables = encoder.init(key, images[:1])
  tx = optax.adam(2e-3)
  opt = tx.init(variables)

  @jax.jit
  def step(variables, opt, key):
    k_idx, k_mask = jax.random.split(key)
    x = images[jax.random.randint(k_idx, (64,), 0, images.shape[0])]
    loss, grads = jax.value_and_grad(
        lambda v: mae.mae_loss(encoder, v, x, None, k_mask)[0])(variables)
    updates, opt = tx.update(grads, opt, variables)
    return optax.apply_updates(variables, updates), opt, loss

  for i in range(steps):
    variables, opt, loss = step(variables, opt, jax.random.fold_in(key, i))
  return encoder, variables, float(loss)


def main(steps: int = 300, encoder_steps: int = 200, seed: int = 0) -> float:
  ds = load_digits()
  images, labels = jnp.asarray(ds.images), np.asarray(ds.labels)
  by_class = [jnp.asarray(images[labels == c]) for c in range(10)]
  key = jax.random.PRNGKey(seed)
  encoder, variables, recon = pretrain_encoder(images, encoder_steps, jax.random.fold_in(key, 1))
  extractor = mae_extractor(encoder, variables, image_shape=(8, 8, 1),
                            stages=("stage0", "stage1"), feature_sets=("loc", "mean_std"),
                            include_pixels=True)
  objective = dj.make_objective("naive-gauss", bandwidth=0.2)
  model = Generator()
  params = model.init(key, jnp.zeros((1, NOISE)), jnp.zeros((1,), int))
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)
  norm = {name: normalization.init(10) for name in extractor.names}

  def groups(x):  # [G·B, ...] features -> [G, B, D] or, per location, [G·L, B, D]
    x = x.reshape(G, -1, *x.shape[1:])
    return x if x.ndim == 3 else x.transpose(0, 2, 1, 3).reshape(-1, x.shape[1], x.shape[3])

  def batch(key):
    k_cls, k_pos = jax.random.split(key)
    classes = jax.random.choice(k_cls, 10, (G,), replace=False)
    pos = jnp.stack([by_class[int(c)][jax.random.randint(jax.random.fold_in(k_pos, i), (M,), 0,
                                                         by_class[int(c)].shape[0])]
                     for i, c in enumerate(classes)])                     # [G, M, 8, 8, 1]
    return classes, pos

  @jax.jit
  def step(params, opt_state, norm, classes, pos, key):
    pos_f = {k: groups(v) for k, v in extractor.apply(pos.reshape(G * M, 8, 8, 1)).items()}
    new_norm, scales = {}, {}
    for k, f in pos_f.items():  # one kernel width per class and stream (mean over locations)
      obs = normalization.observe(f).reshape(G, -1).mean(axis=1)
      new_norm[k] = normalization.update_from_observations(norm[k], obs, classes)
      scales[k] = jnp.repeat(new_norm[k].scale[classes], f.shape[0] // G)
    z = jax.random.normal(key, (G * N, NOISE))

    def loss_fn(p):
      x = model.apply(p, z, jnp.repeat(classes, N))
      gen_f = {k: groups(v) for k, v in extractor.apply(x).items()}
      return dj.stream_loss(lambda g, q: dj.grouped_loss(objective, g, q), gen_f, pos_f,
                            scales=scales)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_norm, loss

  def class_mean_error(p):
    x = model.apply(p, jax.random.normal(key, (10 * 50, NOISE)), jnp.repeat(jnp.arange(10), 50))
    return float(np.mean([np.mean((np.asarray(x[50 * c:50 * (c + 1)]).mean(0)
                                   - np.asarray(by_class[c]).mean(0)) ** 2) for c in range(10)]))

  start = class_mean_error(params)
  for i in range(steps):
    classes, pos = batch(jax.random.fold_in(key, 2 * i))
    params, opt_state, norm, loss = step(params, opt_state, norm, classes, pos,
                                         jax.random.fold_in(key, 2 * i + 1))
  err = class_mean_error(params)
  print(f"encoder reconstruction MSE {recon:.3f}; feature-space loss {float(loss):.3g} over "
        f"{len(extractor.names)} streams; class-mean pixel error {start:.4f} -> {err:.4f}")
  return err / start


if __name__ == "__main__":
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--steps", type=int, default=300)
  main(p.parse_args().steps)
