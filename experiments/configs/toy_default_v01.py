"""The v0.1 default toy run (kept so its numbers stay reproducible: SW 0.02953, seed 0).

3-layer MLP (hidden 256, SiLU, 32-d noise) on the checkerboard, `naive-laplace` drift
(Franz et al. Eq. (3), tau = 0.05), Adam lr 1e-3, batch 2048, 2000 steps
(Secretly-SM App. F.3/F.4 setup).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("toy")
  config.dataset = "checkerboard"
  config.objective = "naive-laplace"
  config.bandwidth = 0.05
  config.learning_rate = 1e-3
  config.batch_size = 2048
  config.num_steps = 2000
  config.lr_schedule = "constant"
  config.warmup_steps = 0
  return config
