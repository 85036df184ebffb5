"""The sheet-6 studies in quick mode: sheet6-architectures, sheet6-pca and sheet6-decoder-curves
(rebuilt on aelab.sweep / Runs) and the helpers they share. The training studies (memorize,
frozen decoder, GD vs SGD) are tested in test_studies_sheet6_training.py."""

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import aelab
from aelab.experiments import Runs
from aelab.studies import REGISTRY
from aelab.studies import sheet6 as s6

MINE = {
    "sheet6-architectures": s6.CourseSettings,
    "sheet6-pca": s6.PcaSettings,
    "sheet6-decoder-curves": s6.DecoderCurveSettings,
}
TRAINING = ["sheet6-memorize", "sheet6-frozen-decoder", "sheet6-gd-vs-sgd"]
IDS = [*MINE, *TRAINING]
# figures where colour carries a value, so they need a colour bar
COLOURED = {
    ("sheet6-architectures", "codes"),
    ("sheet6-architectures", "code_contours"),
    ("sheet6-decoder-curves", "curves"),
    ("sheet6-frozen-decoder", "codes"),
}
# small but with 5 seeds, so that the studies compare as they do at quick settings
SMALL = dict(n=40, epochs=30, seeds=5, n_val=100, n_test=200)


@pytest.fixture(scope="module")
def mine():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "sheet6-architectures": s6.sheet6_architectures(**SMALL),
            "sheet6-pca": s6.sheet6_pca(),  # the linear model is cheap: quick settings
            "sheet6-decoder-curves": s6.sheet6_decoder_curves(**SMALL),
        }
    finally:
        torch.set_num_threads(threads)


def _plot_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _labelled_series(ax):
    handles, labels = ax.get_legend_handles_labels()
    return [lab for lab in labels if not lab.startswith("_")]


def _check_figures(name, figures):
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


# --- registration, settings, bad input ------------------------------------------------------


def test_all_six_are_registered_with_a_summary():
    for name in IDS:
        assert name in REGISTRY
        assert REGISTRY[name].summary
        assert getattr(aelab.studies, name.replace("-", "_")) is REGISTRY[name].run


@pytest.mark.parametrize("name", MINE)
def test_course_bound_studies_have_settings_and_refuse_user_data(name):
    study = REGISTRY[name]
    assert study.settings is MINE[name] and study.data is None
    with pytest.raises(ValueError, match="tied to its own data"):
        study.run(data=aelab.data.rectangle(10))


def test_quick_compares_over_at_least_5_seeds_and_full_follows_the_sheet():
    for cls in MINE.values():
        quick, full = cls.quick(), cls.full()
        assert quick.seeds >= 5 and full.seeds >= quick.seeds
        assert (full.epochs, full.batch_size, full.lr, full.n) == (1000, 8, 1e-3, 100)


@pytest.mark.parametrize("name", MINE)
def test_bad_settings_are_refused(name):
    run = REGISTRY[name].run
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        run(epochs=0)
    with pytest.raises(ValueError, match="seeds must be an int >= 2, got 1"):
        run(seeds=1)
    with pytest.raises(ValueError, match=r"unknown setting 'epoch'; valid settings: n, epochs"):
        run(epoch=5)
    with pytest.raises(ValueError, match="batch_size must be <= n"):
        run(n=4, batch_size=8)
    with pytest.raises(ValueError, match="tail must be a share"):
        run(tail=0.9)


def test_decoder_curve_interval_and_pca_tolerances_are_checked():
    for bad in [(2.0, -2.0), (0.0, float("nan")), (1.0,)]:
        with pytest.raises(ValueError, match="interval must be"):
            s6.DecoderCurveSettings(interval=bad)
    with pytest.raises(ValueError, match="angle_tolerance must be a finite number > 0, got 0"):
        s6.PcaSettings(angle_tolerance=0)


# --- what each of the three delivers ------------------------------------------------------------


@pytest.mark.parametrize("name", MINE)
def test_tables_figures_findings_and_metrics(mine, name):
    result = mine[name]
    assert result.name == name and result.answer and re.search(r"\d", result.answer)
    for table in result.tables.values():
        assert isinstance(table, pd.DataFrame) and len(table) > 0 and len(table.columns) > 1
    _check_figures(name, result.figures)
    assert len(result.findings) >= 3
    for finding in result.findings:
        assert re.search(r"\d", finding), finding
    assert result.config["quick"] is True
    for key, value in result.metrics.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value), key


