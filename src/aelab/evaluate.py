"""Metrics of trained models."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for the block (restoring its mode after); yields its device."""
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)


def _batched(fn, model: nn.Module, X, batch_size: int) -> torch.Tensor:
    """``fn`` over batches of ``X`` on the model's device, without gradients, results on the CPU."""
    X = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad(), eval_mode(model) as device:
        return torch.cat([fn(x.to(device)).cpu() for x in X.split(batch_size)])


def encode(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Codes ``model.encode(X)`` in eval mode, on the CPU."""
    return _batched(model.encode, model, X, batch_size)


def reconstruct(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Reconstructions ``model(X)`` in eval mode, on the CPU."""
    return _batched(model, model, X, batch_size)


def reconstruction_errors(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Per-sample mean squared error of ``model(X)`` against ``X``, shape [n_samples]."""
    return _batched(lambda x: ((model(x) - x) ** 2).flatten(1).mean(1), model, X, batch_size)


def reconstruction_error(model: nn.Module, X) -> float:
    """Mean squared error per sample, averaged over samples.

    >>> import aelab
    >>> reconstruction_error(aelab.LinearAutoencoder(2, 2), torch.zeros(4, 2)) >= 0
    True
    """
    return float(reconstruction_errors(model, X).mean())
