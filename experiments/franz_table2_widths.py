"""Franz Table 2's width choice checked on Inception FID: every full-recipe width, scored.

``franz_table2.py`` picks each objective's best width on the fast classifier-feature FID
(every run) and scores only that width with Inception FID; the two metrics disagree at this
quality level (EXPERIMENTS.md §13). This script retrains the three full-recipe widths of each
objective (the best grid width and its two neighbours, read from the sweep's committed
ledger; exactly ``franz_table2.run_config``, seeds given by ``--seed``) and scores every run
on both metrics, so that the best width *on Inception FID* can be read off and set beside
the classifier-feature choice.

Two commands, so the training can run where it is cheap:

* ``train --samples DIR --seed S`` trains and samples (10,000 EMA samples, classes in turn,
  sampling seed 0; stored as uint8, which Inception scoring quantizes to anyway) and writes
  ``DIR/<objective>_s<S>.npz`` (``w<width>`` arrays and ``labels``) with its ``.json``
  (per-run training record: status, steps/s, loss, first drift norm, device, JAX version,
  matmul precision). Resumable: a width already in the npz is skipped. The sweep's chosen
  width trains last; ``--widths`` trains other widths instead. On a GPU, run one process
  per objective (``--objectives``) and set ``JAX_DEFAULT_MATMUL_PRECISION=highest`` so float32 products are not rounded to TF32 (the
  CPU runs are full float32).
* ``score --samples DIR`` computes classifier FID-10k / P / R / F1 and Inception FID-5k /
  P / R / F1 (first 5,000 samples, balanced) of every sampled run without a row in the
  ledger ``experiments/results/franz_table2_widths_runs/`` (the sweep's chosen widths,
  which have its three seeds already, after the others; seed 0 first in each group),
  writes each row as it finishes (resumable; ~9 min per run on 2 CPU cores, mostly
  Inception), then ``franz_table2_widths.json`` / ``.png`` / ``_table.md`` /
  ``_samples.png`` from the ledger: per width the seed mean ± std of both metrics, the
  sweep's own 3-seed Inception FID at its chosen width (the same width trained on another
  machine: a check of the hardware effect), Table 2 and the verdicts at the widths chosen
  on Inception FID, and uncurated samples at every scored width.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Sequence

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common  # noqa: E402
from experiments import _franz as ft  # noqa: E402
from experiments import _sweep  # noqa: E402

NAME = "franz_table2_widths"
LEDGER = pathlib.Path(__file__).resolve().parent / "results" / f"{NAME}_runs"
NUM_SAMPLES = 10_000
SAMPLE_SEED = 0


def widths_from_ledger(ledger: pathlib.Path, objective: str, steps: int = ft.FULL_STEPS,
                       seed: int = 0) -> list[float]:
  """The widths of ``objective``'s finished seed-``seed`` runs at ``steps`` in the ledger,
  worst classifier FID first (the sweep's chosen width last: a cut-off job has the others)."""
  rows = []
  for f in sorted(ledger.glob(f"{objective.replace('#', 'sharp')}_w*_s{seed}_n{steps}.json")):
    row = json.loads(f.read_text())
    if row.get("objective") == objective and row.get("status") == "ok":
      rows.append(row)
  return [float(r["width"]) for r in sorted(rows, key=ft.fid, reverse=True)]


def _key(width: float) -> str:
  return f"w{width:g}"


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  if not path.exists():
    return {}
  with np.load(path) as d:
    return {k: d[k] for k in d.files}


def train_objective(objective: str, widths: Sequence[float], out: pathlib.Path,
                    runs_dir: pathlib.Path, *, seed: int = 0, steps: int = ft.FULL_STEPS,
                    num: int = NUM_SAMPLES, quick: bool = False) -> dict:
  """Trains the seed-``seed`` run of ``objective`` at each width (skipping widths already
  recorded in ``out/<objective>_s<seed>.json``, diverged ones included), samples ``num`` EMA
  images of each, and updates the npz and the ``.json`` after every run (so a cut-off job
  keeps what finished)."""
  import jax

  from drifting_jax.data.images import to_uint8
  from drifting_jax.training import sample_run
  stem = f"{objective.replace('#', 'sharp')}_s{seed}"
  npz, rec_path = out / f"{stem}.npz", out / f"{stem}.json"
  arrays = _read_npz(npz)
  records = json.loads(rec_path.read_text()) if rec_path.exists() else {}
  for w in widths:
    if _key(w) in records:
      continue
    name = ft.run_name(objective, w, seed, steps)
    workdir = runs_dir / name
    status = _sweep.train_run(
        _sweep.Run(name, ft.run_config(objective, w, seed, steps, quick=quick)), runs_dir)
    rec = {k: status[k] for k in ("status", "final_loss", "steps_per_sec", "train_wall_s")
           if k in status}
    rec.update(**ft.training_signal(workdir), device=jax.devices()[0].device_kind,
               jax=jax.__version__,
               matmul_precision=str(jax.config.jax_default_matmul_precision))
    if rec["status"] == "ok":
      png = workdir / "widths_samples.png"
      sample_run(workdir, num=num, out=png, seed=SAMPLE_SEED)
      with np.load(png.with_suffix(".npz")) as d:
        arrays[_key(w)] = to_uint8(d["samples"], value_range=(-1.0, 1.0))
        arrays["labels"] = d["labels"]
    records[_key(w)] = dict(rec, objective=objective, width=w, seed=seed, steps=steps)
    np.savez_compressed(npz, **arrays)
    rec_path.write_text(json.dumps(_common._to_builtin(records), indent=1) + "\n")
    print(f"{objective:>16s} w={w:<5g}: {rec['status'][:40]} "
          f"{rec.get('steps_per_sec') or math.nan:.1f} it/s, {rec['train_wall_s']:.0f} s",
          flush=True)
  return records


def _sets(samples_dir: pathlib.Path, objectives: Sequence[str]) -> list[tuple[str, float, int]]:
  """``(objective, width, seed)`` of every sampled run in ``samples_dir``."""
  out = []
  for o in objectives:
    for f in samples_dir.glob(f"{o.replace('#', 'sharp')}_s*.npz"):
      seed = int(f.stem.rsplit("_s", 1)[1])
      with np.load(f) as d:
        out += [(o, float(k[1:]), seed) for k in d.files if k.startswith("w")]
  return out


def score_order(sets, chosen: dict[str, float | None], objectives: Sequence[str]):
  """The widths the sweep did *not* choose first (the chosen ones have three seeds of
  Inception scores from the sweep already; retrained, they only check the hardware effect),
  seed 0 before seed 1 within each group."""
  return sorted(sets, key=lambda t: (t[1] == chosen.get(t[0]), t[2],
                                     list(objectives).index(t[0]), t[1]))


def ledger_name(objective: str, width: float, seed: int) -> str:
  return f"{objective.replace('#', 'sharp')}_w{width:g}_s{seed}"


def score_samples(samples_dir: pathlib.Path, ledger: pathlib.Path, objectives: Sequence[str],
                  chosen: dict[str, float | None], *, num_classifier: int = NUM_SAMPLES,
                  num_inception: int = ft.INCEPTION_N, progress: bool = True) -> None:
  """Scores every sampled run without a ledger row (classifier FID / P / R / F1 on
  ``num_classifier`` samples, Inception on the first ``num_inception``) and writes its row,
  with its training record and 4 uint8 samples per class, to ``ledger`` (resumable)."""
  from drifting_jax.data import images as image_data
  from drifting_jax.metrics.features import classifier_features, load_classifier
  from drifting_jax.metrics.image_scores import (DEFAULT_MNIST_CLASSIFIER, classifier_scores,
                                                inception_scores)
  todo = [t for t in score_order(_sets(samples_dir, objectives), chosen, objectives)
          if not (ledger / f"{ledger_name(*t)}.json").exists()]
  if not todo:
    return
  ledger.mkdir(parents=True, exist_ok=True)
  params = load_classifier(DEFAULT_MNIST_CLASSIFIER)
  f_real = classifier_features(
      params, image_data.load_dataset("mnist", split="test").images[:num_classifier])
  for o, w, seed in todo:
    stem = f"{o.replace('#', 'sharp')}_s{seed}"
    with np.load(samples_dir / f"{stem}.npz") as d:
      u8, y = d[_key(w)], d["labels"]
    recs = json.loads((samples_dir / f"{stem}.json").read_text())
    x = u8.astype(np.float32) / 127.5 - 1.0
    row = dict(recs.get(_key(w), {}), objective=o, width=w, seed=seed)
    row.update(classifier_scores(x[:num_classifier], y[:num_classifier],
                                 real_features=f_real, params=params))
    row.update(inception_scores(x[:num_inception], dataset="mnist", n=num_inception,
                                progress=progress))
    name = ledger_name(o, w, seed)
    _sweep.Ledger(ledger).put(name, row)
    keep = np.concatenate([np.nonzero(y == c)[0][:4] for c in range(10)])
    np.savez_compressed(ledger / f"{name}_samples.npz", samples=u8[keep], labels=y[keep])
    print(f"{o:>16s} w={w:<5g} seed={seed}: classifier FID "
          f"{row['fid_classifier_features']:.2f}, Inception FID {row['inception_fid']:.2f}",
          flush=True)


def collect(ledger: pathlib.Path) -> list[dict]:
  return _sweep.Ledger(ledger).rows()


METRICS = ("fid_classifier_features", "inception_fid", "inception_precision",
           "inception_recall", "inception_f1")


def aggregate(rows: list[dict], objectives: Sequence[str]) -> dict[str, dict[float, dict]]:
  """``{objective: {width: mean, std (ddof 1), per-seed values and count of each metric}}``."""
  out: dict[str, dict[float, dict]] = {}
  for o in objectives:
    for w in sorted({r["width"] for r in rows if r["objective"] == o}):
      runs = [r for r in rows if r["objective"] == o and r["width"] == w]
      cell = {"seeds": sorted(r["seed"] for r in runs)}
      for k in METRICS:
        cell.update(ft.seed_stats(runs, k))
      out.setdefault(o, {})[w] = cell
  return out


def pooled_rows(retrained: list[dict], sweep: list[dict]) -> list[dict]:
  """One run per (objective, width, seed): the sweep's own run where it has Inception scores
  (its machine), else the retrained one; each tagged with ``source``."""
  got = {(r["objective"], r["width"], r["seed"]): dict(r, source="sweep") for r in sweep
         if r.get("steps") == ft.FULL_STEPS and "inception_fid" in r}
  for r in retrained:
    got.setdefault((r["objective"], r["width"], r["seed"]), dict(r, source="retrained"))
  return sorted(got.values(), key=lambda r: (r["objective"], r["width"], r["seed"]))


def selected_table(pooled: dict[str, dict[float, dict]]) -> dict[str, dict]:
  """Per objective, the width with the lowest seed-mean Inception FID and its cell."""
  table = {}
  for o, cells in pooled.items():
    w = best_by(cells, "inception_fid")
    if w is not None:
      table[o] = dict(cells[w], best_width=w)
  return table


def best_by(cells: dict[float, dict], key: str) -> float | None:
  """The width with the lowest seed-mean ``key``."""
  have = {w: c[key] for w, c in cells.items() if math.isfinite(c.get(key, math.nan))}
  return min(have, key=have.get) if have else None


def markdown(agg: dict, objectives: Sequence[str], seeds_table: dict | None = None) -> str:
  """One line per width (seed mean ± std of both metrics; the best width on each marked),
  and at the sweep's chosen width its own 3-seed Inception FID for comparison."""
  lines = ["| objective | width | seeds | classifier FID-10k | Inception FID-5k | P | R | F1 "
           "| sweep's 3 seeds (CPU) at this width |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for o in objectives:
    cells = agg.get(o, {})
    bc, bi = best_by(cells, "fid_classifier_features"), best_by(cells, "inception_fid")
    t = (seeds_table or {}).get(o, {})
    for w, c in cells.items():
      ref = (ft.pm(t, "inception_fid") if w == t.get("best_width") else "")
      lines.append(
          f"| {ft.FRANZ_TABLE2[o]['label']} | {w:g} | {len(c['seeds'])} "
          f"| {ft.pm(c, 'fid_classifier_features')}{' **best**' if w == bc else ''} "
          f"| {ft.pm(c, 'inception_fid')}{' **best**' if w == bi else ''} "
          f"| {ft.pm(c, 'inception_precision', '.3f')} | {ft.pm(c, 'inception_recall', '.3f')} "
          f"| {ft.pm(c, 'inception_f1', '.3f')} | {ref} |")
  return "\n".join(lines) + "\n"


def figure(agg, objectives, out_dir, floor=None):
  plt = _common.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  colors = dict(zip(objectives, plt.cm.tab10(np.arange(len(objectives)))))
  cells = [dict(c, objective=o, width=w) for o in objectives for w, c in agg.get(o, {}).items()]
  for ax, key in zip(axes, ("inception_fid", "fid_classifier_features")):
    _sweep.plot_mean_std(ax, cells, x="width", key=key, group="objective", colors=colors)
  if floor is not None:
    axes[0].axhline(floor, color="gray", ls=":", label=f"real vs real, 5k ({floor:.2f})")
  ticks = sorted({w for cells in agg.values() for w in cells})
  for ax, lab in zip(axes, ("Inception FID-5k", "FID-10k (classifier features)")):
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{w:g}" for w in ticks])
    ax.minorticks_off()
    ax.set_xlabel("kernel width (kNN-normalized units)")
    ax.set_ylabel(lab)
  axes[0].set_title("mean ± std over seeds (one run per seed: the sweep's where it has one, "
                    "else the retrained run)", fontsize=8)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  return _common.save_figure(fig, NAME, out_dir)


def samples_figure(pooled: dict[str, dict[float, dict]], objectives, ledger, out_dir,
                   per_class: int = 2):
  """Uncurated seed-0 samples at every width with an Inception score, one row per objective
  (the retrained run's where there is one, else the sweep's), titled with the width's
  seed-mean Inception FID-5k."""
  plt = _common.pyplot()
  ncol = max((len(pooled.get(o, {})) for o in objectives), default=0)
  if not ncol:
    return None
  fig, axes = plt.subplots(len(objectives), ncol, figsize=(3.3 * ncol, 1.05 * len(objectives)
                                                            + 0.6), squeeze=False)
  for row, o in zip(axes, objectives):
    for ax in row:
      ax.axis("off")
    for ax, (w, cell) in zip(row, sorted(pooled.get(o, {}).items())):
      got = (ft.samples(ledger, ledger, ledger_name(o, w, 0))
             or ft.samples(ft.LEDGER, ft.LEDGER, ft.run_name(o, w, 0, ft.FULL_STEPS)))
      if got is None:
        continue
      ax.imshow(ft.class_grid(*got, per_class), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
      ax.set_title(f"{ft.FRANZ_TABLE2[o]['label']}, width {w:g}: Inception FID "
                   f"{cell['inception_fid']:.1f}", fontsize=7)
  fig.suptitle("uncurated samples (seed 0) at each scored width; columns = classes 0-9",
               fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.97))
  return _common.save_figure(fig, f"{NAME}_samples", out_dir)


def main(argv: Sequence[str] | None = None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("command", choices=("train", "score"))
  p.add_argument("--objectives", nargs="+", default=list(ft.OBJECTIVES),
                 choices=ft.OBJECTIVES)
  p.add_argument("--samples", type=pathlib.Path, default=pathlib.Path("runs/franz_widths"),
                 help="where `train` writes <objective>_s<seed>.npz/.json and `score` reads "
                      "them")
  p.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/franz_widths"))
  p.add_argument("--ledger-dir", type=pathlib.Path, default=None,
                 help=f"`train`: the sweep's ledger (widths; default {ft.LEDGER.name}/); "
                      f"`score`: this script's (default {LEDGER.name}/; <samples>/ledger "
                      "with --quick)")
  p.add_argument("--seed", type=int, default=0, help="`train`: the training seed")
  p.add_argument("--widths", type=float, nargs="+", default=None,
                 help="`train`: these widths instead of the sweep's full-recipe widths "
                      "(e.g. one narrower than every full-recipe width)")
  args = p.parse_args(argv)
  args.samples.mkdir(parents=True, exist_ok=True)
  if args.command == "train":
    steps, num = (4, 40) if args.quick else (ft.FULL_STEPS, NUM_SAMPLES)
    sweep_ledger = args.ledger_dir or ft.LEDGER
    return {o: train_objective(o, args.widths or widths_from_ledger(sweep_ledger, o),
                               args.samples, args.runs_dir, seed=args.seed, steps=steps,
                               num=num, quick=args.quick)
            for o in args.objectives}
  ledger = args.ledger_dir or (args.samples / "ledger" if args.quick else LEDGER)
  sweep_json = _common.RESULTS_DIR / f"{ft.NAME}.json"
  seeds_table = (json.loads(sweep_json.read_text()).get("table", {})
                 if sweep_json.exists() and not args.quick else {})
  chosen = {o: seeds_table.get(o, {}).get("best_width") for o in args.objectives}
  with _common.Timer() as timer:
    num_c, num_i = (20, 20) if args.quick else (NUM_SAMPLES, ft.INCEPTION_N)
    score_samples(args.samples, ledger, args.objectives, chosen, num_classifier=num_c,
                  num_inception=num_i, progress=not args.quick)
  rows = [r for r in collect(ledger) if r["objective"] in args.objectives]
  agg = aggregate(rows, args.objectives)
  floor = next((r["inception_fid_real_vs_real"] for r in rows), None)
  sweep_rows = (json.loads(sweep_json.read_text()).get("runs", [])
                if sweep_json.exists() and not args.quick else [])
  pooled = pooled_rows(rows, [r for r in sweep_rows if r["objective"] in args.objectives])
  pooled_agg = aggregate(pooled, args.objectives)
  selected = selected_table(pooled_agg)
  verdicts = ft.verdicts(selected, "inception_fid")
  rvr = {k: v for k, v in (rows[0] if rows else {}).items() if k.endswith("_real_vs_real")}
  result = {
      "command": _common.command("franz_table2_widths.py", argv),
      "recipe": "franz_table2.run_config at the full budget; samples: sampling seed 0, "
                "classes in turn, uint8",
      "runs": rows, "widths": {o: {f"{w:g}": c for w, c in cells.items()}
                               for o, cells in agg.items()},
      "best_width": {o: {"classifier": best_by(agg.get(o, {}), "fid_classifier_features"),
                         "inception": best_by(agg.get(o, {}), "inception_fid"),
                         "sweep_choice": chosen[o], "paper": ft.FRANZ_TABLE2[o]["best_width"]}
                     for o in args.objectives},
      "inception_selected": {
          "rule": "per objective the width with the lowest seed-mean Inception FID-5k over "
                  "all scored runs, one run per seed (the sweep's where it has one)",
          "pooled_runs": [{k: r.get(k) for k in ("objective", "width", "seed", "source",
                                                  "inception_fid")} for r in pooled],
          "table": selected, "verdicts": verdicts},
      "scoring_wall_s": timer.seconds, "environment": _common.environment()}
  out = args.samples if args.quick else args.out_dir
  _common.save_json(result, NAME, out)
  figure(pooled_agg, args.objectives, out, floor=floor)
  samples_figure(pooled_agg, args.objectives, ledger, out)
  md = (markdown(agg, args.objectives, seeds_table)
        + "\nTable 2 at the widths chosen on Inception FID (one run per seed; the sweep's "
          "where it has one):\n\n" + ft.markdown_table(selected, args.objectives, rvr)
        + "\n" + ft.markdown_verdicts(verdicts))
  (pathlib.Path(out) / f"{NAME}_table.md").write_text(md)
  print(md)
  return result


if __name__ == "__main__":
  main()
