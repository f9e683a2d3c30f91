"""Feature-space drifting on MNIST with a learned encoder (Deng et al. §3.4) on 2 CPU cores.

Every run goes through the library's trainer and the shared sweep machinery (resumable: a
run with a ledger row is skipped; rows in ``experiments/results/mnist_features_runs/``):

* encoders (the ``encoder`` task): ``mae`` (``experiments/configs/mnist_mae.py``),
  ``mae_cls`` (the same with the class head, ``cls_weight = 1``) and ``mae_deep`` (three
  blocks in the 7×7 stage, for the block-output streams); the ``random`` control needs no
  training (``feature_encoder="mae_random"``);
* pixel-space pre-training: ``mnist_small_cpu`` for ``PIXEL_STEPS`` steps;
* generators: ``experiments/configs/mnist_features_cpu.py`` initialized from the pixel run
  (or from a pixel-space recipe's run, :data:`INIT_FROM`), with the recipe's feature sets /
  encoder (:data:`RECIPES`); and pixel-space recipes of
  ``mnist_small_cpu``: the baseline at the same wall-clock budget and generator variants
  for a fixed number of steps (beside the pixel run, scored with ``drifting-jax eval``);

each generator scored with Inception FID-5k / precision / recall / F1 against MNIST test
images, beside the real-vs-real value (``drifting-jax eval --fid inception``). The table
(mean ± std over the seeds that finished) goes to ``experiments/results/mnist_features.json``
/ ``.md`` with a figure and the samples of every recipe::

    python experiments/mnist_features.py                    # every recipe, seed 0
    python experiments/mnist_features.py --only feat_loc_ms --seeds 0 1 2
    python experiments/mnist_features.py --table-only       # collect the ledger
    python experiments/mnist_features.py --only pixels_readout2 --seeds 0 1 2 --score-pixel-runs
    python experiments/mnist_features.py --quick            # smoke test (seconds)

Needs MNIST (``$DRIFTING_JAX_MNIST``) and the converted Inception weights.
"""

from __future__ import annotations

import math
import pathlib
import sys
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common, _sweep  # noqa: E402

NAME = "mnist_features"
CONFIGS = pathlib.Path(__file__).resolve().parent / "configs"
LEDGER = pathlib.Path(__file__).resolve().parent / "results" / f"{NAME}_runs"
PIXEL_STEPS = 6000
#: the pixel runs' name prefix, and the table's name of the scored ones (``--score-pixel-runs``)
PIXEL_RECIPE = f"pixels_n{PIXEL_STEPS}"
INCEPTION_N = 5000

#: encoder name -> overrides of mnist_mae.py
ENCODERS: dict[str, dict[str, Any]] = {
    "mae": {}, "mae_cls": {"cls_weight": 1.0},
    # three blocks in the 7×7 stage: the smallest change of mae_mnist_cpu that records a
    # block output ("stage2_block1"; every second block that is not the stage's last), for
    # the ablation's "+ block outputs" row
    "mae_deep": {"encoder_overrides": {"blocks": [1, 1, 3]}}}
_LOC_MS = {"stages": ["stage1", "stage2"], "feature_sets": ["loc", "mean_std"],
           "include_pixels": True}
