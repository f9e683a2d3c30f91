"""Small class-conditional MLP/conv generator for fast CPU runs (MNIST 28×28, digits 8×8).

Same interface as :class:`~drifting_jax.models.dit.DiTGenerator`::

    images = model.apply(params, noise, labels, cfg_scale=None, style=None)  # [B, H, W, C]

with ``noise [B, H, W, C]`` an image-shaped Gaussian (draw it, and style indices if any, with
:func:`drifting_jax.models.conditioning.sample_noise`). The architecture is a cheap stand-in for the
DiT-S/2 of Franz et al. §5.1 for CPU experiments, not a paper architecture:

1. the flattened noise is projected to a ``latent``-wide vector (global mixing: every output
   pixel can depend on every noise pixel);
2. ``depth`` residual-free ``Dense -> + c -> SiLU`` layers, where ``c [B, latent]`` is the
   conditioning vector of :class:`~drifting_jax.models.conditioning.Conditioning` (class embedding,
   optional CFG-scale and style embeddings; label ``num_classes`` is unconditional);
3. a ``Dense`` to a ``(H/2^n) × (W/2^n) × conv_channels`` grid, ``n = num_upsamples`` times
   (nearest 2× upsample -> 3×3 conv -> + per-channel projection of ``c`` -> SiLU), then a 3×3
   conv read-out to ``C`` channels. With ``num_upsamples = 0`` the read-out is a ``Dense``
   straight to ``H·W·C`` pixels (a pure MLP generator).

Options for the MLP form: ``layer_norm`` (pre-LayerNorm before every dense layer and the
read-out), ``residual`` (``z <- z + SiLU(Dense(LN(z)) + c)``) and ``out_activation="tanh"``
(outputs bounded to the data range ``[-1, 1]``); ``readout_kernel = k > 0`` makes the MLP
read-out ``readout_channels`` maps of ``H × W`` followed by ``k × k`` convolutions to
``C`` channels (a learned local filter on the output: neighbouring pixels share evidence):
``readout_depth - 1`` hidden ones (``readout_channels`` maps each, SiLU) and the last.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from drifting_jax import _validation
from drifting_jax.models.conditioning import (Conditioning, check_generator_inputs,
                                              check_image_size, image_shape)

__all__ = ["ConvGenerator"]

Dtype = Any


class ConvGenerator(nn.Module):
  """MLP + upsampling-conv generator ``(noise [B,H,W,C], labels [B]) -> [B,H,W,C]`` float32.

  Attributes:
    image_size: ``H`` (square) or ``(H, W)``; both divisible by ``2**num_upsamples``.
    channels: ``C``.
    num_classes: classes (label ``num_classes`` = unconditional, for CFG).
    latent: width of the dense trunk and of the conditioning vector.
    depth: dense layers after the noise projection.
    conv_channels: channels of the upsampling stages.
    num_upsamples: 2× upsampling conv stages (0: pure MLP read-out).
    num_style_tokens, style_codebook_size: style embeddings as in Deng et al. App. A.2.
    cfg_embed: condition on the CFG strength α.
    layer_norm: LayerNorm before every trunk layer and the read-out.
    residual: residual trunk layers (``z + layer(z)``).
    out_activation: ``"none"`` or ``"tanh"`` (bounded output, for data in ``[-1, 1]``).
    readout_kernel: MLP form only: size of the read-out's ``k × k`` convolutions (0 = none).
    readout_channels: MLP form only: maps the dense read-out produces before those convs
      (and the width of the hidden ones).
    readout_depth: MLP form only: ``k × k`` convolutions of the read-out (1: one linear
      filter; more: ``readout_depth - 1`` hidden ones with SiLU, a local nonlinear read-out).
    dtype, param_dtype: compute and parameter dtypes (output is always float32).
  """

  image_size: int | tuple[int, int] = 28
  channels: int = 1
  num_classes: int = 10
  latent: int = 256
  depth: int = 2
  conv_channels: int = 32
  num_upsamples: int = 2
  num_style_tokens: int = 0
  style_codebook_size: int = 64
  cfg_embed: bool = False
  layer_norm: bool = False
  residual: bool = False
  out_activation: str = "none"
  readout_kernel: int = 0
  readout_channels: int = 1
  readout_depth: int = 1
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def check_config(self) -> None:
    """Raises ``ValueError`` naming the offending attribute."""
    _validation.check_fields(
        self, positive=("channels", "num_classes", "latent", "conv_channels",
                        "readout_channels", "readout_depth", "style_codebook_size"),
        nonneg=("depth", "num_upsamples", "num_style_tokens", "readout_kernel"))
    check_image_size(self.image_size)
    h, w, _ = image_shape(self)
    f = 2 ** self.num_upsamples
    if h % f or w % f:
      raise ValueError(f"`image_size` {(h, w)} must be divisible by 2**num_upsamples = {f}.")
    if self.readout_kernel and self.num_upsamples:
      raise ValueError("`readout_kernel` applies to the MLP form only (num_upsamples=0).")
    if self.readout_depth > 1 and not self.readout_kernel:
      raise ValueError(f"`readout_depth` > 1 needs a conv read-out (readout_kernel > 0), got "
                       f"readout_depth={self.readout_depth}, readout_kernel=0.")
    if self.out_activation not in ("none", "tanh"):
      raise ValueError(f"`out_activation` must be 'none' or 'tanh', got {self.out_activation!r}.")

  @nn.compact
  def __call__(self, noise, labels, *, cfg_scale=None, style=None):
    """Generates images.

    Args:
      noise: ``[B, H, W, C]`` Gaussian noise.
      labels: ``[B]`` int class ids in ``[0, num_classes]``.
      cfg_scale: CFG strength α, ``[]`` or ``[B]`` (None -> 1.0; ignored without cfg_embed).
      style: ``[B, S]`` int style indices (required when ``num_style_tokens > 0``, unless a
        'style' rng is passed).
    Returns:
      ``[B, H, W, C]`` float32 images.
    """
    self.check_config()
    check_generator_inputs(self, noise, labels, cfg_scale, style)
    h, w, ch = image_shape(self)
    b = noise.shape[0]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    c = Conditioning(self.latent, self.num_classes, self.cfg_embed, self.num_style_tokens,
                     self.style_codebook_size, name="cond", **kw)(labels, cfg_scale, style)
    c = c.astype(self.dtype)
    z = nn.Dense(self.latent, name="noise_proj", **kw)(noise.reshape(b, h * w * ch))
    z = nn.silu(z + c)
    norm = (lambda name, v: nn.LayerNorm(name=name, **kw)(v)) if self.layer_norm else (
        lambda name, v: v)
    for i in range(self.depth):
      u = nn.silu(nn.Dense(self.latent, name=f"dense_{i}", **kw)(norm(f"norm_{i}", z)) + c)
      z = z + u if self.residual else u
    z = norm("norm_out", z)
    squash = jnp.tanh if self.out_activation == "tanh" else (lambda v: v)

    n = self.num_upsamples
    if n == 0 and self.readout_kernel:
      r = self.readout_channels
      g = nn.Dense(h * w * r, name="readout", **kw)(z).reshape(b, h, w, r)
      k = self.readout_kernel
      for i in range(self.readout_depth - 1):
        g = nn.silu(nn.Conv(r, (k, k), padding="SAME", name=f"readout_hidden_{i}", **kw)(g))
      out = nn.Conv(ch, (k, k), padding="SAME", name="readout_conv", **kw)(g)
      return squash(out.astype(jnp.float32))
    if n == 0:
      out = nn.Dense(h * w * ch, name="readout", **kw)(z).reshape(b, h, w, ch)
      return squash(out.astype(jnp.float32))
    gh, gw, cc = h // 2 ** n, w // 2 ** n, self.conv_channels
    g = nn.Dense(gh * gw * cc, name="to_grid", **kw)(z).reshape(b, gh, gw, cc)
    for j in range(n):
      g = jnp.repeat(jnp.repeat(g, 2, axis=1), 2, axis=2)  # nearest-neighbour 2× upsample
      g = nn.Conv(cc, (3, 3), padding="SAME", name=f"conv_{j}", **kw)(g)
      g = nn.silu(g + nn.Dense(cc, name=f"cond_{j}", **kw)(c)[:, None, None, :])
    out = nn.Conv(ch, (3, 3), padding="SAME", name="readout", **kw)(g)
    return squash(out.astype(jnp.float32))

