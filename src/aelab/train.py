"""Training: one function per objective, each returning a :class:`History`.

The loop is built for tiny models, where framework overhead, not arithmetic,
sets the pace: data stays in memory as tensors (no DataLoader), each epoch
draws one index permutation and gathers all its batches in one go, step
losses stay on the device until the epoch ends (one host sync per epoch), and
the optimizer is PyTorch's fused implementation. Autoencoders built from Linear
layers, ReLUs and residual blocks, trained on reconstruction, skip autograd:
they take the hand-written batched step of :mod:`aelab.ensemble`, with the
same data order and noise.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from aelab._checks import (
    check_choice,
    check_int,
    check_positive_float,
    check_positive_int,
)
from aelab.data import Dataset
from aelab.evaluate import eval_mode
from aelab.losses import mse_reconstruction

logger = logging.getLogger(__name__)

__all__ = ["History", "TrainConfig", "TrainingDiverged", "train_autoencoder", "fit"]

OPTIMIZERS = ("adam", "sgd")
PARTS = ("encoder", "decoder")


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; the model's weights were restored."""


def _step_schedule(optimizer, epochs):
    # the classic step schedule: lr x0.1 at half and at three quarters of training
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[max(1, epochs // 2), max(1, 3 * epochs // 4)], gamma=0.1
    )


def _cosine_schedule(optimizer, epochs):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))


SCHEDULES: dict[str, Callable] = {"step": _step_schedule, "cosine": _cosine_schedule}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; validated on construction, stored in :class:`History`."""

    epochs: int  # passes over the training set; 0 only evaluates
    batch_size: int  # >= n_samples means full-batch gradient descent, one step per epoch
    lr: float = 1e-3
    seed: int = 0  # data order, noise, re-initialisation and any sampling inside the loss
    optimizer: str = "adam"  # "adam" or "sgd"
    momentum: float = 0.0  # SGD only; 0 is plain (stochastic) gradient descent
    weight_decay: float = 0.0
    lr_schedule: str | None = None  # None, "step" (x0.1 at 50% and 75%) or "cosine"
    noise_sigma: float | None = None  # denoising: corrupt inputs, reconstruct clean targets
    freeze: str | None = None  # "encoder" or "decoder": kept fixed during training
    reinit: str | None = None  # "encoder" or "decoder": re-initialised before training
    drop_last: bool = True  # like the courses' DataLoader(drop_last=True): equal-size batches

    def __post_init__(self):
        check_int("epochs", self.epochs, 0)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_int("seed", self.seed, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive_float("momentum", self.momentum, allow_zero=True)
        check_positive_float("weight_decay", self.weight_decay, allow_zero=True)
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum={self.momentum} only applies to optimizer='sgd', "
                             f"got optimizer={self.optimizer!r}.")
        if self.lr_schedule is not None:
            check_choice("lr_schedule", self.lr_schedule, tuple(SCHEDULES))
        if self.noise_sigma is not None:
            check_positive_float("noise_sigma", self.noise_sigma, allow_zero=True)
        for name in ("freeze", "reinit"):
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), PARTS)


@dataclass
class History:
    """What happened during training.

    Attributes
    ----------
    train_loss : list of float
        One per epoch: the mean loss over that epoch's optimizer steps.
    test_loss : list of float
        One per epoch: the loss on the test set after the epoch (empty without a test set).
    step_loss : list of float
        One per optimizer step, on that step's batch.
    examples_seen : list of int
        Cumulative number of training examples used, at the end of each epoch.
    seconds : list of float
        Cumulative wall-clock seconds since training started, at the end of each epoch.
    config : dict
        The :class:`TrainConfig` fields plus the model class and arguments.
    """

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device=None) -> torch.device:
    """``device`` as a torch.device; by default CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_data(name: str, ds, model: nn.Module) -> Dataset:
    if not isinstance(ds, Dataset):
        raise TypeError(f"{name} must be an aelab.data.Dataset, got {type(ds).__name__}; "
                        "wrap tensors with aelab.data.Dataset(X).")
    input_size = getattr(model, "init_args", {}).get("input_size")
    if input_size is not None and ds.n_features != input_size:
        raise ValueError(
            f"{name} has {ds.n_features} features per sample but the model's input_size is "
            f"{input_size}; build the model with input_size={ds.n_features}."
        )
    return ds


