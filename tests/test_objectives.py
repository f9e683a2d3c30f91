"""Objectives by name: finiteness, wiring to fields/losses, coupled loss, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import F32_ATOL, F32_GRAD_RTOL, cloud, tol
from drifting_jax import fields, kernels, losses
from drifting_jax import objectives
from drifting_jax.objectives import make_objective, objective_names, parse_objective

X = jnp.asarray(cloud(0, 24, 2, dtype=np.float32))
POS = jnp.asarray(cloud(1, 20, 2, shift=0.5, scale=0.5, dtype=np.float32))


def _value_and_grad(fn, x=X, pos=POS, step=3):
  vg = jax.value_and_grad(lambda y, p, t: fn(y, p, t), has_aux=True)
  return jax.jit(vg)(x, pos, jnp.asarray(step))


def test_table_names_are_covered():
  names = objective_names()
  for name in ("naive-laplace", "drifting-laplace", "gauss#", "laplace#", "mmd-gauss",
               "gauss-ds", "gauss-annealed", "sinkhorn", "sharp-rq"):
    assert name in names
  assert parse_objective("laplace#") == ("logkde", "laplace")
  assert parse_objective("naive-rq") == ("naive", "rq")


@pytest.mark.parametrize("name", objective_names())
def test_every_objective_finite_loss_and_grad(name):
  kw = {"max_iterations": 200} if name == "sinkhorn" else {"bandwidth": 0.4}
  fn = make_objective(name, **kw)
  (loss, metrics), grad = _value_and_grad(fn)
  assert loss.shape == () and np.isfinite(loss)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0
  assert {"loss", "drift_norm"} <= set(metrics)
  assert ("bandwidth" in metrics) == (name != "sinkhorn")
  assert np.isfinite(metrics["drift_norm"]) and float(metrics["drift_norm"]) > 0


@pytest.mark.parametrize("name", ["naive-laplace", "sharp-gauss", "laplace#", "mmd-rq"])
def test_coupled_loss_value_and_gradient(name):
  frozen = make_objective(name, bandwidth=0.4)
  coupled = make_objective(name, bandwidth=0.4, stop_gradient=False)
  (loss_c, m_c), g_c = _value_and_grad(coupled)
  (_, m_f), g_f = _value_and_grad(frozen)
  assert np.all(np.isfinite(g_c))
  # Coupled loss is mean ||V||^2 of the same field the frozen objective reports.
  np.testing.assert_allclose(m_c["drift_norm"], m_f["drift_norm"], rtol=1e-5)
  assert float(loss_c) >= float(m_c["drift_norm"]) ** 2 * (1 - 1e-5)  # Jensen
  assert not np.allclose(g_c, g_f, atol=1e-6)  # gradients flow through V


@pytest.mark.parametrize("name", ["drifting-laplace", "gauss-ds"])
def test_coupled_doubly_stochastic_grad_finite(name):
  (_, _), g = _value_and_grad(make_objective(name, bandwidth=0.4, stop_gradient=False))
  assert np.all(np.isfinite(g))


def test_stop_gradient_drift_loss_gradient_is_minus_two_v_over_n():
  sigma = 0.4
  (loss, metrics), grad = _value_and_grad(make_objective("naive-laplace", bandwidth=sigma))
  v = fields.drift_field(X, POS, X, kernel=kernels.laplacian(sigma), exclude_self=True)
  n = X.shape[0]
  np.testing.assert_allclose(grad, -2.0 * v / n, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(loss, jnp.mean(jnp.sum(v * v, -1)), rtol=1e-5)
  np.testing.assert_allclose(metrics["drift_norm"], jnp.mean(jnp.linalg.norm(v, axis=-1)),
                             rtol=1e-5)


def test_naive_gauss_equals_gauss_sharp_up_to_sigma_squared():
  """Franz et al.: Gauss# is equivalent to Naive-Gauss (k# = sigma^2 k, Prop. 8)."""
  sigma = 0.5
  _, g_naive = _value_and_grad(make_objective("naive-gauss", bandwidth=sigma))
  _, g_sharp = _value_and_grad(make_objective("gauss#", bandwidth=sigma))
  np.testing.assert_allclose(g_naive, 2.0 * sigma**2 * g_sharp, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name,loss_fn", [
    ("laplace#", losses.log_kde_loss), ("mmd-gauss", losses.mmd_loss)])
