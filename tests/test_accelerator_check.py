"""The smoke runs of benchmarks/accelerator_check.py and accelerator_run.py (CPU)."""

import json
import math
import pathlib
import runpy

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "accelerator_check.py"


def test_accelerator_check_smoke(tmp_path):
  main = runpy.run_path(str(BENCH))["main"]
  out = tmp_path / "acc.json"
  result = main(["--smoke", "--out", str(out)])
  saved = json.loads(out.read_text())
  assert saved["smoke"] is True and saved["backend"] == result["backend"]
  for row in saved["drift_fields"]:
    for op in ("softmax", "gaussian", "annealed", "sinkhorn"):
      assert row[op]["mean_ms"] > 0
  assert saved["deng_drift_loss"]["value_and_grad"]["mean_ms"] > 0
  for dtype in ("float32", "bfloat16"):
    step = saved["train_step"][dtype]
    assert step["steps_per_s"] > 0 and math.isfinite(step["loss"])
  assert saved["cpu_agreement"]["relative_diff"] < 1e-5
  assert saved["sharded"]["devices"] >= 1 and saved["sharded"]["steps_per_s"] > 0


RUN = BENCH.parent / "accelerator_run.py"


def test_accelerator_run_smoke(tmp_path):
  """The prepared accelerator command's code path end to end on tiny shapes."""
  mod = runpy.run_path(str(RUN))
  out = tmp_path / "out"
  result = mod["main"](["--smoke", "--out", str(out), "--num-samples", "30",
                        "--workdir", str(tmp_path / "run")])
  saved = json.loads((out / "accelerator_run.json").read_text())
  assert saved["smoke"] is True and saved["recipe"]["num_steps"] == 4
  assert saved["train"]["steps_done"] == 4 == result["train"]["steps_done"]
  assert saved["dtype"] in ("float32", "bfloat16") and saved["dtype_reason"]
  for dtype in ("float32", "bfloat16"):
    step = saved["step"][dtype]
    assert step["steps_per_s"] > 0 and math.isfinite(step["loss"]) and step["devices"] == 1
  agree = saved["checks"]["cpu_agreement"]
  assert agree["relative_diff"] < 1e-5 and agree["grad_norm_relative_diff"] < 1e-5
  assert [r["opt_step"] for r in saved["train"]["loss_curve"]] == [1, 2, 3, 4]
  assert set(saved["phase_wall_s"]) == {"checks", "step", "train", "samples"}
  assert not any("error" in str(v) for v in (saved["checks"], saved["step"], saved["train"],
                                             saved["samples"]))
  for tag in ("", "_params"):
    with np.load(out / f"accelerator_run_samples{tag}.npz") as f:
      assert f["samples"].dtype == np.uint8 and f["samples"].shape == (30, 28, 28, 1)
      np.testing.assert_array_equal(f["labels"], np.arange(30) % 10)
      assert int(f["opt_step"]) == 4 and str(f["dataset"]) == saved["dataset"]
  assert sorted(p.name for p in out.iterdir()) == sorted(  # what comes back from $OUT (<= 8)
      ["accelerator_run.json", "accelerator_run_loss.png", "accelerator_run_grid.png",
       "accelerator_run_samples.npz", "accelerator_run_grid_params.png",
       "accelerator_run_samples_params.npz"])


def test_plan_steps_and_dtype_choice():
  mod = runpy.run_path(str(RUN))
  plan, choose = mod["plan_steps"], mod["choose_dtype"]
  # 300 s at 10 steps/s after 300 statistics batches at 100/s (3 s): 2970 steps
  assert plan(300.0, 10.0, stats_iters=300, stats_per_s=100.0) == 2970
  assert plan(300.0, 10.0, stats_iters=300) == 2850  # stats at 2x the step rate: 15 s
  assert plan(1.0, 10.0, stats_iters=300, minimum=50) == 50
  with pytest.raises(ValueError, match="steps_per_s"):
    plan(300.0, 0.0, stats_iters=0)
  f32 = {"loss": 1.0, "steps_per_s": 10.0}
  assert choose({"float32": f32, "bfloat16": {"loss": 1.01, "steps_per_s": 15.0}})[0] == "bfloat16"
  assert choose({"float32": f32, "bfloat16": {"loss": 1.2, "steps_per_s": 15.0}})[0] == "float32"
  assert choose({"float32": f32, "bfloat16": {"loss": 1.0, "steps_per_s": 9.0}})[0] == "float32"
  assert choose({"float32": f32, "bfloat16": {"loss": math.nan, "steps_per_s": 20.0}})[0] == \
      "float32"
  assert choose({"float32": f32})[0] == "float32"
  f32g = dict(f32, first_grad_norm=2.0)
  assert choose({"float32": f32g, "bfloat16": {"loss": 1.0, "first_grad_norm": 2.5,
                                               "steps_per_s": 15.0}})[0] == "float32"
  assert choose({"float32": f32g, "bfloat16": {"loss": 1.0, "first_grad_norm": 2.02,
                                               "steps_per_s": 15.0}})[0] == "bfloat16"


def test_a_failing_phase_is_recorded_not_fatal():
  guarded = runpy.run_path(str(RUN))["_guarded"]
  result = {}

  def boom():
    raise RuntimeError("out of memory")

  assert guarded(result, "checks", boom) == {"error": "RuntimeError: out of memory"}
  assert guarded(result, "ok", lambda x: x + 1, 1) == 2 and result["ok"] == 2
