"""Many models trained at once: :func:`train_many`, a thin entry point into the engine.

The engine (:mod:`aelab._engine`) groups the models by what can share a stack and
trains each group on one path: the hand-written stack for Linear/ReLU/residual
autoencoders under reconstruction or MMD and for MLP VAEs, one model of grouped
convolutions for conv autoencoders, the vmapped stack for other groups when it is
faster, else the autograd loop one model after another. Which models the
hand-written stack takes is decided by :data:`EMITTERS`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from aelab._checks import check_choice, check_positive_float
from aelab._engine.config import History, TrainConfig, check_data, resolve_device
from aelab._engine.dispatch import ON_DIVERGE, Member, train_members
from aelab._engine.objectives import Objective, build_objective
from aelab._engine.stack import EMITTERS, stack_plan
from aelab.data import Dataset

__all__ = ["train_many", "EMITTERS", "stack_plan"]

# options that may be given per model (a list, array or tensor with one entry per model)
PER_MODEL = (
    "lr",
    "seeds",
    "noise_sigma",
    "weight_decay",
    "momentum",
    "betas",
    "eps",
    "optimizer",
    "lr_schedule",
    "freeze",
    "reinit",
    "drop_last",
    "objective",
    "beta",
    "likelihood",
    "mmd_weight",
    "kernel",
    "bandwidths",
    "train",
    "test",
)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_pair(value) -> bool:
    return (
        isinstance(value, (tuple, list, np.ndarray, torch.Tensor))
        and len(value) == 2
        and all(_is_number(v) or isinstance(v, (np.generic, torch.Tensor)) for v in value)
        and not any(isinstance(v, (list, tuple)) for v in value)
    )


def _is_bandwidths(value) -> bool:
    """One set of bandwidths: None, a number or a flat sequence of numbers."""
    if value is None or _is_number(value):
        return True
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim <= 1
    return isinstance(value, (tuple, list)) and len(value) > 0 and all(_is_number(v) for v in value)


def _plain(value):
    """numpy and 0-d torch scalars as Python scalars (they would leak into History.config)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return value.item()
    return value


def _per_model(name: str, value, K: int, is_one: Callable[[object], bool]) -> list:
    """``value`` repeated K times if it is one value, else checked to hold K values."""
    value = _plain(value)
    if is_one(value):
        return [value] * K
    if isinstance(value, (np.ndarray, torch.Tensor)):
        value = value.tolist()
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be one value or a list with one per model, got {type(value).__name__}."
        )
    if len(value) != K:
        raise ValueError(
            f"{name} has {len(value)} entries but there are {K} models; "
            f"give one {name} per model, or a single value for all."
        )
    return [_plain(v) for v in value]


def _scalar(*types):
    def is_one(value):
        return value is None or (
            isinstance(value, types) and not (bool not in types and isinstance(value, bool))
        )

    return is_one


