"""scikit-learn digits (8x8, bundled, no download) on CPU in about a minute or two.

A smoke-scale version of Franz et al.'s MNIST recipe (§5.1, Table 3): the small conv
generator ``digits_small_cpu``, pixel-space Naive-Gauss drift (Eq. (3); Gauss#/Naive-Gauss
had the best FID in Franz Table 2) with per-class kNN kernel-width normalization,
AdamW + warm-up + cosine decay + clipping as in Table 3, but a shorter schedule, a larger
learning rate and 5 classes x 64 samples per step.

    drifting-jax train --config experiments/configs/digits_cpu.py --workdir runs/digits
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "digits"
  config.model = "digits_small_cpu"
  config.objective = "naive-gauss"
  config.bandwidth = 0.2
  config.num_classes_per_step = 5
  config.num_pos = 64
  config.num_gen = 64
  config.norm_warmup = 50
  config.learning_rate = 1e-3
  config.warmup_steps = 50
  config.num_steps = 800
  config.ema_decay = 0.99
  config.log_every = 50
  config.sample_every = 200
  config.checkpoint_every = 400
  config.samples_per_class = 10
  return config
