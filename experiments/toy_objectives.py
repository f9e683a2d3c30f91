"""Toy objective table: every objective of DESIGN.md on checkerboard and swiss roll.

Each objective trains the same generator (3-layer MLP, hidden 256, SiLU, 32-d noise) with
the same optimizer (Adam, lr 1e-3) for the same fixed budget (``STEPS`` steps, ``BATCH``
generated and ``BATCH`` data samples per step) from 3 seeds, through the library's toy
training loop (:func:`drifting_jax.training.train`). The final metrics are those of
Secretly-SM App. F.3 as the loop computes them (:func:`drifting_jax.training.evaluate`):
sliced 2-Wasserstein distance between 5,000 generated and 5,000 data samples with 200
random projections, and the biased squared Gaussian MMD (bandwidth 0.1). The SW noise
floor (SW between two independent 5,000-sample data draws) is the reference row.

Bandwidths were fixed *a priori*, once per kernel family, for data in [-1, 1]^2 (no
tuning on the test metric):

* Laplacian kernels (``*-laplace``, ``laplace#``): tau = 0.05 (Deng et al.'s toy demo,
  the library's default run, Secretly-SM App. F.3/F.4);
* Gaussian kernels (``*-gauss``, ``gauss#``, ``gauss-ds``): sigma = 0.1;
* ``gauss-annealed``: sigma(t) = max(sigma0 e^(-r t), sigma_min) with sigma0 = 1,
  sigma_min = 0.1 (the fixed Gaussian's sigma) and r = ln(sigma0/sigma_min)/(STEPS/2), so
  it reaches sigma_min halfway through the budget (Secretly-SM §6.2, Eq. (18));
* ``sinkhorn``: the library config's alpha = 0.01 (epsilon = alpha * mean cost), squared
  cost, masked self-cost, at most 500 iterations, threshold 1e-3 (Secretly-SM §6.3).

Budget (2 shared CPU cores): batch 512, 600 steps for every objective, Sinkhorn included
(it runs ~30x slower per step than the kernel objectives; its time is reported).

    python experiments/toy_objectives.py                 # full table, one process (~35 min, 2 loaded cores)
    python experiments/toy_objectives.py --objectives naive-laplace,sinkhorn
    python experiments/toy_objectives.py --quick         # smoke test (seconds)

The reported table ran as two parallel processes (Sinkhorn alone takes as long as all the
kernel objectives together), merged without retraining:

    python experiments/toy_objectives.py --out-dir /tmp/toy_obj_A --objectives \
        naive-gauss,naive-laplace,drifting-gauss,drifting-laplace,gauss#,laplace#,mmd-gauss,mmd-laplace,gauss-ds,gauss-annealed
    python experiments/toy_objectives.py --out-dir /tmp/toy_obj_B --objectives sinkhorn
    python experiments/toy_objectives.py --merge /tmp/toy_obj_A /tmp/toy_obj_B   # ~17 min wall each

Note: ``gauss-ds`` is, in the library, ``deng_field`` with the Gaussian kernel and column
normalization, i.e. the same field as ``drifting-gauss``; their rows are identical.

writes ``experiments/results/toy_objectives.json``, ``toy_objectives.png`` (SW bars) and
``toy_objectives_samples.png`` (one seed's samples per objective) and
``toy_objectives_samples.npz`` (those samples, for ``--merge``).
"""

from __future__ import annotations

import math
import pathlib
import sys
import tempfile
from typing import Any, Sequence

import jax
import numpy as np

if __package__ in (None, ""):  # run as `python experiments/toy_objectives.py`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from drifting_jax.data import toy
from drifting_jax.metrics.mmd import mmd
from drifting_jax.metrics.sliced_wasserstein import sliced_wasserstein
from drifting_jax.training import ToyConfig, generate, load_run
from experiments import _common, _sweep

NAME = "toy_objectives"
OBJECTIVES = ("naive-gauss", "naive-laplace", "drifting-gauss", "drifting-laplace",
              "gauss#", "laplace#", "mmd-gauss", "mmd-laplace", "gauss-ds",
              "gauss-annealed", "sinkhorn")
