"""Named generator presets, parameter counting and a per-submodule summary.

* ``dit_s2`` — DiT-S/2 of Franz et al. §5.1 / Table 3: 28×28×1, patch 2, D=384, depth 12,
  6 heads, 8 register tokens, 32 style tokens (codebook 64), LayerNorm + GELU, adaLN-zero on
  the class (10 classes + null). 32.47M parameters.
* ``ditgen_b2`` — DiTGen-B/2 of Secretly-SM App. G.1: 32×32×4 latents, patch 2, D=768,
  depth 12, 12 heads, RoPE, RMSNorm, QK-norm, SwiGLU, adaLN on class + CFG scale; 16
  registers and 32 style tokens as in Deng et al.'s Table A1 (B/2), 1000 classes. 130.97M.
* ``dit_tiny`` — the ``dit_s2`` design scaled down for CPU: 28×28×1, patch 4, D=64, depth 2,
  4 heads, 4 registers, 32 style tokens. 0.17M. (``image_size=8, patch_size=2`` for digits.)
* ``mnist_small_cpu`` — :class:`ConvGenerator` for 28×28×1 MNIST. 0.77M.
* ``mnist_mlp_cpu`` — :class:`ConvGenerator` in its MLP form for 28×28×1 MNIST: 3 dense
  layers of 1024 with LayerNorm, ``tanh`` output in the data range. 3.7M.
* ``digits_small_cpu`` — :class:`ConvGenerator` for 8×8×1 (scikit-learn digits). 0.12M.

Any attribute can be overridden: ``get_model("dit_tiny", image_size=8, patch_size=2)``,
``get_model("ditgen_b2", dtype=jnp.bfloat16)``. Large presets are never allocated here:
:func:`param_shapes` and :func:`describe` use ``jax.eval_shape``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from drifting_jax.models.conv import ConvGenerator
from drifting_jax.models.conditioning import GeneratorNoise, image_shape, sample_noise
from drifting_jax.models.dit import DiTGenerator

__all__ = [
    "PRESETS", "count_params", "describe", "example_inputs", "get_model", "init_params",
    "list_models", "param_shapes", "param_table", "sample_image_noise", "sample_noise", "GeneratorNoise",
]

sample_image_noise = sample_noise  # alias that does not clash with models.mlp.sample_noise

PRESETS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "dit_s2": (DiTGenerator, dict(
        image_size=28, channels=1, patch_size=2, hidden=384, depth=12, heads=6,
        num_classes=10, num_registers=8, num_style_tokens=32, style_codebook_size=64,
        norm="layernorm", mlp="gelu", qk_norm=False, rope=False, cfg_embed=False,
        pos_embed="learned")),
    "ditgen_b2": (DiTGenerator, dict(
        image_size=32, channels=4, patch_size=2, hidden=768, depth=12, heads=12,
        num_classes=1000, num_registers=16, num_style_tokens=32, style_codebook_size=64,
        norm="rmsnorm", mlp="swiglu", qk_norm=True, rope=True, cfg_embed=True,
        pos_embed="none")),
    "dit_tiny": (DiTGenerator, dict(
        image_size=28, channels=1, patch_size=4, hidden=64, depth=2, heads=4,
        num_classes=10, num_registers=4, num_style_tokens=32, style_codebook_size=64,
        norm="layernorm", mlp="gelu", qk_norm=False, rope=False, cfg_embed=False,
        pos_embed="learned")),
    "mnist_small_cpu": (ConvGenerator, dict(
        image_size=28, channels=1, num_classes=10, latent=256, depth=2, conv_channels=32,
        num_upsamples=2)),
    "mnist_mlp_cpu": (ConvGenerator, dict(
        image_size=28, channels=1, num_classes=10, latent=1024, depth=2, num_upsamples=0,
        layer_norm=True, residual=False, out_activation="tanh")),
    "digits_small_cpu": (ConvGenerator, dict(
        image_size=8, channels=1, num_classes=10, latent=128, depth=2, conv_channels=32,
        num_upsamples=1)),
}


def list_models() -> list[str]:
  """Names of the registered presets."""
  return sorted(PRESETS)


def get_model(name: str, **overrides: Any) -> nn.Module:
  """Builds a preset generator, with any attribute overridden by keyword.

  Raises:
    ValueError: unknown ``name``, unknown override, or an invalid configuration.
  """
  if name not in PRESETS:
    raise ValueError(f"`name` must be one of {list_models()}, got {name!r}.")
  cls, cfg = PRESETS[name]
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown override(s) {unknown} for `{name}`; valid: {sorted(fields)}.")
  model = cls(**{**cfg, **overrides})
  model.check_config()
  return model


def example_inputs(model: nn.Module, batch: int = 1) -> tuple[tuple, dict]:
  """Zero-valued ``(args, kwargs)`` for ``model.init`` / ``model.apply`` (shapes only matter)."""
  args = (jnp.zeros((batch, *image_shape(model)), jnp.float32), jnp.zeros((batch,), jnp.int32))
  s = int(getattr(model, "num_style_tokens", 0))
  kwargs = dict(cfg_scale=jnp.ones((batch,), jnp.float32),
                style=jnp.zeros((batch, s), jnp.int32) if s else None)
  return args, kwargs


def init_params(model: nn.Module, key: jax.Array) -> Any:
  """Initializes ``model``'s parameters (the ``variables`` dict ``{"params": ...}``)."""
  args, kwargs = example_inputs(model)
  return model.init(key, *args, **kwargs)


