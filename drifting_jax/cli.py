"""The ``drifting-jax`` command line: ``train``, ``sample`` and ``eval`` for toy generators.

Examples::

    drifting-jax train                                  # checkerboard, naive-laplace, 2000 steps
    drifting-jax train --config experiments/configs/toy_swiss_roll_gauss.py --workdir runs/sr
    drifting-jax train --set objective=gauss-annealed --set num_steps=500
    drifting-jax sample --workdir runs/sr --num 5000 --out samples.npz
    drifting-jax eval --workdir runs/sr --num-samples 5000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np

__all__ = ["build_parser", "cmd_eval", "cmd_sample", "cmd_train", "main"]

DEFAULT_WORKDIR = os.path.join("runs", "toy_default")


def build_parser() -> argparse.ArgumentParser:
  """The argument parser of ``drifting-jax``."""
  parser = argparse.ArgumentParser(
      prog="drifting-jax", description="Train, sample and evaluate toy drifting generators.")
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train (or resume) a toy generator")
  p.add_argument("--config", default=None,
                 help="config file defining get_config() (default: toy_default settings)")
  p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                 help=f"run directory (default: {DEFAULT_WORKDIR}); resumes if it holds "
                      "checkpoints")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field (repeatable), e.g. --set bandwidth=0.1")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

  p = sub.add_parser("sample", help="draw samples from a trained generator")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="run directory (latest checkpoint)")
  src.add_argument("--checkpoint", help="checkpoints directory or one checkpoints/<step>")
  p.add_argument("--num", type=int, default=5000, help="number of samples")
  p.add_argument("--out", required=True, help="output .png (scatter vs data) or .npz")
  p.add_argument("--seed", type=int, default=0, help="sampling seed")

  p = sub.add_parser("eval", help="sliced Wasserstein / MMD of a trained generator")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="run directory (latest checkpoint)")
  src.add_argument("--checkpoint", help="checkpoints directory or one checkpoints/<step>")
  p.add_argument("--num-samples", type=int, default=None,
                 help="samples per side (default: the run's eval_num_samples)")
  p.add_argument("--num-projections", type=int, default=None,
                 help="sliced-Wasserstein projections (default: the run's setting)")
  p.add_argument("--seed", type=int, default=None, help="evaluation seed")
  p.add_argument("--out", default=None,
                 help="metrics JSON path (default: <run dir>/eval_metrics.json)")
  return parser


def cmd_train(config: str | None, workdir: str, overrides: Sequence[str],
              progress: bool = True) -> dict:
  """``drifting-jax train``: loads/overrides the config, trains, returns final metrics."""
  from drifting_jax.training import apply_overrides, load_config, train

  cfg = apply_overrides(load_config(config), list(overrides))
  if not progress:
    cfg.progress = False
  result = train(cfg, workdir)
  return result.metrics


def cmd_sample(source: str, *, num: int, out: str, seed: int = 0) -> str:
  """``drifting-jax sample``: writes ``num`` samples to ``out`` (.npz or .png)."""
  from drifting_jax.training import generate, load_run, sample_data, save_scatter

  if num < 1:
    raise ValueError(f"`num` must be >= 1, got {num}")
  ext = os.path.splitext(out)[1].lower()
  if ext not in (".npz", ".png"):
    raise ValueError(f"`out` must end in .npz or .png, got {out!r}")
  cfg, state = load_run(source)
  k_gen, k_data = jax.random.split(jax.random.PRNGKey(seed))
  samples = np.asarray(generate(cfg, state.params, k_gen, num))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if ext == ".npz":
    np.savez(out, samples=samples, step=int(state.step))
  else:
    data = np.asarray(sample_data(cfg, k_data, num))
    save_scatter(out, samples, data,
                 title=f"{cfg.objective} on {cfg.dataset}, step {int(state.step)}")
  return out


def cmd_eval(source: str, *, num_samples: int | None = None,
             num_projections: int | None = None, seed: int | None = None,
             out: str | None = None) -> dict:
  """``drifting-jax eval``: computes metrics, writes them as JSON, returns them."""
  from drifting_jax.training import evaluate, load_run, resolve_checkpoint

  cfg, state = load_run(source)
  metrics = evaluate(cfg, state.params, num_samples=num_samples,
                     num_projections=num_projections, seed=seed)
  metrics["step"] = int(state.step)
  out = out or os.path.join(resolve_checkpoint(source)[2], "eval_metrics.json")
  with open(out, "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
    f.write("\n")
  return metrics


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``drifting-jax`` console script; returns the exit status."""
  args = build_parser().parse_args(argv)
  if args.command == "train":
    metrics = cmd_train(args.config, args.workdir, args.overrides,
                        progress=not args.no_progress)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"run written to {os.path.abspath(args.workdir)}")
  elif args.command == "sample":
    path = cmd_sample(args.workdir or args.checkpoint, num=args.num, out=args.out,
                      seed=args.seed)
    print(f"wrote {args.num} samples to {path}")
  else:
    metrics = cmd_eval(args.workdir or args.checkpoint, num_samples=args.num_samples,
                       num_projections=args.num_projections, seed=args.seed, out=args.out)
    print(json.dumps(metrics, indent=2, sort_keys=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
