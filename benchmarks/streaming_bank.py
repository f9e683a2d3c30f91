"""Benchmark: streamed drift fields and losses against a large sample bank.

4,096 queries against banks of up to 1,000,000 positives in D = 64 (Gaussian kernel,
negatives = the queries with ``exclude_self``). Each configuration runs in a fresh
subprocess, which reports its peak resident memory (``ru_maxrss``) above the baseline it
measured after importing JAX and the library and initializing the CPU backend, and the best
of ``--repeats`` wall times of the jitted call (after one compile call). Rows:

* ``drift_field`` (normalized field, forward) streamed with ``--chunk`` samples per block,
  and the same call dense (``chunk_size=None``) where the ``[N, M]`` matrices fit
  (``--dense-max``);
* ``log_kde_loss`` value-and-grad (w.r.t. the queries), streamed and dense likewise.

Memory is reported as ``peak_rss_above_baseline_mib`` (the process's high-water mark above
the baseline: inputs, compile and calls), ``inputs_above_baseline_mib`` (resident memory
once the inputs exist: the bank is 244 MiB at 1M × 64 float32, generated block by block into
one buffer) and ``peak_above_inputs_mib`` (the high-water mark's rise after the
inputs exist: an upper bound on what compiling and running the call need).

::

    python benchmarks/streaming_bank.py            # writes benchmarks/results/streaming_bank.json
    python benchmarks/streaming_bank.py --smoke    # tiny sizes, seconds
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


def _rss_mib() -> float:
  """Peak resident memory of this process so far (``ru_maxrss``), MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _normal(key, m: int, d: int, *, shift: float = 0.0, block: int = 8192):
  """``[m, d]`` float32 normal samples written block by block into one buffer, so that the
  bank is the only ``[m, d]`` buffer ever resident (generating it in one piece holds the
  random bits and intermediates of the same size too, and the high-water mark keeps them)."""
  import jax
  import jax.numpy as jnp

  steps = -(-m // block)

  @jax.jit
  def fill(key):
    def body(i, buf):
      rows = jax.random.normal(jax.random.fold_in(key, i), (block, d), jnp.float32) + shift
      start = jnp.minimum(i * block, m - block) if m >= block else 0
      return jax.lax.dynamic_update_slice(buf, rows[:min(block, m)], (start, 0))
    return jax.lax.fori_loop(0, steps, body, jnp.zeros((m, d), jnp.float32))

  return fill(key)


def child(spec: dict) -> dict:
  """Runs one configuration in this process; returns its timings and memory."""
  import jax
  import jax.numpy as jnp

  import drifting_jax as dj

  jnp.zeros(()).block_until_ready()  # backend initialized: part of the baseline
  baseline = _rss_mib()
  n, m, d, chunk = spec["queries"], spec["bank"], spec["dim"], spec["chunk"]
  key_x, key_y = jax.random.split(jax.random.PRNGKey(0))
  x = _normal(key_x, n, d)
  bank = _normal(key_y, m, d, shift=0.1)
  kernel = dj.gaussian(float(spec["bandwidth"]))
  if spec["op"] == "drift_field":
    fn = jax.jit(lambda x, bank: dj.drift_field(x, bank, x, kernel=kernel, exclude_self=True,
                                                 chunk_size=chunk))
  else:
    fn = jax.jit(jax.value_and_grad(lambda x, bank: dj.log_kde_loss(
        x, bank, x, kernel=kernel, exclude_self=True, chunk_size=chunk)))
  jax.block_until_ready((x, bank))
  inputs_rss = _current_rss_mib()  # inputs resident, nothing compiled yet
  jax.block_until_ready(fn(x, bank))  # compile + first call
  times = []
  for _ in range(spec["repeats"]):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(x, bank))
    times.append(time.perf_counter() - t0)
  finite = bool(all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(out)))
  return {**spec, "best_s": min(times), "peak_rss_above_baseline_mib": _rss_mib() - baseline,
          "baseline_rss_mib": baseline, "inputs_above_baseline_mib": inputs_rss - baseline,
          "peak_above_inputs_mib": _rss_mib() - inputs_rss, "finite": finite}


def run_child(spec: dict) -> dict:
  proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                        capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    return {**spec, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def configurations(args) -> list[dict]:
  rows = []
  for op in ("drift_field", "log_kde_loss_value_and_grad"):
    for bank in args.banks:
      base = {"op": op, "queries": args.queries, "bank": bank, "dim": args.dim,
              "bandwidth": args.bandwidth, "repeats": args.repeats}
      rows.append({**base, "chunk": args.chunk})
      if bank <= args.dense_max:
        rows.append({**base, "chunk": None})
  return rows


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--queries", type=int, default=4096)
  p.add_argument("--banks", type=int, nargs="+", default=[65_536, 1_000_000])
  p.add_argument("--dim", type=int, default=64)
  p.add_argument("--chunk", type=int, default=4096)
  p.add_argument("--bandwidth", type=float, default=8.0)
  p.add_argument("--dense-max", type=int, default=65_536,
                 help="largest bank also run dense (the [N, M] matrices must fit)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
  p.add_argument("--out", default=None)
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child is not None:
    print(json.dumps(child(json.loads(args.child))))
    return
  if args.smoke:
    args.queries, args.banks, args.dim, args.chunk, args.repeats = 64, [1000], 8, 128, 1
    args.dense_max = 1000
  rows = []
  for spec in configurations(args):
    row = run_child(spec)
    rows.append(row)
    mode = "dense" if spec["chunk"] is None else f"chunk {spec['chunk']}"
    if "error" in row:
      print(f"{spec['op']:28s} bank {spec['bank']:>9,d} {mode:>11s}: error {row['error']}")
    else:
      print(f"{spec['op']:28s} bank {spec['bank']:>9,d} {mode:>11s}: {row['best_s']:8.3f} s, "
            f"peak +{row['peak_rss_above_baseline_mib']:7.1f} MiB, inputs "
            f"{row['inputs_above_baseline_mib']:6.1f} MiB, above inputs "
            f"{row['peak_above_inputs_mib']:7.1f} MiB")
  for row in rows:  # streamed / dense time where both ran
    if row.get("chunk") is not None and "error" not in row:
      dense = [r for r in rows if r["op"] == row["op"] and r["bank"] == row["bank"]
               and r["chunk"] is None and "error" not in r]
      if dense:
        row["time_ratio_to_dense"] = row["best_s"] / dense[0]["best_s"]
        row["memory_ratio_to_dense"] = (row["peak_above_inputs_mib"]
                                        / max(dense[0]["peak_above_inputs_mib"], 1e-9))
  import jax
  result = {"rows": rows, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "jax": jax.__version__,
            "command": "python benchmarks/streaming_bank.py" + (" --smoke" if args.smoke else "")}
  out = pathlib.Path(args.out) if args.out else (
      None if args.smoke else RESULTS / "streaming_bank.json")
  if out is not None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
  main()
