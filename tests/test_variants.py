"""Every public core function under chex variants (jit, eager, device-placed, pmap), in
float32 against its own float64 value: the float32 accuracy of the core, stated per function.

``with_pmap`` runs the function per device on a broadcast copy of the inputs (one device on
CPU unless fake devices are configured), which is how the data-parallel trainers call the
per-group losses.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from conftest import cloud, x64
import drifting_jax as dj

N, M, D = 9, 11, 3
LAP, GAU, RQ = dj.laplacian(0.8), dj.gaussian(0.8), dj.rational_quadratic(0.8)

# name -> (fn(x, pos) -> array, float32 rtol, atol)
CORE = {
    "pairwise_sqdist": (lambda x, p: dj.pairwise_sqdist(x, p), 1e-5, 1e-5),
    "log_kde": (lambda x, p: dj.log_kde(x, p, kernel=LAP), 1e-5, 1e-5),
    "log_kde/sharp/loo": (lambda x, p: dj.log_kde(x, x, kernel=RQ, which="sharp",
                                                  exclude_self=True), 1e-5, 1e-5),
    "sub_field": (lambda x, p: dj.sub_field(x, p, kernel=LAP), 1e-5, 1e-5),
    "drift_field/kde": (lambda x, p: dj.drift_field(x, p, x, kernel=LAP, exclude_self=True),
                        1e-4, 1e-5),
    "drift_field/sharp": (lambda x, p: dj.drift_field(x, p, x, kernel=RQ, normalization="sharp",
                                                      exclude_self=True), 1e-4, 1e-5),
    "drift_field/none": (lambda x, p: dj.drift_field(x, p, x, kernel=GAU, normalization="none"),
                         1e-4, 1e-5),
    "mmd_field": (lambda x, p: dj.mmd_field(x, p, x, kernel=LAP, exclude_self=True), 1e-4, 1e-5),
    "deng_field": (lambda x, p: dj.deng_field(x, p, x, kernel=LAP, exclude_self=True,
                                              column_normalize=True), 1e-4, 1e-5),
    "doubly_stochastic_field": (lambda x, p: dj.doubly_stochastic_field(
        x, p, x, bandwidth=0.8, exclude_self=True), 1e-4, 1e-5),
    "multiscale": (lambda x, p: dj.multiscale(dj.drift_field, (LAP, dj.laplacian(0.2)),
                                              normalize=True, exclude_self=True)(x, p, x),
                   1e-4, 1e-5),
    "drift_loss": (lambda x, p: dj.drift_loss(x, dj.drift_field(x, p, x, kernel=GAU)),
                   1e-4, 1e-6),
    "log_kde_loss": (lambda x, p: dj.log_kde_loss(x, p, x, kernel=LAP, exclude_self=True),
                     1e-5, 1e-6),
    "mmd_loss": (lambda x, p: dj.mmd_loss(x, p, x, kernel=GAU, exclude_self=True), 1e-4, 1e-6),
    "kde_link_loss": (lambda x, p: dj.kde_link_loss(x, p, x, kernel=LAP, link="identity",
                                                    exclude_self=True), 1e-4, 1e-6),
    "deng_drift_loss": (lambda x, p: dj.deng_drift_loss(x[None], p[None],
                                                        temperatures=(0.05, 0.2)), 1e-4, 1e-6),
    "grouped_loss": (lambda x, p: dj.grouped_loss(dj.make_objective("laplace#", bandwidth=0.8),
                                                  jnp.stack([x, x + 1]), jnp.stack([p, p]))[0],
                     1e-5, 1e-6),
    "jacobian": (lambda x, p: dj.jacobian(lambda z: dj.sub_field(z, p, kernel=GAU), x),
                 1e-4, 1e-5),
    "curl": (lambda x, p: dj.curl(lambda z: dj.drift_field(z, p, x, kernel=LAP), x),
             1e-3, 1e-5),
    "knn_mean_distance": (lambda x, p: dj.knn_mean_distance(p, k=3), 1e-5, 1e-6),
    "asymmetry": (lambda x, p: dj.asymmetry(lambda z: dj.drift_field(z, p, x, kernel=LAP), x),
                  1e-3, 1e-5),
    "line_integral_potential": (lambda x, p: dj.line_integral_potential(
        lambda z: dj.drift_field(z, p, p, kernel=GAU, normalization="sharp"), x), 1e-4, 1e-5),
    "kernel/log_sharp": (lambda x, p: LAP.log_sharp(dj.pairwise_sqdist(x, p)), 1e-5, 1e-5),
    "guided_grouped_loss": (lambda x, p: dj.guided_grouped_loss(
        jnp.stack([x, x + 1]), jnp.stack([p, p]), jnp.stack([x[:4], p[:4]]),
        jnp.asarray([1.0, 2.0]), temperatures=(0.05, 0.2))[0], 1e-4, 1e-6),
    "sinkhorn_drift": (lambda x, p: dj.sinkhorn_drift(x, p, alpha=0.2, exclude_self=True),
                       1e-3, 1e-5),
}


def _inputs(dtype):
  return (jnp.asarray(cloud(0, N, D, dtype=dtype)),
          jnp.asarray(cloud(1, M, D, shift=0.4, dtype=dtype)))


@functools.lru_cache(maxsize=None)
def _float64_reference(name: str, grad: bool = False) -> np.ndarray:
  """The float64 value (or gradient of the summed value) of ``CORE[name]``, computed once
  per name and jitted: it is the reference every float32 variant is compared with."""
  fn = CORE[name][0]
  if grad:
    fn = jax.grad(lambda x, p: jnp.sum(CORE[name][0](x, p)))
  with x64():
    return np.asarray(jax.jit(fn)(*_inputs(np.float64)))


class CoreVariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True, with_device=True, with_pmap=True)
  @parameterized.named_parameters(*((name, name) for name in CORE))
  def test_float32_variant_matches_float64(self, name):
    fn, rtol, atol = CORE[name]
    want = _float64_reference(name)
    x, pos = _inputs(np.float32)
    got = self.variant(fn)(x, pos)
    if getattr(self, "variant_type", None) == chex.ChexVariantType.WITH_PMAP:
      got = got[0]  # one copy per device; all identical
    chex.assert_shape(got, want.shape)
    chex.assert_tree_all_finite(got)
    assert got.dtype == jnp.float32
    chex.assert_trees_all_close(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


class GradientVariantsTest(chex.TestCase):
  """Losses' gradients w.r.t. the generated samples, jitted and eager, vs float64."""

  @chex.variants(with_jit=True, without_jit=True)
  # Not grouped_loss (12 s eagerly): its gradient is the sum of the per-group objective
  # gradients (test_grouped, float64 and float32), each checked against its field in float32
  # and float64 (test_objectives); its forward runs under every variant above.
  @parameterized.named_parameters(*((n, n) for n in ("log_kde_loss", "mmd_loss",
                                                      "kde_link_loss", "deng_drift_loss",
                                                      "drift_loss")))
  def test_gradient(self, name):
    fn = CORE[name][0]
    loss = lambda x, p: jnp.sum(fn(x, p))
    want = _float64_reference(name, grad=True)
    got = self.variant(jax.grad(loss))(*_inputs(np.float32))
    chex.assert_trees_all_close(np.asarray(got, np.float64), want, rtol=2e-4,
                                atol=2e-5 * float(np.max(np.abs(want))))
