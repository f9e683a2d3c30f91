"""Radial kernels in the log domain, with their sharp and flat kernels.

A radial kernel is ``k(x, y) = φ(‖x − y‖²)`` (Def. 1 of Franz et al.). Its **sharp** ``k#``
and **flat** ``k♭`` (Def. 6, Eqs. (10)–(11)) satisfy

    ∇ₓ k#(x, y) = k(x, y) (y − x),        ∇ₓ k(x, y) = k♭(x, y) (y − x),

and for a radial profile (Eq. (12))

    k#(r²) = ½ ∫_{r²}^∞ φ(s) ds,           k♭(r²) = −2 φ'(r²).

Every kernel here is a :class:`RadialKernel`, a pytree whose only leaf is the bandwidth, so
kernels pass through ``jit``/``vmap`` and the bandwidth may be a traced value (bandwidth
schedules). All three functions act elementwise on *squared* distances and return logs.

Closed forms (Table 1 of Franz et al.; Corollaries 15–17) are used for the Gaussian, the
Laplacian and the rational quadratic kernel; :func:`radial` builds a kernel from any profile,
with the sharp by Gauss–Legendre quadrature of Eq. (12) and the flat by autodiff.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation, distances

Array = jax.Array
LogFn = Callable[[Array, Array], Array]  # (sqdist, bandwidth) -> log value


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class RadialKernel:
  """A radial kernel ``k(x, y) = φ(‖x − y‖²)`` with its sharp and flat, in log domain.

  Attributes:
    name: short name (``"gauss"``, ``"laplace"``, ``"rq"`` or a user name).
    bandwidth: scalar bandwidth σ (a pytree leaf: may be traced; a traced bandwidth that
      is not finite and positive makes every kernel value NaN).
  """

  name: str
  bandwidth: Array
  _log_k: LogFn
  _log_sharp: LogFn
  _log_flat: LogFn

  def _bw(self) -> Array:
    """The bandwidth; a traced one is NaN where it is not finite and > 0.

    Concrete bandwidths were validated when the kernel was made. A traced one (a schedule,
    a ``jit`` argument) cannot raise: it is replaced by NaN when invalid, so every kernel
    value, and everything computed from it, is NaN rather than a finite wrong number, and
    a ``checkify`` check names it (:func:`drifting_jax.checked`).
    """
    if _validation.is_concrete(self.bandwidth):
      return self.bandwidth
    s = _validation.positive_or_nan("bandwidth", self.bandwidth)
    return jnp.where(width_in_range(s), s, jnp.nan)

  def _sqdist(self, sqdist: Array) -> Array:
    """Squared distances as floats; negative ones raise (eager) or become NaN (traced)."""
    d2 = _validation.as_float(sqdist, names=("sqdist",))
    if _validation.is_concrete(d2):
      if bool(np.any(np.asarray(d2) < 0)):
        raise ValueError(f"`sqdist` must be >= 0 (squared distances), got a minimum of "
                         f"{float(np.min(np.asarray(d2)))}.")
      return d2
    _validation.traced_check(~(d2 < 0), "`sqdist` must be >= 0, got {}.",
                             jnp.min(d2) if d2.size else jnp.zeros((), d2.dtype))
    return jnp.where(d2 < 0, jnp.nan, d2)

  def log_k(self, sqdist: Array) -> Array:
    """``log k`` on squared distances ``sqdist`` (any shape, elementwise, ``>= 0``)."""
    return self._log_k(self._sqdist(sqdist), self._bw())

  def log_sharp(self, sqdist: Array) -> Array:
    """``log k#`` on squared distances (Eq. (10)/(12) of Franz et al.)."""
    return self._log_sharp(self._sqdist(sqdist), self._bw())

  def log_flat(self, sqdist: Array) -> Array:
    """``log k♭`` on squared distances (Eq. (11)/(12)); may be ``+inf`` at zero distance."""
    return self._log_flat(self._sqdist(sqdist), self._bw())

  def log(self, sqdist: Array, which: str = "k") -> Array:
    """``log k``, ``log k#`` or ``log k♭`` selected by ``which`` in {"k", "sharp", "flat"}."""
    _validation.check_choice("which", which, ("k", "sharp", "flat"))
    return {"k": self.log_k, "sharp": self.log_sharp, "flat": self.log_flat}[which](sqdist)

  def with_bandwidth(self, bandwidth) -> "RadialKernel":
    """The same kernel family at another (possibly traced) bandwidth."""
    return dataclasses.replace(self, bandwidth=_check_width(bandwidth))

  def tree_flatten(self):
    return (self.bandwidth,), (self.name, self._log_k, self._log_sharp, self._log_flat)

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(aux[0], children[0], *aux[1:])


