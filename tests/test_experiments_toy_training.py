"""Smoke tests for the toy-training experiment scripts (Secretly-SM Figs. 3-5, App. F.3-F.4).

Runs ``experiments/stop_gradient.py`` and ``experiments/sinkhorn_vs_laplace.py`` with
``--quick`` into a temporary folder and checks the JSON structure and that the numbers are
finite; plus closed-form checks of the helpers (log-log Pearson r, PCA directions). The
``--quick`` runs are a few steps on tiny batches: no paper claim is asserted on them.
"""

import json
import math

import numpy as np
import pytest


from experiments import sinkhorn_vs_laplace, stop_gradient  # noqa: E402
from conftest import numbers  # noqa: E402


def _finite(x):
  return isinstance(x, (int, float)) and math.isfinite(x)


def test_loglog_pearson_closed_form():
  t = np.linspace(0.0, 3.0, 20)
  a, b = np.exp(-t), 3.0 * np.exp(-2.0 * t)  # log b = log 3 + 2 log a: r = 1
  assert stop_gradient.loglog_pearson(a, b) == pytest.approx(1.0, abs=1e-12)
  assert stop_gradient.loglog_pearson(a, 1.0 / b) == pytest.approx(-1.0, abs=1e-12)
  # Non-positive / non-finite pairs are dropped; fewer than 3 pairs -> nan.
  assert stop_gradient.loglog_pearson(np.r_[a, 0.0, np.nan], np.r_[b, 1.0, 1.0]) == \
      pytest.approx(1.0, abs=1e-12)
  assert math.isnan(stop_gradient.loglog_pearson([1.0, 2.0], [1.0, 2.0]))


def test_pca_directions_recover_planted_plane():
  e1, e2 = np.zeros(50), np.zeros(50)
  e1[3], e2[7] = 1.0, 1.0
  t = 2 * np.pi * np.arange(40)[:, None] / 40  # cos/sin coefficients: centred, uncorrelated
  g = 5.0 * np.cos(t) * e1 + 2.0 * np.sin(t) * e2 + 7.0  # the offset is removed by centring
  d1, d2, var = stop_gradient.pca_directions(g)
  assert abs(d1 @ e1) == pytest.approx(1.0, abs=1e-10)
  assert abs(d2 @ e2) == pytest.approx(1.0, abs=1e-10)
  assert var[0] == pytest.approx(25.0 / 29.0, abs=1e-10)
  assert np.linalg.norm(d1) == pytest.approx(1.0) and var[0] > var[1] > 0


def test_stop_gradient_quick(tmp_path):
  out = stop_gradient.main(["--quick", "--out-dir", str(tmp_path)])
  data = json.loads((tmp_path / "stop_gradient.json").read_text())
  assert (tmp_path / "stop_gradient.png").stat().st_size > 0
  assert data["quick"] is True and data["command"].startswith("python experiments/")
  assert _finite(data["wall_time_s"])
  for key in ("paper", "ours", "summary", "landscapes", "sw_floor", "runs", "settings"):
    assert key in data
  for ds in stop_gradient.DATASETS:
    assert _finite(data["sw_floor"][ds]) and data["sw_floor"][ds] > 0
    for setting in stop_gradient.SETTINGS:
      for seed, rec in data["runs"][ds][setting].items():
        assert _finite(rec["final_sw"]) and rec["final_sw"] > 0
        assert _finite(rec["final_drift_norm"]) and rec["final_drift_norm"] > 0
        assert rec["stopped"] is None
        h = rec["history"]
        assert h["step"][0] == 0 and h["step"][-1] == data["settings"]["num_steps"]
        assert len(h["sw"]) == len(h["drift_norm"]) == len(h["step"])
        assert all(_finite(v) for v in h["sw"] + h["drift_norm"])
      s = data["summary"][ds][setting]
      for key in ("final_sw", "final_drift_norm", "loglog_r_per_seed"):
        assert {"mean", "std", "n"} <= set(s[key])
  n = data["settings"]["grid"]
  for setting in stop_gradient.SETTINGS:
    grid = data["landscape_grids"][setting]
    assert np.asarray(grid["loss"]).shape == (n, n) == np.asarray(grid["sw"]).shape
    assert np.all(np.isfinite(grid["loss"])) and np.all(np.isfinite(grid["sw"]))
    land = data["landscapes"][setting]
    # The grid minimum can only be at or below the value at its centre θ*.
    assert land["loss_min"] <= land["loss_at_center"] + 1e-12
    assert land["radius"] > 0
  assert set(out["runs"]) == set(stop_gradient.DATASETS)


def test_sinkhorn_vs_laplace_quick(tmp_path):
  sinkhorn_vs_laplace.main(["--quick", "--out-dir", str(tmp_path)])
  data = json.loads((tmp_path / "sinkhorn_vs_laplace.json").read_text())
  assert (tmp_path / "sinkhorn_vs_laplace.png").stat().st_size > 0
  assert data["quick"] is True and _finite(data["wall_time_s"])
  assert set(data["paper"]["final_sw"]) == {"sinkhorn", "laplace"}
  for name in ("sinkhorn", "laplace"):
    assert _finite(data["ours"]["final_sw"][name]) and data["ours"]["final_sw"][name] > 0
    assert _finite(data["ours"]["step_time_s"][name]) and data["ours"]["step_time_s"][name] > 0
    run = data["runs"][name]
    assert run["stopped"] is None
    assert all(_finite(v) for v in run["history"]["sw"])
    assert set(run["snapshot_mean_drift_norm"]) == {
        str(s) for s in data["settings"]["snapshot_steps"]}
  assert _finite(data["ours"]["sw_floor"])
  assert all(_finite(v) for v in numbers(data["ours"]))
