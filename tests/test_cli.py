"""End-to-end `drifting-jax` train / sample / eval, run in-process through `main`."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from drifting_jax import cli

TINY = ["--set", "num_steps=6", "--set", "batch_size=64", "--set", "hidden=32",
        "--set", "checkpoint_every=3", "--set", "eval_num_samples=300",
        "--set", "eval_num_projections=20", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cli") / "run"
  config = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                        "toy_swiss_roll_gauss.py")
  assert cli.main(["train", "--config", config, "--workdir", str(workdir), *TINY]) == 0
  return workdir


def test_train_writes_run(run_dir, capsys):
  for name in ("config.json", "metrics.json", "metrics.jsonl", "samples.png"):
    assert (run_dir / name).is_file()
  cfg = json.load(open(run_dir / "config.json"))
  assert cfg["dataset"] == "swiss_roll" and cfg["num_steps"] == 6 and cfg["progress"] is False
  assert sorted(os.listdir(run_dir / "checkpoints")) == ["3", "6"]


def test_sample_npz_png_and_checkpoint(run_dir, tmp_path):
  assert cli.main(["sample", "--workdir", str(run_dir), "--num", "50",
                   "--out", str(tmp_path / "s.npz")]) == 0
  out = np.load(tmp_path / "s.npz")
  assert out["samples"].shape == (50, 2) and int(out["step"]) == 6
  assert cli.main(["sample", "--checkpoint", str(run_dir / "checkpoints" / "3"), "--num", "50",
                   "--out", str(tmp_path / "s3.npz")]) == 0
  out3 = np.load(tmp_path / "s3.npz")
  assert int(out3["step"]) == 3 and not np.allclose(out3["samples"], out["samples"])
  assert cli.main(["sample", "--workdir", str(run_dir), "--num", "50",
                   "--out", str(tmp_path / "s.png")]) == 0
  assert (tmp_path / "s.png").stat().st_size > 1000
  assert cli.main(["sample", "--workdir", str(run_dir), "--num", "5", "--out", "x.txt"]) == 2


def test_eval_prints_and_writes(run_dir, capsys):
  assert cli.main(["eval", "--workdir", str(run_dir), "--num-samples", "200"]) == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed["num_samples"] == 200 and printed["step"] == 6
  assert np.isfinite(printed["sliced_wasserstein"]) and printed["mmd"] >= 0
  assert json.load(open(run_dir / "eval_metrics.json")) == printed


def test_train_resumes_with_more_steps(run_dir, tmp_path):
  workdir = tmp_path / "resume"
  shutil.copytree(run_dir, workdir)
  config = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                        "toy_swiss_roll_gauss.py")
  args = ["train", "--config", config, "--workdir", str(workdir), *TINY,
          "--set", "num_steps=9"]
  assert cli.main(args) == 0
  steps = [json.loads(l)["step"] for l in open(workdir / "metrics.jsonl")]
  assert steps[-1] == 9 and sorted(os.listdir(workdir / "checkpoints")) == ["6", "9"]


@pytest.mark.parametrize("override,field", [
    ("objective=naive-cauchy", "objective"), ("dataset=moons", "dataset"),
    ("bandwidth=0", "bandwidth"), ("batch_size=1", "batch_size"),
    ("eval_num_samples=1", "eval_num_samples")])
def test_train_bad_input(tmp_path, override, field, capsys):
  # one line "error: ..." naming the field, exit status 2; --debug raises instead; all of
  # them before training starts (no checkpoint written)
  args = ["train", "--workdir", str(tmp_path / "bad"), *TINY, "--set", override]
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and field in err[0]
  with pytest.raises(ValueError, match=field):
    cli.main(["--debug", *args])
  assert not (tmp_path / "bad" / "checkpoints").exists()


def test_missing_run_and_config(tmp_path, capsys):
  assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
  assert "checkpoint" in capsys.readouterr().err
  assert cli.main(["train", "--config", str(tmp_path / "nope.py")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: `--config` file not found") and "nope.py" in err


def test_incompatible_resume_is_refused_with_advice(run_dir, tmp_path, capsys):
  workdir = tmp_path / "other"
  shutil.copytree(run_dir, workdir)
  config = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                        "toy_swiss_roll_gauss.py")
  args = ["train", "--config", config, "--workdir", str(workdir), *TINY]
  assert cli.main([*args, "--set", "hidden=48"]) == 2
  err = capsys.readouterr().err
  assert "hidden: 32 -> 48" in err and "--force-new" in err and "--set hidden=32" in err
  assert cli.main([*args, "--set", "hidden=48", "--force-new"]) == 0


def test_console_script_help():
  exe = shutil.which("drifting-jax") or os.path.join(os.path.dirname(sys.executable),
                                                      "drifting-jax")
  if not os.path.exists(exe):
    pytest.skip("console script not installed")
  out = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and "--workdir" in out.stdout


def test_train_describe_prints_parameter_counts(capsys):
  """``--describe`` prints the generator's parameter table (toy MLP: closed-form count)."""
  assert cli.main(["train", "--describe", "--set", "hidden=16", "--set", "depth=2",
                   "--set", "noise_dim=4"]) == 0
  out = capsys.readouterr().out
  # 4*16+16 + 16*16+16 + 16*2+2 = 80 + 272 + 34
  assert "total" in out and "386" in out
  config = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                        "mnist_dit_s2.py")
  assert cli.main(["train", "--describe", "--config", config]) == 0
  assert "32,473,732" in capsys.readouterr().out


