"""Benchmark: ``deng_drift_loss`` against a plain transcription of the reference algorithm and
against two limits measured in the same run.

* **reference**: Deng et al.'s algorithm as their code computes it, transcribed here from the
  algorithm description (not from our implementation): per temperature a softmax over the
  targets and one over the generated samples, ``A = sqrt(max(A_row · A_col, 1e-6))``, the
  weighted attraction/repulsion coefficients, the force matmul, its RMS normalization;
* **roofline**: the 4 matmuls of shape ``[C, T] × [T, S]`` the loss needs (distances and
  the force of 3 temperatures), jitted back to back;
* **exp bound**: the minimal elementwise work, 2 exponentials per ``[B, C, T]`` entry (a row
  and a column normalizer), summed so XLA cannot drop them.

All four (and a second, separately compiled copy of the reference, whose ratio to the first
— the *null ratio* — shows what the benchmark reads for two programs doing the same work)
are jitted and timed interleaved, best of ``--repeats`` and the median over the rounds of
the per-round ratio to the reference (the two ran back to back in that round, so a slow
phase of the machine cancels; quartiles recorded) (3 temperatures, positives =
generated, no extra negatives), forward and value-and-grad (w.r.t. the generated samples);
Franz's shape is also timed as the grouped training losses call it (one group per call under
``jax.vmap``), and six smaller problems (``EXTRA_SHAPES``: feature streams, toy data) the
same way (rows with ``"extra": true``). Each row records the temporary-buffer size of both
compiled calls, the loss and gradient differences, and the distance spread in units of
``min(R)`` (the one-exponential path is taken below 140)::

    python benchmarks/deng_loss.py          # writes benchmarks/results/deng_loss.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import drifting_jax as dj

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SHAPES = ((1, 1024, 256), (5, 96, 784), (1, 256, 256))
#: smaller problems (feature streams, toy data), timed the same way; rows marked "extra"
EXTRA_SHAPES = ((5, 96, 256), (5, 96, 64), (5, 96, 16), (4, 128, 128), (2, 64, 32), (8, 32, 16))
TEMPS = (0.02, 0.05, 0.2)
sg = jax.lax.stop_gradient


def reference_loss(gen, pos, temperatures=TEMPS):
  """The reference computation (unweighted, no extra negatives), ``[B, C, S] -> [B]``."""
  b, c, s = gen.shape
  old = sg(gen)
  targets = jnp.concatenate([old, pos], axis=1)                              # [B, T, S]
  d2 = (jnp.sum(old ** 2, -1)[:, :, None] + jnp.sum(targets ** 2, -1)[:, None, :]
        - 2 * jnp.einsum("bcs,bts->bct", old, targets, precision="highest"))
  dist = jnp.sqrt(jnp.maximum(d2, 1e-8))
  scale = jnp.mean(dist)
  s_in = jnp.maximum(scale / jnp.sqrt(float(s)), 1e-3)
  x_s, t_s = old / s_in, targets / s_in
  dn = dist / jnp.maximum(scale, 1e-3)
  dn = dn + 100.0 * jnp.pad(jnp.eye(c), ((0, 0), (0, c)))[None]
  force = 0.0
  for r in temperatures:
    logits = -dn / r
    a = jnp.sqrt(jnp.maximum(jax.nn.softmax(logits, -1) * jax.nn.softmax(logits, -2), 1e-6))
    a_neg, a_pos = a[..., :c], a[..., c:]
    coef = jnp.concatenate([-a_neg * a_pos.sum(-1, keepdims=True),
                            a_pos * a_neg.sum(-1, keepdims=True)], -1)
    f = jnp.einsum("bct,bts->bcs", coef, t_s, precision="highest") - coef.sum(-1)[..., None] * x_s
    force = force + f / jnp.sqrt(jnp.maximum(jnp.mean(f * f), 1e-8))
  goal = sg(x_s + force)
  return jnp.mean((gen / s_in - goal) ** 2, axis=(-1, -2))


def roofline(gen, pos):
  targets = jnp.concatenate([gen, pos], axis=1)
  out = jnp.einsum("bcs,bts->bct", gen, targets, precision="highest")
  total = 0.0
  for r in range(3):
    # A distinct left operand per temperature: three identical products would be merged
    # into one by XLA's common-subexpression elimination (timing 2 matmuls, not 4).
    total = total + jnp.einsum("bct,bts->bcs", out + float(r), targets, precision="highest")
  return jnp.sum(total)


def exp_bound(gen, pos):
  b, c, _ = gen.shape
  t = c + pos.shape[1]
  # Varying along both C and T: an exponential of a broadcast would be sunk below the
  # broadcast by XLA's simplifier and evaluated on [T] entries only.
  scalar = jnp.sum(gen[:, :1, :1]) * 1e-9
  z = (jax.lax.broadcasted_iota(jnp.float32, (b, c, t), 2) * scalar
       + jax.lax.broadcasted_iota(jnp.float32, (b, c, t), 1) * (2 * scalar))
  return jnp.sum(jnp.exp(-z), axis=-1) + jnp.sum(jnp.exp(z - 1.0), axis=-2).sum(-1)[:, None]


def _best(fns: dict, args, repeats: int) -> tuple[dict, dict]:
  """Best time (ms) of each function and its time in every round (s), interleaved."""
  for f in fns.values():
    jax.block_until_ready(f(*args))
  times = {k: [] for k in fns}
  names = list(fns)
  for i in range(repeats):
    # rotate the order every round: no function always runs right after the same other one
    # (whose buffers would leave it a cold cache in every round)
    for k in names[i % len(names):] + names[:i % len(names)]:
      f = fns[k]
      t = time.perf_counter()
      jax.block_until_ready(f(*args))
      times[k].append(time.perf_counter() - t)
  return {k: 1e3 * min(v) for k, v in times.items()}, times


def _paired(times: dict, name: str, reference: str = "reference") -> dict:
  """Median and quartiles over the rounds of ``name``'s time / the reference's time in the
  same round (the two run back to back: slow phases of the machine cancel)."""
  r = np.asarray(times[name]) / np.asarray(times[reference])
  q1, med, q3 = np.percentile(r, [25, 50, 75])
  return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def _temp_mib(fn, *args) -> float:
  """Size of the compiled call's temporary buffer (one ``malloc`` per call on CPU)."""
  return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def _max_spread_over_r(gen, pos) -> float:
  """The one-exponential range check of ``deng_drift_loss`` on these inputs: the largest
  row/column minimum minus the group minimum of the normalized distances, over min(R)."""
  b, c, _ = gen.shape
  targets = jnp.concatenate([gen, pos], axis=1)
  dist = jnp.sqrt(jnp.maximum(jnp.sum((gen[:, :, None] - targets[:, None]) ** 2, -1), 1e-8))
  dn = dist / jnp.mean(dist) + 100.0 * jnp.pad(jnp.eye(c), ((0, 0), (0, c)))[None]
  rows, cols = dn.min(-1), dn.min(-2)
  spread = jnp.maximum(rows.max(-1), cols.max(-1)) - rows.min(-1)
  return float(jnp.max(spread) / min(TEMPS))


