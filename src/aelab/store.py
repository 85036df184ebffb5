"""The resumable results store of a sweep, and the executors that run its stacks.

A sweep's unit of work is one *stack*: up to ``stack_size`` trials of one shape,
trained together by :func:`aelab.train_many`. The coordinating process (the one
that called :func:`aelab.sweep`) sends stacks to an executor, measures what
comes back, and writes each finished stack to the store in one transaction.
Workers never touch the store, so SQLite only ever sees one writer (Optuna's
issue tracker shows SQLite failing with many concurrent writers).

The store is one SQLite file (stdlib :mod:`sqlite3`), with a versioned schema:

``meta``
    ``format`` (``aelab-sweep-store``), ``schema_version``, ``created``.
``trials``
    One row per finished trial, keyed by :func:`trial_key`: the grid values, the
    seed, the model and its arguments, every training setting, the data
    fingerprint, the measured values (the table row), a summary of its History
    (per-epoch curves and config, without the per-step losses), and the file
    holding its weights when the sweep kept models.
``stacks``
    When each stack finished, its wall time, where it ran and the aelab and
    torch versions that ran it.
``sweeps`` / ``sweep_trials``
    Each distinct sweep definition run against the store and its trials in
    order, so that :meth:`aelab.Runs.load` rebuilds the table of the latest one
    and ``aelab sweep --status`` says what is missing.

Weights, when kept, go to a folder beside the store (``sweep.sqlite.models/``):
one ``torch.save`` file of plain tensors per stack, read back with
``weights_only=True``, so loading a store never runs code from it.

Executors: ``"local"`` (in process), ``"processes:N"`` (N worker processes, one
torch thread each), ``"dask:ADDRESS"`` (a running Dask scheduler),
``"dask-local:N"`` (a :class:`distributed.LocalCluster` started and stopped
here), or any :class:`concurrent.futures.Executor`, e.g. the one
``distributed.Client.get_executor()`` returns for a SLURM cluster. The local
kinds fork their workers from this process when that is safe (:func:`can_fork`),
so they start within a second; otherwise from a forkserver that imports torch first.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import socket
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from aelab._files import atomic_path
from aelab.data import Dataset

logger = logging.getLogger(__name__)

__all__ = [
    "ResultsStore",
    "SCHEMA_VERSION",
    "open_executor",
    "can_fork",
    "trial_key",
    "fingerprint",
    "LazyModels",
    "EXECUTOR_FORMS",
]

FORMAT = "aelab-sweep-store"
SCHEMA_VERSION = 1
# seconds to wait for a lock held by another process
TIMEOUT_S = 10.0
# seconds to wait for a Dask scheduler's handshake (a live one answers in milliseconds); with
# the import of distributed, a wrong address is reported within 10 s
DASK_CONNECT_S = 6.0
# seconds for dask-local's forked workers to join their scheduler (they need well under one)
DASK_START_S = 60.0
# SQLite's default limit on bound parameters is 999 in old builds; stay under it
_IN_CHUNK = 900

EXECUTOR_FORMS = (
    '"local"',
    '"processes:N"',
    '"dask:ADDRESS"',
    '"dask-local:N"',
    "a concurrent.futures.Executor",
)

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE stacks (
    id INTEGER PRIMARY KEY,
    finished TEXT NOT NULL,      -- UTC, ISO 8601
    seconds REAL NOT NULL,       -- wall time of the stack where it ran
    n_trials INTEGER NOT NULL,
    executor TEXT NOT NULL,
    worker TEXT NOT NULL,        -- host:pid that trained it
    aelab_version TEXT NOT NULL,
    torch_version TEXT NOT NULL
);
CREATE TABLE trials (
    key TEXT PRIMARY KEY,        -- trial_key(): model, settings, data and seed
    seed INTEGER NOT NULL,
    params TEXT NOT NULL,        -- JSON: grid values of the sweep that trained it
    model TEXT NOT NULL,         -- JSON: class, init_args, factory arguments
    settings TEXT NOT NULL,      -- JSON: every training setting, defaults filled in
    data TEXT NOT NULL,          -- fingerprint of the train/validation/test data
    result TEXT NOT NULL,        -- JSON: the measured columns of the table row
    history TEXT NOT NULL,       -- JSON: per-epoch History curves and config
    weights TEXT,                -- file under the models folder, or NULL
    stack INTEGER NOT NULL REFERENCES stacks(id)
);
CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE, -- hash of the definition and its ordered trial keys
    started TEXT NOT NULL,       -- UTC, the last time it was run
    run INTEGER NOT NULL,        -- 1, 2, ...: the order in which sweeps were last run
    definition TEXT NOT NULL,    -- JSON: grid names, settings, seeds, metric names
    n_trials INTEGER NOT NULL
);
CREATE TABLE sweep_trials (
    sweep INTEGER NOT NULL REFERENCES sweeps(id),
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    PRIMARY KEY (sweep, position)
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def dumps(value) -> str:
    """Canonical JSON (sorted keys, exact floats); tuples become lists, the rest ``str``."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _json(value) -> str:
    """``value`` as JSON, unless it is JSON already."""
    return value if isinstance(value, str) else dumps(value)


# --------------------------------------------------------------------------- keys


def fingerprint(ds: Dataset | None) -> str | None:
    """A hash of a dataset's values: shape, dtype and bytes of ``X`` and ``y``.

    >>> import torch
    >>> a, b = Dataset(torch.zeros(3, 2)), Dataset(torch.zeros(3, 2))
    >>> fingerprint(a) == fingerprint(b) != fingerprint(Dataset(torch.ones(3, 2)))
    True
    """
    if ds is None:
        return None
    h = hashlib.sha256()
    for part in (ds.X, ds.y):
        if part is None:
            h.update(b"none")
            continue
        part = part.detach().cpu().contiguous()
        h.update(f"{tuple(part.shape)}{part.dtype}".encode())
        h.update(part.numpy().tobytes())
    return h.hexdigest()


