"""Functional memory bank of real samples (Secretly-SM App. G.2, Table 2; Deng et al.).

Large-label training (ImageNet, 1000 classes) cannot draw ``N_pos`` fresh positives of each
label from the data loader every step, so real samples are pushed into a bank and the
positives (and the unconditional real "negatives" used for classifier-free guidance) are
drawn from it. Secretly-SM Table 2: a per-class positive ring buffer of size 128, a shared
unconditional bank of size 1000, 64 pushes per step, 64 positives / 16 negatives drawn
per label.

The bank is an immutable :class:`MemoryBank` pytree of static-shaped arrays; :func:`push`
and :func:`sample` are pure and jittable, and the state can be checkpointed with orbax
like any other pytree.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation
from drifting_jax.data.batching import random_subset

__all__ = ["MemoryBank", "init", "push", "sample"]


class MemoryBank(NamedTuple):
  """State of the memory bank (a pytree; all leaves are arrays).

  Attributes:
    pos: ``[num_classes, pos_size, *feature_shape]`` per-class ring buffers.
    pos_count: ``[num_classes]`` int32 number of filled slots per class (``<= pos_size``).
    pos_ptr: ``[num_classes]`` int32 next write slot per class.
    neg: ``[neg_size, *feature_shape]`` shared (unconditional) ring buffer.
    neg_count: ``[]`` int32 number of filled slots of ``neg``.
    neg_ptr: ``[]`` int32 next write slot of ``neg``.
  """
  pos: jax.Array
  pos_count: jax.Array
  pos_ptr: jax.Array
  neg: jax.Array
  neg_count: jax.Array
  neg_ptr: jax.Array

  @property
  def num_classes(self) -> int:
    return self.pos.shape[0]

  @property
  def pos_size(self) -> int:
    return self.pos.shape[1]

  @property
  def neg_size(self) -> int:
    return self.neg.shape[0]


def init(num_classes: int, *, pos_size: int = 128, neg_size: int = 1000,
         feature_shape: Sequence[int], dtype=jnp.float32) -> MemoryBank:
  """An empty bank.

  Args:
    num_classes: number of per-class ring buffers.
    pos_size: slots per class (Secretly-SM Table 2: 128).
    neg_size: slots of the shared unconditional buffer (Table 2: 1000).
    feature_shape: shape of one sample, e.g. ``(28, 28, 1)`` or a latent ``(32, 32, 4)``.
    dtype: storage dtype.

  Returns:
    :class:`MemoryBank` with zero counts.
  """
  for name, v in (("num_classes", num_classes), ("pos_size", pos_size), ("neg_size", neg_size)):
    _validation.check_int(name, v, minimum=1)
  feature_shape = tuple(int(d) for d in feature_shape)
  zeros = lambda n: jnp.zeros(n, jnp.int32)
  return MemoryBank(
      pos=jnp.zeros((num_classes, pos_size) + feature_shape, dtype),
      pos_count=zeros((num_classes,)), pos_ptr=zeros((num_classes,)),
      neg=jnp.zeros((neg_size,) + feature_shape, dtype),
      neg_count=zeros(()), neg_ptr=zeros(()))


def _check_push(bank: MemoryBank, samples, labels) -> None:
  feat = bank.pos.shape[2:]
  if np.ndim(samples) < 1 or tuple(np.shape(samples)[1:]) != feat:
    raise ValueError(f"`samples` must have shape [K, {', '.join(map(str, feat))}], "
                     f"got {np.shape(samples)}.")
  if np.shape(labels) != np.shape(samples)[:1]:
    raise ValueError(f"`labels` must have shape [{np.shape(samples)[0]}], got {np.shape(labels)}.")
  if not isinstance(labels, jax.core.Tracer):
    lab = np.asarray(labels)
    if lab.size and (lab.min() < -1 or lab.max() >= bank.num_classes):
      raise ValueError(f"`labels` must lie in [-1, {bank.num_classes}) (-1 = unconditional "
                       f"only), got range [{lab.min()}, {lab.max()}].")


def push(bank: MemoryBank, samples: jax.Array, labels: jax.Array) -> MemoryBank:
  """Pushes ``K`` real samples into their class buffers and into the shared buffer.

  Ring-buffer semantics: each buffer keeps its most recent entries, in push order (row
  ``i`` of ``samples`` is newer than row ``i - 1``); when more than ``pos_size`` samples of
  one class (or more than ``neg_size`` in total) arrive in a single push, only the last
  ones are kept. A label of ``-1`` pushes the sample into the shared buffer only (labels
  outside ``[0, num_classes)`` are ignored by the class buffers under ``jit``; concrete
  inputs are validated).

  Args:
    bank: current state.
    samples: ``[K, *feature_shape]`` samples (Secretly-SM Table 2: ``K = 64``).
    labels: ``[K]`` int class labels.

  Returns:
    The updated :class:`MemoryBank`.
  """
  _check_push(bank, samples, labels)
  c, p, n = bank.num_classes, bank.pos_size, bank.neg_size
  samples = jnp.asarray(samples, bank.pos.dtype)
  k = samples.shape[0]
  labels = jnp.asarray(labels, jnp.int32)
  valid = (labels >= 0) & (labels < c)
  lab = jnp.where(valid, labels, c)  # class c (out of bounds) = dropped by the scatters
  # Rank of each sample among earlier samples of the same class in this push.
  same = (lab[:, None] == lab[None, :]) & jnp.tri(k, k, -1, dtype=bool)
  rank = jnp.sum(same, axis=1).astype(jnp.int32)
  added = jnp.zeros(c + 1, jnp.int32).at[lab].add(1)[:c]  # [C] pushes per class
  keep = valid & (rank >= added.at[lab].get(mode="fill", fill_value=0) - p)
  slot = (bank.pos_ptr.at[lab].get(mode="fill", fill_value=0) + rank) % p
  row = jnp.where(keep, lab, c)
  pos = bank.pos.at[row, slot].set(samples, mode="drop")
  # Shared buffer: sample i goes to slot (ptr + i) mod n; only the last n of a push are kept.
  i = jnp.arange(k)
  nslot = jnp.where(i >= k - n, (bank.neg_ptr + i) % n, n)
  neg = bank.neg.at[nslot].set(samples, mode="drop")
  return MemoryBank(
      pos=pos, pos_count=jnp.minimum(bank.pos_count + added, p),
      pos_ptr=(bank.pos_ptr + added) % p, neg=neg,
      neg_count=jnp.minimum(bank.neg_count + k, n).astype(jnp.int32),
      neg_ptr=((bank.neg_ptr + k) % n).astype(jnp.int32))


def sample(bank: MemoryBank, key: jax.Array, labels: jax.Array, *, num_pos: int = 64,
           num_neg: int = 16) -> tuple[jax.Array, jax.Array]:
  """Draws positives of each label and unconditional negatives from filled slots only.

  For every label, ``num_pos`` entries are drawn from that class's filled slots without
  replacement when it holds at least ``num_pos`` entries; otherwise its entries are
  repeated (a random permutation cycled, so each is used ``floor``/``ceil`` of
  ``num_pos / count`` times). ``num_neg`` entries per label are drawn likewise,
  independently per label, from the shared buffer. A class (or shared buffer) with no
  entries yet yields zeros: warm the bank up (push for a few steps, check
  ``bank.pos_count``) before sampling.

  Args:
    bank: current state.
    key: PRNG key; the draw is a deterministic function of it.
    labels: ``[L]`` int class labels in ``[0, num_classes)``.
    num_pos: static positives per label (Secretly-SM Table 2: 64).
    num_neg: static negatives per label (Table 2: 16).

  Returns:
    ``pos [L, num_pos, *feature_shape]`` and ``neg [L, num_neg, *feature_shape]``.
  """
  if np.ndim(labels) != 1:
    raise ValueError(f"`labels` must have shape [L], got {np.shape(labels)}.")
  if num_pos < 0 or num_neg < 0:
    raise ValueError(f"`num_pos` and `num_neg` must be >= 0, got {num_pos}, {num_neg}.")
  if not isinstance(labels, jax.core.Tracer):
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= bank.num_classes):
      raise ValueError(f"`labels` must lie in [0, {bank.num_classes}), got range "
                       f"[{lab.min()}, {lab.max()}].")
  labels = jnp.asarray(labels, jnp.int32)
  k_pos, k_neg = jax.random.split(key)
  feat_axes = (None,) * (bank.pos.ndim - 2)

  counts = bank.pos_count[labels]  # [L]
  slots = random_subset(k_pos, counts, bank.pos_size, num_pos)  # [L, num_pos]
  pos = bank.pos[labels[:, None], slots]
  pos = jnp.where((counts > 0)[(slice(None), None) + feat_axes], pos, 0)

  ncounts = jnp.broadcast_to(bank.neg_count, labels.shape)
  nslots = random_subset(k_neg, ncounts, bank.neg_size, num_neg)  # [L, num_neg]
  neg = jnp.where(bank.neg_count > 0, bank.neg[nslots], 0)
  return pos, neg
