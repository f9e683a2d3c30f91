"""Drift collapse without stop-gradient (Secretly-SM Theorem 5.6(ii), App. F.3, Fig. 4).

Trains on the coupled loss ||V(x)||^2 with gradients through V (and through the negatives);
`eval_every` logs the sliced Wasserstein distance next to the drift norm in metrics.jsonl.
Compare with the same config and `--set stop_gradient=true`.
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("toy")
  config.dataset = "checkerboard"
  config.objective = "naive-laplace"
  config.bandwidth = 0.05
  config.stop_gradient = False
  config.num_steps = 2000
  config.lr_schedule = "constant"
  config.warmup_steps = 0
  config.log_every = 50
  config.eval_every = 100
  return config
