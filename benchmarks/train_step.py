"""Benchmark: one image training step (generator forward + backward + drift + AdamW update).

For each generator preset the full jitted training iteration of
:mod:`drifting_jax.training.tasks.image_step` (batch preparation, generation, per-class Naive-Gauss
drift on kernel-width-normalized pixels, gradient, clipping, AdamW, EMA) runs in a fresh
subprocess on random MNIST-shaped data, at Franz et al.'s batch (Table 3: N_c = 5 classes x
96 real x 96 generated images). Reported per preset: compile time, median step time and
steps/s over ``--repeats`` steps (after one untimed step when repeats > 1), peak
resident memory of the subprocess (``ru_maxrss``) and XLA's ``memory_analysis`` of the
compiled step (temp buffers, arguments). ``dit_s2`` accumulates gradients over the 5 class groups
(``group_chunks=5``): in one piece its step needs ~68 GB of XLA temp memory, more than this
machine has. ``mnist_small_cpu_mlp`` is the pure-MLP variant (``num_upsamples=0``,
``latent=512``) at the batch of ``experiments/configs/mnist_small_cpu_v01.py`` (5 x 128).

    python benchmarks/train_step.py                       # all presets, 5 repeats
    python benchmarks/train_step.py --presets dit_tiny --repeats 20
    python benchmarks/train_step.py --max-temp-gb 16      # skip running steps beyond this

Writes ``benchmarks/results/train_step.json`` and prints a markdown table. A preset whose
compiled step needs more temp memory than ``--max-temp-gb`` is compiled and analysed but
not run (recorded with ``skipped``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
FRANZ = dict(num_classes_per_step=5, num_pos=96, num_gen=96)
CASES = {
    "dit_tiny": dict(model="dit_tiny", **FRANZ),
    "mnist_small_cpu": dict(model="mnist_small_cpu", **FRANZ),
    "dit_s2": dict(model="dit_s2", group_chunks=5, **FRANZ),
    "mnist_small_cpu_mlp": dict(model="mnist_small_cpu", num_classes_per_step=5, num_pos=128,
                                num_gen=128,
                                model_overrides={"num_upsamples": 0, "latent": 512}),
}


def _worker(case: str, repeats: int, max_temp_gb: float) -> dict:
  """Runs in the subprocess: compile, analyse and time one preset's training step."""
  import jax
  import numpy as np

  from drifting_jax.data.images import Dataset
  from drifting_jax.models import presets
  from drifting_jax.training import ImageConfig, ImageTask

  rng = np.random.default_rng(0)
  fake = Dataset(rng.uniform(-1, 1, (2000, 28, 28, 1)).astype(np.float32),
                 np.arange(2000, dtype=np.int32) % 10, 10, "fake_mnist")
  cfg = ImageConfig(dataset="fake", objective="naive-gauss", bandwidth=0.2, norm_warmup=0,
                    parallel="none", progress=False, **CASES[case])
  run = ImageTask(cfg, dataset=fake)
  s0 = run.init_state()
  state, bank = s0.replace(bank=None), s0.bank
  step = run.runner().train
  t0 = time.perf_counter()
  compiled = step.lower(state, bank, run.data).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  out = dict(case=case, model=cfg.model, params=presets.count_params(state.params),
             batch=f"{cfg.num_classes_per_step}x({cfg.num_pos}+{cfg.num_gen})" + (
                 f", {cfg.group_chunks} chunks" if cfg.group_chunks > 1 else ""),
             group_chunks=cfg.group_chunks,
             compile_s=compile_s, temp_mb=mem.temp_size_in_bytes / 2**20,
             argument_mb=mem.argument_size_in_bytes / 2**20,
             output_mb=mem.output_size_in_bytes / 2**20, backend=jax.default_backend())
  if mem.temp_size_in_bytes > max_temp_gb * 2**30:
    out["skipped"] = f"temp {out['temp_mb'] / 1024:.1f} GB > --max-temp-gb {max_temp_gb}"
  else:
    if repeats > 1:  # compiled already; one untimed step for allocations / caches
      state, bank, m = compiled(state, bank, run.data)
      jax.block_until_ready(m)
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      state, bank, m = compiled(state, bank, run.data)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t)
    out.update(step_s=float(np.median(times)), steps_per_s=1.0 / float(np.median(times)),
               repeats=repeats, loss=float(m["loss"]))
  out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out


