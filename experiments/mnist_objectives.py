"""MNIST objective sweep on CPU: FID / precision / recall vs kernel width (Franz et al. Fig. 4,
Table 2) at a fixed, small step budget.

For each of the seven objectives ``naive-gauss``, ``drifting-gauss``, ``laplace#``,
``naive-laplace``, ``drifting-laplace``, ``gauss-annealed`` and ``sinkhorn`` and each kernel
width in {0.05, 0.1, 0.2, 0.3} (kNN kernel-width-normalized units, Franz §5.1), trains the
``experiments/configs/mnist_small_cpu_v01.py`` recipe (pure-MLP generator, 5 classes × 128 real ×
128 generated per step, 100 statistics-only warm-up batches) for the same fixed number of
optimizer steps, with seed 0, and evaluates it on 10k samples (FID on the project's MNIST
classifier features, precision / recall / F1, k = 3, against the MNIST test split). The best
width per objective (lowest FID) gets a second run with seed 1; the table reports the mean
and the half-range over the two seeds. No per-objective tuning: every run shares every other
hyperparameter of the recipe; only ``num_steps`` is cut to the budget (the cosine lr decay
ends at the budget) and the lr warm-up to ``min(100, budget // 5)`` steps.

Objective-specific handling:
  * ``gauss-annealed`` (Gaussian doubly-stochastic drift with
    ``sigma(t) = max(sigma0 e^(-r t), sigma_min)``): ``sigma0 = 1.0`` and ``sigma_min`` = the
    width, with ``r = log(sigma0 / width) / (budget / 2)`` so the floor is reached after half
    the budget.
  * ``sinkhorn``: its field has no kernel width (the temperature is ``alpha``, default used),
    so it is run once per seed and recorded under width ``None``.

Runs go to subprocesses (``--jobs`` at a time, one XLA thread each when ``--jobs > 1``);
each run's workdir is deleted after its evaluation, only the metrics and 4 samples per class
are kept. Needs MNIST at ``../shared/data/mnist`` (or ``$DRIFTING_JAX_MNIST``).

    python experiments/mnist_objectives.py --jobs 2
    python experiments/mnist_objectives.py --quick --out-dir /tmp/mnist_obj
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):  # ``python experiments/mnist_objectives.py``
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common, _sweep  # noqa: E402

NAME = "mnist_objectives"
OBJECTIVES = ("naive-gauss", "drifting-gauss", "laplace#", "naive-laplace", "drifting-laplace",
              "gauss-annealed", "sinkhorn")
WIDTHS = (0.05, 0.1, 0.2, 0.3)
NO_WIDTH = ("sinkhorn",)
SAMPLES_PER_CLASS = 4

# Franz et al., Table 2: MNIST FID-50k (Inception features), DiT-S/2, 12k steps, best width.
FRANZ_TABLE2 = {
    "naive-gauss": {"fid": 6.81, "best_width": 0.20, "note": "Gauss# / Naive-Gauss"},
    "drifting-gauss": {"fid": 20.38, "best_width": 0.25},
    "laplace#": {"fid": 17.48, "best_width": 0.10},
    "naive-laplace": {"fid": 10.68, "best_width": 0.05},
    "drifting-laplace": {"fid": 48.34, "best_width": 0.05},
}


def run_config(objective: str, width: float | None, num_steps: int, seed: int, *,
               quick: bool = False):
  """The mnist_small_cpu ImageConfig with this objective / width / budget / seed.

  ``quick``: 5 statistics-only warm-up batches and the cheaper XLA backend optimization
  level (smoke tests only)."""
  from drifting_jax.training import load_config
  base = load_config(pathlib.Path(__file__).resolve().parent / "configs" /
                     "mnist_small_cpu_v01.py")
  kwargs: dict[str, Any] = {}
  bandwidth = base.bandwidth if width is None else float(width)
  if objective == "gauss-annealed":
    kwargs = {"sigma0": 1.0,
              "rate": math.log(1.0 / bandwidth) / max(num_steps / 2, 1)}
  extra: dict[str, Any] = {}
  if quick:
    extra = {"norm_warmup": 5, "compiler_options": {"xla_backend_optimization_level": 0}}
    base = dataclasses.replace(base, **extra)
  total = base.norm_warmup + num_steps
  return dataclasses.replace(
      base, objective=objective, bandwidth=bandwidth, objective_kwargs=kwargs,
      num_steps=num_steps, warmup_steps=min(base.warmup_steps, max(num_steps // 5, 1)),
      seed=seed, progress=False, sample_every=0, checkpoint_every=total,
      log_every=min(base.log_every, total), max_to_keep=1)


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
  """Trains and evaluates one run; returns metrics (+ ``samples`` path); deletes the workdir."""
  cfg = run_config(spec["objective"], spec["width"], spec["num_steps"], spec["seed"],
                   quick=spec.get("quick", False))
  workdir = pathlib.Path(spec["workdir"])
  t0 = time.perf_counter()
  try:
    status = _sweep.train_run(_sweep.Run(workdir.name, cfg), workdir.parent)
    if status["status"] != "ok":  # a diverged run is a result, not a crash
      out = {"status": status["status"], "fid": float("nan"), "precision": float("nan"),
             "recall": float("nan"), "f1": float("nan"),
             "total_seconds": time.perf_counter() - t0}
    else:
      m = _sweep.evaluate_cached(workdir, "eval_metrics", num_samples=spec["num_samples"],
                                 seed=spec["seed"])
      with np.load(workdir / "eval_samples.npz") as d:
        x, y = d["samples"], d["labels"]
      keep = np.concatenate([np.nonzero(y == c)[0][:SAMPLES_PER_CLASS] for c in range(10)])
      np.savez_compressed(spec["samples_out"], samples=x[keep], labels=y[keep])
      out = {"status": "ok", "fid": m["fid_classifier_features"], "precision": m["precision"],
             "recall": m["recall"], "f1": m["f1"],
             "classifier_accuracy_on_samples": m["classifier_accuracy_on_samples"],
             "final_loss": status["final_loss"], "train_seconds": status["train_wall_s"],
             "total_seconds": time.perf_counter() - t0, "iterations": m["iteration"]}
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  return {**{k: spec[k] for k in ("objective", "width", "seed", "num_steps")}, **out}


def _launch(spec: dict[str, Any], single_thread: bool) -> dict[str, Any]:
  """Runs ``run_one(spec)`` in a fresh Python process."""
  spec_path = pathlib.Path(spec["workdir"] + ".spec.json")
  res_path = pathlib.Path(spec["workdir"] + ".result.json")
  spec_path.write_text(json.dumps(spec))
  env = dict(os.environ)
  if single_thread:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(spec_path),
                         "--worker-out", str(res_path)], env=env, capture_output=True, text=True)
  if proc.returncode != 0 or not res_path.exists():
    tail = (proc.stderr or "")[-3000:]
    raise RuntimeError(f"run {spec['objective']} w={spec['width']} s={spec['seed']} failed:\n"
                       f"{tail}")
  res = json.loads(res_path.read_text())
  spec_path.unlink(missing_ok=True)
  res_path.unlink(missing_ok=True)
  return res


def _run_all(specs: list[dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
  results = []
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    if jobs == 1:  # in this process (no interpreter / import start-up per run)
      futs = [pool.submit(run_one, s) for s in specs]
    else:
      futs = [pool.submit(_launch, s, True) for s in specs]
    for s, f in zip(specs, futs):
      r = f.result()
      print(f"  {r['objective']:>16s} w={r['width']} seed={r['seed']}: FID {r['fid']:.2f} "
            f"P {r['precision']:.3f} R {r['recall']:.3f} ({r.get('total_seconds', 0):.0f}s)",
            flush=True)
      results.append(r)
  return results


def _spec(objective, width, seed, num_steps, num_samples, scratch: pathlib.Path,
          quick: bool = False) -> dict:
  tag = f"{objective.replace('#', 'sharp')}_w{width}_s{seed}"
  return {"objective": objective, "width": width, "seed": seed, "num_steps": num_steps,
          "num_samples": num_samples, "quick": quick, "workdir": str(scratch / tag),
          "samples_out": str(scratch / f"{tag}_samples.npz")}


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and math.isfinite(v)


def best_widths(sweep: list[dict[str, Any]], objectives: Sequence[str]) -> dict[str, Any]:
  """Lowest-FID width per objective among the seed-0 runs (non-finite FIDs lose)."""
  best = {}
  for obj in objectives:
    runs = [r for r in sweep if r["objective"] == obj]
    runs.sort(key=lambda r: r["fid"] if _finite(r["fid"]) else float("inf"))
    best[obj] = runs[0]["width"]
  return best


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
  """Mean and half-range (= spread of 2 seeds) of each metric."""
  out = {"seeds": [r["seed"] for r in runs]}
  for k in ("fid", "precision", "recall", "f1"):
    v = np.array([r[k] for r in runs], dtype=float)
    out[k] = float(np.mean(v))
    out[f"{k}_spread"] = float((v.max() - v.min()) / 2) if v.size > 1 else 0.0
    out[f"{k}_per_seed"] = v.tolist()
  return out


def conclusions(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """Franz et al.'s three MNIST conclusions, checked on our table (mean FID, lower better)."""
  fid = {k: v["fid"] for k, v in table.items()}

  def lt(a, b):
    if a not in fid or b not in fid:
      return None
    return bool(fid[a] < fid[b])

  def competitive(a, b, tol=0.25):
    if a not in fid or b not in fid:
      return None
    return bool(fid[a] <= (1 + tol) * fid[b])

  return {
      "naive_beats_original_gauss": lt("naive-gauss", "drifting-gauss"),
      "naive_beats_original_laplace": lt("naive-laplace", "drifting-laplace"),
      "gauss_beats_laplace_naive": lt("naive-gauss", "naive-laplace"),
      "gauss_beats_laplace_drifting": lt("drifting-gauss", "drifting-laplace"),
      "laplace_sharp_competitive_with_naive_laplace_within_25pct":
          competitive("laplace#", "naive-laplace"),
      "paper": {"naive_beats_original": True, "gauss_beats_laplace": True,
                "laplace_sharp_competitive_with_naive_laplace": True},
  }


