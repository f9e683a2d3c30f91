"""Image runs: exact resume after a simulated kill, and the NaN guard.

The resumed run must end with *exactly* the parameters (and EMA, optimizer, kernel-width,
memory-bank state) of the uninterrupted one: data and noise are pure functions of the
iteration, and everything else is in the checkpoint.
"""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax import objectives
from drifting_jax.data.images import load_digits
from drifting_jax.training.image_loop import _train_images_until, load_image_run, train_images
from drifting_jax.training.images import ImageConfig


def cfg(**kw) -> ImageConfig:
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


@pytest.fixture(scope="module")
def digits():
  return load_digits()


def test_killed_run_resumes_exactly(tmp_path, digits):
  full = train_images(cfg(), tmp_path / "full", dataset=digits)
  # "Kill" after iteration 7 of 8: checkpoints exist at 3 and 6, iteration 7 is lost.
  partial = _train_images_until(cfg(), tmp_path / "split", 7, dataset=digits)
  assert partial["step"] == 7
  assert sorted(os.listdir(tmp_path / "split" / "checkpoints")) == ["3", "6"]
  assert not os.path.exists(tmp_path / "split" / "metrics.json")
  resumed = train_images(cfg(), tmp_path / "split", dataset=digits)
  assert resumed["step"] == full["step"] == 8
  assert resumed["loss"] == full["loss"]

  _, a, it_a = load_image_run(tmp_path / "full")
  _, b, it_b = load_image_run(tmp_path / "split")
  assert it_a == it_b == 8
  for name in ("params", "ema_params", "opt_state", "norm", "rng", "step"):
    chex.assert_trees_all_equal(getattr(a, name), getattr(b, name))
  # The memory bank travels with the checkpoint too.
  from drifting_jax.training.image_loop import _manager, _restore, build_image_run
  run = build_image_run(cfg(), dataset=digits)
  template = run.init()
  banks = []
  for d in ("full", "split"):
    m = _manager(str(tmp_path / d / "checkpoints"), 5)
    banks.append(_restore(m, *template)[1])
    m.close()
  chex.assert_trees_all_equal(banks[0], banks[1])
  assert int(banks[0].neg_ptr) == (20 + 8 * 5) % 20 and int(banks[0].pos_ptr.sum()) > 0
  # The log has one record per iteration, without duplicates from the lost iteration.
  steps = [json.loads(l)["step"] for l in open(tmp_path / "split" / "metrics.jsonl")]
  assert steps == list(range(1, 9))
  np.testing.assert_array_equal(
      [json.loads(l).get("loss", 0) for l in open(tmp_path / "split" / "metrics.jsonl")],
      [json.loads(l).get("loss", 0) for l in open(tmp_path / "full" / "metrics.jsonl")])


def test_nan_stops_run_and_keeps_last_good_checkpoint(tmp_path, digits):
  base = objectives.make_objective("naive-gauss", bandwidth=0.2)

  def poisoned(x, pos, step):  # optimizer step 3 (iteration 3 with no warm-up) yields NaN
    loss, metrics = base(x, pos, step)
    return jnp.where(step >= 3, jnp.nan, loss), metrics

  c = cfg(objective="naive-gauss", objective_kwargs={}, guidance=False, memory_bank=False,
          model_overrides={"latent": 32, "num_upsamples": 0}, norm_warmup=0,
          checkpoint_every=2, log_every=1)
  with pytest.raises(FloatingPointError, match=r"loss=nan at iteration 3 \(optimizer step 3\)"
                     r".*Last good checkpoint: iteration 2"):
    train_images(c, tmp_path, dataset=digits, objective=poisoned)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  _, state, it = load_image_run(tmp_path)
  assert it == 2 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [1, 2, 3]


def test_corrupt_newest_checkpoint_and_changed_config(tmp_path, digits):
  from test_run_safety import _corrupt  # noqa: PLC0415
  from drifting_jax.training import rundir
  from drifting_jax.training.image_loop import sample_images
  train_images(cfg(), tmp_path, dataset=digits)
  _corrupt(tmp_path / "checkpoints" / "8")
  with pytest.warns(RuntimeWarning, match="checkpoints/8 does not restore"):
    assert load_image_run(tmp_path)[2] == 6
  with pytest.warns(RuntimeWarning, match="checkpoints/8 does not restore"):
    sample_images(tmp_path, num=2, out_path=tmp_path / "s.png")
  with pytest.warns(RuntimeWarning, match="moved the checkpoint"):
    out = train_images(cfg(), tmp_path, dataset=digits)  # redoes iterations 7 and 8
  assert out["step"] == 8
  with open(tmp_path / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == sorted(set(steps)) and steps[-1] == 8
  with pytest.raises(rundir.ConfigMismatch, match="num_gen: 6 -> 4"):
    train_images(cfg(num_gen=4), tmp_path, dataset=digits)
