"""The toy task: learning signal, its files, the learning-rate horizon, config handling (the
pipeline's resume / lock / guard tests are in test_pipeline.py)."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from drifting_jax.training import (ToyConfig, ToyTask, apply_overrides, evaluate, load_config,
                                   load_run, train)

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs")


def tiny(**kw):
  # constant learning rate: the resume test changes num_steps between the two sessions,
  # which would change a cosine schedule's horizon
  base = dict(num_steps=20, batch_size=128, hidden=64, log_every=5, checkpoint_every=10,
              eval_num_samples=512, eval_num_projections=50, progress=False,
              lr_schedule="constant", warmup_steps=0)
  base.update(kw)
  return ToyConfig(**base)


def test_training_decreases_sliced_wasserstein(tmp_path):
  cfg = tiny(num_steps=60, learning_rate=3e-3, checkpoint_every=60, bandwidth=0.1)
  init = ToyTask(cfg).init_state()
  sw0 = evaluate(cfg, init.params)["sliced_wasserstein"]
  result = train(cfg, tmp_path)
  assert result.metrics["sliced_wasserstein"] < 0.7 * sw0, (sw0, result.metrics)
  for name in ("config.json", "metrics.json", "metrics.jsonl", "samples.png"):
    assert os.path.isfile(tmp_path / name)
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in records] == list(range(5, 61, 5))
  assert {"loss", "grad_norm", "drift_norm", "bandwidth", "steps_per_sec"} <= set(records[0])
  saved = json.load(open(tmp_path / "metrics.json"))
  assert saved["sliced_wasserstein"] == pytest.approx(result.metrics["sliced_wasserstein"])


def test_cosine_schedule_horizon_is_the_runs_num_steps(tmp_path):
  # The compiled step is cached across runs; with a cosine schedule num_steps is its decay
  # horizon, so the last update of a 12-step run is ~1% of its first full-rate update
  # (lr(10) = 0.5 (1 + cos(pi 10 / 11)) lr_max ~ 0.01 lr_max), whatever ran before.
  cfg = tiny(num_steps=12, lr_schedule="cosine", warmup_steps=1, checkpoint_every=1,
             max_to_keep=12)
  train(cfg, tmp_path)

  def update(step):
    _, before = load_run(tmp_path / "checkpoints" / str(step - 1))
    _, after = load_run(tmp_path / "checkpoints" / str(step))
    return max(jax.tree.leaves(jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), after.params,
        before.params)))

  assert update(12) < 0.05 * update(2)


@pytest.mark.parametrize("override,field", [
    ("batch_size=1", "batch_size"), ("data_batch_size=1", "data_batch_size"),
    ("bandwidth=0", "bandwidth"), ("bandwidth=-0.5", "bandwidth"),
    ("learning_rate=0", "learning_rate"), ("dataset=moons", "dataset"),
    ("objective=naive-cauchy", "objective"), ("num_steps=-1", "num_steps"),
    ("schedule=sawtooth", "name"),
])
def test_bad_config_raises_naming_field(override, field):
  cfg = apply_overrides(tiny(), [override])
  with pytest.raises(ValueError, match=field):
    ToyTask(cfg)


def test_apply_overrides():
  cfg = apply_overrides(ToyConfig(), [
      "bandwidth=0.2", "stop_gradient=false", "num_steps=10", "grad_clip=1",
      "objective_kwargs.alpha=0.01", "dataset_kwargs={'noise': 0.05}", "schedule=none",
      "objective=sinkhorn"])
  assert cfg.bandwidth == 0.2 and cfg.stop_gradient is False and cfg.num_steps == 10
  assert cfg.grad_clip == 1.0 and cfg.objective_kwargs == {"alpha": 0.01}
  assert cfg.dataset_kwargs == {"noise": 0.05} and cfg.schedule is None
  assert cfg.objective == "sinkhorn"
  assert ToyConfig().objective_kwargs == {}  # defaults untouched
  with pytest.raises(ValueError, match="unknown config field"):
    apply_overrides(cfg, ["bandwith=0.1"])
  with pytest.raises(ValueError, match="num_steps"):
    apply_overrides(cfg, ["num_steps=ten"])
  with pytest.raises(ValueError, match="key=value"):
    apply_overrides(cfg, ["num_steps"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIG_DIR, "toy_*.py"))))
def test_config_files_build(path):
  cfg = load_config(path)
  task = ToyTask(cfg)
  assert callable(task.objective)
  if os.path.basename(path) == "toy_default.py":
    assert cfg == ToyConfig()
