"""What every engine path shares: the settings, the History, the divergence rule, the seeds.

One rule for divergence, applied to every path (the hand-written stack, the vmapped
stack, the autograd loop):

* an epoch whose training loss is NaN or infinite stops training there;
* after the last step the model's loss on the whole training set (the *final loss*)
  is computed; it is divergence when it is not finite, or when it is more than
  :data:`BLOW_UP_FACTOR` (10) times both the *initial loss* (the first step's loss:
  the loss at the initial weights on the first batch) and the *mean predictor's loss*
  (what a model that outputs the training mean for every input scores; see
  ``Objective.baseline_loss``). A run that ends that far above both where it
  started and the trivial answer has learned nothing worth reporting.

One seed scheme: a member's data order, input noise and objective noise come from
``torch.Generator().manual_seed(seed)`` (see :mod:`aelab._engine.objectives` for the
order of the draws; a full-batch epoch draws no permutation); re-initialisation, the
test set's fixed noise and the final check's noise come from streams of their own,
``derived_seed(seed, purpose)``.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from aelab._checks import (
    check_choice,
    check_finite,
    check_int,
    check_positive_float,
    check_positive_int,
)
from aelab._html import history_html
from aelab.data import Dataset

__all__ = [
    "TrainConfig",
    "History",
    "TrainingDiverged",
    "SCHEDULES",
    "OPTIMIZERS",
    "PARTS",
    "DEFAULT_LR",
    "BLOW_UP_FACTOR",
    "diverged_message",
    "blew_up",
    "derived_seed",
    "member_generator",
    "fixed_draw",
    "progress_bar",
    "run_config",
    "resolve_device",
    "check_data",
    "part",
    "reinitialize",
    "epoch_mean",
    "LrSchedule",
]

OPTIMIZERS = ("adam", "sgd")
PARTS = ("encoder", "decoder")
DEFAULT_LR = 1e-3
DEFAULT_BETAS = (0.9, 0.999)
DEFAULT_EPS = 1e-8
# a final loss more than this many times both the initial loss and the mean predictor's
# is divergence (see the module docstring)
BLOW_UP_FACTOR = 10.0


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite, or ended far above where it started; the
    model's weights were restored."""


def _step_schedule(optimizer, epochs):
    # the classic step schedule: lr x0.1 at half and at three quarters of training
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[max(1, epochs // 2), max(1, 3 * epochs // 4)], gamma=0.1
    )


def _cosine_schedule(optimizer, epochs):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))


SCHEDULES: dict[str, Callable] = {"step": _step_schedule, "cosine": _cosine_schedule}


