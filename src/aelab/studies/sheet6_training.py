"""Course sheet 6, training experiments on the rectangle: memorisation, a frozen decoder, GD vs SGD.

* sheet6-memorize (question e): can a 1-D bottleneck reconstruct n points
  perfectly? k of n seeds per (points, width), beside a network built by hand
  (:func:`aelab.memorizing_autoencoder`) that does: capacity or optimisation?
* sheet6-frozen-decoder (question f): train, freeze the decoder, re-initialise
  the encoder, retrain it; and the course's re-initialisation loop, run.
* sheet6-gd-vs-sgd (question h): full-batch GD, mini-batch SGD and Adam, per
  example seen and per second.

Each is tied to the sheet's data (uniform points on [-2, 2] x [-1, 1]) and takes
no ``data=``. Every training goes through :func:`aelab.sweep`; every comparison
is a :meth:`aelab.Runs.compare` test over seeds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from aelab import data, plots
from aelab._checks import check_choice, check_int, check_positive_float, check_positive_int
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.construct import construction_width, memorizing_autoencoder
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.experiments import Runs, compare_sentence, p_value_text, sweep
from aelab.models import Autoencoder
from aelab.plots import plain_log_ticks
from aelab.studies._base import StudyResult, check_study_data, resolve_settings, study
from aelab.studies._common import code_interval, codes, decode_line, mean_predictor_mse
from aelab.train import History, reinitialize

__all__ = [
    "sheet6_memorize",
    "sheet6_frozen_decoder",
    "sheet6_gd_vs_sgd",
    "MemorizeSettings",
    "FrozenDecoderSettings",
    "GdVsSgdSettings",
]

BIG = [50, 50, 50]  # the sheet's big model 2-50-50-50-1-50-50-50-2 (seed 001, (f) and (h))
BIG_LABEL = "2-50-50-50-1-50-50-50-2"
STILL_FALLING = 0.05  # a loss that fell > 5% over the last 10% of epochs has not converged
FRESH_SEED = 7919  # re-initialisation draws from here on: no model of these studies starts there


def _check(settings, ints=(), floats=(), tuples=()) -> None:
    """Validate a settings dataclass: positive ints and floats, non-empty tuples of ints >= 2,
    and seeds >= 2 (one seed has no spread to state)."""
    check_int("seeds", settings.seeds, 2)
    for name in ints:
        check_positive_int(name, getattr(settings, name))
    for name in floats:
        check_positive_float(name, getattr(settings, name))
    for name in tuples:
        values = getattr(settings, name)
        if not isinstance(values, (tuple, list)) or not values:
            raise ValueError(f"{name} must list at least one value, got {values!r}.")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must hold ints >= 2, got {v!r} in {values!r}.")


def _seeds(s, seed: int) -> list[int]:
    return [seed + k for k in range(s.seeds)]


def _late_fall(losses) -> float:
    """Relative fall of a loss curve over its last 10% of epochs (window medians); 0 if short."""
    losses = np.asarray(losses, dtype=float)
    k = max(1, len(losses) // 10)
    if len(losses) < 2 * k:
        return 0.0
    before, last = np.median(losses[-2 * k : -k]), np.median(losses[-k:])
    return float((before - last) / last) if last > 0 else 0.0


def _ci(row, fmt: str = ".3g") -> str:
    """A summary row as ``mean (95% CI low to high, n seeds)``."""
    return (
        f"{row['mean']:{fmt}} (95% CI {row['ci_low']:{fmt}} to {row['ci_high']:{fmt}}, "
        f"{int(row['n'])} seeds)"
    )


def _short(s) -> bool:
    """Whether ``s`` trains for fewer epochs than the full (the course's) settings."""
    return s.epochs < type(s).full().epochs


def _not_converged(s, what: str) -> str:
    return f"Not converged at {s.epochs} epochs{' (run --full)' if _short(s) else ''}: {what}"


def _capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _legend_below(ax) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize="small")


# --- sheet6-memorize ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MemorizeSettings:
    n_points: tuple[int, ...] = (4, 16, 64)  # points to memorise, nested (the 4 are among the 16)
    widths: tuple[int, ...] = (4, 16, 64)  # hidden width w of 2-w-1-w-2; n = 64 needs 63
    seeds: int = 5  # initial weights per (n, w): "k of n seeds"
    epochs: int = 1000  # full-batch Adam steps; 5000 (full) memorise no more at n = 64 (measured)
    lr: float = 3e-3  # constant; beat 1e-2 at 5000 steps (n = 16, w = 256: MSE 1e-5 vs 1e-3)
    threshold: float = 1e-6  # "perfect": training MSE below this (RMS error 0.001)

    def __post_init__(self):
        _check(self, ("epochs",), ("lr", "threshold"), ("n_points", "widths"))

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(
            n_points=(4, 16, 64, 256), widths=(4, 8, 16, 32, 64, 128, 256), seeds=10, epochs=5000
        )


def _points(s: MemorizeSettings, seed: int) -> dict[int, data.Dataset]:
    largest = data.rectangle(max(s.n_points), seed=seed)
    return {n: largest.subset(slice(0, n)) for n in s.n_points}


