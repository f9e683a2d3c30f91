"""Class-conditional batches of positives (Franz et al. §5.1, Deng et al.).

Each training step draws ``N_c`` distinct classes and ``N_pos`` positives of each class;
the generator then produces ``N_neg`` samples per drawn class (Franz et al. Table 3:
``N_c = 5``, ``N_pos = N_neg = 96``, effective batch 480). The drift of every class is
computed on its own group, so batches carry a leading class axis: ``pos [N_c, N_pos, ...]``.

The sampler is jit-friendly: the dataset lives on device and a per-class index table
(:class:`ClassIndex`, padded to the largest class) replaces Python-side bookkeeping, so a
batch is a pure function of a PRNG key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ClassBatch", "ClassConditionalSampler", "ClassIndex", "build_class_index",
           "random_subset", "sample_class_batch"]


class ClassIndex(NamedTuple):
  """Per-class example indices, padded to a rectangle.

  Attributes:
    table: ``[num_classes, max_count]`` int32; ``table[c, :counts[c]]`` are the dataset
      indices of class ``c``; the padding repeats valid indices (never read).
    counts: ``[num_classes]`` int32 number of examples per class.
  """
  table: jax.Array
  counts: jax.Array


class ClassBatch(NamedTuple):
  """One class-conditional batch.

  Attributes:
    pos: ``[N_c, N_pos, H, W, C]`` positives (real images), grouped by class.
    class_ids: ``[N_c]`` int32 distinct class ids; ``pos[i]`` all have class ``class_ids[i]``.
  """
  pos: jax.Array
  class_ids: jax.Array


def build_class_index(labels, *, num_classes: int | None = None) -> ClassIndex:
  """Builds the per-class index table (host side, once per dataset).

  Args:
    labels: ``[N]`` integer labels in ``[0, num_classes)``.
    num_classes: number of classes (default ``max(labels) + 1``); empty classes get count 0.

  Returns:
    :class:`ClassIndex` with ``table [num_classes, max_count]`` and ``counts [num_classes]``.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"`labels` must be a non-empty [N] integer array, got {labels.dtype} "
                     f"{labels.shape}.")
  if num_classes is None:
    num_classes = int(labels.max()) + 1
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"`labels` must lie in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")
  counts = np.bincount(labels, minlength=num_classes).astype(np.int32)
  order = np.argsort(labels, kind="stable").astype(np.int32)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  width = int(counts.max())
  # Column j of class c holds example starts[c] + (j mod counts[c]): padding repeats entries.
  cols = np.arange(width)[None, :] % np.maximum(counts, 1)[:, None]
  table = order[np.minimum(starts[:, None] + cols, labels.size - 1)]
  return ClassIndex(jnp.asarray(table, jnp.int32), jnp.asarray(counts, jnp.int32))


def random_subset(key: jax.Array, counts: jax.Array, size: int, num: int) -> jax.Array:
  """Random slots among the first ``counts[g]`` of ``size`` slots, for each group ``g``.

  Draws without replacement when ``counts[g] >= num``. When a group has fewer entries than
  asked, a random permutation of its entries is repeated cyclically (each entry is used
  ``floor`` or ``ceil`` of ``num / counts[g]`` times). Groups with ``counts[g] == 0`` get
  slot 0 (callers mask those).

  Args:
    key: PRNG key.
    counts: ``[G]`` int number of filled slots per group (``<= size``).
    size: static number of slots per group.
    num: static number of slots to draw per group.

  Returns:
    ``[G, num]`` int32 slot indices in ``[0, max(counts[g], 1))``.
  """
  counts = jnp.asarray(counts, jnp.int32)
  u = jax.random.uniform(key, (counts.shape[0], size))
  u = jnp.where(jnp.arange(size)[None, :] < counts[:, None], u, -1.0)  # filled slots first
  _, order = jax.lax.top_k(u, min(num, size))  # a random ordering of min(num, count) slots
  cyc = jnp.arange(num)[None, :] % jnp.maximum(counts, 1)[:, None]
  return jnp.take_along_axis(order, cyc, axis=1).astype(jnp.int32)