def check_kernel(kernel) -> None:
  """Raises ``ValueError`` unless ``kernel`` is a :class:`RadialKernel`."""
  if not isinstance(kernel, RadialKernel):
    raise ValueError(f"`kernel` must be a RadialKernel (e.g. drifting_jax.gaussian(0.5)), got "
                     f"{kernel!r}.")


def _safe_norm(sqdist: Array) -> Array:
  # sqrt has an infinite derivative at 0; the double `where` keeps gradients finite (zero)
  # at coincident points instead of producing NaN. Only an exact 0 maps to 0 (NaN stays NaN).
  return distances.safe_sqrt(sqdist)


def width_range(dtype=None) -> tuple[float, float]:
  """The kernel widths σ a float dtype represents: σ² and 1/σ² finite and normal.

  ``[√tiny, √max]`` of ``dtype`` (default: JAX's default float): about
  ``[1.1e-19, 1.8e19]`` in float32 and ``[1.5e-154, 1.3e154]`` in float64. Outside it the
  kernels' ``r²/σ²`` cannot be formed (σ² underflows to 0 or overflows), so every kernel value
  would be NaN or a wrong constant.
  """
  if dtype is None:
    dtype = jnp.result_type(float)
  try:
    ok = jnp.issubdtype(dtype, jnp.floating)
  except TypeError:
    ok = False
  if not ok:
    raise ValueError(f"`dtype` must be a floating dtype (e.g. jnp.float32), got {dtype!r}.")
  info = jnp.finfo(dtype)
  return float(np.sqrt(info.tiny)), float(np.sqrt(info.max))


def width_in_range(s: Array) -> Array:
  """Elementwise ``σ ∈`` :func:`width_range` of ``σ``'s dtype (False for NaN)."""
  s = jnp.asarray(s)
  lo, hi = width_range(s.dtype if jnp.issubdtype(s.dtype, jnp.floating) else None)
  return (s >= lo) & (s <= hi)


def _check_width(bandwidth) -> Array:
  _validation.check_positive("bandwidth", bandwidth)
  s = jnp.asarray(bandwidth, jnp.result_type(float))
  if not _validation.is_concrete(s):
    return s
  lo, hi = width_range(s.dtype)
  if not lo <= float(np.asarray(s)) <= hi:  # numpy: no jnp op (staged under checkify)
    raise ValueError(f"`bandwidth` must lie in [{lo:.3g}, {hi:.3g}] for {s.dtype} kernels "
                     f"(its square and inverse square representable), got {float(bandwidth):g}.")
  return s


def _make(name: str, bandwidth, log_k: LogFn, log_sharp: LogFn, log_flat: LogFn) -> RadialKernel:
  return RadialKernel(name, _check_width(bandwidth), log_k, log_sharp, log_flat)


# --- Gaussian: k = exp(−r²/2σ²), k# = σ² k, k♭ = k/σ² (Corollary 15) ---------------------
def _gauss_log_k(d2, s):
  return -0.5 * d2 / s**2


def _gauss_log_sharp(d2, s):
  return 2.0 * jnp.log(s) - 0.5 * d2 / s**2


def _gauss_log_flat(d2, s):
  return -2.0 * jnp.log(s) - 0.5 * d2 / s**2


