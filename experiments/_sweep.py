"""Shared sweep machinery of the experiment scripts: run a list of configs through the
library's trainer, skip finished runs, score them, keep a resumable ledger, aggregate over
seeds (mean ± sample std), write Markdown tables and figures.

Every sweep script follows one pattern::

    runs = [_sweep.Run(name, cfg, {"objective": o, "width": w, "seed": s}) for ...]
    rows = _sweep.sweep(runs, runs_dir=..., ledger=_sweep.Ledger(path),
                        score=lambda run, workdir: _sweep.evaluate_cached(workdir, ...))
    table = _sweep.aggregate(rows, by=("objective", "width"), keys=("fid", "f1"))
    print(_sweep.markdown_table(["objective", "FID"], [[...], ...]))

A run's directory is ``<runs_dir>/<name>``: the trainer's run directory (resumed if it holds
checkpoints) plus ``status.json`` (the training outcome, written once training has ended:
``ok`` or ``diverged: <message>`` when the NaN guard stopped it — a result, not a crash)
and ``eval_*.json`` (cached scores). A ledger keeps one committed JSON row per finished run,
so a sweep interrupted anywhere continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Ledger", "Run", "aggregate", "code_commit", "evaluate_cached", "markdown_table",
           "mean_std", "plot_mean_std", "pm", "sweep", "train_run", "welch_p"]


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep.

  Attributes:
    name: unique name (its directory under ``runs_dir`` and its ledger entry).
    config: the run's configuration (a ``drifting_jax.training.RunConfig``).
    params: the settings that vary across the sweep (copied into the run's row).
  """

  name: str
  config: Any
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def code_commit() -> str | None:
  """The short git commit of the code (None outside a checkout)."""
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=pathlib.Path(__file__).parent
                          ).stdout.strip() or None
  except (OSError, subprocess.CalledProcessError):
    return None


def _jax_version() -> str:
  import jax
  return jax.__version__


def _load(path: pathlib.Path) -> dict | None:
  return json.loads(path.read_text()) if path.exists() else None


def _to_builtin(obj: Any) -> Any:
  from experiments import _common
  return _common._to_builtin(obj)


def train_run(run: Run, runs_dir: pathlib.Path | str, **train_kwargs: Any) -> dict[str, Any]:
  """Trains (or resumes) ``run`` in ``<runs_dir>/<run.name>`` unless it has ended before.

  Returns its status record (cached in ``status.json``): ``status`` (``"ok"`` or
  ``"diverged: <message>"``), ``final_loss``, ``steps_per_sec``, ``train_wall_s`` (the
  session that finished), ``metrics`` (the trainer's final metrics), ``commit`` and ``jax``
  (what trained it).

  Args:
    run: the run.
    runs_dir: the sweep's run directories.
    **train_kwargs: passed to :func:`drifting_jax.training.train` (``dataset``,
      ``objective``, ``hooks``).
  """
  from drifting_jax.training import train

  workdir = pathlib.Path(runs_dir) / run.name
  workdir.mkdir(parents=True, exist_ok=True)
  status = _load(workdir / "status.json")
  if status is not None:
    return status
  t0 = time.perf_counter()
  try:
    metrics = train(run.config, workdir, **train_kwargs).metrics
    status = {"status": "ok", "final_loss": float(metrics.get("loss", _last_loss(workdir))),
              "steps_per_sec": metrics.get("steps_per_sec"), "metrics": metrics}
  except FloatingPointError as e:  # the NaN guard stopped it: a result, not a crash
    status = {"status": f"diverged: {e}"}
  status.update(train_wall_s=time.perf_counter() - t0, commit=code_commit(),
                jax=_jax_version())
  (workdir / "status.json").write_text(json.dumps(_to_builtin(status), indent=2) + "\n")
  return status


def _last_loss(workdir: pathlib.Path) -> float:
  """The loss of the last ``metrics.jsonl`` record that has one (NaN without)."""
  path = workdir / "metrics.jsonl"
  losses = [r["loss"] for r in map(json.loads, path.read_text().splitlines())
            if "loss" in r] if path.exists() else []
  return float(losses[-1]) if losses else math.nan


def train_sessions(workdir: pathlib.Path | str) -> int:
  """How many training sessions wrote ``<workdir>/metrics.jsonl`` (a record whose
  ``elapsed_s`` is below the previous one's starts a resumed session; 0 without such
  records). A status's ``train_wall_s`` covers only the last session."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  n, prev = 0, None
  for line in path.read_text().splitlines() if path.exists() else []:
    e = json.loads(line).get("elapsed_s")
    if e is None:
      continue
    n += prev is None or e < prev
    prev = e
  return n


def without_resumed_walls(rows: Iterable[Mapping[str, Any]], runs_dir: pathlib.Path | str
                          ) -> list[dict[str, Any]]:
  """``rows`` with ``train_wall_s = None`` for the runs in ``runs_dir`` that trained in more
  than one session (:func:`train_sessions`: their ``train_wall_s`` is the last session's,
  not the run's), so that wall-clock summaries and budgets skip them."""
  return [dict(r, train_wall_s=None)
          if r.get("name") and train_sessions(pathlib.Path(runs_dir) / r["name"]) > 1
          else dict(r) for r in rows]


def evaluate_cached(workdir: pathlib.Path | str, name: str, **options: Any) -> dict[str, Any]:
  """:func:`drifting_jax.training.evaluate_run` of a run, cached in ``<workdir>/<name>.json``."""
  from drifting_jax.training import evaluate_run

  path = pathlib.Path(workdir) / f"{name}.json"
  cached = _load(path)
  if cached is not None:
    return cached
  return evaluate_run(str(workdir), out=str(path), **options)


class Ledger:
  """A folder of finished-run rows, one ``<name>.json`` each (committed with the results)."""

  def __init__(self, path: pathlib.Path | str):
    self.path = pathlib.Path(path)

  def get(self, name: str) -> dict | None:
    return _load(self.path / f"{name}.json")

  def put(self, name: str, row: Mapping[str, Any]) -> dict:
    """Writes ``row`` with the code commit and JAX version that trained it (the row's own,
    else the previous row's, else the current ones)."""
    self.path.mkdir(parents=True, exist_ok=True)
    old = self.get(name) or {}
    row = dict(row, commit=row.get("commit") or old.get("commit") or code_commit(),
               jax=row.get("jax") or old.get("jax") or _jax_version())
    text = json.dumps(_to_builtin(row), indent=1) + "\n"
    (self.path / f"{name}.json").write_text(text)
    return json.loads(text)

  def rows(self) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(self.path.glob("*.json"))]


