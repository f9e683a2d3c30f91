"""Feature-space drift losses with a frozen encoder (Deng et al. §3.4 / App. A.5; Secretly-SM G.1).

Deng et al. compute the drift loss not on pixels but on several feature *streams* of a frozen
self-supervised encoder (multi-scale activations of an MAE ResNet), one drift problem per
stream, and sum the losses; Secretly-SM App. G.1 does the same with a frozen MAE ResNet-18
("multi-scale activations at conv1, layer1-layer4 [...]; the drift loss is computed
independently on each stream and summed").

Here a *feature extractor* is any pure function ``images [B, H, W, C] -> {name: [B, D_s]}``
(:class:`FeatureExtractor`). It is applied to generated images (gradients flow through it to
the generator; its own parameters are constants, i.e. frozen) and to real images. The
class-conditional training task (:mod:`drifting_jax.training.tasks.images`) treats every stream as its own drift
problem per class group, with its own kernel-width normalization state, and sums the losses.

:func:`make_feature_extractor` builds the bundled extractors: ``"pixels"`` (one stream, the
flattened image — the default pixel-space loss of Franz et al. §5.1) and ``"random_conv"``
(a small randomly initialised, frozen conv net :class:`ConvFeatureEncoder`; a stand-in for a
pretrained encoder in tests and CPU experiments, not a paper model). A pretrained encoder
plugs in through :func:`from_flax`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ConvFeatureEncoder", "FeatureExtractor", "from_flax", "make_feature_extractor",
           "pixel_extractor", "FEATURE_ENCODERS"]

FEATURE_ENCODERS = ("pixels", "random_conv")


class FeatureExtractor(NamedTuple):
  """A frozen map from images to named feature streams.

  Attributes:
    apply: ``images [B, H, W, C] -> {name: [B, D_s]}`` (pure, jittable, differentiable in the
      images; parameters are closed over and receive no gradient).
    names: stream names, in the order the losses are summed.
  """

  apply: Callable[[jax.Array], dict[str, jax.Array]]
  names: tuple[str, ...]


def _flatten(images: jax.Array) -> jax.Array:
  return images.reshape(images.shape[0], -1).astype(jnp.float32)


def pixel_extractor() -> FeatureExtractor:
  """The pixel-space "extractor": one stream ``"pixels"`` = flattened images ``[B, H·W·C]``."""
  return FeatureExtractor(lambda images: {"pixels": _flatten(images)}, ("pixels",))


class ConvFeatureEncoder(nn.Module):
  """Small conv encoder returning per-layer pooled features (Deng et al. App. A.5 style).

  Each stage is a stride-2 3×3 conv + GELU. Per stage ``i`` two streams are returned:
  ``conv{i}_mean`` (global average pool, ``[B, c_i]``) and ``conv{i}_grid`` (2×2 average
  pooling of the feature map, flattened, ``[B, 4 c_i]``), mirroring Deng et al.'s global and
  coarse-spatial statistics of each feature map.

  Attributes:
    channels: output channels of the stages.
  """

  channels: Sequence[int] = (16, 32, 64)

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """``images [B, H, W, C]`` -> ``{stream: [B, D_s]}`` float32."""
    h = images.astype(jnp.float32)
    out = {}
    for i, c in enumerate(self.channels):
      h = nn.gelu(nn.Conv(int(c), (3, 3), strides=(2, 2), padding="SAME", name=f"conv{i}")(h))
      _, gh, gw, _ = h.shape
      out[f"conv{i}_mean"] = jnp.mean(h, axis=(1, 2))
      # 2x2 average pooling over the two halves of each axis (a 1-pixel axis is repeated).
      halves = lambda n: ((0, max(n // 2, 1)), (n // 2 if n > 1 else 0, n))
      cells = [jnp.mean(h[:, r0:r1, c0:c1], axis=(1, 2))
               for r0, r1 in halves(gh) for c0, c1 in halves(gw)]
      out[f"conv{i}_grid"] = jnp.concatenate(cells, axis=-1)
    return out


def from_flax(module: nn.Module, variables: Any, *, include_pixels: bool = False,
              example: jax.Array | None = None) -> FeatureExtractor:
  """Wraps a frozen flax encoder ``module.apply(variables, images) -> {name: [B, ...]}``.

  Streams with trailing axes beyond ``[B, D]`` are flattened. The variables are constants of
  the returned function (no gradient reaches them).

  Args:
    module: the encoder.
    variables: its (pretrained or random) variables.
    include_pixels: also return the flattened images as stream ``"pixels"`` (Deng et al. use
      the encoder input as one more feature set).
    example: optional ``[B, H, W, C]`` images used to discover the stream names (required
      when ``module`` is not a :class:`ConvFeatureEncoder`).

  Returns:
    The :class:`FeatureExtractor`.
  """
  variables = jax.tree_util.tree_map(jax.lax.stop_gradient, variables)

  def apply(images):
    feats = module.apply(variables, images)
    if not isinstance(feats, Mapping):
      raise ValueError(f"the encoder must return a dict of streams, got {type(feats)}.")
    out = {k: _flatten(v) for k, v in feats.items()}
    if include_pixels:
      out["pixels"] = _flatten(images)
    return out

  if example is None:
    if not isinstance(module, ConvFeatureEncoder):
      raise ValueError("`example` images are needed to list the streams of a custom encoder.")
    names = tuple(f"conv{i}_{kind}" for i in range(len(module.channels))
                  for kind in ("mean", "grid"))
    names += ("pixels",) if include_pixels else ()
  else:
    names = tuple(jax.eval_shape(apply, example).keys())
  return FeatureExtractor(apply, names)


def make_feature_extractor(name: str | None, *, image_shape: Sequence[int], seed: int = 0,
                           channels: Sequence[int] = (16, 32, 64),
                           include_pixels: bool = False) -> FeatureExtractor:
  """Builds a bundled extractor by name.

  Args:
    name: ``None`` or ``"pixels"`` (pixel-space loss) or ``"random_conv"``
      (:class:`ConvFeatureEncoder` with random weights from ``seed``, frozen).
    image_shape: ``(H, W, C)`` of the images.
    seed: initialisation seed of ``random_conv``.
    channels: stage widths of ``random_conv``.
    include_pixels: add the pixel stream to ``random_conv``'s streams.

  Returns:
    The :class:`FeatureExtractor`.

  Raises:
    ValueError: unknown ``name`` or bad ``channels`` / ``image_shape``.
  """
  if name is None or name == "pixels":
    return pixel_extractor()
  if name not in FEATURE_ENCODERS:
    raise ValueError(f"`feature_encoder` must be None or one of {FEATURE_ENCODERS}, "
                     f"got {name!r}.")
  image_shape = tuple(int(d) for d in image_shape)
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"`image_shape` must be (H, W, C), got {image_shape}.")
  channels = tuple(int(c) for c in channels)
  if not channels or min(channels) < 1:
    raise ValueError(f"`channels` must be a non-empty sequence of positive ints, got {channels}.")
  module = ConvFeatureEncoder(channels=channels)
  variables = jax.jit(module.init)(jax.random.PRNGKey(seed),
                                   jnp.zeros((1, *image_shape), jnp.float32))
  return from_flax(module, variables, include_pixels=include_pixels)
