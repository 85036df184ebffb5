"""Course sheet 6, training experiments on the rectangle: memorisation, a frozen decoder, GD vs SGD.

* sheet6-memorize (question e): can an MLP with a 1-D bottleneck reconstruct
  ``n`` points perfectly? Training error against ``n`` and width.
* sheet6-frozen-decoder (question f): train, freeze the decoder, re-initialise
  the encoder for real, train again; how do the codes move?
* sheet6-gd-vs-sgd (question h): full-batch gradient descent, mini-batch SGD
  and Adam, against examples seen and against seconds.

The architectures, data and shared helpers are in :mod:`aelab.studies.sheet6`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch

from aelab import data, plots
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.models import Autoencoder
from aelab.plots import plain_log_ticks
from aelab.studies._base import StudyResult, study
from aelab.studies._common import (
    COLLAPSE_SHARE,
    code_interval,
    codes,
    collapsed,
    decode_line,
    mean_predictor_mse,
    setting,
    setting_list,
    train_stack,
)
from aelab.studies.sheet6 import (
    EXTENT,
    build,
    course_settings,
    data_panel,
    label,
    linear_pieces,
    n_parameters,
)
from aelab.train import History, train_autoencoder

__all__ = ["sheet6_memorize", "sheet6_frozen_decoder", "sheet6_gd_vs_sgd"]


# --- sheet6-memorize -----------------------------------------------------------------------

MEMORIZE_QUICK = dict(ns=(4, 16, 64), widths=(4, 16, 64), n_seeds=2, epochs=1000)
MEMORIZE_FULL = dict(ns=(4, 16, 64, 256), widths=(4, 8, 16, 32, 64, 128), n_seeds=3, epochs=5000)


def _memorize_error_figure(summary: pd.DataFrame, runs: pd.DataFrame, threshold: float):
    fig, axes = plots.new_figure(width=7.0, height=4.6)
    ax = axes[0, 0]
    for i, (n, group) in enumerate(summary.groupby("n")):
        ax.plot(group["width"], group["best MSE"], "o-", color=f"C{i}", label=f"n = {n} points")
        these = runs[runs["n"] == n]
        ax.scatter(these["width"], these["MSE"], s=12, color=f"C{i}", alpha=0.35)
        bad = these[these["collapsed to the mean"]]
        ax.scatter(bad["width"], bad["MSE"], s=50, marker="x", color=f"C{i}")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"'~0': MSE < {threshold:g}")
    ax.scatter([], [], s=12, color="0.5", alpha=0.5, label="single runs (seeds)")
    ax.scatter([], [], s=50, marker="x", color="0.3", label="collapsed to the mean")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(summary["width"].unique()))
    ax.set_xticklabels([str(w) for w in sorted(summary["width"].unique())])
    ax.set_xlabel("hidden width w (architecture 2-w-w-1-w-w-2)")
    ax.set_ylabel("training MSE (best run over seeds)")
    ax.set_title("Can a 1-D bottleneck memorise n points? Training error vs width")
    ax.legend(fontsize="small", loc="lower left")
    ax.grid(True, alpha=0.3, which="both")
    return fig


def _memorize_curves_figure(X, models: dict[int, torch.nn.Module], errors: dict[int, float], n: int):
    widths = list(models)
    fig, axes = plots.new_figure(ncols=len(widths), width=4.6, height=3.5)
    for i, (ax, w) in enumerate(zip(axes[0], widths)):
        model = models[w]
        low, high = code_interval(model, X, widen=0.02)
        curve = decode_line(model, low, high, steps=2000)
        X_hat = reconstruct(model, X)
        names = ("training points", "decoded code interval", "reconstructions") if i == 0 else (None,) * 3
        data_panel(ax, X, s=22, color="C0", label=names[0])
        ax.plot(curve[:, 0], curve[:, 1], color="C1", lw=1.2, label=names[1])
        ax.scatter(X_hat[:, 0], X_hat[:, 1], s=8, color="C3", zorder=3, label=names[2])
        ax.set_xlim(EXTENT[0], EXTENT[1])
        ax.set_ylim(EXTENT[2], EXTENT[3])
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(f"width {w}: MSE {errors[w]:.1e}", fontsize="medium")
    axes[0, 0].legend(fontsize="x-small", loc="upper left")
    fig.suptitle(f"The decoder's curve through n = {n} points, by width (best seed)")
    return fig


@study("sheet6-memorize",
       "sheet 6 (e): can a 1-D bottleneck reconstruct n points perfectly? training error vs n and width")
def sheet6_memorize(quick: bool = True, seed: int = 0, *, progress=None, ns=None, widths=None,
                    n_seeds: int | None = None, epochs: int | None = None, layers: int = 2,
                    lr: float = 1e-2, threshold: float = 1e-4) -> StudyResult:
    """Train 2-w-w-1-w-w-2 autoencoders to reconstruct ``n`` rectangle points, for several n and w.

    Memorisation is a question of capacity, so every model is trained full-batch
    (the exact training error is the objective) with Adam and a cosine
    learning-rate schedule, for the same number of steps whatever ``n``. The
    datasets are nested: the ``n = 4`` points are the first 4 of the ``n = 16`` ones.

    A ReLU decoder of a scalar code draws a piecewise-linear curve, and every
    reconstruction lies on it; a straight piece holds at most 2 of ``n`` points
    in general position, so exact memorisation needs at least ``n / 2`` pieces.
    The study counts the pieces of each trained decoder over the data's codes
    (MSEs near 1e-15 are float32 rounding: exact).

    Parameters
    ----------
    quick : bool
        n in (4, 16, 64), widths (4, 16, 64), 2 seeds, 1000 steps; otherwise n up to
        256, widths 4 to 128, 3 seeds, 5000 steps.
    seed : int
        Seeds the data; the models use seeds ``seed, seed + 1, ...``.
    ns, widths : sequence of int, optional
        Dataset sizes and hidden widths to try.
    n_seeds, epochs : int, optional
        Runs per (n, width) and full-batch steps per run.
    layers : int
        Hidden layers in the encoder (and in the decoder).
    lr : float
        Adam's initial learning rate.
    threshold : float
        Training MSE below which a run counts as a perfect reconstruction.

    Examples
    --------
    >>> result = sheet6_memorize(quick=True, ns=(4,), widths=(8,), epochs=10)
    >>> result.tables["summary"][["n", "width"]].values.tolist()
    [[4, 8]]
    """
    q, f = MEMORIZE_QUICK, MEMORIZE_FULL
    ns = tuple(setting_list("ns", ns, quick, q["ns"], f["ns"]))
    widths = tuple(setting_list("widths", widths, quick, q["widths"], f["widths"]))
    n_seeds = setting("n_seeds", n_seeds, quick, q["n_seeds"], f["n_seeds"])
    epochs = setting("epochs", epochs, quick, q["epochs"], f["epochs"])
    run_seeds = [seed + k for k in range(n_seeds)]
    largest = data.rectangle(max(ns), seed=seed)
    trains = {n: largest.subset(slice(0, n)) for n in ns}

    keys, models = [], []
    for w in widths:
        for n in ns:
            for s in run_seeds:
                with seeded(s):
                    models.append(Autoencoder(2, 1, hidden_size=w, layers=layers))
                keys.append((n, w, s))
    # batch_size >= n is full batch for every n: one call trains all, stacked where shapes agree
    train_stack(models, [trains[n] for n, _, _ in keys], seeds=[s for _, _, s in keys],
                 epochs=epochs, batch_size=max(ns), lr=lr, lr_schedule="cosine", progress=progress)
    rows, trained = [], dict(zip(keys, models))
    for (n, w, s), model in trained.items():
        X = trains[n].X
        mse = reconstruction_error(model, X)
        z = codes(model, X)
        rows.append({"n": n, "width": w, "seed": s, "parameters": n_parameters(model),
                     "MSE": mse, "collapsed to the mean": collapsed(mse, mean_predictor_mse(X)),
                     "straight pieces": linear_pieces(model, z.min(), z.max())})
    runs = pd.DataFrame(rows)
    best_rows = runs.loc[runs.groupby(["n", "width"])["MSE"].idxmin()]
    summary = (runs.groupby(["n", "width"])
               .agg(parameters=("parameters", "first"), runs=("MSE", "size"),
                    **{"best MSE": ("MSE", "min"), "median MSE": ("MSE", "median"),
                       "collapsed runs": ("collapsed to the mean", "sum")})
               .reset_index())
    summary["reached ~0"] = summary["best MSE"] < threshold
    summary["straight pieces (best run)"] = best_rows["straight pieces"].to_numpy()
    summary["pieces needed (n/2)"] = [math.ceil(n / 2) for n in summary["n"]]

    rms = math.sqrt(threshold)
    findings = [
        f"'Perfect' here means training MSE < {threshold:g}, an RMS error of {rms:.2g} per "
        f"coordinate ({100 * rms / 4:.2g}% of the rectangle's 4-unit width). Each run: "
        f"{epochs} full-batch Adam steps (lr {lr:g}, cosine schedule), {n_seeds} seed(s) per cell.",
    ]
    for n in ns:
        cells = summary[summary["n"] == n]
        reached = cells[cells["reached ~0"]]
        best = cells.loc[cells["best MSE"].idxmin()]
        pieces, needed = int(best["straight pieces (best run)"]), math.ceil(n / 2)
        if len(reached):
            first = reached.iloc[0]
            findings.append(
                f"n = {n}: width {first['width']} is the smallest that reaches ~0 (MSE "
                f"{first['best MSE']:.1e}, {first['parameters']} parameters, "
                f"{first['straight pieces (best run)']} straight pieces where {needed} are needed); "
                f"best over all widths {best['best MSE']:.1e} at width {best['width']}.")
        else:
            why = (f"enough pieces, but {epochs} steps did not place them on every point"
                   if pieces >= needed else "too few pieces to pass through every point")
            findings.append(
                f"n = {n}: no width tried reaches ~0; the best is {best['best MSE']:.1e} at "
                f"width {best['width']} ({best['parameters']} parameters), whose curve has "
                f"{pieces} straight pieces where exact reconstruction needs at least {needed}: {why}.")
    n_max = max(ns)
    at_max = summary[summary["n"] == n_max].sort_values("width")
    findings.append(
        f"With n = {n_max}, the best training MSE goes from {at_max['best MSE'].iloc[0]:.1e} at "
        f"width {at_max['width'].iloc[0]} to {at_max['best MSE'].iloc[-1]:.1e} at width "
        f"{at_max['width'].iloc[-1]} (median over seeds {at_max['median MSE'].iloc[0]:.1e} -> "
        f"{at_max['median MSE'].iloc[-1]:.1e}).")
    n_bad = int(runs["collapsed to the mean"].sum())
    bad_widths = sorted(runs.loc[runs["collapsed to the mean"], "width"].unique().tolist())
    findings.append(
        f"{n_bad} of {len(runs)} runs collapsed to predicting the mean (MSE >= "
        f"{COLLAPSE_SHARE:.0%} of the data variance)"
        + (f", all at widths {bad_widths}." if n_bad else "."))

    show_n = sorted(ns)[len(ns) // 2]
    shown_widths = widths if len(widths) <= 4 else (widths[0], widths[len(widths) // 3],
                                                     widths[2 * len(widths) // 3], widths[-1])
    best_seed = {w: int(runs[(runs["n"] == show_n) & (runs["width"] == w)]
                        .sort_values("MSE")["seed"].iloc[0]) for w in shown_widths}
    figures = {
        "error": _memorize_error_figure(summary, runs, threshold),
        "curves": _memorize_curves_figure(
            trains[show_n].X, {w: trained[show_n, w, best_seed[w]] for w in shown_widths},
            {w: float(runs[(runs["n"] == show_n) & (runs["width"] == w)]["MSE"].min())
             for w in shown_widths}, show_n),
    }
    metrics = {f"best_mse_n{n}_w{w}": float(v) for (n, w), v in
               summary.set_index(["n", "width"])["best MSE"].items()}
    metrics["collapsed_runs"] = n_bad
    config = dict(ns=list(ns), widths=list(widths), n_seeds=n_seeds, epochs=epochs, layers=layers,
                  lr=lr, lr_schedule="cosine", batch="full", optimizer="adam",
                  threshold=threshold, seed=seed, quick=quick)
    return StudyResult("sheet6-memorize", {"summary": summary, "runs": runs}, figures, findings,
                       config, metrics)


# --- sheet6-frozen-decoder -----------------------------------------------------------------


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _change(before: dict, after: dict) -> dict:
    """How much a module's parameters changed: largest |diff|, share changed, relative norm."""
    diffs = torch.cat([(after[k] - before[k]).flatten() for k in before])
    old = torch.cat([before[k].flatten() for k in before])
    return {"max_abs": float(diffs.abs().max()), "share": float((diffs != 0).double().mean()),
            "relative": float(diffs.norm() / old.norm())}


