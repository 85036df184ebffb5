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
    ds = data.load(tmp_path / "c.csv", label_column="label")
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
    with pytest.raises(ValueError, match="'x' at line 2, column 'b' is not a number"):
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
    with pytest.warns(
        UserWarning, match="did not stratify: 10 classes do not fit in 5 test samples"
    ):
        data.split(Dataset(torch.zeros(40, 1), list(range(10)) * 4), test_size=5)


@pytest.mark.parametrize(
    "test_size, n_test",
    [
        (np.float32(0.2), 20),
        (np.float64(0.25), 25),
        (np.int32(7), 7),
        (np.int64(30), 30),
        (0.1, 10),
    ],
)
def test_split_accepts_any_real_fraction_and_integral_count(test_size, n_test):
    train, test = data.split(data.moons(100), test_size=test_size)
    assert len(test) == n_test and len(train) == 100 - n_test


@pytest.mark.parametrize(
    "test_size, error, match",
    [
        (
            "0.2",
            TypeError,
            "test_size must be a fraction in \\(0, 1\\) or a count of samples, got '0.2'",
        ),
        (True, TypeError, "got True"),
        (np.float32(1.0), ValueError, r"fraction must be in \(0, 1\), got 1.0"),
        (np.int64(100), ValueError, r"count must be in \[1, 99\], got 100"),
    ],
)
def test_split_rejects_bad_test_sizes(test_size, error, match):
    with pytest.raises(error, match=match):
        data.split(data.moons(100), test_size=test_size)


def test_load_encodes_string_labels_in_sorted_order(tmp_path):
    (tmp_path / "a.csv").write_text("x1,x2,label\n0,1,dog\n2,3,cat\n4,5,dog\n6,7,bird\n")
    ds = data.load(tmp_path / "a.csv", label_column="label")
    assert ds.y.tolist() == [2, 1, 2, 0]  # bird, cat, dog
    assert ds.X.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    np.savez(tmp_path / "b.npz", X=np.zeros((3, 2)), y=np.array(["b", "a", "b"]))
    assert data.load(tmp_path / "b.npz").y.tolist() == [1, 0, 1]
    (tmp_path / "c.csv").write_text("x,label\n0,dog\n1,\n")
    with pytest.raises(
        ValueError,
        match=r"c.csv: 1 labels are missing \(the first at line 3, "
        r"column 'label'",
    ):
        data.load(tmp_path / "c.csv", label_column="label")
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


@pytest.mark.parametrize(
    "noise, error, match",
    [
        ("a", TypeError, "noise must be a number, got 'a'"),
        (-0.1, ValueError, "noise must be a finite number >= 0, got -0.1"),
        (float("nan"), ValueError, "noise must be a finite number >= 0, got nan"),
    ],
)
def test_moons_checks_noise(noise, error, match):
    with pytest.raises(error, match=match):
        data.moons(10, noise=noise)


@pytest.mark.parametrize("n", [0, -3])
def test_loaders_reject_sizes_below_one(n):
    with pytest.raises(ValueError, match=f"n must be an int >= 1, got {n}"):
        data.rectangle(n)


# --- issue 14, item 5: one header rule, missing values, labels only when asked for ---------------


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffa,b\n1,2\n3,4\n",  # a UTF-8 byte-order mark before the header
        '"1","2"\n3,4\n',  # quoted numbers are numbers: no header
        "1,2\n3,4\n",
    ],
)
def test_csv_header_rule_keeps_every_data_row(tmp_path, text):
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    ds = data.load(path)
    assert ds.X.tolist() == [[1, 2], [3, 4]] and ds.y is None


def test_csv_header_with_a_bom_names_its_first_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("\ufeffy,x\n0,1.5\n1,2.5\n".encode("utf-8"))
    ds = data.load(path, label_column="y")
    assert ds.y.tolist() == [0, 1] and ds.X.tolist() == [[1.5], [2.5]]


