"""Experiments as data: sweep settings over seeds, get one tidy table, test the differences.

:func:`sweep` is the one way to run many trainings. It crosses a grid of model
and training settings with seeds, trains every trial (those of one shape
together, through :func:`aelab.train_many`), measures each trained model, and
returns :class:`Runs`: a pandas table with one row per trial, plus the
statistics every finding is built from: a confidence interval over seeds
(:meth:`Runs.summary`), paired or Welch t-tests with Holm's correction
(:meth:`Runs.compare`) and the best setting with the set indistinguishable
from it (:meth:`Runs.best`).

A trial's numbers do not depend on which other trials share its stack: a
member of a stack is trained bit for bit as it would be alone (see
:func:`aelab.train_many`), so adding a setting to a grid never changes the
results of the others.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import inspect
import itertools
import logging
import math
import numbers
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from aelab import store as _store
from aelab._html import runs_html
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.data import Dataset
from aelab.train import (
    History,
    TrainConfig,
)

logger = logging.getLogger(__name__)

__all__ = [
    "sweep",
    "Runs",
    "Best",
    "TrialContext",
    "SweepProgress",
    "setting_label",
    "compare_sentence",
    "p_value_text",
    "TRAINING_NAMES",
    "OBJECTIVES",
]

# training settings a grid (or ``**training``) may name, with their defaults
_CONFIG_DEFAULTS = {
    f.name: f.default for f in fields(TrainConfig) if f.name not in ("seed", "epochs", "batch_size")
}
OBJECTIVES = {
    # objective -> its own settings and their defaults (every trial trains through train_many)
    "reconstruction": {},
    "vae": {"beta": 1.0, "likelihood": "auto"},
    "mmd": {"mmd_weight": 1.0, "kernel": "imq", "bandwidths": None},
}
TRAINING_NAMES = (
    "epochs",
    "batch_size",
    *_CONFIG_DEFAULTS,
    "objective",
    *(name for extra in OBJECTIVES.values() for name in extra),
)
# every trial trains through train_many, which groups what can share a stack itself; a
# stack's trials share these settings, and every other one is given per member
_STACK_SHARED = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr_schedule",
    "drop_last",
    "freeze",
    "reinit",
    "objective",
    "likelihood",
    "kernel",
    "bandwidths",
)
# settings added to TrainConfig after stores were first written: left out of a trial's key
# while at their default, so that a store written before them still resumes
_KEY_OPTIONAL = {"betas": (0.9, 0.999), "eps": 1e-8}
_BUILT_IN = ("train_mse", "val_mse", "test_mse", "mean_mse", "pca_mse")
# trials per unit of work: large enough that stacking pays (tiny models train ~2x faster
# per trial at 128 than at 16), small enough that a crash loses little and that a sweep
# of a few hundred trials still gives every worker several stacks
_STACK_SIZE = 128


@dataclass
class TrialContext:
    """What a metric function sees besides the trained model.

    Attributes
    ----------
    params : dict
        The trial's grid values.
    seed : int
    train, validation, test : Dataset or None
        The data the trial was trained on and held out from it.
    history : History
    """

    params: dict
    seed: int
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    history: History


# --------------------------------------------------------------------------- checking


def _grid_points(grid) -> tuple[list[dict], list[str]]:
    """The grid as a list of points (dicts) and the names it sets, in order."""
    if grid is None:
        return [{}], []
    if isinstance(grid, Mapping):
        names = list(grid)
        for name, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
                raise TypeError(
                    f"grid[{name!r}] must be a list of values to try, got "
                    f"{values!r}; write grid={{{name!r}: [{values!r}]}} for one value."
                )
            if len(values) == 0:
                raise ValueError(
                    f"grid[{name!r}] is empty; list at least one value to try, "
                    "or leave the name out of the grid."
                )
        points = [
            dict(zip(names, combo))
            for combo in itertools.product(*(_plain_values(grid[n]) for n in names))
        ]
        return points, names
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        if len(grid) == 0:
            raise ValueError("grid is an empty list; give at least one point (a dict of settings).")
        names: list[str] = []
        for i, point in enumerate(grid):
            if not isinstance(point, Mapping):
                raise TypeError(f"grid[{i}] must be a dict of settings, got {point!r}.")
            names.extend(n for n in point if n not in names)
        return [dict(point) for point in grid], names
    raise TypeError(
        f"grid must be a dict of name -> list of values, or a list of dicts; "
        f"got {type(grid).__name__}."
    )


def _plain_values(values) -> list:
    """Grid values as plain Python scalars (numpy scalars would leak into the table and keys)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _factory_names(model: Callable) -> tuple[set[str], bool]:
    """The keyword names ``model`` accepts, and whether it accepts any (``**kwargs``)."""
    try:
        parameters = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: accept anything
        return set(), True
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _check_names(names, model) -> set[str]:
    """The grid names that go to the model factory; refuse names nobody takes."""
    accepted, any_name = _factory_names(model)
    to_model = set()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"grid names must be strings, got {name!r}.")
        if name in accepted or (any_name and name not in TRAINING_NAMES):
            to_model.add(name)
        elif name not in TRAINING_NAMES:
            raise ValueError(
                f"grid name {name!r} is neither an argument of the model factory "
                f"({', '.join(sorted(accepted)) or 'none'}) nor a training setting "
                f"({', '.join(TRAINING_NAMES)})."
            )
    return to_model


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {seeds}.")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise TypeError(f"seeds must be a count or a list of ints, got {seeds!r}.")
    seeds = _plain_values(seeds)
    if not seeds:
        raise ValueError("seeds is an empty list; give at least one seed (or a count).")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seeds must hold ints >= 0, got {s!r} in {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds lists a seed twice: {seeds!r}; each seed is one trial.")
    return [int(s) for s in seeds]


def _check_metrics(metrics) -> dict[str, Callable]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must map names to functions f(model, context) -> float, "
            f"got {type(metrics).__name__}."
        )
    for name, fn in metrics.items():
        if not callable(fn):
            raise TypeError(
                f"metrics[{name!r}] must be a function f(model, context) -> float, got {fn!r}."
            )
        if name in _BUILT_IN or name in ("seed", "steps", "seconds", "diverged"):
            raise ValueError(
                f"metrics[{name!r}] would replace a built-in column; "
                f"choose another name (built in: {', '.join(_BUILT_IN)})."
            )
    return dict(metrics)


