"""The per-iteration input of class-conditional drifting: the dataset on device, the batch of
an iteration, and the memory bank it may be drawn from (Franz et al. §5.1; Secretly-SM App.
G.2 / Table 2).

:func:`make_batch_fn` returns ``batch_fn(bank, data, step) -> (bank, ImageBatch)``, the
global batch of iteration ``step`` as a pure, jittable function of ``(seed, step, bank)``:
a resumed run sees exactly the data of the uninterrupted one, and the data-parallel runners
(:mod:`drifting_jax.training.parallel`) run it replicated before splitting the batch over
devices along its class-group axis.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax.data import batching, memory_bank
from drifting_jax.grouped import sample_cfg_scale

__all__ = ["ClassData", "ImageBatch", "class_data", "fill_bank", "make_batch_fn",
           "with_features"]


class ClassData(NamedTuple):
  """A labelled dataset on device: ``images [N, H, W, C]``, ``labels [N]`` and the per-class
  index (:class:`~drifting_jax.data.batching.ClassIndex`).

  ``images`` may instead be a dict of ``[N, ...]`` arrays — the feature streams of the images
  under a frozen encoder, computed once (:func:`with_features`): batches then carry those
  streams (``ImageBatch.pos`` / ``uncond`` are dicts) and the training step uses them as the
  real samples' features. A memory bank stores images and needs the images themselves.
  """

  images: jax.Array
  labels: jax.Array
  index: batching.ClassIndex


class ImageBatch(NamedTuple):
  """One class-grouped batch (leading axis: class groups ``G``, sharded over devices).

  Attributes:
    pos: ``[G, N_pos, H, W, C]`` real images of each group's class (a dict of feature
      streams ``[G, N_pos, ...]`` when the data holds features, :func:`with_features`).
    class_ids: ``[G]`` int32 class of each group.
    group_ids: ``[G]`` int32 global index of each group in the step's batch (the generator
      noise of a group is drawn from it, so it does not depend on the device layout).
    uncond: ``[G, N_unc, H, W, C]`` unconditional real images (CFG negatives; a dict as
      ``pos``) or None.
    cfg_scale: ``[G]`` CFG scale α of each group or None.
  """

  pos: jax.Array
  class_ids: jax.Array
  group_ids: jax.Array
  uncond: jax.Array | None = None
  cfg_scale: jax.Array | None = None


def class_data(images, labels, *, num_classes: int) -> ClassData:
  """Moves a labelled image set to the default device with its per-class index.

  Args:
    images: ``[N, H, W, C]`` images.
    labels: ``[N]`` integer labels in ``[0, num_classes)``.
    num_classes: number of classes (empty classes are allowed).
  """
  index = batching.build_class_index(labels, num_classes=num_classes)
  return ClassData(jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32), index)


def with_features(data: ClassData, features: dict[str, jax.Array]) -> ClassData:
  """``data`` with its images replaced by their precomputed feature streams.

  Args:
    data: a :class:`ClassData` of images.
    features: ``{stream: [N, ...]}``, row ``i`` the features of image ``i``.

  Raises:
    ValueError: unless ``features`` is a non-empty dict of arrays with ``N`` rows each.
  """
  n = int(data.labels.shape[0])
  if not isinstance(features, dict) or not features:
    raise ValueError(f"`features` must be a non-empty dict of [N, ...] arrays, got "
                     f"{type(features).__name__}")
  for name, v in features.items():
    if np.ndim(v) < 2 or np.shape(v)[0] != n:
      raise ValueError(f"`features[{name!r}]` must have {n} rows (one per image) and a "
                       f"feature axis, got shape {np.shape(v)}")
  return data._replace(images={k: jnp.asarray(v) for k, v in features.items()})


def nonempty_classes(data: ClassData) -> int:
  """Number of classes with at least one example."""
  return int(np.sum(np.asarray(data.index.counts) > 0))


def fill_bank(data: ClassData, *, num_classes: int, pos_size: int, neg_size: int,
              seed: int) -> memory_bank.MemoryBank:
  """A memory bank pre-filled with ``pos_size`` random real samples of every class and
  ``neg_size`` random samples in the shared buffer (so no class is ever drawn empty).

  Args:
    data: the dataset on device.
    num_classes: classes of the bank (at least the dataset's).
    pos_size, neg_size: per-class and shared bank sizes.
    seed: the run seed (the fill is drawn from ``fold_in(PRNGKey(seed), 2)``).
  """
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 2)
  k_pos, k_neg = jax.random.split(key)
  counts = jnp.zeros((num_classes,), jnp.int32).at[:data.index.counts.shape[0]].set(
      data.index.counts)
  table = jnp.zeros((num_classes, data.index.table.shape[1]), jnp.int32).at[
      :data.index.table.shape[0]].set(data.index.table)
  slots = batching.random_subset(k_pos, counts, table.shape[1], pos_size)
  filled = jnp.minimum(counts, pos_size)
  neg_idx = jax.random.randint(k_neg, (neg_size,), 0, data.images.shape[0])
  empty = memory_bank.init(num_classes, pos_size=pos_size, neg_size=neg_size,
                           feature_shape=data.images.shape[1:])
  return empty._replace(
      pos=data.images[jnp.take_along_axis(table, slots, axis=1)],  # empty classes: count 0
      pos_count=filled, pos_ptr=filled % pos_size, neg=data.images[neg_idx],
      neg_count=jnp.asarray(neg_size, jnp.int32), neg_ptr=jnp.zeros((), jnp.int32))


def make_batch_fn(*, seed: int, num_classes_per_step: int, num_pos: int, num_uncond: int = 0,
                  guidance: bool = False, bank_push: int = 0, cfg_min: float = 1.0,
                  cfg_max: float = 4.0, cfg_power: float = 3.0):
  """``batch_fn(bank, data, step) -> (bank, ImageBatch)``: the global batch of iteration
  ``step``, a pure function of ``(seed, step, bank)``.

  Without a bank (``bank=None``): ``N_c`` distinct classes with ``N_pos`` real images each
  (:func:`~drifting_jax.data.batching.sample_class_batch`), CFG negatives drawn uniformly
  from the dataset. With a bank: ``bank_push`` random real samples are pushed, then the
  positives and the unconditional negatives are drawn from the bank (Secretly-SM Table 2).
  With ``guidance`` each group also gets a CFG scale ``α ~ p(α) ∝ α^(-cfg_power)`` on
  ``[cfg_min, cfg_max]`` (:func:`drifting_jax.grouped.sample_cfg_scale`).

  Args:
    seed: the run seed; iteration ``t`` draws from ``fold_in(fold_in(PRNGKey(seed), 1), t)``.
    num_classes_per_step: ``N_c`` class groups.
    num_pos: ``N_pos`` positives per group.
    num_uncond: ``N_unc`` unconditional negatives per group (with ``guidance``).
    guidance: draw CFG negatives and scales.
    bank_push: real samples pushed into the bank per iteration.
    cfg_min, cfg_max, cfg_power: the CFG-scale distribution.
  """
  g, m, u = num_classes_per_step, num_pos, num_uncond
  data_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)

  def batch_fn(bank, data: ClassData, step):
    k_cls, k_pos, k_push, k_unc, k_cfg = jax.random.split(jax.random.fold_in(data_key, step), 5)
    n = data.labels.shape[0]
    uncond = None
    if bank is None:
      batch = batching.sample_class_batch(k_cls, data.images, data.index,
                                          num_classes_per_step=g, num_pos=m)
      pos, class_ids = batch.pos, batch.class_ids
      if guidance:
        idx = jax.random.randint(k_unc, (g, u), 0, n)
        uncond = jax.tree_util.tree_map(lambda a: a[idx], data.images)
    else:
      idx = jax.random.randint(k_push, (bank_push,), 0, n)
      bank = memory_bank.push(bank, data.images[idx], data.labels[idx])
      gumbel = jax.random.gumbel(k_cls, data.index.counts.shape)
      _, class_ids = jax.lax.top_k(jnp.where(data.index.counts > 0, gumbel, -jnp.inf), g)
      class_ids = class_ids.astype(jnp.int32)
      pos, neg = memory_bank.sample(bank, k_pos, class_ids, num_pos=m, num_neg=u)
      uncond = neg if guidance else None
    alpha = (sample_cfg_scale(k_cfg, g, low=cfg_min, high=cfg_max, power=cfg_power)
             if guidance else None)
    return bank, ImageBatch(pos, class_ids, jnp.arange(g, dtype=jnp.int32), uncond, alpha)

  return batch_fn