def test_loss_objective_drift_norm_is_minus_n_grad_potential(name, loss_fn):
  sigma = 0.4
  kern = kernels.get(parse_objective(name)[1], sigma)
  (loss, metrics), _ = _value_and_grad(make_objective(name, bandwidth=sigma))
  grad_x = jax.jit(jax.grad(lambda y: loss_fn(y, POS, y, kernel=kern, exclude_self=True)))(X)
  v = -X.shape[0] * grad_x  # per-sample potential gradient (neg stop-gradiented)
  np.testing.assert_allclose(metrics["drift_norm"], jnp.mean(jnp.linalg.norm(v, axis=-1)),
                             rtol=1e-4)
  np.testing.assert_allclose(loss, loss_fn(X, POS, X, kernel=kern, exclude_self=True), rtol=1e-5)


def test_annealed_schedule_and_custom_schedule():
  fn = jax.jit(make_objective("gauss-annealed", bandwidth=0.05, sigma0=1.0, rate=0.01))
  for step in (0, 100, 1000):
    _, m = fn(X, POS, step)
    np.testing.assert_allclose(m["bandwidth"], max(math.exp(-0.01 * step), 0.05), rtol=1e-5)
  fn = jax.jit(make_objective("naive-gauss", schedule=lambda t: 0.1 + 0 * t))
  _, m = fn(X, POS, 7)
  np.testing.assert_allclose(m["bandwidth"], 0.1, rtol=1e-6)


def test_official_deng_loss():
  fn = make_objective("drifting-laplace", official=True, temperatures=(0.02, 0.05, 0.2))
  (loss, m), grad = _value_and_grad(fn)
  assert np.isfinite(loss) and np.all(np.isfinite(grad)) and "feature_scale" in m
  with pytest.raises(ValueError, match="Laplacian"):
    make_objective("drifting-gauss", official=True, temperatures=(0.05,))
  with pytest.raises(ValueError, match="stop_gradient"):
    make_objective("drifting-laplace", official=True, temperatures=(0.05,),
                   stop_gradient=False)
  with pytest.raises(ValueError, match=r"needs the option\(s\) \['temperatures'\]"):
    make_objective("drifting-laplace", official=True)
  with pytest.raises(ValueError, match="no kernel width"):
    make_objective("drifting-laplace", bandwidth=0.05, official=True, temperatures=(0.05,))


def test_options_belong_to_their_family():
  # temperatures without official=True used to be accepted and ignored
  with pytest.raises(ValueError,
                     match=r"unknown option\(s\) `temperatures`.*\['chunk_size'\]"):
    make_objective("drifting-laplace", bandwidth=0.05, temperatures=(0.05,))
  with pytest.raises(ValueError, match="official=True. is an option of 'drifting-laplace'"):
    make_objective("naive-laplace", bandwidth=0.05, official=True)
  with pytest.raises(ValueError, match=r"unknown option\(s\) `sigma_min`"):
    make_objective("gauss-annealed", bandwidth=0.05, sigma_min=0.1)
  with pytest.raises(ValueError, match="no kernel width"):
    make_objective("sinkhorn", bandwidth=0.3)
  with pytest.raises(ValueError, match="either `bandwidth` or `schedule`"):
    make_objective("naive-gauss", bandwidth=0.3, schedule=lambda t: 0.1)
  with pytest.raises(ValueError, match="bandwidth"):
    make_objective("naive-gauss")  # a kernel objective needs a width
  with pytest.raises(ValueError, match="sigma0"):
    make_objective("gauss-annealed", bandwidth=2.0, sigma0=1.0)
  with pytest.raises(ValueError, match="chunk_size"):
    make_objective("gauss#", bandwidth=0.3, chunk_size=0)
  assert set(objectives.FAMILIES["gauss-annealed"].options) == {"sigma0", "rate", "chunk_size"}
  # numpy and JAX scalars are numbers
  for bw in (np.float32(0.3), jnp.asarray(0.3)):
    _, m = make_objective("naive-gauss", bandwidth=bw)(X, POS, 0)
    np.testing.assert_allclose(m["bandwidth"], 0.3, rtol=1e-6)


def test_bad_input():
  with pytest.raises(ValueError, match="objective"):
    make_objective("naive-cauchy", bandwidth=0.1)
  for bad in (0.0, -0.1, float("nan"), "wide"):
    with pytest.raises(ValueError, match="bandwidth"):
      make_objective("naive-gauss", bandwidth=bad)
  with pytest.raises(ValueError, match="unknown option"):
    make_objective("naive-gauss", bandwidth=0.1, alpha=0.3)
  fn = make_objective("naive-gauss", bandwidth=0.1)
  with pytest.raises(ValueError, match="at least 2"):
    fn(X[:1], POS, 0)


