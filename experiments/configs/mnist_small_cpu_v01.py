"""The v0.1 ``mnist_small_cpu`` recipe (kept so its numbers stay reproducible; superseded by
``mnist_small_cpu.py``): recognisable digits from a small generator in ~5 minutes.

Franz et al.'s MNIST recipe (§5.1, Table 3) scaled to a CPU budget. Same as the paper:
pixel-space loss, per-class kNN kernel-width normalization (α = 0.99, k = 5, statistics-only
warm-up batches before the first update), Naive-Gauss drift (Eq. (3)) at kernel width 0.2
(the best MNIST width of Gauss#/Naive-Gauss in Franz Table 2), AdamW (β = 0.95, 0.999),
weight decay 1e-4, warm-up + cosine decay, clipping 2.0, N_c = 5 classes per step.
Different: the generator is ``mnist_small_cpu`` in its pure-MLP form (``num_upsamples=0``,
``latent=512``; 1.34M parameters) instead of DiT-S/2, lr 1e-3, 128 real + 128 generated
samples per class, 5,000 steps, EMA 0.995.

Why the MLP form: the preset's conv read-out costs ~0.5 s per step at this batch on 2
loaded CPU cores (about 1,500 steps in 15 minutes), the MLP ~0.04 s
(``benchmarks/train_step.py``). Needs MNIST IDX files at ``../shared/data/mnist`` (or
``$DRIFTING_JAX_MNIST``). About 5 minutes at ~20 steps/s.

    drifting-jax train --config experiments/configs/mnist_small_cpu_v01.py --workdir runs/mnist_cpu_v01
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "mnist_small_cpu"
  config.model_overrides = {"num_upsamples": 0, "latent": 512}
  config.objective = "naive-gauss"
  config.bandwidth = 0.2
  config.num_classes_per_step = 5
  config.num_pos = 128
  config.num_gen = 128
  config.norm_warmup = 100
  config.learning_rate = 1e-3
  config.warmup_steps = 100
  config.num_steps = 5000
  config.ema_decay = 0.995
  config.log_every = 50
  config.sample_every = 1000
  config.checkpoint_every = 1000
  config.samples_per_class = 10
  return config
