"""Studies: each answers one course question with tables, figures and computed findings.

``aelab.studies.<name>(quick=True, seed=0, ...)`` returns a :class:`StudyResult`;
``REGISTRY`` maps the command-line ids (``"moons-autoencoder"``) to them.
"""

from aelab.studies._base import REGISTRY, Study, StudyResult, get, study
from aelab.studies.moons_autoencoder import moons_autoencoder

__all__ = ["REGISTRY", "Study", "StudyResult", "get", "study", "moons_autoencoder"]
