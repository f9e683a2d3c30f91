"""The generator interface shared by every image generator (DiT and the CPU conv nets).

A Drifting generator is ``f_θ(ε, c, α) -> x`` (Deng et al. 2026, App. A.2): ``ε`` an
image-shaped Gaussian ``[B, H, W, C]`` together with discrete *style* indices, ``c`` a class
label and ``α`` the CFG strength. This module holds what every generator of that form uses:

* :class:`GeneratorNoise` and :func:`sample_noise` — the input randomness;
* :class:`Conditioning` — the conditioning vector
  ``c = E_class[label] + MLP(fourier(α)) + Σ_{j=1..S} E_style[s_j]``, ``s_j ~ U{0..K-1}``
  (our reading of Deng et al. App. A.2; label ``num_classes`` is the unconditional class);
* :func:`image_shape` and :func:`check_generator_inputs` — the shape contract.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation

__all__ = ["Conditioning", "GeneratorNoise", "check_generator_inputs", "fourier_features",
           "image_shape", "sample_noise"]

Dtype = Any
_emb_init = nn.initializers.normal(0.02)


def fourier_features(x: jax.Array, dim: int, *, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal features ``[cos(x ω_i), sin(x ω_i)]`` with ``ω_i = max_period^(-i/half)``.

  Args:
    x: ``[B]`` scalars (e.g. rescaled CFG strengths α).
    dim: even feature size ``F``.
  Returns:
    ``[B, F]`` float32 features (DiT's timestep embedding).
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(x, jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class Conditioning(nn.Module):
  """Conditioning vector ``c = E_class[y] + MLP(fourier(α)) + Σ_j E_style[s_j]`` ``[B, D]``.

  Attributes:
    hidden: ``D``.
    num_classes: classes; label ``num_classes`` is the unconditional (null) class.
    cfg_embed: embed the CFG strength α (Secretly-SM G.1: "AdaLN class+CFG conditioning").
    num_style_tokens: ``S`` indices per sample (0 disables style embeddings).
    style_codebook_size: ``K`` codebook entries.
    cfg_freq_dim: Fourier feature size; α is embedded as ``fourier(α · cfg_freq_scale)``.
  """

  hidden: int
  num_classes: int
  cfg_embed: bool = False
  num_style_tokens: int = 0
  style_codebook_size: int = 64
  cfg_freq_dim: int = 256
  cfg_freq_scale: float = 250.0  # α ∈ [1, 4] -> [250, 1000], DiT's timestep range
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, labels, cfg_scale=None, style=None):
    """``labels [B]`` int, ``cfg_scale [] | [B]`` (None: 1.0), ``style [B, S]`` -> ``[B, D]``."""
    b = labels.shape[0]
    c = nn.Embed(self.num_classes + 1, self.hidden, embedding_init=_emb_init,
                 param_dtype=self.param_dtype, name="class_embed")(labels).astype(jnp.float32)
    if self.cfg_embed:
      alpha = jnp.broadcast_to(jnp.asarray(1.0 if cfg_scale is None else cfg_scale,
                                           jnp.float32), (b,))
      f = fourier_features(alpha * self.cfg_freq_scale, self.cfg_freq_dim)
      dense = lambda name: nn.Dense(self.hidden, kernel_init=nn.initializers.normal(0.02),
                                    dtype=self.dtype, param_dtype=self.param_dtype, name=name)
      c = c + dense("cfg_mlp_out")(nn.silu(dense("cfg_mlp_in")(f))).astype(jnp.float32)
    if self.num_style_tokens:
      if style is None:
        if not self.has_rng("style"):
          raise ValueError("`style` must be given ([B, num_style_tokens] indices from "
                           "`sample_noise`) or a 'style' rng passed to apply/init.")
        style = jax.random.randint(self.make_rng("style"), (b, self.num_style_tokens), 0,
                                   self.style_codebook_size)
      book = self.param("style_codebook", _emb_init,
                        (self.style_codebook_size, self.hidden), self.param_dtype)
      c = c + jnp.take(book, style, axis=0).astype(jnp.float32).sum(axis=1)
    return c


class GeneratorNoise(NamedTuple):
  """Generator input randomness: ``noise [B, H, W, C]`` and ``style [B, S]`` int32 (or None)."""

  noise: jax.Array
  style: jax.Array | None


def check_image_size(size: Any) -> None:
  """``image_size``: a positive int or a pair of them (``ValueError`` otherwise)."""
  if isinstance(size, (tuple, list)):
    if len(size) != 2:
      raise ValueError(f"`image_size` must be an int or a pair (H, W), got {size!r}.")
    for v in size:
      _validation.check_int("image_size", v, minimum=1)
  else:
    _validation.check_int("image_size", size, minimum=1)


def image_shape(model: Any) -> tuple[int, int, int]:
  """``(H, W, C)`` of a generator with ``image_size`` (int or pair) and ``channels``."""
  size = model.image_size
  h, w = (size, size) if isinstance(size, int) else tuple(size)
  return int(h), int(w), int(model.channels)


def sample_noise(key: jax.Array, model: Any, batch: int) -> GeneratorNoise:
  """Draws the generator's input randomness (Deng et al. App. A.2: Gaussian + style indices).

  Args:
    key: PRNG key.
    model: a :class:`DiTGenerator` or ``ConvGenerator`` (anything with ``image_size``,
      ``channels``, ``num_style_tokens``, ``style_codebook_size``).
    batch: ``B``.
  Returns:
    ``GeneratorNoise(noise [B, H, W, C] float32 ~ N(0, I), style [B, S] int32 ~ U{0..K-1})``;
    ``style`` is None when the model has no style tokens.
  """
  batch = _validation.check_int("batch", batch, minimum=1)
  kn, ks = jax.random.split(key)
  noise = jax.random.normal(kn, (batch, *image_shape(model)), jnp.float32)
  s = int(getattr(model, "num_style_tokens", 0))
  style = (jax.random.randint(ks, (batch, s), 0, model.style_codebook_size, jnp.int32)
           if s else None)
  return GeneratorNoise(noise, style)


def check_generator_inputs(model: Any, noise, labels, cfg_scale, style) -> None:
  """Static shape checks (and value checks on concrete arrays); ``ValueError`` names the arg."""
  shape = image_shape(model)
  if np.ndim(noise) != 4 or tuple(np.shape(noise)[1:]) != shape:
    raise ValueError(f"`noise` must have shape [B, {shape[0]}, {shape[1]}, {shape[2]}] for "
                     f"this model, got {np.shape(noise)}.")
  b = np.shape(noise)[0]
  if np.shape(labels) != (b,) or not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(f"`labels` must be an integer array of shape [{b}], got "
                     f"{np.shape(labels)} {jnp.result_type(labels)}.")
  if _validation.is_concrete(labels):
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() > model.num_classes):
      raise ValueError(f"`labels` must lie in [0, {model.num_classes}] ({model.num_classes} = "
                       f"unconditional), got range [{lab.min()}, {lab.max()}].")
  if cfg_scale is not None and np.shape(cfg_scale) not in ((), (b,)):
    raise ValueError(f"`cfg_scale` must be a scalar or shape [{b}], got {np.shape(cfg_scale)}.")
  s = int(getattr(model, "num_style_tokens", 0))
  if style is not None:
    if s == 0 or np.shape(style) != (b, s):
      raise ValueError(f"`style` must have shape [{b}, {s}] (None when the model has no style "
                       f"tokens), got {np.shape(style)}.")
    if _validation.is_concrete(style):
      st = np.asarray(style)
      if st.min() < 0 or st.max() >= model.style_codebook_size:
        raise ValueError(f"`style` indices must lie in [0, {model.style_codebook_size}), got "
                         f"range [{st.min()}, {st.max()}].")
