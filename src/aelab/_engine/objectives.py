"""The training objectives as every engine path sees them.

An objective is a loss whose randomness is drawn outside it. Every path (the
autograd loop, the vmapped stack and the hand-written stack) draws, per epoch
and per member, from that member's own generator and in this order: the data
order (``randperm``), the input noise of denoising (``n_used x features``),
then ``objective.noise_columns(model)`` standard normal columns per sample
(``n_used x columns``, split into the epoch's batches in order). The loss gets
its batch's rows of that draw as ``noise``. So a member's numbers depend on
its seed only, never on which path or stack trained it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from aelab.losses import (
    DEFAULT_BANDWIDTHS,
    bernoulli_reconstruction,
    gaussian_kl,
    gaussian_reconstruction,
    mmd_unchecked,
    mse_reconstruction,
)

__all__ = ["Objective", "Reconstruction", "VAEObjective", "MMDObjective", "code_size"]


def code_size(model: nn.Module) -> int:
    """The number of code dimensions of ``model``: its ``bottleneck_size`` argument."""
    size = getattr(model, "init_args", {}).get("bottleneck_size")
    if size is None:
        raise ValueError(f"{type(model).__name__} has no init_args['bottleneck_size']; the "
                         "VAE and MMD objectives need to know the code size.")
    return int(size)


def reconstruct_with_code(model: nn.Module, x: torch.Tensor):
    """``(x_hat, z)``; models whose output is not ``decode(encode(x))`` (skips) provide it."""
    both = getattr(model, "forward_with_code", None)
    if both is not None:
        return both(x)
    z = model.encode(x)
    return model.decode(z), z


@dataclass(frozen=True)
class Objective:
    """A training loss ``loss(model, x, target, noise) -> scalar``; see the module docstring."""

    name: ClassVar[str] = "objective"

    def noise_columns(self, model: nn.Module) -> int:
        """Standard normal numbers per sample the loss needs each step (0: none)."""
        return 0

    def loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
             noise: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        """What :class:`History` records about the objective."""
        return {"objective": self.name}


@dataclass(frozen=True)
class Reconstruction(Objective):
    """Mean squared error between ``model(x)`` and ``target`` over all elements."""

    name: ClassVar[str] = "reconstruction"

    def loss(self, model, x, target, noise=None):
        return mse_reconstruction(model(x), target)


VAE_RECONSTRUCTIONS = {
    "gaussian": gaussian_reconstruction,
    "bernoulli": bernoulli_reconstruction,  # the decoder network's outputs are logits
}


@dataclass(frozen=True)
class VAEObjective(Objective):
    """Negative ELBO per sample: reconstruction NLL of one reparameterised draw + beta * KL.

    ``noise`` holds the draw's standard normal ``eps`` (one row per sample), so
    ``z = mu + exp(logvar / 2) * eps``.
    """

    beta: float = 1.0
    likelihood: str = "gaussian"  # "gaussian" or "bernoulli" (resolved, never "auto")
    name: ClassVar[str] = "vae"

    def noise_columns(self, model):
        return code_size(model)

    def loss(self, model, x, target, noise):
        mu, logvar = model.posterior(x)
        out = model.decoder(mu + torch.exp(0.5 * logvar) * noise)  # logits when Bernoulli
        return VAE_RECONSTRUCTIONS[self.likelihood](out, target) + self.beta * gaussian_kl(
            mu, logvar)

    def config(self):
        return {"objective": self.name, "beta": self.beta, "likelihood": self.likelihood}


@dataclass(frozen=True)
class MMDObjective(Objective):
    """MSE + weight * MMD^2(codes, prior draws); ``noise`` is the batch's N(0, I) sample."""

    weight: float = 1.0
    kernel: str = "imq"
    bandwidths: tuple[float, ...] = DEFAULT_BANDWIDTHS
    name: ClassVar[str] = "mmd"
    _h2: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    def noise_columns(self, model):
        return code_size(model)

    def squared_bandwidths(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._h2:  # made once per device and dtype
            self._h2[key] = torch.tensor(self.bandwidths, dtype=like.dtype,
                                         device=like.device).pow(2)
        return self._h2[key]

    def loss(self, model, x, target, noise):
        x_hat, z = reconstruct_with_code(model, x)
        return mse_reconstruction(x_hat, target) + self.weight * mmd_unchecked(
            z, noise, self.kernel, self.squared_bandwidths(z))

    def config(self):
        return {"objective": self.name, "mmd_weight": self.weight, "kernel": self.kernel,
                "bandwidths": list(self.bandwidths)}
