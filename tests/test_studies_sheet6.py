"""The six sheet-6 studies in quick mode, and the helpers they share."""

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import aelab
from aelab.studies import REGISTRY
from aelab.studies import sheet6 as s6

IDS = ["sheet6-architectures", "sheet6-pca", "sheet6-decoder-curves"]
# figures where colour carries a value, so they need a colour bar
COLOURED = {("sheet6-architectures", "codes"), ("sheet6-architectures", "code_contours"),
            ("sheet6-decoder-curves", "curves")}


@pytest.fixture(scope="module")
def results():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: REGISTRY[name].run(quick=True, seed=0) for name in IDS}
    finally:
        torch.set_num_threads(threads)


def _plot_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _labelled_series(ax):
    handles, labels = ax.get_legend_handles_labels()
    return [lab for lab in labels if not lab.startswith("_")]


# --- what every study must deliver -----------------------------------------------------------


def test_all_six_are_registered_with_a_summary():
    for name in IDS:
        assert name in REGISTRY
        assert REGISTRY[name].summary
        assert getattr(aelab.studies, name.replace("-", "_")) is REGISTRY[name].run


@pytest.mark.parametrize("name", IDS)
def test_tables_are_non_empty_dataframes(results, name):
    result = results[name]
    assert result.name == name
    assert result.tables
    for table in result.tables.values():
        assert isinstance(table, pd.DataFrame)
        assert len(table) > 0 and len(table.columns) > 1


@pytest.mark.parametrize("name", IDS)
def test_figures_are_titled_labelled_and_have_legends(results, name):
    figures = results[name].figures
    assert figures
    for key, fig in figures.items():
        has_suptitle = fig._suptitle is not None and fig._suptitle.get_text()
        axes = _plot_axes(fig)
        assert axes, key
        for ax in axes:
            assert ax.get_title() or has_suptitle, (key, "title")
            assert ax.get_xlabel() and ax.get_ylabel(), (key, "axis labels")
            if len(_labelled_series(ax)) > 1:
                assert ax.get_legend() is not None, (key, "legend")
        if (name, key) in COLOURED:
            bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
            assert bars and all(bar.get_ylabel() for bar in bars), (key, "colour bar")


@pytest.mark.parametrize("name", IDS)
def test_findings_contain_numbers_and_metrics_are_plain(results, name):
    result = results[name]
    assert len(result.findings) >= 2
    for finding in result.findings:
        assert re.search(r"\d", finding), finding
    assert result.config["quick"] is True
    for key, value in result.metrics.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value), key


# --- study-specific properties ----------------------------------------------------------------


