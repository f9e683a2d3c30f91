"""The class-conditional image task: configs, the step's math, warm-up, features, bf16, its
files and sampling (the pipeline's resume / lock / guard tests are in test_pipeline.py).

Tiny models and batches throughout (sklearn digits, 8x8); the ImageNet config runs one step
with shrunken DiTGen overrides on fake latents.
"""

import dataclasses
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax import objectives
from drifting_jax.data.images import Dataset, load_digits
from drifting_jax.grouped import sample_cfg_scale
from drifting_jax.models import encoders as features
from drifting_jax.models import presets
from drifting_jax.training import (ImageConfig, ImageTask, apply_overrides, load_config,
                                   sample_run, train, validate_config)

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs")
# Unoptimised XLA code compiles about twice as fast; these programs run only a few steps.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
IMAGE_CONFIGS = ("mnist_dit_s2", "mnist_small_cpu", "mnist_small_cpu_v01", "mnist_readout2_cpu",
                 "digits_cpu", "imagenet_latent_ditgen_b")


def tiny(**kw) -> ImageConfig:
  base = dict(dataset="digits", model="digits_small_cpu",
              model_overrides={"latent": 32, "num_upsamples": 0}, objective="naive-gauss",
              num_classes_per_step=3, num_pos=8, num_gen=6, norm_warmup=2, num_steps=40,
              warmup_steps=2, learning_rate=3e-3, ema_decay=0.5, log_every=10,
              checkpoint_every=20, sample_every=20, samples_per_class=2, progress=False,
              compiler_options=FAST_COMPILE)
  base.update(kw)
  return ImageConfig(**base)


@pytest.fixture(scope="module")
def digits():
  return load_digits()


def _init(task):
  """``(state, bank)`` of a fresh run, as the runners take them."""
  state = task.init_state()
  return state.replace(bank=None), state.bank


# ------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", IMAGE_CONFIGS)
def test_config_files_build(name):
  cfg = load_config(os.path.join(CONFIGS, f"{name}.py"))
  assert validate_config(cfg) is cfg and cfg.task == "images"
  ImageTask(cfg, load_data=False)  # model, optimizer, streams resolve


def test_configs_follow_the_papers():
  franz = load_config(os.path.join(CONFIGS, "mnist_dit_s2.py"))  # Franz Table 3
  assert (franz.model, franz.num_classes_per_step, franz.num_pos, franz.num_gen) == (
      "dit_s2", 5, 96, 96)
  assert (franz.learning_rate, franz.b1, franz.b2, franz.weight_decay) == (2e-4, 0.95, 0.999,
                                                                           1e-4)
  assert (franz.warmup_steps, franz.grad_clip, franz.num_steps, franz.lr_schedule) == (
      300, 2.0, 12000, "cosine")
  assert (franz.norm_k, franz.norm_decay, franz.norm_warmup) == (5, 0.99, 300)
  sm = load_config(os.path.join(CONFIGS, "imagenet_latent_ditgen_b.py"))  # Table 2
  assert (sm.model, sm.num_classes_per_step, sm.num_gen, sm.num_pos, sm.num_uncond) == (
      "ditgen_b2", 1024, 64, 64, 16)
  assert (sm.b1, sm.b2, sm.weight_decay, sm.warmup_steps, sm.lr_schedule) == (
      0.9, 0.95, 0.01, 5000, "constant")
  assert (sm.guidance, sm.cfg_min, sm.cfg_max, sm.cfg_power, sm.ema_decay) == (True, 1, 4, 3, 0.999)
  assert (sm.bank_pos_size, sm.bank_neg_size, sm.bank_push) == (128, 1000, 64)


@pytest.mark.parametrize("field,value,match", [
    ("dtype", "float16", "dtype"), ("num_gen", 1, "num_gen"), ("norm_k", 8, "norm_k"),
    ("ema_decay", 1.0, "ema_decay"), ("parallel", "tpu", "parallel"),
    ("guidance", True, "guidance"),
    ("grad_clip", -1.0, "grad_clip"), ("model_overrides", [], "model_overrides"),
    ("task", "toy", "task")])
