"""The generic studies hyperparameters, reproducibility and noise-shift, and their moons presets."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from aelab import cli, data
from aelab.experiments import Runs
from aelab.studies import (
    REGISTRY,
    hyperparameters,
    moons_hyperparameters,
    moons_noise_shift,
    moons_reproducibility,
    noise_shift,
    reproducibility,
)
from aelab.studies.moons import (
    NOT_CONVERGED,
    STILL_FALLING,
    HyperparameterSettings,
    ReproducibilitySettings,
    assess_hyperparameters,
    hyperparameter_findings,
    late_fall,
    reproducibility_findings,
)
from aelab.studies.moons_noise import noisy

# a small grid: the default and one change per swept axis, trained briefly
SMALL = dict(
    epochs=20,
    epoch_values=(10,),
    lrs=(1e-2,),
    schedules=(),
    hidden_sizes=(8,),
    layer_counts=(),
    train_fractions=(0.5,),
    seeds=5,
)


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    """200 points near a curve in 3-D, written as a CSV with a header and loaded back."""
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, 200)
    X = np.c_[t, t**2, np.sin(2 * t)] + 0.05 * rng.normal(size=(200, 3))
    path = tmp_path_factory.mktemp("data") / "curve.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c", comments="")
    return data.load(path)


def check_figure(fig):
    """Every panel titled and labelled; a legend wherever more than one series is labelled."""
    assert fig.axes
    for ax in fig.axes:
        assert ax.get_title(), "untitled panel"
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        labels = [lab for lab in ax.get_legend_handles_labels()[1] if not lab.startswith("_")]
        if len(labels) > 1:
            assert ax.get_legend() is not None, ax.get_title()


def check_result(r, name):
    assert r.name == name and r.answer and r.findings
    assert r.tables and all(not t.empty for t in r.tables.values())
    for fig in r.figures.values():
        check_figure(fig)
    assert r.metrics and all(
        isinstance(v, (int, float)) and np.isfinite(v) for v in r.metrics.values()
    )


# --- hyperparameters ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hyper(user_data):
    return hyperparameters(quick=True, data=user_data, **SMALL)


def test_hyperparameters_runs_on_user_data_and_reports_the_selected_setting(hyper, user_data):
    check_result(hyper, "hyperparameters")
    summary = hyper.tables["summary"].set_index("setting")
    assert sorted(summary.index) == [
        "default",
        "epochs=10",
        "hidden_size=8",
        "lr=0.01",
        "train_fraction=0.5",
    ]
    assert (summary["n val"] == 5).all() and (summary["n test"] == 5).all()
    # selected on validation, reported on test
    best = summary["mean val"].idxmin()
    assert hyper.metrics["best_test_mse"] == pytest.approx(summary.loc[best, "mean test"])
    assert (
        summary.loc[best, "ci_low test"]
        < hyper.metrics["best_test_mse"]
        < summary.loc[best, "ci_high test"]
    )
    # the training-set size is a subset of the user's training split (60% of 200 points)
    assert hyper.config["sizes"] == {1.0: 120, 0.5: 60}
    assert hyper.config["data"] == user_data.name
    assert set(hyper.figures) == {"sweeps", "convergence", "reconstructions"}


def hand_made_runs(val_best, fall_best=0.0, n=5):
    """A table like the sweep's: the default and lr=0.01, with chosen validation numbers."""
    rng = np.random.default_rng(1)
    rows = []
    for label, lr, val, fall in (
        ("default", 3e-3, 0.02, 0.0),
        ("lr=0.01", 1e-2, val_best, fall_best),
    ):
        for seed in range(n):
            v = val + 1e-4 * rng.normal()
            rows.append(
                dict(
                    setting=label,
                    train_fraction=1.0,
                    epochs=300,
                    lr=lr,
                    lr_schedule=None,
                    hidden_size=32,
                    layers=2,
                    seed=seed,
                    val_mse=v,
                    test_mse=v * 0.9,
                    val_fall=fall,
                    pca_mse=0.1,
                    mean_mse=0.5,
                    diverged=False,
                )
            )
    table = pd.DataFrame(rows)
    return Runs(
        table,
        [None] * len(table),
        [None] * len(table),
        ["setting", "train_fraction", "epochs", "lr", "lr_schedule", "hidden_size", "layers"],
    )


def test_hyperparameter_verdict_follows_the_numbers():
    s = HyperparameterSettings()
    clear = assess_hyperparameters(hand_made_runs(0.01))
    assert clear.best.setting == {"setting": "lr=0.01"} and clear.best.indistinguishable == []
    assert clear.converged and clear.test["mean"] == pytest.approx(0.009, rel=0.05)
    # the same lr a hair better: the default is indistinguishable from it
    close = assess_hyperparameters(hand_made_runs(0.01999))
    assert close.best.indistinguishable == [{"setting": "default"}]
    # the selected setting still falling: no setting is selected
    falling = hand_made_runs(0.01, fall_best=2 * STILL_FALLING)
    assert not assess_hyperparameters(falling).converged
    findings, answer = hyperparameter_findings(falling, s)
    assert NOT_CONVERGED in answer.lower() and "lr=0.01" not in answer
    assert "--full" not in hyperparameter_findings(falling, s, quick=False)[1]  # already full
    assert "lr=0.01" in hyperparameter_findings(hand_made_runs(0.01), s)[1]


def test_late_fall_compares_the_last_tenth_of_the_epochs_with_the_tenth_before():
    assert late_fall([1.0] * 99 + [5.0]) == pytest.approx(0.0)  # one spike: medians ignore it
    # a steady fall from 2 to 1: medians 2 - 94.5/99 (last 10) and 2 - 84.5/99 (the 10 before)
    assert late_fall(list(np.linspace(2.0, 1.0, 100))) == pytest.approx(
        1 - 1.04545 / 1.14646, abs=1e-4
    )
    assert np.isnan(late_fall([1.0]))


