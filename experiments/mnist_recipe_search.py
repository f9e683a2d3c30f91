"""Search for a class-conditional MNIST recipe that trains on 2 CPU cores in ≤ 20 minutes and
scores well on the standard metric (Inception FID-5k, with P / R / F1 on Inception features).

Every recipe is ``experiments/configs/mnist_recipe_base.py`` with a few fields overridden
(:data:`RECIPES`); ``v01`` is the previous preset, ``mnist_small_cpu_v01.py``. Each recipe
trains in ``<runs-dir>/<name>`` (orbax checkpoints: an interrupted run resumes), is scored
once with ``drifting-jax eval --fid both`` at ``--num-samples`` (its ``eval_<n>.json``), and
the table of all finished recipes, with the 5k real-vs-real floor beside it, is written to
``experiments/results/mnist_recipe_search.json`` and ``.png`` (one uncurated sample grid per
recipe). Rerunning skips finished work, so the search can be stopped and continued::

    python experiments/mnist_recipe_search.py                      # all recipes
    python experiments/mnist_recipe_search.py --only base wide     # some of them
    python experiments/mnist_recipe_search.py --table-only         # rebuild the table

Training time is the wall time of the training sessions (a killed session's time is lost;
then the row says so). Needs MNIST (``$DRIFTING_JAX_MNIST``) and the converted Inception
weights (``drifting-jax convert-inception``).
"""

from __future__ import annotations

import pathlib
import sys


if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common, _sweep  # noqa: E402

CONFIGS = pathlib.Path(__file__).resolve().parent / "configs"
BASE = CONFIGS / "mnist_recipe_base.py"

#: name -> (config file, overrides, one-line description). Chosen before seeing results,
#: extended one at a time as results came in (the JSON records the order they ran in).
RECIPES: dict[str, tuple[pathlib.Path, dict, str]] = {
    "v01": (CONFIGS / "mnist_small_cpu_v01.py", {},
            "v0.1 preset: 3-layer MLP 512, linear output, 5×128×128, 5k steps, EMA 0.995"),
    "base": (BASE, {}, "3×1024 MLP + LayerNorm + tanh, naive-gauss 0.2, 5×96×96, 8k steps"),
    "long": (BASE, {"num_steps": 16000}, "base with 16k steps"),
    "resid4": (BASE, {"model_overrides": {"residual": True, "depth": 4}},
               "base with a residual trunk of 5 × 1024 (depth 4)"),
    "bw0.3": (BASE, {"bandwidth": 0.3}, "base with kernel width 0.3"),
    "ms3": (BASE, {"objective_kwargs": {"scales": (0.5, 1.0, 2.0)}},
            "base with widths {0.1, 0.2, 0.4}, each unit-RMS (Deng-style multi-scale)"),
    "conv3": (BASE, {"model_overrides": {"readout_kernel": 3, "readout_channels": 4}},
              "base whose read-out is 4 maps + a 3×3 conv (a learned local output filter)"),
    "big": (BASE, {"num_pos": 192, "num_gen": 192, "num_steps": 6000},
            "base with 5×192×192 per step, 6k steps"),
}


def run_recipe(name: str, runs_dir: pathlib.Path, *, num_samples: int, seed: int = 0,
               quick: bool = False) -> dict:
  """Trains (or resumes) and evaluates one recipe; returns its row."""
  from drifting_jax.training import apply_overrides, load_config

  config_path, overrides, desc = RECIPES[name]
  cfg = apply_overrides(load_config(config_path), dict(overrides))
  if quick:
    cfg = apply_overrides(cfg, {"num_steps": 4, "norm_warmup": 6, "warmup_steps": 2,
                                "sample_every": 0, "checkpoint_every": 4, "progress": False})
  row = {"name": name, "description": desc, "config": str(config_path.name),
         "overrides": overrides}

  def score(run, workdir, status):
    return {"train_wall_s": status["train_wall_s"],
            **_sweep.evaluate_cached(workdir, f"eval_{num_samples}", num_samples=num_samples,
                                     fid="both", seed=seed, progress=not quick)}

  (done,) = _sweep.sweep([_sweep.Run(name, cfg)], runs_dir=runs_dir, score=score)
  return {**done, **row}


