"""Residual MLP autoencoders: residual blocks in data space around a linear bottleneck."""

from __future__ import annotations

import torch
from torch import nn

from aelab._checks import check_int, check_positive_int
from aelab.models._base import (
    AutoencoderBase,
    check_parameter_count,
    check_sizes,
    linear_parameters,
)


class ResidualBlock(nn.Module):
    """``z + f(z)`` with ``f`` a Linear-ReLU-Linear MLP through ``hidden_size`` units."""

    def __init__(self, size: int, hidden_size: int):
        super().__init__()
        self.f = nn.Sequential(
            nn.Linear(size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, size)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.f(z)


class ResNetAutoencoder(AutoencoderBase):
    """Autoencoder whose encoder and decoder are stacks of residual blocks.

    Each block computes ``z_l = z_{l-1} + f_l(z_{l-1})``, where ``f_l`` is an MLP
    with one hidden ReLU layer of width ``hidden_size`` (choose it wider than the
    data, e.g. 64 for 2-D points). The blocks act in data space
    (width ``input_size``); a linear map then goes into the code and another
    comes out of it, followed by the decoder's blocks::

        encoder: x -> block_1 -> ... -> block_B -> Linear(input_size, bottleneck_size) = z
        decoder: z -> Linear(bottleneck_size, input_size) -> block_1 -> ... -> block_B = x_hat

    ``blocks=0`` is the linear autoencoder. Because each block starts from the
    identity plus a small correction, deep stacks stay easy to train.

    Parameters
    ----------
    input_size : int
        Features per sample.
    bottleneck_size : int
        Size of the code ``z``; at most ``input_size``.
    hidden_size : int
        Width of the hidden layer inside every residual block.
    blocks : int
        Residual blocks in the encoder (and as many in the decoder), >= 0.

    Examples
    --------
    >>> model = ResNetAutoencoder(2, 1, hidden_size=64, blocks=2)
    >>> model.encode(torch.zeros(5, 2)).shape, model(torch.zeros(5, 2)).shape
    (torch.Size([5, 1]), torch.Size([5, 2]))
    >>> sum(p.numel() for p in model.parameters())  # 4 blocks of 322, plus 3 + 4
    1295
    """

    def __init__(self, input_size, bottleneck_size, hidden_size=64, blocks=2):
        super().__init__()
        input_size, bottleneck_size = check_sizes(input_size, bottleneck_size)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        blocks = check_int("blocks", blocks, 0)
        self.init_args = dict(
            input_size=input_size,
            bottleneck_size=bottleneck_size,
            hidden_size=hidden_size,
            blocks=blocks,
        )
        block = linear_parameters([input_size, hidden_size, input_size])
        check_parameter_count(
            "ResNetAutoencoder",
            2 * blocks * block + linear_parameters([input_size, bottleneck_size, input_size]),
            self.init_args,
        )
        self.encoder = nn.Sequential(
            *(ResidualBlock(input_size, hidden_size) for _ in range(blocks)),
            nn.Linear(input_size, bottleneck_size),
        )
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck_size, input_size),
            *(ResidualBlock(input_size, hidden_size) for _ in range(blocks)),
        )
