"""Run directories cannot be corrupted: one writer, checkpoint fallback, trimmed logs,
refused incompatible resumes (drifting_jax.training.rundir / checkpoint)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import chex
import pytest

from drifting_jax.training import (ToyConfig, config_to_dict, load_run, rundir, train)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny(**kw):
  base = dict(num_steps=20, batch_size=128, hidden=32, log_every=5, checkpoint_every=10,
              max_to_keep=3, eval_num_samples=256, eval_num_projections=20, progress=False,
              lr_schedule="constant", warmup_steps=0)
  base.update(kw)
  return ToyConfig(**base)


def _steps(workdir) -> list[int]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f if line.strip()]


def _corrupt(step_dir: pathlib.Path) -> None:
  """Truncates every file of a checkpoint to half its size (a crash mid-write)."""
  for f in step_dir.rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)


def test_second_trainer_is_refused_with_the_holders_pid(tmp_path):
  with rundir.RunLock(tmp_path):
    with pytest.raises(rundir.RunDirLocked, match=f"pid {os.getpid()}"):
      train(tiny(), tmp_path)
  train(tiny(num_steps=5), tmp_path)  # released: the next session trains


def test_corrupt_newest_checkpoint_falls_back_for_train_and_load(tmp_path):
  train(tiny(), tmp_path)
  want = load_run(tmp_path)[1]
  _corrupt(tmp_path / "checkpoints" / "20")
  with pytest.warns(RuntimeWarning, match=r"checkpoints/20 does not restore"):
    _, state = load_run(tmp_path)
  assert int(state.step) == 10
  with pytest.raises(ValueError, match="checkpoints/20"):  # an explicit step is not replaced
    load_run(tmp_path / "checkpoints" / "20")
  with pytest.warns(RuntimeWarning, match="falling back"):
    train(tiny(), tmp_path)  # resumes from step 10 and redoes 11..20
  assert _steps(tmp_path) == [5, 10, 15, 20]
  got = load_run(tmp_path)[1]
  chex.assert_trees_all_close(got.params, want.params, rtol=1e-6)  # deterministic from 10


def test_log_is_trimmed_to_the_restored_step(tmp_path):
  # A crash after the step-20 log record but before the step-20 checkpoint: emulated by
  # removing the checkpoint. Resuming from step 10 must not leave steps 15 and 20 twice.
  train(tiny(), tmp_path)
  import shutil
  shutil.rmtree(tmp_path / "checkpoints" / "20")
  train(tiny(), tmp_path)
  assert _steps(tmp_path) == [5, 10, 15, 20]


def test_sigkill_then_resume_leaves_a_consistent_log(tmp_path):
  cfg = tiny(num_steps=4000, checkpoint_every=40, log_every=10)
  script = (f"from drifting_jax.training import ToyConfig, train, config_from_dict\n"
            f"import json; train(config_from_dict(json.loads({json.dumps(json.dumps(config_to_dict(cfg)))})), "
            f"{str(tmp_path)!r})\n")
  proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  log = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and (not log.exists() or len(_steps(tmp_path)) < 9):
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = _steps(tmp_path)[-1]
  assert killed_at >= 90
  train(tiny(num_steps=killed_at + 30, checkpoint_every=40, log_every=10), tmp_path)
  steps = _steps(tmp_path)
  assert steps == sorted(set(steps)) and steps[-1] == killed_at + 30  # no duplicates


def test_changed_model_refuses_changed_budget_is_an_amendment(tmp_path):
  train(tiny(num_steps=10), tmp_path)
  with pytest.raises(rundir.ConfigMismatch, match=r"hidden: 32 -> 64[\s\S]*--set hidden=32"):
    train(tiny(num_steps=10, hidden=64), tmp_path)
  train(tiny(num_steps=15), tmp_path)  # a longer budget: allowed, recorded
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["num_steps"] == 10  # the record of how the run began
  assert rundir.load_config_record(tmp_path)["num_steps"] == 15
  with open(tmp_path / "config_amendments.jsonl") as f:
    amend = [json.loads(line) for line in f]
  assert amend[-1]["changes"] == {"num_steps": {"old": 10, "new": 15}}
  assert amend[-1]["step"] == 10
  # --force-new: the old run is moved aside and a new one starts
  train(tiny(num_steps=5, hidden=64), tmp_path, force_new=True)
  assert rundir.load_config_record(tmp_path)["hidden"] == 64
  moved = [p for p in tmp_path.iterdir() if p.name.startswith("replaced-")]
  assert len(moved) == 1 and (moved[0] / "config.json").exists()


def test_metrics_log_skips_a_record_cut_by_a_crash(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n{"step": 15, "lo')
  with rundir.MetricsLog(path, resume_step=10) as log:
    log.write({"step": 15, "loss": 0.25})
  assert _steps(tmp_path) == [5, 10, 15]
