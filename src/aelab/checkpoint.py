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
        raise TypeError(f"model must be an aelab model (one of {sorted(MODEL_CLASSES)}), "
                        f"got {where}; save other modules with torch.save(model.state_dict()).")
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


def load(path, device="cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save`, in eval mode, on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist.")
    if not zipfile.is_zipfile(path):  # aelab.save writes torch's zip format; refuse anything else
        raise ValueError(f"{path} is not an aelab model file (saved with aelab.save).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a safe aelab model file: it holds objects other than weights "
            f"and plain data, and was not loaded ({err.__class__.__name__})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an aelab model file (saved with aelab.save).")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has format version {payload.get('version')!r}; "
                         f"this aelab reads version {VERSION}.")
    cls = MODEL_CLASSES.get(payload.get("class"))
    if cls is None:
        raise ValueError(f"{path} names model class {payload.get('class')!r}; "
                         f"allowed: {sorted(MODEL_CLASSES)}.")
    init_args, state_dict = payload.get("init_args"), payload.get("state_dict")
    if not isinstance(init_args, dict) or not isinstance(state_dict, dict):
        raise ValueError(f"{path} is damaged: it needs a dict 'init_args' and a dict 'state_dict', "
                         f"got {type(init_args).__name__} and {type(state_dict).__name__}.")
    # a file edited by hand, or written by another aelab version, may not fit the class:
    # say which file and which part, instead of a bare constructor or torch error
    try:
        model = cls(**init_args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its init_args {init_args!r} do not fit {cls.__name__}: "
                         f"{err}") from err
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{path}: its state_dict does not match {cls.__name__}"
                         f"({', '.join(f'{k}={v!r}' for k, v in init_args.items())}): {err}") from err
    return model.to(device).eval()
