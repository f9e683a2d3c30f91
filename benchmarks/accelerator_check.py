"""One accelerator check: the numbers to collect the first time the library runs on a GPU/TPU.

Writes one JSON (``benchmarks/results/accelerator_check_<backend>.json``) and prints a
summary of:

1. **Drift fields at Secretly-SM Table 3's shapes** (B generated = B positives, negatives =
   the generated samples; (B, d) ∈ {(64, 256), (256, 256), (1024, 256), (64, 768)}): the
   Laplacian softmax field, the Gaussian field, the annealed Gaussian (traced σ) and the
   Sinkhorn drift (α = 0.05, diagonal masked), mean ± std ms over 100 calls after 10
   warm-ups — the paper's protocol — and the softmax/Sinkhorn ratio at B = 1024 (the paper
   reports 1.65× on an H100: 4.21 vs 2.55 ms).
2. **Deng et al.'s loss at Franz et al.'s shape** (5 groups × 96 generated × 784 pixels,
   96 positives), forward and value-and-grad.
3. **One DiT-S/2 training step at Franz et al.'s batch** (5 classes × 96 real × 96
   generated, Naive-Gauss, kernel-width normalization) in float32 and bfloat16: compile s,
   steps/s, images/s, peak device memory (``memory_stats``, where the backend reports it).
4. **The same step's loss on the accelerator and on the CPU** for one fixed batch and
   initialization (relative difference; identical when the default backend is the CPU).
5. **The sharded step over all local devices** (``parallel="auto"``): steps/s.

``--smoke`` runs the same code paths on tiny shapes (a small DiT, 2 classes × 8 × 8) on the
CPU in well under a minute (``tests/test_benchmarks.py``)::

    python benchmarks/accelerator_check.py            # on the GPU machine (< 8 minutes)
    python benchmarks/accelerator_check.py --smoke    # anywhere
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TABLE3 = ((64, 256), (256, 256), (1024, 256), (64, 768))
PAPER_MS = {(1024, 256): {"softmax": 4.211, "sinkhorn": 2.552}}


def _timeit(fn, args, *, warmup: int, iters: int) -> dict:
  out = None
  for _ in range(warmup):
    out = jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  del out
  return {"mean_ms": 1e3 * float(np.mean(times)), "std_ms": 1e3 * float(np.std(times))}


def drift_table(shapes, *, warmup: int, iters: int) -> list[dict]:
  import drifting_jax as dj
  lap, gau = dj.laplacian(1.0), dj.gaussian(1.0)
  ops = {
      "softmax": lambda x, p: dj.drift_field(x, p, x, kernel=lap, exclude_self=True),
      "gaussian": lambda x, p: dj.drift_field(x, p, x, kernel=gau, exclude_self=True),
      "annealed": lambda x, p: dj.doubly_stochastic_field(
          x, p, x, bandwidth=jnp.maximum(1.5 * jnp.exp(-0.01 * 100.0), 0.03),
          exclude_self=True),
      "sinkhorn": lambda x, p: dj.sinkhorn_drift(x, p, alpha=0.05, exclude_self=True),
  }
  rows = []
  for b, d in shapes:
    kx, kp = jax.random.split(jax.random.PRNGKey(b + d))
    x, pos = jax.random.normal(kx, (b, d)), jax.random.normal(kp, (b, d)) + 0.5
    row = {"B": b, "d": d}
    for name, fn in ops.items():
      row[name] = _timeit(jax.jit(fn), (x, pos), warmup=warmup, iters=iters)
    row["softmax_over_sinkhorn"] = row["softmax"]["mean_ms"] / row["sinkhorn"]["mean_ms"]
    if (b, d) in PAPER_MS:
      row["paper_h100_ms"] = PAPER_MS[(b, d)]
    rows.append(row)
    print(f"B={b:5d} d={d:4d} " + "  ".join(f"{k} {row[k]['mean_ms']:.3f} ms" for k in ops)
          + f"  softmax/sinkhorn {row['softmax_over_sinkhorn']:.2f}", flush=True)
  return rows


def deng_check(groups: int, n: int, s: int, *, warmup: int, iters: int) -> dict:
  import drifting_jax as dj
  kx, kp = jax.random.split(jax.random.PRNGKey(0))
  x, pos = jax.random.normal(kx, (groups, n, s)), jax.random.normal(kp, (groups, n, s)) + 0.3
  fwd = jax.jit(lambda a, b: jnp.sum(dj.deng_drift_loss(a, b)))
  vg = jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(dj.deng_drift_loss(a, b))))
  out = {"shape": [groups, n, s], "forward": _timeit(fwd, (x, pos), warmup=warmup, iters=iters),
         "value_and_grad": _timeit(vg, (x, pos), warmup=warmup, iters=iters)}
  print(f"deng_drift_loss {groups}x{n}x{s}: forward {out['forward']['mean_ms']:.3f} ms, "
        f"value_and_grad {out['value_and_grad']['mean_ms']:.3f} ms", flush=True)
  return out


def _fake_mnist(n: int = 2000, size: int = 28):
  from drifting_jax.data.images import Dataset
  rng = np.random.default_rng(0)
  return Dataset(rng.uniform(-1, 1, (n, size, size, 1)).astype(np.float32),
                 np.arange(n, dtype=np.int32) % 10, 10, "fake_mnist")


_COMPILER: dict = {}  # --smoke: {"xla_backend_optimization_level": 0} (faster compiles)


def _image_cfg(model: str, batch: dict, dtype: str, parallel: str, model_overrides=None):
  from drifting_jax.training import ImageConfig
  return ImageConfig(dataset="fake", model=model, model_overrides=dict(model_overrides or {}),
                     objective="naive-gauss", bandwidth=0.2, norm_warmup=0, dtype=dtype,
                     parallel=parallel, progress=False, compiler_options=dict(_COMPILER),
                     **batch)


def _memory() -> int | None:
  stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
  return None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None


def measure_step(cfg, dataset, *, dtypes: Sequence[str] = ("float32", "bfloat16"), iters: int,
                 stats: bool = False) -> dict:
  """Per dtype, from the same initialization and batches: compile seconds, steps/s, images/s
  (generated), the process's peak device memory so far, the first step's loss and gradient
  norm and the loss after ``1 + iters`` steps of ``cfg``'s train step; ``stats``: also the
  statistics-only warm-up step's rate."""
  from drifting_jax.training import ImageTask, apply_overrides
  out: dict = {}
  images = cfg.num_classes_per_step * cfg.num_gen
  for dtype in dtypes:
    task = ImageTask(apply_overrides(cfg, {"dtype": dtype}), dataset=dataset)
    runner = task.runner()
    s0 = task.init_state()
    s, b, d = runner.place(s0.replace(bank=None), s0.bank, task.data)

    def timed(step_fn, s, b):
      s, b, m = step_fn(s, b, d)  # compile
      jax.block_until_ready(m)
      first = {k: float(m[k]) for k in ("loss", "grad_norm") if k in m}
      t = time.perf_counter()
      for _ in range(iters):
        s, b, m = step_fn(s, b, d)
      jax.block_until_ready(m)
      return s, b, m, first, (time.perf_counter() - t) / iters

    t = time.perf_counter()
    s, b, m, first, dt = timed(runner.train, s, b)
    compile_s = time.perf_counter() - t - iters * dt
    row = {"compile_s": compile_s, "steps_per_s": 1.0 / dt, "images_per_s": images / dt,
           "first_loss": first["loss"], "first_grad_norm": first["grad_norm"],
           "loss": float(m["loss"]), "devices": runner.num_devices,
           "process_peak_device_bytes": _memory()}
    if stats:
      row["stats_steps_per_s"] = 1.0 / timed(runner.stats, s, b)[-1]
    out[dtype] = row
    print(f"{cfg.model} step [{dtype}]: {1 / dt:.2f} steps/s, {images / dt:.0f} images/s, "
          f"compile {compile_s:.1f} s, loss after {1 + iters} steps {row['loss']:.5g}, peak "
          f"{row['process_peak_device_bytes']}", flush=True)
    del task, runner, s, b, d
  return out


