"""Data: toy 2-D distributions (``toy``)."""

from drifting_jax.data import toy
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