def _best_codes(model, X: torch.Tensor, low: float, high: float, steps: int = 4001):
    """Each point's best code for the model's decoder, by search over ``steps`` codes in [low, high].

    Returns the codes and the MSE (per coordinate) their decoded points give:
    no encoder can do better with this decoder (up to the grid's resolution).
    """
    z = torch.linspace(low, high, steps, dtype=torch.float64)
    curve = decode_line(model, low, high, steps)
    d2 = torch.cdist(X.double(), curve.double()).pow(2)  # (n, steps)
    best = d2.min(dim=1)
    return z[best.indices].numpy(), float(best.values.mean() / X.shape[1])


def _frozen_loss_figure(first: History, second: History, mse_reinit: float, arch: str):
    fig, axes = plots.new_figure(width=7.5, height=4.4)
    ax = axes[0, 0]
    e1, e2 = first.epochs, second.epochs
    ax.plot(np.arange(1, e1 + 1), first.train_loss, color="C0", label="1st training: whole model")
    ax.plot(np.arange(e1 + 1, e1 + e2 + 1), second.train_loss, color="C3",
            label="2nd training: new encoder, frozen decoder")
    ax.plot([e1 + 0.5], [mse_reinit], "v", color="C3", ms=8,
            label=f"right after re-initialisation ({mse_reinit:.3f})")
    ax.axvline(e1 + 0.5, color="0.4", ls=":", lw=1)
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.set_xlabel("epoch (both trainings in sequence)")
    ax.set_ylabel("mean training loss per epoch (MSE)")
    ax.set_title(f"{label(arch)}: train, re-initialise the encoder, retrain it")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return fig


