"""ae-vs-pca and bottleneck (course preset digits-bottleneck): quick runs on small user files and
tiny MNIST-format files, findings recomputed from hand-made tables, and bad input."""

import gzip
import html
import json
import struct

import numpy as np
import pandas as pd
import pytest

from aelab import data
from aelab.cli import main
from aelab.experiments import Runs
from aelab.studies import REGISTRY, ae_vs_pca, bottleneck, digits_bottleneck
from aelab.studies import images as im

# tiny models and few epochs: these tests check the plumbing and the statistics, not digits
TINY = dict(epochs=3, seeds=5, batch_size=32, hidden_size=16)
BOTTLENECK_TINY = dict(TINY, epochs=15, bottlenecks=(2, 4), n_estimators=10, n_synthetic=20)


def _check_figure(key, fig):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, key
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for ax in axes:
        assert ax.get_title() or suptitle, f"{key}: an axis without a title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"{key}: axis labels missing"
        labels = [lab for lab in ax.get_legend_handles_labels()[1] if not lab.startswith("_")]
        if len(labels) > 1:
            assert ax.get_legend() is not None, f"{key}: several series but no legend"


def _check_result(result, name):
    assert result.name == name
    assert result.tables and all(len(t) > 0 for t in result.tables.values())
    for key, fig in result.figures.items():
        _check_figure(key, fig)
    assert result.findings and result.answer
    assert not any("{" in f for f in result.findings), "an unformatted placeholder"
    assert all(v is None or isinstance(v, (int, float)) for v in result.metrics.values())
    json.dumps(result.config)


def _labelled_images(n=150, side=6, seed=0):
    """[n, side, side] images whose bright row encodes one of three labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.uniform(0, 0.5, size=(n, side, side))
    for i, label in enumerate(y):
        X[i, 1 + 2 * label] = rng.uniform(0.5, 1.0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    rng = np.random.default_rng(1)
    y = np.arange(150) % 3
    X = rng.normal(size=(150, 6)) + y[:, None] * np.array([2.0, -1.0, 0.5, 0, 0, 0])
    path = tmp_path_factory.mktemp("csv") / "points.csv"
    np.savetxt(
        path, np.column_stack([X, y]), delimiter=",", header="a,b,c,d,e,f,label", comments=""
    )
    return data.load(path, label_column="label")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    X, y = _labelled_images()
    np.savez(root / "labelled.npz", X=X, y=y)
    np.save(root / "unlabelled.npy", X)
    return root


# --- runs on the user's data -----------------------------------------------------------------


def test_ae_vs_pca_runs_on_a_user_csv_and_skips_sizes_the_data_cannot_take(csv_data):
    result = ae_vs_pca(data=csv_data, bottlenecks=(1, 2, 3, 8), **TINY)
    _check_result(result, "ae-vs-pca")
    errors = result.tables["errors"]
    assert list(errors["bottleneck"]) == [1, 2, 3]  # 8 >= the 6 features: skipped
    assert (errors["seeds"] == 5).all()
    assert (np.diff(errors["PCA test MSE"]) < 0).all()
    assert set(errors["verdict"]) <= {
        "AE lower",
        "PCA lower",
        "indistinguishable",
        "not converged at these settings; run --full",
    }
    assert result.config["dataset"] == "user" and result.config["n_test"] == 30
    assert "reconstructions" not in result.figures  # no image_shape: no image figures
    assert len(result.figures["latent_views"].axes) == 3  # AE and PCA scatters + colour bar


def test_ae_vs_pca_on_unlabelled_images_draws_decoded_grids(image_files):
    result = ae_vs_pca(data=data.load(image_files / "unlabelled.npy"), bottlenecks=(2, 4), **TINY)
    _check_result(result, "ae-vs-pca")
    assert {"error_vs_bottleneck", "latent_views", "reconstructions"} <= set(result.figures)
    views = result.figures["latent_views"]
    assert len(views.axes) == 4  # two scatters (no labels: no colour bar), two decoded grids
    assert "knn_accuracy" not in result.tables["PCA"]


def test_bottleneck_runs_on_labelled_user_images(image_files):
    result = bottleneck(data=data.load(image_files / "labelled.npz"), **BOTTLENECK_TINY)
    _check_result(result, "bottleneck")
    forest = result.tables["errors and forest"]
    assert list(forest["bottleneck"]) == [2, 4] and (forest["seeds"] == 5).all()
    assert (
        (forest["ci_low"] <= forest["forest accuracy on reconstructions"])
        & (forest["forest accuracy on reconstructions"] <= forest["ci_high"])
    ).all()
    pitfalls = result.tables["course pitfalls"]
    train, test = pitfalls.iloc[0], pitfalls.iloc[1]
    assert train["images"] == 90 and test["images"] == 30
    assert train["accuracy"] >= test["accuracy"]
    assert test["accuracy"] == pytest.approx(result.metrics["forest_accuracy_test"])
    assert {"reconstructions", "synthetic", "codes_2d", "confusion"} <= set(result.figures)


def test_image_figures_only_with_an_image_shape(csv_data):
    result = bottleneck(data=csv_data, **BOTTLENECK_TINY)
    assert not {"reconstructions", "synthetic"} & set(result.figures)
    assert "errors_and_accuracy" in result.figures


# --- MNIST files ------------------------------------------------------------------------------


def _write_idx(path, array, magic):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """Tiny MNIST-format files: 28x28 images whose bright bar's position encodes the label."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 100), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return root