@pytest.mark.parametrize(
    "text, line, column",
    [
        (",2\n3,4\n", 1, 1),  # an empty cell in the first row is missing, not a header
        ("NA,2\n3,4\n", 1, 1),
        ("1,2\n3,\n", 2, 2),
        ("a,b\n1,2\n3,NA\n", 3, "'b'"),
        ("a,b\n1,2\nnan,4\n", 3, "'a'"),
        ("a,b\n1,2\n , 4\n", 3, "'a'"),
    ],
)
def test_csv_missing_values_are_errors_naming_row_and_column(tmp_path, text, line, column):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"missing value .* line {line}, column {column}"):
        data.load(path)


def test_csv_infinite_and_text_cells_name_row_and_column(tmp_path):
    (tmp_path / "i.csv").write_text("a,b\n1,2\n3,inf\n")
    with pytest.raises(ValueError, match=r"infinite .* line 3, column 'b'"):
        data.load(tmp_path / "i.csv")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(ValueError, match=r"'x' at line 3, column 'b' is not a number"):
        data.load(tmp_path / "t.csv")


def test_csv_pandas_index_column_is_dropped_with_a_warning(tmp_path):
    import pandas as pd

    path = tmp_path / "frame.csv"
    pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": [1.0, 2.0, 3.0]}).to_csv(path)  # index column kept
    with pytest.warns(UserWarning, match="index column"):
        ds = data.load(path)
    assert ds.X.tolist() == [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]]
    # an unnamed first column that is not 0..n-1 is data
    (tmp_path / "other.csv").write_text(",a\n5,1\n7,2\n")
    assert data.load(tmp_path / "other.csv").X.tolist() == [[5, 1], [7, 2]]


def test_csv_labels_come_only_from_label_column(tmp_path):
    path = tmp_path / "xy.csv"
    path.write_text("x,y\n0.5,1.25\n1.5,-0.75\n")  # a point file: y is a coordinate
    ds = data.load(path)
    assert ds.X.tolist() == [[0.5, 1.25], [1.5, -0.75]] and ds.y is None
    labelled = tmp_path / "lab.csv"
    labelled.write_text("a,b,label\n0,1,0\n2,3,1\n4,5,1\n")
    with pytest.warns(UserWarning, match=r"label_column='label'"):
        ds = data.load(labelled)  # integers in a column named label: suggested, not taken
    assert ds.y is None and ds.n_features == 3
    ds = data.load(labelled, label_column="label")
    assert ds.y.tolist() == [0, 1, 1] and ds.X.tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(
        ValueError, match=r"label_column 'nope' is not a column .*'a', 'b', 'label'"
    ):
        data.load(labelled, label_column="nope")
    strings = tmp_path / "s.csv"
    strings.write_text("a,class\n0,cat\n1,dog\n")
    with pytest.raises(ValueError, match=r"label_column='class'"):
        data.load(strings)


def test_csv_label_column_by_position_without_a_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("0.5,1\n1.5,0\n")
    assert data.load(path, label_column=1).y.tolist() == [1, 0]
    assert data.load(path, label_column=-1).y.tolist() == [1, 0]
    with pytest.raises(ValueError, match="label_column 'y' names a column, but .* has no header"):
        data.load(path, label_column="y")
    with pytest.raises(ValueError, match="label_column 5 is out of range"):
        data.load(path, label_column=5)
    with pytest.raises(TypeError, match="label_column must be"):
        data.load(path, label_column=1.0)
    np.save(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"label_column='y' does not apply to a \.npy"):
        data.load(tmp_path / "a.npy", label_column="y")


def test_npz_labels_from_y_or_from_label_column(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros((3, 2)), y=[0, 1, 0], target=[1, 1, 0])
    assert data.load(tmp_path / "a.npz").y.tolist() == [0, 1, 0]
    assert data.load(tmp_path / "a.npz", label_column="target").y.tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match=r"label_column 'z' .*\['X', 'target', 'y'\]"):
        data.load(tmp_path / "a.npz", label_column="z")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.ones((3, 2), dtype=np.complex64), "complex"),
        (np.ones((3, 0)), "at least one feature"),
        (np.ones((0, 2)), "at least one sample"),
        (np.array([[1e39, 0.0]]), "float32"),
    ],
)
def test_load_refuses_complex_empty_and_overflowing_arrays(tmp_path, array, match):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises((ValueError, TypeError), match=match):
        data.load(tmp_path / "a.npy")


