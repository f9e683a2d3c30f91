"""MLP generator for toy data (Flax linen).

A one-step generator ``G_theta: noise [N, noise_dim] -> samples [N, out_dim]``: ``depth``
hidden ``Dense`` layers of width ``hidden`` with a pointwise activation, then a linear
read-out. The default (3 hidden layers of 256, SiLU, 32-d Gaussian noise) is the toy
generator of Deng et al.'s demo; Secretly-SM App. F uses ReLU, selectable with
``activation="relu"``.

We use ``flax.linen`` (not ``nnx``): parameters are a plain pytree, which keeps the
training step a pure function ``(state, batch, rng) -> (state, metrics)`` and lets orbax
checkpoint ``params`` directly.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from drifting_jax import _validation

__all__ = ["ACTIVATIONS", "MLPGenerator", "sample_noise"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": nn.silu,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
}


class MLPGenerator(nn.Module):
  """Fully connected generator.

  Attributes:
    out_dim: output dimension ``D``.
    hidden: width of each hidden layer.
    depth: number of hidden layers (>= 1).
    activation: one of :data:`ACTIVATIONS`.
  """

  out_dim: int = 2
  hidden: int = 256
  depth: int = 3
  activation: str = "silu"

  def setup(self):
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"`activation` must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
      )
    _validation.check_fields(self, positive=("depth", "hidden", "out_dim"))
    self.layers = [nn.Dense(self.hidden, name=f"hidden_{i}") for i in range(self.depth)]
    self.readout = nn.Dense(self.out_dim, name="readout")

  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps noise ``z: [N, noise_dim]`` to samples ``[N, out_dim]``."""
    act = ACTIVATIONS[self.activation]
    h = z
    for layer in self.layers:
      h = act(layer(h))
    return self.readout(h)


def sample_noise(key: jax.Array, n: int, noise_dim: int) -> jax.Array:
  """Standard Gaussian generator input ``[n, noise_dim]`` (float32)."""
  n = _validation.check_int("n", n, minimum=1)
  noise_dim = _validation.check_int("noise_dim", noise_dim, minimum=1)
  return jax.random.normal(key, (n, noise_dim), jnp.float32)
