"""The training objectives as every engine path sees them.

An objective is a loss whose randomness is drawn outside it. Every path (the
autograd loop, the vmapped stack and the hand-written stack) draws, per epoch
and per member, from that member's own generator and in this order: the data
order (``randperm``), the input noise of denoising (``n_used x features``),
then ``objective.noise_columns(model)`` standard normal columns per sample
(``n_used x columns``, split into the epoch's batches in order). The loss gets
its batch's rows of that draw as ``noise``. So a member's numbers depend on
its seed only, never on which path or stack trained it. A full-batch epoch draws
no permutation (the order does not change the mean).

An objective that compares the samples of a batch with each other (``pairwise``:
MMD) is measured on a test set, and in the final-loss check, in the pieces that
:func:`pieces` gives: about a batch each, as its training steps saw them, weighted
by their rows. Its cost grows with the square of the rows per piece (the whole
validation set at once cost 15x the training steps of an epoch), and the
unbiased estimate's expectation does not depend on the piece size.

The test set's draws are fixed for the whole run: its denoising corruption
(``n_test x features``) from ``derived_seed(seed, "test")``, the objective's noise
for it (``n_test x columns``) from ``derived_seed(seed, "test-noise")``, so the two
are independent and a test set never changes training's stream. The final-loss
check (:mod:`aelab._engine.config`) draws from ``derived_seed(seed, "final")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from aelab._checks import check_choice, check_positive_float
from aelab.losses import (
    DEFAULT_BANDWIDTHS,
    bernoulli_reconstruction,
    check_bandwidths,
    check_kernel,
    gaussian_kl,
    gaussian_reconstruction,
    mmd_unchecked,
    mse_reconstruction,
)

__all__ = [
    "Objective",
    "Reconstruction",
    "VAEObjective",
    "MMDObjective",
    "CallableObjective",
    "code_size",
    "OBJECTIVE_NAMES",
    "VAE_LIKELIHOODS",
    "VAE_RECONSTRUCTIONS",
    "build_objective",
    "resolve_likelihood",
    "mean_predictor_mse",
    "pieces",
]


def mean_predictor_mse(target: torch.Tensor) -> float:
    """Mean squared error of predicting every sample by the mean sample (per element)."""
    flat = target.reshape(len(target), -1).double()
    return float((flat - flat.mean(0)).square().mean())


def code_size(model: nn.Module) -> int:
    """The number of code dimensions of ``model``: its ``bottleneck_size`` argument."""
    size = getattr(model, "init_args", {}).get("bottleneck_size")
    if size is None:
        raise ValueError(
            f"{type(model).__name__} has no init_args['bottleneck_size']; the "
            "VAE and MMD objectives need to know the code size."
        )
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
    pairwise: ClassVar[bool] = False  # the loss compares a batch's samples with each other

    def noise_columns(self, model: nn.Module) -> int:
        """Standard normal numbers per sample the loss needs each step (0: none)."""
        return 0

    def loss(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        """What :class:`History` records about the objective."""
        return {"objective": self.name}

    def baseline_loss(self, target: torch.Tensor) -> float | None:
        """The loss of the mean predictor (outputs the mean sample; codes follow the prior),
        the divergence rule's reference; None when unknown."""
        return None

    def finish(self, model: nn.Module, history) -> None:
        """Called once after ``model`` trained without diverging."""


@dataclass(frozen=True)
class Reconstruction(Objective):
    """Mean squared error between ``model(x)`` and ``target`` over all elements."""

    name: ClassVar[str] = "reconstruction"

    def loss(self, model, x, target, noise=None):
        return mse_reconstruction(model(x), target)

    def baseline_loss(self, target):
        return mean_predictor_mse(target)


@dataclass(frozen=True)
class CallableObjective(Objective):
    """A plain ``fn(model, x, target) -> loss`` that draws no noise (through aelab's loop)."""

    fn: Callable = None
    name: ClassVar[str] = "custom"

    def loss(self, model, x, target, noise=None):
        return self.fn(model, x, target)


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
            mu, logvar
        )

    def config(self):
        return {"objective": self.name, "beta": self.beta, "likelihood": self.likelihood}

    def baseline_loss(self, target):
        flat = target.reshape(len(target), -1).double()
        if self.likelihood == "gaussian":  # squared error summed over features
            return flat.shape[1] * mean_predictor_mse(target)
        mean = flat.mean(0).clamp(1e-6, 1 - 1e-6).expand_as(flat)
        return float(bernoulli_reconstruction(torch.logit(mean), flat))

    def finish(self, model, history):
        # the choice "auto" resolved to is kept by the model (decode applies the sigmoid for
        # Bernoulli, and aelab.save keeps it), after success only
        model.init_args["likelihood"] = self.likelihood
        history.config["model_args"]["likelihood"] = self.likelihood