def trial_key(model: dict, settings: dict, data: str, seed: int) -> str:
    """The key of one trial: a hash of its model description, training settings,
    data fingerprint and seed. Two sweeps that share a trial share its key, so
    a store answers for it whatever grid it came from.

    >>> key = trial_key({"class": "m"}, {"lr": 0.1}, "data", 0)
    >>> key == trial_key({"class": "m"}, {"lr": 0.1}, "data", 0) != trial_key({}, {}, "data", 0)
    True
    """
    return key_from_json(dumps(model), dumps(settings), data, seed)


def key_from_json(model_json: str, settings_json: str, data: str, seed: int) -> str:
    """:func:`trial_key` from the canonical JSON of its parts (which a sweep reuses across
    the seeds of a grid point instead of encoding them again for every trial)."""
    text = f"{model_json}\n{settings_json}\n{data}\n{int(seed)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- the store


@dataclass
class StoredTrial:
    """A finished trial as read from the store."""

    key: str
    result: dict
    history: dict
    weights: str | None
    model_json: str  # its model description, parsed by .model when needed

    @property
    def model(self) -> dict:
        return json.loads(self.model_json)


class ResultsStore:
    """One sweep results file (SQLite), opened for writing or for reading.

    Parameters
    ----------
    path : str or Path
        The store file; created when ``writable`` and absent.
    writable : bool
        Open for writing (the coordinator) or only for reading
        (:meth:`aelab.Runs.load`, ``aelab sweep --status``).

    Raises
    ------
    ValueError
        The file is not an aelab store, or one of another schema version.
    PermissionError
        ``writable`` and the file or its folder cannot be written.
    FileNotFoundError
        Not ``writable`` and the file does not exist.

    Examples
    --------
    >>> import tempfile
    >>> store = ResultsStore(tempfile.mkdtemp() + "/sweep.sqlite")
    >>> store.schema_version, store.n_trials()
    (1, 0)
    >>> store.close()
    """

    def __init__(self, path, writable: bool = True):
        self.path = Path(path)
        self.writable = writable
        if self.path.is_dir():
            raise ValueError(
                f"store {str(self.path)!r} is a folder; give a file name such as "
                f"{str(self.path / 'sweep.sqlite')!r}."
            )
        exists = self.path.exists()
        if not writable and not exists:
            raise FileNotFoundError(f"store {str(self.path)!r} does not exist.")
        if exists:
            self._check_header()
        if writable:
            self._check_writable(exists)
        uri = self.path.resolve().as_uri() + ("" if writable else "?mode=ro")
        try:
            self._db = sqlite3.connect(
                uri, uri=True, timeout=TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise ValueError(f"store {str(self.path)!r} cannot be opened: {err}.") from None
        try:
            self._setup(exists)
        except BaseException:
            self._db.close()
            raise

    # ---- opening

    def _check_header(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            raise ValueError(
                f"{str(self.path)!r} is not an aelab results store (not an SQLite "
                "file); give a new file name for the store."
            )

    def _check_writable(self, exists: bool) -> None:
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
        # SQLite writes journal files beside the store, so the folder must be writable too
        for what, where in (("file", self.path if exists else None), ("folder", folder)):
            if where is not None and not os.access(where, os.W_OK):
                raise PermissionError(
                    f"store {str(self.path)!r} is read-only (its {what} cannot be written); "
                    "make it writable, or give another store file (aelab.Runs.load and "
                    "`aelab sweep --status` read a read-only store)."
                )

    def _setup(self, exists: bool) -> None:
        db = self._db
        try:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{str(self.path)!r} is not an aelab results store ({err}).") from None
        if not names and self.writable:
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("created", _now()),
                    ],
                )
            names = {"meta"}
        if "meta" not in names:
            raise ValueError(
                f"{str(self.path)!r} is an SQLite file but not an aelab results "
                "store (it has no aelab meta table); give a new file name."
            )
        meta = dict(db.execute("SELECT name, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{str(self.path)!r} is not an aelab results store (format "
                f"{meta.get('format')!r}, expected {FORMAT!r})."
            )
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise ValueError(
                f"{str(self.path)!r} is an aelab results store of schema version {version}; "
                f"this aelab reads version {SCHEMA_VERSION}. Open it with the aelab version "
                "that wrote it, or give a new store file."
            )
        self.schema_version = SCHEMA_VERSION
        if self.writable:
            try:  # WAL: a commit appends to the log, no fsync until a checkpoint; a killed
                # writer leaves a log that the next open replays, never a half-written store
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                with self._transaction():  # fail now, not after the first stack, if locked
                    db.execute("UPDATE meta SET value = value WHERE name = 'format'")
            except sqlite3.OperationalError as err:
                raise self._write_error(err) from None

    def _write_error(self, err: sqlite3.OperationalError) -> Exception:
        text = str(err)
        if "readonly" in text:
            return PermissionError(
                f"store {str(self.path)!r} is read-only ({text}); make it "
                "writable, or give another store file."
            )
        if "locked" in text or "busy" in text:
            return ValueError(
                f"store {str(self.path)!r} is locked by another process (another "
                f"sweep writing it?) and stayed locked for {TIMEOUT_S:.0f} s."
            )
        return ValueError(f"store {str(self.path)!r} cannot be written: {text}.")

    @contextlib.contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def models_dir(self) -> Path:
        """Where kept weights go: ``<store file>.models/``."""
        return self.path.with_name(self.path.name + ".models")

    # ---- writing (the coordinator only)

    def register_sweep(self, definition: dict, trials: Sequence[tuple[str, dict, int]]) -> int:
        """Record a sweep definition and its trials ``(key, params, seed)`` in order (params
        a dict, or its :func:`dumps` JSON); the id of the existing record when the same
        sweep ran before."""
        digest = hashlib.sha256(dumps([definition, [k for k, _, _ in trials]]).encode())
        digest = digest.hexdigest()
        try:
            with self._transaction():
                run = self._db.execute("SELECT coalesce(max(run), 0) + 1 FROM sweeps").fetchone()[0]
                row = self._db.execute(
                    "SELECT id FROM sweeps WHERE digest = ?", (digest,)
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE sweeps SET run = ?, started = ? WHERE id = ?", (run, _now(), row[0])
                    )
                    return row[0]
                cursor = self._db.execute(
                    "INSERT INTO sweeps (digest, started, run, definition, n_trials) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (digest, _now(), run, dumps(definition), len(trials)),
                )
                sweep_id = cursor.lastrowid
                self._db.executemany(
                    "INSERT INTO sweep_trials VALUES (?, ?, ?, ?, ?)",
                    (
                        (
                            sweep_id,
                            i,
                            key,
                            params if isinstance(params, str) else dumps(params),
                            int(seed),
                        )
                        for i, (key, params, seed) in enumerate(trials)
                    ),
                )
                return sweep_id
        except sqlite3.OperationalError as err:
            raise self._write_error(err) from None

    def write_stack(
        self,
        trials: Sequence[dict],
        *,
        seconds: float,
        executor: str,
        worker: str,
        weights: dict | None = None,
    ) -> None:
        """Record one finished stack and its trials in one transaction.

        ``trials`` hold ``key``, ``seed``, ``params``, ``model``, ``settings``,
        ``data``, ``result`` and ``history`` (``params``, ``model``, ``settings``,
        ``result`` and ``history`` as dicts or as their :func:`dumps` JSON).
        ``weights``, when given, is ``{"keys": [...], "state": {name: Tensor(K,
        ...)}}`` and is written to the models folder (atomically) before the
        transaction that names it.
        """
        file = None
        if weights is not None:
            digest = hashlib.sha256("".join(weights["keys"]).encode()).hexdigest()[:24]
            file = f"{digest}.pt"
            with atomic_path(self.models_dir / file) as tmp:
                torch.save(weights, tmp)
        import aelab

        try:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO stacks (finished, seconds, n_trials, executor, worker, "
                    "aelab_version, torch_version) VALUES (?,?,?,?,?,?,?)",
                    (
                        _now(),
                        float(seconds),
                        len(trials),
                        executor,
                        worker,
                        aelab.__version__,
                        torch.__version__,
                    ),
                )
                stack = cursor.lastrowid
                self._db.executemany(
                    "INSERT OR REPLACE INTO trials VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        (
                            t["key"],
                            int(t["seed"]),
                            _json(t["params"]),
                            _json(t["model"]),
                            _json(t["settings"]),
                            t["data"],
                            _json(t["result"]),
                            _json(t["history"]),
                            file,
                            stack,
                        )
                        for t in trials
                    ),
                )
        except sqlite3.OperationalError as err:
            raise self._write_error(err) from None

    # ---- reading

    def n_trials(self) -> int:
        """How many finished trials the store holds (of every sweep run against it)."""
        return self._db.execute("SELECT count(*) FROM trials").fetchone()[0]

    def finished(self, keys: Sequence[str]) -> dict[str, StoredTrial]:
        """The finished trials among ``keys``."""
        found = {}
        keys = list(keys)
        for i in range(0, len(keys), _IN_CHUNK):
            part = keys[i : i + _IN_CHUNK]
            rows = self._db.execute(
                f"SELECT key, result, history, weights, model FROM trials WHERE key IN "
                f"({','.join('?' * len(part))})",
                part,
            )
            for key, result, history, weights, model in rows:
                found[key] = StoredTrial(
                    key, json.loads(result), json.loads(history), weights, model
                )
        return found

    def latest_sweep(self) -> tuple[dict, list[tuple[str, dict, int]]] | None:
        """The definition and ordered trials ``(key, params, seed)`` of the last sweep run."""
        row = self._db.execute(
            "SELECT id, definition FROM sweeps ORDER BY run DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        trials = [
            (key, json.loads(params), seed)
            for key, params, seed in self._db.execute(
                "SELECT key, params, seed FROM sweep_trials WHERE sweep = ? ORDER BY position",
                (row[0],),
            )
        ]
        return json.loads(row[1]), trials

    def stacks(self) -> list[dict]:
        """Every finished stack: id, finished, seconds, n_trials, executor, worker, versions."""
        cursor = self._db.execute("SELECT * FROM stacks ORDER BY id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def status(self) -> dict:
        """What the last sweep run against the store has done and what it is missing.

        Returns a dict: ``path``, ``n_trials`` (of the last sweep), ``done``,
        ``missing`` (a list of ``(params, seed)``), ``stored`` (finished trials
        of every sweep), ``stacks``, ``last_finished``, ``definition``.
        """
        latest = self.latest_sweep()
        stacks = self.stacks()
        out = {
            "path": str(self.path),
            "stored": self.n_trials(),
            "stacks": len(stacks),
            "last_finished": stacks[-1]["finished"] if stacks else None,
            "definition": None,
            "n_trials": 0,
            "done": 0,
            "missing": [],
        }
        if latest is None:
            return out
        definition, trials = latest
        have = self.finished([key for key, _, _ in trials])
        metrics = set(definition.get("metrics", ()))
        missing = [
            (params, seed)
            for key, params, seed in trials
            if key not in have or not metrics <= set(have[key].result)
        ]
        out.update(
            definition=definition,
            n_trials=len(trials),
            done=len(trials) - len(missing),
            missing=missing,
        )
        return out


# --------------------------------------------------------------------------- kept weights


_weights_cache: dict = {}


def load_weights(folder: Path, file: str, key: str) -> dict[str, torch.Tensor]:
    """The state dict of trial ``key`` from a stack's weights file (read with
    ``weights_only=True``); the last file read stays cached, since a table's
    trials of one stack are usually read together."""
    path = Path(folder) / file
    stamp = (str(path), path.stat().st_mtime_ns if path.exists() else None)
    cached = _weights_cache.get("file")
    if cached is None or cached[0] != stamp:
        if stamp[1] is None:
            raise FileNotFoundError(
                f"the weights file {str(path)!r} of a stored trial is "
                "missing; the models folder must stay beside its store."
            )
        payload = torch.load(path, map_location="cpu", weights_only=True)
        cached = (stamp, payload, {k: j for j, k in enumerate(payload["keys"])})
        _weights_cache["file"] = cached
    _, payload, index = cached
    j = index[key]
    return {name: value[j] for name, value in payload["state"].items()}


class LazyModels(Sequence):
    """A list of models whose entries may be loaders, run (once) on first access.

    Resuming a sweep of 10,000 kept models, or loading its store, then costs
    nothing until a model is actually looked at.

    >>> models = LazyModels([None, lambda: "built"])
    >>> models[1], len(models)
    ('built', 2)
    """

    def __init__(self, items):
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LazyModels(self._items[i])
        item = self._items[i]
        if callable(item) and not isinstance(item, torch.nn.Module):
            item = item()
            self._items[i] = item
        return item

    def take(self, index) -> LazyModels:
        """The entries at ``index``, still lazy."""
        return LazyModels([self._items[int(i)] for i in index])

    def __repr__(self) -> str:
        return f"LazyModels({len(self)} models)"


# --------------------------------------------------------------------------- building models


def checked_model(built, model_args: dict) -> torch.nn.Module:
    """``built``, unless the factory returned something that is not a module."""
    if not isinstance(built, torch.nn.Module):
        label = ", ".join(f"{k}={v}" for k, v in model_args.items())
        raise TypeError(
            f"model({label}) returned {type(built).__name__}; it must return a torch.nn.Module."
        )
    return built


def build_models(factory, model_args: Sequence[dict], seeds: Sequence[int]) -> list:
    """``factory(**model_args[j])`` under seed ``seeds[j]``, each exactly as inside
    :func:`aelab.seeded`, with the caller's random state left as it was.

    >>> import aelab
    >>> a, b = build_models(lambda: aelab.LinearAutoencoder(2, 1), [{}, {}], [0, 0])
    >>> bool((a.encoder.weight == b.encoder.weight).all())
    True
    """
    from aelab._seed import seeded

    if torch.accelerator.is_available():
        out = []
        for args, seed in zip(model_args, seeds):
            with seeded(seed):
                out.append(checked_model(factory(**args), args))
        return out
    # Without an accelerator, seeded() changes only the CPU generator, and its
    # torch.manual_seed spends ~0.3 ms per call queueing accelerator seeds for later
    # (a third of the coordinator's time in a sweep of tiny models): seed the CPU
    # generator alone, inside one fork that restores the caller's state.
    with torch.random.fork_rng(devices=[]):
        out = []
        for args, seed in zip(model_args, seeds):
            torch.default_generator.manual_seed(int(seed))
            out.append(checked_model(factory(**args), args))
        return out


# a factory larger than this when pickled (a closure over a dataset, say) is not sent with
# every stack: its models are built by the coordinator and sent instead
_FACTORY_BYTES = 1 << 20


def factory_bytes(factory) -> bytes | None:
    """``factory`` pickled for workers (cloudpickle when installed, so that lambdas and
    closures travel too), or None when it does not pickle or is too large to send with
    every stack."""
    try:
        import cloudpickle

        dump = cloudpickle.dumps
    except ImportError:
        import pickle

        dump = pickle.dumps
    try:
        blob = dump(factory)
    except Exception as err:  # noqa: BLE001 - any pickling failure means: build here instead
        logger.debug("model factory does not pickle (%s); the coordinator builds models", err)
        return None
    return blob if len(blob) <= _FACTORY_BYTES else None


_FACTORIES: dict = {}


def load_factory(blob: bytes):
    """The factory pickled in ``blob``, unpickled once per process."""
    factory = _FACTORIES.get(blob)
    if factory is None:
        import pickle

        factory = _FACTORIES[blob] = pickle.loads(blob)
    return factory


class FactoryUnavailable(RuntimeError):
    """A worker could not build a stack's models as the coordinator does (the factory
    does not load there, fails there, or gives other initial weights); the coordinator
    then builds the models and sends them."""


class ModelRecipe:
    """How to build a stack's models where it trains: the factory and each member's
    arguments (the seeds are the stack's).

    Pickled, the factory travels as the bytes :func:`factory_bytes` made and is
    unpickled inside :func:`run_stack`, so that a factory a worker cannot load is an
    error of one task, not a dead worker. ``expected`` holds the first member's
    initial weights as the coordinator built them; a worker that builds other
    weights raises :class:`FactoryUnavailable` instead of training them.
    """

    def __init__(
        self,
        factory,
        model_args: Sequence[dict],
        blob: bytes | None = None,
        expected: dict | None = None,
    ):
        self.factory, self.model_args, self.blob = factory, list(model_args), blob
        self.expected = expected

    def __getstate__(self):
        if self.blob is None:
            raise TypeError(
                "this ModelRecipe has no pickled factory; it can only run in "
                "the process that made it."
            )
        return {**self.__dict__, "factory": None}

    def build(self, seeds: Sequence[int]) -> list:
        if self.factory is not None:
            return build_models(self.factory, self.model_args, seeds)
        try:
            models = build_models(load_factory(self.blob), self.model_args, seeds)
        except Exception as err:  # noqa: BLE001 - the coordinator built it: this place differs
            raise FactoryUnavailable(
                f"the model factory does not build here ({type(err).__name__}: {err})"
            ) from err
        if self.expected is not None:
            built = models[0].state_dict()
            if built.keys() != self.expected.keys() or not all(
                torch.equal(built[k].cpu(), v) for k, v in self.expected.items()
            ):
                raise FactoryUnavailable(
                    "the model factory builds other initial weights here than in the coordinator"
                )
        return models


# --------------------------------------------------------------------------- one stack


class StackTask:
    """What a worker needs to train one stack: its models (or how to build them), data,
    seeds, training arguments.

    ``recipe`` (a :class:`ModelRecipe`) builds the models where the stack trains,
    so the coordinator neither builds nor sends them; without it, ``models`` are
    the coordinator's built models. ``jobs`` is a dict of :func:`aelab.train_many`
    arguments (per-model values as lists; train_many groups what can share a stack
    and trains the rest as its dispatcher decides). ``evaluate``
    names, per model, the datasets whose reconstruction error to measure once
    trained (``{"test_mse": test, ...}``). Pickled (for a worker process or a Dask
    worker), built models travel as one model plus the stacked weights of all,
    much cheaper than K pickled modules; run where it was made (``"local"``), it
    trains the coordinator's models in place.
    """

    def __init__(
        self,
        models,
        trains,
        monitors,
        seeds,
        jobs,
        evaluate=None,
        device=None,
        progress=False,
        threads=None,
        recipe: ModelRecipe | None = None,
    ):
        if (models is None) == (recipe is None):
            raise ValueError("StackTask needs either built models or a recipe, not both.")
        self.models, self.trains, self.monitors, self.seeds = models, trains, monitors, seeds
        self.jobs, self.device, self.progress, self.threads = jobs, device, progress, threads
        self.recipe = recipe
        self.evaluate = evaluate or [{} for _ in seeds]
        self.unpickled = False
        self.token = uuid.uuid4().hex

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.models is not None:
            states = stacked_states(self.models)
            if states is not None:
                state["models"] = (self.models[0], states, len(self.models))
        return state

    def __setstate__(self, state):
        models = state["models"]
        if isinstance(models, tuple):
            first, states, K = models
            # a VAE's training writes its likelihood into init_args: only reconstruction
            # leaves a module as it was apart from its weights
            models = _shells(first, K, pooled=state["jobs"].get("objective") == "reconstruction")
            load_stacked(models, states)
        state["models"] = models
        self.__dict__.update(state, unpickled=True)

    def __dask_tokenize__(self):  # Dask need not hash the weights to name the task
        return self.token


# A worker keeps the model objects of the stacks it trained and loads the next stack's
# weights into them: rebuilding K modules per stack (copy.deepcopy) was measured at ~0.9 ms
# per tiny model, more than training it for a few epochs. Only aelab's own classes are
# pooled (their structure is fixed by class and init_args), and only for the reconstruction
# objective, whose training changes nothing in a module but its weights.
_SHELLS: dict = {}


def _shells(first, K: int, pooled: bool) -> list:
    from aelab.models import MODEL_CLASSES

    cls = type(first)
    init_args = getattr(first, "init_args", None)
    if not pooled or MODEL_CLASSES.get(cls.__name__) is not cls or not isinstance(init_args, dict):
        return [first] + [copy.deepcopy(first) for _ in range(K - 1)]
    key = (cls.__name__, dumps(init_args))
    pool = _SHELLS.setdefault(key, [])
    while len(pool) < K:
        pool.append(copy.deepcopy(first))
    shells = pool[:K]
    flags = [p.requires_grad for p in first.parameters()]  # train_many trains only these
    for shell in shells:
        shell.train(first.training)
        for p, flag in zip(shell.parameters(), flags):
            p.requires_grad_(flag)
    return shells


@dataclass
class StackResult:
    """What a worker sends back: Histories, divergence flags, reconstruction errors and
    the trained weights (stacked), or, in process, the trained models themselves."""

    histories: list
    diverged: list
    errors: list  # per model: {name: reconstruction error}, empty when it diverged
    states: dict | list | None  # name -> (K, ...) weights, or state dicts; None: in process
    seconds: float
    worker: str
    models: list | None = None  # the trained models, when the stack ran in this process
    stored: list | None = None  # per model, the JSON of what the store keeps of its History


# below this many multiply-adds per forward pass, a second torch thread only waits on the
# first: measured here, reconstruction_error of a 2-8-1-8-2 model took 0.6 ms on one thread
# and 12-19 ms on two while the other core was busy (aelab.ensemble finds the same)
_PARALLEL_MACS = 4_000_000


@contextlib.contextmanager
def small_ops_on_one_thread(model, datasets):
    """Train or evaluate a small model on one torch thread, restoring the caller's count
    after (``datasets`` may hold None)."""
    rows = max((len(ds) for ds in datasets if ds is not None), default=0)
    threads = torch.get_num_threads()
    if threads == 1 or rows * sum(p.numel() for p in model.parameters()) >= _PARALLEL_MACS:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stacked_states(models) -> dict | None:
    """The models' state dicts stacked name by name, or None when they differ in shape."""
    # keep_vars, then one stack under no_grad: measured 43 us a small model, against 63 us
    # for state dicts of detached tensors
    dicts = [m.state_dict(keep_vars=True) for m in models]
    first = dicts[0]
    if any(type(m) is not type(models[0]) for m in models) or any(
        d.keys() != first.keys() or any(d[k].shape != v.shape for k, v in first.items())
        for d in dicts[1:]
    ):
        return None
    with torch.no_grad():
        return {k: torch.stack([d[k] for d in dicts]).cpu() for k in first}


def load_stacked(models, states: dict) -> None:
    """Copy member ``j`` of stacked weights into ``models[j]``, in place."""
    with torch.no_grad():
        for j, model in enumerate(models):
            for name, tensor in model.state_dict().items():
                tensor.copy_(states[name][j])


# evaluate.reconstruction_errors' batch size: the same batches give the same numbers
_EVAL_BATCH = 4096


def reconstruction_errors(model, wanted: dict) -> dict:
    """``{name: aelab.reconstruction_error(model, ds.X)}`` for ``wanted``'s datasets,
    the same numbers bit for bit (tested), with the model switched to eval mode once for
    all of them: each switch walks every submodule, and measured here the two switches
    per call took longer than the forward pass of a tiny model.
    """
    if not wanted:
        return {}
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters(), torch.empty(0)).device
        out = {}
        with torch.no_grad():
            for name, ds in wanted.items():
                X = torch.as_tensor(ds.X, dtype=torch.float32)
                per_sample = [
                    ((model(x) - x) ** 2).flatten(1).mean(1).cpu()
                    for x in X.to(device).split(_EVAL_BATCH)
                ]
                out[name] = float(torch.cat(per_sample).mean())
        return out
    finally:
        model.train(was_training)


