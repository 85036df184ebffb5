"""Course sheet 6: autoencoders with a one-dimensional code on the rectangle [-2, 2] x [-1, 1].

The sheet trains three architectures on uniform points of the rectangle with
Adam (lr 1e-3, batch 8, 1000 epochs):

* "small": 2-20-10-1-10-20-2 (ReLU),
* "big": 2-50-50-50-1-50-50-50-2 (ReLU),
* "PCA-like": the linear autoencoder 2-1-2.

This module holds the studies that look at what those models learn
(sheet6-architectures, sheet6-pca, sheet6-decoder-curves), each one
:func:`aelab.sweep` over seeds read through :class:`aelab.Runs`, and the
helpers the other sheet-6 studies share; the training experiments
(memorisation, frozen decoder, GD vs SGD) are in :mod:`aelab.studies.sheet6_training`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from scipy.linalg import subspace_angles
from torch import nn

from aelab import data, plots
from aelab._checks import check_int, check_positive_float
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.experiments import Runs, compare_sentence, sweep
from aelab.models import Autoencoder, LinearAutoencoder
from aelab.plots import plain_log_ticks
from aelab.studies._base import StudyResult, check_study_data, resolve_settings, study
from aelab.studies._common import COLLAPSE_SHARE, code_interval, codes, decode_line
from aelab.train import History

__all__ = [
    "sheet6_architectures",
    "sheet6_pca",
    "sheet6_decoder_curves",
    "ARCHITECTURES",
    "CourseSettings",
    "PcaSettings",
    "DecoderCurveSettings",
]

# name -> (layer sizes as the sheet writes them, builder)
ARCHITECTURES: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "small": ("2-20-10-1-10-20-2", lambda: Autoencoder.from_widths([20, 10], 1, 2)),
    "big": ("2-50-50-50-1-50-50-50-2", lambda: Autoencoder.from_widths([50, 50, 50], 1, 2)),
    "PCA-like": ("2-1-2, linear", lambda: LinearAutoencoder(2, 1)),
}

COURSE = dict(n=100, epochs=1000, batch_size=8, lr=1e-3)  # the sheet's settings (quick=False)
QUICK_EPOCHS = 100  # sheet6_training's quick runs
CURVE_CMAP = "plasma"
CURVE_VIEW = (-2.7, 2.7, -1.6, 1.6)  # what the decoder-curve panels show
EXTENT = (-2.2, 2.2, -1.2, 1.2)  # the rectangle with a margin, for maps over the input plane
STATES = ("before training", "after training")


# --- shared helpers (also used by aelab.studies.sheet6_training) ---------------------------


def course_settings(quick: bool, n: int | None, epochs: int | None) -> dict:
    """The sheet's data size and optimiser settings; quick runs train for fewer epochs."""
    return dict(
        COURSE,
        n=COURSE["n"] if n is None else check_int("n", n, 1),
        epochs=(QUICK_EPOCHS if quick else COURSE["epochs"])
        if epochs is None
        else check_int("epochs", epochs, 1),
    )


def build(architecture: str, seed: int) -> nn.Module:
    """One of :data:`ARCHITECTURES`, its weights drawn from ``seed`` as :func:`aelab.sweep` does."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}."
        )
    with seeded(seed):
        return ARCHITECTURES[architecture][1]()


def _factory(architecture: str) -> nn.Module:  # sweep's model factory (it seeds the call)
    return ARCHITECTURES[architecture][1]()


def label(architecture: str) -> str:
    return f"{architecture} ({ARCHITECTURES[architecture][0]})"


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear_pieces(
    model: nn.Module, low: float, high: float, steps: int = 20001, tol: float = 1e-7
) -> int:
    """Number of straight pieces of the decoder's curve over codes in [low, high].

    The decoders here are ReLU networks of a scalar, so their curve is piecewise
    linear. The slope is measured between neighbouring codes of a fine grid in
    float64; a kink shows as one run of changed slopes.
    """
    decoder = copy.deepcopy(model).cpu().double()
    z = torch.linspace(low, high, steps, dtype=torch.float64)[:, None]
    with torch.no_grad():
        x = decoder.decode(z)
    slopes = x.diff(dim=0) / (z[1] - z[0])  # (steps - 1, 2)
    scale = 1.0 + float(slopes.norm(dim=1).max())
    change = ((slopes[1:] - slopes[:-1]).norm(dim=1) > tol * scale).numpy()
    kinks = int(change[0]) + int((change[1:] & ~change[:-1]).sum()) if len(change) else 0
    return kinks + 1


def distance_to_curve(X: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """Each point's distance to the nearest of the curve's (densely sampled) points."""
    return torch.cdist(X.double(), curve.double()).min(dim=1).values


def data_panel(ax, X, *, s: float = 8, color: str = "0.6", label: str | None = "training points"):
    """The training points in grey, equal axes, labelled x1/x2."""
    X = np.asarray(X)
    ax.scatter(X[:, 0], X[:, 1], s=s, color=color, label=label, zorder=1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal", adjustable="datalim")


def ci_text(row, fmt: str = ".4f") -> str:
    """``0.1234 (95% CI 0.1200-0.1268)`` from a :meth:`Runs.summary` row."""
    return f"{row['mean']:{fmt}} (95% CI {row['ci_low']:{fmt}}-{row['ci_high']:{fmt}})"


# --- settings, data and convergence shared by the three studies -----------------------------


@dataclass(frozen=True)
class CourseSettings:
    """The sheet's data and optimiser, and the seeds and fresh points that measure them."""

    n: int = 100  # training points, the sheet's first run (it also tries 1000: --set n=1000)
    # quick: the ranking matches 1000 epochs' (big ~ small < PCA-like, seed 0), errors ~8% higher
    epochs: int = 200
    batch_size: int = 8  # the sheet's DataLoader(batch_size=8, drop_last=True)
    lr: float = 1e-3  # Adam's default, which the sheet uses
    seeds: int = 5  # weight and data-order seeds per model; >= 5 so differences can be tested
    n_val: int = 500  # fresh points: the per-epoch loss, selection and the convergence check
    n_test: int = 1000  # fresh points every reported error is measured on
    tail: float = 0.1  # last share of the epochs: convergence and per-step-noise window
    # not converged: the validation loss fell more than this share over the tail (mean over
    # seeds). Measured at 200 epochs: up to 1.2% (seeds 0, 1); at 1000: at most 0.1%
    still_falling: float = 0.02

    def __post_init__(self):
        for name, minimum in (
            ("n", 1),
            ("epochs", 1),
            ("batch_size", 1),
            ("seeds", 2),
            ("n_val", 1),
            ("n_test", 1),
        ):
            check_int(name, getattr(self, name), minimum)
        if self.batch_size > self.n:
            raise ValueError(
                f"batch_size must be <= n ({self.n}), got {self.batch_size}: the "
                "last incomplete batch is dropped, so no step would run."
            )
        check_positive_float("lr", self.lr)
        check_positive_float("still_falling", self.still_falling, allow_zero=True)
        if not 0 < self.tail <= 0.5:
            raise ValueError(f"tail must be a share in (0, 0.5], got {self.tail!r}.")

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(epochs=COURSE["epochs"], seeds=10)


