"""Sinkhorn drift vs Laplacian drift on the checkerboard — Fig. 5 (App. F.4) of Secretly-SM.

Trains the toy MLP generator (3×256 SiLU, 32-d noise, Adam 1e-3) on the checkerboard with

* the exponential-kernel (Laplacian) drift ``naive-laplace``, ``tau = 0.05`` (F.4's baseline), and
* the Sinkhorn-divergence drift ``V = η (T_{q→p} − T_{q→q})`` (§6.3, Alg. 2; ``sinkhorn``
  objective: squared cost, masked self-cost, ``η = 1``, ott-jax log-domain Sinkhorn),

both with the stop-gradient loss, the same batch and the same number of steps. Logged: SW
(5k vs 5k samples, 200 projections, as in F.3) every ``eval_every`` steps, snapshots of the
generated samples with drift arrows (the objective's own drift on a training-size batch,
quiver on a subsample) at a few steps, and the mean wall time of a training step of each
objective (after compilation).

Entropic temperature: F.4 states ``ε = 1e-4``. With this library's float32 ott-jax solver at
batch 512 on the checkerboard (mean squared cost ≈ 1.3), ``ε = 1e-4`` does not meet the 1e-3
marginal tolerance within 500 iterations and costs several times more per step, so the
training run uses the project's ``toy_sinkhorn`` setting ``ε = α · mean(C_qp)`` with
``α = 0.01`` (ε ≈ 0.013), 500 iterations, tolerance 1e-3. A short probe records the
per-step time and convergence of ``ε = 1e-4`` (absolute) with ``PROBE_ITERATIONS`` iterations.

Sizes (shared 2-core CPU): batch N = M = 512 for both objectives (``toy_sinkhorn`` config;
F.4 does not state a batch), 2000 steps.

    python experiments/sinkhorn_vs_laplace.py          # writes experiments/results/sinkhorn_vs_laplace.{json,png}
    python experiments/sinkhorn_vs_laplace.py --quick  # seconds; smoke test only
"""

from __future__ import annotations

import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):  # run as `python experiments/sinkhorn_vs_laplace.py`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from drifting_jax import fields, kernels, losses, sinkhorn
from drifting_jax.models.mlp import sample_noise
from drifting_jax.training import ToyConfig, ToyTask
from experiments import _common
from experiments._tracking import sw_floor, train_tracked

NAME = "sinkhorn_vs_laplace"
TAU = 0.05
SINKHORN = {"alpha": 0.01, "cost_power": 2, "exclude_self": True, "eta": 1.0,
            "max_iterations": 500, "threshold": 1e-3}
PAPER_EPSILON = 1e-4
PROBE_ITERATIONS = 2000
OBJECTIVES = {"laplace": ("naive-laplace", {}), "sinkhorn": ("sinkhorn", SINKHORN)}
LABELS = {"laplace": f"Laplacian drift (naive-laplace, τ={TAU})",
          "sinkhorn": f"Sinkhorn drift (α={SINKHORN['alpha']}, masked, η=1)"}

FULL = dict(batch_size=512, num_steps=2000, eval_every=50, eval_num=5000,
            eval_projections=200, snapshot_steps=(0, 100, 500, 2000), quiver=200,
            snapshot_points=2000, probe_steps=3)
QUICK = dict(batch_size=32, num_steps=6, eval_every=3, eval_num=256, eval_projections=20,
             snapshot_steps=(0, 6), quiver=16, snapshot_points=64, probe_steps=0)

PAPER = {"figure": "Secretly-SM Fig. 5, App. F.4",
         "final_sw": {"sinkhorn": 1.42e-2, "laplace": 2.07e-2},
         "sinkhorn_epsilon": PAPER_EPSILON,
         "claim": "both converge; Sinkhorn final SW 1.42e-2 vs Laplacian 2.07e-2"}


def make_config(name: str, *, batch_size: int, num_steps: int, seed: int = 0) -> ToyConfig:
  objective, kw = OBJECTIVES[name]
  return ToyConfig(dataset="checkerboard", objective=objective, bandwidth=TAU,
                   objective_kwargs=dict(kw), batch_size=batch_size, num_steps=num_steps,
                   seed=seed, learning_rate=1e-3, lr_schedule="constant", warmup_steps=0,
                   progress=False)


def drift_of(name: str, x: jax.Array, pos: jax.Array) -> jax.Array:
  """``[N, 2]`` drift of objective ``name`` at ``x`` (negatives ``x``, self masked)."""
  if name == "sinkhorn":
    return sinkhorn.sinkhorn_drift(x, pos, **SINKHORN)
  return fields.drift_field(x, pos, x, kernel=kernels.get("laplace", TAU),
                            normalization="kde", exclude_self=True)


