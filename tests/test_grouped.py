"""Class-grouped losses (drifting_jax.grouped) and the normalization pieces they use."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import F32_ATOL, F32_GRAD_RTOL, F32_RTOL, cloud, precision_scope, tol
import drifting_jax as dj
from drifting_jax import grouped, normalization
from drifting_jax.objectives import make_objective

G, N, M, D = 3, 10, 12, 4


def _groups(dtype=np.float64):
  gen = np.stack([cloud(10 + g, N, D, dtype=dtype) for g in range(G)])
  pos = np.stack([cloud(20 + g, M, D, shift=0.3 * g, dtype=dtype) for g in range(G)])
  return jnp.asarray(gen), jnp.asarray(pos)


class GroupedLossTest(chex.TestCase):

  # Each identity runs in float64 (x64) and in float32, the library's default precision. The
  # float32 bounds are the suite's shared ones (conftest): a per-group objective is the same
  # handful of O(1) softmax-weighted sums computed by the same code, so F32_RTOL on values and
  # F32_GRAD_RTOL on reverse-mode gradients.

  @chex.variants(with_jit=True, without_jit=True)
  def test_grouped_loss_is_the_objective_per_group(self):
    for precision in ("float64", "float32"):
      with self.subTest(precision=precision), precision_scope(precision):
        rtol = tol(precision, 1e-12, F32_RTOL)
        gen, pos = _groups()
        obj = make_objective("naive-laplace", bandwidth=0.7)
        loss, metrics = self.variant(functools.partial(grouped.grouped_loss, obj))(gen, pos)
        chex.assert_shape(loss, (G,))
        chex.assert_type(loss, jnp.float64 if precision == "float64" else jnp.float32)
        one = jax.jit(obj)  # the reference: compiled once for all groups
        for g in range(G):
          want, want_m = one(gen[g], pos[g], 0)
          np.testing.assert_allclose(loss[g], want, rtol=rtol)
          np.testing.assert_allclose(metrics["drift_norm"][g], want_m["drift_norm"], rtol=rtol)

  def test_grouped_gradient_is_the_sum_of_group_gradients(self):
    for precision in ("float64", "float32"):
      with self.subTest(precision=precision), precision_scope(precision):
        gen, pos = _groups()
        obj = make_objective("laplace#", bandwidth=0.5)
        grad = jax.jit(jax.grad(lambda z: jnp.sum(grouped.grouped_loss(obj, z, pos)[0])))(gen)
        one = jax.jit(jax.grad(lambda z, p: obj(z, p, 0)[0]))  # compiled once for all groups
        want = jnp.stack([one(gen[g], pos[g]) for g in range(G)])
        chex.assert_trees_all_close(grad, want, rtol=tol(precision, 1e-12, F32_GRAD_RTOL),
                                    atol=tol(precision, 0.0, F32_ATOL))


def test_cfg_negative_weight_gives_the_mixture_fraction():
  # U negatives of weight w next to N - 1 generated ones of weight 1 carry the fraction
  # gamma = (alpha - 1) / alpha of the total, i.e. alpha = 1 / (1 - gamma).
  alpha = jnp.asarray([1.0, 1.5, 2.0, 4.0])
  for n, u in ((96, 32), (8, 3)):
    w = grouped.cfg_negative_weight(alpha, num_gen=n, num_uncond=u)
    gamma = u * w / (u * w + n - 1)
    np.testing.assert_allclose(gamma, (alpha - 1) / alpha, rtol=1e-6)
  with pytest.raises(ValueError, match="num_gen"):
    grouped.cfg_negative_weight(alpha, num_gen=1, num_uncond=3)
  with pytest.raises(ValueError, match="num_uncond"):
    grouped.cfg_negative_weight(alpha, num_gen=4, num_uncond=0)
  with pytest.raises(ValueError, match="cfg_scale"):
    grouped.cfg_negative_weight(jnp.asarray([0.5]), num_gen=4, num_uncond=2)
  np.testing.assert_allclose(  # JAX integer scalars are ints
      grouped.cfg_negative_weight(alpha, num_gen=jnp.int32(8), num_uncond=jnp.int32(3)),
      grouped.cfg_negative_weight(alpha, num_gen=8, num_uncond=3))


def test_cfg_scale_power_law():
  a = np.asarray(grouped.sample_cfg_scale(jax.random.PRNGKey(0), 20000, low=1.0, high=4.0,
                                          power=3.0))
  assert a.min() >= 1.0 and a.max() <= 4.0
  # CDF of p(a) ∝ a^-3 on [1, 4]: (1 - a^-2) / (1 - 1/16).
  for q in (1.2, 1.5, 2.0, 3.0):
    assert np.mean(a <= q) == pytest.approx((1 - q ** -2) / (1 - 1 / 16), abs=0.015)
  with pytest.raises(ValueError, match="low"):
    grouped.sample_cfg_scale(jax.random.PRNGKey(0), 4, low=2.0, high=1.0)
  with pytest.raises(ValueError, match="num"):
    grouped.sample_cfg_scale(jax.random.PRNGKey(0), 0)
  with pytest.raises(ValueError, match="power"):
    grouped.sample_cfg_scale(jax.random.PRNGKey(0), 3, power=float("nan"))


def test_guided_loss_is_deng_loss_with_the_cfg_weights():
  gen, pos = (a.astype(jnp.float32) for a in _groups(np.float32))
  unc = jnp.asarray(np.stack([cloud(30 + g, 5, D, dtype=np.float32) for g in range(G)]))
  alpha = jnp.asarray([1.0, 2.0, 3.5])
  temps = (0.05, 0.2)
  loss, m = jax.jit(functools.partial(grouped.guided_grouped_loss, temperatures=temps))(
      gen, pos, unc, alpha)
  chex.assert_shape([loss, m["drift_norm"]], (G,))
  for g in range(G):
    w = (alpha[g] - 1) * (N - 1) / 5
    want = dj.deng_drift_loss(gen[g][None], pos[g][None], unc[g][None],
                                 weight_neg=jnp.full((1, 5), w), temperatures=temps)
    np.testing.assert_allclose(loss[g], want[0], rtol=1e-6)
  with pytest.raises(ValueError, match="uncond"):
    grouped.guided_grouped_loss(gen, pos, unc[:, :, :2], alpha, temperatures=temps)
  with pytest.raises(ValueError, match="cfg_scale"):
    grouped.guided_grouped_loss(gen, pos, unc, alpha[:2], temperatures=temps)


def test_stream_loss_in_kernel_width_units(precision):
  # In units of s the Gaussian drift is V(x; sigma s) / s, so the frozen-field loss
  # mean ||V||^2 of the scaled samples at width sigma equals that at sigma * s over s^2.
  gen, pos = _groups()
  scale = jnp.asarray([0.5, 1.0, 2.5])
  sigma = 0.4
  obj = make_objective("naive-gauss", bandwidth=sigma)
  group_loss = functools.partial(grouped.grouped_loss, obj)
  total, m = grouped.stream_loss(group_loss, {"a": gen, "b": 2 * gen}, {"a": pos, "b": 2 * pos},
                                 scales={"a": scale, "b": 2 * scale})
  want = 0.0
  for g in range(G):
    wide = make_objective("naive-gauss", bandwidth=sigma * float(scale[g]))
    want += float(wide(gen[g], pos[g], 0)[0]) / float(scale[g]) ** 2 / G
  # stream "b" is stream "a" in doubled units: the same loss. float32: the scaled and the wide
  # objective round differently (x / s vs sigma * s), sums of O(1) terms: F32_RTOL.
  rtol = tol(precision, 1e-8, F32_RTOL)
  np.testing.assert_allclose(total, 2 * want, rtol=rtol)
  np.testing.assert_allclose(m["loss/a"], want, rtol=rtol)
  np.testing.assert_allclose(m["loss/b"], want, rtol=rtol)
  with pytest.raises(ValueError, match="stream keys"):
    grouped.stream_loss(group_loss, {"a": gen}, {"b": pos})
  with pytest.raises(ValueError, match="agree"):
    grouped.kernel_scaled(gen, scale[:2])


def test_observe_then_update_equals_update():
  gen, pos = _groups(np.float32)
  ids = jnp.asarray([2, 0, 2])
  state = normalization.init(4)
  want = normalization.update(state, pos, ids, k=3, decay=0.9)
  obs = normalization.observe(pos, k=3)
  chex.assert_shape(obs, (G,))
  got = jax.jit(functools.partial(normalization.update_from_observations, decay=0.9))(
      state, obs, ids)
  chex.assert_trees_all_close(got, want)
  with pytest.raises(ValueError, match="observations"):
    normalization.update_from_observations(state, obs[:2], ids)


def test_nan_samples_and_bad_scales_raise_eagerly():
  objective = make_objective("naive-gauss", bandwidth=0.5)
  gen = np.zeros((2, 4, 3), np.float32) + np.arange(4)[None, :, None]
  pos = gen + 0.5
  bad = gen.copy()
  bad[1, 2, 0] = np.nan
  with pytest.raises(ValueError, match="`gen` contains NaN"):
    grouped.grouped_loss(objective, bad, pos)
  with pytest.raises(ValueError, match="`pos` contains NaN"):
    grouped.grouped_loss(objective, gen, bad)
  with pytest.raises(ValueError, match=r"`gen` stream 'a' contains NaN"):
    grouped.stream_loss(functools.partial(grouped.grouped_loss, objective), {"a": bad},
                        {"a": pos})
  for scale, match in ((np.array([1.0, 0.0]), "positive"), (np.array([1.0, np.nan]), "NaN")):
    with pytest.raises(ValueError, match=match):
      grouped.kernel_scaled(gen, scale)


def test_overflowing_and_nan_samples_raise_eagerly_in_group_helpers():
  objective = make_objective("naive-gauss", bandwidth=0.5)
  gen = np.zeros((2, 4, 3), np.float32) + np.arange(4)[None, :, None]
  with pytest.raises(ValueError, match="`gen` has squared norms"):
    grouped.grouped_loss(objective, gen * 1e19, gen)
  with pytest.raises(ValueError, match="`pos` stream 'a' has squared norms"):
    grouped.stream_loss(functools.partial(grouped.grouped_loss, objective), {"a": gen},
                        {"a": gen * 1e19})
  bad = gen.copy()
  bad[0, 0, 0] = np.inf
  with pytest.raises(ValueError, match="`x` contains NaN or inf"):
    grouped.kernel_scaled(bad, np.ones(2, np.float32))