def run_stack(task: StackTask) -> StackResult:
    """Train one stack, in a worker or in process; return what the coordinator records.

    Small models train and are measured on one torch thread wherever the stack runs
    (workers have one; in process, measured under load here, a second thread made a
    stack of 125 small models cost 3-5 times the CPU time), so every executor runs
    them alike.
    """
    if task.threads:
        torch.set_num_threads(task.threads)
    start = time.perf_counter()
    models = task.models if task.recipe is None else task.recipe.build(task.seeds)
    if not models:
        return StackResult([], [], [], None, 0.0, worker_name(), models, [])
    datasets = [task.trains[0], task.monitors[0], *task.evaluate[0].values()]
    with small_ops_on_one_thread(models[0], datasets):
        histories, diverged = _train(models, task)
        seconds = time.perf_counter() - start
        errors = [
            {} if bad else reconstruction_errors(model, wanted)
            for model, wanted, bad in zip(models, task.evaluate, diverged)
        ]
    # encoded here, where stacks run in parallel, not in the one coordinator
    stored = [dumps(history_summary(h)) for h in histories]
    if not task.unpickled:
        return StackResult(
            histories, diverged, errors, None, seconds, worker_name(), models, stored
        )
    states = stacked_states(models)
    if states is None:
        states = [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in models]
    return StackResult(histories, diverged, errors, states, seconds, worker_name(), stored=stored)


