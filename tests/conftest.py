"""Shared test fixtures: float64 context, random point clouds, the shared data folder."""

import contextlib
import os
import pathlib
import sys

# The suite's programs are small and run a few times each, so compiling dominates (~60 % of a
# typical test file's time under cProfile: ~700 compiles of ~26 ms in test_kernels.py alone).
# Cheaper compiles: the unoptimised XLA CPU backend (the whole default suite takes ~20 % less
# time on 2 cores), and the classic loop emitters instead of the newer fusion emitters
# (compiling 600 small programs: 16.5 s instead of 24.6 s; test_kernels + test_fields: 38 s
# instead of 64 s; jaxlib 0.10.2). Both change how a fusion is lowered to machine code, not
# the arithmetic the tests check. Set before JAX creates its CPU backend; subprocesses the
# tests start inherit it.
from _xla_flags import FAST_COMPILE  # noqa: E402 - before JAX creates its CPU backend
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()

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


# float32 tolerances of the identity tests that run in both precisions (the `precision`
# fixture); float32 eps is 1.2e-7, and every problem is a few points of O(1) coordinates.
# Measured float32 residuals across those tests (jax 0.10.2, CPU) are given with each bound.
F32_RTOL = 1e-5  # closed forms, log-sum-exps and softmax-weighted sums of <= 20 terms, a
#   96-node quadrature: <= 3.1e-6 relative (line integral), <= 8.7e-7 for all others
F32_ATOL = 5e-6  # entries that are differences of O(1) terms (cancellation, e.g. a field
#   component near 0, log k# at 1e5 bandwidths^2 relative to its size): <= 1.2e-6 absolute
#   on O(1) values, 3.9e-3 on log k# = -5e4 (covered by F32_RTOL there)
F32_GRAD_RTOL = 1e-4  # gradients by reverse-mode autodiff of the above (products of
#   softmax weights and differences): <= 4.4e-5 relative (mixture score at sigma = 0.3,
#   a component of 0.02 from O(1) terms), <= 2.6e-5 for the others


def tol(precision, f64, f32):
  """The tolerance for ``precision``: ``f64`` under x64, ``f32`` in float32."""
  return f64 if precision == "float64" else f32


def precision_scope(precision):
  """The context of ``precision``: x64 on for ``"float64"``, nothing for ``"float32"``."""
  return x64() if precision == "float64" else contextlib.nullcontext()


@pytest.fixture(params=["float64", "float32"])
def precision(request):
  """Runs an identity test twice: in float64 (x64 on) and in float32, the library's default
  precision; the test picks each tolerance with :func:`tol` and states the float32 one.
  (``chex.TestCase`` methods cannot take fixtures: they loop over :func:`precision_scope`.)"""
  with precision_scope(request.param):
    yield request.param