# + 2×2 patch mean/std (4×4 divides neither 14×14 nor 7×7)
_PATCH = {**_LOC_MS, "feature_sets": ["loc", "mean_std", "patch_mean_std"], "patch_sizes": [2]}
# the two-layer read-out (experiments/configs/mnist_readout2_cpu.py's generator)
_READOUT2 = {"readout_kernel": 3, "readout_channels": 8, "readout_depth": 2}
#: recipe -> (encoder, "random", "pixels" (the feature phase on the pixels alone) or None
#: (pixel space), overrides (of mnist_features_cpu.py, whose generator is replaced by that of
#: the pixel run it starts from; of mnist_small_cpu.py for pixel space, whose steps are the
#: same-budget count for :data:`BUDGETS` recipes), what)
RECIPES: dict[str, tuple[str | None, dict[str, Any], str]] = {
    # the first three rows ran at lr 3e-4 (mnist_features_cpu's rate then; now 1e-3)
    "feat_loc_ms": ("mae", {"feature_kwargs": _LOC_MS, "learning_rate": 3e-4},
                    "MAE features: 14×14 and 7×7 per location + global mean/std + pixels"),
    "feat_random_loc_ms": ("random", {"feature_kwargs": _LOC_MS, "learning_rate": 3e-4},
                           "the same with a random (untrained) encoder: does learning matter"),
    "feat_cls_loc_ms": ("mae_cls", {"feature_kwargs": _LOC_MS, "learning_rate": 3e-4},
                        "the same with the encoder trained with the class head"),
    "pixels_same_budget": (None, {}, "mnist_small_cpu in pixel space, same wall clock"),
    # the lever the ablation points to, the generator: a local nonlinear read-out (8 maps,
    # a hidden 3×3 conv with SiLU, then the 3×3 filter) in pixel space for the pixel
    # phase's 6,000 steps, beside pixels_n6000 (mnist_small_cpu's 4 maps + one 3×3 filter)
    "pixels_readout2": (None, {"num_steps": PIXEL_STEPS, "model_overrides": _READOUT2},
        "pixel space, 6,000 steps, read-out 8 maps + hidden 3×3 conv (SiLU) + 3×3 conv"),
    # the lever "a feature phase that moves the generator": the pixel phase's learning rate
    "feat_loc_ms_lr1e3": ("mae", {"feature_kwargs": _LOC_MS, "learning_rate": 1e-3},
                          "feat_loc_ms at the pixel phase's learning rate 1e-3 (not 3e-4)"),
    # Deng et al.'s feature-set ablation (their Table 5 in spirit), each + pixels, at the
    # learning rate that moves the generator (feat_loc_ms_lr1e3 is the loc + mean/std row)
    "feat_pixels_only": ("pixels", {"learning_rate": 1e-3},
                         "ablation (lr 1e-3): the same phase on the pixels alone (no encoder)"),
    "feat_loc": ("mae", {"feature_kwargs": {**_LOC_MS, "feature_sets": ["loc"]},
                         "learning_rate": 1e-3},
                 "ablation (lr 1e-3): per-location features only (+ pixels)"),
    "feat_loc_ms_patch": ("mae", {"feature_kwargs": _PATCH, "learning_rate": 1e-3},
        "ablation (lr 1e-3): + 2×2 patch mean/std (4×4 divides neither 14×14 nor 7×7)"),
    # the last row needs block outputs, which mae_mnist_cpu (one block per stage) does not
    # record: both rows on the deeper encoder, so that the block streams are the only change
    "feat_loc_ms_patch_deep": ("mae_deep", {"feature_kwargs": _PATCH, "learning_rate": 1e-3},
        "ablation (lr 1e-3): feat_loc_ms_patch on the encoder with 3 blocks at 7×7"),
    "feat_all": ("mae_deep", {"feature_kwargs": {
        **_PATCH, "feature_sets": [*_PATCH["feature_sets"], "blocks"]}, "learning_rate": 1e-3},
        "ablation (lr 1e-3): + the mean/std of the 7×7 stage's second block output"),
    # the two levers together: the patch recipe's feature phase on the two-layer read-out,
    # initialized from pixels_readout2 (INIT_FROM) instead of pixels_n6000
    "feat_patch_readout2": ("mae", {"feature_kwargs": _PATCH, "learning_rate": 1e-3},
        "feat_loc_ms_patch's phase from pixels_readout2 (the two-layer read-out): "
        "mnist_features_cpu"),
    "feat_pixels_only_readout2": ("pixels", {"learning_rate": 1e-3},
        "its control: the same phase from pixels_readout2 on the pixels alone (no encoder)"),
    # and its same-wall-clock control: the read-out generator in pixel space for as long as
    # feat_patch_readout2's whole pipeline (encoder + pixel phase + feature phase) takes
    "pixels_readout2_same_budget": (None, {"model_overrides": _READOUT2},
        "pixels_readout2's generator in pixel space, feat_patch_readout2's wall clock"),
}
#: feature recipes initialized from a pixel-space recipe's run of the same seed (with that
#: recipe's ``model_overrides``) instead of ``mnist_small_cpu``'s ``PIXEL_STEPS`` run
INIT_FROM: dict[str, str] = {"feat_patch_readout2": "pixels_readout2",
                             "feat_pixels_only_readout2": "pixels_readout2"}


def with_init_recipes(recipes: Sequence[str]) -> list[str]:
  """``recipes`` with the pixel-space recipe of every :data:`INIT_FROM` entry before it."""
  out: list[str] = []
  for r in recipes:
    src = INIT_FROM.get(r)
    if src is not None and src not in out:
      out.append(src)
    if r not in out:
      out.append(r)
  return out