def history_summary(h) -> dict:
    """What the store keeps of a History: everything but the per-step losses."""
    return {
        "train_loss": h.train_loss,
        "test_loss": h.test_loss,
        "examples_seen": h.examples_seen,
        "seconds": h.seconds,
        "config": h.config,
        "steps": len(h.step_loss),
    }


def _train(models: list, task: StackTask) -> tuple[list, list]:
    """The stack's Histories and divergence flags, training ``models`` in place."""
    from aelab.ensemble import train_many

    histories = train_many(
        models,
        task.trains,
        seeds=task.seeds,
        test=task.monitors,
        device=task.device,
        progress=task.progress,
        on_diverge="restore",
        **task.jobs,
    )
    return histories, ["diverged" in h.config for h in histories]


# --------------------------------------------------------------------------- executors


class WorkerLost(RuntimeError):
    """A worker process died mid-sweep; the finished stacks are in the store."""


def is_worker_lost(error: BaseException) -> bool:
    """Whether ``error`` says a worker process died: a broken process pool, or Dask's
    KilledWorker (a task whose workers kept dying), recognised without importing Dask."""
    cls = type(error)
    return isinstance(error, BrokenProcessPool) or (
        cls.__name__ == "KilledWorker" and cls.__module__.startswith("distributed")
    )