def test_validation_names_the_field(field, value, match):
  with pytest.raises(ValueError, match=match):
    validate_config(dataclasses.replace(tiny(), **{field: value}))


def test_build_errors_name_the_argument(digits):
  with pytest.raises(ValueError, match="objective"):
    ImageTask(tiny(objective="gauss-nope"), dataset=digits)
  with pytest.raises(ValueError, match="dataset"):
    ImageTask(tiny(model="mnist_small_cpu", model_overrides={}), dataset=digits)
  with pytest.raises(ValueError, match="guidance"):  # the conv generator has no CFG embedding
    ImageTask(tiny(guidance=True, objective="drifting-laplace",
                         objective_kwargs={"official": True, "temperatures": (0.05,)}), dataset=digits)
  poisoned = digits.images.copy()
  poisoned[7, 2, 3, 0] = np.nan  # refused before training, not found later as a NaN loss
  with pytest.raises(ValueError, match=r"`dataset.images` image 7 contains NaN"):
    ImageTask(tiny(), dataset=digits._replace(images=poisoned))


def test_overrides():
  cfg = apply_overrides(tiny(), ["bandwidth=0.1", "num_steps=7", "grad_clip=none",
                                       "objective=gauss#", "model_overrides.latent=16",
                                       "dtype=bfloat16", "cfg_min=2"])
  assert (cfg.bandwidth, cfg.num_steps, cfg.grad_clip, cfg.objective) == (0.1, 7, None, "gauss#")
  assert cfg.model_overrides == {"latent": 16, "num_upsamples": 0}
  assert cfg.dtype == "bfloat16" and cfg.cfg_min == 2.0 and isinstance(cfg.cfg_min, float)
  assert tiny().model_overrides == {"latent": 32, "num_upsamples": 0}  # copy, not mutated
  assert apply_overrides(tiny(), {"seed": 3}).seed == 3
  with pytest.raises(ValueError, match="unknown config field"):
    apply_overrides(tiny(), ["nope=1"])
  with pytest.raises(ValueError, match="key=value"):
    apply_overrides(tiny(), ["nope"])


def test_cfg_scale_power_law():
  a = np.asarray(sample_cfg_scale(jax.random.PRNGKey(0), 20000, low=1.0, high=4.0, power=3.0))
  assert a.min() >= 1.0 and a.max() <= 4.0
  # CDF of p(a) ∝ a^-3 on [1, 4]: (1 - a^-2) / (1 - 1/16).
  for q in (1.2, 1.5, 2.0, 3.0):
    assert np.mean(a <= q) == pytest.approx((1 - q ** -2) / (1 - 1 / 16), abs=0.015)


