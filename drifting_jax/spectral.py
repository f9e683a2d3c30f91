"""Linearized Fourier dynamics of drifting and mode convergence times (Secretly-SM §5.2, §6).

Linearizing the drifting continuity equation around equilibrium (App. B.2, Eq. 9) gives
∂_t δ = c_κ Δ(κ * δ); every Fourier mode decays independently (Theorem 5.2, App. B.3),

    ∂_t δ̂(k, t) = −λ(k, w(t)) δ̂(k, t),          δ̂(k, t) = δ̂(k, 0) exp(−Λ(k, t)),
    Λ(k, t) = ∫_0^t λ(k, w(s)) ds,

where w(t) is the kernel width (σ for the Gaussian, τ for the exponential/Laplace kernel),
possibly following a schedule (``drifting_jax.schedules``). Mode k is converged once
``|δ̂(k, T)| ≤ ε |δ̂(k, 0)|``, i.e. Λ(k, T) = log(1/ε) (App. B.4, B.5, F.2).

Dispersion rates:

- Gaussian (App. B.4, Eq. 17 and F.2): λ_G(k, σ) = σ² k² exp(−σ² k² / 2); its maximum over k
  is 2/e, reached at k* = √2/σ.
- Exponential kernel e^(−r/τ): B.3 shows it linearizes with c_κ = 1 and κ = h_τ / Z_τ,
  h_τ(r) = τ(r + τ) e^(−r/τ). Carrying out that Fourier transform exactly in d dimensions
  gives λ_E(k, τ) = (d + 1) τ² k² (1 + τ² k²)^(−(d+3)/2) (``laplace_decay_rate``), the form
  B.4 states up to constants. F.2 instead prints λ_E = 2 τ³ k² / (1 + τ² k²), which tends to
  the constant 2τ as k → ∞ (no slowdown at all) and is not what B.3 yields; it is provided as
  ``laplace_decay_rate_f2`` for reproducing the figure as described.

The unit of t is the continuous flow time of the linearized PDE (see ``schedules``).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation

__all__ = [
    "gaussian_decay_rate",
    "laplace_decay_rate",
    "laplace_decay_rate_f2",
    "optimal_mode",
    "optimal_bandwidth",
    "GAUSSIAN_PEAK_RATE",
    "fixed_convergence_time",
    "exponential_annealing_convergence_time",
    "annealing_time_bound",
    "cumulative_decay",
    "convergence_time",
    "ModeSimulation",
    "simulate_modes",
    "spectral_error",
]

RateFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]

GAUSSIAN_PEAK_RATE = 2.0 / math.e
"""max_k λ_G(k, σ) = 2/e for every σ (B.5: f(u) = u e^(−u/2) peaks at u = σ²k² = 2)."""


def _numeric(name: str, value: Any) -> jnp.ndarray:
  """``value`` as a float array; raises ``ValueError`` for strings, bools and other types."""
  if not _validation.is_numeric(value):
    raise ValueError(f"`{name}` must be a real number or array, got {value!r}.")
  value = jnp.asarray(value)
  if not jnp.issubdtype(value.dtype, jnp.floating):
    value = value.astype(jnp.result_type(float))
  return value


def _width(name: str, value: Any) -> jnp.ndarray:
  """A kernel width (scalar or array): concrete values must be finite and > 0 (else
  ``ValueError``); traced ones are NaN where invalid, so the rates are NaN, not finite."""
  value = _numeric(name, value)
  _validation.check_positive_array(name, value)
  if _validation.is_concrete(value):
    return value
  return jnp.where(_validation.positive_mask(value), value, jnp.nan)


def _u_rate(u: jnp.ndarray, fn: Callable[[jnp.ndarray], jnp.ndarray]) -> jnp.ndarray:
  """``fn(u)`` for a rate that vanishes as ``u → ∞``: 0 where ``u`` is ``+inf`` (an
  overflowed ``σ²k²``) instead of ``inf · 0 = NaN``; NaN stays NaN."""
  big = jnp.isposinf(u)
  return jnp.where(big, 0.0, fn(jnp.where(big, 1.0, u)))


def gaussian_decay_rate(k: Any, sigma: Any) -> jnp.ndarray:
  """Gaussian-kernel dispersion rate λ_G(k, σ) = σ² k² exp(−σ² k² / 2) (App. B.4, F.2).

  The inverse of the timescale of Eq. (17). Broadcasts ``k`` against ``sigma``.

  Args:
    k: mode frequencies ``|k|``, any shape.
    sigma: Gaussian bandwidth(s) σ, broadcastable with ``k``.

  Returns:
    The decay rates, shape ``broadcast(k, sigma)`` (NaN where a traced ``sigma`` is not
    finite and positive).

  Raises:
    ValueError: if a concrete ``sigma`` is not finite and positive, or an input is not
      numeric.
  """
  u = jnp.square(_width("sigma", sigma) * _numeric("k", k))
  return _u_rate(u, lambda v: v * jnp.exp(-0.5 * v))


def laplace_decay_rate(k: Any, tau: Any, *, dim: int = 1) -> jnp.ndarray:
  """Exponential-kernel dispersion rate derived from App. B.3: (d+1) τ² k² (1 + τ² k²)^(−(d+3)/2).

  With κ_τ = h_τ / Z_τ, ĥ_τ(k) = c_d (d + 1) τ^(d+2) (1 + τ²k²)^(−(d+3)/2) and
  Z_τ = c_d τ^d, so λ = k² κ̂_τ(k). This is the form of B.4 with its constant made exact;
  for large k, λ ≈ (d + 1) τ^(−(d+1)) k^(−(d+1)) (polynomial slowdown, Corollary 5.4, Eq. 11).

  Args:
    k: mode frequencies ``|k|``, any shape.
    tau: kernel width τ, broadcastable with ``k``.
    dim: ambient dimension d ≥ 1.

  Returns:
    The decay rates, shape ``broadcast(k, tau)`` (NaN where a traced ``tau`` is invalid).

  Raises:
    ValueError: if a concrete ``tau`` is not finite and positive or ``dim`` is not an
      integer >= 1.
  """
  dim = _validation.check_int("dim", dim, minimum=1)
  u = jnp.square(_width("tau", tau) * _numeric("k", k))
  # v/(1+v) ≤ 1 first: (d+1)·v alone can overflow where the product is tiny.
  return _u_rate(u, lambda v: (dim + 1) * (v / (1.0 + v)) * (1.0 + v) ** (-(dim + 1) / 2.0))


def laplace_decay_rate_f2(k: Any, tau: Any) -> jnp.ndarray:
  """Exponential-kernel rate exactly as printed in App. F.2: λ_E = 2 τ³ k² / (1 + τ² k²).

  Kept for reproducing Figure 2(a) as described; see the module docstring for why it
  disagrees with the derivation of App. B.3 (``laplace_decay_rate``).
  """
  tau = _width("tau", tau)
  k2 = jnp.square(_numeric("k", k))
  return 2.0 * tau**3 * k2 / (1.0 + tau**2 * k2)


def optimal_mode(sigma: Any) -> jnp.ndarray:
  """k* = argmax_k λ_G(k, σ) = √2 / σ (F.2; σ²k² = 2 in §6.2 and B.5); σ > 0 (NaN where a
  traced σ is invalid)."""
  return jnp.sqrt(2.0) / _width("sigma", sigma)


def optimal_bandwidth(k: Any) -> jnp.ndarray:
  """σ*(k) = argmax_σ λ_G(k, σ) = ``√2 / |k|``, the bandwidth at which mode k decays
  fastest."""
  return jnp.sqrt(2.0) / jnp.abs(_numeric("k", k))


def _log_inv_eps(eps: Any) -> float:
  e = _validation.scalar("eps", eps, what="a number in (0, 1)")
  if not 0.0 < e < 1.0:
    raise ValueError(f"`eps` must lie in (0, 1), got {eps!r}.")
  return math.log(1.0 / e)


def fixed_convergence_time(rate: Any, *, eps: float = 1e-3) -> jnp.ndarray:
  """T(k) = log(1/ε) / λ(k) for a fixed kernel (Theorem 5.2, App. B.4, F.2).

  Args:
    rate: decay rates λ(k) > 0, any shape (a zero rate gives ``inf``).
    eps: reduction factor ε in (0, 1).

  Returns:
    Convergence times, same shape as ``rate`` (NaN where a traced rate is negative or NaN).

  Raises:
    ValueError: if ``eps`` is not in (0, 1) or a concrete ``rate`` is negative or NaN.
  """
  big_l = _log_inv_eps(eps)
  rate = _numeric("rate", rate)
  ok = rate >= 0
  if _validation.is_concrete(rate):
    if not bool(np.all(np.asarray(ok))):
      raise ValueError(f"`rate` must be >= 0 (a decay rate), got {rate!r}.")
  else:
    _validation.traced_check(ok, "`rate` must be >= 0 (a decay rate).")
    rate = jnp.where(ok, rate, jnp.nan)
  return big_l / rate


def exponential_annealing_convergence_time(k: Any, *, sigma0: float, rate: float,
                                           sigma_min: float, eps: float = 1e-3) -> jnp.ndarray:
  """Exact convergence time of mode k under σ(t) = max(σ0 e^(−rt), σmin) (App. B.5).

  B.5 integrates the annealing phase in closed form (u = σ²k², du = −2ru dt):
  Λ(k, t) = (exp(−σ(t)²k²/2) − exp(−σ0²k²/2)) / r for t ≤ T_ann = log(σ0/σmin)/r. If this
  reaches L = log(1/ε) before T_ann, T solves exp(−σ(T)²k²/2) = rL + exp(−σ0²k²/2), i.e.
  T = log(σ0² k² / u_T) / (2r) with u_T = −2 log(rL + exp(−σ0²k²/2)); otherwise
  T = T_ann + (L − Λ(k, T_ann)) / λ_G(k, σmin).

  Args:
    k: mode frequencies ``|k| > 0``, shape ``[K]`` (any shape).
    sigma0: initial bandwidth σ0 > 0.
    rate: annealing rate r ≥ 0 (r = 0 is the fixed bandwidth σ0).
    sigma_min: floor 0 < σmin ≤ σ0.
    eps: reduction factor ε in (0, 1).

  Returns:
    Convergence times, same shape as ``k`` (``inf`` if λ_G(k, σmin) underflows to 0).
  """
  big_l = _log_inv_eps(eps)
  _validation.check_positive("sigma0", sigma0)
  _validation.check_positive("sigma_min", sigma_min)
  sigma0, sigma_min = float(np.asarray(sigma0)), float(np.asarray(sigma_min))
  if sigma_min > sigma0:
    raise ValueError(f"`sigma_min` must be <= `sigma0` ({sigma0}), got {sigma_min}.")
  r = _validation.scalar("rate", rate, what="a finite number >= 0")
  if not np.isfinite(r) or r < 0:
    raise ValueError(f"`rate` must be a finite number >= 0, got {rate}.")
  k = _numeric("k", k)
  if r == 0.0:
    return big_l / gaussian_decay_rate(k, sigma0)
  u0 = jnp.square(sigma0 * k)
  e0 = jnp.exp(-0.5 * u0)
  t_ann = math.log(sigma0 / sigma_min) / r
  lam_ann = (jnp.exp(-0.5 * jnp.square(sigma_min * k)) - e0) / r
  in_annealing = lam_ann >= big_l
  # Only meaningful where in_annealing (then r L + e0 < 1); clamp to keep the log finite.
  arg = jnp.where(in_annealing, r * big_l + e0, 0.5)
  u_t = -2.0 * jnp.log(arg)
  t_in = jnp.log(u0 / u_t) / (2.0 * r)
  t_after = t_ann + (big_l - lam_ann) / gaussian_decay_rate(k, sigma_min)
  return jnp.where(in_annealing, t_in, t_after)


def annealing_time_bound(k_max: float, *, sigma0: float, rate: float, sigma_min: float,
                         eps: float = 1e-3) -> float:
  """Theorem 6.1, Eq. (19): T ≤ log(σ0/σmin)/r + log(1/ε)/λ_min, λ_min = λ_G(K_max, σmin).

  Bounds the time to reduce every mode ``|k| ≤ K_max`` by 1/ε under exponential annealing.
  Valid under B.5's assumption σmin² K_max² ≥ 2 (so that λ_G(·, σmin) is smallest at K_max);
  with σmin = √2/K_max the second term is (e/2) log(1/ε) (printed as "(ε/2) log(1/ε)" in B.5).

  Caveat: B.5 lower-bounds λ_G(k, σmin) by λ_G(K_max, σmin) for every ``|k| ≤ K_max``, but
  u ↦ u e^(−u/2) *increases* for u = σmin²k² < 2, so low modes decay more slowly after the
  annealing. The bound therefore holds only when those modes already converge during the
  annealing phase, i.e. when (e^(−σmin²k²/2) − e^(−σ0²k²/2)) / r ≥ log(1/ε) for the lowest
  mode (for k ≥ 1, σ0 = 1.5, ε = 1e-3: r ≲ 0.098). Faster annealing violates it; compare with
  ``exponential_annealing_convergence_time`` (exact).

  Args:
    k_max: the largest mode K_max > 0.
    sigma0: initial bandwidth σ0 > 0.
    rate: annealing rate r > 0.
    sigma_min: floor 0 < σmin ≤ σ0 with σmin K_max ≥ √2.
    eps: reduction factor ε in (0, 1).

  Returns:
    The bound as a Python float.
  """
  big_l = _log_inv_eps(eps)
  for name, value in (("k_max", k_max), ("sigma0", sigma0), ("rate", rate),
                      ("sigma_min", sigma_min)):
    _validation.check_positive(name, value)
  k_max, sigma0, rate, sigma_min = (float(np.asarray(v)) for v in (k_max, sigma0, rate,
                                                                   sigma_min))
  if sigma_min > sigma0:
    raise ValueError(f"`sigma_min` must be <= `sigma0` ({sigma0}), got {sigma_min}.")
  u = (sigma_min * k_max) ** 2
  if u < 2.0 * (1.0 - 1e-12):
    raise ValueError("Theorem 6.1 needs `sigma_min` * `k_max` >= sqrt(2) "
                     f"(sigma_min^2 k_max^2 >= 2), got {u:.6g}.")
  lam_min = u * math.exp(-0.5 * u)
  return math.log(sigma0 / sigma_min) / rate + big_l / lam_min


def cumulative_decay(k: Any, schedule: Callable[[Any], Any], *, t_max: Any, num_points: int,
                     rate_fn: RateFn = gaussian_decay_rate) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Λ(k, t) = ∫_0^t λ(k, w(s)) ds on a uniform grid by the cumulative trapezoid rule.

  Args:
    k: mode frequencies, shape ``[K]``.
    schedule: kernel width ``t -> w(t)`` (e.g. from ``drifting_jax.schedules``).
    t_max: end of the time grid (may be traced).
    num_points: number of grid points n ≥ 2 (static).
    rate_fn: dispersion rate ``(k, w) -> λ``, broadcasting; default ``gaussian_decay_rate``.

  Returns:
    ``(t [n], Lambda [K, n])`` with ``Lambda[:, 0] = 0`` (NaN for a traced ``t_max`` that
    is not finite and positive).

  Raises:
    ValueError: on NaN/inf modes (eager), a non-positive ``t_max``, ``num_points`` not an
      integer >= 2, or a ``schedule`` / ``rate_fn`` that is not callable.
  """
  num_points = _validation.check_int("num_points", num_points, minimum=2)
  _check_callables(schedule, rate_fn)
  t_max = _validation.positive_or_nan("t_max", t_max)
  _validation.check_finite("k", _numeric("k", k))
  k = jnp.atleast_1d(_numeric("k", k))
  if k.ndim != 1:
    raise ValueError(f"`k` must have shape [K], got shape {k.shape}.")
  return _cumulative_decay(k, jnp.asarray(t_max, k.dtype), schedule, rate_fn, num_points)