class InProcessExecutor(cf.Executor):
    """Runs each call when it is submitted, in this process: ``executor="local"``."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(err)
        return future


def _one_thread() -> None:
    """Worker initializer: one torch thread per process (two processes of one thread beat
    one process of two threads for small models, since tiny ops do not split well)."""
    torch.set_num_threads(1)


@dataclass
class ExecutorPlan:
    """An executor and how the coordinator should use it."""

    executor: cf.Executor
    in_flight: int  # stacks submitted at a time: enough to keep every worker busy
    threads: int | None  # torch threads a stack sets where it runs (None: leave as is)
    remote: bool  # stacks run in another process (inputs are pickled)
    name: str  # for the store's stacks table and messages
    # workers on this machine that take seconds to start: until one answers, the
    # coordinator trains stacks itself (with `threads`, as they would)
    helps: bool = False


def _start_method(*preload: str) -> str:
    """How worker processes start when they cannot fork from this process (see
    :func:`can_fork`), nannies' workers included: forked from a fresh server that has
    imported aelab once.

    Forking this process while another of its threads runs (a Dask event loop, a
    notebook kernel) can hang the child. A forkserver imports torch and aelab once
    and forks each worker from there: measured here, two workers answered 2.1 s
    after the pool started, against 4.9 s for spawn, which imports them in each; and
    a Dask LocalCluster closed in 0.2 s instead of 3-4 s. (The preload list is the
    process's one forkserver's; it takes effect when that server starts.)
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return "spawn"
    main = _main_module()
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["__main__", "aelab.store", *([main] if main else []), *preload]
    )
    return "forkserver"


