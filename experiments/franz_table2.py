"""Franz et al. Table 2 / Fig. 4 at CPU scale: five objectives over the kernel-width grid,
scored with the classifier-feature FID on every run and Inception FID on the best widths.

Objectives (Franz §5.1): ``naive-gauss`` (= Gauss#, Eq. (3) with the Gaussian kernel),
``drifting-gauss`` and ``drifting-laplace`` (Deng et al.'s algorithm: one softmax over the
concatenated ``[pos ‖ neg]`` logits *and* the batch-dimension normalization, affinity
``sqrt(row-softmax · column-softmax)``, self-pairs masked; no affinity floor — the ``1e-3``
floor is in Deng et al.'s released multi-temperature code, not in the algorithm Franz App. D
analyses), ``laplace#`` (log-KDE loss, Algorithm 1) and ``naive-laplace`` (Eq. (3), Laplacian).
Widths {0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0} in kNN-normalized units.

Recipe: ``experiments/configs/mnist_small_cpu.py`` with every hyperparameter fixed across
objectives; only ``objective``, ``bandwidth``, ``seed`` and ``num_steps`` vary, and
``norm_warmup = 300`` statistics-only batches as in Franz §5.1 (the preset uses 100).
Phases (each run is ``<runs-dir>/<objective>_w<width>_s<seed>_n<steps>``, resumable). A
finished run's row (status, training signal, scores, the code commit) is written to the ledger
``experiments/results/franz_table2_runs/<run>.json`` (with ``<run>_samples.npz``, 4 uint8
samples per class); a run with a ledger entry is skipped, so committing the ledger
carries the sweep over to a fresh machine whose ``runs/`` is gone:

1. ``budget``: Naive-Gauss at width 0.2, seed 0, budgets 1k / 2k / 4k / 8k steps (the full
   recipe is 8k). The grid budget is the smallest one whose classifier FID is within
   :data:`BUDGET_TOLERANCE` of the 8k value, capped at :data:`GRID_MAX_STEPS` (rules fixed
   before the curve was measured). The cap is the issue's "cheaper variant if the grid costs
   more than ~6 h": on an idle 2-core machine the recipe trains 8k steps in 16.1 min
   (EXPERIMENTS.md §11), so a run costs ~17 min at 8k and ~9 min at 4k with its 10k-sample
   evaluation: 35 runs take ~9.9 h at 8k and ~5.3 h at 4k.
2. ``grid``: 5 × 7 runs at the grid budget, seed 0.
3. ``full``: each objective's best grid width and its two neighbours at the full 8k steps.
4. ``seeds``: seeds 1 and 2 at each objective's best full-recipe width.
5. ``inception``: Inception FID-5k / P / R / F1 for the best-width runs (3 seeds; the
   seed-0 runs are scored before the seed runs train, and each seed run right after it
   trains, so no run's checkpoint has to outlive the machine it trained on);
   ``franz_table2_table.png`` sets them beside Franz et al.'s Table 2.

``python experiments/franz_table2.py`` runs every phase still missing, then writes
``experiments/results/franz_table2.json`` and the figures; ``--phase table`` only collects.
Stop it at any time; rerunning continues. Needs MNIST (``$DRIFTING_JAX_MNIST``) and, for the
last phase, the converted Inception weights.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common  # noqa: E402

NAME = "franz_table2"
CONFIG = pathlib.Path(__file__).resolve().parent / "configs" / "mnist_small_cpu.py"
OBJECTIVES = ("naive-gauss", "drifting-gauss", "laplace#", "naive-laplace", "drifting-laplace")
WIDTHS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
FULL_STEPS = 8000
BUDGETS = (1000, 2000, 4000, FULL_STEPS)
BUDGET_TOLERANCE = 0.10  # grid budget: FID within 10 % of the full budget's
GRID_MAX_STEPS = 4000  # ... and at most this (35 runs in ~5.3 h; 8k would take ~9.9 h)
NORM_WARMUP = 300
LEDGER = pathlib.Path(__file__).resolve().parent / "results" / f"{NAME}_runs"
EVAL_N = 10_000
INCEPTION_N = 5000
SEEDS = (0, 1, 2)
PHASES = ("budget", "grid", "full", "seeds", "inception", "table")

# Franz et al., Table 2 (MNIST, FID-50k on Inception features, DiT-S/2, 12k steps).
FRANZ_TABLE2 = {
    "naive-gauss": {"fid": 6.81, "f1": 0.57, "best_width": 0.20, "label": "Gauss# / Naive-Gauss"},
    "drifting-gauss": {"fid": 20.38, "f1": 0.28, "best_width": 0.25, "label": "Drifting-Gauss"},
    "laplace#": {"fid": 17.48, "f1": 0.36, "best_width": 0.10, "label": "Laplace#"},
    "naive-laplace": {"fid": 10.68, "f1": 0.52, "best_width": 0.05, "label": "Naive-Laplace"},
    "drifting-laplace": {"fid": 48.34, "f1": 0.02, "best_width": 0.05,
                         "label": "Drifting-Laplace"},
}


def run_name(objective: str, width: float, seed: int, steps: int) -> str:
  return f"{objective.replace('#', 'sharp')}_w{width:g}_s{seed}_n{steps}"


def run_config(objective: str, width: float, seed: int, steps: int, *, quick: bool = False):
  """The fixed recipe with this objective / width / seed / budget."""
  from drifting_jax.training.image_loop import apply_image_overrides, load_image_config
  over: dict[str, Any] = {"objective": objective, "bandwidth": float(width), "seed": int(seed),
                          "num_steps": int(steps), "norm_warmup": NORM_WARMUP,
                          "progress": False, "sample_every": 0, "max_to_keep": 1}
  if quick:
    over.update({"norm_warmup": 4, "warmup_steps": 1, "checkpoint_every": steps,
                 "log_every": steps})
  return apply_image_overrides(load_image_config(CONFIG), over)


def _load(path: pathlib.Path) -> dict | None:
  return json.loads(path.read_text()) if path.exists() else None


def _commit() -> str | None:
  import subprocess
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=pathlib.Path(__file__).parent
                          ).stdout.strip() or None
  except (OSError, subprocess.CalledProcessError):
    return None


def ledger_row(ledger: pathlib.Path, name: str, *, inception: bool = False) -> dict | None:
  """The finished row of run ``name`` from the ledger (``None`` if missing, or if
  ``inception`` and it has no Inception scores yet)."""
  row = _load(ledger / f"{name}.json")
  if row is None or (inception and row.get("status") == "ok" and "inception_fid" not in row):
    return None
  return row


def write_ledger(ledger: pathlib.Path, name: str, row: dict, workdir: pathlib.Path,
                 per_class: int = 4) -> None:
  """Writes ``row`` (with the code commit and JAX version it was trained with) and, where
  the run saved samples, ``per_class`` uint8 samples of each class to the ledger."""
  from drifting_jax.data.images import to_uint8
  ledger.mkdir(parents=True, exist_ok=True)
  old = _load(ledger / f"{name}.json") or {}
  # the run's own record of what trained it first (a run retrained on a fresh machine
  # replaces its old row), else the old row's (runs trained before it was recorded)
  row = dict(row, commit=row.get("commit") or old.get("commit") or _commit(),
             jax=row.get("jax") or old.get("jax") or _common.environment()["jax"])
  (ledger / f"{name}.json").write_text(json.dumps(_common._to_builtin(row), indent=1) + "\n")
  f = workdir / "eval_samples.npz"
  if f.exists() and not (ledger / f"{name}_samples.npz").exists():
    with np.load(f) as d:
      x, y = d["samples"], d["labels"]
    keep = np.concatenate([np.nonzero(y == c)[0][:per_class] for c in range(10)])
    np.savez_compressed(ledger / f"{name}_samples.npz",
                        samples=to_uint8(x[keep], value_range=(-1.0, 1.0)), labels=y[keep])


def run_one(runs_dir: pathlib.Path, objective: str, width: float, seed: int, steps: int, *,
            eval_n: int = EVAL_N, inception_n: int | None = None,
            quick: bool = False) -> dict:
  """Trains (or resumes) one run and scores it; returns its row (``status`` 'ok'/'diverged')."""
  from drifting_jax.training.image_eval import evaluate_image_run
  from drifting_jax.training.image_loop import train_images

  workdir = runs_dir / run_name(objective, width, seed, steps)
  workdir.mkdir(parents=True, exist_ok=True)
  row = {"objective": objective, "width": width, "seed": seed, "steps": steps}
  status = _load(workdir / "status.json")
  if status is None:
    t0 = time.perf_counter()
    try:
      final = train_images(run_config(objective, width, seed, steps, quick=quick), workdir)
      status = {"status": "ok", "final_loss": float(final.get("loss", math.nan)),
                "steps_per_sec": final.get("steps_per_sec")}
    except FloatingPointError as e:  # the NaN guard stopped it: a result, not a crash
      status = {"status": f"diverged: {e}"}
    status["train_wall_s"] = time.perf_counter() - t0
    status.update(commit=_commit(), jax=_common.environment()["jax"])  # what trained it
    (workdir / "status.json").write_text(json.dumps(status, indent=2))
  row.update(status)
  row.update(training_signal(workdir))
  if not status["status"].startswith("ok"):
    return row
  ev = _load(workdir / f"eval_{eval_n}.json")
  if ev is None:
    t0 = time.perf_counter()
    ev = evaluate_image_run(str(workdir), num_samples=eval_n, fid="classifier", seed=seed,
                            out=str(workdir / f"eval_{eval_n}.json"))
    status["eval_wall_s"] = time.perf_counter() - t0
    (workdir / "status.json").write_text(json.dumps(status, indent=2))
  row.update({k: ev[k] for k in ("fid_classifier_features", "precision", "recall", "f1",
                                 "classifier_accuracy_on_samples")})
  if inception_n:
    path = workdir / f"eval_inception_{inception_n}.json"
    inc = _load(path)
    if inc is None:
      inc = evaluate_image_run(str(workdir), num_samples=inception_n, fid="inception",
                               seed=seed, out=str(path), progress=not quick)
    row.update({k: v for k, v in inc.items() if k.startswith("inception_")})
  return row


def training_signal(workdir: pathlib.Path) -> dict:
  """The drift norm at the first logged optimizer step and the largest logged gradient norm
  (``metrics.jsonl``): a run whose field is zero from the start has nothing to learn from."""
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return {}
  recs = [r for r in map(json.loads, path.read_text().splitlines())
          if r.get("phase") == "train" and "drift_norm" in r]
  if not recs:
    return {}
  return {"first_drift_norm": recs[0]["drift_norm"],
          "max_grad_norm": max(r.get("grad_norm", 0.0) for r in recs)}


def classifier_floor(n: int) -> dict:
  """The classifier-feature FID of MNIST train[:n] against test[:n], the real-vs-real value
  at the sample count of the grid's FID (the same classifier and test images)."""
  from drifting_jax.data import images as image_data
  from drifting_jax.metrics.features import classifier_fid, load_classifier
  from drifting_jax.training.image_eval import DEFAULT_MNIST_CLASSIFIER
  params = load_classifier(DEFAULT_MNIST_CLASSIFIER)
  train = image_data.load_dataset("mnist", split="train").images[:n]
  test = image_data.load_dataset("mnist", split="test").images[:n]
  return {"fid_classifier_features_real_vs_real": float(classifier_fid(params, test, train)),
          "num": int(min(len(train), len(test)))}


