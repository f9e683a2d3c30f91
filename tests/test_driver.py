"""The shared loop skeleton `training.driver.run_loop` with a fake step, manager and log.

Pure Python metrics: `Lazy` scalars record the step the loop is at whenever they are
converted to floats (a host sync for a device array), so the tests see exactly where the
loop synchronizes.
"""

import math

import numpy as np
import pytest

from drifting_jax.training import driver, rundir


class Lazy:
  """A 'device' scalar whose host conversions are recorded with the loop's current step."""

  def __init__(self, value, harness):
    self.value, self.h = value, harness

  def __float__(self):
    self.h.syncs.append(self.h.done)
    return float(self.value)


class FakeManager:
  directory = "/fake/checkpoints"

  def __init__(self):
    self.saved, self.waits, self.closed = [], 0, False

  def latest_step(self):
    return self.saved[-1] if self.saved else None

  def wait_until_finished(self):
    self.waits += 1

  def close(self):
    self.closed = True


class FakeLog:
  def __init__(self):
    self.records = []

  def write(self, record):
    self.records.append(dict(record))


class FakeBar:
  def __init__(self):
    self.updates, self.postfixes, self.closed = 0, [], False

  def update(self, n):
    self.updates += n

  def set_postfix(self, **kw):
    self.postfixes.append(kw)

  def close(self):
    self.closed = True


class Harness:
  """A fake run: iteration `it` has loss `it` (NaN at `bad`) and takes one second."""

  def __init__(self, bad=()):
    self.bad, self.done, self.now = set(bad), None, 0.0
    self.syncs, self.checks, self.checked_its = [], [], []
    self.manager, self.log, self.bar = FakeManager(), FakeLog(), FakeBar()
    harness = self

    class Guard(rundir.StepGuard):
      def check(self, manager=None):
        harness.checks.append(harness.done)
        return super().check(manager)

    self.guard = Guard(("loss", "grad_norm"))

  def step(self, it):
    self.done, self.now = it + 1, self.now + 1.0
    loss = math.nan if it in self.bad else float(it)
    return {"loss": Lazy(loss, self), "grad_norm": Lazy(1.0, self)}

  def run(self, *, start=0, end=10, total=10, log_every=4, checkpoint_every=6, **kw):
    self.now = float(start)
    return driver.run_loop(start=start, end=end, total=total, step=self.step,
                           guard=self.guard, manager=self.manager, log=self.log,
                           log_every=log_every, checkpoint_every=checkpoint_every,
                           save=self.manager.saved.append, progress=self.bar,
                           on_check=lambda its, vals: self.checked_its.extend(its),
                           clock=lambda: self.now, **kw)


def test_records_checkpoints_events_and_sync_points():
  h, seen = Harness(), []
  events = [driver.Event(5, lambda done, v: {"ev": done}, in_record=True),
            driver.Event(lambda done: done == 7, lambda done, v: seen.append((done, v)))]
  out = h.run(events=events,
              postfix=lambda done, v, rate: {"loss": f"{v['loss']:.1f}", "rate": rate})
  checked = [4, 5, 6, 7, 8, 10]  # log 4, 8, 10; events 5, 7, 10; checkpoints 6, 10
  assert h.checks == checked
  assert sorted(set(h.syncs)) == checked  # host values only at checked steps
  assert h.checked_its == list(range(10))  # every iteration checked once
  recs = h.log.records
  assert [r["step"] for r in recs] == [4, 5, 8, 10]
  assert recs[0] == {"step": 4, "loss": 3.0, "grad_norm": 1.0, "steps_per_sec": 1.0}
  assert list(recs[0]) == ["step", "loss", "grad_norm", "steps_per_sec"]
  assert recs[1] == {"step": 5, "ev": 5}  # an in-record event at a step that does not log
  assert recs[3] == {"step": 10, "loss": 9.0, "grad_norm": 1.0, "steps_per_sec": 1.0,
                     "ev": 10}
  assert seen == [(7, {"loss": 6.0, "grad_norm": 1.0})]
  assert h.manager.saved == [6, 10]
  assert h.bar.updates == 10 and h.bar.closed
  assert [p["loss"] for p in h.bar.postfixes] == ["3.0", "4.0", "5.0", "6.0", "7.0", "9.0"]
  assert h.bar.postfixes[0]["rate"] == 1.0
  assert h.manager.closed and h.manager.waits == 1
  assert out.values == {"loss": 9.0, "grad_norm": 1.0} and out.checked_step == 10
  assert out.elapsed_s == 10.0


