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