def train_step_check(model: str, batch: dict, *, iters: int, model_overrides=None) -> dict:
  cfg = _image_cfg(model, batch, "float32", "none", model_overrides)
  return {"model": model, "batch": batch,
          **measure_step(cfg, _fake_mnist(), iters=iters)}


def cpu_agreement(model: str, batch: dict, model_overrides=None) -> dict:
  """The first step's loss and gradient norm from the same init and batch, default backend
  vs CPU (the loss alone does not see the generator: its zero-initialized output layer)."""
  from drifting_jax.training import ImageTask
  data = _fake_mnist()
  losses, gnorms = {}, {}
  for where in ("default", "cpu"):
    if where == "cpu" and jax.default_backend() == "cpu":
      losses["cpu"] = losses["default"]  # the same computation: nothing to compare
      gnorms["cpu"] = gnorms["default"]
      continue
    device = jax.devices()[0] if where == "default" else jax.devices("cpu")[0]
    with jax.default_device(device):
      run = ImageTask(_image_cfg(model, batch, "float32", "none", model_overrides),
                      dataset=data)
      runner = run.runner() if where == "default" else run.runner(devices=[device])
      s0 = run.init_state()
      state, bank = s0.replace(bank=None), s0.bank
      _, _, m = runner.train(*runner.place(state, bank, run.data))
      losses[where] = float(m["loss"])
      gnorms[where] = float(m["grad_norm"])
  rel = abs(losses["default"] - losses["cpu"]) / max(abs(losses["cpu"]), 1e-30)
  rel_g = abs(gnorms["default"] - gnorms["cpu"]) / max(abs(gnorms["cpu"]), 1e-30)
  print(f"loss default backend {losses['default']:.6g} vs CPU {losses['cpu']:.6g}: "
        f"relative difference {rel:.2e}; gradient norm {rel_g:.2e}", flush=True)
  return {"loss_default": losses["default"], "loss_cpu": losses["cpu"], "relative_diff": rel,
          "grad_norm_default": gnorms["default"], "grad_norm_cpu": gnorms["cpu"],
          "grad_norm_relative_diff": rel_g, "default_backend": jax.default_backend()}


