"""code-gmm (preset moons-code-gmm) and moons-mmd: user data, verdicts from numbers."""

import numpy as np
import pandas as pd
import pytest

from aelab import data
from aelab.experiments import Runs
from aelab.studies import REGISTRY, code_gmm, moons_code_gmm, moons_mmd
from aelab.studies.moons_generative import (
    GENERATORS,
    NO_MMD,
    ONE_D,
    CodeGmmSettings,
    MoonsMmdSettings,
    _label,
    code_gmm_findings,
    code_gmm_verdicts,
    mmd_findings,
    mmd_verdicts,
)


def check_figure(fig):
    """Every panel titled and labelled; a legend wherever more than one series is labelled."""
    assert fig.axes
    for ax in fig.axes:
        assert ax.get_title(), "untitled panel"
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        labels = [lab for lab in ax.get_legend_handles_labels()[1] if not lab.startswith("_")]
        if len(labels) > 1:
            assert ax.get_legend() is not None, ax.get_title()


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory):
    """A noisy 1-D curve in 3-D, as a researcher's CSV file."""
    rng = np.random.default_rng(0)
    t = rng.uniform(-2, 2, 200)
    X = np.stack([t, np.sin(2 * t), 0.5 * t**2], 1) + 0.05 * rng.standard_normal((200, 3))
    path = tmp_path_factory.mktemp("data") / "curve.csv"
    np.savetxt(path, X, delimiter=",")
    return data.load(path)


def test_code_gmm_runs_quick_on_a_user_csv(user_csv):
    r = code_gmm(quick=True, data=user_csv, epochs=30, seeds=5)
    assert r.name == "code-gmm" and r.answer
    assert r.config["data"] == user_csv.name and r.config["seeds"] == 5
    trials = r.tables["trials"]
    assert len(trials) == 5 and trials["seed"].tolist() == [0, 1, 2, 3, 4]
    assert trials["steps"].nunique() == 1
    quality = r.tables["sample quality"]
    assert set(quality["model"]) == set(GENERATORS.values())
    assert "distance to the noise-free curve" not in set(quality["measure"])  # moons only
    assert (quality["n"] == 5).all()
    for fig in r.figures.values():
        check_figure(fig)
    assert all(np.isfinite(v) for v in r.metrics.values())
    # the mixture's density drawn over the code histogram integrates to about 1
    x, y = r.figures["codes"].axes[0].get_lines()[0].get_data()
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.05)


def test_code_gmm_refuses_a_bottleneck_as_wide_as_the_data(user_csv):
    with pytest.raises(ValueError, match="bottleneck must be smaller than the data's 3"):
        code_gmm(data=user_csv, bottleneck=3, epochs=2, seeds=2)


def test_registry_generic_id_and_course_presets():
    assert REGISTRY["code-gmm"].data == "any"
    assert REGISTRY["moons-code-gmm"].preset_of == "code-gmm"
    assert REGISTRY["moons-mmd"].data is None and REGISTRY["moons-mmd"].settings is MoonsMmdSettings
    with pytest.raises(ValueError, match="pins the course's data"):
        moons_code_gmm(data=data.moons(50))
    with pytest.raises(ValueError, match="takes no data="):
        moons_mmd(data=data.moons(50))


@pytest.mark.parametrize(
    "cls, bad, match",
    [
        (CodeGmmSettings, {"epochs": 0}, "epochs"),
        (CodeGmmSettings, {"seeds": 1}, "seeds"),
        (CodeGmmSettings, {"bottleneck": 0}, "bottleneck"),
        (MoonsMmdSettings, {"kernels": ("gauss",)}, "kernels"),
        (MoonsMmdSettings, {"weights": ()}, "weights"),
        (MoonsMmdSettings, {"weights": (0.0,)}, "weights"),
        (MoonsMmdSettings, {"batch_size": 1}, "batch_size"),
        (MoonsMmdSettings, {"architecture": "cnn"}, "architecture"),
    ],
)
def test_bad_settings_are_refused(cls, bad, match):
    with pytest.raises(ValueError, match=match):
        cls(**bad)


def test_unknown_setting_lists_the_valid_names():
    with pytest.raises(ValueError, match="valid settings: n, noise, weights, kernels"):
        moons_mmd(quick=True, mmd_weight=2.0)


# --- hand-made tables: the verdicts follow the numbers ------------------------------------------


def gmm_runs(ae_mmd2, pca_mmd2, late_drop=0.0, seeds=6) -> Runs:
    rng = np.random.default_rng(1)
    noise = lambda: 0.002 * rng.standard_normal(seeds)  # noqa: E731
    table = pd.DataFrame(
        {
            "seed": range(seeds),
            "model": "autoencoder",
            "late_drop": late_drop,
            "test_mse": 0.01,
            "mean_mse": 0.3,
            "ae_components": 4,
            "pca_components": 3,
            "ae_unconverged": 0,
            "pca_unconverged": 0,
            "ae_mmd2": ae_mmd2 + noise(),
            "pca_mmd2": pca_mmd2 + noise(),
            "real_mmd2": 0.0,
            "ae_precision": 0.9 + noise(),
            "pca_precision": 0.7 + noise(),
            "real_precision": 0.95,
            "ae_recall": 0.5 + noise(),
            "pca_recall": 0.1 + noise(),
            "real_recall": 0.95,
        }
    )
    return Runs(table, [None] * seeds, [None] * seeds, [])


