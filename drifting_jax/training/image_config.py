"""The configuration of a class-conditional image run: :class:`ImageConfig`, its validation,
config files (Python ``get_config()`` or a run's ``config.json``) and ``--set`` overrides.

The recipe the defaults encode is Franz et al. §5.1 / Table 3 (see
:mod:`drifting_jax.training.images` for the step it configures).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from drifting_jax.training import overrides as overrides_lib
from drifting_jax.training.config import load_config_file

__all__ = ["ImageConfig", "apply_image_overrides", "image_config_from_dict", "load_image_config",
           "validate_image_config"]


@dataclasses.dataclass
class ImageConfig:
  """Hyperparameters of a class-conditional image run (defaults: Franz et al. Table 3).

  Attributes:
    task: always ``"images"`` (lets the CLI tell image configs from toy ones).
    dataset: dataset spec of :func:`drifting_jax.data.images.load_dataset` (``"mnist"``,
      ``"digits"``, ``"npz:/file.npz"``, ...).
    dataset_split: split to train on.
    model: generator preset (:func:`drifting_jax.models.presets.get_model`).
    model_overrides: preset attribute overrides (e.g. ``{"depth": 2}``).
    dtype: generator compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters and the
      loss stay float32).
    objective: objective name (:func:`drifting_jax.objectives.objective_names`).
    bandwidth: kernel width in kernel-width-normalized units (Franz Table 2: best 0.2 for
      Gauss#/Naive-Gauss on MNIST).
    objective_kwargs: extra options of the objective (e.g. ``{"official": True}``).
    schedule, schedule_kwargs: optional bandwidth schedule (per optimizer step).
    stop_gradient: frozen-field loss (True) or the coupled ``mean ||V||^2``.
    num_classes_per_step: ``N_c`` class groups per step (divisible by the device count).
    num_pos: ``N_pos`` real samples per group.
    num_gen: ``N_gen`` generated samples per group (the negatives).
    kernel_width_norm: per-class kNN kernel-width normalization (Franz §5.1).
    norm_k, norm_decay: kNN neighbours (5) and EMA factor α (0.99).
    norm_warmup: statistics-only batches before the first optimizer update (300).
    learning_rate, b1, b2, eps, weight_decay: AdamW.
    warmup_steps: linear lr warm-up, in optimizer updates.
    lr_schedule: ``"cosine"`` (decay to ``final_lr_fraction · lr`` at ``num_steps``) or
      ``"constant"`` after the warm-up.
    final_lr_fraction: end value of the cosine decay, relative to ``learning_rate``.
    grad_clip: global-norm clipping (None = off).
    ema_decay: decay of the parameter EMA.
    num_steps: optimizer updates (the run has ``norm_warmup + num_steps`` iterations).
    guidance: train with classifier-free guidance (CFG; needs a generator with ``cfg_embed`` and the official
      ``drifting-laplace`` objective, the drift loss that supports weighted negatives).
    cfg_min, cfg_max, cfg_power: CFG-scale range and power-law exponent (Secretly-SM T. 2).
    num_uncond: ``N_unc`` unconditional real negatives per group.
    memory_bank: draw positives / unconditional negatives from a memory bank.
    bank_pos_size, bank_neg_size, bank_push: per-class and shared bank sizes, real samples
      pushed per iteration.
    feature_encoder: None (pixel-space loss) or ``"random_conv"`` (frozen random conv net).
    feature_kwargs: options of :func:`~drifting_jax.training.features.make_feature_extractor`.
    parallel: ``"auto"`` (mesh when several devices), ``"none"``, ``"mesh"``, ``"pmap"``.
    group_chunks: process each device's class groups in this many sequential chunks with
      gradient accumulation (``lax.scan``): activation memory / chunks, same gradients up
      to float summation order (must divide the groups per device).
    compiler_options: XLA options of the compiled step programs, e.g.
      ``{"xla_backend_optimization_level": 0}`` halves CPU compile time at some step speed
      (short CPU runs, tests).
    seed: run seed (initialisation, noise, data).
    log_every: JSONL log interval (iterations).
    sample_every: sample-grid interval (iterations; 0 = only at the end).
    samples_per_class: grid columns per class.
    sample_cfg_scale: CFG scale of the sample grids.
    checkpoint_every: checkpoint interval (iterations); the last one is always saved.
    max_to_keep: checkpoints kept on disk.
    progress: show a tqdm progress bar.
  """

  task: str = "images"
  dataset: str = "mnist"
  dataset_split: str = "train"
  model: str = "dit_s2"
  model_overrides: dict = dataclasses.field(default_factory=dict)
  dtype: str = "float32"
  objective: str = "naive-gauss"
  bandwidth: float = 0.2
  objective_kwargs: dict = dataclasses.field(default_factory=dict)
  schedule: str | None = None
  schedule_kwargs: dict = dataclasses.field(default_factory=dict)
  stop_gradient: bool = True
  num_classes_per_step: int = 5
  num_pos: int = 96
  num_gen: int = 96
  kernel_width_norm: bool = True
  norm_k: int = 5
  norm_decay: float = 0.99
  norm_warmup: int = 300
  learning_rate: float = 2e-4
  b1: float = 0.95
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 1e-4
  warmup_steps: int = 300
  lr_schedule: str = "cosine"
  final_lr_fraction: float = 0.0
  grad_clip: float | None = 2.0
  ema_decay: float = 0.999
  num_steps: int = 12000
  guidance: bool = False
  cfg_min: float = 1.0
  cfg_max: float = 4.0
  cfg_power: float = 3.0
  num_uncond: int = 16
  memory_bank: bool = False
  bank_pos_size: int = 128
  bank_neg_size: int = 1000
  bank_push: int = 64
  feature_encoder: str | None = None
  feature_kwargs: dict = dataclasses.field(default_factory=dict)
  parallel: str = "auto"
  group_chunks: int = 1
  compiler_options: dict = dataclasses.field(default_factory=dict)
  seed: int = 0
  log_every: int = 50
  sample_every: int = 1000
  samples_per_class: int = 10
  sample_cfg_scale: float = 1.0
  checkpoint_every: int = 1000
  max_to_keep: int = 2
  progress: bool = True


def validate_image_config(cfg: ImageConfig) -> ImageConfig:
  """Checks field values; raises ``ValueError`` naming the offending field.

  Names (dataset, model, objective, schedule) are checked where they are resolved.
  """
  if not isinstance(cfg, ImageConfig):
    raise ValueError(f"`config` must be an ImageConfig, got {type(cfg).__name__}")

  def num(name, *, integer=False, low=None, strict=True, none=False, high=None):
    v = getattr(cfg, name)
    if v is None and none:
      return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (isinstance(v, int) if integer else True)
    if ok and low is not None:
      ok = v > low if strict else v >= low
    if ok and high is not None:
      ok = v < high
    if not ok:
      bound = "" if low is None else f" {'>' if strict else '>='} {low}"
      bound += "" if high is None else f" and < {high}"
      raise ValueError(f"`{name}` must be {'an int' if integer else 'a number'}{bound}, "
                       f"got {v!r}")

  if cfg.task != "images":
    raise ValueError(f"`task` must be 'images', got {cfg.task!r}")
  for name in ("bandwidth", "learning_rate", "eps", "cfg_min"):
    num(name, low=0)
  num("grad_clip", low=0, none=True)
  for name in ("weight_decay", "final_lr_fraction"):
    num(name, low=0, strict=False)
  for name in ("b1", "b2", "ema_decay", "norm_decay"):
    num(name, low=0, strict=False, high=1)
  for name in ("num_classes_per_step", "num_pos", "log_every", "checkpoint_every",
               "max_to_keep", "samples_per_class", "num_uncond", "bank_pos_size",
               "bank_neg_size", "bank_push", "norm_k"):
    num(name, integer=True, low=0)
  num("num_gen", integer=True, low=1)  # self-interaction is masked: >= 2 samples
  num("group_chunks", integer=True, low=0)
  if cfg.num_classes_per_step % cfg.group_chunks:
    raise ValueError(f"`group_chunks` ({cfg.group_chunks}) must divide `num_classes_per_step` "
                     f"({cfg.num_classes_per_step})")
  for name in ("num_steps", "norm_warmup", "warmup_steps", "sample_every", "seed"):
    num(name, integer=True, low=0, strict=False)
  num("cfg_max", low=cfg.cfg_min, strict=False)
  num("cfg_power", low=0, strict=False)
  num("sample_cfg_scale", low=0)
  if cfg.kernel_width_norm and cfg.norm_k >= cfg.num_pos:
    raise ValueError(f"`norm_k` must be < `num_pos` ({cfg.num_pos}), got {cfg.norm_k}")
  choices = {"dtype": ("float32", "bfloat16"), "lr_schedule": ("cosine", "constant"),
             "parallel": ("auto", "none", "mesh", "pmap")}
  for name, allowed in choices.items():
    if getattr(cfg, name) not in allowed:
      raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(cfg, name)!r}")
  for name in ("model_overrides", "objective_kwargs", "schedule_kwargs", "feature_kwargs",
               "compiler_options"):
    if not isinstance(getattr(cfg, name), dict):
      raise ValueError(f"`{name}` must be a dict, got {getattr(cfg, name)!r}")
  if cfg.guidance and (cfg.objective != "drifting-laplace"
                  or not cfg.objective_kwargs.get("official", False)):
    raise ValueError("`guidance=True` needs objective='drifting-laplace' with objective_kwargs "
                     "{'official': True} (Deng et al.'s loss, the one with weighted "
                     f"negatives); got objective={cfg.objective!r}, "
                     f"objective_kwargs={cfg.objective_kwargs!r}")
  return cfg



# ---------------------------------------------------------------------------------- files
def load_image_config(path: str | os.PathLike) -> ImageConfig:
  """Runs ``get_config()`` of a Python config file (or reads a ``config.json`` dump)."""
  return load_config_file(path, ImageConfig, image_config_from_dict)


def image_config_from_dict(d: dict) -> ImageConfig:
  """An :class:`ImageConfig` from its JSON record (``config.json`` of a run)."""
  d = dict(d)
  if "cfg" in d and "guidance" not in d:  # runs written before v0.2 named the flag `cfg`
    d["guidance"] = d.pop("cfg")
  unknown = sorted(set(d) - {f.name for f in dataclasses.fields(ImageConfig)})
  if unknown:
    raise ValueError(f"unknown ImageConfig field(s) {unknown} in the run's config record")
  return ImageConfig(**d)




def apply_image_overrides(cfg: ImageConfig, overrides: Any) -> ImageConfig:
  """A copy of ``cfg`` with overrides: a dict ``{field: value}`` or ``["field=value", ...]``.

  Dotted keys set an entry of a dict field (``"model_overrides.depth=2"``).

  Raises:
    ValueError: malformed item or unknown field.
  """
  return overrides_lib.apply(cfg, overrides)
