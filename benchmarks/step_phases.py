"""Benchmark: the class-conditional training step of ``drifting_jax.training`` phase by phase,
each phase against its roofline measured in the same run.

The step of :mod:`drifting_jax.training.tasks.image_step` is cut into the phases it runs,
each compiled on its own from the step's own functions and timed (best of ``--repeats``):

* ``features_pos``: the feature streams of the real images (forward);
* ``kernel_width_norm``: the per-class kNN kernel-width statistics of every stream;
* ``generator``: generator forward + backward (vector-Jacobian product w.r.t. the params);
* ``features_gen``: the streams of the generated images, forward + backward (to the images);
* ``drift``: every stream's drift problems (all groups × locations), value and gradient
  w.r.t. the generated features;
* ``optimizer``: AdamW update and parameter EMA;

and the whole jitted step beside them (``step``; its images/s = generated images per second).
Each phase's roofline is ``max(FLOPs / peak FLOP/s, bytes / peak bandwidth)`` with FLOPs and
bytes from XLA's cost analysis of the compiled phase and the peaks measured here (a
1024³ float32 matmul and a 64 MiB elementwise pass); the ratio ``time / roofline`` says how
far a phase is from what this CPU could do.

    python benchmarks/step_phases.py              # both configs, writes the JSON + table
    python benchmarks/step_phases.py --configs pixels --repeats 5

Configurations: ``pixels`` is ``experiments/configs/mnist_small_cpu.py``'s step;
``features`` is ``experiments/configs/mnist_features_cpu.py``'s step with
``mnist_small_cpu``'s generator and the per-location + global mean/std streams of the 14×14
and 7×7 stages and the pixels (the MAE encoder preset, randomly initialised: a trained one
costs the same) on random MNIST-shaped data;
``features_cached`` the same with ``cache_real_features`` (the real images' streams computed
once before training and gathered per batch: its ``features_pos`` phase is empty).
Writes ``benchmarks/results/step_phases.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
PHASES = ("features_pos", "kernel_width_norm", "generator", "features_gen", "drift",
          "optimizer")


def _best(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return min(times)


def _cost(compiled) -> tuple[float, float]:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def peaks(repeats: int) -> dict:
  """Peak float32 matmul FLOP/s and elementwise bandwidth (bytes/s) of this machine."""
  a = jax.random.normal(jax.random.PRNGKey(0), (1024, 1024))
  mm = jax.jit(lambda x: x @ x)
  t = _best(mm, (a,), repeats)
  v = jnp.ones((16 * 2**20,), jnp.float32)  # 64 MiB
  ew = jax.jit(lambda x: x * 1.5 + 1.0)
  tb = _best(ew, (v,), repeats)
  return {"flops_per_s": 2 * 1024**3 / t, "bytes_per_s": 2 * v.nbytes / tb}


def config(name: str):
  from drifting_jax.training import apply_overrides, load_config
  common = {"norm_warmup": 0, "progress": False, "dataset": "fake"}
  small = load_config(CONFIGS / "mnist_small_cpu.py")
  if name == "pixels":
    return apply_overrides(small, common)
  return apply_overrides(load_config(CONFIGS / "mnist_features_cpu.py"),
                         {**common, "feature_encoder": "mae_random", "init_from": None,
                          "model_overrides": dict(small.model_overrides),
                          "cache_real_features": name == "features_cached",
                          "feature_kwargs": {"stages": ["stage1", "stage2"],
                                             "feature_sets": ["loc", "mean_std"],
                                             "include_pixels": True,
                                             "encoder": "mae_mnist_cpu"}})


def profile(name: str, repeats: int, peak: dict) -> dict:
  """Times every phase of one configuration's step and the whole step."""
  from drifting_jax import grouped
  from drifting_jax.data.images import Dataset
  from drifting_jax.models import presets
  from drifting_jax.training import ImageTask
  from drifting_jax.training.state import apply_gradients
  from drifting_jax.training.tasks import image_step as S

  cfg = config(name)
  rng = np.random.default_rng(0)
  fake = Dataset(rng.uniform(-1, 1, (2000, 28, 28, 1)).astype(np.float32),
                 np.arange(2000, dtype=np.int32) % 10, 10, "fake_mnist")
  task = ImageTask(cfg, dataset=fake)
  state = task.init_state()
  bank, batch = task.batch_fn()(state.bank, task.data, state.step)
  model, ext, n_gen = task.model, task.extractor, cfg.num_gen
  g = batch.class_ids.shape[0]
  key = jax.random.PRNGKey(1)
  noise = jax.vmap(lambda gid: presets.sample_image_noise(jax.random.fold_in(key, gid), model,
                                                          n_gen))(batch.group_ids)
  labels = jnp.repeat(batch.class_ids, n_gen)
  flat_noise = noise.noise.reshape(g * n_gen, *noise.noise.shape[2:])

  def gen_apply(params):
    return model.apply(params, flat_noise, labels)

  images = jax.jit(gen_apply)(state.params)
  gen_images = images.reshape(g, n_gen, *images.shape[1:])
  pos_s = jax.jit(lambda p: S._streams(ext, p))(batch.pos)
  gen_s = jax.jit(lambda im: S._streams(ext, im))(gen_images)
  norm = state.norm
  group_loss = functools.partial(S.make_group_loss(cfg), step=0)

  def drift(gen_s, pos_s, norm, ids):
    scales = {k: S._per_location(norm[k].scale[ids], pos_s[k]) for k in ext.names}
    return grouped.stream_loss(group_loss, {k: S._location_groups(v) for k, v in gen_s.items()},
                               {k: S._location_groups(v) for k, v in pos_s.items()},
                               scales=scales)[0]

  grads = jax.tree_util.tree_map(jnp.ones_like, state.params)
  phases = {
      "features_pos": (lambda p: S._streams(ext, p), (batch.pos,)),
      "kernel_width_norm": (lambda nm, ps, ids: S._update_norm(cfg, nm, ps, ids, None),
                            (norm, pos_s, batch.class_ids)),
      "generator": (lambda p, ct: jax.vjp(gen_apply, p)[1](ct), (state.params, images)),
      "features_gen": (lambda im, ct: jax.vjp(lambda x: S._streams(ext, x), im)[1](ct),
                       (gen_images, gen_s)),
      "drift": (jax.value_and_grad(drift), (gen_s, pos_s, norm, batch.class_ids)),
      "optimizer": (lambda st, gr: apply_gradients(st, gr, task.optimizer,
                                                   ema_decay=cfg.ema_decay),
                    (state, grads)),
  }
  rows = {}
  for phase, (fn, args) in phases.items():
    compiled = jax.jit(fn).lower(*args).compile()
    flops, nbytes = _cost(compiled)
    t = _best(compiled, args, repeats)
    roof = max(flops / peak["flops_per_s"], nbytes / peak["bytes_per_s"])
    rows[phase] = {"ms": 1e3 * t, "gflops": flops / 1e9, "mbytes": nbytes / 2**20,
                   "roofline_ms": 1e3 * roof, "ratio": t / roof if roof else float("nan")}
  s0 = state.replace(bank=None)
  step = task.runner().train
  compiled = step.lower(s0, bank, task.data).compile()

  def one(s, b):
    s, b, m = compiled(s, b, task.data)
    return s, b, m

  one(s0, bank)  # allocations
  times = []
  s, b = s0, bank
  for _ in range(repeats):
    t = time.perf_counter()
    s, b, m = one(s, b)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  step_s = min(times)
  return {"config": name, "batch": f"{g}x({cfg.num_pos}+{n_gen})",
          "streams": list(ext.names), "phases": rows,
          "phases_sum_ms": sum(r["ms"] for r in rows.values()),
          "step_ms": 1e3 * step_s, "images_per_s": g * n_gen / step_s}


