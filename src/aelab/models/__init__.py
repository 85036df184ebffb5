"""Autoencoder models: one file per family, all with encode/decode/forward."""

from aelab.models._base import MODEL_CLASSES, AutoencoderBase
from aelab.models.linear import LinearAutoencoder
from aelab.models.mlp import Autoencoder, mlp

__all__ = ["AutoencoderBase", "Autoencoder", "LinearAutoencoder", "MODEL_CLASSES", "mlp"]
