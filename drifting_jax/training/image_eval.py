"""Evaluation of a trained image generator: FID (classifier features), precision, recall, F1.

``evaluate_image_run`` samples a class-balanced set from a run's EMA generator, embeds it and
the dataset's held-out split with a feature extractor, and reports the Fréchet distance of
the two Gaussian fits plus the improved precision/recall of Kynkäänniemi et al. (k = 3).
The default extractor is the project's MNIST classifier
(``experiments/results/mnist_classifier.npz``, made by ``experiments/train_mnist_classifier.py``);
its FID is named "FID (classifier features)" and is **not** comparable to Inception FID.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from drifting_jax.data import images as image_data
from drifting_jax.metrics.features import (CLASSIFIER_FID_NAME, classifier_accuracy,
                                           classifier_features, load_classifier)
from drifting_jax.metrics.frechet import frechet_distance_from_features
from drifting_jax.metrics.precision_recall import precision_recall

__all__ = ["DEFAULT_MNIST_CLASSIFIER", "evaluate_image_run"]

DEFAULT_MNIST_CLASSIFIER = (pathlib.Path(__file__).resolve().parents[2] / "experiments" /
                            "results" / "mnist_classifier.npz")


def _held_out(dataset: str):
  """The test split of a dataset spec (digits has no split: all of it)."""
  return image_data.load_dataset(dataset, split="test")


def evaluate_image_run(source: str | os.PathLike, *, num_samples: int = 10_000,
                       classifier: str | os.PathLike | None = None, k: int = 3, seed: int = 0,
                       out: str | os.PathLike | None = None) -> dict:
  """FID (classifier features), precision, recall and F1 of an image run.

  Args:
    source: run directory (latest checkpoint) or one ``checkpoints/<iteration>``.
    num_samples: generated samples (classes in turn; also the number of real test images
      used, capped by the split's size).
    classifier: weights written by :func:`drifting_jax.metrics.features.save_classifier`;
      default: the project's MNIST classifier (only for MNIST-shaped runs).
    k: neighbourhood size of precision/recall.
    seed: sampling seed.
    out: JSON path for the metrics (default ``<run dir>/eval_metrics.json``).

  Returns:
    Dict with ``fid_classifier_features``, ``precision``, ``recall``, ``f1``,
    ``classifier_accuracy_on_samples`` and the settings.

  Raises:
    ValueError: non-positive ``num_samples``, a missing classifier file.
  """
  from drifting_jax.training import resolve_checkpoint
  from drifting_jax.training.image_loop import load_image_run, sample_images

  if not isinstance(num_samples, int) or num_samples <= k:
    raise ValueError(f"`num_samples` must be an int > k={k}, got {num_samples!r}.")
  path = pathlib.Path(classifier) if classifier is not None else DEFAULT_MNIST_CLASSIFIER
  if not path.is_file():
    raise ValueError(f"`classifier` weights not found at {path}; train them with "
                     "`python experiments/train_mnist_classifier.py` or pass --classifier.")
  params = load_classifier(path)
  run, _, iteration = load_image_run(source)
  run_dir = resolve_checkpoint(source)[2]

  # Embed the real split first: a classifier that does not fit the images fails here,
  # before the (expensive) sampling.
  real_images = _held_out(run.cfg.dataset).images[:num_samples]
  f_real = classifier_features(params, real_images)

  png = os.path.join(run_dir, "eval_samples.png")
  sample_images(source, num=num_samples, out_path=png, seed=seed)
  with np.load(os.path.splitext(png)[0] + ".npz") as data:
    fake, fake_labels = data["samples"], data["labels"]
  f_fake = classifier_features(params, fake)
  pr = precision_recall(f_real, f_fake, k=k)
  metrics = {
      "metric_name": CLASSIFIER_FID_NAME,
      "fid_classifier_features": float(frechet_distance_from_features(f_real, f_fake)),
      "precision": float(pr.precision), "recall": float(pr.recall), "f1": float(pr.f1),
      "classifier_accuracy_on_samples": classifier_accuracy(params, fake, fake_labels),
      "k": k, "num_generated": int(fake.shape[0]), "num_real": int(real_images.shape[0]),
      "real_split": f"{run.cfg.dataset}:test", "classifier": str(path),
      "iteration": int(iteration), "seed": seed,
      "note": "FID on the project's classifier features; not comparable to Inception FID.",
  }
  out = out or os.path.join(run_dir, "eval_metrics.json")
  with open(out, "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
  return metrics
