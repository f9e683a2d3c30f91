"""The streaming-bank benchmark's measurement code runs (tiny sizes, in-process)."""

import importlib.util
import pathlib

import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "streaming_bank.py"


@pytest.fixture(scope="module")
def bench():
  spec = importlib.util.spec_from_file_location("streaming_bank", PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("op", ["drift_field", "log_kde_loss_value_and_grad"])
def test_child_measures_a_streamed_call(bench, op):
  row = bench.child({"op": op, "queries": 16, "bank": 100, "dim": 4, "chunk": 32,
                     "bandwidth": 1.0, "repeats": 1})
  assert row["finite"]
  assert row["best_s"] > 0
  assert row["peak_rss_above_baseline_mib"] >= 0 and row["peak_above_inputs_mib"] >= 0


def test_configurations_run_dense_only_where_it_fits(bench):
  args = bench.argparse.Namespace(queries=8, banks=[10, 100], dim=2, chunk=4, bandwidth=1.0,
                                  repeats=1, dense_max=10)
  rows = bench.configurations(args)
  dense = {(r["op"], r["bank"]) for r in rows if r["chunk"] is None}
  assert dense == {("drift_field", 10), ("log_kde_loss_value_and_grad", 10)}
  assert len(rows) == 6