def param_shapes(model: nn.Module) -> Any:
  """``ShapeDtypeStruct`` pytree of the variables, without allocating (``jax.eval_shape``)."""
  args, kwargs = example_inputs(model)
  return jax.eval_shape(lambda k: model.init(k, *args, **kwargs), jax.random.key(0))


def count_params(tree: Any) -> int:
  """Number of scalars in a pytree of arrays / ``ShapeDtypeStruct`` s, or in a model."""
  if isinstance(tree, nn.Module):
    tree = param_shapes(tree)
  return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree_util.tree_leaves(tree)))


def _fmt(n: int) -> str:
  return f"{n:,}" + (f"  ({n / 1e6:.2f}M)" if n >= 100_000 else "")


def param_table(title: str, params: Any) -> str:
  """``title`` and one line per top-level submodule of ``params`` with its parameter count,
  then the total (any model; :func:`describe` is the generators' version)."""
  lines = [title] + [f"  {key:<22}{_fmt(count_params(sub))}" for key, sub in params.items()]
  return "\n".join(lines + [f"  {'total':<22}{_fmt(count_params(params))}"])


def describe(model_or_name: nn.Module | str) -> str:
  """Human-readable parameter table: one line per submodule, blocks grouped, total.

  Args:
    model_or_name: a generator or a preset name.
  Returns:
    Multi-line string, e.g. ``"dit_s2: DiTGenerator(...)\\n  blocks_0..11  12 × ..."``.
  """
  name = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
  model = get_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
  params = param_shapes(model)["params"]
  lines = [f"{name}: {type(model).__name__} {image_shape(model)}"]
  blocks = sorted((k for k in params if k.startswith("blocks_")), key=lambda k: int(k[7:]))
  for key, sub in params.items():
    if key.startswith("blocks_"):
      continue
    lines.append(f"  {key:<22}{_fmt(count_params(sub))}")
    if isinstance(sub, dict) and any(isinstance(v, dict) for v in sub.values()):
      for child, leaf in sub.items():
        lines.append(f"    {child:<20}{_fmt(count_params(leaf))}")
  if blocks:
    per = count_params(params[blocks[0]])
    label = f"blocks_0..{len(blocks) - 1}"
    lines.append(f"  {label:<22}{len(blocks)} × {per:,} = {_fmt(per * len(blocks))}")
  lines.append(f"  {'total':<22}{_fmt(count_params(params))}")
  return "\n".join(lines)
