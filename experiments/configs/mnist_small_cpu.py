"""MNIST in pixel space on 2 CPU cores: the quickest image recipe (EXPERIMENTS.md §11).

Franz et al.'s MNIST recipe (§5.1, Table 3) scaled to a CPU budget. Same as the paper:
pixel-space loss, 5 classes × 96 real × 96 generated samples per step, per-class kNN
kernel-width normalization (α = 0.99, k = 5, statistics-only warm-up batches), Naive-Gauss
drift (Eq. (3)) at kernel width 0.2 (Franz Table 2's best MNIST width for Gauss#/Naive-Gauss),
AdamW (β = 0.95, 0.999), weight decay 1e-4, warm-up + cosine decay, clipping 2.0, EMA 0.999.
Different: the generator is ``mnist_mlp_cpu`` (3 × 1024 MLP with LayerNorm; its read-out is
4 maps of 28×28 and one 3×3 convolution, then ``tanh`` into the data range; 6.1M
parameters) instead of DiT-S/2, lr 1e-3, 8,000 steps (16 minutes here). The best of
``experiments/mnist_recipe_search.py`` (recipe ``conv3``; table in EXPERIMENTS.md §11):
Inception FID-5k 21.8 against a real-vs-real 4.56 — far from the papers (Franz: 6.81
FID-50k with DiT-S/2). Needs MNIST
IDX files (``$DRIFTING_JAX_MNIST`` or ``--set dataset=mnist:/path``)::

    drifting-jax train --config experiments/configs/mnist_small_cpu.py --workdir runs/mnist
    drifting-jax eval --workdir runs/mnist --fid inception --num-samples 5000
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "mnist_mlp_cpu"
  config.model_overrides = {"readout_kernel": 3, "readout_channels": 4}
  config.objective = "naive-gauss"
  config.bandwidth = 0.2
  config.num_classes_per_step = 5
  config.num_pos = 96
  config.num_gen = 96
  config.norm_warmup = 100
  config.learning_rate = 1e-3
  config.warmup_steps = 300
  config.num_steps = 8000
  config.ema_decay = 0.999
  config.log_every = 100
  config.sample_every = 2000
  config.checkpoint_every = 1000
  config.samples_per_class = 10
  return config
