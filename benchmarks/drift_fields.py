"""Benchmark: per-call wall time of every drift field / loss against a matmul roofline.

For each shape (B, d) of Secretly-SM Table 3 — B generated samples, B positives, negatives
= the generated samples — every field and loss is jitted, warmed up, and timed (median of
``--repeats`` calls). In the same run, a jitted matmul workload with the same FLOP count as
the operator's distance and weighted-sum products is timed: the roofline on this machine.
A second part measures the streaming ``log_kde`` of 1,000 queries against a 100,000-sample
bank in D = 64 in a fresh subprocess: peak resident memory and XLA's temp-buffer size.

    python benchmarks/drift_fields.py                 # writes benchmarks/results/drift_fields.json
    python benchmarks/drift_fields.py --markdown      # also prints the README table
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import drifting_jax as dj

SHAPES = ((64, 256), (256, 256), (1024, 256), (64, 768))
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
sg = jax.lax.stop_gradient


def _operators(bandwidth: float = 1.0) -> dict:
  """name -> (fn(x, pos) -> output, number of [B, 2B]x[2B, d]-sized matmuls it performs).

  Distances to pos and neg count as one B×2B×d product, each weighted sum (forward, or the
  backward pass of a KDE loss, whose x-gradient is a kernel-weighted sum) as another.
  Losses are timed as value-and-grad w.r.t. x (what a training step runs).
  """
  lap, gau = dj.laplacian(bandwidth), dj.gaussian(bandwidth)
  vg = lambda f: jax.value_and_grad(f)
  ops = {
      "drift_field[kde,laplace]": (
          lambda x, p: dj.drift_field(x, p, x, kernel=lap, exclude_self=True), 2),
      "drift_field[sharp,laplace]": (
          lambda x, p: dj.drift_field(x, p, x, kernel=lap, normalization="sharp",
                                      exclude_self=True), 2),
      "drift_field[none,gauss]": (
          lambda x, p: dj.drift_field(x, p, x, kernel=gau, normalization="none"), 2),
      "mmd_field[gauss]": (lambda x, p: dj.mmd_field(x, p, x, kernel=gau), 2),
      "deng_field[laplace,col]": (
          lambda x, p: dj.deng_field(x, p, x, kernel=lap, exclude_self=True,
                                     column_normalize=True), 2),
      "doubly_stochastic_field": (
          lambda x, p: dj.doubly_stochastic_field(x, p, x, bandwidth=bandwidth, exclude_self=True), 2),
      "annealed_gauss (traced σ)": (
          lambda x, p: dj.doubly_stochastic_field(
              x, p, x, bandwidth=jnp.maximum(1.5 * jnp.exp(-0.01 * 100.0), 0.03), exclude_self=True), 2),
      "drift_loss[kde,laplace] (v&g)": (
          vg(lambda x, p: dj.drift_loss(x, dj.drift_field(x, p, sg(x), kernel=lap,
                                                           exclude_self=True))), 2),
      "log_kde_loss[laplace] (v&g)": (
          vg(lambda x, p: dj.log_kde_loss(x, p, x, kernel=lap, exclude_self=True)), 2),
      "mmd_loss[gauss] (v&g)": (vg(lambda x, p: dj.mmd_loss(x, p, x, kernel=gau, exclude_self=True)), 2),
      "deng_drift_loss, 3 temperatures (v&g)": (
          vg(lambda x, p: jnp.sum(dj.deng_drift_loss(x[None], p[None]))), 4),
  }
  try:
    from drifting_jax import sinkhorn  # issue 3; optional until it lands
  except ImportError:  # pragma: no cover
    sinkhorn = None
  if sinkhorn is not None:
    ops["sinkhorn_drift (α=0.05)"] = (
        lambda x, p: sinkhorn.sinkhorn_drift_with_info(x, p, alpha=0.05, exclude_self=True), 2)
  return ops


def _time(fn, args, repeats: int, warmup: int = 3) -> float:
  """Median wall time (s) of a jitted call, after warm-up (compilation excluded)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _roofline(b: int, d: int, n_products: int, repeats: int) -> float:
  """Median time of ``n_products`` dependent matmuls of the operator's shapes."""
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (b, d))
  t = jax.random.normal(key, (2 * b, d))

  @jax.jit
  def work(x, t):
    out = x
    for i in range(n_products):
      if i % 2 == 0:
        a = out @ t.T                 # [B, 2B]: distance-like product
      else:
        out = a @ t                   # [B, d]: weighted-sum product
    return a if n_products % 2 else out

  return _time(work, (x, t), repeats)


