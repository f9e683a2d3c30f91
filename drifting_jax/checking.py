"""Opt-in runtime checks inside ``jit``: :func:`checked`.

Eager calls of the library validate their inputs and raise ``ValueError``. Under ``jit``
the values are traced and cannot raise; invalid traced hyperparameters (a bandwidth
``<= 0``, ``alpha <= 0``, negative weights, ...) then give NaN outputs, and NaN inputs
give NaN outputs for the rows they touch. For an *error* instead, run the computation
through :func:`checked`: the library registers a ``jax.experimental.checkify`` check for
every such value while :func:`checked` traces (elsewhere nothing is registered, so a
plain ``jax.jit`` of a library function keeps JAX's fast dispatch path; functions jitted
outside are retraced inside, the setting being part of ``jit``'s cache key), and
:func:`checked` turns the first failed one into an exception whose
message names the argument, e.g. ``ValueError: `bandwidth` must be a finite positive
number, got -0.5.``

Supported forms (``fn`` may itself contain ``jit``, ``vmap``, ``grad``, ``scan``, ...):

* ``checked(jax.jit(fn))(*args)``: the recommended form. The checks are compiled into
  ``fn``'s program (cached like ``fn``; it returns one extra error value) and raised on the
  host as ``ValueError`` (invalid inputs or hyperparameters) or ``FloatingPointError``
  (NaN in an output, or ``checkify``'s own float checks when enabled).
* ``checked(fn)(*args)`` with a plain Python ``fn``: the same, but ``checkify`` traces
  ``fn`` on every call and runs it op by op (slow; wrap ``fn`` in ``jax.jit``).
* ``jax.jit(checked(fn))``, ``jax.vmap(checked(fn))``, ``jax.grad(checked(fn))``: inside an
  outer transformation no Python exception can be raised at trace time, so the error is
  raised from the running program through a host callback
  (``jax.experimental.io_callback``). It reaches the caller as a
  ``jax.errors.JaxRuntimeError`` whose message contains the ``ValueError`` /
  ``FloatingPointError`` text. Prefer the outermost form above.

Only arrays (``jax.Array``, ``numpy.ndarray``) among the arguments are traced; Python
numbers, strings, kernels' static parts and other objects are passed through unchanged, so
a concrete invalid option still raises the library's eager ``ValueError`` directly.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify, io_callback

from drifting_jax import _validation

__all__ = ["checked"]

_OUTPUT_NAN = "returned NaN"
_SUFFIX = " (`check` failed)"


def _is_dynamic(leaf: Any) -> bool:
  return isinstance(leaf, (jax.Array, np.ndarray)) and not isinstance(leaf, np.generic)


def _exception(err: Any) -> Exception | None:
  """The Python exception for a concrete ``checkify`` error (``None`` when none failed)."""
  exc = err.get_exception()
  if exc is None:
    return None
  message = str(exc)
  if message.endswith(_SUFFIX):
    message = message[:-len(_SUFFIX)]
  kind = type(exc)
  if kind in checkify.user_checks:  # the library's named checks, and the output check
    return FloatingPointError(message) if _OUTPUT_NAN in message else ValueError(message)
  if kind in checkify.float_checks:  # NaN produced by a primitive, integer division by 0
    return FloatingPointError(message)
  if kind in checkify.index_checks:
    return IndexError(message)
  return ValueError(message)


def _raise_on_host(err: Any) -> None:
  exc = _exception(err)
  if exc is not None:
    raise exc


def checked(fn: Callable[..., Any], *, errors: Any = None,
            check_outputs: bool = True) -> Callable[..., Any]:
  """Wraps ``fn`` so that invalid values met inside ``jit`` raise instead of giving NaN.

  ``fn`` runs under ``jax.experimental.checkify.checkify``: the checks the library
  registers for traced values (NaN/inf inputs, non-positive bandwidths, ``alpha``,
  ``epsilon``, non-finite ``eta``, invalid weights, ...) are then active, and the first one
  that fails is raised, naming its argument. See the module docstring for the supported
  forms (``checked(jax.jit(fn))`` is the recommended one).

  Example::

    loss = dj.checked(jax.jit(lambda x, bw: dj.mmd_loss(x, pos, x,
                                                       kernel=dj.gaussian(bw))))
    loss(x, jnp.float32(-0.5))  # ValueError: `bandwidth` must be a finite positive ...

  Args:
    fn: the function to check; its array arguments (``jax.Array``, ``numpy.ndarray``) are
      traced, every other argument is passed through as is.
    errors: the ``checkify`` error set (default ``checkify.user_checks``: the library's
      named checks). ``checkify.user_checks | checkify.float_checks`` also reports the
      first primitive that produces a NaN (its message names the primitive, not an
      argument).
    check_outputs: also raise ``FloatingPointError`` when an output of ``fn`` contains NaN
      (a NaN no named check caught, e.g. from a function outside the library).

  Returns:
    A function with ``fn``'s signature and outputs.

  Raises:
    ValueError: if ``fn`` is not callable or ``check_outputs`` is not a bool.
  """
  if not callable(fn):
    raise ValueError(f"`fn` must be callable, got {fn!r}.")
  if not isinstance(check_outputs, bool):
    raise ValueError(f"`check_outputs` must be a bool, got {check_outputs!r}.")
  errors = checkify.user_checks if errors is None else errors
  name = getattr(fn, "__name__", type(fn).__name__)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = [_is_dynamic(leaf) for leaf in leaves]

    def inner(*dyn_leaves):
      it = iter(dyn_leaves)
      full = [next(it) if d else leaf for leaf, d in zip(leaves, dynamic)]
      a, k = jax.tree_util.tree_unflatten(treedef, full)
      out = fn(*a, **k)
      if check_outputs:
        for path, leaf in jax.tree_util.tree_flatten_with_path(out)[0]:
          if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact):
            where = jax.tree_util.keystr(path) or "[]"
            checkify.check(~jnp.any(jnp.isnan(leaf)),
                           f"`{name}` {_OUTPUT_NAN} in its output {where}.")
      return out

    dyn = [leaf for leaf, d in zip(leaves, dynamic) if d]
    with _validation.registering_checks():
      err, out = checkify.checkify(inner, errors=errors)(*dyn)
    if all(not isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(err)):
      exc = _exception(err)
      if exc is not None:
        raise exc
      return out
    # Under an outer transformation: raise from the running program (a host callback).
    err = jax.tree_util.tree_map(jax.lax.stop_gradient, err)
    io_callback(_raise_on_host, None, err, ordered=False)
    return out

  return wrapper
