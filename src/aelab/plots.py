"""Figures, always titled and labelled (matplotlib, object-oriented API, no global state).

Each function returns a ``matplotlib.figure.Figure`` and never calls ``plt.show``;
the report embeds it and writes it as PNG.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg", force=False)  # headless by default; an interactive backend set by the user wins
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from aelab.train import History  # noqa: E402

__all__ = ["loss_curves", "reconstruction_scatter", "new_figure"]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0, **kwargs):
    """A figure and its axes, sized ``width`` x ``height`` inches per panel."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def loss_curves(histories: Mapping[str, History] | History, *, per_step: bool = False,
                log: bool = True, title: str | None = None) -> Figure:
    """Training (and test) loss per epoch, or per optimizer step, for one or more runs.

    Parameters
    ----------
    histories : History or mapping of label -> History
    per_step : bool
        Plot the loss of every optimizer step (on its batch) instead of the epoch means.
    log : bool
        Logarithmic loss axis.
    """
    if isinstance(histories, History):
        histories = {"model": histories}
    if not histories:
        raise ValueError("histories is empty; pass a History or a dict of label -> History.")
    fig, axes = new_figure(width=6.0)
    ax = axes[0, 0]
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i}"
        if per_step:
            ax.plot(np.arange(1, len(h.step_loss) + 1), h.step_loss, color=color, lw=0.6,
                    alpha=0.8, label=f"{label}: train (per step)")
        else:
            epochs = np.arange(1, len(h.train_loss) + 1)
            ax.plot(epochs, h.train_loss, color=color, label=f"{label}: train")
            if h.test_loss:
                ax.plot(epochs, h.test_loss, color=color, ls="--", label=f"{label}: test")
    ax.set_xlabel("optimizer step" if per_step else "epoch")
    ax.set_ylabel("loss on the step's batch (MSE)" if per_step else "mean loss per epoch (MSE)")
    if log:
        ax.set_yscale("log")
    ax.set_title(title or ("Loss per optimizer step" if per_step else "Loss per epoch"))
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return fig


def reconstruction_scatter(X, X_hat, *, title: str = "Original vs reconstructed points",
                           max_lines: int = 300) -> Figure:
    """2-D data and its reconstruction, with a faint line from each point to its reconstruction."""
    X, X_hat = np.asarray(X), np.asarray(X_hat)
    if X.shape[1] != 2:
        raise ValueError(f"reconstruction_scatter needs 2-D points, got {X.shape[1]} features.")
    fig, axes = new_figure(width=6.0)
    ax = axes[0, 0]
    for a, b in zip(X[:max_lines], X_hat[:max_lines]):
        ax.plot([a[0], b[0]], [a[1], b[1]], color="0.75", lw=0.5, zorder=1)
    ax.scatter(X[:, 0], X[:, 1], s=10, color="C0", label="original", zorder=2)
    ax.scatter(X_hat[:, 0], X_hat[:, 1], s=10, color="C3", label="reconstructed", zorder=3)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend()
    return fig
