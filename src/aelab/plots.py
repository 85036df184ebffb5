"""Figures, always titled and labelled (matplotlib, object-oriented API, no global state).

Each function returns a ``matplotlib.figure.Figure`` and never calls ``plt.show``;
the report embeds it and writes it as PNG. Nothing here imports pyplot or sets
a backend, so importing aelab leaves a notebook's inline plots alone
(``Figure.savefig`` picks the canvas for the file type by itself).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from aelab.train import History

__all__ = [
    "loss_curves",
    "reconstruction_scatter",
    "reconstruction_panel",
    "new_figure",
    "wrapped_suptitle",
    "plain_log_ticks",
    "confusion_matrices",
    "forest_report_figure",
    "tile_images",
    "show_images",
    "image_grid",
]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0, **kwargs):
    """A figure and its axes, sized ``width`` x ``height`` inches per panel."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def wrapped_suptitle(fig, text: str, **kwargs):
    """``fig.suptitle(text)``, broken into lines that fit the figure's width.

    A long title on a figure sized for the report column would otherwise run
    past both edges; the width per character is a conservative estimate for
    the default font (0.6 of the font size).

    >>> fig, _ = new_figure(width=3.0)
    >>> wrapped_suptitle(fig, "a title that is much too long for a figure three inches wide"
    ...                  ).get_text().count("\\n") >= 1
    True
    """
    import textwrap

    from matplotlib.font_manager import FontProperties

    size = FontProperties(size=kwargs.get("fontsize", "large")).get_size_in_points()
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * size)))
    return fig.suptitle(textwrap.fill(text, chars, break_on_hyphens=False), **kwargs)


def loss_curves(
    histories: Mapping[str, History] | History,
    *,
    per_step: bool = False,
    log: bool = True,
    title: str | None = None,
    loss: str = "MSE",
) -> Figure:
    """Training (and test) loss per epoch, or per optimizer step, for one or more runs.

    Parameters
    ----------
    histories : History or mapping of label -> History
    per_step : bool
        Plot the loss of every optimizer step (on its batch) instead of the epoch means.
    log : bool
        Logarithmic loss axis.
    loss : str
        What the loss is, for the axis label: "MSE", or e.g. "negative ELBO" for a VAE.
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
            ax.plot(
                np.arange(1, len(h.step_loss) + 1),
                h.step_loss,
                color=color,
                lw=0.6,
                alpha=0.8,
                label=f"{label}: train (per step)",
            )
        else:
            epochs = np.arange(1, len(h.train_loss) + 1)
            ax.plot(epochs, h.train_loss, color=color, label=f"{label}: train")
            if h.test_loss:
                ax.plot(epochs, h.test_loss, color=color, ls="--", label=f"{label}: test")
    ax.set_xlabel("optimizer step" if per_step else "epoch")
    ax.set_ylabel(
        f"loss on the step's batch ({loss})" if per_step else f"mean loss per epoch ({loss})"
    )
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.set_title(title or ("Loss per optimizer step" if per_step else "Loss per epoch"))
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return fig


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Label a logarithmic axis with plain numbers (0.2, not 2 x 10^-1).

    Minor ticks at 2, 3 and 5 times a power of ten are labelled too when the
    axis spans at most one decade, at 2 and 5 when it spans at most two, so a
    short axis never shows a lone label; the span is read when the figure is
    drawn, so later changes of the limits are taken into account.

    Parameters
    ----------
    ax : matplotlib Axes
    axis : {"x", "y", "both"}

    >>> fig, axes = new_figure()
    >>> ax = axes[0, 0]
    >>> ax.set_yscale("log")
    >>> plain_log_ticks(ax)
    >>> ax.yaxis.get_major_formatter()(0.1, 0)
    '0.1'
    """
    import math

    from matplotlib.ticker import FuncFormatter

    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}.")

    def minor_formatter(limits):
        def minor(value, _):
            low, high = sorted(limits())
            if value <= 0 or low <= 0:
                return ""
            decades = math.log10(high / low)
            keep = (2, 3, 5) if decades <= 1 + 1e-9 else (2, 5) if decades <= 2 + 1e-9 else ()
            mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
            return f"{value:g}" if mantissa in keep else ""

        return FuncFormatter(minor)

    for name in ("x", "y") if axis == "both" else (axis,):
        target = ax.xaxis if name == "x" else ax.yaxis
        target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        target.set_minor_formatter(minor_formatter(ax.get_xlim if name == "x" else ax.get_ylim))


