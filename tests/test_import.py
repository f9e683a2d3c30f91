"""`import drifting_jax` is light: flax, orbax, optax and ott-jax load only when a subpackage
that needs them is first used (a fresh interpreter, since the test process has them)."""

import subprocess
import sys


def test_bare_import_loads_no_heavy_dependency():
  code = ("import sys, drifting_jax as dj; "
          "heavy = [m for m in ('flax', 'orbax', 'orbax.checkpoint', 'optax', 'ott') "
          "if m in sys.modules]; print(heavy); "
          "f = dj.sinkhorn_drift; print('ott' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  heavy, ott_after = out.stdout.split("\n")[:2]
  assert heavy == "[]", heavy
  assert ott_after == "True"  # the lazy name resolves and loads its module