def _frozen_codes_figure(X, z1, z0, z2, z_best, arch: str):
    fig, axes = plots.new_figure(ncols=2, width=5.6, height=4.6)
    paired, moves = axes[0]
    colour = X[:, 0].numpy()
    points = paired.scatter(z1, z2, c=colour, cmap="coolwarm", s=20, edgecolor="k", linewidth=0.2,
                            label="one training point")
    paired.scatter(z1, z_best, s=14, marker="x", color="0.45", linewidth=0.8, zorder=1,
                   label="best code for the frozen decoder")
    lo, hi = min(z1.min(), z2.min()), max(z1.max(), z2.max())
    paired.plot([lo, hi], [lo, hi], color="k", ls="--", lw=1, label="same code (y = x)")
    paired.set_xlabel("code after the 1st training")
    paired.set_ylabel("code after retraining the encoder (dots)")
    paired.set_title("Each point's code, before vs after")
    paired.legend(fontsize="small", loc="upper left")
    paired.grid(True, alpha=0.3)

    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    norm = Normalize(colour.min(), colour.max())
    cmap = colormaps["coolwarm"]
    for a, b, c, x in zip(z1, z0, z2, colour):
        moves.plot([a, b, c], [2, 1, 0], color=cmap(norm(x)), lw=0.6, alpha=0.7)
    for level, z, name in ((2, z1, "after 1st training"), (1, z0, "after re-initialisation"),
                           (0, z2, "after retraining")):
        moves.scatter(z, np.full(len(z), level), s=10, color="k", zorder=3)
    moves.set_yticks([2, 1, 0])
    moves.set_yticklabels(["after 1st\ntraining", "right after\nre-init", "after\nretraining"])
    moves.set_xlabel("code z")
    moves.set_ylabel("moment")
    moves.set_title("How each point's code moved (one line per point)")
    fig.colorbar(points, ax=moves, label="$x_1$ of the point (colour in both panels)")
    fig.suptitle(f"{label(arch)}: codes before and after re-initialising and retraining the encoder")
    return fig


