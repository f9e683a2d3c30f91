"""Regression check of the training pipeline: metric trajectories of reference configs, bit for bit.

A refactor of ``drifting_jax.training`` must not move any number. This script trains the
first steps of the default toy run (``experiments/configs/toy_default.py``) and of
``mnist_small_cpu`` (``experiments/configs/mnist_small_cpu.py``; needs MNIST, see
``$DRIFTING_JAX_MNIST``) with ``log_every=10`` (a bookkeeping setting: it does not enter the
compiled step) and compares every logged metric (loss, gradient and drift norms, learning
rate, kernel scale, ...; not the timings) with a recorded trajectory for exact equality::

    python benchmarks/trajectories.py record --out benchmarks/results/trajectories.json
    python benchmarks/trajectories.py compare --reference benchmarks/results/trajectories.json

``compare`` exits with status 1 and names the first differing step and metric. The
committed reference was recorded with the pre-v0.3 pipeline (two trainers), so it checks
that the one-trainer pipeline reproduces it; the steps compared are 1-1000 of the toy run
and iterations 1-1100 of ``mnist_small_cpu`` (its 100 kernel-width warm-up iterations and
the first 1,000 optimizer steps).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    "toy_default": ("experiments/configs/toy_default.py", 1000),
    "mnist_small_cpu": ("experiments/configs/mnist_small_cpu.py", 1100),
}
TIMING = ("steps_per_sec", "elapsed_s", "wall_time_s")


def read_trajectory(metrics_jsonl: pathlib.Path, until: int) -> list[dict]:
  """The logged records of steps ``<= until`` without their timing fields."""
  out = []
  with open(metrics_jsonl) as f:
    for line in f:
      if line.strip():
        rec = json.loads(line)
        if rec["step"] <= until:
          out.append({k: v for k, v in rec.items() if k not in TIMING})
  return out


def record(names: list[str], workdir: pathlib.Path) -> dict:
  """Trains each named config for its steps in ``workdir``; returns the trajectories."""
  from drifting_jax.training import load_config, train

  out = {}
  for name in names:
    path, steps = CONFIGS[name]
    run_dir = workdir / name
    train(load_config(ROOT / path), run_dir, overrides=["log_every=10", "progress=false"],
          until=steps, force_new=True)
    out[name] = {"config": path, "steps": steps,
                 "records": read_trajectory(run_dir / "metrics.jsonl", steps)}
  return out


def _same(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  return a == b


def compare(reference: dict, new: dict) -> list[str]:
  """Differences of ``new`` from ``reference`` (empty: bit-identical)."""
  problems = []
  for name, ref in reference.items():
    if name not in new:
      continue
    got = new[name]["records"]
    if len(got) != len(ref["records"]):
      problems.append(f"{name}: {len(got)} records, reference {len(ref['records'])}")
    for r, g in zip(ref["records"], got):
      keys = sorted(set(r) | set(g))
      bad = [k for k in keys if not _same(r.get(k), g.get(k))]
      if bad:
        problems.append(f"{name}: step {r['step']}: " + ", ".join(
            f"{k} {r.get(k)!r} -> {g.get(k)!r}" for k in bad))
        break
  return problems


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("mode", choices=("record", "compare"))
  p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
  p.add_argument("--out", type=pathlib.Path, default=None, help="record: output JSON")
  p.add_argument("--reference", type=pathlib.Path,
                 default=ROOT / "benchmarks" / "results" / "trajectories.json")
  p.add_argument("--workdir", type=pathlib.Path, default=None,
                 help="run directories (default: a temporary directory)")
  args = p.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    trajectories = record(args.configs, args.workdir or pathlib.Path(tmp))
  if args.mode == "record":
    out = args.out or args.reference
    out.write_text(json.dumps(trajectories, indent=1) + "\n")
    print(f"wrote {out}")
    return 0
  problems = compare(json.loads(args.reference.read_text()), trajectories)
  for name, t in trajectories.items():
    print(f"{name}: {len(t['records'])} records up to step {t['steps']}")
  if problems:
    print("DIFFERENT:\n  " + "\n  ".join(problems))
    return 1
  print("bit-identical to the reference")
  return 0


if __name__ == "__main__":
  sys.exit(main())
