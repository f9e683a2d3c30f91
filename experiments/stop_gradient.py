"""Stop-gradient necessity — Figs. 3 and 4 (App. F.3) of Secretly-SM.

Trains the toy MLP generator on the Swiss roll and the checkerboard with the exponential
(Laplacian) kernel drift ``naive-laplace`` at ``tau = 0.05`` (the drift F.3 names), with the
stop-gradient loss ``mean ||x - sg(x + V)||^2`` (Eq. 5, ``stop_gradient=True``) and with the
coupled loss ``mean ||V(x)||^2`` backpropagated through ``V`` and through the negatives
(``stop_gradient=False``, Theorem 5.6(ii)), 3 seeds each. Every ``eval_every`` steps it logs

* the mean drift norm ``V̄ = mean_i ||V_sg(G(z_i))||`` of the same Laplacian drift at 2,048
  fixed-noise generated points against 2,048 fixed data points (F.3's definition), and
* the sliced 2-Wasserstein distance (SW) between generated and data samples, fixed
  noise/data/projections across steps (F.3's 5,000 vs 5,000 samples with 200 projections for
  the final SW; a cheaper size for the curve, see "Sizes"),

and reports the log–log Pearson correlation of ``(V̄, SW)`` over training (per seed, and pooled
over seeds as in Fig. 4(c)). The SW noise floor (SW between two independent 5k data sets)
is recorded per data set.

Loss landscape (Fig. 3, checkerboard, seed 0 of each setting): flattened parameter gradients
of the *training* objective are collected every ``grad_every`` steps; their top-2 principal
directions (PCA of the centred gradients) ``d1, d2`` (unit vectors) span the grid
``θ(a, b) = θ* + a d1 + b d2`` of 31×31 points, ``a, b ∈ [−R, R]`` with
``R = LANDSCAPE_RADIUS · ||θ* − θ0||`` (θ0 the init). On the grid we evaluate (i) the training
loss value on a fixed noise / data batch and (ii) SW (2,048 vs 2,048 samples, 50
projections). "Loss" is the value the objective reports: for the stop-gradient loss that value
is ``mean ||x − sg(x + V)||² = mean ||V||²`` — the same function of θ as the coupled loss — but
its *gradient* is not the gradient of this surface (it is the frozen-field regression
gradient); the landscape of the stop-gradient run is therefore ``||V||²`` around the
stop-gradient solution along that run's gradient directions.

Sizes (chosen for a shared 2-core CPU; F.3 gives neither step count nor training batch):
training batch N = M = 512 (the project's default run uses 2048), 1200 Adam steps (lr 1e-3),
3-layer SiLU MLP (hidden 256, 32-d noise); SW curve every 40 steps on 2,048 vs 2,048 samples
with 100 projections (cheaper than F.3's 5k/200, which is used for the final SW and the floor);
landscape SW on 1,024 samples / 50 projections.

    python experiments/stop_gradient.py          # writes experiments/results/stop_gradient.{json,png}
    python experiments/stop_gradient.py --quick  # seconds; smoke test only
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

if __package__ in (None, ""):  # run as `python experiments/stop_gradient.py`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from drifting_jax.metrics.sliced_wasserstein import sliced_wasserstein
from drifting_jax.models.mlp import sample_noise
from drifting_jax.objectives import make_objective
from drifting_jax.training import ToyConfig, sample_data
from experiments import _common
from experiments._tracking import F3_OBJECTIVE, F3_TAU, sw_floor, train_tracked

NAME = "stop_gradient"
DATASETS = ("swiss_roll", "checkerboard")
SETTINGS = {"sg": True, "no_sg": False}
SETTING_LABELS = {"sg": "with stop-gradient", "no_sg": "without stop-gradient (coupled ||V||²)"}
OBJECTIVE = F3_OBJECTIVE
TAU = F3_TAU
LANDSCAPE_DATASET = "checkerboard"
LANDSCAPE_RADIUS = 0.1

FULL = dict(batch_size=512, num_steps=1200, seeds=(0, 1, 2), eval_every=40,
            eval_num=2048, eval_projections=100, drift_num=2048, final_eval_num=5000,
            final_eval_projections=200, grad_every=20,
            grid=31, grid_batch=512, grid_sw_num=1024, grid_sw_projections=50)
QUICK = dict(batch_size=64, num_steps=12, seeds=(0,), eval_every=4, eval_num=256,
             eval_projections=20, drift_num=128, final_eval_num=300,
             final_eval_projections=20, grad_every=2, grid=5, grid_batch=64,
             grid_sw_num=128, grid_sw_projections=10)

PAPER = {
    "figure": "Secretly-SM Figs. 3-4, App. F.3",
    "sg_loglog_r": "> 0.95 (3 seeds)",
    "sg_final_sw": 0.016,
    "no_sg_drift_norm": "~1e-8 (collapse)",
    "no_sg_final_sw": 0.389,
    "landscape": "without SG the ||V||^2 minimum is ~100x deeper and sits at poor SW; "
                 "with SG the loss minimum aligns with a low-SW basin",
}


def make_config(dataset: str, stop_gradient: bool, seed: int, *, batch_size: int,
                num_steps: int, objective: str = OBJECTIVE, bandwidth: float = TAU,
                **extra: Any) -> ToyConfig:
  """The F.3 run: 3-layer MLP, Adam 1e-3, Laplacian drift ``tau = 0.05``."""
  return ToyConfig(dataset=dataset, objective=objective, bandwidth=bandwidth,
                   stop_gradient=stop_gradient, batch_size=batch_size, num_steps=num_steps,
                   seed=seed, learning_rate=1e-3, lr_schedule="constant", warmup_steps=0,
                   progress=False,
                   **extra)


def loglog_pearson(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of ``log a`` and ``log b`` (positive, finite pairs only)."""
  a, b = np.asarray(a, float), np.asarray(b, float)
  ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
  if ok.sum() < 3:
    return math.nan
  la, lb = np.log(a[ok]), np.log(b[ok])
  if la.std() == 0 or lb.std() == 0:
    return math.nan
  return float(np.corrcoef(la, lb)[0, 1])