def course_data(s: CourseSettings, seed: int):
    """(train, validation, test): independent uniform draws from the rectangle."""
    return (
        data.rectangle(s.n, seed=seed),
        data.rectangle(s.n_val, seed=seed + 1),
        data.rectangle(s.n_test, seed=seed + 2),
    )


def validation_fall(h: History, tail: float) -> float:
    """Relative fall of the validation loss from the previous ``tail`` of epochs to the last
    (NaN when there are too few epochs to tell)."""
    loss = np.asarray(h.test_loss, dtype=float)
    k = min(max(1, round(tail * len(loss))), len(loss) // 2)
    if k == 0:
        return float("nan")
    last = loss[-k:].mean()
    return float((loss[-2 * k : -k].mean() - last) / last)


def convergence(
    runs: Runs, s: CourseSettings, quick: bool, by: str | None = None, name: str = "the model"
):
    """(converged, sentence): the validation loss's mean fall over the last ``tail`` per group."""
    groups = runs.table.groupby(by, sort=False) if by else [(name, runs.table)]
    falls = {name: part["validation fall"].mean() for name, part in groups}
    ok = all(np.isfinite(f) and f <= s.still_falling for f in falls.values())
    text = (
        f"Fall of the validation loss from the previous {s.tail:.0%} of the {s.epochs} "
        "epochs to the last (mean over seeds; negative: it rose): "
        + ", ".join(f"{name} {100 * f:.2f}%" for name, f in falls.items())
        + f"; still falling means more than {100 * s.still_falling:g}%. "
    )
    if ok:
        return True, text + "Converged by that rule."
    stop = (
        "not converged at quick settings; run --full"
        if quick
        else f"not converged after {s.epochs} epochs; raise epochs"
    )
    return False, text + f"{stop[0].upper()}{stop[1:]}: no conclusion is drawn."


def _with_history_columns(runs: Runs, s: CourseSettings) -> Runs:
    """Add the per-trial numbers read off each History (they depend on ``s.tail``)."""
    rows = []
    for h in runs.histories:
        steps = np.asarray(h.step_loss, dtype=float)
        per_epoch = len(steps) // max(h.epochs, 1)
        k = max(2, round(s.tail * h.epochs))
        step_std = steps[-k * per_epoch :].std(ddof=1) if len(steps) > 1 else np.nan
        epoch_std = np.asarray(h.train_loss[-k:]).std(ddof=1) if h.epochs > 1 else np.nan
        rows.append(
            {
                "validation fall": validation_fall(h, s.tail),
                "steps per epoch": per_epoch,
                "step spread / epoch spread": step_std / epoch_std if epoch_std else np.nan,
                "last step vs epoch mean": abs(steps[-1] / h.train_loss[-1] - 1),
            }
        )
    table = pd.concat([runs.table, pd.DataFrame(rows, index=runs.table.index)], axis=1)
    return Runs(table, runs.models, runs.histories, runs.grid_names)


# --- sheet6-architectures ------------------------------------------------------------------


def architectures_run(s: CourseSettings, train, val, test, seed: int = 0, progress=None) -> Runs:
    """The three architectures trained on ``train`` with ``s.seeds`` seeds from ``seed`` on."""
    runs = sweep(
        _factory,
        train,
        validation=val,
        test=test,
        grid={"architecture": list(ARCHITECTURES)},
        seeds=list(range(seed, seed + s.seeds)),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        device="cpu",
        progress=progress,
    )
    runs = _with_history_columns(runs, s)
    # PCA on the training points themselves (the built-in pca_mse is on the fresh points)
    runs.table["pca_mse_train"] = PCA(1).fit(train.X).reconstruction_error(train.X)
    runs.table["fresh / train MSE"] = runs.table["test_mse"] / runs.table["train_mse"]
    runs.table["collapsed"] = runs.table["test_mse"] >= COLLAPSE_SHARE * runs.table["mean_mse"]
    return runs


def _ranking(runs: Runs) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Test-MSE summary in rank order, the Holm-corrected pairwise tests, and the ranking text."""
    summary = runs.summary("test_mse", by="architecture").sort_values("mean", kind="stable")
    tests = runs.compare("test_mse", by="architecture", against="all")
    names = summary["architecture"].tolist()
    text = f"{names[0]} {ci_text(summary.iloc[0])}"
    for i in range(1, len(names)):
        pair = tests[
            tests["architecture_a"].isin(names[i - 1 : i + 1])
            & tests["architecture_b"].isin(names[i - 1 : i + 1])
        ].iloc[0]
        text += f" {'<' if pair['significant'] else '~'} {names[i]} {ci_text(summary.iloc[i])}"
    return summary, tests, text


def architectures_findings(runs: Runs, s: CourseSettings, quick: bool = True):
    """(findings, answer) from the trials' table."""
    t = runs.table
    converged, convergence_text = convergence(runs, s, quick, by="architecture")
    summary, tests, ranking = _ranking(runs)
    train = runs.summary("train_mse", by="architecture").set_index("architecture")
    gap = runs.summary("fresh / train MSE", by="architecture").set_index("architecture")
    pca_train, pca_test = t["pca_mse_train"].iloc[0], t["pca_mse"].iloc[0]
    seeds = int(summary["n"].min())
    if converged:
        named = [dict(r, a=r["architecture_a"], b=r["architecture_b"]) for _, r in tests.iterrows()]
        answer = (
            f"Ranked on {s.n_test} fresh points over {seeds} seeds ('<': lower by a "
            f"Holm-corrected paired t-test, '~': indistinguishable): {ranking}."
        )
        first = f"{answer} " + " ".join(compare_sentence(r, "fresh-points MSE") for r in named)
    else:
        by = summary.set_index("architecture")
        answer = first = (
            f"{convergence_text} Fresh-points MSE (no ranking drawn): "
            + ", ".join(f"{a} {ci_text(by.loc[a])}" for a in ARCHITECTURES if a in by.index)
            + "."
        )
    best = runs.best("val_mse", by="architecture")
    same = [d["architecture"] for d in best.indistinguishable]
    findings = [
        first,
        "Training-set MSE beside it: "
        + ", ".join(f"{a} {ci_text(train.loc[a])}" for a in summary["architecture"])
        + f"; PCA with one component: {pca_train:.4f} on the training points, {pca_test:.4f} "
        "on the fresh ones. Fresh over training MSE: "
        + ", ".join(f"{a} {ci_text(gap.loc[a], '.2f')}" for a in summary["architecture"])
        + ".",
        f"Selected on {s.n_val} validation points: {best.setting['architecture']} (validation "
        f"MSE {best.mean:.4f}, 95% CI {best.ci_low:.4f}-{best.ci_high:.4f}); indistinguishable "
        f"from it on validation at {best.n} seeds: {', '.join(same) or 'none'}.",
        convergence_text,
    ]
    collapsed = t.groupby("architecture", sort=False)["collapsed"].sum()
    if collapsed.any():
        findings.append(
            "Collapsed to the mean (fresh-points MSE >= "
            f"{COLLAPSE_SHARE:.0%} of the mean predictor's): "
            + ", ".join(f"{a} {int(k)} of {seeds} seeds" for a, k in collapsed.items() if k)
            + "."
        )
    return findings, answer


def pitfall_table(runs: Runs, s: CourseSettings) -> pd.DataFrame:
    """Course pitfall: per-step loss curves read as per-epoch curves, measured per architecture."""
    spread, last = (
        runs.summary(m, by="architecture").set_index("architecture")
        for m in ("step spread / epoch spread", "last step vs epoch mean")
    )
    per_epoch = runs.table.groupby("architecture", sort=False)["steps per epoch"].first()
    return pd.DataFrame(
        {
            "steps per epoch": per_epoch,
            "per-epoch points": s.epochs,
            "per-step points": s.epochs * per_epoch,
            "spread ratio": spread["mean"],
            "spread ratio ci_low": spread["ci_low"],
            "spread ratio ci_high": spread["ci_high"],
            "last step off epoch mean": last["mean"],
            "last step ci_low": last["ci_low"],
            "last step ci_high": last["ci_high"],
            "seeds": spread["n"],
        }
    ).reset_index()


def pitfall_findings(pitfalls: pd.DataFrame, s: CourseSettings) -> list[str]:
    """The per-step-vs-per-epoch pitfall in numbers; 'wider' only where the CI is above 1."""
    row = pitfalls.iloc[0]
    wider = [r["architecture"] for _, r in pitfalls.iterrows() if r["spread ratio ci_low"] > 1]
    return [
        f"Course pitfall, per-step curves read as per-epoch curves: the sheet plots one loss per "
        f"optimizer step ({row['steps per epoch']} per epoch at batch {s.batch_size}), so "
        f"{row['per-epoch points']} epochs draw {row['per-step points']} points; read as epochs, "
        f"the x axis is {row['steps per epoch']} times too long.",
        f"Over the last {s.tail:.0%} of epochs the per-step curve's standard deviation is "
        + ", ".join(
            f"{r['spread ratio']:.1f} (95% CI {r['spread ratio ci_low']:.1f}-"
            f"{r['spread ratio ci_high']:.1f}) times the per-epoch curve's ({a})"
            for a, r in pitfalls.set_index("architecture").iterrows()
        )
        + f" over {row['seeds']} seeds; wider with the CI above 1: {', '.join(wider) or 'none'}. "
        "Reading the last step's loss as the final training loss is off from the last epoch's "
        "mean by "
        + ", ".join(
            f"{100 * r['last step off epoch mean']:.0f}% ({a})"
            for a, r in pitfalls.set_index("architecture").iterrows()
        )
        + " on average.",
    ]


def loss_figure(histories: dict[str, History], title: str):
    """One History per model, drawn twice: loss per epoch (left) and per optimizer step (right)."""
    fig, axes = plots.new_figure(ncols=2, width=5.6, height=4.0)
    by_epoch, by_step = axes[0]
    for i, (name, h) in enumerate(histories.items()):
        epochs = np.arange(1, h.epochs + 1)
        by_epoch.plot(epochs, h.train_loss, color=f"C{i}", label=f"{name}: train (epoch mean)")
        if h.test_loss:
            by_epoch.plot(epochs, h.test_loss, color=f"C{i}", ls="--", label=f"{name}: validation")
        steps = np.arange(1, len(h.step_loss) + 1)
        by_step.plot(
            steps, h.step_loss, color=f"C{i}", lw=0.4, alpha=0.5, label=f"{name}: one batch"
        )
        per_epoch = len(h.step_loss) // max(h.epochs, 1)
        by_step.plot(
            epochs * per_epoch, h.train_loss, color=f"C{i}", lw=1.2, label=f"{name}: epoch mean"
        )
    by_epoch.set_title("Per epoch: mean of its steps; validation after it")
    by_epoch.set_xlabel("epoch")
    by_step.set_title("Per optimizer step, one batch each (the sheet's plot)")
    by_step.set_xlabel("optimizer step")
    for ax in (by_epoch, by_step):
        ax.set_ylabel("MSE")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
        plain_log_ticks(ax)
    fig.suptitle(title)
    return fig


def _input_grid(steps: int = 221):
    """A grid over :data:`EXTENT` with square cells: (G1, G2, points [m, 2])."""
    x1 = torch.linspace(EXTENT[0], EXTENT[1], steps)
    x2 = torch.linspace(
        EXTENT[2], EXTENT[3], round(steps * (EXTENT[3] - EXTENT[2]) / (EXTENT[1] - EXTENT[0]))
    )
    G1, G2 = torch.meshgrid(x1, x2, indexing="xy")
    return G1.numpy(), G2.numpy(), torch.stack([G1.flatten(), G2.flatten()], 1)


def _code_figure(models: dict[str, nn.Module], X: torch.Tensor, *, contour: bool, title: str):
    from matplotlib.ticker import MaxNLocator

    fig, axes = plots.new_figure(ncols=1, nrows=len(models), width=7.0, height=3.1)
    G1, G2, grid = _input_grid()
    for ax, (name, model) in zip(axes[:, 0], models.items()):
        z = codes(model, X)
        if contour:
            Z = codes(model, grid).reshape(G1.shape)
            # colour levels over the training codes' range: extrapolated corners would squash them
            pad = 0.05 * (z.max() - z.min())
            levels = MaxNLocator(nbins=20).tick_values(z.min() - pad, z.max() + pad)
            filled = ax.contourf(G1, G2, Z, levels=levels, cmap="viridis", extend="both")
            ax.contour(G1, G2, Z, levels=filled.levels, colors="k", linewidths=0.3, alpha=0.35)
            ax.scatter(
                X[:, 0],
                X[:, 1],
                s=7,
                facecolor="white",
                edgecolor="k",
                linewidth=0.4,
                label="training points",
            )
            ax.legend(loc="upper right", fontsize="x-small", framealpha=0.8)
            fig.colorbar(filled, ax=ax, label="code z")
        else:
            points = ax.scatter(
                X[:, 0], X[:, 1], c=z, cmap="viridis", s=18, edgecolor="k", linewidth=0.2
            )
            fig.colorbar(points, ax=ax, label="code z of the point")
        ax.set_xlim(EXTENT[0], EXTENT[1])
        ax.set_ylim(EXTENT[2], EXTENT[3])
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(label(name))
    fig.suptitle(title)
    return fig


def ci_figure(series: dict[str, pd.DataFrame], ylabel: str, title: str, log: bool = False):
    """Mean and 95% CI per architecture (rows of :meth:`Runs.summary`), one colour per series."""
    fig, axes = plots.new_figure(width=7.0, height=4.2)
    ax = axes[0, 0]
    for i, (name, rows) in enumerate(series.items()):
        rows = rows.set_index("architecture").loc[list(ARCHITECTURES)]
        low, high = rows["ci_low"].fillna(rows["mean"]), rows["ci_high"].fillna(rows["mean"])
        ax.errorbar(
            np.arange(len(rows)) + (i - 0.5) * 0.2,
            rows["mean"],
            capsize=4,
            fmt="o",
            yerr=[rows["mean"] - low, high - rows["mean"]],
            color=f"C{i}",
            label=name,
        )
    ax.set_xticks(range(len(ARCHITECTURES)), [label(a) for a in ARCHITECTURES], fontsize="small")
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.set_xlabel("architecture")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title)
    return fig, ax


