"""Deng et al.'s feature encoder (models/mae.py), its multi-scale features
(models/encoders.py) and its use by image runs (``feature_encoder="mae:<run>"``)."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax.data.images import load_digits
from drifting_jax.models import mae
from drifting_jax.models.encoders import mae_extractor, make_feature_extractor, multiscale_features
from drifting_jax.training import EncoderConfig, ImageConfig, ToyConfig, train


def test_encoder_layout_and_reconstruction_shapes():
  model = mae.get_encoder("mae_mnist_cpu", blocks=(1, 3, 1), num_classes=10)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  out = model.apply(variables, x)
  acts = {k: v.shape for k, v in out["activations"].items()}
  assert acts == {"stage0": (2, 28, 28, 16), "stage1": (2, 14, 14, 32),
                  "stage1_block1": (2, 14, 14, 32), "stage2": (2, 7, 7, 64)}
  assert out["recon"].shape == x.shape and out["logits"].shape == (2, 10)
  assert "recon" not in model.apply(variables, x, decode=False)
  patched = mae.get_encoder("mae_mnist_cpu", patch_size=2)
  v2 = patched.init(jax.random.PRNGKey(1), x)
  out2 = patched.apply(v2, x)
  assert out2["recon"].shape == x.shape and out2["activations"]["stage0"].shape == (2, 14, 14, 16)
  with pytest.raises(ValueError, match="images"):
    patched.init(jax.random.PRNGKey(1), jnp.zeros((1, 9, 9, 1)))
  with pytest.raises(ValueError, match="encoder"):
    mae.get_encoder("resnet1000")
  with pytest.raises(ValueError, match="widths"):
    mae.get_encoder("mae_mnist_cpu", widths=(8, 16))  # blocks has 3 stages


def test_mask_patches_zero_whole_patches_at_the_rate():
  x = jnp.ones((64, 28, 28, 1))
  masked, mask = mae.mask_patches(jax.random.PRNGKey(0), x, patch=2, prob=0.5)
  np.testing.assert_array_equal(np.asarray(masked), 1.0 - np.asarray(mask))
  cells = np.asarray(mask)[..., 0].reshape(64, 14, 2, 14, 2)
  assert np.all(cells.min(axis=(2, 4)) == cells.max(axis=(2, 4)))  # whole 2x2 patches
  assert abs(float(mask.mean()) - 0.5) < 0.02
  with pytest.raises(ValueError, match="patch"):
    mae.mask_patches(jax.random.PRNGKey(0), x, patch=3)
  with pytest.raises(ValueError, match="prob"):
    mae.mask_patches(jax.random.PRNGKey(0), x, prob=1.5)


def test_multiscale_features_match_their_definitions():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(3, 8, 8, 5)).astype(np.float32)
  blk = rng.normal(size=(3, 8, 8, 5)).astype(np.float32)
  images = rng.normal(size=(3, 16, 16, 1)).astype(np.float32)
  out = multiscale_features({"stage0": a, "stage0_block1": blk, "stage1": a[:, :6, :6]},
                            images, stages=("stage0", "stage1"), patch_sizes=(2, 4))
  np.testing.assert_allclose(out["stage0/loc"], a.reshape(3, 64, 5))
  np.testing.assert_allclose(out["stage0/mean"], a.mean(axis=(1, 2)), rtol=1e-6)
  np.testing.assert_allclose(out["stage0/std"], np.sqrt(a.reshape(3, 64, 5).var(1) + 1e-6),
                             rtol=1e-5)
  p4 = a.reshape(3, 2, 4, 2, 4, 5)
  np.testing.assert_allclose(out["stage0/p4_mean"], p4.mean(axis=(2, 4)).reshape(3, 4, 5),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["stage0_block1/mean"], blk.mean(axis=(1, 2)), rtol=1e-6)
  np.testing.assert_allclose(out["input/rms"][:, 0],
                             np.sqrt((images.reshape(3, -1) ** 2).mean(1)), rtol=1e-5)
  assert "stage1/p4_mean" not in out and out["stage1/p2_mean"].shape == (3, 9, 5)  # 6 % 4
  with pytest.raises(ValueError, match="feature_sets"):
    multiscale_features({"stage0": a}, images, stages=("stage0",), feature_sets=("edges",))
  with pytest.raises(ValueError, match="stages"):
    multiscale_features({"stage0": a}, images, stages=("stage7",))
  with pytest.raises(ValueError, match="patch_sizes"):
    multiscale_features({"stage1": a[:, :6, :6]}, images, stages=("stage1",),
                        patch_sizes=(4,))
  # "blocks" where the selected stages record no block output would add no stream
  with pytest.raises(ValueError, match="feature_sets.*blocks"):
    multiscale_features({"stage0": a, "stage0_block1": blk, "stage1": a[:, :6, :6]}, images,
                        stages=("stage1",), feature_sets=("loc", "blocks"))
  # ... and the default feature sets leave it out there (every other set stays)
  names = set(multiscale_features({"stage1": a[:, :6, :6]}, images, stages=("stage1",),
                                  patch_sizes=(2,)))
  assert names == {"stage1/loc", "stage1/mean", "stage1/std", "stage1/p2_mean",
                   "stage1/p2_std", "input/rms"}


def test_default_patch_sizes_are_the_official_ones_that_fit():
  """Without ``patch_sizes`` the official 2 and 4 are used where they divide a selected map
  (MNIST's 14×14 and 7×7 maps: 2×2 only); where neither does, the default feature sets leave
  the patch streams out and asking for them is an error naming ``patch_sizes``."""
  rng = np.random.default_rng(1)
  acts = {"stage1": rng.normal(size=(2, 14, 14, 3)).astype(np.float32),
          "stage2": rng.normal(size=(2, 7, 7, 3)).astype(np.float32)}
  images = rng.normal(size=(2, 28, 28, 1)).astype(np.float32)
  out = multiscale_features(acts, images, stages=("stage1", "stage2"))
  assert {k for k in out if "/p" in k} == {"stage1/p2_mean", "stage1/p2_std"}
  cells = acts["stage1"].reshape(2, 7, 2, 7, 2, 3).mean(axis=(2, 4)).reshape(2, 49, 3)
  np.testing.assert_allclose(out["stage1/p2_mean"], cells, rtol=1e-5, atol=1e-6)
  eight = {"s": rng.normal(size=(2, 8, 8, 3)).astype(np.float32)}
  assert {k for k in multiscale_features(eight, images, stages=("s",)) if "/p" in k} == {
      "s/p2_mean", "s/p2_std", "s/p4_mean", "s/p4_std"}
  only7 = multiscale_features(acts, images, stages=("stage2",))
  assert set(only7) == {"stage2/loc", "stage2/mean", "stage2/std", "input/rms"}
  with pytest.raises(ValueError, match="patch_sizes"):
    multiscale_features(acts, images, stages=("stage2",), feature_sets=("patch_mean_std",))
  with pytest.raises(ValueError, match="patch_sizes"):  # a given size must divide a map
    multiscale_features(acts, images, stages=("stage1", "stage2"), patch_sizes=(2, 4))
  # the MNIST preset's extractor on its 14×14 and 7×7 stages works with the default patch
  # sizes (before, the 4×4 default raised there); with every stage, 4×4 is used at 28×28
  model = mae.get_encoder("mae_mnist_cpu")
  x = jnp.zeros((1, 28, 28, 1))
  v = model.init(jax.random.PRNGKey(0), x)
  ext = mae_extractor(model, v, image_shape=(28, 28, 1), stages=("stage1", "stage2"),
                      feature_sets=("patch_mean_std",))
  assert ext.names == ("stage1/p2_mean", "stage1/p2_std")
  names = mae_extractor(model, v, image_shape=(28, 28, 1)).names
  assert {n for n in names if "/p4_" in n} == {"stage0/p4_mean", "stage0/p4_std"}


def test_block_streams_need_a_stage_with_three_blocks():
  """MAEResNet records every second block that is not its stage's last: with (1, 3) blocks
  the second stage has ``stage1_block1``, whose mean/std streams the extractor adds; with one
  block per stage asking for them is an error naming the argument."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  deep = mae.get_encoder("mae_mnist_cpu", widths=(4, 8), blocks=(1, 3))
  dv = deep.init(jax.random.PRNGKey(1), x)
  opts = dict(image_shape=(8, 8, 1), stages=("stage0", "stage1"), feature_sets=("blocks",))
  ext = mae_extractor(deep, dv, **opts)
  assert ext.names == ("stage1_block1/mean", "stage1_block1/std")
  block = deep.apply(dv, x, decode=False)["activations"]["stage1_block1"]
  np.testing.assert_allclose(ext.apply(x)["stage1_block1/mean"], block.mean(axis=(1, 2)),
                             rtol=1e-5, atol=1e-6)
  shallow = mae.get_encoder("mae_mnist_cpu", widths=(4, 8), blocks=(1, 1))
  with pytest.raises(ValueError, match="feature_sets"):
    mae_extractor(shallow, shallow.init(jax.random.PRNGKey(1), x), **opts)


def test_frozen_encoder_passes_gradients_to_images_not_to_its_parameters():
  model = mae.get_encoder("mae_mnist_cpu", widths=(4, 8), blocks=(1, 1))
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  opts = dict(image_shape=(8, 8, 1), stages=("stage0", "stage1"),
              feature_sets=("loc", "mean_std", "patch_mean_std"), patch_sizes=(2,))
  energy = lambda v, im: sum(jnp.sum(f ** 2) for f in mae_extractor(model, v, **opts).apply(
      im).values())
  g_params, g_images = jax.grad(energy, argnums=(0, 1))(variables, x)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_params))
  assert float(jnp.abs(g_images).sum()) > 0
  ext = make_feature_extractor("mae_random", image_shape=(8, 8, 1), stages=("stage1",),
                               feature_sets=("loc",),
                               encoder_overrides={"widths": (4, 8), "blocks": (1, 1)})
  assert ext.names == ("stage1/loc",) and ext.apply(x)["stage1/loc"].shape == (3, 16, 8)


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
  path = tmp_path_factory.mktemp("enc") / "run"
  cfg = EncoderConfig(dataset="digits", encoder_overrides={"widths": (4, 8), "blocks": (1, 1)},
                      batch_size=32, num_steps=6, warmup_steps=1, eval_num=200, eval_k=5,
                      log_every=2, checkpoint_every=6, progress=False)
  result = train(cfg, path, dataset=load_digits())
  return path, result