def can_fork() -> bool:
    """Whether local workers (``processes:N``, ``dask-local:N``) may fork from this process now.

    A forked worker starts in milliseconds with everything this process imported,
    where a forkserver first imports torch, aelab and the script (2-4 s here, a sixth
    of a 17 s sweep). Forking is safe when no other thread can hold a lock the child
    needs: on Linux only (macOS frameworks are not fork-safe), without CUDA initialised
    (a forked child cannot use it), and with no Python thread but this one (a notebook
    kernel, a Dask client, a user's thread: any of them refuses). tqdm's monitor
    thread, which every tqdm bar starts (disabled ones too) and which then outlives
    them, is stopped first, as tqdm itself stops it when its last bar closes; the next
    bar starts another. The native threads that remain are OpenBLAS's pools, which stop
    themselves around a fork (``pthread_atfork``), and torch's intra-op pool, which a
    child never enters: it runs torch on one thread, as torch's own DataLoader workers
    do after their fork, and torch resets its thread pool in a forked child.
    """
    if not (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and not torch.cuda.is_initialized()
    ):
        return False
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if not all(_is_tqdm_monitor(t) for t in others):
        return False
    for monitor in others:
        monitor.exit()  # tqdm's own way: wakes it and joins it
    return threading.active_count() == 1


def _is_tqdm_monitor(thread: threading.Thread) -> bool:
    cls = type(thread)
    return cls.__name__ == "TMonitor" and cls.__module__.startswith("tqdm")


