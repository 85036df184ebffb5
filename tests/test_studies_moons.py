"""The moons-* studies of course sheet 002, each run once in quick mode."""

import re

import numpy as np
import pytest

from aelab import cli
from aelab.studies import (
    REGISTRY,
    moons_hyperparameters,
    moons_noise_shift,
    moons_reproducibility,
)

IDS = ["moons-hyperparameters", "moons-reproducibility", "moons-noise-shift"]


@pytest.fixture(scope="module")
def hyper():
    return moons_hyperparameters(quick=True)


@pytest.fixture(scope="module")
def repro():
    return moons_reproducibility(quick=True)


@pytest.fixture(scope="module")
def shift():
    return moons_noise_shift(quick=True)


def check_figure(fig):
    """Every panel titled and labelled; a legend wherever more than one series is labelled."""
    assert fig.axes
    for ax in fig.axes:
        assert ax.get_title(), "untitled panel"
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        labels = [lab for lab in ax.get_legend_handles_labels()[1] if not lab.startswith("_")]
        if len(labels) > 1:
            assert ax.get_legend() is not None, ax.get_title()


@pytest.mark.parametrize("name", ["hyper", "repro", "shift"])
def test_study_returns_tables_labelled_figures_and_numeric_findings(name, request):
    r = request.getfixturevalue(name)
    assert r.name in IDS
    assert r.tables and all(not t.empty for t in r.tables.values())
    assert r.figures
    for fig in r.figures.values():
        check_figure(fig)
    assert r.findings and all(re.search(r"\d", f) for f in r.findings)
    assert r.config["quick"] is True and r.config["seed"] == 0
    assert r.metrics and all(isinstance(v, (int, float)) and np.isfinite(v)
                             for v in r.metrics.values())


