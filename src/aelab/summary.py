"""A model summary: every layer's output shape and parameter count, as a printable table."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from aelab._checks import check_positive_int
from aelab.evaluate import eval_mode

__all__ = ["LayerRow", "ModelSummary", "summary"]

MAX_INPUT_VALUES = 10**8  # per sample: two samples of zeros in float32 stay under 1 GB


@dataclass(frozen=True)
class LayerRow:
    """One call of one layer during the summary's forward pass."""

    name: str  # dotted path in the model, e.g. "encoder.0"
    kind: str  # the layer's class, e.g. "Linear"
    output_shape: tuple  # with -1 for the batch dimension
    params: int  # parameters owned by this layer; 0 when it was already counted


@dataclass
class ModelSummary:
    """The table :func:`summary` returns; ``str()`` renders it.

    Attributes
    ----------
    model_name : str
    input_shape : tuple of int
        One sample's shape, without the batch dimension.
    rows : list of LayerRow
        Layers in the order they ran; a layer that runs twice appears twice,
        with its parameters counted once.
    total_params, trainable_params : int
    """

    model_name: str
    input_shape: tuple
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0

    def __str__(self) -> str:
        header = ("Layer", "Type", "Output shape", "Params")
        body = [(r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}") for r in self.rows]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]

        def line(cells):
            return "  ".join(
                [
                    cells[0].ljust(widths[0]),
                    cells[1].ljust(widths[1]),
                    cells[2].ljust(widths[2]),
                    cells[3].rjust(widths[3]),
                ]
            ).rstrip()

        rule = "-" * (sum(widths) + 6)  # four columns, two spaces between each
        lines = [
            f"{self.model_name} on input {list((-1, *self.input_shape))}",
            rule,
            line(header),
            rule,
            *map(line, body),
            rule,
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
        ]
        return "\n".join(lines)

    __repr__ = __str__


def _check_input_shape(input_shape) -> tuple[int, ...]:
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if (
        isinstance(input_shape, (str, bytes))
        or not isinstance(input_shape, Sequence)
        or not input_shape
    ):
        raise ValueError(
            f"input_shape must be one sample's shape without the batch dimension, "
            f"e.g. (2,) or (1, 28, 28), got {input_shape!r}."
        )
    return tuple(check_positive_int(f"input_shape[{i}]", s) for i, s in enumerate(input_shape))


def _check_fits(model: nn.Module, input_shape: tuple) -> None:
    """Refuse an input_shape that an aelab model says it cannot take, before running it."""
    args = getattr(model, "init_args", None)
    if not isinstance(args, dict):
        return
    image_shape = args.get("image_shape")
    size = args.get("input_size")
    allowed = [(size,)] if size is not None else []
    if image_shape is not None:
        allowed.append(tuple(image_shape))
    if allowed and input_shape not in allowed:
        said = (
            f"input_size is {size}"
            if image_shape is None
            else f"image_shape is {tuple(image_shape)} (input_size {size})"
        )
        raise ValueError(
            f"input_shape {input_shape} does not fit {type(model).__name__}, whose "
            f"{said}; use input_shape={' or '.join(map(str, allowed))}."
        )


def _shape(output) -> tuple:
    # a layer may return a tensor or a tuple/list of them (e.g. an encoder with skips)
    if isinstance(output, torch.Tensor):
        return (-1, *output.shape[1:])
    if isinstance(output, (tuple, list)):
        return tuple(_shape(o) for o in output)
    return ()


def summary(model: nn.Module, input_shape) -> ModelSummary:
    """Run one batch of zeros through ``model`` and tabulate every layer's output and size.

    Leaf layers (those without sub-modules: Linear, Conv2d, ReLU, ...) are
    recorded with forward hooks in the order they run. Parameters held
    directly by a container module are listed in a final "(other)" row so
    the table always adds up to the total. The model runs in eval mode without
    gradients and is left as it was.

    Parameters
    ----------
    model : nn.Module
    input_shape : int or tuple of int
        One sample's shape, without the batch dimension: ``(2,)`` or ``2`` for
        2-D points, ``(64,)`` or ``(1, 8, 8)`` for digits.

    Returns
    -------
    ModelSummary
        Print it for the table; ``rows`` and ``total_params`` hold the numbers.

    Examples
    --------
    >>> import aelab
    >>> table = summary(aelab.Autoencoder(2, 1, hidden_size=20, layers=1), input_shape=2)
    >>> [(r.name, r.output_shape, r.params) for r in table.rows][:2]
    [('encoder.0', (-1, 20), 60), ('encoder.1', (-1, 20), 0)]
    >>> table.total_params  # 2-20-1-20-2: 60 + 21 + 40 + 42
    163
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    input_shape = _check_input_shape(input_shape)
    n_values = math.prod(input_shape)
    if n_values > MAX_INPUT_VALUES:
        raise ValueError(
            f"input_shape {input_shape} has {n_values:.3g} values per sample; the "
            f"summary runs two samples, so at most {MAX_INPUT_VALUES:.0e} are allowed."
        )
    _check_fits(model, input_shape)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    # two samples, not one: layers such as BatchNorm reject a batch of one in train mode
    x = torch.zeros(2, *input_shape, device=device, dtype=dtype)

    result = ModelSummary(type(model).__name__, input_shape)
    counted: set[int] = set()
    handles = []

    def record(name):
        def hook(module, inputs, output):
            own = 0
            if id(module) not in counted:
                counted.add(id(module))
                own = sum(p.numel() for p in module.parameters(recurse=False))
            result.rows.append(LayerRow(name, type(module).__name__, _shape(output), own))

        return hook

    try:
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                handles.append(module.register_forward_hook(record(name)))
        with torch.no_grad(), eval_mode(model):
            try:
                model(x)
            except (RuntimeError, ValueError) as err:  # e.g. a width the first layer cannot take
                raise ValueError(
                    f"model could not run on input_shape {input_shape}: {err}"
                ) from None
    finally:
        for h in handles:
            h.remove()

    result.total_params = sum(p.numel() for p in model.parameters())
    result.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    listed = sum(r.params for r in result.rows)
    if listed != result.total_params:  # direct parameters of containers, or unused layers
        result.rows.append(LayerRow("(other)", "", (), result.total_params - listed))
    return result
