"""Saving and loading models as plain state dicts plus constructor arguments.

A file holds only tensors, strings, numbers, lists and dicts, and is read with
``torch.load(weights_only=True)``: loading never executes code from the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from aelab._checks import check_positive_int
from aelab._files import atomic_path
from aelab.models import MODEL_CLASSES

FORMAT = "aelab-model"
VERSION = 1


def save(model: nn.Module, path) -> Path:
    """Write ``model``'s class name, constructor arguments and weights to ``path``.

    >>> import tempfile, aelab
    >>> path = aelab.save(aelab.LinearAutoencoder(2, 1), tempfile.mkdtemp() + "/m.pt")
    >>> aelab.load(path).init_args
    {'input_size': 2, 'bottleneck_size': 1}
    """
    name = type(model).__name__
    if MODEL_CLASSES.get(name) is not type(model) or not hasattr(model, "init_args"):
        where = f"{type(model).__module__}.{type(model).__qualname__}"
        raise TypeError(
            f"model must be an aelab model (one of {sorted(MODEL_CLASSES)}), "
            f"got {where}; save other modules with torch.save(model.state_dict())."
        )
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "class": name,
        "init_args": dict(model.init_args),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


# the default cap on parameters aelab.load builds: 100 million (400 MB in float32), far
# above any model in aelab's studies, far below what would exhaust a laptop
MAX_PARAMETERS = 100_000_000
_PICKLE_BYTES = (
    2**20
)  # room for the pickled init_args, names and tensor headers (~10 KB in practice)
_MAX_DEFLATE_RATIO = 1032  # deflate cannot compress better; a zip entry claiming more is damaged
# constructor arguments that each add at least one stored tensor per unit (a layer, a block,
# a width, a channel level): a file cannot declare more of them than it stores tensors
_STRUCTURE_ARGS = ("layers", "blocks", "widths", "channels")


def _check_zip_sizes(path: Path, max_parameters: int) -> None:
    """Refuse, from the zip directory alone, a file whose contents exceed the cap."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(
            f"{path} is not an aelab model file (saved with aelab.save): {err}."
        ) from None
    for info in infos:
        if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
            raise ValueError(
                f"{path} is damaged: entry {info.filename!r} claims {info.file_size:,} "
                f"bytes from {info.compress_size:,} compressed."
            )
    total = sum(info.file_size for info in infos)
    allowed = 8 * max_parameters + _PICKLE_BYTES  # float64 weights at the cap, and the pickle
    if total > allowed:
        raise ValueError(
            f"{path} stores {total:,} bytes, more than max_parameters={max_parameters:,} "
            f"allows ({allowed:,}); if you trust the file, pass a larger "
            "max_parameters."
        )


def _check_state_dict(path: Path, state_dict: dict, max_parameters: int) -> None:
    """Every entry a real floating tensor whose values are all stored (no broadcast views)."""
    total = 0
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f"{path} is damaged: state_dict key {key!r} is not a string.")
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path} is damaged: state_dict[{key!r}] is a {type(value).__name__}, not a tensor."
            )
        if not value.is_floating_point():
            raise ValueError(
                f"{path} is damaged: {key} has dtype {value.dtype}; aelab models hold "
                "real floating-point weights."
            )
        stored = value.untyped_storage().nbytes() // max(value.element_size(), 1)
        if value.numel() > stored:
            raise ValueError(
                f"{path} is damaged: {key} has shape {tuple(value.shape)}, "
                f"{value.numel()} values but only {stored} stored (a broadcast view)."
            )
        total += value.numel()
    if total > max_parameters:
        raise ValueError(
            f"{path} holds {total:,} parameters, more than "
            f"max_parameters={max_parameters:,}; pass max_parameters={total} if you "
            "trust the file."
        )


def _check_structure(path: Path, init_args: dict, n_tensors: int) -> None:
    for name in _STRUCTURE_ARGS:
        value = init_args.get(name)
        if isinstance(value, (list, tuple)):
            count, said = len(value), f"{len(value)} {name}"
        elif isinstance(value, int) and not isinstance(value, bool):
            count, said = value, f"{name}={value}"
        else:
            continue  # the constructor says what is wrong with it
        if count > n_tensors:
            raise ValueError(
                f"{path} is damaged: its init_args declare {said}, but the file stores "
                f"only {n_tensors} tensors, fewer than that many layers need."
            )