@study("sheet6-frozen-decoder",
       "sheet 6 (f): freeze the trained decoder, really re-initialise the encoder, retrain; codes before/after")
def sheet6_frozen_decoder(quick: bool = True, seed: int = 0, *, progress=None, n: int | None = None,
                          epochs: int | None = None, architecture: str = "big") -> StudyResult:
    """Train, then re-initialise the encoder (for real) and retrain it against the frozen decoder.

    The study checks what the sheet's solutions got wrong: that the encoder's
    weights really change at re-initialisation, and that the decoder does not
    change while the encoder is retrained. It then compares each point's code
    after the first training with its code after retraining.

    Parameters
    ----------
    quick : bool
        100 epochs per training instead of 1000.
    seed : int
        Seeds the data, the weights and the data order (the retraining uses ``seed + 1``).
    n, epochs : int, optional
        Override the training points (100) and the epochs of each training.
    architecture : {"big", "small", "PCA-like"}
        The sheet retrains the big model.

    Examples
    --------
    >>> result = sheet6_frozen_decoder(quick=True, epochs=2, architecture="small")
    >>> result.metrics["decoder_max_change"]
    0.0
    """
    cfg = course_settings(quick, n, epochs)
    train = data.rectangle(cfg["n"], seed=seed)
    X = train.X
    model = build(architecture, seed)
    kwargs = dict(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], device="cpu",
                  progress=progress)
    first = train_autoencoder(model, train, seed=seed, **kwargs)
    z1, mse1 = codes(model, X), reconstruction_error(model, X)
    encoder1, decoder1 = _state(model.encoder), _state(model.decoder)

    # The re-initialisation alone (0 epochs, same seed): the same draw the retraining starts from.
    probe = copy.deepcopy(model)
    train_autoencoder(probe, train, seed=seed + 1, freeze="decoder", reinit="encoder",
                      **dict(kwargs, epochs=0))
    reinit = _change(encoder1, _state(probe.encoder))
    z0, mse0 = codes(probe, X), reconstruction_error(probe, X)

    second = train_autoencoder(model, train, seed=seed + 1, freeze="decoder", reinit="encoder",
                               **kwargs)
    z2, mse2 = codes(model, X), reconstruction_error(model, X)
    z_range = float(z1.max() - z1.min())
    # each point's best code for the frozen decoder, searched around the first training's codes
    z_best, mse_best = _best_codes(model, X, float(z1.min()) - 0.25 * z_range,
                                   float(z1.max()) + 0.25 * z_range)
    decoder_change = _change(decoder1, _state(model.decoder))
    retrained = _change(_state(probe.encoder), _state(model.encoder))

    near = 0.02 * z_range  # "at its best code": within 2% of the code range
    at_best_first = float(np.mean(np.abs(z1 - z_best) <= near))
    at_best_retrained = float(np.mean(np.abs(z2 - z_best) <= near))
    dz = np.abs(z2 - z1)
    corr = float(np.corrcoef(z1, z2)[0, 1])
    table = pd.DataFrame([
        {"codes": "after 1st training", "MSE": mse1, "code min": z1.min(), "code max": z1.max(),
         "corr. with 1st codes": 1.0, "share at the best code": at_best_first},
        {"codes": "right after re-initialising the encoder", "MSE": mse0, "code min": z0.min(),
         "code max": z0.max(), "corr. with 1st codes": float(np.corrcoef(z1, z0)[0, 1]),
         "share at the best code": float(np.mean(np.abs(z0 - z_best) <= near))},
        {"codes": "after retraining the encoder", "MSE": mse2, "code min": z2.min(),
         "code max": z2.max(), "corr. with 1st codes": corr,
         "share at the best code": at_best_retrained},
        {"codes": "best code per point for the frozen decoder (search)", "MSE": mse_best,
         "code min": z_best.min(), "code max": z_best.max(),
         "corr. with 1st codes": float(np.corrcoef(z1, z_best)[0, 1]), "share at the best code": 1.0},
    ])
    checks = pd.DataFrame([
        {"check": "encoder changed by re-initialisation", "largest |change|": reinit["max_abs"],
         "share of entries changed": reinit["share"], "relative change (norm)": reinit["relative"]},
        {"check": "encoder changed by retraining", "largest |change|": retrained["max_abs"],
         "share of entries changed": retrained["share"], "relative change (norm)": retrained["relative"]},
        {"check": "decoder changed during retraining (frozen)", "largest |change|": decoder_change["max_abs"],
         "share of entries changed": decoder_change["share"],
         "relative change (norm)": decoder_change["relative"]},
    ])
    ok = reinit["share"] > 0.99 and decoder_change["max_abs"] == 0.0
    recovered = mse2 <= 1.25 * mse1
    findings = [
        f"Re-initialisation is real: {100 * reinit['share']:.1f}% of the encoder's "
        f"{sum(v.numel() for v in encoder1.values())} weights and biases changed (largest change "
        f"{reinit['max_abs']:.3f}, {100 * reinit['relative']:.0f}% of the trained weights' norm); "
        f"the frozen decoder's largest change during retraining is {decoder_change['max_abs']:g}"
        + ("." if ok else " -- CHECK FAILED: the experiment did not do what it claims."),
        f"Reconstruction MSE: {mse1:.4f} after the 1st training, {mse0:.4f} right after "
        f"re-initialising the encoder, {mse2:.4f} after retraining it for {cfg['epochs']} epochs "
        f"({mse2 / mse1:.2f} times the 1st training's error). With this decoder, the best code "
        f"for each point would give {mse_best:.4f}: "
        + ("retraining recovered an encoder about as good as the first."
           if recovered else "retraining got stuck far from what the decoder allows."),
        f"Within 2% of the code range ({near:.3f}) of its best code: {100 * at_best_first:.0f}% "
        f"of the points after the 1st training, {100 * at_best_retrained:.0f}% after retraining. "
        f"The retrained codes correlate with the first ones at {corr:.3f}; a point's code moved "
        f"by {np.median(dz):.3f} in the median and {dz.max():.3f} at most (code range "
        f"{z_range:.2f})."
        + ("" if recovered else
           f" The new codes span only {z2.min():.2f} to {z2.max():.2f}, against "
           f"{z1.min():.2f} to {z1.max():.2f} before: starting near 0, gradient descent moves a "
           "code only downhill along the fixed curve, and a curve that folds back has many valleys."),
    ]
    figures = {"loss": _frozen_loss_figure(first, second, mse0, architecture),
               "codes": _frozen_codes_figure(X, z1, z0, z2, z_best, architecture)}
    metrics = {"mse_first": mse1, "mse_reinit": mse0, "mse_retrained": mse2,
               "mse_best_codes": mse_best, "code_correlation": corr,
               "share_at_best_code_retrained": at_best_retrained,
               "encoder_share_changed_at_reinit": reinit["share"],
               "decoder_max_change": decoder_change["max_abs"]}
    config = dict(cfg, seed=seed, quick=quick, architecture=label(architecture),
                  retrain_seed=seed + 1, optimizer="adam")
    return StudyResult("sheet6-frozen-decoder", {"codes": table, "checks": checks}, figures,
                       findings, config, metrics)


