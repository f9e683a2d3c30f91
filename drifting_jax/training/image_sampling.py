"""Sampling from image runs: restore a run (newest checkpoint that restores), generate
class-conditional images, write PNG grids and ``.npz`` files."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax.data import images as image_data
from drifting_jax.models import presets
from drifting_jax.training import rundir
from drifting_jax.training.checkpoint import resolve_checkpoint
from drifting_jax.training.image_config import image_config_from_dict
from drifting_jax.training.images import ImageTrainState

__all__ = ["load_image_run", "sample_images"]


# ------------------------------------------------------------------------------ sampling
def _generate(model, params, key, labels, cfg_scale: float):
  """``[len(labels), H, W, C]`` samples for ``labels`` (CFG scale broadcast)."""
  noise = presets.sample_image_noise(key, model, labels.shape[0])
  return model.apply(params, noise.noise, labels, style=noise.style,
                     cfg_scale=jnp.full(labels.shape, cfg_scale, jnp.float32))


_generate_jit = jax.jit(_generate, static_argnums=0)


def _save_grid(images, path: str, nrow: int) -> None:
  x = np.asarray(images)
  x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1]  # latents: preview the first channels
  image_data.save_image_grid(np.clip(x, -1.0, 1.0), path, nrow=nrow)


def _grid(run, params, path: str) -> None:
  cfg, model = run.cfg, run.model
  classes = min(model.num_classes, 10)
  labels = jnp.repeat(jnp.arange(classes, dtype=jnp.int32), cfg.samples_per_class)
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)
  images = _generate_jit(model, params, key, labels, cfg.sample_cfg_scale)
  if jax.process_index() == 0:
    _save_grid(images, path, cfg.samples_per_class)



def load_image_run(path: str | os.PathLike) -> tuple[Any, ImageTrainState, int]:
  """Config (from the run's ``config.json``) and restored state of a run or checkpoint.

  Args:
    path: a run directory, its ``checkpoints`` directory or one ``checkpoints/<it>``.

  Returns:
    ``(run, state, iteration)`` (``run`` has no data loaded).
  """
  from drifting_jax.training.image_loop import _manager, _restore, build_image_run

  ckpt_dir, step, run_dir = resolve_checkpoint(path)
  record = rundir.load_config_record(run_dir)
  if record is None:
    raise ValueError(f"`workdir_or_checkpoint` {run_dir!r} has no config.json")
  run = build_image_run(image_config_from_dict(record), load_data=False)
  state, bank = run.init()
  manager = _manager(ckpt_dir, run.cfg.max_to_keep)
  try:
    restored = _restore(manager, state, bank, step)
  finally:
    manager.close()
  if restored is None:
    raise ValueError(f"`workdir_or_checkpoint` {ckpt_dir!r} holds no checkpoint")
  return run, restored[0], int(restored[0].step)


def sample_images(workdir_or_checkpoint: str | os.PathLike, *, num: int,
                  class_id: int | None = None, out_path: str | os.PathLike,
                  cfg_scale: float | None = None, seed: int = 0,
                  use_ema: bool = True) -> str:
  """Generates ``num`` images of a trained run; writes a PNG grid and an ``.npz``.

  Args:
    workdir_or_checkpoint: run directory (latest checkpoint) or ``checkpoints/<it>``.
    num: number of images (>= 1).
    class_id: class to generate (None: classes ``0, 1, ...`` in turn).
    out_path: ``.png`` path; the samples (``[num, H, W, C]``), labels and iteration are
      also saved to the same path with suffix ``.npz``.
    cfg_scale: CFG scale (default: the run's ``sample_cfg_scale``).
    seed: sampling seed.
    use_ema: sample the EMA parameters (default) or the raw ones.

  Returns:
    The PNG path.
  """
  if not isinstance(num, int) or num < 1:
    raise ValueError(f"`num` must be a positive int, got {num!r}")
  out_path = os.fspath(out_path)
  if not out_path.lower().endswith(".png"):
    raise ValueError(f"`out_path` must end in .png, got {out_path!r}")
  run, state, it = load_image_run(workdir_or_checkpoint)
  classes = run.model.num_classes
  if class_id is not None and not 0 <= int(class_id) < classes:
    raise ValueError(f"`class_id` must lie in [0, {classes}), got {class_id}")
  labels = (jnp.full((num,), int(class_id), jnp.int32) if class_id is not None
            else jnp.arange(num, dtype=jnp.int32) % min(classes, 10))
  scale = run.cfg.sample_cfg_scale if cfg_scale is None else float(cfg_scale)
  params = state.ema_params if use_ema else state.params
  samples = np.asarray(_generate_jit(run.model, params, jax.random.PRNGKey(seed), labels, scale))
  _save_grid(samples, out_path, nrow=math.ceil(math.sqrt(num)) if class_id is not None
             else min(classes, 10))
  np.savez(os.path.splitext(out_path)[0] + ".npz", samples=samples, labels=np.asarray(labels),
           step=it)
  return out_path