def _fid(row: dict) -> float:
  v = row.get("fid_classifier_features", math.nan)
  return v if math.isfinite(v) else math.inf


def choose_budget(curve: list[dict], tolerance: float = BUDGET_TOLERANCE, *,
                  max_steps: int = GRID_MAX_STEPS) -> int:
  """Smallest budget whose FID is within ``tolerance`` of the largest budget's, at most
  ``max_steps`` (the largest curve budget not above it)."""
  curve = sorted(curve, key=lambda r: r["steps"])
  ref = _fid(curve[-1])
  best = next((r["steps"] for r in curve if _fid(r) <= (1 + tolerance) * ref),
              curve[-1]["steps"])
  cap = max((r["steps"] for r in curve if r["steps"] <= max_steps), default=curve[0]["steps"])
  return min(best, cap)


def best_width(rows: list[dict], objective: str, steps: int, seed: int = 0) -> float | None:
  runs = [r for r in rows if r["objective"] == objective and r["steps"] == steps
          and r["seed"] == seed]
  if not runs:
    return None
  return min(runs, key=_fid)["width"]


def neighbours(width: float, widths: Sequence[float] = WIDTHS) -> list[float]:
  """``width`` and its two grid neighbours (the two nearest on one side at an edge)."""
  i = list(widths).index(width)
  lo = min(max(i - 1, 0), len(widths) - 3)
  return list(widths[lo:lo + 3])


