"""Config files as ``ml_collections.ConfigDict``: :func:`config_dict` defaults, its type
safety, and :func:`as_run_config` turning either kind into the typed dataclass."""

import dataclasses
import glob
import os

import ml_collections
import pytest

from drifting_jax.training import (EncoderConfig, ImageConfig, RunConfig, ToyConfig, as_run_config,
                                   config_dict)
from drifting_jax.training import load_config as run_config_file

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "configs")


@pytest.mark.parametrize("kind,cls", [("toy", ToyConfig), ("images", ImageConfig),
                                      ("encoder", EncoderConfig)])
def test_defaults_round_trip_to_the_dataclass(kind, cls):
  cd = config_dict(kind)
  assert isinstance(cd, ml_collections.ConfigDict)
  assert set(cd.keys()) == {f.name for f in dataclasses.fields(cls)}
  assert as_run_config(cd) == cls()


def test_locked_keys_and_types():
  cd = config_dict("images")
  with pytest.raises(AttributeError, match="bandwith"):
    cd.bandwith = 0.1  # misspelt field
  with pytest.raises(TypeError):
    cd.bandwidth = "wide"
  cd.bandwidth = 1  # an int is a valid float
  cd.model_overrides.depth = 2  # free-form dict fields stay open
  cd.objective_kwargs = {"official": True, "temperatures": (0.05, 0.2)}
  cfg = as_run_config(cd)
  assert isinstance(cfg, ImageConfig)
  assert cfg.bandwidth == 1.0 and isinstance(cfg.bandwidth, float)
  assert cfg.model_overrides == {"depth": 2}
  assert cfg.objective_kwargs == {"official": True, "temperatures": (0.05, 0.2)}


def test_as_run_config_rejects_wrong_kinds():
  with pytest.raises(ValueError, match="ConfigDict"):
    as_run_config({"objective": "naive-gauss"})
  with pytest.raises(ValueError, match="task"):
    config_dict("video")
  stale = config_dict("toy")
  stale.unlock()
  stale.old_field = 3
  with pytest.raises(ValueError, match="old_field"):
    as_run_config(stale)


def test_repository_configs_are_config_dicts():
  paths = sorted(glob.glob(os.path.join(CONFIGS, "*.py")))
  assert len(paths) >= 10
  for path in paths:
    spec_cfg = run_config_file(path)
    assert isinstance(spec_cfg, RunConfig), path
    assert ("config_dict(" in open(path).read()), f"{path} does not start from config_dict()"


def test_a_dataclass_returned_by_get_config_still_loads(tmp_path):
  path = tmp_path / "legacy.py"
  path.write_text("from drifting_jax.training import ToyConfig\n"
                  "def get_config():\n  return ToyConfig(bandwidth=0.07)\n")
  assert run_config_file(str(path)).bandwidth == 0.07
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config():\n  return 3\n")
  with pytest.raises(ValueError, match="ConfigDict"):
    run_config_file(str(bad))


def test_config_file_errors_name_the_file(tmp_path, capsys):
  from drifting_jax import cli
  typo = tmp_path / "typo.py"
  typo.write_text("from drifting_jax.training import config_dict\n"
                  "def get_config():\n  c = config_dict('toy')\n  c.bandwith = 0.1\n"
                  "  return c\n")
  with pytest.raises(ValueError, match=r"typo\.py.*bandwith"):
    run_config_file(str(typo))
  assert cli.main(["train", "--config", str(typo), "--workdir", str(tmp_path / "r")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error:") and "typo.py" in err[0], err
