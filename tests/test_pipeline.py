"""The one training pipeline, for every task: exact resume after a kill, one writer per run
directory, corrupt-checkpoint fallback, trimmed logs, amendments and refused resumes,
``force_new``, the NaN guard, in-memory runs with hooks, the compiled-step cache, and run
directories written by earlier versions.

Each test runs on the toy task, on the class-conditional image task (tiny digits runs with
CFG and a memory bank, so the bank travels through checkpoints too) and on the encoder
pre-training task.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from drifting_jax import objectives
from drifting_jax.data.images import load_digits
from drifting_jax.training import (EncoderConfig, Hook, ImageConfig, ToyConfig, build_objective,
                                   config_to_dict, load_run, make_task, rundir, sample_run,
                                   train)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("toy", "images", "encoder")


def toy_cfg(**kw) -> ToyConfig:
  base = dict(num_steps=8, batch_size=64, hidden=32, log_every=1, checkpoint_every=3,
              max_to_keep=5, eval_num_samples=128, eval_num_projections=10, progress=False,
              warmup_steps=2)
  base.update(kw)
  return ToyConfig(**base)


def image_cfg(**kw) -> ImageConfig:
  base = dict(dataset="digits", model="digits_small_cpu",
              model_overrides={"latent": 32, "num_upsamples": 0, "cfg_embed": True},
              objective="drifting-laplace", bandwidth=0.1,
              objective_kwargs={"official": True, "temperatures": (0.05, 0.2)}, guidance=True,
              num_uncond=3, memory_bank=True, bank_pos_size=10, bank_neg_size=20, bank_push=5,
              num_classes_per_step=2, num_pos=8, num_gen=6, norm_warmup=2, num_steps=6,
              warmup_steps=2, learning_rate=3e-3, ema_decay=0.9, log_every=1,
              checkpoint_every=3, sample_every=0, samples_per_class=1, max_to_keep=5,
              progress=False, compiler_options={"xla_backend_optimization_level": 0})
  base.update(kw)
  return ImageConfig(**base)


def encoder_cfg(**kw) -> EncoderConfig:
  base = dict(dataset="digits", encoder="mae_mnist_cpu",
              encoder_overrides={"widths": (4, 8), "blocks": (1, 1)}, batch_size=16,
              num_steps=8, warmup_steps=2, log_every=1, checkpoint_every=3, max_to_keep=5,
              eval_num=0, progress=False)
  base.update(kw)
  return EncoderConfig(**base)


@pytest.fixture(scope="module")
def digits():
  return load_digits()


@pytest.fixture(params=TASKS)
def setup(request, digits):
  """``(make_cfg, run)``: a tiny config factory and ``run(cfg, workdir, **kw)`` training it
  on the task's data; both tasks have 8 iterations with checkpoints every 3."""
  make = {"toy": toy_cfg, "images": image_cfg, "encoder": encoder_cfg}[request.param]
  extra = {} if request.param == "toy" else {"dataset": digits}

  def run(cfg, workdir, **kw):
    return train(cfg, workdir, **extra, **kw)

  return make, run


def _steps(workdir) -> list[int]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f if line.strip()]


def _corrupt(step_dir: pathlib.Path) -> None:
  """Truncates every file of a checkpoint to half its size (a crash mid-write)."""
  for f in step_dir.rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)


def test_killed_run_resumes_bit_exactly(tmp_path, setup):
  make, run = setup
  full = run(make(), tmp_path / "full")
  # "Kill" after iteration 7 of 8: checkpoints exist at 3 and 6, iteration 7 is lost.
  partial = run(make(), tmp_path / "split", until=7)
  assert partial.metrics["step"] == 7
  assert sorted(os.listdir(tmp_path / "split" / "checkpoints")) == ["3", "6"]
  assert not os.path.exists(tmp_path / "split" / "metrics.json")
  resumed = run(make(), tmp_path / "split")
  assert int(resumed.state.step) == int(full.state.step) == 8
  chex.assert_trees_all_equal(full.state, resumed.state)  # params, optimizer, EMA, bank, ...
  cfg, state = load_run(tmp_path / "split")
  assert config_to_dict(cfg) == config_to_dict(make())  # JSON: tuples read back as lists
  chex.assert_trees_all_equal(full.state, state)
  # one record per iteration, without duplicates from the lost iteration, equal values
  assert _steps(tmp_path / "split") == list(range(1, 9))
  losses = lambda d: [json.loads(l).get("loss", 0) for l in open(tmp_path / d / "metrics.jsonl")]
  np.testing.assert_array_equal(losses("split"), losses("full"))


def test_second_trainer_is_refused_with_the_holders_pid(tmp_path, setup):
  make, run = setup
  with rundir.RunLock(tmp_path):
    with pytest.raises(rundir.RunDirLocked, match=f"pid {os.getpid()}"):
      run(make(), tmp_path)
  run(make(num_steps=1), tmp_path)  # released: the next session trains


def _said(caught, *patterns):
  messages = [str(w.message) for w in caught]
  for pattern in patterns:
    assert any(re.search(pattern, m) for m in messages), (pattern, messages)