@contextlib.contextmanager
def _forking() -> Iterator[None]:
    """Python 3.12+ warns about forking a process with threads; the only ones left when
    aelab forks are those :func:`can_fork` allows."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*multi-threaded, use of fork\(\)", category=DeprecationWarning
        )
        yield


def _fork_workers(pool: cf.ProcessPoolExecutor, n: int) -> None:
    """Fork all of ``pool``'s workers now, from this (the only Python) thread.

    A fork pool starts every worker on its first submit, from the submitting thread;
    doing it here keeps that from happening later from the thread that sends the first
    stacks while this one trains."""
    with _forking():
        for _ in range(n):
            pool.submit(os.getpid)


def _main_module() -> str | None:
    """The main script as a module the forkserver can import by name, or None.

    Each worker runs the main script's top level again (so that functions defined
    there unpickle), importing what it imports. The forkserver's own preload of
    ``"__main__"`` does nothing on Python 3.11 (it looks for a key its caller never
    sets), so every worker imported those modules itself: measured here, 1.2 s of CPU
    per worker for a script importing aelab.experiments (pandas, scipy), 0.01 s once
    the server had imported the script by name.
    """
    import importlib.util
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":  # python -m NAME
        return spec.name
    path = getattr(main, "__file__", None)
    if not path or not path.endswith(".py"):
        return None
    name = Path(path).stem
    if not name.isidentifier() or name in sys.modules:
        return None
    try:  # only when that name finds this very file (not a module it shadows)
        found = importlib.util.find_spec(name)
        same = (
            found is not None and found.origin is not None and os.path.samefile(found.origin, path)
        )
    except (ImportError, ValueError, OSError):
        return None
    return name if same else None


def _positive_count(spec: str, text: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", text):
        raise ValueError(
            f"executor={spec!r}: N must be a whole number >= 1, got {text!r}; "
            f"allowed: {', '.join(EXECUTOR_FORMS)}."
        )
    return int(text)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "Dask executors need the optional Dask dependency: pip install "
            'aelab[dask]   (or pip install "dask[distributed]")'
        ) from None
    return distributed


def _probe_scheduler(address: str) -> None:
    """Raise unless a Dask scheduler completes a handshake at ``address`` within the timeout."""
    import asyncio

    from distributed.comm import connect

    async def probe():
        comm = await connect(address, timeout=DASK_CONNECT_S)
        try:
            await comm.write({"op": "identity"})
            reply = await comm.read()
        finally:
            await comm.close()
        if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
            raise ConnectionError(f"{address} answered, but not as a Dask scheduler")

    asyncio.run(asyncio.wait_for(probe(), DASK_CONNECT_S))


def check_executor(spec) -> None:
    """Refuse a malformed executor spec before any work (opening it comes later)."""
    if isinstance(spec, cf.Executor):
        return
    if not isinstance(spec, str):
        raise TypeError(
            f"executor must be a string or a concurrent.futures.Executor, got "
            f"{type(spec).__name__}; allowed: {', '.join(EXECUTOR_FORMS)}."
        )
    kind, _, arg = spec.partition(":")
    if kind in ("processes", "dask-local"):
        _positive_count(spec, arg)
    elif not (spec == "local" or (kind == "dask" and arg)):
        raise ValueError(
            f"executor={spec!r} is not one aelab knows; allowed: {', '.join(EXECUTOR_FORMS)}."
        )
    if kind.startswith("dask"):
        _import_distributed()


def _nanny_settings(dask) -> dict:
    """Dask settings for a LocalCluster whose nannies start their workers."""
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc
    # hand memory back after nearly every small tensor: measured here, a stack of 125
    # small models trained in 0.48 s with it and 0.26 s without
    environ = {
        k: v
        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if k != "MALLOC_TRIM_THRESHOLD_"
    }
    method = _start_method("distributed")
    if method == "forkserver":
        # started now, with aelab's preload: the nannies would start it with Dask's
        # own list (Dask's packages, not torch), and each worker then imported torch
        # itself (measured: 2-3 s of CPU per worker before its first stack)
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return {
        "distributed.worker.multiprocessing-method": method,
        "distributed.nanny.pre-spawn-environ": environ,
    }


def _fork_dask_workers(n: int) -> list:
    """``n`` processes forked now (see :func:`can_fork`), each waiting on its pipe for a
    scheduler's address to serve as a Dask worker: ``[(process, connection), ...]``."""
    context = multiprocessing.get_context("fork")
    forked = []
    with _forking():
        for _ in range(n):
            here, there = context.Pipe()
            # the child closes its copies of the coordinator's ends, so that it reads
            # the end of its pipe when the coordinator closes its own
            theirs = [here, *(conn for _, conn in forked)]
            process = context.Process(
                target=_serve_dask_worker,
                args=(there, theirs),
                name="aelab-dask-worker",
                daemon=True,
            )
            process.start()
            there.close()
            forked.append((process, here))
    return forked


