"""Scores of generated images: Inception FID and/or FID (classifier features), with precision,
recall and F1 on the same features.

The Fréchet distance of the Gaussian fits of real and generated features, plus the improved
precision/recall of Kynkäänniemi et al. (k = 3), on one of two feature extractors:

* ``fid="inception"`` — the standard TF-FID InceptionV3 pool3 features
  (:mod:`drifting_jax.metrics.inception`; weights converted once), what the papers report
  (ADM's suite: FID and P/R on Inception features). Beside it, the real-vs-real value at the
  same sample count (``n`` training images against the same ``n`` test images): FID-n is
  biased upward for small ``n``, so a score means something only next to that floor. The
  real features are cached (``$DRIFTING_JAX_CACHE``, default ``~/.cache/drifting_jax``).
* ``fid="classifier"`` — "FID (classifier features)" on the project's MNIST classifier
  (shipped with the package, ``drifting_jax/assets/mnist_classifier.npz``): a
  fast proxy for sweeps, **not** comparable to any paper's FID.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np

from drifting_jax import _validation
from drifting_jax.data import images as image_data
from drifting_jax.metrics.features import (CLASSIFIER_FID_NAME, classifier_accuracy,
                                           classifier_features, load_classifier)
from drifting_jax.metrics.frechet import frechet_distance_from_features
from drifting_jax.metrics.precision_recall import precision_recall

__all__ = ["DEFAULT_MNIST_CLASSIFIER", "FID_KINDS", "classifier_scores", "inception_scores",
           "inception_weights_path", "load_samples", "real_inception_features",
           "score_samples_file"]

# shipped as package data (made by experiments/train_mnist_classifier.py)
DEFAULT_MNIST_CLASSIFIER = (pathlib.Path(__file__).resolve().parents[1] / "assets" /
                            "mnist_classifier.npz")
FID_KINDS = ("classifier", "inception", "both")
CACHE_ENV_VAR = "DRIFTING_JAX_CACHE"


def _cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get(CACHE_ENV_VAR) or
                      pathlib.Path.home() / ".cache" / "drifting_jax") / "features"


def _file_tag(path: pathlib.Path) -> str:
  st = path.stat()
  return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def real_inception_features(dataset: str, split: str, n: int, variables, weights_path, *,
                            progress: bool = False) -> np.ndarray:
  """Inception features of the first ``n`` images of ``dataset``'s ``split`` (cached).

  A cached file with at least ``n`` features of the same dataset, split and weights file is
  reused (its first ``n`` rows are the same images).
  """
  from drifting_jax.metrics.inception import inception_features
  tag = hashlib.sha1(f"{dataset}|{split}".encode()).hexdigest()[:10]
  prefix = f"inception_{tag}_{split}_{_file_tag(pathlib.Path(weights_path))}_"
  cache = _cache_dir()
  if cache.is_dir():
    for f in sorted(cache.glob(prefix + "*.npz")):
      if int(f.stem[len(prefix):]) >= n:
        with np.load(f) as data:
          return data["features"][:n]
  images = image_data.load_dataset(dataset, split=split).images[:n]
  if images.shape[0] < n:
    raise ValueError(f"`num_samples` {n} exceeds the {images.shape[0]} images of "
                     f"{dataset}:{split}.")
  feats = inception_features(variables, images, progress=progress)
  cache.mkdir(parents=True, exist_ok=True)
  tmp = cache / f"{prefix}{n}.tmp.npz"
  np.savez(tmp, features=feats)
  os.replace(tmp, cache / f"{prefix}{n}.npz")
  return feats


def inception_weights_path(weights=None) -> pathlib.Path:
  """The weights file to use: ``weights``, else the default; raises if there is none."""
  from drifting_jax.metrics.inception import default_inception_path
  path = pathlib.Path(weights) if weights is not None else default_inception_path()
  if path is None or not path.is_file():
    raise FileNotFoundError(
        f"Inception weights {'not found' if path is None else f'{path} not found'}: pass "
        "--inception-weights FILE (make it once with `drifting-jax convert-inception --out "
        "FILE`) or set $DRIFTING_JAX_INCEPTION.")
  return path


def inception_scores(fake: np.ndarray, *, dataset: str, n: int, weights=None, k: int = 3,
                     progress: bool = False) -> dict:
  """Inception FID / P / R / F1 of ``fake`` images against ``n`` test images, and the same
  four numbers for ``n`` training images against those test images (the floor)."""
  from drifting_jax.metrics.inception import (INCEPTION_FID_NAME, inception_features,
                                              load_inception_params)
  path = inception_weights_path(weights)
  variables = load_inception_params(path)
  f_test = real_inception_features(dataset, "test", n, variables, path, progress=progress)
  f_train = real_inception_features(dataset, "train", n, variables, path, progress=progress)
  f_fake = inception_features(variables, fake[:n], progress=progress)
  pr, pr0 = precision_recall(f_test, f_fake, k=k), precision_recall(f_test, f_train, k=k)
  return {
      "inception_metric_name": INCEPTION_FID_NAME,
      "inception_fid": float(frechet_distance_from_features(f_test, f_fake)),
      "inception_precision": float(pr.precision), "inception_recall": float(pr.recall),
      "inception_f1": float(pr.f1),
      "inception_fid_real_vs_real": float(frechet_distance_from_features(f_test, f_train)),
      "inception_precision_real_vs_real": float(pr0.precision),
      "inception_recall_real_vs_real": float(pr0.recall),
      "inception_f1_real_vs_real": float(pr0.f1),
      "inception_weights": str(path), "inception_num": int(f_fake.shape[0]),
      "inception_note": (f"FID-{f_fake.shape[0]} against {dataset}:test; real-vs-real = "
                         f"{dataset}:train vs the same test images. FID at n < 50k is biased "
                         "upward relative to FID-50k."),
  }


def classifier_scores(fake: np.ndarray, fake_labels: np.ndarray, *, real_features: np.ndarray,
                      params, k: int = 3) -> dict:
  """FID / P / R / F1 on the project's classifier features, and the classifier's accuracy.

  Args:
    fake: generated images ``[N, H, W, C]`` in ``[-1, 1]``.
    fake_labels: their conditioning classes ``[N]``.
    real_features: classifier features ``[M, F]`` of held-out real images
      (:func:`drifting_jax.metrics.features.classifier_features`).
    params: classifier weights (:func:`drifting_jax.metrics.features.load_classifier`).
    k: neighbourhood size of precision/recall.
  """
  f_fake = classifier_features(params, fake)
  pr = precision_recall(real_features, f_fake, k=k)
  return {
      "metric_name": CLASSIFIER_FID_NAME,
      "fid_classifier_features": float(frechet_distance_from_features(real_features, f_fake)),
      "precision": float(pr.precision), "recall": float(pr.recall), "f1": float(pr.f1),
      "classifier_accuracy_on_samples": classifier_accuracy(params, fake, fake_labels),
      "num_real": int(real_features.shape[0]),
      "note": "FID on the project's classifier features; a fast proxy for sweeps, "
              "not comparable to Inception FID or to any paper's FID.",
  }


def load_samples(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
  """Generated images of an ``.npz`` file as ``[N, H, W, C]`` floats in ``[-1, 1]``.

  The file holds ``samples``: uint8 pixel levels (``0..255``, as
  ``benchmarks/accelerator_run.py`` writes them) or floats in ``[-1, 1]`` (as
  ``drifting-jax sample`` writes them), ``[N, H, W, C]`` or ``[N, H, W]``; and optionally
  ``dataset``, the name of the data they imitate (returned, else None).

  Raises:
    FileNotFoundError: no such file.
    ValueError: no ``samples`` array, a wrong rank or dtype, non-finite values, or floats
      outside ``[-1, 1]``.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"samples file not found: {path}")
  with np.load(path, allow_pickle=False) as data:
    if "samples" not in data:
      raise ValueError(f"{path} has no `samples` array (it has {sorted(data.files)})")
    x = data["samples"]
    dataset = str(data["dataset"]) if "dataset" in data else None
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[0] == 0:
    raise ValueError(f"`samples` of {path} must be [N, H, W, C] or [N, H, W] with N >= 1, "
                     f"got shape {x.shape}")
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 127.5 - 1.0, dataset
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"`samples` of {path} must be uint8 or floating, got {x.dtype}")
  image_data.check_finite_images(x, f"samples` of `{path}")
  if x.min() < -1.0 - 1e-3 or x.max() > 1.0 + 1e-3:
    raise ValueError(f"float `samples` of {path} must lie in [-1, 1], got "
                     f"[{x.min():.4g}, {x.max():.4g}]")
  return np.clip(x.astype(np.float32), -1.0, 1.0), dataset