def train_many(
    models: Sequence[nn.Module],
    train: Dataset | Sequence[Dataset],
    *,
    epochs: int,
    batch_size: int,
    lr=1e-3,
    seeds=None,
    test=None,
    objective="reconstruction",
    beta=1.0,
    likelihood="auto",
    mmd_weight=1.0,
    kernel="imq",
    bandwidths=None,
    optimizer="adam",
    momentum=0.0,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    freeze=None,
    reinit=None,
    noise_sigma=None,
    lr_schedule=None,
    drop_last=True,
    device=None,
    progress=None,
    on_diverge: str = "raise",
) -> list[History]:
    """Train many models in place, those that can share a stack together in one pass.

    Every option of :func:`~aelab.train_autoencoder`, :func:`~aelab.train_vae` and
    :func:`~aelab.train_mmd_autoencoder` is accepted, for all models at once or per
    model. The models are split into groups that can share a stack (one architecture,
    objective, data shape and shared settings); mixed architectures, objectives and
    options are fine. Linear/ReLU/residual autoencoders (:class:`~aelab.Autoencoder`,
    :class:`~aelab.LinearAutoencoder`, :class:`~aelab.ResNetAutoencoder`) under
    reconstruction or MMD, and :class:`~aelab.VAE` under its own objective, are stacked
    by the hand-written engine: weights become batched tensors and every step is a few
    batched matmuls and one fused optimizer call (MMD's gradient at the codes and the
    VAE's draw and KL term are written out too).
    Each member still draws its own data order and noise from its own seed and has
    its own optimizer state, so its :class:`History` and weights are those
    :func:`~aelab.train_autoencoder` gives for that model and seed, bit for bit (on
    the CPU at a fixed torch thread count), whatever the other models in the call
    (under MMD or the VAE objective they match the autograd loop to float32 rounding).
    Conv autoencoders (3 or more, sharing every setting) train as one model of grouped
    convolutions; other groups take the vmapped stack where it is faster, else train
    one model after another; each History's
    ``config["path"]`` says which ("stack", "grouped", "vmap" or "loop").

    Parameters
    ----------
    models : list of nn.Module
        The models, trained in place; each appears once.
    train : Dataset or list of Dataset
        One training set for all models, or one per model.
    epochs, batch_size : int
        As in :func:`~aelab.train_autoencoder`, shared by all models.
    lr : float or list of float
        Learning rate, one for all or one per model.
    seeds : list of int, optional
        One per model: data order, noise, re-initialisation. Default ``0, 1, ..., K - 1``.
    test : Dataset or list of Dataset, optional
        Held-out data evaluated after every epoch, one for all or one per model.
    objective : {"reconstruction", "vae", "mmd"} or Objective, or a list of them
        What each model minimises: mean squared error (``train_autoencoder``), the
        negative ELBO (``train_vae``; the model must be an :class:`~aelab.VAE`), or
        MSE plus an MMD penalty (``train_mmd_autoencoder``).
    beta, likelihood : float, str, or lists of them
        The VAE objective's settings, as in ``train_vae``.
    mmd_weight, kernel, bandwidths : float, str, sequence of float, or lists of them
        The MMD objective's settings, as in ``train_mmd_autoencoder``; per model,
        ``bandwidths`` is a list of sequences.
    optimizer : {"adam", "sgd"} or list
        Fused Adam or SGD.
    momentum, betas, eps, weight_decay : or lists of them
        SGD's momentum in [0, 1); Adam's ``betas`` pair and ``eps``; the L2 penalty. Per
        model, ``betas`` is a list of pairs.
    freeze, reinit : {None, "encoder", "decoder"} or lists of them
        As in ``train_autoencoder``.
    noise_sigma : float or list of float, optional
        Denoising: Gaussian input noise of this standard deviation.
    lr_schedule : {None, "step", "cosine"} or list
        Per-epoch learning-rate schedule, as in ``train_autoencoder``.
    drop_last : bool or list of bool
        Drop each epoch's last incomplete batch.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU. The models are moved there.
    progress : bool, optional
        A progress bar per stack; by default shown only when stderr is a terminal.
    on_diverge : {"raise", "restore"}
        When a model diverges (its loss becomes NaN or infinite, or its final loss ends
        more than 10x above both its first step's loss and the mean predictor's):
        "raise" restores every model to its weights before the call and raises
        :class:`~aelab.train.TrainingDiverged`; "restore" puts only that model back to
        its weights before the call, keeps training the others, and records the
        message in its ``history.config["diverged"]`` (its History then holds the
        epochs before the divergence).

    Every option marked "or list" (and ``lr``, ``seeds``, ``train``, ``test``) may be
    a list, numpy array or tensor with one entry per model; ``epochs``,
    ``batch_size``, ``device``, ``progress`` and ``on_diverge`` are shared.

    Returns
    -------
    list of History
        In the order of ``models``. Each config also records ``ensemble_size``, the
        number of models trained together with it, and ``path``; a stack's ``seconds``
        are the wall-clock time of the whole stack.

    Raises
    ------
    ValueError
        A per-model option whose length is not the number of models (the message
        names the option, its length and the number of models), or a bad setting.

    Examples
    --------
    >>> import aelab
    >>> models = []
    >>> for seed in range(4):
    ...     with aelab.seeded(seed):
    ...         models.append(aelab.Autoencoder.from_widths([20, 10], 1, 2))
    >>> histories = train_many(models, aelab.data.rectangle(100), epochs=3, batch_size=8,
    ...                        seeds=[0, 1, 2, 3], lr=[1e-3, 1e-3, 1e-2, 1e-2])
    >>> [h.config["ensemble_size"] for h in histories], len(histories[0].step_loss)
    ([4, 4, 4, 4], 36)
    >>> histories[0].config["path"]
    'stack'
    """
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError(
            f"models must be a list of models, got {type(models).__name__}; "
            "wrap a single model as [model]."
        )
    K = len(models)
    if K == 0:
        raise ValueError("models is empty; pass at least one model.")
    for i, model in enumerate(models):
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(model).__name__}.")
    if len({id(m) for m in models}) != K:
        raise ValueError(
            "models lists the same model object more than once; each model is "
            "trained in place, so build a separate model for every run."
        )
    check_choice("on_diverge", on_diverge, ON_DIVERGE)
    number, text = _scalar(numbers.Real), _scalar(str)
    options = {
        "train": _per_model("train", train, K, _scalar(Dataset)),
        "test": _per_model("test", test, K, _scalar(Dataset)),
        "lr": _per_model("lr", lr, K, number),
        "seed": (
            list(range(K))
            if seeds is None
            else _per_model("seeds", seeds, K, _scalar(numbers.Integral))
        ),
        "noise_sigma": _per_model("noise_sigma", noise_sigma, K, number),
        "weight_decay": _per_model("weight_decay", weight_decay, K, number),
        "momentum": _per_model("momentum", momentum, K, number),
        "betas": _per_model("betas", betas, K, _is_pair),
        "eps": _per_model("eps", eps, K, number),
        "optimizer": _per_model("optimizer", optimizer, K, text),
        "lr_schedule": _per_model("lr_schedule", lr_schedule, K, text),
        "freeze": _per_model("freeze", freeze, K, text),
        "reinit": _per_model("reinit", reinit, K, text),
        "drop_last": _per_model("drop_last", drop_last, K, _scalar(bool)),
        "objective": _per_model("objective", objective, K, _scalar(str, Objective)),
        "beta": _per_model("beta", beta, K, number),
        "likelihood": _per_model("likelihood", likelihood, K, text),
        "mmd_weight": _per_model("mmd_weight", mmd_weight, K, number),
        "kernel": _per_model("kernel", kernel, K, text),
        "bandwidths": _per_model("bandwidths", bandwidths, K, _is_bandwidths),
    }
    for i, value in enumerate(options["lr"]):
        check_positive_float("lr" if value is lr else f"lr[{i}]", value)
    device = resolve_device(device)

    members = []
    for i, model in enumerate(models):
        o = {name: values[i] for name, values in options.items()}
        where = f"models[{i}]: " if K > 1 else ""
        try:
            cfg = TrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                lr=o["lr"],
                seed=o["seed"],
                optimizer=o["optimizer"],
                momentum=o["momentum"],
                betas=o["betas"],
                eps=o["eps"],
                weight_decay=o["weight_decay"],
                lr_schedule=o["lr_schedule"],
                noise_sigma=o["noise_sigma"],
                freeze=o["freeze"],
                reinit=o["reinit"],
                drop_last=o["drop_last"],
            )
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}{error}") from None
        train_i, test_i = o["train"], o["test"]
        check_data(f"train[{i}]" if train_i is not train else "train", train_i, model)
        if test_i is not None:
            check_data(f"test[{i}]" if test_i is not test else "test", test_i, model)
        try:
            built = build_objective(
                o["objective"],
                model,
                train_i,
                test_i,
                cfg,
                beta=o["beta"],
                likelihood=o["likelihood"],
                mmd_weight=o["mmd_weight"],
                kernel=o["kernel"],
                bandwidths=o["bandwidths"],
            )
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}{error}") from None
        members.append(Member(model, train_i, test_i, cfg, built))
    return train_members(members, device=device, progress=progress, on_diverge=on_diverge)
