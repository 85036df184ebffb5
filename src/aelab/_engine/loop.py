"""The autograd loop: one model, any objective, one after another.

Built for tiny models, where framework overhead, not arithmetic, sets the pace:
data stays in memory as tensors (no DataLoader), each epoch draws one index
permutation and gathers all its batches in one go, step losses stay on the device
until the epoch ends (one host sync per epoch), and the optimizer is PyTorch's fused
implementation (public API). The draws follow :mod:`aelab._engine.objectives`:
per epoch the permutation, the denoising input noise, then the objective's noise,
all from the member's own generator.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from aelab._engine.config import (
    SCHEDULES,
    History,
    TrainConfig,
    TrainingDiverged,
    derived_seed,
    diverged_message,
    epoch_mean,
    progress_bar,
)
from aelab._engine.objectives import Objective, pieces
from aelab.evaluate import eval_mode

__all__ = ["train_loop", "make_optimizer", "evaluate_loss"]


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch's fused Adam or SGD for ``cfg``, else its default (foreach) implementation."""
    kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        cls, kwargs = torch.optim.Adam, dict(kwargs, betas=cfg.betas, eps=cfg.eps)
    else:
        cls, kwargs = torch.optim.SGD, dict(kwargs, momentum=cfg.momentum)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # a device or build without fused kernels
        return cls(params, **kwargs)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    target: torch.Tensor,
    noise: torch.Tensor | None,
    chunk: int | None = None,
) -> float:
    """The objective on ``(x, target)`` in eval mode, without gradients.

    ``chunk``: evaluate in near-equal pieces of at least that many rows (memory stays
    bounded on large data) and average them weighted by size; None: all rows at once.
    """
    n = len(x)
    total = 0.0
    with eval_mode(model):
        for first, stop in pieces(n, chunk is not None, chunk or n):
            rows = slice(first, stop)
            part_noise = None if noise is None else noise[rows]
            loss = objective.loss(model, x[rows], target[rows], part_noise)
            total += float(loss) * (stop - first)
    return total / n


def train_loop(
    model: nn.Module,
    X: torch.Tensor,
    objective: Objective,
    cfg: TrainConfig,
    history: History,
    *,
    generator: torch.Generator,
    test_in=None,
    test_target=None,
    test_noise=None,
    progress=None,
    desc: str = "",
) -> None:
    """Train ``model`` in place on ``X``; append to ``history``; raise TrainingDiverged when an
    epoch's loss is not finite (the caller restores the weights).

    Run it inside a forked RNG seeded with ``cfg.seed``: a model that samples inside its
    own forward (a VAE in train mode under the reconstruction objective) draws from there.
    """
    n = len(X)
    batch_size = min(cfg.batch_size, n)
    n_used = n - n % batch_size if cfg.drop_last else n
    full_batch = batch_size >= n
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    scheduler = SCHEDULES[cfg.lr_schedule](optimizer, cfg.epochs) if cfg.lr_schedule else None
    columns = objective.noise_columns(model)
    sizes = [len(t) for t in torch.arange(n_used).split(batch_size)]
    device = X.device
    fork_devices = [device] if device.type == "cuda" else []
    start = time.perf_counter()
    seen = 0
    bar = progress_bar(cfg.epochs, progress, desc=desc or type(model).__name__)
    model.train()
    for epoch in bar:
        if full_batch:  # the mean over all points does not depend on their order
            target = X
        else:
            target = X[torch.randperm(n, generator=generator, device=device)[:n_used]]
        inputs = target
        if cfg.noise_sigma:
            inputs = target + cfg.noise_sigma * torch.randn(
                target.shape, generator=generator, device=device, dtype=target.dtype
            )
        noise = [None] * len(sizes)
        if columns:
            noise = torch.randn(
                n_used, columns, generator=generator, device=device, dtype=X.dtype
            ).split(batch_size)
        step_losses = []
        for x, t, z in zip(inputs.split(batch_size), target.split(batch_size), noise):
            loss = objective.loss(model, x, t, z)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_losses.append(loss.detach())
        if scheduler is not None:
            scheduler.step()
        seen += n_used
        losses = torch.stack(step_losses).tolist()  # the epoch's one host sync
        epoch_loss = epoch_mean(losses, sizes, n_used)
        if not math.isfinite(epoch_loss):
            raise TrainingDiverged(diverged_message(epoch_loss, epoch, cfg.epochs, cfg.lr))
        history.step_loss.extend(losses)
        history.train_loss.append(epoch_loss)
        history.examples_seen.append(seen)
        if test_in is not None:
            # anything a model samples inside its own forward draws from a stream of its own
            # here, the same every epoch: the test curve is smooth and training's stream untouched
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(derived_seed(cfg.seed, "test"))
                # a pairwise objective in pieces of a batch (see aelab._engine.objectives)
                chunk = cfg.batch_size if objective.pairwise else None
                history.test_loss.append(
                    evaluate_loss(model, objective, test_in, test_target, test_noise, chunk)
                )
        history.seconds.append(time.perf_counter() - start)
        if not bar.disable:
            bar.set_postfix(loss=f"{epoch_loss:.4g}", refresh=False)
    bar.close()
    model.eval()
    # an epoch's loss is measured before its updates: a blow-up in the last epoch shows
    # only in the weights (and the test loss)
    last_test_ok = not history.test_loss or math.isfinite(history.test_loss[-1])
    if cfg.epochs and not (
        last_test_ok and all(bool(p.isfinite().all()) for p in model.parameters())
    ):
        raise TrainingDiverged(diverged_message(float("nan"), cfg.epochs - 1, cfg.epochs, cfg.lr))
