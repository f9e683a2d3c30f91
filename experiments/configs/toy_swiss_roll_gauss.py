"""Swiss roll with the Gaussian drift (`naive-gauss`, sigma = 0.05).

Under the Gaussian kernel the drift is a score difference of the smoothed densities
(Secretly-SM Theorem 4.1); `naive-gauss` is equivalent to `gauss#` (Franz et al. §5).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("toy")
  config.dataset = "swiss_roll"
  config.objective = "naive-gauss"
  config.bandwidth = 0.05
  config.num_steps = 2000
  config.lr_schedule = "constant"
  config.warmup_steps = 0
  return config