def _part(model: nn.Module, name: str) -> nn.Module:
    part = getattr(model, name, None)
    if not isinstance(part, nn.Module):
        raise ValueError(f"the model has no {name!r} submodule to freeze or re-initialise.")
    return part


def reinitialize(module: nn.Module) -> int:
    """Re-initialise every layer of ``module`` that can be; returns how many were reset."""
    count = 0
    for layer in module.modules():
        if callable(getattr(layer, "reset_parameters", None)):
            layer.reset_parameters()
            count += 1
    if count == 0:
        raise ValueError(f"nothing in {type(module).__name__} has parameters to re-initialise.")
    return count


def _make_optimizer(params, cfg: TrainConfig, device: torch.device):
    kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, fused=True, **kwargs)
    return torch.optim.SGD(params, momentum=cfg.momentum, fused=True, **kwargs)


def _progress_bar(epochs: int, progress, desc: str):
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(range(epochs), desc=desc, disable=not show, leave=False, unit="epoch")


def _derived_seed(seed: int, purpose: str) -> int:
    """A seed for ``purpose`` that is independent of ``seed``'s own stream."""
    return int(np.random.SeedSequence([seed, *purpose.encode()]).generate_state(1)[0])


Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def reconstruction_objective(model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """Mean squared error between ``model(x)`` and ``target`` over all elements."""
    return mse_reconstruction(model(x), target)


def run_config(cfg: TrainConfig, model: nn.Module, n_train: int, device, **extra) -> dict:
    """What a :class:`History` records about its run: the settings, model and data size."""
    return {**asdict(cfg), "model": type(model).__name__,
            "model_args": dict(getattr(model, "init_args", {})),
            "n_train": n_train, "device": str(device), **extra}


def fit(model: nn.Module, train: Dataset, objective: Objective, cfg: TrainConfig, *,
        test: Dataset | None = None, device=None, progress=None,
        extra_config: dict | None = None) -> History:
    """Train ``model`` in place on ``objective(model, x_in, target) -> scalar loss``.

    The shared engine behind :func:`train_autoencoder`, ``train_vae`` and
    ``train_mmd_autoencoder``. All randomness (data order, input noise,
    re-initialisation, sampling inside the objective) comes from a generator
    seeded with ``cfg.seed`` inside a forked RNG, so a run is bit-identical on
    the same machine and the caller's global RNG state is left untouched.
    """
    _check_data("train", train, model)
    if test is not None:
        _check_data("test", test, model)
    device = resolve_device(device)
    model.to(device)
    X = train.X.to(device)
    n = len(X)
    batch_size = min(cfg.batch_size, n)
    n_used = n - n % batch_size if cfg.drop_last else n

    history = History(config=run_config(cfg, model, n, device, **(extra_config or {})))
    frozen = _part(model, cfg.freeze) if cfg.freeze else None
    if cfg.reinit:
        _part(model, cfg.reinit)
    saved_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_grad_flags = [p.requires_grad for p in model.parameters()]

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(cfg.seed)
        try:
            if cfg.reinit:
                # a stream of its own: reusing cfg.seed would redraw exactly the weights of a
                # model that was built under the same seed, and re-initialise nothing
                with torch.random.fork_rng(devices=fork_devices):
                    torch.manual_seed(_derived_seed(cfg.seed, "reinit"))
                    reinitialize(_part(model, cfg.reinit))
            if frozen is not None:
                frozen.requires_grad_(False)
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise ValueError("the model has no trainable parameters (is everything frozen?).")
            test_in = test_target = None
            if test is not None:
                test_target = test.X.to(device)
                test_in = test_target
                if cfg.noise_sigma:  # one fixed corruption, so the test curve is not noisy
                    test_in = test_target + cfg.noise_sigma * torch.randn(
                        test_target.shape, device=device, generator=_test_generator(cfg, device))
            plan = _hand_written_plan(model, objective)
            if plan is not None:
                from aelab.ensemble import _train_stack  # lazy: ensemble imports this module

                model.train()
                _train_stack([plan], X, cfg, [history], lrs=[cfg.lr],
                             sigmas=[cfg.noise_sigma or 0.0], generators=[None],
                             test_in=test_in, test_target=test_target, progress=progress,
                             desc=type(model).__name__)
                model.eval()
            else:
                optimizer = _make_optimizer(params, cfg, device)
                scheduler = (SCHEDULES[cfg.lr_schedule](optimizer, cfg.epochs)
                             if cfg.lr_schedule else None)
                _run_epochs(model, X, n_used, batch_size, objective, optimizer, scheduler, cfg,
                            test_in, test_target, history, progress)
        except BaseException:  # diverged, bad input or interrupted: leave the model as it was
            model.load_state_dict(saved_state)
            raise
        finally:
            for p, flag in zip(model.parameters(), saved_grad_flags):
                p.requires_grad_(flag)
    return history


def _test_generator(cfg: TrainConfig, device: torch.device) -> torch.Generator:
    """The stream for test-set noise: apart from training's, so a test set changes no weights."""
    return torch.Generator(device=device).manual_seed(_derived_seed(cfg.seed, "test"))


def _hand_written_plan(model: nn.Module, objective: Objective):
    """The layer plan of aelab.ensemble's hand-written step when it applies, else None.

    Linear/ReLU (and residual) autoencoders trained on reconstruction skip autograd:
    same data order and noise as the autograd loop, about 5x faster per step.
    """
    if objective is not reconstruction_objective:
        return None
    from aelab.ensemble import stack_plan  # lazy: ensemble imports this module

    return stack_plan(model)


def _epoch_mean(losses: list[float], sizes: list[int], n_used: int) -> float:
    """The epoch's training loss: step losses weighted by their batch sizes."""
    return sum(l * s for l, s in zip(losses, sizes)) / n_used


def _diverged_message(epoch_loss: float, epoch: int, epochs: int, lr: float) -> str:
    return (f"training loss became {epoch_loss} in epoch {epoch + 1} of {epochs} "
            f"(lr={lr}); lower the learning rate (e.g. lr={lr / 10:g}). "
            "The model's weights were restored to what they were before training.")


def _run_epochs(model, X, n_used, batch_size, objective, optimizer, scheduler, cfg,
                test_in, test_target, history, progress):
    n = len(X)
    full_batch = batch_size >= n
    start = time.perf_counter()
    seen = 0
    bar = _progress_bar(cfg.epochs, progress, desc=type(model).__name__)
    model.train()
    for epoch in bar:
        if full_batch:  # the mean over all points does not depend on their order
            target = X
        else:
            target = X[torch.randperm(n, device=X.device)[:n_used]]
        inputs = target
        if cfg.noise_sigma:
            inputs = target + cfg.noise_sigma * torch.randn_like(target)
        step_losses = []
        for x, t in zip(inputs.split(batch_size), target.split(batch_size)):
            loss = objective(model, x, t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_losses.append(loss.detach())
        if scheduler is not None:
            scheduler.step()
        seen += n_used
        losses = torch.stack(step_losses).tolist()  # the epoch's one host sync
        sizes = [len(t) for t in target.split(batch_size)]
        epoch_loss = _epoch_mean(losses, sizes, n_used)
        if not math.isfinite(epoch_loss):
            raise TrainingDiverged(_diverged_message(epoch_loss, epoch, cfg.epochs, cfg.lr))
        history.step_loss.extend(losses)
        history.train_loss.append(epoch_loss)
        history.examples_seen.append(seen)
        if test_in is not None:
            # sampling inside the objective (VAE, MMD) draws from a stream of its own here,
            # the same every epoch: the test curve is smooth and training's stream untouched
            with torch.random.fork_rng(devices=[X.device] if X.device.type == "cuda" else []):
                torch.manual_seed(_derived_seed(cfg.seed, "test"))
                history.test_loss.append(
                    evaluate_objective(model, objective, test_in, test_target))
        history.seconds.append(time.perf_counter() - start)
        if not bar.disable:
            bar.set_postfix(loss=f"{epoch_loss:.4g}", refresh=False)
    bar.close()
    model.eval()
    # an epoch's loss is measured before its updates: a blow-up in the last epoch shows
    # only in the weights (and the test loss)
    last_test_ok = not history.test_loss or math.isfinite(history.test_loss[-1])
    if cfg.epochs and not (last_test_ok and all(bool(p.isfinite().all())
                                                for p in model.parameters())):
        raise TrainingDiverged(_diverged_message(float("nan"), cfg.epochs - 1, cfg.epochs, cfg.lr))


@torch.no_grad()
def evaluate_objective(model, objective, x, target) -> float:
    with eval_mode(model):
        return float(objective(model, x, target))


def train_autoencoder(model: nn.Module, train: Dataset, *, epochs: int, batch_size: int,
                      lr: float = 1e-3, test: Dataset | None = None, seed: int = 0,
                      optimizer: str = "adam", momentum: float = 0.0, weight_decay: float = 0.0,
                      lr_schedule: str | None = None, noise_sigma: float | None = None,
                      freeze: str | None = None, reinit: str | None = None,
                      drop_last: bool = True, device=None, progress=None) -> History:
    """Train ``model`` in place to reconstruct ``train`` under mean squared error.

    Parameters
    ----------
    model : nn.Module
        Any aelab model (or module with ``forward``).
    train, test : Dataset
        Training data and optional held-out data, evaluated after every epoch.
    epochs : int
        Passes over ``train``.
    batch_size : int
        Samples per step; ``batch_size >= len(train)`` is full-batch gradient descent.
    lr : float
        Learning rate.
    seed : int
        Seeds data order, noise and re-initialisation: same seed, same numbers.
    optimizer : {"adam", "sgd"}
        Fused Adam, or SGD with optional ``momentum``.
    lr_schedule : {None, "step", "cosine"}
        Per-epoch learning-rate schedule: "step" multiplies the rate by 0.1 at 50%
        and 75% of the epochs, "cosine" anneals it to 0.
    noise_sigma : float, optional
        Denoising: inputs get Gaussian noise of this standard deviation; the target
        stays clean. The test set gets one fixed corruption.
    freeze : {None, "encoder", "decoder"}
        Keep that part fixed.
    reinit : {None, "encoder", "decoder"}
        Re-initialise every layer of that part before training.
    drop_last : bool
        Drop the last incomplete batch of each epoch, as the courses' DataLoader did.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU. The model is moved there.
    progress : bool, optional
        A progress bar over epochs; by default shown only when stderr is a terminal.

    Returns
    -------
    History

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN or infinite; the weights are restored first.

    Examples
    --------
    >>> from aelab import Autoencoder, data
    >>> model = Autoencoder(2, 1, hidden_size=16, layers=2)
    >>> history = train_autoencoder(model, data.moons(100), epochs=5, batch_size=10)
    >>> len(history.train_loss), len(history.step_loss)
    (5, 50)
    """
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, optimizer=optimizer,
                      momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule,
                      noise_sigma=noise_sigma, freeze=freeze, reinit=reinit, drop_last=drop_last)
    return fit(model, train, reconstruction_objective, cfg, test=test, device=device,
               progress=progress)


# --- objectives beyond plain reconstruction: the VAE and the MMD autoencoder --------

from aelab.losses import (  # noqa: E402  (kept beside the objectives that use them)
    bernoulli_reconstruction,
    check_bandwidths,
    check_kernel,
    gaussian_kl,
    gaussian_reconstruction,
    mmd_unchecked,
)

VAE_LIKELIHOODS = ("auto", "gaussian", "bernoulli")
# likelihood -> negative log-likelihood of the target given the decoder network's output
VAE_RECONSTRUCTIONS: dict[str, Callable] = {
    "gaussian": gaussian_reconstruction,
    "bernoulli": bernoulli_reconstruction,  # the decoder network's output are logits
}


def _value_range(X: torch.Tensor) -> tuple[float, float]:
    return float(X.min()), float(X.max())


def _resolve_likelihood(model, likelihood: str, train: Dataset, test: Dataset | None) -> str:
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


def vae_objective(beta: float, likelihood: str) -> Objective:
    """Negative ELBO per sample: reconstruction NLL of one reparameterised draw + beta * KL."""
    reconstruction = VAE_RECONSTRUCTIONS[likelihood]

    def objective(model, x, target):
        mu, logvar = model.posterior(x)
        out = model.decoder(model.reparameterize(mu, logvar))  # logits when Bernoulli
        return reconstruction(out, target) + beta * gaussian_kl(mu, logvar)

    return objective


def train_vae(model: nn.Module, train: Dataset, *, beta: float = 1.0, epochs: int,
              batch_size: int, lr: float = 1e-3, test: Dataset | None = None, seed: int = 0,
              likelihood: str = "auto", optimizer: str = "adam", momentum: float = 0.0,
              weight_decay: float = 0.0, lr_schedule: str | None = None,
              noise_sigma: float | None = None, freeze: str | None = None,
              reinit: str | None = None, drop_last: bool = True, device=None,
              progress=None) -> History:
    """Train an :class:`aelab.VAE` in place by minimising the negative ELBO.

    Per sample, the loss is ``reconstruction + beta * KL(q(z | x) || N(0, I))``:
    the reconstruction term is the negative log-likelihood of the (clean)
    target under the decoder at one reparameterised draw ``z ~ q(z | x)``, and
    the KL term is in closed form (:func:`aelab.losses.gaussian_kl`). Losses
    are summed over features and code dimensions and averaged over samples,
    so ``History`` holds the negative ELBO per sample (test loss: one draw per
    sample, from the seeded RNG).

    Parameters
    ----------
    model : VAE
        The model to train.
    train, test : Dataset
        Training data and optional held-out data.
    beta : float
        Weight of the KL term, >= 0: 1 is the VAE, > 1 a beta-VAE, 0 a
        (noisy) autoencoder.
    likelihood : {"auto", "gaussian", "bernoulli"}
        "gaussian": squared error summed over features (the NLL under
        N(x_hat, I/2) up to a constant). "bernoulli": binary cross-entropy from
        the decoder's logits; the data must lie in [0, 1]. "auto": the model's
        own likelihood if it has one, else "bernoulli" when all training data
        lie in [0, 1] and "gaussian" otherwise. The choice is stored in
        ``model.init_args`` (so ``decode`` applies the sigmoid for Bernoulli,
        and :func:`aelab.save` keeps it) and in ``History.config``.
    epochs, batch_size, lr, seed, optimizer, momentum, weight_decay, lr_schedule, \
noise_sigma, freeze, reinit, drop_last, device, progress
        As in :func:`train_autoencoder`; ``noise_sigma`` trains a denoising VAE.

    Returns
    -------
    History

    Examples
    --------
    >>> import aelab
    >>> model = aelab.VAE(64, 2, hidden_size=32, layers=1)
    >>> history = train_vae(model, aelab.data.digits(), epochs=2, batch_size=256)
    >>> model.likelihood, history.config["beta"]
    ('bernoulli', 1.0)
    """
    from aelab.models.vae import VAE

    if not isinstance(model, VAE):
        raise TypeError(f"train_vae needs an aelab.VAE, got {type(model).__name__}; "
                        "train other models with train_autoencoder or train_mmd_autoencoder.")
    beta = check_positive_float("beta", beta, allow_zero=True)
    _check_data("train", train, model)
    if test is not None:
        _check_data("test", test, model)
    likelihood = _resolve_likelihood(model, likelihood, train, test)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, optimizer=optimizer,
                      momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule,
                      noise_sigma=noise_sigma, freeze=freeze, reinit=reinit, drop_last=drop_last)
    history = fit(model, train, vae_objective(beta, likelihood), cfg, test=test, device=device,
                  progress=progress,
                  extra_config={"objective": "vae", "beta": beta, "likelihood": likelihood})
    model.init_args["likelihood"] = likelihood  # after success: a failed run leaves the model as it was
    history.config["model_args"]["likelihood"] = likelihood
    return history