def test_architectures_rank_on_fresh_points_with_holm_tests_and_train_error_beside(mine):
    result = mine["sheet6-architectures"]
    trials, ranking, tests = (result.tables[k] for k in ("trials", "ranking", "tests"))
    assert len(trials) == 3 * SMALL["seeds"]
    assert list(ranking["mean"]) == sorted(ranking["mean"])  # ranked by fresh-points MSE
    assert ranking["n"].tolist() == [SMALL["seeds"]] * 3
    for _, row in ranking.iterrows():
        part = trials[trials["architecture"] == row["architecture"]]
        assert row["mean"] == pytest.approx(part["test_mse"].mean())
        assert row["mean train"] == pytest.approx(part["train_mse"].mean())
    assert len(tests) == 3 and (tests["test"] == "paired t").all()
    assert (tests["p_holm"] >= tests["p"] - 1e-15).all()
    # the linear model cannot beat PCA on its own training points
    linear = trials[trials["architecture"] == "PCA-like"]
    assert (linear["train_mse"] >= linear["pca_mse_train"] * (1 - 1e-5)).all()


def test_architectures_show_per_step_and_per_epoch_curves_of_the_same_history(mine):
    result = mine["sheet6-architectures"]
    epochs, per_epoch = SMALL["epochs"], SMALL["n"] // 8
    by_epoch, by_step = _plot_axes(result.figures["loss"])
    assert by_epoch.get_xlabel() == "epoch" and by_step.get_xlabel() == "optimizer step"
    train_line = by_epoch.lines[0]  # small: train (epoch mean)
    step_line, mean_line = by_step.lines[0], by_step.lines[1]
    assert len(train_line.get_xdata()) == epochs
    assert len(step_line.get_xdata()) == epochs * per_epoch
    assert np.allclose(mean_line.get_ydata(), train_line.get_ydata())  # one History, drawn twice
    # each epoch's mean is the mean of its steps
    steps = np.asarray(step_line.get_ydata()).reshape(epochs, per_epoch)
    assert np.allclose(steps.mean(1), train_line.get_ydata(), rtol=1e-4)


def test_architectures_pitfall_table_is_computed_from_the_histories(mine):
    result = mine["sheet6-architectures"]
    pitfalls = result.tables["pitfalls"].set_index("architecture")
    per_epoch = SMALL["n"] // 8
    assert (pitfalls["steps per epoch"] == per_epoch).all()
    assert (pitfalls["per-step points"] == SMALL["epochs"] * per_epoch).all()
    trials = result.tables["trials"]
    small = trials[trials["architecture"] == "small"]
    assert pitfalls.loc["small", "spread ratio"] == pytest.approx(
        small["step spread / epoch spread"].mean()
    )
    assert (pitfalls["spread ratio"] > 1).all()  # batches scatter more than epoch means
    assert (pitfalls["seeds"] == SMALL["seeds"]).all()


def test_pca_linear_ae_spans_the_eigenvector_and_matches_its_error(mine):
    result = mine["sheet6-pca"]
    trials = result.tables["trials"]
    assert len(trials) == s6.PcaSettings.quick().seeds
    assert trials["decoder_angle"].max() < 1.0 and trials["encoder_angle"].max() < 1.0
    assert (trials["mse_over_pca"] >= 1 - 1e-5).all() and (trials["mse_over_pca"] < 1.01).all()
    methods = result.tables["pca"].set_index("method")
    assert methods["angle to eigenvector (degrees)"].max() < 1e-3
    assert result.metrics["mean_angle_degrees"] == pytest.approx(trials["decoder_angle"].mean())
    assert result.metrics["angle_ci_high"] < 1.0 and result.metrics["mse_ratio_ci_high"] < 1.01


