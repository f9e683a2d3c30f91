"""Tests for drifting_jax.data.memory_bank (Secretly-SM App. G.2, Table 2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax.data import memory_bank as mb


def _tagged(labels, start):
  """Samples ``[K, 2]`` whose features are (label, global push index)."""
  labels = np.asarray(labels)
  return np.stack([labels, start + np.arange(labels.size)], axis=1).astype(np.float32)


def test_init_shapes_and_validation():
  bank = mb.init(3, pos_size=4, neg_size=5, feature_shape=(2, 2, 1))
  assert bank.pos.shape == (3, 4, 2, 2, 1) and bank.neg.shape == (5, 2, 2, 1)
  assert bank.num_classes == 3 and bank.pos_size == 4 and bank.neg_size == 5
  assert int(bank.neg_count) == 0 and np.all(np.asarray(bank.pos_count) == 0)
  with pytest.raises(ValueError, match="pos_size"):
    mb.init(3, pos_size=0, feature_shape=(2,))
  with pytest.raises(ValueError, match="samples"):
    mb.push(bank, jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match="labels"):
    mb.push(bank, jnp.zeros((2, 2, 2, 1)), jnp.array([0, 3]))


def test_ring_buffer_wraparound_keeps_newest():
  pos_size, neg_size = 4, 6
  bank = mb.init(3, pos_size=pos_size, neg_size=neg_size, feature_shape=(2,))
  push = jax.jit(mb.push)
  rng = np.random.default_rng(0)
  history, total = [], 0
  for k in (3, 5, 1, 9, 2):  # includes a single push with > pos_size samples of one class
    labels = rng.integers(0, 3, k)
    if k == 9:
      labels[:] = 1
    bank = push(bank, _tagged(labels, total), labels)
    history += [(int(c), total + i) for i, c in enumerate(labels)]
    total += k
  for c in range(3):
    pushed = [t for cc, t in history if cc == c]
    assert int(bank.pos_count[c]) == min(len(pushed), pos_size)
    assert int(bank.pos_ptr[c]) == len(pushed) % pos_size
    kept = np.asarray(bank.pos[c, :int(bank.pos_count[c])])
    assert set(kept[:, 1].astype(int)) == set(pushed[-pos_size:])
    assert np.all(kept[:, 0] == c)
    # the slot before the write pointer holds the newest entry
    if pushed:
      assert int(bank.pos[c, (int(bank.pos_ptr[c]) - 1) % pos_size, 1]) == pushed[-1]
  assert int(bank.neg_count) == neg_size and int(bank.neg_ptr) == total % neg_size
  assert set(np.asarray(bank.neg[:, 1]).astype(int)) == set(range(total - neg_size, total))


def test_unconditional_label_only_fills_shared_bank():
  bank = mb.init(2, pos_size=4, neg_size=8, feature_shape=(2,))
  bank = jax.jit(mb.push)(bank, _tagged([-1, 0, -1], 0), jnp.array([-1, 0, -1]))
  np.testing.assert_array_equal(bank.pos_count, [1, 0])
  assert int(bank.neg_count) == 3


def test_sample_from_filled_slots_of_the_right_class():
  bank = mb.init(4, pos_size=8, neg_size=10, feature_shape=(2,))
  labels = np.array([0] * 11 + [1] * 3 + [2] * 1)  # class 0 wraps, 1 and 2 partly filled
  bank = jax.jit(mb.push)(bank, _tagged(labels, 100), labels)  # tags start at 100: zeros = unfilled
  sample = jax.jit(functools.partial(mb.sample, num_pos=5, num_neg=4))
  query = jnp.array([0, 1, 2, 0, 1])
  pos, neg = sample(bank, jax.random.PRNGKey(0), query)
  assert pos.shape == (5, 5, 2) and neg.shape == (5, 4, 2)
  pos, neg = np.asarray(pos), np.asarray(neg)
  np.testing.assert_array_equal(pos[..., 0], np.broadcast_to(np.asarray(query)[:, None], (5, 5)))
  valid = {0: set(range(100 + 3, 100 + 11)), 1: {111, 112, 113}, 2: {114}}
  for c, row in zip(np.asarray(query), pos[..., 1].astype(int)):
    assert set(row) <= valid[c]
    assert len(set(row)) == min(5, len(valid[c]))  # no repeats unless the class is short
  assert set(neg[..., 1].astype(int).ravel()) <= set(range(105, 115))  # the newest 10
  for row in neg[..., 1]:
    assert len(set(row)) == 4
  # deterministic given the key, different for another key
  pos2, neg2 = sample(bank, jax.random.PRNGKey(0), query)
  np.testing.assert_array_equal(pos, pos2)
  np.testing.assert_array_equal(neg, neg2)
  assert not np.array_equal(np.asarray(sample(bank, jax.random.PRNGKey(1), query)[0]), pos)
  # an empty class yields zeros
  empty, _ = sample(bank, jax.random.PRNGKey(0), jnp.array([3]))
  np.testing.assert_array_equal(empty, 0)
  with pytest.raises(ValueError, match="labels"):
    mb.sample(bank, jax.random.PRNGKey(0), jnp.array([4]))


def test_table2_sizes_jit_and_pytree():
  """Secretly-SM Table 2 sizes: 128 per class, 1000 shared, 64 pushes, 64 / 16 draws."""
  bank = mb.init(10, feature_shape=(4,))

  @jax.jit
  def step(bank, key):
    k1, k2, k3 = jax.random.split(key, 3)
    labels = jax.random.randint(k1, (64,), 0, 10)
    x = jnp.concatenate([labels[:, None].astype(jnp.float32),
                         jax.random.normal(k2, (64, 3))], axis=1)
    bank = mb.push(bank, x, labels)
    return bank, mb.sample(bank, k3, jnp.arange(10), num_pos=64, num_neg=16)

  for i in range(25):
    bank, (pos, neg) = step(bank, jax.random.PRNGKey(i))
  assert pos.shape == (10, 64, 4) and neg.shape == (10, 16, 4)
  np.testing.assert_array_equal(bank.pos_count, 128)
  assert int(bank.neg_count) == 1000 and int(bank.neg_ptr) == (25 * 64) % 1000
  np.testing.assert_array_equal(pos[..., 0], np.broadcast_to(np.arange(10)[:, None], (10, 64)))
  leaves = jax.tree_util.tree_leaves(bank)
  assert len(leaves) == 6 and all(isinstance(l, jax.Array) for l in leaves)
