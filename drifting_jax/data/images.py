"""Image datasets: IDX (MNIST / Fashion-MNIST) folders, ``.npz`` files, scikit-learn digits,
tensorflow-datasets, and PNG sample grids.

Every loader returns a :class:`Dataset` with ``images [N, H, W, C]`` float32 and
``labels [N]`` int32. **Pixel convention:** images are scaled to ``[-1, 1]``
(``uint8`` pixel ``v`` becomes ``v / 127.5 - 1``), the range the generators output and in
which kernel bandwidths are expressed; :func:`to_uint8` maps back for saving.

The MNIST experiments of Franz et al. (§5.1) use 28x28x1 MNIST and Fashion-MNIST; both ship
as the same four IDX files (``train-images-idx3-ubyte[.gz]`` ...), read by
:func:`load_mnist_folder`. :func:`load_dataset` dispatches on a short spec string
(``"mnist:/path"``, ``"npz:/file.npz"``, ``"digits"``, ``"tfds:fashion_mnist"``, ``"mnist"``).
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

from drifting_jax import _validation

__all__ = [
    "Dataset", "check_dataset", "check_finite_images", "encode_idx", "find_mnist",
    "load_dataset", "load_digits", "load_idx", "load_mnist_folder", "load_npz", "load_tfds",
    "save_idx", "save_image_grid", "to_uint8",
]

MNIST_ENV_VAR = "DRIFTING_JAX_MNIST"

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class Dataset(NamedTuple):
  """An in-memory labelled image dataset.

  Attributes:
    images: ``[N, H, W, C]`` float32 pixels in ``[-1, 1]``.
    labels: ``[N]`` int32 class ids in ``[0, num_classes)``.
    num_classes: number of classes.
    name: short dataset name (``"mnist"``, ``"fashion_mnist"``, ``"digits"``, ...).
  """
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str


# ----------------------------------------------------------------------------- IDX files


def _read_bytes(path: pathlib.Path) -> bytes:
  raw = path.read_bytes()
  if raw[:2] != b"\x1f\x8b":  # gzip is detected by its magic bytes, not by the extension
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f"{path}: corrupt or truncated gzip stream ({e}).") from e


def load_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (plain or gzip-compressed).

  The format is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian
  uint32 dimensions, then the big-endian data.

  Args:
    path: file path; gzip compression is detected from the content.

  Returns:
    ``[d0, d1, ...]`` array in native byte order (``uint8`` for MNIST files).

  Raises:
    ValueError: naming the file, for a bad magic number, an unknown type code, a
      truncated header or body, trailing bytes, or a corrupt gzip stream.
  """
  path = pathlib.Path(path)
  data = _read_bytes(path)
  if len(data) < 4:
    raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes, need 4).")
  if data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path}: bad IDX magic number 0x{data[:4].hex()} "
                     "(expected two zero bytes, a type code and a rank).")
  code, ndim = data[2], data[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{code:02x} "
                     f"(expected one of {sorted(hex(c) for c in _IDX_DTYPES)}).")
  if ndim == 0:
    raise ValueError(f"{path}: IDX header declares 0 dimensions.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{path}: truncated IDX header (rank {ndim} needs {header} bytes, "
                     f"file has {len(data)}).")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[code])
  expected = math.prod(dims) * dtype.itemsize
  found = len(data) - header
  if found < expected:
    raise ValueError(f"{path}: truncated IDX data (shape {dims} needs {expected} bytes, "
                     f"found {found}).")
  if found > expected:
    raise ValueError(f"{path}: {found - expected} unexpected trailing bytes after the IDX "
                     f"data of shape {dims}.")
  arr = np.frombuffer(data, dtype, count=math.prod(dims), offset=header).reshape(dims)
  return arr.astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
  """Encodes an array as IDX bytes (the inverse of :func:`load_idx`).

  Args:
    array: ``[d0, ...]`` array of dtype uint8, int8, int16, int32, float32 or float64.

  Returns:
    The uncompressed IDX file content.
  """
  array = np.asarray(array)
  code = _IDX_CODES.get(array.dtype.newbyteorder("="))
  if code is None:
    raise ValueError(f"`array` dtype {array.dtype} has no IDX type code.")
  if array.ndim == 0 or array.ndim > 255:
    raise ValueError(f"`array` must have rank 1..255, got shape {array.shape}.")
  head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  return head + array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()