def test_decoder_curves_decode_one_common_interval_covering_both_code_ranges(mine):
    result = mine["sheet6-decoder-curves"]
    curves = result.tables["curves"]
    assert len(curves) == 2 * 3 * SMALL["seeds"]
    both = curves.groupby(["architecture", "seed"])
    assert (both["code_low"].nunique() == 1).all() and (both["code_high"].nunique() == 1).all()
    assert curves["pieces per unit"].to_numpy() == pytest.approx(
        (curves["pieces"] / (curves["code_high"] - curves["code_low"])).to_numpy()
    )
    assert (curves.loc[curves["architecture"] == "PCA-like", "pieces"] == 1).all()
    # the interval holds the training codes of the initial model (the seed's weights)
    X = aelab.data.rectangle(SMALL["n"], seed=0).X
    for (arch, seed), part in both:
        z = s6.codes(s6.build(arch, seed), X)
        low, high = part["code_low"].iloc[0], part["code_high"].iloc[0]
        assert low <= z.min() + 1e-6 and z.max() - 1e-6 <= high
    tests = result.tables["tests"]
    assert set(tests["architecture_a"]) | set(tests["architecture_b"]) == {"small", "big"}


def test_decoder_curves_take_the_sheets_fixed_interval_also_from_the_command_line():
    from aelab.studies._base import parse_setting

    assert parse_setting(s6.DecoderCurveSettings, "interval=-2,2") == ("interval", (-2.0, 2.0))
    result = s6.sheet6_decoder_curves(
        n=24, epochs=3, seeds=2, n_val=20, n_test=20, interval=(-2.0, 2.0)
    )
    curves = result.tables["curves"]
    assert (curves["code_low"] == -2.0).all() and (curves["code_high"] == 2.0).all()
    assert result.config["interval"] == (-2.0, 2.0)


def test_before_after_of_an_untrained_model_is_the_same_curve():
    model = s6.build("big", 3)
    measured = s6.before_after(model, model, aelab.data.rectangle(30).X)
    assert measured["pieces_before"] == measured["pieces_after"] > 1
    assert measured["distance_before"] == measured["distance_after"]


# --- findings follow the numbers (hand-made tables) ---------------------------------------------


def _architecture_runs(means: dict, spread: float, fall: float = 0.0) -> Runs:
    """Five seeds per architecture around ``means``, the same seed noise for each."""
    noise = np.array([-2, -1, 0, 1, 2]) * spread
    wobble = np.array([0.3, -0.1, 0.2, -0.4, 0.0]) * spread
    rows = []
    for i, (arch, mean) in enumerate(means.items()):
        for seed in range(5):
            test = mean + noise[seed] + (wobble[seed] if i % 2 else -wobble[seed])
            rows.append(
                {
                    "architecture": arch,
                    "seed": seed,
                    "train_mse": 0.5 * test,
                    "val_mse": test,
                    "test_mse": test,
                    "mean_mse": 1.0,
                    "pca_mse": 0.17,
                    "pca_mse_train": 0.15,
                    "fresh / train MSE": 2.0,
                    "collapsed": False,
                    "validation fall": fall,
                }
            )
    return Runs(pd.DataFrame(rows), [None] * len(rows), [None] * len(rows), ["architecture"])


def test_architecture_verdicts_flip_when_the_numbers_change():
    s = s6.CourseSettings()
    apart = _architecture_runs({"small": 0.16, "big": 0.12, "PCA-like": 0.18}, 0.002)
    close = _architecture_runs({"small": 0.16, "big": 0.1601, "PCA-like": 0.18}, 0.002)
    apart_tests, close_tests = s6._ranking(apart)[1], s6._ranking(close)[1]

    def pair(t):
        return t[
            t["architecture_a"].isin(["small", "big"]) & t["architecture_b"].isin(["small", "big"])
        ].iloc[0]

    assert pair(apart_tests)["significant"] and not pair(close_tests)["significant"]
    assert s6._ranking(apart)[0]["architecture"].tolist() == ["big", "small", "PCA-like"]
    answers = [s6.architectures_findings(r, s)[1] for r in (apart, close)]
    assert answers[0] != answers[1]
    # still falling: no ranking is drawn
    falling = _architecture_runs({"small": 0.16, "big": 0.12, "PCA-like": 0.18}, 0.002, fall=0.05)
    assert s6.convergence(apart, s, True, by="architecture")[0]
    assert not s6.convergence(falling, s, True, by="architecture")[0]
    assert "<" not in s6.architectures_findings(falling, s)[1]


