"""The encoder task: pre-training Deng et al.'s feature encoder as a masked autoencoder.

Each step draws ``batch_size`` images of the dataset (indices from ``fold_in(data_rng,
step)``), zeroes ``mask_patch × mask_patch`` patches with probability ``mask_prob`` and
trains the :class:`~drifting_jax.models.mae.MAEResNet` preset ``encoder`` to reconstruct the
full images (plus ``cls_weight`` × the cross-entropy of a linear class head; Deng et al. App.
A.5). A run directory ends up holding, besides the trainer's files::

    samples.png    masked input / reconstruction / original of test images
    metrics.json   final losses and the kNN accuracy of the frozen features

The kNN accuracy (``knn_accuracy``: the majority class of the ``eval_k`` nearest training
images in cosine similarity of the pooled last stage, on ``eval_num`` test images) measures
how much class information the frozen features carry. A finished run plugs into generator
training by path: ``ImageConfig(feature_encoder="mae:<run dir>")``
(:func:`load_encoder`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from drifting_jax.data import images as image_data
from drifting_jax.models import mae
from drifting_jax.models.presets import param_table
from drifting_jax.training import checkpoint as ckpt, rundir
from drifting_jax.training.config import (COUNT, POSITIVE_INT, UNIT, Kind, Num, RunConfig,
                                          config_from_dict, register)
from drifting_jax.training.state import (TrainState, apply_gradients, make_optimizer,
                                         split_run_key)
from drifting_jax.training.tasks.base import Stepper, Task

__all__ = ["EncoderConfig", "EncoderTask", "knn_accuracy", "load_encoder"]


@register
@dataclasses.dataclass
class EncoderConfig(RunConfig):
  """Masked-autoencoder pre-training of a feature encoder; the shared fields are those of
  :class:`~drifting_jax.training.config.RunConfig`.

  Attributes:
    dataset, dataset_split: data (:func:`drifting_jax.data.images.load_dataset`).
    encoder: :class:`~drifting_jax.models.mae.MAEResNet` preset (:data:`~drifting_jax.models.mae.MAE_PRESETS`).
    encoder_overrides: preset attribute overrides (e.g. ``{"widths": (8, 16, 32)}``).
    batch_size: images per step.
    mask_patch, mask_prob: masked patch size and probability (official: 2, 0.5).
    cls_weight: weight of the class head's cross-entropy (0: MAE only, no head).
    num_classes: classes of the head (with ``cls_weight > 0``).
    eval_num: test images of the final kNN accuracy (0: none).
    eval_k: neighbours of the kNN accuracy.
  """

  TASK: ClassVar[str] = "encoder"
  CHECKS: ClassVar[dict[str, Any]] = {
      "dataset": Kind(str), "dataset_split": Kind(str), "encoder": Kind(str),
      "encoder_overrides": Kind(dict), "batch_size": POSITIVE_INT,
      "mask_patch": POSITIVE_INT, "mask_prob": Num(low=0, strict=False, high=1,
                                                   high_strict=False),
      "cls_weight": Num(low=0, strict=False), "num_classes": POSITIVE_INT,
      "eval_num": COUNT, "eval_k": POSITIVE_INT,
  }
  AMENDABLE: ClassVar[tuple[str, ...]] = RunConfig.AMENDABLE + ("eval_num", "eval_k")
  NOT_IN_STEP: ClassVar[tuple[str, ...]] = RunConfig.NOT_IN_STEP + (
      "dataset", "dataset_split", "eval_num", "eval_k")

  task: str = "encoder"
  optimizer: str = "adamw"
  learning_rate: float = 2e-3
  weight_decay: float = 1e-4
  warmup_steps: int = 100
  num_steps: int = 2000
  checkpoint_every: int = 500
  dataset: str = "mnist"
  dataset_split: str = "train"
  encoder: str = "mae_mnist_cpu"
  encoder_overrides: dict = dataclasses.field(default_factory=dict)
  batch_size: int = 128
  mask_patch: int = 2
  mask_prob: float = 0.5
  cls_weight: float = 0.0
  num_classes: int = 10
  eval_num: int = 2000
  eval_k: int = 10


def _model(cfg: EncoderConfig) -> mae.MAEResNet:
  return mae.get_encoder(cfg.encoder, num_classes=cfg.num_classes if cfg.cls_weight else 0,
                         **cfg.encoder_overrides)


def pooled_features(model: mae.MAEResNet, variables: Any, images: np.ndarray, *,
                    batch: int = 500) -> np.ndarray:
  """``[N, c]`` unit-norm mean over locations of the last stage (for kNN probes)."""
  last = f"stage{len(model.widths) - 1}"
  fn = jax.jit(lambda x: jnp.mean(model.apply(variables, x, decode=False)["activations"][
      last], axis=(1, 2)))
  out = np.concatenate([np.asarray(fn(jnp.asarray(images[i:i + batch])))
                        for i in range(0, len(images), batch)])
  return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def knn_accuracy(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                 test_labels: np.ndarray, *, k: int = 10) -> float:
  """Accuracy of the majority class of the ``k`` most cosine-similar training features."""
  sims = test_feats @ train_feats.T
  nn_idx = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
  votes = train_labels[nn_idx]
  pred = np.array([np.bincount(v).argmax() for v in votes])
  return float(np.mean(pred == test_labels))


class _EncoderStepper(Stepper):
  def __init__(self, task: "EncoderTask", state: TrainState):
    self._task, self._state = task, state
    self._step = task.train_step()
    self._noise_rng, self._data_rng = split_run_key(state.rng)

  def step(self, it: int) -> dict[str, jax.Array]:
    self._state, metrics = self._step(self._state, self._task.images, self._task.labels,
                                      self._noise_rng, self._data_rng)
    return metrics

  def state(self) -> TrainState:
    return self._state


class EncoderTask(Task):
  """The encoder task (see the module docstring). ``dataset``: an in-memory
  :class:`~drifting_jax.data.images.Dataset` instead of ``cfg.dataset``."""

  name = "encoder"
  config_type = EncoderConfig
  run_files = ("samples.png",)

  def __init__(self, cfg: EncoderConfig, *, dataset: Any = None, objective: Any = None,
               load_data: bool = True):
    super().__init__(cfg)
    if objective is not None:
      raise ValueError("`objective` is not supported by the encoder task (its loss is the "
                       "masked reconstruction)")
    self.model = _model(cfg)
    self.optimizer = make_optimizer(cfg)
    self.images = self.labels = None
    self.image_shape = None
    if load_data:
      ds = dataset if dataset is not None else image_data.load_dataset(
          cfg.dataset, split=cfg.dataset_split)
      self.image_shape = tuple(int(d) for d in ds.images.shape[1:])
      self.model.check_config((1, *self.image_shape))
      mae.mask_patches(jax.random.PRNGKey(0), np.zeros((1, *self.image_shape), np.float32),
                       patch=cfg.mask_patch, prob=cfg.mask_prob)  # validates the patch size
      if cfg.cls_weight and ds.num_classes > cfg.num_classes:
        raise ValueError(f"`num_classes` ({cfg.num_classes}) is smaller than the dataset's "
                         f"{ds.num_classes} classes")
      self.images = jnp.asarray(ds.images, jnp.float32)
      self.labels = jnp.asarray(ds.labels, jnp.int32)

  @property
  def total_steps(self) -> int:
    return self.cfg.num_steps

  def init_state(self, image_shape: tuple[int, ...] | None = None) -> TrainState:
    shape = image_shape or self.image_shape
    if shape is None:  # built without data (a restored run): the dataset's image shape
      shape = self.image_shape = tuple(int(d) for d in image_data.load_dataset(
          self.cfg.dataset, split=self.cfg.dataset_split).images.shape[1:])
    init_key, run_key = jax.random.split(jax.random.PRNGKey(self.cfg.seed))
    params = jax.jit(self.model.init)(init_key, jnp.zeros((1, *shape), jnp.float32))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.optimizer.init(params), rng=run_key)

  def train_step(self):
    """The jitted step ``(state, images, labels, noise_rng, data_rng) -> (state, metrics)``."""
    cfg, model, optimizer = self.cfg, self.model, self.optimizer

    def build():
      def step(state, images, labels, noise_rng, data_rng):
        idx = jax.random.randint(jax.random.fold_in(data_rng, state.step), (cfg.batch_size,),
                                 0, images.shape[0])
        x, y = images[idx], labels[idx]
        key = jax.random.fold_in(noise_rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(
            lambda p: mae.mae_loss(model, p, x, y, key, patch=cfg.mask_patch,
                                   prob=cfg.mask_prob, cls_weight=cfg.cls_weight),
            has_aux=True)(state.params)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return apply_gradients(state, grads, optimizer), metrics
      return jax.jit(step)

    return self.cached("train_step", build)

  def start(self, state: TrainState) -> Stepper:
    if self.images is None:
      raise ValueError("this EncoderTask was built with load_data=False; it cannot train")
    return _EncoderStepper(self, state)

  def _probe(self, params: Any, num: int, k: int) -> dict[str, float]:
    if self.images is None:  # a restored run: the probe's neighbours are training images
      ds = image_data.load_dataset(self.cfg.dataset, split=self.cfg.dataset_split)
      self.images = jnp.asarray(ds.images, jnp.float32)
      self.labels = jnp.asarray(ds.labels, jnp.int32)
    test = image_data.load_dataset(self.cfg.dataset, split="test")
    n_train = min(len(self.images), 10 * num)
    f_train = pooled_features(self.model, params, np.asarray(self.images[:n_train]))
    f_test = pooled_features(self.model, params, test.images[:num])
    return {"knn_accuracy": knn_accuracy(f_train, np.asarray(self.labels[:n_train]), f_test,
                                         test.labels[:num], k=k),
            "knn_k": k, "knn_num_test": int(min(num, len(test.images))),
            "knn_num_train": int(n_train)}

  def _recon_figure(self, params: Any, path: str, num: int = 10) -> None:
    test = image_data.load_dataset(self.cfg.dataset, split="test").images[:num]
    masked, _ = mae.mask_patches(jax.random.PRNGKey(self.cfg.seed), jnp.asarray(test),
                                 patch=self.cfg.mask_patch, prob=self.cfg.mask_prob)
    recon = self.model.apply(params, masked)["recon"]
    rows = np.concatenate([np.asarray(masked), np.clip(np.asarray(recon), -1, 1), test])
    x = rows[..., :3] if rows.shape[-1] >= 3 else rows[..., :1]
    image_data.save_image_grid(x, path, nrow=num)

  def finalize(self, state, workdir, loop):
    metrics = {k: v for k, v in loop.values.items()}
    metrics["step"] = int(state.step)
    if self.cfg.eval_num:
      metrics.update(self._probe(state.params, self.cfg.eval_num, self.cfg.eval_k))
    if workdir is not None:
      self._recon_figure(state.params, os.path.join(workdir, "samples.png"))
      rundir.write_json(os.path.join(workdir, "metrics.json"), metrics)
    return metrics

  def evaluate(self, state, *, run_dir, out=None, num_samples=None, k=None, seed=None,
               progress=False, **options):
    """The kNN accuracy of the frozen features on ``num_samples`` test images."""
    del seed, progress
    given = sorted(n for n, v in options.items() if v is not None)
    if given:
      raise ValueError(f"option(s) {given} do not apply to encoder runs")
    metrics = self._probe(state.params, num_samples or self.cfg.eval_num or 2000,
                          k or self.cfg.eval_k)
    metrics["step"] = int(state.step)
    rundir.write_json(self.default_eval_path(run_dir, out), metrics)
    return metrics

  def sample(self, state, *, num, out, seed=0, **options):
    """Writes masked input / reconstruction / original rows of ``num`` test images."""
    given = sorted(n for n, v in options.items() if v is not None)
    if given:
      raise ValueError(f"option(s) {given} do not apply to encoder runs")
    if not os.fspath(out).lower().endswith(".png"):
      raise ValueError(f"`out` of an encoder run must end in .png, got {os.fspath(out)!r}")
    self._recon_figure(state.params, os.fspath(out), num=num)
    return os.fspath(out)

  def describe(self) -> str:
    shape = self.image_shape or (28, 28, 1)
    shapes = jax.eval_shape(self.model.init, jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    return param_table(f"MAEResNet {self.cfg.encoder}: widths {tuple(self.model.widths)}, "
                       f"blocks {tuple(self.model.blocks)}, input {shape}", shapes["params"])


def load_encoder(path: str | os.PathLike, *, image_shape: tuple[int, ...]
                 ) -> tuple[mae.MAEResNet, Any]:
  """The encoder module and trained variables of an encoder run (newest good checkpoint).

  Args:
    path: the encoder run's directory (or ``checkpoints/<step>``).
    image_shape: ``(H, W, C)`` of the images it will embed.

  Raises:
    ValueError: one line naming ``path`` when it is not a finished encoder run, or when its
      encoder does not fit ``image_shape``.
  """
  where = f"`feature_encoder` {os.fspath(path)!r}"

  def build(record):
    if record.get("task") != "encoder":
      raise ValueError(f"{where} is not an encoder run (expected a config.json with task "
                       f"'encoder', found {record.get('task', 'toy')!r})")
    task = EncoderTask(config_from_dict(record), load_data=False)
    try:
      task.model.check_config((1, *image_shape))
    except ValueError as e:
      raise ValueError(f"{where} cannot embed images of shape {tuple(image_shape)}: "
                       f"{e}") from None
    return task, task.init_state(tuple(image_shape)), task.cfg.max_to_keep

  try:
    task, state, _ = ckpt.restore_run_state(path, build, what="`feature_encoder`")
  except ValueError as e:
    msg = str(e).splitlines()[0]
    raise ValueError(msg if msg.startswith(where) else
                     f"{where} is not an encoder run directory ({msg})") from None
  return task.model, state.params
