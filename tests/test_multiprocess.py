"""Multi-host data parallelism with 2 local CPU processes (``jax.distributed`` + gloo).

Two subprocesses (``_multiprocess_worker.py``, 2 fake CPU devices each) join through a
coordinator on a free localhost port and run the image step on a 4-device global mesh;
both must end with identical parameters, equal to a single-process run. Bounded by
timeouts; skipped (with the reason) only if this jax build cannot do CPU collectives.
"""

import importlib.util
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_multiprocess_worker.py")
TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _worker_module():
  spec = importlib.util.spec_from_file_location("_multiprocess_worker", WORKER)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_two_processes_end_with_identical_params(tmp_path):
  if not hasattr(jax.config, "jax_cpu_collectives_implementation"):
    pytest.skip("this jax build has no CPU collectives option (gloo)")
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
      [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
  env.pop("XLA_FLAGS", None)
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), "2", str(port), str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(2)]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for i, (p, log) in enumerate(zip(procs, logs)):
    if p.returncode != 0 and re.search(
        r"collective.{0,200}(unimplemented|not (supported|implemented|available))", log,
        re.IGNORECASE | re.DOTALL):
      pytest.skip(f"CPU collectives unavailable in this jax build: {log[-500:]}")
    assert p.returncode == 0, f"process {i} failed:\n{log[-4000:]}"

  a, b = (np.load(str(tmp_path / f"process_{i}.npz")) for i in range(2))
  assert int(a["step"]) == int(b["step"]) == 4
  for key in a.files:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)

  # Same run in this process on one device: the 4-device, 2-host mesh changes nothing.
  from drifting_jax.data.images import load_digits
  from drifting_jax.training import ImageTask
  run = ImageTask(_worker_module().config(), dataset=load_digits())
  runner = run.runner()
  state = run.init_state()
  bank = state.bank
  state, bank, _ = runner.stats(state, bank, run.data)
  losses = []
  for _ in range(3):
    state, bank, m = runner.train(state, bank, run.data)
    losses.append(float(m["loss"]))
  np.testing.assert_allclose(a["losses"], losses, rtol=2e-5)
  for i, p in enumerate(jax.tree.leaves(state.params)):
    np.testing.assert_allclose(a[f"p{i}"], np.asarray(p), rtol=2e-5, atol=2e-6)