@pytest.mark.parametrize("name", ["naive-gauss", "sharp-laplace"])
def test_multiscale_option_gradient_is_sum_of_unit_rms_fields(precision, name):
  # d/dx mean_i ||x_i - sg(x_i + V_i)||^2 = -2 V / N, with V = sum_m V_{m s} / RMS(V_{m s})
  x, pos = cloud(0, 12, 3), cloud(1, 15, 3, shift=0.5)
  family, kname = parse_objective(name)
  obj = make_objective(name, bandwidth=0.75, scales=(0.5, 2.0))  # exact in float32
  g = jax.grad(lambda z: obj(z, pos, 0)[0])(jnp.asarray(x))
  norm = "kde" if family == "naive" else "sharp"
  want = 0.0
  for m in (0.5, 2.0):
    v = fields.drift_field(x, pos, x, kernel=kernels.get(kname, 0.75 * m), normalization=norm,
                           exclude_self=True)
    want = want + v / np.sqrt(np.mean(np.asarray(v) ** 2))
  # float32: reverse-mode gradient of softmax-weighted sums, over two RMS normalizations
  np.testing.assert_allclose(g, -2 * np.asarray(want) / x.shape[0],
                             rtol=tol(precision, 1e-10, F32_GRAD_RTOL),
                             atol=tol(precision, 1e-12, F32_ATOL))
  with pytest.raises(ValueError, match="scales"):
    make_objective(name, bandwidth=0.7, scales=(1.0, -1.0))
  with pytest.raises(ValueError, match="unknown option"):
    make_objective("laplace#", bandwidth=0.7, scales=(1.0,))


# --- each frozen-field objective trains on the field it names, written out here in numpy ---
#
# The frozen loss mean_i ||x_i - sg(x_i + V_i)||^2 has value mean_i ||V_i||^2 and gradient
# -2 V / N, so comparing the objective's gradient with V written out from the papers'
# formulas (float64 numpy, not the library's fields) catches a wrong field, a wrong kernel,
# a missing self-mask or a missing normalization.

def _profiles(kname, sigma, r):
  """(k, k#) at distances r: Table 1 of Franz et al."""
  if kname == "gauss":
    k = np.exp(-r**2 / (2 * sigma**2))
    return k, sigma**2 * k
  if kname == "rq":  # k# = (1/2) ∫_{r²}^∞ k d(s²), Eq. (12)
    return (1 + r**2 / sigma**2) ** -2, sigma**2 / 2 / (1 + r**2 / sigma**2)
  k = np.exp(-r / sigma)
  return k, sigma * (r + sigma) * k


def _field_written_out(family, kname, sigma, x, pos):
  """V(x_i) with negatives = the other generated samples (self excluded)."""
  n = len(x)
  rp = np.linalg.norm(x[:, None] - pos[None], axis=-1)           # [N, M]
  rn = np.linalg.norm(x[:, None] - x[None], axis=-1)             # [N, N]
  off = ~np.eye(n, dtype=bool)
  kp, kp_sharp = _profiles(kname, sigma, rp)
  kn, kn_sharp = _profiles(kname, sigma, rn)
  kn, kn_sharp = kn * off, kn_sharp * off
  dp = pos[None] - x[:, None]                                    # y+ - x, [N, M, D]
  dn = x[None] - x[:, None]                                      # y- - x, [N, N, D]
  if family in ("naive", "sharp"):  # Eq. (3) / Eq. (19): E[k (y - x)] / E[k or k#]
    zp = (kp if family == "naive" else kp_sharp).sum(1)[:, None]
    zn = (kn if family == "naive" else kn_sharp).sum(1)[:, None]
    return (np.einsum("nm,nmd->nd", kp, dp) / zp - np.einsum("nk,nkd->nd", kn, dn) / zn)
  # drifting: A = sqrt(softmax over targets [pos | neg] * softmax over queries) of log k,
  # W+ = A+ sum A-, W- = A- sum A+, V = sum W+ (y+ - x) - sum W- (y- - x) (Franz App. D)
  k_all = np.concatenate([kp, kn], axis=1)                       # masked entries are 0
  a = np.sqrt(k_all / k_all.sum(1, keepdims=True) * (k_all / k_all.sum(0, keepdims=True)))
  a_pos, a_neg = a[:, :len(pos)], a[:, len(pos):]
  w_pos = a_pos * a_neg.sum(1, keepdims=True)
  w_neg = a_neg * a_pos.sum(1, keepdims=True)
  return np.einsum("nm,nmd->nd", w_pos, dp) - np.einsum("nk,nkd->nd", w_neg, dn)


