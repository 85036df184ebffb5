"""The ``aelab`` command line: run studies, list them, train one model, encode or
reconstruct data with it, summarise a model, run a sweep.

Only this module prints. Every command prints where it wrote its results. A
user's mistake is one line on stderr, ``aelab COMMAND: error: what went wrong;
what to do``, never a traceback (``--debug`` shows it). Exit status: 0 done,
1 failed, 2 bad usage, 130 interrupted by Ctrl-C, 143 by SIGTERM (128 + the
signal's number, as shells report it); an interrupted ``aelab run`` still
writes the report of the studies that finished.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gzip
import inspect
import io
import json
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
import warnings
import zipfile
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aelab import __version__, data, models, plots, report
from aelab._files import write_bytes, write_text
from aelab._seed import seeded
from aelab.checkpoint import load as load_model
from aelab.checkpoint import save
from aelab.evaluate import encode, reconstruct, reconstruction_errors
from aelab.studies import REGISTRY, StudyResult
from aelab.studies._base import data_studies, parse_setting
from aelab.train import train_autoencoder, train_vae

EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143

BUILTIN_DATA = {
    "moons": lambda n, seed: data.moons(n, noise=0.1, seed=seed),
    "rectangle": lambda n, seed: data.rectangle(n, seed=seed),
    "digits": lambda n, seed: data.digits(),
}
# Limits checked before anything is allocated, so that a typo (--hidden 100000000)
# is a one-line refusal, not minutes of swapping. 50 million float32 parameters are
# 200 MB, 800 MB with Adam's state and the gradients; far beyond what these
# experiments need.
MAX_PARAMETERS = 50_000_000
MAX_POINTS = 1_000_000  # --n for moons and rectangle (16 MB of points)
MAX_DEPTH = 100  # --layers / --blocks: each is a module built in Python

LABEL_RULE = (
    "labels come only from --label-column NAME (a CSV column name or 0-based "
    "position, or an .npz array name; an .npz's array y is its labels); a CSV column "
    "called y, label or target is otherwise a feature"
)
THREADS_HELP = (
    "CPU threads for torch (default 1: aelab's models are tiny, and a second "
    "thread mostly spin-waits, which on a busy machine slows small convolutions "
    "many-fold)"
)


class UsageError(ValueError):
    """Options that contradict each other or do not apply: exit status 2, as argparse's own."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does: finished
    work is kept and temporary files are removed."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _interrupt_code(err: BaseException) -> int:
    return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT


def _interrupt_name(err: BaseException) -> str:
    return "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises :class:`Terminated` for the block (signal handlers live in the main
    thread only; elsewhere, e.g. main() called from a worker thread, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


# exceptions that mean a file is truncated or not what its name says
_DAMAGED_FILE = (
    EOFError,
    zlib.error,
    struct.error,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    gzip.BadGzipFile,
)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _error_line(command: str, err: BaseException) -> str:
    """What went wrong and what to do, in one line."""
    text, start = _one_line(err), f"aelab {command}: error: "
    if isinstance(err, UsageError):
        return f"{start}{text.rstrip('.')}; see aelab {command} --help."
    if isinstance(err, FloatingPointError):  # aelab.TrainingDiverged
        where = (
            f" Set it with --lr; aelab train's default is {TRAIN_DEFAULTS['lr']:g}."
            if command == "train"
            else " Set it with --set lr=VALUE."
            if command == "run"
            else ""
        )
        return f"{start}{text}{where}"
    if isinstance(err, MemoryError):
        return (
            f"{start}out of memory ({text}); use a smaller model or less data, or free "
            "memory on this machine."
        )
    if isinstance(err, _DAMAGED_FILE):
        return (
            f"{start}a file could not be read: it is truncated or damaged "
            f"({type(err).__name__}: {text}); check the file, or copy or download it again."
        )
    if isinstance(err, (ValueError, TypeError, OSError)):
        return start + text
    return (
        f"aelab {command}: unexpected error ({type(err).__name__}: {text}); this may be a "
        "bug in aelab: rerun with --debug to see the traceback, and report it."
    )


# --------------------------------------------------------------------------- shared helpers