def _stats(rows: list[dict], key: str) -> dict:
  v = np.array([r[key] for r in rows if key in r], dtype=float)
  if v.size == 0:
    return {}
  return {key: float(np.mean(v)), f"{key}_std": float(np.std(v, ddof=1)) if v.size > 1 else 0.0,
          f"{key}_per_seed": v.tolist(), f"{key}_n": int(v.size)}


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
  """Two-sided p-value of Welch's t-test (unequal variances) of the means of ``a`` and
  ``b``; ``None`` with fewer than two values on either side or zero spread on both."""
  from scipy import stats
  a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
  if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
    return None
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdicts(table: dict[str, dict], key: str) -> dict[str, Any]:
  """Franz's three conclusions on ``key`` (mean over seeds, lower is better): each holds when
  the mean difference exceeds the sum of the two seed standard deviations (the rule fixed
  before the seed runs; with 3 seeds a side and equal spreads it is Welch's t > 2.45, about
  p < 0.07 two-sided). With fewer than two seeds on either side there is no spread, and
  ``significant`` is ``None``. ``welch_p`` is Welch's two-sided p-value beside the call."""
  def cmp(a, b):
    ta, tb = table.get(a, {}), table.get(b, {})
    if key not in ta or key not in tb:
      return None
    diff = tb[key] - ta[key]
    noise = ta.get(f"{key}_std", 0.0) + tb.get(f"{key}_std", 0.0)
    n = min(ta.get(f"{key}_n", 1), tb.get(f"{key}_n", 1))
    return {"better": a if diff > 0 else b, "difference": diff, "seed_std_sum": noise,
            "seeds": n, "significant": bool(abs(diff) > noise) if n >= 2 else None,
            "welch_p": welch_p(ta.get(f"{key}_per_seed", ()), tb.get(f"{key}_per_seed", ())),
            f"{a}": ta[key], f"{b}": tb[key]}
  return {
      "metric": key,
      "naive_beats_original": {"gauss": cmp("naive-gauss", "drifting-gauss"),
                               "laplace": cmp("naive-laplace", "drifting-laplace")},
      "gauss_beats_laplace": {"naive": cmp("naive-gauss", "naive-laplace"),
                              "drifting": cmp("drifting-gauss", "drifting-laplace")},
      "laplace_sharp": {"vs_naive_laplace": cmp("laplace#", "naive-laplace"),
                        "vs_drifting_laplace": cmp("laplace#", "drifting-laplace")},
  }


