"""aelab: autoencoder experiments, fast, reproducible and honestly reported.

>>> import aelab
>>> ds = aelab.data.moons(200)
>>> model = aelab.Autoencoder(2, 1, hidden_size=32, layers=2)
>>> history = aelab.train_autoencoder(model, ds, epochs=10, batch_size=16)

``aelab.studies``, ``aelab.report`` and ``aelab.plots`` load matplotlib and
pandas, so they are imported on first use.
"""

import importlib

from aelab import data, evaluate, quality
from aelab._seed import seeded
from aelab.backprop import backprop_table
from aelab.baselines import PCA, CodeSampler
from aelab.checkpoint import load, save
from aelab.construct import construction_width, memorizing_autoencoder
from aelab.ensemble import train_many
from aelab.evaluate import classifier_agreement, reconstruction_error
from aelab.losses import mmd
from aelab.models import (
    VAE,
    Autoencoder,
    ConvAutoencoder,
    LinearAutoencoder,
    ResNetAutoencoder,
    conv_output_size,
)
from aelab.summary import summary
from aelab.train import (
    History,
    TrainConfig,
    TrainingDiverged,
    train_autoencoder,
    train_mmd_autoencoder,
    train_vae,
)

__version__ = "0.1.0"

_LAZY = ("studies", "report", "plots", "experiments", "sklearn")
# names re-exported from a lazily imported module (it loads pandas and scipy)
_LAZY_NAMES = {"sweep": "experiments", "Runs": "experiments"}

__all__ = [
    # data and models
    "data",
    "Autoencoder",
    "LinearAutoencoder",
    "ResNetAutoencoder",
    "ConvAutoencoder",
    "VAE",
    "conv_output_size",
    "summary",
    "backprop_table",
    "memorizing_autoencoder",
    "construction_width",
    # training
    "train_autoencoder",
    "train_many",
    "train_vae",
    "train_mmd_autoencoder",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "seeded",
    "save",
    "load",
    # losses, baselines, evaluation
    "mmd",
    "PCA",
    "CodeSampler",
    "reconstruction_error",
    "classifier_agreement",
    "evaluate",
    "quality",
    # experiments, studies and reports (imported on first use)
    "sweep",
    "Runs",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"aelab.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f"aelab.{_LAZY_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aelab' has no attribute {name!r}")