def make_snapshot_fn(name: str, cfg: ToyConfig, model, *, num_points: int, quiver: int):
  """``(params, key) -> {samples, quiver_x, quiver_v}`` for one snapshot."""
  drift = jax.jit(lambda x, pos: drift_of(name, x, pos))
  from drifting_jax.training import sample_data

  def fn(params, key):
    kz, kd, kzq = jax.random.split(key, 3)
    pts = model.apply(params, sample_noise(kz, num_points, cfg.noise_dim))
    # Drift on a training-size batch (its own negatives), arrows drawn on a subsample.
    xb = model.apply(params, sample_noise(kzq, cfg.batch_size, cfg.noise_dim))
    v = drift(xb, sample_data(cfg, kd, cfg.batch_size))
    return {"samples": np.asarray(pts), "quiver_x": np.asarray(xb[:quiver]),
            "quiver_v": np.asarray(v[:quiver]),
            "mean_drift_norm": float(jnp.mean(jnp.linalg.norm(v, axis=-1)))}

  return fn


def probe_paper_epsilon(batch_size: int, steps: int, iterations: int = PROBE_ITERATIONS
                        ) -> dict[str, Any]:
  """Per-step time and convergence of a Sinkhorn step with F.4's absolute ``ε = 1e-4``."""
  cfg = make_config("sinkhorn", batch_size=batch_size, num_steps=steps)
  kw = dict(SINKHORN, epsilon=PAPER_EPSILON, max_iterations=iterations)

  def objective(x, pos, step):
    xs = jax.lax.stop_gradient(x)
    v, info = sinkhorn.sinkhorn_drift_with_info(xs, pos, **kw)
    conv = jnp.logical_and(info.converged_qp, info.converged_qq).astype(jnp.float32)
    return losses.drift_loss(x, v), {"drift_norm": jnp.mean(jnp.linalg.norm(v, axis=-1)),
                                     "converged": conv, "iters_qp": info.n_iters_qp,
                                     "iters_qq": info.n_iters_qq,
                                     "error_qp": info.error_qp, "error_qq": info.error_qq}

  run = ToyTask(cfg, objective=objective)
  state = run.init_state()
  step = run.train_step()  # a user objective: compiled for this run, not cached
  rng = jax.random.PRNGKey(0)
  state, m = step(state, run.sample_batch(rng), rng)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  recs = []
  for i in range(steps):
    state, m = step(state, run.sample_batch(jax.random.fold_in(rng, i + 1)), rng)
    recs.append({k: float(v) for k, v in m.items()})
  dt = (time.perf_counter() - t0) / max(steps, 1)
  return {"epsilon": PAPER_EPSILON, "max_iterations": iterations, "batch_size": batch_size,
          "step_time_s": dt, "steps": recs,
          "note": "measured at initialization (first steps); converged = both solves met "
                  "the 1e-3 L1 marginal tolerance"}


def run_all(sizes: dict, log=print) -> dict:
  out = {}
  for name in OBJECTIVES:
    cfg = make_config(name, batch_size=sizes["batch_size"], num_steps=sizes["num_steps"])
    model = ToyTask(cfg).model
    snap = make_snapshot_fn(name, cfg, model, num_points=sizes["snapshot_points"],
                            quiver=sizes["quiver"])
    t0 = time.perf_counter()
    tr = train_tracked(cfg, eval_every=sizes["eval_every"], eval_num=sizes["eval_num"],
                       eval_projections=sizes["eval_projections"],
                       drift_num=min(2048, sizes["eval_num"]),
                       snapshot_steps=tuple(sizes["snapshot_steps"]), snapshot_fn=snap)
    h = tr["history"]
    out[name] = {"config": cfg, "final_sw": h["sw"][-1], "min_sw": float(np.nanmin(h["sw"])),
                 "final_drift_norm_laplace_tau005": h["drift_norm"][-1],
                 "final_train_drift_norm": h["train_drift_norm"][-1],
                 "step_time_s": tr["step_time_s"], "wall_time_s": time.perf_counter() - t0,
                 "stopped": tr["stopped"], "history": h, "snapshots": tr["snapshots"]}
    log(f"{name:9s}: SW {h['sw'][-1]:.4f}  ({out[name]['wall_time_s']:.0f}s, "
        f"{1e3 * tr['step_time_s']:.1f} ms/step)")
  return out


