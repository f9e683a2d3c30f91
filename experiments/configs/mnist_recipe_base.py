"""The fixed base of ``experiments/mnist_recipe_search.py`` (every recipe there is this file
with a few fields overridden; the winner became ``mnist_small_cpu.py``).

3 × 1024 MLP with LayerNorm and a tanh output (``mnist_mlp_cpu``, 3.7M parameters),
Naive-Gauss at kernel width 0.2 in kNN-normalized units (Franz et al. §5.1, Table 2's best
MNIST width for Gauss#/Naive-Gauss), 5 classes × 96 real × 96 generated per step, 100
statistics-only warm-up batches, AdamW (β = 0.95, 0.999) 1e-3 with 300 warm-up steps and
cosine decay, weight decay 1e-4, clipping 2.0, EMA 0.999, 8,000 steps.
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "mnist_mlp_cpu"
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