def save_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
  """Writes ``array`` as an IDX file; gzip-compressed if ``compress`` (default: ``.gz`` suffix)."""
  path = pathlib.Path(path)
  data = encode_idx(array)
  if compress is None:
    compress = path.suffix == ".gz"
  path.write_bytes(gzip.compress(data) if compress else data)


# ----------------------------------------------------------------------------- loaders


def _scale(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
  lo, hi = value_range
  if not hi > lo:
    raise ValueError(f"`value_range` must satisfy low < high, got {value_range}.")
  return ((images.astype(np.float32) - lo) * (2.0 / (hi - lo)) - 1.0).astype(np.float32)


def _as_nhwc(images: np.ndarray, name: str) -> np.ndarray:
  if images.ndim == 3:
    return images[..., None]
  if images.ndim == 4:
    return images
  raise ValueError(f"`{name}` must have shape [N, H, W] or [N, H, W, C], got {images.shape}.")


def _check_labels(labels: np.ndarray, n: int, num_classes: int | None, name: str) -> np.ndarray:
  if labels.ndim != 1 or labels.shape[0] != n:
    raise ValueError(f"`{name}` must have shape [{n}] (one label per image), got {labels.shape}.")
  if labels.size and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
    raise ValueError(f"`{name}` must lie in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")
  return labels.astype(np.int32)


def check_finite_images(images: np.ndarray, name: str) -> None:
  """Raises ``ValueError`` naming ``name`` and the first image index with a NaN or inf."""
  images = np.asarray(images)
  if not np.issubdtype(images.dtype, np.floating):
    return
  bad = ~np.isfinite(images.reshape(images.shape[0], -1)).all(axis=1) if images.size else []
  if np.any(bad):
    idx = np.flatnonzero(bad)
    raise ValueError(f"`{name}` image {int(idx[0])} contains NaN or inf ({idx.size} such "
                     f"image{'s' if idx.size > 1 else ''}).")


def check_dataset(ds: Dataset, name: str = "dataset") -> Dataset:
  """Checks an in-memory :class:`Dataset` before training on it.

  Images ``[N, H, W, C]`` (N ≥ 1) of finite floats in ``[-1, 1]``; labels ``[N]`` integers
  in ``[0, num_classes)``.

  Raises:
    ValueError: naming ``name`` and what is wrong (the first bad image's index for NaN or
      inf pixels).
  """
  if not isinstance(ds, Dataset):
    raise ValueError(f"`{name}` must be a drifting_jax.data.images.Dataset, got "
                     f"{type(ds).__name__}.")
  images, labels = np.asarray(ds.images), np.asarray(ds.labels)
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"`{name}.images` must have shape [N, H, W, C] with N >= 1, got "
                     f"{images.shape}.")
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f"`{name}.images` must be floats in [-1, 1], got dtype {images.dtype}.")
  check_finite_images(images, f"{name}.images")
  lo, hi = float(images.min()), float(images.max())
  if lo < -1 - 1e-6 or hi > 1 + 1e-6:
    raise ValueError(f"`{name}.images` must lie in [-1, 1], got [{lo}, {hi}].")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"`{name}.labels` must be integers, got dtype {labels.dtype}.")
  _check_labels(labels, images.shape[0], int(ds.num_classes), f"{name}.labels")
  return ds


def _find_file(folder: pathlib.Path, stems: list[str]) -> pathlib.Path:
  for stem in stems:
    for candidate in (folder / stem, folder / (stem + ".gz")):
      if candidate.is_file():
        return candidate
  raise FileNotFoundError(f"{folder}: none of {[s + '[.gz]' for s in stems]} found.")