@study(
    "sheet6-architectures",
    "sheet 6: small, big and PCA-like AEs on the rectangle: ranked on "
    "fresh points over seeds, loss per epoch/step, codes over the plane",
    settings=CourseSettings,
)
def sheet6_architectures(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Train the sheet's three architectures over seeds; rank them on fresh points.

    Parameters
    ----------
    quick : bool
        :meth:`CourseSettings.quick` (200 epochs, 5 seeds) or ``full`` (1000, 10).
    seed : int
        Seeds the data; the models use seeds ``seed .. seed + seeds - 1``.
    data : None
        Refused (ValueError): the question is about the course's rectangle.
    **overrides
        Fields of :class:`CourseSettings`, e.g. ``epochs=50``.

    Examples
    --------
    >>> result = sheet6_architectures(epochs=4, seeds=2, n_val=50, n_test=50)
    >>> sorted(result.tables)
    ['pitfalls', 'ranking', 'tests', 'trials']
    """
    check_study_data("sheet6-architectures", None, data)  # tied to the course's rectangle
    s = resolve_settings(CourseSettings, quick, overrides)
    train, val, test = course_data(s, seed)
    runs = architectures_run(s, train, val, test, seed, progress)
    findings, answer = architectures_findings(runs, s, quick)
    pitfalls = pitfall_table(runs, s)
    findings += pitfall_findings(pitfalls, s)
    summary, tests, _ = _ranking(runs)
    train_summary = runs.summary("train_mse", by="architecture")
    ranking = summary.merge(train_summary, on="architecture", suffixes=("", " train"))
    first = {a: runs.where(architecture=a, seed=seed) for a in ARCHITECTURES}
    ranking_figure, ax = ci_figure(
        {
            f"MSE on {s.n_test} fresh points": summary,
            f"MSE on {s.n} training points": train_summary,
        },
        "reconstruction MSE (mean, 95% CI)",
        f"After {s.epochs} epochs, {s.seeds} seeds",
    )
    ax.axhline(
        runs.table["pca_mse"].iloc[0],
        color="k",
        ls="--",
        lw=1,
        label="PCA, 1 component, fresh points",
    )
    ax.legend(fontsize="small")
    models = {a: r.models[0] for a, r in first.items()}
    figures = {
        "ranking": ranking_figure,
        "loss": loss_figure(
            {a: r.histories[0] for a, r in first.items()},
            f"Sheet 6 architectures on {s.n} rectangle points (seed {seed})",
        ),
        "codes": _code_figure(
            models, train.X, contour=False, title="Code z of each training point"
        ),
        "code_contours": _code_figure(
            models, train.X, contour=True, title="Code z over the input plane (filled contours)"
        ),
    }
    by = summary.set_index("architecture")
    metrics = {f"test_mse_{a}": float(by.loc[a, "mean"]) for a in ARCHITECTURES}
    metrics.update(
        {
            f"train_mse_{a}": float(r["mean"])
            for a, r in train_summary.set_index("architecture").iterrows()
        }
    )
    metrics["pca_mse"] = float(runs.table["pca_mse"].iloc[0])
    metrics["converged"] = int(convergence(runs, s, quick, by="architecture")[0])
    config = asdict(s) | {
        "seed": seed,
        "quick": quick,
        "optimizer": "adam",
        "architectures": {a: v[0] for a, v in ARCHITECTURES.items()},
    }
    return StudyResult(
        "sheet6-architectures",
        {"ranking": ranking, "tests": tests, "pitfalls": pitfalls, "trials": runs.table},
        figures,
        findings,
        config,
        metrics,
        answer,
    )


# --- sheet6-pca ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PcaSettings(CourseSettings):
    """:class:`CourseSettings` for the linear AE, and what counts as "the same"."""

    epochs: int = 300  # the linear AE at batch 8 settles by ~300 epochs (100 leave it degrees off)
    angle_tolerance: float = 1.0  # degrees: "the same subspace" when the angle's CI ends below
    mse_tolerance: float = 0.01  # "the same error" when the MSE ratio's CI ends below 1 + this

    def __post_init__(self):
        super().__post_init__()
        check_positive_float("angle_tolerance", self.angle_tolerance)
        check_positive_float("mse_tolerance", self.mse_tolerance)


def principal_angle(u, v) -> float:
    """Largest principal angle (degrees) between the spans of the columns of ``u`` and ``v``.

    A 1-D array is one direction. :func:`scipy.linalg.subspace_angles` stays accurate for
    tiny angles, where the arccos of a cosine near 1 does not.

    >>> round(principal_angle([1.0, 0.0], [1.0, 1.0]), 6), principal_angle([1.0, 0.0], [-2.0, 0.0])
    (45.0, 0.0)
    """
    u, v = (np.asarray(a, dtype=np.float64) for a in (u, v))
    u, v = (a[:, None] if a.ndim == 1 else a for a in (u, v))
    return float(np.degrees(subspace_angles(u, v).max()))


def eigen_pca(X: torch.Tensor) -> tuple[np.ndarray, float]:
    """The sheet's method: the covariance's top eigenvector, and the MSE of projecting on it."""
    Xc = X.double() - X.double().mean(0)
    _, vectors = torch.linalg.eigh(Xc.T @ Xc / (len(X) - 1))  # eigenvalues ascending
    u = vectors[:, -1]
    residual = Xc - (Xc @ u)[:, None] * u
    u = u if u[u.abs().argmax()] >= 0 else -u  # the sign aelab.PCA reports
    return u.numpy(), float(residual.pow(2).mean())


def pca_run(s: PcaSettings, train, val, test, seed: int = 0, progress=None) -> Runs:
    """The linear AE over ``s.seeds`` seeds, measured against the eigendecomposition PCA."""
    u, eig_mse = eigen_pca(train.X)
    metrics = {
        "decoder_angle": lambda m, c: principal_angle(m.decoder.weight.detach(), u),
        "encoder_angle": lambda m, c: principal_angle(m.encoder.weight.detach().T, u),
        "mse_over_pca": lambda m, c: reconstruction_error(m, c.train.X) / eig_mse,
    }
    runs = sweep(
        lambda: LinearAutoencoder(2, 1),
        train,
        validation=val,
        test=test,
        seeds=list(range(seed, seed + s.seeds)),
        metrics=metrics,
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        device="cpu",
        progress=progress,
    )
    runs = _with_history_columns(runs, s)
    runs.table["fresh_over_pca"] = runs.table["test_mse"] / runs.table["pca_mse"]
    runs.table["pca_mse_train"] = eig_mse
    return runs


def pca_verdicts(runs: Runs, s: PcaSettings, quick: bool = True) -> dict:
    """Converged, and the same subspace / error within the tolerances (the CI's upper end)."""
    dec, ratio = (runs.summary(m).iloc[0] for m in ("decoder_angle", "mse_over_pca"))
    return {
        "converged": convergence(runs, s, quick, name="linear AE")[0],
        "same_subspace": bool(dec["ci_high"] < s.angle_tolerance),
        "same_error": bool(ratio["ci_high"] < 1 + s.mse_tolerance),
    }


def pca_findings(runs: Runs, s: PcaSettings, quick: bool, svd_gap: tuple[float, float]):
    """(findings, answer); ``svd_gap`` is (angle, |MSE difference|) of eigendecomposition vs SVD."""
    converged, convergence_text = convergence(runs, s, quick, name="linear AE")
    verdicts = pca_verdicts(runs, s, quick)
    same_space, same_error = verdicts["same_subspace"], verdicts["same_error"]
    dec, enc, ratio, fresh = (
        runs.summary(m).iloc[0]
        for m in ("decoder_angle", "encoder_angle", "mse_over_pca", "fresh_over_pca")
    )
    n, t = int(dec["n"]), runs.table
    space = (
        f"the same subspace within {s.angle_tolerance:g} deg (the CI ends below it)"
        if same_space
        else f"not shown to be the same subspace within "
        f"{s.angle_tolerance:g} deg (the CI reaches {dec['ci_high']:.3f})"
    )
    error = (
        f"the same error within {s.mse_tolerance:.0%} (the CI ends below {1 + s.mse_tolerance:g})"
        if same_error
        else f"not shown to be the same error within {s.mse_tolerance:.0%} "
        f"(the CI reaches {ratio['ci_high']:.4f})"
    )
    if not converged:
        space = error = "no conclusion drawn (not converged)"
    findings = [
        f"Subspace over {n} seeds: the linear AE's decoder direction is {ci_text(dec, '.3f')} "
        "degrees from the top eigenvector of the training points' covariance (the sheet's PCA), "
        f"its encoder direction {ci_text(enc, '.3f')} degrees: {space}.",
        f"Error: the linear AE's training MSE is {ci_text(ratio)} times PCA's "
        f"{t['pca_mse_train'].iloc[0]:.5f} ({int((t['mse_over_pca'] < 1 - 1e-6).sum())} of {n} "
        f"runs below it by more than 1e-6 relative): {error}. On {s.n_test} fresh points it is "
        f"{ci_text(fresh)} times PCA's {t['pca_mse'].iloc[0]:.5f}.",
        f"The sheet's eigendecomposition of the covariance and aelab.PCA's SVD give directions "
        f"{svd_gap[0]:.2g} degrees apart and training MSEs {svd_gap[1]:.2g} apart.",
        convergence_text,
    ]
    answer = (
        f"Linear AE vs PCA by eigendecomposition over {n} seeds: decoder angle "
        f"{ci_text(dec, '.3f')} degrees, {space}; MSE {ci_text(ratio)} times PCA's, {error}."
    )
    return findings, answer


def _directions_figure(X, pca, model, angle: float, seed: int):
    fig, axes = plots.new_figure(width=7.5, height=4.6)
    ax = axes[0, 0]
    data_panel(ax, X)
    t = pca.transform(X)[:, 0]
    span = torch.linspace(float(t.min()) - 0.2, float(t.max()) + 0.2, 2)[:, None]
    line = pca.inverse_transform(span)
    ax.plot(line[:, 0], line[:, 1], color="C0", lw=5, alpha=0.45, label="PCA: first component")
    decoded = decode_line(model, *code_interval(model, X, widen=0.1), steps=200)
    ax.plot(
        decoded[:, 0],
        decoded[:, 1],
        color="C3",
        lw=1.5,
        ls="--",
        label="linear AE: decoded code interval",
    )
    X_hat = reconstruct(model, X)
    ax.scatter(
        X_hat[:, 0], X_hat[:, 1], s=10, color="C3", zorder=3, label="linear AE: reconstructions"
    )
    ax.legend(fontsize="small", loc="upper left", framealpha=0.9)
    ax.set_title(
        f"PCA's first component vs the linear AE's decoder line (seed {seed}): "
        f"{angle:.2f} degrees apart"
    )
    return fig


def _pca_loss_figure(runs: Runs, pca_val_mse: float, n_val: int):
    fig, axes = plots.new_figure(ncols=2, width=5.4, height=4.0)
    mse_ax, excess_ax = axes[0]
    for i, (s, h) in enumerate(zip(runs.table["seed"], runs.histories)):
        epochs = np.arange(1, h.epochs + 1)
        loss = np.asarray(h.test_loss)
        mse_ax.plot(epochs, loss, color=f"C{i + 1}", label=f"linear AE, seed {s}")
        excess_ax.plot(
            epochs, loss / pca_val_mse - 1, color=f"C{i + 1}", label=f"linear AE, seed {s}"
        )
    mse_ax.axhline(
        pca_val_mse, color="k", ls="--", lw=1, label=f"PCA, 1 component ({pca_val_mse:.4f})"
    )
    mse_ax.set_ylabel(f"MSE on {n_val} validation points")
    mse_ax.set_title("Validation MSE after each epoch")
    # PCA is fitted on the training points, so on validation points the AE may end below it
    excess_ax.axhline(0.0, color="k", ls="--", lw=1, label="PCA's validation MSE")
    excess_ax.set_yscale("symlog", linthresh=1e-4)
    excess_ax.set_ylabel("validation MSE / PCA's - 1")
    excess_ax.set_title("Relative to PCA's error (symmetric log scale)")
    for ax in (mse_ax, excess_ax):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("The linear AE's validation error and PCA's (fitted on the training points)")
    return fig


@study(
    "sheet6-pca",
    "sheet 6: PCA by eigendecomposition vs the linear AE over seeds: principal "
    "angle and errors with CIs",
    settings=PcaSettings,
)
def sheet6_pca(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Compare PCA (the sheet's eigendecomposition, and aelab.PCA's SVD) with the linear AE.

    A linear autoencoder trained on squared error spans the first principal
    subspace; this measures how close it gets over seeds: the principal angle
    between its decoder (and encoder) direction and the covariance's top
    eigenvector, and its error relative to PCA's, each with a 95% CI.

    Parameters
    ----------
    quick : bool
        :meth:`PcaSettings.quick` (300 epochs, 5 seeds) or ``full`` (1000, 10).
    seed : int
        Seeds the data; the models use seeds ``seed .. seed + seeds - 1``.
    data : None
        Refused (ValueError): the question is about the course's rectangle.
    **overrides
        Fields of :class:`PcaSettings`, e.g. ``angle_tolerance=0.5``.

    Examples
    --------
    >>> result = sheet6_pca(epochs=4, seeds=2, n_val=50, n_test=50)
    >>> sorted(result.tables)
    ['pca', 'summary', 'trials']
    """
    check_study_data("sheet6-pca", None, data)  # tied to the course's rectangle
    s = resolve_settings(PcaSettings, quick, overrides)
    train, val, test = course_data(s, seed)
    runs = pca_run(s, train, val, test, seed, progress)
    pca = PCA(1).fit(train.X)
    u, eig_mse = eigen_pca(train.X)
    svd_mse = reconstruction_error(pca, train.X)
    svd_gap = (principal_angle(u, pca.components_[0]), abs(svd_mse - eig_mse))
    findings, answer = pca_findings(runs, s, quick, svd_gap)
    summary = pd.concat(
        [
            runs.summary(m).assign(metric=m)
            for m in ("decoder_angle", "encoder_angle", "mse_over_pca", "fresh_over_pca")
        ]
    )
    methods = pd.DataFrame(
        {
            "method": ["eigendecomposition (the sheet)", "SVD (aelab.PCA)"],
            "direction x1": [u[0], float(pca.components_[0][0])],
            "direction x2": [u[1], float(pca.components_[0][1])],
            "angle to eigenvector (degrees)": [0.0, svd_gap[0]],
            "training MSE": [eig_mse, svd_mse],
        }
    )
    first = runs.where(seed=seed)
    figures = {
        "directions": _directions_figure(
            train.X, pca, first.models[0], float(first.table["decoder_angle"].iloc[0]), seed
        ),
        "loss": _pca_loss_figure(runs, pca.reconstruction_error(val.X), s.n_val),
    }
    dec, ratio = (runs.summary(m).iloc[0] for m in ("decoder_angle", "mse_over_pca"))
    metrics = {
        "mean_angle_degrees": float(dec["mean"]),
        "angle_ci_high": float(dec["ci_high"]),
        "max_angle_degrees": float(runs.table["decoder_angle"].max()),
        "mse_ratio": float(ratio["mean"]),
        "mse_ratio_ci_high": float(ratio["ci_high"]),
        "pca_mse": eig_mse,
        "linear_ae_mse": float(runs.table["train_mse"].mean()),
    }
    config = asdict(s) | {"seed": seed, "quick": quick, "optimizer": "adam"}
    return StudyResult(
        "sheet6-pca",
        {"summary": summary, "pca": methods, "trials": runs.table},
        figures,
        findings,
        config,
        metrics,
        answer,
    )


# --- sheet6-decoder-curves -----------------------------------------------------------------


@dataclass(frozen=True)
class DecoderCurveSettings(CourseSettings):
    """:class:`CourseSettings` and the interval of codes both states decode."""

    # None: per model and seed, the union of the training codes' ranges under the initial
    # and the trained model; (-2.0, 2.0): the sheet's fixed np.linspace(-2, 2)
    interval: tuple[float, float] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.interval is not None:
            bounds = tuple(self.interval)
            finite = len(bounds) == 2 and all(np.isfinite(b) for b in bounds)
            if not finite or bounds[0] >= bounds[1]:
                raise ValueError(
                    f"interval must be (low, high) with finite low < high, or None "
                    f"(the union of the codes' ranges), got {self.interval!r}."
                )
            object.__setattr__(self, "interval", tuple(map(float, bounds)))  # lists from Python


CURVE_METRICS = (
    "code_low",
    "code_high",
    "pieces_before",
    "pieces_after",
    "distance_before",
    "distance_after",
)


def before_after(
    initial: nn.Module,
    trained: nn.Module,
    X: torch.Tensor,
    interval: tuple[float, float] | None = None,
) -> dict:
    """Straight pieces and mean point-to-curve distance of both decoders on ONE interval.

    Without ``interval``, the union of the codes' ranges of ``X`` under both models.
    """
    if interval is None:
        ranges = [code_interval(m, X) for m in (initial, trained)]
        interval = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    low, high = map(float, interval)
    out = {"code_low": low, "code_high": high}
    for state, model in (("before", initial), ("after", trained)):
        out[f"pieces_{state}"] = float(linear_pieces(model, low, high))
        curve = decode_line(model, low, high, steps=2000)
        out[f"distance_{state}"] = float(distance_to_curve(X, curve).mean())
    return out


def curves_run(s: DecoderCurveSettings, train, val, test, seed: int = 0, progress=None) -> Runs:
    """The three architectures over seeds; each trial measured before and after training."""
    measured: dict = {}

    def measure(model, context) -> dict:  # one computation per trial for all its columns
        key = (context.params["architecture"], context.seed)
        if key not in measured:  # build() redraws the trial's initial weights, as sweep did
            measured[key] = before_after(build(*key), model, context.train.X, s.interval)
        return measured[key]

    metrics = {name: (lambda m, c, name=name: measure(m, c)[name]) for name in CURVE_METRICS}
    runs = sweep(
        _factory,
        train,
        validation=val,
        test=test,
        grid={"architecture": list(ARCHITECTURES)},
        seeds=list(range(seed, seed + s.seeds)),
        metrics=metrics,
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        device="cpu",
        progress=progress,
    )
    return _with_history_columns(runs, s)


def curves_by_state(runs: Runs) -> Runs:
    """One row per trial and state, so that Runs.compare pairs before with after by seed."""
    t = runs.table
    parts = [
        t[["architecture", "seed", "code_low", "code_high", "validation fall"]].assign(
            state=state, pieces=t[f"pieces_{short}"], distance=t[f"distance_{short}"]
        )
        for state, short in zip(STATES, ("before", "after"))
    ]
    long = pd.concat(parts, ignore_index=True)
    long["interval width"] = long["code_high"] - long["code_low"]
    long["pieces per unit"] = long["pieces"] / long["interval width"]
    return Runs(long, [None] * len(long), [None] * len(long), ["architecture", "state"])


def curves_findings(runs: Runs, s: DecoderCurveSettings, quick: bool = True):
    """(findings, answer, tests): before vs after on one interval, tested over seeds."""
    converged, convergence_text = convergence(runs, s, quick, by="architecture")
    long = curves_by_state(runs)
    t = long.table
    # decoders with one straight piece in every trial (affine: PCA-like) are not tested
    affine = [a for a, part in t.groupby("architecture", sort=False) if (part["pieces"] == 1).all()]
    kept = t[~t["architecture"].isin(affine)]
    tested = Runs(kept, [None] * len(kept), [None] * len(kept), long.grid_names)
    tests = tested.compare("pieces per unit", against="all") if len(tested) else pd.DataFrame()
    unit = long.summary("pieces per unit").set_index(["architecture", "state"])
    count = long.summary("pieces").set_index(["architecture", "state"])
    width = t.groupby("architecture", sort=False)["interval width"].mean()
    n = int(unit["n"].min())
    which = (
        "the union of the training codes' ranges under the initial and the trained model, "
        "per model and seed (mean width: "
        + ", ".join(f"{a} {w:.2f}" for a, w in width.items())
        + ")"
        if s.interval is None
        else f"the fixed interval [{s.interval[0]:g}, {s.interval[1]:g}]"
    )
    findings = [f"Before and after training decode one common interval of codes: {which}."]
    clauses = []
    for a in width.index:
        if a in affine:
            findings.append(
                f"{a}: one straight piece before and after training in all {n} seeds "
                f"({1 / width[a]:.3f} pieces per unit of code on average)."
            )
            continue
        row = tests[(tests["architecture_a"] == a) & (tests["architecture_b"] == a)].iloc[0]
        named = dict(row, a=f"{a} {row['state_a']}", b=f"{a} {row['state_b']}")
        b, f = unit.loc[(a, STATES[0])], unit.loc[(a, STATES[1])]
        verdict = (
            "indistinguishable"
            if not row["significant"]
            else "more after training"
            if f["mean"] > b["mean"]
            else "fewer after training"
        )
        clauses.append(
            f"{a} {b['mean']:.3g} -> {f['mean']:.3g} pieces per unit ({verdict}, "
            f"Holm p = {row['p_holm']:.2g}, n = {n})"
        )
        findings.append(
            f"{a}: {ci_text(b, '.3g')} -> {ci_text(f, '.3g')} straight pieces per unit of code "
            f"({count.loc[(a, STATES[0]), 'mean']:.1f} -> {count.loc[(a, STATES[1]), 'mean']:.1f}"
            f" pieces over the interval). " + compare_sentence(named, "pieces per unit", ".3g")
        )
    after = (
        tests[(tests["state_a"] == STATES[1]) & (tests["state_b"] == STATES[1])]
        if len(tests)
        else tests
    )
    findings += [
        compare_sentence(
            dict(r, a=r["architecture_a"], b=r["architecture_b"]),
            "pieces per unit after training",
            ".3g",
        )
        for _, r in after.iterrows()
    ]
    if len(tests):
        findings.append(
            f"Tests: paired t over seeds on pieces per unit of code, Holm-corrected "
            f"over all {len(tests)} pairs of the "
            f"{kept.groupby(long.grid_names).ngroups} tested architecture-state "
            "groups."
        )
    distance = long.summary("distance").set_index(["architecture", "state"])
    findings.append(
        "Mean distance from a training point to the decoded curve, before -> after: "
        + "; ".join(
            f"{a} {ci_text(distance.loc[(a, STATES[0])], '.3f')} -> "
            f"{ci_text(distance.loc[(a, STATES[1])], '.3f')}"
            for a in width.index
        )
        + "."
    )
    findings.append(convergence_text)
    if not converged:
        answer = convergence_text
    elif clauses:
        answer = (
            f"Straight pieces per unit of code before -> after training, on one common "
            f"interval ({'the union of both code ranges' if s.interval is None else which}):"
            f" " + "; ".join(clauses) + "."
        )
    else:
        answer = "Every decoder is one straight piece before and after training."
    return findings, answer, tests


def _coloured_curve(ax, points: np.ndarray, z: np.ndarray, norm, data_codes, lw: float = 2.2):
    """The curve coloured by code; thin where the code lies beyond the data's codes."""
    from matplotlib.collections import LineCollection

    segments = np.stack([points[:-1], points[1:]], axis=1)  # (steps - 1, 2, 2)
    middle = (z[:-1] + z[1:]) / 2
    inside = (middle >= data_codes[0]) & (middle <= data_codes[1])
    lines = LineCollection(
        segments, array=middle, cmap=CURVE_CMAP, norm=norm, linewidths=np.where(inside, lw, lw / 3)
    )
    ax.add_collection(lines)
    return lines


def _curve_panel(fig, ax, X, curve: torch.Tensor, low: float, high: float, data_codes, title: str):
    from matplotlib.colors import Normalize

    data_panel(ax, X, s=6, color="0.75", label=None)
    z = np.linspace(low, high, len(curve))
    points = curve.numpy()
    norm = Normalize(low, high)
    lines = _coloured_curve(ax, points, z, norm, data_codes)
    ax.plot(*points[0], "o", ms=5, color="k")
    # the rectangle's neighbourhood: a steep extrapolation beyond the data's codes is cut off
    ax.set_xlim(CURVE_VIEW[0], CURVE_VIEW[1])
    ax.set_ylim(CURVE_VIEW[2], CURVE_VIEW[3])
    ax.set_aspect("equal", adjustable="box")
    extent = float((points.max(0) - points.min(0)).max())
    data_extent = float((X.max(0).values - X.min(0).values).max())
    if extent < 0.15 * data_extent:  # too small to see: show it enlarged as well
        inset = ax.inset_axes([0.64, 0.03, 0.34, 0.34])
        _coloured_curve(inset, points, z, norm, data_codes, lw=1.8)
        inset.plot(*points[0], "o", ms=4, color="k")
        inset.update_datalim(points)
        inset.autoscale_view()
        inset.margins(0.15)
        inset.tick_params(labelsize=7)
        inset.set_title(f"enlarged, {extent:.2g} wide", fontsize=8)
        ax.indicate_inset_zoom(inset, edgecolor="0.3")
    fig.colorbar(lines, ax=ax, label="code z", shrink=0.85)
    ax.set_title(f"{title}, z from {low:.2f} to {high:.2f}", fontsize="medium")


def _curve_legend(fig) -> None:
    """One legend for all decoder-curve panels, below them."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    colour = colormaps[CURVE_CMAP](0.5)
    handles = [
        Line2D([], [], color="0.75", marker="o", ls="", ms=4, label="training points"),
        Line2D(
            [], [], color=colour, lw=2.2, label="decoded codes of the training points (this state)"
        ),
        Line2D(
            [],
            [],
            color=colour,
            lw=0.8,
            label="decoded codes outside them (rest of the common interval)",
        ),
        Line2D([], [], color="k", marker="o", ls="", ms=5, label="start of the interval"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")


@study(
    "sheet6-decoder-curves",
    "sheet 6: the decoded interval of the 1-D code before and after "
    "training, on one common interval, pieces per unit of code tested over seeds",
    settings=DecoderCurveSettings,
)
def sheet6_decoder_curves(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Decode one interval of codes with each architecture, before and after training.

    Both states decode the same interval (by default the union of the training
    codes' ranges under the initial and the trained model; ``interval=(-2, 2)``
    is the sheet's), so a change in the number of straight pieces is training's,
    not the interval's. Since every reconstruction is a decoded code, the
    trained curve is where all reconstructions lie.

    Parameters
    ----------
    quick : bool
        :meth:`DecoderCurveSettings.quick` (200 epochs, 5 seeds) or ``full`` (1000, 10).
    seed : int
        Seeds the data; the models use seeds ``seed .. seed + seeds - 1``.
    data : None
        Refused (ValueError): the question is about the course's rectangle.
    **overrides
        Fields of :class:`DecoderCurveSettings`, e.g. ``interval=(-2.0, 2.0)``.

    Examples
    --------
    >>> result = sheet6_decoder_curves(epochs=4, seeds=2, n_val=50, n_test=50)
    >>> sorted(result.tables["curves"]["state"].unique())
    ['after training', 'before training']
    """
    check_study_data("sheet6-decoder-curves", None, data)  # tied to the course's rectangle
    s = resolve_settings(DecoderCurveSettings, quick, overrides)
    train, val, test = course_data(s, seed)
    runs = curves_run(s, train, val, test, seed, progress)
    findings, answer, tests = curves_findings(runs, s, quick)
    long = curves_by_state(runs)
    X = train.X
    # one row per architecture, before and after side by side: fits a report column
    fig, axes = plots.new_figure(ncols=2, nrows=len(ARCHITECTURES), width=5.2, height=3.4)
    for row, arch in enumerate(ARCHITECTURES):
        trial = runs.where(architecture=arch, seed=seed)
        low, high = trial.table[["code_low", "code_high"]].iloc[0]
        for col, model in enumerate((build(arch, seed), trial.models[0])):
            z = codes(model, X)
            _curve_panel(
                fig,
                axes[row, col],
                X,
                decode_line(model, low, high),
                low,
                high,
                (z.min(), z.max()),
                f"{label(arch)}\n{STATES[col]}",
            )
    _curve_legend(fig)
    fig.suptitle(
        f"Decoded code interval, the same before and after training (seed {seed}), "
        f"over the {s.n} training points"
    )
    summary = pd.concat(
        [long.summary(m).assign(metric=m) for m in ("pieces", "pieces per unit", "distance")]
    )
    pieces, ax = ci_figure(
        {st: long.where(state=st).summary("pieces per unit", by="architecture") for st in STATES},
        "straight pieces per unit of code (mean, 95% CI)",
        f"Decoder curves on one common interval, {s.seeds} seeds",
        log=True,
    )
    ax.legend(fontsize="small")
    unit = long.summary("pieces per unit").set_index(["architecture", "state"])["mean"]
    metrics = {
        f"pieces_per_unit_{'before' if st == STATES[0] else 'after'}_{a}": float(v)
        for (a, st), v in unit.items()
    }
    metrics["converged"] = int(convergence(runs, s, quick, by="architecture")[0])
    config = asdict(s) | {"seed": seed, "quick": quick, "optimizer": "adam"}
    return StudyResult(
        "sheet6-decoder-curves",
        {"curves": long.table, "summary": summary, "tests": tests},
        {"curves": fig, "pieces": pieces},
        findings,
        config,
        metrics,
        answer,
    )
