"""The user-facing examples under ``examples/`` run (smoke tests at a few steps)."""

import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np

from conftest import FAST_COMPILE

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_toy_own_step_trains():
  main = runpy.run_path(str(EXAMPLES / "toy_own_step.py"))["main"]
  sw_start = main(steps=1, batch=256)
  sw = main(steps=60, batch=256)
  assert np.isfinite(sw) and sw < sw_start  # 60 steps already move the samples to the data


def test_toy_data_parallel_on_fake_devices():
  # A subprocess: the fake CPU device count must be set before JAX initializes its backend,
  # which this test process has already done.
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=4 {FAST_COMPILE}")
  out = subprocess.run([sys.executable, str(EXAMPLES / "toy_data_parallel.py"), "--steps", "5"],
                       env=env, capture_output=True, text=True, check=True, timeout=300)
  assert out.stdout.startswith("4 devices"), out.stdout + out.stderr


def test_class_conditional_step_trains():
  main = runpy.run_path(str(EXAMPLES / "class_conditional_step.py"))["main"]
  acc_start = main(steps=1, warmup=2)
  acc = main(steps=60, warmup=5)
  # class-conditional generation: chance is 0.25; 60 steps put every sample in its class
  assert acc_start < 0.8 and acc >= 0.95


def test_feature_space_step_trains():
  main = runpy.run_path(str(EXAMPLES / "feature_space_step.py"))["main"]
  # the class means of the samples move toward the data's (ratio of the errors after/before)
  assert main(steps=40, encoder_steps=20) < 0.6
