"""Sample-quality metrics: sliced Wasserstein and Gaussian-kernel MMD."""

from drifting_jax.metrics.mmd import mmd
from drifting_jax.metrics.sliced_wasserstein import (
    random_directions,
    sliced_wasserstein,
    wasserstein_1d,
)

__all__ = ["mmd", "random_directions", "sliced_wasserstein", "wasserstein_1d"]
