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


def _check_field(field_fn: FieldFn, x: Array, rows: int) -> None:
  """Raises unless ``field_fn`` maps ``[rows, D]`` points to ``[rows, D]`` values.

  Uses ``jax.eval_shape`` (no computation). A field of the wrong shape (e.g. one component)
  would otherwise give a Jacobian, curl or potential of a different function.
  """
  if not callable(field_fn):
    raise ValueError(f"`field_fn` must be a callable [N, D] -> [N, D], got {field_fn!r}.")
  spec = jax.ShapeDtypeStruct((rows,) + tuple(np.shape(x)[1:]), jnp.asarray(x).dtype)
  out = jax.eval_shape(field_fn, spec)
  shape = getattr(out, "shape", None)
  if shape != spec.shape:
    raise ValueError(f"`field_fn` must map [N, D] points to [N, D] field values (row-wise, "
                     f"same D); for input shape {spec.shape} it returned "
                     f"{shape if shape is not None else type(out).__name__}.")


def jacobian(field_fn: FieldFn, x: Array) -> Array:
  """Jacobians ``J[n, i, j] = ∂V_i/∂x_j`` at each point (via ``jax.jacfwd`` + ``vmap``).

  Args:
    field_fn: ``[N, D] -> [N, D]`` row-wise field.
    x: ``[N, D]`` points.

  Returns:
    ``[N, D, D]`` Jacobians.

  Raises:
    ValueError: unless ``x`` is a finite (eager) ``[N, D]`` array and ``field_fn`` maps
      ``[N, D]`` to ``[N, D]``.
  """
  _validation.check_points("x", x)
  x = _validation.as_float(x, names=("x",))  # jacfwd needs float inputs
  _check_field(field_fn, x, 1)
  return jax.vmap(jax.jacfwd(_pointwise(field_fn)))(x)


def curl_indices(dim: int) -> tuple[np.ndarray, np.ndarray]:
  """The index pairs ``(i, j)``, ``i < j`` (0-based), in the order of the curl vector.

  Pairs are packed by their larger index, entry ``j(j−1)/2 + i``: (0,1), (0,2), (1,2),
  (0,3), … Eq. (5) of Franz et al. prints ``i(i−1)/2 + j − 1``, which collides for
  ``D ≥ 4``; this is the collision-free packing of the same shape.
  """
  dim = _validation.check_int("dim", dim)
  if dim < 2:
    raise ValueError(f"`dim`: the curl needs dimension D >= 2, got D={dim}.")
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
  if np.shape(x)[1] < 2:
    raise ValueError(f"`x` must have dimension D >= 2 for the curl, got shape {np.shape(x)}.")
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
    Scalar (NaN when a Jacobian is NaN, e.g. at NaN points under ``jit``).
  """
  jac = jacobian(field_fn, x)
  jt = jnp.swapaxes(jac, 1, 2)
  anti = jnp.sqrt(jnp.sum(jnp.square(jac - jt), axis=(1, 2)))
  sym = jnp.sqrt(jnp.sum(jnp.square(jac + jt), axis=(1, 2)))
  total = anti + sym
  ratio = anti / jnp.where(total > 0, total, 1.0)
  # Only a vanishing Jacobian counts as 0; a NaN one stays NaN.
  return jnp.mean(jnp.where(total > 0, ratio, jnp.where(total == 0, 0.0, jnp.nan)))


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

  Raises:
    ValueError: unless ``x`` is a finite (eager) ``[N, D]`` array, ``origin`` a finite
      ``[D]`` vector, ``num_nodes`` a positive integer and ``field_fn`` maps ``[N, D]`` to
      ``[N, D]``.
  """
  _validation.check_points("x", x)
  num_nodes = _validation.check_int("num_nodes", num_nodes, minimum=1)
  d = np.shape(x)[1]
  if origin is not None:
    if np.shape(origin) != (d,):
      raise ValueError(f"`origin` must have shape [{d}], got {np.shape(origin)}.")
    _validation.check_finite("origin", origin)
  x, origin = _validation.as_float(x, origin, names=("x", "origin"))
  origin = jnp.zeros((d,), x.dtype) if origin is None else origin
  _check_field(field_fn, x, np.shape(x)[0])
  nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
  t = jnp.asarray(0.5 * (nodes + 1.0), x.dtype)
  w = jnp.asarray(0.5 * weights, x.dtype)
  delta = x - origin                                            # [N, D]
  pts = origin + t[:, None, None] * delta[None]                 # [T, N, D]
  vals = jax.vmap(field_fn)(pts)                                # [T, N, D]
  return -jnp.einsum("t,tnd,nd->n", w, vals, delta)


__all__ = ["jacobian", "curl", "curl_indices", "asymmetry", "line_integral_potential"]
