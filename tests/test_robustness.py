"""float32 robustness (coincident points, far queries, extreme bandwidths) and bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj
from conftest import cloud

sg = jax.lax.stop_gradient
MAKERS = [dj.gaussian, dj.laplacian, dj.rational_quadratic]


def _objectives(kern, bw):
  """Every field/loss as a scalar function of x (with pos closed over)."""
  return {
      "naive": lambda x, p: dj.drift_loss(x, dj.drift_field(x, p, sg(x), kernel=kern,
                                                             exclude_self=True)),
      "sharp": lambda x, p: dj.drift_loss(x, dj.drift_field(x, p, sg(x), kernel=kern,
                                                             normalization="sharp",
                                                             exclude_self=True)),
      "none": lambda x, p: dj.drift_loss(x, dj.drift_field(x, p, sg(x), kernel=kern,
                                                            normalization="none")),
      "mmd_field": lambda x, p: dj.drift_loss(x, dj.mmd_field(x, p, sg(x), kernel=kern)),
      "deng": lambda x, p: dj.drift_loss(x, dj.deng_field(x, p, sg(x), kernel=kern,
                                                           exclude_self=True,
                                                           column_normalize=True)),
      "ds": lambda x, p: dj.drift_loss(x, dj.doubly_stochastic_field(x, p, sg(x),
                                                                      bandwidth=bw, exclude_self=True)),
      "log_kde": lambda x, p: dj.log_kde_loss(x, p, x, kernel=kern, exclude_self=True),
      "mmd": lambda x, p: dj.mmd_loss(x, p, x, kernel=kern, exclude_self=True),
      "link_id": lambda x, p: dj.kde_link_loss(x, p, x, kernel=kern, link="identity", exclude_self=True),
  }


@functools.partial(jax.jit, static_argnames="name")
def _value_and_grad(name, kern, bw, x, pos):
  """Jitted with the kernel (a pytree: its bandwidth is a leaf) and ``bw`` as arguments, so
  one compile per objective, kernel family and shape serves every bandwidth."""
  return jax.value_and_grad(_objectives(kern, bw)[name])(x, pos)


def _assert_finite_value_and_grad(kern, bw, x, pos):
  for name in _objectives(kern, bw):
    val, grad = _value_and_grad(name, kern, jnp.float32(bw), x, pos)
    assert np.isfinite(float(val)), (kern.name, bw, name, val)
    assert np.all(np.isfinite(np.asarray(grad))), (kern.name, bw, name)


@pytest.mark.parametrize("make", MAKERS)
def test_coincident_points_are_finite(make):
  """x_i = y_j exactly, and duplicated generated samples."""
  pos = jnp.asarray(cloud(0, 6, 3, dtype=np.float32))
  x = jnp.concatenate([pos[:3], pos[:1]], 0)  # copies of data, and a duplicated sample
  _assert_finite_value_and_grad(make(0.5), 0.5, x, pos)
  _assert_finite_value_and_grad(make(0.5), 0.5, pos, pos)  # q = p exactly


@pytest.mark.parametrize("make", MAKERS)
def test_far_queries_are_finite(make):
  """Queries 10³ bandwidths away from all data."""
  bw = 0.1
  pos = jnp.asarray(cloud(1, 6, 2, dtype=np.float32))
  x = jnp.asarray(cloud(2, 5, 2, dtype=np.float32)) * 0.1 + 1e3 * bw
  _assert_finite_value_and_grad(make(bw), bw, x, pos)
  v = dj.drift_field(x, pos, x, kernel=make(bw), exclude_self=True)
  assert np.all(np.isfinite(np.asarray(v)))
  # the normalized attraction still points at the data (no vanishing signal)
  v_plus = dj.sub_field(x, pos, kernel=make(bw))
  toward = jnp.sum(v_plus * (jnp.mean(pos, 0) - x), 1)
  assert np.all(np.asarray(toward) > 0)


@pytest.mark.parametrize("bw", [1e-3, 1e-1, 1e1, 1e3])
@pytest.mark.parametrize("make", MAKERS)
def test_extreme_bandwidths_are_finite(make, bw):
  pos = jnp.asarray(cloud(3, 6, 2, dtype=np.float32))
  x = jnp.asarray(cloud(4, 5, 2, dtype=np.float32, shift=0.3))
  _assert_finite_value_and_grad(make(bw), bw, x, pos)


def test_float32_log_kde_far_and_chunked_finite():
  pos = jnp.asarray(cloud(5, 50, 4, dtype=np.float32))
  x = jnp.asarray(cloud(6, 7, 4, dtype=np.float32)) + 500.0
  for make in MAKERS:
    for chunk in (None, 16):
      out = dj.log_kde(x, pos, kernel=make(0.05), which="sharp", chunk_size=chunk)
      assert np.all(np.isfinite(np.asarray(out)))


BAD = {
    "mismatched D": (lambda: dj.drift_field(jnp.ones((4, 2)), jnp.ones((3, 3)), jnp.ones((4, 2)),
                                            kernel=dj.gaussian(1.0)), "pos"),
    "empty pos": (lambda: dj.drift_field(jnp.ones((4, 2)), jnp.ones((0, 2)), jnp.ones((4, 2)),
                                         kernel=dj.gaussian(1.0)), "pos"),
    "empty neg": (lambda: dj.mmd_field(jnp.ones((4, 2)), jnp.ones((3, 2)), jnp.ones((0, 2)),
                                       kernel=dj.gaussian(1.0)), "neg"),
    "rank": (lambda: dj.deng_field(jnp.ones((4,)), jnp.ones((3, 2)), jnp.ones((4, 2)),
                                   kernel=dj.gaussian(1.0)), "x"),
    "rank neg": (lambda: dj.log_kde_loss(jnp.ones((4, 2)), jnp.ones((3, 2)),
                                         jnp.ones((2, 4, 2)), kernel=dj.gaussian(1.0), exclude_self=True), "neg"),
    "bandwidth": (lambda: dj.doubly_stochastic_field(jnp.ones((4, 2)), jnp.ones((3, 2)),
                                                     jnp.ones((4, 2)), bandwidth=0.0, exclude_self=True),
                  "bandwidth"),
    "exclude_self": (lambda: dj.drift_field(jnp.ones((4, 2)), jnp.ones((3, 2)), jnp.ones((5, 2)),
                                            kernel=dj.gaussian(1.0), exclude_self=True),
                     "exclude_self"),
    "normalization": (lambda: dj.drift_field(jnp.ones((4, 2)), jnp.ones((3, 2)),
                                             jnp.ones((4, 2)), kernel=dj.gaussian(1.0),
                                             normalization="softmax"), "normalization"),
    "nan": (lambda: dj.mmd_loss(jnp.ones((4, 2)), jnp.full((3, 2), jnp.nan), jnp.ones((4, 2)),
                                kernel=dj.laplacian(1.0), exclude_self=True), "`pos` contains NaN"),
    "single negative": (lambda: dj.log_kde_loss(jnp.ones((1, 2)), jnp.ones((3, 2)),
                                                jnp.ones((1, 2)), kernel=dj.gaussian(1.0), exclude_self=True),
                        "2 negatives"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_value_error_naming_argument(case):
  fn, match = BAD[case]
  with pytest.raises(ValueError, match=match):
    fn()