@pytest.mark.parametrize(
    "func, extra", [(ae_vs_pca, {"bottlenecks": (2, 4)}), (digits_bottleneck, BOTTLENECK_TINY)]
)
def test_studies_run_on_mnist_files(mnist_dir, func, extra):
    result = func(dataset="mnist", mnist_root=mnist_dir, **{**TINY, **extra})
    assert result.config["dataset"] == "mnist"
    assert (result.config["n_train"], result.config["n_val"], result.config["n_test"]) == (
        80,
        20,
        40,
    )
    for key, fig in result.figures.items():
        _check_figure(key, fig)


def test_cli_runs_ae_vs_pca_on_mnist(mnist_dir, tmp_path, capsys):
    out = tmp_path / "out"
    sets = [
        x for s in ("epochs=2", "seeds=5", "bottlenecks=2,3", "hidden_size=8") for x in ("--set", s)
    ]
    assert main(["run", "ae-vs-pca", "--mnist-root", str(mnist_dir), "--out", str(out), *sets]) == 0
    assert "Report:" in capsys.readouterr().out
    text = html.unescape((out / "report.html").read_text())
    assert '"dataset": "mnist"' in text and '"n_train": 80' in text
    assert "ae-vs-pca" in json.loads((out / "metrics.json").read_text())["studies"]


# --- findings from hand-made tables -----------------------------------------------------------

SIZES = [2, 4, 8, 16]
NOISE = np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) * 1e-3  # per seed, relative


def _pca_runs(val, test, fall=0.0):
    rows = [
        {
            "bottleneck": b,
            "seed": seed,
            "val_mse": v * (1 + e),
            "test_mse": t * (1 + e),
            "late_fall": fall,
        }
        for b, v, t in zip(SIZES, val, test)
        for seed, e in enumerate(NOISE)
    ]
    return Runs(pd.DataFrame(rows), [None] * len(rows), [None] * len(rows), ["bottleneck"])


def _pca_table(val, test):
    return pd.DataFrame(
        {
            "bottleneck": SIZES,
            "val_mse": val,
            "test_mse": test,
            "train_mse": test,
            "explained_variance": [0.3, 0.5, 0.7, 0.9],
            "mean_val_mse": 0.1,
            "mean_test_mse": 0.1,
        }
    )


def test_elbow_follows_the_stated_rule_not_the_plotted_range():
    s = im.AeVsPcaSettings(bottlenecks=tuple(SIZES), min_gain=0.02)
    pca_val = [0.06, 0.04, 0.025, 0.02]
    # gains per dimension (share of 0.1): 0.1, 0.025, 0.00125 -> the AE's elbow is 8
    runs = _pca_runs([0.05, 0.03, 0.02, 0.019], [0.05, 0.03, 0.02, 0.019])
    elbows = im.ae_vs_pca_elbows(runs, _pca_table(pca_val, pca_val), s).set_index("method")
    assert elbows.loc["AE", "elbow"] == 8 and elbows.loc["AE", "seeds with this elbow"] == 5
    # PCA: 0.1, 0.0375, 0.00625 -> 8
    assert elbows.loc["PCA", "elbow"] == 8
    # a flatter step from 4 to 8 moves the AE's elbow to 4
    runs = _pca_runs([0.05, 0.03, 0.025, 0.024], [0.05, 0.03, 0.025, 0.024])
    assert im.ae_vs_pca_elbows(runs, _pca_table(pca_val, pca_val), s).iloc[0]["elbow"] == 4
    # that elbow rests on sizes 2, 4 and 8: size 16 still improving leaves it standing
    for still_improving, stands in ((16, True), (8, False)):
        runs.table["late_fall"] = np.where(runs.table["bottleneck"] == still_improving, 0.2, 0.0)
        ae = im.ae_vs_pca_elbows(runs, _pca_table(pca_val, pca_val), s).iloc[0]
        assert ae["converged"] == stands
        findings, _ = im.ae_vs_pca_findings(runs, _pca_table(pca_val, pca_val), s)
        assert (im.NOT_CONVERGED in findings[1]) != stands  # the elbow sentence
    # more sizes beyond the elbow do not move it (kneedle's chord would)
    assert im.elbow(SIZES, [0.05, 0.03, 0.02, 0.019], 0.1, 0.02) == 8
    assert im.elbow(SIZES + [32, 64], [0.05, 0.03, 0.02, 0.019, 0.005, 0.001], 0.1, 0.02) == 8
    assert im.elbow(SIZES, [0.05, 0.04, 0.03, 0.01], 0.1, 0.02) is None


