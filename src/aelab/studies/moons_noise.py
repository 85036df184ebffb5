"""Train at one noise level, test at another (course sheet 002, tasks 1.4 and 1.5).

Models trained at each of ``train_noises`` are tested, without retraining, at
each of ``test_noises``. The noise is Gaussian: on the course's two moons it is
``make_moons``' noise (added to the noise-free curve, in the data's units); on
the user's data it is added to the data, its standard deviation ``sigma`` times
each feature's standard deviation in the training split. Besides the test MSE
(against the noisy input) each model is scored by how far its reconstructions
lie from the clean points, and by the length of its decoder's curve.
``moons-noise-shift`` is the course preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from aelab._checks import check_choice
from aelab.data import Dataset, corrupt
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.experiments import Runs, compare_sentence, sweep
from aelab.models import Autoencoder
from aelab.plots import new_figure, plain_log_ticks
from aelab.quality import distance_to_moons
from aelab.studies._base import StudyResult, check_study_data, preset, resolve_settings, study
from aelab.studies._common import curve_length, decoded_curve, split3
from aelab.studies.moons import (
    BEST,
    LATE_SHARE,
    SCHEDULES,
    STILL_FALLING,
    check_bottleneck,
    check_fields,
    ci_text,
    collapsed_sentence,
    draw_moons_curve,
    draw_reconstruction,
    finish_plane,
    median_member,
    moons_data,
    not_converged,
    percent,
    val_fall,
)

NOISE_SEED_OFFSET = 40_000  # training noise of seed s is drawn from NOISE_SEED_OFFSET + s
TRUE_CURVE_LENGTH = 2 * np.pi  # the noise-free moons: two half circles of radius 1


@dataclass(frozen=True)
class NoiseShiftSettings:
    # course data only: noise-free moons drawn, split 60/20/20 (1200 training points, the size
    # the full hyperparameter run selects), noise added. At n=700 the quick run could not tell
    # the models apart at test noise 0.2 (p = 0.57); at 2000 it finds what the full run does
    n: int = 2000
    train_noises: tuple[float, ...] = (0.1, 0.2)  # the course's levels; user data: x feature std
    test_noises: tuple[float, ...] = (0.1, 0.2)
    seeds: int = 5  # per training noise; each seed also draws its own training noise
    bottleneck_size: int = 1
    # the best settings of the hyperparameter study (moons.BEST), trained to convergence
    epochs: int = 300
    batch_size: int = 32
    lr: float = BEST["lr"]
    lr_schedule: str = BEST["lr_schedule"]
    hidden_size: int = BEST["hidden_size"]
    layers: int = BEST["layers"]

    def __post_init__(self):
        check_fields(
            self,
            {
                "n": 10,
                "seeds": 2,
                "bottleneck_size": 1,
                "epochs": 10,
                "batch_size": 1,
                "hidden_size": 1,
                "layers": 1,
            },
            positive=("lr", "train_noises", "test_noises"),
            tuples=("train_noises", "test_noises"),
        )
        for name in ("train_noises", "test_noises"):
            if not getattr(self, name):
                raise ValueError(f"{name} must list at least one noise level, got ().")
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(n=2000, seeds=10, epochs=1000)


def noisy(ds: Dataset, sigma: float, scale: torch.Tensor, seed: int) -> Dataset:
    """``ds`` plus Gaussian noise of standard deviation ``sigma * scale`` (per feature)."""
    X = ds.X + corrupt(torch.zeros_like(ds.X), 1.0, seed=seed) * (sigma * scale)
    return Dataset(X, ds.y, f"{ds.name} + noise {sigma:g}", ds.image_shape)


def run_noise_shift(
    s: NoiseShiftSettings, train, val, test, scale, course: bool, seed: int = 0, progress=None
) -> Runs:
    """One sweep over the training noises; every model is measured at every test noise."""
    tests = {t: noisy(test, t, scale, seed + NOISE_SEED_OFFSET - 1) for t in s.test_noises}
    metrics = {"val_fall": val_fall}
    for t, ds in tests.items():
        metrics[f"mse@{t:g}"] = lambda model, _, ds=ds: reconstruction_error(model, ds.X)
        # the clean points are what the noisy ones were made from: where the reconstructions lie
        metrics[f"clean_mse@{t:g}"] = lambda model, _, ds=ds: float(
            ((reconstruct(model, ds.X) - test.X) ** 2).mean()
        )
        if course:
            metrics[f"curve_distance@{t:g}"] = lambda model, _, ds=ds: float(
                distance_to_moons(reconstruct(model, ds.X))[0].mean()
            )
    if s.bottleneck_size == 1:
        widest = tests[max(tests)]
        metrics["curve_length"] = lambda model, _: curve_length(decoded_curve(model, widest.X))
    # train_noise goes to the factory (which ignores it) and to the data functions
    return sweep(
        lambda **_: Autoencoder(train.n_features, s.bottleneck_size, s.hidden_size, s.layers),
        lambda p, sd: noisy(train, p["train_noise"], scale, NOISE_SEED_OFFSET + sd),
        grid={"train_noise": list(s.train_noises)},
        seeds=[seed + i for i in range(s.seeds)],
        validation=lambda p, _: noisy(val, p["train_noise"], scale, seed + NOISE_SEED_OFFSET - 2),
        metrics=metrics,
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        lr_schedule=None if s.lr_schedule == "constant" else s.lr_schedule,
        progress=progress,
    )


def by_test_noise(runs: Runs) -> Runs:
    """One row per model and test noise: ``mse``, ``clean_mse`` (and ``curve_distance``)."""
    table = runs.table
    parts = []
    for column in [c for c in table if c.startswith("mse@")]:
        t = column[len("mse@") :]
        part = table[["train_noise", "seed"]].assign(
            test_noise=float(t), mse=table[column], clean_mse=table[f"clean_mse@{t}"]
        )
        if f"curve_distance@{t}" in table:
            part["curve_distance"] = table[f"curve_distance@{t}"]
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    return Runs(long, [None] * len(long), [None] * len(long), ["train_noise", "test_noise"])


def _trained(row) -> dict:
    return {
        **row,
        "a": f"trained at {row['train_noise_a']:g}",
        "b": f"trained at {row['train_noise_b']:g}",
    }


def noise_shift_findings(
    runs: Runs, s: NoiseShiftSettings, quick: bool = True
) -> tuple[list[str], str]:
    """Paired t-tests over seeds (Holm within each question), convergence judged first."""
    long = by_test_noise(runs)
    lo, t_hi = min(s.train_noises), max(s.test_noises)
    falls = runs.table.groupby("train_noise")["val_fall"].mean()
    convergence = (
        f"Over the last {LATE_SHARE:.0%} of the epochs the validation MSE (at the "
        "training noise) fell by "
        + ", ".join(f"{percent(f)} (trained at {k:g})" for k, f in falls.items())
        + f" (mean over seeds; above {STILL_FALLING:.0%} counts as not converged)."
    )
    # sweep's mean_mse is on the validation set here (the test sets are metrics)
    flat = collapsed_sentence(runs.table, "val_mse", "train_noise")
    at_hi = long.where(test_noise=t_hi)
    cell = at_hi.summary("mse", by="train_noise").set_index("train_noise")
    answer = (
        f"Trained at noise {lo:g} and tested at {t_hi:g} without retraining: test MSE "
        f"{ci_text(cell.loc[lo])}"
    )
    if not (falls <= STILL_FALLING).all():
        answer = not_converged(quick, s.epochs, "no levels are compared")
        return [answer, convergence, *flat], answer
    findings = []
    if len(s.train_noises) > 1:
        rows = at_hi.compare("mse", by="train_noise", against={"train_noise": lo})
        answer += "; " + compare_sentence(_trained(rows.iloc[-1]), f"test MSE at noise {t_hi:g}")
        for name, what in (
            ("clean_mse", "squared distance of the reconstructions to the clean test points"),
            ("curve_distance", "distance of the reconstructions to the noise-free curve"),
        ):
            if name in long.table:
                rows = at_hi.compare(name, by="train_noise", against={"train_noise": lo})
                findings += [
                    f"At test noise {t_hi:g}, " + compare_sentence(_trained(r), what)
                    for _, r in rows.iterrows()
                ]
        if "curve_length" in runs.table:
            rows = runs.compare("curve_length", by="train_noise", against={"train_noise": lo})
            findings += [
                "The decoder's curve over the test codes' range: "
                + compare_sentence(_trained(r), "length")
                for _, r in rows.iterrows()
            ]
    else:
        answer += "."
    if len(s.test_noises) > 1:
        rows = long.where(train_noise=lo).compare(
            "mse", by="test_noise", against={"test_noise": min(s.test_noises)}
        )
        findings += [
            f"The model trained at {lo:g}, tested at noise {r['test_noise_a']:g} and "
            f"{r['test_noise_b']:g}: "
            + compare_sentence(
                {**r, "a": f"noise {r['test_noise_a']:g}", "b": f"noise {r['test_noise_b']:g}"},
                "test MSE",
            )
            for _, r in rows.iterrows()
        ]
    return [answer, *findings, convergence, *flat], answer


def noise_shift_figures(
    runs: Runs, s: NoiseShiftSettings, test, scale, course: bool, seed: int = 0
) -> dict:
    long = by_test_noise(runs)
    unit = "" if course else " (x feature std)"
    fig, axs = new_figure(2, 1, width=5.5, height=4.3)
    for ax, (metric, what) in zip(
        axs.flat,
        (
            ("mse", "test MSE (against the noisy input)"),
            ("clean_mse", "MSE against the clean points"),
        ),
    ):
        for k, train_noise in enumerate(s.train_noises):
            rows = long.where(train_noise=train_noise).summary(metric, by="test_noise")
            ax.errorbar(
                rows["test_noise"] + (k - 0.5) * 0.004,
                rows["mean"],
                yerr=[rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]],
                marker="o",
                capsize=3,
                color=f"C{k}",
                label=f"trained at {train_noise:g}",
            )
        if course and metric == "mse":
            t = np.linspace(min(s.test_noises), max(s.test_noises), 50)
            ax.plot(t, t**2 / 2, color="k", ls=":", lw=1, label="noise floor σ²/2")
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_xticks(list(s.test_noises), [f"{t:g}" for t in s.test_noises])
        ax.set_xlabel(f"test noise{unit}")
        ax.set_ylabel(what)
        ax.set_title(f"{what[0].upper()}{what[1:]}\nmean and 95% CI over {s.seeds} seeds")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    figures = {"errors": fig}
    table = runs.table
    fig_r, axr = new_figure(len(s.test_noises), len(s.train_noises), width=4.8, height=4.2)
    for i, train_noise in enumerate(s.train_noises):
        index = np.flatnonzero(table["train_noise"].to_numpy() == train_noise)
        for j, t in enumerate(s.test_noises):
            errors = table[f"mse@{t:g}"].to_numpy()[index]
            m = index[median_member(errors)]
            X = noisy(test, t, scale, seed + NOISE_SEED_OFFSET - 1).X
            draw_reconstruction(
                axr[i, j],
                X,
                reconstruct(runs.models[m], X),
                f"trained at {train_noise:g}, tested at {t:g}\n"
                f"median seed {table['seed'][m]}: "
                f"test MSE {table[f'mse@{t:g}'][m]:.4f}",
                moons=course,
            )
    fig_r.suptitle(
        "Reconstructed vs original test points (rows: training noise, columns: test "
        "noise" + (")" if course else "; first two features)")
    )
    figures["reconstructions"] = fig_r
    if s.bottleneck_size == 1:  # the reconstructed set is the decoder's curve
        fig_c, axc = new_figure(1, 1, width=7.0, height=5.0)
        ax, t = axc[0, 0], max(s.test_noises)
        X = noisy(test, t, scale, seed + NOISE_SEED_OFFSET - 1).X
        ax.scatter(X[:, 0], X[:, 1], s=5, color="0.82", label=f"test points (noise {t:g})")
        for k, train_noise in enumerate(s.train_noises):
            index = np.flatnonzero(table["train_noise"].to_numpy() == train_noise)
            m = index[median_member(table["curve_length"].to_numpy()[index])]
            c = decoded_curve(runs.models[m], X).numpy()
            ax.plot(
                c[:, 0],
                c[:, 1],
                color=f"C{k}",
                lw=2,
                label=f"trained at {train_noise:g} "
                f"(median seed {table['seed'][m]}, length {table['curve_length'][m]:.2f})",
            )
        if course:
            draw_moons_curve(ax, f"noise-free moons (length {TRUE_CURVE_LENGTH:.2f})")
        finish_plane(
            ax,
            "The decoder's curve over the test codes' range"
            + ("" if course else " (first two features)"),
        )
        figures["curves"] = fig_c
    return figures


@study(
    "noise-shift",
    "Trained at one noise level, tested at another, and trained at the other:"
    " how the reconstructions change",
    settings=NoiseShiftSettings,
    data="any",
)
def noise_shift(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Train at each of ``train_noises``, test every model at each of ``test_noises``.

    On the course data (``data=None``) the noise is that of ``make_moons`` (in
    the data's units); on the user's data, Gaussian noise of ``sigma`` times each
    feature's standard deviation (in the training split) is added to the data.

    Examples
    --------
    >>> r = noise_shift(seeds=2, epochs=10)
    >>> sorted(r.tables["errors"]["test_noise"].unique().tolist())
    [0.1, 0.2]
    """
    s = resolve_settings(NoiseShiftSettings, quick, overrides)
    data = check_study_data("noise-shift", "any", data)
    course = data is None
    base = moons_data(s.n, 0.0, seed) if course else data
    train, val, test = split3(base, seed=seed)
    check_bottleneck(s.bottleneck_size, train)
    # make_moons' noise is in the data's units; on other data it is relative to each feature
    scale = torch.ones(train.n_features) if course else train.X.std(0).clamp_min(1e-12)
    runs = run_noise_shift(s, train, val, test, scale, course, seed, progress)
    findings, answer = noise_shift_findings(runs, s, quick)
    long = by_test_noise(runs)
    errors = long.summary("mse", by=["train_noise", "test_noise"])
    clean = long.summary("clean_mse", by=["train_noise", "test_noise"])
    errors = errors.merge(clean, on=["train_noise", "test_noise"], suffixes=("", " clean"))
    metrics = {
        f"mse_train{r.train_noise:g}_test{r.test_noise:g}": float(r.mean)
        for r in errors.itertuples()
    }
    config = asdict(s) | {
        "quick": quick,
        "seed": seed,
        "data": test.name,
        "noise": "make_moons noise" if course else "x feature std",
    }
    return StudyResult(
        "noise-shift",
        {"errors": errors, "runs": runs.table},
        noise_shift_figures(runs, s, test, scale, course, seed),
        findings,
        config,
        metrics,
        answer,
    )


moons_noise_shift = preset(
    "moons-noise-shift",
    "noise-shift",
    "1-D bottleneck trained at noise 0.1 tested at 0.2, and trained at 0.2: how reconstructions "
    "move",
)
