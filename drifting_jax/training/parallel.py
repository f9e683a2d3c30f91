"""Data parallelism for the image step: device mesh (``jax.shard_map``), ``jax.pmap``, multi-host.

The per-device step of :mod:`drifting_jax.training.tasks.image_step` is written once, with an
``axis_name`` for its collectives; this module runs it

* on one device (``"none"``): ``jit(prepare + step)``;
* on a 1-D device mesh (``"mesh"``): ``jit(prepare + shard_map(step))`` — the train state is
  replicated (``P()``), the batch is split along its class-group axis (``P("data")``), so
  each device computes the drift of its own class groups; gradients, kernel-width
  observations and metrics are reduced inside the step. Works across hosts after
  :func:`maybe_initialize_distributed` (the mesh then spans every process's devices);
* with ``jax.pmap`` (``"pmap"``, single host): the state is stacked over local devices and
  the batch reshaped to ``[devices, G / devices, ...]``.

Each runner exposes the same interface (:class:`Runner`): ``place`` the host state on the
devices, run ``train`` / ``stats`` iterations, ``fetch`` the state back in its canonical
(unstacked) form for checkpoints and sampling. ``prepare(bank, data, step) -> (bank, batch)``
builds the global batch of an iteration as a pure function of the step (so resumed runs
see the same data); it runs replicated, before the batch is split.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["AXIS", "Runner", "auto_devices", "make_mesh", "make_runner", "maybe_initialize_distributed",
           "replicate"]

AXIS = "data"
ENV_COORDINATOR = "DRIFTING_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "DRIFTING_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "DRIFTING_JAX_PROCESS_ID"
ENV_AUTO = "DRIFTING_JAX_DISTRIBUTED"


def maybe_initialize_distributed(*, coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None,
                                 local_device_ids: Any = None, auto: bool | None = None,
                                 timeout_s: int | None = None) -> bool:
  """Calls ``jax.distributed.initialize`` when a multi-process run is configured.

  Arguments win over environment variables: ``DRIFTING_JAX_COORDINATOR`` (``host:port``),
  ``DRIFTING_JAX_NUM_PROCESSES``, ``DRIFTING_JAX_PROCESS_ID``; ``DRIFTING_JAX_DISTRIBUTED=1``
  (or ``auto=True``) calls ``jax.distributed.initialize()`` without arguments, letting JAX
  detect the cluster (Cloud TPU, SLURM, Open MPI, ...). On CPU the gloo collectives are
  selected (cross-process CPU all-reduces need them). Must run before any other JAX call
  that initialises the backends.

  Returns:
    True when JAX runs distributed after the call (initialised here or before).

  Raises:
    ValueError: an incomplete explicit configuration (e.g. an address without a process id).
  """
  if jax.distributed.is_initialized():
    return True
  env = os.environ
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  n = num_processes if num_processes is not None else env.get(ENV_NUM_PROCESSES)
  pid = process_id if process_id is not None else env.get(ENV_PROCESS_ID)
  if auto is None:
    auto = env.get(ENV_AUTO, "").lower() in ("1", "true", "yes", "auto")
  if address is None and n is None and pid is None:
    if not auto:
      return False
    jax.distributed.initialize()
    return True
  if address is None or n is None or pid is None:
    raise ValueError("a multi-process run needs `coordinator_address`, `num_processes` and "
                     f"`process_id` (or ${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, "
                     f"${ENV_PROCESS_ID}); got {address!r}, {n!r}, {pid!r}")
  n, pid = int(n), int(pid)
  if n < 1 or not 0 <= pid < n:
    raise ValueError(f"`process_id` must lie in [0, num_processes={n}), got {pid}")
  if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU all-reduces
  kwargs = {} if timeout_s is None else {"initialization_timeout": int(timeout_s)}
  jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid,
                             local_device_ids=local_device_ids, **kwargs)
  return True


def make_mesh(devices: Any = None, *, axis_name: str = AXIS) -> Mesh:
  """A 1-D data-parallel mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (axis_name,))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf, replicated, on all devices of ``mesh`` (multi-process safe: each
  process supplies its own copy, which must be identical across processes)."""
  sharding = NamedSharding(mesh, P())

  def put(x):
    if x is None:
      return None
    x = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree_util.tree_map(put, tree)


class Runner(NamedTuple):
  """A parallel execution strategy for the image step.

  Attributes:
    mode: ``"none"``, ``"mesh"`` or ``"pmap"``.
    num_devices: devices the class groups are split over.
    place: ``(state, bank, data) -> (state, bank, data)`` on the devices.
    train: ``(state, bank, data) -> (state, bank, metrics)``, one optimizer iteration.
    stats: same signature, one warm-up (statistics-only) iteration.
    fetch: device state -> canonical state (checkpoints, sampling).
  """

  mode: str
  num_devices: int
  place: Callable
  train: Callable
  stats: Callable
  fetch: Callable


def _single(train_step, stats_step, prepare, opts) -> Runner:
  def wrap(step_fn):
    def run(state, bank, data):
      bank, batch = prepare(bank, data, state.step)
      state, metrics = step_fn(state, batch, state.rng)
      return state, bank, metrics
    return jax.jit(run, compiler_options=opts)

  return Runner("none", 1, lambda s, b, d: (s, b, d), wrap(train_step), wrap(stats_step),
                lambda s: s)


def _mesh(train_step, stats_step, prepare, mesh: Mesh, axis_name: str, opts) -> Runner:
  batch_sharding = NamedSharding(mesh, P(axis_name))

  def wrap(step_fn):
    sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(axis_name), P()),
                            out_specs=(P(), P()))

    def run(state, bank, data):
      bank, batch = prepare(bank, data, state.step)
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      state, metrics = sharded(state, batch, state.rng)
      return state, bank, metrics
    return jax.jit(run, compiler_options=opts)

  place = lambda s, b, d: replicate((s, b, d), mesh)
  return Runner("mesh", mesh.devices.size, place, wrap(train_step), wrap(stats_step),
                lambda s: s)


def _pmap(train_step, stats_step, prepare, devices, axis_name: str, opts) -> Runner:
  n = len(devices)
  prep = jax.jit(prepare, compiler_options=opts)
  split = lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:])
  batch_sharding = NamedSharding(make_mesh(devices, axis_name=axis_name), P(axis_name))

  def wrap(step_fn):
    mapped = jax.pmap(step_fn, axis_name=axis_name, devices=devices)

    def run(state, bank, data):
      bank, batch = prep(bank, data, jax.device_put(state.step[0], devices[0]))
      # pmap refuses committed inputs laid out differently: scatter the groups explicitly.
      batch = jax.device_put(jax.tree_util.tree_map(split, batch), batch_sharding)
      state, metrics = mapped(state, batch, state.rng)
      return state, bank, jax.tree_util.tree_map(lambda m: m[0], metrics)
    return run

  def place(state, bank, data):
    stack = lambda x: jnp.stack([jnp.asarray(x)] * n)
    return jax.tree_util.tree_map(stack, state), bank, data

  fetch = lambda s: jax.tree_util.tree_map(lambda x: x[0], s)
  return Runner("pmap", n, place, wrap(train_step), wrap(stats_step), fetch)


def auto_devices(devices: Sequence[Any], num_groups: int) -> list:
  """The devices ``parallel="auto"`` splits ``num_groups`` class groups over.

  Every device needs whole class groups, so this is the largest number of ``devices`` that
  divides ``num_groups`` (one device if no larger count does): e.g. 5 groups on 8 devices
  run on 5 of them, 6 groups on 4 devices on 3. Across hosts every process keeps the same
  number of its own devices (a process without a device could not take part in the step's
  collectives), so the count is ``processes × m`` for the largest such ``m`` that divides
  ``num_groups``. When fewer than all devices are used a ``UserWarning`` says so.

  Raises:
    ValueError: across hosts, when no count ``processes × m`` divides ``num_groups``.
  """
  devices = list(devices)
  n = len(devices)
  by_process: dict[int, list] = {}
  for d in devices:
    by_process.setdefault(getattr(d, "process_index", 0), []).append(d)
  if len(by_process) == 1:
    count = max(k for k in range(1, n + 1) if num_groups % k == 0)
    chosen = devices[:count]
  else:
    procs = len(by_process)
    local = min(len(v) for v in by_process.values())
    per = [m for m in range(1, local + 1) if num_groups % (procs * m) == 0]
    if not per:
      raise ValueError(
          f"`num_classes_per_step` ({num_groups}) must be divisible by the number of "
          f"processes ({procs}) for a multi-host run: every process needs whole class groups")
    chosen = [d for p in sorted(by_process) for d in by_process[p][:max(per)]]
  if len(chosen) < n:
    warnings.warn(f"parallel='auto': {num_groups} class groups over {len(chosen)} of the {n} "
                  f"devices (the largest count that divides them; every device needs whole "
                  f"class groups)", UserWarning, stacklevel=3)
  return chosen


def make_runner(mode: str, *, make_steps: Callable[[str | None], tuple[Callable, Callable]],
                prepare: Callable, num_groups: int, devices: Any = None,
                axis_name: str = AXIS, compiler_options: dict | None = None) -> Runner:
  """Builds the runner for ``mode``.

  Args:
    mode: ``"auto"`` (``"mesh"`` over :func:`auto_devices` when that is more than one
      device, else ``"none"``), ``"none"``, ``"mesh"`` or ``"pmap"``.
    make_steps: ``axis_name -> (train_step, stats_step)`` per-device steps (``axis_name``
      None for the single-device runner).
    prepare: ``(bank, data, step) -> (bank, batch)`` global batch of an iteration.
    num_groups: class groups per iteration (``"mesh"`` / ``"pmap"``: must be divisible by
      the device count; ``"auto"`` uses as many devices as divide them).
    devices: devices to use (default: all, for ``pmap`` the local ones).
    axis_name: the data-parallel axis name.
    compiler_options: XLA compiler options of the jitted programs (``jax.pmap`` takes none:
      under ``"pmap"`` they apply to the batch preparation only).

  Raises:
    ValueError: unknown ``mode``, or (``"mesh"`` / ``"pmap"``) groups not divisible by the
      device count.
  """
  if mode not in ("auto", "none", "mesh", "pmap"):
    raise ValueError(f"`parallel` must be one of ('auto', 'none', 'mesh', 'pmap'), got {mode!r}")
  if mode == "pmap":
    devices = jax.local_devices() if devices is None else list(devices)
  else:
    devices = jax.devices() if devices is None else list(devices)
  opts = compiler_options or None
  if mode == "auto":
    devices = auto_devices(devices, num_groups)
    mode = "mesh" if len(devices) > 1 else "none"
  if mode == "none":
    return _single(*make_steps(None), prepare, opts)
  if num_groups % len(devices):
    raise ValueError(f"`num_classes_per_step` ({num_groups}) must be divisible by the number "
                     f"of devices ({len(devices)}) for parallel={mode!r}")
  steps = make_steps(axis_name)
  if mode == "mesh":
    return _mesh(*steps, prepare, make_mesh(devices, axis_name=axis_name), axis_name, opts)
  if jax.process_count() > 1:
    raise ValueError("`parallel='pmap'` is single-host here; use parallel='mesh' across hosts")
  return _pmap(*steps, prepare, devices, axis_name, opts)