def build_table(rows: list[dict], grid_steps: int | None, full_steps: int,
                objectives: Sequence[str]) -> dict[str, dict]:
  table = {}
  for o in objectives:
    t: dict[str, Any] = {"paper": FRANZ_TABLE2.get(o)}
    if grid_steps is not None:
      t["grid_best_width"] = best_width(rows, o, grid_steps)
    t["best_width"] = best_width(rows, o, full_steps)
    if t["best_width"] is not None:
      seeds = [r for r in rows if r["objective"] == o and r["steps"] == full_steps
               and r["width"] == t["best_width"] and r.get("status") == "ok"]
      t["seeds"] = sorted(r["seed"] for r in seeds)
      for k in ("fid_classifier_features", "precision", "recall", "f1", "inception_fid",
                "inception_precision", "inception_recall", "inception_f1"):
        t.update(_stats(seeds, k))
    table[o] = t
  return table


def plot(rows, table, grid_steps, full_steps, objectives, widths, out_dir):
  plt = _common.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  colors = plt.cm.tab10(np.arange(len(objectives)))
  for o, c in zip(objectives, colors):
    for steps, style, lab in ((grid_steps, "o-", f"{grid_steps} steps"),
                              (full_steps, "s--", f"{full_steps} steps")):
      pts = sorted((r for r in rows if r["objective"] == o and r["steps"] == steps
                    and r["seed"] == 0 and r.get("status") == "ok"), key=lambda r: r["width"])
      if not pts or (steps == full_steps and steps == grid_steps and style == "s--"):
        continue
      for ax, key in zip(axes, ("fid_classifier_features", "precision", "recall")):
        ax.plot([r["width"] for r in pts], [r[key] for r in pts], style, color=c, ms=4,
                alpha=1.0 if steps == grid_steps else 0.6,
                label=f"{o} ({lab})" if key == "recall" else None)
    t = table[o]
    if t.get("seeds"):
      for ax, key in zip(axes, ("fid_classifier_features", "precision", "recall")):
        ax.errorbar([t["best_width"]], [t[key]], yerr=[t[f"{key}_std"]], color=c, marker="*",
                    ms=12, capsize=3, ls="none")
  for ax, lab in zip(axes, ("FID-10k (classifier features)", "precision (k=3)", "recall (k=3)")):
    ax.set_xscale("log")
    ax.set_xticks(list(widths))
    ax.set_xticklabels([f"{w:g}" for w in widths])
    ax.set_xlabel("kernel width (kNN-normalized units)")
    ax.set_ylabel(lab)
  axes[0].set_yscale("log")
  axes[0].set_title("FID vs width (star: best width, mean ± std over seeds)")
  axes[2].legend(fontsize=7, loc="best")
  fig.tight_layout()
  return _common.save_figure(fig, NAME, out_dir)


