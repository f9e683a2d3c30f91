"""`drifting-jax eval` on an image run: FID (classifier features), precision, recall, F1."""

import json

import numpy as np
import pytest

from drifting_jax import cli
from drifting_jax.data.images import load_digits
from drifting_jax.metrics.features import save_classifier, train_classifier
from drifting_jax.training.image_loop import train_images
from drifting_jax.training.images import ImageConfig


@pytest.fixture(scope="module")
def digits():
  return load_digits()


def test_eval_image_run_writes_fid_precision_recall(tmp_path, digits):
  cfg = ImageConfig(dataset="digits", model="digits_small_cpu",
                    model_overrides={"latent": 32, "num_upsamples": 0},
                    objective="naive-gauss", bandwidth=0.5, num_classes_per_step=2, num_pos=8,
                    num_gen=8, norm_warmup=1, num_steps=3, warmup_steps=1, log_every=1,
                    checkpoint_every=3, sample_every=0, samples_per_class=1, progress=False,
                    compiler_options={"xla_backend_optimization_level": 0})
  train_images(cfg, tmp_path / "run", dataset=digits)
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
