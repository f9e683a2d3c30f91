"""One typed --set parser for every task's configuration."""

import pytest

from drifting_jax.training import ImageConfig, ToyConfig, apply_overrides, resolve_config


@pytest.mark.parametrize("cfg", [ToyConfig(), ImageConfig()])
def test_typed_values_and_errors_are_the_same_for_both_configs(cfg):
  apply = apply_overrides
  out = apply(cfg, ["bandwidth=1", "seed=3.0", "objective=laplace#", "progress=false",
                    "objective_kwargs.scales=(0.5, 2.0)"])
  assert out.bandwidth == 1.0 and isinstance(out.bandwidth, float)
  assert out.seed == 3 and isinstance(out.seed, int)
  assert out.objective == "laplace#" and out.progress is False
  assert out.objective_kwargs == {"scales": (0.5, 2.0)}
  assert cfg.objective_kwargs == {}  # the input is not modified
  for item, match in (("bandwidth=nan", "`bandwidth` must be a finite number"),
                      ("bandwidth=inf", "finite"), ("seed=0.5", "`seed` expects an int"),
                      ("progress=maybe", "true/false"), ("bandwidth=wide", "number"),
                      ("nope=1", "unknown config field 'nope'"), ("seed", "key=value"),
                      ("seed=none", "cannot be None")):
    with pytest.raises(ValueError, match=match):
      apply(cfg, [item])


def test_dict_overrides_keep_their_values():
  out = apply_overrides(ImageConfig(), {"num_steps": 7, "model_overrides.depth": 2})
  assert out.num_steps == 7 and out.model_overrides["depth"] == 2


@pytest.mark.parametrize("cfg", [ToyConfig(), ImageConfig()])
@pytest.mark.parametrize("item,kind", [("learning_rate=1e39", "float32"),
                                       ("learning_rate=1e-50", "float32"),
                                       ("weight_decay=1e40", "float32"),
                                       ("num_steps=3000000000", "int32")])
def test_values_that_overflow_the_step_arithmetic_are_refused(cfg, item, kind):
  """A learning rate of 1e39 is inf in the float32 step, 1e-50 silently 0: refused by name."""
  name = item.split("=")[0]
  with pytest.raises(ValueError, match=f"`{name}` must be representable in the training "
                                       f"step's {kind} arithmetic"):
    resolve_config(cfg, [item])
  assert resolve_config(cfg, ["learning_rate=1e-30"]).learning_rate == 1e-30
