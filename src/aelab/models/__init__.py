"""Autoencoder models: one file per family, all with encode/decode/forward."""

from aelab.models._base import MODEL_CLASSES, AutoencoderBase
from aelab.models.conv import ConvAutoencoder, conv_output_size
from aelab.models.linear import LinearAutoencoder
from aelab.models.mlp import Autoencoder, mlp
from aelab.models.resnet import ResNetAutoencoder
from aelab.models.vae import VAE

__all__ = [
    "AutoencoderBase",
    "Autoencoder",
    "LinearAutoencoder",
    "MODEL_CLASSES",
    "mlp",
    "ResNetAutoencoder",
    "ConvAutoencoder",
    "VAE",
    "conv_output_size",
]