def _check_betas(betas) -> tuple[float, float]:
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(
            f"betas must be a pair (beta1, beta2) of numbers in [0, 1), got "
            f"{betas!r}; the default is {DEFAULT_BETAS}."
        )
    pair = []
    for value in betas:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"betas must hold two numbers in [0, 1), got {betas!r}.")
        value = float(value)
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"betas must hold two numbers in [0, 1), got {tuple(betas)!r}; "
                f"the default is {DEFAULT_BETAS}."
            )
        pair.append(value)
    return tuple(pair)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; validated on construction, stored in :class:`History`."""

    epochs: int  # passes over the training set; 0 only evaluates
    batch_size: int  # >= n_samples means full-batch gradient descent, one step per epoch
    lr: float = DEFAULT_LR
    seed: int = 0  # data order, noise, re-initialisation and any sampling inside the loss
    optimizer: str = "adam"  # "adam" or "sgd"
    momentum: float = 0.0  # SGD only, in [0, 1); 0 is plain (stochastic) gradient descent
    weight_decay: float = 0.0
    lr_schedule: str | None = None  # None, "step" (x0.1 at 50% and 75%) or "cosine"
    noise_sigma: float | None = None  # denoising: corrupt inputs, reconstruct clean targets
    freeze: str | None = None  # "encoder" or "decoder": kept fixed during training
    reinit: str | None = None  # "encoder" or "decoder": re-initialised before training
    drop_last: bool = True  # like the courses' DataLoader(drop_last=True): equal-size batches
    betas: tuple[float, float] = DEFAULT_BETAS  # Adam's moment decay rates, each in [0, 1)
    eps: float = DEFAULT_EPS  # Adam's denominator guard, > 0

    def __post_init__(self):
        check_int("epochs", self.epochs, 0)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_int("seed", self.seed, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive_float("momentum", self.momentum, allow_zero=True)
        if not self.momentum < 1.0:
            raise ValueError(
                f"momentum must be a number in [0, 1), got {self.momentum}; "
                "0.9 is the usual choice."
            )
        check_positive_float("weight_decay", self.weight_decay, allow_zero=True)
        object.__setattr__(self, "betas", _check_betas(self.betas))
        check_positive_float("eps", self.eps)
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(
                f"momentum={self.momentum} only applies to optimizer='sgd', "
                f"got optimizer={self.optimizer!r}."
            )
        if self.optimizer != "adam":
            for name, default in (("betas", DEFAULT_BETAS), ("eps", DEFAULT_EPS)):
                if getattr(self, name) != default:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} only applies to "
                        f"optimizer='adam', got optimizer={self.optimizer!r}."
                    )
        if self.lr_schedule is not None:
            check_choice("lr_schedule", self.lr_schedule, tuple(SCHEDULES))
        if self.noise_sigma is not None:
            check_positive_float("noise_sigma", self.noise_sigma, allow_zero=True)
        for name in ("freeze", "reinit"):
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), PARTS)
        if not isinstance(self.drop_last, bool):
            raise TypeError(f"drop_last must be True or False, got {self.drop_last!r}.")


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
        The :class:`TrainConfig` fields plus the model class and arguments, the
        objective's settings, ``path`` (which engine path trained it: "stack",
        "vmap" or "loop") and, when it diverged, ``diverged`` (the message).
    """

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    _repr_html_ = history_html  # the curves and the run's settings in a notebook

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        return asdict(self)


def suggested_lr(lr: float) -> tuple[float, str]:
    """A learning rate worth trying after ``lr`` diverged: 10x lower, or the default when
    that is lower still."""
    if lr / 10 < DEFAULT_LR:
        return lr / 10, "10x lower"
    return DEFAULT_LR, "the default"


def diverged_message(
    loss: float, epoch: int, epochs: int, lr: float, *, final: tuple[float, float] | None = None
) -> str:
    """The one divergence message: what happened, where, and a learning rate to try.

    ``final``: (initial loss, mean predictor's loss) when the final loss blew up.
    """
    if final is None:
        what = f"training loss became {loss} in epoch {epoch + 1} of {epochs} (lr={lr})"
    else:
        initial, baseline = final
        what = (
            f"training loss ended at {loss:.4g} after epoch {epoch + 1} of {epochs} "
            f"(lr={lr}), more than {BLOW_UP_FACTOR:g}x both its initial {initial:.4g} "
            f"and the mean predictor's {baseline:.4g}"
        )
    new_lr, why = suggested_lr(lr)
    return (
        f"{what}; lower the learning rate: try lr={new_lr:g} ({why}). "
        "The model's weights were restored to what they were before training."
    )


def blew_up(final: float, initial: float, baseline: float) -> bool:
    """The final-loss half of the divergence rule (see the module docstring)."""
    if not math.isfinite(final):
        return True
    return final > BLOW_UP_FACTOR * initial and final > BLOW_UP_FACTOR * baseline


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for ``purpose`` that is independent of ``seed``'s own stream."""
    return int(np.random.SeedSequence([seed, *purpose.encode()]).generate_state(1)[0])


def member_generator(seed: int, device, purpose: str | None = None) -> torch.Generator:
    """The stream of a member's training draws (``purpose=None``), or of ``purpose``."""
    value = seed if purpose is None else derived_seed(seed, purpose)
    return torch.Generator(device=device).manual_seed(value)


