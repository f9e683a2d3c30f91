"""Log kernel density estimates (Def. 2 of Franz et al.), logsumexp-stable and streamable.

``p_KDE[k](x) = Σ_j w_j k(x, y_j) / Σ_j w_j`` (Eq. (4), a Monte-Carlo estimate of
``E_{y∼p}[k(x, y)]``), evaluated in log domain. With ``exclude_self`` the query ``x_i`` is
dropped from its own estimate (the leave-one-out KDE of Alg. 1, normalized by ``N − 1``).
With ``chunk_size`` the samples are streamed in blocks with an online logsumexp
(:mod:`drifting_jax.streaming`), so memory stays ``O(N · chunk_size)``, in the backward pass
too, while the result equals the one-shot computation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax import _validation, streaming
from drifting_jax.kernels import RadialKernel, check_kernel

Array = jax.Array


def log_kde(x: Array, samples: Array, *, kernel: RadialKernel, which: str = "k",
            weights: Array | None = None, exclude_self: bool = False,
            chunk_size: int | None = None) -> Array:
  """Log kernel density estimate ``log p_KDE[k](x)`` (Def. 2 / Eq. (4) of Franz et al.).

  Args:
    x: ``[N, D]`` query points.
    samples: ``[M, D]`` samples ``y_j`` of the distribution.
    kernel: a :class:`~drifting_jax.kernels.RadialKernel`.
    which: ``"k"`` for the kernel itself, ``"sharp"`` for ``k#`` (the normalizer ``Z#`` of
      Eq. (17)), ``"flat"`` for ``k♭``.
    weights: optional ``[M]`` nonnegative sample weights with a positive sum (normalized
      internally); under ``jit``, invalid weights give NaN.
    exclude_self: drop ``j = i`` (requires ``M = N`` and ``samples`` to be ``x``-like) and
      normalize by the remaining weight (``N − 1`` for uniform weights), as in Alg. 1.
    chunk_size: stream the samples in blocks of this size (online logsumexp); memory
      ``O(N · chunk_size)``. ``None`` computes the ``[N, M]`` matrix at once.

  Returns:
    ``[N]`` values of ``log p_KDE(x_i)`` (NaN for the rows of NaN queries, and everywhere
    for a traced invalid bandwidth or weights).

  Raises:
    ValueError: on wrong shapes, NaN/inf inputs (eager), an unknown ``which``, a
      ``chunk_size`` that is not a positive integer, or negative / all-zero ``weights``.
  """
  _validation.check_points("x", x)
  _validation.check_points("samples", samples, dim=np.shape(x)[1])
  _validation.check_choice("which", which, ("k", "sharp", "flat"))
  check_kernel(kernel)
  _validation.check_bool("exclude_self", exclude_self)
  m = np.shape(samples)[0]
  if exclude_self:
    _validation.check_self_excludable(x, samples, "samples")
    if m < 2:
      raise ValueError("`exclude_self=True` needs at least 2 samples.")
  chunk_size = streaming.check_chunk_size(chunk_size)
  # integer inputs would overflow in ‖x‖²
  x, samples = _validation.as_float(x, samples, names=("x", "samples"))
  if weights is None:
    log_w = jnp.zeros((m,), x.dtype)
  else:
    if np.shape(weights) != (m,):
      raise ValueError(f"`weights` must have shape [{m}] (one per sample), got "
                       f"{np.shape(weights)}.")
    _validation.check_finite("weights", weights)
    if _validation.is_concrete(weights):
      w = np.asarray(weights)
      if np.any(w < 0) or not np.any(w > 0):
        raise ValueError("`weights` must be nonnegative with a positive sum, got "
                         f"min {np.min(w):g}, sum {np.sum(w):g}.")
    else:  # a negative weight makes its log NaN, an all-zero set gives -inf - (-inf) = NaN
      _validation.traced_check((jnp.min(weights) >= 0) & (jnp.max(weights) > 0),
                               "`weights` must be nonnegative with a positive sum.")
    log_w = jnp.log(jnp.asarray(weights, x.dtype))

  logits = lambda d2, allowed, lw: (kernel.log(d2, which) + lw[None, :],)  # noqa: E731
  (moments,) = streaming.stream_moments(x, samples, logits, chunk_size=chunk_size,
                                        means=(False,), exclude_self=exclude_self,
                                        columns=log_w)
  lse = moments.log_sum

  log_total = jax.nn.logsumexp(log_w)
  if exclude_self:
    # Leave-one-out normalization: Σ_{j≠i} w_j = Σ_j w_j − w_i (N − 1 for uniform weights).
    log_norm = log_total + jnp.log1p(-jnp.exp(log_w - log_total))
  else:
    log_norm = log_total
  return lse - log_norm


__all__ = ["log_kde"]