def test_hyperparameter_settings_are_checked():
    with pytest.raises(ValueError, match="valid settings: n, noise"):
        hyperparameters(n_seeds=3)
    with pytest.raises(ValueError, match="seeds must be an int >= 2, got 1"):
        HyperparameterSettings(seeds=1)
    with pytest.raises(ValueError, match="epochs must be an int >= 10, got 0"):
        HyperparameterSettings(epochs=0)
    with pytest.raises(ValueError, match=r"train_fractions must lie in \(0, 1\], got 1.5"):
        HyperparameterSettings(train_fractions=(1.5,))
    with pytest.raises(ValueError, match="'linear'"):
        HyperparameterSettings(schedules=("linear",))
    with pytest.raises(ValueError, match="bottleneck_size must be smaller than the data's 2"):
        hyperparameters(bottleneck_size=2, **SMALL)


# --- reproducibility ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repro(user_data):
    return reproducibility(quick=True, data=user_data, runs=5, epochs=20)


def test_reproducibility_runs_on_user_data_and_tests_the_spread_with_levene(repro):
    check_result(repro, "reproducibility")
    runs = repro.tables["runs"]
    same = runs.loc[runs["condition"] == "same data, new seed", "test_mse"]
    new = runs.loc[runs["condition"] == "new data, new seed", "test_mse"]
    assert len(same) == len(new) == 5
    assert not set(runs.loc[same.index, "seed"]) & set(runs.loc[new.index, "seed"])  # independent
    levene = stats.levene(same, new, center="median")
    assert repro.metrics["levene_p"] == pytest.approx(levene.pvalue)
    assert repro.metrics["std_ratio"] == pytest.approx(new.std() / same.std())
    assert (runs["deviation"] > 0).all()
    # the default settings are the pinned best of the hyperparameter study
    assert repro.config["hidden_size"] == ReproducibilitySettings().hidden_size


def repro_runs(new_spread):
    rng = np.random.default_rng(0)
    n = 12
    same = 0.01 + 0.001 * rng.normal(size=n)
    new = 0.01 + new_spread * rng.normal(size=n)
    table = pd.DataFrame(
        {
            "seed": range(2 * n),
            "condition": ["same data, new seed"] * n + ["new data, new seed"] * n,
            "test_mse": np.r_[same, new],
            "val_fall": 0.0,
            "deviation": np.r_[same, new] * 3,
        }
    )
    return Runs(table, [None] * 2 * n, [None] * 2 * n, ["condition"])


def test_reproducibility_calls_a_spread_difference_only_when_levene_does():
    s = ReproducibilitySettings()
    wide, equal = repro_runs(0.01), repro_runs(0.001)
    for runs, differs in ((wide, True), (equal, False)):
        t = runs.table
        p = stats.levene(
            *(
                t.loc[t["condition"] == c, "test_mse"]
                for c in ("same data, new seed", "new data, new seed")
            ),
            center="median",
        ).pvalue
        assert (p < 0.05) == differs
        answer = reproducibility_findings(runs, s)[1]
        assert ("spreads more with new data" in answer) == differs
        assert ("indistinguishable" in answer) == (not differs)
    wide.table["val_fall"] = 0.5
    assert NOT_CONVERGED in reproducibility_findings(wide, s)[1].lower()


# --- noise shift ----------------------------------------------------------------------------


def test_noise_is_relative_to_each_features_std():
    ds = data.Dataset(torch.randn(20000, 2) * torch.tensor([1.0, 10.0]))
    scale = ds.X.std(0)
    added = noisy(ds, 0.5, scale, seed=0).X - ds.X
    assert added.std(0).numpy() == pytest.approx(0.5 * scale.numpy(), rel=0.03)


def test_noise_shift_runs_on_user_data(user_data):
    r = noise_shift(quick=True, data=user_data, epochs=20)
    check_result(r, "noise-shift")
    errors = r.tables["errors"].set_index(["train_noise", "test_noise"])
    assert len(errors) == 4 and (errors["n"] == 5).all()
    assert errors.loc[(0.1, 0.2), "mean"] > errors.loc[(0.1, 0.1), "mean"]
    assert r.config["noise"] == "x feature std"
    assert "curve_distance@0.2" not in r.tables["runs"]  # the moons' curve is for course data only


# --- the course presets ---------------------------------------------------------------------


def test_generic_ids_take_data_and_the_course_ids_are_their_presets(user_data, capsys):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    for generic, course in (
        ("hyperparameters", "moons-hyperparameters"),
        ("reproducibility", "moons-reproducibility"),
        ("noise-shift", "moons-noise-shift"),
    ):
        assert REGISTRY[generic].data == "any" and generic in listed and course in listed
        assert REGISTRY[course].preset_of == generic and REGISTRY[course].data is None
    with pytest.raises(ValueError, match="pins the course's data"):
        moons_reproducibility(data=user_data)


def test_course_presets_run_on_the_moons():
    h = moons_hyperparameters(**{**SMALL, "seeds": 2, "hidden_sizes": (), "epoch_values": ()})
    assert h.name == "moons-hyperparameters" and "two moons" in h.config["data"]
    r = moons_reproducibility(runs=3, epochs=10)
    assert r.name == "moons-reproducibility" and len(r.tables["runs"]) == 6
    s = moons_noise_shift(seeds=2, epochs=10)
    assert s.name == "moons-noise-shift" and s.config["noise"] == "make_moons noise"
    assert s.tables["runs"]["curve_distance@0.2"].notna().all()