def test_resume_stop_early_and_custom_record():
  h = Harness()
  out = h.run(start=3, end=9, total=20, log_every=5, checkpoint_every=7,
              record=lambda done, v, sps, el: {"step": done, "sps": sps, "el": el})
  # resumed at 3; stops after done 9 (as if killed): checked there, but no record / save
  assert h.checks == [5, 7, 9] and sorted(set(h.syncs)) == [5, 7, 9]
  assert h.log.records == [{"step": 5, "sps": 1.0, "el": 2.0}]
  assert h.manager.saved == [7]
  assert out.checked_step == 9 and out.values["loss"] == 8.0
  assert h.checked_its == list(range(3, 9))


def test_steps_per_sec_since_the_previous_record():
  h = Harness()
  slow = [driver.Event(4, lambda done, v: setattr(h, "now", h.now + 10.0), in_record=True)]
  h.run(end=8, total=8, log_every=4, checkpoint_every=100, events=slow)
  # the in-record event's 10 s count in neither record: 4 steps in 4 s both times
  assert [r["steps_per_sec"] for r in h.log.records] == [1.0, 1.0]


def test_loop_that_does_not_run():
  h = Harness()
  out = h.run(start=10, end=10)
  assert out.values == {} and out.checked_step == 10 and h.checks == []
  assert h.log.records == [] and h.manager.saved == [] and h.manager.closed and h.bar.closed


@pytest.mark.parametrize("bad, where", [((5, 7), 5), ((4, 7), 4)])
def test_nan_raises_at_first_bad_step_and_saves_nothing_after(bad, where):
  # iteration 5 ends at the checked step 6; iteration 4 at the unchecked step 5: both are
  # found at the check of step 6, named by the first bad iteration
  h = Harness(bad=bad)
  with pytest.raises(FloatingPointError,
                     match=rf"loss=nan at step {where};.*step 4 in /fake/checkpoints"):
    h.run(checkpoint_every=2, log_every=4)
  assert h.checks == [2, 4, 6]
  assert h.manager.saved == [2, 4]  # nothing saved at or after the bad step
  assert [r["step"] for r in h.log.records] == [4]
  assert h.manager.closed and h.manager.waits >= 1 and h.bar.closed


def test_numpy_metrics_and_step_errors_close_everything():
  manager, bar = FakeManager(), FakeBar()

  def step(it):
    if it == 3:
      raise KeyboardInterrupt
    return {"loss": np.float32(it)}

  with pytest.raises(KeyboardInterrupt):
    driver.run_loop(start=0, end=10, total=10, step=step, guard=rundir.StepGuard(("loss",)),
                    manager=manager, log=FakeLog(), log_every=1, checkpoint_every=2,
                    save=manager.saved.append, progress=bar)
  assert manager.saved == [2] and manager.closed and manager.waits == 1 and bar.closed


def test_in_memory_loop_without_log_manager_or_checkpoints():
  seen = []
  out = driver.run_loop(start=0, end=5, total=5, step=lambda it: {"loss": float(it)},
                        guard=rundir.StepGuard(("loss",)), log_every=1,
                        events=[driver.Event(2, lambda done, v: seen.append(done))])
  assert seen == [2, 4] and out.values == {"loss": 4.0} and out.checked_step == 5