def _dataset(name: str, source, params: dict, seed: int, required: bool):
    """``source`` itself, or what it returns for this trial when it is a callable."""
    if source is None:
        if required:
            raise ValueError(
                f"{name} is required: a Dataset or a function (params, seed) -> Dataset."
            )
        return None
    ds = source(params, seed) if callable(source) and not isinstance(source, Dataset) else source
    if not isinstance(ds, Dataset):
        raise TypeError(
            f"{name} must be an aelab.data.Dataset or a function (params, seed) -> "
            f"Dataset; got {type(ds).__name__}."
        )
    return ds


# --------------------------------------------------------------------------- the trials


@dataclass
class _Trial:
    params: dict
    seed: int
    settings: dict  # every training setting, defaults filled in
    model_args: dict  # the grid values that go to the model factory
    identity: dict  # the model: class, init_args (or parameter shapes), factory arguments
    point: dict  # canonical JSON of params, settings and identity, shared by a point's seeds
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    prototype: nn.Module | None = None  # the point's model for its first seed, untrained
    model: nn.Module | None = None  # trained (or a loader of it), or built when sent
    key: str | None = None  # in the store
    data_fp: str | None = None  # fingerprint of its train/validation/test data
    history: History | None = None
    diverged: bool = False
    result: dict | None = None  # the measured columns of its table row
    stored: object = None  # a StoredTrial when the store already holds it

    @property
    def monitor(self) -> Dataset | None:  # evaluated after every epoch: validation, else test
        return self.validation if self.validation is not None else self.test

    def group(self) -> tuple:
        """Trials of one group may share a stack: one shape, the same shared settings."""
        monitor = self.monitor
        return (
            self.point["shared"],
            self.point["identity"],
            len(self.train),
            self.train.n_features,
            None if monitor is None else len(monitor),
        )


def _settings(training: dict, params: dict) -> dict:
    settings = {**_CONFIG_DEFAULTS, "objective": "reconstruction", **training}
    settings.update({k: v for k, v in params.items() if k in TRAINING_NAMES})
    objective = settings["objective"]
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}.")
    for name, default in OBJECTIVES[objective].items():
        settings.setdefault(name, default)
    for other, extra in OBJECTIVES.items():
        stray = [
            k
            for k in extra
            if k in settings and other != objective and k not in OBJECTIVES[objective]
        ]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} only apply to objective={other!r}, but this "
                f"trial trains objective={objective!r}."
            )
    for name in ("epochs", "batch_size"):
        if name not in settings:
            raise ValueError(f"sweep needs {name}= (as a keyword or in the grid).")
    return settings


def _identity(built: nn.Module, model_args: dict) -> dict:
    """What the trial key records of a model: its class, its constructor arguments
    (or, for a model without ``init_args``, its parameter shapes) and the factory's
    arguments, which may matter beyond both."""
    cls = type(built)
    identity = {"class": f"{cls.__module__}.{cls.__qualname__}", "args": model_args}
    init_args = getattr(built, "init_args", None)
    if isinstance(init_args, Mapping):
        identity["init_args"] = dict(init_args)
    else:
        identity["shapes"] = {k: list(v.shape) for k, v in built.state_dict().items()}
    return identity


def _build(model: Callable, trial: _Trial) -> nn.Module:
    """The trial's model, built under its seed (which fixes the initial weights)."""
    return _build_seeded(model, trial.model_args, trial.seed)


def _build_seeded(model: Callable, model_args: dict, seed: int) -> nn.Module:
    with seeded(seed):
        built = model(**model_args)
    return _store.checked_model(built, model_args)


def _build_all(model: Callable, trials: list[_Trial]) -> None:
    """Build the trials' models, each exactly as under ``seeded(trial.seed)``."""
    built = _store.build_models(model, [t.model_args for t in trials], [t.seed for t in trials])
    for t, m in zip(trials, built):
        t.model = m


def _plan(model, data, validation, test, points, seeds, training, to_model) -> list[_Trial]:
    """Every trial of the sweep, in table order; each grid point's model is built once
    (for its first seed) to learn its shape, the trials' own where their stack trains."""
    trials = []
    for params in points:
        settings = _settings(training, params)
        model_args = {k: v for k, v in params.items() if k in to_model}
        identity = point = prototype = None
        for seed in seeds:
            trial = _Trial(
                params,
                seed,
                settings,
                model_args,
                {},
                {},
                _dataset("data", data, params, seed, True),
                _dataset("validation", validation, params, seed, False),
                _dataset("test", test, params, seed, False),
            )
            if identity is None:
                prototype = _build(model, trial)
                identity = _identity(prototype, model_args)
                keyed = {
                    k: v
                    for k, v in settings.items()
                    if k not in _KEY_OPTIONAL
                    or tuple(np.atleast_1d(v)) != tuple(np.atleast_1d(_KEY_OPTIONAL[k]))
                }
                point = {
                    "params": _store.dumps(_encode_params(params)),
                    "settings": _store.dumps(_encode_params(keyed)),
                    "identity": _store.dumps(identity),
                    # the settings a stack's trials share (see _Trial.group)
                    "shared": _store.dumps(
                        _encode_params({k: settings.get(k) for k in _STACK_SHARED})
                    ),
                }
            trial.identity, trial.point, trial.prototype = identity, point, prototype
            trials.append(trial)
    return trials