def plot(sweep, table, out_dir, widths, objectives):
  plt = _common.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  colors = plt.cm.tab10(np.arange(len(objectives)))
  for obj, c in zip(objectives, colors):
    runs = sorted((r for r in sweep if r["objective"] == obj and r["seed"] == 0),
                  key=lambda r: -1 if r["width"] is None else r["width"])
    for ax, key, label in zip(axes, ("fid", "precision", "recall"),
                              ("FID (classifier features)", "precision", "recall")):
      if obj in NO_WIDTH:
        ax.axhline(runs[0][key], color=c, ls="--", lw=1.2, label=f"{obj} (no width)")
      else:
        ax.plot([r["width"] for r in runs], [r[key] for r in runs], "o-", color=c, label=obj)
        t = table[obj]
        ax.errorbar([t["best_width"]], [t[key]], yerr=[t[f"{key}_spread"]], color=c,
                    marker="*", ms=11, capsize=3, ls="none")
      ax.set_xlabel("kernel width (kNN-normalized units)")
      ax.set_ylabel(label)
      ax.set_xticks(list(widths))
  axes[0].set_yscale("log")
  axes[0].set_title("FID vs width (star: best width, mean ± half-range of 2 seeds)")
  axes[1].set_title("precision (k=3)")
  axes[2].set_title("recall (k=3)")
  axes[2].legend(fontsize=8, loc="best")
  fig.tight_layout()
  return _common.save_figure(fig, NAME, out_dir)