def sample_class_batch(key: jax.Array, images: jax.Array, index: ClassIndex, *,
                       num_classes_per_step: int = 5, num_pos: int = 96) -> ClassBatch:
  """Draws ``N_c`` distinct non-empty classes and ``N_pos`` positives of each.

  Pure and jittable (``num_classes_per_step``, ``num_pos`` static). Positives within a class
  are distinct when the class has at least ``num_pos`` examples (else repeated cyclically,
  see :func:`random_subset`).

  Args:
    key: PRNG key; the batch is a deterministic function of it.
    images: ``[N, H, W, C]`` dataset images, or any pytree of ``[N, ...]`` arrays (e.g.
      precomputed feature streams of the images), gathered leaf by leaf.
    index: :class:`ClassIndex` of the dataset labels.
    num_classes_per_step: ``N_c``, classes per step (Franz et al.: 5).
    num_pos: ``N_pos``, positives per class (Franz et al.: 96).

  Returns:
    :class:`ClassBatch` with ``pos [N_c, N_pos, H, W, C]`` (or the pytree, each leaf
    ``[N_c, N_pos, ...]``) and ``class_ids [N_c]``.
  """
  num_classes, width = index.table.shape
  if not 1 <= num_classes_per_step <= num_classes:
    raise ValueError(f"`num_classes_per_step` must be in [1, {num_classes}], "
                     f"got {num_classes_per_step}.")
  if num_pos < 1:
    raise ValueError(f"`num_pos` must be positive, got {num_pos}.")
  k_cls, k_pos = jax.random.split(key)
  # Gumbel top-k over non-empty classes = uniform sampling without replacement.
  g = jax.random.gumbel(k_cls, (num_classes,))
  g = jnp.where(index.counts > 0, g, -jnp.inf)
  _, class_ids = jax.lax.top_k(g, num_classes_per_step)
  slots = random_subset(k_pos, index.counts[class_ids], width, num_pos)  # [N_c, N_pos]
  idx = jnp.take_along_axis(index.table[class_ids], slots, axis=1)
  return ClassBatch(jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), images),
                    class_ids.astype(jnp.int32))


class ClassConditionalSampler:
  """Holds a dataset on device and draws :class:`ClassBatch` es with a jitted sampler.

  Example::

    sampler = ClassConditionalSampler(ds.images, ds.labels, num_classes=ds.num_classes)
    batch = sampler(jax.random.fold_in(key, step))  # pos [5, 96, 28, 28, 1]

  Args:
    images: ``[N, H, W, C]`` images (moved to the default device).
    labels: ``[N]`` integer labels.
    num_classes: number of classes (default ``max(labels) + 1``).
    num_classes_per_step: ``N_c`` (default 5).
    num_pos: ``N_pos`` (default 96).
  """

  def __init__(self, images, labels, *, num_classes: int | None = None,
               num_classes_per_step: int = 5, num_pos: int = 96):
    if np.shape(images)[:1] != np.shape(labels)[:1]:
      raise ValueError(f"`images` {np.shape(images)} and `labels` {np.shape(labels)} must "
                       "have the same leading size.")
    self.index = build_class_index(labels, num_classes=num_classes)
    nonempty = int(np.sum(np.asarray(self.index.counts) > 0))
    if not 1 <= num_classes_per_step <= nonempty:
      raise ValueError(f"`num_classes_per_step` must be in [1, {nonempty}] (non-empty "
                       f"classes), got {num_classes_per_step}.")
    if num_pos < 1:
      raise ValueError(f"`num_pos` must be positive, got {num_pos}.")
    self.images = jnp.asarray(images)
    self.num_classes_per_step = num_classes_per_step
    self.num_pos = num_pos
    self._sample = jax.jit(lambda key, images, index: sample_class_batch(
        key, images, index, num_classes_per_step=num_classes_per_step, num_pos=num_pos))

  @property
  def num_classes(self) -> int:
    return int(self.index.counts.shape[0])

  def __call__(self, key: jax.Array) -> ClassBatch:
    """Draws one batch; deterministic given ``key``."""
    return self._sample(key, self.images, self.index)
