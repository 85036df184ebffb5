"""Course sheet 6: autoencoders with a one-dimensional code on the rectangle [-2, 2] x [-1, 1].

The sheet trains three architectures on 100 (or 1000) uniform points of the
rectangle with Adam (lr 1e-3, batch 8, 1000 epochs):

* "small": 2-20-10-1-10-20-2 (ReLU),
* "big": 2-50-50-50-1-50-50-50-2 (ReLU),
* "PCA-like": the linear autoencoder 2-1-2.

This module holds the studies that look at what those models learn
(sheet6-architectures, sheet6-pca, sheet6-decoder-curves) and the helpers the
other sheet-6 studies share; the training experiments (memorisation, frozen
decoder, GD vs SGD) are in :mod:`aelab.studies.sheet6_training`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from aelab import data, plots
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.models import Autoencoder, LinearAutoencoder
from aelab.plots import plain_log_ticks
from aelab.studies._base import StudyResult, study
from aelab.studies._common import (
    COLLAPSE_SHARE,
    code_interval,
    codes,
    collapsed,
    curve_length,
    decode_line,
    mean_predictor_mse,
    setting,
    train_stack,
)
from aelab.train import History, train_autoencoder

__all__ = ["sheet6_architectures", "sheet6_pca", "sheet6_decoder_curves", "ARCHITECTURES"]

# name -> (layer sizes as the sheet writes them, builder)
ARCHITECTURES: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "small": ("2-20-10-1-10-20-2", lambda: Autoencoder.from_widths([20, 10], 1, 2)),
    "big": ("2-50-50-50-1-50-50-50-2", lambda: Autoencoder.from_widths([50, 50, 50], 1, 2)),
    "PCA-like": ("2-1-2, linear", lambda: LinearAutoencoder(2, 1)),
}

COURSE = dict(n=100, epochs=1000, batch_size=8, lr=1e-3)  # the sheet's settings (quick=False)
QUICK_EPOCHS = 100
PCA_QUICK_EPOCHS = 300
CURVE_CMAP = "plasma"
CURVE_VIEW = (-2.7, 2.7, -1.6, 1.6)  # what the decoder-curve panels show
EXTENT = (-2.2, 2.2, -1.2, 1.2)  # the rectangle with a margin, for maps over the input plane


# --- shared helpers (also used by aelab.studies.sheet6_training) ---------------------------


def course_settings(quick: bool, n: int | None, epochs: int | None) -> dict:
    """The sheet's data size and optimiser settings; quick runs train for fewer epochs."""
    return dict(COURSE, n=setting("n", n, quick, COURSE["n"], COURSE["n"]),
                epochs=setting("epochs", epochs, quick, QUICK_EPOCHS, COURSE["epochs"]))