def run(repeats: int) -> list[dict]:
  rows = []
  cases = ([(s, False) for s in SHAPES] + [(SHAPES[1], True)]
           + [(s, False) for s in EXTRA_SHAPES])
  for shape, vmapped in cases:
    kx, kp = jax.random.split(jax.random.PRNGKey(sum(shape)))
    gen = jax.random.normal(kx, shape)
    pos = jax.random.normal(kp, shape) + 0.3
    ours = lambda g, p: dj.deng_drift_loss(g, p, temperatures=TEMPS)
    ref = reference_loss
    if vmapped:  # one call per group under jax.vmap, as the grouped training losses do
      ours = jax.vmap(lambda g, p: dj.deng_drift_loss(g[None], p[None], temperatures=TEMPS)[0])
      ref = jax.vmap(lambda g, p: reference_loss(g[None], p[None])[0])
    vg = lambda f: jax.value_and_grad(lambda g, p: jnp.sum(f(g, p)))
    # a second, separately compiled copy of the reference: its ratio to the first is what the
    # benchmark reads for two programs that do the same work (its resolution)
    ref_again = lambda g, p, ref=ref: ref(g, p)
    fns = {"ours": jax.jit(ours), "reference": jax.jit(ref), "reference_again": jax.jit(ref_again)}
    if not vmapped:
      fns.update(roofline=jax.jit(roofline), exp_bound=jax.jit(exp_bound))
    fwd, fwd_rounds = _best(fns, (gen, pos), repeats)
    grad, grad_rounds = _best({"ours": jax.jit(vg(ours)), "reference": jax.jit(vg(ref)),
                  "reference_again": jax.jit(vg(ref_again))}, (gen, pos), repeats)
    ref_loss = ref(gen, pos)
    rel = float(jnp.max(jnp.abs(ours(gen, pos) - ref_loss) / jnp.abs(ref_loss)))
    g_ours, g_ref = jax.grad(lambda g: jnp.sum(ours(g, pos)))(gen), jax.grad(
        lambda g: jnp.sum(ref(g, pos)))(gen)
    grad_rel = float(jnp.max(jnp.abs(g_ours - g_ref)) / jnp.max(jnp.abs(g_ref)))
    row = {"shape": list(shape), "vmapped_over_groups": vmapped,
           "extra": shape in EXTRA_SHAPES, "forward_ms": fwd,
           "value_and_grad_ms": grad,
           "ratio_forward": fwd["ours"] / fwd["reference"],
           "ratio_value_and_grad": grad["ours"] / grad["reference"],
           "null_ratio_forward": fwd["reference_again"] / fwd["reference"],
           "null_ratio_value_and_grad": grad["reference_again"] / grad["reference"],
           # per-round ratios (ours / reference, reference copy / reference): median, quartiles
           "paired_forward": {k: _paired(fwd_rounds, k) for k in ("ours", "reference_again")},
           "paired_value_and_grad": {k: _paired(grad_rounds, k)
                                     for k in ("ours", "reference_again")},
           "max_rel_diff_vs_reference": rel, "grad_max_rel_diff_vs_reference": grad_rel,
           "max_spread_over_min_temperature": _max_spread_over_r(gen, pos),
           "one_exp_range": 140.0,
           "temp_mib": {"ours": _temp_mib(ours, gen, pos), "reference": _temp_mib(ref, gen, pos)}}
    limits = ""
    if not vmapped:
      row["ratio_to_slower_limit"] = fwd["ours"] / max(fwd["roofline"], fwd["exp_bound"])
      limits = (f"; roofline {fwd['roofline']:.2f}, exp bound {fwd['exp_bound']:.2f} (ours / "
                f"slower limit {row['ratio_to_slower_limit']:.2f})")
    rows.append(row)
    print(f"(B, C, S) = {shape}{' vmapped' if vmapped else ''}: forward ours {fwd['ours']:.2f} "
          f"ms, reference {fwd['reference']:.2f} ({row['ratio_forward']:.2f}x); value&grad "
          f"ours {grad['ours']:.2f}, reference {grad['reference']:.2f} "
          f"({row['ratio_value_and_grad']:.2f}x; reference vs its own second copy "
          f"{row['null_ratio_forward']:.2f}x / {row['null_ratio_value_and_grad']:.2f}x){limits}; temp MiB "
          f"{row['temp_mib']['ours']:.1f} / {row['temp_mib']['reference']:.1f}; max rel. diff "
          f"{rel:.1e} (gradient {grad_rel:.1e}); spread {row['max_spread_over_min_temperature']:.1f}"
          f" R", flush=True)
    pf, pg = row["paired_forward"], row["paired_value_and_grad"]
    print(f"  paired per-round medians: forward {pf['ours']['median']:.3f}x (null "
          f"{pf['reference_again']['median']:.3f}x), value&grad {pg['ours']['median']:.3f}x "
          f"(null {pg['reference_again']['median']:.3f}x)", flush=True)
  return rows


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=9)
  p.add_argument("--out", default=str(RESULTS / "deng_loss.json"))
  args = p.parse_args(argv)
  rows = run(args.repeats)
  result = {"rows": rows, "temperatures": TEMPS, "repeats": args.repeats,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "jax": jax.__version__, "python": platform.python_version()}
  pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  return result


if __name__ == "__main__":
  main()