def markdown(results: list[dict]) -> str:
  out = []
  for r in results:
    out.append(f"**{r['config']}** (batch {r['batch']}, {len(r['streams'])} stream(s)): step "
               f"{r['step_ms']:.1f} ms = {r['images_per_s']:.0f} generated images/s "
               f"(phases timed alone sum to {r['phases_sum_ms']:.1f} ms)\n")
    out.append("| phase | ms | GFLOP | MiB accessed | roofline ms | ratio |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for phase, p in r["phases"].items():
      out.append(f"| {phase} | {p['ms']:.2f} | {p['gflops']:.3f} | {p['mbytes']:.1f} | "
                 f"{p['roofline_ms']:.2f} | {p['ratio']:.1f} |")
    out.append("")
  return "\n".join(out)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--configs", nargs="+", default=["pixels", "features", "features_cached"],
                 choices=["pixels", "features", "features_cached"])
  p.add_argument("--repeats", type=int, default=11)
  p.add_argument("--out", default=str(RESULTS / "step_phases.json"))
  args = p.parse_args(argv)
  peak = peaks(args.repeats)
  results = [profile(c, args.repeats, peak) for c in args.configs]
  out = {"peak": peak, "results": results, "repeats": args.repeats,
         "machine": {"platform": platform.platform(), "cpus": jax.local_device_count(),
                     "jax": jax.__version__}}
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(out, indent=2))
  print(f"peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s, {peak['bytes_per_s'] / 1e9:.1f} GB/s")
  print(markdown(results))
  return out


if __name__ == "__main__":
  main()