def test_architectures_label_epochs_and_steps_and_beat_pca_with_the_big_model(results):
    result = results["sheet6-architectures"]
    epochs = result.config["epochs"]
    steps = epochs * (result.config["n"] // result.config["batch_size"])
    by_epoch, by_step = _plot_axes(result.figures["loss"])
    assert by_epoch.get_xlabel() == "epoch" and by_step.get_xlabel() == "optimizer step"
    assert len(by_epoch.lines[0].get_xdata()) == epochs
    assert len(by_step.lines[0].get_xdata()) == steps
    table = result.tables["errors"].set_index("model")
    assert list(table.index[:3]) == ["small", "big", "PCA-like"]
    assert table.loc["big", "train MSE"] < 0.9 * table.loc["PCA, 1 component", "train MSE"]
    # the linear model cannot beat PCA on its own training data
    assert table.loc["PCA-like", "train MSE"] >= table.loc["PCA, 1 component", "train MSE"] * (1 - 1e-5)
    assert not table["collapsed to the mean"].any()


def test_architectures_rank_the_models_on_fresh_points_not_on_their_training_points(results):
    result = results["sheet6-architectures"]
    table = result.tables["errors"].set_index("model")
    models = table.iloc[:3]
    best = models["fresh-points MSE"].idxmin()
    headline = result.findings[0]
    assert f"The {best} model does best on fresh points" in headline
    assert f"{models.loc[best, 'fresh-points MSE / PCA MSE']:.2f} times PCA's error" in headline
    assert f"on its {result.config['n']} training points" in headline  # train error only beside it
    assert table["fresh-points MSE / PCA MSE"].to_numpy() == pytest.approx(
        table["fresh-points MSE"].to_numpy() / table.loc["PCA, 1 component", "fresh-points MSE"])


def test_pca_angle_is_small_and_errors_match(results):
    result = results["sheet6-pca"]
    table = result.tables["directions"]
    ae = table[table["method"] == "linear AE"]
    assert len(ae) == result.config["n_seeds"]
    assert ae["angle to PCA (degrees)"].max() < 2.0
    assert ((ae["MSE / PCA MSE"] >= 1 - 1e-5) & (ae["MSE / PCA MSE"] < 1.01)).all()
    assert np.allclose(ae["encoder . decoder"], 1.0, atol=0.02)
    eig = table[table["method"].str.contains("eigen")].iloc[0]
    assert eig["angle to PCA (degrees)"] < 1e-3
    assert result.metrics["mean_angle_degrees"] == pytest.approx(ae["angle to PCA (degrees)"].mean())


def test_decoder_curves_move_towards_the_data_and_the_linear_one_is_straight(results):
    table = results["sheet6-decoder-curves"].tables["curves"].set_index(["model", "state"])
    for arch in s6.ARCHITECTURES:
        before = table.loc[(arch, "before training"), "mean distance point-curve"]
        after = table.loc[(arch, "after training"), "mean distance point-curve"]
        assert after < before, arch
    assert (table.loc["PCA-like", s6.PIECES] == 1).all()
    assert table.loc[("big", "after training"), s6.PIECES] > 1


def test_decoder_curve_findings_give_no_unmeasured_reasons(results):
    findings = " ".join(results["sheet6-decoder-curves"].findings)
    assert "zigzag" not in findings and "where the data need it" not in findings
    table = results["sheet6-decoder-curves"].tables["curves"].set_index(["model", "state"])
    for arch in s6.ARCHITECTURES:
        length = table.loc[(arch, "after training"), "curve length"]
        assert f"({arch}, curve {length:.2f} long)" in findings


# --- shared helpers ---------------------------------------------------------------------------


def test_angle_degrees_ignores_sign_and_is_accurate_for_tiny_angles():
    assert s6.angle_degrees([1.0, 0.0], [1.0, 1.0]) == pytest.approx(45.0)
    assert s6.angle_degrees([1.0, 0.0], [-1.0, 0.0]) == 0.0
    assert s6.angle_degrees([0.0, 2.0], [3.0, 0.0]) == pytest.approx(90.0)
    tiny = 1e-7
    assert s6.angle_degrees([1.0, 0.0], [math.cos(tiny), math.sin(tiny)]) == pytest.approx(
        math.degrees(tiny), rel=1e-6)


def test_linear_pieces_counts_the_kinks_of_a_known_relu_decoder():
    model = aelab.Autoencoder.from_widths([3], 1, 2)
    first, last = model.decoder[0], model.decoder[2]
    with torch.no_grad():
        first.weight.copy_(torch.ones(3, 1))
        first.bias.copy_(torch.tensor([0.0, -1.0, -2.0]))  # kinks at z = 0, 1, 2
        last.weight.copy_(torch.tensor([[1.0, -2.0, 1.5], [0.5, 1.0, -3.0]]))
        last.bias.zero_()
    assert s6.linear_pieces(model, -1.0, 3.0) == 4
    assert s6.linear_pieces(model, 0.2, 0.8) == 1
    assert s6.linear_pieces(aelab.LinearAutoencoder(2, 1), -5.0, 5.0) == 1


def test_rank_correlation_and_distance_to_curve():
    a = np.array([0.1, 0.5, 0.2, 0.9])
    assert s6.rank_correlation(a, a ** 3) == pytest.approx(1.0)
    assert s6.rank_correlation(a, -a) == pytest.approx(-1.0)
    curve = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    X = torch.tensor([[1.0, 2.0], [2.0, -0.5]])
    assert s6.distance_to_curve(X, curve).tolist() == pytest.approx([2.0, 0.5])


def test_build_is_seeded_and_rejects_unknown_architectures():
    a, b = s6.build("small", 3), s6.build("small", 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert s6.n_parameters(s6.build("big", 0)) == 10603
    with pytest.raises(ValueError, match=r"architecture must be one of .*'huge'"):
        s6.build("huge", 0)
