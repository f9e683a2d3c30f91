"""The run directory of a training run: one writer, a config record, a metrics log, a NaN guard.

Kept by the trainer (:mod:`drifting_jax.training.trainer`) for every task::

    .lock                    held (``fcntl.flock``) by the one process training here
    config.json              the configuration the run was started with
    config_amendments.jsonl  later changes of bookkeeping/schedule-only settings on resume
    metrics.jsonl            one record per logging step (trimmed to the restored step on
                             resume, so a crash between a log write and a checkpoint never
                             leaves duplicate records)
    checkpoints/<step>/      orbax (:mod:`drifting_jax.training.checkpoint`)

Resuming with a configuration that differs from the recorded one in anything but the
pipeline's ``amendable`` fields (step budget, logging/checkpoint cadence, progress bar)
refuses to start: such a run would silently mix two experiments.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from typing import Any, Callable, Iterable, Mapping

__all__ = ["ConfigMismatch", "RunDirLocked", "RunLock", "MetricsLog", "check_finite",
           "StepGuard", "load_config_record", "move_aside", "record_config", "write_json"]

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
AMENDMENTS_FILE = "config_amendments.jsonl"


class RunDirLocked(RuntimeError):
  """Another process is training in this run directory."""


class ConfigMismatch(ValueError):
  """A resumed run's configuration differs from the recorded one."""


