"""Tests for drifting_jax.sinkhorn (Secretly-SM §6.3, App. G.4, Alg. 2)."""

import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_sd

from conftest import tol

from drifting_jax import testing
from drifting_jax.sinkhorn import (SinkhornDriftInfo, sinkhorn_drift, sinkhorn_drift_with_info,
                                   sinkhorn_loss, sinkhorn_loss_with_info)

enable_x64 = jax.enable_x64  # context manager (jax.experimental.enable_x64 in older jax)


def _data(n=10, m=12, d=2, seed=0, dtype=jnp.float32):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(kx, (n, d), dtype)
  y = 0.7 * jax.random.normal(ky, (m, d), dtype) + jnp.array([1.0, -0.5] + [0.0] * (d - 2), dtype)
  return x, y


def test_unmasked_drift_is_minus_grad_of_ott_sinkhorn_divergence(precision):
  """Prop. 6.2: V ∝ −∇_x S_ε(q, p) for r = 2 without masking (same ε on both sides)."""
  x, y = _data(dtype=jnp.dtype(precision))
  step = 0.5
  v, info = sinkhorn_drift_with_info(x, y, alpha=0.2, cost_power=2, exclude_self=False,
                                     eta=step, threshold=tol(precision, 1e-10, 1e-6), max_iterations=5000)
  assert bool(info.converged_qp) and bool(info.converged_qq)
  eps = float(info.epsilon)
  np.testing.assert_allclose(eps, 0.2 * np.mean(np.sum((x[:, None] - y[None]) ** 2, -1)))
  solve_kwargs = {"threshold": tol(precision, 1e-10, 1e-6), "max_iterations": 5000}

  def div(xx):
    return ott_sd.sinkhorn_divergence(pointcloud.PointCloud, xx, y, epsilon=eps,
                                      solve_kwargs=solve_kwargs)[0]

  grad = jax.jit(jax.grad(div))(x)
  a, b = np.ravel(v), -np.ravel(grad)
  cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  print(f"cosine(V, -grad S_eps) = {cosine:.12f}")
  assert cosine >= 0.999
  # The positive factor is exactly N η / 2:  ∇_{x_i} S = (2/N)(T_qq − T_qp).
  np.testing.assert_allclose(v, -grad * x.shape[0] * step / 2, rtol=tol(precision, 1e-6, 1e-3),
                             atol=tol(precision, 1e-9, 1e-5))  # float32: 1.8e-4, 1.6e-6 measured


def test_masked_self_coupling_is_leave_one_out_convex_combination(precision):
  x, y = _data(n=9, dtype=jnp.dtype(precision))
  _, info = sinkhorn_drift_with_info(x, y, exclude_self=True, threshold=tol(precision, 1e-10, 1e-6),
                                     max_iterations=5000)
  n = x.shape[0]
  w = n * np.asarray(info.pi_qq)
  np.testing.assert_array_equal(np.diag(w), 0.0)  # exact zero mass on the diagonal
  assert np.all(w >= 0)
  np.testing.assert_allclose(w.sum(1), 1.0, atol=tol(precision, 1e-9, 1e-5))  # float32: 7.2e-7
  np.testing.assert_allclose(info.t_qq, w @ np.asarray(x), atol=tol(precision, 1e-12, 1e-6))  # 1.2e-7
  np.testing.assert_allclose(np.asarray(info.pi_qp).sum(1), 1 / n, atol=tol(precision, 1e-10, 1e-6))  # 1.1e-7
  # Leave-one-out: T_qq(x_i) differs from x_i (no collapse to the identity).
  assert np.min(np.linalg.norm(np.asarray(info.t_qq) - np.asarray(x), axis=1)) > 1e-3


def test_q_equals_p_gives_near_zero_drift_without_masking():
  x, _ = _data(n=16)
  v = sinkhorn_drift(x, x, exclude_self=False)
  rel = float(jnp.max(jnp.linalg.norm(v, axis=1)) / jnp.std(x))
  print(f"max |V| / std(x) at q = p: {rel:.2e}")
  assert rel < 1e-3


