"""The prepared accelerator command: the accelerator checks, then Franz et al.'s DiT-S/2 MNIST
recipe trained for as long as the time budget allows, in one call.

Phases (each one's wall time goes into the JSON):

1. **checks** — :mod:`benchmarks.accelerator_check`'s drift fields at Secretly-SM Table 3's
   shapes (Laplacian softmax, Gaussian, annealed Gaussian, Sinkhorn), Deng et al.'s loss at
   Franz et al.'s shape, and the default-backend-vs-CPU loss of one image step (a 2-block
   DiT-S/2 on a small batch, so the CPU side takes seconds);
2. **step** — one DiT-S/2 training step of the recipe below on real MNIST, in float32 and in
   bfloat16: compile seconds, steps/s, images/s (generated images per second), peak device
   memory (the process's peak so far), the first step's gradient norm and the loss after
   the timed steps (both from the same initialization and batches; the first step's loss
   itself says nothing: the DiT's zero-initialized output layer makes it the same in both).
   bfloat16 is used for training when it is faster and both numbers are within
   ``BF16_RTOL`` of float32's (else float32; the choice and the reason are recorded);
3. **train** — ``experiments/configs/mnist_dit_s2.py`` (Franz et al. Table 3: 5 classes × 96
   real × 96 generated, AdamW β = (0.95, 0.999), lr 2e-4, weight decay 1e-4, 300 warm-up
   steps + cosine, clipping 2.0, Naive-Gauss at width 0.2, kernel-width normalization with
   300 statistics-only batches) with ``num_steps`` set to the steps that fit in the budget
   at the measured rate, so the cosine schedule completes; data-parallel over every local
   device (``parallel="auto"``); the parameter EMA's decay is set to average over the last
   ~10 % of the run (Table 3's 0.999 would still weigh the zero-output initialization by
   0.999^N after N steps);
4. **samples** — 5,000 samples (classes in turn) of the EMA generator and of the raw
   parameters, each as a uint8 ``.npz`` (≈ 4 MB) with a 10 × 10 grid PNG, and the loss curve.

Each phase is guarded: an error is recorded in the JSON (written after every phase) and the
later phases still run where they can.

Everything goes to ``--out`` (six files): ``accelerator_run.json`` (versions, devices, the
checks, step times, steps done, steps/s, images/s, loss curve, wall time per phase),
``accelerator_run_loss.png``, ``accelerator_run_samples.npz`` / ``accelerator_run_grid.png``
(EMA) and ``accelerator_run_samples_params.npz`` / ``accelerator_run_grid_params.png``.
Score the samples on a machine with the converted Inception weights::

    drifting-jax eval --samples OUT/accelerator_run_samples.npz --fid inception

Running it on the project's GPU machine (jax 0.11.2 with flax, optax, orbax, chex on
Python 3.12; no ott-jax, ml_collections or jaxopt, no internet): from the repository root,
once per session, put the three missing wheels and MNIST in two git-ignored folders::

    echo /.whl/ >> .git/info/exclude; echo /.mnist/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux2014_x86_64 -d .whl \\
        ott-jax==0.6.0 jaxopt==0.8.5 ml_collections==1.1.0
    mkdir -p .mnist && cp "${DRIFTING_JAX_MNIST:-../shared/data/mnist}"/*-ubyte.gz .mnist/

then run, with ``carry: [".whl", ".mnist"]`` and a 540 s limit (one call)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD \\
        DRIFTING_JAX_MNIST=$PWD/.mnist PYTHONUNBUFFERED=1 && \\
        python3 benchmarks/accelerator_run.py --minutes 7 --out $OUT

On several hosts, start the same command on every host with ``DRIFTING_JAX_COORDINATOR``,
``DRIFTING_JAX_NUM_PROCESSES`` and ``DRIFTING_JAX_PROCESS_ID`` set (or
``DRIFTING_JAX_DISTRIBUTED=1`` where ``jax.distributed.initialize()`` finds the cluster by
itself) and ``--workdir`` on a file system every host sees; process 0 writes the outputs. ``--smoke`` runs every phase on tiny shapes (a small
DiT, 2 classes × 8 × 8, 4 steps) on the CPU in well under a minute
(``tests/test_accelerator_check.py``)::

    python benchmarks/accelerator_run.py --smoke --out /tmp/acc_smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):  # drifting_jax from the checkout; accelerator_check
  if str(_p) not in sys.path:
    sys.path.insert(0, str(_p))

import accelerator_check as ac  # noqa: E402

RECIPE = ROOT / "experiments" / "configs" / "mnist_dit_s2.py"
#: bfloat16 trains when its first gradient norm and its loss after the timed steps are both
#: within this relative distance of float32's.
BF16_RTOL = 0.05
#: seconds kept back from the training budget for sampling and writing the outputs.
RESERVE_S = 45.0
#: no training phase with less time than this left (its compile alone takes tens of seconds)
MIN_TRAIN_S = 60.0
NAME = "accelerator_run"


def plan_steps(budget_s: float, steps_per_s: float, *, stats_iters: int,
               stats_per_s: float | None = None, minimum: int = 1) -> int:
  """Optimizer steps that fit in ``budget_s`` seconds at ``steps_per_s``.

  ``stats_iters`` statistics-only warm-up iterations run first (at ``stats_per_s``, taken as
  ``2 × steps_per_s`` when not measured: they skip the backward pass and the update).

  Raises:
    ValueError: a non-positive or non-finite rate.
  """
  for name, v in (("steps_per_s", steps_per_s), ("stats_per_s", stats_per_s)):
    if v is not None and not (math.isfinite(v) and v > 0):
      raise ValueError(f"`{name}` must be a positive finite rate, got {v!r}")
  left = budget_s - stats_iters / (stats_per_s or 2.0 * steps_per_s)
  return max(int(minimum), int(left * steps_per_s))


def choose_dtype(step: dict, *, rtol: float = BF16_RTOL) -> tuple[str, str]:
  """``("bfloat16" | "float32", reason)`` from the two steps measured by
  ``accelerator_check.measure_step``."""
  f32, bf16 = step["float32"], step.get("bfloat16")
  if bf16 is None:
    return "float32", "bfloat16 not measured"
  rel = 0.0
  for key in ("first_grad_norm", "loss"):
    if key not in bf16 or key not in f32:
      continue
    if not math.isfinite(bf16[key]):
      return "float32", f"bfloat16 {key} {bf16[key]} is not finite"
    r = abs(bf16[key] - f32[key]) / max(abs(f32[key]), 1e-30)
    if r > rtol:
      return "float32", f"bfloat16 {key} differs from float32's by {r:.2e} (> {rtol})"
    rel = max(rel, r)
  if bf16["steps_per_s"] <= f32["steps_per_s"]:
    return "float32", (f"bfloat16 not faster ({bf16['steps_per_s']:.2f} vs "
                       f"{f32['steps_per_s']:.2f} steps/s)")
  return "bfloat16", (f"first gradient norm and loss within {rel:.2e} of float32's and "
                      f"{bf16['steps_per_s'] / f32['steps_per_s']:.2f}x the steps/s")


def recipe_config(*, smoke: bool):
  """Franz et al.'s Table 3 recipe (``--smoke``: a small DiT and batch on the same path)."""
  from drifting_jax.training import apply_overrides, load_config
  cfg = load_config(RECIPE)
  over: dict[str, Any] = {"parallel": "auto", "sample_every": 0, "progress": False,
                          "log_every": 50, "checkpoint_every": 1000}
  if smoke:
    over.update(model="dit_tiny", model_overrides={"depth": 1, "hidden": 32, "heads": 2},
                num_classes_per_step=2, num_pos=8, num_gen=8, norm_warmup=2, warmup_steps=1,
                log_every=1, compiler_options={"xla_backend_optimization_level": 0})
  return apply_overrides(cfg, over)