def gaussian(bandwidth) -> RadialKernel:
  """Gaussian kernel ``exp(−‖x−y‖²/2σ²)``; ``k# = σ²k``, ``k♭ = k/σ²`` (Table 1, Cor. 15).

  Args:
    bandwidth: σ > 0 (python float or a scalar array, possibly traced).
  """
  return _make("gauss", bandwidth, _gauss_log_k, _gauss_log_sharp, _gauss_log_flat)


# --- Laplacian: k = exp(−r/σ), k# = σ(r+σ)k, k♭ = k/(σr) (Corollary 16) -------------------
def _laplace_log_k(d2, s):
  return -_safe_norm(d2) / s


@jax.custom_jvp
def _laplace_sharp_core(d2, s):
  r = _safe_norm(d2)
  return jnp.log(r + s) - r / s


@_laplace_sharp_core.defjvp
def _laplace_sharp_core_jvp(primals, tangents):
  # d/d(r²) [log(r+σ) − r/σ] = −1/(2σ(r+σ)) is finite at r = 0, while the chain rule through
  # sqrt would give 0·inf there; the explicit derivative keeps ∇ₓk# = k(y − x) exact.
  d2, s = primals
  d2_dot, s_dot = tangents
  r = _safe_norm(d2)
  out = jnp.log(r + s) - r / s
  return out, d2_dot * (-0.5 / (s * (r + s))) + s_dot * (1.0 / (r + s) + r / s**2)


def _laplace_log_sharp(d2, s):
  d2, s = jnp.broadcast_arrays(d2, jnp.asarray(s, jnp.result_type(d2)))
  return jnp.log(s) + _laplace_sharp_core(d2, s)


def _laplace_log_flat(d2, s):
  r = _safe_norm(d2)
  # k♭ is singular at r = 0 (+inf); log(r) of the safe norm gives exactly that, no NaN.
  return -jnp.log(s) - jnp.log(r) - r / s


def laplacian(bandwidth) -> RadialKernel:
  """Laplacian kernel ``exp(−‖x−y‖/σ)``; ``k# = σ(‖x−y‖+σ)k``, ``k♭ = k/(σ‖x−y‖)``.

  Table 1 and Corollary 16 of Franz et al. The flat is singular (``+inf``) at zero distance.

  Args:
    bandwidth: σ > 0 (python float or a scalar array, possibly traced).
  """
  return _make("laplace", bandwidth, _laplace_log_k, _laplace_log_sharp, _laplace_log_flat)


# --- Rational quadratic: k = (1+r²/σ²)^−2, k# = σ²/2 k^½, k♭ = 4/σ² k^{3/2} (Cor. 17) ------
def _log1p_scaled(d2, s):
  # log(1 + r²/σ²). Where r²/σ² is huge (1 + u == u) or overflows, log r² − 2 log σ: the
  # log-kernel stays finite (an overflowed u would read as k = 0, a wrong finite KDE).
  u = d2 / s**2
  big = u > 1e30
  return jnp.where(big, jnp.log(jnp.where(big, d2, 1.0)) - 2.0 * jnp.log(s),
                   jnp.log1p(jnp.where(big, 0.0, u)))


def _rq_log_k(d2, s):
  return -2.0 * _log1p_scaled(d2, s)


def _rq_log_sharp(d2, s):
  return jnp.log(0.5 * s**2) - _log1p_scaled(d2, s)


def _rq_log_flat(d2, s):
  return jnp.log(4.0 / s**2) - 3.0 * _log1p_scaled(d2, s)


def rational_quadratic(bandwidth) -> RadialKernel:
  """Rational quadratic kernel ``(1 + ‖x−y‖²/σ²)^−2`` (Table 1, Corollary 17 of Franz et al.).

  ``k# = (σ²/2) k^{1/2}`` and ``k♭ = (4/σ²) k^{3/2}``.

  Args:
    bandwidth: σ > 0 (python float or a scalar array, possibly traced).
  """
  return _make("rq", bandwidth, _rq_log_k, _rq_log_sharp, _rq_log_flat)


# --- Generic radial profile ---------------------------------------------------------------
#: scaled squared distances where a user profile is checked when the kernel is made
_PROFILE_GRID = np.concatenate([[0.0], np.geomspace(1e-3, 30.0, 48)])


