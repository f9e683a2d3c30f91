"""Orbax checkpoints of a run directory: one tree format for every task.

A run directory holds ``checkpoints/<step>/`` written by an orbax ``CheckpointManager``
(``StandardSave``). Each holds one :class:`~drifting_jax.training.state.TrainState` as
``{"state": {step, params, opt_state, rng[, ema_params, norm]}[, "bank": memory bank]}``
(fields that are None are left out). Runs resume from the newest checkpoint that restores:
a checkpoint that fails (truncated by a crash, corrupt on disk) is reported by path in a
warning and the next older one is used, for training, sampling and evaluation alike.
Checkpoints of toy runs written before v0.3 (``{step, params, opt_state, rng}`` at the top)
are read too.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import flax.serialization
import orbax.checkpoint as ocp

from drifting_jax.data import memory_bank
from drifting_jax.training import rundir
from drifting_jax.training.state import TrainState

__all__ = ["CHECKPOINT_DIR", "CheckpointWriteError", "has_checkpoint", "make_manager",
           "resolve_checkpoint", "restore", "restore_run_state", "restore_tree", "save",
           "save_tree", "state_tree"]

CHECKPOINT_DIR = "checkpoints"


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (e.g. the disk is full); the earlier ones are intact."""


class _Manager(ocp.CheckpointManager):
  """orbax's manager whose write errors say which checkpoint failed and what survives.

  orbax writes each checkpoint into a temporary folder and renames it when complete, so a
  failed write (disk full, quota, permissions) leaves the previous checkpoints as they were;
  the error of an asynchronous write surfaces at the next ``save`` or
  ``wait_until_finished``, and is re-raised here as :class:`CheckpointWriteError` naming the
  newest checkpoint that restores.
  """

  def _failed(self, e: OSError, what: str) -> CheckpointWriteError:
    try:
      kept = super().latest_step()
    except Exception:  # noqa: BLE001 - the listing itself may fail on a broken disk
      kept = None
    survivor = ("no earlier checkpoint exists" if kept is None else
                f"the checkpoint of step {kept} is intact")
    return CheckpointWriteError(
        e.errno, f"{what} could not be written to {self.directory} "
                 f"({e.strerror or e}); training stopped, {survivor} — free space and run the "
                 f"same command again to resume from it")

  def save(self, step, *args, **kwargs):
    try:
      return super().save(step, *args, **kwargs)
    except OSError as e:
      raise self._failed(e, f"the checkpoint of step {step}") from e

  def wait_until_finished(self):
    try:
      return super().wait_until_finished()
    except OSError as e:
      raise self._failed(e, "a checkpoint") from e


