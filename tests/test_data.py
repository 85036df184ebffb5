import gzip
import struct

import numpy as np
import pytest
import torch

from aelab import data
from aelab.data import Dataset


def test_dataset_converts_to_float32_and_int64():
    ds = Dataset(np.ones((4, 3), dtype=np.float64), np.array([0, 1, 0, 1]), name="x")
    assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert len(ds) == 4 and ds.n_features == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_dataset_rejects_nan_and_inf(bad):
    X = torch.zeros(5, 2)
    X[3, 1] = bad
    with pytest.raises(ValueError, match="NaN" if bad != bad else "infinite"):
        Dataset(X)


def test_dataset_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="2-D"):
        Dataset(torch.zeros(5))
    with pytest.raises(ValueError, match="one label per row"):
        Dataset(torch.zeros(5, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(torch.zeros(5, 10), image_shape=(1, 3, 3))


def test_rectangle_is_uniform_on_its_box_and_seeded():
    X = data.rectangle(5000, seed=1).X
    assert X[:, 0].min() >= -2 and X[:, 0].max() <= 2
    assert X[:, 1].min() >= -1 and X[:, 1].max() <= 1
    assert abs(X[:, 0].var().item() - 16 / 12) < 0.1  # Var U(-2, 2) = 4/3
    assert torch.equal(data.rectangle(10, seed=3).X, data.rectangle(10, seed=3).X)
    assert not torch.equal(data.rectangle(10, seed=3).X, data.rectangle(10, seed=4).X)


def test_moons_match_sklearn():
    from sklearn.datasets import make_moons

    X, y = make_moons(50, noise=0.2, random_state=7)
    ds = data.moons(50, noise=0.2, seed=7)
    assert torch.allclose(ds.X, torch.tensor(X, dtype=torch.float32))
    assert ds.y.tolist() == y.tolist()


def test_moons_curve_lies_on_the_noise_free_moons():
    from sklearn.datasets import make_moons

    X, _ = make_moons(200, noise=0.0, random_state=0)
    curve = data.moons_curve(2000)
    assert torch.cdist(torch.tensor(X, dtype=torch.float32), curve).min(1).values.max() < 0.01


def test_digits_scaled_to_unit_interval():
    ds = data.digits()
    assert ds.X.shape == (1797, 64) and ds.image_shape == (1, 8, 8)
    assert ds.X.min() == 0 and ds.X.max() == 1
    assert sorted(ds.y.unique().tolist()) == list(range(10))


def _write_idx(path, array, magic, gz):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 28, 28))
    labels = rng.integers(0, 10, size=6)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, 2051, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, 2049, gz)
    ds = data.mnist(tmp_path, train=False)
    assert ds.X.shape == (6, 784) and ds.image_shape == (1, 28, 28)
    assert torch.allclose(ds.X[2], torch.tensor(images[2].ravel() / 255.0, dtype=torch.float32))
    assert ds.y.tolist() == labels.tolist()


def test_mnist_missing_files_name_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        data.mnist(tmp_path, train=False)


def test_mnist_checks_magic_numbers(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 3, 3)), 2049, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2), 2049, gz=False)
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        data.mnist(tmp_path)


