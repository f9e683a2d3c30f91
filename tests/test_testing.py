"""drifting_jax.testing: every assertion passes where the property holds and fails, with a
message naming the worst case, where it does not."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import cloud, x64
import drifting_jax as dj
from drifting_jax import testing

SIGMA = 0.7


def _problem():
  return (jnp.asarray(cloud(0, 6, 2)), jnp.asarray(cloud(1, 7, 2, shift=0.5)),
          jnp.asarray(cloud(2, 5, 2)))


def _field(kernel, norm, pos, neg):
  return lambda z: dj.drift_field(z, pos, neg, kernel=kernel, normalization=norm)


ROTATION = jnp.asarray([[0.0, -1.0], [1.0, 0.0]])  # antisymmetric J: V(x) = J x


def _potential_field(z):  # V = -grad U for U(z) = sum z^4 / 4 + z0 z1
  return -(z ** 3 + z[:, ::-1])


@pytest.mark.parametrize("kname", ["gauss", "laplace", "rq"])
def test_conservative_passes_for_gaussian_and_every_sharp_field(kname):
  with x64():
    x, pos, neg = _problem()
    k = dj.kernels.get(kname, SIGMA)
    testing.assert_conservative(_field(k, "sharp", pos, neg), x, rtol=1e-10)
    if kname == "gauss":  # Franz et al.: the normalized field is conservative only here
      testing.assert_conservative(_field(k, "kde", pos, neg), x, rtol=1e-10)
    testing.assert_conservative(_potential_field, x, rtol=1e-12)


@pytest.mark.parametrize("kname", ["laplace", "rq"])
def test_conservative_fails_for_normalized_non_gaussian_fields(kname):
  with x64():
    x, pos, neg = _problem()
    with pytest.raises(AssertionError, match=r"not conservative.*6 of 6 points.*worst at "
                                             r"point \d+.*relative asymmetry"):
      testing.assert_conservative(_field(dj.kernels.get(kname, SIGMA), "kde", pos, neg), x)


def test_conservative_fails_for_a_rotation_and_checks_the_shape():
  x = _problem()[0]
  with pytest.raises(AssertionError, match="relative asymmetry ‖J − Jᵀ‖/‖J‖ = 2"):
    testing.assert_conservative(lambda z: z @ ROTATION.T, x)
  with pytest.raises(AssertionError):
    testing.assert_conservative(lambda z: z[:, :1], x)  # a field of the wrong shape


def test_gradient_field_closed_form_constants():
  with x64():
    x, pos, neg = _problem()
    for kname in ("gauss", "laplace", "rq"):
      k = dj.kernels.get(kname, SIGMA)
      # Eq. (18)-(19): the sharp field is -grad(log q# - log p#), c = 1
      u = lambda z, k=k: (dj.log_kde(z, neg, kernel=k, which="sharp")
                          - dj.log_kde(z, pos, kernel=k, which="sharp"))
      testing.assert_gradient_field(_field(k, "sharp", pos, neg), u, x, scale=1.0, rtol=1e-10)
    # Prop. 8: the Gaussian drift is sigma^2 grad log(p/q): fitted c = sigma^2
    k = dj.gaussian(SIGMA)
    u = lambda z: dj.log_kde(z, neg, kernel=k) - dj.log_kde(z, pos, kernel=k)
    c = testing.assert_gradient_field(_field(k, "kde", pos, neg), u, x, rtol=1e-10)
    assert c == pytest.approx(SIGMA ** 2, rel=1e-10)
    with pytest.raises(AssertionError, match=r"not −c∇U: with c = 0.5"):
      testing.assert_gradient_field(_field(k, "kde", pos, neg), u, x, scale=0.5)
    # the Laplacian normalized field is no gradient of its log-KDE ratio
    k = dj.laplacian(SIGMA)
    u = lambda z: dj.log_kde(z, neg, kernel=k) - dj.log_kde(z, pos, kernel=k)
    with pytest.raises(AssertionError, match="relative residual"):
      testing.assert_gradient_field(_field(k, "kde", pos, neg), u, x)
    with pytest.raises(AssertionError, match="worst at point"):
      testing.assert_gradient_field(lambda z: z @ ROTATION.T,
                                    lambda z: 0.5 * jnp.sum(z * z, axis=1), x)


def _generator(params, z):
  return z @ params["w"] + params["b"]


def test_loss_trains_like_field_eq6():
  with x64():
    _, pos, neg = _problem()
    params = {"w": jnp.asarray(cloud(3, 3, 2)), "b": jnp.asarray([0.1, -0.2])}
    z = jnp.asarray(cloud(4, 9, 3))
    k = dj.laplacian(SIGMA)
    loss = lambda x: dj.log_kde_loss(x, pos, neg, kernel=k)
    # grad log_kde_loss = -(1/N) sum V# dx/dtheta; grad drift_loss = -(2/N) sum V# dx/dtheta
    c = testing.assert_loss_trains_like_field(loss, _field(k, "sharp", pos, neg), _generator,
                                              params, z, rtol=1e-10)
    assert c == pytest.approx(0.5, rel=1e-10)
    with pytest.raises(AssertionError, match=r"does not train like the field.*worst leaf"):
      testing.assert_loss_trains_like_field(loss, _field(k, "kde", pos, neg), _generator,
                                            params, z)


def test_finite_edges_passes_for_library_fields_and_catches_nan_at_zero_distance():
  testing.assert_finite_edges(
      lambda x, p, bw: dj.drift_field(x, p, x, kernel=dj.laplacian(bw), exclude_self=True))
  testing.assert_finite_edges(
      lambda x, p, bw: dj.log_kde_loss(x, p, x, kernel=dj.laplacian(bw), exclude_self=True))

  def naive_laplace(x, p, bw):  # hand-written: sqrt without a safe gradient at 0
    d = jnp.sqrt(jnp.sum((x[:, None] - p[None]) ** 2, -1))
    w = jax.nn.softmax(-d / bw, axis=1)
    return w @ p - x

  with pytest.raises(AssertionError, match="non-finite gradient for coincident points at "
                                           "bandwidth 0.001"):
    testing.assert_finite_edges(naive_laplace)

  def unit_directions(x, p, bw):  # mean unit vector to the data: 0 / 0 at coincident points
    diff = p[None] - x[:, None]
    return jnp.mean(diff / jnp.linalg.norm(diff, axis=-1, keepdims=True), axis=1) * bw

  with pytest.raises(AssertionError, match="non-finite value for coincident points at "
                                           "bandwidth 0.001"):
    testing.assert_finite_edges(unit_directions)


def test_matches_float64():
  x, pos, neg = (np.asarray(a, np.float32) for a in _problem())
  testing.assert_matches_float64(
      lambda a, b, c: dj.drift_field(a, b, c, kernel=dj.gaussian(SIGMA)), x, pos, neg,
      rtol=1e-4, atol=1e-6)
  with pytest.raises(AssertionError, match="float32 result differs from float64"):
    testing.assert_matches_float64(lambda a: (a + 1e8) - 1e8, x, rtol=1e-3)


def test_train_step_compiles_once_with_a_traced_bandwidth_schedule():
  # chex.assert_max_traces on the objective: 20 steps of the annealed objective (the
  # bandwidth is a function of the traced step) trace the step exactly once.
  from drifting_jax.training import ToyConfig, ToyTask, make_train_step
  cfg = ToyConfig(objective="gauss-annealed", bandwidth=0.05, batch_size=64, hidden=16,
                  progress=False)
  run = ToyTask(cfg)
  objective = chex.assert_max_traces(run.objective, n=1)
  step = make_train_step(run.model, run.optimizer, objective, batch_size=cfg.batch_size,
                         noise_dim=cfg.noise_dim)
  state = run.init_state()
  batch = run.sample_batch(jax.random.PRNGKey(0))
  widths = []
  for _ in range(20):
    state, metrics = step(state, batch, jax.random.PRNGKey(1))
    widths.append(float(metrics["bandwidth"]))
  assert widths[0] > widths[-1] > 0.05  # the schedule moved, without retracing
