"""Training: toy-data runs (config, state, loop, checkpoints, evaluation) and class-conditional
image runs (``images``, ``image_loop``, ``parallel``, ``features``); both loops run on
``driver.run_loop`` and keep their run directories with ``rundir``."""

from drifting_jax.training.checkpoint import make_manager, resolve_checkpoint
from drifting_jax.training.config import (
    ToyConfig,
    apply_overrides,
    as_run_config,
    config_dict,
    config_from_dict,
    config_to_dict,
    load_config,
    validate_config,
)
from drifting_jax.training.image_loop import load_image_run, sample_images, train_images
from drifting_jax.training.images import ImageConfig, make_image_objective
from drifting_jax.training.parallel import make_mesh, maybe_initialize_distributed
from drifting_jax.training.evaluation import evaluate, generate, sample_data, save_scatter
from drifting_jax.training.loop import (
    Run,
    TrainResult,
    build,
    build_objective,
    finalize,
    load_run,
    train,
)
from drifting_jax.training.state import (
    TrainState,
    init_state,
    make_model,
    make_optimizer,
    make_train_step,
    split_run_key,
)

__all__ = [
    "ImageConfig",
    "load_image_run",
    "make_image_objective",
    "make_mesh",
    "maybe_initialize_distributed",
    "sample_images",
    "train_images",
    "Run",
    "ToyConfig",
    "TrainResult",
    "TrainState",
    "apply_overrides",
    "as_run_config",
    "build",
    "build_objective",
    "config_dict",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "finalize",
    "generate",
    "init_state",
    "load_config",
    "load_run",
    "make_manager",
    "make_model",
    "make_optimizer",
    "make_train_step",
    "resolve_checkpoint",
    "sample_data",
    "save_scatter",
    "split_run_key",
    "train",
    "validate_config",
]