def test_encoder_run_reports_reconstruction_and_knn_accuracy(encoder_run):
  path, result = encoder_run
  m = json.load(open(path / "metrics.json"))
  assert np.isfinite(m["recon_loss"]) and 0.0 <= m["knn_accuracy"] <= 1.0
  assert m["knn_accuracy"] > 0.2  # 10 classes: chance is 0.1
  assert os.path.isfile(path / "samples.png")


def test_image_run_on_a_trained_encoder(encoder_run, tmp_path):
  path, result = encoder_run
  base = dict(dataset="digits", model="digits_small_cpu",
              model_overrides={"latent": 32, "num_upsamples": 0}, num_classes_per_step=2,
              num_pos=8, num_gen=6, norm_warmup=1, num_steps=2, log_every=1, sample_every=0,
              progress=False, feature_encoder=f"mae:{path}",
              feature_kwargs={"stages": ["stage1"], "feature_sets": ["loc", "mean_std"],
                              "include_pixels": True})
  out = train(ImageConfig(**base), None, dataset=load_digits())
  for k in ("loss/stage1/loc", "loss/stage1/mean", "loss/stage1/std", "loss/pixels"):
    assert np.isfinite(out.metrics[k]), k
  assert set(out.state.norm) == {"stage1/loc", "stage1/mean", "stage1/std", "pixels"}
  # the encoder is loaded as trained: its features differ from a random encoder's
  from drifting_jax.training.tasks.encoder import load_encoder
  module, variables = load_encoder(path, image_shape=(8, 8, 1))
  chex.assert_trees_all_equal(variables, result.state.params)
  bad = {"toy run": (tmp_path / "toy", "not an encoder run"),
         "missing": (tmp_path / "missing", "is not an encoder run directory")}
  train(ToyConfig(num_steps=1, batch_size=8, hidden=8, eval_num_samples=8, progress=False),
        tmp_path / "toy")
  for name, (where, match) in bad.items():
    with pytest.raises(ValueError, match=match) as e:
      train(ImageConfig(**dict(base, feature_encoder=f"mae:{where}")), None,
            dataset=load_digits())
    assert str(where) in str(e.value) and "\n" not in str(e.value), name
  with pytest.raises(ValueError, match="feature_kwargs"):
    train(ImageConfig(**dict(base, feature_kwargs={"stage": ["stage1"]})), None,
          dataset=load_digits())