@pytest.mark.parametrize("cost_power", [1, 2])
def test_cost_powers_finite_in_float32(cost_power):
  x, y = _data(n=12, m=10, d=3)
  x = x.at[1].set(y[0])  # a zero cross distance: r = 1 needs a finite gradient there
  loss_fn = functools.partial(sinkhorn_loss_with_info, cost_power=cost_power, exclude_self=True)
  (loss, info), g = jax.value_and_grad(loss_fn, has_aux=True)(x, y)
  v = info.t_qp - info.t_qq  # eta = 1
  chex.assert_tree_all_finite((loss, g, v))
  assert loss.dtype == jnp.float32 and v.dtype == jnp.float32
  assert bool(info.converged_qp) and bool(info.converged_qq)
  chex.assert_trees_all_equal(jnp.diag(info.pi_qq), jnp.zeros(x.shape[0]))  # masked, float32
  np.testing.assert_allclose(g, -2.0 * v / x.shape[0], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(loss, jnp.mean(jnp.sum(v ** 2, -1)), rtol=1e-5)
  # Differentiating through the drift itself (ott's unrolled backprop across the +inf diagonal).
  # (jit: eager ott backprop re-traces its loops and is several times slower to run here)
  gv = jax.jit(jax.grad(lambda xx: jnp.sum(sinkhorn_drift(xx, y, cost_power=cost_power) ** 2)))(x)
  chex.assert_tree_all_finite(gv)


@pytest.mark.parametrize("cost_power, exclude_self", [(1, True), (2, False)])
def test_gradient_through_drift_matches_finite_differences(cost_power, exclude_self):
  """Backprop through ott's Sinkhorn (incl. the +inf diagonal) at fixed ε, in float64 only:
  a central difference in float32 keeps about half the digits (measured 1.4e-2 to 2.8e-2
  relative), too few to test anything; float32 is the next test."""
  with enable_x64():
    x, y = _data(n=6, m=5, dtype=jnp.float64)
    dx = jax.random.normal(jax.random.PRNGKey(3), x.shape, jnp.float64)
    kw = dict(epsilon=1.0, cost_power=cost_power, exclude_self=exclude_self, threshold=1e-10,
              max_iterations=5000)
    f = jax.jit(lambda xx: jnp.sum(jnp.sin(sinkhorn_drift(xx, y, **kw))))
    directional = float(jnp.vdot(jax.jit(jax.grad(f))(x), dx))
    h = 1e-5
    fd = float((f(x + h * dx) - f(x - h * dx)) / (2 * h))
    np.testing.assert_allclose(directional, fd, rtol=1e-6)


def test_jit_and_vmap_over_groups_match_loop():
  g, n, m, d = 2, 8, 6, 2
  xs = jax.random.normal(jax.random.PRNGKey(1), (g, n, d))
  ys = jax.random.normal(jax.random.PRNGKey(2), (g, m, d)) + 0.5
  fn = functools.partial(sinkhorn_drift_with_info, alpha=0.1, exclude_self=True)
  v_b, info_b = jax.jit(jax.vmap(fn))(xs, ys)
  chex.assert_shape(v_b, (g, n, d))
  chex.assert_shape(info_b.pi_qq, (g, n, n))
  chex.assert_shape(info_b.converged_qp, (g,))
  for i in range(g):
    v_i, info_i = fn(xs[i], ys[i])
    np.testing.assert_allclose(v_b[i], v_i, rtol=1e-5, atol=1e-6)
    assert int(info_b.n_iters_qp[i]) == int(info_i.n_iters_qp)
    assert int(info_b.n_iters_qq[i]) == int(info_i.n_iters_qq)
  assert bool(jnp.all(info_b.converged_qp)) and bool(jnp.all(info_b.converged_qq))


def test_info_reports_convergence_and_warns_eagerly():
  x, y = _data(n=10, m=10)
  _, info = sinkhorn_drift_with_info(x, y)
  assert isinstance(info, SinkhornDriftInfo)
  assert bool(info.converged_qp) and bool(info.converged_qq)
  assert 0 < int(info.n_iters_qp) <= 2000 and 0 < int(info.n_iters_qq) <= 2000
  assert float(info.error_qp) < 1e-3 and float(info.error_qq) < 1e-3
  kw = dict(alpha=0.01, threshold=1e-9, max_iterations=20)
  with pytest.warns(RuntimeWarning, match="did not converge"):
    sinkhorn_drift(x, y, **kw)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no warning under jit: the user reads info instead
    _, info_jit = jax.jit(functools.partial(sinkhorn_drift_with_info, **kw))(x, y)
  assert not bool(info_jit.converged_qp)
  assert int(info_jit.n_iters_qp) == 20


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.zeros((4,)), np.zeros((3, 2))), {}, "`x`"),
    ((np.zeros((4, 2)), np.zeros((3, 2, 1))), {}, "`pos`"),
    ((np.zeros((4, 2)), np.zeros((3, 5))), {}, "`pos`.*D=2"),
    ((np.zeros((0, 2)), np.zeros((3, 2))), {"exclude_self": False}, "`x`"),
    ((np.zeros((4, 2)), np.zeros((0, 2))), {}, "`pos`"),
    ((np.zeros((1, 2)), np.zeros((3, 2))), {"exclude_self": True}, "`x`.*at least 2"),
    ((np.zeros((4, 2)), np.zeros((3, 2))), {"cost_power": 3}, "`cost_power`"),
    ((np.zeros((4, 2)), np.zeros((3, 2))), {"alpha": 0.0}, "`alpha`"),
    ((np.zeros((4, 2)), np.zeros((3, 2))), {"epsilon": -1.0}, "`epsilon`"),
    ((np.zeros((4, 2)), np.zeros((3, 2))), {"eta": float("nan")}, "`eta`"),
    ((np.full((4, 2), np.nan), np.zeros((3, 2))), {}, "`x`.*NaN"),
    ((np.zeros((4, 2)), np.full((3, 2), np.inf)), {}, "`pos`.*NaN"),
])
def test_bad_input_raises_value_error_naming_argument(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    sinkhorn_drift(*args, **kwargs)
  with pytest.raises(ValueError, match=match):
    sinkhorn_loss(*args, **kwargs)


def test_negatives_like_the_other_fields():
  x, y = _data(n=8, m=6)
  # neg = x given explicitly is the default (neg=None) problem
  np.testing.assert_allclose(sinkhorn_drift(x, y, x, exclude_self=True),
                             sinkhorn_drift(x, y, exclude_self=True), rtol=1e-5, atol=1e-6)
  # a separate sample of q: T_qq is the barycentric map onto it
  neg = _data(seed=7, n=11)[0]
  v, info = sinkhorn_drift_with_info(x, y, neg)
  chex.assert_shape(info.pi_qq, (8, 11))
  np.testing.assert_allclose(info.t_qq, 8 * np.asarray(info.pi_qq) @ np.asarray(neg),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(v, info.t_qp - info.t_qq, rtol=1e-6)
  with pytest.raises(ValueError, match="exclude_self=True. needs `neg`"):
    sinkhorn_drift(x, y, neg, exclude_self=True)


@pytest.mark.parametrize("cost_power, exclude_self", [(1, True), (2, False)])
def test_gradient_through_drift_float32_matches_float64(cost_power, exclude_self):
  """The float32 twin of the finite-difference test: the float32 gradient through the
  Sinkhorn drift equals the float64 one (which that test checks), both run to threshold
  1e-6: measured <= 8.7e-7 relative on gradients of O(1), bound 1e-5."""
  kw = dict(epsilon=1.0, cost_power=cost_power, exclude_self=exclude_self, threshold=1e-6,
            max_iterations=5000)
  grad = lambda x, y: jax.jit(jax.grad(
      lambda z: jnp.sum(jnp.sin(sinkhorn_drift(z, y, **kw)))))(x)
  testing.assert_matches_float64(grad, *_data(n=6, m=5), rtol=1e-5, atol=1e-7)
