"""The variational autoencoder: a Gaussian encoder, a reparameterised code, a standard normal prior."""

from __future__ import annotations

import torch

from aelab._checks import check_choice, check_int, check_positive_int
from aelab.models._base import AutoencoderBase, check_parameter_count, check_sizes, stack_parameters
from aelab.models.mlp import mlp

# "auto" is fixed to "gaussian" or "bernoulli" by the first aelab.train_vae call
LIKELIHOODS = ("auto", "gaussian", "bernoulli")


class VAE(AutoencoderBase):
    """Variational autoencoder (Kingma & Welling, 2014) with MLP encoder and decoder.

    The encoder has ``layers`` hidden Linear+ReLU layers of width ``hidden_size``
    and a linear layer to ``2 * bottleneck_size`` numbers: the mean ``mu`` and
    log-variance ``logvar`` of q(z | x) = N(mu, diag(exp(logvar))). The decoder
    mirrors it. The prior is p(z) = N(0, I). Train it with :func:`aelab.train_vae`.

    - ``encode(x)`` returns the mean ``mu`` (deterministic, for plotting codes);
      ``posterior(x)`` returns ``(mu, logvar)``.
    - ``reparameterize(mu, logvar)`` draws ``z = mu + exp(logvar / 2) * eps``,
      ``eps ~ N(0, I)`` from torch's global RNG, differentiably.
    - ``forward(x)`` in train mode decodes a sampled ``z``; in eval mode it
      decodes ``mu``, so reconstructions are deterministic.
    - ``decode(z)`` returns the mean of p(x | z). With ``likelihood="bernoulli"``
      the network ``decoder`` outputs logits and ``decode`` applies the sigmoid,
      so its output lies in (0, 1); with ``"gaussian"`` it returns the
      network's output unchanged.
    - ``sample(n)`` decodes ``n`` draws from the prior (without gradients).

    Parameters
    ----------
    input_size : int
        Features per sample.
    bottleneck_size : int
        Size of the code ``z``; at most ``input_size``.
    hidden_size : int
        Width of every hidden layer.
    layers : int
        Hidden layers in the encoder (and in the decoder), >= 0.
    likelihood : {"auto", "gaussian", "bernoulli"}
        The decoder's distribution. "auto" (default) is fixed by the first
        :func:`aelab.train_vae` call: "bernoulli" when the training data lie in
        [0, 1], else "gaussian". Until then ``decode`` returns the raw output.

    Examples
    --------
    >>> model = VAE(64, 2, hidden_size=32, layers=1, likelihood="bernoulli")
    >>> model.encode(torch.zeros(5, 64)).shape
    torch.Size([5, 2])
    >>> x = model.sample(3)
    >>> x.shape, bool(((x > 0) & (x < 1)).all())
    (torch.Size([3, 64]), True)
    """

    def __init__(self, input_size, bottleneck_size, hidden_size=32, layers=2, likelihood="auto"):
        super().__init__()
        input_size, bottleneck_size = check_sizes(input_size, bottleneck_size)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        layers = check_int("layers", layers, 0)
        check_choice("likelihood", likelihood, LIKELIHOODS)
        self.init_args = dict(
            input_size=input_size,
            bottleneck_size=bottleneck_size,
            hidden_size=hidden_size,
            layers=layers,
            likelihood=likelihood,
        )
        check_parameter_count(
            "VAE",
            stack_parameters(input_size, hidden_size, layers, 2 * bottleneck_size)
            + stack_parameters(bottleneck_size, hidden_size, layers, input_size),
            self.init_args,
        )
        widths = [hidden_size] * layers
        self.encoder = mlp([input_size, *widths, 2 * bottleneck_size])
        self.decoder = mlp([bottleneck_size, *widths[::-1], input_size])

    @property
    def likelihood(self) -> str:
        return self.init_args["likelihood"]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q(z | x), each ``[n, bottleneck_size]``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """A draw from N(mu, diag(exp(logvar))) that gradients flow through."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.posterior(x)
        return self.decode(self.reparameterize(mu, logvar) if self.training else mu)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` codes drawn from the prior N(0, I); ``[n, input_size]``.

        ``generator`` (on the model's device) makes the draw reproducible without
        touching the global RNG.
        """
        n = check_positive_int("n", n)
        weight = self.decoder[0].weight
        z = torch.randn(
            n, self.bottleneck_size, generator=generator, device=weight.device, dtype=weight.dtype
        )
        return self.decode(z)