def _check_profile(log_phi: Callable[[Array], Array], log_profile: bool) -> None:
  """Raises unless ``φ`` is positive and non-increasing on ``u ∈ [0, 30]`` (49 points).

  ``φ > 0`` keeps ``log φ`` real, and a non-increasing ``φ`` keeps the flat ``k♭ = −2 dφ/dr²``
  non-negative and the sharp's integral finite: an increasing or negative profile would give
  NaN or inf kernel values in every call instead of this one error.
  """
  what = "`profile` (log φ)" if log_profile else "`profile` (φ)"
  try:
    with jax.ensure_compile_time_eval():
      vals = np.asarray(jax.vmap(log_phi)(jnp.asarray(_PROFILE_GRID, jnp.float32)), np.float64)
      slopes = np.asarray(jax.vmap(jax.grad(log_phi))(jnp.asarray(_PROFILE_GRID, jnp.float32)),
                          np.float64)
  except Exception as e:  # noqa: BLE001 - a profile that cannot run on scalars
    raise ValueError(f"{what} must be an elementwise, differentiable function of u >= 0; "
                     f"calling it failed: {type(e).__name__}: {e}") from None
  if vals.shape != _PROFILE_GRID.shape:
    raise ValueError(f"{what} must map a scalar u to a scalar, got shape {vals.shape[1:]}.")
  bad = np.isnan(vals) | (vals == np.inf)
  if bad.any():
    u = _PROFILE_GRID[np.argmax(bad)]
    raise ValueError(f"{what} must be positive and finite (log φ real) on u >= 0, got log φ "
                     f"= {vals[np.argmax(bad)]} at u = {u:.3g}.")
  finite = np.isfinite(vals) & np.isfinite(slopes)
  rising = finite & (slopes > 1e-6 * np.maximum(1.0, np.abs(vals)))
  if rising.any():
    u = _PROFILE_GRID[np.argmax(rising)]
    raise ValueError(f"{what} must be non-increasing in u (a kernel decays with distance), but "
                     f"d log φ/du = {slopes[np.argmax(rising)]:.3g} > 0 at u = {u:.3g}.")


def radial(profile: Callable[[Array], Array], *, bandwidth=1.0, log_profile: bool = False,
           name: str = "radial", num_nodes: int = 128) -> RadialKernel:
  """A kernel from any decreasing radial profile, ``k(x, y) = φ(‖x − y‖² / σ²)``.

  The sharp follows Eq. (12) of Franz et al., ``k#(r²) = ½ ∫_{r²}^∞ φ(s/σ²) ds``, computed
  in log domain by Gauss–Legendre quadrature after the substitution
  ``s = u + c · t/(1 − t)``, ``t ∈ (0, 1)``, where ``u = r²/σ²`` and ``c`` is the local decay
  length ``1/|d log φ/du|`` (at least 1), so heavy and light tails are both resolved.
  The flat ``k♭ = −2 dφ/d(r²)`` comes from ``jax.grad`` of the profile.

  Args:
    profile: elementwise callable ``u -> φ(u)`` on scaled squared distances ``u ≥ 0``
      (or ``u -> log φ(u)`` when ``log_profile=True``). It must be positive, decreasing
      and integrable on ``[0, ∞)``.
    bandwidth: σ > 0; distances are measured in units of σ.
    log_profile: whether ``profile`` returns ``log φ``.
    name: a name for the kernel.
    num_nodes: number of quadrature nodes.

  Returns:
    A :class:`RadialKernel`.
  """
  if not callable(profile):
    raise ValueError(f"`profile` must be a callable u -> phi(u), got {profile!r}.")
  num_nodes = _validation.check_int("num_nodes", num_nodes, minimum=8)
  _validation.check_bool("log_profile", log_profile)
  if not isinstance(name, str):
    raise ValueError(f"`name` must be a string, got {name!r}.")
  log_phi = profile if log_profile else (lambda u: jnp.log(profile(u)))
  _check_profile(log_phi, log_profile)
  nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
  t_nodes = 0.5 * (nodes + 1.0)            # Gauss–Legendre on (0, 1)
  log_w_nodes = np.log(0.5 * weights)
  dlog_phi = jax.grad(lambda u: log_phi(u))

  def _scalar_log_sharp(u):
    c = jnp.maximum(1.0 / jnp.maximum(jnp.abs(dlog_phi(u)), 1e-30), 1.0)
    t = jnp.asarray(t_nodes, u.dtype)
    s = u + c * t / (1.0 - t)
    log_integrand = log_phi(s) + jnp.log(c) - 2.0 * jnp.log1p(-t)
    return jax.nn.logsumexp(log_integrand + jnp.asarray(log_w_nodes, u.dtype))

  def _log_k(d2, s):
    return log_phi(d2 / s**2)

  def _log_sharp(d2, s):
    u = d2 / s**2
    flat_u = u.reshape(-1)
    out = jax.vmap(_scalar_log_sharp)(flat_u).reshape(u.shape)
    return out + jnp.log(0.5 * s**2)  # ½ ∫ ds = ½ σ² ∫ du

  def _log_flat(d2, s):
    u = d2 / s**2
    # k♭ = −2 dφ/d(r²) = −2 φ(u) (d log φ/du) / σ²
    slope = jax.vmap(dlog_phi)(u.reshape(-1)).reshape(u.shape)
    return log_phi(u) + jnp.log(-2.0 * slope) - 2.0 * jnp.log(s)

  return _make(name, bandwidth, _log_k, _log_sharp, _log_flat)


