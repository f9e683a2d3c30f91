"""`drifting-jax eval` on an image run: FID (classifier features) and Inception FID, with
precision, recall, F1 and the real-vs-real floor."""

import json

import numpy as np
import pytest

from drifting_jax import cli
from drifting_jax.data.images import load_digits
from drifting_jax.metrics.features import save_classifier, train_classifier
from drifting_jax.training import ImageConfig, train


@pytest.fixture(scope="module")
def digits():
  return load_digits()


def _tiny_run(path, digits):
  cfg = ImageConfig(dataset="digits", model="digits_small_cpu",
                    model_overrides={"latent": 32, "num_upsamples": 0},
                    objective="naive-gauss", bandwidth=0.5, num_classes_per_step=2, num_pos=8,
                    num_gen=8, norm_warmup=1, num_steps=3, warmup_steps=1, log_every=1,
                    checkpoint_every=3, sample_every=0, samples_per_class=1, progress=False,
                    compiler_options={"xla_backend_optimization_level": 0})
  train(cfg, path, dataset=digits)


def _random_inception_weights(path):
  """A weights file of the right layout with random values (the real file is 87 MB and not
  available in CI): exercises loading, the feature cache and the metric plumbing."""
  from flax import traverse_util

  from drifting_jax.metrics import inception as I
  rng = np.random.default_rng(0)
  sd = {}
  for p, leaf in traverse_util.flatten_dict(dict(I.inception_variable_shapes())).items():
    suffix, _ = I._TORCH_KEYS[(p[0], p[-1])]
    shape = leaf.shape
    if p[-1] == "kernel":
      shape = (shape[3], shape[2], shape[0], shape[1])
      value = rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
    else:
      value = np.ones(shape) if suffix in ("weight", "running_var") else np.zeros(shape)
    sd[".".join(p[1:-1] + (suffix,))] = value.astype(np.float32)
  np.savez(path, **sd)


def test_eval_inception_reports_floor_and_caches_real_features(tmp_path, digits, monkeypatch):
  monkeypatch.setenv("DRIFTING_JAX_CACHE", str(tmp_path / "cache"))
  _tiny_run(tmp_path / "run", digits)
  weights = tmp_path / "w.npz"
  _random_inception_weights(weights)
  with pytest.raises(FileNotFoundError, match="convert-inception"):
    cli.cmd_eval(str(tmp_path / "run"), num_samples=8, fid="inception",
                 inception_weights=str(tmp_path / "missing.npz"))
  m = cli.cmd_eval(str(tmp_path / "run"), num_samples=8, fid="inception",
                   inception_weights=str(weights))
  assert m["inception_num"] == 8 and "fid_classifier_features" not in m
  assert np.isfinite(m["inception_fid"]) and m["inception_fid"] > 0
  for key in ("precision", "recall", "f1"):
    assert 0 <= m[f"inception_{key}"] <= 1 and 0 <= m[f"inception_{key}_real_vs_real"] <= 1
  # digits has no split: "train" and "test" are the same images, so the floor is exactly 0
  # and real-vs-real precision = recall = 1 (a check that both real sets were embedded)
  assert abs(m["inception_fid_real_vs_real"]) < 1e-3
  assert m["inception_precision_real_vs_real"] == 1.0
  cached = sorted((tmp_path / "cache" / "features").glob("*.npz"))
  assert len(cached) == 2  # test and train features, reused by the next evaluation
  m2 = cli.cmd_eval(str(tmp_path / "run"), num_samples=8, fid="inception",
                    inception_weights=str(weights))
  np.testing.assert_allclose(m2["inception_fid"], m["inception_fid"], rtol=1e-6)


def test_eval_image_run_writes_fid_precision_recall(tmp_path, digits):
  _tiny_run(tmp_path / "run", digits)
  params, _ = train_classifier(digits, steps=20, batch_size=64, seed=0)
  save_classifier(tmp_path / "clf.npz", params)

  assert cli.main(["eval", "--workdir", str(tmp_path / "run"), "--num-samples", "60",
                   "--classifier", str(tmp_path / "clf.npz")]) == 0
  metrics = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
  assert metrics["metric_name"] == "FID (classifier features)"
  assert np.isfinite(metrics["fid_classifier_features"]) and metrics["fid_classifier_features"] >= 0
  for key in ("precision", "recall", "classifier_accuracy_on_samples"):
    assert 0.0 <= metrics[key] <= 1.0
  p, r = metrics["precision"], metrics["recall"]
  expect_f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
  np.testing.assert_allclose(metrics["f1"], expect_f1, rtol=1e-6)
  assert metrics["num_generated"] == 60 and metrics["num_real"] == 60

  with pytest.raises(ValueError, match="classifier"):
    cli.cmd_eval(str(tmp_path / "run"), num_samples=60, classifier=str(tmp_path / "none.npz"))
