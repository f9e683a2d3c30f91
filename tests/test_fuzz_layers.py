"""Bad values, generated systematically, against the layers the core fuzz does not reach.

``tests/fuzz_counts.py`` exercises the core's array functions. Here every scalar option of the
data loaders, toy generators, schedules, kernel-width normalization, memory bank and every
numeric field of every registered training config (and one through the CLI) meets the same
set of bad values:

  NaN, ±inf, huge (1e39: inf in float32), tiny (1e-45: a float32 denormal), negative, zero,
  a float for an int (``2.5`` and the integral ``2.0``), a string, a bool, None,

and must raise a ``ValueError`` that names the option — or, where the value is valid for that
option, return a finite answer. A returned non-finite value, or a finite one where the value
is invalid, is a *silent answer*; the test reports the counts by class and fails on any.
Which values are valid per option is stated here, from each option's documented meaning
(e.g. ``noise >= 0``, ``decay`` in (0, 1)), not read off the code's checks.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drifting_jax import normalization, schedules
from drifting_jax.data import images, memory_bank, toy
from drifting_jax.training import config as config_lib

NAN, INF = float("nan"), float("inf")
#: class -> value
BAD = {"nan": NAN, "inf": INF, "-inf": -INF, "huge": 1e39, "tiny": 1e-45, "negative": -1.0,
       "zero": 0.0, "float-for-int": 2.5, "integral-float": 2.0, "string": "1", "bool": True,
       "none": None}

# what a value may be, by the option's meaning
def nonneg_real(v):
  return _real(v) and math.isfinite(v) and v >= 0


def positive_real(v):
  return _real(v) and math.isfinite(v) and v > 0


def positive_int(v):
  return _int(v) and v >= 1


def nonneg_int(v):
  return _int(v) and v >= 0


def open_unit(v):
  return _real(v) and 0 < v < 1


F32_TINY, F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def f32_positive(v):
  """A positive float32 number of full precision (not inf, not a denormal)."""
  return positive_real(v) and F32_TINY <= v <= F32_MAX


def f32_scale(v):
  """A scale of float32 standard-normal draws (|z| < 6) whose samples stay finite."""
  return nonneg_real(v) and 6 * v <= F32_MAX


def _real(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v):
  return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass
class Option:
  """One scalar option of one public function: ``call(value)`` and which values are valid."""
  name: str
  call: Callable[[Any], Any]
  valid: Callable[[Any], bool]
  layer: str


KEY = jax.random.PRNGKey(0)
_STATE = normalization.init(3)
_GROUPS = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)


def _options() -> list[Option]:
  out = []
  for name, fn, valid in (("noise", lambda v: toy.checkerboard(KEY, 8, noise=v), f32_scale),
                          ("noise", lambda v: toy.swiss_roll(KEY, 8, noise=v), f32_scale),
                          ("std", lambda v: toy.eight_gaussians(KEY, 8, std=v), f32_scale),
                          ("radius", lambda v: toy.eight_gaussians(KEY, 8, radius=v),
                           f32_scale),
                          ("std", lambda v: toy.GaussianMixture(((0.0, 0.0),), (1.0,), v)
                           .sample(KEY, 4), lambda v: f32_scale(v) and v > 0),
                          ("n", lambda v: toy.checkerboard(KEY, v), positive_int),
                          ("n", lambda v: toy.gmm4(KEY, v), positive_int)):
    out.append(Option(name, fn, valid, "toy data"))
  for kind, kw in (("constant", dict(value=1.0)),
                   ("exponential", dict(sigma0=1.0, rate=0.1, sigma_min=0.1)),
                   ("linear", dict(sigma0=1.0, total_steps=10, sigma_min=0.1)),
                   ("cosine", dict(sigma0=1.0, total_steps=10, sigma_min=0.1))):
    for key in kw:
      # a rate >= 0 that float32 holds (1e39 is inf there: inf * step 0 would be NaN)
      valid = {"rate": lambda v: nonneg_real(v) and (v == 0 or F32_TINY <= v <= F32_MAX),
               "sigma_min": lambda v: f32_positive(v) and v <= 1.0,  # <= sigma0 = 1
               "sigma0": lambda v: f32_positive(v) and v >= 0.1,  # >= sigma_min = 0.1
               }.get(key, f32_positive)
      out.append(Option(key, lambda v, kind=kind, kw=kw, key=key: schedules.get_schedule(
          kind, **{**kw, key: v})(3), valid, "schedules"))
    out.append(Option("step", lambda v, kind=kind, kw=kw: schedules.get_schedule(kind, **kw)(v),
                      lambda v: _real(v) and not math.isnan(v) and v >= 0, "schedules"))
  out += [
      Option("num_classes", lambda v: normalization.init(v), positive_int, "normalization"),
      Option("k", lambda v: normalization.update(_STATE, _GROUPS, np.array([0, 1]), k=v),
             lambda v: positive_int(v) and v < 6, "normalization"),
      Option("decay", lambda v: normalization.update(_STATE, _GROUPS, np.array([0, 1]),
                                                      decay=v), open_unit, "normalization"),
      Option("num_classes", lambda v: memory_bank.init(v, pos_size=2, neg_size=2,
                                                       feature_shape=(2,)), positive_int,
             "memory bank"),
      Option("pos_size", lambda v: memory_bank.init(2, pos_size=v, neg_size=2,
                                                    feature_shape=(2,)), positive_int,
             "memory bank"),
      Option("size", lambda v: images.load_digits(size=v),
             lambda v: v is None or positive_int(v), "image data"),
  ]
  return out


def _config_options() -> list[Option]:
  """Every numeric field of every registered config, validated as `resolve_config` does."""
  out = []
  for task in config_lib.task_names():
    cls = config_lib.config_type(task)
    for field, check in cls.checks().items():
      if not isinstance(check, config_lib.Num):
        continue
      # a nonzero weight decay needs AdamW (a cross-field rule)
      base = cls(optimizer="adamw") if field == "weight_decay" else cls()
      valid = _num_valid(check)
      out.append(Option(f"{field}", lambda v, base=base, field=field: config_lib.validate_config(
          dataclasses.replace(base, **{field: v})), valid, f"config ({task})"))
  return out


def _num_valid(num) -> Callable[[Any], bool]:
  """Valid values of a numeric config field, from its documented bounds and kind."""
  def valid(v):
    if v is None:
      return num.none
    if not (_int(v) if num.integer else _real(v)) or not math.isfinite(v):
      return False
    if num.low is not None and (v <= num.low if num.strict else v < num.low):
      return False
    if num.high is not None and (v >= num.high if num.high_strict else v > num.high):
      return False
    # the step's arithmetic: float32 (0 or normal magnitudes) / int32
    return abs(v) <= 2**31 - 1 if num.integer else (v == 0 or 1.18e-38 <= abs(v) <= 3.4e38)
  return valid


def _classify(option: Option, value: Any) -> str:
  try:
    out = option.call(value)
  except ValueError as e:
    if option.valid(value):
      return "error-on-valid"
    return "ValueError" if f"`{option.name}`" in str(e) else "unclear-ValueError"
  except Exception as e:  # noqa: BLE001 - any other exception is a crash
    return f"crash:{type(e).__name__}"
  leaves = [np.asarray(x) for x in jax.tree.leaves(out)
            if isinstance(x, (np.ndarray, jax.Array, float))]
  finite = all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(x.dtype, np.floating))
  if not option.valid(value):
    return "silent-finite-wrong" if finite else "silent-nan"
  return "ok" if finite else "silent-nan"


CASES = [(o, cls) for o in _options() + _config_options() for cls in BAD]


def test_every_bad_value_is_refused_by_name(capsys):
  counts = collections.Counter()
  failures = []
  by_layer = collections.defaultdict(collections.Counter)
  for option, cls in CASES:
    outcome = _classify(option, BAD[cls])
    counts[outcome] += 1
    by_layer[option.layer][outcome] += 1
    if outcome not in ("ok", "ValueError"):
      failures.append(f"{option.layer}: `{option.name}` = {BAD[cls]!r} ({cls}) -> {outcome}")
  with capsys.disabled():
    print(f"\nfuzz of {len(CASES)} calls: {dict(counts)}")
    for layer, c in sorted(by_layer.items()):
      print(f"  {layer}: {dict(c)}")
  assert len(CASES) > 300
  assert not failures, "\n".join(failures)


def test_cli_refuses_bad_set_values_with_one_line(tmp_path, capsys):
  from drifting_jax import cli
  for item, field in (("learning_rate=nan", "learning_rate"), ("num_steps=2.5", "num_steps"),
                      ("learning_rate=1e39", "learning_rate"), ("batch_size=-4", "batch_size"),
                      ("seed=true", "seed")):
    assert cli.main(["train", "--workdir", str(tmp_path / "r"), "--set", item,
                     "--no-progress"]) == 2, item
    err = capsys.readouterr().err
    assert err.startswith("error:") and f"`{field}`" in err and err.count("\n") == 1, (item, err)


# ----------------------------------------------------------------------------- models
def _model_options() -> list[Option]:
  """Every numeric attribute of every generator preset and encoder preset, and the models'
  sampling / masking helpers; ints by their documented minimum, reals positive float32."""
  import flax.linen as nn  # noqa: F401 - the presets are Flax modules

  from drifting_jax.models import mae, mlp, presets
  nonneg = {"depth", "num_upsamples", "num_style_tokens", "readout_kernel", "num_registers",
            "num_classes"}
  out = []
  for name in presets.list_models():
    cls, cfg = presets.PRESETS[name]
    fields = {f.name: f.default for f in dataclasses.fields(cls)} | dict(cfg)
    for field, value in fields.items():
      if not _real(value) or field in ("parent", "name"):
        continue
      if _int(value):
        low = 0 if field in nonneg and not (cls.__name__ == "DiTGenerator" and field == "depth") \
            else 1
        if field == "num_classes":
          low = 1  # class-conditional generators need >= 1 class
        valid = (lambda v, low=low: _int(v) and v >= low)
      else:
        valid = f32_positive
      out.append(Option(field, lambda v, name=name, field=field: presets.get_model(
          name, **{field: v}), valid, f"models ({name})"))
  for field, low in (("patch_size", 1), ("groups", 1), ("num_classes", 0)):
    out.append(Option(field, lambda v, field=field: mae.get_encoder("mae_mnist_cpu",
                                                                     **{field: v}),
                      lambda v, low=low: _int(v) and v >= low, "models (encoder)"))
  images28 = np.zeros((2, 28, 28, 1), np.float32)
  out += [
      Option("batch", lambda v: presets.sample_image_noise(
          KEY, presets.get_model("mnist_mlp_cpu"), v), positive_int, "models"),
      Option("n", lambda v: mlp.sample_noise(KEY, v, 3), positive_int, "models"),
      Option("noise_dim", lambda v: mlp.sample_noise(KEY, 3, v), positive_int, "models"),
      Option("patch", lambda v: mae.mask_patches(KEY, images28, patch=v),
             lambda v: _int(v) and v >= 1 and 28 % v == 0, "models"),
      Option("prob", lambda v: mae.mask_patches(KEY, images28, prob=v),
             lambda v: _real(v) and 0 <= v <= 1, "models"),
  ]
  return out


MODEL_CASES = [(o, cls) for o in _model_options() for cls in (*BAD, "int-zero", "int-negative")]
_INT_VALUES = {"int-zero": 0, "int-negative": -1}


def test_models_refuse_bad_attributes_by_name(capsys):
  counts, failures = collections.Counter(), []
  for option, cls in MODEL_CASES:
    value = _INT_VALUES.get(cls, BAD.get(cls))
    outcome = _classify(option, value)
    counts[outcome] += 1
    if outcome not in ("ok", "ValueError"):
      failures.append(f"{option.layer}: `{option.name}` = {value!r} ({cls}) -> {outcome}")
  with capsys.disabled():
    print(f"\nmodel fuzz of {len(MODEL_CASES)} calls: {dict(counts)}")
  assert len(MODEL_CASES) > 300
  assert not failures, "\n".join(failures)
