"""Argument checks shared by the package: each error names the parameter, its value and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; TypeError or ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}.")
    return int(value)


def check_positive_int(name: str, value) -> int:
    return check_int(name, value, 1)


def check_positive_float(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}.")
    return value


def check_choice(name: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(map(repr, allowed))}, got {value!r}.")
    return value


def check_finite(name: str, X: torch.Tensor) -> None:
    """Reject NaN or infinite values, saying how many and where the first one is."""
    bad = ~torch.isfinite(X)
    if bad.any():
        n_nan = int(torch.isnan(X).sum())
        n_inf = int(bad.sum()) - n_nan
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values (first at index {first}); "
            "clean or impute the data first."
        )


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """``image_shape`` as ``(channels, height, width)``, three ints >= 1; ValueError otherwise."""
    if (
        isinstance(image_shape, (str, bytes))
        or not isinstance(image_shape, Sequence)
        or len(image_shape) != 3
    ):
        raise ValueError(
            f"image_shape must be (channels, height, width), got {image_shape!r}; "
            "e.g. image_shape=(1, 8, 8) for digits or (1, 28, 28) for MNIST."
        )
    return tuple(check_positive_int(f"image_shape[{i}]", s) for i, s in enumerate(image_shape))