class RunLock:
  """Exclusive lock on a run directory for the life of a training session.

  Raises:
    RunDirLocked: another process holds it (its pid is in the message).
  """

  def __init__(self, workdir: str | os.PathLike):
    self.path = os.path.join(os.fspath(workdir), LOCK_FILE)
    self._fd: int | None = None

  def __enter__(self) -> "RunLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
      os.close(fd)
      raise RunDirLocked(f"run directory {os.path.dirname(self.path)!r} is in use by another "
                         f"trainer (pid {holder}); wait for it or use another --workdir"
                         ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes ``obj`` as indented JSON atomically (temporary file + rename)."""
  tmp = f"{os.fspath(path)}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def load_config_record(workdir: str | os.PathLike) -> dict | None:
  """The run's configuration: ``config.json`` with its amendments applied (None if absent).

  Raises:
    ValueError: ``config.json`` or an amendment is not valid JSON (the path is named).
  """
  path = os.path.join(os.fspath(workdir), CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      cfg = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e})") from None
  amend = os.path.join(os.fspath(workdir), AMENDMENTS_FILE)
  if os.path.isfile(amend):
    with open(amend) as f:
      for i, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          changes = json.loads(line)["changes"]
        except (json.JSONDecodeError, KeyError) as e:
          raise ValueError(f"{amend}, line {i}, is not an amendment record ({e})") from None
        cfg.update({k: v["new"] for k, v in changes.items()})
  return cfg


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict]:
  return {k: {"old": old.get(k), "new": new.get(k)} for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


def record_config(workdir: str | os.PathLike, config: Mapping[str, Any], *, step: int,
                  amendable: Iterable[str],
                  normalize: Callable[[dict], dict] | None = None) -> dict[str, dict]:
  """Records ``config`` for a (re)started run; refuses an incompatible resume.

  A new run writes ``config.json``. On resume (``step > 0`` or a record exists) the
  differences to the recorded configuration must all lie in ``amendable``; they are
  appended to ``config_amendments.jsonl`` (``config.json`` stays as the run began).

  Args:
    workdir: the run directory.
    config: the JSON-serializable configuration of this session.
    step: the step training resumes from (0 for a fresh run).
    amendable: fields that may change between sessions.
    normalize: maps the recorded configuration to today's fields before comparing (a
      record written by an earlier version: renamed fields, new fields at the defaults
      that reproduce it).

  Returns:
    The amended fields ``{name: {"old": ..., "new": ...}}`` (empty when unchanged).

  Raises:
    ConfigMismatch: other fields differ; the message lists them with old and new values.
  """
  config = json.loads(json.dumps(dict(config)))
  old = load_config_record(workdir)
  if old is None:
    write_json(os.path.join(os.fspath(workdir), CONFIG_FILE), config)
    return {}
  if normalize is not None:
    old = json.loads(json.dumps(normalize(old)))
  diff = _diff(old, config)
  amendable = set(amendable)
  fixed = {k: v for k, v in diff.items() if k not in amendable}
  if fixed:
    lines = "\n".join(f"  {k}: {v['old']!r} -> {v['new']!r}" for k, v in fixed.items())
    sets = " ".join(f"--set {k}={json.dumps(v['old'])}" for k, v in fixed.items())
    raise ConfigMismatch(
        f"{os.fspath(workdir)!r} holds a run (at step {step}) with another configuration:\n"
        f"{lines}\nresume it unchanged ({sets}), train in a new --workdir, or pass "
        "--force-new to start over here (the old run is moved aside)")
  if diff:
    with open(os.path.join(os.fspath(workdir), AMENDMENTS_FILE), "a") as f:
      f.write(json.dumps({"step": int(step), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "changes": diff}) + "\n")
  return diff


def move_aside(workdir: str | os.PathLike, names: Iterable[str]) -> str | None:
  """Moves the run files ``names`` of ``workdir`` into ``workdir/replaced-<time>/``."""
  present = [n for n in names if os.path.exists(os.path.join(os.fspath(workdir), n))]
  if not present:
    return None
  dest = os.path.join(os.fspath(workdir), time.strftime("replaced-%Y%m%d-%H%M%S"))
  os.makedirs(dest, exist_ok=True)
  for n in present:
    os.replace(os.path.join(os.fspath(workdir), n), os.path.join(dest, n))
  return dest


class MetricsLog:
  """Append-only JSONL metrics, trimmed on open to records at or before ``resume_step``."""

  def __init__(self, path: str | os.PathLike, *, resume_step: int, enabled: bool = True):
    self.path, self.enabled = os.fspath(path), enabled
    self._f = None
    if not enabled:
      return
    if os.path.isfile(self.path):
      keep = []
      with open(self.path) as f:
        for line in f:
          try:
            if line.strip() and json.loads(line).get("step", 0) <= resume_step:
              keep.append(line if line.endswith("\n") else line + "\n")
          except json.JSONDecodeError:  # a record cut by a crash
            continue
      with open(self.path, "w") as f:
        f.writelines(keep)
    self._f = open(self.path, "a")

  def write(self, record: Mapping[str, Any]) -> None:
    if self._f is not None:
      self._f.write(json.dumps(dict(record)) + "\n")
      self._f.flush()

  def close(self) -> None:
    if self._f is not None:
      self._f.close()
      self._f = None

  def __enter__(self) -> "MetricsLog":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def check_finite(values: Mapping[str, float], keys: Iterable[str], *, where: str,
                 manager: Any = None, unit: str = "step") -> None:
  """The NaN guard: raises ``FloatingPointError`` if a metric in ``keys`` is not finite.

  Args:
    values: host-side scalar metrics of one step.
    keys: the metrics that must be finite (absent ones are skipped).
    where: ``"step 12"``-like location for the message.
    manager: the run's checkpoint manager, to name the last good checkpoint.
    unit: what checkpoints are numbered by (``"step"``, ``"iteration"``).
  """
  bad = [k for k in keys if k in values and not math.isfinite(values[k])]
  if not bad:
    return
  good = "none"
  if manager is not None:
    manager.wait_until_finished()
    latest = manager.latest_step()
    good = "none" if latest is None else f"{unit} {latest} in {manager.directory}"
  raise FloatingPointError(
      f"non-finite {', '.join(f'{k}={values[k]}' for k in bad)} at {where}; training "
      f"stopped, the update was discarded. Last good checkpoint: {good}")


class StepGuard:
  """The NaN guard without a host sync per step.

  The loop hands every step's (device) metrics to :meth:`add` and calls :meth:`check` only
  where it needs host values anyway (logging, checkpoints, the end): one transfer for all
  pending steps, and a ``FloatingPointError`` naming the *first* step whose ``keys`` were
  not finite. The loop checks before every checkpoint, so a diverged state is never saved.
  """

  def __init__(self, keys: Iterable[str], *, where: Any = "step {}".format,
               unit: str = "step"):
    self.keys, self.where, self.unit = tuple(keys), where, unit
    self._pending: list[tuple[int, dict]] = []

  def add(self, step: int, metrics: Mapping[str, Any]) -> None:
    self._pending.append((step, {k: metrics[k] for k in self.keys if k in metrics}))

  def check(self, manager: Any = None) -> list[dict[str, float]]:
    """Raises on the first non-finite pending step; returns the pending host values."""
    import jax  # noqa: PLC0415 - jax is imported by every caller anyway

    if not self._pending:
      return []
    host = jax.device_get([m for _, m in self._pending])
    steps = [s for s, _ in self._pending]
    self._pending = []
    values = [{k: float(v) for k, v in m.items()} for m in host]
    for step, vals in zip(steps, values):
      check_finite(vals, self.keys, where=self.where(step), manager=manager, unit=self.unit)
    return values
