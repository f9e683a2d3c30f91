"""Scalar curl of the positive drift field V_p^+ — Fig. 5 (App. A.1) of Franz et al.

On a 2D grid, the scalar curl ``∂V_x/∂y − ∂V_y/∂x`` (Def. 5 / Eq. (5)) of the positive
sub-field ``V_p^+`` of Eq. (3) (``normalization="kde"``) for the Gaussian, Laplacian and
rational quadratic kernels, and of the sharp-normalized sub-field ``V_p^{#+}`` of Eq. (18)
(``normalization="sharp"``) for the same kernels. Franz et al. claim (§3, Fig. 5, Prop. 8):
the Gaussian field has exactly zero curl; the Laplacian and RQ fields do not; every
sharp-normalized field is a gradient (``∇ log p_KDE[k#]``) and so has zero curl.

Fig. 5 does not list its data set; we use five fixed, asymmetric 2D points (``DATA``) and
bandwidth 1 for all kernels. Curls come from ``dj.curl`` (forward-mode Jacobians) in float64.

    python experiments/curl_maps.py            # writes experiments/results/curl_maps.{json,png}
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):  # run as `python experiments/curl_maps.py`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import drifting_jax as dj
from experiments import _common

NAME = "curl_maps"
# Fixed data set p (Fig. 5 does not specify one): five points, no symmetry axis.
DATA = ((-1.2, -0.8), (1.1, -1.0), (0.2, 1.3), (-0.5, 0.4), (1.6, 0.9))
KERNELS = {"gauss": dj.gaussian, "laplace": dj.laplacian, "rq": dj.rational_quadratic}
KERNEL_LABELS = {"gauss": "Gaussian", "laplace": "Laplacian", "rq": "rational quadratic"}
NORMALIZATIONS = {"kde": "normalized $V_p^+$ (Eq. 3)", "sharp": "sharp-normalized $V_p^{\\#+}$ (Eq. 18)"}


def grid(n: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
  """``n × n`` grid over ``[−extent, extent]²``: returns (``[n]`` axis, ``[n·n, 2]`` points)."""
  axis = np.linspace(-extent, extent, n)
  xx, yy = np.meshgrid(axis, axis, indexing="xy")
  return axis, np.stack([xx.ravel(), yy.ravel()], axis=1)


def curl_and_jacobian(points: np.ndarray, data: np.ndarray, *, kernel: str, normalization: str,
                      bandwidth: float = 1.0, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Scalar curl and max |Jacobian entry| of ``V_p^+`` at each point (float64).

  Args:
    points: ``[N, 2]`` query points.
    data: ``[M, 2]`` data samples of p.
    kernel: ``"gauss"``, ``"laplace"`` or ``"rq"``.
    normalization: ``"kde"`` (Eq. 3) or ``"sharp"`` (Eq. 18).
    bandwidth: kernel bandwidth σ.
    batch: query points per call.

  Returns:
    ``([N] curl, [N] max_ij |∂V_i/∂x_j|)`` as float64 numpy arrays.
  """
  with _common.x64():
    k = KERNELS[kernel](bandwidth)
    y = jnp.asarray(data, jnp.float64)

    @jax.jit
    def one_batch(z):
      field = lambda q: dj.sub_field(q, y, kernel=k, normalization=normalization)
      jac = dj.jacobian(field, z)                    # [B, 2, 2]
      return dj.curl(field, z)[:, 0], jnp.max(jnp.abs(jac), axis=(1, 2))

    curls, jmax = [], []
    for start in range(0, len(points), batch):
      c, j = one_batch(jnp.asarray(points[start:start + batch], jnp.float64))
      curls.append(np.asarray(c))
      jmax.append(np.asarray(j))
  return np.concatenate(curls), np.concatenate(jmax)


def run(*, n: int = 121, extent: float = 3.0, bandwidth: float = 1.0,
        data=DATA) -> dict:
  """All six curl maps. Returns a dict with the ``[n, n]`` maps and the summary numbers."""
  data = np.asarray(data, np.float64)
  axis, points = grid(n, extent)
  maps, summary = {}, {}
  for norm in NORMALIZATIONS:
    for kern in KERNELS:
      c, jmax = curl_and_jacobian(points, data, kernel=kern, normalization=norm,
                                  bandwidth=bandwidth)
      if not (np.all(np.isfinite(c)) and np.all(np.isfinite(jmax))):
        raise FloatingPointError(f"non-finite curl/Jacobian for {kern}/{norm}")
      key = f"{kern}/{norm}"
      maps[key] = c.reshape(n, n)
      max_curl, max_jac = float(np.max(np.abs(c))), float(np.max(jmax))
      summary[key] = {"max_abs_curl": max_curl, "max_abs_jacobian_entry": max_jac,
                      "relative_max_curl": max_curl / max_jac,
                      "mean_abs_curl": float(np.mean(np.abs(c)))}
  return {"axis": axis, "data": data, "maps": maps, "summary": summary}


