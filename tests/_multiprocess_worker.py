"""Worker of ``test_multiprocess.py``: one of N local CPU processes of a multi-host run.

Usage: ``python _multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR``.
Each process exposes 2 fake CPU devices, joins the run through
``parallel.maybe_initialize_distributed`` (coordinator on ``localhost:PORT``, gloo CPU
collectives), runs one warm-up and three optimizer iterations of the image step on the
global mesh (class groups split over all processes' devices), and writes its view of the
final parameters and the losses to ``OUT_DIR/process_<id>.npz``.
"""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _xla_flags import FAST_COMPILE  # noqa: E402 - cheaper compiles (conftest)

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count=2 {FAST_COMPILE}")


def config():
  """The tiny digits run shared by the workers and the single-process reference."""
  from drifting_jax.training import ImageConfig
  return ImageConfig(dataset="digits", model="digits_small_cpu",
                     model_overrides={"latent": 32, "num_upsamples": 0},
                     objective="naive-gauss", num_classes_per_step=8, num_pos=8, num_gen=6,
                     norm_warmup=1, num_steps=3, warmup_steps=1, learning_rate=1e-2,
                     grad_clip=None, progress=False)


def main(pid: int, num: int, port: int, out_dir: str) -> None:
  import jax
  import numpy as np

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  from drifting_jax.training import parallel
  assert parallel.maybe_initialize_distributed(
      coordinator_address=f"localhost:{port}", num_processes=num, process_id=pid,
      timeout_s=120)
  assert jax.process_count() == num and jax.device_count() == 2 * num, jax.devices()
  from drifting_jax.data.images import load_digits
  from drifting_jax.training import ImageTask

  cfg = config()
  cfg.parallel = "mesh"
  run = ImageTask(cfg, dataset=load_digits())
  runner = run.runner()
  assert runner.mode == "mesh" and runner.num_devices == 2 * num
  s0 = run.init_state()
  state, bank, data = runner.place(s0.replace(bank=None), s0.bank, run.data)
  state, bank, _ = runner.stats(state, bank, data)
  losses = []
  for _ in range(3):
    state, bank, metrics = runner.train(state, bank, data)
    losses.append(float(metrics["loss"]))
  params = [np.asarray(x) for x in jax.tree.leaves(runner.fetch(state).params)]
  np.savez(os.path.join(out_dir, f"process_{pid}.npz"), losses=np.asarray(losses),
           step=int(state.step), **{f"p{i}": p for i, p in enumerate(params)})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
