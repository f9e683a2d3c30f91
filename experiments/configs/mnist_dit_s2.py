"""Franz et al. §5.1 / Table 3: class-conditional MNIST with DiT-S/2 in pixel space.

DiT-S/2 (patch 2, hidden 384, depth 12, 8 register tokens, 32 style tokens), AdamW
(β1 = 0.95, β2 = 0.999), lr 2e-4, weight decay 1e-4, 300 warm-up steps + cosine decay,
gradient clipping 2.0, 12,000 steps; N_c = 5 classes x 96 positives x 96 generated samples
(effective batch 480); per-class kNN kernel-width normalization (α = 0.99, k = 5) with 300
statistics-only batches before the first update. Objective Naive-Gauss with kernel width 0.2,
the best MNIST setting of Gauss#/Naive-Gauss in Franz Table 2 (sweep ``bandwidth`` and
``objective`` over {naive-laplace, drifting-laplace, gauss#, laplace#} to reproduce Fig. 4).
The parameter EMA (not in Table 3) is only used for the sample grids.

Meant for an accelerator (about 12k DiT-S/2 steps at batch 480); on 2 CPU cores use
``mnist_small_cpu.py``.

    drifting-jax train --config experiments/configs/mnist_dit_s2.py --workdir runs/mnist_dit_s2
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "dit_s2"
  config.objective = "naive-gauss"
  config.bandwidth = 0.2
  config.num_classes_per_step = 5
  config.num_pos = 96
  config.num_gen = 96
  config.kernel_width_norm = True
  config.norm_k = 5
  config.norm_decay = 0.99
  config.norm_warmup = 300
  config.learning_rate = 2e-4
  config.b1 = 0.95
  config.b2 = 0.999
  config.weight_decay = 1e-4
  config.warmup_steps = 300
  config.lr_schedule = "cosine"
  config.grad_clip = 2.0
  config.num_steps = 12000
  config.ema_decay = 0.999
  config.log_every = 50
  config.sample_every = 1000
  config.checkpoint_every = 1000
  return config
