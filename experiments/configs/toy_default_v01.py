"""The v0.1 default toy run (kept so its numbers stay reproducible: SW 0.02953, seed 0).

3-layer MLP (hidden 256, SiLU, 32-d noise) on the checkerboard, `naive-laplace` drift
(Franz et al. Eq. (3), tau = 0.05), Adam lr 1e-3, batch 2048, 2000 steps
(Secretly-SM App. F.3/F.4 setup).
"""

from drifting_jax.training import ToyConfig


def get_config() -> ToyConfig:
  return ToyConfig(
      dataset="checkerboard",
      objective="naive-laplace",
      bandwidth=0.05,
      learning_rate=1e-3,
      batch_size=2048,
      num_steps=2000,
      lr_schedule="constant",
      warmup_steps=0,
  )
