"""Checkerboard with the annealed Gaussian doubly-stochastic drift (Secretly-SM §6.2).

sigma(t) = max(sigma0 e^(-r t), sigma_min), Eq. (18), with t the optimizer step:
sigma0 = 1.0 decays to sigma_min = bandwidth = 0.05 by step ~1000 (r = 3e-3 per step).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("toy")
  config.dataset = "checkerboard"
  config.objective = "gauss-annealed"
  config.bandwidth = 0.05
  config.objective_kwargs = {"sigma0": 1.0, "rate": 3e-3}
  config.num_steps = 2000
  config.lr_schedule = "constant"
  config.warmup_steps = 0
  return config
