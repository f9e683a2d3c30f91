"""benchmarks/accelerator_check.py --smoke: every section runs and is recorded (CPU)."""

import json
import math
import pathlib
import runpy

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