def _curve_runs(after_small: float, after_big: float) -> Runs:
    rows = []
    jitter = [0.0, 1.0, -1.0, 2.0, -2.0]
    for arch, before, after in (
        ("small", 24, after_small),
        ("big", 110, after_big),
        ("PCA-like", 1, 1),
    ):
        for seed in range(5):
            rows.append(
                {
                    "architecture": arch,
                    "seed": seed,
                    "code_low": -4.0,
                    "code_high": 4.0,
                    "pieces_before": before + (jitter[seed] if arch != "PCA-like" else 0),
                    "pieces_after": after + (jitter[seed] / 2 if arch != "PCA-like" else 0),
                    "distance_before": 1.0,
                    "distance_after": 0.3,
                    "validation fall": 0.0,
                }
            )
    return Runs(pd.DataFrame(rows), [None] * len(rows), [None] * len(rows), ["architecture"])


def test_decoder_curve_verdicts_flip_when_the_numbers_change():
    s = s6.DecoderCurveSettings()
    changed = s6.curves_findings(_curve_runs(60, 300), s)[2]
    same = s6.curves_findings(_curve_runs(24.3, 110.2), s)[2]
    within = lambda t: t[t["architecture_a"] == t["architecture_b"]]  # noqa: E731
    assert within(changed)["significant"].all() and not within(same)["significant"].any()
    assert len(within(changed)) == 2  # the affine PCA-like decoder is not tested


def test_pca_verdicts_flip_when_the_numbers_change():
    s = s6.PcaSettings()

    def runs(angle, ratio):
        table = pd.DataFrame(
            {
                "seed": range(5),
                "decoder_angle": angle + np.arange(5) * 0.01,
                "mse_over_pca": ratio + np.arange(5) * 1e-5,
                "validation fall": 0.0,
            }
        )
        return Runs(table, [None] * 5, [None] * 5, [])

    assert s6.pca_verdicts(runs(0.1, 1.0), s) == {
        "converged": True,
        "same_subspace": True,
        "same_error": True,
    }
    assert not s6.pca_verdicts(runs(5.0, 1.0), s)["same_subspace"]
    assert not s6.pca_verdicts(runs(0.1, 1.05), s)["same_error"]


# --- shared helpers ---------------------------------------------------------------------------


def test_principal_angle_ignores_sign_and_is_accurate_for_tiny_angles():
    assert s6.principal_angle([1.0, 0.0], [1.0, 1.0]) == pytest.approx(45.0)
    assert s6.principal_angle([1.0, 0.0], [-1.0, 0.0]) == pytest.approx(0.0, abs=1e-12)
    assert s6.principal_angle([0.0, 2.0], [3.0, 0.0]) == pytest.approx(90.0)
    tiny = 1e-7
    assert s6.principal_angle([1.0, 0.0], [math.cos(tiny), math.sin(tiny)]) == pytest.approx(
        math.degrees(tiny), rel=1e-6
    )


def test_eigen_pca_matches_sklearn():
    from sklearn.decomposition import PCA as SkPCA

    X = aelab.data.rectangle(200, seed=4).X
    u, mse = s6.eigen_pca(X)
    sk = SkPCA(1).fit(X.double().numpy())
    assert s6.principal_angle(u, sk.components_[0]) < 1e-6
    recon = sk.inverse_transform(sk.transform(X.double().numpy()))
    assert mse == pytest.approx(float(((recon - X.double().numpy()) ** 2).mean()), rel=1e-9)


def test_validation_fall_compares_the_last_window_with_the_one_before():
    h = aelab.train.History(test_loss=[4.0] * 8 + [1.1, 1.1, 1.0, 1.0])
    assert s6.validation_fall(h, 1 / 6) == pytest.approx(0.1)
    assert math.isnan(s6.validation_fall(aelab.train.History(test_loss=[1.0]), 0.1))


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


def test_distance_to_curve():
    curve = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    X = torch.tensor([[1.0, 2.0], [2.0, -0.5]])
    assert s6.distance_to_curve(X, curve).tolist() == pytest.approx([2.0, 0.5])


def test_build_is_seeded_and_rejects_unknown_architectures():
    a, b = s6.build("small", 3), s6.build("small", 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert s6.n_parameters(s6.build("big", 0)) == 10603
    with pytest.raises(ValueError, match=r"architecture must be one of .*'huge'"):
        s6.build("huge", 0)