def reconstruction_panel(
    ax, X, X_hat, *, max_lines: int = 300, original_label: str = "original"
) -> None:
    """Draw 2-D points, their reconstructions and a faint line between each pair on ``ax``.

    Labels the axes and keeps them at equal scale; the caller adds the title
    and the legend (and anything else on the panel).
    """
    X, X_hat = np.asarray(X), np.asarray(X_hat)
    if X.shape[1] != 2 or X_hat.shape != X.shape:
        raise ValueError(
            f"reconstruction_panel needs 2-D points and reconstructions of the same "
            f"shape, got X {X.shape} and X_hat {X_hat.shape}."
        )
    for a, b in zip(X[:max_lines], X_hat[:max_lines]):
        ax.plot([a[0], b[0]], [a[1], b[1]], color="0.78", lw=0.5, zorder=1)
    ax.scatter(X[:, 0], X[:, 1], s=9, color="C0", alpha=0.6, label=original_label, zorder=2)
    ax.scatter(X_hat[:, 0], X_hat[:, 1], s=9, color="C3", label="reconstructed", zorder=3)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal", adjustable="datalim")


def reconstruction_scatter(
    X, X_hat, *, title: str = "Original vs reconstructed points", max_lines: int = 300
) -> Figure:
    """2-D data and its reconstruction, with a faint line from each point to its reconstruction."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"reconstruction_scatter needs 2-D points, got {X.shape[-1]} features.")
    fig, axes = new_figure(width=6.0)
    ax = axes[0, 0]
    reconstruction_panel(ax, X, X_hat, max_lines=max_lines)
    ax.set_title(title)
    ax.legend()
    return fig


def _confusion_panel(ax, matrix, labels, title):
    matrix = np.asarray(matrix)
    totals = matrix.sum(1, keepdims=True)
    shares = matrix / np.maximum(totals, 1)  # each true label's row sums to 1
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(matrix)):
        ax.text(
            j,
            i,
            str(matrix[i, j]),
            ha="center",
            va="center",
            fontsize="small",
            color="white" if shares[i, j] > 0.5 else "black",
        )
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, [str(lab) for lab in labels])
    ax.set_yticks(ticks, [str(lab) for lab in labels])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.1%})")
    return image


def confusion_matrices(
    matrices: Mapping[str, np.ndarray], labels, *, title: str = "Confusion matrices"
) -> Figure:
    """One panel per confusion matrix (rows: true label, columns: predicted label).

    Cells show counts; their colour is the share of the row's true label, so
    classes of different sizes compare fairly. The panels fill rows of at most
    two, so that the figure fits a report column without shrinking its text.

    >>> fig = confusion_matrices({"test": np.eye(3, dtype=int) * 5}, labels=[0, 1, 2])
    >>> fig.axes[0].get_title()
    'test (accuracy 100.0%)'
    """
    if not matrices:
        raise ValueError("matrices must hold at least one confusion matrix, got none.")
    for name, matrix in matrices.items():
        if np.shape(matrix) != (len(labels), len(labels)):
            raise ValueError(
                f"confusion matrix {name!r} has shape {np.shape(matrix)}, expected "
                f"({len(labels)}, {len(labels)}) for {len(labels)} labels."
            )
    ncols = min(2, len(matrices))
    nrows = -(-len(matrices) // ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.6, height=4.2)
    for ax, (name, matrix) in zip(axes.flat, matrices.items()):
        image = _confusion_panel(ax, matrix, labels, name)
    for ax in axes.flat[len(matrices) :]:  # an odd count leaves one cell empty
        ax.remove()
    fig.colorbar(
        image,
        ax=axes.ravel()[: len(matrices)].tolist(),
        label="share of the true label",
        shrink=0.8 if nrows == 1 else 0.5,
    )
    wrapped_suptitle(fig, title)
    return fig


def forest_report_figure(report, *, title: str = "Random forest trained on real data") -> Figure:
    """Confusion matrices on the test set and its reconstruction, and synthetic data's labels.

    ``report`` is an :class:`aelab.evaluate.ForestReport`.
    """
    panels = {
        "test set": report.confusion_test,
        "reconstructed test set": report.confusion_reconstructed,
    }
    synthetic = report.synthetic_counts is not None
    # the synthetic labels go below the matrices, so the figure fits a report column
    fig, axes = new_figure(ncols=len(panels), nrows=1 + synthetic, width=4.6, height=4.2)
    for ax, (name, matrix) in zip(axes[0], panels.items()):
        image = _confusion_panel(ax, matrix, report.labels, name)
    fig.colorbar(image, ax=axes[0].tolist(), label="share of the true label", shrink=0.8)
    if synthetic:
        axes[1, 1].remove()
        ax = axes[1, 0]
        counts = np.asarray(report.synthetic_counts)
        ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1), color="C1")
        ax.set_xticks(np.arange(len(counts)), [str(lab) for lab in report.labels])
        ax.set_xlabel("predicted label")
        ax.set_ylabel("share of synthetic points")
        ax.set_title(f"labels of {counts.sum()} synthetic points")
    wrapped_suptitle(fig, f"{title}: {report.agreement:.1%} of reconstructions keep their label")
    return fig


def tile_images(images, image_shape, *, gap: int = 1, row_gap: int | None = None) -> np.ndarray:
    """Images laid out as one mosaic array, NaN in the gaps and in missing cells.

    Parameters
    ----------
    images : array or Tensor, shape (rows, cols, C*H*W)
        Flat images, as :class:`aelab.data.Dataset` stores them.
    image_shape : (int, int, int)
        ``(channels, height, width)``.
    gap : int
        Pixels between neighbouring images.
    row_gap : int, optional
        Pixels between rows (default ``gap``), e.g. room for captions.

    Returns
    -------
    ndarray, shape (rows*(H+row_gap)-row_gap, cols*(W+gap)-gap) for one channel,
    with a trailing channel axis for several.

    >>> tile_images(np.ones((2, 3, 4)), (1, 2, 2)).shape
    (5, 8)
    """
    images = np.asarray(images, dtype=float)
    C, H, W = (int(s) for s in image_shape)
    if images.ndim != 3 or images.shape[2] != C * H * W:
        raise ValueError(
            f"images must have shape (rows, cols, C*H*W) = (rows, cols, {C * H * W}) "
            f"for image_shape={tuple(image_shape)}, got {images.shape}."
        )
    row_gap = gap if row_gap is None else row_gap
    rows, cols = images.shape[:2]
    mosaic = np.full((rows * (H + row_gap) - row_gap, cols * (W + gap) - gap, C), np.nan)
    cells = images.reshape(rows, cols, C, H, W).transpose(0, 1, 3, 4, 2)  # (rows, cols, H, W, C)
    for r in range(rows):
        for c in range(cols):
            top, left = r * (H + row_gap), c * (W + gap)
            mosaic[top : top + H, left : left + W] = cells[r, c]
    return mosaic[..., 0] if C == 1 else mosaic


def show_images(ax, mosaic: np.ndarray, *, value_range=(0.0, 1.0), cmap: str = "gray", **kwargs):
    """``imshow`` of a :func:`tile_images` mosaic, clipped to ``value_range``, gaps in white."""
    import matplotlib as mpl

    low, high = value_range
    colormap = mpl.colormaps[cmap].with_extremes(bad="white")
    if mosaic.ndim == 3:  # RGB: imshow takes no colour map, so clip by hand
        mosaic = np.clip((mosaic - low) / (high - low), 0, 1)
        mosaic = np.where(np.isnan(mosaic), 1.0, mosaic)
    return ax.imshow(
        np.ma.masked_invalid(mosaic),
        cmap=colormap,
        vmin=low,
        vmax=high,
        interpolation="nearest",
        **kwargs,
    )


def image_grid(
    rows,
    image_shape,
    *,
    title: str,
    n: int = 10,
    col_labels=None,
    cell_labels=None,
    xlabel: str = "image",
    ylabel: str = "",
    value_range=(0.0, 1.0),
    cmap: str = "gray",
    colorbar: bool = True,
) -> Figure:
    """Rows of images in one panel, each row labelled, e.g. originals above their reconstructions.

    Parameters
    ----------
    rows : mapping of str -> array or Tensor, shape (m, C*H*W)
        Row label -> flat images; the first ``n`` of each are shown (shorter rows
        leave blank cells).
    image_shape : (int, int, int)
        ``(channels, height, width)``, e.g. ``Dataset.image_shape``.
    title : str
    n : int
        Images per row.
    col_labels : sequence of str, optional
        One label per column, shown under the grid (e.g. the true digit).
    cell_labels : mapping of str -> sequence of str, optional
        Per-row captions for individual images, written under each image
        (e.g. a classifier's prediction).
    xlabel, ylabel : str
        What the columns and the rows are.
    value_range : (float, float)
        Pixel values shown from black to white; values outside are clipped.
    colorbar : bool
        A colour bar of the pixel values.

    Examples
    --------
    >>> import torch
    >>> fig = image_grid({"original": torch.rand(10, 64), "reconstructed": torch.rand(10, 64)},
    ...                  (1, 8, 8), title="Digits")
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['original', 'reconstructed']
    """
    if not rows:
        raise ValueError("rows is empty; pass a dict of row label -> images.")
    C, H, W = (int(s) for s in image_shape)
    grid = np.full((len(rows), n, C * H * W), np.nan)
    for r, images in enumerate(rows.values()):
        images = np.asarray(images, dtype=float).reshape(len(images), -1)[:n]
        if images.shape[1] != C * H * W:
            raise ValueError(
                f"row {list(rows)[r]!r} has images of {images.shape[1]} values, "
                f"image_shape={tuple(image_shape)} needs {C * H * W}."
            )
        grid[r, : len(images)] = images
    gap = max(1, H // 8)
    row_gap = gap + (int(np.ceil(0.3 * H)) if cell_labels else 0)  # room for the captions
    mosaic = tile_images(grid, image_shape, gap=gap, row_gap=row_gap)
    cell = 0.62 if H <= 16 else 0.8  # inches per image
    label_width = 0.09 * max(len(str(k)) for k in rows) + 0.4
    fig, axes = new_figure(
        width=cell * n + label_width + (1.0 if colorbar else 0.3),
        height=cell * len(rows) * (H + row_gap) / (H + gap) + 1.3,
    )
    ax = axes[0, 0]
    image = show_images(ax, mosaic, value_range=value_range, cmap=cmap)
    centres_x = np.arange(n) * (W + gap) + (W - 1) / 2
    centres_y = np.arange(len(rows)) * (H + row_gap) + (H - 1) / 2
    ax.set_yticks(centres_y, [str(k) for k in rows])
    if col_labels is not None:
        ax.set_xticks(centres_x[: len(col_labels)], [str(c) for c in col_labels][:n])
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for r, key in enumerate(rows):
        for c, text in enumerate(list((cell_labels or {}).get(key, []))[:n]):
            ax.text(
                centres_x[c],
                r * (H + row_gap) + H - 0.5 + 0.03 * H,
                str(text),
                ha="center",
                va="top",
                fontsize="x-small",
                color="C3",
            )
    if cell_labels:  # room under the last row for its captions
        ax.set_ylim(mosaic.shape[0] - 0.5 + row_gap - gap, -0.5)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, label="pixel value", shrink=0.8, pad=0.01)
    return fig