def load_mnist_folder(folder: str | os.PathLike, *, split: str = "train",
                      name: str = "mnist") -> Dataset:
  """Loads MNIST (or Fashion-MNIST, same file names) from a folder of IDX files.

  Expects ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz`` (the
  ``train-images.idx3-ubyte`` spelling of some mirrors is accepted too).

  Args:
    folder: directory holding the four files.
    split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
    name: stored as :attr:`Dataset.name` (e.g. ``"fashion_mnist"``).

  Returns:
    :class:`Dataset` with ``images [N, 28, 28, 1]`` in ``[-1, 1]`` and 10 classes.
  """
  if split not in _SPLIT_PREFIX:
    raise ValueError(f"`split` must be one of {tuple(_SPLIT_PREFIX)}, got {split!r}.")
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f"`folder` {folder} is not a directory.")
  p = _SPLIT_PREFIX[split]
  img_path = _find_file(folder, [f"{p}-images-idx3-ubyte", f"{p}-images.idx3-ubyte"])
  lab_path = _find_file(folder, [f"{p}-labels-idx1-ubyte", f"{p}-labels.idx1-ubyte"])
  images, labels = load_idx(img_path), load_idx(lab_path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(f"{img_path}: expected uint8 images [N, H, W], got {images.dtype} "
                     f"{images.shape}.")
  labels = _check_labels(labels, images.shape[0], 10, str(lab_path))
  return Dataset(_scale(images[..., None], (0, 255)), labels, 10, name)


def _pick_key(keys: list[str], given: str | None, candidates: list[str], what: str) -> str:
  if given is not None:
    if given not in keys:
      raise ValueError(f"`{what}_key` {given!r} not in the npz file (keys: {keys}).")
    return given
  for c in candidates:
    if c in keys:
      return c
  raise ValueError(f"no {what} array found among keys {keys} (tried {candidates}); "
                   f"pass `{what}_key`.")


def load_npz(path: str | os.PathLike, *, images_key: str | None = None,
             labels_key: str | None = None, split: str | None = None,
             num_classes: int | None = None, value_range: tuple[float, float] | None = None,
             name: str | None = None) -> Dataset:
  """Loads an image dataset stored in a ``.npz`` file.

  Keys default to the first present of ``x_{split}``, ``images_{split}`` (when ``split``
  is given, e.g. Keras' ``mnist.npz``), ``images``, ``x`` and of ``y_{split}``,
  ``labels_{split}``, ``labels``, ``y``.

  Args:
    path: ``.npz`` file.
    images_key: key of the ``[N, H, W]`` or ``[N, H, W, C]`` (channels-last) images.
    labels_key: key of the ``[N]`` integer labels.
    split: optional split name used to build default keys.
    num_classes: defaults to ``max(labels) + 1``.
    value_range: stored pixel range mapped to ``[-1, 1]``; default ``(0, 255)`` for
      integer images, and for float images ``(0, 1)`` if all values lie in it, else
      ``(-1, 1)`` (values outside it then raise ``ValueError``).
    name: dataset name, default the file stem.

  Returns:
    :class:`Dataset` with pixels in ``[-1, 1]``.
  """
  path = pathlib.Path(path)
  with np.load(path, allow_pickle=False) as f:
    keys = list(f.keys())
    sfx = [f"x_{split}", f"images_{split}"] if split else []
    lsfx = [f"y_{split}", f"labels_{split}"] if split else []
    images = np.asarray(f[_pick_key(keys, images_key, sfx + ["images", "x"], "images")])
    labels = np.asarray(f[_pick_key(keys, labels_key, lsfx + ["labels", "y"], "labels")])
  images = _as_nhwc(images, f"{path}[images]")
  check_finite_images(images, f"{path}[images]")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{path}: labels must be integers, got dtype {labels.dtype}.")
  labels = _check_labels(labels, images.shape[0], num_classes, f"{path}[labels]")
  if value_range is None:
    if np.issubdtype(images.dtype, np.integer):
      value_range = (0, 255)
    elif images.size and images.min() >= 0 and images.max() <= 1:
      value_range = (0, 1)
    else:
      value_range = (-1, 1)
      if images.size and (images.min() < -1 - 1e-6 or images.max() > 1 + 1e-6):
        raise ValueError(f"{path}: float images span [{images.min()}, {images.max()}], "
                         "outside [-1, 1]; pass `value_range`.")
  if num_classes is None:
    num_classes = int(labels.max()) + 1 if labels.size else 0
  return Dataset(_scale(images, value_range), labels, int(num_classes), name or path.stem)


def load_digits(*, size: int | None = None) -> Dataset:
  """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes, no download).

  Args:
    size: ``None`` keeps the native 8x8 resolution; an int upsamples bilinearly to
      ``size x size`` (e.g. 28 to mimic MNIST's resolution).

  Returns:
    :class:`Dataset` with ``images [1797, S, S, 1]`` in ``[-1, 1]`` (raw values 0..16).
  """
  try:
    from sklearn import datasets as skd
  except ImportError as e:  # pragma: no cover - scikit-learn is a test extra
    raise ImportError("load_digits needs scikit-learn: `pip install scikit-learn`.") from e
  d = skd.load_digits()
  images = _scale(d.images[..., None], (0, 16))
  if size is not None:
    size = _validation.check_int("size", size, minimum=1)
    import jax
    images = np.asarray(jax.image.resize(images, (images.shape[0], size, size, 1), "linear"))
    images = np.clip(images, -1.0, 1.0).astype(np.float32)
  return Dataset(images, d.target.astype(np.int32), 10, "digits")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError(
        "load_tfds needs tensorflow-datasets, which is not installed. Install the optional "
        "extra with `pip install -e \".[tfds]\"` (or `pip install tensorflow-datasets "
        "tensorflow-cpu`), or load a local folder with `load_mnist_folder` / `load_npz`."
    ) from e
  return tfds


def load_tfds(name: str, *, split: str = "train", data_dir: str | os.PathLike | None = None,
              manual_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
  """Loads ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"`` through tensorflow-datasets.

  tensorflow-datasets is imported lazily (``pip install -e ".[tfds]"``).

  Offline use: prepare the dataset once on a machine with internet
  (``tfds.builder(name, data_dir=...).download_and_prepare()``), copy ``data_dir``, and call
  ``load_tfds(name, data_dir=..., download=False)``. For manually downloaded archives,
  ``manual_dir`` is forwarded as ``download_and_prepare_kwargs={"download_config":
  tfds.download.DownloadConfig(manual_dir=manual_dir)}``. Note that tfds verifies the
  checksums of the *archives*; re-compressed files (such as the ``.gz`` wrappers of a
  project-local MNIST copy) fail that check — read those with :func:`load_mnist_folder`.

  Args:
    name: tfds dataset name (any image-classification dataset with ``image``/``label``).
    split: tfds split string, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
    data_dir: tfds data directory (default tfds' own, ``~/tensorflow_datasets``).
    manual_dir: directory holding manually downloaded source archives.
    download: let tfds download and prepare the data when it is missing.

  Returns:
    :class:`Dataset` with pixels in ``[-1, 1]``.
  """
  tfds = _import_tfds()
  kwargs = {}
  if manual_dir is not None:
    kwargs["download_and_prepare_kwargs"] = {
        "download_config": tfds.download.DownloadConfig(manual_dir=str(manual_dir))}
  ds, info = tfds.load(name, split=split, data_dir=None if data_dir is None else str(data_dir),
                       batch_size=-1, as_supervised=True, with_info=True, download=download,
                       **kwargs)
  images, labels = tfds.as_numpy(ds)
  num_classes = int(info.features["label"].num_classes)
  images = _as_nhwc(np.asarray(images), f"tfds:{name} images")
  labels = _check_labels(np.asarray(labels), images.shape[0], num_classes, f"tfds:{name} labels")
  return Dataset(_scale(images, (0, 255)), labels, num_classes, name)


def find_mnist() -> pathlib.Path | None:
  """The MNIST IDX folder named by ``$DRIFTING_JAX_MNIST`` if it holds the training images,
  else ``None`` (the library never guesses a path; pass ``"mnist:/folder"`` instead)."""
  c = os.environ.get(MNIST_ENV_VAR)
  if c and any(pathlib.Path(c).glob("train-images*idx3-ubyte*")):
    return pathlib.Path(c)
  return None


def load_dataset(spec: str, *, split: str = "train",
                 data_dir: str | os.PathLike | None = None) -> Dataset:
  """Loads a dataset from a spec string.

  Specs: ``"mnist"`` (default folder, see :func:`find_mnist`), ``"mnist:/folder"``,
  ``"fashion_mnist:/folder"`` (IDX folders), ``"npz:/file.npz"``, ``"digits"`` or
  ``"digits:28"`` (upsampled; digits has no split, every ``split`` returns all 1797
  images), ``"tfds:<name>"`` (``data_dir`` is forwarded to :func:`load_tfds`).

  Args:
    spec: dataset spec as above.
    split: ``"train"`` or ``"test"`` (a tfds split string for ``tfds:``).
    data_dir: tfds data directory.

  Returns:
    :class:`Dataset` with pixels in ``[-1, 1]``.
  """
  kind, _, arg = spec.partition(":")
  if kind in ("mnist", "fashion_mnist"):
    if not arg:
      if kind == "fashion_mnist":
        raise ValueError("`spec` 'fashion_mnist' needs a folder: 'fashion_mnist:/path' "
                         "or 'tfds:fashion_mnist'.")
      found = find_mnist()
      if found is None:
        raise FileNotFoundError(
            f"No MNIST IDX folder found: set ${MNIST_ENV_VAR}, pass 'mnist:/path/to/folder', "
            "or use 'tfds:mnist' (needs tensorflow-datasets).")
      arg = str(found)
    return load_mnist_folder(arg, split=split, name=kind)
  if kind == "npz" and arg:
    return load_npz(arg, split=split)
  if kind == "digits":
    return load_digits(size=int(arg) if arg else None)
  if kind == "tfds" and arg:
    return load_tfds(arg, split=split, data_dir=data_dir)
  raise ValueError(f"`spec` {spec!r} not understood; expected 'mnist[:folder]', "
                   "'fashion_mnist:folder', 'npz:file', 'digits[:size]' or 'tfds:name'.")


# ----------------------------------------------------------------------------- saving


def to_uint8(images, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """Maps pixels in ``value_range`` (default ``[-1, 1]``) to uint8 ``[0, 255]`` (clipped)."""
  lo, hi = value_range
  x = (np.asarray(images, np.float32) - lo) * (255.0 / (hi - lo))
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def save_image_grid(images, path: str | os.PathLike, *, nrow: int | None = None,
                    padding: int = 2, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """Writes a PNG grid of images (matplotlib's ``imsave``).

  Args:
    images: ``[N, H, W, C]`` (``C`` in 1, 3) or ``[N, H, W]`` pixels in ``value_range``.
    path: output ``.png`` path; parent directories are created.
    nrow: images per row (default ``ceil(sqrt(N))``).
    padding: black pixels between and around images.
    value_range: pixel range mapped to ``[0, 255]``.

  Returns:
    ``[rows * (H + p) + p, nrow * (W + p) + p, 3]`` uint8 grid that was written.
  """
  x = to_uint8(images, value_range=value_range)
  x = _as_nhwc(x, "images")
  n, h, w, c = x.shape
  if c not in (1, 3) or n == 0:
    raise ValueError(f"`images` must be non-empty with 1 or 3 channels, got shape {x.shape}.")
  if c == 1:
    x = np.repeat(x, 3, axis=-1)
  nrow = nrow or math.ceil(math.sqrt(n))
  if nrow < 1:
    raise ValueError(f"`nrow` must be positive, got {nrow}.")
  rows = math.ceil(n / nrow)
  grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), np.uint8)
  for i in range(n):
    r, q = divmod(i, nrow)
    y0, x0 = padding + r * (h + padding), padding + q * (w + padding)
    grid[y0:y0 + h, x0:x0 + w] = x[i]
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  import matplotlib.image
  matplotlib.image.imsave(path, grid)
  return grid