def verdicts(summary: dict, *, zero_tol: float = 1e-10, nonzero_tol: float = 1e-3) -> dict:
  """``"zero (round-off)"`` / ``"non-zero"`` / ``"unclear"`` from the relative max curl."""
  out = {}
  for key, s in summary.items():
    r = s["relative_max_curl"]
    out[key] = ("zero (round-off)" if r < zero_tol else "non-zero" if r > nonzero_tol
                else "unclear")
  return out


def plot(result: dict):
  """2×3 panels: rows = normalization (kde, sharp), columns = kernel; shared color scale."""
  plt = _common.pyplot()
  from matplotlib.colors import TwoSlopeNorm
  axis, data, maps = result["axis"], result["data"], result["maps"]
  vmax = max(float(np.max(np.abs(m))) for m in maps.values())
  cnorm = TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax)
  fig, axes = plt.subplots(2, 3, figsize=(13.5, 9.4), constrained_layout=True)
  ext = (axis[0], axis[-1], axis[0], axis[-1])
  for r, norm in enumerate(NORMALIZATIONS):
    for c, kern in enumerate(KERNELS):
      ax = axes[r, c]
      key = f"{kern}/{norm}"
      im = ax.imshow(maps[key], origin="lower", extent=ext, cmap="RdBu_r", norm=cnorm)
      ax.scatter(data[:, 0], data[:, 1], s=18, c="k", marker="o", label="data $p$")
      s = result["summary"][key]
      ax.set_title(f"{KERNEL_LABELS[kern]} — {'normalized' if norm == 'kde' else 'sharp'}\n"
                   f"max|curl| = {s['max_abs_curl']:.2e} (rel. {s['relative_max_curl']:.1e})",
                   fontsize=11)
      ax.set_xlabel("$x_1$")
      ax.set_ylabel("$x_2$")
  fig.colorbar(im, ax=axes, shrink=0.8, label=r"scalar curl $\partial_y V_x - \partial_x V_y$"
               " (shared scale)")
  fig.suptitle("Curl of the positive drift field $V_p^+$ (top, Eq. 3) and the sharp-normalized "
               "$V_p^{\\#+}$ (bottom, Eq. 18), bandwidth "
               f"{result['bandwidth']:g} — Franz et al. Fig. 5", fontsize=12)
  return fig


def main(argv=None) -> dict:
  args = _common.parser(__doc__).parse_args(argv)
  n = 31 if args.quick else 121
  bandwidth = 1.0
  with _common.Timer() as timer:
    result = run(n=n, extent=3.0, bandwidth=bandwidth)
  result["bandwidth"] = bandwidth
  verdict = verdicts(result["summary"])
  out = {
      "experiment": "Franz et al., Fig. 5 (App. A.1): scalar curl of V_p^+ and of V_p^#+",
      "command": _common.command("curl_maps.py", argv),
      "quick": args.quick,
      "wall_time_s": timer.seconds,
      "dtype": "float64",
      "grid": {"n": n, "extent": [-3.0, 3.0]},
      "bandwidth": bandwidth,
      "data": result["data"],
      "data_note": "Fig. 5 does not give its data; five fixed asymmetric points (DATA) used.",
      "results": result["summary"],
      "verdict": verdict,
      "paper_claim": {
          "gauss/kde": "zero curl (Prop. 8: V_p^+ = sigma^2 grad log p_KDE)",
          "laplace/kde": "non-zero curl", "rq/kde": "non-zero curl",
          "gauss/sharp": "zero curl (Eq. 18)", "laplace/sharp": "zero curl (Eq. 18)",
          "rq/sharp": "zero curl (Eq. 18)"},
      "agrees_with_paper": (verdict["gauss/kde"] == "zero (round-off)"
                            and verdict["laplace/kde"] == "non-zero"
                            and verdict["rq/kde"] == "non-zero"
                            and all(verdict[f"{k}/sharp"] == "zero (round-off)"
                                    for k in KERNELS)),
      "environment": _common.environment(),
  }
  _common.save_json(out, NAME, args.out_dir)
  _common.save_figure(plot(result), NAME, args.out_dir)
  return out


if __name__ == "__main__":
  res = main()
  for key, s in res["results"].items():
    print(f"{key:14s} max|curl| {s['max_abs_curl']:.3e}  rel {s['relative_max_curl']:.3e}  "
          f"{res['verdict'][key]}")
  print(f"wall time {res['wall_time_s']:.1f} s")
