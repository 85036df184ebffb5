"""Two moons with a 1-D bottleneck (course sheet 002, task 1): hyperparameters and reproducibility.

Shared pieces of the moons-* studies live here too: the data sets, the model
builder and the drawing helpers (what every study shares is in
:mod:`aelab.studies._common`). The generative studies (code GMM, MMD) are in
:mod:`aelab.studies.moons_generative`, the noise-shift study in
:mod:`aelab.studies.moons_noise`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import NullLocator

from aelab import data
from aelab._checks import check_choice
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.models import Autoencoder
from aelab.plots import new_figure, plain_log_ticks, reconstruction_panel
from aelab.quality import MOON_CENTRES, distance_to_moons
from aelab.studies._base import StudyResult, study
from aelab.studies._common import (
    COLLAPSE_SHARE,
    collapsed,
    decoded_curve,
    mean_predictor_mse,
    setting,
    setting_list,
    train_stack,
)
from aelab.train import History

# test sets are drawn from seed + TEST_SEED_OFFSET, which no training set in these studies uses
TEST_SEED_OFFSET = 10_000


# --- shared helpers -------------------------------------------------------------------------


def moons_data(n: int, noise: float, seed: int) -> data.Dataset:
    """Two moons drawn with ``seed`` (a training set)."""
    return data.moons(n, noise=noise, seed=seed)


def moons_test(n: int, noise: float, seed: int) -> data.Dataset:
    """A held-out two-moons set from a seed no training set uses."""
    return data.moons(n, noise=noise, seed=seed + TEST_SEED_OFFSET)


def build_mlp(hidden_size: int, layers: int, seed: int, bottleneck_size: int = 1) -> Autoencoder:
    """``Autoencoder(2, bottleneck_size, hidden_size, layers)`` with weights drawn from ``seed``."""
    with seeded(seed):
        return Autoencoder(2, bottleneck_size, hidden_size, layers)


def diverged(history: History) -> bool:
    """Whether training (``on_diverge="restore"``) stopped this run because its loss became
    NaN or infinite and put it back to its initial weights."""
    return "diverged" in history.config


def moon_radius(X: torch.Tensor) -> float:
    """Mean distance of points from the centre of their nearest moon (1 on the noise-free curve)."""
    _, moon = distance_to_moons(X)
    return float((X - torch.tensor(MOON_CENTRES, dtype=X.dtype)[moon]).norm(dim=1).mean())


def draw_moons_curve(ax, label: str = "noise-free moons") -> None:
    curve = data.moons_curve(400).numpy()
    half = len(curve) // 2
    ax.plot(*curve[:half].T, color="k", lw=1.0, label=label, zorder=4)
    ax.plot(*curve[half:].T, color="k", lw=1.0, zorder=4)


def draw_reconstruction(ax, X, X_hat, title: str, max_lines: int = 300) -> None:
    """Original points, their reconstructions, a faint line between each pair, and the true curve."""
    reconstruction_panel(ax, X, X_hat, max_lines=max_lines, original_label="original (test)")
    draw_moons_curve(ax)
    finish_plane(ax, title)


def finish_plane(ax, title: str) -> None:
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper right")


def median_member(errors: list[float]) -> int:
    """Index of the run whose error is the (lower) median: a typical member, not the best."""
    order = np.argsort(errors)
    return int(order[(len(errors) - 1) // 2])


# --- moons-hyperparameters ------------------------------------------------------------------

_SCHEDULE_NAMES = {None: "constant", "cosine": "cosine", "step": "step"}


def _sweep_settings(default: dict, sizes, lrs, schedules, hidden_sizes, layer_counts):
    """Axis name -> list of (value, setting): each setting is the default with one field changed."""
    axes = {
        "training-set size": ("n_train", sizes),
        "learning rate": ("lr", lrs),
        "learning-rate schedule": ("lr_schedule", schedules),
        "hidden size": ("hidden_size", hidden_sizes),
        "hidden layers": ("layers", layer_counts),
    }
    return {axis: [(v, {**default, field: v}) for v in values]
            for axis, (field, values) in axes.items()}


def _setting_key(s: dict) -> tuple:
    return (s["n_train"], s["lr"], s["lr_schedule"], s["hidden_size"], s["layers"])


# a default run whose test MSE still fell by more than this share over the last LATE_SHARE of
# its epochs has not converged: the sweep then ranks how fast settings progress
STILL_FALLING = 0.05
LATE_SHARE = 0.1
TRAIN_AFTER = "train MSE after training"
TRAIN_RUNNING = "train loss in the last epoch (running mean over its steps)"
LATE_DROP = "test MSE drop over the last 10% of epochs"


def _late_drop(h: History) -> float:
    """Relative fall of the test loss over the last :data:`LATE_SHARE` of the epochs (NaN if too short).

    Compares the median test loss of the last ``LATE_SHARE / 2`` of the epochs with that
    of the window as long that ends ``LATE_SHARE`` of the epochs earlier: medians,
    because a single epoch's loss jumps (most at large learning rates).
    """
    k = max(1, int(round(LATE_SHARE * h.epochs)))
    w = max(1, k // 2)
    loss = np.asarray(h.test_loss)
    if len(loss) < h.epochs or len(loss) < k + w:  # too short, or stopped by a divergence
        return float("nan")
    return float(1.0 - np.median(loss[-w:]) / np.median(loss[-k - w:-k]))


def _geometric_epochs(epochs: int, count: int = 5) -> list[int]:
    return sorted({int(e) for e in np.round(np.geomspace(max(1, epochs / 100), epochs, count))})


def _summarise(runs: pd.DataFrame) -> pd.DataFrame:
    g = runs.groupby(["axis", "value"], sort=False)["test MSE"]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out[f"mean {LATE_DROP}"] = runs.groupby(["axis", "value"], sort=False)[LATE_DROP].mean().values
    for flag in ("collapsed", "diverged"):
        out[f"{flag} runs"] = runs.groupby(["axis", "value"], sort=False)[flag].sum().values
    return out.rename(columns={"mean": "mean test MSE", "std": "std test MSE", "min": "min test MSE",
                               "max": "max test MSE", "count": "seeds"})


def _log_mse_axis(ax) -> None:
    ax.set_yscale("log")
    plain_log_ticks(ax)


def _draw_references(ax, pca_mse: float, noise: float) -> None:
    ax.axhline(pca_mse, color="C2", ls="--", lw=1, label="PCA, 1 component")
    ax.axhline(noise**2 / 2, color="C1", ls=":", lw=1.2, label="noise floor σ²/2")


def _draw_sweep(ax, axis: str, summary: pd.DataFrame, runs: pd.DataFrame, pca_mse: float,
                noise: float, default_value) -> None:
    s = summary[summary["axis"] == axis]
    r = runs[runs["axis"] == axis]
    labels = [str(v) for v in s["value"]]
    categorical = axis == "learning-rate schedule"
    positions = np.arange(len(s)) if categorical else s["value"].astype(float).to_numpy()
    pos_of = dict(zip(labels, positions))
    x_runs = np.array([pos_of[str(v)] for v in r["value"]], dtype=float)
    ax.scatter(x_runs, r["test MSE"], s=14, color="0.55", alpha=0.7, label="one seed", zorder=2)
    bad = r["collapsed"].to_numpy(bool)
    if bad.any():
        ax.scatter(x_runs[bad], r["test MSE"][bad], s=60, marker="x", color="C3",
                   label="no better than the mean", zorder=4)
    ax.errorbar(positions, s["mean test MSE"], yerr=s["std test MSE"].fillna(0), color="C0",
                marker="o", capsize=3, label=f"mean ± std ({int(s['seeds'].max())} seeds)", zorder=3)
    _draw_references(ax, pca_mse, noise)
    if categorical:
        ax.set_xticks(positions, labels)
    elif axis in ("training-set size", "learning rate", "hidden size"):
        ax.set_xscale("log")
        ax.set_xticks(positions, labels)
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_xticks(positions, labels)
    if default_value is not None and str(default_value) in pos_of:
        mean = s["mean test MSE"].to_numpy()[labels.index(str(default_value))]
        ax.scatter([pos_of[str(default_value)]], [mean], s=180, facecolors="none",
                   edgecolors="k", lw=1.5, label="default setting", zorder=5)
    _log_mse_axis(ax)
    ax.set_xlabel(axis)
    ax.set_ylabel("test reconstruction MSE")
    ax.set_title(f"Test error vs {axis}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="x-small")


def _draw_epochs(ax, histories: list[History], pca_mse: float, noise: float,
                 checkpoints: list[int]) -> None:
    n_epochs = max(len(h.test_loss) for h in histories)
    curves = np.full((len(histories), n_epochs), np.nan)  # (seeds, epochs); NaN after a divergence
    for i, h in enumerate(histories):
        curves[i, :len(h.test_loss)] = h.test_loss
    epochs = np.arange(1, n_epochs + 1)
    for i, c in enumerate(curves):
        ax.plot(epochs, c, color="0.6", lw=0.7, label="one seed" if i == 0 else None)
    mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
    ax.plot(epochs, mean, color="C0", lw=2, label=f"mean over {len(curves)} seeds")
    ax.fill_between(epochs, np.maximum(mean - std, 1e-6), mean + std, color="C0", alpha=0.2,
                    label="± std")
    _draw_references(ax, pca_mse, noise)
    ax.set_xscale("log")
    _log_mse_axis(ax)
    ax.set_xticks(checkpoints, [str(c) for c in checkpoints])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("epochs trained (default setting, constant lr)")
    ax.set_ylabel("test reconstruction MSE")
    ax.set_title("Test error vs epochs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def _describe(setting: dict) -> str:
    return (f"n={setting['n_train']}, lr={setting['lr']:g} "
            f"({_SCHEDULE_NAMES[setting['lr_schedule']]}), "
            f"{setting['layers']} x {setting['hidden_size']} hidden")


@study("moons-hyperparameters",
       "1-D bottleneck on two moons: test error vs data size, epochs, lr (+schedule), width, depth")
def moons_hyperparameters(quick: bool = True, seed: int = 0, *, progress=None,
                          n_seeds: int | None = None, n_train: int | None = None,
                          n_test: int | None = None, epochs: int | None = None,
                          batch_size: int | None = None, noise: float = 0.1,
                          lr: float = 3e-3, hidden_size: int = 32, layers: int = 2,
                          sizes=None, lrs=None, schedules=(None, "cosine", "step"),
                          hidden_sizes=None, layer_counts=None) -> StudyResult:
    """Sweep one hyperparameter at a time around a default setting, over several seeds.

    Each setting is the default with one field changed; each is trained with
    ``n_seeds`` model seeds (initial weights and data order) on the same training
    set and scored on one held-out test set. The epoch axis reads the test loss
    after every epoch of the default runs: with a constant learning rate this is
    exactly what a run stopped at that epoch would give.

    Examples
    --------
    >>> r = moons_hyperparameters(quick=True, n_seeds=1, epochs=2, sizes=[100, 200])
    >>> sorted(r.figures)
    ['best-vs-poor', 'sweeps']
    """
    n_seeds = setting("n_seeds", n_seeds, quick, 2, 5)
    n_train = setting("n_train", n_train, quick, 400, 1000)
    n_test = setting("n_test", n_test, quick, 500, 2000)
    epochs = setting("epochs", epochs, quick, 300, 1000)
    batch_size = setting("batch_size", batch_size, quick, 32, 32)
    sizes = setting_list("sizes", sizes, quick, [100, 200, 400], [100, 300, 1000, 3000])
    lrs = setting_list("lrs", lrs, quick, [1e-3, 3e-3, 1e-2], [3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    hidden_sizes = setting_list("hidden_sizes", hidden_sizes, quick, [8, 32], [8, 16, 32, 64, 128])
    layer_counts = setting_list("layer_counts", layer_counts, quick, [1, 2], [1, 2, 3, 4])
    schedules = [check_choice("schedules", v, tuple(_SCHEDULE_NAMES)) for v in schedules]
    if not schedules:
        raise ValueError("schedules must list at least one of None, 'cosine', 'step', got [].")
    default = dict(n_train=n_train, lr=lr, lr_schedule=None, hidden_size=hidden_size, layers=layers)
    seeds = [seed + i for i in range(n_seeds)]
    config = dict(quick=quick, seed=seed, seeds=seeds, n_test=n_test, epochs=epochs,
                  batch_size=batch_size, noise=noise, default=dict(default), sizes=sizes,
                  lrs=lrs, schedules=[_SCHEDULE_NAMES[s] for s in schedules],
                  hidden_sizes=hidden_sizes, layer_counts=layer_counts, optimizer="adam")

    test = moons_test(n_test, noise, seed)
    sweeps = _sweep_settings(default, sizes, lrs, schedules, hidden_sizes, layer_counts)
    unique = {_setting_key(s): s for values in sweeps.values() for _, s in values}
    unique.setdefault(_setting_key(default), default)
    train_sets = {n: moons_data(n, noise, seed) for n in {s["n_train"] for s in unique.values()}}
    pca_mse = PCA(1).fit(train_sets[n_train].X).reconstruction_error(test.X)
    floor = mean_predictor_mse(test.X)

    trained = {}  # setting key -> list of (model, history), one per seed
    # one call per schedule (shared by a call); train_many stacks equal shapes and data sizes
    by_schedule: dict[str | None, list[dict]] = {}
    for s in unique.values():
        by_schedule.setdefault(s["lr_schedule"], []).append(s)
    for schedule, settings in by_schedule.items():
        jobs = [(s, sd) for s in settings for sd in seeds]
        models = [build_mlp(s["hidden_size"], s["layers"], sd) for s, sd in jobs]
        # a run whose loss blows up is put back to its initial weights and reported, not fatal
        histories = train_stack(models, [train_sets[s["n_train"]] for s, _ in jobs], test=test,
                                epochs=epochs, batch_size=batch_size,
                                lr=[s["lr"] for s, _ in jobs], seeds=[sd for _, sd in jobs],
                                lr_schedule=schedule, on_diverge="restore", progress=progress)
        for (s, _), m, h in zip(jobs, models, histories):
            trained.setdefault(_setting_key(s), []).append((m, h))

    rows = []
    for axis, values in sweeps.items():
        for value, s in values:
            for sd, (m, h) in zip(seeds, trained[_setting_key(s)]):
                test_mse = reconstruction_error(m, test.X)
                rows.append(dict(axis=axis, value=_SCHEDULE_NAMES.get(value, value)
                                 if axis == "learning-rate schedule" else value,
                                 seed=sd, n_train=s["n_train"], epochs=epochs, lr=s["lr"],
                                 lr_schedule=_SCHEDULE_NAMES[s["lr_schedule"]],
                                 hidden_size=s["hidden_size"], layers=s["layers"],
                                 steps=len(h.step_loss),
                                 **{TRAIN_AFTER: reconstruction_error(m, train_sets[s["n_train"]].X),
                                    TRAIN_RUNNING: h.train_loss[-1],
                                    "test MSE": test_mse, LATE_DROP: _late_drop(h),
                                    "collapsed": collapsed(test_mse, floor),
                                    "diverged": diverged(h)}))
    default_runs = trained[_setting_key(default)]
    checkpoints = _geometric_epochs(epochs)
    for e in checkpoints:
        for sd, (m, h) in zip(seeds, default_runs):
            if e > len(h.test_loss):  # a diverged run stopped before this epoch
                continue
            rows.append(dict(axis="epochs", value=e, seed=sd, n_train=n_train, epochs=e, lr=lr,
                             lr_schedule="constant", hidden_size=hidden_size, layers=layers,
                             steps=len(h.step_loss) * e // epochs,
                             # History has no after-epoch train error: only the running mean
                             **{TRAIN_AFTER: float("nan"), TRAIN_RUNNING: h.train_loss[e - 1],
                                "test MSE": h.test_loss[e - 1], LATE_DROP: float("nan"),
                                "collapsed": collapsed(h.test_loss[e - 1], floor),
                                "diverged": False}))
    runs = pd.DataFrame(rows)
    runs[["collapsed", "diverged"]] = runs[["collapsed", "diverged"]].astype(bool)
    summary = _summarise(runs)

    # best and poorest trained setting (the epoch rows are the default runs stopped early)
    trained_summary = summary[summary["axis"] != "epochs"]
    by_key = {}
    for axis, values in sweeps.items():
        for value, s in values:
            label = _SCHEDULE_NAMES.get(value, value) if axis == "learning-rate schedule" else value
            by_key[(axis, str(label))] = s
    best_row = trained_summary.loc[trained_summary["mean test MSE"].idxmin()]
    poor_row = trained_summary.loc[trained_summary["mean test MSE"].idxmax()]
    chosen = {}
    for name, row in (("best", best_row), ("poor", poor_row)):
        s = by_key[(row["axis"], str(row["value"]))]
        members = trained[_setting_key(s)]
        errors = [reconstruction_error(m, test.X) for m, _ in members]
        i = median_member(errors)
        chosen[name] = (s, members[i][0], errors[i], seeds[i])

    fig_sweeps, axs = new_figure(3, 2, width=4.6, height=3.8)
    default_values = {"training-set size": n_train, "learning rate": lr,
                      "learning-rate schedule": "constant", "hidden size": hidden_size,
                      "hidden layers": layers}
    panels = list(sweeps)
    _draw_epochs(axs[0, 0], [h for _, h in default_runs], pca_mse, noise, checkpoints)
    for ax, axis in zip(axs.flat[1:], panels):
        _draw_sweep(ax, axis, summary, runs, pca_mse, noise, default_values[axis])
    limits = np.array([ax.get_ylim() for ax in axs.flat[1:]])
    for ax in axs.flat[1:]:  # one scale for the one-at-a-time sweeps, so they compare at a glance
        ax.set_ylim(limits[:, 0].min(), limits[:, 1].max())
    fig_sweeps.suptitle(f"Two moons (noise {noise:g}), bottleneck 1: test MSE on {n_test} held-out "
                        f"points; default {_describe(default)}, {epochs} epochs")

    fig_best, axb = new_figure(2, 1, width=5.5, height=4.5)
    for ax, name in zip(axb.flat, ("best", "poor")):
        s, model, err, sd = chosen[name]
        draw_reconstruction(ax, test.X, reconstruct(model, test.X),
                            f"{name.capitalize()} setting: {_describe(s)}\n"
                            f"seed {sd} (the median run), test MSE {err:.4f}")
    fig_best.suptitle("Reconstructed vs original test points")

    def stat(axis, value):
        row = summary[(summary["axis"] == axis) & (summary["value"].astype(str) == str(value))].iloc[0]
        return row["mean test MSE"], row["std test MSE"]

    def steps_of(size):
        return int(runs.loc[(runs["axis"] == "training-set size") & (runs["value"] == size),
                            "steps"].iloc[0])

    def pm(axis, value):
        mean, std = stat(axis, value)
        return f"{mean:.4f} ± {0 if np.isnan(std) else std:.2g}"

    # each distinct trained run counted once (the default appears on every axis)
    distinct = runs[runs["axis"] != "epochs"].drop_duplicates(
        ["n_train", "lr", "lr_schedule", "hidden_size", "layers", "seed"])
    n_collapsed = int(distinct["collapsed"].sum())
    n_diverged = int(distinct["diverged"].sum())
    best_lr = min(lrs, key=lambda v: stat("learning rate", v)[0])
    # has training converged? the fall of the test MSE over the last epochs, per setting
    by_setting = distinct.groupby(["n_train", "lr", "lr_schedule", "hidden_size", "layers"])
    drops = by_setting[LATE_DROP].mean().dropna()  # one value per distinct trained setting
    late_epochs = max(1, int(round(LATE_SHARE * epochs)))
    default_steps = len(default_runs[0][1].step_loss)
    default_drop = float(np.nanmean([_late_drop(h) for _, h in default_runs]))
    if len(drops):
        most_drop = float(drops.max())
        most = dict(zip(["n_train", "lr", "lr_schedule", "hidden_size", "layers"], drops.idxmax()))
        most["lr_schedule"] = {v: k for k, v in _SCHEDULE_NAMES.items()}[most["lr_schedule"]]
        n_falling = int((drops > STILL_FALLING).sum())
        still_falling = most_drop > STILL_FALLING
        convergence = (
            f"Over the last {late_epochs} of {epochs} epochs (medians of "
            f"{max(1, late_epochs // 2)}-epoch windows) the default setting's test MSE fell "
            f"by {default_drop:.1%} (mean over seeds; the most: {most_drop:.1%}, {_describe(most)}; "
            f"{n_falling} of {len(drops)} trained settings fell by more than "
            f"{STILL_FALLING:.0%}). "
            + (f"{'The' if n_falling == len(drops) else 'Some'} runs are still improving, so this sweep ranks how far each setting gets in "
               f"{epochs} epochs ({default_steps} optimizer steps for the default), i.e. "
               "convergence speed, not the error it would converge to; more epochs (quick=False) "
               "may change the ranking." if still_falling else
               "The runs have (nearly) converged, so the sweep compares final errors."))
    else:  # every run diverged or trained for a single epoch
        still_falling, convergence = True, (
            f"Convergence cannot be judged from {epochs} epoch(s): the sweep ranks how far each "
            f"setting gets in {default_steps} optimizer steps.")
    when = f" after {epochs} epochs" if still_falling else ""

    def name_of(row):
        if by_key[(row["axis"], str(row["value"]))] == default:
            return "the default setting"
        return f"{row['axis']} = {row['value']}"

    findings = [
        f"Best setting{when}: {name_of(best_row)} ({_describe(chosen['best'][0])}) "
        f"with test MSE {pm(best_row['axis'], best_row['value'])} over {n_seeds} seeds; poorest: "
        f"{name_of(poor_row)} with {pm(poor_row['axis'], poor_row['value'])}. "
        f"PCA with one component reaches {pca_mse:.4f}; the noise floor σ²/2 = "
        f"{noise**2 / 2:.4f} is the error of a perfect 1-D curve, which cannot remove the noise "
        "across it.",
        convergence,
        f"Training-set size: test MSE {pm('training-set size', sizes[0])} with {sizes[0]} points vs "
        f"{pm('training-set size', sizes[-1])} with {sizes[-1]}, at a fixed {epochs} epochs "
        f"(so the small set also gets only {steps_of(sizes[0])} optimizer steps, against "
        f"{steps_of(sizes[-1])}).",
        f"Epochs: the default runs' test MSE is {pm('epochs', checkpoints[0])} after "
        f"{checkpoints[0]} epoch(s) and {pm('epochs', checkpoints[-1])} after {checkpoints[-1]}.",
        f"Learning rate: {best_lr:g} is best{when} ({pm('learning rate', best_lr)}); "
        + ", ".join(f"{v:g} gives {stat('learning rate', v)[0]:.4f}" for v in lrs if v != best_lr)
        + ".",
        f"Schedules at lr {lr:g}{when}: " + ", ".join(
            f"{name} {pm('learning-rate schedule', name)}" for name in config["schedules"]) + ".",
        "Hidden size: " + ", ".join(f"{v} units {stat('hidden size', v)[0]:.4f}"
                                    for v in hidden_sizes)
        + "; hidden layers: " + ", ".join(f"{v} layer(s) {stat('hidden layers', v)[0]:.4f}"
                                          for v in layer_counts) + ".",
        f"{n_collapsed} of {len(distinct)} trained runs did no better than predicting the mean "
        f"(collapsed or failed: test MSE >= {COLLAPSE_SHARE:g} x the mean predictor's "
        f"{floor:.3f})"
        + ("." if n_collapsed == 0 else "; they are marked with a red x in the sweep figure."),
    ]
    if n_diverged:
        bad = distinct[distinct["diverged"]]
        findings.append(
            f"{n_diverged} run(s) diverged (loss NaN or infinite) and were put back to their initial "
            "weights: " + "; ".join(f"{r.axis} = {r.value}, seed {r.seed}" for r in bad.itertuples())
            + ".")
    metrics = {"best_test_mse": float(best_row["mean test MSE"]),
               "poor_test_mse": float(poor_row["mean test MSE"]),
               "default_test_mse": float(stat("learning rate", lr)[0]),
               "pca_test_mse": float(pca_mse), "collapsed_runs": n_collapsed,
               "diverged_runs": n_diverged, "default_late_drop": default_drop,
               "trained_runs": int(len(distinct))}
    return StudyResult("moons-hyperparameters", {"summary": summary, "runs": runs},
                       {"sweeps": fig_sweeps, "best-vs-poor": fig_best}, findings, config, metrics)


# --- moons-reproducibility ------------------------------------------------------------------


def variance_ratio_test(a, b, level: float = 0.05) -> tuple[float, float, float]:
    """Two-sided F test of equal variances of two independent samples ``a`` and ``b``.

    Returns ``(std ratio b / a, p-value, critical std ratio)``: the ratio must
    exceed the critical one, or fall below its inverse, to differ at ``level``.
    The test assumes normal errors, so with few runs it is a rough guide.

    >>> ratio, p, critical = variance_ratio_test([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    >>> round(ratio, 2), round(p, 3), round(critical, 2)
    (2.0, 0.285, 3.93)
    """
    from scipy.stats import f as f_dist

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the F test needs at least 2 values per sample, got {len(a)} and {len(b)}.")
    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
    df_b, df_a = len(b) - 1, len(a) - 1
    if var_a == 0 or var_b == 0:  # identical runs: no spread to compare
        return (float("nan") if var_a == 0 else 0.0), float("nan"), float("nan")
    F = var_b / var_a
    p = float(min(1.0, 2 * min(f_dist.cdf(F, df_b, df_a), f_dist.sf(F, df_b, df_a))))
    critical = float(np.sqrt(f_dist.ppf(1 - level / 2, df_b, df_a)))
    return float(np.sqrt(F)), p, critical


def _pointwise_spread(X_hats: torch.Tensor) -> float:
    """Mean over points of the RMS distance of each run's reconstruction from the runs' mean.

    ``X_hats`` is (runs, points, 2): the same test points reconstructed by every run.
    """
    centre = X_hats.mean(0, keepdim=True)
    return float(((X_hats - centre) ** 2).sum(-1).mean(0).sqrt().mean())


@study("moons-reproducibility",
       "1-D bottleneck on two moons: spread of error and curve over seeds, same data vs new data")
def moons_reproducibility(quick: bool = True, seed: int = 0, *, progress=None,
                          n_runs: int | None = None, n_train: int | None = None,
                          n_test: int | None = None, epochs: int | None = None,
                          batch_size: int | None = None, noise: float = 0.1, lr: float = 3e-3,
                          hidden_size: int = 32, layers: int = 2) -> StudyResult:
    """Repeat training with new model seeds on the same data, and with new data each time.

    Run ``i`` uses model seed ``seed + i`` in both conditions; in "same data"
    every run trains on the set drawn with ``seed``, in "new data" run ``i``
    trains on the set drawn with ``seed + 1 + i``. The pairing means the two
    conditions differ only in the training data. All runs are scored on one
    held-out test set. Whether the test error spreads more in one condition is
    judged by a two-sided F test of the two variances (:func:`variance_ratio_test`;
    it treats the conditions as independent samples of normal errors).

    Examples
    --------
    >>> r = moons_reproducibility(quick=True, n_runs=2, epochs=2)
    >>> r.tables["spread"]["condition"].tolist()
    ['same data, new seed', 'new data, new seed']
    """
    # 8 runs a condition: the F test then detects a std ratio beyond 2.2 (4 runs: beyond 3.9)
    n_runs = setting("n_runs", n_runs, quick, 8, 10, minimum=2)
    n_train = setting("n_train", n_train, quick, 400, 1000)
    n_test = setting("n_test", n_test, quick, 500, 2000)
    epochs = setting("epochs", epochs, quick, 150, 1000)
    batch_size = setting("batch_size", batch_size, quick, 64, 32)
    config = dict(quick=quick, seed=seed, n_runs=n_runs, n_train=n_train, n_test=n_test,
                  epochs=epochs, batch_size=batch_size, noise=noise, lr=lr,
                  hidden_size=hidden_size, layers=layers, optimizer="adam")
    test = moons_test(n_test, noise, seed)
    floor = mean_predictor_mse(test.X)
    seeds = [seed + i for i in range(n_runs)]
    conditions = {
        "same data, new seed": [moons_data(n_train, noise, seed)] * n_runs,
        "new data, new seed": [moons_data(n_train, noise, seed + 1 + i) for i in range(n_runs)],
    }
    # both conditions in one call: 2 x n_runs models of one shape, trained as one stack
    models_of = {c: [build_mlp(hidden_size, layers, s) for s in seeds] for c in conditions}
    histories = train_stack([m for ms in models_of.values() for m in ms],
                            [tr for trs in conditions.values() for tr in trs], test=test,
                            epochs=epochs, batch_size=batch_size, lr=lr, seeds=seeds * 2,
                            on_diverge="restore", progress=progress)
    histories_of = {c: histories[k * n_runs:(k + 1) * n_runs] for k, c in enumerate(conditions)}
    rows, spread_rows, curves = [], [], {}
    for condition, trains in conditions.items():
        models = models_of[condition]
        X_hats = torch.stack([reconstruct(m, test.X) for m in models])  # (runs, points, 2)
        curves[condition] = [decoded_curve(m, test.X) for m in models]
        errors = []
        for i, (m, tr, X_hat, h) in enumerate(zip(models, trains, X_hats, histories_of[condition])):
            err = reconstruction_error(m, test.X)
            errors.append(err)
            rows.append({"condition": condition, "run": i + 1, "model seed": seeds[i],
                         "data seed": seed if condition.startswith("same") else seed + 1 + i,
                         "train MSE": reconstruction_error(m, tr.X), "test MSE": err,
                         "distance of reconstructions to curve": float(
                             distance_to_moons(X_hat)[0].mean()),
                         "collapsed": collapsed(err, floor), "diverged": diverged(h)})
        errors = np.array(errors)
        spread_rows.append({"condition": condition, "runs": n_runs,
                            "mean test MSE": errors.mean(), "std test MSE": errors.std(ddof=1),
                            "min test MSE": errors.min(), "max test MSE": errors.max(),
                            "max / min": errors.max() / errors.min(),
                            "pointwise spread of reconstructions": _pointwise_spread(X_hats)})
    runs = pd.DataFrame(rows)
    spread = pd.DataFrame(spread_rows)
    # is the difference in spread more than chance? few runs need a large ratio
    errors_of = {c: runs.loc[runs["condition"] == c, "test MSE"].to_numpy() for c in conditions}
    ratio, p_value, critical = variance_ratio_test(*errors_of.values())

    fig_err, axs = new_figure(1, 1, width=6.0, height=4.2)
    ax = axs[0, 0]
    for j, (condition, s) in enumerate(zip(spread["condition"], spread_rows)):
        y = runs.loc[runs["condition"] == condition, "test MSE"].to_numpy()
        jitter = np.linspace(-0.12, 0.12, len(y))
        ax.scatter(j + jitter, y, s=24, color="0.5", label="one run" if j == 0 else None, zorder=2)
        ax.errorbar(j + 0.25, s["mean test MSE"], yerr=s["std test MSE"], color="C0", marker="o",
                    capsize=4, label="mean ± std" if j == 0 else None, zorder=3)
    ax.set_xticks([0, 1], list(spread["condition"]))
    ax.set_xlim(-0.5, 1.5)
    ax.set_xlabel("what changes between runs")
    ax.set_ylabel("test reconstruction MSE")
    ax.set_title(f"Spread of the test error over {n_runs} runs ({epochs} epochs, n={n_train})\n"
                 f"std ratio new / same data {ratio:.2f}, two-sided F test p = {p_value:.2g}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")

    fig_curves, axc = new_figure(2, 1, width=5.5, height=4.5)
    for ax, (condition, cs), s in zip(axc.flat, curves.items(), spread_rows):
        ax.scatter(test.X[:, 0], test.X[:, 1], s=5, color="0.8", label="test points", zorder=1)
        for i, c in enumerate(cs):
            ax.plot(c[:, 0], c[:, 1], lw=1.3, color=f"C{i % 10}", alpha=0.85,
                    label=f"run {i + 1}", zorder=2)
        draw_moons_curve(ax)
        finish_plane(ax, f"{condition}: decoded curves of {n_runs} runs\n"
                         f"pointwise spread {s['pointwise spread of reconstructions']:.3f}")
        ax.legend(fontsize="x-small", loc="upper right", ncols=2)
    fig_curves.suptitle("Where each run's reconstructions lie (its decoder over the test codes' range)")

    a, b = spread_rows
    more = "new data" if b["std test MSE"] > a["std test MSE"] else "new seeds on the same data"
    if np.isnan(p_value):
        spread_finding = (f"The std ratio new data / same data is {ratio:.2f}: at least one "
                          f"condition's {n_runs} runs have identical test errors, so no F test.")
    elif p_value < 0.05:
        spread_finding = (f"The spread of the test error is larger with {more} (std ratio new "
                          f"data / same data = {ratio:.2f}, two-sided F test p = {p_value:.2g} "
                          f"with {n_runs} runs per condition).")
    else:
        spread_finding = (f"The std ratio new data / same data is {ratio:.2f}, but with {n_runs} "
                          f"runs per condition the spreads do not differ significantly at the 5% "
                          f"level (two-sided F test p = {p_value:.2g}; the ratio would have to "
                          f"exceed {critical:.2f} or fall below {1 / critical:.2f}); more runs "
                          "(n_runs, or quick=False) narrow that range.")
    n_collapsed = int(runs["collapsed"].sum())
    findings = [
        f"Same data, new seeds: test MSE {a['mean test MSE']:.4f} ± {a['std test MSE']:.4f} "
        f"(range {a['min test MSE']:.4f}-{a['max test MSE']:.4f}); new data each time: "
        f"{b['mean test MSE']:.4f} ± {b['std test MSE']:.4f} "
        f"(range {b['min test MSE']:.4f}-{b['max test MSE']:.4f}) over {n_runs} runs each.",
        spread_finding,
        f"The reconstruction of a test point moves by {a['pointwise spread of reconstructions']:.3f} "
        f"(RMS over runs, averaged over points) between seeds on the same data and by "
        f"{b['pointwise spread of reconstructions']:.3f} with new data; the noise level is {noise:g}.",
        f"{n_collapsed} of {len(runs)} runs did no better than predicting the mean, and "
        f"{int(runs['diverged'].sum())} diverged (put back to their initial weights).",
    ]
    metrics = {"same_data_mean_mse": float(a["mean test MSE"]),
               "same_data_std_mse": float(a["std test MSE"]),
               "new_data_mean_mse": float(b["mean test MSE"]),
               "new_data_std_mse": float(b["std test MSE"]),
               "same_data_spread": float(a["pointwise spread of reconstructions"]),
               "new_data_spread": float(b["pointwise spread of reconstructions"]),
               "collapsed_runs": n_collapsed}
    if not np.isnan(p_value):
        metrics.update(std_ratio=ratio, std_ratio_p_value=p_value)
    return StudyResult("moons-reproducibility", {"spread": spread, "runs": runs},
                       {"test-error": fig_err, "curves": fig_curves}, findings, config, metrics)
