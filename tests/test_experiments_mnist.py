"""Smoke test of ``experiments/mnist_objectives.py`` (Franz et al. Table 2 / Fig. 4 sweep).

Runs ``main --quick`` (2 objectives × 1 width × 20 steps, 500 evaluation samples, both
seeds) into a temporary folder and checks the JSON structure, finite metrics and the PNGs.
No paper claim is asserted on these tiny runs. Skips when the shared MNIST folder is absent.
"""

import json
import math

import pytest

from drifting_jax.data.images import find_mnist
from experiments import mnist_objectives


def _finite(x):
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_run_config_annealing_and_budget():
  cfg = mnist_objectives.run_config("gauss-annealed", 0.1, 400, 1)
  assert cfg.num_steps == 400 and cfg.seed == 1 and cfg.bandwidth == 0.1
  assert not cfg.progress and cfg.sample_every == 0
  assert cfg.checkpoint_every == cfg.norm_warmup + 400
  kw = cfg.objective_kwargs
  # sigma0 e^(-r T/2) reaches the width exactly at half the budget.
  assert kw["sigma0"] * math.exp(-kw["rate"] * 200) == pytest.approx(0.1)
  assert mnist_objectives.run_config("naive-gauss", 0.3, 400, 0).objective_kwargs == {}


def test_summarize_and_best_width():
  sweep = [{"objective": "a", "width": w, "seed": 0, "fid": f, "precision": 0.5,
            "recall": 0.5, "f1": 0.5} for w, f in ((0.1, 5.0), (0.2, float("nan")),
                                                   (0.3, 3.0))]
  assert mnist_objectives.best_widths(sweep, ["a"]) == {"a": 0.3}
  s = mnist_objectives.summarize([dict(sweep[2]), dict(sweep[2], fid=5.0, seed=1)])
  assert s["fid"] == pytest.approx(4.0) and s["fid_spread"] == pytest.approx(1.0)


@pytest.mark.slow  # the 400-step sweep script superseded by franz_table2.py (EXPERIMENTS §13)
@pytest.mark.skipif(find_mnist() is None, reason="shared MNIST folder not found")
def test_quick_run(tmp_path):
  res = mnist_objectives.main(["--quick", "--jobs", "1", "--out-dir", str(tmp_path)])
  data = json.loads((tmp_path / "mnist_objectives.json").read_text())
  assert data["table"].keys() == res["table"].keys() == {"naive-gauss", "sinkhorn"}
  assert data["budget"]["optimizer_steps_per_run"] == 20
  assert data["budget"]["eval_samples"] == 500
  assert len(data["sweep"]) == 2 and len(data["second_seed"]) == 2
  for run in data["sweep"] + data["second_seed"]:
    assert run["status"] == "ok"
    for k in ("fid", "precision", "recall", "f1"):
      assert _finite(run[k]), (run, k)
  assert data["table"]["sinkhorn"]["best_width"] is None
  for row in data["table"].values():
    assert row["seeds"] == [0, 1]
    for k in ("fid", "fid_spread", "precision", "recall", "f1"):
      assert _finite(row[k])
  assert "naive-gauss" in data["franz_table2"]
  assert set(data["conclusions"]) >= {"naive_beats_original_gauss", "paper"}
  assert _finite(data["wall_seconds"]) and data["command"].startswith("python experiments/")
  for name in ("mnist_objectives.png", "mnist_objectives_samples.png"):
    assert (tmp_path / name).stat().st_size > 1000
  assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # scratch workdirs removed