@dataclass(frozen=True)
class MMDObjective(Objective):
    """MSE + weight * MMD^2(codes, prior draws); ``noise`` is the batch's N(0, I) sample."""

    weight: float = 1.0
    kernel: str = "imq"
    bandwidths: tuple[float, ...] = DEFAULT_BANDWIDTHS
    name: ClassVar[str] = "mmd"
    pairwise: ClassVar[bool] = True
    _h2: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    def noise_columns(self, model):
        return code_size(model)

    def squared_bandwidths(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._h2:  # made once per device and dtype
            self._h2[key] = torch.tensor(self.bandwidths, dtype=like.dtype, device=like.device).pow(
                2
            )
        return self._h2[key]

    def loss(self, model, x, target, noise):
        x_hat, z = reconstruct_with_code(model, x)
        return mse_reconstruction(x_hat, target) + self.weight * mmd_unchecked(
            z, noise, self.kernel, self.squared_bandwidths(z)
        )

    def config(self):
        return {
            "objective": self.name,
            "mmd_weight": self.weight,
            "kernel": self.kernel,
            "bandwidths": list(self.bandwidths),
        }

    def baseline_loss(self, target):
        return mean_predictor_mse(target)  # codes that follow the prior add ~0 MMD


def pieces(n: int, pairwise: bool, batch_size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` row ranges in which an objective is measured on ``n`` rows: one
    piece, or for a ``pairwise`` objective ``n // batch_size`` near-equal pieces (at least
    ``batch_size`` rows each), as :func:`torch.tensor_split` splits them.

    >>> pieces(10, MMDObjective.pairwise, 4), pieces(10, Reconstruction.pairwise, 4)
    ([(0, 5), (5, 10)], [(0, 10)])
    """
    if not pairwise:
        return [(0, n)]
    parts = torch.arange(n).tensor_split(max(1, n // max(batch_size, 1)))
    return [(int(p[0]), int(p[-1]) + 1) for p in parts if len(p)]


OBJECTIVE_NAMES = ("reconstruction", "vae", "mmd")
VAE_LIKELIHOODS = ("auto", "gaussian", "bernoulli")


def _value_range(X: torch.Tensor) -> tuple[float, float]:
    return float(X.min()), float(X.max())


def resolve_likelihood(model, likelihood: str, train, test) -> str:
    """The VAE's likelihood: explicit, else the model's, else chosen from the training data."""
    check_choice("likelihood", likelihood, VAE_LIKELIHOODS)
    built = model.likelihood
    if likelihood == "auto":
        if built != "auto":
            likelihood = built
        else:
            low, high = _value_range(train.X)
            likelihood = "bernoulli" if low >= 0 and high <= 1 else "gaussian"
    elif built not in ("auto", likelihood):
        raise ValueError(
            f"likelihood={likelihood!r} but this VAE was built (or already trained) with "
            f"likelihood={built!r}; pass likelihood='auto' to keep it, or build a new "
            f"VAE(..., likelihood={likelihood!r})."
        )
    if likelihood == "bernoulli":
        for name, ds in (("train", train), ("test", test)):
            if ds is None:
                continue
            low, high = _value_range(ds.X)
            if low < 0 or high > 1:
                raise ValueError(
                    f"likelihood='bernoulli' needs {name} data in [0, 1], got values in "
                    f"[{low:g}, {high:g}]; use likelihood='gaussian' or rescale the data to [0, 1]."
                )
    return likelihood


def _check_mmd_batches(cfg, n: int, n_test: int | None, who: str) -> None:
    size = min(cfg.batch_size, n)
    smallest = size if cfg.drop_last or n % size == 0 else n % size
    if smallest < 2:
        raise ValueError(
            f"{who} needs every batch to hold at least 2 samples (the MMD estimate compares "
            f"pairs), got a batch of {smallest} from batch_size={cfg.batch_size} and {n} "
            "samples; use batch_size >= 2 (and drop_last=True)."
        )
    if n_test is not None and n_test < 2:
        raise ValueError(f"test must hold at least 2 samples for the MMD estimate, got {n_test}.")


def build_objective(
    objective,
    model: nn.Module,
    train,
    test,
    cfg,
    *,
    beta=1.0,
    likelihood="auto",
    mmd_weight=1.0,
    kernel="imq",
    bandwidths=None,
    who: str | None = None,
) -> Objective:
    """The :class:`Objective` that ``objective`` (a name or an instance) means for ``model``.

    ``who`` names the caller in errors (default ``objective='NAME'``); ``train`` and
    ``test`` are the member's Datasets (checked already), ``cfg`` its TrainConfig.
    """
    if isinstance(objective, Objective):
        return objective
    if not isinstance(objective, str) or objective not in OBJECTIVE_NAMES:
        raise ValueError(
            f"objective must be one of {list(OBJECTIVE_NAMES)} or an aelab "
            f"Objective instance, got {objective!r}."
        )
    who = who or f"objective={objective!r}"
    if objective == "reconstruction":
        return Reconstruction()
    if objective == "vae":
        from aelab.models.vae import VAE

        if not isinstance(model, VAE):
            raise TypeError(
                f"{who} needs an aelab.VAE, got {type(model).__name__}; "
                "train other models with objective 'reconstruction' or 'mmd'."
            )
        beta = check_positive_float("beta", beta, allow_zero=True)
        return VAEObjective(
            beta=beta, likelihood=resolve_likelihood(model, likelihood, train, test)
        )
    weight = check_positive_float("mmd_weight", mmd_weight, allow_zero=True)
    check_kernel(kernel)
    bandwidths = check_bandwidths(bandwidths)
    _check_mmd_batches(cfg, len(train), None if test is None else len(test), who)
    code_size(model)  # the prior's dimension must be known
    return MMDObjective(weight=weight, kernel=kernel, bandwidths=tuple(bandwidths))