def load_training_data(smoke: bool):
  """MNIST's training split (``$DRIFTING_JAX_MNIST``); ``--smoke`` without it: random 28 × 28
  images with MNIST's shape and 10 classes."""
  from drifting_jax.data.images import load_dataset
  if smoke and not os.environ.get("DRIFTING_JAX_MNIST"):
    return ac._fake_mnist()  # pylint: disable=protected-access
  if not os.environ.get("DRIFTING_JAX_MNIST"):
    raise SystemExit("set DRIFTING_JAX_MNIST to the folder with MNIST's IDX files "
                     "(see this script's docstring)")
  return load_dataset("mnist", split="train")


def write_samples(model, params, out: pathlib.Path, *, num: int, dataset_name: str,
                  opt_step: int, cfg_scale: float = 1.0, tag: str = "", seed: int = 0,
                  chunk: int = 1000) -> dict:
  """``num`` samples of ``model`` with ``params`` (classes in turn) as a uint8 ``.npz``
  (``samples``, ``labels``, ``opt_step``, ``dataset``) and a 10 × 10 grid PNG."""
  import jax.numpy as jnp
  from drifting_jax.data.images import save_image_grid, to_uint8
  from drifting_jax.training.tasks.images import generate_images
  classes = min(model.num_classes, 10)
  labels = np.arange(num, dtype=np.int32) % classes
  keys = jax.random.split(jax.random.PRNGKey(seed), -(-num // chunk))
  parts = [np.asarray(generate_images(model, params, keys[i],
                                      jnp.asarray(labels[i * chunk:(i + 1) * chunk]),
                                      cfg_scale))
           for i in range(len(keys))]
  samples = np.concatenate(parts)
  if not np.all(np.isfinite(samples)):
    raise FloatingPointError("the generator produced non-finite samples")
  npz = out / f"{NAME}_samples{tag}.npz"
  np.savez_compressed(npz, samples=to_uint8(samples), labels=labels, opt_step=int(opt_step),
                      dataset=np.asarray(dataset_name))
  grid = out / f"{NAME}_grid{tag}.png"
  save_image_grid(np.clip(samples[:100], -1.0, 1.0), str(grid), nrow=classes)
  return {"samples": npz.name, "grid": grid.name, "num": int(num), "bytes": npz.stat().st_size}


def _loss_curve(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.is_file():
    return []
  keep = ("step", "opt_step", "phase", "loss", "grad_norm", "lr", "steps_per_sec", "elapsed_s")
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return [{k: r[k] for k in keep if k in r} for r in rows if r.get("phase") == "train"]


def _plot_loss(curve: list[dict], path: pathlib.Path, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.plot([r["opt_step"] for r in curve], [r["loss"] for r in curve], lw=1)
  ax.set_xlabel("optimizer step")
  ax.set_ylabel("loss")
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _guarded(result: dict, key: str, fn, *args, **kwargs):
  """``result[key] = fn(...)``; an exception is recorded as ``{"error": ...}`` instead (one
  failing phase must not cost the others' numbers)."""
  try:
    result[key] = fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    result[key] = {"error": f"{type(e).__name__}: {e}"}
    print(f"{key} failed: {type(e).__name__}: {e}", flush=True)
  return result[key]


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--minutes", type=float, default=7.0,
                 help="wall-clock budget of the whole command (default 7)")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--workdir", default=None,
                 help="run directory of the training phase (default: a temporary folder; "
                      "give one to resume an interrupted run)")
  p.add_argument("--num-samples", type=int, default=5000)
  p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                 help="training dtype (auto: bfloat16 where measured to be safe)")
  p.add_argument("--skip-checks", action="store_true", help="skip phase 1")
  p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (< 1 minute)")
  args = p.parse_args(argv)
  if not args.minutes > 0:
    raise SystemExit(f"--minutes must be > 0, got {args.minutes}")
  if args.num_samples < 1:
    raise SystemExit(f"--num-samples must be >= 1, got {args.num_samples}")
  t0 = time.perf_counter()
  from drifting_jax.models.presets import get_model
  from drifting_jax.training import Hook, apply_overrides, parallel, train
  parallel.maybe_initialize_distributed()
  lead = jax.process_index() == 0
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  phases: dict[str, float] = {}
  result: dict[str, Any] = {
      "command": " ".join(["python benchmarks/accelerator_run.py"] + list(argv or sys.argv[1:])),
      "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(), "jax": jax.__version__,
      "jaxlib": getattr(__import__("jaxlib"), "__version__", None),
      "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
      "python": platform.python_version(), "smoke": args.smoke, "budget_s": 60 * args.minutes,
      "phase_wall_s": phases}

  def dump():  # after every phase: whatever happens later, the numbers so far come back
    result["wall_s"] = time.perf_counter() - t0
    if lead:
      (out / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")

  t = time.perf_counter()
  if not args.skip_checks:
    if args.smoke:
      ac._COMPILER["xla_backend_optimization_level"] = 0  # pylint: disable=protected-access
      shapes, warm, iters, deng = ((16, 8), (32, 8)), 1, 2, (2, 8, 16)
      agree_over = {"depth": 1, "hidden": 32, "heads": 2}
      agree_model, agree_batch = "dit_tiny", dict(num_classes_per_step=2, num_pos=8, num_gen=8)
    else:
      shapes, warm, iters, deng = ac.TABLE3, 5, 30, (5, 96, 784)
      agree_model, agree_over = "dit_s2", {"depth": 2}
      agree_batch = dict(num_classes_per_step=2, num_pos=16, num_gen=16)
    checks: dict[str, Any] = {}
    result["checks"] = checks
    _guarded(checks, "drift_fields", ac.drift_table, shapes, warmup=warm, iters=iters)
    _guarded(checks, "deng_drift_loss", ac.deng_check, *deng, warmup=warm, iters=iters)
    agree = _guarded(checks, "cpu_agreement", ac.cpu_agreement, agree_model, agree_batch,
                     agree_over)
    agree.update(model=agree_model, model_overrides=agree_over, batch=agree_batch)
  phases["checks"] = time.perf_counter() - t
  dump()

  t = time.perf_counter()
  cfg = recipe_config(smoke=args.smoke)
  dataset = load_training_data(args.smoke)
  result["dataset"] = dataset.name
  dtypes = ("float32", "bfloat16") if args.dtype == "auto" else (args.dtype,)
  step: dict[str, Any] = {}
  for dtype in dtypes:
    _guarded(step, dtype, lambda d: ac.measure_step(cfg, dataset, dtypes=(d,), stats=True,
                                                    iters=2 if args.smoke else 10)[d], dtype)
  ok = {k: v for k, v in step.items() if "error" not in v}
  result["step"] = step
  phases["step"] = time.perf_counter() - t
  if not ok:
    dump()
    raise SystemExit("the training step failed in every dtype (see the JSON)")
  if args.dtype != "auto":
    dtype, why = args.dtype, "given"
  elif "float32" not in ok:
    dtype, why = "bfloat16", "the float32 step failed"
  else:
    dtype, why = choose_dtype(ok)
  result["dtype"], result["dtype_reason"] = dtype, why
  dump()
  print(f"training in {dtype}: {why}", flush=True)

  t = time.perf_counter()
  rate = step[dtype]
  left = 60 * args.minutes - (time.perf_counter() - t0) - RESERVE_S - rate["compile_s"]
  if args.smoke:
    steps = 4
  elif left < MIN_TRAIN_S:
    steps = 0
  else:
    steps = plan_steps(left, rate["steps_per_s"], stats_iters=cfg.norm_warmup,
                       stats_per_s=rate["stats_steps_per_s"], minimum=50)
  # the EMA averages over ~10 % of the run (Table 3's 0.999 keeps weight 0.999^N on the
  # zero-output initialization: 0.22 after 1,500 steps)
  ema = min(cfg.ema_decay, 1.0 - 10.0 / max(steps, 10))
  result["recipe"] = {"config": str(RECIPE.relative_to(ROOT)), "num_steps": steps,
                      "warmup_steps": min(cfg.warmup_steps, max(1, steps // 10)),
                      "norm_warmup": cfg.norm_warmup, "ema_decay": ema,
                      "planned_train_s": left, "paper_steps": 12000}
  if steps == 0:
    result["train"] = {"error": f"only {left:.0f} s left for training (< {MIN_TRAIN_S} s)"}
    dump()
    return result
  cfg = apply_overrides(cfg, {"dtype": dtype, "num_steps": steps, "ema_decay": ema,
                              "warmup_steps": result["recipe"]["warmup_steps"]})
  print(f"training {steps} steps (cosine horizon = steps that fit in {left:.0f} s)", flush=True)
  tmp = None
  if args.workdir is None:
    tmp = tempfile.TemporaryDirectory(prefix="drifting_jax_acc_")
  workdir = pathlib.Path(args.workdir or tmp.name)
  start = time.perf_counter()

  def report(done, state, values):  # a line per 100 steps (the device's output is a log)
    del state
    if lead and "loss" in values:
      print(f"iteration {done}: loss {values['loss']:.5g} ({time.perf_counter() - start:.0f} s)",
            flush=True)

  res = _guarded(result, "train_result", train, cfg, workdir, dataset=dataset,
                 hooks=[Hook(when=1 if args.smoke else 100, callback=report)])
  phases["train"] = time.perf_counter() - t
  curve = _loss_curve(workdir)
  rates = [r["steps_per_sec"] for r in curve if "steps_per_sec" in r][1:]  # after the compile
  result["train"] = {"loss_curve": curve,
                     "steps_per_s": float(np.median(rates)) if rates else None,
                     "images_per_s": (float(np.median(rates)) * cfg.num_classes_per_step
                                      * cfg.num_gen if rates else None)}
  if isinstance(res, dict):  # training failed: its error is in result["train_result"]
    result["train"]["error"] = result.pop("train_result")["error"]
  else:
    del result["train_result"]
    result["train"].update(
        steps_done=int(res.state.step) - cfg.norm_warmup,
        final_metrics={k: v for k, v in res.metrics.items()
                       if isinstance(v, (int, float)) and k not in ("step", "steps_per_sec")})
  if lead and curve:
    _plot_loss(curve, out / f"{NAME}_loss.png",
               f"DiT-S/2 MNIST ({dtype}, {steps} steps, {jax.default_backend()})"
               if not args.smoke else "smoke")
  dump()

  t = time.perf_counter()
  if lead and not isinstance(res, dict):
    model = get_model(cfg.model, **cfg.model_overrides)
    samples: dict[str, Any] = {}
    result["samples"] = samples
    for which, params in (("ema", res.state.ema_params), ("params", res.state.params)):
      _guarded(samples, which, write_samples, model, params, out, num=args.num_samples,
               tag="" if which == "ema" else "_params", dataset_name=dataset.name,
               opt_step=int(res.state.step) - cfg.norm_warmup,
               cfg_scale=cfg.sample_cfg_scale)
  phases["samples"] = time.perf_counter() - t
  dump()
  if lead:
    print(f"written to {out} in {result['wall_s']:.0f} s", flush=True)
  if tmp is not None:
    tmp.cleanup()
  return result


if __name__ == "__main__":
  main()
