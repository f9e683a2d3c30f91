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

__all__ = ["ConvFeatureEncoder", "DEFAULT_PATCH_SIZES", "FEATURE_SETS", "FeatureExtractor",
           "from_flax",
           "make_feature_extractor", "multiscale_features", "mae_extractor", "pixel_extractor",
           "FEATURE_ENCODERS"]

FEATURE_ENCODERS = ("pixels", "random_conv", "mae_random")
# Deng et al.'s feature sets of an encoder stage (official `get_activations`)
FEATURE_SETS = ("loc", "mean_std", "patch_mean_std", "blocks", "input_rms")
#: the official patch sizes of ``"patch_mean_std"`` (each used where it divides the map)
DEFAULT_PATCH_SIZES = (2, 4)


class FeatureExtractor(NamedTuple):
  """A frozen map from images to named feature streams.

  Attributes:
    apply: ``images [B, H, W, C] -> {name: [B, D_s] or [B, L_s, D_s]}`` (pure, jittable,
      differentiable in the images; parameters are closed over and receive no gradient). A
      stream with a location axis ``L_s`` is ``L_s`` drift problems, one per location, each
      over the batch (Deng et al.'s per-location features).
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


def _std(x: jax.Array, axis) -> jax.Array:
  # sqrt(var + eps): a finite gradient where all values agree (constant maps)
  return jnp.sqrt(jnp.var(x, axis=axis) + 1e-6)


def multiscale_features(activations: Mapping[str, jax.Array], images: jax.Array, *,
                        stages: Sequence[str], feature_sets: Sequence[str] | None = None,
                        patch_sizes: Sequence[int] | None = None) -> dict[str, jax.Array]:
  """Deng et al.'s multi-scale features of encoder activations (official ``get_activations``).

  For each stage output ``a [B, h, w, c]`` in ``stages``:

  * ``"loc"``: ``<stage>/loc`` ``[B, h·w, c]`` — every location its own drift problem;
  * ``"mean_std"``: ``<stage>/mean`` and ``<stage>/std`` ``[B, c]`` over the locations;
  * ``"patch_mean_std"``: ``<stage>/p<k>_mean`` and ``<stage>/p<k>_std`` ``[B, (h/k)(w/k), c]``
    over the ``k × k`` patches, for each ``k`` in ``patch_sizes`` that divides ``h`` and ``w``;
  * ``"blocks"``: ``<block>/mean`` and ``<block>/std`` ``[B, c]`` of every recorded residual
    block output of the stage (``<stage>_block<j>`` in ``activations``;
    :class:`~drifting_jax.models.mae.MAEResNet` records every second block that is not the
    stage's last, so a stage needs at least 3 blocks to have one);

  and ``"input_rms"``: ``input/rms`` ``[B, 1]``, the root-mean-square of each input image.

  Args:
    activations: ``{name: [B, h, w, c]}`` (e.g. :class:`~drifting_jax.models.mae.MAEResNet`'s).
    images: ``[B, H, W, C]`` the encoder's input.
    stages: the stage names to use.
    feature_sets: a subset of :data:`FEATURE_SETS` (default: all of them, without
      ``"blocks"`` when the selected stages record no block output and without
      ``"patch_mean_std"`` when no default patch size divides their maps).
    patch_sizes: patch sizes of ``"patch_mean_std"`` (default: those of
      :data:`DEFAULT_PATCH_SIZES` that divide the map of a selected stage — the official
      2×2 and 4×4 where they fit; given sizes must each divide one).

  Raises:
    ValueError: an unknown stage or feature set, a given patch size that divides none of the
      selected stages' maps (or ``"patch_mean_std"`` asked for where no default size does),
      or ``"blocks"`` asked for where no selected stage records a block output (it would
      add no stream).
  """
  stages = tuple(stages)
  missing = [s for s in stages if s not in activations]
  if missing or not stages:
    raise ValueError(f"`stages` must be non-empty names among {sorted(activations)}, got "
                     f"{tuple(stages)}.")
  blocks = {s: sorted((k for k in activations if k.startswith(f"{s}_block")),
                      key=lambda k: (len(k), k)) for s in stages}  # block3 before block11
  has_blocks = any(blocks.values())
  divides = lambda k: any(activations[s].shape[1] % k == 0 and activations[s].shape[2] % k == 0
                          for s in stages)
  explicit_patches = patch_sizes is not None
  patch_sizes = (tuple(patch_sizes) if explicit_patches else
                 tuple(k for k in DEFAULT_PATCH_SIZES if divides(k)))
  if feature_sets is None:
    feature_sets = tuple(f for f in FEATURE_SETS if (f != "blocks" or has_blocks) and (
        f != "patch_mean_std" or patch_sizes))
  unknown = sorted(set(feature_sets) - set(FEATURE_SETS))
  if unknown or not feature_sets:
    raise ValueError(f"`feature_sets` must be a non-empty subset of {FEATURE_SETS}, got "
                     f"{tuple(feature_sets)}.")
  maps = {s: activations[s].shape[1:3] for s in stages}
  if "patch_mean_std" in feature_sets and not patch_sizes:
    raise ValueError(f"`patch_sizes`: none of the default sizes {DEFAULT_PATCH_SIZES} "
                     f"divides a selected stage's map ({maps}); pass `patch_sizes` dividing "
                     f"one, or drop 'patch_mean_std' from `feature_sets`.")
  if "blocks" in feature_sets and not has_blocks:
    raise ValueError(f"`feature_sets` asks for 'blocks', but none of the stages "
                     f"{tuple(stages)} records a block output (an MAEResNet stage needs at "
                     f"least 3 blocks); drop 'blocks' or use a deeper encoder.")
  if "patch_mean_std" in feature_sets:
    for k in patch_sizes:
      if not isinstance(k, int) or k < 2 or not divides(k):
        raise ValueError(f"`patch_sizes` must be ints >= 2 dividing the map of a selected "
                         f"stage ({maps}), got {k!r}.")
  out: dict[str, jax.Array] = {}
  for name in stages:
    a = activations[name].astype(jnp.float32)
    b, h, w, c = a.shape
    if "loc" in feature_sets:
      out[f"{name}/loc"] = a.reshape(b, h * w, c)
    if "mean_std" in feature_sets:
      out[f"{name}/mean"] = jnp.mean(a, axis=(1, 2))
      out[f"{name}/std"] = _std(a.reshape(b, h * w, c), 1)
    if "patch_mean_std" in feature_sets:
      for k in patch_sizes:
        if h % k or w % k:
          continue  # where the patch divides the map (official)
        cells = a.reshape(b, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5)
        cells = cells.reshape(b, (h // k) * (w // k), k * k, c)
        out[f"{name}/p{k}_mean"] = jnp.mean(cells, axis=2)
        out[f"{name}/p{k}_std"] = _std(cells, 2)
    if "blocks" in feature_sets:
      for block in blocks[name]:
        x = activations[block].astype(jnp.float32)
        out[f"{block}/mean"] = jnp.mean(x, axis=(1, 2))
        out[f"{block}/std"] = _std(x.reshape(x.shape[0], -1, x.shape[-1]), 1)
  if "input_rms" in feature_sets:
    x = jnp.asarray(images, jnp.float32)
    out["input/rms"] = jnp.sqrt(jnp.mean(x.reshape(x.shape[0], -1) ** 2, axis=1) + 1e-12)[:, None]
  return out


def mae_extractor(module: nn.Module, variables: Any, *, image_shape: Sequence[int],
                  stages: Sequence[str] | None = None,
                  feature_sets: Sequence[str] | None = None,
                  patch_sizes: Sequence[int] | None = None,
                  include_pixels: bool = False) -> FeatureExtractor:
  """The frozen multi-scale feature extractor of a :class:`~drifting_jax.models.mae.MAEResNet`.

  Args:
    module: the encoder.
    variables: its (trained or random) variables; constants of the extractor.
    image_shape: ``(H, W, C)`` of the images.
    stages: stage names (default: every ``stage<i>``).
    feature_sets: see :func:`multiscale_features`.
    patch_sizes: see :func:`multiscale_features`.
    include_pixels: add the flattened images as stream ``"pixels"``.

  Raises:
    ValueError: bad ``image_shape``, ``stages``, ``feature_sets`` or ``patch_sizes``.
  """
  image_shape = tuple(int(d) for d in image_shape)
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"`image_shape` must be (H, W, C), got {image_shape}.")
  variables = jax.tree_util.tree_map(jax.lax.stop_gradient, variables)
  example = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  acts = jax.eval_shape(lambda x: module.apply(variables, x, decode=False)["activations"],
                        example)
  if stages is None:
    stages = sorted(k for k in acts if "_block" not in k)
  stages = tuple(stages)
  feature_sets = None if feature_sets is None else tuple(feature_sets)
  patch_sizes = None if patch_sizes is None else tuple(patch_sizes)

  def apply(images):
    a = module.apply(variables, images, decode=False)["activations"]
    out = multiscale_features(a, images, stages=stages, feature_sets=feature_sets,
                              patch_sizes=patch_sizes)
    if include_pixels:
      out["pixels"] = _flatten(images)
    return out

  names = tuple(jax.eval_shape(apply, example).keys())
  return FeatureExtractor(apply, names)


def make_feature_extractor(name: str | None, *, image_shape: Sequence[int], seed: int = 0,
                           channels: Sequence[int] = (16, 32, 64),
                           include_pixels: bool = False, encoder: str = "mae_mnist_cpu",
                           encoder_overrides: Mapping[str, Any] | None = None,
                           **mae_options: Any) -> FeatureExtractor:
  """Builds a bundled extractor by name.

  Args:
    name: ``None`` or ``"pixels"`` (pixel-space loss), ``"random_conv"``
      (:class:`ConvFeatureEncoder` with random weights from ``seed``, frozen) or
      ``"mae_random"`` (the :class:`~drifting_jax.models.mae.MAEResNet` preset ``encoder``
      randomly initialised from ``seed`` and frozen: the control of a trained encoder,
      whose run directory plugs in through the training layer, ``"mae:<run dir>"``).
    image_shape: ``(H, W, C)`` of the images.
    seed: initialisation seed of the random encoders.
    channels: stage widths of ``random_conv``.
    include_pixels: add the pixel stream to the encoder's streams.
    encoder, encoder_overrides: the ``mae_random`` preset and its attribute overrides.
    **mae_options: ``stages``, ``feature_sets``, ``patch_sizes`` of :func:`mae_extractor`.

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
  if name == "mae_random":
    from drifting_jax.models.mae import get_encoder
    module = get_encoder(encoder, **dict(encoder_overrides or {}))
    variables = jax.jit(module.init)(jax.random.PRNGKey(seed),
                                     jnp.zeros((1, *image_shape), jnp.float32))
    return mae_extractor(module, variables, image_shape=image_shape,
                         include_pixels=include_pixels, **mae_options)
  if mae_options or encoder_overrides:
    raise ValueError(f"options {sorted(mae_options) + (['encoder_overrides'] if encoder_overrides else [])} "
                     f"apply to MAE encoders, not to {name!r}.")
  channels = tuple(int(c) for c in channels)
  if not channels or min(channels) < 1:
    raise ValueError(f"`channels` must be a non-empty sequence of positive ints, got {channels}.")
  module = ConvFeatureEncoder(channels=channels)
  variables = jax.jit(module.init)(jax.random.PRNGKey(seed),
                                   jnp.zeros((1, *image_shape), jnp.float32))
  return from_flax(module, variables, include_pixels=include_pixels)
