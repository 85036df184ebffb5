"""The linear autoencoder: one linear map into the code and one out; it learns PCA's subspace."""

from __future__ import annotations

from torch import nn

from aelab.models._base import AutoencoderBase, check_parameter_count, check_sizes


class LinearAutoencoder(AutoencoderBase):
    """Linear encoder ``z = W_e x + b_e`` and decoder ``x_hat = W_d z + b_d``.

    Trained on squared error it spans the same subspace as the first
    ``bottleneck_size`` principal components (though its basis need not be orthogonal).

    >>> sum(p.numel() for p in LinearAutoencoder(2, 1).parameters())
    7
    """

    def __init__(self, input_size, bottleneck_size):
        super().__init__()
        input_size, bottleneck_size = check_sizes(input_size, bottleneck_size)
        self.init_args = dict(input_size=input_size, bottleneck_size=bottleneck_size)
        check_parameter_count(
            "LinearAutoencoder",
            2 * input_size * bottleneck_size + input_size + bottleneck_size,
            self.init_args,
        )
        self.encoder = nn.Linear(input_size, bottleneck_size)
        self.decoder = nn.Linear(bottleneck_size, input_size)