def encoder_run(name: str, *, quick: bool = False) -> _sweep.Run:
  from drifting_jax.training import apply_overrides, load_config
  over = dict(ENCODERS[name])
  if quick:
    over.update(num_steps=3, eval_num=50, warmup_steps=1, progress=False)
  return _sweep.Run(f"encoder_{name}", apply_overrides(load_config(CONFIGS / "mnist_mae.py"),
                                                        over), {"encoder": name})


def pixel_run(seed: int, steps: int, *, quick: bool = False) -> _sweep.Run:
  from drifting_jax.training import apply_overrides, load_config
  over: dict[str, Any] = {"num_steps": steps, "seed": seed, "sample_every": 0,
                          "progress": False}
  if quick:
    over.update(num_steps=3, norm_warmup=6, warmup_steps=1, checkpoint_every=3)
  return _sweep.Run(f"pixels_n{steps}_s{seed}", apply_overrides(
      load_config(CONFIGS / "mnist_small_cpu.py"), over), {"seed": seed, "steps": steps})


#: same-wall-clock pixel baselines -> the feature recipe whose whole pipeline's wall clock
#: they get (they train the generator that recipe's pixel phase trains)
BUDGETS: dict[str, str] = {"pixels_same_budget": "feat_loc_ms_lr1e3",
                           "pixels_readout2_same_budget": "feat_patch_readout2"}


def same_budget_steps(rows: Sequence[dict], baseline: str = "pixels_same_budget"
                      ) -> int | None:
  """Steps of the pixel baseline ``baseline``: the wall clock of its :data:`BUDGETS` recipe's
  pipeline (its encoder's training, its pixel phase — the ``PIXEL_STEPS`` run, or its
  :data:`INIT_FROM` recipe's run — and the feature phase; each the fastest of its finished
  runs with a ``train_wall_s``: rows of resumed runs come without one,
  :func:`_sweep.without_resumed_walls`) times the pixel phase's rate (its fastest run), so
  that the pixel baseline trains as long as the whole feature recipe. ``None`` until all
  three ran.
  """
  budget = BUDGETS[baseline]
  ok = [r for r in rows if r.get("status") == "ok" and r.get("train_wall_s")]
  enc_name = encoder_run(RECIPES[budget][0]).name
  enc = [r["train_wall_s"] for r in ok if r.get("name") == enc_name]
  prefix = f"{INIT_FROM.get(budget, PIXEL_RECIPE)}_s"
  pix = [r for r in ok if r.get("name", "").startswith(prefix) and r.get("steps_per_sec")]
  feat = [r["train_wall_s"] for r in ok if r.get("recipe") == budget]
  if not (enc and pix and feat):
    return None
  wall = min(enc) + min(r["train_wall_s"] for r in pix) + min(feat)
  return int(wall * max(r["steps_per_sec"] for r in pix))


def describe(recipe: str) -> str:
  """The table's "what" of a recipe (or of the scored pixel runs)."""
  if recipe == PIXEL_RECIPE:
    return (f"the pixel runs alone ({PIXEL_STEPS:,} steps of mnist_small_cpu, one 3×3 "
            f"filter read-out): every feature phase's initialization")
  return RECIPES[recipe][2]


def score_pixel_run(row: dict, runs_dir: pathlib.Path, ledger: _sweep.Ledger, *, n: int,
                    quick: bool) -> dict:
  """The finished pixel run of ``row`` with its Inception FID-``n`` metrics (sampling seed =
  the run's seed; cached in its run directory), written back to its ledger row."""
  if row.get("status") != "ok" or "inception_fid" in row:
    return row
  return ledger.put(row["name"], row | inception_metrics(runs_dir / row["name"],
                                                         int(row["seed"]), n=n, quick=quick))


