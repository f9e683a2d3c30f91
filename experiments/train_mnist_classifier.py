"""Train the small MNIST CNN whose features define "FID (classifier features)".

Trains :class:`drifting_jax.metrics.features.ClassifierCNN` on the real MNIST train split
(60k images, CPU is enough), reports top-1 accuracy on the 10k test split, and writes

    drifting_jax/assets/mnist_classifier.npz    weights shipped with the package (load_classifier)
    experiments/results/mnist_classifier.json   accuracy, steps, time, command

The FID computed with these features is NOT comparable to Inception FID; quote it as
"FID (classifier features)" together with this checkpoint. Usage::

    python experiments/train_mnist_classifier.py            # ~1.5k steps, a few minutes
    python experiments/train_mnist_classifier.py --quick    # smoke test: digits, seconds,
                                                            # writes mnist_classifier_quick.*
"""

from __future__ import annotations

import pathlib
import sys

if __package__ in (None, ""):  # run as `python experiments/train_mnist_classifier.py`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from drifting_jax.data.images import load_dataset
from drifting_jax.metrics.features import (
    CLASSIFIER_FID_NAME,
    ClassifierCNN,
    save_classifier,
    train_classifier,
)
from experiments import _common

NAME = "mnist_classifier"


def main(argv=None) -> dict:
  p = _common.parser(__doc__)
  p.add_argument("--steps", type=int, default=1500)
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dataset", default="mnist",
                 help="load_dataset spec (default: the MNIST IDX folder, see find_mnist)")
  args = p.parse_args(argv)
  spec, steps, name = args.dataset, args.steps, NAME
  if args.quick:  # scikit-learn digits (8x8), a handful of steps; never overwrites the real run
    spec, steps, name = "digits", min(steps, 50), NAME + "_quick"
  train = load_dataset(spec, split="train")
  test = load_dataset(spec, split="test") if spec.split(":")[0] in ("mnist", "fashion_mnist") \
      else None
  defaults = ClassifierCNN()
  with _common.Timer() as timer:
    params, acc = train_classifier(train, test_dataset=test, steps=steps,
                                   batch_size=args.batch_size, seed=args.seed,
                                   channels=defaults.channels, feature_dim=defaults.feature_dim,
                                   log_every=max(1, steps // 10))
  # the real run's weights are the package data `drifting-jax eval` uses by default
  weights_dir = args.out_dir if args.quick else pathlib.Path(__file__).resolve().parents[1] / \
      "drifting_jax" / "assets"
  weights = save_classifier(weights_dir / f"{name}.npz", params)
  result = {
      "metric_name": CLASSIFIER_FID_NAME,
      "dataset": train.name,
      "test_accuracy": acc,
      "test_split": "test" if test is not None else "10% held out of train",
      "steps": steps,
      "batch_size": args.batch_size,
      "seed": args.seed,
      "architecture": {"channels": list(defaults.channels),
                       "feature_dim": defaults.feature_dim},
      "train_seconds": timer.seconds,
      "weights": weights.name,
      "weights_bytes": weights.stat().st_size,
      "command": _common.command("train_mnist_classifier.py", argv),
      "environment": _common.environment(),
  }
  path = _common.save_json(result, name, args.out_dir)
  print(f"test accuracy {acc:.4f} after {steps} steps in {timer.seconds:.0f}s -> {path}")
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
