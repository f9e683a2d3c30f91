"""Deng et al.'s feature encoder: a GroupNorm ResNet trained as a masked autoencoder.

Deng et al. (§3.4, App. A.5) compute the drift loss on multi-scale features of a frozen
self-supervised encoder: a ResNet with GroupNorm and basic residual blocks (the official
layout has ``[3, 4, 6, 3]`` blocks per stage), an optional input patchify, and a decoder that
upsamples back to the input (U-Net style: bilinear upsampling, concatenated skip
connections), trained to reconstruct the full input from an input whose ``2 × 2`` patches
were zeroed with probability 0.5; a linear classification head on the pooled last stage can
be trained with it (their best encoder is fine-tuned with one).

:class:`MAEResNet` is that network. ``apply(variables, images)`` returns the reconstruction,
the class logits (when ``num_classes > 0``) and the activations every stage and every second
residual block produce (``decode=False`` skips the decoder: what feature extraction needs).
:func:`mask_patches` draws the masked input and :func:`mae_loss` is the training objective.
Presets (:data:`MAE_PRESETS`): ``mae_mnist_cpu`` (16/32/64 channels, one block per stage,
for 28×28 images on a CPU) and ``mae_resnet_official`` (64/128/256/512, ``[3, 4, 6, 3]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from drifting_jax import _validation

__all__ = ["MAEResNet", "MAE_PRESETS", "get_encoder", "mae_loss", "mask_patches"]


def _groups(channels: int, groups: int) -> int:
  """The largest group count ``<= groups`` that divides ``channels``."""
  g = min(groups, channels)
  while channels % g:
    g -= 1
  return g


class BasicBlock(nn.Module):
  """ResNet basic block with GroupNorm: ``relu(x' + GN(conv(relu(GN(conv(x))))))``, where
  ``x'`` is ``x`` or its strided 1×1 projection when the shape changes."""

  features: int
  strides: int = 1
  groups: int = 8

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    g = _groups(self.features, self.groups)
    y = nn.Conv(self.features, (3, 3), strides=self.strides, padding="SAME", use_bias=False)(x)
    y = nn.relu(nn.GroupNorm(num_groups=g)(y))
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y)
    y = nn.GroupNorm(num_groups=g, scale_init=nn.initializers.zeros)(y)  # zero-init residual
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), strides=self.strides, use_bias=False,
                  name="shortcut")(x)
      x = nn.GroupNorm(num_groups=g, name="shortcut_norm")(x)
    return nn.relu(x + y)


def _space_to_depth(x: jax.Array, p: int) -> jax.Array:
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // p, w // p, p * p * c)


def _depth_to_space(x: jax.Array, p: int) -> jax.Array:
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, p, p, c // (p * p)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * p, w * p, c // (p * p))


class MAEResNet(nn.Module):
  """GroupNorm ResNet encoder with a U-Net decoder and an optional class head.

  Call as ``model.apply(variables, images [B, H, W, C], decode=True)``; returns a dict with
  ``"recon"`` ``[B, H, W, C]`` (when ``decode``), ``"logits"`` ``[B, num_classes]`` (when
  ``num_classes > 0``) and ``"activations"``: ``{name: [B, h, w, c]}`` for every stage
  (``stage{i}``; stage 0 at the input resolution divided by ``patch_size``, each later stage
  halving it) and every second residual block inside a stage (``stage{i}_block{j}``, ``j``
  odd, not the stage's last block).

  Attributes:
    widths: channels of the stages.
    blocks: residual blocks per stage (the first block of every stage after the first
      downsamples by 2).
    patch_size: input patchify (space-to-depth) factor ``p`` (1: none; must divide H, W).
    groups: GroupNorm groups (at most; reduced to a divisor of the channels).
    num_classes: linear classification head on the pooled last stage (0: none).
    out_channels: reconstructed channels (None: the input's).
  """

  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (3, 4, 6, 3)
  patch_size: int = 1
  groups: int = 8
  num_classes: int = 0
  out_channels: int | None = None

  def check_config(self, image_shape: Sequence[int] | None = None) -> None:
    """``ValueError`` naming the attribute or ``images`` when they do not fit."""
    widths, blocks = tuple(self.widths), tuple(self.blocks)
    _validation.check_fields(self, positive=("groups",), nonneg=("num_classes",))
    if self.out_channels is not None:
      _validation.check_int("out_channels", self.out_channels, minimum=1)
    if (not widths or len(widths) != len(blocks)
        or not all(_validation.is_int(v) and v >= 1 for v in widths + blocks)):
      raise ValueError(f"`widths` and `blocks` must be non-empty sequences of positive ints "
                       f"of one length, got {widths} and {blocks}.")
    if not _validation.is_int(self.patch_size) or self.patch_size < 1:
      raise ValueError(f"`patch_size` must be a positive int, got {self.patch_size!r}.")
    if image_shape is not None:
      shape = tuple(image_shape)
      if len(shape) != 4 or shape[1] % self.patch_size or shape[2] % self.patch_size:
        raise ValueError(f"`images` must have shape [B, H, W, C] with H and W divisible by "
                         f"patch_size={self.patch_size}, got {shape}.")

  @nn.compact
  def __call__(self, images: jax.Array, *, decode: bool = True) -> dict[str, Any]:
    self.check_config(np.shape(images))
    x = jnp.asarray(images, jnp.float32)
    channels = x.shape[-1]
    p = self.patch_size
    if p > 1:
      x = _space_to_depth(x, p)
    h = nn.Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False, name="stem")(x)
    h = nn.relu(nn.GroupNorm(num_groups=_groups(self.widths[0], self.groups),
                             name="stem_norm")(h))
    acts: dict[str, jax.Array] = {}
    skips = []
    for i, (width, n) in enumerate(zip(self.widths, self.blocks)):
      for j in range(n):
        h = BasicBlock(width, strides=2 if (i > 0 and j == 0) else 1, groups=self.groups,
                       name=f"stage{i}_block{j}")(h)
        if j % 2 == 1 and j != n - 1:
          acts[f"stage{i}_block{j}"] = h
      acts[f"stage{i}"] = h
      skips.append(h)
    out: dict[str, Any] = {"activations": acts}
    if self.num_classes:
      out["logits"] = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                               name="head")(jnp.mean(h, axis=(1, 2)))
    if decode:
      d = skips[-1]
      for i in range(len(skips) - 2, -1, -1):
        skip = skips[i]
        d = jax.image.resize(d, (d.shape[0], *skip.shape[1:3], d.shape[-1]), "bilinear")
        d = jnp.concatenate([d, skip], axis=-1)
        d = nn.Conv(self.widths[i], (3, 3), padding="SAME", use_bias=False,
                    name=f"decoder{i}")(d)
        d = nn.relu(nn.GroupNorm(num_groups=_groups(self.widths[i], self.groups),
                                 name=f"decoder{i}_norm")(d))
      c_out = self.out_channels or channels
      r = nn.Conv(c_out * p * p, (3, 3), padding="SAME", name="readout")(d)
      out["recon"] = _depth_to_space(r, p) if p > 1 else r
    return out