def fixed_draw(seed: int, purpose: str, rows: int, columns: int, device, dtype) -> torch.Tensor:
    """A member's ``(rows, columns)`` standard normal numbers from its ``purpose`` stream:
    an objective's noise for a fixed set (the test set, the final-loss check), the same
    whichever path trains the member."""
    g = member_generator(seed, device, purpose)
    return torch.randn(rows, columns, device=device, dtype=dtype, generator=g)


def progress_bar(epochs: int, progress, desc: str):
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(range(epochs), desc=desc, disable=not show, leave=False, unit="epoch")


def run_config(cfg: TrainConfig, model: nn.Module, n_train: int, device, **extra) -> dict:
    """What a :class:`History` records about its run: the settings, model and data size."""
    return {
        **asdict(cfg),
        "model": type(model).__name__,
        "model_args": dict(getattr(model, "init_args", {})),
        "n_train": n_train,
        "device": str(device),
        **extra,
    }


def resolve_device(device=None) -> torch.device:
    """``device`` as a torch.device; by default CUDA when available, else CPU.

    Raises ValueError for a device this machine cannot train on (CUDA on a CPU
    build, ``"meta"``, unknown names), before anything moves there.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device={device!r} is not a device name torch knows; use 'cpu', "
            "'cuda' (or 'cuda:N'), or None for the default."
        ) from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available (this torch build "
                "or machine has no usable GPU); use device='cpu' or None."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA "
                "device(s) exist; use device='cuda' or a smaller index."
            )
        return resolved
    if resolved.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={device!r} but MPS is not available here; use 'cpu'.")
        return resolved
    raise ValueError(
        f"device={device!r}: aelab trains on 'cpu', 'cuda' or 'mps', not "
        f"{resolved.type!r} (a 'meta' model has no weights to train)."
    )


def check_data(name: str, ds, model: nn.Module) -> Dataset:
    """``ds`` as a Dataset whose width fits ``model`` and whose values are all finite."""
    if not isinstance(ds, Dataset):
        raise TypeError(
            f"{name} must be an aelab.data.Dataset, got {type(ds).__name__}; "
            "wrap tensors with aelab.data.Dataset(X)."
        )
    input_size = getattr(model, "init_args", {}).get("input_size")
    if input_size is not None and ds.n_features != input_size:
        raise ValueError(
            f"{name} has {ds.n_features} features per sample but the model's input_size is "
            f"{input_size}; build the model with input_size={ds.n_features}."
        )
    # checked here, not only when the Dataset was made: X may have been written since, and
    # bad data must not be reported later as a learning-rate problem
    check_finite(f"{name}.X", ds.X)
    return ds


def part(model: nn.Module, name: str) -> nn.Module:
    """The ``encoder`` or ``decoder`` submodule that ``freeze``/``reinit`` name."""
    found = getattr(model, name, None)
    if not isinstance(found, nn.Module):
        raise ValueError(f"the model has no {name!r} submodule to freeze or re-initialise.")
    return found


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


def epoch_mean(losses: list[float], sizes: list[int], n_used: int) -> float:
    """The epoch's training loss: step losses weighted by their batch sizes."""
    return sum(l * s for l, s in zip(losses, sizes)) / n_used


class LrSchedule:
    """The learning rate of each epoch, from the very scheduler the autograd loop uses."""

    def __init__(self, lr: float, schedule: str | None, epochs: int):
        self.lr = lr
        self._scheduler = None
        if schedule is not None:
            self._param = torch.zeros(1, requires_grad=True)
            self._optimizer = torch.optim.SGD([self._param], lr=lr)
            self._scheduler = SCHEDULES[schedule](self._optimizer, epochs)

    def current(self) -> float:
        if self._scheduler is None:
            return self.lr
        return self._optimizer.param_groups[0]["lr"]

    def advance(self) -> None:
        if self._scheduler is not None:
            self._optimizer.step()  # a no-op (no gradient) that satisfies the scheduler's check
            self._scheduler.step()
