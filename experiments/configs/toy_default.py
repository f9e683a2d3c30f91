"""Default toy run (what `drifting-jax train` does with no arguments).

3-layer MLP (hidden 256, SiLU, 32-d noise) on the checkerboard, `naive-laplace` drift
(Franz et al. Eq. (3)) at tau = 0.03, Adam 1e-3 with 100 warm-up steps and cosine decay to 0,
batch 2048, 3400 steps: SW within the data floor in under 3 minutes on 2 CPU cores
(`experiments/toy_default_search.py`, EXPERIMENTS.md). The v0.1 default (tau = 0.05,
constant learning rate, 2000 steps) is `toy_default_v01.py`.
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("toy")
  config.dataset = "checkerboard"
  config.objective = "naive-laplace"
  config.bandwidth = 0.03
  config.learning_rate = 1e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 100
  config.batch_size = 2048
  config.num_steps = 3400
  return config