def make_manager(directory: str | os.PathLike, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A ``CheckpointManager`` on ``directory`` (created if missing); a failed write raises
  :class:`CheckpointWriteError` naming the checkpoint that survives."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return _Manager(os.path.abspath(os.fspath(directory)), options=options)


def save_tree(manager: ocp.CheckpointManager, step: int, tree: Any) -> int:
  """Saves the pytree ``tree`` under ``step`` (asynchronously); returns ``step``."""
  manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
  return int(step)


def restore_tree(manager: ocp.CheckpointManager, template: Any, step: int | None = None, *,
                 quarantine: bool = False, alternatives: tuple = ()
                 ) -> tuple[Any, int] | None:
  """Restores into ``template``'s structure: ``step``, or the newest checkpoint that restores.

  Args:
    manager: the run's checkpoint manager.
    template: a pytree of the saved structure (shapes and dtypes).
    alternatives: ``(template, convert)`` pairs tried when ``template`` does not restore a
      checkpoint (older tree formats); ``convert(tree)`` maps the restored tree to
      ``template``'s structure.
    step: a given step (its failure is an error), or None for the newest restorable one.
    quarantine: move checkpoints that failed to restore out of the way (into
      ``<run>/corrupt-checkpoints/``) so that training can write those steps again;
      readers (sampling, evaluation) leave the directory untouched.

  Returns:
    ``(tree, step)``, or None when the manager holds no checkpoint.

  Raises:
    ValueError: the given ``step`` does not exist or does not restore, or no checkpoint
      restores; the message names the checkpoint paths and the errors.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None
  directory = os.fspath(manager.directory)
  if step is not None:
    if int(step) not in steps:
      raise ValueError(f"`checkpoint` {os.path.join(directory, str(step))!r} does not exist; "
                       f"steps there: {sorted(steps)}")
    steps = [int(step)]
  errors = []
  for s in steps:
    try:
      tree = _restore_one(manager, s, template, alternatives)
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds
      path = os.path.join(directory, str(s))
      errors.append(f"{path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      if step is None and s != steps[-1]:
        warnings.warn(f"checkpoint {path} does not restore ({type(e).__name__}); "
                      "falling back to the previous one", RuntimeWarning, stacklevel=2)
      continue
    if errors and step is None:
      warnings.warn(f"restored the newest good checkpoint, step {s}, of {directory}",
                    RuntimeWarning, stacklevel=2)
      if quarantine:
        _quarantine(manager, [b for b in steps if b > s])
    return tree, s
  raise ValueError("no checkpoint restores (a changed model or optimizer config, or a "
                   "corrupt run directory):\n  " + "\n  ".join(errors))


def _restore_one(manager, step: int, template: Any, alternatives: tuple) -> Any:
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(template))
  except Exception as first:  # noqa: BLE001
    for alt, convert in alternatives:
      try:
        return convert(manager.restore(step, args=ocp.args.StandardRestore(alt)))
      except Exception:  # noqa: BLE001
        continue
    raise first


def _quarantine(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  directory = os.fspath(manager.directory)
  dest = os.path.join(os.path.dirname(directory), "corrupt-checkpoints")
  os.makedirs(dest, exist_ok=True)
  for s in steps:
    target = os.path.join(dest, f"{s}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(os.path.join(directory, str(s)), target)
    warnings.warn(f"moved the checkpoint that does not restore to {target}", RuntimeWarning,
                  stacklevel=3)
  manager.reload()


_FIELDS = ("step", "params", "opt_state", "rng", "ema_params", "norm")


def state_tree(state: TrainState) -> dict:
  """The checkpoint tree of ``state``: ``{"state": {...}[, "bank": {...}]}``."""
  fields = flax.serialization.to_state_dict(state.replace(bank=None))
  tree = {"state": {k: fields[k] for k in _FIELDS if getattr(state, k) is not None}}
  if state.bank is not None:
    tree["bank"] = state.bank._asdict()
  return tree


def _from_tree(template: TrainState, tree: dict) -> TrainState:
  fields = flax.serialization.to_state_dict(template.replace(bank=None))
  fields.update(tree["state"])
  state = flax.serialization.from_state_dict(template.replace(bank=None), fields)
  if template.bank is not None:
    state = state.replace(bank=memory_bank.MemoryBank(**tree["bank"]))
  return state


def save(manager: ocp.CheckpointManager, state: TrainState, step: int | None = None) -> int:
  """Saves ``state`` under ``step`` (default ``state.step``; asynchronously); returns it."""
  return save_tree(manager, int(state.step) if step is None else int(step), state_tree(state))


def restore(manager: ocp.CheckpointManager, template: TrainState, step: int | None = None, *,
            quarantine: bool = False) -> TrainState | None:
  """Restores a :class:`TrainState` shaped like ``template`` (see :func:`restore_tree`;
  None without checkpoints)."""
  tree = state_tree(template)
  alternatives = ()
  if set(tree) == {"state"} and set(tree["state"]) == {"step", "params", "opt_state", "rng"}:
    # toy runs written before v0.3: the (unserialized) state at the top of the tree
    legacy = {k: getattr(template, k) for k in ("params", "opt_state", "step", "rng")}
    alternatives = ((legacy, lambda t: {"state": flax.serialization.to_state_dict(t)}),)
  out = restore_tree(manager, tree, step, quarantine=quarantine, alternatives=alternatives)
  return None if out is None else _from_tree(template, out[0])


def _has_steps(directory: str) -> bool:
  return os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory))


def has_checkpoint(workdir: str | os.PathLike) -> bool:
  """Whether the run directory ``workdir`` holds a checkpoint step (restorable or not)."""
  return _has_steps(os.path.join(os.fspath(workdir), CHECKPOINT_DIR))


def resolve_checkpoint(path: str | os.PathLike) -> tuple[str, int | None, str]:
  """Interprets a user path as ``(checkpoints_dir, step, run_dir)``.

  Accepts a run directory (holding ``checkpoints/``), a checkpoints directory, or one
  step directory ``checkpoints/<step>``. ``step`` is ``None`` for "latest".

  Raises:
    ValueError: if ``path`` is none of these.
  """
  path = os.path.abspath(os.fspath(path))
  if os.path.isdir(os.path.join(path, CHECKPOINT_DIR)):
    return os.path.join(path, CHECKPOINT_DIR), None, path
  base = os.path.basename(path)
  if base.isdigit() and os.path.isdir(path):
    ckpt_dir = os.path.dirname(path)
    return ckpt_dir, int(base), os.path.dirname(ckpt_dir)
  if _has_steps(path):
    return path, None, os.path.dirname(path)
  raise ValueError(f"`checkpoint` {path!r} is not a run, checkpoints or step directory")


def restore_run_state(path: str | os.PathLike,
                      build: Callable[[dict], tuple[Any, TrainState, int]], *,
                      what: str = "`workdir`") -> tuple[Any, TrainState, str]:
  """Restores the state of the run at ``path`` (newest checkpoint that restores, or the
  given ``checkpoints/<step>``).

  Args:
    path: a run directory, its ``checkpoints`` directory or one ``checkpoints/<step>``.
    build: ``build(config record) -> (obj, template state, max_to_keep)``; raises
      ``ValueError`` for a record it cannot use.
    what: how error messages name ``path``.

  Returns:
    ``(obj, state, run_dir)``.

  Raises:
    ValueError: ``path`` is no run, has no ``config.json`` or no checkpoint.
  """
  ckpt_dir, step, run_dir = resolve_checkpoint(path)
  record = rundir.load_config_record(run_dir)
  if record is None:
    raise ValueError(f"{what} {run_dir!r} has no config.json")
  obj, template, max_to_keep = build(record)
  manager = make_manager(ckpt_dir, max_to_keep=max_to_keep)
  try:
    state = restore(manager, template, step)
  finally:
    manager.close()
  if state is None:
    raise ValueError(f"{what} {ckpt_dir!r} holds no checkpoint")
  return obj, state, run_dir
