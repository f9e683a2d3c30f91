"""Sample-quality metrics: sliced Wasserstein, MMD, Fréchet distance, precision/recall, and
the feature extractors behind FID (the TF-FID InceptionV3 from converted weights; a fast
project-trained classifier for sweeps).
"""

from drifting_jax.metrics.frechet import (frechet_distance, frechet_distance_from_features,
                                          gaussian_stats)
from drifting_jax.metrics.mmd import mmd
from drifting_jax.metrics.precision_recall import (PrecisionRecall, knn_radii,
                                                   manifold_membership, precision_recall)
from drifting_jax.metrics.sliced_wasserstein import (
    random_directions,
    sliced_wasserstein,
    wasserstein_1d,
)

# The Flax feature extractors load on first use (``import drifting_jax`` stays free of flax).
_LAZY = {
    "features": None, "inception": None,
    **{n: "features" for n in ("CLASSIFIER_FID_NAME", "ClassifierCNN", "classifier_accuracy",
                               "classifier_features", "classifier_fid", "load_classifier",
                               "save_classifier", "train_classifier")},
    **{n: "inception" for n in ("INCEPTION_FID_NAME", "InceptionV3", "fid_preprocess",
                                "inception_features", "load_inception_params")},
}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    module = importlib.import_module(f"drifting_jax.metrics.{_LAZY[name] or name}")
    return module if _LAZY[name] is None else getattr(module, name)
  raise AttributeError(f"module 'drifting_jax.metrics' has no attribute {name!r}")


__all__ = ["mmd", "random_directions", "sliced_wasserstein", "wasserstein_1d",
           "frechet_distance", "frechet_distance_from_features", "gaussian_stats",
           "PrecisionRecall", "knn_radii", "manifold_membership", "precision_recall",
           "features", "inception", "CLASSIFIER_FID_NAME", "ClassifierCNN", "InceptionV3",
           "INCEPTION_FID_NAME", "fid_preprocess",
           "classifier_accuracy", "classifier_features", "classifier_fid", "inception_features",
           "load_classifier", "load_inception_params", "save_classifier", "train_classifier"]
