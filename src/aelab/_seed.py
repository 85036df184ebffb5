"""Seeded blocks that leave the caller's random state alone."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch's CPU RNG seeded, then restore the previous RNG state.

    Use it to build models reproducibly without touching global state:

    >>> import aelab
    >>> with aelab.seeded(0):
    ...     a = aelab.LinearAutoencoder(2, 1)
    >>> with aelab.seeded(0):
    ...     b = aelab.LinearAutoencoder(2, 1)
    >>> bool((a.encoder.weight == b.encoder.weight).all())
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
