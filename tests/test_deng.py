"""Deng et al.'s drift loss: against a step-by-step float64 numpy transcription of their
algorithm (Franz et al. App. D), and its gradient structure."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drifting_jax as dj


def _softmax(a, axis):
  a = a - a.max(axis=axis, keepdims=True)
  e = np.exp(a)
  return e / e.sum(axis=axis, keepdims=True)


def reference(gen, pos, neg, wg, wp, wn, temps):
  """Steps 1-5 of the algorithm, one explicit numpy line per step (float64)."""
  b, cg, s = gen.shape
  targets = np.concatenate([gen, neg, pos], 1)
  wt = np.concatenate([wg, wn, wp], 1)
  sq = ((gen[:, :, None, :] - targets[:, None, :, :]) ** 2).sum(-1)
  dist = np.sqrt(np.maximum(sq, 1e-8))
  scale = (dist * wt[:, None, :]).mean() / wt.mean()
  s_in = max(scale / np.sqrt(s), 1e-3)
  g_s, t_s = gen / s_in, targets / s_in
  dn = dist / max(scale, 1e-3)
  for i in range(cg):
    dn[:, i, i] += 100.0
  force = np.zeros_like(g_s)
  info = {"scale": scale}
  split = cg + neg.shape[1]
  for r in temps:
    logits = -dn / r
    a = np.sqrt(np.maximum(_softmax(logits, -1) * _softmax(logits, -2), 1e-6)) * wt[:, None]
    a_neg, a_pos = a[..., :split], a[..., split:]
    coef = np.concatenate([-a_neg * a_pos.sum(-1, keepdims=True),
                           a_pos * a_neg.sum(-1, keepdims=True)], -1)
    f_r = np.einsum("bit,bts->bis", coef, t_s) - coef.sum(-1)[..., None] * g_s
    info[f"loss_{r}"] = (f_r**2).mean()
    force += f_r / np.sqrt(max((f_r**2).mean(), 1e-8))
  goal = g_s + force
  return ((g_s - goal) ** 2).mean(axis=(1, 2)), info, force, s_in


@pytest.fixture
def large_path(monkeypatch):
  """Sends every problem size down the large-problem path (one exponential per entry, the
  log-domain fallback behind a ``cond``, temperatures in a ``scan``)."""
  from drifting_jax import deng
  monkeypatch.setattr(deng, "_LARGE_ENTRIES", 0)


def _force_path(monkeypatch, path):
  """``direct`` / ``gram``: the small-problem path with that evaluation of the force;
  ``large``: the large-problem path."""
  from drifting_jax import deng
  monkeypatch.setattr(deng, "_LARGE_ENTRIES", 0 if path == "large" else 2 ** 40)
  monkeypatch.setattr(deng, "_GRAM", path == "gram")


@pytest.mark.parametrize("path", ["direct", "gram", "large"])
@pytest.mark.parametrize("offset", [0.0, 100.0])
@pytest.mark.parametrize("with_neg", [False, True])
def test_matches_reference_number_for_number(with_neg, offset, path, monkeypatch):
  """float32 against the float64 transcription at 2e-4, also far from the origin (offset
  100: the distances' ``‖x‖² + ‖y‖² − 2x·y`` would cancel without the centring)."""
  _force_path(monkeypatch, path)
  rng = np.random.default_rng(0)
  b, cg, cp, cn, s = 3, 8, 6, 4, 5
  gen = rng.normal(size=(b, cg, s)) + offset
  pos = rng.normal(size=(b, cp, s)) + 0.5 + offset
  neg = rng.normal(size=(b, cn, s)) + offset if with_neg else np.zeros((b, 0, s))
  wg, wp = rng.uniform(0.5, 1.5, (b, cg)), rng.uniform(0.5, 1.5, (b, cp))
  wn = rng.uniform(0.5, 1.5, (b, neg.shape[1]))
  temps = (0.02, 0.05, 0.2)
  ref_loss, ref_info, force, s_in = reference(gen, pos, neg, wg, wp, wn, temps)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  call = lambda g: dj.deng_drift_loss_with_info(
      g, f32(pos), f32(neg) if with_neg else None, weight_gen=f32(wg),
      weight_pos=f32(wp), weight_neg=f32(wn) if with_neg else None, temperatures=temps)
  loss, info = call(f32(gen))
  assert loss.dtype == jnp.float32 and loss.shape == (b,)
  np.testing.assert_allclose(loss, ref_loss, rtol=2e-4)
  for key, val in ref_info.items():
    np.testing.assert_allclose(info[key], val, rtol=2e-4, err_msg=key)
  grad = jax.grad(lambda g: jnp.sum(call(g)[0]))(f32(gen))
  expected = -2 * force / (s_in * cg * s)
  np.testing.assert_allclose(grad, expected, atol=1e-3 * np.abs(expected).max())


def test_gradient_is_minus_force_direction():
  """∂loss/∂gen = −2 force / (s_in · C_g · S) per group (the stop-gradient structure)."""
  rng = np.random.default_rng(1)
  gen = rng.normal(size=(2, 6, 4))
  pos = rng.normal(size=(2, 7, 4))
  _, _, force, s_in = reference(gen, pos, np.zeros((2, 0, 4)), np.ones((2, 6)), np.ones((2, 7)),
                                np.ones((2, 0)), (0.05, 0.2))
  grad = jax.grad(lambda g: jnp.sum(dj.deng_drift_loss(g, jnp.asarray(pos, jnp.float32),
                                                       temperatures=(0.05, 0.2))))(
                                                           jnp.asarray(gen, jnp.float32))
  np.testing.assert_allclose(grad, -2 * force / (s_in * 6 * 4), rtol=1e-3, atol=1e-6)


def test_jit_and_bad_input():
  gen = jnp.ones((2, 4, 3)) + jnp.arange(12.0).reshape(1, 4, 3) / 10
  pos = jnp.zeros((2, 5, 3))
  np.testing.assert_allclose(jax.jit(lambda g, p: dj.deng_drift_loss(g, p))(gen, pos),
                             dj.deng_drift_loss(gen, pos), rtol=1e-5)
  chex.assert_shape(dj.deng_drift_loss(gen, pos), (2,))
  with pytest.raises(ValueError, match="`x`"):
    dj.deng_drift_loss(gen[0], pos)
  with pytest.raises(ValueError, match="pos"):
    dj.deng_drift_loss(gen, jnp.zeros((2, 5, 4)))
  with pytest.raises(ValueError, match="weight_pos"):
    dj.deng_drift_loss(gen, pos, weight_pos=jnp.ones((2, 4)))
  with pytest.raises(ValueError, match="temperatures"):
    dj.deng_drift_loss(gen, pos, temperatures=(0.0,))


@pytest.mark.parametrize("path", ["direct", "gram", "large"])
def test_traced_overflow_gives_nan_everywhere(path, monkeypatch):
  """A traced sample whose squared distances overflow (inf, or inf − inf) makes the loss,
  the scale and the gradient NaN on every path — never a finite number — with and without
  a zero weight on that sample."""
  _force_path(monkeypatch, path)
  gen = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 4))
  pos = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 4))
  for w in (None, jnp.ones((2, 8)).at[0, 0].set(0.0)):
    fn = jax.jit(lambda a: (dj.deng_drift_loss_with_info(a, pos, weight_gen=w),
                            jax.grad(lambda b: jnp.sum(dj.deng_drift_loss(b, pos,
                                                                          weight_gen=w)))(a)))
    for big in (1e20, 3e38):
      (loss, info), grad = fn(gen.at[0, 0, 0].set(big))
      assert np.all(np.isnan(np.asarray(loss))) and np.isnan(float(info["scale"]))
      assert np.all(np.isnan(np.asarray(grad)))


