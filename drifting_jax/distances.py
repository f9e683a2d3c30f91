"""Squared Euclidean distances, the one implementation every module uses.

``‖x − y‖² = ‖x‖² + ‖y‖² − 2 x·y`` is one matrix product (memory ``O(N·M)``, matmul speed),
but its cross term cancels against the norms: an error ``δ`` in ``x·y`` is an error ``2δ``
in every distance, however small the distance. Matrix products on TPUs (one bfloat16 pass
by default) and on GPUs with TF32 round their inputs to 8 or 10 mantissa bits, which loses
distances below ``~1e-3 · ‖x‖²``; :func:`sqdist` therefore passes an explicit matmul
precision (``HIGHEST``, full float32 by default) and computes in a float dtype.

**Range and accuracy.** In float32 the norms ``‖x‖²`` overflow once ``‖x‖`` exceeds
``~1.8e19``, and ``‖x‖² + ‖y‖²`` earlier; results are finite for ``‖x‖, ‖y‖`` up to about
``1e18`` (``1e153`` in float64). Beyond that the squared distance is NaN (never a finite
number, nor ``+inf``, which a kernel would turn into a silent zero weight). Within range the
absolute error of each squared distance is ``~ε (‖x‖² + ‖y‖²)`` (``ε ≈ 6e-8`` in float32):
small distances between points far from the origin are only that accurate, so centre the
data when that matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax._validation import as_float

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST

__all__ = ["sqdist", "batched_sqdist", "safe_sqrt"]


def sqdist(x: Array, y: Array, *, precision=HIGHEST) -> Array:
  """Squared Euclidean distances ``‖x_i − y_j‖²`` as one matrix product.

  Inputs are cast to float first (:func:`~drifting_jax._validation.as_float`: integers,
  bools and half floats to float32, float64 kept), so integer images cannot overflow.
  The cross term ``x·y`` uses the matmul ``precision`` (``HIGHEST`` by default: lower
  precisions round the inputs to bfloat16/TF32 on accelerators, which destroys small
  distances). Round-off below zero is clamped to 0; NaN stays NaN, and any non-finite
  result (NaN/inf inputs, or norms that overflow) is NaN. Finite inputs are in range for
  ``‖x‖, ‖y‖`` up to ``~1e18`` in float32 (``‖x‖²`` overflows past ``~1.8e19``).
  The gradient is ``2(x − y)``, finite everywhere, including at ``x = y``.

  Args:
    x: ``[N, D]`` points.
    y: ``[M, D]`` points.
    precision: ``jax.lax.Precision`` of the cross term (keyword only).

  Returns:
    ``[N, M]`` squared distances in ``jnp.result_type(x, y, jnp.float32)``.

  Raises:
    ValueError: unless ``x`` and ``y`` have rank 2 and the same ``D``.
  """
  if np.ndim(x) != 2 or np.ndim(y) != 2 or np.shape(x)[1] != np.shape(y)[1]:
    raise ValueError(f"`x` and `y` must be [N, D] and [M, D] arrays with one D, got shapes "
                     f"{np.shape(x)} and {np.shape(y)}.")
  x, y = as_float(x, y, names=("x", "y"))
  xx = jnp.sum(x * x, axis=-1)[:, None]
  yy = jnp.sum(y * y, axis=-1)[None, :]
  xy = jnp.matmul(x, y.T, precision=precision)
  d2 = xx + yy - 2.0 * xy
  # jnp.maximum propagates NaN; the `where` also turns overflow (inf, or inf − inf) into NaN.
  return jnp.where(jnp.isfinite(d2), jnp.maximum(d2, 0.0), jnp.nan)


def batched_sqdist(x: Array, y: Array, *, precision=HIGHEST) -> Array:
  """:func:`sqdist` per group: ``[B, N, D], [B, M, D] -> [B, N, M]``.

  Args:
    x: ``[B, N, D]`` points.
    y: ``[B, M, D]`` points.
    precision: ``jax.lax.Precision`` of the cross term (keyword only).

  Returns:
    ``[B, N, M]`` squared distances.
  """
  if (np.ndim(x) != 3 or np.ndim(y) != 3 or np.shape(x)[0] != np.shape(y)[0]
      or np.shape(x)[2] != np.shape(y)[2]):
    raise ValueError(f"`x` and `y` must be [B, N, D] and [B, M, D] arrays with one B and D, "
                     f"got shapes {np.shape(x)} and {np.shape(y)}.")
  return jax.vmap(lambda a, b: sqdist(a, b, precision=precision))(x, y)


def safe_sqrt(sqdist_values: Array) -> Array:
  """``sqrt`` of squared distances with a finite (zero) gradient at exactly zero distance.

  ``sqrt`` has an infinite derivative at 0; the double ``where`` keeps gradients at
  coincident points finite instead of NaN. Only an exact 0 maps to 0: NaN stays NaN,
  ``+inf`` gives ``+inf`` and a negative input (never a distance) gives NaN.

  Args:
    sqdist_values: squared distances, any shape.

  Returns:
    Distances of the same shape.
  """
  d2 = as_float(sqdist_values, names=("sqdist_values",))
  positive = d2 > 0
  root = jnp.sqrt(jnp.where(positive, d2, 1.0))
  return jnp.where(positive, root, jnp.where(d2 == 0, 0.0, jnp.nan))