def test_ae_vs_pca_verdicts_follow_the_test_and_convergence():
    s = im.AeVsPcaSettings(bottlenecks=tuple(SIZES))
    pca = [0.05, 0.04, 0.03, 0.02]
    table = _pca_table(pca, pca)

    def verdicts(factor, fall=0.0):
        return list(
            im.ae_vs_pca_table(_pca_runs(pca, [p * factor for p in pca], fall), table, s)["verdict"]
        )

    assert verdicts(0.9) == ["AE lower"] * 4
    assert verdicts(1.1) == ["PCA lower"] * 4
    # the AE below PCA stands while it is still improving; any other verdict is withheld
    assert verdicts(0.9, fall=0.2) == ["AE lower"] * 4
    assert verdicts(1.1, fall=0.2) == [im.NOT_CONVERGED] * 4
    # indistinguishable: the seeds straddle PCA's value
    runs = _pca_runs(pca, pca)
    runs.table["test_mse"] = [p * (1 + e * 10) for p in pca for e in NOISE]
    assert set(im.ae_vs_pca_table(runs, table, s)["verdict"]) == {"indistinguishable"}
    runs.table["late_fall"] = 0.2
    assert set(im.ae_vs_pca_table(runs, table, s)["verdict"]) == {im.NOT_CONVERGED}
    findings, answer = im.ae_vs_pca_findings(_pca_runs(pca, [p * 0.9 for p in pca]), table, s)
    assert "0.0450" in answer and "0.0500" in answer  # the AE's and PCA's test MSE at 2


def _bottleneck_runs(accuracy, fall=0.0):
    rows = [
        {
            "bottleneck": b,
            "seed": seed,
            "val_mse": 0.02,
            "test_mse": 0.02 * (1 + e),
            "forest_accuracy": a + e,
            "forest_agreement": a + e,
            "synthetic_nearest": a + e,
            "synthetic_confidence": 0.7 + e,
            "knn_accuracy": 0.8 + e,
            "late_fall": fall,
        }
        for b, a in zip((2, 8), accuracy)
        for seed, e in enumerate(NOISE * 10)
    ]
    return Runs(pd.DataFrame(rows), [None] * len(rows), [None] * len(rows), ["bottleneck"])


# 1000 real test images, 950 labelled correctly (and as their nearest training image)
CORRECT = np.r_[np.ones(950), np.zeros(50)]
REFERENCE = {
    "n_test": 1000,
    "correct_test": 950,
    "real_accuracy": 0.95,
    "n_train": 3000,
    "correct_train": 3000,
    "real_correct": CORRECT,
    "real_nearest": CORRECT,
    "real_confidence": np.full(1000, 0.7) + np.linspace(-0.1, 0.1, 1000),
    "chance": 0.1,
    "mean_test_mse": 0.07,
}


