"""aelab.sweep and Runs: the table, stacking, statistics against scipy, bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import aelab
from aelab.experiments import Runs, _holm, compare_sentence


@pytest.fixture(scope="module")
def moons():
    train, test = aelab.data.split(aelab.data.moons(120, seed=0), seed=0)
    return train, test


def mlp(hidden_size=8, layers=1):
    return aelab.Autoencoder(2, 1, hidden_size, layers)


def test_sweep_table_has_one_row_per_trial_and_repeats_exactly(moons):
    train, test = moons
    kwargs = dict(
        grid={"hidden_size": [4, 8], "lr": [1e-3, 1e-2]},
        seeds=2,
        test=test,
        epochs=3,
        batch_size=16,
        device="cpu",
    )
    first = aelab.sweep(mlp, train, **kwargs)
    second = aelab.sweep(mlp, train, **kwargs)
    assert len(first.table) == 8
    assert list(first.table.columns[:3]) == ["hidden_size", "lr", "seed"]
    for column in ("train_mse", "test_mse", "mean_mse", "pca_mse", "steps", "diverged"):
        assert column in first.table
    same = first.table.drop(columns="seconds")
    pd.testing.assert_frame_equal(same, second.table.drop(columns="seconds"))
    assert (first.table["steps"] == 3 * (len(train) // 16)).all()
    assert len(first.models) == len(first.histories) == 8


def test_sweep_trial_equals_training_it_alone(moons):
    train, test = moons
    runs = aelab.sweep(
        mlp,
        train,
        grid={"hidden_size": [4, 8, 16]},
        seeds=[3, 5],
        test=test,
        epochs=4,
        batch_size=16,
        lr=3e-3,
        device="cpu",
    )
    row = runs.table.index[(runs.table["hidden_size"] == 8) & (runs.table["seed"] == 5)][0]
    with aelab.seeded(5):
        alone = mlp(8)
    history = aelab.train_autoencoder(
        alone, train, epochs=4, batch_size=16, lr=3e-3, test=test, seed=5, device="cpu"
    )
    # documented tolerance: stacked members follow the lone model up to float rounding
    assert runs.histories[row].train_loss == pytest.approx(history.train_loss, rel=1e-5)
    assert runs.table.loc[row, "test_mse"] == pytest.approx(
        aelab.reconstruction_error(alone, test.X), rel=1e-5
    )
    for a, b in zip(runs.models[row].parameters(), alone.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_seed_sets_initial_weights_and_data_order(moons):
    train, _ = moons
    seen = []
    runs = aelab.sweep(
        mlp,
        lambda params, seed: seen.append((params, seed)) or train,
        grid=[{"hidden_size": 4}, {"hidden_size": 8, "lr": 1e-2}],
        seeds=2,
        epochs=1,
        batch_size=16,
        device="cpu",
    )
    assert seen == [
        ({"hidden_size": 4}, 0),
        ({"hidden_size": 4}, 1),
        ({"hidden_size": 8, "lr": 1e-2}, 0),
        ({"hidden_size": 8, "lr": 1e-2}, 1),
    ]
    assert math.isnan(runs.table.loc[0, "lr"]) and runs.table.loc[2, "lr"] == 1e-2
    w0, w1 = (next(m.parameters()) for m in runs.where(hidden_size=4).models)
    assert not torch.equal(w0, w1)


def test_metrics_see_the_trial(moons):
    train, test = moons
    calls = []

    def code_spread(model, context):
        calls.append((context.params["hidden_size"], context.seed, len(context.test)))
        return float(aelab.evaluate.encode(model, context.test.X).std())

    runs = aelab.sweep(
        mlp,
        train,
        test=test,
        grid={"hidden_size": [4]},
        seeds=2,
        metrics={"code_spread": code_spread},
        epochs=2,
        batch_size=16,
        device="cpu",
    )
    assert calls == [(4, 0, len(test)), (4, 1, len(test))]
    assert (runs.table["code_spread"] > 0).all()


def test_validation_is_monitored_and_best_selects_on_it(moons):
    train, test = moons
    train, val = aelab.data.split(train, seed=1)
    runs = aelab.sweep(
        mlp,
        train,
        validation=val,
        test=test,
        grid={"lr": [1e-4, 1e-2]},
        seeds=5,
        epochs=15,
        batch_size=16,
        device="cpu",
    )
    assert runs.histories[0].test_loss[-1] == pytest.approx(runs.table.loc[0, "val_mse"], rel=1e-4)
    best = runs.best("val_mse")
    assert best.setting == {"lr": 1e-2}
    assert best.indistinguishable == []  # 100x the learning rate over 15 epochs is clear
    report = runs.where(**best.setting).summary("test_mse", by=[])
    assert report.loc[0, "n"] == 5


def test_other_objectives_and_options_stack_too(moons):
    train, _ = moons
    runs = aelab.sweep(
        lambda: aelab.VAE(2, 1, 8, 1),
        train,
        grid={"beta": [0.5, 1.0]},
        seeds=1,
        objective="vae",
        epochs=2,
        batch_size=32,
        device="cpu",
    )
    # the VAE objective stacks, beta per member
    assert [h.config["ensemble_size"] for h in runs.histories] == [2, 2]
    assert [h.config["path"] for h in runs.histories] == ["stack", "stack"]
    assert runs.table["train_mse"].notna().all()
    momentum = aelab.sweep(
        mlp, train, seeds=2, optimizer="sgd", momentum=0.9, epochs=2, batch_size=32, device="cpu"
    )
    assert momentum.histories[0].config["momentum"] == 0.9


def test_a_diverged_trial_is_kept_with_nan_metrics(moons):
    train, test = moons
    runs = aelab.sweep(
        mlp,
        train,
        test=test,
        grid={"lr": [1e-3, 1e12]},
        seeds=2,
        optimizer="sgd",
        epochs=3,
        batch_size=16,
        device="cpu",
    )
    bad = runs.where(lr=1e12).table
    assert bad["diverged"].all() and bad["test_mse"].isna().all()
    summary = runs.summary("test_mse").set_index("lr")
    assert summary.loc[1e12, "n_diverged"] == 2 and summary.loc[1e12, "n"] == 0
    assert runs.best("test_mse").setting == {"lr": 1e-3}


# --------------------------------------------------------------------------- statistics


def hand_runs():
    rng = np.random.default_rng(0)
    rows = []
    for setting, shift in (("a", 0.0), ("b", 0.3), ("c", 3.0)):
        for seed in range(6):
            rows.append(
                {"opt": setting, "seed": seed, "err": 1 + 0.1 * seed + shift + rng.normal(0, 0.2)}
            )
    table = pd.DataFrame(rows)
    return Runs(table, [None] * len(table), [None] * len(table), ["opt"]), table


def test_summary_is_scipys_t_interval():
    runs, table = hand_runs()
    summary = runs.summary("err").set_index("opt")
    values = table[table.opt == "b"]["err"].to_numpy()
    low, high = stats.t.interval(0.95, 5, values.mean(), stats.sem(values))
    assert summary.loc["b", "mean"] == pytest.approx(values.mean())
    assert (summary.loc["b", "ci_low"], summary.loc["b", "ci_high"]) == pytest.approx((low, high))
    assert summary.loc["b", "n"] == 6


def test_compare_agrees_with_scipy_and_holm():
    runs, table = hand_runs()
    cmp = runs.compare("err", against="all")
    by_pair = cmp.set_index(["a", "b"])
    x, y = (table[table.opt == k]["err"].to_numpy() for k in ("a", "b"))
    row = by_pair.loc[("opt=a", "opt=b")]
    assert row["test"] == "paired t" and row["n_pairs"] == 6
    assert row["p"] == pytest.approx(stats.ttest_rel(y, x).pvalue)
    d = y - x
    assert row["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    p = cmp["p"].to_numpy()
    order = np.argsort(p)
    expected = np.maximum.accumulate(np.minimum(1, (3 - np.arange(3)) * p[order]))
    assert cmp["p_holm"].to_numpy()[order] == pytest.approx(expected)
    assert list(cmp["significant"]) == list(cmp["p_holm"] < 0.05)


def test_compare_uses_welch_without_shared_seeds():
    table = pd.DataFrame(
        {
            "opt": ["a"] * 4 + ["b"] * 5,
            "seed": list(range(4)) + list(range(10, 15)),
            "err": [1.0, 1.2, 0.9, 1.1, 1.6, 1.4, 1.5, 1.9, 1.3],
        }
    )
    runs = Runs(table, [None] * 9, [None] * 9, ["opt"])
    row = runs.compare("err", against={"opt": "a"}).iloc[0]
    assert row["test"] == "Welch t"
    expected = stats.ttest_ind(table.err[4:], table.err[:4], equal_var=False).pvalue
    assert row["p"] == pytest.approx(expected)


def test_best_and_its_indistinguishable_set_follow_the_numbers():
    runs, table = hand_runs()
    best = runs.best("err")
    assert best.setting == {"opt": "a"}
    assert {"opt": "c"} not in best.indistinguishable  # 3.0 higher: far out
    # make b equal to a: it joins the indistinguishable set
    table2 = table.copy()
    table2.loc[table2.opt == "b", "err"] = table2.loc[
        table2.opt == "a", "err"
    ].to_numpy() + 1e-3 * (np.arange(6) % 2 - 0.5)
    best2 = Runs(table2, [None] * 18, [None] * 18, ["opt"]).best("err")
    assert {"opt": "b"} in best2.indistinguishable or best2.setting == {"opt": "b"}
    assert best.mean == pytest.approx(table[table.opt == "a"]["err"].mean())


def test_holm_matches_the_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, 0.09 (monotone), 0.5
    assert _holm(p)[[0, 2, 1, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert np.isnan(_holm(p)[3])


def test_compare_sentence_calls_a_difference_only_when_significant():
    row = {
        "a": "x",
        "b": "y",
        "mean_a": 1.0,
        "mean_b": 2.0,
        "test": "paired t",
        "n_pairs": 5,
        "n_a": 5,
        "n_b": 5,
        "p_holm": 0.2,
        "significant": False,
    }
    assert "indistinguishable" in compare_sentence(row)
    assert "indistinguishable" not in compare_sentence({**row, "p_holm": 0.01, "significant": True})


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid={"widthh": [4]}), ValueError, r"'widthh'.*hidden_size.*lr"),
        (dict(grid={"hidden_size": []}), ValueError, r"grid\['hidden_size'\] is empty"),
        (dict(grid={"hidden_size": 4}), TypeError, r"grid\['hidden_size'\] must be a list"),
        (dict(seeds=0), ValueError, r"seeds must be a count >= 1"),
        (dict(seeds=[1, 1]), ValueError, r"seeds lists a seed twice"),
        (dict(grid={"lr": [1e-3]}, lr=1e-2), ValueError, r"lr is set both in the grid"),
        (dict(learning_rate=1e-3), ValueError, r"unknown training setting 'learning_rate'"),
        (dict(metrics={"test_mse": lambda m, c: 0.0}), ValueError, r"metrics\['test_mse'\]"),
        (dict(objective="gan"), ValueError, r"objective must be one of"),
        (dict(mmd_weight=1.0), ValueError, r"mmd_weight only apply to objective='mmd'"),
    ],
)
def test_bad_sweep_arguments_are_named(moons, kwargs, error, match):
    train, _ = moons
    settings = {"epochs": 1, "batch_size": 16, **kwargs}
    with pytest.raises(error, match=match):
        aelab.sweep(mlp, train, device="cpu", **settings)


def test_a_metric_that_returns_nan_is_named(moons):
    train, _ = moons
    with pytest.raises(ValueError, match=r"metrics\['broken'\] returned nan"):
        aelab.sweep(
            mlp,
            train,
            seeds=1,
            metrics={"broken": lambda m, c: float("nan")},
            epochs=1,
            batch_size=16,
            device="cpu",
        )


def test_runs_refuse_unknown_columns():
    runs, _ = hand_runs()
    with pytest.raises(ValueError, match="metric 'nope' is not a numeric column; available: err"):
        runs.summary("nope")
    with pytest.raises(ValueError, match="by: 'nope'"):
        runs.compare("err", by="nope")
    with pytest.raises(ValueError, match="matches 0 settings"):
        runs.compare("err", against={"opt": "z"})


def test_best_keeps_none_values_and_constant_differences_do_not_warn():
    table = pd.DataFrame(
        {
            "lr_schedule": [None] * 3 + ["step"] * 3,
            "seed": [0, 1, 2] * 2,
            "err": [1.0, 1.1, 1.2, 1.0 + 0.3, 1.1 + 0.3, 1.2 + 0.3],
        }
    )
    runs = Runs(table, [None] * 6, [None] * 6, ["lr_schedule"])
    best = runs.best("err")
    assert best.setting == {"lr_schedule": None}
    # differences constant up to rounding: a zero-variance pair, p = 0, not a scipy warning
    row = best.comparison.iloc[0]
    assert row["p"] == 0.0 and row["significant"]
    table.loc[3:, "err"] = table.loc[:2, "err"].to_numpy()
    same = Runs(table, [None] * 6, [None] * 6, ["lr_schedule"]).best("err")
    assert same.indistinguishable == [{"lr_schedule": "step"}] or same.indistinguishable == [
        {"lr_schedule": None}
    ]


def test_new_settings_at_their_default_keep_old_trial_keys(moons, tmp_path):
    # stores written before betas/eps existed must resume: at their defaults they are not keyed
    import sqlite3

    train, val = moons
    path = tmp_path / "s.sqlite"
    build = lambda: aelab.Autoencoder(2, 1, 8, 1)  # noqa: E731
    aelab.sweep(build, train, validation=val, seeds=1, epochs=1, batch_size=32, store=path)
    aelab.sweep(
        build, train, validation=val, seeds=1, epochs=1, batch_size=32, store=path, eps=1e-6
    )
    with sqlite3.connect(path) as db:
        settings = [row[0] for row in db.execute("SELECT settings FROM trials")]
    assert len(settings) == 2
    assert sum('"eps"' in s for s in settings) == 1 and not any('"betas"' in s for s in settings)