def _claim(out: str | None) -> tuple[Path, bool]:
    """A new or empty output folder, claimed with a lock file created with O_EXCL.

    Two commands given the same ``--out`` at the same time cannot both claim it:
    exactly one creates the lock. Returns the folder and whether this call created it.
    """
    if out:
        path, created = Path(out), False
        try:
            path.mkdir(parents=True)
            created = True
        except FileExistsError:
            if not path.is_dir():
                raise ValueError(
                    f"--out {out!r} is a file; give a folder for the results."
                ) from None
    else:  # runs/<timestamp>, suffixed when taken; mkdir is the atomic claim
        base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
        base.parent.mkdir(parents=True, exist_ok=True)
        path, i = base, 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                path, i = Path(f"{base}-{i}"), i + 1
        created = True
    lock = path / _LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        owner = ""
        with contextlib.suppress(OSError, ValueError, IndexError):  # not yet written: no pid
            owner = f" by process {int(lock.read_text().split()[0])}"
        raise ValueError(
            f"--out {str(path)!r} is in use{owner}: another aelab command is writing there "
            f"(lock file {lock}); wait for it or choose another folder; if no aelab command "
            f"is running, delete {lock}."
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    if any(p.name != _LOCK for p in path.iterdir()):
        lock.unlink()
        raise ValueError(
            f"--out {str(path)!r} already holds files; choose a new or empty folder "
            "so that this run's results do not mix with another's."
        )
    return path, created


_LOCK = ".aelab-lock"


@contextlib.contextmanager
def _claimed_out_dir(out: str | None):
    """The claimed output folder for the block; released after it, and removed when the
    block fails and this command created it and left it empty."""
    path, created = _claim(out)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            (path / _LOCK).unlink()
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _check_count(option: str, value: int, limit: int, what: str) -> int:
    if value > limit:
        raise ValueError(
            f"{option} {value} is above the limit of {limit:,} {what}; choose "
            f"{option} <= {limit:,}."
        )
    return value


def _built_within_limit(build, what: str, seed: int | None = None):
    """``build()`` if the model it makes has at most MAX_PARAMETERS parameters.

    The model is first built on the meta device, which allocates nothing, to count them.
    """
    with torch.device("meta"):
        probe = build()
    n_params = sum(p.numel() for p in probe.parameters())
    if n_params > MAX_PARAMETERS:
        raise ValueError(
            f"{what} makes a model of {n_params:,} parameters ({4 * n_params / 1e9:.3g} GB of "
            f"float32 weights), above the limit of {MAX_PARAMETERS:,}; choose smaller sizes."
        )
    if seed is None:
        return build()
    with seeded(seed):
        return build()


def _load_data(path: str, option: str = "--data", label_column: str | None = None):
    """``aelab.data.load`` with the option named in errors that do not name the file."""
    try:
        # a header's name first, else a number is a 0-based column position
        return data.load(path, label_column=label_column)
    except (FileNotFoundError, MemoryError):
        raise
    except (ValueError, TypeError, OSError, *_DAMAGED_FILE) as err:
        text = _one_line(err)
        if isinstance(err, (ValueError, TypeError)) and str(path) in text:
            raise
        raise ValueError(
            f"{option} {path}: could not be loaded: {text}"
            + (
                ""
                if isinstance(err, (ValueError, TypeError))
                else f" ({type(err).__name__}; is the file truncated or damaged?)"
            )
        ) from err


def _load_saved_model(path: str, device=None):
    """``aelab.load``, any failure to read the file said as 'not an aelab model file'."""
    try:
        return load_model(path, device=device or "cpu")
    except (ValueError, TypeError, FileNotFoundError, MemoryError):
        raise
    except Exception as err:  # torch's own errors on zips that are not torch files
        raise ValueError(
            f"--load {path} is not an aelab model file: torch could not read it "
            f"({type(err).__name__}); give a file saved by aelab train or "
            "aelab.save."
        ) from err


def _check_device(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {text!r} is not a device name; use cpu, cuda, cuda:N or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {text}: CUDA is not available with this torch "
            f"({torch.__version__}); use --device cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"--device {text}: MPS is not available on this machine; use --device cpu."
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {text!r}: aelab trains on cpu, cuda or mps.")
    return text


def _show_progress(args) -> bool | None:
    return True if args.progress else (False if args.no_progress else None)


def _note(command: str, text: str) -> None:
    print(f"aelab {command}: note: {text}", file=sys.stderr)


# --------------------------------------------------------------------------- aelab list / run


def cmd_list(args) -> int:
    width = max(len(name) for name in REGISTRY)
    for name, entry in REGISTRY.items():
        print(f"{name:<{width}}  {entry.summary}")
    return 0


def _check_mnist_files(root) -> None:
    """Fail before any training when an MNIST study would not find or not read its files."""
    if root is None:
        raise UsageError(
            "--dataset mnist needs --mnist-root DIR, the folder with the MNIST IDX files."
        )
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            data._mnist_file(Path(root), f"{prefix}-{kind}-ubyte")
    for train in (True, False):  # read them: a truncated file fails now, not mid-run
        try:
            data.mnist(root, train=train)
        except (FileNotFoundError, MemoryError):
            raise
        except (ValueError, TypeError, OSError, *_DAMAGED_FILE) as err:
            own = isinstance(err, (ValueError, TypeError))  # aelab's message says what to do
            raise ValueError(
                f"--mnist-root {root}: "
                + (
                    _one_line(err)
                    if own
                    else f"the MNIST files could not be read ({type(err).__name__}: "
                    f"{_one_line(err)}); copy or download them again."
                )
            ) from err


def _study_options(func, args) -> dict:
    """``--dataset``/``--mnist-root``/``--device`` as keyword arguments, for the studies
    whose signature takes them."""
    dataset = args.dataset or ("mnist" if args.mnist_root else None)
    options = {
        "dataset": dataset,
        "mnist_root": args.mnist_root,
        "device": getattr(args, "device", None),
    }
    accepted = inspect.signature(func).parameters
    return {k: v for k, v in options.items() if v is not None and k in accepted}


def _needing_labels(names, user_data) -> list[str]:
    """The studies among ``names`` that need labels the user's data does not have."""
    return [n for n in names if REGISTRY[n].labels and user_data.y is None]


def _default_studies(user_data) -> list[str]:
    """What ``aelab run`` runs when no study is named: every question once (a generic
    study that has a course preset runs as that preset), or, with ``--data``, every
    study that can take the user's data (those that need labels only when it has them)."""
    if user_data is not None:
        kinds = ("any", "image") if user_data.image_shape is not None else ("any",)
        names = [n for n in data_studies() if REGISTRY[n].data in kinds]
        skipped = _needing_labels(names, user_data)
        if skipped:
            _note(
                "run",
                f"{', '.join(skipped)} needs labels, which your data has none of; skipped "
                "(name the label column with --label-column).",
            )
        return [n for n in names if n not in skipped]
    presets = {s.preset_of for s in REGISTRY.values()}
    return [n for n in REGISTRY if n not in presets]


def _settings_overrides(names, pairs) -> dict[str, dict]:
    """``--set name=value`` pairs parsed for each chosen study's settings dataclass."""
    overrides = {name: {} for name in names}
    for text in pairs or ():
        for name in names:
            cls = REGISTRY[name].settings
            if cls is None:
                raise UsageError(f"--set {text}: study {name!r} has no settings to set.")
            try:
                key, value = parse_setting(cls, text)
            except ValueError as err:
                raise UsageError(f"--set for study {name!r}: {err}") from None
            overrides[name][key] = value
    return overrides


def _check_study_names(names) -> None:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, REGISTRY, n=3)
            hints.append(f"{n!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise UsageError(
            f"unknown study {', '.join(hints)}; `aelab list` shows the {len(REGISTRY)} studies"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(
            f"study {', '.join(twice)} is named twice: {' '.join(names)}; name each once."
        )


def cmd_run(args) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.studies:
        _check_study_names(args.studies)
    user_data = _load_data(args.data) if args.data else None
    names = args.studies or _default_studies(user_data)
    if user_data is not None:
        refusing = [n for n in names if REGISTRY[n].data is None]
        if refusing:
            raise UsageError(
                f"--data: {', '.join(refusing)} cannot run on your data; studies "
                f"that can: {', '.join(data_studies())}."
            )
        unlabelled = _needing_labels(names, user_data)
        if unlabelled:  # named ones: checked before any training
            raise UsageError(
                f"--data: {', '.join(unlabelled)} needs labels, and {args.data} has none; "
                "name the label column with --label-column (a CSV column or an .npz array)."
            )
    show = _show_progress(args)
    options = {name: _study_options(REGISTRY[name].run, args) for name in names}
    if (args.dataset or args.mnist_root) and not any(
        {"dataset", "mnist_root"} & set(o) for o in options.values()
    ):
        _note(
            "run",
            "--dataset/--mnist-root apply to the image studies only; none of the "
            "chosen studies uses them.",
        )
    if args.device and not any("device" in o for o in options.values()):
        _note(
            "run",
            f"--device {args.device} is ignored: none of the chosen studies takes a "
            "device; they run on the CPU.",
        )
    if any(o.get("dataset") == "mnist" for o in options.values()):
        _check_mnist_files(args.mnist_root)
    for name, settings in _settings_overrides(names, args.set).items():
        options[name].update(settings)
        if user_data is not None:
            options[name]["data"] = user_data
    with _claimed_out_dir(args.out) as out_dir:
        return _run_studies(names, options, args, show, out_dir)


def _run_studies(names, options, args, show, out_dir) -> int:
    """Run the studies (``--jobs`` at a time); write the report of those that finished,
    also when one fails or the run is interrupted (marked incomplete, naming those that
    did not run)."""
    from aelab._jobs import default_jobs

    jobs = args.jobs or default_jobs(args.threads, len(names))
    if jobs > 1 and len(names) > 1:  # each worker draws its studies' figures
        return _run_and_report(names, options, args, show, out_dir, None, jobs)
    # figures are drawn in a child process while the next study computes
    with report.BackgroundRenderer() as renderer:
        return _run_and_report(names, options, args, show, out_dir, renderer, 1)


def _in_order(names, kwargs, renderer, bar):
    """(index, result, seconds) of each study, run here one after another."""
    from aelab._jobs import run_study

    for i, name in enumerate(names):
        if bar is not None:
            bar.set_description(name)
        result, seconds = run_study(name, kwargs[i])
        if i < len(names) - 1:  # the last study's figures have nothing to overlap with
            renderer.submit(result)
        yield i, result, seconds


def _run_and_report(names, options, args, show, out_dir, renderer, jobs) -> int:
    from tqdm.auto import tqdm

    from aelab._jobs import run_parallel

    finished, stopped = {}, None
    bar_wanted = sys.stderr.isatty() if show is None else show
    lines = show is None and not bar_wanted  # no terminal: one line per finished study
    bar = tqdm(total=len(names), unit="study", file=sys.stderr) if bar_wanted else None
    kwargs = [dict(quick=not args.full, seed=args.seed, **options[n]) for n in names]
    if jobs > 1:
        done = run_parallel(names, kwargs, jobs, args.threads)
        if bar is not None:
            bar.set_description(f"{jobs} at a time")
    else:
        done = _in_order(names, kwargs, renderer, bar)
    try:
        for i, result, seconds in done:
            finished[i] = result
            if bar is not None:
                bar.update()
            elif lines:
                print(
                    f"[{len(finished)}/{len(names)}] {names[i]} {seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    except (KeyboardInterrupt, Exception) as err:
        stopped = err
        if args.debug and getattr(err, "worker_trace", ""):
            print(err.worker_trace, file=sys.stderr, end="")
    finally:
        done.close()  # stops the workers
        if bar is not None:
            bar.close()
    results = [finished[i] for i in sorted(finished)]
    which = (
        f"all {len(names)} studies"
        if not args.studies and not args.data
        else ", ".join(names)
        if len(names) <= 3
        else f"{len(names)} studies"
    )
    settings = "full (course) settings" if args.full else "quick settings"
    title = f"aelab run: {which}, {settings}, seed {args.seed}"
    if stopped is None:
        path = report.write(results, out_dir, title=title, renderer=renderer)
        print(f"Report: {path.resolve()}")
        return 0
    if not results:
        raise stopped
    not_run = [name for i, name in enumerate(names) if i not in finished]
    running = getattr(stopped, "study", None) or not_run[0]
    why = (
        f"the run was interrupted ({_interrupt_name(stopped)}) while running {running}"
        if isinstance(stopped, KeyboardInterrupt)
        else f"{running} failed: {_one_line(stopped).rstrip('.')}"
    )
    incomplete = (
        f"{len(results)} of {len(names)} studies finished; {why} "
        f"(rerun the rest with: aelab run {' '.join(not_run)})."
    )
    path = report.write(
        results,
        out_dir,
        title=f"{title} (incomplete)",
        incomplete=incomplete,
        not_run=not_run,
        renderer=renderer,
    )
    print(f"Report (incomplete, {len(results)} of {len(names)} studies): {path.resolve()}")
    if isinstance(stopped, KeyboardInterrupt):
        print(
            f"aelab run: interrupted ({_interrupt_name(stopped)}); not run: "
            f"{', '.join(not_run)}. The report holds the {len(results)} that finished.",
            file=sys.stderr,
        )
        return _interrupt_code(stopped)
    raise stopped


# --------------------------------------------------------------------------- aelab train

TRAIN_DEFAULTS = {
    "model": "mlp",
    "n": 1000,
    "bottleneck": 1,
    "hidden": 64,
    "layers": 2,
    "blocks": 2,
    "epochs": 200,
    "batch_size": 32,
    "lr": 3e-3,
    "test_size": 0.2,
}
# --model -> builder(input size, image shape, options); which size options each family uses
TRAIN_MODELS = {
    "mlp": (
        lambda d, shape, o: models.Autoencoder(d, o["bottleneck"], o["hidden"], o["layers"]),
        ("hidden", "layers"),
    ),
    "linear": (lambda d, shape, o: models.LinearAutoencoder(d, o["bottleneck"]), ()),
    "resnet": (
        lambda d, shape, o: models.ResNetAutoencoder(d, o["bottleneck"], o["hidden"], o["blocks"]),
        ("hidden", "blocks"),
    ),
    "conv": (lambda d, shape, o: models.ConvAutoencoder(shape, o["bottleneck"]), ()),
    "vae": (
        lambda d, shape, o: models.VAE(d, o["bottleneck"], o["hidden"], o["layers"]),
        ("hidden", "layers"),
    ),
}
_SIZE_OPTIONS = ("hidden", "layers", "blocks")


def _train_options(args) -> dict:
    """The train options with their defaults filled in; an option that the chosen family
    or data would ignore is a UsageError."""
    family = args.model or TRAIN_DEFAULTS["model"]
    used = TRAIN_MODELS[family][1]
    for name in _SIZE_OPTIONS:
        if getattr(args, name) is not None and name not in used:
            raise UsageError(
                f"--{name} does not apply to --model {family}"
                + (f" (it uses {', '.join('--' + u for u in used)})" if used else "")
                + f"; drop --{name}."
            )
    if family == "vae" and args.noise_sigma is not None:
        raise UsageError("--noise-sigma does not apply to --model vae; drop it.")
    options = {
        k: getattr(args, k) if getattr(args, k) is not None else v
        for k, v in TRAIN_DEFAULTS.items()
    }
    options["model"] = family
    for name in ("layers", "blocks"):
        _check_count(f"--{name}", options[name], MAX_DEPTH, name)
    return options


def _train_data(args, n: int):
    if args.data in BUILTIN_DATA:
        if args.label_column is not None:
            raise UsageError(
                f"--label-column applies to data files; --data {args.data} brings "
                "its own labels (if any); drop --label-column."
            )
        if args.data == "digits" and args.n is not None:
            raise UsageError(
                f"--n {args.n} does not apply to --data digits, which has its "
                "fixed 1,797 images; --n sets the size of moons and rectangle."
            )
        _check_count("--n", n, MAX_POINTS, "points")
        return BUILTIN_DATA[args.data](n, args.seed)
    if args.n is not None:
        raise UsageError(
            f"--n {args.n} does not apply to a data file, which brings its own "
            "rows; --n sets the size of moons and rectangle."
        )
    return _load_data(args.data, "--data", args.label_column)


def _standardized(train, test):
    """Both splits scaled by the training split's mean and standard deviation (sklearn's
    StandardScaler: a constant feature keeps scale 1)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.X.numpy())
    scaled = [
        data.Dataset(
            torch.from_numpy(scaler.transform(d.X.numpy())).float(), d.y, d.name, d.image_shape
        )
        for d in (train, test)
    ]
    return scaled[0], scaled[1], scaler


def _scaler_path(model_path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".scaler.json")


def _paired_verdict(name: str, errors, other_errors) -> str:
    """Whether the model's per-point test errors are lower than ``name``'s: a paired t-test
    over the test points (one trained model, so training-seed spread is not in it)."""
    from scipy.stats import ttest_rel

    diff = (errors - other_errors).numpy().astype(float)
    n = len(diff)
    if n < 2 or not np.any(diff):
        return f"the same as {name}'s" if n >= 2 else f"not tested against {name}'s (1 point)"
    with warnings.catch_warnings():  # a near-constant difference: scipy warns, p stays valid
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel(errors.numpy(), other_errors.numpy()).pvalue)
    p_text = "p < 1e-4" if p < 1e-4 else f"p = {p:.2g}"
    if p < 0.05:
        word = "lower" if diff.mean() < 0 else "higher"
        return f"{word} than {name}'s (paired t-test over {n} test points, {p_text})"
    return f"not distinguishable from {name}'s (paired t-test over {n} test points, {p_text})"


def _codes_figure(codes: np.ndarray, labels: np.ndarray, title: str):
    """Codes coloured by label: the first two code dimensions, or for a 1-D code, the code
    against the label."""
    fig, axes = plots.new_figure(width=6.0, height=4.5)
    ax = axes[0, 0]
    classes = np.unique(labels)
    colours = [f"C{i % 10}" for i in range(len(classes))] if len(classes) <= 10 else None
    if codes.shape[1] >= 2:
        x, y, ylabel = codes[:, 0], codes[:, 1], "code $z_2$"
    else:  # one row per label, spread a little so that equal codes stay visible
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(labels))
        x, y, ylabel = codes[:, 0], labels.astype(float) + jitter, "label"
        if len(classes) <= 20:
            ax.set_yticks(classes, [str(c) for c in classes])
    if colours is None:  # many classes: one colour scale
        points = ax.scatter(x, y, c=labels, s=8, cmap="viridis")
        fig.colorbar(points, ax=ax, label="label")
    else:
        for c, colour in zip(classes, colours):
            keep = labels == c
            ax.scatter(x[keep], y[keep], s=8, color=colour, alpha=0.7, label=str(c))
        ax.legend(
            title="label", fontsize="small", ncols=2 if len(classes) > 5 else 1, markerscale=2
        )
    ax.set_xlabel("code $z_1$")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def _train_setup(args):
    """Options, data, splits and the untrained model: every check that needs no training,
    done before the output folder is claimed."""
    options = _train_options(args)
    family = options["model"]
    ds = _train_data(args, options["n"])
    if family == "conv" and ds.image_shape is None:
        raise UsageError(
            f"--model conv needs image data (digits, or a .npy/.npz array of shape "
            f"[n, H, W] or [n, C, H, W]); {args.data} holds flat rows of "
            f"{ds.n_features} features."
        )
    train, test = data.split(ds, test_size=options["test_size"], seed=args.seed)
    scaler = None
    if args.standardize:
        train, test, scaler = _standardized(train, test)
    build = TRAIN_MODELS[family][0]
    sizes = " ".join(f"--{k} {options[k]}" for k in ("bottleneck", *TRAIN_MODELS[family][1]))
    model = _built_within_limit(
        lambda: build(ds.n_features, ds.image_shape, options),
        f"--model {family} {sizes} on {ds.n_features} features",
        seed=args.seed,
    )
    return options, ds, train, test, scaler, model, sizes


def _train_result(args, options, ds, train, test, scaler, model, sizes):
    family = options["model"]
    common = dict(
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        lr=options["lr"],
        test=test,
        seed=args.seed,
        optimizer=args.optimizer,
        device=args.device,
        progress=_show_progress(args),
    )
    if family == "vae":
        history = train_vae(model, train, **common)
    else:
        history = train_autoencoder(model, train, noise_sigma=args.noise_sigma, **common)
    model = model.cpu()

    from aelab.baselines import PCA

    k = options["bottleneck"]
    pca = PCA(k).fit(train.X)
    mean = train.X.mean(0)
    per_point = {"train": {}, "test": {}}
    for split, part in (("train", train), ("test", test)):
        per_point[split] = {
            "autoencoder": reconstruction_errors(model, part.X),
            "PCA": reconstruction_errors(pca, part.X),
            "mean predictor": ((part.X - mean) ** 2).mean(1),
        }
    label = f"{family} autoencoder"
    rows = {
        label: "autoencoder",
        f"PCA ({k} component{'s' if k > 1 else ''})": "PCA",
        "mean predictor": "mean predictor",
    }
    table = pd.DataFrame(
        {
            "model": list(rows),
            "train MSE": [float(per_point["train"][v].mean()) for v in rows.values()],
            "test MSE": [float(per_point["test"][v].mean()) for v in rows.values()],
        }
    )
    mse = {v: float(per_point["test"][v].mean()) for v in rows.values()}
    test_errors = per_point["test"]
    units = " (standardized units)" if scaler is not None else ""
    vs_pca = _paired_verdict("PCA", test_errors["autoencoder"], test_errors["PCA"])
    vs_mean = _paired_verdict(
        "the mean predictor", test_errors["autoencoder"], test_errors["mean predictor"]
    )
    comparison = (
        f"Test MSE{units} {mse['autoencoder']:.3g} vs PCA {mse['PCA']:.3g} ({k} component"
        f"{'s' if k > 1 else ''}, the same bottleneck) vs mean predictor "
        f"{mse['mean predictor']:.3g}: the autoencoder's per-point errors are {vs_pca} and "
        f"{vs_mean}; "
        "one trained model, so the spread over training seeds is not included."
    )
    seconds = history.seconds[-1] if history.seconds else 0.0
    findings = [
        comparison,
        f"{type(model).__name__} {ds.n_features}-{k} ({sizes}) trained "
        f"{options['epochs']} epochs on {len(train)} points in {seconds:.1f} s.",
    ]

    figures = {
        "loss": plots.loss_curves(
            {ds.name or "data": history}, title=f"{ds.name or args.data}: loss per epoch"
        )
    }
    if family == "vae":
        figures["loss"].axes[0].set_ylabel("negative ELBO per sample")
    X_hat = reconstruct(model, test.X)
    if ds.n_features == 2:
        figures["reconstruction"] = plots.reconstruction_scatter(
            test.X, X_hat, title=f"{ds.name or args.data}: test points and reconstructions"
        )
    if ds.image_shape is not None:
        originals, rebuilt = test.X[:10], X_hat[:10]
        if scaler is not None:  # show pixels, not standardized values
            originals, rebuilt = (
                torch.from_numpy(scaler.inverse_transform(a.numpy())) for a in (originals, rebuilt)
            )
        low, high = float(ds.X.min()), float(ds.X.max())
        figures["images"] = plots.image_grid(
            {"test image": originals, "reconstructed": rebuilt},
            ds.image_shape,
            title=f"{ds.name or args.data}: test images and their reconstructions",
            value_range=(low, high) if high > low else (low, low + 1),
        )
    if test.y is not None:
        figures["codes"] = _codes_figure(
            encode(model, test.X).numpy(),
            test.y.numpy(),
            f"{ds.name or args.data}: test codes by label",
        )
    config = {
        **history.config,
        "data": args.data,
        "model": family,
        "standardize": bool(args.standardize),
        "test_size": options["test_size"],
    }
    metrics = {
        "train_mse": float(table["train MSE"].iloc[0]),
        "test_mse": mse["autoencoder"],
        "pca_test_mse": mse["PCA"],
        "mean_test_mse": mse["mean predictor"],
    }
    source = args.data if args.data in BUILTIN_DATA else Path(args.data).stem
    result = StudyResult(
        f"train: {source}", {"errors": table}, figures, findings, config, metrics, answer=comparison
    )
    return result, model, scaler, table


def cmd_train(args) -> int:
    setup = _train_setup(args)
    with _claimed_out_dir(args.out) as out_dir:
        result, model, scaler, table = _train_result(args, *setup)
        model_path = save(model, out_dir / "model.pt")
        if scaler is not None:
            write_text(
                _scaler_path(model_path),
                json.dumps({"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}),
            )
        path = report.write(result, out_dir, title=f"aelab train: {args.data}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(result.findings[0])
    print(f"Model: {model_path.resolve()}\nReport: {path.resolve()}")
    return 0


# --------------------------------------------------------------------------- encode / reconstruct


def _read_scaler(model_path):
    path = _scaler_path(model_path)
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
        return np.asarray(values["mean"], float), np.asarray(values["scale"], float)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} (the standardization saved with the model) is damaged: "
            f"{_one_line(err)}; retrain, or delete it if the model was trained "
            "without --standardize."
        ) from None


def _output_path(out: str | None, data_path: str, what: str) -> Path:
    if out is None:
        path = Path(f"{Path(data_path).stem}.{what}.csv")
        if path.exists():
            raise ValueError(
                f"{path} exists; give --out FILE.csv or FILE.npy to choose where to write."
            )
        return path
    path = Path(out)
    if path.suffix.lower() not in (".csv", ".npy"):
        raise UsageError(f"--out {out!r} must end in .csv or .npy.")
    if path.is_dir():
        raise ValueError(f"--out {out!r} is a folder; give a file name ending in .csv or .npy.")
    return path


def _apply_model(args, what: str) -> int:
    model = _load_saved_model(args.load, device=args.device)
    ds = _load_data(args.data, "--data", args.label_column)
    width = model.input_size
    if ds.n_features != width:
        raise ValueError(
            f"--data {args.data} has {ds.n_features} features per sample, but the "
            f"model in {args.load} takes {width}; give data of width {width}, or "
            "the model trained on this kind of data."
        )
    X = ds.X
    scaler = _read_scaler(args.load)
    if scaler is not None:
        X = torch.from_numpy((X.numpy() - scaler[0]) / scaler[1]).float()
    if what == "codes":
        values = encode(model, X).numpy()
        columns = [f"z{i + 1}" for i in range(values.shape[1])]
    else:
        values = reconstruct(model, X).numpy()
        if scaler is not None:  # back to the data's units
            values = (values * scaler[1] + scaler[0]).astype(np.float32)
        columns = [f"x{i + 1}" for i in range(values.shape[1])]
    path = _output_path(args.out, args.data, what)
    if path.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, values)
        write_bytes(path, buffer.getvalue())
    else:
        write_text(path, pd.DataFrame(values, columns=columns).to_csv(index=False))
    scaled = f"; standardized with {_scaler_path(args.load).name}" if scaler is not None else ""
    n_rows, n_columns = values.shape
    print(
        f"{what.capitalize()}: {path.resolve()} ({n_rows} row{'s' if n_rows != 1 else ''} x "
        f"{n_columns} column{'s' if n_columns != 1 else ''}{scaled})"
    )
    return 0


def cmd_encode(args) -> int:
    return _apply_model(args, "codes")


def cmd_reconstruct(args) -> int:
    return _apply_model(args, "reconstructions")


# --------------------------------------------------------------------------- aelab summary

# --model name -> builder from the parsed options; conv takes --image-shape, not --input-size
SUMMARY_MODELS = {
    "mlp": lambda a: models.Autoencoder(a["input_size"], a["bottleneck"], a["hidden"], a["layers"]),
    "linear": lambda a: models.LinearAutoencoder(a["input_size"], a["bottleneck"]),
    "resnet": lambda a: models.ResNetAutoencoder(
        a["input_size"], a["bottleneck"], a["hidden"], a["blocks"]
    ),
    "conv": lambda a: models.ConvAutoencoder(a["image_shape"], a["bottleneck"], skip=a["skip"]),
    "vae": lambda a: models.VAE(a["input_size"], a["bottleneck"], a["hidden"], a["layers"]),
}
SUMMARY_MODELS["autoencoder"] = SUMMARY_MODELS["mlp"]  # the name before --model mlp
# the options each family is built from (the rest would be ignored, so they are refused)
SUMMARY_USES = {
    "mlp": ("input_size", "bottleneck", "hidden", "layers"),
    "linear": ("input_size", "bottleneck"),
    "resnet": ("input_size", "bottleneck", "hidden", "blocks"),
    "conv": ("image_shape", "bottleneck", "skip"),
    "vae": ("input_size", "bottleneck", "hidden", "layers"),
}
SUMMARY_USES["autoencoder"] = SUMMARY_USES["mlp"]
SUMMARY_DEFAULTS = {
    "model": "mlp",
    "input_size": 2,
    "image_shape": [1, 8, 8],
    "bottleneck": 1,
    "hidden": 64,
    "layers": 2,
    "blocks": 2,
    "skip": False,
}


def cmd_summary(args) -> int:
    from aelab.summary import summary

    given = [k for k in SUMMARY_DEFAULTS if getattr(args, k) not in (None, False)]
    if args.load:
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise UsageError(
                f"{flags} cannot be used with --load: the file decides the model; "
                f"drop {'it' if len(given) == 1 else 'them'}."
            )
        model = _load_saved_model(args.load)
    else:
        options = {
            k: getattr(args, k) if getattr(args, k) is not None else v
            for k, v in SUMMARY_DEFAULTS.items()
        }
        family = options["model"]
        uses = SUMMARY_USES[family]
        ignored = [k for k in given if k != "model" and k not in uses]
        if ignored:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in ignored)
            raise UsageError(
                f"{flags} do{'es' if len(ignored) == 1 else ''} not apply to "
                f"--model {family}, which takes "
                f"{', '.join('--' + k.replace('_', '-') for k in uses)}."
            )
        for name in ("layers", "blocks"):
            _check_count(f"--{name}", options[name], MAX_DEPTH, name)
        sizes = " ".join(
            f"--{k.replace('_', '-')} {options[k]}"
            for k in uses
            if k not in ("skip", "image_shape")
        )
        model = _built_within_limit(
            lambda: SUMMARY_MODELS[family](options), f"--model {family} {sizes}"
        )
    shape = getattr(model, "image_shape", None) or (model.input_size,)
    print(summary(model, shape))
    return 0


# --------------------------------------------------------------------------- aelab sweep

# [model] family -> the class and the arguments a config may set (input_size comes from the data)
SWEEP_FAMILIES = {
    "autoencoder": (
        models.Autoencoder,
        {"bottleneck_size": int, "hidden_size": int, "layers": int},
    ),
    "linear": (models.LinearAutoencoder, {"bottleneck_size": int}),
    "resnet": (
        models.ResNetAutoencoder,
        {"bottleneck_size": int, "hidden_size": int, "blocks": int},
    ),
    "vae": (models.VAE, {"bottleneck_size": int, "hidden_size": int, "layers": int}),
}
# training settings a config may set, in [training] or as [grid] lists
SWEEP_TRAINING = {
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "optimizer": str,
    "momentum": float,
    "weight_decay": float,
    "lr_schedule": str,
    "noise_sigma": float,
    "objective": str,
    "beta": float,
    "likelihood": str,
    "mmd_weight": float,
    "kernel": str,
}
SWEEP_DATA = {
    "name": str,
    "file": str,
    "label_column": str,
    "n": int,
    "noise": float,
    "seed": int,
    "test": float,
    "validation": float,
    "split_seed": int,
}
SWEEP_METRICS = ("train_mse", "val_mse", "test_mse", "mean_mse", "pca_mse")
SWEEP_REPORT = {"select": str, "metrics": list}
SWEEP_TOP = {
    "title": str,
    "seeds": int,
    "stack_size": int,
    "keep_models": bool,
    "model": dict,
    "data": dict,
    "grid": dict,
    "training": dict,
    "report": dict,
}
_SWEEP_REQUIRED = {
    "model": "family = " + " | ".join(SWEEP_FAMILIES) + " and its fixed arguments",
    "data": "name = moons | rectangle | digits, or file = PATH",
    "grid": "name = [values, ...] lines",
}
_TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _config_line(lines: list[str], table: str | None, key: str | None) -> int | None:
    """The line where ``[table] key = ...`` (or the ``[table]`` header) is written."""
    import re

    current = None
    for number, line in enumerate(lines, 1):
        header = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if header and not line.lstrip().startswith("[["):
            current = header.group(1)
            if key is None and current == table:
                return number
            continue
        if (
            key is not None
            and current == table
            and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line)
        ):
            return number
    return None


def _is_type(value, kind) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


class _SweepConfig:
    """A parsed ``aelab sweep`` config file; every mistake names its key, line and what is
    allowed. See examples/sweep.toml."""

    def __init__(self, path):
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"sweep config {str(path)!r} does not exist.")
        text = self.path.read_text(encoding="utf-8")
        self.lines = text.splitlines()
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{self.path}: not valid TOML: {err}.") from None
        self.raw = raw
        self._keys(None, raw, SWEEP_TOP)
        for table, needs in _SWEEP_REQUIRED.items():
            if table not in raw:
                raise self.error(None, table, f"the [{table}] table is missing", needs)
        model, data_cfg = raw["model"], raw["data"]
        family = model.get("family")
        if family not in SWEEP_FAMILIES:
            raise self.error(
                "model",
                "family",
                "missing" if family is None else f"unknown family {family!r}",
                ", ".join(SWEEP_FAMILIES),
            )
        self.cls, model_args = SWEEP_FAMILIES[family]
        self.model_args = model_args
        self.fixed = {k: v for k, v in model.items() if k != "family"}
        self._keys("model", self.fixed, model_args, f"family {family!r} takes")
        self._keys("data", data_cfg, SWEEP_DATA)
        self.training = dict(raw.get("training", {}))
        self._keys("training", self.training, SWEEP_TRAINING)
        if family == "vae":
            self.training.setdefault("objective", "vae")
        grid = raw["grid"]
        if not grid:
            raise self.error(
                "grid",
                None,
                "the grid is empty",
                "at least one name = [values] line; names: " + self._allowed_text("grid"),
            )
        grid_types = {**model_args, **SWEEP_TRAINING}
        for name, values in grid.items():
            if name not in grid_types:
                raise self.error(
                    "grid",
                    name,
                    "not a model argument or training setting",
                    self._allowed_text("grid"),
                )
            if not isinstance(values, list) or not values:
                raise self.error(
                    "grid",
                    name,
                    f"must be a non-empty list of values, got {values!r}",
                    f"e.g. {name} = [{values!r}]"
                    if not isinstance(values, list)
                    else "at least one value",
                )
            for value in values:
                if not _is_type(value, grid_types[name]):
                    raise self.error(
                        "grid",
                        name,
                        f"holds {value!r}",
                        f"a list of {_TYPE_WORDS[grid_types[name]]}s",
                    )
            both = "model" if name in self.fixed else "training" if name in self.training else None
            if both:
                raise self.error(
                    "grid", name, f"is also set in [{both}]", "set each name in one place"
                )
        self.grid = grid
        seeds = raw.get("seeds", 5)
        if isinstance(seeds, int) and seeds < 1:
            raise self.error(None, "seeds", f"must be >= 1, got {seeds}", "a count of seeds >= 1")
        self.seeds = seeds
        self.stack_size = raw.get("stack_size", None)
        if self.stack_size is not None and self.stack_size < 1:
            raise self.error(
                None, "stack_size", f"must be >= 1, got {self.stack_size}", "an integer >= 1"
            )
        self.keep_models = raw.get("keep_models", False)
        report_cfg = raw.get("report", {})
        self._keys("report", report_cfg, SWEEP_REPORT)
        self.select = report_cfg.get("select", "val_mse")
        self.metrics = report_cfg.get("metrics", ["test_mse"])
        for key, names in (("select", [self.select]), ("metrics", self.metrics)):
            bad = [m for m in names if m not in SWEEP_METRICS]
            if bad or not names:
                raise self.error(
                    "report",
                    key,
                    f"unknown metric {bad[0]!r}" if bad else "is empty",
                    ", ".join(SWEEP_METRICS),
                )
        self.title = raw.get("title", self.path.stem)
        self._load_data(data_cfg)

    # ---- checks

    def error(self, table, key, problem, allowed) -> ValueError:
        line = _config_line(self.lines, table, key)
        where = f"line {line}" if line else "line unknown"
        name = f"[{table}] {key}" if table and key else f"[{table}]" if table else key
        return ValueError(f"{self.path}, {where}: {name}: {problem}; allowed: {allowed}.")

    def _allowed_text(self, table) -> str:
        if table == "grid":
            return (
                f"lists of the model's arguments ({', '.join(self.model_args)}) or of "
                f"training settings ({', '.join(SWEEP_TRAINING)})"
            )
        return _SWEEP_REQUIRED[table]

    def _keys(self, table, values: dict, allowed: dict, what: str = "") -> None:
        for key, value in values.items():
            if key not in allowed:
                raise self.error(table, key, "unknown key", f"{what} {', '.join(allowed)}".strip())
            kind = allowed[key]
            if kind is object:
                continue
            if key == "seeds" and table is None and isinstance(value, list):
                if not value or not all(_is_type(s, int) and s >= 0 for s in value):
                    raise self.error(
                        None,
                        key,
                        f"holds {value!r}",
                        "a count, or a non-empty list of integers >= 0",
                    )
                continue
            if not _is_type(value, kind):
                raise self.error(
                    table, key, f"must be {_TYPE_WORDS[kind]}, got {value!r}", _TYPE_WORDS[kind]
                )

    # ---- data and model

    def _load_data(self, cfg: dict) -> None:
        if ("name" in cfg) == ("file" in cfg):
            raise self.error(
                "data", None, "give exactly one of name and file", self._allowed_text("data")
            )
        seed = cfg.get("seed", 0)
        if "file" in cfg:
            extra = [k for k in ("n", "noise") if k in cfg]
            if extra:
                raise self.error(
                    "data",
                    extra[0],
                    "only applies to built-in data",
                    "file, seed, test, validation, split_seed",
                )
            ds = data.load(self.path.parent / cfg["file"], label_column=cfg.get("label_column"))
        else:
            if "label_column" in cfg:
                raise self.error(
                    "data",
                    "label_column",
                    "only applies to data from a file",
                    "file = PATH with label_column = NAME",
                )
            name = cfg["name"]
            if name not in BUILTIN_DATA:
                raise self.error(
                    "data",
                    "name",
                    f"unknown data {name!r}",
                    f"{', '.join(BUILTIN_DATA)}, or file = PATH",
                )
            if name == "moons":
                ds = data.moons(cfg.get("n", 500), noise=cfg.get("noise", 0.1), seed=seed)
            elif name == "rectangle":
                ds = data.rectangle(cfg.get("n", 500), seed=seed)
            else:
                ds = data.digits()
        for key in ("test", "validation"):
            share = cfg.get(key, 0.2)
            if not 0 < share < 1:
                raise self.error(
                    "data", key, f"must be a share between 0 and 1, got {share}", "0 < share < 1"
                )
        split_seed = cfg.get("split_seed", 0)
        rest, self.test = data.split(ds, test_size=cfg.get("test", 0.2), seed=split_seed)
        self.train, self.validation = data.split(
            rest, test_size=cfg.get("validation", 0.2), seed=split_seed
        )
        self.input_size = ds.n_features
        self.data_name = ds.name or cfg.get("name", cfg.get("file"))

    def factory(self, **grid_args):
        """One trial's model: the family with its fixed arguments and the grid's."""
        return self.cls(input_size=self.input_size, **{**self.fixed, **grid_args})


class _SweepBar:
    """Sweep progress: a bar of trials (done / to do, with an ETA) on a terminal, else one
    line per finished stack; nothing with --no-progress."""

    def __init__(self, show: bool | None):
        self.bar_wanted = sys.stderr.isatty() if show is None else show
        self.quiet = show is False
        self.bar = None

    def __call__(self, p) -> None:
        from aelab.store import eta_seconds

        if self.quiet:
            return
        if p.stack_trials == 0:
            print(
                f"aelab sweep: {p.total} trials; {p.reused} already in the store, "
                f"{p.to_train} to train",
                file=sys.stderr,
                flush=True,
            )
            if self.bar_wanted and p.to_train:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=p.to_train, unit="trial", desc="trials", file=sys.stderr)
            return
        if self.bar is not None:
            self.bar.update(p.stack_trials)
            return
        eta = eta_seconds(p.trained, p.to_train, p.elapsed)
        print(
            f"aelab sweep: {p.trained}/{p.to_train} trials trained (stack of "
            f"{p.stack_trials} in {p.stack_seconds:.1f} s); {p.elapsed:.0f} s elapsed, "
            f"ETA {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sweep_figure(runs, best, name: str, metrics: list[str]):
    """``metrics`` against grid value ``name``, the other names held at the best setting."""
    import numpy as np

    from aelab.experiments import setting_label

    others = {k: v for k, v in best.setting.items() if k != name}
    part = runs.where(**others) if others else runs
    fig, axes = plots.new_figure(width=6.0, height=4.2)
    ax = axes[0, 0]
    values = list(dict.fromkeys(runs.table[name].tolist()))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    for i, metric in enumerate(metrics):
        s = part.summary(metric, by=[name])
        x = (
            s[name].to_numpy(float)
            if numeric
            else np.array([values.index(v) for v in s[name]], dtype=float)
        )
        low = s["mean"] - s["ci_low"].fillna(s["mean"])
        high = s["ci_high"].fillna(s["mean"]) - s["mean"]
        ax.errorbar(
            x + (0 if numeric else 0.08 * i),
            s["mean"],
            yerr=[low, high],
            marker="o",
            capsize=3,
            label=f"{metric} (mean, 95% CI over seeds)",
        )
    if numeric and min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_xscale("log")
        plots.plain_log_ticks(ax, "x")
    if not numeric:
        ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(name)
    ax.set_ylabel("mean squared error")
    held = setting_label(others) if others else "no other grid names"
    ax.set_title(f"Error against {name}\n(others at the best setting: {held})", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _sweep_result(runs, cfg: _SweepConfig, executor, store) -> StudyResult:
    """The sweep as a report: error against each grid name, the best setting and those
    indistinguishable from it, the table."""
    from aelab.experiments import p_value_text

    select, metrics = cfg.select, cfg.metrics
    best = runs.best(select)
    seeds = f"{best.n} seeds"
    ci = "95% CI"
    first = (
        f"Best by {select}: {best.label}, {select} {best.mean:.4g} ({ci} "
        f"{best.ci_low:.4g} to {best.ci_high:.4g}, {seeds})"
    )
    chosen = runs.where(**best.setting) if best.setting else runs
    for metric in metrics:
        if metric == select:
            continue
        s = chosen.summary(metric, by=[]).iloc[0]
        first += f"; its {metric} is {s['mean']:.4g} ({ci} {s['ci_low']:.4g} to {s['ci_high']:.4g})"
    findings = [first + "."]
    comparison = best.comparison if best.comparison is not None else None
    n_other = 0 if comparison is None else len(comparison)
    if n_other == 0:
        findings.append("The grid has one setting, so there is nothing to compare it with.")
    elif best.indistinguishable:
        same = comparison[~comparison["significant"]].sort_values("p_holm", ascending=False)
        listed = "; ".join(
            f"{r['b']} ({p_value_text(r['p_holm'])})" for _, r in same.head(5).iterrows()
        )
        more = f"; and {len(same) - 5} more" if len(same) > 5 else ""
        findings.append(
            f"{len(same)} of {n_other} other settings cannot be told apart from it in {select} "
            f"at 5% (Holm-corrected t-tests over the seeds they share): {listed}{more}."
        )
    else:
        findings.append(
            f"All {n_other} other settings have a higher {select} than it at 5% (Holm-corrected "
            f"t-tests over the seeds they share; largest p = "
            f"{comparison['p_holm'].max():.2g})."
        )
    diverged = int(runs.table["diverged"].sum())
    if diverged:
        findings.append(
            f"{diverged} of {len(runs)} trials diverged; they are kept with NaN "
            "errors and left out of the means."
        )
    figures = {}
    for name in runs.grid_names:
        if runs.table[name].nunique(dropna=False) > 1:
            figures[f"error vs {name}"] = _sweep_figure(
                runs, best, name, list(dict.fromkeys([select, *metrics]))
            )
    summary = runs.summary(metrics[0])
    tables = {"trials": runs.table, f"summary of {metrics[0]}": summary}
    if comparison is not None and n_other:
        tables[f"{select} against the best"] = comparison
    config = {
        "config": str(cfg.path),
        **cfg.raw,
        "executor": str(executor),
        "store": str(store),
        "trained": runs.trained,
        "reused": runs.reused,
    }
    result_metrics = {
        "trials": len(runs),
        "trained": runs.trained,
        "reused": runs.reused,
        f"best_{select}": best.mean,
        "indistinguishable": len(best.indistinguishable),
    }
    return StudyResult(
        f"sweep: {cfg.title}", tables, figures, findings, config, result_metrics, answer=findings[0]
    )


def _sweep_status(path) -> int:
    from aelab.experiments import setting_label
    from aelab.store import ResultsStore

    with ResultsStore(path, writable=False) as store:
        status = store.status()
    if status["definition"] is None:
        print(f"{path}: an aelab store with no sweep recorded yet.")
        return 0
    missing = status["missing"]
    print(
        f"{path}: {status['done']} of {status['n_trials']} trials of its last sweep done, "
        f"{len(missing)} missing; {status['stored']} trials stored in all, from "
        f"{status['stacks']} stacks (last finished {status['last_finished'] or 'never'})."
    )
    by_setting: dict[str, list[int]] = {}
    for params, seed in missing:
        by_setting.setdefault(setting_label(params), []).append(seed)
    for i, (label, seeds) in enumerate(by_setting.items()):
        if i == 20:
            print(f"  ... and {len(by_setting) - 20} more settings")
            break
        print(
            f"  missing {label}: seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        )
    return 0


def _remove_if_no_trials(store: Path) -> None:
    """Delete a store this run created when it holds no finished trial."""
    from aelab.store import ResultsStore

    with contextlib.suppress(OSError, ValueError):
        with ResultsStore(store, writable=False) as opened:
            empty = opened.n_trials() == 0
        if empty:
            for path in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
                path.unlink(missing_ok=True)


def cmd_sweep(args) -> int:
    if args.status:
        if args.config:
            raise ValueError(
                "give CONFIG.toml to run a sweep, or --status FILE to look at a store, not both."
            )
        return _sweep_status(args.status)
    if not args.config:
        raise ValueError(
            "aelab sweep needs CONFIG.toml (see examples/sweep.toml), or --status FILE."
        )
    from aelab.experiments import sweep
    from aelab.store import WorkerLost

    cfg = _SweepConfig(args.config)
    with _claimed_out_dir(args.out) as out_dir:
        store = Path(args.store) if args.store else out_dir / "sweep.sqlite"
        bar = _SweepBar(_show_progress(args))
        options = {} if cfg.stack_size is None else {"stack_size": cfg.stack_size}
        try:
            runs = sweep(
                cfg.factory,
                cfg.train,
                validation=cfg.validation,
                test=cfg.test,
                grid=cfg.grid,
                seeds=cfg.seeds,
                store=store,
                executor=args.executor,
                progress=bar,
                keep_models=cfg.keep_models,
                device=args.device or "cpu",
                **options,
                **cfg.training,
            )
        except WorkerLost as err:
            bar.close()
            print(f"aelab sweep: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as err:
            bar.close()
            print(
                f"\naelab sweep: interrupted ({_interrupt_name(err)}); finished stacks are "
                f"in {store.resolve()}; run the same command with --store {store} to "
                "resume.",
                file=sys.stderr,
            )
            return _interrupt_code(err)
        except BaseException as err:
            if not args.store:  # nothing of this run is worth keeping in its output folder
                _remove_if_no_trials(store)
            if isinstance(err, ImportError):  # the Dask extra is missing: say how to install it
                raise ValueError(str(err)) from None
            raise
        finally:
            bar.close()
        result = _sweep_result(runs, cfg, args.executor, store)
        path = report.write(result, out_dir, title=f"aelab sweep: {cfg.title}")
    print(
        f"Trained {runs.trained} trials, reused {runs.reused} from the store.\n"
        f"Store: {store.resolve()}\nReport: {path.resolve()}"
    )
    return 0


# --------------------------------------------------------------------------- the parser

_GLOBAL_DEFAULTS = {"threads": 1, "seed": 0, "device": None, "debug": False}
# the commands each global option changes; elsewhere it is noted as ignored
_GLOBAL_USERS = {
    "seed": ("run", "train"),
    "device": ("run", "train", "sweep", "encode", "reconstruct"),
}


def _add_global_options(p: argparse.ArgumentParser, top: bool) -> None:
    """--threads, --seed, --device and --debug, accepted before and after the command.

    The top-level parser holds None defaults; each command's parser uses SUPPRESS, so a
    value given after the command overrides one given before, and no value resets it.
    """
    default = None if top else argparse.SUPPRESS
    group = p.add_argument_group("global options (before or after the command)")
    group.add_argument("--threads", type=int, default=default, help=THREADS_HELP)
    group.add_argument(
        "--seed",
        type=int,
        default=default,
        help="random seed for data, splits and initial weights (default 0)",
    )
    group.add_argument(
        "--device", default=default, help="where to train: cpu (default), cuda, cuda:N or mps"
    )
    group.add_argument(
        "--debug", action="store_true", default=default, help="show the full traceback of an error"
    )


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="output folder, new or empty (default: a new runs/<timestamp>)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help="always show progress bars")
    bar.add_argument("--no-progress", action="store_true", help="never show progress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aelab",
        description="Autoencoder experiments: run studies, train models, get reports.",
        epilog="Exit status: 0 done, 1 failed, 2 bad usage, 130 Ctrl-C, 143 SIGTERM.",
    )
    parser.add_argument("--version", action="version", version=f"aelab {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, **kwargs):
        p = sub.add_parser(name, **kwargs)
        _add_global_options(p, top=False)
        p.set_defaults(func=func)
        return p

    p = command(
        "run",
        cmd_run,
        help="run studies (all by default) and write one HTML report",
        description="Run the named studies (all when none is named) in quick settings, "
        "or the course sizes with --full. Without a terminal, prints one "
        "line per finished study. Ctrl-C writes the report of the studies "
        "that finished.",
    )
    p.add_argument("studies", nargs="*", metavar="STUDY", help="study ids (see `aelab list`)")
    p.add_argument("--full", action="store_true", help="the course sizes instead of quick settings")
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="studies run at once, each in a process of its own on --threads torch threads "
        "(default: as many as the cores allow, cores // threads); 1 runs them in turn",
    )
    p.add_argument(
        "--dataset",
        choices=["digits", "mnist"],
        default=None,
        help="images for the image studies (default digits; mnist needs --mnist-root)",
    )
    p.add_argument(
        "--mnist-root",
        metavar="DIR",
        help="folder with the MNIST IDX files train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz (gzipped or not); implies --dataset mnist",
    )
    p.add_argument(
        "--data",
        metavar="FILE",
        help="run on your data (.npy/.npz/.csv, no labels); without STUDY names, "
        "runs every study that takes it",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a study setting (repeatable), e.g. --set seeds=10; an "
        "unknown name lists the valid ones",
    )
    _add_output(p)

    command("list", cmd_list, help="list the studies", description="List the studies.")

    p = command(
        "train",
        cmd_train,
        help="train one autoencoder, compare it with PCA, save it",
        description="Train one autoencoder on a built-in dataset "
        f"({', '.join(BUILTIN_DATA)}) or a .npy/.npz/.csv file; print its "
        "train and test MSE next to PCA with the same bottleneck and the "
        "mean predictor; save the model and a report. Labels (used to "
        f"colour the codes and to stratify the split): {LABEL_RULE}.",
    )
    p.add_argument(
        "--data", default="moons", help=f"{' | '.join(BUILTIN_DATA)} | PATH (default moons)"
    )
    p.add_argument("--label-column", metavar="NAME", help=LABEL_RULE)
    p.add_argument(
        "--n", type=int, help=f"points for moons/rectangle (default 1000, at most {MAX_POINTS:,})"
    )
    p.add_argument(
        "--model",
        choices=list(TRAIN_MODELS),
        help="model family (default mlp); conv needs image data",
    )
    p.add_argument("--bottleneck", type=int, help="bottleneck size (default 1)")
    p.add_argument("--hidden", type=int, help="hidden width, mlp/resnet/vae (default 64)")
    p.add_argument("--layers", type=int, help="hidden layers per side, mlp/vae (default 2)")
    p.add_argument("--blocks", type=int, help="residual blocks, resnet (default 2)")
    p.add_argument("--epochs", type=int, help="epochs (default 200)")
    p.add_argument("--batch-size", type=int, help="batch size (default 32)")
    p.add_argument("--lr", type=float, help="learning rate (default 3e-3)")
    p.add_argument(
        "--optimizer", default="adam", choices=["adam", "sgd"], help="optimizer (default adam)"
    )
    p.add_argument(
        "--noise-sigma",
        type=float,
        default=None,
        help="train as a denoising AE with this input noise (not vae)",
    )
    p.add_argument(
        "--standardize",
        action="store_true",
        help="scale each feature by the training split's mean and standard "
        "deviation; saved beside the model (model.scaler.json) and applied by "
        "encode and reconstruct; MSEs are then in standardized units",
    )
    p.add_argument(
        "--test-size", type=float, help="share of the data held out as the test split (default 0.2)"
    )
    _add_output(p)

    for name, func, what in (
        ("encode", cmd_encode, "codes"),
        ("reconstruct", cmd_reconstruct, "reconstructions"),
    ):
        p = command(
            name,
            func,
            help=f"write a saved model's {what} of a data file as CSV or NPY",
            description=f"Write the {what} of every row of --data by the model in "
            f"--load (saved by aelab train) to a CSV or NPY file. "
            f"{LABEL_RULE[0].upper() + LABEL_RULE[1:]}; labels are not "
            "fed to the model.",
        )
        p.add_argument("--load", required=True, metavar="MODEL.pt", help="the saved model")
        p.add_argument("--data", required=True, metavar="FILE", help=".npy, .npz or .csv")
        p.add_argument("--label-column", metavar="NAME", help=LABEL_RULE)
        p.add_argument(
            "--out",
            metavar="FILE.csv|FILE.npy",
            help=f"where to write (default: the data file's name with .{what}.csv, "
            "in the current folder)",
        )

    p = command(
        "summary",
        cmd_summary,
        help="print a model's layers, output shapes and parameter counts",
        description="Print each layer's output shape and parameter count, with the "
        "total, for a model built from these options or loaded from a "
        "file saved by `aelab train`.",
    )
    p.add_argument(
        "--model",
        choices=list(SUMMARY_MODELS),
        help="model family (default mlp; autoencoder is the same)",
    )
    p.add_argument("--load", metavar="PATH", help="summarise a saved model file instead")
    p.add_argument("--input-size", type=int, help="features per sample (default 2)")
    p.add_argument(
        "--image-shape",
        type=int,
        nargs=3,
        metavar=("C", "H", "W"),
        help="conv only: image shape (default 1 8 8)",
    )
    p.add_argument("--bottleneck", type=int, help="bottleneck size (default 1)")
    p.add_argument("--hidden", type=int, help="hidden layer width (default 64)")
    p.add_argument("--layers", type=int, help="hidden layers per side, mlp and vae (default 2)")
    p.add_argument("--blocks", type=int, help="resnet only: residual blocks (default 2)")
    p.add_argument("--skip", action="store_true", help="conv only: U-Net-style skip connections")

    p = command(
        "sweep",
        cmd_sweep,
        help="train a grid of settings x seeds from a TOML config, resumably; report "
        "the best setting with CIs",
        description="Run the sweep a TOML config describes (see examples/sweep.toml), "
        "writing every finished stack of trials to a results store; rerun "
        "with the same --store to train only what is missing. Or, with "
        "--status FILE, say what a store has done and what is missing.",
    )
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the sweep's config file")
    p.add_argument(
        "--store",
        metavar="FILE",
        help="results store (SQLite) to write and resume from (default: "
        "sweep.sqlite in the output folder)",
    )
    p.add_argument(
        "--executor",
        default="local",
        metavar="EXECUTOR",
        help="where stacks train: local (default), processes:N, dask:ADDRESS or "
        "dask-local:N (the last two need pip install aelab[dask])",
    )
    p.add_argument(
        "--status",
        metavar="FILE",
        help="print what the store FILE has done and what is missing, and exit",
    )
    p.add_argument("--out", help="output folder for the report (default: a new runs/<timestamp>)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        action="store_true",
        help="always draw the progress bar (default: on a terminal only; "
        "otherwise one line per finished stack)",
    )
    bar.add_argument("--no-progress", action="store_true", help="print no progress")
    return parser


def _apply_global_options(args, parser) -> None:
    given = {k for k in _GLOBAL_DEFAULTS if getattr(args, k, None) not in (None, False)}
    for key, value in _GLOBAL_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    for key, users in _GLOBAL_USERS.items():
        if key in given and args.command not in users:
            _note(args.command, f"--{key} does not apply to aelab {args.command}; ignored.")
    if args.device is not None and args.command in _GLOBAL_USERS["device"]:
        args.device = _check_device(args.device)
    torch.set_num_threads(args.threads)


def main(argv=None) -> int:
    """Run the command line; return its exit status (argparse exits 2 on bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            _apply_global_options(args, parser)
            return args.func(args)
        except KeyboardInterrupt as err:
            if args.debug:
                traceback.print_exc()
            print(
                f"\naelab {args.command}: interrupted ({_interrupt_name(err)}); nothing was saved.",
                file=sys.stderr,
            )
            return _interrupt_code(err)
        except Exception as err:
            if args.debug:
                traceback.print_exc()
            print(_error_line(args.command, err), file=sys.stderr)
            return EXIT_USAGE if isinstance(err, UsageError) else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