def sample_figure(table, samples: dict[str, np.ndarray], out_dir, objectives):
  """One block per objective (its best width, seed 0): columns = classes 0-9, 4 rows."""
  from drifting_jax.data.images import to_uint8
  plt = _common.pyplot()
  ncols = 2 if len(objectives) > 1 else 1
  nrows = (len(objectives) + ncols - 1) // ncols
  fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 2.5 * nrows))
  axes = np.atleast_1d(axes).ravel()
  for ax in axes:
    ax.axis("off")
  for ax, obj in zip(axes, objectives):
    x = samples.get(obj)
    if x is None:
      continue
    x = to_uint8(x, value_range=(-1.0, 1.0))[..., 0]  # [40, 28, 28], classes in blocks of 4
    x = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    n, h, w = x.shape
    k = SAMPLES_PER_CLASS
    x = x.reshape(n // k, k, h, w).transpose(1, 2, 0, 3).reshape(k * h, (n // k) * w)
    ax.imshow(x, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    t = table[obj]
    wtxt = "n/a" if t["best_width"] is None else f"{t['best_width']:g}"
    ax.set_title(f"{obj} (width {wtxt}, seed 0, FID {t['fid_per_seed'][0]:.1f})", fontsize=9)
  fig.suptitle(f"uncurated samples, columns = classes 0-9, {SAMPLES_PER_CLASS} per class",
               fontsize=10)
  fig.tight_layout()
  return _common.save_figure(fig, f"{NAME}_samples", out_dir)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  p = _common.parser(__doc__)
  p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
  p.add_argument("--steps", type=int, default=None, help="optimizer steps per run "
                 "(default 400; --quick 20)")
  p.add_argument("--num-samples", type=int, default=None, help="eval samples (10000; quick 500)")
  p.add_argument("--worker", type=pathlib.Path, help=argparse_hidden())
  p.add_argument("--worker-out", type=pathlib.Path, help=argparse_hidden())
  args = p.parse_args(argv)

  if args.worker is not None:  # subprocess entry point
    res = run_one(json.loads(args.worker.read_text()))
    args.worker_out.write_text(json.dumps(_common._to_builtin(res)))
    return res

  if args.quick:
    objectives, widths = ("naive-gauss", "sinkhorn"), (0.2,)
    steps, num_samples = args.steps or 20, args.num_samples or 500
  else:
    objectives, widths = OBJECTIVES, WIDTHS
    steps, num_samples = args.steps or 400, args.num_samples or 10_000
  jobs = max(1, args.jobs)
  print(f"{NAME}: {len(objectives)} objectives, widths {widths}, {steps} steps, "
        f"{num_samples} eval samples, {jobs} jobs", flush=True)

  out_dir = pathlib.Path(args.out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  scratch = pathlib.Path(tempfile.mkdtemp(prefix="mnist_objectives_", dir=out_dir))
  try:
    with _common.Timer() as timer:
      specs = [_spec(o, None if o in NO_WIDTH else w, 0, steps, num_samples, scratch,
                     args.quick)
               for o in objectives for w in ((None,) if o in NO_WIDTH else widths)]
      sweep = _run_all(specs, jobs)
      best = best_widths(sweep, objectives)
      print(f"best widths: {best}; second seed", flush=True)
      seed1 = _run_all([_spec(o, best[o], 1, steps, num_samples, scratch, args.quick)
                        for o in objectives], jobs)
      table, samples = {}, {}
      for o in objectives:
        runs = [r for r in sweep if r["objective"] == o and r["width"] == best[o]] + \
               [r for r in seed1 if r["objective"] == o]
        table[o] = {"best_width": best[o], **summarize(runs)}
        f = scratch / f"{o.replace('#', 'sharp')}_w{best[o]}_s0_samples.npz"
        if f.exists():
          with np.load(f) as d:
            samples[o] = d["samples"]
  finally:
    shutil.rmtree(scratch, ignore_errors=True)

  base = run_config("naive-gauss", None, steps, 0, quick=args.quick)
  result = {
      "command": _common.command("mnist_objectives.py", argv),
      "wall_seconds": timer.seconds,
      "budget": {
          "optimizer_steps_per_run": steps, "norm_warmup_batches": base.norm_warmup,
          "lr_warmup_steps": base.warmup_steps, "ema_decay": base.ema_decay,
          "learning_rate": base.learning_rate,
          "eval_samples": num_samples, "runs": len(sweep) + len(seed1), "jobs": jobs,
          "recipe": "experiments/configs/mnist_small_cpu_v01.py (only num_steps / lr warm-up, "
                    "objective, bandwidth, seed changed)",
          "classes_per_step": base.num_classes_per_step, "num_pos": base.num_pos,
          "num_gen": base.num_gen},
      "objectives": list(objectives), "widths": list(widths),
      "objective_notes": {
          "gauss-annealed": "sigma0 = 1.0 -> sigma_min = width, exponential, reached at "
                            "half the budget (rate = log(1/width) / (steps/2))",
          "sinkhorn": "no kernel width; default alpha; one run per seed (width None)"},
      "metric": "FID on the project's MNIST classifier features (experiments/results/"
                "mnist_classifier.npz), precision/recall/F1 with k=3, vs the MNIST test split",
      "spread": "half-range over the 2 seeds (0 = width sweep seed, 1 = second seed)",
      "sweep": sweep, "second_seed": seed1, "table": table,
      "franz_table2": FRANZ_TABLE2,
      "franz_table2_metric": "FID-50k, Inception features, DiT-S/2, 12k steps",
      "conclusions": conclusions(table),
      "caveats": ["CPU-scale model (1.34M-parameter MLP) and a budget of "
                  f"{steps} steps vs DiT-S/2 at 12k steps",
                  "classifier-feature FID on 10k samples is not comparable in value to "
                  "Inception FID-50k; only rankings are compared",
                  "2 seeds only; the width grid is coarse (4 points)"],
      "environment": _common.environment(),
  }
  _common.save_json(result, NAME, out_dir)
  plot(sweep, table, out_dir, widths, objectives)
  sample_figure(table, samples, out_dir, objectives)
  print(f"{NAME}: done in {timer.seconds:.0f}s", flush=True)
  for o, t in table.items():
    print(f"  {o:>16s} w={t['best_width']}: FID {t['fid']:.2f} ± {t['fid_spread']:.2f} "
          f"P {t['precision']:.3f} R {t['recall']:.3f} F1 {t['f1']:.3f}")
  return result


def argparse_hidden():
  import argparse
  return argparse.SUPPRESS


if __name__ == "__main__":
  main()