def test_corrupt_newest_checkpoint_falls_back(tmp_path, setup):
  make, run = setup
  first = run(make(), tmp_path)
  _corrupt(tmp_path / "checkpoints" / "8")
  # pytest.warns without `match` takes every RuntimeWarning (none leaks into the summary)
  with pytest.warns(RuntimeWarning) as caught:
    assert int(load_run(tmp_path)[1].step) == 6
  _said(caught, r"checkpoints/8 does not restore", r"newest good checkpoint, step 6")
  with pytest.raises(ValueError, match="checkpoints/8"):  # an explicit step is not replaced
    load_run(tmp_path / "checkpoints" / "8")
  with pytest.warns(RuntimeWarning) as caught:
    sample_run(tmp_path, num=2, out=tmp_path / "s.png")
  _said(caught, r"checkpoints/8 does not restore")
  with pytest.warns(RuntimeWarning) as caught:
    again = run(make(), tmp_path)  # resumes from 6, redoes 7 and 8
  _said(caught, r"moved the checkpoint")
  assert int(again.state.step) == 8 and _steps(tmp_path) == list(range(1, 9))
  chex.assert_trees_all_equal(first.state, again.state)  # deterministic from 6
  assert len(os.listdir(tmp_path / "corrupt-checkpoints")) == 1


def test_log_is_trimmed_to_the_restored_step(tmp_path, setup):
  # A crash after the step-8 log record but before the step-8 checkpoint: emulated by
  # removing the checkpoint. Resuming from step 6 must not leave steps 7 and 8 twice.
  make, run = setup
  run(make(), tmp_path)
  shutil.rmtree(tmp_path / "checkpoints" / "8")
  run(make(), tmp_path)
  assert _steps(tmp_path) == list(range(1, 9))


def test_amendments_refusals_and_force_new(tmp_path, setup):
  make, run = setup
  run(make(num_steps=4), tmp_path)
  changed = {"toy": ("hidden", 32, 64), "images": ("num_gen", 6, 4),
             "encoder": ("batch_size", 16, 8)}[make().task]
  field, old, new = changed
  with pytest.raises(rundir.ConfigMismatch,
                     match=rf"{field}: {old} -> {new}[\s\S]*--set {field}={old}"):
    run(make(num_steps=4, **{field: new}), tmp_path)
  run(make(num_steps=6, log_every=2), tmp_path)  # a longer budget, other cadence: amendments
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["num_steps"] == 4  # the record of how the run began
  assert rundir.load_config_record(tmp_path)["num_steps"] == 6
  with open(tmp_path / "config_amendments.jsonl") as f:
    amend = [json.loads(line) for line in f]
  assert amend[-1]["changes"] == {"num_steps": {"old": 4, "new": 6},
                                  "log_every": {"old": 1, "new": 2}}
  # force_new: the old run is moved aside and a new one starts
  run(make(num_steps=2, **{field: new}), tmp_path, force_new=True)
  assert rundir.load_config_record(tmp_path)[field] == new
  moved = [p for p in tmp_path.iterdir() if p.name.startswith("replaced-")]
  assert len(moved) == 1 and (moved[0] / "config.json").exists()
  assert (moved[0] / "checkpoints").is_dir() and not (tmp_path / "config_amendments.jsonl").exists()


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, setup):
  make, run = setup
  if make().task == "encoder":
    pytest.skip("the encoder task has no objective to poison (its loss is fixed)")
  cfg = make(objective="naive-gauss", objective_kwargs={}, bandwidth=0.2,
             **({} if make().task == "toy" else dict(
                 guidance=False, memory_bank=False, norm_warmup=0,
                 model_overrides={"latent": 32, "num_upsamples": 0})))
  base = build_objective(cfg)

  def poisoned(x, pos, step):  # optimizer step 4 (iteration 4: no warm-up) yields NaN
    loss, metrics = base(x, pos, step)
    return jnp.where(step >= 4, jnp.nan, loss), metrics

  where = "step 4" if cfg.task == "toy" else r"iteration 4 \(optimizer step 4\)"
  unit = "step" if cfg.task == "toy" else "iteration"
  with pytest.raises(FloatingPointError,
                     match=rf"loss=nan at {where}.*Last good checkpoint: {unit} 3"):
    run(cfg, tmp_path, objective=poisoned)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
  _, state = load_run(tmp_path)
  assert int(state.step) == 3
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  assert _steps(tmp_path) == [1, 2, 3, 4]  # iteration 4 completes step 5: not logged


def test_in_memory_run_with_hooks_equals_the_run_directory_one(tmp_path, setup):
  make, run = setup
  seen = []
  hook = Hook(2, lambda done, state, values: seen.append(
      (done, int(state.step), values.get("loss"))) or {"hooked": done}, in_record=True)
  on_disk = run(make(), tmp_path, hooks=[hook])
  assert [d for d, _, _ in seen] == [2, 4, 6, 8] and all(d == s for d, s, _ in seen)
  assert [json.loads(l).get("hooked") for l in open(tmp_path / "metrics.jsonl")][1] == 2
  memory = run(make(), None)
  assert memory.workdir is None
  chex.assert_trees_all_equal(on_disk.state, memory.state)


