"""Small sweep for the default toy run (`drifting-jax train` with no arguments).

Target: sliced Wasserstein (5,000 samples, 200 projections, as `drifting-jax eval`) within
1.2× the data floor (SW between two independent 5,000-sample data sets, same projections)
in at most 3 minutes of wall time on the project's 2-core CPU. Each candidate is
``experiments/configs/toy_default_v01.py`` (the v0.1 default) with a few fields overridden
(:data:`CANDIDATES`); it trains in ``<runs-dir>/<name>`` and is skipped when its
``metrics.json`` exists, so the sweep can be interrupted and continued::

    python experiments/toy_default_search.py               # all candidates
    python experiments/toy_default_search.py --only cosine

Writes ``experiments/results/toy_default_search.json`` (one row per candidate: overrides,
wall time, SW, floor, ratio) and ``.png`` (the samples of every candidate).
"""

from __future__ import annotations

import math
import pathlib
import sys

if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common, _sweep  # noqa: E402

BASE = pathlib.Path(__file__).resolve().parent / "configs" / "toy_default_v01.py"
_COS = {"lr_schedule": "cosine", "warmup_steps": 100}

#: name -> overrides of the v0.1 default (naive-laplace τ = 0.05, Adam 1e-3, batch 2048,
#: 2000 steps). Extended one at a time as results came in.
CANDIDATES: dict[str, dict] = {
    "v01": {},
    "cosine": dict(_COS),
    "cosine_3400": dict(_COS, num_steps=3400),
    "cosine_3400_tau0.03": dict(_COS, num_steps=3400, bandwidth=0.03),
    "cosine_3400_tau0.03_seed1": dict(_COS, num_steps=3400, bandwidth=0.03, seed=1),
    "cosine_3400_tau0.03_seed2": dict(_COS, num_steps=3400, bandwidth=0.03, seed=2),
}


def run_candidate(name: str, runs_dir: pathlib.Path, *, quick: bool = False) -> dict:
  """Trains one candidate (skipped if finished) and returns its row."""
  from drifting_jax.training import apply_overrides, load_config

  overrides = dict(CANDIDATES[name])
  if quick:
    overrides.update(num_steps=3, eval_num_samples=64, eval_num_projections=8,
                     batch_size=64, progress=False, warmup_steps=min(
                         overrides.get("warmup_steps", 0), 1))
  cfg = apply_overrides(load_config(str(BASE)), overrides)
  status = _sweep.train_run(_sweep.Run(name, cfg), runs_dir)
  metrics = status.get("metrics", {})  # none when the run diverged
  sw = metrics.get("sliced_wasserstein", math.nan)
  floor = metrics.get("sliced_wasserstein_floor", math.nan)
  return {"name": name, "overrides": CANDIDATES[name], "status": status["status"],
          "wall_s": status["train_wall_s"],
          "sliced_wasserstein": sw, "floor": floor, "ratio_to_floor": sw / floor,
          "mmd": metrics.get("mmd"), "samples_png": str(runs_dir / name / "samples.png")}


def markdown(rows: list[dict]) -> str:
  """The sweep as a markdown table (what EXPERIMENTS.md shows)."""
  lines = ["| candidate | overrides of the v0.1 default | wall (s) | SW | floor | SW / floor |",
           "| --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    ov = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "–"
    lines.append(f"| {r['name']} | {ov} | {r['wall_s']:.0f} | {r['sliced_wasserstein']:.4f} "
                 f"| {r['floor']:.4f} | {r['ratio_to_floor']:.2f} |")
  return "\n".join(lines)


def _figure(rows: list[dict]):
  import matplotlib.image as mpimg
  plt = _common.pyplot()
  fig, axes = plt.subplots(1, len(rows), figsize=(3.4 * len(rows), 3.6), squeeze=False)
  for ax, row in zip(axes[0], rows):
    if pathlib.Path(row["samples_png"]).exists():
      ax.imshow(mpimg.imread(row["samples_png"]))
    ax.set_title(f"{row['name']}: SW {row['sliced_wasserstein']:.4f}\n"
                 f"{row['ratio_to_floor']:.2f}× floor, {row['wall_s'] / 60:.1f} min", fontsize=9)
    ax.axis("off")
  return fig


def main(argv=None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("--only", nargs="*", default=None)
  p.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/toy_default_search"))
  args = p.parse_args(argv)
  names = args.only or list(CANDIDATES)
  with _common.Timer() as timer:
    rows = []
    for name in names:
      rows.append(run_candidate(name, args.runs_dir, quick=args.quick))
      r = rows[-1]
      print(f"{name}: SW {r['sliced_wasserstein']:.4f} = {r['ratio_to_floor']:.2f}× floor, "
            f"{r['wall_s']:.0f} s", flush=True)
  if not args.quick:  # the table holds every finished candidate
    done = {r["name"]: r for r in rows}
    for name in CANDIDATES:
      if name not in done and (args.runs_dir / name / "status.json").exists():
        done[name] = run_candidate(name, args.runs_dir)
    rows = [done[k] for k in CANDIDATES if k in done]
  result = {"command": _common.command("toy_default_search.py", argv), "rows": rows,
            "target": "SW <= 1.2 x floor within 180 s", "wall_s": timer.seconds,
            "env": _common.environment()}
  out = args.runs_dir if args.quick else args.out_dir
  print(markdown(rows))
  _common.save_json(result, "toy_default_search", out)
  _common.save_figure(_figure(rows), "toy_default_search", out)
  return result


if __name__ == "__main__":
  main()
