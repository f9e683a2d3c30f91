"""Smoke tests for the field experiments (curl maps, 1D tails, score identity).

Each script's ``main`` runs with ``--quick`` into a temporary folder; the tests check that the
JSON and PNG exist, that the numbers are finite, and the qualitative results of the papers
(robust at the quick sizes).
"""

import json
import math
import pathlib

import pytest


from experiments import curl_maps, field_tails_1d, score_identity  # noqa: E402
from conftest import numbers  # noqa: E402


def _load(out_dir: pathlib.Path, name: str) -> dict:
  path = out_dir / f"{name}.json"
  assert path.exists(), f"{path} missing"
  assert (out_dir / f"{name}.png").stat().st_size > 10_000
  data = json.loads(path.read_text())
  assert data["quick"] is True
  assert data["command"].startswith(f"python experiments/{name}.py")
  assert data["wall_time_s"] > 0
  return data


def _all_finite(obj) -> bool:
  # save_json writes non-finite floats as strings such as "nan"; none may appear in results.
  return all(math.isfinite(v) for v in numbers(obj)) and "nan" not in json.dumps(obj).lower()


def test_curl_maps_quick(tmp_path):
  curl_maps.main(["--quick", "--out-dir", str(tmp_path)])
  data = _load(tmp_path, "curl_maps")
  res = data["results"]
  assert _all_finite(res)
  # Prop. 8 / Eq. (18): Gaussian and every sharp-normalized field are gradients.
  for key in ("gauss/kde", "gauss/sharp", "laplace/sharp", "rq/sharp"):
    assert res[key]["relative_max_curl"] < 1e-8, key
  # Fig. 5: the normalized Laplacian and RQ fields are not conservative.
  for key in ("laplace/kde", "rq/kde"):
    assert res[key]["relative_max_curl"] > 1e-3, key
  assert data["agrees_with_paper"] is True


def test_field_tails_quick(tmp_path):
  field_tails_1d.main(["--quick", "--out-dir", str(tmp_path)])
  data = _load(tmp_path, "field_tails_1d")
  res = data["results"]
  assert _all_finite(res)
  for kern in ("gauss", "laplace", "rq"):
    mag = {f: res[kern][f]["magnitude"] for f in ("none", "kde", "sharp")}
    assert mag["kde"]["|x|=20"] > mag["kde"]["|x|=5"]           # normalized field grows
    assert mag["none"]["|x|=20"] < mag["none"]["|x|=5"]         # unnormalized field decays
    for f in ("none", "kde", "sharp"):
      assert res[kern][f]["points_inward"]
      assert res[kern][f]["symmetry_rel_diff"] < 1e-6
  assert res["laplace"]["sharp"]["verdict"] == "saturates"
  assert res["rq"]["sharp"]["verdict"] == "decays slowly"
  # Gaussian, σ = 1: k# = k, so the normalized and sharp-normalized fields coincide.
  assert res["gauss"]["kde_over_sharp_at_probes"] == pytest.approx([1.0] * 3, rel=1e-9)
  err = data["gauss_closed_form_max_rel_error"]
  assert err["kde"] < 1e-6 and err["none"] < 1e-6
  assert all(data["agrees_with_paper"].values())


def test_score_identity_quick(tmp_path):
  score_identity.main(["--quick", "--out-dir", str(tmp_path)])
  data = _load(tmp_path, "score_identity")
  res = data["results"]
  assert _all_finite(res)
  assert res["analytic_grad_vs_eq37_max_abs_diff"] < 1e-10
  # The error is a Monte-Carlo error: small compared with the field itself …
  assert res["mean_l2_error_grid"] < 0.5 * res["mean_abs_analytic_field_grid"]
  # … and it shrinks with N (10× more samples; seed-averaged, a wide margin).
  means = res["error_vs_N"]["mean_over_seeds"]
  assert means[-1] < 0.8 * means[0]


def test_score_identity_closed_form_matches_eq37():
  import numpy as np
  x = np.random.default_rng(0).normal(size=(50, 2)) * 2
  np.testing.assert_allclose(score_identity.analytic_drift(x), score_identity.eq37_drift(x),
                             atol=1e-12)