def budget_figure(curve, grid_steps, out_dir):
  plt = _common.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.6))
  curve = sorted(curve, key=lambda r: r["steps"])
  ax.plot([r["steps"] for r in curve], [r["fid_classifier_features"] for r in curve], "o-")
  ax.axvline(grid_steps, color="gray", ls=":", label=f"grid budget {grid_steps}")
  ax.set_xscale("log")
  ax.set_xlabel("optimizer steps (cosine decay ends at the budget)")
  ax.set_ylabel("FID-10k (classifier features)")
  ax.set_title("Naive-Gauss, width 0.2: FID vs budget", fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return _common.save_figure(fig, f"{NAME}_budget", out_dir)


def table_figure(table, objectives, out_dir, real_vs_real: dict | None = None):
  """Table 2 side by side: our Inception FID-5k and F1 (mean ± std over seeds, at each
  objective's best width) next to Franz et al.'s FID-50k and F1; ``None`` without scores."""
  have = [o for o in objectives if "inception_fid" in table.get(o, {})]
  if not have:
    return None
  plt = _common.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
  x = np.arange(len(have))
  for ax, key, paper_key, lab in ((axes[0], "inception_fid", "fid", "FID (lower is better)"),
                                  (axes[1], "inception_f1", "f1", "F1 (higher is better)")):
    ours = [table[o].get(key, math.nan) for o in have]
    err = [table[o].get(f"{key}_std", 0.0) for o in have]
    ax.bar(x - 0.2, ours, 0.4, yerr=err, capsize=3, label="ours: Inception, 5k samples, CPU recipe")
    ax.bar(x + 0.2, [FRANZ_TABLE2[o][paper_key] for o in have], 0.4, alpha=0.6,
           label="Franz et al. Table 2: 50k samples, DiT-S/2")
    floor = (real_vs_real or {}).get(f"{key}_real_vs_real")
    if floor is not None:
      ax.axhline(floor, color="gray", ls=":", label=f"real vs real, 5k ({floor:.2f})")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{FRANZ_TABLE2[o]['label'].replace(' / ', '/')}\n"
                        f"(w {table[o]['best_width']:g} / "
                        f"{FRANZ_TABLE2[o]['best_width']:g})" for o in have], fontsize=7)
    ax.set_ylabel(lab)
  axes[0].legend(fontsize=7)
  axes[0].set_title("best width per objective (ours / paper's); error bars: seed std",
                    fontsize=9)
  fig.tight_layout()
  return _common.save_figure(fig, f"{NAME}_table", out_dir)