@pytest.mark.parametrize("write,args,match", [
    (None, [], "not found"),
    (dict(images=np.zeros((2, 4, 4), np.uint8)), [], "no `samples`"),
    (dict(samples=np.zeros((4,), np.uint8)), [], r"\[N, H, W, C\]"),
    (dict(samples=np.zeros((2, 4, 4), np.int32)), [], "uint8 or floating"),
    (dict(samples=np.full((2, 4, 4), 2.0, np.float32)), [], r"in \[-1, 1\]"),
    (dict(samples=np.full((2, 4, 4), np.nan, np.float32)), [], "NaN"),
    (dict(samples=np.zeros((2, 4, 4), np.uint8)), [], "`dataset` is needed"),
    (dict(samples=np.zeros((2, 4, 4), np.uint8), dataset="mnist"), ["--num-samples", "3"],
     r"`num_samples` must be an int in \[1, 2\]"),
    (dict(samples=np.zeros((2, 4, 4), np.uint8), dataset="mnist"), ["--seed", "1"],
     r"\['--seed'\] do not apply"),
    (dict(samples=np.zeros((2, 4, 4), np.uint8), dataset="mnist"), ["--fid", "classifier"],
     "with `--fid inception` only"),
])
def test_eval_samples_file_bad_input(tmp_path, capsys, write, args, match):
  path = tmp_path / "s.npz"
  if write is not None:
    np.savez(path, **write)
  assert cli.main(["eval", "--samples", str(path), *args]) == 2
  assert re.search(match, capsys.readouterr().err)


def test_eval_dataset_needs_samples(run_dir, capsys):
  assert cli.main(["eval", "--workdir", str(run_dir), "--dataset", "mnist"]) == 2
  assert "applies to `--samples` only" in capsys.readouterr().err


def test_eval_samples_file_of_real_images_scores_the_floor(tmp_path, capsys):
  """Samples that *are* the first n training images score exactly the real-vs-real floor."""
  from drifting_jax.data.images import load_dataset
  from drifting_jax.metrics.inception import default_inception_path
  if default_inception_path() is None or "DRIFTING_JAX_MNIST" not in os.environ:
    pytest.skip("needs the converted Inception weights and MNIST")
  n = 20
  x = load_dataset("mnist", split="train").images[:n]
  path = tmp_path / "real.npz"
  np.savez(path, samples=np.rint((x + 1.0) * 127.5).astype(np.uint8), dataset="mnist")
  assert cli.main(["eval", "--samples", str(path)]) == 0
  printed = json.loads(capsys.readouterr().out)
  saved = json.loads((tmp_path / "real_metrics.json").read_text())
  assert saved == printed and saved["inception_num"] == n and saved["dataset"] == "mnist"
  np.testing.assert_allclose(saved["inception_fid"], saved["inception_fid_real_vs_real"],
                             rtol=1e-6)
  assert saved["inception_precision"] == saved["inception_precision_real_vs_real"]