@pytest.mark.parametrize("shape", [(3, 8, 6, 4, 5), (2, 32, 40, 0, 16)])
def test_one_exponential_path_equals_log_domain_path(shape, monkeypatch, large_path):
  """The one-exponential evaluation of step 4 (taken when the distance spread allows) gives
  the log-domain evaluation's numbers (float32, 1e-5), with weights and extra negatives."""
  from drifting_jax import deng
  rng = np.random.default_rng(2)
  b, cg, cp, cn, s = shape
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  args = (f32(rng.normal(size=(b, cg, s))), f32(rng.normal(size=(b, cp, s)) + 0.3),
          f32(rng.normal(size=(b, cn, s))) if cn else None)
  kw = dict(weight_gen=f32(rng.uniform(0.5, 1.5, (b, cg))),
            weight_pos=f32(rng.uniform(0.5, 1.5, (b, cp))), temperatures=(0.02, 0.05, 0.2))
  if cn:
    kw["weight_neg"] = f32(rng.uniform(0.5, 1.5, (b, cn)))
  grad = lambda: jax.grad(lambda g: jnp.sum(dj.deng_drift_loss(g, *args[1:], **kw)))(args[0])
  monkeypatch.setattr(deng, "_ONE_EXP_RANGE", np.inf)
  one_exp, g_one = dj.deng_drift_loss_with_info(*args, **kw), grad()
  monkeypatch.setattr(deng, "_ONE_EXP_RANGE", -np.inf)
  log_dom, g_log = dj.deng_drift_loss_with_info(*args, **kw), grad()
  chex.assert_trees_all_close(one_exp, log_dom, rtol=1e-5)
  np.testing.assert_allclose(g_one, g_log, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(g_log))))


def _normalized_spread(gen, pos):
  """max(row minima, column minima) − group minimum of the normalized distances (float64)."""
  targets = np.concatenate([gen, pos], 1)
  dist = np.sqrt(np.maximum(((gen[:, :, None] - targets[:, None]) ** 2).sum(-1), 1e-8))
  dn = dist / dist.mean()
  dn[:, np.arange(gen.shape[1]), np.arange(gen.shape[1])] += 100.0
  rows, cols = dn.min(-1), dn.min(-2)
  return float(max(rows.max(), cols.max()) - rows.min())