# ------------------------------------------------------------------------- the step's math
def test_train_step_is_mean_of_per_class_objectives(digits):
  """Loss = mean over class groups of objective(gen/s_c, pos/s_c) on flattened images, with
  the group noise fold_in(fold_in(rng, it), g) and s_c the class kernel-width scales; the
  warm-up iterations update only the scales (no optimizer step, lr schedule not advanced)."""
  cfg = tiny()
  run = ImageTask(cfg, dataset=digits)
  runner = run.runner()
  state0, bank = _init(run)
  state, bank, m = runner.stats(state0, bank, run.data)
  state, bank, m = runner.stats(state, bank, run.data)
  chex.assert_trees_all_equal(state.params, state0.params)
  chex.assert_trees_all_equal(state.opt_state, state0.opt_state)
  assert int(state.step) == 2 and not np.allclose(state.norm["pixels"].scale, 1.0)

  from drifting_jax import normalization
  _, batch = run.batch_fn()(None, run.data, state.step)
  norm = normalization.update(state.norm["pixels"], batch.pos.reshape(3, 8, -1),
                              batch.class_ids, k=cfg.norm_k, decay=cfg.norm_decay)
  objective = objectives.make_objective("naive-gauss", bandwidth=cfg.bandwidth)

  @jax.jit
  def group_loss(g, class_id, pos, scale):  # one class, written out without vmap
    key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), g)
    noise = presets.sample_image_noise(key, run.model, cfg.num_gen)
    labels = jnp.full((cfg.num_gen,), class_id)
    gen = run.model.apply(state.params, noise.noise, labels, style=noise.style)
    return objective(gen.reshape(cfg.num_gen, -1) / scale, pos.reshape(8, -1) / scale, 0)[0]

  losses = [group_loss(g, batch.class_ids[g], batch.pos[g], norm.scale[batch.class_ids[g]])
            for g in range(3)]
  new, bank, m = runner.train(state, bank, run.data)
  assert float(m["loss"]) == pytest.approx(float(np.mean(losses)), rel=1e-5)
  np.testing.assert_allclose(new.norm["pixels"].scale, norm.scale, rtol=1e-6)
  assert float(m["lr"]) == 0.0  # first update: warm-up schedule at optimizer count 0
  assert int(new.opt_state[1][0].count) == 1


def test_features_cfg_bank_bf16_step(digits):
  """Feature streams (losses summed), CFG + memory bank and bfloat16 compute in one step."""
  cfg = tiny(model_overrides={"latent": 32, "num_upsamples": 0, "cfg_embed": True},
             dtype="bfloat16", objective="drifting-laplace", bandwidth=0.1,
             objective_kwargs={"official": True, "temperatures": (0.05, 0.2)}, guidance=True,
             num_uncond=4, memory_bank=True, bank_pos_size=10, bank_neg_size=20, bank_push=6,
             feature_encoder="random_conv",
             feature_kwargs={"channels": (4,), "include_pixels": True}, norm_warmup=0)
  run = ImageTask(cfg, dataset=digits)
  assert run.extractor.names == ("conv0_mean", "conv0_grid", "pixels")
  runner = run.runner()
  state, bank = _init(run)
  assert int(bank.pos_count.min()) == 10 and int(bank.neg_count) == 20  # pre-filled
  state, bank, m = runner.train(state, bank, run.data)
  assert int(bank.neg_ptr) == 6  # (20 + 1 push of 6) mod 20
  per_stream = [float(m[f"loss/{n}"]) for n in run.extractor.names]
  assert float(m["loss"]) == pytest.approx(sum(per_stream), rel=1e-5)
  assert np.isfinite(per_stream).all() and float(m["grad_norm"]) > 0
  assert set(state.norm) == set(run.extractor.names)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
  assert run.model.dtype == jnp.bfloat16


@pytest.mark.parametrize("guidance", [False, True])
def test_cached_real_features_give_the_same_steps(digits, guidance):
  """``cache_real_features``: the real images' streams computed once at start give the
  steps of encoding the positives (and CFG negatives) every step, to float round-off."""
  kw = dict(feature_encoder="random_conv", num_steps=3,
            feature_kwargs={"channels": (4, 8), "include_pixels": True})
  if guidance:
    kw.update(model_overrides={"latent": 32, "num_upsamples": 0, "cfg_embed": True},
              objective="drifting-laplace", bandwidth=0.1, guidance=True, num_uncond=4,
              objective_kwargs={"official": True, "temperatures": (0.05, 0.2)})
  out = []
  for cache in (False, True):
    run = ImageTask(tiny(cache_real_features=cache, **kw), dataset=digits)
    assert isinstance(run.data.images, dict) == cache
    runner = run.runner()
    state, bank = _init(run)
    metrics = []
    for i in range(run.total_steps):  # 2 statistics-only batches, then 3 updates
      step = runner.stats if i < run.warmup else runner.train
      state, bank, m = step(state, bank, run.data)
      metrics.append({k: float(v) for k, v in m.items()})
    out.append((state, metrics))
  (s0, m0), (s1, m1) = out
  assert [set(m) for m in m0] == [set(m) for m in m1]
  for a, b in zip(m0, m1):
    for k in a:
      assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k
  chex.assert_trees_all_close(s1.params, s0.params, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(s1.norm, s0.norm, rtol=1e-5)
  assert len(m0) == 5 and m0[-1]["grad_norm"] > 0


def test_cached_real_features_bad_input(digits):
  from drifting_jax.data import class_conditional
  with pytest.raises(ValueError, match="cache_real_features"):
    validate_config(tiny(cache_real_features=True, memory_bank=True))
  data = class_conditional.class_data(digits.images, digits.labels, num_classes=10)
  n = digits.images.shape[0]
  with pytest.raises(ValueError, match="features"):
    class_conditional.with_features(data, {})
  with pytest.raises(ValueError, match=r"features\['a'\]"):
    class_conditional.with_features(data, {"a": np.zeros((n - 1, 3))})
  with pytest.raises(ValueError, match=r"features\['a'\]"):
    class_conditional.with_features(data, {"a": np.zeros(n)})


def test_feature_extractor_is_frozen_and_differentiable():
  ext = features.make_feature_extractor("random_conv", image_shape=(8, 8, 1), channels=(4, 8))
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
  energy = lambda im: sum(jnp.sum(v ** 2) for v in ext.apply(im).values())
  out, g = jax.jit(lambda im: (ext.apply(im), jax.grad(energy)(im)))(x)
  assert {k: v.shape for k, v in out.items()} == {
      "conv0_mean": (3, 4), "conv0_grid": (3, 16), "conv1_mean": (3, 8), "conv1_grid": (3, 32)}
  assert float(jnp.abs(g).sum()) > 0  # gradients reach the generated images
  pix = features.make_feature_extractor(None, image_shape=(8, 8, 1))
  assert pix.names == ("pixels",) and pix.apply(x)["pixels"].shape == (3, 64)
  with pytest.raises(ValueError, match="feature_encoder"):
    features.make_feature_extractor("resnet", image_shape=(8, 8, 1))


def test_imagenet_config_runs_one_step():
  """Secretly-SM Table 2 recipe (DiTGen-B/2 design, bf16, CFG, memory bank, Deng loss) for ONE
  step on a fake 32x32x4 latent batch. Depth/width/classes/batch are shrunk by overrides so
  this stays a CPU test; the real run needs a pod and an ImageNet latent dataset."""
  cfg = apply_overrides(
      load_config(os.path.join(CONFIGS, "imagenet_latent_ditgen_b.py")),
      {"model_overrides": {"hidden": 32, "depth": 1, "heads": 2, "num_classes": 10,
                           "num_registers": 2, "num_style_tokens": 4},
       "num_classes_per_step": 2, "num_pos": 4, "num_gen": 4, "num_uncond": 2,
       "bank_pos_size": 4, "bank_neg_size": 8, "bank_push": 4, "parallel": "none",
       "compiler_options": FAST_COMPILE})
  rng = np.random.default_rng(0)
  latents = np.clip(rng.normal(0, 0.5, (30, 32, 32, 4)), -1, 1).astype(np.float32)
  fake = Dataset(latents, np.arange(30, dtype=np.int32) % 10, 10, "fake_latents")
  run = ImageTask(cfg, dataset=fake)
  assert run.model.cfg_embed and run.model.rope and run.model.dtype == jnp.bfloat16
  state, bank = _init(run)
  state, bank, m = run.runner().train(state, bank, run.data)
  assert int(state.step) == 1 and np.isfinite(float(m["loss"]))
  assert float(m["grad_norm"]) > 0 and float(m["lr"]) == 0.0


# ---------------------------------------------------------------------------------- loop
def test_image_run_end_to_end(tmp_path, digits):
  init_run = ImageTask(tiny(), dataset=digits)
  metrics = train(tiny(), tmp_path, dataset=digits).metrics
  for name in ("config.json", "metrics.json", "metrics.jsonl", "samples.png"):
    assert os.path.isfile(tmp_path / name), name
  assert sorted(os.listdir(tmp_path / "samples")) == ["step_0000020.png", "step_0000040.png"]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["40", "42"]
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in records] == [10, 20, 30, 40, 42]
  assert {"loss", "grad_norm", "drift_norm", "lr", "kernel_scale", "steps_per_sec"} <= set(
      records[-1])
  assert metrics["step"] == 42 and np.isfinite(metrics["loss"])
  assert json.load(open(tmp_path / "metrics.json"))["loss"] == pytest.approx(metrics["loss"])

  out = sample_run(tmp_path, num=30, out=str(tmp_path / "grid.png"))
  saved = np.load(str(tmp_path / "grid.npz"))
  assert os.path.isfile(out) and saved["samples"].shape == (30, 8, 8, 1)
  assert int(saved["step"]) == 42 and list(saved["labels"][:12]) == list(range(10)) + [0, 1]
  # Learning signal: class means of the samples move toward the data's class means.
  def class_mean_error(samples, labels):
    return np.mean([np.mean((samples[labels == c].mean(0) -
                             digits.images[digits.labels == c].mean(0)) ** 2)
                    for c in range(10)])
  state, _ = _init(init_run)
  noise = presets.sample_image_noise(jax.random.PRNGKey(0), init_run.model, 30)
  before = np.asarray(init_run.model.apply(state.params, noise.noise, saved["labels"]))
  assert class_mean_error(saved["samples"], saved["labels"]) < 0.7 * class_mean_error(
      before, saved["labels"])
  sample_run(tmp_path / "checkpoints" / "40", num=4, class_id=7,
             out=str(tmp_path / "seven.png"))
  assert set(np.load(str(tmp_path / "seven.npz"))["labels"]) == {7}
  with pytest.raises(ValueError, match="class_id"):
    sample_run(tmp_path, num=2, class_id=10, out=str(tmp_path / "x.png"))


def test_cli_runs_image_configs(tmp_path, capsys):
  """`drifting-jax train --config <image config>` trains an image run, `sample --class`
  samples it (the overrides match `tiny()`, so compiled steps are reused)."""
  from drifting_jax import cli
  t = tiny()
  sets = ["model_overrides={'latent': 32, 'num_upsamples': 0}",
          *(f"{k}={getattr(t, k)}" for k in (
              "num_classes_per_step", "num_pos", "num_gen", "norm_warmup", "num_steps",
              "warmup_steps", "learning_rate", "ema_decay")),
          "compiler_options={'xla_backend_optimization_level': 0}", "checkpoint_every=21",
          "sample_every=0"]
  workdir = tmp_path / "run"
  args = ["train", "--config", os.path.join(CONFIGS, "digits_cpu.py"), "--workdir", str(workdir),
          "--no-progress"]
  assert cli.main(args + [x for s in sets for x in ("--set", s)]) == 0
  saved = json.load(open(workdir / "config.json"))
  assert saved["task"] == "images" and saved["num_pos"] == 8 and saved["progress"] is False
  assert sorted(os.listdir(workdir / "checkpoints")) == ["21", "42"]
  assert cli.main(["sample", "--checkpoint", str(workdir / "checkpoints" / "21"), "--num", "6",
                   "--class", "3", "--out", str(tmp_path / "threes.npz")]) == 0
  out = np.load(str(tmp_path / "threes.npz"))
  assert out["samples"].shape == (6, 8, 8, 1) and set(out["labels"]) == {3}
  assert int(out["step"]) == 21 and os.path.isfile(tmp_path / "threes.png")
  # eval routes to the image metrics; the default (MNIST, 28x28) classifier cannot embed
  # 8x8 digits, which is reported clearly (tests/test_image_eval.py covers a fitting one)
  assert cli.main(["eval", "--workdir", str(workdir), "--num-samples", "20"]) == 2
  assert "classifier" in capsys.readouterr().err


def test_init_from_starts_a_run_from_another_runs_parameters(tmp_path, digits):
  """Pixel-space pre-training, then a run with another loss initialized from it."""
  from drifting_jax.training import load_run, make_task
  train(tiny(num_steps=3, sample_every=0), tmp_path / "pixels", dataset=digits)
  _, pre = load_run(tmp_path / "pixels")
  fine = tiny(num_steps=2, sample_every=0, objective="naive-laplace", bandwidth=0.1,
              init_from=str(tmp_path / "pixels"))
  start = make_task(fine, load_data=False).init_state()
  chex.assert_trees_all_equal(start.params, pre.params)
  chex.assert_trees_all_equal(start.ema_params, pre.ema_params)
  assert int(start.step) == 0 and int(start.opt_state[1][0].count) == 0  # a fresh optimizer
  out = train(fine, tmp_path / "fine", dataset=digits)
  assert np.isfinite(out.metrics["loss"])
  with pytest.raises(ValueError, match="init_from.*do not fit"):
    make_task(tiny(model_overrides={"latent": 16, "num_upsamples": 0},
                   init_from=str(tmp_path / "pixels")), load_data=False).init_state()
  with pytest.raises(ValueError, match="init_from.*not an image run"):
    make_task(tiny(init_from=str(tmp_path / "nowhere")), load_data=False).init_state()


def test_init_from_is_read_once(tmp_path, digits):
  """A run started from another run's parameters needs that run only at its start: it
  resumes, samples and evaluates after the source is gone; a misfitting or missing source
  fails before the data (and a feature table) load."""
  import shutil
  from drifting_jax.training import load_run
  train(tiny(num_steps=3, sample_every=0), tmp_path / "pixels", dataset=digits)
  fine = tiny(num_steps=4, sample_every=0, checkpoint_every=2,
              init_from=str(tmp_path / "pixels"))
  part = train(fine, tmp_path / "fine", dataset=digits, until=fine.norm_warmup + 2)
  shutil.rmtree(tmp_path / "pixels")
  _, restored = load_run(tmp_path / "fine")  # what sample / eval read
  chex.assert_trees_all_equal(restored.params, part.state.params)
  out = train(fine, tmp_path / "fine", dataset=digits)  # resumes from its checkpoint
  assert int(out.state.step) == fine.norm_warmup + 4 and np.isfinite(out.metrics["loss"])
  # a fresh run from the missing source, or from a run of another generator
  with pytest.raises(ValueError, match="init_from.*does not exist"):
    train(fine, tmp_path / "fresh", dataset=_Boom())
  with pytest.raises(ValueError, match="init_from.*does not exist"):
    train(fine, tmp_path / "fine", dataset=_Boom(), force_new=True)
  with pytest.raises(ValueError, match="init_from.*not an image run"):
    train(dataclasses.replace(fine, init_from=str(tmp_path)), dataset=_Boom())
  assert os.listdir(tmp_path / "fine" / "checkpoints")  # nothing was moved aside
  train(tiny(num_steps=2, sample_every=0, model_overrides={"latent": 16, "num_upsamples": 0}),
        tmp_path / "small", dataset=digits)
  with pytest.raises(ValueError, match="init_from.*do not fit"):
    train(dataclasses.replace(fine, init_from=str(tmp_path / "small")), dataset=_Boom())
  assert not os.path.exists(tmp_path / "fresh" / "checkpoints")


class _Boom:
  """A dataset that fails when it is looked at (the check must come first)."""

  def __getattr__(self, name):
    raise AssertionError(f"the dataset was read ({name}) before `init_from` was checked")
