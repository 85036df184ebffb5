"""Multi-layer perceptron autoencoders: Linear+ReLU layers around a linear bottleneck."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from aelab._checks import check_int, check_positive_int
from aelab.models._base import (
    AutoencoderBase,
    check_parameter_count,
    check_sizes,
    linear_parameters,
    stack_parameters,
)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them and none after the last.

    >>> mlp([2, 20, 1])
    Sequential(
      (0): Linear(in_features=2, out_features=20, bias=True)
      (1): ReLU()
      (2): Linear(in_features=20, out_features=1, bias=True)
    )
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


DEFAULT_HIDDEN_SIZE, DEFAULT_LAYERS = 32, 2


def _check_widths(widths) -> list[int]:
    if isinstance(widths, (torch.Tensor, np.ndarray)):
        widths = widths.tolist() if widths.ndim == 1 else widths
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(
            f"widths must be a sequence of ints >= 1 (hidden widths from the input "
            f"inwards), got {widths!r}; e.g. widths=[20, 10]."
        )
    return [check_positive_int(f"widths[{i}]", w) for i, w in enumerate(widths)]


class Autoencoder(AutoencoderBase):
    """MLP autoencoder with a linear bottleneck.

    The encoder has ``layers`` hidden Linear+ReLU layers of width ``hidden_size``,
    then a linear layer into the code; the decoder mirrors it and ends in a
    linear output layer. ``layers=0`` is the linear, PCA-like autoencoder;
    ``Autoencoder(2, 1, 20, 2)`` is 2-20-20-1-20-20-2.

    Parameters
    ----------
    input_size : int
        Features per sample.
    bottleneck_size : int
        Size of the code ``z``; at most ``input_size``.
    hidden_size : int, optional
        Width of every hidden layer; default 32.
    layers : int, optional
        Number of hidden layers in the encoder (and in the decoder), >= 0; default 2.
    widths : sequence of int, optional
        Hidden widths from the input inwards, instead of ``hidden_size``/``layers``
        (giving both is an error); see :meth:`from_widths`.

    Examples
    --------
    >>> import torch
    >>> model = Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)
    >>> sum(p.numel() for p in model.parameters())
    563
    >>> model.encode(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    """

    def __init__(self, input_size, bottleneck_size, hidden_size=None, layers=None, *, widths=None):
        super().__init__()
        input_size, bottleneck_size = check_sizes(input_size, bottleneck_size)
        if widths is None:
            hidden_size = check_positive_int(
                "hidden_size", DEFAULT_HIDDEN_SIZE if hidden_size is None else hidden_size
            )
            layers = check_int("layers", DEFAULT_LAYERS if layers is None else layers, 0)
            self.init_args = dict(
                input_size=input_size,
                bottleneck_size=bottleneck_size,
                hidden_size=hidden_size,
                layers=layers,
            )
            # counted before the list of widths exists: layers=10**12 must not build it
            check_parameter_count(
                "Autoencoder",
                stack_parameters(input_size, hidden_size, layers, bottleneck_size)
                + stack_parameters(bottleneck_size, hidden_size, layers, input_size),
                self.init_args,
            )
            widths = [hidden_size] * layers
        else:
            if hidden_size is not None or layers is not None:
                raise ValueError(
                    f"give either widths or hidden_size/layers, not both: got widths={widths!r} "
                    f"with hidden_size={hidden_size!r}, layers={layers!r}; widths lists every "
                    "hidden layer's width, e.g. widths=[hidden_size] * layers."
                )
            widths = _check_widths(widths)
            self.init_args = dict(
                input_size=input_size, bottleneck_size=bottleneck_size, widths=widths
            )
        self.widths = list(widths)
        sizes = [input_size, *widths, bottleneck_size]
        check_parameter_count(
            "Autoencoder", linear_parameters(sizes) + linear_parameters(sizes[::-1]), self.init_args
        )
        self.encoder = mlp(sizes)
        self.decoder = mlp(sizes[::-1])

    @classmethod
    def from_widths(cls, widths: Sequence[int], bottleneck_size: int, input_size: int):
        """Build the course's architectures from hidden widths listed from the input inwards.

        >>> model = Autoencoder.from_widths([50, 50, 50], 1, 2)  # 2-50-50-50-1-50-50-50-2
        >>> sum(p.numel() for p in model.parameters())
        10603
        """
        return cls(input_size, bottleneck_size, widths=list(widths))