def _chunks(trials: list[_Trial], stack_size: int) -> list[list[_Trial]]:
    """Trials in stacks of at most ``stack_size``: by group, in table order, near-equal.

    The split depends on the sweep alone, never on the executor or on what a store
    already holds, so every executor and every resume trains the same stacks."""
    groups: dict[tuple, list[_Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.group(), []).append(trial)
    chunks = []
    for members in groups.values():
        n = -(-len(members) // stack_size)  # ceil
        size = -(-len(members) // n)
        chunks.extend(members[i : i + size] for i in range(0, len(members), size))
    return chunks


# --------------------------------------------------------------------------- metrics


def _mean_mse(train: Dataset, X: torch.Tensor) -> float:
    return float(((X - train.X.mean(0)) ** 2).mean())


def _errors_wanted(trial: _Trial) -> dict:
    """The built-in reconstruction errors of a trial, measured where its stack trains."""
    wanted = {"train_mse": trial.train}
    for name, ds in (("val_mse", trial.validation), ("test_mse", trial.test)):
        if ds is not None:
            wanted[name] = ds
    return wanted


def _measure(trial: _Trial, errors: dict, metrics: dict, pcas: dict) -> dict:
    """The measured columns of the trial's row (NaN where it diverged): the
    reconstruction errors measured where it trained, the rest measured here
    (``pcas`` caches the baselines, which depend on the data only)."""
    h = trial.history
    row = {
        "steps": len(h.step_loss),
        "seconds": h.seconds[-1] / h.config.get("ensemble_size", 1) if h.seconds else 0.0,
        "diverged": trial.diverged,
    }
    report = trial.test if trial.test is not None else trial.validation
    nan = float("nan")
    for name in _errors_wanted(trial):
        row[name] = nan if trial.diverged else errors[name]
    if report is not None:
        key = (id(trial.train), id(report))  # the trials keep their datasets: ids are stable
        if key not in pcas:
            pcas[key] = _mean_mse(trial.train, report.X)
        row["mean_mse"] = pcas[key]
        k = getattr(trial.prototype, "bottleneck_size", None)
        if isinstance(k, int) and k < trial.train.n_features and trial.train.X.ndim == 2:
            key = (id(trial.train), id(report), k)
            if key not in pcas:
                pcas[key] = PCA(k).fit(trial.train.X).reconstruction_error(report.X)
            row["pca_mse"] = pcas[key]
    context = TrialContext(trial.params, trial.seed, trial.train, trial.validation, trial.test, h)
    for name, fn in metrics.items():
        if trial.diverged:
            row[name] = nan
            continue
        value = fn(trial.model, context)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            raise ValueError(
                f"metrics[{name!r}] returned {value!r} for {setting_label(trial.params)}"
                f", seed {trial.seed}; a metric must return a finite number."
            )
        row[name] = float(value)
    return row


_MEASURED = ("steps", "seconds", "diverged", *_BUILT_IN)


def _table(rows: list[dict], names: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Rows as the sweep's table: grid values, seed, built-in metrics, the user's, the rest."""
    table = pd.DataFrame(rows)
    front = [*names, "seed", *[c for c in _BUILT_IN if c in table], *metrics]
    rest = [c for c in ("steps", "seconds", "diverged") if c in table]
    return table[front + rest + [c for c in table.columns if c not in front and c not in rest]]


# --------------------------------------------------------------------------- stored trials


def _history_from(summary: dict) -> History:
    return History(
        train_loss=summary["train_loss"],
        test_loss=summary["test_loss"],
        examples_seen=summary["examples_seen"],
        seconds=summary["seconds"],
        config=summary["config"],
    )


def _stored_result(result: dict, metrics: Sequence[str]) -> dict:
    """A stored row's measured columns, less the metrics this sweep did not ask for."""
    return {k: v for k, v in result.items() if k in _MEASURED or k in metrics}


def _encode_params(value):
    """Grid values as JSON that decodes to the same Python values (tuples stay tuples)."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_params(v) for v in value]}
    if isinstance(value, list):
        return [_encode_params(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode_params(v) for k, v in value.items()}
    return _plain(value)


def _decode_params(value):
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode_params(v) for v in value["__tuple__"])
        return {k: _decode_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_params(v) for v in value]
    return value


def _stored_model_loader(folder, file: str, key: str, build: Callable[[], nn.Module]):
    """A loader for a kept model: rebuild it, then load its stored weights."""

    def load() -> nn.Module:
        built = build()
        built.load_state_dict(_store.load_weights(folder, file, key))
        return built.eval()

    return load


def _rebuild_from_description(description: dict) -> Callable[[], nn.Module] | None:
    """A builder for a stored model of one of aelab's classes, or None for other classes."""
    from aelab.models import MODEL_CLASSES

    module, _, name = description.get("class", "").rpartition(".")
    cls = MODEL_CLASSES.get(name)
    if cls is None or cls.__module__ != module or "init_args" not in description:
        return None
    return lambda: cls(**description["init_args"])


@dataclass
class SweepProgress:
    """Passed to a ``progress`` callable after each finished stack.

    Attributes
    ----------
    done, total : int
        Trials finished (reused from the store included) and in the sweep.
    trained, to_train : int
        Trials trained so far by this call, and how many it has to train.
    reused : int
        Trials the store already held.
    stack_trials : int
        Trials in the stack that just finished (0 for the first call, before any).
    stack_seconds : float
        Its wall time where it ran.
    elapsed : float
        Seconds since the sweep started training.
    """

    done: int
    total: int
    trained: int
    to_train: int
    reused: int
    stack_trials: int
    stack_seconds: float
    elapsed: float


# --------------------------------------------------------------------------- sweep


def sweep(
    model: Callable[..., nn.Module],
    data,
    *,
    grid=None,
    seeds=5,
    validation=None,
    test=None,
    metrics: Mapping[str, Callable] | None = None,
    device=None,
    progress=None,
    keep_models: bool = True,
    store=None,
    executor="local",
    stack_size: int = _STACK_SIZE,
    **training,
) -> Runs:
    """Train every grid point with every seed; return one row per trial.

    Parameters
    ----------
    model : callable
        Builds one trial's model from its grid values that are model arguments, e.g.
        ``lambda hidden_size, layers: Autoencoder(2, 1, hidden_size, layers)``. It is
        called under :func:`aelab.seeded` with the trial's seed, so the seed fixes the
        initial weights. With worker processes or Dask, the workers call it when it
        pickles (cloudpickle, when installed, takes lambdas too) and one model they build
        equals this process's; otherwise this process builds every model and sends it.
    data : Dataset or callable
        The training set, or ``f(params, seed) -> Dataset`` when it varies with the
        grid (size, noise) or the seed.
    grid : dict of name -> list, or list of dicts, optional
        Settings to cross (a dict: every combination) or to list (dicts: exactly these
        points). A name is an argument of ``model`` or a training setting:
        ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``lr_schedule``,
        ``noise_sigma``, ``objective`` (``"reconstruction"``, ``"vae"``, ``"mmd"``) and
        the objectives' own (``beta``, ``mmd_weight``, ``kernel``...).
    seeds : int or list of int
        How many seeds (``0 .. seeds - 1``) or which. A seed fixes the initial weights,
        the data order and the input noise.
    validation, test : Dataset or callable, optional
        Held-out data, as ``data``. Select settings on ``val_mse`` and report
        ``test_mse`` (:meth:`Runs.best` does both). The per-epoch loss in each
        History is on ``validation`` when given, else on ``test``.
    metrics : dict of name -> callable, optional
        Extra columns: ``f(model, context) -> float`` with a :class:`TrialContext`.
        Built in: ``train_mse``, ``val_mse``, ``test_mse``, ``mean_mse`` (answering the
        training mean, on the test set or else the validation set), ``pca_mse`` (PCA
        with the model's bottleneck size, fitted on the training set), ``steps``,
        ``seconds`` and ``diverged``. Every metric is computed in this process.
    device : str or torch.device, optional
        Where to train; default as :func:`aelab.train_many`.
    progress : bool or callable, optional
        A bool: progress bars per stack (in process only), by default only when stderr
        is a terminal. A callable: called with a :class:`SweepProgress` once before
        training and after every finished stack (the command line draws its bar so).
    keep_models : bool
        Keep the trained models in :attr:`Runs.models` (else ``None`` entries); with a
        ``store``, also write each trial's weights beside it (``STORE.models/``).
    store : str or Path, optional
        A results file (SQLite; created if absent). Every finished stack is written
        to it at once, by this process only. Trials it already holds (same model,
        settings, data and seed, whatever grid they came from) are not trained again:
        rerun the same call after a crash to resume. :meth:`Runs.load` reads it back.
    executor : str or concurrent.futures.Executor
        Where stacks train: ``"local"`` (here, one after another), ``"processes:N"``
        (N worker processes of one torch thread each), ``"dask:ADDRESS"`` (a running
        Dask scheduler), ``"dask-local:N"`` (a Dask LocalCluster of N one-thread workers,
        started and stopped here) or any ``concurrent.futures.Executor``, such as
        ``distributed.Client(...).get_executor()``. Results do not depend on it.
    stack_size : int
        At most this many trials of one shape form one unit of work (a stack).
    **training
        Training settings shared by every trial (``epochs`` and ``batch_size`` are
        required, here or in the grid).

    Returns
    -------
    Runs
        With ``trained`` and ``reused`` (how many trials came from the store).

    Notes
    -----
    Every trial trains through :func:`aelab.train_many`: a stack's trials share
    their architecture, data sizes, objective and schedule, and every other setting
    is given per trial; train_many picks the path (hand-written stack, vmapped
    stack or one model after another) and records it in the History. A trial whose loss stops
    being finite is kept with ``diverged=True`` and NaN metrics. The stacks depend
    on the sweep only (not on the executor or on what the store holds), and a
    worker builds each model as this process would (or trains a pickled copy of the
    one built here), so every executor gives the same numbers. Workers use one torch
    thread; so does this process for the small models where a second thread would only
    spin (see :mod:`aelab.ensemble`).

    Examples
    --------
    >>> import aelab
    >>> train, test = aelab.data.split(aelab.data.moons(200), seed=0)
    >>> runs = sweep(lambda hidden_size: aelab.Autoencoder(2, 1, hidden_size, 1), train,
    ...              test=test, grid={"hidden_size": [8, 16]}, seeds=3, epochs=5, batch_size=32)
    >>> len(runs.table), list(runs.summary("test_mse")["n"])
    (6, [3, 3])
    """
    if not callable(model):
        raise TypeError(
            f"model must be a function that builds a model from grid values, "
            f"got {type(model).__name__}."
        )
    points, names = _grid_points(grid)
    seeds = _check_seeds(seeds)
    metrics = _check_metrics(metrics)
    overlap = [k for k in training if k in names]
    if overlap:
        raise ValueError(
            f"{', '.join(overlap)} is set both in the grid and as a keyword; "
            "set each name in one place."
        )
    unknown = [k for k in training if k not in TRAINING_NAMES]
    if unknown:
        raise ValueError(
            f"unknown training setting {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(TRAINING_NAMES)}."
        )
    to_model = _check_names(names, model)
    if (
        isinstance(stack_size, bool)
        or not isinstance(stack_size, numbers.Integral)
        or stack_size < 1
    ):
        raise ValueError(
            f"stack_size must be an int >= 1 (trials per unit of work), got {stack_size!r}."
        )
    _store.check_executor(executor)
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise TypeError(
            f"progress must be None, a bool or a function of SweepProgress, "
            f"got {type(progress).__name__}."
        )

    trials = _plan(model, data, validation, test, points, seeds, training, to_model)
    opened = None
    try:
        if store is not None:
            opened = _store.ResultsStore(store)
            _match_store(opened, trials, names, seeds, training, metrics)
        chunks = [[t for t in chunk if t.stored is None] for chunk in _chunks(trials, stack_size)]
        _execute(
            model,
            [c for c in chunks if c],
            executor,
            metrics,
            keep_models,
            device,
            progress,
            opened,
            len(trials),
        )
        rows, models, histories = [], [], []
        for t in trials:
            if t.stored is None:
                rows.append({**t.params, "seed": t.seed, **t.result})
                histories.append(t.history)
                models.append(t.model if keep_models else None)
                continue
            rows.append({**t.params, "seed": t.seed, **_stored_result(t.stored.result, metrics)})
            histories.append(_history_from(t.stored.history))
            models.append(
                _stored_model_loader(
                    opened.models_dir, t.stored.weights, t.key, functools.partial(_build, model, t)
                )
                if keep_models and t.stored.weights
                else None
            )
    finally:
        if opened is not None:
            opened.close()
    lazy = any(callable(m) and not isinstance(m, nn.Module) for m in models)
    runs = Runs(
        _table(rows, names, list(metrics)),
        _store.LazyModels(models) if lazy else models,
        histories,
        names,
    )
    runs.reused = sum(t.stored is not None for t in trials)
    runs.trained = len(trials) - runs.reused
    runs.store = None if store is None else str(store)
    return runs


def _match_store(opened, trials: list[_Trial], names, seeds, training, metrics) -> None:
    """Key every trial, record the sweep, and mark the trials the store already holds."""
    fingerprints: dict = {}

    def fingerprint(*datasets):
        key = tuple(map(id, datasets))  # the trials keep their datasets alive: ids are stable
        if key not in fingerprints:
            fingerprints[key] = (
                _store.fingerprint(datasets[0])
                if len(datasets) == 1
                else _store.dumps([fingerprint(ds) for ds in datasets])
            )
        return fingerprints[key]

    for t in trials:
        t.data_fp = fingerprint(t.train, t.validation, t.test)
        t.key = _store.key_from_json(t.point["identity"], t.point["settings"], t.data_fp, t.seed)
    definition = {
        "grid_names": list(names),
        "metrics": list(metrics),
        "seeds": seeds,
        "training": _encode_params(training),
    }
    opened.register_sweep(definition, [(t.key, t.point["params"], t.seed) for t in trials])
    found = opened.finished([t.key for t in trials])
    for t in trials:
        stored = found.get(t.key)
        if stored is not None and all(m in stored.result for m in metrics):
            t.stored = stored
    reused = sum(t.stored is not None for t in trials)
    others = len(found) - reused
    logger.info(
        "store %s: %d of %d trials already done%s; training %d",
        opened.path,
        reused,
        len(trials),
        f" ({others} more lack a requested metric)" if others else "",
        len(trials) - reused,
    )


def _execute(
    model, chunks, executor, metrics, keep_models, device, progress, opened, total: int
) -> None:
    """Send the stacks to the executor, a bounded number at a time; record each as it
    finishes (metrics here, then one store transaction)."""
    to_train = sum(len(c) for c in chunks)
    reused = total - to_train
    report = progress if callable(progress) else None
    bars = False if report is not None else progress  # per-stack bars, in process only
    pcas: dict = {}
    trained = 0
    start = time.perf_counter()
    first = SweepProgress(reused, total, 0, to_train, reused, 0, 0.0, 0.0)
    if not chunks:
        if report is not None:
            report(first)
        return
    queue = collections.deque(chunks)
    with _store.open_executor(executor) as plan:
        # reported once the workers started: a progress bar's monitor thread would keep
        # processes:N from forking them (see store.can_fork)
        if report is not None:
            report(first)
        pending: dict = {}
        # Models are built where their stack trains: by the stack itself in process, and
        # in workers when the factory pickles and a worker builds the same weights (each
        # stack checks its first model, see _recipe); otherwise here, and sent
        blob = _store.factory_bytes(model) if plan.remote else None
        building = {"there": not plan.remote or blob is not None}

        def task(chunk) -> _store.StackTask:
            if building["there"]:
                return _task(chunk, device, plan, bars, _recipe(model, chunk, blob))
            _build_all(model, chunk)
            return _task(chunk, device, plan, bars)

        def record(chunk, result):
            nonlocal trained
            _record(chunk, result, metrics, pcas, opened, keep_models, plan.name, model)
            trained += len(chunk)
            if report is not None:
                report(
                    SweepProgress(
                        reused + trained,
                        total,
                        trained,
                        to_train,
                        reused,
                        len(chunk),
                        result.seconds,
                        time.perf_counter() - start,
                    )
                )

        def finish():
            done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.exception() is not None):  # kept first
                chunk = pending.pop(future)
                try:
                    result = future.result()
                except _store.FactoryUnavailable as err:
                    if building["there"]:
                        logger.info("%s; building the models here and sending them", err)
                        building["there"] = False
                    queue.appendleft(chunk)
                    continue
                record(chunk, result)

        try:
            if plan.helps:
                _train_while_workers_start(queue, pending, task, record, model, device, plan)
            while queue or pending:
                if queue and len(pending) < plan.in_flight:
                    chunk = queue.popleft()
                    pending[plan.executor.submit(_store.run_stack, task(chunk))] = chunk
                else:
                    finish()
        except BaseException as err:
            for future in pending:
                future.cancel()
            if not isinstance(err, Exception) or not _store.is_worker_lost(err):
                raise
            # a broken pool answers a pending stack or refuses the next one
            kept = (
                "are in the store; rerun the same sweep to train the rest"
                if opened is not None
                else "are lost (give store= to keep them)"
            )
            raise _store.WorkerLost(
                f"a worker of executor={plan.name!r} died (killed, or out of memory: "
                f"{type(err).__name__}); the {trained} trials finished before it "
                f"{kept}."
            ) from None


def _train_while_workers_start(queue, pending: dict, task, record, model, device, plan) -> None:
    """Send the first stacks from a thread, and train stacks here until a worker answers.

    Workers on this machine take seconds to start (a forkserver, or each Dask worker,
    imports torch first), and sending the first stack waits for that. Meanwhile this
    process trains stacks from the end of the queue itself, as a worker would (same
    recipe, same thread count), and stops when the first worker's stack comes back.
    """
    first = [queue.popleft() for _ in range(min(plan.in_flight, len(queue)))]
    tasks = [task(chunk) for chunk in first]
    futures: list = []
    failed: list = []

    def send():
        try:
            for chunk, prepared in zip(first, tasks):
                futures.append((plan.executor.submit(_store.run_stack, prepared), chunk))
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(err)

    sender = threading.Thread(target=send, name="aelab-send-first-stacks", daemon=True)
    sender.start()
    while queue and not failed and (sender.is_alive() or not any(f.done() for f, _ in futures)):
        chunk = queue.pop()
        record(chunk, _run_here(model, chunk, device, plan))
    sender.join()
    pending.update((future, chunk) for future, chunk in futures)
    queue.extendleft(reversed(first[len(futures) :]))  # never sent: a failed submit
    if failed:
        raise failed[0]


def _recipe(model: Callable, chunk: list[_Trial], blob: bytes | None) -> _store.ModelRecipe:
    """How a stack's models are built where it trains; a stack sent to workers carries its
    first model's initial weights as built here, which the worker checks its own against."""
    first = chunk[0]
    expected = None
    if blob is not None:
        built = _store.build_models(model, [first.model_args], [first.seed])[0]
        expected = {k: v.detach().cpu() for k, v in built.state_dict().items()}
    return _store.ModelRecipe(model, [t.model_args for t in chunk], blob, expected)


def _run_here(model: Callable, chunk: list[_Trial], device, plan) -> _store.StackResult:
    """One stack trained in this process exactly as a worker of ``plan`` would (its torch
    thread count), the caller's thread count restored after."""
    threads = torch.get_num_threads()
    try:
        return _store.run_stack(_task(chunk, device, plan, False, _recipe(model, chunk, None)))
    finally:
        torch.set_num_threads(threads)


def _task(
    chunk: list[_Trial], device, plan, bars, recipe: _store.ModelRecipe | None = None
) -> _store.StackTask:
    """One stack as picklable inputs: a recipe for its models (or the built models), data,
    seeds, training arguments."""
    s = chunk[0].settings
    objective = s["objective"]
    names = [*_CONFIG_DEFAULTS, *OBJECTIVES[objective]]
    jobs = {k: s[k] for k in _STACK_SHARED if k in ("epochs", "batch_size", *names)}
    jobs["objective"] = objective
    for k in names:  # the rest per member: train_many groups them as they can share a stack
        if k not in jobs:
            values = [t.settings[k] for t in chunk]
            jobs[k] = values[0] if all(v == values[0] for v in values) else values
    return _store.StackTask(
        None if recipe else [t.model for t in chunk],
        [t.train for t in chunk],
        [t.monitor for t in chunk],
        [t.seed for t in chunk],
        jobs,
        [_errors_wanted(t) for t in chunk],
        device,
        False if plan.remote else bars,
        plan.threads,
        recipe,
    )


def _write_stack(opened, chunk: list[_Trial], result, keep_models: bool, executor_name: str):
    """One finished stack into the store: one transaction (weights written just before)."""
    weights = None
    if keep_models:
        states = (
            result.states
            if isinstance(result.states, dict)
            else _store.stacked_states([t.model for t in chunk])
        )
        weights = {"keys": [t.key for t in chunk], "state": states}
    opened.write_stack(
        [
            {
                "key": t.key,
                "seed": t.seed,
                "params": t.point["params"],
                "model": t.point["identity"],
                "settings": t.point["settings"],
                "data": t.data_fp,
                "result": t.result,
                "history": history,
            }
            for t, history in zip(chunk, result.stored)
        ],
        seconds=result.seconds,
        executor=executor_name,
        worker=result.worker,
        weights=weights,
    )


def _record(
    chunk: list[_Trial],
    result: _store.StackResult,
    metrics,
    pcas,
    opened,
    keep_models,
    executor_name: str,
    model: Callable | None = None,
) -> None:
    """Take a finished stack in: its trained models (or loaders of them), metrics, store."""
    if result.models is not None:  # trained in this process
        for t, trained in zip(chunk, result.models):
            t.model = trained
    elif keep_models or metrics:
        if chunk[0].model is None and not metrics and isinstance(result.states, dict):
            # built and trained by a worker: rebuild here only when a model is looked at
            for j, t in enumerate(chunk):
                t.model = _trained_model_loader(model, t.model_args, t.seed, result.states, j)
        else:
            if chunk[0].model is None:  # the user's metrics need the models now
                _build_all(model, chunk)
            if isinstance(result.states, dict):
                _store.load_stacked([t.model for t in chunk], result.states)
            else:
                for t, state in zip(chunk, result.states):
                    t.model.load_state_dict(state)
    first = chunk[0]
    with _store.small_ops_on_one_thread(
        first.prototype, (first.train, first.validation, first.test)
    ):
        for t, history, diverged, errors in zip(
            chunk, result.histories, result.diverged, result.errors
        ):
            t.history, t.diverged = history, diverged
            t.result = _measure(t, errors, metrics, pcas)
    if opened is not None:
        _write_stack(opened, chunk, result, keep_models, executor_name)
    if not keep_models:
        for t in chunk:
            t.model = None


def _trained_model_loader(model: Callable, model_args: dict, seed: int, states: dict, j: int):
    """A loader of member ``j`` of a stack trained elsewhere: build it, load its weights."""

    def load() -> nn.Module:
        built = _build_seeded(model, model_args, seed)
        built.load_state_dict({name: value[j] for name, value in states.items()})
        return built

    return load


# --------------------------------------------------------------------------- Runs


def setting_label(setting: Mapping) -> str:
    """``{"lr": 0.001, "layers": 2}`` as ``"lr=0.001, layers=2"`` (``"all"`` when empty)."""
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "all"


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (scipy has only BH/BY in false_discovery_control).

    The i-th smallest p is multiplied by (m - i), then made monotone and capped at 1.
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(np.where(np.isnan(p), np.inf, p))
    m = int((~np.isnan(p)).sum())
    adjusted = np.full_like(p, np.nan)
    running = 0.0
    for rank, i in enumerate(order[:m]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class Best:
    """The best setting of a metric and the settings a test cannot tell from it.

    Attributes
    ----------
    metric : str
    setting : dict
        The grid values of the setting with the best mean.
    mean, ci_low, ci_high : float
    n : int
        Seeds behind the mean.
    indistinguishable : list of dict
        Settings whose difference from the best is not significant at ``alpha``
        after Holm's correction (the best itself not included).
    comparison : pandas.DataFrame
        :meth:`Runs.compare` against the best.
    """

    metric: str
    setting: dict
    mean: float
    ci_low: float
    ci_high: float
    n: int
    indistinguishable: list = field(default_factory=list)
    comparison: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        return setting_label(self.setting)


class Runs:
    """The trials of a sweep: one table, the models, the histories, and their statistics.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per trial: the grid values, ``seed``, the metrics, ``steps``,
        ``seconds`` (the trial's share of its stack's wall time) and ``diverged``.
    models : list of nn.Module or None
        In the order of the table's rows. From a store, models load on first access.
    histories : list of History
        From a store, without the per-step losses (``step_loss`` is empty).
    grid_names : list of str
    trained, reused : int
        Trials this sweep trained, and trials it took from its store.
    missing : int
        Trials of the stored sweep not finished yet (:meth:`load` only; else 0).
    store : str or None
        The store the trials were written to or read from.
    """

    _repr_html_ = runs_html  # in a notebook: the summary, the best setting, the figures

    def __init__(
        self, table: pd.DataFrame, models: list, histories: list, grid_names: Sequence[str]
    ):
        self.table = table.reset_index(drop=True)
        self.models = models if isinstance(models, _store.LazyModels) else list(models)
        self.histories = list(histories)
        self.grid_names = list(grid_names)
        self.trained, self.reused, self.missing = len(self.table), 0, 0
        self.store: str | None = None

    @classmethod
    def load(cls, path, model: Callable[..., nn.Module] | None = None) -> Runs:
        """The Runs of the last sweep written to the store ``path``.

        The table equals the one :func:`sweep` returned (for a sweep that finished;
        otherwise it holds the finished trials, and ``missing`` counts the others).
        Models, when the sweep kept them, load on first access: aelab's own model
        classes are rebuilt from their stored constructor arguments; other classes
        need ``model``, the sweep's factory. Histories hold the per-epoch curves.

        Parameters
        ----------
        path : str or Path
            A store written by ``sweep(..., store=path)``; opened read-only.
        model : callable, optional
            The sweep's model factory, to rebuild models of classes outside aelab.

        Examples
        --------
        >>> import aelab, tempfile
        >>> path = tempfile.mkdtemp() + "/sweep.sqlite"
        >>> runs = aelab.sweep(lambda: aelab.LinearAutoencoder(2, 1), aelab.data.moons(64),
        ...                    seeds=2, epochs=1, batch_size=32, store=path)
        >>> Runs.load(path).table.equals(runs.table)
        True
        """
        with _store.ResultsStore(path, writable=False) as opened:
            latest = opened.latest_sweep()
            if latest is None:
                raise ValueError(f"store {str(path)!r} holds no sweep yet.")
            definition, trials = latest
            found = opened.finished([key for key, _, _ in trials])
            folder = opened.models_dir
        names, metrics = definition["grid_names"], definition["metrics"]
        rows, models, histories, missing = [], [], [], 0
        for key, params, seed in trials:
            stored = found.get(key)
            if stored is None or not all(m in stored.result for m in metrics):
                missing += 1
                continue
            params = _decode_params(params)
            rows.append({**params, "seed": seed, **_stored_result(stored.result, metrics)})
            histories.append(_history_from(stored.history))
            build = _rebuild_from_description(stored.model)
            if build is None and model is not None:
                args = _decode_params(stored.model.get("args", {}))
                build = functools.partial(_build_seeded, model, args, seed)
            models.append(
                None
                if stored.weights is None or build is None
                else _stored_model_loader(folder, stored.weights, key, build)
            )
        if not rows:
            table = pd.DataFrame(columns=[*names, "seed"])
        else:
            table = _table(rows, names, metrics)
        runs = cls(table, _store.LazyModels(models), histories, names)
        runs.trained, runs.reused, runs.missing = 0, len(rows), missing
        runs.store = str(path)
        if missing:
            logger.info(
                "store %s: %d of %d trials of its last sweep are not finished",
                path,
                missing,
                len(trials),
            )
        return runs

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (
            f"Runs({len(self)} trials, grid {self.grid_names or 'none'}, "
            f"seeds {sorted(self.table['seed'].unique().tolist())})"
        )

    def where(self, **values) -> Runs:
        """The trials whose grid values equal ``values``, e.g. ``runs.where(lr=1e-3)``."""
        mask = np.ones(len(self.table), dtype=bool)
        for name, value in values.items():
            if name not in self.table:
                raise ValueError(
                    f"where: {name!r} is not a column; columns: {', '.join(self.table.columns)}."
                )
            column = self.table[name]
            mask &= column.isna().to_numpy() if value is None else (column == value).to_numpy()
        index = np.flatnonzero(mask)
        models = (
            self.models.take(index)
            if isinstance(self.models, _store.LazyModels)
            else [self.models[i] for i in index]
        )
        return Runs(
            self.table.iloc[index], models, [self.histories[i] for i in index], self.grid_names
        )

    # ---- statistics

    def _by(self, by) -> list[str]:
        by = self.grid_names if by is None else [by] if isinstance(by, str) else list(by)
        for name in by:
            if name not in self.table:
                raise ValueError(
                    f"by: {name!r} is not a column; grid names: "
                    f"{', '.join(self.grid_names) or 'none'}."
                )
        return by

    def _metric(self, metric: str) -> str:
        if metric not in self.table or self.table[metric].dtype == object:
            numeric = [
                c
                for c in self.table.columns
                if c not in self.grid_names
                and c != "seed"
                and pd.api.types.is_numeric_dtype(self.table[c])
            ]
            raise ValueError(
                f"metric {metric!r} is not a numeric column; available: {', '.join(numeric)}."
            )
        return metric

    def _groups(self, metric: str, by: list[str]):
        """(setting dict, Series of the metric indexed by seed) per setting, in table order."""
        if not by:
            yield {}, self.table.set_index("seed")[metric]
            return
        for key, part in self.table.groupby(by, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            setting = {k: (None if _isna(v) else v) for k, v in zip(by, key)}
            yield setting, part.set_index("seed")[metric]

    def summary(self, metric: str, by=None, level: float = 0.95) -> pd.DataFrame:
        """Mean, standard deviation, n and a t confidence interval of ``metric`` per setting.

        Diverged trials (NaN) are left out of the mean and counted in ``n_diverged``.

        >>> import pandas as pd
        >>> runs = Runs(pd.DataFrame({"lr": [1, 1, 2, 2], "seed": [0, 1, 0, 1],
        ...                           "mse": [1.0, 3.0, 2.0, 2.0]}), [None] * 4, [None] * 4, ["lr"])
        >>> runs.summary("mse")[["lr", "mean", "n"]].values.tolist()
        [[1.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
        """
        metric, by = self._metric(metric), self._by(by)
        rows = []
        for setting, values in self._groups(metric, by):
            finite = values.dropna().to_numpy(dtype=float)
            n = len(finite)
            mean = finite.mean() if n else np.nan
            std = finite.std(ddof=1) if n > 1 else np.nan
            low = high = np.nan
            if n > 1:
                sem = std / math.sqrt(n)
                low, high = (mean, mean) if sem == 0 else stats.t.interval(level, n - 1, mean, sem)
            rows.append(
                {
                    **setting,
                    "mean": mean,
                    "std": std,
                    "n": n,
                    "n_diverged": int(values.isna().sum()),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        return pd.DataFrame(rows)

    def compare(
        self,
        metric: str,
        by=None,
        against="best",
        lower_is_better: bool = True,
        alpha: float = 0.05,
    ) -> pd.DataFrame:
        """Test the differences of ``metric`` between settings.

        Two settings that share at least two seeds are compared by a paired t-test
        over their shared seeds (:func:`scipy.stats.ttest_rel`), others by Welch's
        t-test (:func:`scipy.stats.ttest_ind`). The p-values of one call are
        Holm-corrected together (``p_holm``); ``significant`` is ``p_holm < alpha``.

        Parameters
        ----------
        metric : str
        by : str or list of str, optional
            The columns that define a setting; default the grid names.
        against : "best", "all" or dict
            Compare the best setting (by mean) with each other one, every pair, or
            the given setting (e.g. the default) with each other one.
        lower_is_better : bool
            Which end of the metric is best.
        alpha : float

        Returns
        -------
        pandas.DataFrame
            One row per pair (``a`` the reference): labels ``a``/``b``, the ``by``
            values as ``NAME_a``/``NAME_b``, ``mean_a``, ``mean_b``, ``diff``
            (b - a), ``ratio`` (b / a), ``effect_size`` (Cohen's d: of the paired
            differences, or over the pooled standard deviation), ``test``, ``n_a``,
            ``n_b``, ``n_pairs``, ``p``, ``p_holm``, ``significant``.
        """
        metric, by = self._metric(metric), self._by(by)
        groups = [(s, v.dropna()) for s, v in self._groups(metric, by)]
        if len(groups) < 2:
            return pd.DataFrame(
                columns=[
                    "a",
                    "b",
                    "mean_a",
                    "mean_b",
                    "diff",
                    "ratio",
                    "effect_size",
                    "test",
                    "n_a",
                    "n_b",
                    "n_pairs",
                    "p",
                    "p_holm",
                    "significant",
                ]
            )
        means = np.array([v.mean() if len(v) else np.nan for _, v in groups])
        if isinstance(against, Mapping):
            matches = [
                i
                for i, (s, _) in enumerate(groups)
                if all(s.get(k) == v for k, v in against.items())
            ]
            if len(matches) != 1:
                raise ValueError(
                    f"against={dict(against)!r} matches {len(matches)} settings; "
                    f"it must name exactly one (settings: "
                    f"{'; '.join(setting_label(s) for s, _ in groups)})."
                )
            pairs = [(matches[0], j) for j in range(len(groups)) if j != matches[0]]
        elif against == "best":
            scores = np.where(np.isnan(means), np.inf, means if lower_is_better else -means)
            ref = int(np.argmin(scores))
            pairs = [(ref, j) for j in range(len(groups)) if j != ref]
        elif against == "all":
            pairs = list(itertools.combinations(range(len(groups)), 2))
        else:
            raise ValueError(
                f"against must be 'best', 'all' or a dict naming one setting, got {against!r}."
            )
        rows = [_test_pair(groups[i], groups[j], by) for i, j in pairs]
        table = pd.DataFrame(rows)
        table["p_holm"] = _holm(table["p"].to_numpy())
        table["significant"] = table["p_holm"] < alpha
        return table

    def best(self, metric: str, by=None, lower_is_better: bool = True, alpha: float = 0.05) -> Best:
        """The setting with the best mean ``metric`` and those indistinguishable from it.

        Select on validation data (``val_mse``) and report the chosen setting on
        test data: ``runs.where(**best.setting).summary("test_mse")``.
        """
        summary = self.summary(metric, by)
        if summary["n"].sum() == 0:
            raise ValueError(f"best: no trial has a finite {metric!r} (all diverged?).")
        scores = summary["mean"].where(summary["n"] > 0)
        pick = scores.idxmin() if lower_is_better else scores.idxmax()
        row = summary.loc[pick]
        by = self._by(by)
        # one-row records keep each column's own type (a row Series would upcast ints to float)
        record = summary.loc[[pick], by].to_dict("records")[0]
        setting = {k: (None if _isna(v) else _plain(v)) for k, v in record.items()}
        comparison = self.compare(
            metric, by, against=setting, lower_is_better=lower_is_better, alpha=alpha
        )
        same = comparison[~comparison["significant"]] if len(comparison) else comparison
        indistinguishable = [
            {k: None if _isna(r[f"{k}_b"]) else _plain(r[f"{k}_b"]) for k in by}
            for _, r in same.iterrows()
        ]
        return Best(
            metric,
            setting,
            float(row["mean"]),
            float(row["ci_low"]),
            float(row["ci_high"]),
            int(row["n"]),
            indistinguishable,
            comparison,
        )


def _isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _test_pair(a, b, by: list[str]) -> dict:
    (sa, va), (sb, vb) = a, b
    shared = va.index.intersection(vb.index)
    row = {
        "a": setting_label(sa),
        "b": setting_label(sb),
        **{f"{k}_a": sa[k] for k in by},
        **{f"{k}_b": sb[k] for k in by},
        "mean_a": va.mean(),
        "mean_b": vb.mean(),
        "n_a": len(va),
        "n_b": len(vb),
    }
    row["diff"] = row["mean_b"] - row["mean_a"]
    row["ratio"] = row["mean_b"] / row["mean_a"] if row["mean_a"] else np.nan
    if len(shared) >= 2 and va.index.is_unique and vb.index.is_unique:
        x, y = va[shared].to_numpy(float), vb[shared].to_numpy(float)
        d = y - x
        row.update(test="paired t", n_pairs=len(shared))
        sd = d.std(ddof=1)
        if sd <= 1e-12 * max(abs(d.mean()), np.abs(x).max(), np.abs(y).max()):
            sd = 0.0  # constant differences up to rounding: scipy would warn of precision loss
        row["effect_size"] = d.mean() / sd if sd > 0 else (0.0 if d.mean() == 0 else np.inf)
        row["p"] = (
            1.0
            if sd == 0 and d.mean() == 0
            else (0.0 if sd == 0 else float(stats.ttest_rel(y, x).pvalue))
        )
    else:
        x, y = va.to_numpy(float), vb.to_numpy(float)
        row.update(test="Welch t", n_pairs=0)
        if len(x) >= 2 and len(y) >= 2:
            pooled = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
            row["effect_size"] = (y.mean() - x.mean()) / pooled if pooled > 0 else np.nan
            row["p"] = (
                float(stats.ttest_ind(y, x, equal_var=False).pvalue)
                if pooled > 0
                else (1.0 if y.mean() == x.mean() else 0.0)
            )
        else:
            row["effect_size"], row["p"] = np.nan, np.nan
    return row


def p_value_text(p: float) -> str:
    """``p = 0.031``, ``p = 2.1e-05`` or ``p not computable``: never rounded onto 0.05."""
    if _isna(p):
        return "p not computable"
    return f"p = {p:.3f}" if p >= 0.001 else f"p = {p:.1e}"


def compare_sentence(
    row: Mapping, metric: str = "error", fmt: str = ".4g", lower_is_better: bool = True
) -> str:
    """One :meth:`Runs.compare` row as a sentence that states its test and calls a
    difference only when the corrected test does.

    >>> compare_sentence({"a": "lr=0.01", "b": "lr=0.1", "mean_a": 0.1, "mean_b": 0.3,
    ...                   "test": "paired t", "n_pairs": 5, "n_a": 5, "n_b": 5, "p_holm": 0.01,
    ...                   "significant": True}, "test MSE")
    'lr=0.01 has lower test MSE than lr=0.1: 0.1 vs 0.3 (paired t-test over 5 seeds, \
Holm-corrected p = 0.010).'
    """
    a, b, ma, mb = row["a"], row["b"], row["mean_a"], row["mean_b"]
    n = (
        f"{row['n_pairs']} seeds"
        if row["test"] == "paired t"
        else f"{row['n_a']} and {row['n_b']} seeds"
    )
    test = f"{'paired' if row['test'] == 'paired t' else 'Welch'} t-test over {n}"
    p_text = f"Holm-corrected {p_value_text(row['p_holm'])}"
    if not row["significant"]:
        return (
            f"{a} and {b} are indistinguishable in {metric} at "
            f"{n}: {ma:{fmt}} vs {mb:{fmt}} ({test}, {p_text})."
        )
    better_a = (ma < mb) == lower_is_better
    word = "lower" if (ma < mb) == better_a else "higher"
    first, second = (a, b) if better_a else (b, a)
    m1, m2 = (ma, mb) if better_a else (mb, ma)
    return (
        f"{first} has {word} {metric} than {second}: {m1:{fmt}} vs {m2:{fmt}} ({test}, {p_text})."
    )