def memorize_run(s: MemorizeSettings, seed: int = 0, progress=None):
    """Train 2-w-1-w-2 on the n points, full batch; build the hand-made net for each n."""
    points = _points(s, seed)
    runs = sweep(
        lambda n_points, width: Autoencoder(2, 1, width, layers=1),
        lambda params, _: points[params["n_points"]],
        grid={"n_points": list(s.n_points), "width": list(s.widths)},
        seeds=_seeds(s, seed),
        epochs=s.epochs,
        batch_size=max(s.n_points),
        lr=s.lr,
        progress=progress,
    )  # batch >= n: full batch, the exact training error
    runs.table["perfect"] = runs.table["train_mse"] < s.threshold
    rows = []
    for n, ds in points.items():
        X64, model64 = ds.X.double(), memorizing_autoencoder(ds.X, dtype=torch.float64)
        with torch.no_grad():
            mse64 = float(((model64(X64) - X64) ** 2).mean())
        rows.append(
            {
                "n_points": n,
                "construction width": construction_width(n, 2),
                "capacity bound": math.ceil(n / 2) - 1,
                "construction MSE float32": reconstruction_error(
                    memorizing_autoencoder(ds.X), ds.X
                ),
                "construction MSE float64": mse64,
            }
        )
    return runs, pd.DataFrame(rows).set_index("n_points")


