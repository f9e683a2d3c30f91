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

from experiments import _common, _sweep  # noqa: E402
from experiments._franz import (CONFIG, EVAL_N, FRANZ_TABLE2, FULL_STEPS,  # noqa: E402
                                INCEPTION_N, LEDGER, NAME, NORM_WARMUP, OBJECTIVES, SEEDS,
                                WIDTHS, best_width, class_grid, fid as _fid, markdown_table,
                                markdown_verdicts, pm as _pm, run_config, run_name,
                                samples as _samples, seed_stats, training_signal, verdicts)

BUDGETS = (1000, 2000, 4000, FULL_STEPS)
BUDGET_TOLERANCE = 0.10  # grid budget: FID within 10 % of the full budget's
GRID_MAX_STEPS = 4000  # ... and at most this (35 runs in ~5.3 h; 8k would take ~9.9 h)
PHASES = ("budget", "grid", "full", "seeds", "inception", "table")


def ledger_row(ledger: _sweep.Ledger, name: str, *, inception: bool = False) -> dict | None:
  """The finished row of run ``name`` from the ledger (``None`` if missing, or if
  ``inception`` and it has no Inception scores yet)."""
  row = ledger.get(name)
  if row is None or (inception and row.get("status") == "ok" and "inception_fid" not in row):
    return None
  return row


def run_one(runs_dir: pathlib.Path, objective: str, width: float, seed: int, steps: int, *,
            eval_n: int = EVAL_N, inception_n: int | None = None,
            quick: bool = False) -> dict:
  """Trains (or resumes) one run and scores it; returns its row (``status`` 'ok'/'diverged')."""
  name = run_name(objective, width, seed, steps)
  run = _sweep.Run(name, run_config(objective, width, seed, steps, quick=quick),
                   {"objective": objective, "width": width, "seed": seed, "steps": steps})

  def score(run, workdir, status):
    ev = _sweep.evaluate_cached(workdir, f"eval_{eval_n}", num_samples=eval_n,
                                fid="classifier", seed=seed)
    row = {k: ev[k] for k in ("fid_classifier_features", "precision", "recall", "f1",
                              "classifier_accuracy_on_samples")}
    if inception_n:
      inc = _sweep.evaluate_cached(workdir, f"eval_inception_{inception_n}",
                                   num_samples=inception_n, fid="inception", seed=seed,
                                   progress=not quick)
      row.update({k: v for k, v in inc.items() if k.startswith("inception_")})
    return row

  row, = _sweep.sweep([run], runs_dir=runs_dir, score=score)
  row.pop("name", None)
  row.update(training_signal(runs_dir / name))
  return row


def save_samples(ledger: _sweep.Ledger, name: str, workdir: pathlib.Path,
                 per_class: int = 4) -> None:
  """Copies ``per_class`` uint8 samples of each class of a scored run into the ledger."""
  from drifting_jax.data.images import to_uint8
  f, out = workdir / "eval_samples.npz", ledger.path / f"{name}_samples.npz"
  if f.exists() and not out.exists():
    ledger.path.mkdir(parents=True, exist_ok=True)
    with np.load(f) as d:
      x, y = d["samples"], d["labels"]
    keep = np.concatenate([np.nonzero(y == c)[0][:per_class] for c in range(10)])
    np.savez_compressed(out, samples=to_uint8(x[keep], value_range=(-1.0, 1.0)),
                        labels=y[keep])


def classifier_floor(n: int) -> dict:
  """The classifier-feature FID of MNIST train[:n] against test[:n], the real-vs-real value
  at the sample count of the grid's FID (the same classifier and test images)."""
  from drifting_jax.data import images as image_data
  from drifting_jax.metrics.features import classifier_fid, load_classifier
  from drifting_jax.metrics.image_scores import DEFAULT_MNIST_CLASSIFIER
  params = load_classifier(DEFAULT_MNIST_CLASSIFIER)
  train = image_data.load_dataset("mnist", split="train").images[:n]
  test = image_data.load_dataset("mnist", split="test").images[:n]
  return {"fid_classifier_features_real_vs_real": float(classifier_fid(params, test, train)),
          "num": int(min(len(train), len(test)))}


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


def neighbours(width: float, widths: Sequence[float] = WIDTHS) -> list[float]:
  """``width`` and its two grid neighbours (the two nearest on one side at an edge)."""
  i = list(widths).index(width)
  lo = min(max(i - 1, 0), len(widths) - 3)
  return list(widths[lo:lo + 3])


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
        t.update(seed_stats(seeds, k))
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
  ledger = _sweep.Ledger(args.ledger_dir or (runs_dir / "ledger" if quick else LEDGER))
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
      row = ledger.put(name, row)
      save_samples(ledger, name, runs_dir / name)
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
