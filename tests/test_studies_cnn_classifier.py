"""cnn-classifier: a quick run on digits, a run on tiny MNIST-format files, bad arguments."""

import gzip
import json
import re
import struct

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from aelab.studies import REGISTRY, cnn_classifier
from aelab.studies.cnn_classifier import SmallCNN, confused_pairs


def _run(**kwargs):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test setting
    try:
        return cnn_classifier(quick=True, seed=0, progress=False, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_result():
    return _run()


def test_registered_and_delivers_labelled_figures(digits_result):
    r = digits_result
    assert REGISTRY["cnn-classifier"].run is cnn_classifier and r.name == "cnn-classifier"
    assert {"confusion", "codes_2d", "training"} <= set(r.figures)
    for key, fig in r.figures.items():
        suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
        for ax in (a for a in fig.axes if a.get_label() != "<colorbar>"):
            assert ax.get_title() or suptitle, key
            assert ax.get_xlabel() and ax.get_ylabel(), key
    assert any(a.get_label() == "<colorbar>" for a in r.figures["confusion"].axes)
    assert r.findings and all(re.search(r"\d", f) and "{" not in f for f in r.findings)
    json.dumps(r.config)
    json.dumps(r.metrics)


def test_digits_accuracy_and_its_interval(digits_result):
    r = digits_result
    n, acc = r.config["n_test"], r.metrics["test_accuracy"]
    assert acc > 0.8
    k = round(acc * n)
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert r.metrics["test_accuracy_ci_low"] == pytest.approx(ci.low)
    assert r.metrics["test_accuracy_ci_high"] == pytest.approx(ci.high)
    assert r.metrics["test_accuracy_ci_low"] < acc < r.metrics["test_accuracy_ci_high"]


def test_epoch_is_chosen_on_validation(digits_result):
    r = digits_result
    history = r.tables["classifier training"]
    assert len(history) == r.config["epochs"]
    best = int(history["validation cross-entropy"].idxmin()) + 1
    assert r.metrics["chosen_epoch"] == best
    assert r.config["n_fit"] + r.config["n_val"] == r.config["n_train"]


def test_confusion_matrix_and_pairs_agree(digits_result):
    r = digits_result
    C = r.tables["confusion matrix"].to_numpy()
    assert C.sum() == r.config["n_test"]
    assert np.trace(C) == round(r.metrics["test_accuracy"] * r.config["n_test"])
    assert C.sum() - np.trace(C) == r.metrics["test_errors"]
    pairs = r.tables["most-confused pairs"]
    labels = list(r.tables["confusion matrix"].index)
    sym = C + C.T
    off = np.sort(sym[np.triu_indices(len(C), 1)])[::-1]
    assert list(pairs["count"]) == list(off[: len(pairs)])
    assert len(pairs) == min(3, int((off > 0).sum()))
    for row in pairs.to_dict("records"):
        i, j = labels.index(row["label a"]), labels.index(row["label b"])
        assert (row["a labelled b"], row["b labelled a"]) == (C[i, j], C[j, i])
        assert row["count"] == sym[i, j]
        assert row["share of errors"] == pytest.approx(sym[i, j] / r.metrics["test_errors"])
        assert f"{row['pair']}: {row['count']}" in " ".join(r.findings)


def test_knn_comparison_is_numbers_with_a_test(digits_result):
    knn = digits_result.tables["code k-NN"]
    assert len(knn) == 2 and (knn["n_test"] == digits_result.config["n_test"]).all()
    acc = knn["5-NN label accuracy"]
    assert ((acc > 0.2) & (acc <= 1)).all()  # both views carry label information (chance 10%)
    assert ((knn["ci_low"] <= acc) & (acc <= knn["ci_high"])).all()
    assert 0 <= digits_result.metrics["knn_mcnemar_p"] <= 1


def test_confused_pairs_ranks_symmetric_counts():
    C = np.array([[9, 1, 0, 0], [3, 8, 0, 2], [0, 0, 5, 0], [0, 2, 1, 7]])
    pairs = confused_pairs(C, ["a", "b", "c", "d"])
    assert list(pairs["pair"]) == ["a/b", "b/d", "c/d"]
    assert list(pairs["count"]) == [4, 4, 1]
    assert pairs["share of errors"].iloc[0] == pytest.approx(4 / 9)
    assert len(confused_pairs(np.eye(3, dtype=int), [0, 1, 2])) == 0
    with pytest.raises(ValueError, match="one row per label"):
        confused_pairs(np.eye(3), [0, 1])


def test_small_cnn_fits_both_image_sizes():
    for shape in ((1, 8, 8), (1, 28, 28)):
        model = SmallCNN(shape, 10)
        x = torch.zeros(2, int(np.prod(shape)))
        assert model(x).shape == (2, 10) and model.encode(x).shape == (2, 64)
    with pytest.raises(ValueError, match=r"image_shape must have height and width >= 4"):
        SmallCNN((1, 3, 8), 10)


# --- MNIST files --------------------------------------------------------------------------


def _write_idx(path, array, magic):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_runs_on_mnist_files(tmp_path):
    """Tiny MNIST-format files: 28x28 images whose bright bar's position encodes the label."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 60)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    r = _run(dataset="mnist", mnist_root=tmp_path, epochs=2, ae_epochs=2)
    assert r.config["dataset"] == "mnist" and r.config["n_test"] == 60
    assert r.config["n_fit"] + r.config["n_val"] == 200
    assert len(r.tables["classifier training"]) == 2
    assert r.tables["confusion matrix"].to_numpy().sum() == 60
    assert r.figures["confusion"].axes[0].get_xlabel() == "predicted label"


# --- bad arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(epochs=0), ValueError, "epochs must be an int >= 1, got 0"),
        (dict(epochs=-3), ValueError, "epochs must be an int >= 1, got -3"),
        (dict(epochs=2.5), TypeError, "epochs must be an int"),
        (dict(seed=-1), ValueError, "seed must be an int >= 0, got -1"),
        (dict(dataset="cifar"), ValueError, "dataset must be one of .*'cifar'"),
        (dict(dataset="mnist"), ValueError, "needs mnist_root"),
        (dict(epochz=3), ValueError, "unknown setting 'epochz'; valid settings: epochs, ae_epochs"),
        (dict(val_share=1.0), ValueError, "val_share must be in"),
        (dict(mnist_root="/nowhere"), ValueError, "dataset='digits'"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        cnn_classifier(**kwargs)


def test_missing_mnist_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        cnn_classifier(dataset="mnist", mnist_root=tmp_path)
