"""Numerical checks for drift fields and losses — yours or ours (chex-based assertions).

The identities that make a drift operator trustworthy, as reusable assertions that raise an
``AssertionError`` with a message naming the worst case:

* :func:`assert_conservative` — the Jacobian of ``V`` is symmetric at every point, i.e. ``V``
  is (locally) a gradient field (Franz et al. Lemma 4; the curl of Eq. (5) vanishes).
* :func:`assert_gradient_field` — ``V = −c ∇U`` for a given potential ``U`` and a constant
  ``c`` (e.g. Franz et al. Prop. 8: the Gaussian drift is ``σ² ∇ log p̂`` differences; the
  sharp field is ``−∇`` of the log-KDE potential, Eq. (18)–(19)).
* :func:`assert_loss_trains_like_field` — a scalar loss has the parameter gradient of the
  stop-gradient drift loss of a field (Franz et al. Eq. (6): ``∇_θ L = c ∇_θ mean‖x −
  sg(x + V)‖²``).
* :func:`assert_finite_edges` — finite values *and* gradients at coincident points, far from
  all data (10³ bandwidths) and for bandwidths 1e-3 … 1e3, in float32.
* :func:`assert_matches_float64` — the float32 result agrees with the same function in
  float64 within ``rtol``.

A *field function* maps queries ``[N, D]`` row-wise to drifts ``[N, D]`` with its data and
negatives held fixed, e.g. ``lambda z: dj.drift_field(z, pos, neg, kernel=k)``. The
helpers ``jax.jit`` the Jacobians and gradients they take (one compile instead of hundreds
of eagerly dispatched ops), so the functions under test must be jittable. Example::

    import drifting_jax as dj
    from drifting_jax import testing

    field = lambda z: dj.drift_field(z, pos, neg, kernel=dj.gaussian(0.5))
    testing.assert_conservative(field, x)                     # passes (Gaussian)
    testing.assert_conservative(lambda z: dj.drift_field(z, pos, neg, kernel=dj.laplacian(0.5)),
                                x)                            # AssertionError: not symmetric
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import calculus

__all__ = ["assert_conservative", "assert_finite_edges", "assert_gradient_field",
           "assert_loss_trains_like_field", "assert_matches_float64", "x64"]

Array = jax.Array


@contextlib.contextmanager
def x64():
  """float64 inside the block (``jax.enable_x64``, or the older experimental form)."""
  if hasattr(jax, "enable_x64"):
    with jax.enable_x64(True):
      yield
  else:  # pragma: no cover - older jax
    from jax.experimental import enable_x64
    with enable_x64():
      yield


def _fail(msg: str) -> None:
  raise AssertionError(msg)


def assert_conservative(field_fn: Callable[[Array], Array], x: Any, *, rtol: float = 1e-5,
                        atol: float = 1e-8) -> None:
  """Asserts that ``∂V_i/∂x_j`` is symmetric at every point (Franz et al. Lemma 4).

  At each point the relative asymmetry ``‖J − Jᵀ‖_F / ‖J‖_F`` must be ≤ ``rtol``, or the
  absolute ``‖J − Jᵀ‖_F`` ≤ ``atol``. Jacobians by ``jax.jacfwd``
  (:func:`drifting_jax.calculus.jacobian`). Use float64 (``jax.enable_x64``) for tight
  tolerances; in float32 ``rtol ≈ 1e-4`` is realistic.

  Args:
    field_fn: row-wise field ``[N, D] -> [N, D]``.
    x: ``[N, D]`` points (D ≥ 2).
    rtol: tolerance on the relative asymmetry.
    atol: tolerance on the absolute asymmetry (points where ``J ≈ 0``).

  Raises:
    AssertionError: naming the worst point, its relative and absolute asymmetry.
  """
  x = jnp.asarray(x)
  out = jax.eval_shape(field_fn, x)
  chex.assert_shape(out, x.shape)
  # jitted: one compile instead of the Jacobian's ops dispatched one by one
  jac = jax.jit(lambda z: calculus.jacobian(field_fn, z))(x)  # [N, D, D]
  chex.assert_tree_all_finite(jac)
  anti = jnp.linalg.norm(jac - jnp.swapaxes(jac, 1, 2), axis=(1, 2))
  size = jnp.linalg.norm(jac, axis=(1, 2))
  rel = np.asarray(anti / jnp.maximum(size, jnp.finfo(jac.dtype).tiny))
  anti = np.asarray(anti)
  bad = (rel > rtol) & (anti > atol)
  if bad.any():
    i = int(np.argmax(np.where(bad, rel, -1.0)))
    _fail(f"the field is not conservative: its Jacobian is asymmetric at {int(bad.sum())} of "
          f"{x.shape[0]} points; worst at point {i} (x = {np.asarray(x[i]).round(4).tolist()}):"
          f" relative asymmetry ‖J − Jᵀ‖/‖J‖ = {rel[i]:.3g} > rtol = {rtol:g} "
          f"(absolute {anti[i]:.3g} > atol = {atol:g})")


def _pointwise_grad(potential_fn: Callable[[Array], Array], x: Array) -> Array:
  """``[N, D]`` gradients of a row-wise potential ``[N, D] -> [N]``."""
  return jax.jit(jax.vmap(jax.grad(lambda z: potential_fn(z[None])[0])))(x)


def assert_gradient_field(field_fn: Callable[[Array], Array],
                          potential_fn: Callable[[Array], Array], x: Any, *,
                          scale: float | None = None, rtol: float = 1e-5,
                          atol: float = 1e-10) -> float:
  """Asserts ``V(x) = −c ∇U(x)`` at every point, for a constant ``c``.

  Args:
    field_fn: row-wise field ``[N, D] -> [N, D]``.
    potential_fn: row-wise potential ``[N, D] -> [N]`` (``U`` per point).
    x: ``[N, D]`` points.
    scale: the constant ``c``; None fits it by least squares, ``c = −⟨V, ∇U⟩ / ⟨∇U, ∇U⟩``.
    rtol: tolerance on ``‖V + c∇U‖ / ‖V‖`` (all points together) and per point.
    atol: absolute tolerance per point.

  Returns:
    The constant ``c`` (fitted or given).

  Raises:
    AssertionError: naming the fitted ``c``, the worst point and its residual.
  """
  x = jnp.asarray(x)
  v = field_fn(x)
  chex.assert_shape(v, x.shape)
  g = _pointwise_grad(potential_fn, x)
  chex.assert_tree_all_finite((v, g))
  v64, g64 = np.asarray(v, np.float64), np.asarray(g, np.float64)
  if scale is None:
    denom = float(np.sum(g64 * g64))
    if denom == 0.0:
      _fail("the potential's gradient is zero at every point: cannot fit `scale`")
    scale = -float(np.sum(v64 * g64)) / denom
  res = np.linalg.norm(v64 + scale * g64, axis=1)
  norm = np.linalg.norm(v64, axis=1)
  total = float(np.linalg.norm(res) / max(np.linalg.norm(norm), 1e-300))
  bad = res > atol + rtol * np.maximum(norm, np.max(norm))
  if total > rtol or bad.any():
    i = int(np.argmax(res))
    _fail(f"V is not −c∇U: with c = {scale:.6g} the relative residual ‖V + c∇U‖/‖V‖ is "
          f"{total:.3g} (rtol = {rtol:g}); worst at point {i}: |V + c∇U| = {res[i]:.3g}, "
          f"|V| = {norm[i]:.3g}")
  return float(scale)


def assert_loss_trains_like_field(loss_fn: Callable[[Array], Array],
                                  field_fn: Callable[[Array], Array],
                                  generator: Callable[[Any, Array], Array], params: Any,
                                  z: Any, *, scale: float | None = None,
                                  rtol: float = 1e-5) -> float:
  """Asserts ``∇_θ loss(f_θ(z)) = c ∇_θ mean_i ‖x_i − sg(x_i + V(x_i))‖²`` (Eq. (6)).

  The parameter gradient of a scalar loss equals (up to ``c``) that of the stop-gradient
  drift loss of the field, so both train a generator the same way. The field is evaluated
  at ``sg(x)``; for fields whose negatives are the generated samples, build ``field_fn``
  and ``loss_fn`` so that the negatives are stop-gradiented in both.

  Args:
    loss_fn: ``x [N, D] -> []`` scalar loss.
    field_fn: ``x [N, D] -> [N, D]`` field.
    generator: ``(params, z) -> x [N, D]``.
    params: generator parameters (any pytree).
    z: generator inputs.
    scale: the constant ``c``; None fits it by least squares over all leaves.
    rtol: tolerance on ``‖g_loss − c g_field‖ / ‖g_loss‖``.

  Returns:
    The constant ``c``.

  Raises:
    AssertionError: naming ``c``, the relative residual and the worst parameter leaf.
  """
  sg = jax.lax.stop_gradient

  def field_loss(p):
    x = generator(p, z)
    v = sg(field_fn(sg(x)))
    return jnp.mean(jnp.sum((x - sg(x + v)) ** 2, axis=-1))

  g_loss = jax.jit(jax.grad(lambda p: loss_fn(generator(p, z))))(params)
  g_field = jax.jit(jax.grad(field_loss))(params)
  chex.assert_trees_all_equal_shapes(g_loss, g_field)
  chex.assert_tree_all_finite((g_loss, g_field))
  a = [np.asarray(t, np.float64).ravel() for t in jax.tree_util.tree_leaves(g_loss)]
  b = [np.asarray(t, np.float64).ravel() for t in jax.tree_util.tree_leaves(g_field)]
  fa, fb = np.concatenate(a), np.concatenate(b)
  if scale is None:
    denom = float(fb @ fb)
    if denom == 0.0:
      _fail("the field's drift loss has a zero parameter gradient: cannot fit `scale`")
    scale = float(fa @ fb) / denom
  rel = float(np.linalg.norm(fa - scale * fb) / max(np.linalg.norm(fa), 1e-300))
  if rel > rtol:
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(g_loss)]
    errs = [np.linalg.norm(x - scale * y) / max(np.linalg.norm(x), 1e-300) for x, y in zip(a, b)]
    j = int(np.argmax(errs))
    _fail(f"the loss does not train like the field: ∇θ loss ≠ c ∇θ drift_loss with c = "
          f"{scale:.6g}; relative residual {rel:.3g} > rtol = {rtol:g} (worst leaf "
          f"{paths[j]}: {errs[j]:.3g})")
  return float(scale)


def _edge_problems(dim: int, n: int, bandwidth: float) -> dict[str, tuple[Array, Array]]:
  rng = np.random.default_rng(0)
  pos = rng.standard_normal((n, dim)).astype(np.float32) * bandwidth
  x = rng.standard_normal((n, dim)).astype(np.float32) * bandwidth
  coincident = x.copy()
  coincident[: n // 2] = pos[: n // 2]          # x_i = y_i exactly
  coincident[n // 2] = coincident[n // 2 + 1]   # and two queries on top of each other
  far = pos + np.float32(1e3 * bandwidth)       # 10^3 bandwidths from every data point
  return {"coincident points": (jnp.asarray(coincident), jnp.asarray(pos)),
          "points 1e3 bandwidths from the data": (jnp.asarray(far), jnp.asarray(pos)),
          "generic points": (jnp.asarray(x), jnp.asarray(pos))}


def assert_finite_edges(fn: Callable[[Array, Array, float], Array], *, dim: int = 2,
                        num: int = 8, bandwidths: Sequence[float] = (1e-3, 1e-1, 1.0, 1e1, 1e3)
                        ) -> None:
  """Asserts finite values and finite gradients at the edge cases, in float32.

  ``fn(x [N, D], pos [M, D], bandwidth) -> array`` (a field or a loss; self-negatives are
  up to ``fn``). For each bandwidth σ it is evaluated (and ``∇_x sum(fn)`` taken) on data of
  spread σ with queries (a) coinciding with data points and with each other, (b) ``10³ σ``
  away from all data, and (c) generic.

  Raises:
    AssertionError: naming the case, the bandwidth and whether the value or the gradient
      is non-finite.
  """
  for bw in bandwidths:
    for case, (x, pos) in _edge_problems(dim, num, float(bw)).items():
      value = fn(x, pos, bw)
      grad = jax.grad(lambda z: jnp.sum(fn(z, pos, bw)))(x)
      for what, arr in (("value", value), ("gradient", grad)):
        arr = np.asarray(arr)
        if not np.all(np.isfinite(arr)):
          _fail(f"non-finite {what} for {case} at bandwidth {bw:g} (float32): "
                f"{int(np.sum(~np.isfinite(arr)))} of {arr.size} entries")


def assert_matches_float64(fn: Callable[..., Any], *args: Any, rtol: float = 1e-4,
                           atol: float = 0.0) -> None:
  """Asserts that ``fn(*args)`` in float32 agrees with ``fn`` on float64 copies under x64.

  Floating-point array arguments are cast to float32 (first run) and float64 (second run,
  inside ``jax.enable_x64``); other arguments are passed unchanged.

  Raises:
    AssertionError: the largest relative difference and where (chex's message).
  """
  def cast(dtype):
    return [jnp.asarray(a, dtype) if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
            else a for a in args]

  out32 = jax.tree_util.tree_map(np.asarray, fn(*cast(jnp.float32)))
  with x64():
    out64 = jax.tree_util.tree_map(np.asarray, fn(*cast(jnp.float64)))
  out32 = jax.tree_util.tree_map(lambda a: a.astype(np.float64), out32)
  try:
    chex.assert_trees_all_close(out32, out64, rtol=rtol, atol=atol)
  except AssertionError as e:
    raise AssertionError(f"the float32 result differs from float64 beyond rtol={rtol:g}: "
                         f"{e}") from None
