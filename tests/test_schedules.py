"""Tests for drifting_jax.schedules (Secretly-SM Eq. 18, App. E, App. G.3 Alg. 1)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from drifting_jax import schedules

S0, SMIN = 1.5, 0.03  # App. E sweep


def _all(total=100.0, rate=0.05):
  return {
      "exponential": schedules.exponential(sigma0=S0, rate=rate, sigma_min=SMIN),
      "linear": schedules.linear(sigma0=S0, total_steps=total, sigma_min=SMIN),
      "cosine": schedules.cosine(sigma0=S0, total_steps=total, sigma_min=SMIN),
  }


@pytest.mark.parametrize("t", [0.0, 1.0, 7.5, 40.0, 78.0])
def test_closed_form_values(t):
  r, big_t = 0.05, 100.0
  s = _all(big_t, r)
  np.testing.assert_allclose(s["exponential"](t), max(S0 * math.exp(-r * t), SMIN), rtol=1e-6)
  np.testing.assert_allclose(s["linear"](t), max(S0 * (1 - t / big_t), SMIN), rtol=1e-6)
  np.testing.assert_allclose(s["cosine"](t), max(S0 * math.cos(math.pi * t / (2 * big_t)), SMIN),
                             rtol=1e-5)
  np.testing.assert_allclose(schedules.constant(0.3)(t), 0.3, rtol=1e-7)


def test_start_value_and_floors():
  for name, s in _all().items():
    np.testing.assert_allclose(s(0), S0, rtol=1e-7, err_msg=name)
    # Far past the horizon every schedule sits exactly on the floor (cosine does not rise again).
    for t in [100.0, 150.0, 300.0, 1e6]:
      np.testing.assert_allclose(s(t), SMIN, rtol=1e-6, err_msg=f"{name} t={t}")


def test_floor_reached_at_predicted_times():
  r, big_t = 0.05, 100.0
  s = _all(big_t, r)
  t_exp = math.log(S0 / SMIN) / r
  t_lin = big_t * (1 - SMIN / S0)
  t_cos = 2 * big_t / math.pi * math.acos(SMIN / S0)
  for name, t_floor in [("exponential", t_exp), ("linear", t_lin), ("cosine", t_cos)]:
    assert float(s[name](t_floor * 0.99)) > SMIN * 1.0001, name
    np.testing.assert_allclose(s[name](t_floor * 1.01), SMIN, rtol=1e-7, err_msg=name)


def test_monotone_nonincreasing_and_strict_before_floor():
  t = jnp.linspace(0.0, 150.0, 3001)
  for name, s in _all().items():
    v = np.asarray(s(t))
    assert v.shape == t.shape
    assert np.all(np.diff(v) <= 1e-7), name
    above = v[:-1] > SMIN * 1.01
    assert np.all(np.diff(v)[above] < 0), name


def test_ordering_exp_below_linear_below_cosine_on_common_horizon():
  # App. E: with a common horizon the exponential schedule (convex in t) lies below the
  # linear one on [0, x_c T], where 1 - x_c = 50^(-x_c) (x_c ~ 0.97, just before linear hits
  # its floor); cosine (concave) lies above linear. Exp reaches sqrt(2)/k >= 0.0707 (k <= 20,
  # App. F.2) by t = 0.78 T, inside that range: it activates every such mode earliest.
  big_t = 100.0
  r = schedules.exponential_rate_for_horizon(sigma0=S0, sigma_min=SMIN, total_steps=big_t)
  np.testing.assert_allclose(r, math.log(50.0) / 100.0, rtol=1e-12)
  s = _all(big_t, r)
  t = jnp.linspace(0.0, 0.9 * big_t, 1001)
  e, l, c = (np.asarray(s[n](t)) for n in ("exponential", "linear", "cosine"))
  assert np.all(e <= l + 1e-6) and np.all(l <= c + 1e-6)
  np.testing.assert_allclose(s["exponential"](big_t), SMIN, rtol=1e-5)


def test_jit_vmap_and_int_steps():
  s = schedules.exponential(sigma0=S0, rate=0.1, sigma_min=SMIN)
  jitted = jax.jit(s)
  for step in [0, 3, 17, 100]:
    out = jitted(jnp.asarray(step, jnp.int32))
    assert out.dtype == jnp.float32 and out.shape == ()
    np.testing.assert_allclose(out, max(S0 * math.exp(-0.1 * step), SMIN), rtol=1e-6)
  steps = jnp.arange(10)
  for name, sch in _all().items():
    np.testing.assert_allclose(jax.vmap(sch)(steps), sch(steps), rtol=1e-7, err_msg=name)
    np.testing.assert_allclose(jax.jit(sch)(steps), sch(steps), rtol=1e-7, err_msg=name)


def test_exponential_matches_optax_exponential_decay():
  r = 0.07
  ours = schedules.exponential(sigma0=S0, rate=r, sigma_min=SMIN)
  ref = optax.exponential_decay(init_value=S0, transition_steps=1, decay_rate=math.exp(-r),
                                end_value=SMIN)
  steps = jnp.arange(0, 120)
  np.testing.assert_allclose(ours(steps), ref(steps), rtol=2e-5)
  np.testing.assert_allclose(schedules.constant(0.4)(steps), optax.constant_schedule(0.4)(steps))


def test_works_as_optax_schedule():
  # Used as the learning rate of optax.sgd: each update must be -schedule(count) * grad.
  sch = schedules.linear(sigma0=1.0, total_steps=10, sigma_min=0.1)
  opt = optax.sgd(learning_rate=sch)
  params = {"w": jnp.zeros(3)}
  state = opt.init(params)
  grads = {"w": jnp.ones(3)}
  update = jax.jit(opt.update)
  for step in range(12):
    updates, state = update(grads, state, params)
    expected = -max(1.0 * (1 - min(step, 10) / 10), 0.1)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
  # optax.inject_hyperparams also accepts it.
  opt2 = optax.inject_hyperparams(optax.sgd)(learning_rate=sch)
  st2 = opt2.init(params)
  _, st2 = opt2.update(grads, st2, params)
  np.testing.assert_allclose(st2.hyperparams["learning_rate"], 1.0)


def test_float64_time(float64):
  s = schedules.cosine(sigma0=S0, total_steps=10.0, sigma_min=SMIN)
  out = s(jnp.asarray(3.3, jnp.float64))
  assert out.dtype == jnp.float64
  np.testing.assert_allclose(out, S0 * math.cos(math.pi * 3.3 / 20.0), rtol=1e-14)
  assert s(3).dtype == jnp.float64  # integer steps follow the default float dtype


def test_get_schedule():
  s = schedules.get_schedule("exponential", sigma0=S0, rate=0.2, sigma_min=SMIN)
  np.testing.assert_allclose(s(5), S0 * math.exp(-1.0), rtol=1e-6)
  np.testing.assert_allclose(schedules.get_schedule("constant", value=0.3)(9), 0.3)
  np.testing.assert_allclose(
      schedules.get_schedule("linear", sigma0=2.0, total_steps=4, sigma_min=0.1)(1), 1.5)
  np.testing.assert_allclose(
      schedules.get_schedule("cosine", sigma0=2.0, total_steps=3, sigma_min=0.1)(2), 1.0,
      rtol=1e-6)
  with pytest.raises(ValueError, match="name"):
    schedules.get_schedule("step")
  with pytest.raises(ValueError, match="exponential"):
    schedules.get_schedule("exponential", sigma0=1.0, total_steps=3, sigma_min=0.1)


@pytest.mark.parametrize("kwargs,arg", [
    (dict(sigma0=0.0, rate=0.1, sigma_min=0.01), "sigma0"),
    (dict(sigma0=-1.0, rate=0.1, sigma_min=0.01), "sigma0"),
    (dict(sigma0=1.0, rate=0.1, sigma_min=0.0), "sigma_min"),
    (dict(sigma0=1.0, rate=0.1, sigma_min=2.0), "sigma_min"),
    (dict(sigma0=1.0, rate=-0.1, sigma_min=0.1), "rate"),
    (dict(sigma0=float("nan"), rate=0.1, sigma_min=0.1), "sigma0"),
])
def test_exponential_validation(kwargs, arg):
  with pytest.raises(ValueError, match=arg):
    schedules.exponential(**kwargs)


@pytest.mark.parametrize("fn", [schedules.linear, schedules.cosine])
def test_horizon_validation(fn):
  with pytest.raises(ValueError, match="total_steps"):
    fn(sigma0=1.0, total_steps=0, sigma_min=0.1)
  with pytest.raises(ValueError, match="sigma_min"):
    fn(sigma0=1.0, total_steps=10, sigma_min=1.5)
  with pytest.raises(ValueError, match="value"):
    schedules.constant(0.0)


def test_keyword_only():
  with pytest.raises(TypeError):
    schedules.exponential(1.0, 0.1, 0.01)  # pylint: disable=too-many-function-args


@pytest.mark.parametrize("name,kw", [
    ("exponential", dict(sigma0=1.0, rate=0.5, sigma_min=0.1)),
    ("linear", dict(sigma0=1.0, total_steps=10, sigma_min=0.1)),
    ("cosine", dict(sigma0=1.0, total_steps=10, sigma_min=0.1)),
])
def test_negative_or_nan_steps_raise_eagerly_and_give_nan_traced(name, kw):
  """A negative step is not a time: eagerly an error (the exponential would exceed σ0 there,
  the others clip silently); under jit NaN, never a finite value."""
  sched = schedules.get_schedule(name, **kw)
  for bad in (-1, -0.5, float("nan"), np.array([0.0, -2.0])):
    with pytest.raises(ValueError, match="`step` must be >= 0"):
      sched(bad)
  out = jax.jit(sched)(jnp.array([-1.0, 0.0, float("nan")]))
  assert np.isnan(out[0]) and np.isnan(out[2]) and out[1] == pytest.approx(1.0)
  assert float(sched(float("inf"))) == pytest.approx(0.1)  # t -> inf: the floor
  with pytest.raises(ValueError, match="`step` must be a number"):
    sched("3")
