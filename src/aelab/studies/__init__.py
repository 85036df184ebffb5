"""Studies: each answers one course question with tables, figures and computed findings.

``aelab.studies.<name>(quick=True, seed=0, ...)`` returns a :class:`StudyResult`;
``REGISTRY`` maps the command-line ids (``"moons-autoencoder"``) to them.
"""

from aelab.studies._base import REGISTRY, Study, StudyResult, get, study
from aelab.studies.cnn_classifier import cnn_classifier
from aelab.studies.course_math import backprop_by_hand, conv_shapes
from aelab.studies.image_reruns import image_reruns
from aelab.studies.images import ae_vs_pca, bottleneck, digits_bottleneck
from aelab.studies.images_latent import denoising, vae_vs_ae
from aelab.studies.moons import (
    hyperparameters,
    moons_hyperparameters,
    moons_reproducibility,
    reproducibility,
)
from aelab.studies.moons_autoencoder import moons_autoencoder
from aelab.studies.moons_generative import code_gmm, moons_code_gmm, moons_mmd
from aelab.studies.moons_noise import moons_noise_shift, noise_shift
from aelab.studies.sheet6 import sheet6_architectures, sheet6_decoder_curves, sheet6_pca
from aelab.studies.sheet6_training import sheet6_frozen_decoder, sheet6_gd_vs_sgd, sheet6_memorize

__all__ = [
    "REGISTRY",
    "Study",
    "StudyResult",
    "get",
    "study",
    "moons_autoencoder",
    "sheet6_architectures",
    "sheet6_pca",
    "sheet6_decoder_curves",
    "sheet6_memorize",
    "sheet6_frozen_decoder",
    "sheet6_gd_vs_sgd",
    "moons_hyperparameters",
    "moons_reproducibility",
    "moons_code_gmm",
    "moons_mmd",
    "code_gmm",
    "moons_noise_shift",
    "hyperparameters",
    "reproducibility",
    "noise_shift",
    "backprop_by_hand",
    "conv_shapes",
    "digits_bottleneck",
    "bottleneck",
    "ae_vs_pca",
    "vae_vs_ae",
    "denoising",
    "cnn_classifier",
    "image_reruns",
]