def plot(runs: dict, floor: float, steps: tuple[int, ...]):
  plt = _common.pyplot()
  steps = [s for s in steps if all(s in r["snapshots"] for r in runs.values())]
  ncol = len(steps) + 1
  fig, axes = plt.subplots(2, ncol, figsize=(4 * ncol, 8.2), squeeze=False)
  for i, name in enumerate(OBJECTIVES):
    r = runs[name]
    for j, s in enumerate(steps):
      sn = r["snapshots"][s]
      ax = axes[i, j]
      ax.scatter(sn["samples"][:, 0], sn["samples"][:, 1], s=1, alpha=0.4, c="tab:orange")
      q, v = sn["quiver_x"], sn["quiver_v"]
      ax.quiver(q[:, 0], q[:, 1], v[:, 0], v[:, 1], angles="xy", scale_units="xy", scale=1,
                width=0.004, color="k")
      for a in range(4):  # checkerboard cells
        for b in range(4):
          if (a + b) % 2 == 0:
            ax.add_patch(plt.Rectangle((-1 + 0.5 * a, -1 + 0.5 * b), 0.5, 0.5, fill=False,
                                       lw=0.5, ec="0.6"))
      ax.set_xlim(-1.4, 1.4)
      ax.set_ylim(-1.4, 1.4)
      ax.set_aspect("equal")
      ax.set_title(f"{name}, step {s}  (mean |V| {sn['mean_drift_norm']:.3f})", fontsize=9)
    ax = axes[i, -1]
    for other in OBJECTIVES:
      h = runs[other]["history"]
      ax.plot(h["step"], h["sw"], lw=2 if other == name else 0.8, label=other)
    ax.axhline(floor, ls=":", c="k", lw=0.8, label="SW floor (data vs data)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(f"SW; final {name} {r['final_sw']:.4f}", fontsize=9)
    ax.legend(fontsize=7)
    axes[i, 0].set_ylabel(LABELS[name])
  fig.suptitle("Secretly-SM Fig. 5: Laplacian (top) vs Sinkhorn (bottom) drift on the "
               "checkerboard; arrows = drift V at generated points (arrow = V, not scaled)")
  fig.tight_layout()
  return fig


def main(argv=None) -> dict:
  args = _common.parser(__doc__).parse_args(argv)
  sizes = QUICK if args.quick else FULL
  with _common.Timer() as timer:
    floor = sw_floor("checkerboard", sizes["eval_num"], sizes["eval_projections"])
    runs = run_all(sizes)
    probe = (probe_paper_epsilon(sizes["batch_size"], sizes["probe_steps"])
             if sizes["probe_steps"] else None)
  out = {
      "experiment": "Secretly-SM Fig. 5 (App. F.4): Sinkhorn drift vs Laplacian drift, checkerboard",
      "command": _common.command("sinkhorn_vs_laplace.py", argv),
      "quick": args.quick,
      "wall_time_s": timer.seconds,
      "settings": {
          **{k: v for k, v in sizes.items()}, "tau": TAU, "sinkhorn": SINKHORN,
          "model": "MLP 3x256 SiLU, noise dim 32", "optimizer": "Adam lr 1e-3",
          "sw": "SW_2, eval_num vs eval_num samples, eval_projections projections",
          "deviations": "sinkhorn eps = alpha*mean(C_qp), alpha=0.01 (~0.013) instead of F.4's "
                        "eps=1e-4 (not converged in 500 iterations in float32, several times "
                        "slower; see paper_epsilon_probe); batch 512 and 2000 steps for both "
                        "objectives (F.4 states neither)",
      },
      "paper": PAPER,
      "ours": {"final_sw": {n: runs[n]["final_sw"] for n in OBJECTIVES},
               "min_sw": {n: runs[n]["min_sw"] for n in OBJECTIVES},
               "step_time_s": {n: runs[n]["step_time_s"] for n in OBJECTIVES},
               "sw_floor": floor,
               "sinkhorn_better": runs["sinkhorn"]["final_sw"] < runs["laplace"]["final_sw"]},
      "paper_epsilon_probe": probe,
      "runs": {n: {k: v for k, v in r.items() if k not in ("snapshots", "config")}
               | {"snapshot_mean_drift_norm": {str(s): sn["mean_drift_norm"]
                                               for s, sn in r["snapshots"].items()}}
               for n, r in runs.items()},
      "environment": _common.environment(),
  }
  _common.save_json(out, NAME, args.out_dir)
  _common.save_figure(plot(runs, floor, tuple(sizes["snapshot_steps"])), NAME, args.out_dir)
  return out


if __name__ == "__main__":
  main()
