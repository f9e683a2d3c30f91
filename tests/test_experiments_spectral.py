"""Smoke test for experiments/spectral_convergence.py (Secretly-SM Fig. 2, App. E, F.2).

Runs ``main`` with ``--quick`` into a temporary folder and checks the JSON: finite numbers,
simulated vs analytic convergence times within 1 %, k* = √2/0.3, and the exponential schedule
fastest at k = 20. Also checks two closed forms the script relies on.
"""

import json
import math

import numpy as np

from experiments import spectral_convergence  # noqa: E402
from conftest import numbers  # noqa: E402


def test_first_crossing_log_linear():
  t = np.linspace(0.0, 10.0, 11)
  values = np.exp(-t)  # log-linear, so the interpolation is exact
  assert math.isclose(spectral_convergence.first_crossing(t, values, math.exp(-3.7)), 3.7,
                      rel_tol=1e-12)
  assert spectral_convergence.first_crossing(t, values, 1e-9) == math.inf


def test_spectral_convergence_quick(tmp_path):
  spectral_convergence.main(["--quick", "--out-dir", str(tmp_path)])
  path = tmp_path / "spectral_convergence.json"
  assert path.exists()
  assert (tmp_path / "spectral_convergence.png").stat().st_size > 10_000
  data = json.loads(path.read_text())
  assert data["quick"] is True
  assert data["command"].startswith("python experiments/spectral_convergence.py")
  assert data["wall_time_s"] > 0
  res = data["results"]
  # save_json writes non-finite floats as strings ("inf", "nan"); none may appear.
  assert all(math.isfinite(v) for v in numbers(res))
  assert '"inf"' not in json.dumps(res) and '"nan"' not in json.dumps(res).lower()

  assert math.isclose(res["k_star_sigma0.3"], math.sqrt(2) / 0.3, rel_tol=1e-12)
  assert abs(res["k_star_sigma0.3"] - 4.714) < 1e-3
  # F.2: markers (simulated threshold crossings) match the analytic lines.
  assert res["max_rel_dev_simulated_vs_analytic"] < 0.01
  for dev in res["rel_dev_by_curve"].values():
    assert dev < 0.01

  comp = res["schedule_comparison_T100"]
  t20 = {n: s["T_k_analytic"][-1] for n, s in comp["schedules"].items()}
  assert t20["exponential"] < t20["linear"] and t20["exponential"] < t20["cosine"]
  assert comp["exp_fastest_at_k20"] is True
  assert comp["speedup_k20_linear_over_exp"] > 1.0
  for row in res["speedup_vs_common_horizon"]:
    assert row["speedup_linear_over_exp"] > 1.0 and row["speedup_cosine_over_exp"] > 1.0

  # Fig. 2(a) shapes: the fixed Gaussian slows down exponentially past k*; the annealed one
  # does not (T(20) far below the fixed one); B.3-rate exponential kernel grows polynomially.
  fig_a = res["fig2a_T_k"]
  fixed = np.asarray(fig_a["gauss_fixed"]["analytic"])
  assert fixed[-1] / fixed[9] > 1e4
  assert fig_a["gauss_annealed"]["analytic"][-1] < 1e-3 * fixed[-1]
  b3 = np.asarray(fig_a["exp_kernel_b3_rate"]["analytic"])
  assert 2.0 < b3[-1] / b3[9] < 5.0  # ~ (20/10)^2 for large k