@pytest.mark.parametrize("name", ["naive-gauss", "naive-rq", "sharp-laplace", "sharp-rq",
                                  "drifting-laplace", "drifting-gauss"])
def test_frozen_objective_gradient_is_its_field_written_out(precision, name):
  family, kname = parse_objective(name)
  sigma = 0.4
  x, pos = cloud(0, 12, 2), cloud(1, 10, 2, shift=0.5, scale=0.5)
  (loss, m), g = _value_and_grad(make_objective(name, bandwidth=sigma), jnp.asarray(x),
                                 jnp.asarray(pos))
  v = _field_written_out(family, kname, sigma, x, pos)
  # float32: softmax-weighted sums of <= 22 terms and their reverse-mode gradient
  np.testing.assert_allclose(g, -2 * v / len(x), rtol=tol(precision, 1e-10, F32_GRAD_RTOL),
                             atol=tol(precision, 1e-13, F32_ATOL))
  np.testing.assert_allclose(loss, np.mean(np.sum(v * v, -1)),
                             rtol=tol(precision, 1e-10, F32_GRAD_RTOL))
  np.testing.assert_allclose(m["drift_norm"], np.mean(np.linalg.norm(v, axis=-1)),
                             rtol=tol(precision, 1e-10, F32_GRAD_RTOL))


@pytest.mark.parametrize("name,step", [("gauss-ds", 0), ("gauss-annealed", 0),
                                       ("gauss-annealed", 150), ("sinkhorn", 0)])
def test_frozen_objective_gradient_is_the_field_it_names(name, step):
  """gauss-ds / gauss-annealed train on the doubly-stochastic field (Secretly-SM Alg. 1; the
  field itself is checked against Alg. 1 in test_fields) at sigma(t) = max(sigma0 e^(-r t),
  sigma_min) (Eq. (18)); sinkhorn on the Sinkhorn drift (Alg. 2): gradient -2 V / N."""
  from drifting_jax import sinkhorn  # pylint: disable=import-outside-toplevel
  if name == "sinkhorn":
    fn = make_objective(name, max_iterations=200)
    # the objective's documented defaults: self-excluded negatives, alpha 0.05, squared cost
    v = sinkhorn.sinkhorn_drift(X, POS, alpha=0.05, cost_power=2, exclude_self=True, eta=1.0,
                                threshold=1e-3, max_iterations=200)
  else:
    kw = {"sigma0": 1.0, "rate": 0.01} if name == "gauss-annealed" else {}
    fn = make_objective(name, bandwidth=0.3, **kw)
    sigma = max(math.exp(-0.01 * step), 0.3) if kw else 0.3
    v = fields.doubly_stochastic_field(X, POS, X, bandwidth=sigma, exclude_self=True)
  (loss, m), g = _value_and_grad(fn, step=step)
  np.testing.assert_allclose(g, -2 * v / X.shape[0], rtol=F32_GRAD_RTOL, atol=F32_ATOL)
  np.testing.assert_allclose(loss, jnp.mean(jnp.sum(v * v, -1)), rtol=F32_GRAD_RTOL)
  if name == "gauss-annealed":
    np.testing.assert_allclose(m["bandwidth"], sigma, rtol=1e-6)


def test_official_objective_is_deng_loss():
  """``official=True``: the loss and its gradient are :func:`deng_drift_loss` on the one
  group, and ``drift_norm`` is the RMS force norm ``sqrt(loss · D)`` in Deng's units."""
  import drifting_jax as dj  # pylint: disable=import-outside-toplevel
  temps = (0.02, 0.05, 0.2)
  (loss, m), g = _value_and_grad(make_objective("drifting-laplace", official=True,
                                                temperatures=temps))
  want, want_g = jax.value_and_grad(
      lambda y: dj.deng_drift_loss(y[None], POS[None], temperatures=temps)[0])(X)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(g, want_g, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(m["drift_norm"], np.sqrt(float(want) * X.shape[1]), rtol=1e-6)
