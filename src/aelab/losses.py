"""Loss functions, each defined once: reconstruction, the Gaussian KL, and MMD.

All are pure functions of tensors; the training objectives in
:mod:`aelab.train` combine them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_BANDWIDTHS",
    "KERNELS",
    "mse_reconstruction",
    "gaussian_reconstruction",
    "bernoulli_reconstruction",
    "gaussian_kl",
    "mmd",
    "squared_distances",
    "check_kernel",
    "check_bandwidths",
]

# Five bandwidths, each twice the previous: from a quarter to four times the
# unit scale of N(0, I) codes, so the sum of kernels is sensitive both to
# fine structure and to a global shift or rescaling of the codes.
DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


def mse_reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (the plain autoencoder loss).

    >>> float(mse_reconstruction(torch.ones(2, 3), torch.zeros(2, 3)))
    1.0
    """
    return F.mse_loss(x_hat, x)


def gaussian_reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over features, averaged over samples.

    This is the negative log-likelihood of ``x`` under ``N(x_hat, I / 2)`` up to an
    additive constant: the "MSE" reconstruction term of a VAE's negative ELBO.

    >>> float(gaussian_reconstruction(torch.ones(2, 3), torch.zeros(2, 3)))
    3.0
    """
    return (x_hat - x).pow(2).flatten(1).sum(1).mean()


def bernoulli_reconstruction(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from ``logits``, summed over features, averaged over samples.

    The negative log-likelihood of ``x`` in [0, 1] under independent Bernoulli
    distributions with means ``sigmoid(logits)``; computed from logits for
    numerical stability. Targets strictly between 0 and 1 (grey pixels) are
    allowed: this is then the cross-entropy, as in Kingma & Welling's MNIST VAE.

    >>> round(float(bernoulli_reconstruction(torch.zeros(1, 2), torch.ones(1, 2))), 4)
    1.3863
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over code dimensions, averaged over samples.

    Closed form from Kingma & Welling, "Auto-Encoding Variational Bayes" (2014),
    Appendix B::

        KL = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)

    >>> float(gaussian_kl(torch.zeros(4, 2), torch.zeros(4, 2)))
    0.0
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


# --- MMD ---------------------------------------------------------------------


def _rbf(sq_dist: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    return torch.exp(-sq_dist / (2 * h2))


def _imq(sq_dist: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    return h2 / (h2 + sq_dist)


# kernel name -> k(squared distance, squared bandwidth); both broadcast
KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "rbf": _rbf,
    "imq": _imq,
}


def check_kernel(kernel) -> str:
    """``kernel`` if it names a kernel in :data:`KERNELS`, else ValueError."""
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(
            f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}; "
            "use kernel='imq' (heavy-tailed, the default) or kernel='rbf'."
        )
    return kernel


def check_bandwidths(bandwidths) -> tuple[float, ...]:
    """``bandwidths`` (a number, or a 1-D sequence, array or tensor of numbers) as a non-empty
    tuple of finite floats > 0; None means the default."""
    if bandwidths is None:
        return DEFAULT_BANDWIDTHS
    if isinstance(bandwidths, numbers.Real) and not isinstance(bandwidths, bool):
        bandwidths = (bandwidths,)
    if isinstance(bandwidths, (torch.Tensor, np.ndarray)):
        if bandwidths.ndim > 1:
            raise ValueError(
                f"bandwidths must be 1-D, got an array of shape {tuple(bandwidths.shape)}; "
                f"pass a flat list, e.g. bandwidths={DEFAULT_BANDWIDTHS}."
            )
        # tolist gives Python numbers (a 0-d array gives one), checked below like any sequence
        bandwidths = bandwidths.reshape(-1).tolist()
    if not isinstance(bandwidths, Sequence) or isinstance(bandwidths, str) or not bandwidths:
        raise ValueError(
            f"bandwidths must be a non-empty sequence of numbers > 0, got "
            f"{bandwidths!r}; e.g. bandwidths={DEFAULT_BANDWIDTHS}."
        )
    out = []
    for h in bandwidths:
        if isinstance(h, bool) or not isinstance(h, numbers.Real) or not (0 < h < float("inf")):
            raise ValueError(
                f"every bandwidth must be a finite number > 0, got {h!r} in "
                f"bandwidths={tuple(bandwidths)!r}; e.g. bandwidths={DEFAULT_BANDWIDTHS}."
            )
        out.append(float(h))
    return tuple(out)


def _check_samples(name: str, t) -> torch.Tensor:
    from aelab._checks import check_finite

    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(t).__name__}; convert it with "
            "torch.as_tensor."
        )
    if t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}.")
    if t.ndim != 2 or len(t) < 2:
        raise ValueError(
            f"{name} must be 2-D [n_samples, n_features] with at least 2 samples "
            f"(the unbiased estimate leaves out i == j pairs), got shape {tuple(t.shape)}."
        )
    check_finite(name, t.detach())
    return t


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., n, m) squared distances between the rows of ``a`` (..., n, d) and ``b`` (..., m, d),
    stacks of them included: ``|a|^2 + |b|^2 - 2 a.b``, one matmul instead of an (n, m, d)
    difference tensor, clamped at 0 because rounding can make it slightly negative."""
    sq = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(-2) - 2 * a @ b.mT
    return sq.clamp_min(0)


