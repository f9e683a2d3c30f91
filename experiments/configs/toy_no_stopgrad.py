"""Drift collapse without stop-gradient (Secretly-SM Theorem 5.6(ii), App. F.3, Fig. 4).

Trains on the coupled loss ||V(x)||^2 with gradients through V (and through the negatives);
`eval_every` logs the sliced Wasserstein distance next to the drift norm in metrics.jsonl.
Compare with the same config and `--set stop_gradient=true`.
"""

from drifting_jax.training import ToyConfig


def get_config() -> ToyConfig:
  return ToyConfig(
      dataset="checkerboard",
      objective="naive-laplace",
      bandwidth=0.05,
      stop_gradient=False,
      num_steps=2000,
      lr_schedule="constant",
      warmup_steps=0,
      log_every=50,
      eval_every=100,
  )