MAE_PRESETS: dict[str, dict[str, Any]] = {
    # 28×28 on 2 CPU cores: stages at 28, 14, 7
    "mae_mnist_cpu": dict(widths=(16, 32, 64), blocks=(1, 1, 1), patch_size=1, groups=8),
    # Deng et al.'s layout (accelerators)
    "mae_resnet_official": dict(widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3),
                                patch_size=1, groups=32),
}


def get_encoder(name: str, **overrides: Any) -> MAEResNet:
  """A preset :class:`MAEResNet` with attributes overridden by keyword.

  Raises:
    ValueError: unknown ``name`` or override, or an invalid configuration.
  """
  if name not in MAE_PRESETS:
    raise ValueError(f"`encoder` must be one of {sorted(MAE_PRESETS)}, got {name!r}.")
  fields = {f.name for f in dataclasses.fields(MAEResNet)} - {"parent", "name"}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown override(s) {unknown} for `{name}`; valid: {sorted(fields)}.")
  model = MAEResNet(**{**MAE_PRESETS[name], **overrides})
  model.check_config()
  return model


def mask_patches(key: jax.Array, images: jax.Array, *, patch: int = 2,
                 prob: float = 0.5) -> tuple[jax.Array, jax.Array]:
  """Zeroes each ``patch × patch`` patch of ``images [B, H, W, C]`` with probability ``prob``.

  Returns:
    ``(masked [B, H, W, C], mask [B, H, W, 1])`` with ``mask`` 1 where pixels were zeroed.

  Raises:
    ValueError: ``patch`` does not divide H and W, or ``prob`` is not in [0, 1].
  """
  b, h, w, _ = np.shape(images)
  if not _validation.is_int(patch) or patch < 1 or h % patch or w % patch:
    raise ValueError(f"`patch` must be a positive int dividing the image size {h}×{w}, "
                     f"got {patch!r}.")
  if not (_validation.is_numeric(prob) and np.size(prob) == 1
          and 0.0 <= float(np.asarray(prob)) <= 1.0):
    raise ValueError(f"`prob` must lie in [0, 1], got {prob!r}.")
  drop = jax.random.bernoulli(key, float(np.asarray(prob)), (b, h // patch, w // patch, 1))
  mask = jnp.repeat(jnp.repeat(drop, patch, axis=1), patch, axis=2).astype(jnp.float32)
  return images * (1.0 - mask), mask


def mae_loss(model: MAEResNet, variables: Any, images: jax.Array, labels: jax.Array | None,
             key: jax.Array, *, patch: int = 2, prob: float = 0.5,
             cls_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Masked-reconstruction loss (plus ``cls_weight`` × cross-entropy of the class head).

  ``recon_loss`` is the mean squared error of the reconstruction of the *full* input from
  the masked one (:func:`mask_patches`); with ``cls_weight > 0`` the head's softmax
  cross-entropy on the *unmasked* images is added.

  Returns:
    ``(loss, metrics)``: ``recon_loss``, ``masked_recon_loss`` (masked pixels only) and,
    with a class head, ``cls_loss`` and ``cls_accuracy``.
  """
  masked, mask = mask_patches(key, images, patch=patch, prob=prob)
  out = model.apply(variables, masked)
  err = (out["recon"] - images) ** 2
  recon = jnp.mean(err)
  metrics = {"recon_loss": recon,
             "masked_recon_loss": jnp.sum(err * mask) / jnp.maximum(
                 jnp.sum(mask) * images.shape[-1], 1.0)}
  loss = recon
  if model.num_classes and labels is not None:
    logits = model.apply(variables, images, decode=False)["logits"] if cls_weight else out[
        "logits"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    metrics["cls_loss"] = jnp.mean(ce)
    metrics["cls_accuracy"] = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    loss = loss + cls_weight * metrics["cls_loss"]
  return loss, metrics
