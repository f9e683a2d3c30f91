"""Sampling, metrics and figures for trained toy generators.

The final metrics of a run (``metrics.json``) follow Secretly-SM App. F.3: the sliced
2-Wasserstein distance between 5,000 generated and 5,000 data samples with 200 random
projections, plus the biased squared Gaussian MMD. ``sliced_wasserstein_floor`` is the
same distance between two independent data sets of that size (the finite-sample floor a
perfect generator would reach).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax.data import toy
from drifting_jax.metrics.mmd import mmd
from drifting_jax.metrics.sliced_wasserstein import sliced_wasserstein
from drifting_jax.models.mlp import sample_noise
from drifting_jax.training.config import ToyConfig
from drifting_jax.training.state import make_model

__all__ = ["evaluate", "generate", "sample_data", "save_scatter"]


def generate(cfg: ToyConfig, params: Any, key: jax.Array, num: int) -> jax.Array:
  """``[num, 2]`` generator samples ``G(z)``, ``z ~ N(0, I)`` drawn from ``key``."""
  if num < 1:
    raise ValueError(f"`num` must be >= 1, got {num}")
  z = sample_noise(key, num, cfg.noise_dim)
  return _apply(make_model(cfg), params, z)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, z):
  # Flax modules are hashable dataclasses: one compiled forward per architecture.
  return model.apply(params, z)


def sample_data(cfg: ToyConfig, key: jax.Array, num: int) -> jax.Array:
  """``[num, 2]`` samples of the run's target distribution."""
  return toy.get(cfg.dataset)(key, num, **cfg.dataset_kwargs)


def evaluate(
    cfg: ToyConfig,
    params: Any,
    *,
    num_samples: int | None = None,
    num_projections: int | None = None,
    seed: int | None = None,
    samples: jax.Array | None = None,
) -> dict[str, float]:
  """Sample-quality metrics of a generator against its target distribution.

  Args:
    cfg: the run's config (model, dataset and default evaluation settings).
    params: generator parameters.
    num_samples: samples per side (default ``cfg.eval_num_samples``).
    num_projections: sliced-Wasserstein projections (default ``cfg.eval_num_projections``).
    seed: evaluation seed (default ``cfg.eval_seed``); fixes data, noise and projections.
    samples: optional precomputed ``[num_samples, 2]`` generator samples.

  Returns:
    ``{"sliced_wasserstein", "sliced_wasserstein_floor", "mmd", "num_samples",
    "num_projections", "mmd_bandwidth"}``.
  """
  n = cfg.eval_num_samples if num_samples is None else int(num_samples)
  p = cfg.eval_num_projections if num_projections is None else int(num_projections)
  if n < 2:
    raise ValueError(f"`num_samples` must be >= 2, got {n}")
  key = jax.random.PRNGKey(cfg.eval_seed if seed is None else seed)
  k_gen, k_data, k_data2, k_proj = jax.random.split(key, 4)
  gen = generate(cfg, params, k_gen, n) if samples is None else jnp.asarray(samples)
  data = sample_data(cfg, k_data, n)
  data2 = sample_data(cfg, k_data2, n)
  sw = sliced_wasserstein(gen, data, key=k_proj, num_projections=p)
  floor = sliced_wasserstein(data2, data, key=k_proj, num_projections=p)
  return {
      "sliced_wasserstein": float(sw),
      "sliced_wasserstein_floor": float(floor),
      "mmd": float(mmd(gen, data, bandwidth=cfg.eval_mmd_bandwidth)),
      "num_samples": n,
      "num_projections": p,
      "mmd_bandwidth": cfg.eval_mmd_bandwidth,
  }


def save_scatter(
    path: str | os.PathLike, generated: np.ndarray, data: np.ndarray, *, title: str = ""
) -> None:
  """Writes a two-panel scatter PNG: data (left) and generated samples (right)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  generated = np.asarray(generated)
  data = np.asarray(data)
  both = np.concatenate([generated, data])
  lo = np.percentile(both, 0.5, axis=0)
  hi = np.percentile(both, 99.5, axis=0)
  pad = 0.1 * (hi - lo)
  fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
  for ax, pts, name, color in ((axes[0], data, "data", "0.25"),
                               (axes[1], generated, "generated", "tab:orange")):
    ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, c=color, linewidths=0)
    ax.set_title(f"{name} (n={len(pts)})")
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_aspect("equal")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(os.fspath(path), dpi=120)
  plt.close(fig)
