"""Streamed fields and losses (``chunk_size``) equal the one-shot ones, values and gradients.

float64 comparisons at 1e-11 relative: the streamed sums differ from the dense ones only in
the order of the additions and the rescaling by running maxima (a few ulps per block).
float32 at 2e-5 relative: the same reordering over <= 40 blocks of float32 sums.
Queries never coincide with the samples unless ``exclude_self`` masks the pair: at a zero
distance the Laplacian's ``‖x − y‖`` is ``sqrt`` of a round-off residue of the squared-
distance expansion (``~1e-8`` in float64), which differs between blocks of different sizes.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax import fields, kde, kernels, losses, streaming
from conftest import F32_GRAD_RTOL, tol

# float32, streamed vs dense: the block-wise rescaled sums and their gradients differ by
# <= 2.9e-5 relative on small gradient entries (1e-3), <= 1.0e-6 absolute on O(1) ones
STREAM_F32_ATOL = 1e-6

N, M, D = 13, 29, 3


def _problem(dtype, exclude_self):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(N, D)), dtype)
  pos = jnp.asarray(rng.normal(size=(M, D)) + 0.5, dtype)
  neg = x if exclude_self else jnp.asarray(rng.normal(size=(N, D)), dtype)
  return x, pos, neg


FIELDS = {
    "kde": lambda k, **kw: (lambda x, p, n: fields.drift_field(x, p, n, kernel=k, **kw)),
    "sharp": lambda k, **kw: (lambda x, p, n: fields.drift_field(
        x, p, n, kernel=k, normalization="sharp", **kw)),
    "none": lambda k, **kw: (lambda x, p, n: fields.drift_field(
        x, p, n, kernel=k, normalization="none", **kw)),
    "mmd": lambda k, **kw: (lambda x, p, n: fields.mmd_field(x, p, n, kernel=k, **kw)),
    "deng": lambda k, **kw: (lambda x, p, n: fields.deng_field(x, p, n, kernel=k, **kw)),
    "deng-col": lambda k, **kw: (lambda x, p, n: fields.deng_field(
        x, p, n, kernel=k, column_normalize=True, **kw)),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("exclude_self", [False, True])
def test_streamed_fields_equal_dense(precision, field, exclude_self):
  """Blocks of 7 over M = 29 positives and N = 13 negatives (padded last blocks); the
  streaming is kernel-agnostic, so one kernel (the Laplacian, with its cusp) suffices.
  float32: the bounds of the one-sample-block test below (measured <= 1e-6 absolute)."""
  x, pos, neg = _problem(jnp.dtype(precision), exclude_self)
  k = kernels.laplacian(0.7)
  dense = FIELDS[field](k, exclude_self=exclude_self)(x, pos, neg)
  fn = jax.jit(FIELDS[field](k, exclude_self=exclude_self, chunk_size=7))
  chex.assert_trees_all_close(fn(x, pos, neg), dense, rtol=tol(precision, 1e-11, 2e-5),
                              atol=tol(precision, 1e-13, 2e-6))


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_streamed_fields_equal_dense_float32(field):
  """One sample per block (the most rescalings), Gaussian kernel, float32."""
  x, pos, neg = _problem(jnp.float32, True)
  k = kernels.gaussian(0.7)
  dense = FIELDS[field](k, exclude_self=True)(x, pos, neg)
  streamed = jax.jit(FIELDS[field](k, exclude_self=True, chunk_size=1))(x, pos, neg)
  chex.assert_trees_all_close(streamed, dense, rtol=2e-5, atol=2e-6)


def test_streamed_doubly_stochastic_gradient_equals_dense(precision):
  """Coupled training differentiates through the field: the streamed backward pass (the
  rematerialized scan) gives the dense gradient, finite at the masked diagonal."""
  x, pos, _ = _problem(jnp.dtype(precision), True)

  def energy(x, chunk):
    v = fields.doubly_stochastic_field(x, pos, x, bandwidth=0.7, exclude_self=True,
                                       chunk_size=chunk)
    return jnp.sum(v * v)

  grad = jax.jit(jax.grad(energy), static_argnums=1)
  dense, streamed = grad(x, None), grad(x, 5)
  chex.assert_tree_all_finite(streamed)
  chex.assert_trees_all_close(streamed, dense, rtol=tol(precision, 1e-10, F32_GRAD_RTOL), atol=tol(precision, 1e-12, STREAM_F32_ATOL))


@pytest.mark.parametrize("loss", ["log_kde_loss", "mmd_loss"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_streamed_losses_value_and_grad_equal_dense(loss, exclude_self, precision):
  x, pos, neg = _problem(jnp.dtype(precision), exclude_self)
  k = kernels.laplacian(0.7)
  fn = getattr(losses, loss)

  def f(x, chunk):
    return fn(x, pos, x if exclude_self else neg, kernel=k, exclude_self=exclude_self,
              chunk_size=chunk)

  value_and_grad = jax.jit(jax.value_and_grad(f), static_argnums=1)
  dense, streamed = value_and_grad(x, None), value_and_grad(x, 7)
  chex.assert_trees_all_close(streamed, dense, rtol=tol(precision, 1e-11, F32_GRAD_RTOL), atol=tol(precision, 1e-13, STREAM_F32_ATOL))


def test_streamed_log_kde_with_weights_equals_dense(precision):
  x, pos, _ = _problem(jnp.dtype(precision), False)
  w = jnp.linspace(0.0, 2.0, M)  # a zero weight, too
  k = kernels.gaussian(0.5)
  dense = kde.log_kde(x, pos, kernel=k, weights=w, which="sharp")
  streamed = kde.log_kde(x, pos, kernel=k, weights=w, which="sharp", chunk_size=4)
  chex.assert_trees_all_close(streamed, dense, rtol=tol(precision, 1e-12, F32_GRAD_RTOL), atol=tol(precision, 1e-13, STREAM_F32_ATOL))


def test_streamed_gradient_keeps_block_residuals_only():
  """The backward pass of a streamed loss stores no ``[N, M]`` matrix: the rematerialized
  scan body keeps only its running sums, so no saved residual has ``M`` columns."""
  x, pos, _ = _problem(jnp.float32, True)
  pos = jnp.tile(pos, (40, 1))  # M = 1160, blocks of 16
  k = kernels.gaussian(0.7)
  f = lambda x: losses.log_kde_loss(x, pos, x, kernel=k, chunk_size=16)  # noqa: E731
  _, residuals = jax.vjp(f, x)
  shapes = [leaf.shape for leaf in jax.tree_util.tree_leaves(residuals)]
  assert shapes, "the vjp should save some residuals"
  for shape in shapes:
    assert np.prod(shape) < N * pos.shape[0], shapes


def test_massless_rows_match_dense():
  """A compact-support kernel gives rows without mass: the normalized field is NaN there
  (no softmax exists), the unnormalized one 0, streamed as in one shot."""
  x = jnp.array([[0.0], [10.0]])
  pos = jnp.array([[0.1], [0.2], [0.3]])
  flat_top = kernels.radial(lambda u: jnp.where(u < 1.0, -u, -jnp.inf), log_profile=True)
  for norm in ("kde", "none"):
    dense = fields.sub_field(x, pos, kernel=flat_top, normalization=norm)
    streamed = fields.sub_field(x, pos, kernel=flat_top, normalization=norm, chunk_size=2)
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(dense))
    chex.assert_trees_all_close(jnp.nan_to_num(streamed), jnp.nan_to_num(dense))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True])
def test_chunk_size_is_validated(bad):
  x, pos, neg = _problem(jnp.float32, False)
  with pytest.raises(ValueError, match="chunk_size"):
    fields.drift_field(x, pos, neg, kernel=kernels.gaussian(1.0), chunk_size=bad)
  with pytest.raises(ValueError, match="chunk_size"):
    losses.mmd_loss(x, pos, neg, kernel=kernels.gaussian(1.0), chunk_size=bad)
  with pytest.raises(ValueError, match="chunk_size"):
    streaming.check_chunk_size(bad)


@pytest.mark.parametrize("name,options", [("sharp-laplace", {"scales": (1.0, 2.0)}),
                                          ("gauss-ds", {}), ("mmd-gauss", {})])
def test_objective_chunk_size_streams_the_same_loss(name, options, precision):
  """``make_objective(..., chunk_size=)`` reaches the field and the loss: same value and
  gradient as the one-shot objective."""
  from drifting_jax.objectives import make_objective
  x, pos, _ = _problem(jnp.dtype(precision), True)
  grads = []
  for chunk in (None, 8):
    objective = make_objective(name, bandwidth=0.7, chunk_size=chunk, **options)
    grads.append(jax.jit(jax.value_and_grad(lambda x: objective(x, pos, 0)[0]))(x))
  chex.assert_trees_all_close(grads[1], grads[0], rtol=tol(precision, 1e-10, F32_GRAD_RTOL), atol=tol(precision, 1e-12, STREAM_F32_ATOL))
