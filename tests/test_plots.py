import os
import subprocess
import sys

from aelab import plots
from aelab.train import History

# Imports every aelab module (the plotting ones included), draws and saves a figure,
# and prints the backend before and after, and whether pyplot was ever imported.
_SCRIPT = """
import importlib, io, pkgutil, sys
import matplotlib
{setup}
before = matplotlib.get_backend()
import aelab
for info in pkgutil.walk_packages(aelab.__path__, "aelab."):
    importlib.import_module(info.name)
from aelab import plots
from aelab.train import History
fig = plots.loss_curves(History(train_loss=[1.0, 0.5], test_loss=[1.1, 0.6]))
fig.savefig(io.BytesIO(), format="png")
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_aelab_keeps_the_backend():
    # the backend chosen in code, as %matplotlib does in a notebook; one subprocess,
    # since importing every module costs seconds
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(setup="matplotlib.use('svg')")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    # unchanged by import and by drawing; no module imports pyplot's global state
    assert out == ["svg", "svg", "False"]


def test_loss_curves_labels_the_loss_it_plots():
    history = History(train_loss=[3.0, 2.0], test_loss=[3.5, 2.5], step_loss=[3.2, 2.8, 2.1, 1.9])
    fig = plots.loss_curves({"VAE": history}, loss="negative ELBO")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "mean loss per epoch (negative ELBO)"
    assert [line.get_label() for line in ax.get_lines()] == ["VAE: train", "VAE: test"]
    per_step = plots.loss_curves(history, per_step=True).axes[0]
    assert per_step.get_ylabel() == "loss on the step's batch (MSE)"
    assert list(per_step.get_lines()[0].get_ydata()) == history.step_loss


# --- legibility in the report ----------------------------------------------------------------


def _smallest_text_px(fig):
    """The smallest font, in CSS px, of ``fig`` as the report shows it: drawn at EMBED_DPI,
    shrunk to the column when wider, and whether any title or label runs off the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from aelab.report import COLUMN_PX, EMBED_DPI

    fig.set_dpi(EMBED_DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ticks = {
        id(label)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in axis.get_major_ticks() + axis.get_minor_ticks()
        for label in (tick.label1, tick.label2)
    }  # off-view ticks are never drawn
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    scale = min(1.0, COLUMN_PX / (fig.get_figwidth() * EMBED_DPI))
    smallest = min(t.get_fontsize() for t in texts) * EMBED_DPI / 72 * scale
    box = fig.bbox.padded(1)
    off = [
        t.get_text()
        for t in texts
        if id(t) not in ticks
        and not all(box.contains(*corner) for corner in t.get_window_extent(renderer).corners())
    ]
    return smallest, off


def test_wide_figures_keep_legible_text_in_the_report():
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    labels = list(range(10))
    matrices = {
        f"panel {k}": rng.poisson(0.3, (10, 10)) + 300 * np.eye(10, dtype=int) for k in range(4)
    }
    figures = {
        "four confusion matrices": plots.confusion_matrices(
            matrices, labels, title="A long title: " + "real and reconstructed images " * 4
        ),
        "ten-image grid": plots.image_grid(
            {"original": torch.rand(10, 64), "reconstructed": torch.rand(10, 64)},
            (1, 8, 8),
            title="Digits",
            col_labels=labels,
            cell_labels={"reconstructed": [str(k) for k in labels]},
        ),
        "loss curves": plots.loss_curves(
            {f"model {k}": History(train_loss=[1.0, 0.5], test_loss=[1.1, 0.6]) for k in range(3)}
        ),
    }
    for name, fig in figures.items():
        smallest, off = _smallest_text_px(fig)
        assert smallest >= 9.0, f"{name}: smallest text {smallest:.1f} px"
        assert not off, f"{name}: text beyond the figure's edge: {off}"
    # the four panels fill two rows of two, not one row of four
    assert (
        len(
            {
                round(ax.get_position().y0, 2)
                for ax in figures["four confusion matrices"].axes
                if ax.get_label() != "<colorbar>"
            }
        )
        == 2
    )
