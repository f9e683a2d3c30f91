"""The experiments' shared sweep machinery (experiments/_sweep.py): runs through the trainer,
skipped when finished, divergence as a result, the ledger, seed statistics and tables."""

import json
import math
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from drifting_jax.training import ToyConfig  # noqa: E402
from experiments import _sweep  # noqa: E402


def tiny(**kw) -> ToyConfig:
  base = dict(num_steps=4, batch_size=32, hidden=16, log_every=2, checkpoint_every=4,
              eval_num_samples=64, eval_num_projections=8, progress=False, warmup_steps=1)
  base.update(kw)
  return ToyConfig(**base)


def test_sweep_trains_scores_records_and_skips_finished_runs(tmp_path):
  runs = [_sweep.Run(f"s{s}", tiny(seed=s), {"seed": s}) for s in (0, 1)]
  runs.append(_sweep.Run("bad", tiny(learning_rate=1e30, bandwidth=1e-30, objective="gauss#"),
                         {"seed": 2}))
  scored = []

  def score(run, workdir, status):
    scored.append(run.name)
    return {"sw": status["metrics"]["sliced_wasserstein"], "files": sorted(
        p.name for p in workdir.iterdir() if p.suffix == ".json")}

  ledger = _sweep.Ledger(tmp_path / "ledger")
  rows = _sweep.sweep(runs, runs_dir=tmp_path / "runs", ledger=ledger, score=score)
  assert [r["name"] for r in rows] == ["s0", "s1", "bad"]
  assert rows[0]["status"] == "ok" and rows[0]["seed"] == 0 and rows[0]["commit"]
  assert "metrics.json" in rows[0]["files"] and "status.json" in rows[0]["files"]
  assert rows[2]["status"].startswith("diverged: non-finite") and "sw" not in rows[2]
  assert scored == ["s0", "s1"]  # a diverged run is recorded, not scored
  assert [r["name"] for r in ledger.rows()] == ["bad", "s0", "s1"]
  # finished runs are skipped: nothing trains or scores again, the rows are the ledger's
  again = _sweep.sweep(runs, runs_dir=tmp_path / "runs", ledger=ledger, score=score)
  assert again == rows and scored == ["s0", "s1"]
  # without a ledger, a run's cached status.json skips its training (scores are recomputed)
  status = json.loads((tmp_path / "runs" / "s0" / "status.json").read_text())
  assert _sweep.train_run(runs[0], tmp_path / "runs") == status
  assert _sweep.sweep(runs[:1], runs_dir=tmp_path / "runs", collect_only=True) == []


def test_aggregate_mean_std_and_tables():
  rows = [{"objective": "a", "width": 0.1, "seed": s, "fid": f}
          for s, f in ((0, 10.0), (1, 12.0), (2, math.nan))]
  rows.append({"objective": "b", "width": 0.1, "seed": 0, "fid": 5.0})
  cells = _sweep.aggregate(rows, by=("objective", "width"), keys=("fid", "missing"))
  a, b = cells
  assert (a["objective"], a["runs"], a["fid_n"]) == ("a", 3, 2)  # NaN: not a value
  assert a["fid"] == 11.0 and a["fid_std"] == pytest.approx(np.sqrt(2.0))  # ddof=1
  assert b["fid"] == 5.0 and b["fid_std"] == 0.0 and "missing" not in b
  assert _sweep.mean_std([]) [2] == 0 and math.isnan(_sweep.mean_std([math.nan])[0])
  assert _sweep.pm(11.0, np.sqrt(2.0)) == "11.00 ± 1.41" and _sweep.pm(math.nan, 1.0) == "–"
  md = _sweep.markdown_table(["objective", "FID"], [[c["objective"], _sweep.pm(
      c["fid"], c["fid_std"])] for c in cells])
  assert md.splitlines() == ["| objective | FID |", "| --- | --- |", "| a | 11.00 ± 1.41 |",
                             "| b | 5.00 ± 0.00 |"]
