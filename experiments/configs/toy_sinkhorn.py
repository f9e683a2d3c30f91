"""Checkerboard with the Sinkhorn-divergence drift (Secretly-SM §6.3, App. F.4, Alg. 2).

`bandwidth` is unused by this objective: the entropic temperature is
epsilon = alpha * mean(C_qp). Two Sinkhorn solves per step are costly on CPU, hence a
smaller batch than the kernel runs.
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("toy")
  config.dataset = "checkerboard"
  config.objective = "sinkhorn"
  config.objective_kwargs = {"alpha": 0.01, "cost_power": 2, "exclude_self": True, "eta": 1.0,
                             "max_iterations": 500, "threshold": 1e-3}
  config.batch_size = 512
  config.num_steps = 2000
  config.lr_schedule = "constant"
  config.warmup_steps = 0
  return config