def _serve_dask_worker(conn, theirs: list) -> None:
    """A forked Dask worker: wait for the scheduler's address and the worker's options,
    then serve until the coordinator closes its end of the pipe (or dies), or the
    scheduler closes the worker."""
    for other in theirs:
        other.close()
    torch.set_num_threads(1)
    try:
        address, options = conn.recv()
    except EOFError:  # the coordinator closed without starting this worker
        return
    import asyncio

    import distributed

    async def serve():
        async with distributed.Worker(address, **options) as worker:
            conn.send(worker.address)
            loop, hung_up = asyncio.get_running_loop(), asyncio.Event()

            def wait_for_hang_up():
                with contextlib.suppress(EOFError, OSError):
                    conn.recv()
                loop.call_soon_threadsafe(hung_up.set)

            # a daemon thread: blocked in recv, it must not keep the process alive
            threading.Thread(target=wait_for_hang_up, daemon=True).start()
            finished = asyncio.ensure_future(worker.finished())
            await asyncio.wait(
                [finished, asyncio.ensure_future(hung_up.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )

    asyncio.run(serve())


_FORKED_WORKER: list = []


def _forked_worker_class():
    """A Dask ``ProcessInterface`` (what a LocalCluster's ``worker_class`` may be, as
    dask-jobqueue's job classes are) that starts a worker in a process forked earlier,
    before Dask's threads existed, instead of having a nanny start one."""
    if _FORKED_WORKER:
        return _FORKED_WORKER[0]
    import asyncio

    from distributed.deploy.spec import ProcessInterface

    class ForkedWorker(ProcessInterface):
        def __init__(self, scheduler, name=None, children=None, **options):
            super().__init__(scheduler, name)
            self.scheduler_address, self.children = scheduler, children
            self.options = {**options, "name": name}
            self.process = self.conn = None

        async def start(self):
            if not self.children:
                raise RuntimeError("no forked process is left to start a Dask worker in")
            self.process, self.conn = self.children.pop(0)
            self.conn.send((self.scheduler_address, self.options))
            # the worker's address, or EOFError when it failed to start
            self.address = await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)
            await super().start()

        async def close(self):
            if self.process is not None:
                self.conn.close()  # the worker closes when its pipe ends
                process = self.process
                await asyncio.get_running_loop().run_in_executor(None, process.join, TIMEOUT_S)
                if process.is_alive():  # a worker that hangs is killed
                    process.kill()
            await super().close()

    _FORKED_WORKER.append(ForkedWorker)
    return ForkedWorker


@contextlib.contextmanager
def open_executor(spec) -> Iterator[ExecutorPlan]:
    """The executor ``spec`` names, started for the block and shut down after it.

    Parameters
    ----------
    spec : str or concurrent.futures.Executor
        ``"local"``, ``"processes:N"``, ``"dask:ADDRESS"`` (e.g.
        ``"dask:tcp://10.0.0.5:8786"``), ``"dask-local:N"``, or an executor the
        caller owns (it is used, not shut down).

    Examples
    --------
    >>> with open_executor("local") as plan:
    ...     plan.executor.submit(sum, [1, 2]).result(), plan.in_flight
    (3, 1)
    """
    if isinstance(spec, cf.Executor):
        workers = getattr(spec, "_max_workers", None)
        remote = not isinstance(spec, (cf.ThreadPoolExecutor, InProcessExecutor))
        yield ExecutorPlan(spec, 2 * workers if workers else 8, None, remote, type(spec).__name__)
        return
    if not isinstance(spec, str):
        raise TypeError(
            f"executor must be a string or a concurrent.futures.Executor, got "
            f"{type(spec).__name__}; allowed: {', '.join(EXECUTOR_FORMS)}."
        )
    kind, _, arg = spec.partition(":")
    if kind == "local" and not arg:
        yield ExecutorPlan(InProcessExecutor(), 1, None, False, "local")
    elif kind == "processes":
        n = _positive_count(spec, arg)
        fork = can_fork()
        method = "fork" if fork else _start_method()
        pool = cf.ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context(method), initializer=_one_thread
        )
        try:
            if fork:
                _fork_workers(pool, n)
            # forked workers answer at once; others take seconds, which the coordinator
            # spends training
            yield ExecutorPlan(pool, 2 * n, 1, True, spec, helps=not fork)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    elif kind == "dask" and arg:
        distributed = _import_distributed()
        try:
            # a bare handshake first: a Client that fails half-way keeps retrying its
            # close at exit, and a port that answers with something else than Dask can
            # make it fail in odd ways (a 3 EiB allocation, seen here)
            _probe_scheduler(arg)
            client = distributed.Client(arg, timeout=DASK_CONNECT_S, set_as_default=False)
        except Exception as err:  # noqa: BLE001 - every way of not answering reads the same
            raise ValueError(
                f"executor={spec!r}: no Dask scheduler answered at {arg!r} within "
                f"{DASK_CONNECT_S:.0f} s ({type(err).__name__}); start one with "
                "`dask scheduler` or check the address."
            ) from None
        try:
            threads = sum(client.nthreads().values()) or 1
            yield ExecutorPlan(client.get_executor(pure=False), 2 * threads + 2, 1, True, spec)
        finally:
            client.close()
    elif kind == "dask-local":
        n = _positive_count(spec, arg)
        distributed = _import_distributed()
        import dask

        # set before the workers fork, so that they read it too
        with dask.config.set(_QUIET_CLUSTER):
            forked = _fork_dask_workers(n) if can_fork() else None
            if forked is None:
                settings = _nanny_settings(dask)
                options = {}
            else:  # Dask's own threads start after these forks, never before
                settings = {}
                options = {"worker_class": _forked_worker_class(), "children": forked}
            try:
                # the settings stay for the cluster's life: its nannies start (and restart)
                # their workers in this process, reading them then
                with (
                    dask.config.set(settings),
                    distributed.LocalCluster(
                        n_workers=0,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=logging.ERROR,
                        **options,
                    ) as cluster,
                    distributed.Client(cluster, set_as_default=False) as client,
                ):
                    # started without waiting for nannies' workers (seconds: each imports
                    # torch), so that this process trains while they start; forked ones
                    # answer within a second
                    cluster.scale(n)
                    if forked is not None:
                        client.wait_for_workers(n, timeout=DASK_START_S)
                    executor = client.get_executor(pure=False)
                    yield ExecutorPlan(executor, 2 * n, 1, True, spec, helps=forked is None)
            finally:
                for _, conn in forked or ():
                    conn.close()  # a worker never started reads the end of its pipe
                for process, _ in forked or ():
                    process.join(timeout=TIMEOUT_S)
                    if process.is_alive():
                        process.kill()
                        process.join()
    else:
        raise ValueError(
            f"executor={spec!r} is not one aelab knows; allowed: {', '.join(EXECUTOR_FORMS)}."
        )


# dask-local's cluster serves one sweep, whose stacks (at most 2N in flight) take about a
# second each: no statistical profiler (it samples every worker's stack every 10 ms), no
# work stealing, and rarer health checks. Side by side on a small sweep, 3 rounds each:
# 10.5-12.7 s with Dask's defaults, 9.7-12.4 s with these (the machine's speed drifted)
_QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.system-monitor.interval": "60s",
    "distributed.admin.tick.interval": "1s",
}


def worker_name() -> str:
    """``host:pid`` of this process, recorded with each stack it trains."""
    return f"{socket.gethostname()}:{os.getpid()}"


def eta_seconds(done: int, total: int, elapsed: float) -> float:
    """Seconds left at the rate so far (NaN before anything is done)."""
    return elapsed / done * (total - done) if done else math.nan
