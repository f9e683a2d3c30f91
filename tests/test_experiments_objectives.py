"""Smoke test for the toy objective table (experiments/toy_objectives.py).

Runs ``main`` with ``--quick`` (2 objectives, 2 datasets, 2 seeds, 20 steps) into a temporary
folder and checks the JSON structure, that every number is finite, and that the figures exist.
"""

import json
import math

import pytest


from experiments import toy_objectives  # noqa: E402
from conftest import numbers  # noqa: E402


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("toy_objectives")
  toy_objectives.main(["--quick", "--out-dir", str(out)])
  return out


def test_quick_run_writes_table(quick_dir):
  tmp_path = quick_dir
  data = json.loads((tmp_path / "toy_objectives.json").read_text())
  assert data["quick"] is True and data["partial"] is False
  assert data["command"].startswith("python experiments/toy_objectives.py")
  assert data["wall_time_s"] > 0
  objectives = list(toy_objectives.QUICK_OBJECTIVES)
  datasets = list(toy_objectives.DATASETS)
  assert data["objectives"] == objectives
  assert set(data["budget"]) >= {"steps", "batch_size", "seeds", "eval_num_samples"}
  seeds = data["budget"]["seeds"]
  assert len(data["runs"]) == len(objectives) * len(datasets) * len(seeds)
  for run in data["runs"]:
    assert not run["diverged"]
    for key in ("sliced_wasserstein", "mmd", "seconds_per_step", "train_wall_s"):
      assert math.isfinite(run[key]) and run[key] > 0, (run, key)
  for obj in objectives:
    assert obj in data["objective_settings"]
    for ds in datasets:
      s = data["summary"][obj][ds]
      assert s["num_seeds"] == len(seeds) and s["num_diverged"] == 0
      assert s["sliced_wasserstein_mean"] > 0 and s["sliced_wasserstein_std"] >= 0
      assert s["mmd_mean"] > 0 and s["ms_per_step"] > 0
  for ds in datasets:
    floor = data["floor"][ds]
    assert len(floor["sliced_wasserstein"]) == len(seeds)
    assert 0 < floor["sliced_wasserstein_mean"] < 0.2
  values = list(numbers(data))
  assert values and all(math.isfinite(x) for x in values)
  assert "| `gauss#` |" in data["markdown_table"]
  assert "noise floor" in data["markdown_table"]
  for name in ("toy_objectives.png", "toy_objectives_samples.png"):
    assert (tmp_path / name).stat().st_size > 10_000


def test_merge_of_split_parts_matches(quick_dir):
  data, samples = toy_objectives.load_part(quick_dir)
  parts = []
  for obj in data["objectives"]:  # split the quick run into one part per objective
    part = {**data, "objectives": [obj],
            "runs": [r for r in data["runs"] if r["objective"] == obj],
            "objective_settings": {obj: data["objective_settings"][obj]}}
    parts.append((part, {k: v for k, v in samples.items() if k in (obj, "data")}))
  merged, merged_samples = toy_objectives.merge(parts[::-1])
  assert merged["objectives"] == data["objectives"]  # table order restored
  assert merged["summary"] == data["summary"]
  assert set(merged_samples) == set(samples)
  with pytest.raises(ValueError, match="overlap"):
    toy_objectives.merge([parts[0], parts[0]])


def test_settings_are_a_priori():
  s = toy_objectives.objective_settings
  assert s("naive-laplace", steps=600)["bandwidth"] == toy_objectives.LAPLACE_TAU
  assert s("mmd-gauss", steps=600)["bandwidth"] == toy_objectives.GAUSS_SIGMA
  ann = s("gauss-annealed", steps=600)["objective_kwargs"]
  # sigma0 * exp(-rate * steps / 2) == bandwidth (= sigma_min): the floor is reached halfway.
  assert math.isclose(ann["sigma0"] * math.exp(-ann["rate"] * 300),
                      s("gauss-annealed", steps=600)["bandwidth"])
  assert "alpha" in s("sinkhorn", steps=600)["objective_kwargs"]
  with pytest.raises(ValueError, match="objective"):
    s("naive-rq", steps=600)