def _run_case(case: str, repeats: int, max_temp_gb: float, timeout: float) -> dict:
  cmd = [sys.executable, __file__, "--worker", case, "--repeats", str(repeats),
         "--max-temp-gb", str(max_temp_gb)]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return dict(case=case, error=f"timeout after {timeout:.0f} s")
  line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
  if proc.returncode != 0 or line is None:
    return dict(case=case, error=proc.stderr.strip().splitlines()[-1:] or "failed")
  return json.loads(line[len("RESULT "):])


def _fmt(x, spec=".2f"):
  return "—" if x is None else format(x, spec)


def markdown(rows: list[dict]) -> str:
  """The results as a markdown table."""
  lines = ["| preset | params | batch | compile s | step s | steps/s | XLA temp MB | "
           "peak RSS MB |", "|---|---:|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['case']} | error: {r['error']} |||||||")
      continue
    note = f" ({r['skipped']})" if "skipped" in r else ""
    lines.append(f"| {r['case']}{note} | {r['params'] / 1e6:.2f}M | {r['batch']} | "
                 f"{_fmt(r['compile_s'], '.1f')} | {_fmt(r.get('step_s'), '.3f')} | "
                 f"{_fmt(r.get('steps_per_s'), '.3g')} | {_fmt(r['temp_mb'], '.0f')} | "
                 f"{_fmt(r['peak_rss_mb'], '.0f')} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", nargs="+", default=list(CASES), choices=list(CASES))
  parser.add_argument("--repeats", type=int, default=5, help="timed steps per preset")
  parser.add_argument("--repeats-large", type=int, default=1,
                      help="timed steps for dit_s2 (slow on CPU)")
  parser.add_argument("--max-temp-gb", type=float, default=16.0,
                      help="do not run a step needing more XLA temp memory than this")
  parser.add_argument("--timeout", type=float, default=3600.0, help="per-preset timeout, s")
  parser.add_argument("--out", default=str(RESULTS / "train_step.json"))
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--loop-overhead", action="store_true",
                      help="instead: the training loops' steps/s against their bare jitted "
                           "steps (benchmarks/loop_overhead.py)")
  parser.add_argument("--loop-steps", type=int, nargs=2, default=(600, 300),
                      metavar=("TOY", "MNIST"), help="steps per loop-overhead round")
  parser.add_argument("--rounds", type=int, default=3, help="loop-overhead rounds")
  args = parser.parse_args(argv)
  if args.loop_overhead:
    return _loop_overhead(args)
  if args.worker:
    print("RESULT " + json.dumps(_worker(args.worker, args.repeats, args.max_temp_gb)))
    return 0
  rows = []
  for case in args.presets:
    repeats = args.repeats_large if case == "dit_s2" else args.repeats
    rows.append(_run_case(case, repeats, args.max_temp_gb, args.timeout))
    print(json.dumps(rows[-1]), flush=True)
  load = os.getloadavg()
  meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
              load_avg_1_5_15=[round(x, 2) for x in load], python=platform.python_version(),
              note="Franz et al. Table 3 batch: 5 classes x (96 real + 96 generated); "
                   "one step = batch prep + generator fwd/bwd + drift + AdamW + EMA")
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(dict(meta=meta, results=rows), f, indent=2)
    f.write("\n")
  print(markdown(rows))
  print(f"\nload average during the run: {load}; written to {args.out}")
  return 0


def _loop_overhead(args) -> int:
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
  import loop_overhead  # noqa: PLC0415

  rows = [loop_overhead.toy(args.loop_steps[0], args.rounds),
          loop_overhead.images(args.loop_steps[1], args.rounds)]
  meta = dict(cpus=os.cpu_count(), load_avg_1_5_15=[round(x, 2) for x in os.getloadavg()],
              python=platform.python_version(), rounds=args.rounds,
              method="best of the interleaved rounds; loop rate from metrics.jsonl intervals")
  out = RESULTS / "loop_overhead.json"
  with open(out, "w") as f:
    json.dump(dict(meta=meta, results=rows), f, indent=2)
    f.write("\n")
  print("| run | log / ckpt every | bare steps/s | loop steps/s | overhead |")
  print("|---|---|---:|---:|---:|")
  for r in rows:
    print(f"| {r['case']} | {r['log_every']} / {r['checkpoint_every']} | "
          f"{r['bare_steps_per_s']:.2f} | {r['loop_steps_per_s']:.2f} | {r['overhead']:+.1%} |")
  print(f"written to {out}; load average {meta['load_avg_1_5_15']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
