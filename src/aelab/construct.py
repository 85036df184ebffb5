"""Autoencoders built by hand: a 1-D bottleneck that reconstructs n given points exactly.

Exercise (e) of the course's sheet 6 asks whether an MLP autoencoder with a
one-dimensional bottleneck can reconstruct n points perfectly. It can, and
:func:`memorizing_autoencoder` proves it by construction, with no training:

* the encoder is a linear projection ``z = 2 (w.x - m) / r`` onto a direction
  ``w`` on which the n points project to distinct, well-separated values
  (``m`` and ``r`` centre the codes and scale them into [-1, 1]). It passes
  through the encoder's hidden ReLU layer as the pair ``relu(t) - relu(-t) = t``,
  so the encoder is linear everywhere, not only on the points;
* the decoder is the piecewise-linear curve through the points taken in the
  order of their codes, written as one ReLU hinge per breakpoint:
  ``x_hat(z) = x_(0) + sum_k a_k relu(z - z_(k))`` for k = 0 .. n-2, where
  ``a_k`` is the change of slope at the k-th code.

So the construction needs ``hidden_size >= max(2, n - 1)`` with one hidden
layer on each side (:func:`construction_width`), whatever the dimension d:
a 2-64-1-64-2 net memorises 64 points of the rectangle.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from aelab._checks import check_choice, check_finite, check_positive_int
from aelab.data import Dataset
from aelab.models import Autoencoder

# Candidate directions tried besides the first principal direction: enough that in a few
# dimensions one of them keeps every pair of points well apart (the float32 error falls
# about 10x from 32 to 256 candidates on 64-200 random points), cheap next to the model.
_N_RANDOM_DIRECTIONS = 256
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def construction_width(n: int, d: int) -> int:
    """Hidden width :func:`memorizing_autoencoder` needs for ``n`` points in ``d`` dimensions.

    The decoder needs one ReLU hinge per breakpoint of the piecewise-linear
    curve through the n points, i.e. ``n - 1`` units; the encoder needs two
    units to pass its projection through the ReLU layer (``relu(t) - relu(-t)``),
    whatever ``d`` is. Both sides of an :class:`aelab.Autoencoder` share one
    ``hidden_size``, so the width is ``max(2, n - 1)``.

    Parameters
    ----------
    n : int
        Number of points, >= 2.
    d : int
        Features per point, >= 1 (the width does not depend on it).

    Returns
    -------
    int
        ``max(2, n - 1)``.

    Examples
    --------
    >>> construction_width(64, 2)
    63
    >>> construction_width(2, 784)
    2
    """
    n = _check_int_at_least("n", n, 2)
    _check_int_at_least("d", d, 1)
    return max(2, n - 1)


def memorizing_autoencoder(
    points, hidden_size: int | None = None, *, dtype: torch.dtype = torch.float32
) -> Autoencoder:
    """A hand-built ``d-H-1-H-d`` ReLU autoencoder that reconstructs ``points`` exactly.

    No training: the weights are set so that the encoder projects the points
    onto a direction that separates them and the decoder draws the
    piecewise-linear curve through them in the order of their codes (see the
    module docstring). This answers the course's exercise (e): a 1-D bottleneck
    *can* reconstruct n points perfectly, with width ``max(2, n - 1)``
    (:func:`construction_width`) and one hidden layer each side, so a failing
    trained model fails for lack of training, not of capacity.

    The separating direction is the one, among the first principal direction
    and 256 random directions (fixed seed), that minimises the cancellation
    the decoder's hinges have to do, ``range * sum_k |x_(k+1) - x_(k)| / gap_k``
    for the gaps between neighbouring projections: small gaps mean steep
    segments, large hinge weights and rounding error. Its breakpoints are the
    codes the model's own encoder computes in ``dtype``, and the slopes are
    computed in float64 from those codes and the points as ``dtype`` stores them.

    Precision. The reconstruction is exact in real arithmetic; what is left is
    rounding in the decoder's output sum, where hinges of size ``slope * range``
    cancel. Measured mean squared error per coordinate on uniform points in
    [-2, 2]^d (d = 2, 3, 8, one point set each): float64, about 1e-31 for
    n = 5, 1e-26 for n = 64, 1e-24 to 1e-23 for n = 200; float32, about 1e-14
    for n = 5, 1e-9 for n = 64, 2e-7 to 2e-6 for n = 200. On
    ``aelab.data.rectangle(64, seed)`` with a 2-64-1-64-2 net, seeds 0-9:
    float32 2e-10 to 1.5e-9, float64 8e-28 to 5e-27. float32 cannot reach
    1e-12 for n = 64 with one hidden layer: one ReLU layer can only make a steep
    segment as a difference of two unbounded hinges, so rounding of order
    ``eps * slope * range`` is unavoidable. Use ``dtype=torch.float64`` when you
    need the reconstruction exact to float64 rounding; a float32 model turned
    ``.double()`` afterwards keeps its float32-rounded weights and error.

    Parameters
    ----------
    points : Tensor, array or aelab.data.Dataset, shape (n, d)
        The points to memorise: n >= 2 distinct, finite rows.
    hidden_size : int, optional
        Width of the hidden layer on each side; at least
        ``construction_width(n, d)`` (the default). Units beyond the needed
        ones get zero weights and do nothing.
    dtype : torch.float32 or torch.float64
        Dtype of the model's parameters. float32 matches the rest of aelab
        (``aelab.reconstruction_error`` evaluates in float32); float64 gives
        the exact construction to float64 rounding (evaluate it on float64
        inputs yourself, since ``aelab.reconstruction_error`` casts to float32).

    Returns
    -------
    aelab.Autoencoder
        ``Autoencoder(d, 1, hidden_size, layers=1)`` with the constructed
        weights; its codes for ``points`` span [-1, 1].

    Raises
    ------
    ValueError
        Fewer than 2 points, NaN or infinite values, duplicate points (no
        projection separates two equal points, so no 1-D code can tell them
        apart), points too close to be told apart in ``dtype``, or
        ``hidden_size`` below the width the construction needs.
    TypeError
        ``points`` not numeric, ``hidden_size`` not an int.

    Examples
    --------
    >>> import aelab
    >>> X = aelab.data.rectangle(64).X
    >>> model = memorizing_autoencoder(X, hidden_size=64)   # 2-64-1-64-2
    >>> aelab.reconstruction_error(model, X) < 1e-7
    True
    >>> model64 = memorizing_autoencoder(X, hidden_size=64, dtype=torch.float64)
    >>> X64 = X.double()
    >>> with torch.no_grad():
    ...     mse64 = float(((model64(X64) - X64) ** 2).mean())
    >>> mse64 < 1e-20
    True
    """
    check_choice("dtype", dtype, _DTYPES)
    X = _as_points(points, dtype)  # float64 copy of the points as `dtype` stores them
    n, d = X.shape
    needed = construction_width(n, d)
    if hidden_size is None:
        hidden_size = needed
    hidden_size = check_positive_int("hidden_size", hidden_size)
    if hidden_size < needed:
        raise ValueError(
            f"hidden_size={hidden_size} is too small to memorise n={n} points: the construction "
            f"needs hidden_size >= {needed} (construction_width(n, d) = max(2, n - 1): one ReLU "
            f"hinge per breakpoint of the decoder); pass hidden_size={needed} or more."
        )
    _check_distinct(X)
    w = _separating_direction(X)
    projections = X @ w
    low, high = projections.min(), projections.max()
    scale = 2.0 / (high - low)  # codes span [-1, 1]
    centre = (high + low) / 2.0

    # building the model draws its random initial weights, all overwritten below;
    # fork_rng keeps that from moving the caller's torch RNG
    with torch.random.fork_rng(devices=[]):
        model = Autoencoder(d, 1, hidden_size, layers=1).to(dtype)
    enc_hidden, enc_out = model.encoder[0], model.encoder[2]
    dec_hidden, dec_out = model.decoder[0], model.decoder[2]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        # encoder: t = scale * (w.x - centre), passed through as relu(t) - relu(-t)
        enc_hidden.weight[0] = torch.from_numpy(w * scale)
        enc_hidden.weight[1] = torch.from_numpy(-w * scale)
        enc_hidden.bias[0] = -centre * scale
        enc_hidden.bias[1] = centre * scale
        enc_out.weight[0, 0] = 1.0
        enc_out.weight[0, 1] = -1.0

        # breakpoints at the codes this model computes in `dtype`, so rounding in the
        # encoder moves the breakpoint with the code instead of off it
        z = model.encode(torch.from_numpy(X).to(dtype))[:, 0].double().numpy()
        order = np.argsort(z, kind="stable")
        z_sorted, x_sorted = z[order], X[order]
        gaps = np.diff(z_sorted)
        if not (gaps > 0).all():
            k = int(np.argmin(gaps))
            i, j = sorted((int(order[k]), int(order[k + 1])))
            raise ValueError(
                f"points rows {i} and {j} are too close to be told apart in {_DTYPES[dtype]}: "
                f"their codes coincide (row {i} = {X[i].tolist()}, row {j} = {X[j].tolist()}); "
                "pass dtype=torch.float64, or drop one of them."
            )
        # decoder: x_hat(z) = x_(0) + sum_k a_k relu(z - z_(k)), a_k the change of slope
        slopes = np.diff(x_sorted, axis=0) / gaps[:, None]  # (n-1, d)
        hinge_weights = np.diff(slopes, axis=0, prepend=np.zeros((1, d)))  # (n-1, d)
        dec_hidden.weight[: n - 1, 0] = 1.0
        dec_hidden.bias[: n - 1] = torch.from_numpy(-z_sorted[:-1])
        dec_out.weight[:, : n - 1] = torch.from_numpy(hinge_weights.T)
        dec_out.bias[:] = torch.from_numpy(x_sorted[0])
    return model


# --- private helpers ---------------------------------------------------------------------------


def _check_int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}.")
    return int(value)


def _as_points(points, dtype: torch.dtype) -> np.ndarray:
    """``points`` as a float64 array [n, d] holding the values a ``dtype`` model sees."""
    if isinstance(points, Dataset):
        points = points.X
    try:
        X = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"points must be a tensor, a numeric array or an aelab.data.Dataset, "
            f"got {type(points).__name__}."
        ) from err
    if X.dtype == torch.bool or X.is_complex():
        raise TypeError(f"points must hold real numbers, got dtype {X.dtype}.")
    if X.ndim != 2:
        raise ValueError(
            f"points must be 2-D (n, d), got shape {tuple(X.shape)}; "
            "reshape a single feature with X.reshape(-1, 1)."
        )
    if len(X) < 2:
        raise ValueError(
            f"points must hold at least 2 rows to memorise, got {len(X)}; "
            "one point needs no code at all."
        )
    X = X.detach().cpu().to(torch.float64)
    check_finite("points", X)
    return X.to(dtype).double().numpy()


def _check_distinct(X: np.ndarray) -> None:
    """Equal rows project to equal codes on every direction: no 1-D code separates them."""
    _, first, counts = np.unique(X, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        row = X[first[np.argmax(counts > 1)]]
        equal = np.flatnonzero((X == row).all(axis=1))
        raise ValueError(
            f"points holds duplicate rows {equal.tolist()} (value {row.tolist()}, "
            f"{int((counts - 1).sum())} duplicates in all): no projection separates equal points, "
            "so no 1-D code can tell them apart; pass distinct points (e.g. np.unique(X, axis=0))."
        )


def _separating_direction(X: np.ndarray) -> np.ndarray:
    """Unit direction whose projections of ``X`` need the least hinge cancellation."""
    n, d = X.shape
    if d == 1:
        return np.ones(1)
    centred = X - X.mean(axis=0)
    principal = np.linalg.svd(centred, full_matrices=False)[2][:1]  # (1, d)
    random = np.random.default_rng(0).standard_normal((_N_RANDOM_DIRECTIONS, d))
    candidates = np.vstack([principal, random])
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    best, best_score = None, np.inf
    for w in candidates:
        projections = X @ w
        order = np.argsort(projections, kind="stable")
        gaps = np.diff(projections[order])
        if not (gaps > 0).all():
            continue
        steps = np.linalg.norm(np.diff(X[order], axis=0), axis=1)
        # sum of |slopes| times the code range: bounds the size of the hinge terms that
        # cancel in the decoder's output, hence its rounding error; scale-free in w
        score = (projections[order[-1]] - projections[order[0]]) * np.sum(steps / gaps)
        if score < best_score:
            best, best_score = w, score
    if best is None:
        raise ValueError(
            f"points: none of {len(candidates)} directions separates all {n} points (some "
            "are closer than float64 can resolve after projection); drop near-duplicate points."
        )
    return best
