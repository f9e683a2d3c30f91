"""Feature extractors for Fréchet distance and precision/recall: a small CNN classifier and
InceptionV3 (pool3) with user-supplied weights.

**Two FIDs, not comparable.** The *standard* FID (Heusel et al. 2017) is the Fréchet distance
of 2048-d pool3 features of the TF-FID InceptionV3 on 299x299 RGB images; published numbers
(e.g. ImageNet FIDs in Deng et al. and Secretly-SM) use those weights. This library does
not ship them: :func:`load_inception_params` reads a file the user converts once (key layout
below). For MNIST-scale experiments we instead report **"FID (classifier features)"**
(:data:`CLASSIFIER_FID_NAME`): the same Fréchet distance on the penultimate-layer features
of a small CNN trained on the dataset's labels (:class:`ClassifierCNN`). Its scale depends
on that network and its training run; it is **not** comparable to Inception FID, nor to
classifier FIDs computed with other networks or checkpoints. Always name the metric with
the classifier checkpoint it used.

Images everywhere are ``[N, H, W, C]`` float32 in ``[-1, 1]`` (the convention of
:mod:`drifting_jax.data.images`).
"""

from __future__ import annotations

import functools
import os
import pathlib
import pickle
import time
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from drifting_jax.metrics.frechet import frechet_distance_from_features

__all__ = [
    "CLASSIFIER_FID_NAME", "ClassifierCNN", "InceptionV3", "classifier_accuracy",
    "classifier_features", "classifier_fid", "inception_features",
    "inception_variable_shapes", "inception_variables_from_state_dict", "load_classifier", "load_inception_params",
    "save_classifier", "train_classifier",
]

CLASSIFIER_FID_NAME = "FID (classifier features)"
Params = Any


def _check_images(name: str, images) -> None:
  if np.ndim(images) != 4:
    raise ValueError(f"`{name}` must be [N, H, W, C] images, got shape {np.shape(images)}.")
  if np.shape(images)[0] < 1:
    raise ValueError(f"`{name}` must contain at least one image, got shape {np.shape(images)}.")
  if not bool(np.all(np.isfinite(np.asarray(images)))):
    raise ValueError(f"`{name}` contains NaN or inf values.")