def markdown(rows: list[dict]) -> str:
  """The search as a markdown table (what EXPERIMENTS.md shows)."""
  n = rows[0]["inception_num"] if rows else 0
  lines = [f"| recipe | what | train (min) | Inception FID-{n} | P | R | F1 | "
           "FID (classifier features) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(f"| {r['name']} | {r['description']} | {r['train_wall_s'] / 60:.1f} | "
                 f"{r['inception_fid']:.2f} | {r['inception_precision']:.3f} | "
                 f"{r['inception_recall']:.3f} | {r['inception_f1']:.3f} | "
                 f"{r['fid_classifier_features']:.2f} |")
  if rows:
    r = rows[0]
    lines.append(f"| real vs real | {n} MNIST train vs the same {n} test images | – | "
                 f"{r['inception_fid_real_vs_real']:.2f} | "
                 f"{r['inception_precision_real_vs_real']:.3f} | "
                 f"{r['inception_recall_real_vs_real']:.3f} | "
                 f"{r['inception_f1_real_vs_real']:.3f} | – |")
  return "\n".join(lines)


def _figure(rows: list[dict], runs_dir: pathlib.Path):
  import matplotlib.image as mpimg
  plt = _common.pyplot()
  fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.6), squeeze=False)
  for ax, row in zip(axes[0], rows):
    grid = runs_dir / row["name"] / "samples.png"
    if grid.exists():
      ax.imshow(mpimg.imread(grid), cmap="gray")
    ax.set_title(f"{row['name']}\nInception FID-{row['inception_num']} "
                 f"{row['inception_fid']:.1f}", fontsize=9)
    ax.axis("off")
  return fig


def main(argv=None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("--only", nargs="*", default=None, help="recipe names (default: all)")
  p.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/mnist_recipe_search"))
  p.add_argument("--num-samples", type=int, default=5000)
  p.add_argument("--table-only", action="store_true", help="only collect finished rows")
  args = p.parse_args(argv)
  names = args.only or list(RECIPES)
  unknown = sorted(set(names) - set(RECIPES))
  if unknown:
    raise SystemExit(f"unknown recipes {unknown}; known: {sorted(RECIPES)}")
  n = 20 if args.quick else args.num_samples
  rows = []
  with _common.Timer() as timer:
    for name in names:
      done = (args.runs_dir / name / f"eval_{n}.json").exists()
      if args.table_only and not done:
        continue
      rows.append(run_recipe(name, args.runs_dir, num_samples=n, quick=args.quick))
      r = rows[-1]
      print(f"{name}: train {r['train_wall_s'] / 60:.1f} min, Inception FID-{n} "
            f"{r['inception_fid']:.2f} (real {r['inception_fid_real_vs_real']:.2f}), "
            f"P {r['inception_precision']:.3f} R {r['inception_recall']:.3f}", flush=True)
  if args.table_only or not args.quick:
    # the table holds every finished recipe, also those of earlier invocations
    finished = {r["name"]: r for r in rows}
    for name in RECIPES:
      if name not in finished and (args.runs_dir / name / f"eval_{n}.json").exists():
        finished[name] = run_recipe(name, args.runs_dir, num_samples=n)
    rows = [finished[k] for k in RECIPES if k in finished]
  result = {"command": _common.command("mnist_recipe_search.py", argv), "num_samples": n,
            "rows": rows, "wall_s": timer.seconds, "env": _common.environment()}
  if rows:
    print(markdown(rows))
    out = args.out_dir if not args.quick else args.runs_dir
    _common.save_json(result, "mnist_recipe_search", out)
    _common.save_figure(_figure(rows, args.runs_dir), "mnist_recipe_search", out)
  return result


if __name__ == "__main__":
  main()