def memorize_cells(runs: Runs, construction: pd.DataFrame, s: MemorizeSettings) -> pd.DataFrame:
    """Per (n, width): k of the seeds perfect (Clopper-Pearson CI) and the verdict.

    One ReLU layer of width w on a scalar code draws at most w + 1 straight
    pieces, each through at most 2 of n points in general position: widths
    below ceil(n/2) - 1 lack the capacity. From the construction's width up the
    architecture has it, so a trained failure there is optimisation.
    """
    t = runs.table.assign(log10_mse=np.log10(runs.table["train_mse"].clip(lower=1e-30)))
    logs = Runs(t, runs.models, runs.histories, runs.grid_names).summary("log10_mse")
    rows = []
    for _, cell in logs.iterrows():
        n, w = int(cell["n_points"]), int(cell["width"])
        these = t[(t["n_points"] == n) & (t["width"] == w)]
        k, total = int(these["perfect"].sum()), len(these)
        ci = stats.binomtest(k, total).proportion_ci(0.95)
        c = construction.loc[n]
        fits = bool(w >= c["construction width"] and c["construction MSE float32"] < s.threshold)
        # a seed that memorises proves the capacity as well as the construction does
        verdict = (
            "memorised"
            if k == total
            else "seed-dependent"
            if k
            else "capacity"
            if w < c["capacity bound"]
            else "optimisation"
            if fits
            else "undecided"
        )
        rows.append(
            {
                "n_points": n,
                "width": w,
                "perfect": k,
                "seeds": total,
                "rate ci_low": ci.low,
                "rate ci_high": ci.high,
                "mean log10 MSE": cell["mean"],
                "ci_low": cell["ci_low"],
                "ci_high": cell["ci_high"],
                "median MSE": float(these["train_mse"].median()),
                "construction fits": fits,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def _rate(r) -> str:
    return (
        f"{r['perfect']} of {r['seeds']} seeds (95% CI {100 * r['rate ci_low']:.0f}-"
        f"{100 * r['rate ci_high']:.0f}%)"
    )


def memorize_findings(cells: pd.DataFrame, construction: pd.DataFrame, s: MemorizeSettings):
    rms = math.sqrt(s.threshold)
    findings = [
        f"'Perfect' means training MSE < {s.threshold:g} (RMS error {rms:.2g} per coordinate, "
        f"{100 * rms / 4:.2g}% of the rectangle's width). Trained: 2-w-1-w-2 ReLU nets, "
        f"{s.epochs} full-batch Adam steps at lr {s.lr:g}, {s.seeds} seeds per cell.",
        "The hand-built 2-H-1-H-2 net needs H = max(2, n - 1), one ReLU hinge per breakpoint of "
        "the curve through the points: "
        + "; ".join(
            f"n = {n}: H = {int(c['construction width'])}, training MSE "
            f"{c['construction MSE float32']:.1e} in float32, {c['construction MSE float64']:.1e} "
            "in float64"
            for n, c in construction.iterrows()
        )
        + ".",
    ]
    why = {
        "optimisation": "the same architecture holds the points, so the failure is "
        "optimisation, not capacity",
        "seed-dependent": "the architecture holds the points and some seeds find them: the "
        "failures are optimisation",
        "memorised": "training finds what the construction shows exists",
    }
    answer = (
        "No width tried reaches the construction's, so it does not decide between capacity "
        "and optimisation here."
    )
    for n, group in cells.groupby("n_points"):
        findings.append(
            f"n = {n}: perfect in "
            + ", ".join(
                f"{_rate(r)} at width {r['width']} (median MSE {r['median MSE']:.1e}, {r['verdict']})"
                for _, r in group.iterrows()
            )
            + "."
        )
        fit = group[group["construction fits"]]
        if len(fit):
            r = fit.iloc[-1]
            answer = (
                f"n = {n} points, width {r['width']}: the hand-built net reaches MSE "
                f"{construction.loc[n, 'construction MSE float32']:.1e} (float32); "
                f"training reaches < {s.threshold:g} in {_rate(r)}: {why[r['verdict']]}."
            )
    findings.append(answer)
    return findings, answer


def _memorize_figures(runs: Runs, cells, construction, s: MemorizeSettings, X) -> dict:
    fig, axes = plots.new_figure(width=7.5, height=5.2)
    ax, t = axes[0, 0], runs.table
    for i, (n, group) in enumerate(cells.groupby("n_points")):
        mean, low, high = (
            10 ** group[k].to_numpy() for k in ("mean log10 MSE", "ci_low", "ci_high")
        )
        ax.errorbar(
            group["width"],
            mean,
            yerr=[mean - low, high - mean],
            fmt="o-",
            capsize=3,
            color=f"C{i}",
            label=f"n = {n}: trained (geometric mean, 95% CI)",
        )
        seeds = t[t["n_points"] == n]
        ax.scatter(
            seeds["width"], seeds["train_mse"].clip(lower=1e-30), s=10, color=f"C{i}", alpha=0.35
        )
        c = construction.loc[n]
        ax.scatter(
            [c["construction width"]],
            [c["construction MSE float32"]],
            marker="*",
            s=160,
            color=f"C{i}",
            edgecolor="k",
            zorder=4,
            label=f"n = {n}: hand-built (float32)",
        )
    ax.axhline(s.threshold, color="k", ls="--", lw=1, label=f"'perfect': MSE < {s.threshold:g}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width w (2-w-1-w-2); stars at the width the construction needs")
    ax.set_ylabel("training MSE (dots: single seeds)")
    ax.set_title("Memorising n points through a 1-D code: trained vs built by hand")
    ax.grid(True, alpha=0.3, which="both")
    _legend_below(ax)

    n, w = max(s.n_points), max(s.widths)
    trained = t[(t["n_points"] == n) & (t["width"] == w)]
    median = trained.index[np.argsort(trained["train_mse"].to_numpy())[len(trained) // 2]]
    h = construction_width(n, 2)
    fig2, axes2 = plots.new_figure(ncols=2, width=5.2, height=3.6)
    for i, (ax, model, name) in enumerate(
        (
            (axes2[0, 0], memorizing_autoencoder(X), f"hand-built 2-{h}-1-{h}-2"),
            (axes2[0, 1], runs.models[median], f"trained 2-{w}-1-{w}-2, median seed"),
        )
    ):
        curve = decode_line(model, *code_interval(model, X, widen=0.02), steps=4000)
        X_hat = reconstruct(model, X)
        names = ("the points", "decoder's curve over the codes", "reconstructions")
        names = names if i == 0 else ("_",) * 3  # one legend for both panels
        ax.scatter(X[:, 0], X[:, 1], s=24, color="C0", label=names[0])
        ax.plot(curve[:, 0], curve[:, 1], color="C1", lw=1, label=names[1])
        ax.scatter(X_hat[:, 0], X_hat[:, 1], s=8, color="C3", zorder=3, label=names[2])
        ax.set_title(f"{name}: MSE {reconstruction_error(model, X):.1e}", fontsize="medium")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_aspect("equal", adjustable="datalim")
    axes2[0, 0].legend(fontsize="x-small", loc="lower left")
    fig2.suptitle(f"Through {n} points: the decoder's curve, built by hand vs trained")
    return {"error": fig, "curves": fig2}


@study(
    "sheet6-memorize",
    "sheet 6 (e): can a 1-D bottleneck memorise n points? k of n seeds "
    "trained vs a net built by hand: capacity or optimisation",
    settings=MemorizeSettings,
)
def sheet6_memorize(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Train 2-w-1-w-2 autoencoders on n rectangle points; build one by hand that memorises them.

    Parameters
    ----------
    quick : bool
        :meth:`MemorizeSettings.quick` (seconds) or :meth:`MemorizeSettings.full`.
    seed : int
        Seeds the points; the models use seeds ``seed .. seed + seeds - 1``.
    data : None
        Refused: the question is about the sheet's rectangle.
    progress : bool, optional
    **overrides
        Fields of :class:`MemorizeSettings`, e.g. ``epochs=200``.

    Examples
    --------
    >>> result = sheet6_memorize(n_points=(4,), widths=(8,), epochs=10)
    >>> result.tables["cells"][["n_points", "width", "seeds"]].values.tolist()
    [[4, 8, 5]]
    """
    check_study_data("sheet6-memorize", None, data)
    s = resolve_settings(MemorizeSettings, quick, overrides)
    runs, construction = memorize_run(s, seed, progress)
    cells = memorize_cells(runs, construction, s)
    findings, answer = memorize_findings(cells, construction, s)
    metrics = {
        f"perfect_share_n{r['n_points']}_w{r['width']}": r["perfect"] / r["seeds"]
        for _, r in cells.iterrows()
    }
    metrics.update(
        {
            f"construction_mse_float{b}_n{n}": float(c[f"construction MSE float{b}"])
            for n, c in construction.iterrows()
            for b in (32, 64)
        }
    )
    figures = _memorize_figures(runs, cells, construction, s, _points(s, seed)[max(s.n_points)].X)
    tables = {"cells": cells, "construction": construction.reset_index(), "runs": runs.table}
    return StudyResult(
        "sheet6-memorize",
        tables,
        figures,
        findings,
        asdict(s) | {"seed": seed, "quick": quick},
        metrics,
        answer,
    )


# --- sheet6-frozen-decoder ---------------------------------------------------------------------


@dataclass(frozen=True)
class FrozenDecoderSettings:
    n: int = 100  # training points, the sheet's
    test_n: int = 200  # fresh points, evaluated every epoch (1000 cost 1 s per 100 epochs)
    epochs: int = 100  # per training; the sheet trains 1000 (full)
    batch_size: int = 8  # the sheet's
    lr: float = 1e-3  # Adam, the sheet's
    seeds: int = 5  # first trainings, each retrained once: comparisons are paired by seed

    def __post_init__(self):
        _check(self, ("n", "test_n", "epochs", "batch_size"), ("lr",))

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(epochs=1000, seeds=10)


def _course_reinit_loop(encoder: nn.Module) -> int:
    """The course's encoder "re-initialisation" (seed 001, (f) and (h)) as written; the matches.

    ``encoder.parameters()`` yields tensors, never ``nn.Linear`` modules: the test never holds.
    """
    matched = 0
    for parameter in encoder.parameters():
        if isinstance(parameter, nn.Linear):
            nn.init.normal_(parameter.weight, mean=0.0, std=1)
            nn.init.zeros_(parameter.bias)
            matched += 1
    return matched


def _share_changed(before: nn.Module, after: nn.Module) -> float:
    """Share of the entries of all parameters that differ between two copies of a module."""
    pairs = list(zip(before.parameters(), after.parameters()))
    return sum(int((a != b).sum()) for a, b in pairs) / sum(a.numel() for a, _ in pairs)


def course_pitfalls(model: nn.Module, X: torch.Tensor) -> pd.DataFrame:
    """Run the course's re-initialisation loop and aelab's on copies of ``model``: what changed."""
    rows = []
    for name, reset in (
        ("course: isinstance(parameter, nn.Linear) over encoder.parameters()", _course_reinit_loop),
        ("aelab.train.reinitialize(model.encoder)", reinitialize),
    ):
        after = copy.deepcopy(model)
        # not the model's own seed: weights training never moved (dead units) would be redrawn
        # equal to their initial values and count as unchanged (about 20% for the big model)
        with seeded(FRESH_SEED):
            matched = reset(after.encoder)
        rows.append(
            {
                "re-initialisation": name,
                "modules matched": matched,
                "parameter tensors": len(list(model.encoder.parameters())),
                "share of encoder weights changed": _share_changed(model.encoder, after.encoder),
                "training MSE before": reconstruction_error(model, X),
                "training MSE after": reconstruction_error(after, X),
            }
        )
    return pd.DataFrame(rows)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r, 0 when a side is constant (an encoder whose units all died)."""
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0


def _best_code_mse(model: nn.Module, X, low: float, high: float) -> float:
    """MSE with each point's best code among 4001 in [low, high]: what no encoder can beat with
    this decoder (up to the grid's resolution)."""
    curve = decode_line(model, low, high, 4001).double()
    return float(torch.cdist(X.double(), curve).pow(2).min(dim=1).values.mean() / X.shape[1])


def frozen_run(s: FrozenDecoderSettings, seed: int = 0, progress=None):
    """Train; re-initialise each model's encoder; retrain it against the frozen decoder.

    Returns the stages as one Runs (grid ``stage``, paired by the first training's
    seed), the first and the retraining sweeps, and the training set.
    """
    train, test = data.rectangle(s.n, seed=seed), data.rectangle(s.test_n, seed=seed + 1000)
    shared = dict(test=test, batch_size=s.batch_size, lr=s.lr, progress=progress)
    fall = {"late_fall": lambda m, c: _late_fall(c.history.train_loss)}
    first = sweep(
        lambda: Autoencoder.from_widths(BIG, 1, 2),
        train,
        seeds=_seeds(s, seed),
        epochs=s.epochs,
        metrics=fall,
        **shared,
    )
    old = {i: first.models[i] for i in range(len(first))}

    def restart(start):  # model `start` with its encoder drawn afresh
        model = copy.deepcopy(old[start])
        with seeded(FRESH_SEED + int(first.table["seed"][start])):
            reinitialize(model.encoder)
        return model

    def best(X):  # best codes searched over the first codes' range, widened by 25%
        def metric(m, c):
            low, high = code_interval(old[c.params["start"]], train.X, widen=0.25)
            return _best_code_mse(m, X, low, high)

        return metric

    metrics = fall | {
        "decoder_change": lambda m, c: max(
            float((a - b).detach().abs().max())
            for a, b in zip(m.decoder.parameters(), old[c.params["start"]].decoder.parameters())
        ),
        "code_corr": lambda m, c: _correlation(
            codes(m, train.X), codes(old[c.params["start"]], train.X)
        ),
        "best_train_mse": best(train.X),
        "best_test_mse": best(test.X),
    }
    # one retraining per first model; its own seed only orders the data
    retrain = dict(grid={"start": list(old)}, seeds=[seed], freeze="decoder", **shared)
    reinit = sweep(restart, train, epochs=0, **retrain)
    retrained = sweep(restart, train, epochs=s.epochs, metrics=metrics, **retrain)
    seeds = first.table["seed"].to_numpy()
    table = pd.concat(
        [
            first.table.assign(stage="1st training"),
            reinit.table.assign(stage="encoder re-initialised", seed=seeds[reinit.table["start"]]),
            retrained.table.assign(stage="encoder retrained", seed=seeds[retrained.table["start"]]),
            retrained.table.assign(
                stage="best codes for the frozen decoder",
                late_fall=np.nan,
                seed=seeds[retrained.table["start"]],
                train_mse=retrained.table["best_train_mse"],
                test_mse=retrained.table["best_test_mse"],
            ),
        ],
        ignore_index=True,
    )
    table = table[
        ["stage", "seed", "train_mse", "test_mse", "late_fall", "decoder_change", "code_corr"]
    ]
    return Runs(table, [None] * len(table), [None] * len(table), ["stage"]), first, retrained, train


def frozen_findings(stages: Runs, pitfalls: pd.DataFrame, s: FrozenDecoderSettings):
    course, ours = pitfalls.iloc[0], pitfalls.iloc[1]
    pitfall = (
        f"Course pitfall: the course's loop matched {course['modules matched']} modules among the "
        f"encoder's {course['parameter tensors']} parameter tensors and changed "
        f"{100 * course['share of encoder weights changed']:.1f}% of its weights (training MSE "
        f"{course['training MSE before']:.4f} before, {course['training MSE after']:.4f} after); "
        f"aelab.train.reinitialize reset {ours['modules matched']} modules and changed "
        f"{100 * ours['share of encoder weights changed']:.1f}% (MSE "
        f"{ours['training MSE before']:.4f} -> {ours['training MSE after']:.4f})."
    )
    retrained = stages.where(stage="encoder retrained").table
    moved = float(retrained["decoder_change"].max())
    findings = [
        pitfall,
        f"The decoder stayed frozen: its largest change over {len(retrained)} retrainings is 0."
        if moved == 0
        else f"CHECK FAILED: the frozen decoder changed by up to {moved:.3g}.",
    ]
    falls = stages.table.groupby("stage")["late_fall"].median().clip(lower=0)
    fall1, fall2 = falls.get("1st training", 0.0), falls.get("encoder retrained", 0.0)
    if max(fall1, fall2) > STILL_FALLING:
        findings.append(
            _not_converged(
                s,
                (
                    f"the training loss still fell by {100 * fall1:.0f}% (1st training) and "
                    f"{100 * fall2:.0f}% (retraining) over the last 10% of epochs (median over seeds)"
                    + (
                        ", so no comparison is drawn."
                        if _short(s)
                        else "; what follows compares the sheet's budget, not converged models."
                    )
                ),
            )
        )
        if _short(s):
            return findings, f"{findings[-1]} {pitfall}"
    test = stages.summary("test_mse", by="stage").set_index("stage")
    row = (
        stages.compare("test_mse", by="stage", against={"stage": "1st training"})
        .set_index("b")
        .loc["stage=encoder retrained"]
    )
    to_best = stages.compare("train_mse", by="stage", against={"stage": "encoder retrained"})
    to_best = to_best.set_index("b").loc["stage=best codes for the frozen decoder"]
    corr = retrained["code_corr"]
    findings += [
        "Test MSE: " + "; ".join(f"{k} {_ci(test.loc[k])}" for k in test.index) + ".",
        _capital(
            compare_sentence(
                {**row, "a": "the 1st training", "b": "the retrained encoder"}, "test MSE"
            )
        ),
        _capital(
            compare_sentence(
                {
                    **to_best,
                    "a": "the retrained encoder",
                    "b": "the best codes for the frozen decoder",
                },
                "training MSE",
            )
        ),
        f"The retrained codes correlate with the 1st training's at {corr.median():.3f} (median; "
        f"{corr.min():.3f} to {corr.max():.3f} over {len(corr)} seeds).",
    ]
    verdict = findings[-3][0].lower() + findings[-3][1:]
    return findings, f"Retraining the encoder against the frozen decoder: {verdict} {pitfall}"


def _frozen_figures(stages: Runs, first: Runs, retrained: Runs, train, s) -> dict:
    fig, axes = plots.new_figure(ncols=2, width=5.4, height=4.2)
    curves, dots = axes[0]
    for i, (h1, h2) in enumerate(zip(first.histories, retrained.histories)):
        e = np.arange(1, len(h1.test_loss) + 1)
        curves.plot(e, h1.test_loss, color="C0", lw=0.8, label="1st training" if i == 0 else None)
        curves.plot(
            e + len(e),
            h2.test_loss,
            color="C3",
            lw=0.8,
            label="retraining (new encoder, frozen decoder)" if i == 0 else None,
        )
    curves.axvline(s.epochs + 0.5, color="0.4", ls=":", lw=1)
    curves.set_xlabel("epoch (both trainings in sequence)")
    curves.set_ylabel("test MSE after each epoch")
    curves.set_title(f"Test loss, {len(first)} seeds")
    summary = stages.summary("test_mse", by="stage")
    x = np.arange(len(summary))
    dots.errorbar(
        x,
        summary["mean"],
        yerr=[summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]],
        fmt="o",
        capsize=4,
        color="k",
        label="mean, 95% CI",
    )
    for j, stage in enumerate(summary["stage"]):
        values = stages.where(stage=stage).table["test_mse"]
        dots.scatter(
            np.full(len(values), j + 0.12),
            values,
            s=12,
            color="C1",
            alpha=0.6,
            label="one seed" if j == 0 else None,
        )
    dots.set_xticks(
        x,
        [
            st.replace(" for the", "\nfor the").replace("encoder ", "encoder\n")
            for st in summary["stage"]
        ],
        fontsize="small",
    )
    dots.set_xlabel("stage")
    dots.set_ylabel("test MSE")
    dots.set_title("Test MSE at each stage")
    for ax in (curves, dots):
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.legend(fontsize="small")
    fig.suptitle(f"Big model {BIG_LABEL}: train, re-initialise the encoder, retrain it")

    fig2, axes2 = plots.new_figure(width=6.0, height=4.8)
    ax = axes2[0, 0]
    z1, z2 = codes(first.models[0], train.X), codes(retrained.models[0], train.X)
    points = ax.scatter(
        z1,
        z2,
        c=train.X[:, 0].numpy(),
        cmap="coolwarm",
        s=20,
        edgecolor="k",
        linewidth=0.2,
        label="one training point",
    )
    lo, hi = min(z1.min(), z2.min()), max(z1.max(), z2.max())
    ax.plot([lo, hi], [lo, hi], color="k", ls="--", lw=1, label="same code (y = x)")
    ax.set_xlabel("code after the 1st training")
    ax.set_ylabel("code after retraining the encoder")
    ax.set_title(f"Each point's code before and after (seed {int(first.table['seed'][0])})")
    ax.legend(fontsize="small")
    fig2.colorbar(points, ax=ax, label="$x_1$ of the point")
    return {"loss": fig, "codes": fig2}


@study(
    "sheet6-frozen-decoder",
    "sheet 6 (f): freeze the decoder, re-initialise the encoder for "
    "real (the course's loop changes nothing), retrain; over seeds",
    settings=FrozenDecoderSettings,
)
def sheet6_frozen_decoder(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Train the big model, re-initialise its encoder, retrain it against the frozen decoder.

    Also runs the course's re-initialisation loop on a trained model and reports
    what it changed (nothing), beside :func:`aelab.train.reinitialize` (everything).

    Parameters
    ----------
    quick : bool
        :meth:`FrozenDecoderSettings.quick` or :meth:`FrozenDecoderSettings.full`.
    seed : int
        Seeds the data; the models use seeds ``seed .. seed + seeds - 1``.
    data : None
        Refused: the question is about the sheet's rectangle.
    progress : bool, optional
    **overrides
        Fields of :class:`FrozenDecoderSettings`.

    Examples
    --------
    >>> result = sheet6_frozen_decoder(epochs=2, seeds=2)
    >>> result.tables["course pitfalls"]["share of encoder weights changed"].tolist()
    [0.0, 1.0]
    """
    check_study_data("sheet6-frozen-decoder", None, data)
    s = resolve_settings(FrozenDecoderSettings, quick, overrides)
    stages, first, retrained, train = frozen_run(s, seed, progress)
    pitfalls = course_pitfalls(first.models[0], train.X)
    findings, answer = frozen_findings(stages, pitfalls, s)
    summary = stages.summary("test_mse", by="stage")
    changed = pitfalls["share of encoder weights changed"]
    metrics = {
        f"test_mse_{k.replace(' ', '_')}": float(v)
        for k, v in zip(summary["stage"], summary["mean"])
    }
    metrics.update(
        course_loop_share_changed=float(changed[0]),
        aelab_share_changed=float(changed[1]),
        decoder_max_change=float(stages.table["decoder_change"].max()),
    )
    tables = {"course pitfalls": pitfalls, "stages": summary, "runs": stages.table}
    return StudyResult(
        "sheet6-frozen-decoder",
        tables,
        _frozen_figures(stages, first, retrained, train, s),
        findings,
        asdict(s) | {"seed": seed, "quick": quick, "architecture": BIG_LABEL},
        metrics,
        answer,
    )


# --- sheet6-gd-vs-sgd --------------------------------------------------------------------------


@dataclass(frozen=True)
class GdVsSgdSettings:
    n: int = 100  # training points, the sheet's
    epochs: int = 100  # of the mini-batch runs; the sheet trains 1000 (full)
    batch_size: int = 8  # the sheet's mini-batch
    # plain GD and SGD; measured for SGD at 100 epochs, 5 seeds: lr 1e-3 (torch's default) ends
    # at the mean predictor's 0.85, 1e-2 at 0.29, 5e-2 at 0.14, 1e-1 at 0.14 (less steadily)
    sgd_lr: float = 0.05
    adam_lr: float = 1e-3  # the sheet's Adam
    gd_budget: str = "steps"  # GD as many "steps" as the mini-batch runs, or as many "examples"
    seeds: int = 5  # the three methods share each seed's initial weights: paired tests

    def __post_init__(self):
        _check(self, ("n", "epochs", "batch_size"), ("sgd_lr", "adam_lr"))
        check_choice("gd_budget", self.gd_budget, ("steps", "examples"))
        if self.batch_size >= self.n:
            raise ValueError(
                f"batch_size={self.batch_size} must be below n={self.n}: a batch of "
                "all points is full-batch GD, not mini-batch SGD."
            )

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(epochs=1000, seeds=10)


def _seconds(h: History) -> np.ndarray:
    """Cumulative seconds per epoch, as the run's share of its stack (each stack is one method)."""
    return np.asarray(h.seconds, dtype=float) / h.config.get("ensemble_size", 1)


def _loss_at(losses, axis, x: float) -> float:
    """The loss of the last epoch ending at or before ``x`` on ``axis``; NaN if none did."""
    i = int(np.searchsorted(np.asarray(axis, dtype=float), x, side="right")) - 1
    return float(losses[i]) if i >= 0 and len(losses) else float("nan")


def gd_run(s: GdVsSgdSettings, seed: int = 0, progress=None) -> tuple[Runs, dict]:
    """Train full-batch GD, mini-batch SGD and Adam from the same initial weights per seed.

    Adds the training loss after the examples and the seconds the shortest run
    used (``loss_at_examples``, ``loss_at_seconds``) and its fall over the last
    10% of epochs (``late_fall``). The loss is History.train_loss: the mean of
    an epoch's batch losses (for GD, the loss on all points before its step).
    """
    train = data.rectangle(s.n, seed=seed)
    steps = s.epochs * (s.n // s.batch_size)
    grid = [
        dict(
            method="full-batch GD",
            optimizer="sgd",
            batch_size=s.n,
            lr=s.sgd_lr,
            epochs=steps if s.gd_budget == "steps" else s.epochs,
        ),
        dict(
            method=f"mini-batch SGD ({s.batch_size})",
            optimizer="sgd",
            batch_size=s.batch_size,
            lr=s.sgd_lr,
            epochs=s.epochs,
        ),
        dict(
            method=f"Adam ({s.batch_size})",
            optimizer="adam",
            batch_size=s.batch_size,
            lr=s.adam_lr,
            epochs=s.epochs,
        ),
    ]
    runs = sweep(
        lambda method: Autoencoder.from_widths(BIG, 1, 2),
        train,
        grid=grid,
        seeds=_seeds(s, seed),
        progress=progress,
    )
    done = [h for h in runs.histories if h.examples_seen]
    ref = {
        "examples": min(h.examples_seen[-1] for h in done),
        "seconds": min(_seconds(h)[-1] for h in done),
        "pca": PCA(1).fit(train.X).reconstruction_error(train.X),
        "mean": mean_predictor_mse(train.X),
    }
    hs = runs.histories
    runs.table["loss_at_examples"] = [
        _loss_at(h.train_loss, h.examples_seen, ref["examples"]) for h in hs
    ]
    runs.table["loss_at_seconds"] = [
        _loss_at(h.train_loss, _seconds(h), ref["seconds"]) for h in hs
    ]
    runs.table["late_fall"] = [_late_fall(h.train_loss) for h in hs]
    return runs, ref


def _ranking(runs: Runs, metric: str, what: str) -> str:
    """The method with the lowest mean against each other one (paired t, Holm), then the rest."""
    summary = runs.summary(metric, by="method").set_index("method")
    pairs = runs.compare(metric, by="method", against="all")
    pairs["a"], pairs["b"] = pairs["method_a"], pairs["method_b"]
    best = summary["mean"].idxmin()
    with_best = (pairs["a"] == best) | (pairs["b"] == best)
    verdicts = []
    for _, r in pairs[with_best].iterrows():
        other, mean = (r["b"], r["mean_b"]) if r["a"] == best else (r["a"], r["mean_a"])
        word = "significantly lower than" if r["significant"] else "indistinguishable from"
        verdicts.append(
            f"{word} {other} (mean {mean:.4f}, paired t over {r['n_pairs']} seeds, "
            f"Holm {p_value_text(r['p_holm'])})"
        )
    rest = [compare_sentence(r, what, fmt=".4f") for _, r in pairs[~with_best].iterrows()]
    return " ".join(
        [
            f"{best} has the lowest mean {what}, {_ci(summary.loc[best], '.4f')}: "
            + "; ".join(verdicts)
            + ".",
            *map(_capital, rest),
        ]
    )


def gd_findings(runs: Runs, ref: dict, s: GdVsSgdSettings):
    t = runs.table
    steps = t.groupby("method", sort=False)["steps"].first()
    same = steps.nunique() == 1
    falls = t.groupby("method", sort=False)["late_fall"].median()
    head = _ranking(runs, "loss_at_examples", f"training loss after {ref['examples']:,} examples")
    findings = [
        (
            f"All three made the same number of optimizer steps ({steps.iloc[0]:,})"
            if same
            else "Optimizer steps differ: " + ", ".join(f"{m} {v:,}" for m, v in steps.items())
        )
        + f"; the loss is the training loss per epoch; PCA with 1 component reaches "
        f"{ref['pca']:.4f}, predicting the mean {ref['mean']:.4f}.",
        head,
        _ranking(runs, "loss_at_seconds", f"training loss after {ref['seconds']:.2f} s")
        + f" (Seconds: each run's share of its stack of {s.seeds} trained together on this "
        "machine, per-epoch bookkeeping included.)",
        _ranking(
            runs,
            "train_mse",
            "final training MSE ("
            + ("same number of steps)" if same else "each at its own budget)"),
        ),
    ]
    moving = [m for m, f in falls.items() if f > STILL_FALLING]
    findings.append(
        _not_converged(
            s,
            (
                "the loss still fell by more than 5% over the last 10% of epochs (median over seeds) for "
                + ", ".join(f"{m} ({100 * falls[m]:.0f}%)" for m in moving)
                + "; the final MSEs compare this budget, not converged values."
            ),
        )
        if moving
        else f"Every method's loss fell by less than 5% over its last 10% of epochs (largest "
        f"{100 * falls.max():.1f}%, median over seeds)."
    )
    return findings, head


def _gd_figure(runs: Runs, ref: dict) -> dict:
    fig, axes = plots.new_figure(ncols=2, width=5.6, height=4.4)
    by_examples, by_seconds = axes[0]
    t = runs.table
    for i, method in enumerate(t["method"].unique()):
        rows = np.flatnonzero(t["method"].to_numpy() == method)
        for j, r in enumerate(rows):
            h, name = runs.histories[r], f"{method}, {len(rows)} seeds" if j == 0 else None
            by_examples.plot(
                h.examples_seen, h.train_loss, color=f"C{i}", lw=0.7, alpha=0.7, label=name
            )
            by_seconds.plot(_seconds(h), h.train_loss, color=f"C{i}", lw=0.7, alpha=0.7, label=name)
        for ax, metric, x in (
            (by_examples, "loss_at_examples", ref["examples"]),
            (by_seconds, "loss_at_seconds", ref["seconds"]),
        ):
            row = runs.where(method=method).summary(metric, by=[]).iloc[0]
            ax.errorbar(
                [x],
                [row["mean"]],
                yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                fmt="o",
                color=f"C{i}",
                mec="k",
                capsize=4,
                zorder=5,
            )
    low = min(min(h.train_loss) for h in runs.histories if h.train_loss)
    for ax in axes[0]:
        ax.set_ylim(0.7 * low, 1.2 * ref["mean"])  # a CI reaching near 0 would squash the curves
        ax.axhline(
            ref["pca"], color="k", ls="--", lw=0.9, label=f"PCA, 1 component ({ref['pca']:.3f})"
        )
        ax.axhline(
            ref["mean"], color="k", ls=":", lw=0.9, label=f"predicting the mean ({ref['mean']:.3f})"
        )
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_ylabel("training loss per epoch (MSE)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize="x-small")
    by_examples.set_xscale("log")
    by_examples.set_xlabel("training examples seen")
    by_examples.set_title(f"Per example seen (dots: mean, 95% CI at {ref['examples']:,})")
    by_seconds.set_xlabel("seconds (each run's share of its stack, this machine)")
    by_seconds.set_title(f"Per second (dots: mean, 95% CI at {ref['seconds']:.2f} s)")
    fig.suptitle(f"Big model {BIG_LABEL}: full-batch GD vs mini-batch SGD vs Adam")
    return {"loss": fig}


@study(
    "sheet6-gd-vs-sgd",
    "sheet 6 (h): full-batch GD vs mini-batch SGD vs Adam: loss vs "
    "examples seen and vs seconds, over seeds",
    settings=GdVsSgdSettings,
)
def sheet6_gd_vs_sgd(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Train the big model three ways from the same initial weights; compare per example and second.

    Parameters
    ----------
    quick : bool
        :meth:`GdVsSgdSettings.quick` or :meth:`GdVsSgdSettings.full`.
    seed : int
        Seeds the data; the models use seeds ``seed .. seed + seeds - 1``.
    data : None
        Refused: the question is about the sheet's rectangle.
    progress : bool, optional
    **overrides
        Fields of :class:`GdVsSgdSettings`, e.g. ``gd_budget="examples"``.

    Examples
    --------
    >>> result = sheet6_gd_vs_sgd(epochs=2, seeds=2)
    >>> result.tables["runs"].groupby("method", sort=False)["steps"].first().tolist()
    [24, 24, 24]
    """
    check_study_data("sheet6-gd-vs-sgd", None, data)
    s = resolve_settings(GdVsSgdSettings, quick, overrides)
    runs, ref = gd_run(s, seed, progress)
    findings, answer = gd_findings(runs, ref, s)
    names = {
        "loss_at_examples": "loss after the same examples",
        "loss_at_seconds": "loss after the same seconds",
        "train_mse": "final training MSE",
    }
    tables = {title: runs.summary(metric, by="method") for metric, title in names.items()}
    metrics = {
        f"{metric}_{key}": float(v)
        for metric in names
        for key, v in zip(("gd", "sgd", "adam"), tables[names[metric]]["mean"])
    }
    config = (
        asdict(s)
        | {"seed": seed, "quick": quick, "architecture": BIG_LABEL}
        | {f"reference_{k}": v for k, v in ref.items()}
    )
    return StudyResult(
        "sheet6-gd-vs-sgd",
        tables | {"runs": runs.table},
        _gd_figure(runs, ref),
        findings,
        config,
        metrics,
        answer,
    )