def _compare_shapes(path: Path, cls, init_args: dict, expected: dict, stored: dict) -> None:
    where = (
        f"{path}: its state_dict does not match {cls.__name__}("
        + ", ".join(f"{k}={v!r}" for k, v in init_args.items())
        + ")"
    )
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing or unexpected:
        parts = ([f"Missing key(s): {', '.join(missing[:5])}"] if missing else []) + (
            [f"Unexpected key(s): {', '.join(unexpected[:5])}"] if unexpected else []
        )
        raise ValueError(f"{where}: {'; '.join(parts)}.")
    for key, shape in expected.items():
        if tuple(stored[key].shape) != shape:
            raise ValueError(
                f"{where}: size mismatch for {key}: the file stores "
                f"{tuple(stored[key].shape)}, the model needs {shape}."
            )


def load(path, device="cpu", *, max_parameters: int = MAX_PARAMETERS) -> nn.Module:
    """Rebuild a model saved by :func:`save`, in eval mode, on ``device``.

    The file is read with ``torch.load(weights_only=True)``: it never runs code.
    Sizes are checked before anything is allocated: the zip directory against
    ``max_parameters``, then the stored tensors against the shapes the
    constructor arguments imply (worked out on the ``meta`` device, which
    allocates nothing); only then is the model built.

    Parameters
    ----------
    path : str or Path
    device : str or torch.device
    max_parameters : int
        The most parameters a file may hold (default 100 million, 400 MB in
        float32); raise it to load a larger model you trust.

    Examples
    --------
    >>> import tempfile, aelab
    >>> path = aelab.save(aelab.Autoencoder(2, 1, 8, 1), tempfile.mkdtemp() + "/m.pt")
    >>> aelab.load(path, max_parameters=10_000).init_args["hidden_size"]
    8
    """
    path = Path(path)
    max_parameters = check_positive_int("max_parameters", max_parameters)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    if not zipfile.is_zipfile(path):  # aelab.save writes torch's zip format; refuse anything else
        raise ValueError(f"{path} is not an aelab model file (saved with aelab.save).")
    _check_zip_sizes(path, max_parameters)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a safe aelab model file: it holds objects other than weights "
            f"and plain data, and was not loaded ({err.__class__.__name__})."
        ) from None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file makes torch's reader fail in any way
        # a zip that is not torch's format, a truncated one, or a damaged pickle inside
        raise ValueError(
            f"{path} is not an aelab model file (saved with aelab.save): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an aelab model file (saved with aelab.save).")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{path} has format version {payload.get('version')!r}; "
            f"this aelab reads version {VERSION}."
        )
    cls = MODEL_CLASSES.get(payload.get("class"))
    if cls is None:
        raise ValueError(
            f"{path} names model class {payload.get('class')!r}; allowed: {sorted(MODEL_CLASSES)}."
        )
    init_args, state_dict = payload.get("init_args"), payload.get("state_dict")
    if not isinstance(init_args, dict) or not isinstance(state_dict, dict):
        raise ValueError(
            f"{path} is damaged: it needs a dict 'init_args' and a dict 'state_dict', "
            f"got {type(init_args).__name__} and {type(state_dict).__name__}."
        )
    if not all(isinstance(k, str) for k in init_args):
        raise ValueError(
            f"{path} is damaged: init_args keys must be strings, got {list(init_args)!r}."
        )
    _check_state_dict(path, state_dict, max_parameters)
    _check_structure(path, init_args, len(state_dict))
    # a file edited by hand, or written by another aelab version, may not fit the class:
    # say which file and which part, instead of a bare constructor or torch error. The
    # skeleton on the meta device has every shape and no memory.
    try:
        with torch.device("meta"):
            skeleton = cls(**init_args)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: its init_args {init_args!r} do not fit {cls.__name__}: {err}"
        ) from err
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    _compare_shapes(path, cls, init_args, expected, state_dict)
    model = cls(**init_args)
    model.load_state_dict(state_dict)
    return model.to(device).eval()
