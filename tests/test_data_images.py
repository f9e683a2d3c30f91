"""Tests for drifting_jax.data.images and drifting_jax.data.batching."""

import gzip
import hashlib
import os
import pathlib
import sys

import jax
import numpy as np
import pytest

from drifting_jax.data import batching, images

SHARED_MNIST = pathlib.Path(os.environ.get(
    "DRIFTING_JAX_MNIST",
    pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"))
MNIST_TRAIN_SHA256 = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"


def _fake_mnist(folder, *, n=40, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  sfx = ".gz" if gz else ""
  imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  imgs[0, 0, 0], imgs[0, 0, 1] = 0, 255
  labs = (np.arange(n) % 10).astype(np.uint8)
  for prefix in ("train", "t10k"):
    images.save_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", imgs)
    images.save_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", labs)
  return imgs, labs


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
  x = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
  if dtype == np.uint8:
    x = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
  path = tmp_path / f"x.idx{suffix}"
  images.save_idx(path, x)
  assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
  y = images.load_idx(path)
  assert y.dtype == x.dtype and y.shape == x.shape
  np.testing.assert_array_equal(y, x)


def test_idx_header_layout():
  raw = images.encode_idx(np.zeros((3, 2), np.uint8))
  assert raw[:4] == bytes([0, 0, 0x08, 2]) and raw[4:12] == bytes([0, 0, 0, 3, 0, 0, 0, 2])
  assert len(raw) == 12 + 6


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b"\x01\x02" + b[2:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "type code"),
    (lambda b: b[:-1], "truncated IDX data"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b[:3], "too short"),
    (lambda b: b + b"\x00", "trailing"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_bad_files_raise(tmp_path, mutate, match, gz):
  raw = mutate(images.encode_idx(np.arange(24, dtype=np.uint8).reshape(4, 6)))
  path = tmp_path / "bad-idx3-ubyte"
  path.write_bytes(gzip.compress(raw) if gz else raw)
  with pytest.raises(ValueError, match=match) as e:
    images.load_idx(path)
  assert "bad-idx3-ubyte" in str(e.value)


def test_idx_truncated_gzip_raises(tmp_path):
  path = tmp_path / "x.gz"
  path.write_bytes(gzip.compress(images.encode_idx(np.zeros((50, 50), np.uint8)))[:-20])
  with pytest.raises(ValueError, match="gzip") as e:
    images.load_idx(path)
  assert "x.gz" in str(e.value)


# ----------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_folder_fake(tmp_path, gz):
  imgs, labs = _fake_mnist(tmp_path / "m", gz=gz)
  ds = images.load_mnist_folder(tmp_path / "m", split="test", name="fashion_mnist")
  assert ds.images.shape == (40, 28, 28, 1) and ds.images.dtype == np.float32
  assert ds.labels.dtype == np.int32 and ds.num_classes == 10 and ds.name == "fashion_mnist"
  assert ds.images.min() == -1.0 and ds.images.max() == 1.0
  np.testing.assert_array_equal(images.to_uint8(ds.images)[..., 0], imgs)
  np.testing.assert_array_equal(ds.labels, labs)
  spec = images.load_dataset(f"mnist:{tmp_path / 'm'}", split="train")
  np.testing.assert_array_equal(spec.images, ds.images)


def test_mnist_folder_errors(tmp_path):
  with pytest.raises(ValueError, match="split"):
    images.load_mnist_folder(tmp_path, split="val")
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    images.load_mnist_folder(tmp_path)


@pytest.fixture(scope="module")
def mnist_dir():
  if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
    pytest.skip(f"shared MNIST not found at {SHARED_MNIST}")
  return SHARED_MNIST


def test_real_mnist(mnist_dir, monkeypatch):
  raw = images.load_idx(mnist_dir / "train-images-idx3-ubyte.gz")
  assert raw.shape == (60000, 28, 28) and raw.dtype == np.uint8
  assert hashlib.sha256(images.encode_idx(raw)).hexdigest() == MNIST_TRAIN_SHA256
  ds = images.load_mnist_folder(mnist_dir, split="train")
  assert ds.images.shape == (60000, 28, 28, 1) and ds.num_classes == 10
  assert set(np.unique(ds.labels)) == set(range(10))
  assert ds.images.min() == -1.0 and ds.images.max() == 1.0
  test = images.load_mnist_folder(mnist_dir, split="test")
  assert test.images.shape == (10000, 28, 28, 1)
  monkeypatch.setenv(images.MNIST_ENV_VAR, str(mnist_dir))
  assert images.find_mnist() == mnist_dir
  assert images.load_dataset("mnist", split="test").labels.shape == (10000,)


def test_digits():
  ds = images.load_dataset("digits")
  assert ds.images.shape == (1797, 8, 8, 1) and ds.num_classes == 10 and ds.name == "digits"
  assert set(np.unique(ds.labels)) == set(range(10))
  assert ds.images.min() == -1.0 and ds.images.max() == 1.0
  up = images.load_digits(size=28)
  assert up.images.shape == (1797, 28, 28, 1) and up.images.dtype == np.float32
  assert up.images.min() >= -1.0 and up.images.max() <= 1.0


def test_npz(tmp_path):
  rng = np.random.default_rng(1)
  x = rng.integers(0, 256, (12, 5, 6, 3), dtype=np.uint8)
  y = np.arange(12) % 4
  np.savez(tmp_path / "a.npz", x=x, y=y)
  ds = images.load_npz(tmp_path / "a.npz")
  assert ds.images.shape == (12, 5, 6, 3) and ds.num_classes == 4 and ds.name == "a"
  np.testing.assert_array_equal(images.to_uint8(ds.images), x)
  # Keras-style split keys, float [0, 1] images, explicit keys.
  np.savez(tmp_path / "k.npz", x_train=x[..., 0] / 255.0, y_train=y, x_test=x[:2, ..., 0],
           y_test=y[:2])
  tr = images.load_dataset(f"npz:{tmp_path / 'k.npz'}", split="train")
  np.testing.assert_allclose(tr.images, ds.images[..., :1], atol=1e-6)
  te = images.load_npz(tmp_path / "k.npz", images_key="x_test", labels_key="y_test",
                       num_classes=10)
  assert te.images.shape == (2, 5, 6, 1) and te.num_classes == 10
  with pytest.raises(ValueError, match="images_key"):
    images.load_npz(tmp_path / "a.npz", images_key="nope")
  np.savez(tmp_path / "b.npz", images=x, labels=y[:5])
  with pytest.raises(ValueError, match="labels"):
    images.load_npz(tmp_path / "b.npz")
  np.savez(tmp_path / "c.npz", images=x * 3.0, labels=y)
  with pytest.raises(ValueError, match="value_range"):
    images.load_npz(tmp_path / "c.npz")


def test_tfds_missing_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
  with pytest.raises(ImportError, match=r'pip install -e "\.\[tfds\]"'):
    images.load_tfds("mnist", split="train")
  with pytest.raises(ImportError, match="tfds"):
    images.load_dataset("tfds:fashion_mnist")


def test_load_dataset_bad_spec():
  with pytest.raises(ValueError, match="spec"):
    images.load_dataset("cifar100")


def test_save_image_grid(tmp_path):
  import matplotlib.image
  x = np.linspace(-1, 1, 7 * 4 * 5).reshape(7, 4, 5, 1).astype(np.float32)
  grid = images.save_image_grid(x, tmp_path / "sub" / "g.png", nrow=3)
  assert grid.shape == (3 * 6 + 2, 3 * 7 + 2, 3)
  back = matplotlib.image.imread(tmp_path / "sub" / "g.png")
  assert back.shape[:2] == grid.shape[:2]
  np.testing.assert_array_equal(np.rint(back[..., :3] * 255).astype(np.uint8), grid)
  np.testing.assert_array_equal(grid[2:6, 2:7, 0], images.to_uint8(x[0, ..., 0]))


# ----------------------------------------------------------------------------- batching


def test_class_index():
  labels = np.array([2, 0, 2, 2, 1, 0, 2])
  idx = batching.build_class_index(labels, num_classes=4)
  np.testing.assert_array_equal(idx.counts, [2, 1, 4, 0])
  table = np.asarray(idx.table)
  assert table.shape == (4, 4)
  for c, n in enumerate([2, 1, 4]):
    assert sorted(table[c, :n]) == list(np.flatnonzero(labels == c))
  with pytest.raises(ValueError, match="labels"):
    batching.build_class_index(np.array([0, 5]), num_classes=3)


def test_class_conditional_batches():
  rng = np.random.default_rng(0)
  counts = [30, 5, 200, 0, 96, 50, 1]  # uneven, one empty class, some smaller than N_pos
  labels = rng.permutation(np.repeat(np.arange(7), counts))
  # Each image stores its own label and index, so we can check membership exactly.
  imgs = np.zeros((labels.size, 2, 2, 1), np.float32)
  imgs[:, 0, 0, 0], imgs[:, 0, 1, 0] = labels, np.arange(labels.size)
  sampler = batching.ClassConditionalSampler(imgs, labels, num_classes=7,
                                             num_classes_per_step=5, num_pos=96)
  for step in range(4):
    b = sampler(jax.random.fold_in(jax.random.PRNGKey(0), step))
    pos, ids = np.asarray(b.pos), np.asarray(b.class_ids)
    assert pos.shape == (5, 96, 2, 2, 1) and ids.shape == (5,)
    assert len(set(ids)) == 5 and 3 not in ids
    np.testing.assert_array_equal(pos[..., 0, 0, 0], np.broadcast_to(ids[:, None], (5, 96)))
    for c, row in zip(ids, pos[:, :, 0, 1, 0].astype(int)):
      uniq = np.unique(row)
      assert np.all(labels[row] == c)
      assert len(uniq) == min(96, counts[c])  # distinct when possible, all entries otherwise
  b1, b2 = sampler(jax.random.PRNGKey(3)), sampler(jax.random.PRNGKey(3))
  np.testing.assert_array_equal(b1.pos, b2.pos)
  np.testing.assert_array_equal(b1.class_ids, b2.class_ids)
  assert not np.array_equal(sampler(jax.random.PRNGKey(4)).pos, b1.pos)
  with pytest.raises(ValueError, match="num_classes_per_step"):
    batching.ClassConditionalSampler(imgs, labels, num_classes_per_step=7)


def test_load_npz_refuses_nan_images_naming_file_and_index(tmp_path):
  x = np.random.default_rng(0).random((5, 4, 4)).astype(np.float32)
  x[3, 1, 1] = np.nan
  np.savez(tmp_path / "a.npz", images=x, labels=np.arange(5))
  with pytest.raises(ValueError, match=r"a\.npz\[images\]` image 3 contains NaN or inf"):
    images.load_npz(tmp_path / "a.npz")


@pytest.mark.parametrize("ds,match", [
    (images.Dataset(np.zeros((0, 4, 4, 1), np.float32), np.zeros(0, np.int32), 2, "e"),
     r"N >= 1"),
    (images.Dataset(np.zeros((2, 4, 4), np.float32), np.zeros(2, np.int32), 2, "r"),
     r"\[N, H, W, C\]"),
    (images.Dataset(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, np.int32), 2, "u"),
     "floats in"),
    (images.Dataset(np.full((2, 4, 4, 1), 2.0, np.float32), np.zeros(2, np.int32), 2, "v"),
     r"lie in \[-1, 1\]"),
    (images.Dataset(np.stack([np.zeros((4, 4, 1)), np.full((4, 4, 1), np.inf)]).astype(
        np.float32), np.zeros(2, np.int32), 2, "i"), "image 1 contains NaN or inf"),
    (images.Dataset(np.zeros((2, 4, 4, 1), np.float32), np.array([0.0, 1.0]), 2, "f"),
     "must be integers"),
    (images.Dataset(np.zeros((2, 4, 4, 1), np.float32), np.array([0, 2]), 2, "l"),
     r"lie in \[0, 2\)"),
    ("not a dataset", "must be a drifting_jax.data.images.Dataset"),
])
def test_check_dataset_names_what_is_wrong(ds, match):
  with pytest.raises(ValueError, match=match):
    images.check_dataset(ds)
