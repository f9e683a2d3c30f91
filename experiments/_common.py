"""Small helpers shared by the experiment scripts: CLI, results folder, JSON + PNG output.

Every script under ``experiments/`` follows one pattern::

    parser = _common.parser(__doc__)          # adds --quick and --out-dir
    args = parser.parse_args(argv)
    with _common.Timer() as timer, _common.x64():
      ...                                     # testable functions doing the work
    _common.save_json(result, "name", args.out_dir)
    _common.save_figure(fig, "name", args.out_dir)

and writes ``experiments/results/<name>.json`` / ``<name>.png`` by default.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np

from drifting_jax.testing import x64  # noqa: F401 - one float64 switch

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def parser(description: str | None = None) -> argparse.ArgumentParser:
  """An ``ArgumentParser`` with the common ``--quick`` and ``--out-dir`` flags."""
  p = argparse.ArgumentParser(description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="tiny sizes (seconds); for smoke tests, not for reported numbers")
  p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS_DIR,
                 help=f"where to write <name>.json and <name>.png (default: {RESULTS_DIR})")
  return p


def command(script: str, argv: Sequence[str] | None) -> str:
  """The shell command that reproduces a run, e.g. ``python experiments/curl_maps.py``."""
  args = list(sys.argv[1:] if argv is None else argv)
  return " ".join(["python", f"experiments/{script}", *args])




class Timer:
  """Wall-clock timer: ``with Timer() as t: ...; t.seconds``."""

  def __enter__(self) -> "Timer":
    self._start = time.perf_counter()
    self.seconds = 0.0
    return self

  def __exit__(self, *exc) -> None:
    self.seconds = time.perf_counter() - self._start


def environment() -> dict[str, Any]:
  """Versions and backend, recorded next to every result."""
  return {"jax": jax.__version__, "backend": jax.default_backend(),
          "python": platform.python_version(), "machine": platform.machine()}


def _to_builtin(obj: Any) -> Any:
  """numpy / jax scalars and arrays -> python lists and floats; non-finite floats -> str."""
  if isinstance(obj, dict):
    return {str(k): _to_builtin(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_to_builtin(v) for v in obj]
  if isinstance(obj, pathlib.Path):
    return str(obj)
  if isinstance(obj, (np.ndarray, jax.Array)):
    return _to_builtin(np.asarray(obj).tolist())
  if isinstance(obj, (np.bool_, bool)):
    return bool(obj)
  if isinstance(obj, (np.integer, int)):
    return int(obj)
  if isinstance(obj, (np.floating, float)):
    v = float(obj)
    return v if math.isfinite(v) else str(v)  # strict JSON has no NaN/inf
  return obj


def save_json(data: dict[str, Any], name: str, out_dir: pathlib.Path | str = RESULTS_DIR
              ) -> pathlib.Path:
  """Writes ``<out_dir>/<name>.json`` (pretty, strict JSON) and returns its path."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"{name}.json"
  path.write_text(json.dumps(_to_builtin(data), indent=2, allow_nan=False) + "\n")
  return path


def save_figure(fig, name: str, out_dir: pathlib.Path | str = RESULTS_DIR, *, dpi: int = 130
                ) -> pathlib.Path:
  """Saves a matplotlib figure as ``<out_dir>/<name>.png``, closes it, returns the path."""
  import matplotlib.pyplot as plt
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"{name}.png"
  fig.savefig(path, dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  return path


def pyplot():
  """``matplotlib.pyplot`` with the non-interactive Agg backend."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt
