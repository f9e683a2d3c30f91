"""Tests for the DiT / conv generators and the preset registry (drifting_jax.models)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax.models import dit
from drifting_jax.models.conv import ConvGenerator
from drifting_jax.models.presets import (count_params, describe, get_model, init_params,
                                         list_models, param_shapes, sample_noise)


@jax.jit
def perturb(variables, key, scale=0.05):
  """Adds N(0, scale²) to every parameter (breaks the adaLN-zero / zero read-out init)."""
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


class Setup(NamedTuple):
  model: Any
  v0: Any      # variables at initialization
  v: Any       # perturbed variables
  apply: Any   # jitted model.apply (one compile per input signature, not op-by-op)
  inp: Any     # GeneratorNoise


def _init(model, batch):
  v0 = jax.jit(lambda k: init_params(model, k))(jax.random.key(0))
  return Setup(model, v0, perturb(v0, jax.random.key(1)), jax.jit(model.apply),
               sample_noise(jax.random.key(2), model, batch))


@pytest.fixture(scope="module")
def tiny():
  """``dit_tiny`` (DiT-S/2 design at CPU size), batch 4."""
  return _init(get_model("dit_tiny"), 4)


@pytest.fixture(scope="module")
def gen():
  """DiTGen-B/2 design (RoPE, RMSNorm, QK-norm, SwiGLU, CFG) at toy size, batch 2."""
  return _init(get_model("ditgen_b2", image_size=8, patch_size=2, hidden=32, depth=1, heads=2,
                         num_classes=10, num_registers=2, num_style_tokens=4,
                         style_codebook_size=8), 2)


@pytest.fixture(scope="module")
def digits():
  """``digits_small_cpu`` conv generator, batch 3."""
  return _init(get_model("digits_small_cpu"), 3)


# --------------------------------------------------------------------- parameter counts
def test_dit_s2_param_count_matches_hand_formula():
  D, p, C, T, R, S_K, N, depth = 384, 2, 1, (28 // 2) ** 2, 8, 64, 10, 12
  patch_embed = p * p * C * D + D
  pos_embed = T * D
  attn = (D * 3 * D + 3 * D) + (D * D + D)                  # qkv + out projection
  mlp = (D * 4 * D + 4 * D) + (4 * D * D + D)                # GELU MLP, ratio 4
  adaln = D * 6 * D + 6 * D                                  # adaLN-zero: 6 vectors of D
  final = (D * 2 * D + 2 * D) + (D * p * p * C + p * p * C)  # final adaLN + linear
  registers = R * D + (D * D + D)                            # learned tokens + proj of c
  style = S_K * D                                            # style codebook (64 entries)
  classes = (N + 1) * D                                      # + unconditional class
  expected = (patch_embed + pos_embed + depth * (attn + mlp + adaln) + final + registers
              + style + classes)
  model = get_model("dit_s2")
  assert count_params(model) == expected == 32_473_732
  assert 31e6 < expected < 34e6  # DiT-S/2 is ~33M (with a timestep MLP we do not have)


def test_ditgen_b2_param_count_matches_hand_formula():
  D, p, C, R, K, N, depth, hd = 768, 2, 4, 16, 64, 1000, 12, 64
  F = int(2 * 4 * D / 3)                                     # SwiGLU hidden (2048)
  attn = (D * 3 * D + 3 * D) + (D * D + D) + 2 * hd          # + QK-norm scales
  swiglu = (D * 2 * F + 2 * F) + (F * D + D)
  adaln = D * 6 * D + 6 * D
  cfg = (256 * D + D) + (D * D + D)                          # Fourier(α) -> MLP
  expected = ((p * p * C * D + D) + depth * (attn + swiglu + adaln)
              + (D * 2 * D + 2 * D) + (D * p * p * C + p * p * C)
              + R * D + (D * D + D) + K * D + (N + 1) * D + cfg)   # no abs. pos. (RoPE)
  assert count_params(get_model("ditgen_b2")) == expected
  assert 125e6 < expected < 135e6


def test_describe_lists_submodules_and_total():
  text = describe("dit_tiny")
  for word in ("patch_embed", "blocks_0..1", "style_codebook", "class_embed", "registers"):
    assert word in text
  assert f"{count_params(get_model('dit_tiny')):,}" in text.splitlines()[-1]


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", ["dit_s2", "ditgen_b2"])
def test_large_presets_output_shape_via_eval_shape(name):
  model = get_model(name)
  variables = param_shapes(model)
  inp = sample_noise(jax.random.key(0), model, 2)
  out = jax.eval_shape(lambda v: model.apply(v, inp.noise, jnp.array([0, 3]),
                                             cfg_scale=2.0, style=inp.style), variables)
  assert out.shape == inp.noise.shape and out.dtype == jnp.float32


def test_small_presets_run(tiny, digits):
  for t in (tiny, digits):
    out = t.apply(t.v0, t.inp.noise, jnp.arange(len(t.inp.noise)) + 7, style=t.inp.style)
    assert out.shape == t.inp.noise.shape and out.dtype == jnp.float32
    assert np.all(np.isfinite(out))
  assert tiny.inp.noise.shape == (4, 28, 28, 1) and digits.inp.noise.shape == (3, 8, 8, 1)
  mnist = get_model("mnist_small_cpu")  # shape only (same code path as digits)
  out = jax.eval_shape(lambda: mnist.apply(init_params(mnist, jax.random.key(0)),
                                           jnp.zeros((2, 28, 28, 1)), jnp.zeros(2, int)))
  assert out.shape == (2, 28, 28, 1) and out.dtype == jnp.float32


def test_mlp_generator_options():
  # tanh output: bounded to the data range even for huge inputs; the residual/LayerNorm trunk
  # has one LayerNorm per dense layer plus the read-out's.
  model = get_model("mnist_mlp_cpu", latent=32, residual=True)
  v = init_params(model, jax.random.key(0))
  big = 1e3 * jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
  out = model.apply(v, big, jnp.array([0, 1, 10]))
  assert out.shape == (3, 28, 28, 1) and float(jnp.abs(out).max()) <= 1.0
  assert sorted(k for k in v["params"] if k.startswith("norm")) == ["norm_0", "norm_1",
                                                                    "norm_out"]
  # a conv read-out: 4 maps of 28x28 and a 3x3 filter; only for the MLP form
  conv = get_model("mnist_mlp_cpu", latent=32, readout_kernel=3, readout_channels=4)
  cv = init_params(conv, jax.random.key(0))
  assert cv["params"]["readout_conv"]["kernel"].shape == (3, 3, 4, 1)
  assert cv["params"]["readout"]["kernel"].shape == (32, 28 * 28 * 4)
  assert conv.apply(cv, big, jnp.array([0, 1, 10])).shape == (3, 28, 28, 1)
  with pytest.raises(ValueError, match="readout_kernel"):
    init_params(get_model("mnist_small_cpu", readout_kernel=3), jax.random.key(0))
  # a two-layer read-out: one hidden 3x3 conv of the 4 maps with SiLU, then the filter
  deep = get_model("mnist_mlp_cpu", latent=32, readout_kernel=3, readout_channels=4,
                   readout_depth=2)
  dv = init_params(deep, jax.random.key(0))
  assert dv["params"]["readout_hidden_0"]["kernel"].shape == (3, 3, 4, 4)
  assert dv["params"]["readout_conv"]["kernel"].shape == (3, 3, 4, 1)
  assert deep.apply(dv, big, jnp.array([0, 1, 10])).shape == (3, 28, 28, 1)
  with pytest.raises(ValueError, match="readout_depth"):
    init_params(get_model("mnist_mlp_cpu", latent=32, readout_depth=2), jax.random.key(0))
  # without LayerNorm and tanh the same generator is unbounded
  linear = get_model("mnist_mlp_cpu", latent=32, out_activation="none", layer_norm=False)
  lv = init_params(linear, jax.random.key(0))
  assert not any(k.startswith("norm") for k in lv["params"])
  assert float(jnp.abs(linear.apply(lv, big, jnp.array([0, 1, 10]))).max()) > 1.0


def test_sample_noise():
  model = get_model("dit_s2")
  inp = sample_noise(jax.random.key(0), model, 5)
  assert inp.noise.shape == (5, 28, 28, 1) and inp.style.shape == (5, 32)
  assert inp.style.min() >= 0 and inp.style.max() < 64
  assert sample_noise(jax.random.key(0), get_model("mnist_small_cpu"), 2).style is None


# ------------------------------------------------------------------------ adaLN-zero
@pytest.mark.parametrize("kw", [dict(), dict(norm="rmsnorm", mlp="swiglu", qk_norm=True)])
def test_adaln_zero_blocks_are_identity_at_init(kw):
  block = dit.DiTBlock(hidden=32, heads=4, **kw)
  x = jax.random.normal(jax.random.key(0), (2, 6, 32))
  c = jax.random.normal(jax.random.key(1), (2, 32))
  rope = (jnp.arange(6.0), jnp.arange(6.0) % 3) if kw else None
  v = jax.jit(block.init)(jax.random.key(2), x, c, rope)
  np.testing.assert_array_equal(jax.jit(block.apply)(v, x, c, rope), x)


def test_generator_output_is_zero_at_init(gen):
  out = gen.apply(gen.v0, gen.inp.noise, jnp.array([1, 2]), style=gen.inp.style)
  np.testing.assert_array_equal(out, 0.0)  # zero-initialized final linear layer (DiT)


# ---------------------------------------------------------------------- conditioning
def test_labels_and_style_change_output(tiny, digits):
  v, inp = tiny.v, tiny.inp
  a = tiny.apply(v, inp.noise, jnp.array([0, 1, 2, 3]), style=inp.style)
  b = tiny.apply(v, inp.noise, jnp.array([4, 5, 6, 10]), style=inp.style)  # 10 = uncond
  c = tiny.apply(v, inp.noise, jnp.array([0, 1, 2, 3]), style=(inp.style + 1) % 64)
  assert np.all(np.abs(a - b).reshape(4, -1).max(1) > 1e-3)
  assert np.all(np.abs(a - c).reshape(4, -1).max(1) > 1e-3)
  z = digits.inp.noise
  assert not np.allclose(digits.apply(digits.v, z, jnp.array([0, 1, 2])),
                         digits.apply(digits.v, z, jnp.array([3, 4, 10])))


def test_cfg_scale_changes_ditgen_output(gen):
  lab = jnp.array([3, 10])
  a = gen.apply(gen.v, gen.inp.noise, lab, cfg_scale=jnp.ones(2), style=gen.inp.style)
  b = gen.apply(gen.v, gen.inp.noise, lab, cfg_scale=jnp.full(2, 3.0), style=gen.inp.style)
  assert np.all(np.abs(a - b).reshape(2, -1).max(1) > 1e-4)
  c = gen.apply(gen.v0, gen.inp.noise, lab, cfg_scale=jnp.full(2, 3.0), style=gen.inp.style)
  np.testing.assert_array_equal(c, 0.0)  # ... while at init every output is exactly zero


def test_bf16_compute_close_to_float32(tiny):
  v, inp = tiny.v, tiny.inp
  lab = jnp.array([0, 1, 2, 3])
  ref = tiny.apply(v, inp.noise, lab, style=inp.style)
  bf = get_model("dit_tiny", dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(param_shapes(bf)))
  out = jax.jit(bf.apply)(v, inp.noise, lab, style=inp.style)
  assert out.dtype == jnp.float32
  assert np.max(np.abs(out - ref)) < 0.05 * np.max(np.abs(ref)) + 1e-3


def test_jit_matches_eager(digits):
  lab = jnp.array([9, 8, 10])
  eager = digits.model.apply(digits.v, digits.inp.noise, lab)  # op by op: small model only
  np.testing.assert_allclose(digits.apply(digits.v, digits.inp.noise, lab), eager,
                             rtol=1e-5, atol=1e-5)
  # the DiT path is jitted in every test above; a traced label batch also works
  out = jax.jit(lambda l: digits.model.apply(digits.v, digits.inp.noise, l))(lab)
  np.testing.assert_allclose(out, eager, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ RoPE
def test_rope_dot_product_depends_only_on_offset():
  q, k = jax.random.normal(jax.random.key(0), (2, 16))
  @jax.jit
  def _score(m, n):
    rq = dit.apply_rope(q[None], dit.rope_angles(jnp.array([m]), 16))
    rk = dit.apply_rope(k[None], dit.rope_angles(jnp.array([n]), 16))
    return jnp.sum(rq * rk)
  score = lambda m, n: float(_score(float(m), float(n)))
  for m, n, s in [(0, 3, 5), (7, 2, -4), (1, 1, 11)]:
    assert score(m, n) == pytest.approx(score(m + s, n + s), abs=1e-4)
  assert abs(score(0, 3) - score(0, 5)) > 1e-3
  assert score(4, 4) == pytest.approx(float(q @ k), abs=1e-4)  # zero offset = no rotation
  # 2D: rows rotate the first half, columns the second half of the head dim
  q4, k4 = q.reshape(1, 1, 1, 16), k.reshape(1, 1, 1, 16)
  @jax.jit
  def _score2(a, b):
    rq = dit.apply_rope_2d(q4, a[:1], a[1:])
    rk = dit.apply_rope_2d(k4, b[:1], b[1:])
    return jnp.sum(rq * rk)
  score2 = lambda a, b: float(_score2(jnp.array(a, jnp.float32), jnp.array(b, jnp.float32)))
  assert score2((1, 2), (4, 0)) == pytest.approx(score2((6, 9), (9, 7)), abs=1e-4)
  assert abs(score2((1, 2), (4, 0)) - score2((1, 2), (0, 4))) > 1e-3


# ------------------------------------------------------------------------ validation
def test_bad_inputs_raise_value_error_naming_argument(tiny):
  model, v, inp = tiny.model, tiny.v, tiny.inp
  lab = jnp.array([0, 1, 2, 3])
  with pytest.raises(ValueError, match="noise"):
    model.apply(v, jnp.zeros((4, 8, 8, 1)), lab, style=inp.style)
  with pytest.raises(ValueError, match="labels"):
    model.apply(v, inp.noise, jnp.array([0, 1, 2, 11]), style=inp.style)
  with pytest.raises(ValueError, match="labels"):
    model.apply(v, inp.noise, jnp.array([0.0, 1.0, 2.0, 3.0]), style=inp.style)
  with pytest.raises(ValueError, match="style"):
    model.apply(v, inp.noise, lab, style=inp.style + 64)
  with pytest.raises(ValueError, match="style"):
    model.apply(v, inp.noise, lab)  # style tokens need indices (or a 'style' rng)
  with pytest.raises(ValueError, match="noise"):
    conv = ConvGenerator(image_size=8, num_upsamples=1)
    conv.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,), jnp.int32))
  with pytest.raises(ValueError, match="name"):
    get_model("dit_xl")
  with pytest.raises(ValueError, match="hiden"):
    get_model("dit_tiny", hiden=32)
  with pytest.raises(ValueError, match="patch_size"):
    get_model("dit_tiny", patch_size=3)
  assert set(list_models()) == {"dit_s2", "ditgen_b2", "dit_tiny", "mnist_small_cpu",
                                "mnist_mlp_cpu", "digits_small_cpu"}
  with pytest.raises(ValueError, match="out_activation"):
    get_model("mnist_mlp_cpu", out_activation="sigmoid").init(
        jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,), jnp.int32))
