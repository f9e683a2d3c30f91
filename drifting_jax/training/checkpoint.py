"""Orbax checkpointing of :class:`~drifting_jax.training.state.TrainState`.

A run directory holds ``checkpoints/<step>/`` written by an orbax ``CheckpointManager``;
each checkpoint stores ``params``, ``opt_state``, ``step`` and ``rng``. Runs resume from the
latest step.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp

from drifting_jax.training.state import TrainState

__all__ = ["make_manager", "restore", "resolve_checkpoint", "save"]

CHECKPOINT_DIR = "checkpoints"


def make_manager(directory: str | os.PathLike, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A ``CheckpointManager`` on ``directory`` (created if missing)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def _as_tree(state: TrainState) -> dict:
  return {"params": state.params, "opt_state": state.opt_state, "step": state.step,
          "rng": state.rng}


def save(manager: ocp.CheckpointManager, state: TrainState) -> int:
  """Saves ``state`` under its step (asynchronously); returns the step."""
  step = int(state.step)
  manager.save(step, args=ocp.args.StandardSave(_as_tree(state)), force=True)
  return step


def restore(
    manager: ocp.CheckpointManager, template: TrainState, step: int | None = None
) -> TrainState | None:
  """Restores the checkpoint at ``step`` (default: latest) into ``template``'s structure.

  Returns:
    The restored state, or ``None`` when the manager holds no checkpoint.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  tree = manager.restore(step, args=ocp.args.StandardRestore(_as_tree(template)))
  return TrainState(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"],
                    rng=tree["rng"])


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
  if os.path.isdir(path) and any(d.isdigit() for d in os.listdir(path)):
    return path, None, os.path.dirname(path)
  raise ValueError(f"`checkpoint` {path!r} is not a run, checkpoints or step directory")