def sharded_check(model: str, batch: dict, *, iters: int, model_overrides=None) -> dict:
  from drifting_jax.training import ImageTask
  n = jax.local_device_count()
  groups = batch["num_classes_per_step"]
  if groups % n:  # every device needs whole class groups
    batch = dict(batch, num_classes_per_step=n * max(1, groups // n))
  run = ImageTask(_image_cfg(model, batch, "float32", "auto", model_overrides),
                  dataset=_fake_mnist())
  runner = run.runner()
  s0 = run.init_state()
  s, b, d = runner.place(s0.replace(bank=None), s0.bank, run.data)
  s, b, m = runner.train(s, b, d)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(iters):
    s, b, m = runner.train(s, b, d)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t) / iters
  print(f"sharded step over {n} device(s): {1 / dt:.2f} steps/s", flush=True)
  return {"devices": n, "batch": batch, "steps_per_s": 1.0 / dt, "loss": float(m["loss"])}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (< 1 minute)")
  p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/"
                                             "accelerator_check_<backend>.json)")
  args = p.parse_args(argv)
  t0 = time.perf_counter()
  if args.smoke:
    shapes, warm, iters = ((16, 8), (32, 8)), 1, 2
    deng_shape = (2, 8, 16)
    model, batch = "dit_tiny", dict(num_classes_per_step=2, num_pos=8, num_gen=8)
    overrides = {"depth": 1, "hidden": 32, "heads": 2}
    step_iters = 2
    _COMPILER["xla_backend_optimization_level"] = 0
  else:
    shapes, warm, iters = TABLE3, 10, 100
    deng_shape = (5, 96, 784)
    model, batch = "dit_s2", dict(num_classes_per_step=5, num_pos=96, num_gen=96)
    overrides, step_iters = None, 10
  result = {
      "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
      "jax": jax.__version__, "python": platform.python_version(), "smoke": args.smoke,
      "drift_fields": drift_table(shapes, warmup=warm, iters=iters),
      "deng_drift_loss": deng_check(*deng_shape, warmup=warm, iters=iters),
      "train_step": train_step_check(model, batch, iters=step_iters, model_overrides=overrides),
      "cpu_agreement": cpu_agreement(model, batch, overrides),
      "sharded": sharded_check(model, batch, iters=step_iters, model_overrides=overrides),
  }
  result["wall_s"] = time.perf_counter() - t0
  out = pathlib.Path(args.out or RESULTS / f"accelerator_check_{jax.default_backend()}"
                     f"{'_smoke' if args.smoke else ''}.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"written to {out} in {result['wall_s']:.0f} s")
  return result


if __name__ == "__main__":
  main()
  sys.exit(0)