def run_timings(repeats: int) -> list[dict]:
  rows = []
  ops = _operators()
  for b, d in SHAPES:
    key_x, key_p = jax.random.split(jax.random.PRNGKey(b * 7 + d))
    x = jax.random.normal(key_x, (b, d))
    pos = jax.random.normal(key_p, (b, d)) + 0.5
    roofs = {}
    for name, (fn, n_products) in ops.items():
      jf = jax.jit(fn)
      t = _time(jf, (x, pos), repeats)
      if n_products not in roofs:
        roofs[n_products] = _roofline(b, d, n_products, repeats)
      extra = {}
      if name.startswith("sinkhorn"):
        info = jf(x, pos)[1]
        info = info._asdict() if hasattr(info, "_asdict") else dict(info)
        extra = {k: np.asarray(v).tolist() for k, v in info.items()
                 if ("iter" in k or "converged" in k) and np.ndim(v) == 0}
      flops = n_products * 2.0 * b * (2 * b) * d
      rows.append({"op": name, "B": b, "d": d, "time_ms": 1e3 * t,
                   "roofline_ms": 1e3 * roofs[n_products], "ratio": t / roofs[n_products],
                   "matmul_flops": flops, **extra})
      print(f"B={b:5d} d={d:4d} {name:42s} {1e3 * t:9.3f} ms  roofline "
            f"{1e3 * roofs[n_products]:8.3f} ms  x{t / roofs[n_products]:5.2f} {extra or ''}",
            flush=True)
  return rows


_STREAM_CHILD = """
import resource, sys, json, jax, jax.numpy as jnp, drifting_jax as dj
n, m, d, chunk = 1000, 100_000, 64, int(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = jax.random.normal(jax.random.PRNGKey(0), (n, d))
bank = jax.random.normal(jax.random.PRNGKey(1), (m, d))
f = jax.jit(lambda a, b: dj.log_kde(a, b, kernel=dj.gaussian(4.0), chunk_size=chunk or None))
mem = f.lower(x, bank).compile().memory_analysis()
out = jax.block_until_ready(f(x, bank))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"chunk_size": chunk or None, "baseline_rss_mb": base / 1024,
                  "peak_rss_mb": peak / 1024,
                  "xla_temp_mb": getattr(mem, "temp_size_in_bytes", -1) / 2**20,
                  "finite": bool(jnp.all(jnp.isfinite(out)))}))
"""


def run_streaming() -> list[dict]:
  """Peak memory of log_kde(1000 queries, 100k bank, D=64), streamed vs one-shot."""
  rows = []
  for chunk in (4096, 0):
    out = subprocess.run([sys.executable, "-c", _STREAM_CHILD, str(chunk)], check=True,
                         capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    rows.append(row)
    print("log_kde streaming:", row, flush=True)
  return rows


def markdown(result: dict) -> str:
  lines = ["| operator | (B, d) | time (ms) | matmul roofline (ms) | ratio |",
           "| --- | --- | ---: | ---: | ---: |"]
  for r in result["timings"]:
    lines.append(f"| {r['op']} | ({r['B']}, {r['d']}) | {r['time_ms']:.2f} | "
                 f"{r['roofline_ms']:.2f} | {r['ratio']:.2f} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--markdown", action="store_true")
  parser.add_argument("--out", default=str(RESULTS / "drift_fields.json"))
  args = parser.parse_args(argv)
  result = {
      "machine": {"platform": platform.platform(), "processor": platform.processor(),
                  "cpu_count": __import__("os").cpu_count(), "jax": jax.__version__,
                  "device": str(jax.devices()[0]),
                  "load_average_at_start": __import__("os").getloadavg()},
      "repeats": args.repeats,
      "timings": run_timings(args.repeats),
      "streaming_log_kde": run_streaming(),
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1))
  print(f"wrote {out}")
  if args.markdown:
    print(markdown(result))


if __name__ == "__main__":
  main()
