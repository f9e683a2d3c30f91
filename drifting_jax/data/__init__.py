"""Data: toy 2-D distributions (``toy``), image datasets, class-conditional batches and the
per-iteration batch of class-conditional training (``class_conditional``), memory banks."""

from drifting_jax.data import batching, class_conditional, images, memory_bank, toy
from drifting_jax.data.batching import (ClassBatch, ClassConditionalSampler, ClassIndex,
                                        build_class_index, sample_class_batch)
from drifting_jax.data.images import (Dataset, find_mnist, load_dataset, load_digits, load_idx,
                                      load_mnist_folder, load_npz, load_tfds, save_image_grid,
                                      to_uint8)
from drifting_jax.data.class_conditional import ClassData, ImageBatch
from drifting_jax.data.memory_bank import MemoryBank
from drifting_jax.data.toy import (
    GMM4,
    GaussianMixture,
    checkerboard,
    eight_gaussians,
    gaussian_smoothed_score,
    gmm4,
    gmm4_analytic_drift,
    mixture_log_prob,
    mixture_smoothed_score,
    swiss_roll,
)
from drifting_jax.data.toy import get as get_toy
from drifting_jax.data.toy import names as toy_names

__all__ = [
    "batching", "class_conditional", "ClassData", "ImageBatch", "images", "memory_bank", "toy", "ClassBatch", "ClassConditionalSampler",
    "ClassIndex", "build_class_index", "sample_class_batch", "Dataset", "find_mnist",
    "load_dataset", "load_digits", "load_idx", "load_mnist_folder", "load_npz", "load_tfds",
    "save_image_grid", "to_uint8", "MemoryBank",
    "GMM4",
    "GaussianMixture",
    "checkerboard",
    "eight_gaussians",
    "gaussian_smoothed_score",
    "get_toy",
    "gmm4",
    "gmm4_analytic_drift",
    "mixture_log_prob",
    "mixture_smoothed_score",
    "swiss_roll",
    "toy",
    "toy_names",
]