@pytest.mark.parametrize("side, offset, fallback", [
    ("pos", 2.0, False), ("pos", 6.0, False), ("pos", 8.0, True), ("pos", 40.0, True),
    ("gen", 2.0, False), ("gen", 8.0, False), ("gen", 10.0, True), ("gen", 40.0, True)])
def test_isolated_sample_matches_reference_on_both_sides_of_the_one_exp_range(
    side, offset, fallback, monkeypatch, large_path):
  """A positive (a column) or a generated sample (a row) far from everything puts the
  normalized distance spread near or beyond the one-exponential range at R = 0.02
  (140 R = 2.8; offsets 6 / 8 are at 136 R / 138 R): either way the result matches the
  float64 reference. Beyond the range the log-domain fallback is taken; far beyond it
  (offset 40, ≈ 235 R) the one-exponential sums would underflow to NaN."""
  rng = np.random.default_rng(3)
  gen = rng.normal(size=(1, 8, 5))
  pos = rng.normal(size=(1, 6, 5))
  (pos if side == "pos" else gen)[0, 0] += offset
  spread = _normalized_spread(gen, pos)
  assert (spread >= 2.8) == fallback, spread
  ones = lambda n: np.ones((1, n))
  ref_loss, _, ref_force, s_in = reference(gen, pos, np.zeros((1, 0, 5)), ones(8), ones(6),
                                           ones(0), (0.02, 0.2))
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  loss = dj.deng_drift_loss(f32(gen), f32(pos), temperatures=(0.02, 0.2))
  np.testing.assert_allclose(loss, ref_loss, rtol=2e-4)
  grad = jax.grad(lambda g: jnp.sum(dj.deng_drift_loss(g, f32(pos), temperatures=(0.02, 0.2))))(
      f32(gen))
  np.testing.assert_allclose(grad, -2 * ref_force / (s_in * 8 * 5), rtol=1e-3, atol=1e-6)
  if offset == 40.0:
    from drifting_jax import deng
    monkeypatch.setattr(deng, "_ONE_EXP_RANGE", np.inf)
    assert not np.all(np.isfinite(dj.deng_drift_loss(f32(gen), f32(pos),
                                                     temperatures=(0.02, 0.2))))


def test_vmapped_calls_take_one_branch_for_the_batch(large_path):
  """Under ``jax.vmap`` (how the grouped losses call it) the switch stays a ``cond`` on
  ``all(ok)`` instead of a ``select`` over both branches, and each member still matches its
  own unbatched call — also when one member's isolated sample sends the batch to the
  log-domain path."""
  rng = np.random.default_rng(5)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  gen, pos = rng.normal(size=(3, 8, 5)), rng.normal(size=(3, 6, 5))
  one = lambda g, p: dj.deng_drift_loss(g[None], p[None], temperatures=(0.02, 0.2))[0]
  assert "cond[" in str(jax.make_jaxpr(jax.vmap(one))(f32(gen), f32(pos)))
  for isolated in (False, True):
    if isolated:
      pos[1, 0] += 40.0
    batched = jax.jit(jax.vmap(one))(f32(gen), f32(pos))
    looped = [one(f32(gen[i]), f32(pos[i])) for i in range(3)]
    np.testing.assert_allclose(batched, looped, rtol=1e-5)
    for i in range(3):
      ref = reference(gen[i:i + 1], pos[i:i + 1], np.zeros((1, 0, 5)), np.ones((1, 8)),
                      np.ones((1, 6)), np.ones((1, 0)), (0.02, 0.2))[0]
      np.testing.assert_allclose(batched[i], ref[0], rtol=2e-4)


@pytest.mark.parametrize("one_exp_range", [140.0, -np.inf])
def test_large_problem_path_equals_the_small_problem_path(one_exp_range, monkeypatch):
  """The large-problem path (temperatures in a ``lax.scan``, one-exponential or its
  log-domain fallback) gives the unrolled log-domain path's numbers and gradients (float32,
  1e-5), with weights and extra negatives."""
  from drifting_jax import deng
  rng = np.random.default_rng(4)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  gen, pos, neg = (f32(rng.normal(size=(2, 12, 6))), f32(rng.normal(size=(2, 9, 6)) + 0.3),
                   f32(rng.normal(size=(2, 5, 6))))
  kw = dict(weight_gen=f32(rng.uniform(0.5, 1.5, (2, 12))),
            weight_neg=f32(rng.uniform(0.5, 1.5, (2, 5))), temperatures=(0.02, 0.05, 0.2))
  monkeypatch.setattr(deng, "_ONE_EXP_RANGE", one_exp_range)

  def run():
    out = dj.deng_drift_loss_with_info(gen, pos, neg, **kw)
    grad = jax.grad(lambda g: jnp.sum(dj.deng_drift_loss(g, pos, neg, **kw)))(gen)
    return out, grad

  small = run()
  monkeypatch.setattr(deng, "_LARGE_ENTRIES", 0)
  large = run()
  chex.assert_trees_all_close(large, small, rtol=1e-5, atol=1e-6)
