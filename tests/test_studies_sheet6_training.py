"""sheet6-memorize, sheet6-frozen-decoder and sheet6-gd-vs-sgd: small runs, and verdicts that
follow the numbers when hand-made tables change them."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import aelab
from aelab.experiments import Runs
from aelab.studies import REGISTRY
from aelab.studies import sheet6_training as st

IDS = ["sheet6-memorize", "sheet6-frozen-decoder", "sheet6-gd-vs-sgd"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results():
    return {
        "sheet6-memorize": st.sheet6_memorize(quick=True),  # the quick settings themselves
        "sheet6-frozen-decoder": st.sheet6_frozen_decoder(quick=True, epochs=20, seeds=3),
        "sheet6-gd-vs-sgd": st.sheet6_gd_vs_sgd(quick=True, epochs=8, seeds=3),
    }


def _runs(rows, grid) -> Runs:
    table = pd.DataFrame(rows)
    return Runs(table, [None] * len(table), [None] * len(table), grid)


# --- what every study delivers -----------------------------------------------------------------


def test_registered_as_course_studies_with_settings_and_old_names():
    for name in IDS:
        entry = REGISTRY[name]
        assert entry.settings is not None and entry.data is None and entry.summary
        assert getattr(aelab.studies, name.replace("-", "_")) is entry.run


@pytest.mark.parametrize("name", IDS)
def test_tables_figures_metrics_and_answer(results, name):
    result = results[name]
    assert result.name == name and result.answer and len(result.findings) >= 3
    for table in result.tables.values():
        assert isinstance(table, pd.DataFrame) and len(table) > 0
    for key, value in result.metrics.items():
        assert isinstance(value, float) and math.isfinite(value), key
    for key, fig in result.figures.items():
        suptitle = fig._suptitle is not None and fig._suptitle.get_text()
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                assert ax.get_ylabel(), (key, "colour bar label")
                continue
            assert ax.get_title() or suptitle, key
            assert ax.get_xlabel() and ax.get_ylabel(), key
            labels = [lab for lab in ax.get_legend_handles_labels()[1] if not lab.startswith("_")]
            assert len(labels) <= 1 or ax.get_legend() is not None, key


@pytest.mark.parametrize("name", IDS)
def test_refuses_user_data_and_bad_settings(name):
    run = REGISTRY[name].run
    with pytest.raises(ValueError, match="takes no data="):
        run(data=aelab.data.rectangle(10))
    with pytest.raises(ValueError, match=r"unknown setting 'wdth'; valid settings: .*seeds"):
        run(wdth=3)
    with pytest.raises(ValueError, match="seeds must be an int >= 2, got 1"):
        run(seeds=1)
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        run(epochs=0)


def test_settings_refuse_values_that_mean_nothing():
    with pytest.raises(ValueError, match=r"n_points must hold ints >= 2, got 1"):
        st.MemorizeSettings(n_points=(1, 4))
    with pytest.raises(ValueError, match="widths must list at least one value"):
        st.MemorizeSettings(widths=())
    with pytest.raises(ValueError, match="gd_budget"):
        st.GdVsSgdSettings(gd_budget="seconds")
    with pytest.raises(ValueError, match="batch_size=100 must be below n=100"):
        st.GdVsSgdSettings(batch_size=100)
    assert st.MemorizeSettings.full().seeds >= 5 and st.GdVsSgdSettings.full().epochs == 1000


# --- sheet6-memorize ---------------------------------------------------------------------------


def test_memorize_counts_k_of_n_seeds_and_builds_the_network_by_hand(results):
    result = results["sheet6-memorize"]
    s = st.MemorizeSettings.quick()
    runs, cells = result.tables["runs"], result.tables["cells"]
    assert len(runs) == len(s.n_points) * len(s.widths) * s.seeds
    for _, cell in cells.iterrows():
        these = runs[(runs["n_points"] == cell["n_points"]) & (runs["width"] == cell["width"])]
        assert cell["perfect"] == (these["train_mse"] < s.threshold).sum()
        assert cell["seeds"] == s.seeds
        assert cell["rate ci_low"] <= cell["perfect"] / s.seeds <= cell["rate ci_high"]
    construction = result.tables["construction"].set_index("n_points")
    assert construction["construction width"].tolist() == [max(2, n - 1) for n in s.n_points]
    assert (construction["construction MSE float32"] < 1e-6).all()
    assert (construction["construction MSE float64"] < 1e-20).all()
    # the quick run's conclusion: 2-64-1-64-2 holds 64 points, training does not find them
    at_64 = cells.set_index(["n_points", "width"]).loc[(64, 64)]
    assert at_64["perfect"] == 0 and at_64["verdict"] == "optimisation"
    assert cells.set_index(["n_points", "width"]).loc[(4, 64), "verdict"] == "memorised"


def test_memorize_verdict_follows_the_numbers():
    s = st.MemorizeSettings(n_points=(64,), widths=(8, 40, 64))
    construction = pd.DataFrame(
        [
            {
                "n_points": 64,
                "construction width": 63,
                "capacity bound": 31,
                "construction MSE float32": 2e-10,
                "construction MSE float64": 1e-27,
            }
        ]
    ).set_index("n_points")

    def verdicts(mse_at_64, mse_at_40=(0.05,) * 5):
        mse = {8: [0.1] * 5, 40: mse_at_40, 64: mse_at_64}
        rows = [
            {"n_points": 64, "width": w, "seed": k, "train_mse": m, "perfect": m < s.threshold}
            for w in mse
            for k, m in enumerate(mse[w])
        ]
        cells = st.memorize_cells(_runs(rows, ["n_points", "width"]), construction, s)
        return cells.set_index("width")["verdict"].to_dict()

    failing = verdicts([0.04] * 5)
    assert failing == {8: "capacity", 40: "undecided", 64: "optimisation"}
    assert verdicts([1e-9] * 5)[64] == "memorised"
    assert verdicts([1e-9, 1e-9, 0.04, 0.04, 0.04])[64] == "seed-dependent"
    # one seed memorising at width 40 shows the capacity there, below the construction's width
    assert verdicts([0.04] * 5, [1e-9] + [0.05] * 4)[40] == "seed-dependent"
    # a construction that does not reach the threshold decides nothing
    weak = construction.assign(**{"construction MSE float32": 1e-3})
    rows = [
        {"n_points": 64, "width": 64, "seed": k, "train_mse": 0.04, "perfect": False}
        for k in range(5)
    ]
    assert st.memorize_cells(_runs(rows, ["n_points", "width"]), weak, s)["verdict"].tolist() == [
        "undecided"
    ]


# --- sheet6-frozen-decoder ---------------------------------------------------------------------


def test_course_reinit_loop_changes_nothing_and_aelabs_changes_everything():
    with aelab.seeded(3):
        model = aelab.Autoencoder.from_widths(st.BIG, 1, 2)
    before = [p.detach().clone() for p in model.parameters()]
    X = aelab.data.rectangle(50).X
    table = st.course_pitfalls(model, X)
    assert table["modules matched"].tolist() == [0, 4]
    assert table["share of encoder weights changed"].tolist() == [0.0, 1.0]
    course, ours = table.iloc[0], table.iloc[1]
    assert course["training MSE after"] == course["training MSE before"]
    assert ours["training MSE after"] != ours["training MSE before"]
    # the demonstration works on copies: the model itself is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_frozen_decoder_stays_frozen_and_stages_are_paired_by_seed(results):
    result = results["sheet6-frozen-decoder"]
    runs = result.tables["runs"]
    stages = runs["stage"].unique().tolist()
    assert stages == [
        "1st training",
        "encoder re-initialised",
        "encoder retrained",
        "best codes for the frozen decoder",
    ]
    for stage in stages:
        assert sorted(runs.loc[runs["stage"] == stage, "seed"]) == [0, 1, 2]
    assert result.metrics["decoder_max_change"] == 0.0
    assert result.metrics["course_loop_share_changed"] == 0.0
    assert result.metrics["aelab_share_changed"] == 1.0
    # a real re-initialisation loses what the encoder learned
    metrics = result.metrics
    assert metrics["test_mse_encoder_re-initialised"] > metrics["test_mse_1st_training"]


def test_frozen_decoder_findings_follow_the_numbers():
    s = st.FrozenDecoderSettings()
    pitfalls = pd.DataFrame(
        [
            {
                "modules matched": 0,
                "parameter tensors": 8,
                "share of encoder weights changed": 0.0,
                "training MSE before": 0.07,
                "training MSE after": 0.07,
            },
            {
                "modules matched": 4,
                "parameter tensors": 8,
                "share of encoder weights changed": 1.0,
                "training MSE before": 0.07,
                "training MSE after": 0.9,
            },
        ]
    )
    noise = np.random.default_rng(0).normal(0, 0.004, size=(4, 5))  # seed-to-seed spread

    def findings(retrained_mse, fall=0.01, s=s):
        rows = []
        for stage, mse in (
            ("1st training", 0.14 + noise[0]),
            ("encoder re-initialised", 0.9 + noise[1]),
            ("encoder retrained", retrained_mse),
            ("best codes for the frozen decoder", 0.09 + noise[2]),
        ):
            rows += [
                {
                    "stage": stage,
                    "seed": k,
                    "train_mse": m,
                    "test_mse": m,
                    "late_fall": fall,
                    "decoder_change": 0.0,
                    "code_corr": 0.99,
                }
                for k, m in enumerate(mse)
            ]
        return " ".join(st.frozen_findings(_runs(rows, ["stage"]), pitfalls, s)[0])

    same = findings(0.14 + noise[3])
    worse = findings(0.30 + noise[3])
    assert "The 1st training and the retrained encoder are indistinguishable" in same
    assert "The 1st training has lower test MSE than the retrained encoder" in worse
    unconverged = findings(0.30 + noise[3], fall=0.2)
    assert "Not converged" in unconverged and "t-test" not in unconverged
    # at the sheet's own 1000 epochs there is no longer run to wait for: compare, and say so
    at_full = findings(0.30 + noise[3], fall=0.2, s=st.FrozenDecoderSettings.full())
    assert "Not converged" in at_full and "has lower test MSE" in at_full


# --- sheet6-gd-vs-sgd --------------------------------------------------------------------------


def test_gd_vs_sgd_budgets_steps_and_examples(results):
    result = results["sheet6-gd-vs-sgd"]
    runs = result.tables["runs"]
    per = runs.groupby("method", sort=False).first()
    gd, sgd, adam = per.index
    assert per["steps"].tolist() == [8 * 12] * 3  # 8 epochs of 100 // 8 batches; GD: 96 epochs
    assert per.loc[gd, "batch_size"] == 100 and per.loc[sgd, "batch_size"] == 8
    assert per["optimizer"].tolist() == ["sgd", "sgd", "adam"]
    # the three methods of one seed start from the same weights: paired comparisons
    assert runs.groupby("seed")["method"].nunique().eq(3).all()
    by_examples = result.figures["loss"].axes[0]
    assert by_examples.get_xlabel() == "training examples seen"
    other = st.sheet6_gd_vs_sgd(epochs=4, seeds=2, gd_budget="examples")
    steps = other.tables["runs"].groupby("method", sort=False)["steps"].first().tolist()
    assert steps == [4, 48, 48]
    assert "same number of optimizer steps" not in other.findings[0]
    assert "same number of optimizer steps" in result.findings[0]


def test_gd_vs_sgd_ranking_follows_the_numbers():
    s = st.GdVsSgdSettings()
    ref = {"examples": 9600, "seconds": 0.1, "pca": 0.15, "mean": 0.85}
    noise = np.random.default_rng(1).normal(0, 0.004, size=(3, 5))  # seed-to-seed spread

    def answer(gd, sgd, adam):
        rows = [
            {
                "method": m,
                "seed": k,
                "steps": 1200,
                "train_mse": v,
                "loss_at_examples": v,
                "loss_at_seconds": v,
                "late_fall": 0.0,
            }
            for m, values in (
                ("full-batch GD", gd),
                ("mini-batch SGD (8)", sgd),
                ("Adam (8)", adam),
            )
            for k, v in enumerate(values)
        ]
        return st.gd_findings(_runs(rows, ["method"]), ref, s)[1]

    adam_wins = answer(0.6 + noise[0], 0.15 + noise[1], 0.09 + noise[2])
    assert adam_wins.startswith("Adam (8) has the lowest")
    assert adam_wins.count("significantly lower than") == 2
    gd_wins = answer(0.05 + noise[0], 0.15 + noise[1], 0.09 + noise[2])
    assert gd_wins.startswith("full-batch GD has the lowest")
    tied = answer(0.6 + noise[0], 0.0901 + noise[1], 0.09 + noise[2])
    assert "indistinguishable from mini-batch SGD (8)" in tied


def test_late_fall_loss_at_and_correlation():
    assert st._late_fall(np.linspace(2.0, 1.0, 100)) > 0.05
    assert st._late_fall(np.ones(100)) == 0.0
    assert st._late_fall([1.0]) == 0.0
    losses, seen = [0.9, 0.5, 0.2], [100, 200, 300]
    assert st._loss_at(losses, seen, 250) == 0.5 and st._loss_at(losses, seen, 300) == 0.2
    assert math.isnan(st._loss_at(losses, seen, 50))
    # a dead encoder gives constant codes: correlation 0, not NaN (a metric must be finite)
    assert st._correlation(np.ones(5), np.arange(5.0)) == 0.0
    assert st._correlation(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
