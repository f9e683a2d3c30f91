"""Training-loop overhead: the loop's steps/s against its bare jitted step run back-to-back.

For the default toy run (``experiments/configs/toy_default.py``) and ``mnist_small_cpu``
(``experiments/configs/mnist_small_cpu.py``, on random MNIST-shaped images so no dataset
is needed) the same compiled step is timed two ways in one process, interleaved
``--rounds`` times (best of each):

* **bare**: the jitted step (toy: ``make_train_step``; images: the runner's train step,
  which includes the batch preparation) called back-to-back on one batch, one
  ``block_until_ready`` at the end;
* **loop**: ``train`` in a fresh run directory with the config's own
  logging and checkpoint cadence (``metrics.jsonl``, orbax checkpoints, the NaN guard,
  the progress bar off), steps/s from its ``metrics.jsonl`` intervals (the compile is
  cached by then, so no interval contains it).

Goal (issue "performance"): loop steps/s within 5 % of bare. Run via
``python benchmarks/train_step.py --loop-overhead`` (writes
``benchmarks/results/loop_overhead.json``).
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _loop_rate(workdir: pathlib.Path) -> float:
  """Steps per second of a finished run, from the intervals of its ``metrics.jsonl``."""
  with open(workdir / "metrics.jsonl") as f:
    recs = [json.loads(line) for line in f if line.strip()]
  prev, total_t, total_n = 0, 0.0, 0
  for r in recs:
    if "steps_per_sec" not in r:
      continue
    n, prev = r["step"] - prev, r["step"]
    total_t += n / r["steps_per_sec"]
    total_n += n
  return total_n / total_t


def toy(steps: int, rounds: int) -> dict:
  import jax
  from drifting_jax.training import ToyTask, load_config, split_run_key, train

  cfg = load_config(ROOT / "experiments" / "configs" / "toy_default.py")
  cfg.num_steps, cfg.progress = steps, False
  run = ToyTask(cfg)
  step_fn = run.train_step()  # the trainer's cached compiled step
  state = run.init_state()
  noise_rng, data_rng = split_run_key(state.rng)
  batch = run.sample_batch(jax.random.fold_in(data_rng, 0))
  jax.block_until_ready(step_fn(state, batch, noise_rng))  # compile
  bare, looped = [], []
  for _ in range(rounds):
    s = state
    t = time.perf_counter()
    for _ in range(steps):
      s, m = step_fn(s, batch, noise_rng)
    jax.block_until_ready((s, m))
    bare.append(steps / (time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as d:
      train(cfg, d)
      looped.append(_loop_rate(pathlib.Path(d)))
  return {"case": "toy_default", "steps": steps, "log_every": cfg.log_every,
          "checkpoint_every": cfg.checkpoint_every, "bare_steps_per_s": max(bare),
          "loop_steps_per_s": max(looped), "overhead": max(bare) / max(looped) - 1.0,
          "bare_all": bare, "loop_all": looped}


def images(steps: int, rounds: int) -> dict:
  import jax
  from drifting_jax.data.images import Dataset
  from drifting_jax.training import ImageTask, apply_overrides, load_config, train

  rng = np.random.default_rng(0)
  fake = Dataset(rng.uniform(-1, 1, (2000, 28, 28, 1)).astype(np.float32),
                 np.arange(2000, dtype=np.int32) % 10, 10, "fake_mnist")
  cfg = load_config(ROOT / "experiments" / "configs" / "mnist_small_cpu.py")
  cfg = apply_overrides(cfg, {"num_steps": steps, "norm_warmup": 0, "progress": False,
                                    "sample_every": 0, "dataset": "fake"})
  run = ImageTask(cfg, dataset=fake)
  runner = run.runner()
  s0 = run.init_state()
  state, bank = s0.replace(bank=None), s0.bank
  dstate, dbank, ddata = runner.place(state, bank, run.data)
  jax.block_until_ready(runner.train(dstate, dbank, ddata))  # compile
  bare, looped = [], []
  for _ in range(rounds):
    s, b = dstate, dbank
    t = time.perf_counter()
    for _ in range(steps):
      s, b, m = runner.train(s, b, ddata)
    jax.block_until_ready((s, m))
    bare.append(steps / (time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as d:
      train(cfg, d, dataset=fake)
      looped.append(_loop_rate(pathlib.Path(d)))
  return {"case": "mnist_small_cpu", "steps": steps, "log_every": cfg.log_every,
          "checkpoint_every": cfg.checkpoint_every, "bare_steps_per_s": max(bare),
          "loop_steps_per_s": max(looped), "overhead": max(bare) / max(looped) - 1.0,
          "bare_all": bare, "loop_all": looped}
