"""aelab: autoencoder experiments, fast, reproducible and honestly reported.

>>> import aelab
>>> ds = aelab.data.moons(200)
>>> model = aelab.Autoencoder(2, 1, hidden_size=32, layers=2)
>>> history = aelab.train_autoencoder(model, ds, epochs=10, batch_size=16)
"""

from aelab import data
from aelab._seed import seeded
from aelab.checkpoint import load, save
from aelab import quality
from aelab.baselines import PCA, CodeSampler
from aelab.evaluate import classifier_agreement, reconstruction_error
from aelab.losses import mmd
from aelab.models import Autoencoder, LinearAutoencoder
from aelab.models import VAE, ConvAutoencoder, ResNetAutoencoder, conv_output_size
from aelab.summary import summary
from aelab.train import History, TrainConfig, TrainingDiverged, train_autoencoder
from aelab.train import train_mmd_autoencoder, train_vae
from aelab.ensemble import train_many

__version__ = "0.1.0"

__all__ = [
    "data",
    "seeded",
    "save",
    "load",
    "Autoencoder",
    "LinearAutoencoder",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "train_autoencoder",
    "train_many",
    "reconstruction_error",
    "classifier_agreement",
    "PCA",
    "CodeSampler",
    "quality",
    "mmd",
    "ResNetAutoencoder",
    "ConvAutoencoder",
    "VAE",
    "conv_output_size",
    "train_vae",
    "train_mmd_autoencoder",
    "summary",
]
