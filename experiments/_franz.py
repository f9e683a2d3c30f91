"""The Franz et al. Table 2 recipe at CPU scale and its reporting, shared by
``franz_table2.py`` (the sweep) and ``franz_table2_widths.py`` (the width-choice check):
the paper's numbers, the run names and configs, the seed statistics and the verdicts, the
Markdown tables and the sample grids."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Sequence

import numpy as np

from experiments import _sweep

NAME = "franz_table2"
CONFIG = pathlib.Path(__file__).resolve().parent / "configs" / "mnist_small_cpu.py"
OBJECTIVES = ("naive-gauss", "drifting-gauss", "laplace#", "naive-laplace", "drifting-laplace")
WIDTHS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
FULL_STEPS = 8000
NORM_WARMUP = 300
LEDGER = pathlib.Path(__file__).resolve().parent / "results" / f"{NAME}_runs"
EVAL_N = 10_000
INCEPTION_N = 5000
SEEDS = (0, 1, 2)

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
  from drifting_jax.training import apply_overrides, load_config
  over: dict[str, Any] = {"objective": objective, "bandwidth": float(width), "seed": int(seed),
                          "num_steps": int(steps), "norm_warmup": NORM_WARMUP,
                          "progress": False, "sample_every": 0, "max_to_keep": 1}
  if quick:
    over.update({"norm_warmup": 4, "warmup_steps": 1, "checkpoint_every": steps,
                 "log_every": steps})
  return apply_overrides(load_config(CONFIG), over)


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


def fid(row: dict) -> float:
  v = row.get("fid_classifier_features", math.nan)
  return v if math.isfinite(v) else math.inf


def best_width(rows: list[dict], objective: str, steps: int, seed: int = 0) -> float | None:
  runs = [r for r in rows if r["objective"] == objective and r["steps"] == steps
          and r["seed"] == seed]
  if not runs:
    return None
  return min(runs, key=fid)["width"]


def seed_stats(rows: list[dict], key: str) -> dict:
  """``{key: mean, key_std: sample std, key_n, key_per_seed}`` of ``key`` over ``rows``."""
  cells = _sweep.aggregate(rows, by=(), keys=(key,))
  return {k: v for k, v in cells[0].items() if k.startswith(key)} if cells else {}


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
            "welch_p": _sweep.welch_p(ta.get(f"{key}_per_seed", ()), tb.get(f"{key}_per_seed", ())),
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


def pm(t: dict, key: str, fmt: str = ".2f") -> str:
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
        f"| {pm(t, 'inception_fid')} | {pm(t, 'inception_precision', '.3f')} "
        f"| {pm(t, 'inception_recall', '.3f')} | {pm(t, 'inception_f1', '.3f')} "
        f"| {pm(t, 'fid_classifier_features')} | {paper['fid']} | {paper['f1']} |")
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


def samples(ledger: Any, runs_dir: pathlib.Path, name: str):
  """``(uint8 images, labels)`` of a run: the ledger's copy (a ledger or its folder), else
  the run's own samples."""
  from drifting_jax.data.images import to_uint8
  ledger = pathlib.Path(getattr(ledger, "path", ledger))
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


