"""Helpers that several study modules share: splits, baselines, code curves, labels.

Private to :mod:`aelab.studies`; a study module keeps what only it uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from aelab import data
from aelab.evaluate import encode, eval_mode

# A model whose error is at least this share of the mean predictor's has learned (almost)
# nothing: it answers (nearly) the data mean for every input. 0.9 leaves room for a model
# that collapsed but still tracks the data a little; every study reports such members.
COLLAPSE_SHARE = 0.9


# --- settings -------------------------------------------------------------------------------


def check_sequence(name: str, value, example: str) -> None:
    """Refuse a settings field that should list values but is a bare value (or a string)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(
            f"{name} must be a sequence of values, got {value!r}; e.g. {name}={example}."
        )


# --- data ------------------------------------------------------------------------------------


def split3(
    ds: data.Dataset, seed: int = 0, validation: float = 0.2, test: float = 0.2
) -> tuple[data.Dataset, data.Dataset, data.Dataset]:
    """(train, validation, test): select settings on validation, report on test.

    >>> train, val, test = split3(data.moons(100))
    >>> len(train), len(val), len(test)
    (60, 20, 20)
    """
    rest, test_set = data.split(ds, test_size=test, seed=seed)
    train, val = data.split(rest, test_size=validation / (1 - test), seed=seed + 1)
    return train, val, test_set


# --- baselines ------------------------------------------------------------------------------


def mean_predictor_mse(X: torch.Tensor, mean_of: torch.Tensor | None = None) -> float:
    """MSE (averaged over points and features) of answering the mean for every point of ``X``.

    The mean is ``X``'s own, or that of ``mean_of`` (e.g. the training set, when
    ``X`` is a test set). It is what a model that collapsed to the mean scores,
    and ``mse / mean_predictor_mse(X)`` is the share of ``X``'s variance a
    reconstruction with that MSE loses.
    """
    centre = (X if mean_of is None else mean_of).mean(0)
    return float(((X - centre) ** 2).mean())


def collapsed(mse: float, mean_mse: float) -> bool:
    """Whether an error ``mse`` is at least :data:`COLLAPSE_SHARE` of the mean predictor's ``mean_mse``."""
    return mse >= COLLAPSE_SHARE * mean_mse


# --- 1-D codes and the decoder's curve ------------------------------------------------------


def codes(model: nn.Module, X) -> np.ndarray:
    """The 1-D codes of ``X`` as a flat float64 array."""
    return encode(model, X)[:, 0].double().numpy()


def code_interval(model: nn.Module, X, widen: float = 0.0) -> tuple[float, float]:
    """The range of the 1-D codes of ``X``, widened by ``widen`` of its length on each side."""
    z = codes(model, X)
    pad = widen * (z.max() - z.min())
    return float(z.min() - pad), float(z.max() + pad)


def decode_line(model: nn.Module, low: float, high: float, steps: int = 1000) -> torch.Tensor:
    """Decoded points of ``steps`` codes evenly spaced in [low, high], float32 [steps, d]."""
    z = torch.linspace(low, high, steps)[:, None]
    with torch.no_grad(), eval_mode(model) as device:
        return model.decode(z.to(device)).cpu()


def decoded_curve(model: nn.Module, X, steps: int = 400, widen: float = 0.0) -> torch.Tensor:
    """The decoder's curve over the range of ``X``'s 1-D codes: where every reconstruction lies."""
    return decode_line(model, *code_interval(model, X, widen), steps=steps)


def curve_length(points: torch.Tensor) -> float:
    """Length of the polyline through ``points`` [n, d]."""
    return float(points.diff(dim=0).norm(dim=1).sum())


# --- labels -----------------------------------------------------------------------------------


def nearest_labels(train: data.Dataset, X) -> np.ndarray:
    """The label of the nearest training point to each row of ``X``: what it most looks like."""
    from sklearn.neighbors import KNeighborsClassifier

    nearest = KNeighborsClassifier(n_neighbors=1).fit(train.X.numpy(), train.y.numpy())
    return nearest.predict(np.asarray(X))
