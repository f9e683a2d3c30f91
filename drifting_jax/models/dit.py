"""DiT generators for drifting models (Flax linen): noise image -> image in one step.

A Drifting generator is ``f_θ(ε, c, α) -> x`` (Deng et al. 2026, App. A.2): ``ε`` is an
image-shaped Gaussian ``[B, H, W, C]`` together with discrete *style* indices, ``c`` a class
label and ``α`` the CFG strength. The backbone is a DiT (Peebles & Xie 2023) with adaLN-zero
conditioning, in two flavours selected by attributes of :class:`DiTGenerator`:

* **DiT-S/2** of Franz et al. §5.1 / Table 3 (MNIST, 28×28×1): LayerNorm, GELU MLP (4×),
  learned absolute position embedding, 8 register tokens, 32 style tokens, class conditioning.
* **DiTGen-B/2** of Secretly-SM App. G.1 (32×32×4 SD-VAE latents): RMSNorm, QK-norm,
  SwiGLU MLP, 2D RoPE on the patch grid, conditioning on class *and* CFG scale α (Fourier
  features of α through a 2-layer MLP), 16 register tokens and 32 style tokens (the
  B/2 column of Deng et al.'s Table A1, which Secretly-SM says it shares).

Conditioning vector (our reading of Deng et al. App. A.2)::

    c = E_class[label] + MLP(fourier(α)) + Σ_{j=1..S} E_style[s_j],   s_j ~ U{0..K-1}

with ``S = num_style_tokens`` (32) indices per sample into a learned codebook of
``K = style_codebook_size`` (64) embeddings ("each a random index into a codebook of 64
learnable embeddings; these are summed and added to the conditioning vector"). The indices
are part of the generator's *input noise*: draw them with :func:`sample_noise`.
Label ``num_classes`` is the unconditional (null) class used for CFG.

Register tokens ("in-context tokens", Deng et al. App. A.2) are learned embeddings plus a
projection of ``c``; they are appended to the patch tokens, attend with them in every block,
and are dropped before unpatchifying. They are not rotated by RoPE.

Mixed precision: ``dtype`` is the compute dtype (e.g. ``jnp.bfloat16``), ``param_dtype``
the storage dtype (float32); norms and softmax reduce in float32 and the output is float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation
from drifting_jax.models.conditioning import (Conditioning, GeneratorNoise,  # noqa: F401
                                             check_generator_inputs, check_image_size,
                                             fourier_features, image_shape, sample_noise)

__all__ = [
    "Conditioning", "DiTBlock", "DiTGenerator", "GeneratorNoise", "apply_rope", "apply_rope_2d",
    "check_generator_inputs", "fourier_features", "image_shape", "rope_angles", "sample_noise",
    "sincos_pos_embed_2d",
]

Dtype = Any
_xavier = nn.initializers.xavier_uniform()
_emb_init = nn.initializers.normal(0.02)
_zeros = nn.initializers.zeros


# ----------------------------------------------------------------------------- embeddings
def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
  """Fixed 2D sin-cos position embedding ``[grid_h * grid_w, dim]`` (MAE / DiT), row-major."""
  if dim % 4:
    raise ValueError(f"`hidden` must be divisible by 4 for a 2D sin-cos embedding, got {dim}.")
  omega = 1.0 / 10_000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
  rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
  parts = []
  for pos in (rows.reshape(-1), cols.reshape(-1)):
    out = np.einsum("t,f->tf", pos.astype(np.float64), omega)
    parts += [np.sin(out), np.cos(out)]
  return np.concatenate(parts, axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------- RoPE
def rope_angles(positions: jax.Array, dim: int, *, base: float = 10_000.0) -> jax.Array:
  """Rotation angles ``θ_{t,i} = pos_t · base^(-2i/dim)`` for 1D RoPE (Su et al. 2024).

  Args:
    positions: ``[T]`` positions (any real values).
    dim: even rotated feature size ``d``.
  Returns:
    ``[T, d/2]`` float32 angles.
  """
  inv = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  return jnp.asarray(positions, jnp.float32)[:, None] * inv[None, :]


def apply_rope(x: jax.Array, angles: jax.Array) -> jax.Array:
  """Rotates feature pairs ``(x_i, x_{i+d/2})`` by ``angles`` ("rotate-half" convention).

  Args:
    x: ``[..., T, d]`` (or ``[..., T, heads, d]`` with ``angles`` ``[T, 1, d/2]``).
    angles: broadcastable to ``x[..., : d/2]``.
  Returns:
    Rotated ``x`` (same shape and dtype). ``<apply_rope(q, θ_m), apply_rope(k, θ_n)>``
    depends on positions only through ``m - n``.
  """
  d = x.shape[-1] // 2
  xf = x.astype(jnp.float32)
  x1, x2 = xf[..., :d], xf[..., d:]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).astype(x.dtype)


def apply_rope_2d(x: jax.Array, rows: jax.Array, cols: jax.Array, *,
                  base: float = 10_000.0) -> jax.Array:
  """2D RoPE: first half of the features rotated by the row, second half by the column.

  Args:
    x: ``[B, T, heads, d]`` queries or keys, ``d % 4 == 0``.
    rows, cols: ``[T]`` grid coordinates of each token (registers use 0: no rotation).
  Returns:
    ``[B, T, heads, d]``; dot products depend only on the 2D offset between tokens.
  """
  h = x.shape[-1] // 2
  ang_r = rope_angles(rows, h, base=base)[:, None, :]
  ang_c = rope_angles(cols, h, base=base)[:, None, :]
  return jnp.concatenate([apply_rope(x[..., :h], ang_r), apply_rope(x[..., h:], ang_c)], -1)


# ---------------------------------------------------------------------------------- blocks
def _norm(kind: str, name: str, dtype: Dtype, param_dtype: Dtype) -> nn.Module:
  """Affine-free norm in front of adaLN modulation (the modulation supplies scale/shift)."""
  if kind == "rmsnorm":
    return nn.RMSNorm(use_scale=False, dtype=dtype, param_dtype=param_dtype, name=name)
  return nn.LayerNorm(use_scale=False, use_bias=False, epsilon=1e-6, dtype=dtype,
                      param_dtype=param_dtype, name=name)


def _modulate(x, shift, scale):
  return x * (1 + scale) + shift


class DiTBlock(nn.Module):
  """Pre-norm transformer block with adaLN-zero modulation (DiT, Peebles & Xie 2023).

  ``x <- x + g1 · Attn(mod(norm(x); s1, b1))``, ``x <- x + g2 · MLP(mod(norm(x); s2, b2))``
  with ``(b1, s1, g1, b2, s2, g2) = Dense_{6D}(SiLU(c))`` initialized to zero, so the block
  is the identity at initialization.

  Attributes:
    hidden, heads, mlp_ratio: width ``D``, attention heads, MLP expansion.
    norm: ``"layernorm"`` (DiT-S/2) or ``"rmsnorm"`` (DiTGen).
    mlp: ``"gelu"`` (hidden ``ratio·D``) or ``"swiglu"`` (hidden ``int(2/3·ratio·D)``).
    qk_norm: RMSNorm (learned scale) on per-head queries and keys (Henry et al. 2020).
    rope_base: base of the 2D RoPE, used when ``rope_pos`` is given.
  """

  hidden: int
  heads: int
  mlp_ratio: float = 4.0
  norm: str = "layernorm"
  mlp: str = "gelu"
  qk_norm: bool = False
  rope_base: float = 10_000.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _dense(self, features, name, init=_xavier):
    return nn.Dense(features, kernel_init=init, dtype=self.dtype, param_dtype=self.param_dtype,
                    name=name)

  @nn.compact
  def __call__(self, x, c, rope_pos=None):
    """``x [B, T, D]``, ``c [B, D]``, ``rope_pos`` None or (rows ``[T]``, cols ``[T]``)."""
    b, t, d = x.shape
    hd = d // self.heads
    mod = nn.Dense(6 * d, kernel_init=_zeros, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="adaLN_modulation")(nn.silu(c))
    sh1, sc1, g1, sh2, sc2, g2 = jnp.split(mod[:, None, :].astype(x.dtype), 6, axis=-1)

    h = _modulate(_norm(self.norm, "norm1", self.dtype, self.param_dtype)(x), sh1, sc1)
    q, k, v = jnp.split(self._dense(3 * d, "qkv")(h).reshape(b, t, 3, self.heads, hd), 3, 2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [B, T, heads, hd]
    if self.qk_norm:
      q = nn.RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="q_norm")(q)
      k = nn.RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="k_norm")(k)
    if rope_pos is not None:
      q = apply_rope_2d(q, *rope_pos, base=self.rope_base)
      k = apply_rope_2d(k, *rope_pos, base=self.rope_base)
    o = jax.nn.dot_product_attention(q, k, v).reshape(b, t, d)
    x = x + g1 * self._dense(d, "proj")(o)

    h = _modulate(_norm(self.norm, "norm2", self.dtype, self.param_dtype)(x), sh2, sc2)
    if self.mlp == "swiglu":
      f = int(2 * self.mlp_ratio * d / 3)
      a, gate = jnp.split(self._dense(2 * f, "mlp_in")(h), 2, axis=-1)
      h = nn.silu(a) * gate
    else:
      h = nn.gelu(self._dense(int(self.mlp_ratio * d), "mlp_in")(h), approximate=True)
    return x + g2 * self._dense(d, "mlp_out")(h)


# -------------------------------------------------------------------------------- generator
class DiTGenerator(nn.Module):
  """One-step DiT generator ``(noise [B,H,W,C], labels [B]) -> images [B,H,W,C]`` (float32).

  Call as ``model.apply(params, noise, labels, cfg_scale=α, style=s)``; see the module
  docstring and :func:`sample_noise`. Presets live in ``drifting_jax.models.presets``.

  Attributes:
    image_size: ``H`` (square) or ``(H, W)``; channels: ``C``; patch_size: ``p``.
    hidden, depth, heads, mlp_ratio: transformer width ``D``, blocks, heads, MLP ratio.
    num_classes: classes (label ``num_classes`` = unconditional).
    num_registers: register / in-context tokens ``R`` (0 disables).
    num_style_tokens, style_codebook_size: style indices ``S`` per sample and codebook ``K``.
    norm, mlp, qk_norm: block options (see :class:`DiTBlock`).
    rope: 2D RoPE on the patch grid (registers unrotated).
    cfg_embed: condition on the CFG strength α.
    pos_embed: ``"learned"`` (sin-cos initialized parameter), ``"sincos"`` (fixed), ``"none"``.
    remat: rematerialize blocks (saves activation memory).
    dtype, param_dtype: compute and parameter dtypes.
  """

  image_size: int | tuple[int, int] = 28
  channels: int = 1
  patch_size: int = 2
  hidden: int = 384
  depth: int = 12
  heads: int = 6
  mlp_ratio: float = 4.0
  num_classes: int = 10
  num_registers: int = 8
  num_style_tokens: int = 32
  style_codebook_size: int = 64
  norm: str = "layernorm"
  mlp: str = "gelu"
  qk_norm: bool = False
  rope: bool = False
  rope_base: float = 10_000.0
  cfg_embed: bool = False
  pos_embed: str = "learned"
  remat: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def check_config(self) -> None:
    """Raises ``ValueError`` naming the offending attribute."""
    _validation.check_fields(
        self, positive=("channels", "num_classes", "patch_size", "hidden", "depth", "heads",
                        "style_codebook_size"),
        nonneg=("num_registers", "num_style_tokens"), positive_real=("mlp_ratio", "rope_base"))
    check_image_size(self.image_size)
    h, w, _ = image_shape(self)
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f"`patch_size` {p} must divide `image_size` {(h, w)}.")
    if self.hidden % self.heads:
      raise ValueError(f"`hidden` {self.hidden} must be divisible by `heads` {self.heads}.")
    if self.rope and (self.hidden // self.heads) % 4:
      raise ValueError(f"`rope` needs a head dim divisible by 4, got {self.hidden // self.heads}.")
    _validation.check_choice("norm", self.norm, ("layernorm", "rmsnorm"))
    _validation.check_choice("mlp", self.mlp, ("gelu", "swiglu"))
    _validation.check_choice("pos_embed", self.pos_embed, ("learned", "sincos", "none"))

  @nn.compact
  def __call__(self, noise, labels, *, cfg_scale=None, style=None):
    """Generates images.

    Args:
      noise: ``[B, H, W, C]`` Gaussian noise.
      labels: ``[B]`` int class ids in ``[0, num_classes]``.
      cfg_scale: CFG strength α, ``[]`` or ``[B]`` (None -> 1.0; ignored without cfg_embed).
      style: ``[B, S]`` int style indices (None -> drawn from the 'style' rng if given).
    Returns:
      ``[B, H, W, C]`` float32 images.
    """
    self.check_config()
    check_generator_inputs(self, noise, labels, cfg_scale, style)
    (h, w, ch), p, d = image_shape(self), self.patch_size, self.hidden
    b, gh, gw = noise.shape[0], h // p, w // p
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    c = Conditioning(d, self.num_classes, self.cfg_embed, self.num_style_tokens,
                     self.style_codebook_size, name="cond", **kw)(labels, cfg_scale, style)

    x = noise.reshape(b, gh, p, gw, p, ch).transpose(0, 1, 3, 2, 4, 5)
    x = nn.Dense(d, kernel_init=_xavier, name="patch_embed", **kw)(
        x.reshape(b, gh * gw, p * p * ch))
    if self.pos_embed != "none":
      table = sincos_pos_embed_2d(d, gh, gw)
      if self.pos_embed == "learned":
        table = self.param("pos_embed", lambda *_: jnp.asarray(table, self.param_dtype))
      x = x + jnp.asarray(table, x.dtype)[None]
    if self.num_registers:
      reg = self.param("registers", _emb_init, (self.num_registers, d), self.param_dtype)
      reg = reg[None] + nn.Dense(d, kernel_init=_xavier, name="register_proj", **kw)(c)[:, None]
      x = jnp.concatenate([x, reg.astype(x.dtype)], axis=1)

    rope_pos = None
    if self.rope:  # registers sit at grid position (0, 0): angle 0, i.e. not rotated
      rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
      pad = np.zeros(self.num_registers)
      rope_pos = (jnp.asarray(np.concatenate([rows.reshape(-1), pad])),
                  jnp.asarray(np.concatenate([cols.reshape(-1), pad])))

    block_cls = nn.remat(DiTBlock) if self.remat else DiTBlock
    for i in range(self.depth):
      x = block_cls(d, self.heads, self.mlp_ratio, self.norm, self.mlp, self.qk_norm,
                    self.rope_base, name=f"blocks_{i}", **kw)(x, c, rope_pos)

    # Final layer: adaLN (shift, scale) + zero-initialized linear read-out (DiT).
    shift, scale = jnp.split(nn.Dense(2 * d, kernel_init=_zeros, name="final_adaLN", **kw)(
        nn.silu(c))[:, None, :].astype(x.dtype), 2, axis=-1)
    x = _modulate(_norm(self.norm, "final_norm", **kw)(x[:, : gh * gw]), shift, scale)
    x = nn.Dense(p * p * ch, kernel_init=_zeros, name="final_linear", **kw)(x)
    x = x.reshape(b, gh, gw, p, p, ch).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, ch)
    return x.astype(jnp.float32)
