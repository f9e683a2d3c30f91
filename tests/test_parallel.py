"""Data-parallel image step: shard_map mesh and pmap agree with one device (8 fake CPU devices).

The fake devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX
initialises, so the comparison runs in a subprocess (``_SCRIPT``) that prints JSON; the
assertions are made here. Checked: the loss, gradients (not ``n_devices`` times too large:
the shard_map gradient of replicated parameters is already a device sum, see
``image_step.make_train_step``), updated params, EMA params and kernel-width scales after two
optimizer iterations, with CFG + memory bank + feature streams (8-device mesh and pmap with
one class group per device; 4-device mesh with two, accumulated over two chunks with
``group_chunks=2``). The statistics-only warm-up step uses
the same all-gather as the train step; the pixel-space objective path runs on a 2-process
mesh in ``test_multiprocess.py``.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import FAST_COMPILE
from drifting_jax.training import parallel

_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import jax, jax.numpy as jnp, numpy as np
    from drifting_jax.data.images import load_digits
    from drifting_jax.training import ImageConfig, ImageTask

    assert jax.device_count() == 8, jax.devices()
    ds = load_digits()
    small = dict(dataset="digits", model="digits_small_cpu", num_classes_per_step=8,
                 num_pos=8, num_gen=6, norm_warmup=0, num_steps=4, warmup_steps=1)
    configs = {
        "cfg_bank_features": ImageConfig(
            **small, model_overrides={"latent": 32, "num_upsamples": 0, "cfg_embed": True},
            objective="drifting-laplace", bandwidth=0.1,
            objective_kwargs={"official": True, "temperatures": (0.05, 0.2)},
            guidance=True, num_uncond=4, memory_bank=True, bank_pos_size=10,
            bank_neg_size=20, bank_push=8, feature_encoder="random_conv",
            feature_kwargs={"channels": (4,), "include_pixels": True}),
    }
    modes = {"cfg_bank_features": ("none", "mesh", "pmap", "mesh4")}
    out = {}
    for name, cfg in configs.items():
        res = {}
        for mode in modes[name]:
            cfg.parallel = mode[:4]
            cfg.group_chunks = 2 if mode == "mesh4" else 1  # 2 groups/device, 1 per chunk
            run = ImageTask(cfg, dataset=ds)
            runner = run.runner(devices=jax.devices()[:4] if mode == "mesh4" else None,
                                with_grads=True)
            s0 = run.init_state()
            state, bank, data = runner.place(s0.replace(bank=None), s0.bank, run.data)
            losses, gnorms, grads = [], [], []
            for _ in range(2):
                state, bank, m = runner.train(state, bank, data)
                losses.append(float(m["loss"])); gnorms.append(float(m["grad_norm"]))
                grads.append([np.asarray(g).tolist() for g in jax.tree.leaves(m["grads"])])
            s = runner.fetch(state)
            leaves = lambda t: [np.asarray(x).tolist() for x in jax.tree.leaves(t)]
            res[mode] = dict(loss=losses, grad_norm=gnorms, grads=grads,
                             params=leaves(s.params), ema=leaves(s.ema_params),
                             scale=leaves({k: v.scale for k, v in s.norm.items()}),
                             step=int(s.step), devices=runner.num_devices, mode=runner.mode)
        out[name] = res
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def results():
  # 8 fake devices; compiles made cheaper as in conftest (the programs run 2 steps).
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
  return json.loads(line[len("RESULT"):])


def _close(a, b, what):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6,
                               err_msg=what)


@pytest.mark.parametrize("mode", ["mesh", "pmap", "mesh4"])
def test_sharded_step_matches_single_device(results, mode):
  config = "cfg_bank_features"
  ref, got = results[config]["none"], results[config][mode]
  assert ref["devices"] == 1 and got["devices"] == (4 if mode == "mesh4" else 8)
  assert got["mode"] == mode[:4] and got["step"] == ref["step"] == 2
  np.testing.assert_allclose(got["loss"], ref["loss"], rtol=2e-5)
  # The trap: a psum'd gradient would be devices x too large (grad_norm 8x the reference).
  np.testing.assert_allclose(got["grad_norm"], ref["grad_norm"], rtol=2e-5)
  for i in range(2):
    _close(got["grads"][i], ref["grads"][i], f"grads step {i}")
  _close(got["params"], ref["params"], "params")
  _close(got["ema"], ref["ema"], "ema params")
  _close(got["scale"], ref["scale"], "kernel-width scales")


def test_make_runner_validation():
  with pytest.raises(ValueError, match="parallel"):
    parallel.make_runner("tpu", make_steps=None, prepare=None, num_groups=2)


def test_distributed_config_validation(monkeypatch):
  for var in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID,
              parallel.ENV_AUTO):
    monkeypatch.delenv(var, raising=False)
  assert parallel.maybe_initialize_distributed() is False  # nothing configured: no-op
  with pytest.raises(ValueError, match="process_id"):
    parallel.maybe_initialize_distributed(coordinator_address="localhost:1234")
  with pytest.raises(ValueError, match="process_id"):
    parallel.maybe_initialize_distributed(coordinator_address="localhost:1234",
                                          num_processes=2, process_id=2)
