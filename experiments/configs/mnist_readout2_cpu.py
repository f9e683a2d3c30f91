"""MNIST in pixel space with a two-layer conv read-out: the pixel phase of the feature recipe.

``mnist_small_cpu.py`` with one change of generator and a shorter schedule: the 3 × 1024
MLP's read-out is 8 maps of 28×28, a hidden 3×3 convolution with SiLU and the 3×3 output
filter (``readout_channels=8, readout_depth=2``: a local nonlinear read-out instead of one
linear filter over 4 maps), 6,000 steps (warm-up + cosine decay over them). Inception FID-5k
in EXPERIMENTS.md §14 (``pixels_readout2``). ``experiments/configs/mnist_features_cpu.py``
starts from this run (its ``init_from``)::

    drifting-jax train --config experiments/configs/mnist_readout2_cpu.py --workdir runs/mnist_pix
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "mnist_mlp_cpu"
  config.model_overrides = {"readout_kernel": 3, "readout_channels": 8, "readout_depth": 2}
  config.objective = "naive-gauss"
  config.bandwidth = 0.2
  config.num_classes_per_step = 5
  config.num_pos = 96
  config.num_gen = 96
  config.norm_warmup = 100
  config.learning_rate = 1e-3
  config.warmup_steps = 300
  config.num_steps = 6000
  config.ema_decay = 0.999
  config.log_every = 100
  config.sample_every = 2000
  config.checkpoint_every = 1000
  config.samples_per_class = 10
  return config