def generator_run(recipe: str, seed: int, runs_dir: pathlib.Path, *,
                  pixel_steps: int | None = None, quick: bool = False) -> _sweep.Run:
  """The generator run of ``recipe`` (the pixel baseline trains ``pixel_steps`` steps)."""
  from drifting_jax.training import apply_overrides, load_config
  encoder, over, _ = RECIPES[recipe]
  over = dict(over, seed=seed, progress=False)
  small = load_config(CONFIGS / "mnist_small_cpu.py")
  if encoder is None:  # pixel space (BUDGETS: steps from the measured pixel rate)
    cfg = small
    over = dict(over, sample_every=0)
    over["num_steps"] = pixel_steps or over.get("num_steps", cfg.num_steps)
  else:  # from the pixel run of this seed, with that run's generator
    cfg = load_config(CONFIGS / "mnist_features_cpu.py")
    src = INIT_FROM.get(recipe)
    if src is None:  # mnist_small_cpu's PIXEL_STEPS run
      over["init_from"] = str(runs_dir / pixel_run(seed, PIXEL_STEPS, quick=quick).name)
      over["model_overrides"] = dict(small.model_overrides)
    else:  # a pixel-space recipe's run
      over["init_from"] = str(runs_dir / f"{src}_s{seed}")
      over["model_overrides"] = dict(RECIPES[src][1]["model_overrides"])
    if encoder == "pixels":  # the feature phase's schedule on the pixel stream alone
      over["feature_encoder"], over["feature_kwargs"] = None, {}
    else:
      over["feature_encoder"] = ("mae_random" if encoder == "random" else
                                 f"mae:{runs_dir / encoder_run(encoder, quick=quick).name}")
    if encoder == "random":
      over["feature_kwargs"] = dict(over["feature_kwargs"], encoder="mae_mnist_cpu")
  if quick:  # (the 60k-image feature table would dominate a 2-step smoke run)
    over.update(num_steps=2, norm_warmup=4, warmup_steps=1, checkpoint_every=2,
                sample_every=0)
    if encoder is not None:
      over["cache_real_features"] = False
  return _sweep.Run(f"{recipe}_s{seed}", apply_overrides(cfg, over),
                    {"recipe": recipe, "seed": seed, "encoder": encoder or "none"})


def inception_metrics(workdir: pathlib.Path, seed: int, *, n: int, quick: bool) -> dict:
  """Inception FID-``n`` / precision / recall / F1 of a finished run (sampling seed
  ``seed``; cached in its run directory), with their real-vs-real values."""
  m = _sweep.evaluate_cached(workdir, f"eval_inception_{n}", num_samples=n,
                             fid="inception", seed=seed, progress=not quick)
  return {k: v for k, v in m.items() if k.startswith("inception_")}


def score(run: _sweep.Run, workdir: pathlib.Path, status: dict, *, n: int,
          quick: bool) -> dict:
  return inception_metrics(workdir, int(run.params.get("seed", 0)), n=n, quick=quick) | {
      "train_wall_s": status["train_wall_s"]}


