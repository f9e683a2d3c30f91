"""Feature extractor: the classifier CNN (train / save / load / features)."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  chex.assert_trees_all_equal(loaded, jax.device_get(params))
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
