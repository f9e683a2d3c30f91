"""Tests for drifting_jax.normalization (Franz et al. §5.1, kernel width normalization)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import F32_RTOL, tol
from drifting_jax import normalization as kwn


def _line(n, spacing=1.0, dim=1):
  """n points on a line with the given spacing, embedded in R^dim."""
  x = np.zeros((n, dim), np.float32)
  x[:, 0] = spacing * np.arange(n)
  return x


def _grid3(h):
  return np.array([[i * h, j * h] for i in range(3) for j in range(3)], np.float32)


# ---------------------------------------------------------------- kNN distance


def test_knn_line_by_hand():
  # 6 unit-spaced points, k = 2: the ends see (1, 2), the interior (1, 1).
  np.testing.assert_allclose(kwn.knn_mean_distance(_line(6), k=2), (1.5 * 2 + 1.0 * 4) / 6,
                             rtol=1e-6)
  # k = 5 (all others): 3, 11/5, 9/5, 9/5, 11/5, 3.
  np.testing.assert_allclose(kwn.knn_mean_distance(_line(6), k=5), 7 / 3, rtol=1e-6)
  # k = 1: every point's nearest neighbour is at distance 1.
  np.testing.assert_allclose(kwn.knn_mean_distance(_line(10, dim=3), k=1), 1.0, rtol=1e-6)


def test_knn_grid_by_hand():
  # 3x3 grid, spacing h, k = 4: centre h; edge midpoints (3h + sqrt2 h)/4; corners
  # (h + h + sqrt2 h + 2h)/4. Mean = (8 + 2 sqrt2) h / 9.
  h = 0.5
  np.testing.assert_allclose(kwn.knn_mean_distance(_grid3(h), k=4),
                             (8 + 2 * math.sqrt(2)) * h / 9, rtol=1e-6)


def test_knn_default_k5_and_invariances():
  # Unit-spaced line of 12 points, k = 5, computed by hand from the sorted distance lists.
  x = _line(12)
  expected = np.mean([np.sort(np.abs(np.arange(12) - i)[np.arange(12) != i])[:5].mean()
                      for i in range(12)])
  np.testing.assert_allclose(kwn.knn_mean_distance(x), expected, rtol=1e-6)
  rng = np.random.default_rng(0)
  y = rng.standard_normal((40, 7)).astype(np.float32)
  q, _ = np.linalg.qr(rng.standard_normal((7, 7)))
  base = kwn.knn_mean_distance(y)
  np.testing.assert_allclose(kwn.knn_mean_distance(3.0 * y), 3.0 * base, rtol=1e-5)
  np.testing.assert_allclose(kwn.knn_mean_distance(y @ q.astype(np.float32) + 5.0), base,
                             rtol=1e-4)


def test_knn_matches_brute_force_sklearn(precision):
  from sklearn.neighbors import NearestNeighbors  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  y = rng.standard_normal((50, 4))
  dist, _ = NearestNeighbors(n_neighbors=6).fit(y).kneighbors(y)  # column 0 is the point itself
  # float32: a mean of 250 square roots of O(1) squared distances: F32_RTOL
  np.testing.assert_allclose(kwn.knn_mean_distance(jnp.asarray(y), k=5), dist[:, 1:].mean(),
                             rtol=tol(precision, 1e-10, F32_RTOL))


def test_knn_duplicates_and_gradient_finite():
  x = jnp.asarray(np.concatenate([_line(4), _line(4)]))  # every point duplicated
  # Nearest neighbours: the duplicate (0) then at distance 1 -> k = 2 gives mean of (0, 1) = 0.5.
  np.testing.assert_allclose(kwn.knn_mean_distance(x, k=2), 0.5, atol=1e-6)
  g = jax.grad(lambda z: kwn.knn_mean_distance(z, k=2))(x)
  assert np.all(np.isfinite(np.asarray(g)))


def test_knn_mask_equals_subset():
  rng = np.random.default_rng(2)
  y = rng.standard_normal((20, 3)).astype(np.float32)
  mask = np.zeros(20, bool)
  mask[[0, 3, 4, 8, 11, 12, 15, 19]] = True
  np.testing.assert_allclose(kwn.knn_mean_distance(y, k=3, mask=mask),
                             kwn.knn_mean_distance(y[mask], k=3), rtol=1e-5)


def test_knn_vmap_and_jit():
  rng = np.random.default_rng(3)
  groups = rng.standard_normal((4, 16, 5)).astype(np.float32)
  batched = jax.vmap(lambda g: kwn.knn_mean_distance(g, k=5))(groups)
  single = [kwn.knn_mean_distance(g, k=5) for g in groups]
  np.testing.assert_allclose(batched, single, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(lambda g: kwn.knn_mean_distance(g, k=5))(groups[0]),
                             single[0], rtol=1e-5)


# ----------------------------------------------------------------------- EMA state


@pytest.mark.parametrize("m,k", [(96, 5), (7, 3), (130, 5), (20, 9)])
def test_k_smallest_equals_sorting(m, k):
  """The insertion path (m <= 128, k <= 8) and the top_k path both give the k smallest of
  every row, ascending and with multiplicity — ties and +inf (masked entries); a row with a
  NaN is NaN on the insertion path (top_k orders NaN arbitrarily: `_knn_mean_from_dist`
  marks such rows NaN itself, tested with the overflowing norms above)."""
  rng = np.random.default_rng(m + k)
  v = rng.uniform(size=(4, 6, m)).astype(np.float32)
  v[0, :, : k + 2] = 0.25                      # ties across the k-th place
  v[1, :, ::2] = np.inf                        # masked-out candidates
  v[2, 0, 3] = np.nan                          # a NaN entry
  got = np.array(jax.jit(lambda a: kwn._k_smallest(a, k))(v))
  want = np.sort(v, axis=-1)[..., :k]
  insertion = m <= kwn._INSERTION_MAX_N and k <= kwn._INSERTION_MAX_K
  if insertion:
    want[2, 0] = np.nan
  else:
    got[2, 0] = want[2, 0]
  np.testing.assert_array_equal(got, want)


def test_init():
  s = kwn.init(3)
  np.testing.assert_array_equal(s.scale, np.ones(3))
  np.testing.assert_array_equal(s.count, np.zeros(3))
  assert int(s.step) == 0 and s.scale.dtype == jnp.float32 and s.count.dtype == jnp.int32


def test_ema_arithmetic_by_hand():
  s = kwn.init(3)
  # Batch 1: class 0 sees a unit line (k=2 statistic 7/6), class 2 a line of spacing 3 (3.5).
  s = kwn.update(s, np.stack([_line(6), _line(6, 3.0)]), np.array([0, 2]), k=2, decay=0.9)
  np.testing.assert_allclose(s.scale, [7 / 6, 1.0, 3.5], rtol=1e-6)  # first obs sets it
  np.testing.assert_array_equal(s.count, [1, 0, 1])
  assert int(s.step) == 1
  # Batch 2: class 0 sees spacing 2 (7/3) -> 0.9 * 7/6 + 0.1 * 7/3 = 7/6 * 1.1;
  # class 1 observed for the first time (spacing 0.5 -> 7/12); class 2 unchanged.
  s = kwn.update(s, np.stack([_line(6, 2.0), _line(6, 0.5)]), np.array([0, 1]), k=2, decay=0.9)
  np.testing.assert_allclose(s.scale, [7 / 6 * 1.1, 7 / 12, 3.5], rtol=1e-6)
  np.testing.assert_array_equal(s.count, [2, 1, 1])
  # Batch 3: two groups of class 2 (spacings 1 and 5 -> 7/6 and 35/6) are averaged to 3.5
  # before the EMA step, which leaves 3.5 unchanged.
  s = kwn.update(s, np.stack([_line(6), _line(6, 5.0)]), np.array([2, 2]), k=2, decay=0.9)
  np.testing.assert_allclose(s.scale, [7 / 6 * 1.1, 7 / 12, 3.5], rtol=1e-6)
  np.testing.assert_array_equal(s.count, [2, 1, 2])
  assert int(s.step) == 3


def test_ema_converges_to_constant_statistic_with_default_decay():
  # With alpha = 0.99 after a jump from 1 to 2: scale_n = 2 - 0.99^n (first obs sets 1).
  s = kwn.update(kwn.init(1), _line(8)[None], np.array([0]), k=1)
  upd = jax.jit(lambda st, x: kwn.update(st, x, jnp.zeros(1, jnp.int32), k=1))
  for _ in range(50):
    s = upd(s, _line(8, 2.0)[None])
  np.testing.assert_allclose(s.scale[0], 2.0 - 0.99**50, rtol=1e-5)
  assert int(s.count[0]) == 51 and int(s.step) == 51


def test_update_from_labels_matches_grouped():
  rng = np.random.default_rng(4)
  x = rng.standard_normal((30, 3)).astype(np.float32)
  labels = np.array([0] * 12 + [2] * 10 + [1] * 8)
  perm = rng.permutation(30)
  s_lab = kwn.update_from_labels(kwn.init(4), x[perm], labels[perm], k=5)
  expected = [kwn.knn_mean_distance(x[labels == c], k=5) for c in range(3)]
  np.testing.assert_allclose(s_lab.scale[:3], expected, rtol=1e-5)
  # Class 3 is absent: unchanged. A class with <= k samples is skipped.
  assert float(s_lab.scale[3]) == 1.0 and int(s_lab.count[3]) == 0
  few = kwn.update_from_labels(kwn.init(2), x[:8], np.array([0] * 6 + [1] * 2), k=5)
  np.testing.assert_array_equal(few.count, [1, 0])
  np.testing.assert_allclose(few.scale[1], 1.0)


def test_apply():
  s = kwn.KernelWidthState(scale=jnp.array([2.0, 4.0, 0.5]), count=jnp.ones(3, jnp.int32),
                           step=jnp.array(5, jnp.int32))
  x = jnp.ones((2, 3, 2))
  out = kwn.apply(s, x, jnp.array([1, 2]))
  np.testing.assert_allclose(out[0], 0.25)
  np.testing.assert_allclose(out[1], 2.0)
  flat = kwn.apply(s, jnp.ones((3, 4)), jnp.array([0, 1, 2]))
  np.testing.assert_allclose(flat, np.array([[0.5], [0.25], [2.0]]) * np.ones((3, 4)))
  # After normalization the class's kNN statistic is 1 (statistic of a single batch).
  st = kwn.update(kwn.init(1), _line(6, 3.0)[None], np.array([0]), k=5)
  np.testing.assert_allclose(kwn.knn_mean_distance(kwn.apply(st, _line(6, 3.0), np.zeros(6, int)),
                                                   k=5), 1.0, rtol=1e-6)


def test_warmup_flag_and_jit_training_step():
  w = 3
  s = kwn.init(2)
  flags = []

  @jax.jit
  def step(state, x, params):
    state = kwn.update(state, x, jnp.array([0, 1]), k=2)
    # Caller's pattern: skip the optimizer update during warm-up.
    params = jax.lax.cond(kwn.in_warmup(state, w), lambda p: p, lambda p: p - 1.0, params)
    return state, params

  params = jnp.array(10.0)
  x = np.stack([_line(5), _line(5, 2.0)])
  for _ in range(5):
    flags.append(bool(kwn.in_warmup(s, w)))
    s, params = step(s, x, params)
  assert flags == [True, True, True, False, False]
  # Updates 1..3 are warm-up (state.step after update = 1, 2 < 3 -> skip; 3 -> train).
  np.testing.assert_allclose(params, 7.0)
  assert not bool(kwn.in_warmup(kwn.init(1), 0))


def test_vmap_over_independent_states():
  # vmap over e.g. replicas: each replica has its own state and batch.
  states = jax.vmap(lambda _: kwn.init(2))(jnp.arange(3))
  xs = np.stack([np.stack([_line(6, c), _line(6, 2 * c)]) for c in (1.0, 2.0, 3.0)])
  ids = jnp.tile(jnp.array([0, 1]), (3, 1))
  out = jax.vmap(lambda st, x, i: kwn.update(st, x, i, k=2))(states, xs, ids)
  np.testing.assert_allclose(out.scale, 7 / 6 * np.array([[1, 2], [2, 4], [3, 6]]), rtol=1e-6)


# ---------------------------------------------------------------------- validation


def test_validation():
  with pytest.raises(ValueError, match="`k`"):
    kwn.knn_mean_distance(_line(5), k=5)
  with pytest.raises(ValueError, match="`k`"):
    kwn.knn_mean_distance(_line(5), k=0)
  with pytest.raises(ValueError, match="`x`"):
    kwn.knn_mean_distance(np.zeros(5), k=1)
  with pytest.raises(ValueError, match="mask"):
    kwn.knn_mean_distance(_line(5), k=1, mask=np.ones(4, bool))
  s = kwn.init(2)
  good = np.stack([_line(6)] * 2)
  for decay in (0.0, 1.0, 1.5):
    with pytest.raises(ValueError, match="decay"):
      kwn.update(s, good, np.array([0, 1]), decay=decay)
  with pytest.raises(ValueError, match="samples"):
    kwn.update(s, _line(6), np.array([0]))
  with pytest.raises(ValueError, match="`k`"):
    kwn.update(s, good, np.array([0, 1]), k=6)
  with pytest.raises(ValueError, match="class_ids"):
    kwn.update(s, good, np.array([0]))
  with pytest.raises(ValueError, match="class_ids"):
    kwn.update(s, good, np.array([0, 2]))
  with pytest.raises(ValueError, match="class_ids"):
    kwn.apply(s, np.ones((3, 2)), np.array([0, 1]))
  with pytest.raises(ValueError, match="num_classes"):
    kwn.init(0)
  with pytest.raises(ValueError, match="warmup_batches"):
    kwn.in_warmup(s, -1)


def test_out_of_range_class_ids_raise_eagerly_and_are_nan_under_jit():
  """JAX's gather clamps and its scatter drops out-of-range indices: a class id of 5 with 3
  classes would read class 2's scale. Eagerly an error; under jit NaN; under checked named."""
  import drifting_jax as dj
  state = kwn.init(3)
  obs, x = jnp.array([1.0, 2.0]), jnp.ones((2, 4, 2))
  bad, good = jnp.array([0, 5]), jnp.array([0, 2])
  for call in (lambda: kwn.apply(state, x, bad),
               lambda: kwn.update_from_observations(state, obs, bad),
               lambda: kwn.update(state, x, bad, k=2)):
    with pytest.raises(ValueError, match=r"`class_ids` must lie in \[0, 3\)"):
      call()
  with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 3\)"):
    kwn.update_from_labels(state, x[0], jnp.array([0, 0, 1, 9]), k=1)
  rows = jax.jit(kwn.apply)(state, x, bad)
  assert np.all(np.asarray(rows[0]) == 1.0) and np.all(np.isnan(np.asarray(rows[1])))
  assert np.all(np.isnan(jax.jit(kwn.update_from_observations)(state, obs, bad).scale))
  assert np.all(np.isnan(jax.jit(lambda s, a, i: kwn.update(s, a, i, k=2))(state, x, bad).scale))
  assert np.all(np.isnan(jax.jit(lambda s, a, i: kwn.update_from_labels(s, a, i, k=1))(
      state, x[0], jnp.array([0, 0, 1, 9])).scale))
  np.testing.assert_allclose(jax.jit(kwn.update_from_observations)(state, obs, good).scale,
                             [1.0, 1.0, 2.0])
  with pytest.raises(Exception, match="class_ids"):
    dj.checked(kwn.apply)(state, x, bad)
  with pytest.raises(Exception, match=r"`class_ids` must lie in \[0, 3\), got 5"):
    dj.checked(jax.jit(kwn.apply))(state, x, bad)  # traced: names the id outside
