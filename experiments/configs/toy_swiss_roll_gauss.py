"""Swiss roll with the Gaussian drift (`naive-gauss`, sigma = 0.05).

Under the Gaussian kernel the drift is a score difference of the smoothed densities
(Secretly-SM Theorem 4.1); `naive-gauss` is equivalent to `gauss#` (Franz et al. §5).
"""

from drifting_jax.training import ToyConfig


def get_config() -> ToyConfig:
  return ToyConfig(
      dataset="swiss_roll",
      objective="naive-gauss",
      bandwidth=0.05,
      num_steps=2000,
      lr_schedule="constant",
      warmup_steps=0,
  )