def _reconstruct_with_code(model: nn.Module, x: torch.Tensor):
    """``(x_hat, z)``; models whose output is not ``decode(encode(x))`` (skips) provide it."""
    both = getattr(model, "forward_with_code", None)
    if both is not None:
        return both(x)
    z = model.encode(x)
    return model.decode(z), z


def mmd_objective(mmd_weight: float, kernel: str, bandwidths) -> Objective:
    """MSE + mmd_weight * MMD^2(codes, fresh N(0, I) samples of the same shape)."""
    h2_by_device: dict = {}  # squared bandwidths, made once per device and dtype

    def objective(model, x, target):
        x_hat, z = _reconstruct_with_code(model, x)
        key = (z.device, z.dtype)
        if key not in h2_by_device:
            h2_by_device[key] = torch.tensor(bandwidths, dtype=z.dtype, device=z.device).pow(2)
        prior = torch.randn_like(z)
        return mse_reconstruction(x_hat, target) + mmd_weight * mmd_unchecked(z, prior, kernel,
                                                                      h2_by_device[key])

    return objective


def train_mmd_autoencoder(model: nn.Module, train: Dataset, *, mmd_weight: float,
                          kernel: str = "imq", bandwidths=None, epochs: int, batch_size: int,
                          lr: float = 1e-3, test: Dataset | None = None, seed: int = 0,
                          optimizer: str = "adam", momentum: float = 0.0,
                          weight_decay: float = 0.0, lr_schedule: str | None = None,
                          noise_sigma: float | None = None, freeze: str | None = None,
                          reinit: str | None = None, drop_last: bool = True, device=None,
                          progress=None) -> History:
    """Train ``model`` in place on reconstruction plus an MMD penalty pulling codes to N(0, I).

    Each step minimises ``MSE(x_hat, x) + mmd_weight * MMD^2(z, e)``, where
    ``z`` are the batch's codes and ``e`` a fresh sample from N(0, I) of the same
    shape, drawn every step from the seeded RNG (as in Wasserstein
    autoencoders, Tolstikhin et al. 2018). ``MMD^2`` is the unbiased estimate
    :func:`aelab.mmd`. Codes that match N(0, I) can then be sampled by
    decoding normal draws.

    Parameters
    ----------
    model : nn.Module
        Any aelab model (anything with ``encode`` and ``decode``).
    train, test : Dataset
        Training data and optional held-out data.
    mmd_weight : float
        Weight of the MMD term, >= 0; 0 is plain training.
    kernel : {"imq", "rbf"}
        MMD kernel, see :func:`aelab.mmd`.
    bandwidths : sequence of float, optional
        Kernel bandwidths; default (0.25, 0.5, 1, 2, 4).
    epochs, batch_size, lr, seed, optimizer, momentum, weight_decay, lr_schedule, \
noise_sigma, freeze, reinit, drop_last, device, progress
        As in :func:`train_autoencoder`. Every batch needs at least 2 samples.

    Returns
    -------
    History
        Losses are the full objective (MSE plus the weighted MMD^2).

    Examples
    --------
    >>> import aelab
    >>> model = aelab.Autoencoder(2, 2, hidden_size=16, layers=2)
    >>> history = train_mmd_autoencoder(model, aelab.data.moons(100), mmd_weight=1.0,
    ...                                epochs=3, batch_size=25)
    >>> history.config["kernel"], len(history.train_loss)
    ('imq', 3)
    """
    mmd_weight = check_positive_float("mmd_weight", mmd_weight, allow_zero=True)
    check_kernel(kernel)
    bandwidths = check_bandwidths(bandwidths)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, optimizer=optimizer,
                      momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule,
                      noise_sigma=noise_sigma, freeze=freeze, reinit=reinit, drop_last=drop_last)
    n = len(train) if isinstance(train, Dataset) else None
    if n is not None:
        size = min(cfg.batch_size, n)
        smallest = size if cfg.drop_last or n % size == 0 else n % size
        if smallest < 2:
            raise ValueError(
                f"train_mmd_autoencoder needs every batch to hold at least 2 samples (the MMD "
                f"estimate compares pairs), got a batch of {smallest} from batch_size={batch_size} "
                f"and {n} samples; use batch_size >= 2 (and drop_last=True)."
            )
    if isinstance(test, Dataset) and len(test) < 2:
        raise ValueError(f"test must hold at least 2 samples for the MMD estimate, got {len(test)}.")
    extra = {"objective": "mmd", "mmd_weight": mmd_weight, "kernel": kernel,
             "bandwidths": list(bandwidths)}
    return fit(model, train, mmd_objective(mmd_weight, kernel, bandwidths), cfg, test=test,
               device=device, progress=progress, extra_config=extra)