def test_csv_with_only_a_header_or_nothing_is_refused(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="no data rows"):
        data.load(tmp_path / "h.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        data.load(tmp_path / "e.csv")
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="line 2 has 1 fields, expected 2"):
        data.load(tmp_path / "r.csv")


@pytest.mark.parametrize(
    "X, error, match",
    [
        (
            np.ones((2, 2), dtype=np.complex128),
            TypeError,
            "X must hold real numbers, got dtype complex",
        ),
        (torch.ones(2, 2, dtype=torch.complex64), TypeError, "X must hold real numbers"),
        (np.ones((2, 0)), ValueError, "X must have at least one feature"),
        (np.array([["a", "b"]]), TypeError, "X must hold real numbers"),
        (np.array([[1e300, 0.0]]), ValueError, "X has values beyond float32's range"),
    ],
)
def test_dataset_refuses_bad_X(X, error, match):
    with pytest.raises(error, match=match):
        Dataset(X)


@pytest.mark.parametrize(
    "image_shape, error, match",
    [
        ((1, 2.5, 1.6), TypeError, r"image_shape\[1\] must be an int"),
        ((1, -2, -2), ValueError, r"image_shape\[1\] must be an int >= 1, got -2"),
        ((4, 1, 1, 1), ValueError, "image_shape must be"),
        ("abc", ValueError, "image_shape must be"),
    ],
)
def test_dataset_refuses_bad_image_shapes(image_shape, error, match):
    with pytest.raises(error, match=match):
        Dataset(torch.zeros(3, 4), image_shape=image_shape)


@pytest.mark.parametrize(
    "y, error, match",
    [
        (np.array([2**64 - 1, 0], dtype=np.uint64), ValueError, "y holds labels beyond int64"),
        (np.array([1e30, 0.0]), ValueError, "y holds labels beyond int64"),
        ([2**70, 0], ValueError, "y holds labels beyond int64"),
        (np.array([np.nan, 0.0]), ValueError, "y holds NaN"),
        (np.array([0.5, 1.0]), ValueError, "integer class labels"),
        (np.array([1 + 1j, 0]), TypeError, "y must hold integer class labels"),
        (["a", "b"], TypeError, "y must hold integer class labels"),
    ],
)
def test_dataset_refuses_bad_labels(y, error, match):
    with pytest.raises(error, match=match):
        Dataset(torch.zeros(2, 1), y)


def test_dataset_detaches_tensors_that_require_grad():
    X = torch.zeros(4, 2, requires_grad=True)
    ds = Dataset(X * 2)
    assert not ds.X.requires_grad and ds.X.grad_fn is None
    assert not Dataset(X).X.requires_grad


# --- issue 14, item 7: an IDX header is checked against its file before the body is read ----------


def _gzip_bytes(payload: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as f:
        f.write(payload)
    return buffer.getvalue()


def test_mnist_refuses_a_small_gzip_that_would_inflate_to_gigabytes_quickly(tmp_path):
    import time

    # a header declaring 60000 images of 2000x2000 (240 GB), then a few MB of zeros
    header = struct.pack(">iiii", 2051, 60000, 2000, 2000)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(_gzip_bytes(header + bytes(4 << 20)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(60000), 2049, gz=True)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="does not fit a gzip file"):
        data.mnist(tmp_path)
    assert time.perf_counter() - start < 1.0


def test_mnist_reads_no_more_than_its_header_declares(tmp_path):
    # a small declared size followed by much more data: refused after reading one byte too many
    header = struct.pack(">iiii", 2051, 2, 3, 3)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + bytes(18 + 10**6))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2), 2049, gz=False)
    with pytest.raises(ValueError, match=r"says 34; the file is truncated or damaged"):
        data.mnist(tmp_path)


@pytest.mark.parametrize(
    "payload, match",
    [
        (struct.pack(">ii", 2051, 2), "short IDX header"),
        (struct.pack(">iiii", 2051, 2, 3, 3) + bytes(5), "truncated"),
        (struct.pack(">iiii", 2051, -2, 3, 3), "negative sizes"),
        (b"\x00\x00", "too short to be an IDX file"),
    ],
)
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_refuses_short_and_damaged_headers(tmp_path, payload, match, gz):
    suffix = ".gz" if gz else ""
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    path.write_bytes(_gzip_bytes(payload) if gz else payload)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.zeros(2), 2049, gz=gz)
    with pytest.raises(ValueError, match=match):
        data.mnist(tmp_path)