def test_compiled_step_is_shared_by_runs_that_differ_in_bookkeeping(tmp_path, setup):
  make, run = setup
  task = make_task(make(), load_data=False)
  same = make_task(make(log_every=2, checkpoint_every=4, max_to_keep=1), load_data=False)
  assert same.step_key() == task.step_key()
  # the learning-rate horizon of a cosine schedule is part of the step, a constant's is not
  assert make_task(make(num_steps=9), load_data=False).step_key() != task.step_key()
  constant = dict(lr_schedule="constant")
  assert (make_task(make(num_steps=9, **constant), load_data=False).step_key()
          == make_task(make(**constant), load_data=False).step_key())
  assert make_task(make(learning_rate=0.5), load_data=False).step_key() != task.step_key()
  if make().task != "encoder":  # (the encoder task takes no objective)
    assert make_task(make(), objective=build_objective(make()),
                     load_data=False).step_key() is None  # a user objective: not cached


def test_toy_run_of_an_earlier_version_resumes(tmp_path):
  """A toy run directory written before v0.3 (no `task` in config.json, the state at the top
  of the checkpoint tree) resumes and continues the run exactly."""
  cfg = toy_cfg()
  full = train(cfg, tmp_path / "full")
  half = train(cfg, tmp_path / "new", until=6)
  old = tmp_path / "old"
  (old / "checkpoints").mkdir(parents=True)
  record = {k: v for k, v in config_to_dict(cfg).items()
            if k not in ("task", "optimizer", "b1", "b2", "eps", "weight_decay")}
  (old / "config.json").write_text(json.dumps(record))
  st = half.state
  manager = ocp.CheckpointManager(str(old / "checkpoints"))
  manager.save(6, args=ocp.args.StandardSave(
      {"params": st.params, "opt_state": st.opt_state, "step": st.step, "rng": st.rng}))
  manager.wait_until_finished()
  manager.close()
  resumed = train(cfg, old)
  chex.assert_trees_all_equal(full.state, resumed.state)
  assert not (old / "config_amendments.jsonl").exists()  # same run: nothing amended


def test_sigkill_then_resume_leaves_a_consistent_log(tmp_path):
  cfg = toy_cfg(num_steps=4000, checkpoint_every=40, log_every=10, batch_size=128)
  script = (f"from drifting_jax.training import train, config_from_dict\n"
            f"import json; train(config_from_dict(json.loads("
            f"{json.dumps(json.dumps(config_to_dict(cfg)))})), {str(tmp_path)!r})\n")
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
  train(toy_cfg(num_steps=killed_at + 30, checkpoint_every=40, log_every=10, batch_size=128),
        tmp_path)
  steps = _steps(tmp_path)
  assert steps == sorted(set(steps)) and steps[-1] == killed_at + 30  # no duplicates


def test_metrics_log_skips_a_record_cut_by_a_crash(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n{"step": 15, "lo')
  with rundir.MetricsLog(path, resume_step=10) as log:
    log.write({"step": 15, "loss": 0.25})
  assert _steps(tmp_path) == [5, 10, 15]


def test_deprecated_names_still_work_and_warn(tmp_path, digits):
  import drifting_jax.training as T
  cfg = image_cfg(num_steps=1, norm_warmup=1)
  with pytest.warns(DeprecationWarning, match="train_images is deprecated.*train"):
    metrics = T.train_images(cfg, tmp_path, dataset=digits)
  assert metrics["step"] == 2
  with pytest.warns(DeprecationWarning, match="sample_images"):
    T.sample_images(tmp_path, num=3, out_path=tmp_path / "s.png")
  assert (tmp_path / "s.npz").exists()
  with pytest.warns(DeprecationWarning, match="load_image_run"):
    task, state, it = T.load_image_run(tmp_path)
  assert it == 2 and task.cfg.num_steps == 1
  with pytest.warns(DeprecationWarning, match="build"):
    toy = T.build(toy_cfg())
  with pytest.warns(DeprecationWarning, match="init_state"):
    chex.assert_trees_all_equal(T.init_state(toy_cfg()), toy.init_state())


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  """A checkpoint write that fails (simulated: ENOSPC from orbax at step 6) stops training with
  an error naming the checkpoint that survives; the same command later resumes from it."""
  import errno

  from drifting_jax.training.checkpoint import CheckpointWriteError
  real_save = ocp.CheckpointManager.save

  def full_disk(self, step, *args, **kwargs):
    if int(step) == 6:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  reference = train(toy_cfg(), tmp_path / "ref")
  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  with pytest.raises(CheckpointWriteError, match=r"checkpoint of step 6 could not be written "
                     r".*No space left on device.*the checkpoint of step 3 is intact") as info:
    train(toy_cfg(), tmp_path / "run")
  assert info.value.errno == errno.ENOSPC
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["3"]
  assert int(load_run(tmp_path / "run")[1].step) == 3
  monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)  # space freed
  resumed = train(toy_cfg(), tmp_path / "run")
  chex.assert_trees_all_equal(resumed.state, reference.state)