QUICK_OBJECTIVES = ("naive-laplace", "gauss#")
DATASETS = ("checkerboard", "swiss_roll")
SEEDS = (0, 1, 2)
STEPS = 600
BATCH = 512
LAPLACE_TAU = 0.05
GAUSS_SIGMA = 0.1
ANNEAL_SIGMA0 = 1.0
SINKHORN_KWARGS = {"alpha": 0.01, "cost_power": 2, "exclude_self": True, "eta": 1.0,
                   "max_iterations": 500, "threshold": 1e-3}
EVAL_SAMPLES = 5000
EVAL_PROJECTIONS = 200
EVAL_MMD_BANDWIDTH = 0.1
SCATTER_SAMPLES = 2000


def objective_settings(objective: str, *, steps: int) -> dict[str, Any]:
  """The a-priori bandwidth / objective kwargs of ``objective`` for a ``steps`` budget.

  Returns:
    ``{"bandwidth": float, "objective_kwargs": dict}`` (ToyConfig fields).
  """
  if objective == "sinkhorn":  # bandwidth unused; temperature alpha
    return {"bandwidth": GAUSS_SIGMA, "objective_kwargs": dict(SINKHORN_KWARGS)}
  if objective == "gauss-annealed":
    rate = math.log(ANNEAL_SIGMA0 / GAUSS_SIGMA) / max(steps / 2, 1)
    return {"bandwidth": GAUSS_SIGMA,
            "objective_kwargs": {"sigma0": ANNEAL_SIGMA0, "rate": rate}}
  if "laplace" in objective:
    return {"bandwidth": LAPLACE_TAU, "objective_kwargs": {}}
  if "gauss" in objective:
    return {"bandwidth": GAUSS_SIGMA, "objective_kwargs": {}}
  raise ValueError(f"`objective` {objective!r} has no a-priori bandwidth in this table")