def main(argv: Sequence[str] | None = None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("--only", nargs="*", default=None, help="recipes (default: all)")
  p.add_argument("--seeds", type=int, nargs="+", default=[0])
  p.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/mnist_features"))
  p.add_argument("--table-only", action="store_true", help="only collect the ledger")
  p.add_argument("--score-pixel-runs", action="store_true",
                 help="also score the seeds' pixel runs (the feature recipes' initialization "
                      "and pixels_readout2's control) with Inception FID")
  args = p.parse_args(argv)
  quick = args.quick
  recipes = args.only or list(RECIPES)
  unknown = sorted(set(recipes) - set(RECIPES))
  if unknown:
    raise SystemExit(f"unknown recipes {unknown}; known: {sorted(RECIPES)}")
  recipes = with_init_recipes(recipes)
  runs_dir = args.runs_dir
  ledger = _sweep.Ledger(runs_dir / "ledger" if quick else LEDGER)
  n = 20 if quick else INCEPTION_N
  log = lambda row: print(f"{row['name']}: {row['status'][:40]} "
                          f"{row.get('inception_fid', math.nan):.2f}", flush=True)
  with _common.Timer() as timer:
    # the encoders and pixel runs the recipes need, then the recipes
    encoders = sorted({RECIPES[r][0] for r in recipes} & set(ENCODERS))
    enc_rows = _sweep.sweep([encoder_run(e, quick=quick) for e in encoders],
                            runs_dir=runs_dir, ledger=ledger, collect_only=args.table_only,
                            on_row=log, score=lambda run, wd, st: {
                                k: st["metrics"][k] for k in ("knn_accuracy", "recon_loss")
                                if k in st["metrics"]})
    need_pix = args.score_pixel_runs or any(
        RECIPES[r][0] is not None and r not in INIT_FROM for r in recipes)
    pix_rows = _sweep.sweep([pixel_run(s, PIXEL_STEPS, quick=quick) for s in args.seeds],
                            runs_dir=runs_dir, ledger=ledger, on_row=log,
                            collect_only=args.table_only or not need_pix)
    if args.score_pixel_runs and not args.table_only:
      pix_rows = [score_pixel_run(r, runs_dir, ledger, n=n, quick=quick) for r in pix_rows]
    # a scored pixel run is a row of its own (the initialization every feature phase starts
    # from, and the one-filter control of pixels_readout2)
    rows = [dict(r, recipe=PIXEL_RECIPE) for r in pix_rows if "inception_fid" in r]
    for recipe in recipes:
      steps = None
      if recipe in BUDGETS:  # the wall clock of its budget recipe's whole pipeline
        steps = same_budget_steps(_sweep.without_resumed_walls(ledger.rows(), runs_dir),
                                  recipe)
        if steps is None and not quick:
          print(f"{recipe}: waits for a finished {BUDGETS[recipe]} (its budget)", flush=True)
          continue
      runs = [generator_run(recipe, s, runs_dir, pixel_steps=steps, quick=quick)
              for s in args.seeds]
      rows += _sweep.sweep(runs, runs_dir=runs_dir, ledger=ledger, on_row=log,
                           collect_only=args.table_only,
                           score=lambda run, wd, st: score(run, wd, st, n=n, quick=quick))
  # a resumed run's train_wall_s is its last session's: not in the wall-clock column
  walls = _sweep.without_resumed_walls(rows, runs_dir)
  resumed = [r["name"] for r, w in zip(rows, walls)
             if r.get("train_wall_s") != w.get("train_wall_s")]
  cells = _sweep.aggregate([r for r in walls if r.get("status") == "ok"], by=("recipe",),
                           keys=("inception_fid", "inception_precision", "inception_recall",
                                 "inception_f1", "train_wall_s"))
  floor = next((r["inception_fid_real_vs_real"] for r in rows
                if "inception_fid_real_vs_real" in r), math.nan)
  md = _sweep.markdown_table(
      ["recipe", "what", "seeds", f"Inception FID-{n}", "P", "R", "F1", "generator train (min)"],
      [[c["recipe"], describe(c["recipe"]), c.get("inception_fid_n", 0),
        _sweep.pm(c.get("inception_fid"), _spread(c, "inception_fid")),
        _sweep.pm(c.get("inception_precision"), _spread(c, "inception_precision"), ".3f"),
        _sweep.pm(c.get("inception_recall"), _spread(c, "inception_recall"), ".3f"),
        _sweep.pm(c.get("inception_f1"), _spread(c, "inception_f1"), ".3f"),
        f"{c['train_wall_s'] / 60:.1f}" if "train_wall_s" in c else "—"] for c in cells])
  md += f"\n\nreal vs real (Inception FID-{n}): {floor:.2f}\n"
  if resumed:
    md += (f"\ngenerator train (min): mean over the runs trained in one session (resumed: "
           f"{', '.join(sorted(resumed))})\n")
  paired = paired_differences(rows)
  for p in paired:
    md += (f"\n{p['recipe']} − {p['control']} seed by seed (seeds "
           f"{', '.join(map(str, p['seeds']))}): "
           f"FID {_signed(p['fid_diff'], p['fid_diff_std'], 2)}, precision "
           f"{_signed(p['precision_diff'], p['precision_diff_std'], 3)}, recall "
           f"{_signed(p['recall_diff'], p['recall_diff_std'], 3)}\n")
  result = {"command": _common.command("mnist_features.py", argv), "encoders": enc_rows,
            "pixel_runs": pix_rows, "runs": rows, "table": cells, "paired": paired,
            "inception_fid_real_vs_real": floor, "wall_s": timer.seconds,
            "environment": _common.environment()}
  out = runs_dir if quick else args.out_dir
  _common.save_json(result, NAME, out)
  (pathlib.Path(out) / f"{NAME}.md").write_text(md)
  if cells:
    _common.save_figure(_figure(cells, rows, runs_dir, floor), NAME, out)
  print(md)
  return result


#: (recipe, control) pairs compared seed by seed (same seeds; the feature recipes also start
#: from the same pixel run)
PAIRS = (("pixels_readout2", PIXEL_RECIPE),             # the two-layer read-out, same seeds
         ("feat_loc_ms_lr1e3", "feat_pixels_only"),   # do the features matter at all
         ("feat_loc_ms_patch", "feat_loc_ms_lr1e3"),  # + patch mean/std
         ("feat_all", "feat_loc_ms_patch_deep"),      # + block outputs (deeper encoder)
         ("feat_patch_readout2", "feat_pixels_only_readout2"),  # the features, better generator
         ("feat_patch_readout2", "pixels_readout2_same_budget"))  # vs training pixels longer


def paired_differences(rows: Sequence[dict]) -> list[dict]:
  """Per-seed ``recipe − control`` differences of FID, precision and recall for
  :data:`PAIRS` (the seeds both finished; the same seed and sampling seed — for the feature
  recipes the same pixel run — so the initialization's share of the seed-to-seed spread
  cancels): mean and sample std over the seeds (std None for one seed)."""
  ok = {(r["recipe"], r["seed"]): r for r in rows
        if r.get("status") == "ok" and "inception_fid" in r}
  out = []
  for recipe, control in PAIRS:
    seeds = sorted(s for (rc, s) in ok if rc == recipe and (control, s) in ok)
    if not seeds:
      continue
    p = {"recipe": recipe, "control": control, "seeds": seeds}
    for key in ("fid", "precision", "recall"):
      d = [ok[(recipe, s)][f"inception_{key}"] - ok[(control, s)][f"inception_{key}"]
           for s in seeds]
      m, sd, k = _sweep.mean_std(d)
      p.update({f"{key}_diff": m, f"{key}_diff_std": sd if k > 1 else None,
                f"{key}_diff_per_seed": d})
    out.append(p)
  return out


def _signed(mean: float, std: float | None, digits: int) -> str:
  """``"+0.025 ± 0.007"`` (a signed mean; no spread for one seed; ``0.00`` never ``-0.00``)."""
  m = f"{mean + 0.0:+.{digits}f}".replace("-0." + "0" * digits, "0." + "0" * digits)
  m = m.replace("+0." + "0" * digits, "0." + "0" * digits)
  return m if std is None else f"{m} ± {std:.{digits}f}"


def _spread(cell: dict, key: str) -> float | None:
  """The sample std over seeds, or None for a single seed (no spread measured, not ± 0)."""
  return cell.get(f"{key}_std") if cell.get(f"{key}_n", 0) > 1 else None


def _figure(cells, rows, runs_dir: pathlib.Path, floor: float, *, cols: int = 4):
  """Inception FID per recipe (horizontal bars, mean ± std over its seeds) above the seed-0
  sample grid of every recipe, ``cols`` grids per row."""
  import matplotlib.image as mpimg
  plt = _common.pyplot()
  grid_rows = math.ceil(len(cells) / cols)
  fig = plt.figure(figsize=(3.2 * cols, 0.32 * len(cells) + 1.6 + 3.1 * grid_rows))
  gs = fig.add_gridspec(1 + grid_rows, cols,
                        height_ratios=[0.32 * len(cells) + 1.0] + [3.0] * grid_rows)
  ax = fig.add_subplot(gs[0, :])
  names = [c["recipe"] for c in cells]
  fids = [c.get("inception_fid", np.nan) for c in cells]
  ax.barh(range(len(cells)), fids, xerr=[_spread(c, "inception_fid") or 0.0 for c in cells],
          capsize=3, color="tab:blue")
  for i, (c, f) in enumerate(zip(cells, fids)):  # seeds per bar (error bar: std when > 1)
    ax.annotate(f" {f:.2f} (n={c.get('inception_fid_n', 0)})",
                (f + (_spread(c, "inception_fid") or 0.0), i), va="center", fontsize=7)
  ax.axvline(floor, color="gray", ls=":", label=f"real vs real ({floor:.2f})")
  ax.set_yticks(range(len(cells)))
  ax.set_yticklabels(names, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlim(0, np.nanmax(fids + [floor]) * 1.2)
  ax.set_xlabel(f"Inception FID-{INCEPTION_N} (lower is better)")
  ax.legend(fontsize=7, loc="lower right")
  for k, c in enumerate(cells):
    a = fig.add_subplot(gs[1 + k // cols, k % cols])
    seed0 = next((r for r in rows if r.get("recipe") == c["recipe"]), None)
    grid = runs_dir / seed0["name"] / "samples.png" if seed0 else None
    if grid is not None and grid.exists():
      a.imshow(mpimg.imread(grid), cmap="gray")
    n = c.get("inception_fid_n", 0)
    a.set_title(f"{c['recipe']} (samples: seed {seed0['seed'] if seed0 else '-'})\n"
                f"FID {c.get('inception_fid', math.nan):.1f}"
                + (f" (mean of {n} seeds)" if n > 1 else ""), fontsize=8)
    a.axis("off")
  fig.tight_layout()
  return fig


if __name__ == "__main__":
  main()
