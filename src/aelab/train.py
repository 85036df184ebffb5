"""Training: one function per objective, each returning a :class:`History`.

These are thin entry points into the one engine (:mod:`aelab._engine`): each
builds a :class:`TrainConfig` and an objective and trains the model as a group of
one, on the path :func:`aelab.train_many` would give it (the hand-written stack for
Linear/ReLU/residual autoencoders under reconstruction, else the autograd loop),
with the same numbers for the same seed.
"""

from __future__ import annotations

from torch import nn

from aelab._engine.config import (
    BLOW_UP_FACTOR,
    SCHEDULES,
    History,
    TrainConfig,
    TrainingDiverged,
    check_data,
    reinitialize,
    resolve_device,
)
from aelab._engine.dispatch import fit
from aelab._engine.objectives import (
    VAE_LIKELIHOODS,
    VAE_RECONSTRUCTIONS,
    MMDObjective,
    Objective,
    Reconstruction,
    VAEObjective,
    build_objective,
)
from aelab.data import Dataset

__all__ = [
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "train_autoencoder",
    "train_vae",
    "train_mmd_autoencoder",
    "fit",
    "resolve_device",
    "reinitialize",
    "SCHEDULES",
    "BLOW_UP_FACTOR",
    "Objective",
    "Reconstruction",
    "VAEObjective",
    "MMDObjective",
    "VAE_LIKELIHOODS",
    "VAE_RECONSTRUCTIONS",
]


def train_autoencoder(
    model: nn.Module,
    train: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    test: Dataset | None = None,
    seed: int = 0,
    optimizer: str = "adam",
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    lr_schedule: str | None = None,
    noise_sigma: float | None = None,
    freeze: str | None = None,
    reinit: str | None = None,
    drop_last: bool = True,
    device=None,
    progress=None,
) -> History:
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
    momentum : float
        SGD's momentum, in [0, 1).
    betas : (float, float)
        Adam's decay rates of its first and second moment estimates, each in [0, 1).
    eps : float
        Adam's term added to the denominator, > 0.
    weight_decay : float
        L2 penalty coefficient, >= 0 (added to the gradient, as torch.optim does).
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
        ``config["path"]`` says which engine path trained it.

    Raises
    ------
    TrainingDiverged
        When an epoch's loss becomes NaN or infinite, or the final training loss ends
        more than 10x above both the first step's loss and the mean predictor's loss;
        the weights are restored first.
    ValueError
        Bad settings, data with NaN or infinite values, or a device this machine lacks.

    Examples
    --------
    >>> from aelab import Autoencoder, data
    >>> model = Autoencoder(2, 1, hidden_size=16, layers=2)
    >>> history = train_autoencoder(model, data.moons(100), epochs=5, batch_size=10)
    >>> len(history.train_loss), len(history.step_loss)
    (5, 50)
    """
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        optimizer=optimizer,
        momentum=momentum,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        noise_sigma=noise_sigma,
        freeze=freeze,
        reinit=reinit,
        drop_last=drop_last,
    )
    return fit(model, train, Reconstruction(), cfg, test=test, device=device, progress=progress)


def train_vae(
    model: nn.Module,
    train: Dataset,
    *,
    beta: float = 1.0,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    test: Dataset | None = None,
    seed: int = 0,
    likelihood: str = "auto",
    optimizer: str = "adam",
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    lr_schedule: str | None = None,
    noise_sigma: float | None = None,
    freeze: str | None = None,
    reinit: str | None = None,
    drop_last: bool = True,
    device=None,
    progress=None,
) -> History:
    """Train an :class:`aelab.VAE` in place by minimising the negative ELBO.

    Per sample, the loss is ``reconstruction + beta * KL(q(z | x) || N(0, I))``:
    the reconstruction term is the negative log-likelihood of the (clean)
    target under the decoder at one reparameterised draw ``z = mu + sigma * eps``,
    and the KL term is in closed form (:func:`aelab.losses.gaussian_kl`). Losses
    are summed over features and code dimensions and averaged over samples,
    so ``History`` holds the negative ELBO per sample. The draws ``eps`` come from
    the seeded stream of the run (the test loss: one fixed draw per test sample).

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
    epochs, batch_size, lr, seed, optimizer, momentum, betas, eps, weight_decay, \
lr_schedule, noise_sigma, freeze, reinit, drop_last, device, progress
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
        raise TypeError(
            f"train_vae needs an aelab.VAE, got {type(model).__name__}; "
            "train other models with train_autoencoder or train_mmd_autoencoder."
        )
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        optimizer=optimizer,
        momentum=momentum,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        noise_sigma=noise_sigma,
        freeze=freeze,
        reinit=reinit,
        drop_last=drop_last,
    )
    check_data("train", train, model)
    if test is not None:
        check_data("test", test, model)
    objective = build_objective(
        "vae", model, train, test, cfg, beta=beta, likelihood=likelihood, who="train_vae"
    )
    return fit(model, train, objective, cfg, test=test, device=device, progress=progress)


def train_mmd_autoencoder(
    model: nn.Module,
    train: Dataset,
    *,
    mmd_weight: float,
    kernel: str = "imq",
    bandwidths=None,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    test: Dataset | None = None,
    seed: int = 0,
    optimizer: str = "adam",
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    lr_schedule: str | None = None,
    noise_sigma: float | None = None,
    freeze: str | None = None,
    reinit: str | None = None,
    drop_last: bool = True,
    device=None,
    progress=None,
) -> History:
    """Train ``model`` in place on reconstruction plus an MMD penalty pulling codes to N(0, I).

    Each step minimises ``MSE(x_hat, x) + mmd_weight * MMD^2(z, e)``, where
    ``z`` are the batch's codes and ``e`` a fresh sample from N(0, I) of the same
    shape, drawn every step from the seeded stream of the run (as in Wasserstein
    autoencoders, Tolstikhin et al. 2018). ``MMD^2`` is the unbiased estimate
    :func:`aelab.mmd`. Codes that match N(0, I) can then be sampled by
    decoding normal draws.

    Parameters
    ----------
    model : nn.Module
        Any aelab model (anything with ``encode``, ``decode`` and
        ``init_args["bottleneck_size"]``).
    train, test : Dataset
        Training data and optional held-out data. The test loss (each epoch) measures
        the MMD term in pieces of about ``batch_size`` rows, as the training steps see
        it, weighted by their rows: its cost grows with the rows per piece squared.
    mmd_weight : float
        Weight of the MMD term, >= 0; 0 is plain training.
    kernel : {"imq", "rbf"}
        MMD kernel, see :func:`aelab.mmd`.
    bandwidths : sequence of float, optional
        Kernel bandwidths; default (0.25, 0.5, 1, 2, 4).
    epochs, batch_size, lr, seed, optimizer, momentum, betas, eps, weight_decay, \
lr_schedule, noise_sigma, freeze, reinit, drop_last, device, progress
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
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        optimizer=optimizer,
        momentum=momentum,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        noise_sigma=noise_sigma,
        freeze=freeze,
        reinit=reinit,
        drop_last=drop_last,
    )
    check_data("train", train, model)
    if test is not None:
        check_data("test", test, model)
    objective = build_objective(
        "mmd",
        model,
        train,
        test,
        cfg,
        mmd_weight=mmd_weight,
        kernel=kernel,
        bandwidths=bandwidths,
        who="train_mmd_autoencoder",
    )
    return fit(model, train, objective, cfg, test=test, device=device, progress=progress)