def test_mnist_refuses_a_truncated_gzip_stream(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28))
    header = struct.pack(">iiii", 2051, *images.shape)
    whole = _gzip_bytes(header + images.astype(np.uint8).tobytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(50), 2049, gz=True)
    with pytest.raises(ValueError, match="truncated or damaged"):
        data.mnist(tmp_path)


def test_npy_whose_header_declares_more_than_the_file_holds_is_refused(tmp_path):
    path = tmp_path / "big.npy"
    with open(path, "wb") as f:  # 64 TB declared, 64 bytes present
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (4000000, 2000000)}
        )
        f.write(bytes(64))
    with pytest.raises(ValueError, match=r"declares shape \(4000000, 2000000\)"):
        data.load(path)
    import zipfile

    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as zf:
        with zf.open("X.npy", "w") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (4000000, 2000000)}
            )
            f.write(bytes(64))
    with pytest.raises(ValueError, match=r"array 'X' declares shape"):
        data.load(tmp_path / "lie.npz")


# --- issue 14, item 6: corrupt checks its clip bounds and its data ----------------------------------


@pytest.mark.parametrize(
    "clip, error, match",
    [
        ((1, 0), ValueError, r"clip must be \(low, high\) with low < high, got \(1, 0\)"),
        ((float("nan"), 1), ValueError, r"clip must be \(low, high\) .*got \(nan, 1\)"),
        ((None, 1), TypeError, r"clip must be \(low, high\), two numbers"),
        ((0,), TypeError, r"clip must be \(low, high\), two numbers"),
        ("ab", TypeError, r"clip must be \(low, high\), two numbers"),
        (0.5, TypeError, r"clip must be \(low, high\), two numbers"),
    ],
)
def test_corrupt_refuses_bad_clip_bounds(clip, error, match):
    with pytest.raises(error, match=match):
        data.corrupt(torch.zeros(4, 2), 0.1, clip=clip)


def test_corrupt_refuses_nan_and_complex_data_and_clips_to_equal_bounds():
    X = torch.zeros(4, 2)
    X[1, 1] = float("nan")
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        data.corrupt(X, 0.1)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        data.corrupt(torch.zeros(2, 2, dtype=torch.complex64), 0.1)
    assert data.corrupt(torch.zeros(3, 2), 1.0, clip=(0, 1)).min() >= 0
    assert data.corrupt(torch.zeros(3, 2), 1.0, clip=(np.float32(-1), np.int64(1))).abs().max() <= 1


def test_one_column_csv_blank_line_is_a_missing_value(tmp_path):
    (tmp_path / "one.csv").write_text("1\n\n3\n\n")  # the trailing newlines are fine
    with pytest.raises(ValueError, match="missing value .* line 2, column 1"):
        data.load(tmp_path / "one.csv")
    (tmp_path / "two.csv").write_text("1,2\n\n3,4\n")  # several columns: a blank line is skipped
    assert data.load(tmp_path / "two.csv").X.tolist() == [[1, 2], [3, 4]]


def test_float16_labels_are_checked_without_overflow():
    assert Dataset(torch.zeros(2, 1), np.array([0.0, 3.0], dtype=np.float16)).y.tolist() == [0, 3]


def test_label_column_text_is_a_name_first_then_a_position(tmp_path):
    named = tmp_path / "named.csv"
    named.write_text("a,3,b\n1,0,2\n3,1,4\n5,0,6\n")
    ds = data.load(named, label_column="3")  # a header names a column "3"
    assert ds.y.tolist() == [0, 1, 0] and ds.X.shape == (3, 2)
    plain = tmp_path / "plain.csv"
    plain.write_text("1,2,0\n3,4,1\n5,6,1\n")
    assert data.load(plain, label_column="2").y.tolist() == [0, 1, 1]  # text from the CLI
    assert data.load(plain, label_column="-1").y.tolist() == [0, 1, 1]