def _check_callables(schedule, rate_fn) -> None:
  if not callable(schedule):
    raise ValueError(f"`schedule` must be a callable t -> width, got {schedule!r}.")
  if not callable(rate_fn):
    raise ValueError(f"`rate_fn` must be a callable (k, width) -> rate, got {rate_fn!r}.")


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _cumulative_decay(k, t_max, schedule, rate_fn, num_points):
  t = jnp.linspace(0.0, t_max, num_points, dtype=k.dtype)
  lam = rate_fn(k[:, None], jnp.asarray(schedule(t))[None, :])  # [K, n]
  increments = 0.5 * (lam[:, 1:] + lam[:, :-1]) * (t[1:] - t[:-1])
  zeros = jnp.zeros_like(lam[:, :1])
  return t, jnp.concatenate([zeros, jnp.cumsum(increments, axis=1)], axis=1)


@jax.jit
def _first_crossing(t: jnp.ndarray, decay: jnp.ndarray, level: Any) -> jnp.ndarray:
  """First t where the increasing ``decay [K, n]`` reaches ``level``, linearly interpolated."""
  reached = decay >= level
  idx = jnp.argmax(reached, axis=1)  # first True (0 if none)
  any_reached = jnp.any(reached, axis=1)
  hi = jnp.maximum(idx, 1)
  d_lo = jnp.take_along_axis(decay, (hi - 1)[:, None], axis=1)[:, 0]
  d_hi = jnp.take_along_axis(decay, hi[:, None], axis=1)[:, 0]
  frac = jnp.clip((level - d_lo) / jnp.where(d_hi > d_lo, d_hi - d_lo, 1.0), 0.0, 1.0)
  t_cross = t[hi - 1] + frac * (t[hi] - t[hi - 1])
  t_cross = jnp.where(idx == 0, t[0], t_cross)
  # A NaN decay (NaN mode, width or horizon) is NaN, not "never converged" (inf).
  undefined = jnp.any(jnp.isnan(decay), axis=1) | jnp.isnan(t[-1])
  return jnp.where(undefined, jnp.nan, jnp.where(any_reached, t_cross, jnp.inf))


