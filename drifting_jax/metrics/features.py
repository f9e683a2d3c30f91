"""The project's MNIST classifier as a fast feature extractor for sweeps ("FID (classifier
features)"), and the shared batching helper of the extractors.

**Two FIDs, not comparable.** The *standard* FID (Heusel et al. 2017) is the Fréchet distance
of 2048-d pool3 features of the TF-FID InceptionV3 on 299x299 RGB images; published numbers
(Franz et al., Deng et al., Secretly-SM) use it: :mod:`drifting_jax.metrics.inception`
(weights converted once by the user). As a fast proxy for sweeps we also report
**"FID (classifier features)"**
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
    "CLASSIFIER_FID_NAME", "ClassifierCNN", "classifier_accuracy", "classifier_features",
    "classifier_fid", "load_classifier", "save_classifier", "train_classifier",
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


def _batched(fn, x: np.ndarray, batch_size: int, *, progress: bool = False,
             desc: str = "features") -> Any:
  """Applies a jitted ``fn`` to ``x`` in fixed-size batches (last one padded) -> numpy: an
  array, or the pytree of arrays ``fn`` returns, each filled in place batch by batch."""
  if int(batch_size) < 1:
    raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
  n = x.shape[0]
  b = min(int(batch_size), n)
  out = None
  starts = range(0, n, b)
  if progress:
    from tqdm.auto import tqdm
    starts = tqdm(starts, desc=desc, unit="batch")
  for i in starts:
    chunk = x[i:i + b]
    m = chunk.shape[0]
    if m < b:
      chunk = np.concatenate([chunk, np.zeros((b - m,) + chunk.shape[1:], chunk.dtype)])
    got = jax.tree_util.tree_map(np.asarray, fn(jnp.asarray(chunk)))
    if out is None:
      out = jax.tree_util.tree_map(lambda v: np.empty((n,) + v.shape[1:], v.dtype), got)
    jax.tree_util.tree_map(lambda o, v: o.__setitem__(slice(i, i + m), v[:m]), out, got)
  return out


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
