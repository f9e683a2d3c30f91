"""The training-loop skeleton of the trainer (:mod:`drifting_jax.training.trainer`).

:func:`run_loop` runs ``step(it)`` for ``it`` in ``[start, end)`` and does the bookkeeping
around it: the NaN guard (:class:`~drifting_jax.training.rundir.StepGuard`), the progress
bar, ``metrics.jsonl`` records with ``steps_per_sec`` since the previous record, extra
events (in-training evaluation, sample grids) and checkpoints. Iteration ``it`` completes
step ``done = it + 1``; a step is *checked* when it logs (``done % log_every == 0`` or
``done == total``), checkpoints (``done % checkpoint_every == 0`` or ``done == total``),
has an event, or is the last of the loop (``done == end``). Only checked steps synchronize
with the host: between them asynchronous dispatch runs ahead, and the guard transfers the
pending steps' metrics in one go, raising ``FloatingPointError`` at the first non-finite
one before anything of that step is logged or saved.

At a checked step, in this order: the guard check (then ``on_check``), the host metrics,
the progress-bar postfix, the in-record events, the log record, the other events, the
checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drifting_jax.training import rundir

__all__ = ["Event", "LoopResult", "run_loop"]


@dataclasses.dataclass(frozen=True)
class Event:
  """A callback at chosen steps of the loop.

  Attributes:
    when: every that many steps (``done % when == 0``; 0 or None: never), or a predicate
      ``when(done) -> bool`` (pure Python: it runs every iteration, without a host sync).
    callback: ``callback(done, values)`` with the step's host metrics ``values``.
    in_record: the callback returns fields for the step's log record (written as its own
      ``{"step": done, **fields}`` record at a step that does not log); it runs before the
      record is written and its time is not counted in ``steps_per_sec``. Otherwise it runs
      after the record is written, before the checkpoint, and its return value is ignored.
  """

  when: int | None | Callable[[int], bool]
  callback: Callable[[int, dict[str, float]], Mapping[str, Any] | None]
  in_record: bool = False

  def due(self, done: int) -> bool:
    if callable(self.when):
      return bool(self.when(done))
    return bool(self.when) and done % self.when == 0


@dataclasses.dataclass
class LoopResult:
  """What :func:`run_loop` returns.

  Attributes:
    values: host metrics of the last checked step (``{}`` when the loop did not run).
    checked_step: the step ``values`` belong to (``start`` when the loop did not run).
    elapsed_s: wall time from the loop's start until the checkpoints were written.
    start: the first iteration of the loop.
  """

  values: dict[str, float]
  checked_step: int
  elapsed_s: float
  start: int = 0


def _default_record(done: int, values: dict[str, float], steps_per_sec: float,
                    elapsed_s: float) -> dict[str, Any]:
  del elapsed_s
  return {"step": done, **values, "steps_per_sec": steps_per_sec}


def run_loop(
    *,
    start: int,
    end: int,
    total: int,
    step: Callable[[int], Mapping[str, Any]],
    guard: rundir.StepGuard,
    log_every: int,
    manager: Any = None,
    log: Any = None,
    checkpoint_every: int = 0,
    save: Callable[[int], None] | None = None,
    events: Sequence[Event] = (),
    record: Callable[[int, dict[str, float], float, float], Mapping[str, Any]] | None = None,
    on_check: Callable[[list[int], list[dict[str, float]]], None] | None = None,
    progress: Any = None,
    postfix: Callable[[int, dict[str, float], float], Mapping[str, Any]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LoopResult:
  """Runs iterations ``start .. end - 1`` of a ``total``-step run with its bookkeeping.

  ``progress`` and ``manager`` belong to the loop from the call on: they are closed (the
  manager after waiting for its checkpoints) when it returns or raises. ``log`` stays open.
  Without ``log`` and ``save`` it is an in-memory loop (experiments): events only.

  Args:
    start: the first iteration (the restored step).
    end: one past the last iteration (``total``, or less to stop early as if killed).
    total: the run's step budget (the last step logs and checkpoints).
    step: ``step(it) -> metrics`` runs iteration ``it`` (the caller keeps the state) and
      returns its scalar metrics, device arrays left unsynchronized.
    guard: gets every step's metrics; checked (with ``manager``) at checked steps.
    log_every: log every that many steps (and at ``total``); without ``log`` these steps
      are only checked.
    manager: the orbax checkpoint manager (``wait_until_finished``, ``close``; see
      :func:`rundir.check_finite` for what the guard's message reads from it), or None.
    log: the metrics log (``log.write(record)``), or None.
    checkpoint_every: ``save(done)`` every that many steps (0: never) and at ``total``.
    save: writes the checkpoint of step ``done`` from the caller's state (None: no
      checkpoints).
    events: extra callbacks (:class:`Event`).
    record: ``record(done, values, steps_per_sec, elapsed_s) -> record`` builds a log
      record (default ``{"step": done, **values, "steps_per_sec": ...}``); in-record event
      fields are appended to it. ``steps_per_sec`` counts the steps since the previous
      record (or the start), ``elapsed_s`` the time since the loop's start.
    on_check: ``on_check(its, checked)`` after each passed guard check: the iterations
      checked and the guard's host values of each.
    progress: a tqdm-like bar (``update``, ``set_postfix``, ``close``), or None.
    postfix: ``postfix(done, values, rate) -> fields`` for the bar at checked steps;
      ``rate`` is the steps per second since the loop's start.
    clock: the time source (seconds).

  Returns:
    A :class:`LoopResult`.

  Raises:
    FloatingPointError: from ``guard`` at the first non-finite step; nothing of that step
      or later is logged or saved.
  """
  record = record or _default_record
  t0 = clock()
  t_last, s_last = t0, start
  values: dict[str, float] = {}
  checked_step = start
  pending: list[int] = []
  with contextlib.ExitStack() as cleanup:
    if manager is not None:
      cleanup.callback(manager.close)
      cleanup.callback(manager.wait_until_finished)
    if progress is not None:
      cleanup.callback(progress.close)
    for it in range(start, end):
      metrics = step(it)
      guard.add(it, metrics)  # no host sync here: asynchronous dispatch runs ahead
      pending.append(it)
      done = it + 1
      if progress is not None:
        progress.update(1)
      log_now = done % log_every == 0 or done == total
      ckpt_now = save is not None and (
          bool(checkpoint_every) and done % checkpoint_every == 0 or done == total)
      due = [e for e in events if e.due(done)]
      if not (log_now or ckpt_now or due or done == end):
        continue
      checked = guard.check(manager)  # raises on the first non-finite step since the last
      if on_check is not None:
        on_check(pending, checked)
      pending = []
      values = {k: float(v) for k, v in metrics.items()}
      checked_step = done
      if progress is not None and postfix is not None:
        progress.set_postfix(**postfix(done, values, (done - start) / max(clock() - t0, 1e-9)))
      now = clock()
      fields: dict[str, Any] = {}
      for e in due:
        if e.in_record:
          fields.update(e.callback(done, values) or {})
      if log_now and log is not None:
        log.write({**record(done, values, (done - s_last) / max(now - t_last, 1e-9),
                            now - t0), **fields})
        t_last, s_last = clock(), done
      elif fields and log is not None:
        log.write({"step": done, **fields})
      for e in due:
        if not e.in_record:
          e.callback(done, values)
      if ckpt_now:
        save(done)
  return LoopResult(values=values, checked_step=checked_step, elapsed_s=clock() - t0,
                    start=start)