def test_load_npy_npz_csv(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.save(tmp_path / "a.npy", X)
    assert torch.equal(data.load(tmp_path / "a.npy").X, torch.tensor(X, dtype=torch.float32))
    np.savez(tmp_path / "b.npz", X=X, y=np.array([0, 1, 0, 1, 0, 1]))
    assert data.load(tmp_path / "b.npz").y.tolist() == [0, 1, 0, 1, 0, 1]
    (tmp_path / "c.csv").write_text("x1,x2,label\n0,1,0\n2,3,1\n4,5,1\n")
    ds = data.load(tmp_path / "c.csv")
    assert ds.X.tolist() == [[0, 1], [2, 3], [4, 5]] and ds.y.tolist() == [0, 1, 1]
    (tmp_path / "d.csv").write_text("0.5,1\n2,3\n")
    assert data.load(tmp_path / "d.csv").X.shape == (2, 2)
    np.save(tmp_path / "img.npy", np.zeros((3, 4, 5)))
    assert data.load(tmp_path / "img.npy").image_shape == (1, 4, 5)


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="suffix '.txt'"):
        data.load(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(tmp_path / "missing.npy")
    (tmp_path / "e.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match="not numeric"):
        data.load(tmp_path / "e.csv")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        data.load(tmp_path / "obj.npy")


def test_split_is_stratified_and_seeded():
    # 90 of class 0 and 10 of class 1: a random 20-sample test set has 2 of class 1 only
    # about 30% of the time; a stratified one always has exactly 18 and 2
    y = torch.tensor([0] * 90 + [1] * 10)
    shuffled = y[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    ds = Dataset(torch.arange(100.0)[:, None], shuffled)
    for seed in range(5):
        train, test = data.split(ds, test_size=0.2, seed=seed)
        assert torch.bincount(test.y).tolist() == [18, 2]
        assert torch.bincount(train.y).tolist() == [72, 8]
        assert set(train.X[:, 0].tolist()).isdisjoint(test.X[:, 0].tolist())
    train, test = data.split(ds, test_size=0.2, seed=0)
    again, _ = data.split(ds, test_size=0.2, seed=0)
    other, _ = data.split(ds, test_size=0.2, seed=1)
    assert torch.equal(train.X, again.X) and not torch.equal(train.X, other.X)
    with pytest.raises(ValueError, match="test_size"):
        data.split(ds, test_size=1.5)


def test_split_warns_when_it_cannot_stratify():
    ds = Dataset(torch.arange(20.0)[:, None], [0] * 19 + [1])
    with pytest.warns(UserWarning, match=r"did not stratify: classes \[1\] have a single member"):
        train, test = data.split(ds, test_size=0.2)
    assert len(train) == 16 and len(test) == 4
    with pytest.warns(UserWarning, match="did not stratify: 10 classes do not fit in 5 test samples"):
        data.split(Dataset(torch.zeros(40, 1), list(range(10)) * 4), test_size=5)


@pytest.mark.parametrize("test_size, n_test", [(np.float32(0.2), 20), (np.float64(0.25), 25),
                                               (np.int32(7), 7), (np.int64(30), 30), (0.1, 10)])
def test_split_accepts_any_real_fraction_and_integral_count(test_size, n_test):
    train, test = data.split(data.moons(100), test_size=test_size)
    assert len(test) == n_test and len(train) == 100 - n_test


@pytest.mark.parametrize("test_size, error, match", [
    ("0.2", TypeError, "test_size must be a fraction in \\(0, 1\\) or a count of samples, got '0.2'"),
    (True, TypeError, "got True"),
    (np.float32(1.0), ValueError, r"fraction must be in \(0, 1\), got 1.0"),
    (np.int64(100), ValueError, r"count must be in \[1, 99\], got 100"),
])
def test_split_rejects_bad_test_sizes(test_size, error, match):
    with pytest.raises(error, match=match):
        data.split(data.moons(100), test_size=test_size)


def test_load_encodes_string_labels_in_sorted_order(tmp_path):
    (tmp_path / "a.csv").write_text("x1,x2,label\n0,1,dog\n2,3,cat\n4,5,dog\n6,7,bird\n")
    ds = data.load(tmp_path / "a.csv")
    assert ds.y.tolist() == [2, 1, 2, 0]  # bird, cat, dog
    assert ds.X.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    np.savez(tmp_path / "b.npz", X=np.zeros((3, 2)), y=np.array(["b", "a", "b"]))
    assert data.load(tmp_path / "b.npz").y.tolist() == [1, 0, 1]
    (tmp_path / "c.csv").write_text("x,label\n0,dog\n1,\n")
    with pytest.raises(ValueError, match=r"c.csv: 1 labels are missing \(the first at row index 1"):
        data.load(tmp_path / "c.csv")
    with pytest.raises(TypeError, match="y must hold integer class labels, got dtype <U1"):
        Dataset(torch.zeros(2, 1), np.array(["a", "b"]))


def test_corrupt_adds_seeded_gaussian_noise():
    X = torch.zeros(2000, 3)
    noisy = data.corrupt(X, sigma=0.3, seed=1)
    assert abs(noisy.std().item() - 0.3) < 0.01
    assert torch.equal(noisy, data.corrupt(X, sigma=0.3, seed=1))
    assert data.corrupt(X + 0.5, 1.0, clip=(0, 1)).max() <= 1
    with pytest.raises(ValueError, match="sigma"):
        data.corrupt(X, sigma=-1)


def test_corrupt_accepts_array_likes_and_checks_its_arguments():
    noisy = data.corrupt(np.zeros((4, 3)), sigma=0.5, seed=2)
    assert noisy.dtype == torch.float32
    assert torch.equal(noisy, data.corrupt(torch.zeros(4, 3), sigma=0.5, seed=2))
    assert torch.equal(data.corrupt([[1, 2], [3, 4]], sigma=0), torch.tensor([[1.0, 2], [3, 4]]))
    assert data.corrupt(torch.ones(5, dtype=torch.int64), 0.1).dtype == torch.float32
    assert data.corrupt(torch.zeros(3, dtype=torch.float64), 0.1).dtype == torch.float64
    with pytest.raises(TypeError, match="sigma must be a number, got 'a'"):
        data.corrupt(np.zeros(3), sigma="a")
    with pytest.raises(TypeError, match="X must be a tensor or a numeric array, got list"):
        data.corrupt([[1, "x"]], sigma=0.1)
    with pytest.raises(TypeError, match=r"got a Dataset; pass its X"):
        data.corrupt(data.rectangle(3), sigma=0.1)


@pytest.mark.parametrize("noise, error, match", [
    ("a", TypeError, "noise must be a number, got 'a'"),
    (-0.1, ValueError, "noise must be a finite number >= 0, got -0.1"),
    (float("nan"), ValueError, "noise must be a finite number >= 0, got nan"),
])
def test_moons_checks_noise(noise, error, match):
    with pytest.raises(error, match=match):
        data.moons(10, noise=noise)


@pytest.mark.parametrize("n", [0, -3])
def test_loaders_reject_sizes_below_one(n):
    with pytest.raises(ValueError, match=f"n must be an int >= 1, got {n}"):
        data.rectangle(n)