def build(architecture: str, seed: int) -> nn.Module:
    """One of :data:`ARCHITECTURES`, its weights drawn from ``seed``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}.")
    with seeded(seed):
        return ARCHITECTURES[architecture][1]()


def label(architecture: str) -> str:
    return f"{architecture} ({ARCHITECTURES[architecture][0]})"


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear_pieces(model: nn.Module, low: float, high: float, steps: int = 20001,
                  tol: float = 1e-7) -> int:
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


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two 1-D arrays (no ties expected)."""
    ra, rb = (np.argsort(np.argsort(np.asarray(v))) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def angle_degrees(u, v) -> float:
    """Angle between the lines spanned by ``u`` and ``v`` (sign ignored), in degrees, in [0, 90].

    Computed as atan2(|u x v|, |u . v|), which stays accurate for tiny angles
    where arccos of a cosine near 1 does not.
    """
    u = torch.as_tensor(u, dtype=torch.float64).flatten()
    v = torch.as_tensor(v, dtype=torch.float64).flatten()
    u, v = u / u.norm(), v / v.norm()
    along = float(u @ v)
    across = float((u - along * v).norm())
    return math.degrees(math.atan2(across, abs(along)))


def data_panel(ax, X, *, s: float = 8, color: str = "0.6", label: str | None = "training points"):
    """The training points in grey, equal axes, labelled x1/x2."""
    X = np.asarray(X)
    ax.scatter(X[:, 0], X[:, 1], s=s, color=color, label=label, zorder=1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal", adjustable="datalim")


def loss_figure(histories: dict[str, History], title: str) -> "plots.Figure":
    """Two panels: the mean loss per epoch (left) and the loss of every optimizer step (right)."""
    fig, axes = plots.new_figure(ncols=2, width=5.6, height=4.0)
    by_epoch, by_step = axes[0]
    for i, (name, h) in enumerate(histories.items()):
        epochs = np.arange(1, h.epochs + 1)
        by_epoch.plot(epochs, h.train_loss, color=f"C{i}", label=f"{name}: train")
        if h.test_loss:
            by_epoch.plot(epochs, h.test_loss, color=f"C{i}", ls="--", label=f"{name}: fresh points")
        steps = np.arange(1, len(h.step_loss) + 1)
        by_step.plot(steps, h.step_loss, color=f"C{i}", lw=0.4, alpha=0.5, label=f"{name}: one batch")
        per_epoch = len(h.step_loss) // max(h.epochs, 1)
        by_step.plot(epochs * per_epoch, h.train_loss, color=f"C{i}", lw=1.2,
                     label=f"{name}: epoch mean")
    by_epoch.set_title("Per epoch: mean of its step losses (train), error after it (fresh)")
    by_epoch.set_xlabel("epoch")
    by_epoch.set_ylabel("MSE")
    by_step.set_title("Per optimizer step: loss on that step's batch")
    by_step.set_xlabel("optimizer step")
    by_step.set_ylabel("MSE")
    for ax in (by_epoch, by_step):
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
        plain_log_ticks(ax)
    fig.suptitle(title)
    return fig


# --- sheet6-architectures ------------------------------------------------------------------


def _input_grid(steps: int = 221):
    """A grid over :data:`EXTENT` with square cells: (G1, G2, points [m, 2])."""
    x1 = torch.linspace(EXTENT[0], EXTENT[1], steps)
    x2 = torch.linspace(EXTENT[2], EXTENT[3], round(steps * (EXTENT[3] - EXTENT[2]) / (EXTENT[1] - EXTENT[0])))
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
            ax.scatter(X[:, 0], X[:, 1], s=7, facecolor="white", edgecolor="k", linewidth=0.4,
                       label="training points")
            ax.legend(loc="upper right", fontsize="x-small", framealpha=0.8)
            fig.colorbar(filled, ax=ax, label="code z")
        else:
            points = ax.scatter(X[:, 0], X[:, 1], c=z, cmap="viridis", s=18, edgecolor="k",
                                linewidth=0.2)
            fig.colorbar(points, ax=ax, label="code z of the point")
        ax.set_xlim(EXTENT[0], EXTENT[1])
        ax.set_ylim(EXTENT[2], EXTENT[3])
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(label(name) if name in ARCHITECTURES else name)
    fig.suptitle(title)
    return fig


def _noise_summary(h: History, share: float = 0.1) -> dict:
    """Spread of per-step and per-epoch losses over the last ``share`` of training."""
    k = max(1, int(round(share * h.epochs)))
    steps = np.asarray(h.step_loss[-k * (len(h.step_loss) // h.epochs):])
    epochs = np.asarray(h.train_loss[-k:])
    return dict(k=k, step_min=steps.min(), step_max=steps.max(), epoch_min=epochs.min(),
                epoch_max=epochs.max())


@study("sheet6-architectures",
       "sheet 6: small, big and PCA-like AEs on the rectangle: loss per epoch/step, codes over the plane")
def sheet6_architectures(quick: bool = True, seed: int = 0, *, progress=None, n: int | None = None,
                         epochs: int | None = None, n_test: int = 1000) -> StudyResult:
    """Train the sheet's three architectures and show their losses and 1-D codes.

    Parameters
    ----------
    quick : bool
        100 epochs instead of the sheet's 1000.
    seed : int
        Seeds the data, the weights and the data order.
    n : int, optional
        Training points (default 100, as in the sheet).
    epochs : int, optional
        Overrides the epochs of the quick or full setting.
    n_test : int
        Fresh points from the rectangle on which each model is also evaluated.

    Examples
    --------
    >>> result = sheet6_architectures(quick=True, epochs=2)
    >>> sorted(result.figures)
    ['code_contours', 'codes', 'loss']
    """
    cfg = course_settings(quick, n, epochs)
    train = data.rectangle(cfg["n"], seed=seed)
    test = data.rectangle(n_test, seed=seed + 1)
    models, histories = {}, {}
    for arch in ARCHITECTURES:
        model = build(arch, seed)
        histories[arch] = train_autoencoder(model, train, epochs=cfg["epochs"],
                                            batch_size=cfg["batch_size"], lr=cfg["lr"], test=test,
                                            seed=seed, device="cpu", progress=progress)
        models[arch] = model
    pca = PCA(1).fit(train.X)
    pca_train, pca_test = reconstruction_error(pca, train.X), reconstruction_error(pca, test.X)
    floor = mean_predictor_mse(train.X)

    rows = []
    for arch, model in models.items():
        mse_train = reconstruction_error(model, train.X)
        mse_test = reconstruction_error(model, test.X)
        z = codes(model, train.X)
        rows.append({
            "model": arch, "layers": ARCHITECTURES[arch][0], "parameters": n_parameters(model),
            "train MSE": mse_train, "fresh-points MSE": mse_test,
            "train MSE / PCA MSE": mse_train / pca_train,
            "fresh-points MSE / PCA MSE": mse_test / pca_test,
            "share of variance lost": mse_train / floor,
            "rank corr. of code with x1": rank_correlation(z, train.X[:, 0].numpy()),
            "rank corr. of code with x2": rank_correlation(z, train.X[:, 1].numpy()),
            "collapsed to the mean": collapsed(mse_train, floor),
            "seconds": histories[arch].seconds[-1],
        })
    rows.append({"model": "PCA, 1 component", "layers": "-", "parameters": 4,
                 "train MSE": pca_train, "fresh-points MSE": pca_test, "train MSE / PCA MSE": 1.0,
                 "fresh-points MSE / PCA MSE": 1.0,
                 "share of variance lost": pca_train / floor,
                 "rank corr. of code with x1": rank_correlation(codes(pca, train.X), train.X[:, 0]),
                 "rank corr. of code with x2": rank_correlation(codes(pca, train.X), train.X[:, 1]),
                 "collapsed to the mean": False, "seconds": float("nan")})
    table = pd.DataFrame(rows)

    by_model = table.set_index("model")
    # ranked on fresh points: the training error rewards fitting the 100 points themselves
    best = by_model.iloc[:3]["fresh-points MSE"].idxmin()
    tilt = angle_degrees(models["PCA-like"].encoder.weight.detach()[0], [1.0, 0.0])
    pca_tilt = angle_degrees(pca.components_[0], [1.0, 0.0])
    noisy = _noise_summary(histories[best])
    steps_per_epoch = len(histories[best].step_loss) // histories[best].epochs
    gap = {a: by_model.loc[a, "fresh-points MSE"] / by_model.loc[a, "train MSE"] for a in ARCHITECTURES}
    corr = {(a, k): abs(by_model.loc[a, f"rank corr. of code with {k}"])
            for a in ARCHITECTURES for k in ("x1", "x2")}
    findings = [
        f"After {cfg['epochs']} epochs on {cfg['n']} points, the MSE on {n_test} fresh points "
        "from the rectangle is "
        + ", ".join(f"{a} {by_model.loc[a, 'fresh-points MSE']:.4f}" for a in ARCHITECTURES)
        + f"; PCA with one component: {pca_test:.4f}. The {best} model does best on fresh "
          f"points, at {by_model.loc[best, 'fresh-points MSE / PCA MSE']:.2f} times PCA's error "
          f"(on its {cfg['n']} training points: {by_model.loc[best, 'train MSE']:.4f}, "
          f"{by_model.loc[best, 'train MSE / PCA MSE']:.2f} times PCA's {pca_train:.4f}).",
        "Fresh-points MSE over train MSE: "
        + ", ".join(f"{a} {gap[a]:.2f} ({by_model.loc[a, 'fresh-points MSE']:.4f} vs "
                    f"{by_model.loc[a, 'train MSE']:.4f})" for a in ARCHITECTURES)
        + f", PCA {pca_test / pca_train:.2f}: the larger the ratio, the more a model fitted its "
          f"{cfg['n']} training points rather than the rectangle.",
        f"Which curve is which: each epoch has {steps_per_epoch} optimizer steps on batches of "
        f"{cfg['batch_size']}. Over the last {noisy['k']} epochs the {best} model's per-step "
        f"losses range from {noisy['step_min']:.4f} to {noisy['step_max']:.4f}, its per-epoch "
        f"means only from {noisy['epoch_min']:.4f} to {noisy['epoch_max']:.4f}: the per-step "
        "curve shows batch-to-batch noise, the per-epoch curve the progress.",
        f"The PCA-like model's code is linear: its level lines are straight and perpendicular to "
        f"a direction {tilt:.1f} degrees from the x1 axis (PCA's first component: "
        f"{pca_tilt:.1f} degrees), and its code has rank correlation {corr['PCA-like', 'x1']:.3f} "
        f"with x1 and {corr['PCA-like', 'x2']:.3f} with x2 (signs ignored). The ReLU models' "
        "codes have " + " and ".join(f"{corr[a, 'x1']:.3f} with x1, {corr[a, 'x2']:.3f} with x2 "
                                     f"({a})" for a in ("small", "big"))
        + ": a lower share for x1 means the code bends to describe x2 as well.",
    ]
    bad = [a for a in ARCHITECTURES if by_model.loc[a, "collapsed to the mean"]]
    findings.append(
        f"Collapsed to predicting the mean (MSE >= {COLLAPSE_SHARE:.0%} of {floor:.3f}): "
        + (", ".join(bad) if bad else "none of the 3 models") + ".")

    figures = {
        "loss": loss_figure({a: histories[a] for a in ARCHITECTURES},
                            f"Sheet 6 architectures on {cfg['n']} rectangle points"),
        "codes": _code_figure(models, train.X, contour=False,
                              title="Code z of each training point"),
        "code_contours": _code_figure(models, train.X, contour=True,
                                      title="Code z over the input plane (filled contours)"),
    }
    metrics = {f"train_mse_{a}": float(by_model.loc[a, "train MSE"]) for a in ARCHITECTURES}
    metrics.update({f"test_mse_{a}": float(by_model.loc[a, "fresh-points MSE"]) for a in ARCHITECTURES})
    metrics["pca_mse"] = pca_train
    config = dict(cfg, seed=seed, quick=quick, n_test=n_test, optimizer="adam",
                  architectures={a: ARCHITECTURES[a][0] for a in ARCHITECTURES})
    return StudyResult("sheet6-architectures", {"errors": table}, figures, findings, config, metrics)


# --- sheet6-pca ----------------------------------------------------------------------------


def _sign_fixed(v: torch.Tensor) -> torch.Tensor:
    """``v`` scaled to unit length, its largest-magnitude entry made positive (as aelab.PCA does)."""
    v = v.double().flatten()
    v = v / v.norm()
    return v if v[v.abs().argmax()] >= 0 else -v


def _eigen_pca(X: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The sheet's method: top eigenvector of the covariance matrix, and its projection MSE."""
    Xc = X.double() - X.double().mean(0)
    _, vectors = torch.linalg.eigh(Xc.T @ Xc / (len(X) - 1))  # eigenvalues ascending
    u = vectors[:, -1]
    residual = Xc - (Xc @ u)[:, None] * u
    return _sign_fixed(u), float(residual.pow(2).mean())


def _directions_figure(X, pca, model, angle: float):
    fig, axes = plots.new_figure(width=7.5, height=4.6)
    ax = axes[0, 0]
    data_panel(ax, X)
    t = pca.transform(X)[:, 0]
    span = torch.linspace(float(t.min()) - 0.2, float(t.max()) + 0.2, 2)[:, None]
    line = pca.inverse_transform(span)
    ax.plot(line[:, 0], line[:, 1], color="C0", lw=5, alpha=0.45, label="PCA: first component")
    low, high = code_interval(model, X, widen=0.1)
    decoded = decode_line(model, low, high, steps=200)
    ax.plot(decoded[:, 0], decoded[:, 1], color="C3", lw=1.5, ls="--",
            label="linear AE: decoded code interval")
    X_hat = reconstruct(model, X)
    ax.scatter(X_hat[:, 0], X_hat[:, 1], s=10, color="C3", zorder=3, label="linear AE: reconstructions")
    ax.legend(fontsize="small", loc="upper left", framealpha=0.9)
    ax.set_title(f"PCA's first component vs the linear AE's decoder line: {angle:.2f} degrees apart")
    return fig


def _pca_loss_figure(histories: dict[int, History], pca_mse: float, n: int):
    fig, axes = plots.new_figure(ncols=2, width=5.4, height=4.0)
    mse_ax, excess_ax = axes[0]
    for i, (s, h) in enumerate(histories.items()):
        epochs = np.arange(1, h.epochs + 1)
        loss = np.asarray(h.test_loss)
        mse_ax.plot(epochs, loss, color=f"C{i + 1}", label=f"linear AE, seed {s}")
        excess_ax.plot(epochs, np.clip(loss - pca_mse, 1e-9, None), color=f"C{i + 1}",
                       label=f"linear AE, seed {s}")
    mse_ax.axhline(pca_mse, color="k", ls="--", lw=1, label=f"PCA, 1 component ({pca_mse:.4f})")
    mse_ax.set_ylabel(f"MSE on all {n} training points")
    mse_ax.set_title("MSE after each epoch")
    excess_ax.set_yscale("log")
    excess_ax.set_ylabel("MSE minus PCA's MSE")
    excess_ax.set_title("Distance to PCA's error (log scale)")
    for ax in (mse_ax, excess_ax):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("The linear AE's error approaches PCA's, the floor for any linear 1-D code")
    return fig


@study("sheet6-pca", "sheet 6: PCA's first component vs the linear AE's decoder direction: angle and errors")
def sheet6_pca(quick: bool = True, seed: int = 0, *, progress=None, n: int | None = None,
               epochs: int | None = None, n_seeds: int | None = None) -> StudyResult:
    """Compare PCA (by SVD and by the sheet's eigendecomposition) with the linear autoencoder.

    A linear autoencoder trained on squared error spans the first principal
    subspace; this measures how close it gets: the angle between its decoder
    direction and PCA's first component, its encoder direction, and both
    reconstruction errors, over ``n_seeds`` training seeds.

    Parameters
    ----------
    quick : bool
        300 epochs and 3 seeds instead of 1000 epochs and 5 seeds.
    seed : int
        Seeds the data; the models use seeds ``seed, seed + 1, ...``.
    n, epochs, n_seeds : int, optional
        Override the training points (100), epochs and number of seeds.

    Examples
    --------
    >>> result = sheet6_pca(quick=True, epochs=2, n_seeds=1)
    >>> "angle to PCA (degrees)" in result.tables["directions"]
    True
    """
    # the linear model is cheap, and 100 epochs leave its direction a few degrees off
    cfg = dict(course_settings(quick, n, None),
               epochs=setting("epochs", epochs, quick, PCA_QUICK_EPOCHS, COURSE["epochs"]))
    n_seeds = setting("n_seeds", n_seeds, quick, 3, 5)
    train = data.rectangle(cfg["n"], seed=seed)
    X = train.X
    pca = PCA(1).fit(X)
    u = _sign_fixed(pca.components_[0])
    pca_mse = reconstruction_error(pca, X)
    u_eig, eig_mse = _eigen_pca(X)

    run_seeds = [seed + k for k in range(n_seeds)]
    models = [build("PCA-like", s) for s in run_seeds]
    histories = train_stack(models, train, seeds=run_seeds, epochs=cfg["epochs"],
                             batch_size=cfg["batch_size"], lr=cfg["lr"], test=train,
                             progress=progress)
    rows = [
        {"method": "PCA (SVD, aelab.PCA)", "seed": None, "direction x1": float(u[0]),
         "direction x2": float(u[1]), "angle to PCA (degrees)": 0.0,
         "encoder angle to PCA (degrees)": None, "encoder . decoder": None, "MSE": pca_mse},
        {"method": "PCA (eigendecomposition of the covariance)", "seed": None,
         "direction x1": float(u_eig[0]), "direction x2": float(u_eig[1]),
         "angle to PCA (degrees)": angle_degrees(u_eig, u), "encoder angle to PCA (degrees)": None,
         "encoder . decoder": None, "MSE": eig_mse},
    ]
    for s, model in zip(run_seeds, models):
        w_dec = model.decoder.weight.detach()[:, 0]  # (2,): the decoder's line direction
        w_enc = model.encoder.weight.detach()[0]  # (2,)
        d = _sign_fixed(w_dec)
        rows.append({"method": "linear AE", "seed": s, "direction x1": float(d[0]),
                     "direction x2": float(d[1]), "angle to PCA (degrees)": angle_degrees(w_dec, u),
                     "encoder angle to PCA (degrees)": angle_degrees(w_enc, u),
                     "encoder . decoder": float(w_enc.double() @ w_dec.double()),
                     "MSE": reconstruction_error(model, X)})
    table = pd.DataFrame(rows).astype({"seed": "Int64"})
    table["MSE / PCA MSE"] = table["MSE"] / pca_mse
    ae = table[table["method"] == "linear AE"]
    angles, mses = ae["angle to PCA (degrees)"], ae["MSE"]
    worst = int(ae["angle to PCA (degrees)"].idxmax())
    products = ae["encoder . decoder"]
    findings = [
        f"Over {n_seeds} seeds ({cfg['epochs']} epochs, Adam lr {cfg['lr']:g}, batch "
        f"{cfg['batch_size']}), the linear AE's decoder direction is {angles.mean():.2f} degrees "
        f"from PCA's first component on average (largest {angles.max():.2f}, seed "
        f"{table.loc[worst, 'seed']}); its encoder direction is "
        f"{ae['encoder angle to PCA (degrees)'].mean():.2f} degrees off on average.",
        f"Reconstruction MSE: PCA {pca_mse:.5f}, linear AE {mses.mean():.5f} on average "
        f"(from {mses.min():.5f} to {mses.max():.5f}), i.e. "
        f"{100 * (mses.mean() / pca_mse - 1):+.3f}% relative to PCA; "
        f"{int((mses < pca_mse * (1 - 1e-6)).sum())} of {n_seeds} runs went below PCA's error "
        "(none should: PCA's is the least squared error of any 1-D affine code, Eckart-Young).",
        f"The encoder row times the decoder column is {products.min():.4f} to {products.max():.4f}: "
        "1 means encode-then-decode leaves points on the line fixed (a projection).",
        f"The sheet's eigendecomposition of the covariance and aelab.PCA's SVD agree: their "
        f"directions are {angle_degrees(u_eig, u):.2g} degrees apart and their errors differ by "
        f"{abs(eig_mse - pca_mse):.2g}.",
    ]
    best_model = models[int(np.argmin(angles.to_numpy()))]
    figures = {
        "directions": _directions_figure(X, pca, best_model, float(angles.min())),
        "loss": _pca_loss_figure(dict(zip(run_seeds, histories)), pca_mse, cfg["n"]),
    }
    metrics = {"mean_angle_degrees": float(angles.mean()), "max_angle_degrees": float(angles.max()),
               "pca_mse": pca_mse, "linear_ae_mse": float(mses.mean())}
    config = dict(cfg, seed=seed, quick=quick, n_seeds=n_seeds, optimizer="adam")
    return StudyResult("sheet6-pca", {"directions": table}, figures, findings, config, metrics)


# --- sheet6-decoder-curves -----------------------------------------------------------------


def _coloured_curve(ax, points: np.ndarray, z: np.ndarray, norm, data_codes, lw: float = 2.2):
    """The curve coloured by code; thin where the code lies beyond the data's codes."""
    from matplotlib.collections import LineCollection

    segments = np.stack([points[:-1], points[1:]], axis=1)  # (steps - 1, 2, 2)
    middle = (z[:-1] + z[1:]) / 2
    inside = (middle >= data_codes[0]) & (middle <= data_codes[1])
    lines = LineCollection(segments, array=middle, cmap=CURVE_CMAP, norm=norm,
                           linewidths=np.where(inside, lw, lw / 3))
    ax.add_collection(lines)
    return lines


def _curve_panel(fig, ax, X, curve: torch.Tensor, low: float, high: float, data_codes,
                 title: str):
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
        inset.tick_params(labelsize=6)
        inset.set_title(f"enlarged, {extent:.2g} wide", fontsize=7)
        ax.indicate_inset_zoom(inset, edgecolor="0.3")
    fig.colorbar(lines, ax=ax, label="code z", shrink=0.85)
    ax.set_title(f"{title}, z from {low:.2f} to {high:.2f}", fontsize="medium")


def _curve_legend(fig) -> None:
    """One legend for all decoder-curve panels, below them."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    colour = colormaps[CURVE_CMAP](0.5)
    handles = [Line2D([], [], color="0.75", marker="o", ls="", ms=4, label="training points"),
               Line2D([], [], color=colour, lw=2.2, label="decoded codes within the data's codes"),
               Line2D([], [], color=colour, lw=0.8, label="decoded codes beyond them (+10% each side)"),
               Line2D([], [], color="k", marker="o", ls="", ms=5, label="start of the interval")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize="small")


PIECES = "straight pieces over the data's codes"


@study("sheet6-decoder-curves",
       "sheet 6: the decoded interval of the 1-D code, before and after training, per architecture")
def sheet6_decoder_curves(quick: bool = True, seed: int = 0, *, progress=None, n: int | None = None,
                          epochs: int | None = None, widen: float = 0.1) -> StudyResult:
    """Decode an interval of the code line with each architecture, before and after training.

    The interval is the range of the training points' codes under the model at
    that moment, widened by ``widen`` of its length on each side. Since every
    reconstruction is a decoded code, the curve is where all reconstructions lie.

    Parameters
    ----------
    quick : bool
        100 epochs instead of 1000.
    seed : int
        Seeds the data, the weights and the data order.
    n, epochs : int, optional
        Override the training points (100) and epochs.
    widen : float
        How far the decoded interval extends beyond the data's codes, as a share of their range.

    Examples
    --------
    >>> result = sheet6_decoder_curves(quick=True, epochs=2)
    >>> sorted(result.tables["curves"]["state"].unique())
    ['after training', 'before training']
    """
    cfg = course_settings(quick, n, epochs)
    train = data.rectangle(cfg["n"], seed=seed)
    X = train.X
    rows, panels = [], {}
    for arch in ARCHITECTURES:
        model = build(arch, seed)
        for state in ("before training", "after training"):
            if state == "after training":
                train_autoencoder(model, train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                                  lr=cfg["lr"], seed=seed, device="cpu", progress=progress)
            z = codes(model, X)
            low, high = code_interval(model, X, widen)
            curve = decode_line(model, low, high)
            distance = distance_to_curve(X, curve)
            panels[arch, state] = (curve, low, high, (z.min(), z.max()))
            rows.append({"model": arch, "state": state, "code low": low, "code high": high,
                         "curve length": curve_length(curve),
                         PIECES: linear_pieces(model, z.min(), z.max()),
                         "mean distance point-curve": float(distance.mean()),
                         "largest distance point-curve": float(distance.max()),
                         "reconstruction MSE": reconstruction_error(model, X)})
    table = pd.DataFrame(rows)
    at = table.set_index(["model", "state"])

    fig, axes = plots.new_figure(ncols=3, nrows=2, width=5.2, height=3.3)
    for col, arch in enumerate(ARCHITECTURES):
        for row, state in enumerate(("before training", "after training")):
            curve, low, high, data_codes = panels[arch, state]
            _curve_panel(fig, axes[row, col], X, curve, low, high, data_codes,
                         f"{label(arch)}\n{state}")
    _curve_legend(fig)
    fig.suptitle(f"Decoded code interval (the training codes' range, widened {widen:.0%} each side) "
                 f"over the {cfg['n']} training points")

    def pair(arch, column, fmt):
        before, after = at.loc[(arch, "before training"), column], at.loc[(arch, "after training"), column]
        return f"{format(before, fmt)} -> {format(after, fmt)}"

    findings = [
        "Mean distance from a training point to the decoded curve, before -> after training: "
        + "; ".join(f"{a} {pair(a, 'mean distance point-curve', '.3f')}" for a in ARCHITECTURES)
        + ". Curve length: "
        + "; ".join(f"{a} {pair(a, 'curve length', '.2f')}" for a in ARCHITECTURES) + ".",
        "Straight pieces of the curve over the training codes, before -> after: "
        + "; ".join(f"{a} {pair(a, PIECES, 'd')}"
                    for a in ARCHITECTURES)
        + ". The PCA-like decoder is affine, so its curve is always one straight segment; each "
          "ReLU decoder's curve is piecewise linear.",
    ]
    after = at.xs("after training", level="state")
    findings.append(
        "After training, the point farthest from its model's curve is "
        + ", ".join(f"{after.loc[a, 'largest distance point-curve']:.3f} away ({a}, curve "
                    f"{after.loc[a, 'curve length']:.2f} long)" for a in ARCHITECTURES) + ".")
    metrics = {f"mean_distance_after_{a}": float(at.loc[(a, "after training"), "mean distance point-curve"])
               for a in ARCHITECTURES}
    metrics.update({f"pieces_after_{a}": int(at.loc[(a, "after training"),
                                                    PIECES])
                    for a in ARCHITECTURES})
    config = dict(cfg, seed=seed, quick=quick, widen=widen, optimizer="adam")
    return StudyResult("sheet6-decoder-curves", {"curves": table}, {"curves": fig}, findings,
                       config, metrics)