def convergence_time(k: Any, schedule: Callable[[Any], Any], *, t_max: Any, eps: float = 1e-3,
                     num_points: int = 20_001,
                     rate_fn: RateFn = gaussian_decay_rate) -> jnp.ndarray:
  """Solves ∫_0^T λ(k, w(t)) dt = log(1/ε) for every mode (F.2; Theorem 6.1 / B.5).

  Cumulative trapezoid quadrature on a uniform grid of [0, t_max], then linear
  interpolation at the first crossing. Vectorized over modes; jittable (``num_points`` and
  the callables static).

  Args:
    k: mode frequencies, shape ``[K]``.
    schedule: kernel width ``t -> w(t)``; use ``schedules.constant`` for a fixed kernel.
    t_max: time horizon of the grid; modes not converged by ``t_max`` get ``inf``.
    eps: reduction factor ε in (0, 1).
    num_points: grid size (static); the error is O((t_max / num_points)²).
    rate_fn: dispersion rate ``(k, w) -> λ``; default ``gaussian_decay_rate``.

  Returns:
    Convergence times T(k), shape ``[K]`` (``inf`` when not reached by ``t_max``; NaN for
    NaN modes or widths under ``jit``).

  Raises:
    ValueError: see :func:`cumulative_decay`, and ``eps`` outside (0, 1).
  """
  big_l = _log_inv_eps(eps)
  t, decay = cumulative_decay(k, schedule, t_max=t_max, num_points=num_points, rate_fn=rate_fn)
  return _first_crossing(t, decay, big_l)