def test_studies_are_registered_and_listed(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in IDS:
        assert name in REGISTRY
        assert name in out


def test_hyperparameters_sweeps_every_axis_over_seeds(hyper):
    summary, runs = hyper.tables["summary"], hyper.tables["runs"]
    assert set(summary["axis"]) == {"training-set size", "learning rate", "learning-rate schedule",
                                    "hidden size", "hidden layers", "epochs"}
    assert (summary["seeds"] == 2).all()
    assert set(summary.loc[summary["axis"] == "learning-rate schedule", "value"]) == {
        "constant", "cosine", "step"}
    # the default setting is shared by every axis but trained once per seed
    distinct = runs[runs["axis"] != "epochs"].drop_duplicates(
        ["n_train", "lr", "lr_schedule", "hidden_size", "layers", "seed"])
    assert hyper.metrics["trained_runs"] == len(distinct) == 2 * (1 + 2 + 2 + 2 + 1 + 1)
    # training helps: the test error falls from the first to the last epoch checkpoint
    epochs = summary[summary["axis"] == "epochs"]
    assert epochs["mean test MSE"].iloc[-1] < 0.5 * epochs["mean test MSE"].iloc[0]
    assert hyper.metrics["best_test_mse"] <= hyper.metrics["poor_test_mse"]
    titles = [ax.get_title() for ax in hyper.figures["best-vs-poor"].axes]
    assert titles[0].startswith("Best setting") and titles[1].startswith("Poor setting")


def test_hyperparameters_say_whether_the_sweep_ranks_convergence_speed(hyper):
    from aelab.studies.moons import LATE_DROP, STILL_FALLING, TRAIN_AFTER, TRAIN_RUNNING

    runs = hyper.tables["runs"]
    # two clearly named train columns instead of one "train MSE" with two meanings
    assert "train MSE" not in runs.columns
    trained, stopped = runs[runs["axis"] != "epochs"], runs[runs["axis"] == "epochs"]
    assert trained[TRAIN_AFTER].notna().all() and stopped[TRAIN_AFTER].isna().all()
    assert runs[TRAIN_RUNNING].notna().all()
    distinct = trained.drop_duplicates(["n_train", "lr", "lr_schedule", "hidden_size", "layers",
                                        "seed"])
    drops = distinct.groupby(["n_train", "lr", "lr_schedule", "hidden_size", "layers"])[
        LATE_DROP].mean()
    finding = next(f for f in hyper.findings if "Over the last" in f)
    assert f"{drops.max():.1%}" in finding
    assert ("convergence speed" in finding) == (drops.max() > STILL_FALLING)
    assert (f"after {hyper.config['epochs']} epochs" in hyper.findings[0]) == (drops.max() > STILL_FALLING)
    assert f"{hyper.metrics['default_late_drop']:.1%}" in finding


def test_late_drop_compares_window_medians_and_ignores_one_spike():
    from types import SimpleNamespace

    from aelab.studies.moons import _late_drop

    flat = SimpleNamespace(epochs=100, test_loss=[1.0] * 99 + [5.0])  # one spike at the end
    assert _late_drop(flat) == pytest.approx(0.0)
    falling = SimpleNamespace(epochs=100, test_loss=list(np.linspace(2.0, 1.0, 100)))
    assert 0.05 < _late_drop(falling) < 0.15
    stopped = SimpleNamespace(epochs=100, test_loss=[1.0] * 40)  # diverged at epoch 40
    assert np.isnan(_late_drop(stopped))


def test_reproducibility_pairs_model_seeds_and_varies_only_the_data(repro):
    runs = repro.tables["runs"]
    same = runs[runs["condition"] == "same data, new seed"]
    new = runs[runs["condition"] == "new data, new seed"]
    n_runs = repro.config["n_runs"]
    assert same["data seed"].nunique() == 1 and new["data seed"].nunique() == len(new) == n_runs
    assert same["model seed"].tolist() == new["model seed"].tolist()
    spread = repro.tables["spread"].set_index("condition")
    assert (spread["std test MSE"] > 0).all()
    assert (spread["pointwise spread of reconstructions"] > 0).all()
    assert len(repro.figures["curves"].axes[0].get_lines()) >= n_runs  # one decoded curve per run


def test_reproducibility_words_the_spread_difference_by_an_f_test(repro):
    from scipy.stats import f as f_dist

    runs = repro.tables["runs"]
    same = runs.loc[runs["condition"] == "same data, new seed", "test MSE"].to_numpy()
    new = runs.loc[runs["condition"] == "new data, new seed", "test MSE"].to_numpy()
    F = new.var(ddof=1) / same.var(ddof=1)
    df = len(new) - 1, len(same) - 1
    p = 2 * min(f_dist.cdf(F, *df), f_dist.sf(F, *df))
    assert repro.metrics["std_ratio"] == pytest.approx(np.sqrt(F))
    assert repro.metrics["std_ratio_p_value"] == pytest.approx(p)
    finding = next(f for f in repro.findings if "F test p = " in f)
    assert f"p = {p:.2g}" in finding
    assert ("do not differ significantly" in finding) == (p >= 0.05)


def test_variance_ratio_test_matches_the_textbook_f_test():
    from aelab.studies.moons import variance_ratio_test

    ratio, p, critical = variance_ratio_test([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert ratio == pytest.approx(2.0)
    assert p == pytest.approx(0.2848, abs=1e-4)
    assert critical == pytest.approx(3.93, abs=0.01)  # 4 vs 4 runs need a std ratio of ~3.9
    assert variance_ratio_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 values per sample"):
        variance_ratio_test([1.0], [1.0, 2.0])


def test_reproducibility_is_deterministic_and_checks_n_runs():
    a = moons_reproducibility(quick=True, n_runs=2, epochs=2, n_train=64, n_test=64)
    b = moons_reproducibility(quick=True, n_runs=2, epochs=2, n_train=64, n_test=64)
    assert a.tables["runs"]["test MSE"].tolist() == b.tables["runs"]["test MSE"].tolist()
    with pytest.raises(ValueError, match="n_runs must be an int >= 2"):
        moons_reproducibility(n_runs=1)


def test_hyperparameters_rejects_an_empty_sweep():
    with pytest.raises(ValueError, match="sizes must list at least one value"):
        moons_hyperparameters(sizes=[])


def test_noise_shift_errors_rise_with_test_noise(shift):
    errors = shift.tables["errors"].set_index(["train noise", "test noise"])
    assert len(errors) == 4
    assert errors.loc[(0.1, 0.2), "test MSE"] > errors.loc[(0.1, 0.1), "test MSE"]
    assert errors.loc[(0.1, 0.2), "noise floor σ²/2"] == pytest.approx(0.02)
    assert ((errors["share kept on own moon"] > 0.5) & (errors["share kept on own moon"] <= 1)).all()
    assert len(shift.figures["reconstructions"].axes) == 4
    # the curve lengths are compared by their ratio, without an unmeasured reason
    ratio = errors.loc[(0.2, 0.2), "decoded curve length"] / errors.loc[(0.1, 0.2), "decoded curve length"]
    assert f"({ratio:.2f} times as long;" in shift.findings[2]
    assert "folds back and forth" not in " ".join(shift.findings)


def test_train_stack_stacks_same_shape_models_and_reports_divergence():
    import torch

    from aelab import data
    from aelab.studies._common import train_stack
    from aelab.studies.moons import build_mlp, diverged

    train, test = data.moons(64, seed=0), data.moons(32, seed=1)
    models = [build_mlp(8, 1, s) for s in (0, 1)]
    before = [m.state_dict()["encoder.0.weight"].clone() for m in models]
    histories = train_stack(models, [train] * 2, test=test, epochs=3, batch_size=16,
                            lr=[1e-3, 1e7], seeds=[0, 1], on_diverge="restore")
    assert [h.config["ensemble_size"] for h in histories] == [2, 2]
    assert [diverged(h) for h in histories] == [False, True]
    assert len(histories[0].test_loss) == 3
    # the diverged member is back at its initial weights; the other one trained
    assert torch.equal(models[1].state_dict()["encoder.0.weight"], before[1])
    assert not torch.equal(models[0].state_dict()["encoder.0.weight"], before[0])
