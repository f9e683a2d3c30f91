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
    # parallel="auto" with 5 class groups on 8 devices (Franz et al.'s N_c = 5): 5 devices
    import warnings
    auto_cfg = ImageConfig(**dict(small, num_classes_per_step=5), objective="naive-gauss",
                           bandwidth=0.2, model_overrides={"latent": 32, "num_upsamples": 0})
    res = {}
    for mode in ("none", "auto"):
        auto_cfg.parallel = mode
        run = ImageTask(auto_cfg, dataset=ds)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runner = run.runner()
        s0 = run.init_state()
        state, bank, data = runner.place(s0.replace(bank=None), s0.bank, run.data)
        state, bank, m = runner.train(state, bank, data)
        res[mode] = dict(loss=float(m["loss"]), devices=runner.num_devices, mode=runner.mode,
                         warnings=[str(w.message) for w in caught])
    out["auto5"] = res
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


def test_auto_uses_the_devices_that_divide_the_groups(results):
  """parallel="auto" never fails where one device succeeds: 5 groups on 8 devices use 5."""
  ref, got = results["auto5"]["none"], results["auto5"]["auto"]
  assert ref["devices"] == 1 and got["devices"] == 5 and got["mode"] == "mesh"
  np.testing.assert_allclose(got["loss"], ref["loss"], rtol=2e-5)
  assert any("5 class groups over 5 of the 8 devices" in w for w in got["warnings"])
  assert not ref["warnings"]


class _Dev:
  def __init__(self, process_index, i):
    self.process_index, self.id = process_index, i

  def __repr__(self):
    return f"d{self.process_index}.{self.id}"


@pytest.mark.parametrize("groups,devices,expected", [
    (8, 8, 8), (5, 8, 5), (6, 4, 3), (7, 4, 1), (1, 8, 1), (12, 8, 6), (4, 1, 1)])
def test_auto_devices_single_host(groups, devices, expected):
  devs = [_Dev(0, i) for i in range(devices)]
  if expected < devices:
    with pytest.warns(UserWarning, match=f"over {expected} of the {devices} devices"):
      chosen = parallel.auto_devices(devs, groups)
  else:
    chosen = parallel.auto_devices(devs, groups)
  assert chosen == devs[:expected]


def test_auto_devices_multi_host():
  devs = [_Dev(p, 4 * p + i) for p in range(2) for i in range(4)]  # 2 hosts x 4 devices
  assert parallel.auto_devices(devs, 8) == devs
  with pytest.warns(UserWarning, match="over 6 of the 8"):
    chosen = parallel.auto_devices(devs, 6)  # 3 per host
  assert chosen == devs[:3] + devs[4:7]
  with pytest.warns(UserWarning, match="over 2 of the 8"):
    assert parallel.auto_devices(devs, 10) == [devs[0], devs[4]]
  with pytest.raises(ValueError, match=r"`num_classes_per_step` \(5\).*processes \(2\)"):
    parallel.auto_devices(devs, 5)