_REGISTRY = {"gauss": gaussian, "gaussian": gaussian, "laplace": laplacian,
             "laplacian": laplacian, "rq": rational_quadratic,
             "rational_quadratic": rational_quadratic}


def get(name: str, bandwidth) -> RadialKernel:
  """Kernel by name: ``"gauss"``, ``"laplace"`` or ``"rq"`` (long names accepted too)."""
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ValueError(f"`name` must be one of {sorted(_REGISTRY)}, got {name!r}.")
  return _REGISTRY[name](bandwidth)


def pairwise_sqdist(x: Array, y: Array, *, precision=jax.lax.Precision.HIGHEST) -> Array:
  """Squared Euclidean distances ``‖x_i − y_j‖²`` as one matrix product.

  Uses ``‖x‖² + ‖y‖² − 2 x·y`` (matmul-bound, memory ``O(N·M)``) in a float dtype (integer
  inputs are cast first), with a ``HIGHEST``-precision cross term, clamped at zero against
  round-off. Points whose squared norms overflow the dtype (``‖x‖ ≳ 9e18`` in float32) raise
  a ``ValueError`` in an eager call; under ``jit`` those entries are NaN. The gradient is
  ``2(x − y)``, finite everywhere, including at ``x = y``. This is
  :func:`drifting_jax.distances.sqdist` with the eager range check.

  Args:
    x: ``[N, D]`` points.
    y: ``[M, D]`` points.
    precision: matmul precision of the cross term (keyword only).

  Returns:
    ``[N, M]`` squared distances.

  Raises:
    ValueError: (eager) ``x`` or ``y`` has squared norms beyond a quarter of the largest
      float of its dtype.
  """
  _validation.check_real_dtype("x", x)
  _validation.check_real_dtype("y", y)
  _validation.check_sqnorm_range("x", x)
  _validation.check_sqnorm_range("y", y)
  return distances.sqdist(x, y, precision=precision)


def log_kernel_matrix(kernel: RadialKernel, x: Array, y: Array, which: str = "k") -> Array:
  """``[N, M]`` matrix of ``log k(x_i, y_j)`` (or its sharp/flat, see :meth:`RadialKernel.log`)."""
  return kernel.log(distances.sqdist(x, y), which)


__all__ = ["RadialKernel", "gaussian", "laplacian", "rational_quadratic", "radial", "get",
           "pairwise_sqdist", "log_kernel_matrix", "width_range", "width_in_range"]