class ModeSimulation(NamedTuple):
  """Result of ``simulate_modes``.

  Attributes:
    times: time grid, shape ``[n + 1]``.
    amplitudes: ``|δ̂q(k, t)|`` per time and mode, shape ``[n + 1, K]``.
    crossing_times: first time with ``|δ̂q(k, t)| ≤ ε |δ̂q(k, 0)|``, shape ``[K]``
      (``inf`` if never reached within the simulated horizon).
  """
  times: jnp.ndarray
  amplitudes: jnp.ndarray
  crossing_times: jnp.ndarray


def simulate_modes(k: Any, schedule: Callable[[Any], Any], *, t_max: Any, num_steps: int,
                   eps: float = 1e-3, amplitude: Any = 1e-6,
                   rate_fn: RateFn = gaussian_decay_rate) -> ModeSimulation:
  """Explicit time stepping of the linearized mode dynamics of App. F.2.

  Starting from δq(x, 0) = A Σ_k cos(k x), every step applies
  δ̂q(k, t + dt) = δ̂q(k, t) exp(−λ(k, w(t + dt/2)) dt) (F.2's update, with the width taken
  at the step midpoint for second-order accuracy). The recursion runs on log-amplitudes so
  that tiny amplitudes (A = 1e-6) do not underflow the threshold test; the crossing time is
  interpolated inside the crossing step, where ``log |δ̂q|`` is linear in t.

  Args:
    k: mode frequencies, shape ``[K]``.
    schedule: kernel width ``t -> w(t)``.
    t_max: simulated horizon.
    num_steps: number of time steps n (static).
    eps: threshold ε in (0, 1).
    amplitude: initial amplitude A, scalar or shape ``[K]``.
    rate_fn: dispersion rate ``(k, w) -> λ``; default ``gaussian_decay_rate``.

  Returns:
    A ``ModeSimulation`` (crossing times NaN for NaN modes or widths under ``jit``).

  Raises:
    ValueError: on NaN/inf modes or amplitude (eager), a non-positive ``t_max``,
      ``num_steps`` not a positive integer, ``eps`` outside (0, 1), or a ``schedule`` /
      ``rate_fn`` that is not callable.
  """
  big_l = _log_inv_eps(eps)
  num_steps = _validation.check_int("num_steps", num_steps, minimum=1)
  _check_callables(schedule, rate_fn)
  t_max = _validation.positive_or_nan("t_max", t_max)
  _validation.check_finite("k", _numeric("k", k))
  k = jnp.atleast_1d(_numeric("k", k))
  if k.ndim != 1:
    raise ValueError(f"`k` must have shape [K], got shape {k.shape}.")
  amplitude = _numeric("amplitude", amplitude)
  _validation.check_finite("amplitude", amplitude)
  return _simulate(k, jnp.asarray(t_max, k.dtype), jnp.asarray(amplitude, k.dtype),
                   jnp.asarray(big_l, k.dtype), schedule, rate_fn, num_steps)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _simulate(k, t_max, amplitude, big_l, schedule, rate_fn, num_steps):
  dt = t_max / num_steps

  def step(log_a, n):
    t_mid = (n + 0.5) * dt
    log_a = log_a - rate_fn(k, jnp.asarray(schedule(t_mid))) * dt
    return log_a, log_a

  _, log_traj = jax.lax.scan(step, jnp.zeros_like(k), jnp.arange(num_steps, dtype=k.dtype))
  log_traj = jnp.concatenate([jnp.zeros_like(k)[None], log_traj], axis=0)  # [n + 1, K]
  times = jnp.arange(num_steps + 1, dtype=k.dtype) * dt
  crossing = _first_crossing(times, -log_traj.T, big_l)
  amplitudes = jnp.abs(amplitude) * jnp.exp(log_traj)
  return ModeSimulation(times=times, amplitudes=amplitudes, crossing_times=crossing)


def spectral_error(amplitudes: Any) -> jnp.ndarray:
  """Total spectral error E(t) = ``Σ_k |δ̂q(k, t)|`` (App. F.2, Figure 2c).

  Args:
    amplitudes: mode amplitudes, shape ``[..., K]`` (e.g. ``ModeSimulation.amplitudes``).

  Returns:
    E, shape ``[...]``.
  """
  return jnp.sum(jnp.abs(_numeric("amplitudes", amplitudes)), axis=-1)