def _pm(t: dict, key: str, fmt: str = ".2f") -> str:
  if key not in t:
    return "—"
  n = t.get(f"{key}_n", 1)
  return (f"{t[key]:{fmt}} ± {t[f'{key}_std']:{fmt}}" if n > 1 else f"{t[key]:{fmt}}")


def markdown_table(table: dict[str, dict], objectives: Sequence[str],
                   real_vs_real: dict | None = None) -> str:
  """Table 2 beside Franz et al.'s as Markdown: per objective its best width (ours /
  paper's), the number of seeds, Inception FID-5k / P / R / F1 and classifier FID-10k as
  mean ± seed std (ddof 1; a bare value for one seed), and the paper's FID-50k and F1."""
  rvr = real_vs_real or {}
  lines = ["| objective | best width (ours / Franz) | seeds | Inception FID-5k | P | R | F1 "
           "| classifier FID-10k | Franz FID-50k | Franz F1 |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for o in objectives:
    t, paper = table.get(o, {}), FRANZ_TABLE2[o]
    w = t.get("best_width")
    lines.append(
        f"| {paper['label']} | {'—' if w is None else f'{w:g}'} / {paper['best_width']:.2f} "
        f"| {t.get('inception_fid_n', 0)} (classifier: {t.get('fid_classifier_features_n', 0)}) "
        f"| {_pm(t, 'inception_fid')} | {_pm(t, 'inception_precision', '.3f')} "
        f"| {_pm(t, 'inception_recall', '.3f')} | {_pm(t, 'inception_f1', '.3f')} "
        f"| {_pm(t, 'fid_classifier_features')} | {paper['fid']} | {paper['f1']} |")
  if "inception_fid_real_vs_real" in rvr:
    lines.append(f"| real vs real (5k) | | | {rvr['inception_fid_real_vs_real']:.2f} "
                 f"| {rvr['inception_precision_real_vs_real']:.3f} "
                 f"| {rvr['inception_recall_real_vs_real']:.3f} "
                 f"| {rvr['inception_f1_real_vs_real']:.3f} | | | |")
  return "\n".join(lines) + "\n"


def markdown_verdicts(v: dict) -> str:
  """One line per comparison of :func:`verdicts`: the two means, the difference, the sum
  of the seed stds it is weighed against, and the call."""
  out = [f"Metric: `{v['metric']}` (mean over seeds; lower is better; a difference counts "
         "when it exceeds the sum of the two seed stds)"]
  for claim, pairs in v.items():
    if claim == "metric":
      continue
    for which, c in pairs.items():
      if c is None:
        out.append(f"- {claim} / {which}: not scored yet")
        continue
      a, b = [k for k in c if k not in ("better", "difference", "seed_std_sum", "seeds",
                                          "significant", "welch_p")]
      call = {True: "significant", False: "within seed noise",
              None: "fewer than 2 seeds: no call"}[c["significant"]]
      p = "" if c.get("welch_p") is None else f", Welch p = {c['welch_p']:.3f}"
      out.append(f"- {claim} / {which}: {a} {c[a]:.2f} vs {b} {c[b]:.2f}; "
                 f"better: {c['better']} by {abs(c['difference']):.2f} "
                 f"(seed std sum {c['seed_std_sum']:.2f}, {c['seeds']} seeds{p}): {call}")
  return "\n".join(out) + "\n"


def _samples(ledger: pathlib.Path, runs_dir: pathlib.Path, name: str):
  """``(uint8 images, labels)`` of a run: the ledger's copy, else the run's own samples."""
  from drifting_jax.data.images import to_uint8
  for f, is_uint8 in ((ledger / f"{name}_samples.npz", True),
                      (runs_dir / name / "eval_samples.npz", False)):
    if f.exists():
      with np.load(f) as d:
        x, y = d["samples"], d["labels"]
      return (x if is_uint8 else to_uint8(x, value_range=(-1.0, 1.0))), y
  return None


def class_grid(x: np.ndarray, y: np.ndarray, per_class: int) -> np.ndarray:
  """``[k * 30, 10 * 30]`` uint8 image of ``k = min(per_class, fewest of any class)`` samples
  per class from ``x`` (``[N, 28, 28, 1]``) with labels ``y`` (``[N]``): one column per class
  0-9, one pixel of border around each digit."""
  k = min(per_class, *(int(np.sum(y == c)) for c in range(10)))
  keep = np.concatenate([np.nonzero(y == c)[0][:k] for c in range(10)])
  g = np.pad(x[keep][..., 0], ((0, 0), (1, 1), (1, 1)))
  _, h, wd = g.shape
  return g.reshape(10, k, h, wd).transpose(1, 2, 0, 3).reshape(k * h, 10 * wd)


def sample_figure(table, runs_dir, full_steps, objectives, out_dir, ledger, per_class: int = 4):
  plt = _common.pyplot()
  fig, axes = plt.subplots(len(objectives), 1, figsize=(7.5, 3.0 * len(objectives)),
                           squeeze=False)
  for ax, o in zip(axes[:, 0], objectives):
    ax.axis("off")
    w = table[o].get("best_width")
    got = None if w is None else _samples(ledger, runs_dir, run_name(o, w, 0, full_steps))
    if got is None:
      continue
    ax.imshow(class_grid(*got, per_class), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(f"{FRANZ_TABLE2[o]['label']} (width {w:g}, seed 0)", fontsize=10)
  fig.suptitle(f"uncurated samples at each objective's best width ({full_steps} steps);\n"
               "columns = classes 0-9", fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 0.975))
  return _common.save_figure(fig, f"{NAME}_samples", out_dir)


def main(argv: Sequence[str] | None = None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("--phase", choices=("all",) + PHASES, default="all",
                 help="run the phases up to and including this one (default: all)")
  p.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/franz_table2"))
  p.add_argument("--ledger-dir", type=pathlib.Path, default=None,
                 help=f"finished rows (default: {LEDGER.relative_to(LEDGER.parents[2])}; "
                      "<runs-dir>/ledger with --quick)")
  args = p.parse_args(argv)
  quick = args.quick
  objectives = ("naive-gauss", "laplace#") if quick else OBJECTIVES
  widths = (0.1, 0.2, 0.3) if quick else WIDTHS
  budgets = (2, 4) if quick else BUDGETS
  full = budgets[-1]
  eval_n, inc_n = (20, None) if quick else (EVAL_N, INCEPTION_N)
  last = PHASES.index("inception" if args.phase == "all" else args.phase)
  collect_only = args.phase == "table"
  runs_dir = args.runs_dir
  ledger = args.ledger_dir or (runs_dir / "ledger" if quick else LEDGER)
  rows: dict[tuple, dict] = {}

  def run(o, w, s, n, inception=False):
    key, name = (o, w, s, n), run_name(o, w, s, n)
    if key in rows and not inception:
      return rows[key]
    # collecting takes what is finished, with or without Inception scores
    row = ledger_row(ledger, name, inception=inception and not collect_only)
    if row is None and not collect_only:
      row = run_one(runs_dir, o, w, s, n, eval_n=eval_n, quick=quick,
                    inception_n=inc_n if inception else None)
      write_ledger(ledger, name, row, runs_dir / name)
    if row is None:
      return None
    if key not in rows or rows[key] != row:
      rows[key] = r = row
      print(f"{o:>16s} w={w:<5g} seed={s} {n:>5d} steps: {r['status'][:40]} "
            f"FID {r.get('fid_classifier_features', math.nan):.2f}"
            + (f" Inception FID {r['inception_fid']:.2f}" if "inception_fid" in r else ""),
            flush=True)
    return rows[key]

  result: dict[str, Any] = {"command": _common.command("franz_table2.py", argv)}
  with _common.Timer() as timer:
    curve = [r for n in budgets if (r := run("naive-gauss", 0.2, 0, n)) is not None]
    grid_steps = choose_budget(curve) if len(curve) == len(budgets) else None
    if grid_steps is not None and last >= PHASES.index("grid"):
      for o in objectives:
        for w in widths:
          run(o, w, 0, grid_steps)
    if grid_steps is not None and last >= PHASES.index("full"):
      # every objective's best grid width first, then the neighbours, so that an
      # interrupted sweep has a full-recipe run of each objective as early as possible
      best = {o: bw for o in objectives
              if (bw := best_width(list(rows.values()), o, grid_steps)) is not None}
      for o, bw in best.items():
        run(o, bw, 0, full)
      for o, bw in best.items():
        for w in neighbours(bw, widths):
          run(o, w, 0, full)
    scoring = last >= PHASES.index("inception") and inc_n and not collect_only

    def inception(seeds):
      for o in objectives:
        bw = best_width(list(rows.values()), o, full)
        for s in seeds if bw is not None else ():
          if (o, bw, s, full) in rows:
            run(o, bw, s, full, inception=True)

    if scoring:  # seed 0 first: the Table 2 comparison exists before the seed runs finish
      inception(SEEDS[:1])
    if last >= PHASES.index("seeds"):
      # seed-major (an interrupted sweep has every objective at the same number of seeds),
      # each run scored with Inception right after it trains: its checkpoint is needed
      # only while the run is on this machine
      for s in SEEDS[1:]:
        for o in objectives:
          bw = best_width(list(rows.values()), o, full)
          if bw is not None:
            run(o, bw, s, full, inception=bool(scoring))
    if scoring:
      inception(SEEDS)

  all_rows = sorted(rows.values(), key=lambda r: (r["objective"], r["steps"], r["width"],
                                                 r["seed"]))
  table = build_table(all_rows, grid_steps, full, objectives)
  floor = next((r for r in all_rows if "inception_fid_real_vs_real" in r), {})
  result.update({
      "recipe": f"{CONFIG.name} with norm_warmup={NORM_WARMUP}; only objective, bandwidth, "
                "seed and num_steps vary",
      "objectives": list(objectives), "widths": list(widths), "budgets": list(budgets),
      "budget_rule": f"grid budget = smallest budget with classifier FID within "
                     f"{BUDGET_TOLERANCE:.0%} of the {full}-step FID",
      "grid_steps": grid_steps, "full_steps": full, "eval_samples": eval_n,
      "inception_samples": inc_n,
      "inception_real_vs_real": {k: floor[k] for k in floor if k.endswith("_real_vs_real")},
      "classifier_real_vs_real": classifier_floor(eval_n) if all_rows else {},
      "budget_curve": curve, "runs": all_rows, "table": table,
      "verdicts": {"inception": verdicts(table, "inception_fid"),
                   "classifier": verdicts(table, "fid_classifier_features")},
      "franz_table2": FRANZ_TABLE2,
      "franz_metric": "FID-50k on Inception features (ADM suite), DiT-S/2, 12k steps",
      "wall_s": timer.seconds, "environment": _common.environment()})
  out = runs_dir if quick else args.out_dir
  _common.save_json(result, NAME, out)
  if curve and grid_steps is not None:
    budget_figure(curve, grid_steps, out)
    plot(all_rows, table, grid_steps, full, objectives, widths, out)
    sample_figure(table, runs_dir, full, objectives, out, ledger)
    table_figure(table, objectives, out, result["inception_real_vs_real"])
  md = (markdown_table(table, objectives, result["inception_real_vs_real"]) + "\n"
        + "\n".join(markdown_verdicts(result["verdicts"][k]) for k in ("inception",
                                                                      "classifier")))
  (pathlib.Path(out) / f"{NAME}_table.md").write_text(md)
  print(md)
  for o, t in table.items():
    print(f"{o:>16s}: grid best {t.get('grid_best_width')}, full best {t.get('best_width')}, "
          f"FID {t.get('fid_classifier_features', math.nan):.2f} "
          f"± {t.get('fid_classifier_features_std', math.nan):.2f}, Inception FID "
          f"{t.get('inception_fid', math.nan):.2f} (paper {FRANZ_TABLE2[o]['fid']})")
  return result


if __name__ == "__main__":
  main()