def pca_directions(grads: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
  """Top-2 principal directions (unit ``[P]`` vectors) of centred gradients ``[K, P]``."""
  g = np.asarray(grads, np.float64)
  g = g - g.mean(axis=0, keepdims=True)
  _, s, vt = np.linalg.svd(g, full_matrices=False)
  var = s**2 / max(np.sum(s**2), 1e-300)
  return vt[0], vt[1], [float(var[0]), float(var[1])]


def landscape(cfg: ToyConfig, tracked: dict, *, n: int, batch: int, sw_num: int,
              sw_projections: int, radius_scale: float = LANDSCAPE_RADIUS) -> dict:
  """Training-loss value and SW on ``θ* + a d1 + b d2``, ``a, b ∈ [−R, R]`` (n × n grid)."""
  d1, d2, var = pca_directions(tracked["grads"])
  theta, unravel = ravel_pytree(tracked["params"])
  theta0, _ = ravel_pytree(tracked["params0"])
  radius = radius_scale * float(jnp.linalg.norm(theta - theta0))
  axis = np.linspace(-radius, radius, n)
  model, objective = tracked["model"], tracked["run"].objective
  key = jax.random.PRNGKey(cfg.eval_seed + 7)
  kz, kd, kz2, kd2, kp = jax.random.split(key, 5)
  z = sample_noise(kz, batch, cfg.noise_dim)
  pos = sample_data(cfg, kd, batch)
  z_sw = sample_noise(kz2, sw_num, cfg.noise_dim)
  data_sw = sample_data(cfg, kd2, sw_num)
  d1j, d2j = jnp.asarray(d1, theta.dtype), jnp.asarray(d2, theta.dtype)

  @jax.jit
  def row(a, bs):
    def one(b):
      p = unravel(theta + a * d1j + b * d2j)
      loss = objective(model.apply(p, z), pos, cfg.num_steps)[0]
      sw = sliced_wasserstein(model.apply(p, z_sw), data_sw, key=kp,
                              num_projections=sw_projections)
      return loss, sw
    return jax.lax.map(one, bs)

  loss, sw = np.zeros((n, n)), np.zeros((n, n))
  bs = jnp.asarray(axis, theta.dtype)
  for i, a in enumerate(axis):
    li, si = row(jnp.asarray(a, theta.dtype), bs)
    loss[i], sw[i] = np.asarray(li), np.asarray(si)
  c = n // 2
  finite = np.where(np.isfinite(loss), loss, np.inf)
  imin = np.unravel_index(np.argmin(finite), loss.shape)
  return {"axis": axis, "radius": radius, "explained_variance": var,
          "num_gradients": int(tracked["grads"].shape[0]), "loss": loss, "sw": sw,
          "loss_at_center": float(loss[c, c]), "sw_at_center": float(sw[c, c]),
          "loss_min": float(loss[imin]), "loss_max": float(np.nanmax(loss)),
          "argmin_ab": [float(axis[imin[0]]), float(axis[imin[1]])],
          "sw_at_loss_min": float(sw[imin]), "sw_min": float(np.nanmin(sw))}


def drift_norm_floor(dataset: str, num: int, seed: int = 4321) -> float:
  """F.3's ``V̄`` with the generator replaced by an exact sampler of ``p``.

  ``num`` samples of ``p`` as "generated" points against ``num`` independent data samples:
  the finite-sample level that ``V̄`` of a perfect generator fluctuates around.
  """
  cfg = ToyConfig(dataset=dataset)
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1))
  obj = make_objective(OBJECTIVE, bandwidth=TAU)
  return float(obj(sample_data(cfg, k1, num), sample_data(cfg, k2, num), 0)[1]["drift_norm"])