def test_code_gmm_verdict_flips_with_the_numbers():
    s = CodeGmmSettings()
    assert code_gmm_verdicts(gmm_runs(0.01, 0.2), s)["mmd2_vs_pca"] == "better"
    assert code_gmm_verdicts(gmm_runs(0.2, 0.01), s)["mmd2_vs_pca"] == "worse"
    assert code_gmm_verdicts(gmm_runs(0.05, 0.05), s)["mmd2_vs_pca"] == "indistinguishable"
    assert code_gmm_verdicts(gmm_runs(0.01, 0.2), s)["recall_vs_real"] == "worse"
    better, _ = code_gmm_findings(gmm_runs(0.01, 0.2), s)
    worse, _ = code_gmm_findings(gmm_runs(0.2, 0.01), s)
    assert better != worse


def test_code_gmm_draws_no_comparison_before_convergence():
    s = CodeGmmSettings()
    converged = code_gmm_verdicts(gmm_runs(0.01, 0.2, late_drop=0.01), s)
    falling = code_gmm_verdicts(gmm_runs(0.01, 0.2, late_drop=0.3), s)
    assert converged["unconverged"] is None and falling["unconverged"]
    found, answer = code_gmm_findings(gmm_runs(0.01, 0.2, late_drop=0.3), s, quick=True)
    found_full, _ = code_gmm_findings(gmm_runs(0.01, 0.2, late_drop=0.3), s, quick=False)
    assert "run --full" in answer and "run --full" not in found_full[0]
    assert len(found) < len(code_gmm_findings(gmm_runs(0.01, 0.2), s)[0])


def mmd_runs(mse_2d, one_d_drop=0.0, steps_1d=700, seeds=6) -> Runs:
    """The 1-D bottleneck at test MSE 0.01; every 2-D model at ``mse_2d``."""
    rng = np.random.default_rng(2)
    rows = []
    settings = [
        (1, "reconstruction", np.nan, np.nan),
        (2, "reconstruction", np.nan, np.nan),
        (2, "mmd", 1.0, "imq"),
        (2, "mmd", 1.0, "rbf"),
    ]
    for bottleneck, objective, weight, kernel in settings:
        model = _label(bottleneck, objective, weight, kernel)
        for seed in range(seeds):
            e = lambda: 0.0005 * rng.standard_normal()  # noqa: E731
            rows.append(
                {
                    "bottleneck": bottleneck,
                    "objective": objective,
                    "mmd_weight": weight,
                    "kernel": kernel,
                    "seed": seed,
                    "model": model,
                    "steps": steps_1d if bottleneck == 1 else 700,
                    "late_drop": one_d_drop if bottleneck == 1 else 0.0,
                    "test_mse": (0.01 if bottleneck == 1 else mse_2d) + e(),
                    "code_mmd2": (0.4 if objective == "reconstruction" else 0.01) + e(),
                    "val_sample_mmd2": (0.02 if kernel == "imq" else 0.05) + e(),
                    **{
                        f"sample_{m}": v + e()
                        for m, v in (
                            ("mmd2", 0.02),
                            ("precision", 0.8),
                            ("recall", 0.9),
                            ("curve_distance", 0.1),
                        )
                    },
                    **{
                        f"real_{m}": v
                        for m, v in (
                            ("mmd2", 0.0),
                            ("precision", 0.95),
                            ("recall", 0.95),
                            ("curve_distance", 0.08),
                        )
                    },
                }
            )
    table = pd.DataFrame(rows)
    return Runs(
        table,
        [None] * len(table),
        [None] * len(table),
        ["bottleneck", "objective", "mmd_weight", "kernel"],
    )


def test_mmd_verdicts_follow_the_numbers():
    s = MoonsMmdSettings()
    lower = mmd_verdicts(mmd_runs(0.001), s, quick=False)
    assert lower["chosen"] == _label(2, "mmd", 1.0, "imq")  # lowest validation sample MMD²
    assert lower["steps"] == [700] and lower["unconverged"] is None
    assert lower["chosen_mse"]["verdict"] == "lower"
    assert set(lower["code_vs_none"]["verdict"]) == {"lower"}
    assert mmd_verdicts(mmd_runs(0.02), s)["chosen_mse"]["verdict"] == "higher"
    assert mmd_verdicts(mmd_runs(0.01), s)["chosen_mse"]["verdict"] == "indistinguishable"
    assert mmd_findings(mmd_runs(0.001), s)[1] != mmd_findings(mmd_runs(0.02), s)[1]


def test_mmd_says_not_converged_and_unequal_steps():
    s = MoonsMmdSettings()
    v = mmd_verdicts(mmd_runs(0.001, one_d_drop=0.25, steps_1d=300), s, quick=True)
    assert v["unconverged"] and ONE_D in v["unconverged"]
    assert v["steps"] == [300, 700]
    found, answer = mmd_findings(mmd_runs(0.001, one_d_drop=0.25), s, quick=True)
    assert "run --full" in answer and NO_MMD in " ".join(found)


def test_moons_mmd_gives_every_model_equal_optimizer_steps():
    r = moons_mmd(quick=True, n=200, epochs=3, seeds=2, weights=(1.0,), kernels=("imq", "rbf"))
    trials = r.tables["trials"]
    assert trials["steps"].nunique() == 1 and trials["steps"].iloc[0] == 120 // 32 * 3
    assert set(trials["model"]) == {ONE_D, NO_MMD, "2-D + MMD 1 (IMQ)", "2-D + MMD 1 (RBF)"}
    assert (trials.groupby("model")["seed"].nunique() == 2).all()
    assert r.config["chosen"] in {"2-D + MMD 1 (IMQ)", "2-D + MMD 1 (RBF)"}
    for fig in r.figures.values():
        check_figure(fig)
    assert r.answer and all(np.isfinite(v) for v in r.metrics.values())


def test_aelab_list_shows_the_generic_id_and_both_course_ids(capsys):
    from aelab import cli

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("code-gmm", "moons-code-gmm", "moons-mmd"))