def score_samples_file(path: str | os.PathLike, *, dataset: str | None = None,
                       num_samples: int | None = None, weights=None, k: int = 3,
                       out: str | os.PathLike | None = None, progress: bool = False) -> dict:
  """Inception FID / P / R / F1 of the samples in an ``.npz`` file (:func:`load_samples`)
  against ``dataset``'s test images, with the real-vs-real floor (:func:`inception_scores`).

  Args:
    path: the samples file.
    dataset: the real data (default: the file's ``dataset`` entry).
    num_samples: score the first ``num_samples`` samples (default: all of them).
    weights: converted TF-FID Inception weights (default: :func:`inception_weights_path`).
    k: neighbours of the precision/recall manifolds.
    out: JSON path for the scores (default ``<path without .npz>_metrics.json``).
    progress: show progress bars.

  Raises:
    ValueError: no dataset named, or more samples asked for than the file holds.
  """
  fake, stored = load_samples(path)
  dataset = dataset or stored
  if not dataset:
    raise ValueError(f"`dataset` is needed: {path} does not name the data its samples imitate")
  n = fake.shape[0] if num_samples is None else num_samples
  n = _validation.check_int("num_samples", n, minimum=1)
  if n > fake.shape[0]:
    raise ValueError(f"`num_samples` must be an int in [1, {fake.shape[0]}] (the samples in "
                     f"{path}), got {num_samples!r}")
  scores = inception_scores(fake[:n], dataset=dataset, n=n, weights=weights, k=k,
                            progress=progress)
  scores = {"samples_file": str(path), "dataset": dataset, **scores}
  out = pathlib.Path(out) if out is not None else pathlib.Path(
      os.path.splitext(os.fspath(path))[0] + "_metrics.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n")
  return scores