def _mean_std(values) -> dict:
  v = np.asarray([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)])
  if v.size == 0:
    return {"mean": math.nan, "std": math.nan, "n": 0}
  return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def run_all(sizes: dict, *, log: Callable[[str], None] = print) -> dict:
  """All data sets × settings × seeds, plus the checkerboard landscapes."""
  runs, landscapes, samples = {}, {}, {}
  for ds in DATASETS:
    for name, sg in SETTINGS.items():
      for seed in sizes["seeds"]:
        cfg = make_config(ds, sg, seed, batch_size=sizes["batch_size"],
                          num_steps=sizes["num_steps"])
        want_grads = ds == LANDSCAPE_DATASET and seed == sizes["seeds"][0]
        t0 = time.perf_counter()
        tr = train_tracked(cfg, eval_every=sizes["eval_every"], eval_num=sizes["eval_num"],
                           eval_projections=sizes["eval_projections"],
                           drift_num=sizes["drift_num"],
                           final_eval_num=sizes["final_eval_num"],
                           final_eval_projections=sizes["final_eval_projections"],
                           grad_every=sizes["grad_every"] if want_grads else 0)
        h = tr["history"]
        rec = {"final_sw": tr["final"]["sw"], "final_drift_norm": tr["final"]["drift_norm"],
               "final_eval": tr["final"],
               "min_sw": float(np.nanmin(h["sw"])),
               "min_drift_norm": float(np.nanmin(h["drift_norm"])),
               "loglog_r": loglog_pearson(h["drift_norm"], h["sw"]),
               "final_train_loss": h["train_loss"][-1], "stopped": tr["stopped"],
               "step_time_s": tr["step_time_s"], "wall_time_s": time.perf_counter() - t0,
               "history": h}
        runs.setdefault(ds, {}).setdefault(name, {})[str(seed)] = rec
        log(f"{ds:12s} {name:5s} seed {seed}: SW {rec['final_sw']:.4f}  V̄ "
            f"{rec['final_drift_norm']:.3e}  r {rec['loglog_r']:.3f}  "
            f"({rec['wall_time_s']:.0f}s, {1e3 * rec['step_time_s']:.0f} ms/step)")
        if seed == sizes["seeds"][0]:
          k = jax.random.PRNGKey(99)
          gen = tr["model"].apply(tr["params"], sample_noise(k, 2000, cfg.noise_dim))
          samples.setdefault(ds, {})[name] = np.asarray(gen)
        if want_grads:
          t1 = time.perf_counter()
          landscapes[name] = landscape(cfg, tr, n=sizes["grid"], batch=sizes["grid_batch"],
                                       sw_num=sizes["grid_sw_num"],
                                       sw_projections=sizes["grid_sw_projections"])
          log(f"  landscape {name}: {time.perf_counter() - t1:.0f}s, loss center "
              f"{landscapes[name]['loss_at_center']:.3e} min {landscapes[name]['loss_min']:.3e}")
  summary = {}
  for ds, by_setting in runs.items():
    for name, by_seed in by_setting.items():
      recs = list(by_seed.values())
      pooled = loglog_pearson(np.concatenate([r["history"]["drift_norm"] for r in recs]),
                              np.concatenate([r["history"]["sw"] for r in recs]))
      summary.setdefault(ds, {})[name] = {
          "final_sw": _mean_std([r["final_sw"] for r in recs]),
          "final_drift_norm": _mean_std([r["final_drift_norm"] for r in recs]),
          "min_drift_norm": _mean_std([r["min_drift_norm"] for r in recs]),
          "loglog_r_per_seed": _mean_std([r["loglog_r"] for r in recs]),
          "loglog_r_pooled": pooled,
          "step_time_s": _mean_std([r["step_time_s"] for r in recs]),
      }
  return {"runs": runs, "summary": summary, "landscapes": landscapes, "samples": samples}


