"""What a study returns, and the registry of studies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure


@dataclass
class StudyResult:
    """The evidence a study produced.

    Attributes
    ----------
    name : str
        The study's id, e.g. ``"moons-autoencoder"``.
    tables : dict of str -> pandas.DataFrame
    figures : dict of str -> matplotlib Figure
        Each titled and labelled.
    findings : list of str
        Sentences computed from this run's numbers.
    config : dict
        The settings the study ran with.
    metrics : dict
        Headline numbers (plain floats/ints), written to metrics.json.
    """

    name: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str  # the id used on the command line, e.g. "sheet6-pca"
    summary: str  # one line for `aelab list`
    run: Callable[..., StudyResult]


REGISTRY: dict[str, Study] = {}


def study(name: str, summary: str):
    """Register ``func(quick=True, seed=0, **kwargs) -> StudyResult`` under ``name``."""

    def register(func):
        if name in REGISTRY:
            raise ValueError(f"study {name!r} is registered twice.")
        REGISTRY[name] = Study(name, summary, func)
        return func

    return register


def get(name: str) -> Study:
    if name not in REGISTRY:
        raise ValueError(f"unknown study {name!r}; available: {', '.join(REGISTRY)}.")
    return REGISTRY[name]