# --- sheet6-gd-vs-sgd ----------------------------------------------------------------------


def _leading_run(flags) -> int:
    """How many of the first entries of ``flags`` are true in a row (0 if the first is false)."""
    flags = np.asarray(flags, dtype=bool)
    return int(np.argmin(flags)) if not flags.all() else len(flags)


def _first_reaching(h: History, level: float, axis: list) -> float | None:
    hits = np.nonzero(np.asarray(h.train_loss) <= level)[0]
    return float(axis[hits[0]]) if len(hits) else None


def _loss_at(h: History, axis: list, x: float) -> float:
    """The loss after the last epoch that ended at or before ``x`` on ``axis``; NaN if none did,
    or if the run stopped before ``x``."""
    axis = np.asarray(axis, dtype=float)
    i = int(np.searchsorted(axis, x, side="right")) - 1
    return float(h.train_loss[i]) if i >= 0 and axis[-1] >= x else float("nan")


def _gd_figure(histories: dict[str, History], levels: dict[str, float], n: int, arch: str):
    fig, axes = plots.new_figure(ncols=2, width=5.6, height=4.2)
    by_examples, by_seconds = axes[0]
    for i, (name, h) in enumerate(histories.items()):
        by_examples.plot(h.examples_seen, h.train_loss, color=f"C{i}", label=name)
        by_seconds.plot(h.seconds, h.train_loss, color=f"C{i}", label=name)
    for ax in (by_examples, by_seconds):
        for (name, level), ls in zip(levels.items(), ("--", ":")):
            ax.axhline(level, color="k", ls=ls, lw=0.9, label=name)
        ax.set_yscale("log")
        ax.set_ylabel("training loss per epoch (MSE)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize="x-small")
        plain_log_ticks(ax)
    by_examples.set_xscale("log")
    by_examples.set_xlabel("training examples seen")
    by_examples.set_title("Loss vs examples seen")
    by_seconds.set_xlabel("wall-clock seconds (this machine)")
    by_seconds.set_title("Loss vs seconds")
    fig.suptitle(f"{label(arch)}: full-batch GD vs mini-batch SGD vs Adam")
    return fig


@study("sheet6-gd-vs-sgd",
       "sheet 6 (h): full-batch GD vs mini-batch SGD vs Adam: loss vs examples seen and vs seconds")
def sheet6_gd_vs_sgd(quick: bool = True, seed: int = 0, *, progress=None, n: int | None = None,
                     epochs: int | None = None, architecture: str = "big", sgd_lr: float = 0.05,
                     gd_epochs: int | None = None) -> StudyResult:
    """Train the same initial model three ways and compare the loss per example and per second.

    * full-batch GD: plain gradient descent on all points, one step per epoch;
    * mini-batch SGD: plain SGD on batches of 8, the same learning rate;
    * Adam: batches of 8, lr 1e-3 (the sheet's setting).

    By default GD gets as many epochs as the mini-batch runs take optimizer
    steps, so all three make the same number of updates; GD then sees
    ``n / 8`` times more examples. The curves are History.train_loss, so that
    no evaluation runs inside the timed loop: for GD it is the loss on all
    points before each step, for the mini-batch runs the mean of the epoch's
    batch losses (taken while the weights move). The table's final MSE is
    measured on all points after training.

    Parameters
    ----------
    quick : bool
        100 mini-batch epochs instead of 1000.
    seed : int
        Seeds the data, the (shared) initial weights and the data order.
    n, epochs : int, optional
        Override the training points (100) and the mini-batch runs' epochs.
    architecture : {"big", "small", "PCA-like"}
        The model; the sheet uses the big one.
    sgd_lr : float
        Learning rate of GD and SGD.
    gd_epochs : int, optional
        Epochs (= steps) of full-batch GD; default: the mini-batch runs' step count.

    Examples
    --------
    >>> result = sheet6_gd_vs_sgd(quick=True, epochs=2, architecture="small")
    >>> result.tables["runs"]["optimizer steps"].tolist()
    [24, 24, 24]
    """
    cfg = course_settings(quick, n, epochs)
    train = data.rectangle(cfg["n"], seed=seed)
    n_points, batch = cfg["n"], cfg["batch_size"]
    steps_per_epoch = n_points // batch
    gd_epochs = setting("gd_epochs", gd_epochs, quick, cfg["epochs"] * steps_per_epoch,
                        cfg["epochs"] * steps_per_epoch)
    runs = {
        "full-batch GD": dict(optimizer="sgd", batch_size=n_points, lr=sgd_lr, epochs=gd_epochs),
        f"mini-batch SGD (batch {batch})": dict(optimizer="sgd", batch_size=batch, lr=sgd_lr,
                                                 epochs=cfg["epochs"]),
        f"Adam (batch {batch})": dict(optimizer="adam", batch_size=batch, lr=cfg["lr"],
                                      epochs=cfg["epochs"]),
    }
    initial = build(architecture, seed)
    histories, final = {}, {}
    for name, run in runs.items():
        model = copy.deepcopy(initial)  # every run starts from the same weights
        histories[name] = train_autoencoder(model, train, seed=seed, device="cpu",
                                            progress=progress, **run)
        final[name] = reconstruction_error(model, train.X)
    floor = mean_predictor_mse(train.X)
    pca_mse = reconstruction_error(PCA(1).fit(train.X), train.X)
    levels = {f"PCA, 1 component ({pca_mse:.3f})": pca_mse,
              f"predicting the mean ({floor:.3f})": floor}
    same_examples = cfg["epochs"] * steps_per_epoch * batch
    same_seconds = min(h.seconds[-1] for h in histories.values())

    rows = []
    for name, h in histories.items():
        run = runs[name]
        near_mean = np.asarray(h.train_loss) >= COLLAPSE_SHARE * floor
        rows.append({
            "method": name, "optimizer": run["optimizer"], "batch size": run["batch_size"],
            "lr": run["lr"], "epochs": h.epochs, "optimizer steps": len(h.step_loss),
            "examples seen": h.examples_seen[-1], "seconds": h.seconds[-1],
            "final MSE": final[name], "best epoch loss": min(h.train_loss),
            f"MSE after {same_examples} examples": _loss_at(h, h.examples_seen, same_examples),
            f"MSE after {same_seconds:.2f} s": _loss_at(h, h.seconds, same_seconds),
            "examples to reach PCA's MSE": _first_reaching(h, pca_mse, h.examples_seen),
            "seconds to reach PCA's MSE": _first_reaching(h, pca_mse, h.seconds),
            "first epochs near the mean predictor": _leading_run(near_mean),
            "epochs near the mean predictor (all)": int(near_mean.sum()),
            "ends collapsed to the mean": collapsed(final[name], floor),
        })
    table = pd.DataFrame(rows)
    t = table.set_index("method")
    names = list(histories)

    def reach(name):
        ex, sec = t.loc[name, "examples to reach PCA's MSE"], t.loc[name, "seconds to reach PCA's MSE"]
        if ex is None or (isinstance(ex, float) and math.isnan(ex)):
            return f"{name} never"
        return f"{name} after {int(ex):,} examples ({sec:.2f} s)"

    at_examples = t[f"MSE after {same_examples} examples"]

    def loss_after_examples(m):
        if math.isnan(at_examples[m]):
            return f"not reached ({m} stopped after {t.loc[m, 'examples seen']:,} examples)"
        return f"{at_examples[m]:.4f} ({m})"

    steps = t["optimizer steps"]
    findings = [
        f"After the same {same_examples:,} examples ({cfg['epochs']} mini-batch epochs), the MSE is "
        + ", ".join(loss_after_examples(m) for m in names)
        + ("." if math.isnan(at_examples[names[0]]) else
           f": per example seen, the {steps_per_epoch} noisy small steps per epoch beat one exact "
           "full-batch step." if at_examples[names[1]] < at_examples[names[0]] else
           ": per example seen, full-batch GD is not behind here."),
        (f"With the same number of optimizer steps ({steps.iloc[0]:,}), " if steps.nunique() == 1
         else "With " + ", ".join(f"{steps[m]:,} optimizer steps ({m})" for m in names) + ", ")
        + ", ".join(f"{m} ends at {t.loc[m, 'final MSE']:.4f} after {t.loc[m, 'seconds']:.2f} s"
                    for m in names)
        + f"; after {same_seconds:.2f} s (the fastest run's total), the MSE is "
        + ", ".join(f"{t.loc[m, f'MSE after {same_seconds:.2f} s']:.4f} ({m})" for m in names) + ".",
        f"Reaching PCA's MSE ({pca_mse:.4f}, the best linear code): "
        + "; ".join(reach(m) for m in names) + ".",
        "Plateau at the start, i.e. the first epochs in a row with a mean loss near the mean "
        f"predictor's (>= {COLLAPSE_SHARE:.0%} of {floor:.3f}): "
        + ", ".join(f"{t.loc[m, 'first epochs near the mean predictor']} of {t.loc[m, 'epochs']} "
                    f"({m}"
                    + (f"; {t.loc[m, 'epochs near the mean predictor (all)']} such epochs in all)"
                       if t.loc[m, "epochs near the mean predictor (all)"]
                       > t.loc[m, "first epochs near the mean predictor"] else ")")
                    for m in names)
        + "; still there at the end: "
        + (", ".join(m for m in names if t.loc[m, "ends collapsed to the mean"]) or "none") + ".",
    ]
    figures = {"loss": _gd_figure(histories, levels, n_points, architecture)}
    metrics = {}
    for key, m in zip(("gd", "sgd", "adam"), names):
        metrics[f"final_mse_{key}"] = float(t.loc[m, "final MSE"])
        metrics[f"seconds_{key}"] = float(t.loc[m, "seconds"])
    config = dict(cfg, seed=seed, quick=quick, architecture=label(architecture), sgd_lr=sgd_lr,
                  gd_epochs=gd_epochs, adam_lr=cfg["lr"])
    return StudyResult("sheet6-gd-vs-sgd", {"runs": table}, figures, findings, config, metrics)