def plot(result: dict, floors: dict, vbar_floors: dict | None = None):
  """Curves (log y), log–log scatters with r, final samples, and the four landscapes."""
  plt = _common.pyplot()
  from matplotlib.colors import LogNorm
  fig, axes = plt.subplots(3, 4, figsize=(19, 14))
  colors = {"swiss_roll": "tab:blue", "checkerboard": "tab:red"}
  styles = {"sg": "-", "no_sg": "--"}
  runs = result["runs"]
  for j, ds in enumerate(DATASETS):
    ax_sw, ax_v, ax_sc = axes[0, j], axes[0, 2 + j], axes[1, j]
    for name in SETTINGS:
      for seed, rec in runs.get(ds, {}).get(name, {}).items():
        h = rec["history"]
        lab = f"{name} s{seed}"
        ax_sw.plot(h["step"], h["sw"], styles[name], color=colors[ds], alpha=0.4 + 0.2 * int(seed), label=lab)
        ax_v.plot(h["step"], h["drift_norm"], styles[name], color=colors[ds], alpha=0.4 + 0.2 * int(seed), label=lab)
      allv = np.concatenate([r["history"]["drift_norm"] for r in runs[ds][name].values()])
      alls = np.concatenate([r["history"]["sw"] for r in runs[ds][name].values()])
      r = result["summary"][ds][name]["loglog_r_pooled"]
      ax_sc.scatter(allv, alls, s=6, marker="o" if name == "sg" else "x",
                    label=f"{name}: r = {r:.3f}")
    ax_sw.axhline(floors[ds], color="k", lw=0.8, ls=":", label="SW floor (data vs data)")
    if vbar_floors:
      ax_v.axhline(vbar_floors[ds], color="k", lw=0.8, ls=":", label="V̄ with exact p samples")
    for ax, ttl in ((ax_sw, "sliced Wasserstein"), (ax_v, "mean drift norm V̄")):
      ax.set_yscale("log")
      ax.set_xlabel("step")
      ax.set_title(f"{ds}: {ttl}", fontsize=10)
      ax.legend(fontsize=6, ncol=2)
    ax_sc.set_xscale("log")
    ax_sc.set_yscale("log")
    ax_sc.set_xlabel("drift norm V̄")
    ax_sc.set_ylabel("SW")
    ax_sc.set_title(f"{ds}: V̄ vs SW over training, all seeds (log–log)")
    ax_sc.legend(fontsize=8)
  for j, name in enumerate(SETTINGS):
    ax = axes[1, 2 + j]
    pts = result["samples"].get(LANDSCAPE_DATASET, {}).get(name)
    if pts is not None:
      ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
      ax.set_xlim(-1.3, 1.3)
      ax.set_ylim(-1.3, 1.3)
      ax.set_aspect("equal")
    ax.set_title(f"{LANDSCAPE_DATASET} samples, {name}, seed 0 (final)")
  for j, (name, what) in enumerate([(n, w) for w in ("loss", "sw") for n in SETTINGS]):
    ax = axes[2, j]
    land = result["landscapes"].get(name)
    if land is None:
      ax.set_axis_off()
      continue
    z = np.asarray(land[what], float)
    pos = z[np.isfinite(z) & (z > 0)]
    norm = LogNorm(vmin=pos.min(), vmax=pos.max()) if pos.size else None
    ax_ = land["axis"]
    im = ax.pcolormesh(ax_, ax_, z.T, norm=norm, shading="auto", cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.plot([0], [0], "r*", ms=12)
    if what == "loss":
      a, b = land["argmin_ab"]
      ax.plot([a], [b], "wx", ms=8)
    label = "training-loss value mean||V||²" if what == "loss" else "SW"
    ax.set_title(f"{LANDSCAPE_DATASET} {name}: {label}\n"
                 f"(min {np.nanmin(z):.2e}, center {land[what + ('_at_center')]:.2e})",
                 fontsize=9)
    ax.set_xlabel("a (PC1 of gradients)")
    ax.set_ylabel("b (PC2)")
  fig.suptitle("Secretly-SM Figs. 3–4: stop-gradient (solid, 'sg') vs coupled ||V||² loss "
               f"(dashed, 'no_sg'), {OBJECTIVE} tau={TAU}; landscapes: red star = trained θ*, "
               "white x = grid loss minimum")
  fig.tight_layout()
  return fig


def main(argv=None) -> dict:
  args = _common.parser(__doc__).parse_args(argv)
  sizes = QUICK if args.quick else FULL
  with _common.Timer() as timer:
    floors = {ds: sw_floor(ds, sizes["final_eval_num"], sizes["final_eval_projections"])
              for ds in DATASETS}
    curve_floors = {ds: sw_floor(ds, sizes["eval_num"], sizes["eval_projections"])
                    for ds in DATASETS}
    vbar_floors = {ds: drift_norm_floor(ds, sizes["drift_num"]) for ds in DATASETS}
    result = run_all(sizes)
  summ = result["summary"]
  ours = {}
  for ds in DATASETS:
    s, n = summ[ds]["sg"], summ[ds]["no_sg"]
    ours[ds] = {"sg_loglog_r_pooled": s["loglog_r_pooled"],
                "sg_loglog_r_per_seed_mean": s["loglog_r_per_seed"]["mean"],
                "sg_final_sw_mean": s["final_sw"]["mean"],
                "no_sg_final_drift_norm_mean": n["final_drift_norm"]["mean"],
                "no_sg_min_drift_norm_mean": n["min_drift_norm"]["mean"],
                "no_sg_final_sw_mean": n["final_sw"]["mean"],
                "no_sg_loglog_r_pooled": n["loglog_r_pooled"],
                "sw_floor": floors[ds], "sw_floor_curve_sizes": curve_floors[ds],
                "drift_norm_floor": vbar_floors[ds]}
  lands = {k: {kk: vv for kk, vv in v.items() if kk not in ("loss", "sw", "axis")}
           for k, v in result["landscapes"].items()}
  if set(lands) == set(SETTINGS):
    ours["landscape_depth_ratio_no_sg_over_sg"] = (
        lands["sg"]["loss_min"] / max(lands["no_sg"]["loss_min"], 1e-300))
  out = {
      "experiment": "Secretly-SM Figs. 3-4 (App. F.3): stop-gradient necessity / drift collapse",
      "command": _common.command("stop_gradient.py", argv),
      "quick": args.quick,
      "wall_time_s": timer.seconds,
      "settings": {
          "objective": OBJECTIVE, "tau": TAU, **{k: v for k, v in sizes.items()},
          "model": "MLP 3x256 SiLU, noise dim 32", "optimizer": "Adam lr 1e-3",
          "drift_norm": "mean ||V_sg|| of naive-laplace tau=0.05 at drift_num fixed-noise "
                        "generated vs drift_num data points",
          "sw": "SW_2; curves: eval_num vs eval_num samples, eval_projections projections "
                "(fixed noise/data/projections); final_sw: final_eval_num vs final_eval_num, "
                "final_eval_projections (F.3: 5k vs 5k, 200); sw_floor at the final sizes",
          "loglog_r": "Pearson r of (log V̄, log SW) over logged steps (per seed; pooled = all "
                      "seeds together as in Fig. 4c)",
          "landscape": f"{LANDSCAPE_DATASET}, seed 0 of each setting; PCA of centred training "
                       f"gradients every grad_every steps; grid theta* + a d1 + b d2, "
                       f"|a|,|b| <= {LANDSCAPE_RADIUS}*||theta*-theta0||; 'loss' = value the "
                       "objective reports = mean||V||^2 for both settings (for SG its gradient "
                       "is the frozen-field gradient, not the gradient of this surface)",
          "deviations": "training batch 512 (project default 2048) and 1200 steps (F.3 states "
                        "neither); in-training SW on 2048 samples / 100 projections every 40 "
                        "steps (final SW at F.3's 5k / 200) -- to fit a shared, heavily loaded "
                        "2-core CPU budget",
      },
      "paper": PAPER,
      "ours": ours,
      "summary": summ,
      "landscapes": lands,
      "landscape_grids": {k: {"axis": v["axis"], "loss": v["loss"], "sw": v["sw"]}
                          for k, v in result["landscapes"].items()},
      "sw_floor": floors,
      "sw_floor_curve_sizes": curve_floors,
      "drift_norm_floor": vbar_floors,
      "floors_note": "sw_floor: SW between two independent data sets at the final-SW sizes; "
                     "sw_floor_curve_sizes: same at the curve sizes; drift_norm_floor: V-bar "
                     "with exact samples of p in place of the generator (drift_num vs drift_num)",
      "runs": result["runs"],
      "environment": _common.environment(),
  }
  _common.save_json(out, NAME, args.out_dir)
  _common.save_figure(plot(result, curve_floors, vbar_floors), NAME, args.out_dir)
  return out


if __name__ == "__main__":
  main()
