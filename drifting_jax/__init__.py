"""drifting_jax: drift fields, kernel losses and one-step drifting generators in JAX.

The core (kernels → kde → fields → losses, calculus) is pure functions of arrays; see the
papers "Drifting Fields are not Conservative" (Franz et al.) and
"Generative Drifting is Secretly Score Matching" (Secretly-SM).
"""

from drifting_jax import grouped, kernels, normalization, schedules, spectral
from drifting_jax.calculus import asymmetry, curl, curl_indices, jacobian, line_integral_potential
from drifting_jax.checking import checked
from drifting_jax.deng import deng_drift_loss, deng_drift_loss_with_info
from drifting_jax.fields import (deng_field, doubly_stochastic_field, drift_field, mmd_field,
                                 multiscale, sub_field)
from drifting_jax.grouped import (cfg_negative_weight, grouped_loss, guided_grouped_loss,
                                  kernel_scaled, sample_cfg_scale, stream_loss)
from drifting_jax.kde import log_kde
from drifting_jax.kernels import (RadialKernel, gaussian, laplacian, pairwise_sqdist, radial,
                                  rational_quadratic, width_range)
from drifting_jax.losses import drift_loss, kde_link_loss, log_kde_loss, mmd_loss
from drifting_jax.normalization import KernelWidthState, knn_mean_distance
from drifting_jax.objectives import make_objective, objective_names
from drifting_jax.schedules import get_schedule
from drifting_jax.spectral import (convergence_time, fixed_convergence_time, gaussian_decay_rate,
                                   laplace_decay_rate, optimal_mode, simulate_modes,
                                   spectral_error)

__version__ = "0.1.0"

_LAZY_SUBPACKAGES = ("data", "models", "training", "metrics", "objectives", "cli", "sinkhorn",
                     "testing")
# Names whose modules import ott-jax or flax: loaded on first access, so that
# ``import drifting_jax`` pulls in neither flax, orbax nor ott.
_LAZY_NAMES = {"sinkhorn_drift": "sinkhorn", "sinkhorn_loss": "sinkhorn",
               "sinkhorn_drift_with_info": "sinkhorn", "sinkhorn_loss_with_info": "sinkhorn",
               "SinkhornDriftInfo": "sinkhorn", "sliced_wasserstein": "metrics"}


def __getattr__(name):
  """Subpackages with heavier imports (ott, Flax models, orbax training) load on first access."""
  import importlib
  if name in _LAZY_SUBPACKAGES:
    return importlib.import_module(f"drifting_jax.{name}")
  if name in _LAZY_NAMES:
    return getattr(importlib.import_module(f"drifting_jax.{_LAZY_NAMES[name]}"), name)
  raise AttributeError(f"module 'drifting_jax' has no attribute {name!r}")


__all__ = [
    "kernels", "RadialKernel", "gaussian", "laplacian", "rational_quadratic", "radial",
    "pairwise_sqdist", "width_range", "log_kde", "sub_field", "drift_field", "mmd_field", "deng_field",
    "doubly_stochastic_field", "multiscale", "drift_loss", "log_kde_loss", "mmd_loss",
    "kde_link_loss", "deng_drift_loss", "jacobian", "curl", "curl_indices", "asymmetry",
    "line_integral_potential", "schedules", "get_schedule", "spectral", "gaussian_decay_rate",
    "laplace_decay_rate", "optimal_mode", "fixed_convergence_time", "convergence_time",
    "simulate_modes", "spectral_error", "normalization", "KernelWidthState", "knn_mean_distance",
    "sinkhorn_drift", "sinkhorn_loss", "sinkhorn_drift_with_info", "sinkhorn_loss_with_info",
    "SinkhornDriftInfo", "deng_drift_loss_with_info", "make_objective", "objective_names",
    "sliced_wasserstein", "data", "models", "training", "metrics", "objectives",
    "testing", "grouped", "grouped_loss", "guided_grouped_loss", "cfg_negative_weight",
    "sample_cfg_scale", "kernel_scaled", "stream_loss", "checked",
]
