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

__all__ = ["loss_curves", "reconstruction_scatter", "new_figure",
           "confusion_matrices", "forest_report_figure"]


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

def _confusion_panel(ax, matrix, labels, title):
    matrix = np.asarray(matrix)
    totals = matrix.sum(1, keepdims=True)
    shares = matrix / np.maximum(totals, 1)  # each true label's row sums to 1
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(matrix)):
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize="x-small",
                color="white" if shares[i, j] > 0.5 else "black")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, [str(lab) for lab in labels])
    ax.set_yticks(ticks, [str(lab) for lab in labels])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.1%})")
    return image


def confusion_matrices(matrices: Mapping[str, np.ndarray], labels, *,
                       title: str = "Confusion matrices") -> Figure:
    """One panel per confusion matrix (rows: true label, columns: predicted label).

    Cells show counts; their colour is the share of the row's true label, so
    classes of different sizes compare fairly.

    >>> fig = confusion_matrices({"test": np.eye(3, dtype=int) * 5}, labels=[0, 1, 2])
    >>> fig.axes[0].get_title()
    'test (accuracy 100.0%)'
    """
    if not matrices:
        raise ValueError("matrices must hold at least one confusion matrix, got none.")
    for name, matrix in matrices.items():
        if np.shape(matrix) != (len(labels), len(labels)):
            raise ValueError(f"confusion matrix {name!r} has shape {np.shape(matrix)}, expected "
                             f"({len(labels)}, {len(labels)}) for {len(labels)} labels.")
    fig, axes = new_figure(ncols=len(matrices), width=4.6, height=4.2)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        image = _confusion_panel(ax, matrix, labels, name)
    fig.colorbar(image, ax=axes[0].tolist(), label="share of the true label", shrink=0.8)
    fig.suptitle(title)
    return fig


def forest_report_figure(report, *, title: str = "Random forest trained on real data") -> Figure:
    """Confusion matrices on the test set and its reconstruction, and the labels given to synthetic data.

    ``report`` is an :class:`aelab.evaluate.ForestReport`.
    """
    panels = {"test set": report.confusion_test,
              "reconstructed test set": report.confusion_reconstructed}
    synthetic = report.synthetic_counts is not None
    fig, axes = new_figure(ncols=len(panels) + synthetic, width=4.6, height=4.2)
    for ax, (name, matrix) in zip(axes[0], panels.items()):
        image = _confusion_panel(ax, matrix, report.labels, name)
    fig.colorbar(image, ax=axes[0, :len(panels)].tolist(), label="share of the true label", shrink=0.8)
    if synthetic:
        ax = axes[0, -1]
        counts = np.asarray(report.synthetic_counts)
        ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1), color="C1")
        ax.set_xticks(np.arange(len(counts)), [str(lab) for lab in report.labels])
        ax.set_xlabel("predicted label")
        ax.set_ylabel("share of synthetic points")
        ax.set_title(f"labels of {counts.sum()} synthetic points")
    fig.suptitle(f"{title}: {report.agreement:.1%} of reconstructions keep their label")
    return fig

