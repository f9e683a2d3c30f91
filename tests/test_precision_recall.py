"""Improved precision / recall on constructed point sets with hand-computable answers."""

import numpy as np
import pytest

from conftest import cloud
from drifting_jax.metrics.precision_recall import (
    knn_radii,
    manifold_membership,
    precision_recall,
)


def _brute_force(real, fake, k):
  """Reference: full distance matrices in numpy float64."""
  def radii(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]
  def inside(q, ref, r):
    return np.any(np.linalg.norm(q[:, None] - ref[None], axis=-1) <= r[None], axis=1)
  p = inside(fake, real, radii(real)).mean()
  r = inside(real, fake, radii(fake)).mean()
  return p, r


def test_identical_sets_are_perfect():
  x = cloud(0, 60, 5, dtype=np.float32)
  p, r, f1 = precision_recall(x, x, k=3)
  assert float(p) == 1.0 and float(r) == 1.0 and float(f1) == 1.0


def test_disjoint_far_sets_are_zero():
  x = cloud(1, 40, 3, dtype=np.float32)
  y = cloud(2, 50, 3, shift=100.0, dtype=np.float32)
  p, r, f1 = precision_recall(x, y, k=3)
  assert float(p) == 0.0 and float(r) == 0.0 and float(f1) == 0.0


def test_points_on_a_line_hand_computed():
  # Real: 0, 1, ..., 9 on a line -> k=1 radii are all 1 and the real manifold is [-1, 10].
  real = np.arange(10.0, dtype=np.float32)[:, None]
  np.testing.assert_array_equal(knn_radii(real, k=1), np.ones(10))
  # k=2: the end points need distance 2, inner points 1.
  np.testing.assert_array_equal(knn_radii(real, k=2), [2, 1, 1, 1, 1, 1, 1, 1, 1, 2])
  # Fake: 0.5 (in), 10 (on the boundary of B(9, 1): counts), 10.5 and 20 (out).
  fake = np.array([[0.5], [10.0], [10.5], [20.0]], np.float32)
  np.testing.assert_array_equal(manifold_membership(fake, real, knn_radii(real, k=1)),
                                [True, True, False, False])
  # Fake k=1 radii: 0.5 -> 9.5 (to 10), 10 -> 0.5, 10.5 -> 0.5, 20 -> 9.5 (to 10.5).
  np.testing.assert_allclose(knn_radii(fake, k=1), [9.5, 0.5, 0.5, 9.5])
  # Real points within 9.5 of 0.5: all of 0..9 (max distance 8.5) -> recall 1.
  p, r, f1 = precision_recall(real, fake, k=1)
  assert float(p) == 0.5 and float(r) == 1.0
  np.testing.assert_allclose(f1, 2 * 0.5 * 1.0 / 1.5, rtol=1e-6)


def test_grid_subset_hand_computed():
  # Real: the 10x10 integer grid; fake: its left half (columns x = 0..4), k = 4.
  g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij"), -1).reshape(-1, 2)
  fake = g[g[:, 0] < 5]
  # Fake radii in column x = 4 (the cut): 3 neighbours at distance 1, the 4th at sqrt(2);
  # at the corners (4, 0), (4, 9): 2 at distance 1, 1 at sqrt(2), the 4th at 2.
  np.testing.assert_allclose(knn_radii(fake, k=4).reshape(5, 10)[4],
                             [2.0] + [np.sqrt(2)] * 8 + [2.0], rtol=1e-6)
  p, r, _ = precision_recall(g.astype(np.float32), fake.astype(np.float32), k=4)
  assert float(p) == 1.0  # every fake point is a real point (distance 0)
  # Covered real points: columns 0..4 (themselves), column 5 (distance 1 from column 4), and
  # in column 6 only (6, 0) and (6, 9), exactly on the radius-2 balls of the corners.
  np.testing.assert_allclose(r, 0.62, rtol=1e-7)  # 62 of 100


@pytest.mark.parametrize("batch_size", [5, 16, 1000])
def test_batched_matches_unbatched_and_brute_force(batch_size):
  real = cloud(3, 53, 4, dtype=np.float32)
  fake = cloud(4, 37, 4, shift=0.4, scale=1.3, dtype=np.float32)
  want_p, want_r = _brute_force(real.astype(np.float64), fake.astype(np.float64), 3)
  p, r, _ = precision_recall(real, fake, k=3, batch_size=batch_size)
  np.testing.assert_allclose([p, r], [want_p, want_r], atol=1e-7)
  np.testing.assert_allclose(knn_radii(real, k=5, batch_size=batch_size),
                             knn_radii(real, k=5, batch_size=10_000), rtol=1e-6)


def test_duplicates_count_as_neighbours():
  x = np.array([[0.0], [0.0], [5.0]], np.float32)
  np.testing.assert_array_equal(knn_radii(x, k=1), [0.0, 0.0, 5.0])


def test_validation():
  x = cloud(5, 4, 2, dtype=np.float32)
  with pytest.raises(ValueError, match="`k`=4.*real_features"):
    precision_recall(x, cloud(6, 10, 2), k=4)
  with pytest.raises(ValueError, match="`k`=3.*fake_features"):
    precision_recall(cloud(6, 10, 2), x[:3], k=3)
  with pytest.raises(ValueError, match="`k` must be a positive"):
    precision_recall(x, x, k=0)
  with pytest.raises(ValueError, match="fake_features.*F=2"):
    precision_recall(x, cloud(7, 10, 3), k=1)
  with pytest.raises(ValueError, match="batch_size"):
    precision_recall(x, x, k=1, batch_size=0)
  with pytest.raises(ValueError, match="real_features.*NaN or inf"):
    precision_recall(np.full((5, 2), np.nan), x, k=1)
  with pytest.raises(ValueError, match="radii"):
    manifold_membership(x, x, np.ones(3))
  with pytest.raises(ValueError, match="features"):
    knn_radii(np.zeros(5), k=1)