def test_bottleneck_verdicts_follow_the_test_and_convergence():
    s = im.BottleneckSettings(bottlenecks=(2, 8))
    tables = im.bottleneck_tables(_bottleneck_runs((0.8, 0.95)), REFERENCE, s)
    assert list(tables["errors and forest"]["verdict"]) == [
        "lower on reconstructions",
        "indistinguishable",
    ]
    assert list(tables["synthetic"]["verdict"]) == [
        "lower than on real images",
        "indistinguishable",
    ]
    unconverged = im.bottleneck_tables(_bottleneck_runs((0.8, 0.95), fall=0.2), REFERENCE, s)
    assert unconverged["errors and forest"]["verdict"].iloc[0].startswith("not converged")
    higher = im.bottleneck_tables(_bottleneck_runs((0.99, 0.99)), REFERENCE, s)
    assert set(higher["errors and forest"]["verdict"]) == {"higher on reconstructions"}
    # the real images' own sampling error counts: with 40 of them, 0.8 is not told from 0.95
    few = {**REFERENCE, "real_correct": np.r_[np.ones(38), np.zeros(2)]}
    assert (
        im.bottleneck_tables(_bottleneck_runs((0.8, 0.95)), few, s)["errors and forest"][
            "verdict"
        ].iloc[0]
        == "lower on reconstructions"
    )
    few = {**REFERENCE, "real_correct": np.r_[np.ones(8), np.zeros(2)]}
    assert (
        im.bottleneck_tables(_bottleneck_runs((0.85, 0.95)), few, s)["errors and forest"][
            "verdict"
        ].iloc[0]
        == "indistinguishable"
    )
    # the course pitfall: 3000/3000 on training images vs 950/1000 held out
    pitfalls = tables["course pitfalls"]
    assert list(pitfalls["accuracy"]) == [1.0, 0.95]
    assert pitfalls["Fisher exact p (train vs test)"].iloc[0] < 0.05
    same = im.bottleneck_tables(
        _bottleneck_runs((0.8, 0.95)), {**REFERENCE, "correct_train": 2860}, s
    )["course pitfalls"]
    assert same["Fisher exact p (train vs test)"].iloc[0] > 0.05
    findings, answer = im.bottleneck_findings(_bottleneck_runs((0.8, 0.95)), REFERENCE, s)
    assert "80.0%" in answer and "95.0%" in answer


def test_versus_reference_is_scipys_one_sample_or_welch_t_test():
    from scipy import stats

    runs = _bottleneck_runs((0.8, 0.9))
    got = im.versus_reference(runs, "forest_accuracy", 0.85)
    sample = np.r_[np.ones(30), np.zeros(10)]
    welch = im.versus_reference(runs, "forest_accuracy", sample).set_index("bottleneck")
    for b, row in got.set_index("bottleneck").iterrows():
        values = runs.where(bottleneck=b).table["forest_accuracy"]
        assert row["p"] == pytest.approx(stats.ttest_1samp(values, 0.85).pvalue)
        assert row["difference"] == pytest.approx(values.mean() - 0.85)
        assert welch.loc[b, "p"] == pytest.approx(
            stats.ttest_ind(values, sample, equal_var=False).pvalue
        )
    assert (got["p_holm"] >= got["p"]).all()


# --- registry, presets and bad input -----------------------------------------------------------


def test_registry_generic_ids_and_the_course_preset():
    assert REGISTRY["ae-vs-pca"].data == "any" and REGISTRY["bottleneck"].data == "any"
    assert REGISTRY["digits-bottleneck"].preset_of == "bottleneck"
    assert REGISTRY["bottleneck"].settings is im.BottleneckSettings
    with pytest.raises(ValueError, match="pins the course's data"):
        digits_bottleneck(data=data.digits())


def test_bad_input_is_refused_clearly(image_files, csv_data, tmp_path):
    with pytest.raises(ValueError, match="needs labels.*data.y is None"):
        bottleneck(data=data.load(image_files / "unlabelled.npy"), **BOTTLENECK_TINY)
    with pytest.raises(ValueError, match="unknown setting 'hiden_size'; valid settings: bottl"):
        ae_vs_pca(hiden_size=3)
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        bottleneck(epochs=0)
    with pytest.raises(ValueError, match="at least two different sizes"):
        ae_vs_pca(bottlenecks=(4,))
    with pytest.raises(ValueError, match="sizes \\[8\\] exceed the data's 6 features"):
        bottleneck(data=csv_data, **{**BOTTLENECK_TINY, "bottlenecks": (2, 8)})
    with pytest.raises(ValueError, match="needs mnist_root.*--mnist-root"):
        digits_bottleneck(dataset="mnist")
    with pytest.raises(ValueError, match="dataset='digits'"):
        ae_vs_pca(mnist_root=tmp_path)
    with pytest.raises(ValueError, match="give one source of data"):
        ae_vs_pca(data=csv_data, dataset="mnist", mnist_root=tmp_path)
    with pytest.raises(TypeError, match="must be an aelab.data.Dataset"):
        ae_vs_pca(data=np.zeros((10, 3)))
