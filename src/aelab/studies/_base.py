"""What a study returns, how its settings are chosen, and the registry of studies."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from aelab._html import study_html
from aelab.data import Dataset

# what data a study accepts through ``data=`` / ``--data``
DATA_KINDS = ("any", "image")


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
    answer : str
        The study's main answer in one sentence, with its uncertainty; the
        report's summary at the top lists it.
    """

    name: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    answer: str = ""

    _repr_html_ = study_html  # a study called in a notebook shows its answer and evidence


@dataclass(frozen=True)
class Study:
    name: str  # the id used on the command line, e.g. "sheet6-pca"
    summary: str  # one line for `aelab list`
    run: Callable[..., StudyResult]
    settings: type | None = None  # the settings dataclass (quick()/full()), for --set
    data: str | None = None  # "any" or "image": takes data=/--data; None: tied to its data
    preset_of: str | None = None  # a course preset: the generic study it pins
    labels: bool = False  # on a user's data, it needs their labels


REGISTRY: dict[str, Study] = {}


def study(
    name: str,
    summary: str,
    *,
    settings: type | None = None,
    data: str | None = None,
    labels: bool = False,
):
    """Register ``func(quick=True, seed=0, **kwargs) -> StudyResult`` under ``name``.

    ``settings`` is the study's settings dataclass (with ``quick()`` and
    ``full()`` class methods), whose fields ``--set name=value`` overrides;
    ``data`` says which user data the study runs on (``"any"``, ``"image"``),
    or None when its question is tied to its own data; ``labels``: on a user's
    data it needs their labels (``aelab run --data`` skips it without them).
    """
    if data is not None and data not in DATA_KINDS:
        raise ValueError(f"data must be one of {DATA_KINDS} or None, got {data!r}.")

    def register(func):
        if name in REGISTRY:
            raise ValueError(f"study {name!r} is registered twice.")
        REGISTRY[name] = Study(name, summary, func, settings, data, labels=labels)
        return func

    return register


def preset(name: str, of: str, summary: str, **pinned) -> Callable[..., StudyResult]:
    """Register the course preset ``name`` of the generic study ``of``.

    The preset runs ``of`` on its default (the course's) data with ``pinned``
    settings, refuses ``data=``, and names its result ``name``.
    """
    generic = REGISTRY[of]

    def run(quick: bool = True, seed: int = 0, **kwargs) -> StudyResult:
        if kwargs.get("data") is not None:
            raise ValueError(
                f"study {name!r} pins the course's data; run {of!r} on your own data instead."
            )
        kwargs.pop("data", None)
        result = generic.run(quick=quick, seed=seed, **{**pinned, **kwargs})
        result.name = name
        return result

    run.__name__ = name.replace("-", "_")
    # the command line passes options (--dataset, --mnist-root) that the signature names
    run.__signature__ = inspect.signature(generic.run)
    run.__doc__ = f"{summary}\n\nThe course preset of :func:`{generic.run.__name__}` ({of!r})."
    if name in REGISTRY:
        raise ValueError(f"study {name!r} is registered twice.")
    REGISTRY[name] = Study(name, summary, run, generic.settings, None, of)
    return run


def get(name: str) -> Study:
    if name not in REGISTRY:
        raise ValueError(f"unknown study {name!r}; available: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def data_studies() -> list[str]:
    """The ids of the studies that run on a user's data."""
    return [name for name, s in REGISTRY.items() if s.data is not None]


# --------------------------------------------------------------------------- settings


def resolve_settings(cls: type, quick: bool, overrides: dict):
    """``cls.quick()`` or ``cls.full()`` with ``overrides`` applied; unknown names refused.

    Values of None in ``overrides`` mean "the default" and are dropped, so a
    study's keyword arguments can default to None.
    """
    base = cls.quick() if quick else cls.full()
    valid = [f.name for f in dataclasses.fields(cls)]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise ValueError(
            f"unknown setting {', '.join(map(repr, unknown))}; valid settings: {', '.join(valid)}."
        )
    return dataclasses.replace(base, **overrides)


def parse_setting(cls: type, text: str) -> tuple[str, object]:
    """``"name=value"`` from the command line, with ``value`` parsed by the field's type."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    valid = {f.name: f for f in dataclasses.fields(cls)}
    if not sep or not name:
        raise ValueError(f"--set takes name=value, got {text!r}.")
    if name not in valid:
        raise ValueError(f"unknown setting {name!r}; valid settings: {', '.join(valid)}.")
    hint = typing.get_type_hints(cls)[name]
    return name, _parse(name, raw.strip(), hint)


def _parse(name: str, raw: str, hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if raw.lower() == "none" and type(None) in typing.get_args(hint):
        return None
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        item = typing.get_args(hint)[0] if typing.get_args(hint) else str
        values = [_parse(name, part.strip(), item) for part in raw.split(",") if part.strip()]
        return tuple(values) if origin is tuple else values
    if args and origin is not None and origin is not tuple:  # Optional[X] / X | None
        return _parse(name, raw, args[0])
    try:
        if hint is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if hint in (int, float, str):
            return hint(raw)
    except ValueError:
        raise ValueError(f"--set {name}={raw}: {name} takes a {hint.__name__}.") from None
    return raw


def check_study_data(name: str, kind: str | None, data) -> Dataset | None:
    """The user's ``data`` for study ``name`` (None: the study's own), checked for its kind."""
    if data is None:
        return None
    if kind is None:
        raise ValueError(
            f"study {name!r} is tied to its own data and takes no data=; "
            f"studies that run on your data: {', '.join(data_studies())}."
        )
    if not isinstance(data, Dataset):
        raise TypeError(
            f"data must be an aelab.data.Dataset (see aelab.data.load), got {type(data).__name__}."
        )
    if kind == "image" and data.image_shape is None:
        raise ValueError(
            f"study {name!r} needs image data: data.image_shape is None for "
            f"{data.name!r}; save images as an array of shape [n, H, W] or "
            "[n, C, H, W] (.npy/.npz) so that aelab.data.load keeps their "
            "image_shape, or pick a study that takes any data."
        )
    return data