def _kernel_sum(sq_dist: torch.Tensor, kernel: str, h2: torch.Tensor) -> torch.Tensor:
    # (n, m, 1) against (B,): the kernel at every bandwidth, summed over bandwidths
    return KERNELS[kernel](sq_dist.unsqueeze(-1), h2).sum(-1)


def mmd(
    x: torch.Tensor, y: torch.Tensor, kernel: str = "imq", bandwidths: Sequence[float] | None = None
) -> torch.Tensor:
    """Unbiased estimate of the squared maximum mean discrepancy between two samples.

    With ``k`` the kernel summed over the bandwidths ``h``, ``x`` of ``n`` rows and
    ``y`` of ``m`` rows, this is the U-statistic of Gretton et al., "A Kernel
    Two-Sample Test" (JMLR 2012), Eq. 3, which leaves out the ``i == j`` terms::

        MMD^2 = sum_{i != j} k(x_i, x_j) / (n (n - 1))
              + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (n m)

    Kernels of the squared distance ``d2 = |a - b|^2``:

    - ``"rbf"``: ``exp(-d2 / (2 h^2))``
    - ``"imq"`` (inverse multiquadric): ``h^2 / (h^2 + d2)``

    Being unbiased, the estimate can be slightly negative when the two
    distributions are equal; its expectation is then 0. It is differentiable
    in ``x`` and ``y``.

    Parameters
    ----------
    x, y : Tensor, shape (n, d) and (m, d)
        Two samples with the same number of features, at least 2 rows each.
        Computed in their common dtype, at least the default float dtype
        (integer tensors are promoted). In float32 the squared distances
        ``|a|^2 + |b|^2 - 2 a.b`` lose precision for data far from the origin:
        centre both samples on a common point, or pass float64, in that case.
    kernel : {"imq", "rbf"}
        Kernel family.
    bandwidths : float or 1-D sequence, array or tensor of float, optional
        Bandwidths ``h > 0`` to sum the kernel over. Default
        :data:`DEFAULT_BANDWIDTHS` = (0.25, 0.5, 1, 2, 4), suited to data on the
        scale of N(0, I).

    Returns
    -------
    Tensor
        A scalar.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
    >>> abs(float(mmd(x, y))) < 0.05, float(mmd(x, y + 3)) > 1
    (True, True)
    """
    check_kernel(kernel)
    bandwidths = check_bandwidths(bandwidths)
    _check_samples("x", x)
    _check_samples("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of features, got x of shape "
            f"{tuple(x.shape)} and y of shape {tuple(y.shape)}."
        )
    # at least the default float dtype: integer inputs would otherwise truncate the
    # bandwidths to ints (h = 0.25 -> 0) and give NaN
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.get_default_dtype())
    x, y = x.to(dtype), y.to(dtype)
    h2 = torch.tensor(bandwidths, dtype=dtype, device=x.device).pow(2)  # (B,)
    result = mmd_unchecked(x, y, kernel, h2)
    if not torch.isfinite(result.detach()):  # finite inputs: only |a|^2 can have overflowed
        raise ValueError(
            f"x and y are too large for {dtype}: their squared distances overflow "
            f"{str(dtype).removeprefix('torch.')} (largest |value| "
            f"{float(max(x.detach().abs().max(), y.detach().abs().max())):.3g}); "
            "centre and rescale both samples, or pass float64 tensors."
        )
    return result


def mmd_unchecked(x: torch.Tensor, y: torch.Tensor, kernel: str, h2: torch.Tensor) -> torch.Tensor:
    """:func:`mmd` without argument checks, given squared bandwidths ``h2``; for training loops."""
    n, m = len(x), len(y)
    k_xx = _kernel_sum(squared_distances(x, x), kernel, h2)
    k_yy = _kernel_sum(squared_distances(y, y), kernel, h2)
    k_xy = _kernel_sum(squared_distances(x, y), kernel, h2)
    # leave out the diagonal (k(x_i, x_i)) that the biased V-statistic would include
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return xx + yy - 2 * k_xy.mean()
