"""Shared test fixtures: float64 context, random point clouds, the shared data folder."""

import os
import pathlib
import sys

# The suite's programs are small and run a few times each, so compiling dominates: the
# unoptimised XLA CPU backend compiles them faster (the whole default suite takes ~20 % less
# time on 2 cores). Optimisation levels change fusion and scheduling, not the arithmetic the
# tests check. Set before JAX creates its CPU backend; subprocesses the tests start inherit it.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE).strip()

import numpy as np
import pytest

from drifting_jax.testing import x64  # noqa: F401 - one float64 switch


ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the experiment scripts are imported as `experiments.<name>`
  sys.path.insert(0, str(ROOT))


def numbers(obj):
  """Every int/float leaf of a JSON-like structure (bools excluded)."""
  if isinstance(obj, dict):
    for v in obj.values():
      yield from numbers(v)
  elif isinstance(obj, list):
    for v in obj:
      yield from numbers(v)
  elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
    yield obj




@pytest.fixture
def float64():
  with x64():
    yield


def cloud(seed, n, d, shift=0.0, scale=1.0, dtype=np.float64):
  """``[n, d]`` Gaussian point cloud as a numpy array."""
  rng = np.random.default_rng(seed)
  return (shift + scale * rng.standard_normal((n, d))).astype(dtype)


SHARED_MNIST = pathlib.Path(os.environ.get(
    "DRIFTING_JAX_MNIST", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" /
    "mnist"))

# The library finds MNIST only through $DRIFTING_JAX_MNIST (or an explicit "mnist:/folder");
# the tests point it at the shared folder beside the checkout when that exists.
if "DRIFTING_JAX_MNIST" not in os.environ and SHARED_MNIST.is_dir():
  os.environ["DRIFTING_JAX_MNIST"] = str(SHARED_MNIST)