def _batched(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
  """Applies a jitted ``fn`` to ``x`` in fixed-size batches (last one padded) -> numpy."""
  if int(batch_size) < 1:
    raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
  n = x.shape[0]
  b = min(int(batch_size), n)
  out = []
  for i in range(0, n, b):
    chunk = x[i:i + b]
    pad = b - chunk.shape[0]
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    out.append(np.asarray(fn(jnp.asarray(chunk)))[:b - pad])
  return np.concatenate(out)


# ============================================================================ classifier


class ClassifierCNN(nn.Module):
  """Small CNN classifier whose penultimate layer is the feature space.

  ``[Conv 3x3 (c) -> ReLU -> MaxPool 2x2] for c in channels -> flatten -> Dense(feature_dim)
  -> ReLU`` (= features) ``-> Dense(num_classes)`` (= logits). Works for any ``H x W x C``
  input; the trained weights are tied to the ``H, W, C`` they were trained on.

  Attributes:
    num_classes: number of classes.
    channels: conv channels per stage (each stage halves H and W, rounding down).
    feature_dim: width of the feature layer.
  """

  num_classes: int = 10
  channels: tuple[int, ...] = (16, 32)
  feature_dim: int = 128

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``images [B, H, W, C]`` in ``[-1, 1]`` -> ``(logits [B, classes], features [B, F])``."""
    x = images
    for c in self.channels:
      x = nn.relu(nn.Conv(c, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    feats = nn.relu(nn.Dense(self.feature_dim)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(feats), feats


def _unwrap(params: Params) -> dict:
  """Accepts the bare parameter tree or ``{"params": tree}``."""
  if not isinstance(params, Mapping):
    raise ValueError(f"`params` must be a mapping of parameters, got {type(params).__name__}.")
  return dict(params["params"] if "params" in params else params)


def _model_from_params(params: Params, images_shape=None) -> ClassifierCNN:
  """Rebuilds the :class:`ClassifierCNN` that owns ``params`` (architecture from shapes)."""
  p = _unwrap(params)
  n_conv = sum(1 for k in p if k.startswith("Conv_"))
  if n_conv == 0 or "Dense_0" not in p or "Dense_1" not in p:
    raise ValueError(f"`params` is not a ClassifierCNN parameter tree (keys {sorted(p)}).")
  convs = [np.shape(p[f"Conv_{i}"]["kernel"]) for i in range(n_conv)]
  dense_in, feature_dim = np.shape(p["Dense_0"]["kernel"])
  model = ClassifierCNN(num_classes=int(np.shape(p["Dense_1"]["kernel"])[1]),
                        channels=tuple(int(s[-1]) for s in convs), feature_dim=int(feature_dim))
  if images_shape is not None:
    _, h, w, c = images_shape
    for _ in convs:
      h, w = h // 2, w // 2
    if c != convs[0][2] or h * w * convs[-1][-1] != dense_in:
      raise ValueError(f"`images` of shape {tuple(images_shape)} do not fit this classifier "
                       f"(trained on {convs[0][2]}-channel images whose feature map flattens "
                       f"to {dense_in}).")
  return model


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: ClassifierCNN, params: Params, images: jax.Array):
  return model.apply({"params": params}, images)


def classifier_features(params: Params, images, *, batch_size: int = 1000) -> np.ndarray:
  """Penultimate-layer features of a trained :class:`ClassifierCNN`.

  Args:
    params: classifier parameters (from :func:`train_classifier` or :func:`load_classifier`);
      the architecture is inferred from their shapes.
    images: ``[N, H, W, C]`` images in ``[-1, 1]`` of the size the classifier was trained on.
    batch_size: images per forward pass.

  Returns:
    ``[N, feature_dim]`` float32 features (post-ReLU).

  Raises:
    ValueError: if ``images`` has the wrong rank/size for the classifier or is not finite.
  """
  _check_images("images", images)
  model = _model_from_params(params, np.shape(images))
  p = _unwrap(params)
  return _batched(lambda x: _apply(model, p, x)[1], np.asarray(images, np.float32), batch_size)


def classifier_accuracy(params: Params, images, labels, *, batch_size: int = 1000) -> float:
  """Top-1 accuracy of the classifier on ``images [N, H, W, C]``, ``labels [N]``."""
  _check_images("images", images)
  if np.shape(labels) != (np.shape(images)[0],):
    raise ValueError(f"`labels` must have shape [{np.shape(images)[0]}], got {np.shape(labels)}.")
  model = _model_from_params(params, np.shape(images))
  p = _unwrap(params)
  logits = _batched(lambda x: _apply(model, p, x)[0], np.asarray(images, np.float32),
                    batch_size)
  return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def classifier_fid(params: Params, real_images, fake_images, *,
                   batch_size: int = 1000) -> jax.Array:
  """The "FID (classifier features)" metric: Fréchet distance of :func:`classifier_features`.

  Not comparable to Inception FID (see the module docstring).

  Args:
    params: classifier parameters.
    real_images: ``[N, H, W, C]`` real images in ``[-1, 1]``, ``N >= 2``.
    fake_images: ``[M, H, W, C]`` generated images, ``M >= 2``.
    batch_size: images per forward pass.

  Returns:
    Scalar Fréchet distance of the two feature sets.
  """
  return frechet_distance_from_features(
      classifier_features(params, real_images, batch_size=batch_size),
      classifier_features(params, fake_images, batch_size=batch_size))


def train_classifier(dataset, *, steps: int = 1500, batch_size: int = 128, seed: int = 0,
                     learning_rate: float = 1e-3, test_dataset=None,
                     channels: tuple[int, ...] = (16, 32), feature_dim: int = 128,
                     log_every: int = 0) -> tuple[Params, float]:
  """Trains a :class:`ClassifierCNN` with Adam (cosine-decayed learning rate) and softmax
  cross-entropy on random minibatches.

  Args:
    dataset: a :class:`drifting_jax.data.images.Dataset` (``images [N, H, W, C]`` in
      ``[-1, 1]``, ``labels [N]``, ``num_classes``).
    steps: optimizer steps.
    batch_size: images per step (sampled with replacement across steps, without within).
    seed: seeds initialization, minibatch order and the hold-out split.
    learning_rate: peak Adam learning rate.
    test_dataset: held-out data for the reported accuracy. If ``None``, a seeded 10% of
      ``dataset`` is held out (not trained on) and used instead.
    channels: conv channels per stage.
    feature_dim: width of the feature layer.
    log_every: print loss every this many steps (0: silent).

  Returns:
    ``(params, test_accuracy)``: the parameter tree (a dict; pass it to
    :func:`classifier_features` / :func:`save_classifier`) and the top-1 accuracy.

  Raises:
    ValueError: on non-positive ``steps`` / ``batch_size`` or malformed data.
  """
  for name, v in (("steps", steps), ("batch_size", batch_size)):
    if int(v) != v or v < 1:
      raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
  images = np.asarray(dataset.images, np.float32)
  labels = np.asarray(dataset.labels, np.int32)
  _check_images("dataset.images", images)
  rng = np.random.default_rng(seed)
  if test_dataset is None:
    perm = rng.permutation(images.shape[0])
    n_test = max(1, images.shape[0] // 10)
    test_images, test_labels = images[perm[:n_test]], labels[perm[:n_test]]
    images, labels = images[perm[n_test:]], labels[perm[n_test:]]
  else:
    test_images, test_labels = test_dataset.images, test_dataset.labels
  model = ClassifierCNN(num_classes=int(dataset.num_classes), channels=tuple(channels),
                        feature_dim=int(feature_dim))
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + images.shape[1:]))["params"]
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, int(steps)))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits, _ = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  n, b = images.shape[0], min(int(batch_size), images.shape[0])
  order, pos, start = rng.permutation(n), 0, time.perf_counter()
  for i in range(int(steps)):
    if pos + b > n:
      order, pos = rng.permutation(n), 0
    idx = order[pos:pos + b]
    pos += b
    params, opt_state, loss = step(params, opt_state, images[idx], labels[idx])
    if log_every and (i + 1) % log_every == 0:
      print(f"step {i + 1}/{steps}  loss {float(loss):.4f}  "
            f"{(i + 1) / (time.perf_counter() - start):.1f} steps/s", flush=True)
  params = jax.device_get(params)
  return params, classifier_accuracy(params, test_images, test_labels)


def save_classifier(path: str | os.PathLike, params: Params) -> pathlib.Path:
  """Saves classifier weights as an uncompressed ``.npz``.

  Keys are the flattened parameter paths joined by ``/`` (``"Conv_0/kernel"``,
  ``"Conv_0/bias"``, ..., ``"Dense_1/bias"``), values float32 arrays in Flax layout
  (conv kernels ``[3, 3, C_in, C_out]``, dense kernels ``[in, out]``). The architecture is
  implied by the shapes, so nothing else is stored.
  """
  flat = traverse_util.flatten_dict(_unwrap(params), sep="/")
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz"
    np.savez(f, **{k: np.asarray(v, np.float32) for k, v in flat.items()})
  return path


def load_classifier(path: str | os.PathLike) -> Params:
  """Loads weights written by :func:`save_classifier` (validated as a ClassifierCNN tree)."""
  with np.load(path) as data:
    params = traverse_util.unflatten_dict({k: np.asarray(data[k]) for k in data.files}, sep="/")
  _model_from_params(params)
  return params


# ============================================================================ InceptionV3


class _BasicConv(nn.Module):
  """``Conv (no bias) -> BatchNorm (eps 1e-3, running stats) -> ReLU`` (torchvision's
  ``BasicConv2d``); ``pad`` is the symmetric (H, W) zero padding."""

  features: int
  kernel: tuple[int, int]
  strides: int = 1
  pad: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, strides=self.strides, use_bias=False,
                padding=((self.pad[0],) * 2, (self.pad[1],) * 2), name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg3(x):  # TF average pooling: padded zeros are not counted (FIDInception* patch)
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max3s2(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class _InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = _BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = _BasicConv(48, (1, 1), name="branch5x5_1")(x)
    b5 = _BasicConv(64, (5, 5), pad=(2, 2), name="branch5x5_2")(b5)
    b3 = _BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = _BasicConv(96, (3, 3), pad=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = _BasicConv(96, (3, 3), pad=(1, 1), name="branch3x3dbl_3")(b3)
    bp = _BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class _InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = _BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = _BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = _BasicConv(96, (3, 3), pad=(1, 1), name="branch3x3dbl_2")(bd)
    bd = _BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max3s2(x)], axis=-1)


class _InceptionC(nn.Module):
  c7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.c7
    b1 = _BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = _BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = _BasicConv(c7, (1, 7), pad=(0, 3), name="branch7x7_2")(b7)
    b7 = _BasicConv(192, (7, 1), pad=(3, 0), name="branch7x7_3")(b7)
    bd = _BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = _BasicConv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_2")(bd)
    bd = _BasicConv(c7, (1, 7), pad=(0, 3), name="branch7x7dbl_3")(bd)
    bd = _BasicConv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_4")(bd)
    bd = _BasicConv(192, (1, 7), pad=(0, 3), name="branch7x7dbl_5")(bd)
    bp = _BasicConv(192, (1, 1), name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class _InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = _BasicConv(192, (1, 1), name="branch3x3_1")(x)
    b3 = _BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = _BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = _BasicConv(192, (1, 7), pad=(0, 3), name="branch7x7x3_2")(b7)
    b7 = _BasicConv(192, (7, 1), pad=(3, 0), name="branch7x7x3_3")(b7)
    b7 = _BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max3s2(x)], axis=-1)


class _InceptionE(nn.Module):
  max_pool: bool  # Mixed_7c of the FID network max-pools its pool branch (FIDInceptionE_2)

  @nn.compact
  def __call__(self, x):
    b1 = _BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = _BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([_BasicConv(384, (1, 3), pad=(0, 1), name="branch3x3_2a")(b3),
                          _BasicConv(384, (3, 1), pad=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = _BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = _BasicConv(384, (3, 3), pad=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([_BasicConv(384, (1, 3), pad=(0, 1), name="branch3x3dbl_3a")(bd),
                          _BasicConv(384, (3, 1), pad=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    pooled = (nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))) if self.max_pool
              else _avg3(x))
    bp = _BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """The FID InceptionV3 up to pool3 (pytorch-fid's ``fid_inception_v3``), in Flax.

  ``images [N, H, W, C]`` in ``[-1, 1]`` (``C`` = 1 is repeated to RGB, ``C`` = 3 used as
  is) are bilinearly resized to 299x299 (half-pixel centres, no antialiasing: PyTorch's
  ``F.interpolate(..., mode="bilinear", align_corners=False)`` as in pytorch-fid), then
  go through ``Conv2d_1a_3x3 ... Mixed_7c`` and a global average pool: ``[N, 2048]``.
  Submodule names equal the PyTorch attribute names, so weights map one-to-one
  (:func:`inception_variables_from_state_dict`). pytorch-fid's ``[0, 1] -> [-1, 1]``
  input scaling is already our pixel convention. TF-FID resizes slightly differently, so
  scores match pytorch-fid's rather than TF's to within its documented small difference.

  Attributes:
    resize: resize inputs to 299x299 (set False only for inputs already 299x299).
  """

  resize: bool = True

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = images.astype(jnp.float32)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if self.resize:
      x = jax.image.resize(x, (x.shape[0], 299, 299, 3), "bilinear", antialias=False)
    x = _BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = _BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = _BasicConv(64, (3, 3), pad=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max3s2(x)
    x = _BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = _BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max3s2(x)
    x = _InceptionA(32, name="Mixed_5b")(x)
    x = _InceptionA(64, name="Mixed_5c")(x)
    x = _InceptionA(64, name="Mixed_5d")(x)
    x = _InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = _InceptionC(c7, name=name)(x)
    x = _InceptionD(name="Mixed_7a")(x)
    x = _InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = _InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


@functools.lru_cache(maxsize=1)
def inception_variable_shapes() -> dict:
  """``{"params": ..., "batch_stats": ...}`` of ``jax.ShapeDtypeStruct`` for :class:`InceptionV3`
  (traced once with ``jax.eval_shape``, no FLOPs; the tree does not depend on image size)."""
  return dict(jax.eval_shape(InceptionV3(resize=False).init, jax.random.PRNGKey(0),
                             jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)))


# Flax leaf -> (PyTorch suffix, layout conversion).
_TORCH_KEYS = {
    ("params", "kernel"): ("weight", lambda w: np.transpose(w, (2, 3, 1, 0))),  # OIHW -> HWIO
    ("params", "scale"): ("weight", lambda w: w),
    ("params", "bias"): ("bias", lambda w: w),
    ("batch_stats", "mean"): ("running_mean", lambda w: w),
    ("batch_stats", "var"): ("running_var", lambda w: w),
}


def inception_variables_from_state_dict(state_dict: dict[str, Any]) -> dict:
  """Converts a pytorch-fid InceptionV3 state dict (as numpy arrays) to Flax variables.

  Expected keys are PyTorch's ``state_dict()`` names of ``pytorch_fid.inception.
  fid_inception_v3()`` (the file ``pt_inception-2015-12-05-6726825d.pth``)::

      <block>.conv.weight        [C_out, C_in, kh, kw]   e.g. "Conv2d_1a_3x3.conv.weight"
      <block>.bn.weight          [C_out]                 BatchNorm gamma
      <block>.bn.bias            [C_out]                 BatchNorm beta
      <block>.bn.running_mean    [C_out]
      <block>.bn.running_var     [C_out]

  for every ``<block>`` in ``Conv2d_1a_3x3, Conv2d_2a_3x3, Conv2d_2b_3x3, Conv2d_3b_1x1,
  Conv2d_4a_3x3`` and ``Mixed_5b.branch1x1``, ..., ``Mixed_7c.branch_pool`` (94 conv
  blocks, 470 arrays, 21.8M parameters). Other keys (``fc.*``, ``*.num_batches_tracked``,
  ``AuxLogits.*``) are ignored.

  Args:
    state_dict: mapping from those names to array-likes.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` for :class:`InceptionV3`.

  Raises:
    ValueError: listing missing keys or arrays of the wrong shape.
  """
  flat = traverse_util.flatten_dict(inception_variable_shapes())
  out, missing, bad = {}, [], []
  for path, leaf in flat.items():
    suffix, convert = _TORCH_KEYS[(path[0], path[-1])]
    key = ".".join(path[1:-1] + (suffix,))
    if key not in state_dict:
      missing.append(key)
      continue
    value = convert(np.asarray(state_dict[key], np.float32))
    if value.shape != leaf.shape:
      bad.append(f"{key}: {np.shape(state_dict[key])}")
      continue
    out[path] = value
  if missing or bad:
    raise ValueError(f"`state_dict` is not a pytorch-fid InceptionV3: {len(missing)} missing "
                     f"keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                     f"{len(bad)} wrong shapes {bad[:5]}.")
  return traverse_util.unflatten_dict(out)


def load_inception_params(path: str | os.PathLike) -> dict:
  """Loads InceptionV3 weights from a ``.npz`` or a pickled ``dict`` of numpy arrays.

  The file must hold the pytorch-fid state dict with the key layout documented in
  :func:`inception_variables_from_state_dict`. To make one (needs torch, once)::

      import numpy as np, torch
      sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
      np.savez("pt_inception.npz", **{k: v.numpy() for k, v in sd.items()})

  (the ``.pth`` is pytorch-fid's ``FID_WEIGHTS_URL``: the TF-FID graph weights ported to
  PyTorch).

  Args:
    path: ``.npz`` file, or any other file name for a pickle.

  Returns:
    Flax variables for :class:`InceptionV3` / :func:`inception_features`.
  """
  path = pathlib.Path(path)
  if path.suffix == ".npz":
    with np.load(path) as data:
      state = {k: data[k] for k in data.files}
  else:
    with open(path, "rb") as f:
      state = pickle.load(f)
    if not isinstance(state, dict):
      raise ValueError(f"`path` {path} must hold a dict of arrays, got {type(state).__name__}.")
  return inception_variables_from_state_dict(state)


@jax.jit
def _inception_apply(variables, images):
  return InceptionV3().apply(variables, images)


def inception_features(variables: dict, images, *, batch_size: int = 50) -> np.ndarray:
  """pool3 features of :class:`InceptionV3` (standard FID features, ~6 GFLOP per image).

  Args:
    variables: from :func:`load_inception_params`.
    images: ``[N, H, W, C]`` in ``[-1, 1]``, ``C`` in ``{1, 3}``; resized to 299x299.
    batch_size: images per forward pass.

  Returns:
    ``[N, 2048]`` float32 features; feed two sets to
    :func:`~drifting_jax.metrics.frechet.frechet_distance_from_features` for FID.
  """
  _check_images("images", images)
  if np.shape(images)[-1] not in (1, 3):
    raise ValueError(f"`images` must have 1 or 3 channels, got shape {np.shape(images)}.")
  return _batched(lambda x: _inception_apply(variables, x), np.asarray(images, np.float32),
                  batch_size)