def sweep(runs: Iterable[Run], *, runs_dir: pathlib.Path | str, ledger: Ledger | None = None,
          score: Callable[[Run, pathlib.Path, dict], Mapping[str, Any]] | None = None,
          collect_only: bool = False, on_row: Callable[[dict], None] | None = None,
          **train_kwargs: Any) -> list[dict]:
  """Trains and scores every run not finished before; returns their rows in order.

  A run's row is its ``params``, its status record (:func:`train_run`, without the trainer's
  metrics) and, for runs whose status is ``ok``, ``score(run, workdir, status)``. Rows in
  ``ledger`` are taken as they are; new rows are added to it.

  Args:
    runs: the runs.
    runs_dir: their run directories.
    ledger: finished rows (None: rows are rebuilt from the run directories' caches).
    score: scores a finished run (its cached evaluations).
    collect_only: only return rows that are in the ledger (train nothing).
    on_row: called with each row as it becomes available (progress output).
    **train_kwargs: passed to :func:`train_run`.
  """
  rows = []
  for run in runs:
    row = ledger.get(run.name) if ledger is not None else None
    if row is None and not collect_only:
      status = train_run(run, runs_dir, **train_kwargs)
      row = {"name": run.name, **run.params,
             **{k: v for k, v in status.items() if k != "metrics"}}
      if score is not None and status["status"] == "ok":
        row.update(score(run, pathlib.Path(runs_dir) / run.name, status))
      if ledger is not None:
        row = ledger.put(run.name, row)
    if row is None:
      continue
    rows.append(row)
    if on_row is not None:
      on_row(row)
  return rows


# --------------------------------------------------------------------------- aggregation
def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
  """``(mean, sample std (ddof=1), n)`` of the finite values (std 0 for one value; NaN and
  n = 0 for none)."""
  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
  if v.size == 0:
    return math.nan, math.nan, 0
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def aggregate(rows: Sequence[Mapping[str, Any]], *, by: Sequence[str],
              keys: Sequence[str]) -> list[dict[str, Any]]:
  """Groups ``rows`` by the values of ``by`` (first-seen order) and summarizes each metric
  in ``keys`` over the group: ``key`` (mean), ``key_std`` (sample std), ``key_n`` and
  ``key_per_seed`` (the values, in row order); rows lacking a key are skipped for it."""
  groups: dict[tuple, list] = {}
  for r in rows:
    groups.setdefault(tuple(r.get(b) for b in by), []).append(r)
  out = []
  for group_key, members in groups.items():
    cell: dict[str, Any] = dict(zip(by, group_key))
    cell["runs"] = len(members)
    for k in keys:
      vals = [float(r[k]) for r in members if k in r and r[k] is not None]
      if not vals:
        continue
      m, s, n = mean_std(vals)
      cell.update({k: m, f"{k}_std": s, f"{k}_n": n, f"{k}_per_seed": vals})
    out.append(cell)
  return out


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
  """Two-sided p-value of Welch's t-test (unequal variances) of the means of ``a`` and
  ``b``; ``None`` with fewer than two values on either side or zero spread on both."""
  from scipy import stats
  a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
  if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
    return None
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def pm(mean: float, std: float | None, fmt: str = ".2f") -> str:
  """``"mean ± std"`` (``"–"`` for a missing mean, no spread for a missing std)."""
  if mean is None or not math.isfinite(mean):
    return "–"
  if std is None or not math.isfinite(std):
    return f"{mean:{fmt}}"
  return f"{mean:{fmt}} ± {std:{fmt}}"


def markdown_table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> str:
  """A Markdown table from a header and rows of cells (cells are ``str()``-ed)."""
  lines = ["| " + " | ".join(map(str, header)) + " |",
           "| " + " | ".join("---" for _ in header) + " |"]
  lines += ["| " + " | ".join(map(str, cells)) + " |" for cells in body]
  return "\n".join(lines)


def plot_mean_std(ax: Any, cells: Sequence[Mapping[str, Any]], *, x: str, key: str,
                  group: str, colors: Mapping[Any, Any] | None = None, fmt: str = "o-",
                  label: bool = True) -> None:
  """Draws ``key`` (mean ± sample std over seeds, as :func:`aggregate` gives it) against
  ``x`` on ``ax``, one line per value of ``group`` (first-seen order)."""
  for g in dict.fromkeys(c[group] for c in cells):
    pts = sorted((c for c in cells if c[group] == g and key in c), key=lambda c: c[x])
    if not pts:
      continue
    ax.errorbar([c[x] for c in pts], [c[key] for c in pts],
                yerr=[c.get(f"{key}_std", 0.0) for c in pts], fmt=fmt, capsize=3,
                color=None if colors is None else colors.get(g), label=g if label else None)
