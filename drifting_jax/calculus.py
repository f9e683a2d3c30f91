"""Jacobians, generalized curl and potentials of vector fields (Franz et al. §2, Lemma 4).

A *field function* maps a batch of points to field values row by row,
``field_fn: [N, D] -> [N, D]`` (e.g. ``lambda z: drift_field(z, pos, neg, kernel=k)``), so
every drift field of :mod:`drifting_jax.fields` can be passed directly. Derivatives are
taken per point with ``jax.jacfwd`` and batched with ``jax.vmap``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation

Array = jax.Array
FieldFn = Callable[[Array], Array]


def _pointwise(field_fn: FieldFn) -> Callable[[Array], Array]:
  return lambda z: field_fn(z[None, :])[0]


def jacobian(field_fn: FieldFn, x: Array) -> Array:
  """Jacobians ``J[n, i, j] = ∂V_i/∂x_j`` at each point (via ``jax.jacfwd`` + ``vmap``).

  Args:
    field_fn: ``[N, D] -> [N, D]`` row-wise field.
    x: ``[N, D]`` points.

  Returns:
    ``[N, D, D]`` Jacobians.
  """
  _validation.check_points("x", x)
  x = _validation.as_float(x)  # jacfwd needs float inputs
  return jax.vmap(jax.jacfwd(_pointwise(field_fn)))(x)


def curl_indices(dim: int) -> tuple[np.ndarray, np.ndarray]:
  """The index pairs ``(i, j)``, ``i < j`` (0-based), in the order of the curl vector.

  Pairs are packed by their larger index, entry ``j(j−1)/2 + i``: (0,1), (0,2), (1,2),
  (0,3), … Eq. (5) of Franz et al. prints ``i(i−1)/2 + j − 1``, which collides for
  ``D ≥ 4``; this is the collision-free packing of the same shape.
  """
  if dim < 2:
    raise ValueError(f"the curl needs dimension D >= 2, got D={dim}.")
  pairs = [(i, j) for j in range(dim) for i in range(j)]
  return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def curl(field_fn: FieldFn, x: Array) -> Array:
  """Generalized curl ``∂V_i/∂x_j − ∂V_j/∂x_i`` for ``i < j``, Definition 5 / Eq. (5).

  For ``D = 2`` the single entry is the scalar curl ``∂V_x/∂y − ∂V_y/∂x``. A field is
  conservative iff its curl vanishes everywhere (Lemma 4).

  Args:
    field_fn: ``[N, D] -> [N, D]`` row-wise field.
    x: ``[N, D]`` points, ``D ≥ 2``.

  Returns:
    ``[N, D(D−1)/2]`` curl vectors, ordered as :func:`curl_indices`.
  """
  _validation.check_points("x", x)
  i, j = curl_indices(np.shape(x)[1])
  jac = jacobian(field_fn, x)
  return jac[:, i, j] - jac[:, j, i]


def asymmetry(field_fn: FieldFn, x: Array) -> Array:
  """Relative size of the antisymmetric Jacobian part, a scalar measure of non-conservatism.

  ``mean_n ‖J_n − J_nᵀ‖_F / (‖J_n − J_nᵀ‖_F + ‖J_n + J_nᵀ‖_F)`` in ``[0, 1]``: 0 for a
  conservative field (Lemma 4), 1 for a purely rotational one. Points where the Jacobian
  vanishes count as 0.

  Args:
    field_fn: ``[N, D] -> [N, D]`` row-wise field.
    x: ``[N, D]`` points.

  Returns:
    Scalar.
  """
  jac = jacobian(field_fn, x)
  jt = jnp.swapaxes(jac, 1, 2)
  anti = jnp.sqrt(jnp.sum(jnp.square(jac - jt), axis=(1, 2)))
  sym = jnp.sqrt(jnp.sum(jnp.square(jac + jt), axis=(1, 2)))
  total = anti + sym
  return jnp.mean(jnp.where(total > 0, anti / jnp.where(total > 0, total, 1.0), 0.0))


def line_integral_potential(field_fn: FieldFn, x: Array, *, origin: Array | None = None,
                            num_nodes: int = 64) -> Array:
  """Potential ``L`` with ``V = −∇L`` along straight lines, as in the proof of Lemma 4.

  ``L(x) = −∫₀¹ V(o + t(x − o))ᵀ (x − o) dt`` by Gauss–Legendre quadrature, so ``L(o) = 0``.
  For a conservative field this is its potential (up to the constant ``L(o)``); for a
  non-conservative one the straight-line integral is path-dependent and ``−∇L ≠ V``.

  Args:
    field_fn: ``[N, D] -> [N, D]`` row-wise field.
    x: ``[N, D]`` points.
    origin: ``[D]`` base point ``o`` (default: the origin).
    num_nodes: quadrature nodes.

  Returns:
    ``[N]`` potential values.
  """
  _validation.check_points("x", x)
  d = np.shape(x)[1]
  x, origin = _validation.as_float(x, origin)
  origin = jnp.zeros((d,), x.dtype) if origin is None else origin
  if origin.shape != (d,):
    raise ValueError(f"`origin` must have shape [{d}], got {origin.shape}.")
  nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
  t = jnp.asarray(0.5 * (nodes + 1.0), x.dtype)
  w = jnp.asarray(0.5 * weights, x.dtype)
  delta = x - origin                                            # [N, D]
  pts = origin + t[:, None, None] * delta[None]                 # [T, N, D]
  vals = jax.vmap(field_fn)(pts)                                # [T, N, D]
  return -jnp.einsum("t,tnd,nd->n", w, vals, delta)


__all__ = ["jacobian", "curl", "curl_indices", "asymmetry", "line_integral_potential"]
