"""Feature extractors: classifier CNN (train / save / load / features) and InceptionV3 shapes."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from drifting_jax.data.images import Dataset
from drifting_jax.metrics import features as F


def _toy_dataset(n=200, size=8, seed=0):
  """Two trivially separable classes: bright top half (0) vs bright bottom half (1)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n).astype(np.int32)
  images = np.full((n, size, size, 1), -1.0, np.float32)
  for i, y in enumerate(labels):
    rows = slice(0, size // 2) if y == 0 else slice(size // 2, size)
    images[i, rows] = 1.0
  images += 0.1 * rng.standard_normal(images.shape).astype(np.float32)
  return Dataset(np.clip(images, -1, 1), labels, 2, "toy")


@pytest.fixture(scope="module")
def trained():
  params, acc = F.train_classifier(_toy_dataset(), steps=40, batch_size=32, seed=0,
                                   channels=(4, 8), feature_dim=16, learning_rate=1e-2)
  return params, acc


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (3, 32, 24, 3)])
def test_classifier_shapes(shape):
  model = F.ClassifierCNN(num_classes=7, channels=(4, 8), feature_dim=12)
  v = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(shape))
  logits, feats = jax.eval_shape(model.apply, v, jnp.zeros(shape))
  assert logits.shape == (shape[0], 7) and feats.shape == (shape[0], 12)


def test_train_features_save_load(trained, tmp_path):
  params, acc = trained
  assert acc == 1.0  # held-out 10% of a perfectly separable toy set
  ds = _toy_dataset(n=30, seed=1)
  feats = F.classifier_features(params, ds.images, batch_size=7)  # padded last batch
  assert feats.shape == (30, 16) and feats.dtype == np.float32 and np.all(feats >= 0)
  np.testing.assert_allclose(feats[:7], F.classifier_features(params, ds.images[:7]),
                             rtol=1e-5, atol=1e-6)
  assert F.classifier_accuracy(params, ds.images, ds.labels, batch_size=7) == 1.0

  path = F.save_classifier(tmp_path / "clf.npz", params)
  with np.load(path) as data:
    assert sorted(data.files) == ["Conv_0/bias", "Conv_0/kernel", "Conv_1/bias",
                                  "Conv_1/kernel", "Dense_0/bias", "Dense_0/kernel",
                                  "Dense_1/bias", "Dense_1/kernel"]
    assert data["Conv_1/kernel"].shape == (3, 3, 4, 8)
  loaded = F.load_classifier(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(params))
  np.testing.assert_array_equal(F.classifier_features(loaded, ds.images, batch_size=7), feats)
  # Same images -> FID (classifier features) is 0; different classes -> clearly positive.
  trace = np.trace(np.cov(feats, rowvar=False))
  assert abs(float(F.classifier_fid(params, ds.images, ds.images, batch_size=7))) < 1e-5 * trace
  zeros, ones = ds.images[ds.labels == 0], ds.images[ds.labels == 1]
  assert float(F.classifier_fid(params, zeros, ones, batch_size=7)) > 1.0
  assert F.CLASSIFIER_FID_NAME == "FID (classifier features)"


def test_classifier_validation(trained, tmp_path):
  params, _ = trained
  with pytest.raises(ValueError, match="images.*do not fit"):
    F.classifier_features(params, np.zeros((2, 28, 28, 1), np.float32))
  with pytest.raises(ValueError, match="images.*\\[N, H, W, C\\]"):
    F.classifier_features(params, np.zeros((2, 8, 8), np.float32))
  with pytest.raises(ValueError, match="images.*NaN"):
    F.classifier_features(params, np.full((2, 8, 8, 1), np.nan, np.float32))
  with pytest.raises(ValueError, match="params"):
    F.classifier_features({"foo": {}}, np.zeros((2, 8, 8, 1), np.float32))
  with pytest.raises(ValueError, match="steps"):
    F.train_classifier(_toy_dataset(n=10), steps=0)
  with pytest.raises(ValueError, match="labels"):
    F.classifier_accuracy(params, np.zeros((2, 8, 8, 1), np.float32), np.zeros(3))


# ----------------------------------------------------------------------------- InceptionV3


@pytest.fixture(scope="module")
def inception_shapes():
  return F.inception_variable_shapes()


def test_inception_output_shape(inception_shapes):
  # Shapes only (a real forward pass is ~6 GFLOP per image on CPU). Any input size is
  # resized to 299x299, grayscale repeated to RGB.
  out = jax.eval_shape(F.InceptionV3().apply, inception_shapes,
                       jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
  assert out.shape == (2, 2048) and out.dtype == jnp.float32


def _fake_state_dict(inception_shapes, dtype=np.float32):
  """PyTorch-layout state dict of the right shapes (zeros), plus ignored extra keys."""
  sd = {}
  for path, leaf in traverse_util.flatten_dict(dict(inception_shapes)).items():
    suffix, _ = F._TORCH_KEYS[(path[0], path[-1])]
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
  assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
  assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
  # Conv kernels are transposed OIHW -> HWIO; BN arrays go to params / batch_stats.
  w = np.arange(32 * 3 * 3 * 3, dtype=np.float32).reshape(32, 3, 3, 3)
  sd["Conv2d_1a_3x3.conv.weight"] = w
  sd["Mixed_6b.branch7x7_2.bn.running_var"] = np.full(128, 2.5, np.float32)
  v = F.inception_variables_from_state_dict(sd)
  np.testing.assert_array_equal(v["params"]["Conv2d_1a_3x3"]["conv"]["kernel"][1, 2, 0, 5],
                                w[5, 0, 1, 2])
  assert np.all(v["batch_stats"]["Mixed_6b"]["branch7x7_2"]["bn"]["var"] == 2.5)
  jax.tree.map(lambda a, b: a.shape == b.shape or pytest.fail("shape"), v,
               dict(inception_shapes))


def test_inception_loading_errors(inception_shapes, tmp_path):
  sd = _fake_state_dict(inception_shapes, np.float16)
  small = {k: sd[k] for k in ("Conv2d_1a_3x3.conv.weight", "fc.weight")}
  small["Mixed_7a.branch3x3_2.conv.weight"] = np.zeros((320, 192, 1, 1), np.float16)
  path = tmp_path / "incep.npz"
  np.savez(path, **small)
  with pytest.raises(ValueError, match="468 missing keys.*1 wrong shapes.*"
                     "Mixed_7a.branch3x3_2.conv.weight"):
    F.load_inception_params(path)
  with open(tmp_path / "bad.pkl", "wb") as f:
    pickle.dump([1, 2], f)
  with pytest.raises(ValueError, match="dict of arrays"):
    F.load_inception_params(tmp_path / "bad.pkl")
  with pytest.raises(ValueError, match="1 or 3 channels"):
    F.inception_features({}, np.zeros((1, 8, 8, 2), np.float32))


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
  got = F._BasicConv(4, (1, 1)).apply(variables, x)
  want = np.maximum((x @ w[:, :, 0, 0].T - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tf_style_average_pool_ignores_padding():
  x = jnp.ones((1, 4, 5, 2))
  np.testing.assert_allclose(F._avg3(x), 1.0)  # torch count_include_pad=True gives 4/9 corners