def make_config(objective: str, dataset: str, seed: int, *, steps: int, batch: int,
                eval_samples: int = EVAL_SAMPLES) -> ToyConfig:
  """The fixed-budget ToyConfig of one (objective, dataset, seed) run."""
  log_every = max(1, min(100, steps // 4))
  return ToyConfig(dataset=dataset, objective=objective, batch_size=batch, num_steps=steps,
                   seed=seed, log_every=log_every, checkpoint_every=max(steps, 1),
                   max_to_keep=1, eval_num_samples=eval_samples,
                   eval_num_projections=EVAL_PROJECTIONS,
                   eval_mmd_bandwidth=EVAL_MMD_BANDWIDTH, progress=False,
                   lr_schedule="constant", warmup_steps=0,
                   **objective_settings(objective, steps=steps))


def _seconds_per_step(workdir: pathlib.Path, total_s: float, steps: int) -> float:
  """Median step time from ``metrics.jsonl``, skipping the first window (jit compile)."""
  import json
  path = workdir / "metrics.jsonl"
  rates = []
  if path.exists():
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rates = [r["steps_per_sec"] for r in recs if "steps_per_sec" in r][1:]
  if rates:
    return 1.0 / float(np.median(rates))
  return total_s / max(steps, 1)


def run_one(objective: str, dataset: str, seed: int, *, steps: int, batch: int,
            eval_samples: int, workroot: pathlib.Path) -> tuple[dict[str, Any], np.ndarray | None]:
  """Trains and evaluates one run.

  Returns:
    ``(record, samples)``: the run's numbers (NaN metrics and ``diverged=True`` when the
    loop stopped on a non-finite loss) and ``[SCATTER_SAMPLES, 2]`` generated samples
    (``None`` when diverged).
  """
  cfg = make_config(objective, dataset, seed, steps=steps, batch=batch,
                    eval_samples=eval_samples)
  name = f"{objective.replace('#', 'sharp')}_{dataset}_{seed}"
  rec: dict[str, Any] = {"objective": objective, "dataset": dataset, "seed": seed}
  status = _sweep.train_run(_sweep.Run(name, cfg), workroot)
  rec["train_wall_s"] = status["train_wall_s"]
  rec["seconds_per_step"] = _seconds_per_step(workroot / name, status["train_wall_s"], steps)
  if status["status"] != "ok":
    rec.update(diverged=True, error=status["status"].removeprefix("diverged: "),
               sliced_wasserstein=math.nan, mmd=math.nan)
    return rec, None
  m = status["metrics"]
  rec.update(diverged=False, sliced_wasserstein=m["sliced_wasserstein"], mmd=m["mmd"],
             sliced_wasserstein_floor_eval=m["sliced_wasserstein_floor"])
  _, state = load_run(workroot / name)
  samples = np.asarray(generate(cfg, state.params, jax.random.PRNGKey(7), SCATTER_SAMPLES))
  return rec, samples


def noise_floor(dataset: str, *, seeds: Sequence[int] = SEEDS,
                num_samples: int = EVAL_SAMPLES) -> dict[str, Any]:
  """SW and MMD between two independent ``num_samples`` data draws, per seed and mean/std."""
  sampler = toy.get(dataset)
  sw, mm = [], []
  for s in seeds:
    k1, k2, kp = jax.random.split(jax.random.PRNGKey(10_000 + s), 3)
    a, b = sampler(k1, num_samples), sampler(k2, num_samples)
    sw.append(float(sliced_wasserstein(a, b, key=kp, num_projections=EVAL_PROJECTIONS)))
    mm.append(float(mmd(a, b, bandwidth=EVAL_MMD_BANDWIDTH)))
  return {"sliced_wasserstein": sw, "mmd": mm, **_stats("sliced_wasserstein", sw),
          **_stats("mmd", mm)}


def _stats(name: str, values: Sequence[float]) -> dict[str, float]:
  """Mean and sample std (ddof=1) over the finite values; NaN when none are finite."""
  mean, std, _ = _sweep.mean_std(values)
  return {f"{name}_mean": mean, f"{name}_std": std}


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """``summary[objective][dataset]``: means ± std over seeds, divergences, ms/step."""
  out: dict[str, dict[str, dict[str, Any]]] = {}
  for r in runs:
    out.setdefault(r["objective"], {}).setdefault(r["dataset"], []).append(r)
  summary = {}
  for obj, by_ds in out.items():
    summary[obj] = {}
    for ds, rs in by_ds.items():
      summary[obj][ds] = {
          **_stats("sliced_wasserstein", [r["sliced_wasserstein"] for r in rs]),
          **_stats("mmd", [r["mmd"] for r in rs]),
          "ms_per_step": 1e3 * float(np.median([r["seconds_per_step"] for r in rs])),
          "num_seeds": len(rs),
          "num_diverged": sum(bool(r["diverged"]) for r in rs),
      }
  return summary


def run(objectives: Sequence[str], *, datasets: Sequence[str] = DATASETS,
        seeds: Sequence[int] = SEEDS, steps: int = STEPS, batch: int = BATCH,
        eval_samples: int = EVAL_SAMPLES, on_progress=None) -> dict[str, Any]:
  """Trains every (objective, dataset, seed) and computes the floors and summary.

  Objectives are the outer loop so each compiles its train step once (the loop caches
  the jitted step across datasets and seeds). ``on_progress(partial_result)`` is called
  after each objective (used to write partial JSON).

  Returns:
    ``{"runs": [...], "summary": {...}, "floor": {dataset: {...}}, "samples": {...}}``;
    ``samples[objective][dataset]`` is seed ``seeds[0]``'s ``[2000, 2]`` array (or None),
    ``samples["data"][dataset]`` a data draw.
  """
  floor = {ds: noise_floor(ds, seeds=seeds, num_samples=eval_samples) for ds in datasets}
  samples: dict[str, dict[str, Any]] = {"data": {
      ds: np.asarray(toy.get(ds)(jax.random.PRNGKey(99), SCATTER_SAMPLES)) for ds in datasets}}
  runs: list[dict[str, Any]] = []
  with tempfile.TemporaryDirectory(prefix="toy_objectives_") as tmp:
    for obj in objectives:
      for ds in datasets:
        for seed in seeds:
          rec, smp = run_one(obj, ds, seed, steps=steps, batch=batch,
                             eval_samples=eval_samples, workroot=pathlib.Path(tmp))
          runs.append(rec)
          if seed == seeds[0]:
            samples.setdefault(obj, {})[ds] = smp
          print(f"  {obj:17s} {ds:12s} seed {seed}: SW {rec['sliced_wasserstein']:.4f} "
                f"MMD {rec['mmd']:.2e} {1e3 * rec['seconds_per_step']:.1f} ms/step "
                f"({rec['train_wall_s']:.0f} s){' DIVERGED' if rec['diverged'] else ''}",
                flush=True)
      if on_progress is not None:
        on_progress({"runs": runs, "summary": summarize(runs), "floor": floor})
  return {"runs": runs, "summary": summarize(runs), "floor": floor, "samples": samples}


def _pm(mean: float, std: float, fmt: str) -> str:
  if not math.isfinite(mean):
    return "diverged"
  return f"{mean:{fmt}} ± {std:{fmt}}"


def markdown_table(summary: dict, floor: dict, datasets: Sequence[str] = DATASETS) -> str:
  """Markdown table: SW and MMD (mean ± std over seeds) per dataset, ms/step, divergences."""
  head = ["objective"]
  for ds in datasets:
    head += [f"{ds} SW", f"{ds} MMD"]
  head += ["ms/step", "diverged"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for obj, by_ds in summary.items():
    row = [f"`{obj}`"]
    for ds in datasets:
      s = by_ds.get(ds)
      row += ([_pm(s["sliced_wasserstein_mean"], s["sliced_wasserstein_std"], ".4f"),
               _pm(s["mmd_mean"], s["mmd_std"], ".1e")] if s else ["–", "–"])
    ms = [by_ds[ds]["ms_per_step"] for ds in datasets if ds in by_ds]
    div = sum(by_ds[ds]["num_diverged"] for ds in datasets if ds in by_ds)
    nseeds = sum(by_ds[ds]["num_seeds"] for ds in datasets if ds in by_ds)
    row += [f"{np.mean(ms):.1f}", f"{div}/{nseeds}"]
    lines.append("| " + " | ".join(row) + " |")
  row = ["data noise floor"]
  for ds in datasets:
    f = floor[ds]
    row += [_pm(f["sliced_wasserstein_mean"], f["sliced_wasserstein_std"], ".4f"),
            _pm(f["mmd_mean"], f["mmd_std"], ".1e")]
  lines.append("| " + " | ".join(row + ["–", "–"]) + " |")
  return "\n".join(lines)


def plot_bars(summary: dict, floor: dict, datasets: Sequence[str] = DATASETS, *,
              title: str = "", eval_samples: int = EVAL_SAMPLES):
  """Bar chart of SW (mean ± std over seeds) per objective, one bar per dataset."""
  plt = _common.pyplot()
  objs = list(summary)
  x = np.arange(len(objs))
  width = 0.8 / len(datasets)
  colors = ("tab:blue", "tab:orange", "tab:green")
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(objs) + 2), 4.2))
  for i, ds in enumerate(datasets):
    mean = np.array([summary[o].get(ds, {}).get("sliced_wasserstein_mean", np.nan)
                     for o in objs])
    std = np.array([summary[o].get(ds, {}).get("sliced_wasserstein_std", np.nan)
                    for o in objs])
    pos = x - 0.4 + width * (i + 0.5)
    ax.bar(pos, np.nan_to_num(mean, nan=0.0), width, yerr=np.nan_to_num(std), capsize=2,
           color=colors[i % 3], label=ds)
    for p, m in zip(pos, mean):
      if not np.isfinite(m):
        ax.text(p, 0, "div.", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(floor[ds]["sliced_wasserstein_mean"], color=colors[i % 3], ls="--", lw=1,
               label=f"{ds} noise floor")
  ax.set_yscale("log")
  ax.set_xticks(x)
  ax.set_xticklabels(objs, rotation=35, ha="right")
  ax.set_ylabel(f"sliced W2 ({eval_samples:,} samples, {EVAL_PROJECTIONS} proj.)")
  ax.legend(fontsize=8, ncol=2)
  ax.grid(axis="y", which="both", alpha=0.3)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return fig


def plot_samples(samples: dict, objectives: Sequence[str], datasets: Sequence[str] = DATASETS,
                 *, sw: dict | None = None):
  """Grid of scatters: rows = datasets, columns = data + one seed of each objective."""
  plt = _common.pyplot()
  cols = ["data", *objectives]
  fig, axes = plt.subplots(len(datasets), len(cols),
                           figsize=(1.6 * len(cols), 1.75 * len(datasets)), squeeze=False)
  for r, ds in enumerate(datasets):
    for c, name in enumerate(cols):
      ax = axes[r, c]
      pts = samples.get(name, {}).get(ds)
      if pts is None:
        ax.text(0.5, 0.5, "diverged", ha="center", va="center", transform=ax.transAxes)
      else:
        ax.scatter(pts[:, 0], pts[:, 1], s=0.3, alpha=0.4, linewidths=0,
                   c="0.25" if name == "data" else "tab:orange")
      ax.set_xlim(-1.3, 1.3)
      ax.set_ylim(-1.3, 1.3)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
      label = name
      if sw is not None and name in sw and ds in sw[name]:
        label += f"\nSW {sw[name][ds]:.3f}"
      if r == 0 or sw is not None:
        ax.set_title(label, fontsize=7)
      if c == 0:
        ax.set_ylabel(ds, fontsize=8)
  fig.tight_layout()
  return fig


def save_samples(samples: dict, out_dir: pathlib.Path | str) -> pathlib.Path:
  """Writes the scatter samples as ``<out_dir>/toy_objectives_samples.npz`` (for ``--merge``)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  arrays = {f"{name}|{ds}": np.asarray(pts) for name, by_ds in samples.items()
            for ds, pts in by_ds.items() if pts is not None}
  path = out_dir / f"{NAME}_samples.npz"
  np.savez_compressed(path, **arrays)
  return path


def load_part(out_dir: pathlib.Path | str) -> tuple[dict[str, Any], dict]:
  """Loads a finished run's JSON and samples from ``out_dir`` (see :func:`save_samples`)."""
  import json
  out_dir = pathlib.Path(out_dir)
  data = json.loads((out_dir / f"{NAME}.json").read_text())
  if data.get("partial", False):
    raise ValueError(f"`--merge` part {out_dir} is unfinished (partial JSON)")
  samples: dict[str, dict[str, Any]] = {}
  with np.load(out_dir / f"{NAME}_samples.npz") as z:
    for key in z.files:
      name, ds = key.split("|")
      samples.setdefault(name, {})[ds] = z[key]
  for r in data["runs"]:  # JSON stores NaN as a string
    for k in ("sliced_wasserstein", "mmd"):
      r[k] = float(r[k])
  return data, samples


def merge(parts: Sequence[tuple[dict[str, Any], dict]]) -> tuple[dict[str, Any], dict]:
  """Merges finished parts (disjoint objectives, same budget) into one result.

  Objectives are ordered as in :data:`OBJECTIVES`; the floor is the first part's (it
  depends only on the data and the evaluation size). ``wall_time_s`` is the longest part
  (parts run in parallel); ``wall_time_s_sum`` their sum.

  Raises:
    ValueError: parts with different budgets or overlapping objectives.
  """
  first = parts[0][0]
  runs, samples, seen = [], {}, set()
  for data, smp in parts:
    if data["budget"] != first["budget"] or data["quick"] != first["quick"]:
      raise ValueError("`--merge` parts must share the budget (and --quick)")
    if seen & set(data["objectives"]):
      raise ValueError(f"`--merge` parts overlap in {sorted(seen & set(data['objectives']))}")
    seen |= set(data["objectives"])
    runs += data["runs"]
    for name, by_ds in smp.items():
      samples.setdefault(name, {}).update(by_ds)
  order = [o for o in OBJECTIVES if o in seen] + sorted(seen - set(OBJECTIVES))
  runs.sort(key=lambda r: (order.index(r["objective"]), DATASETS.index(r["dataset"]),
                           r["seed"]))
  walls = [d["wall_time_s"] for d, _ in parts]
  out = {**{k: v for k, v in first.items() if k not in ("runs", "summary", "markdown_table")},
         "objectives": order,
         "objective_settings": {o: s for d, _ in parts
                                for o, s in d["objective_settings"].items()},
         "runs": runs, "summary": summarize(runs),
         "wall_time_s": max(walls), "wall_time_s_sum": sum(walls),
         "merged_from": [{"command": d["command"], "objectives": d["objectives"],
                          "wall_time_s": d["wall_time_s"]} for d, _ in parts]}
  return out, samples


def write_outputs(out: dict[str, Any], samples: dict, out_dir) -> dict[str, Any]:
  """Adds the markdown table, writes JSON, samples and both figures; prints the table."""
  budget = out["budget"]
  seeds = budget["seeds"]
  objectives = out["objectives"]
  out["markdown_table"] = markdown_table(out["summary"], out["floor"])
  _common.save_json(out, NAME, out_dir)
  save_samples(samples, out_dir)
  title = (f"{budget['steps']} steps, batch {budget['batch_size']}, {len(seeds)} seeds; "
           f"tau={LAPLACE_TAU} (laplace), sigma={GAUSS_SIGMA} (gauss)")
  _common.save_figure(plot_bars(out["summary"], out["floor"], title=title,
                                eval_samples=budget["eval_num_samples"]), NAME, out_dir)
  sw0 = {o: {r["dataset"]: r["sliced_wasserstein"] for r in out["runs"]
             if r["objective"] == o and r["seed"] == seeds[0]} for o in objectives}
  _common.save_figure(plot_samples(samples, objectives, sw=sw0), f"{NAME}_samples", out_dir)
  print(out["markdown_table"])
  print(f"wall time {out['wall_time_s']:.0f} s")
  return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  p = _common.parser(__doc__)
  p.add_argument("--objectives", type=str, default=None,
                 help="comma-separated subset of the objectives (default: all of the table)")
  p.add_argument("--merge", type=pathlib.Path, nargs="+", default=None, metavar="DIR",
                 help="no training: merge finished runs' out-dirs (disjoint --objectives, "
                      "e.g. run in parallel) into --out-dir")
  args = p.parse_args(argv)
  if args.merge:
    out, samples = merge([load_part(d) for d in args.merge])
    out["command"] = _common.command("toy_objectives.py", argv)
    return write_outputs(out, samples, args.out_dir)
  if args.objectives:
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
  else:
    objectives = QUICK_OBJECTIVES if args.quick else OBJECTIVES
  for o in objectives:
    objective_settings(o, steps=STEPS)  # validates names early
  steps, batch, seeds, eval_samples = ((20, 128, (0, 1), 1000) if args.quick
                                       else (STEPS, BATCH, SEEDS, EVAL_SAMPLES))
  budget = {"steps": steps, "batch_size": batch, "data_batch_size": batch,
            "seeds": list(seeds), "optimizer": "adam", "learning_rate": 1e-3,
            "model": "MLP 3x256 SiLU, noise_dim 32", "eval_num_samples": eval_samples,
            "eval_num_projections": EVAL_PROJECTIONS, "eval_mmd_bandwidth": EVAL_MMD_BANDWIDTH,
            "eval_mmd": "biased squared Gaussian MMD",
            "ms_per_step": "median over seeds of the median logged step time, first "
                           "(compiling) log window excluded; 2 shared CPU cores"}
  settings = {o: objective_settings(o, steps=steps) for o in objectives}
  header = {
      "experiment": "toy objective table: every DESIGN.md objective at a fixed budget",
      "command": _common.command("toy_objectives.py", argv),
      "quick": args.quick,
      "datasets": list(DATASETS),
      "objectives": list(objectives),
      "budget": budget,
      "objective_settings": settings,
      "bandwidth_note": ("a priori, once per kernel family, no tuning on the test metric: "
                         f"Laplacian tau = {LAPLACE_TAU}, Gaussian sigma = {GAUSS_SIGMA}; "
                         f"gauss-annealed sigma0 = {ANNEAL_SIGMA0} -> sigma_min = "
                         f"{GAUSS_SIGMA} reached at steps/2; sinkhorn alpha = "
                         f"{SINKHORN_KWARGS['alpha']}"),
  }

  def partial(res):
    _common.save_json({**header, "partial": True, **res}, NAME, args.out_dir)

  with _common.Timer() as timer:
    res = run(objectives, seeds=seeds, steps=steps, batch=batch, eval_samples=eval_samples,
              on_progress=partial)
  out = {**header, "partial": False, "wall_time_s": timer.seconds,
         "summary": res["summary"], "floor": res["floor"], "runs": res["runs"],
         "environment": _common.environment()}
  return write_outputs(out, res["samples"], args.out_dir)


if __name__ == "__main__":
  main()
