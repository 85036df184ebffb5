"""Sample quality: how well generated points match held-out real data.

Three measures, each comparing a generated sample with a real one:

- :func:`mmd2` -- the kernel two-sample distance: squared maximum mean
  discrepancy with a sum of kernels at several bandwidths; 0 when the two
  distributions are equal, larger the more they differ.
- :func:`coverage` -- precision (the share of generated points that fall near
  some real point) and recall (the share of real points that fall near some
  generated point), "near" meaning within that point's k-th-nearest-neighbour
  radius, as in Kynkäänniemi et al. (2019).
- :func:`moons_distance` -- for two moons only, the mean Euclidean distance of
  the generated points to the noise-free moons curve.

:func:`sample_quality` computes all of them at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from aelab._checks import check_int, check_positive_int
from aelab.evaluate import as_matrix

__all__ = [
    "mmd2",
    "median_bandwidths",
    "Coverage",
    "coverage",
    "distance_to_moons",
    "moons_distance",
    "SampleQuality",
    "sample_quality",
]

# multiples of the median pairwise distance used as MMD bandwidths: the same
# factor-of-two ladder as aelab.losses.DEFAULT_BANDWIDTHS, scaled to the data
MEDIAN_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
_CHUNK_ELEMENTS = 2**22  # distance-matrix entries computed at once (32 MiB in float64)


def _subsample(X: torch.Tensor, max_samples: int, generator: torch.Generator) -> torch.Tensor:
    if len(X) <= max_samples:
        return X
    return X[torch.randperm(len(X), generator=generator)[:max_samples]]


def _as_float64(X, checked: torch.Tensor) -> torch.Tensor:
    """``X``, already validated as ``checked`` (float32), as float64 without losing float64 input digits."""
    from aelab.data import Dataset

    if isinstance(X, Dataset):
        X = X.X
    if isinstance(X, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(X).detach().to("cpu", torch.float64)
    return checked.double()


def median_bandwidths(real, max_samples: int = 1000) -> tuple[float, ...]:
    """MMD bandwidths scaled to the data: the median pairwise distance of ``real`` times 1/4..4.

    The median heuristic (Gretton et al., JMLR 2012) makes one MMD setting work
    for two moons and for 64-pixel digits alike. At most ``max_samples`` rows
    (the first ones) are used.

    >>> median_bandwidths(torch.tensor([[0.0], [1.0], [2.0]]))
    (0.25, 0.5, 1.0, 2.0, 4.0)
    """
    X = _as_float64(real, as_matrix("real", real))[:max_samples]
    if len(X) < 2:
        raise ValueError("real must hold at least 2 samples to have a pairwise distance, got 1.")
    d = torch.pdist(X)
    median = float(d.median()) if len(d) else 0.0
    if median <= 0:  # more than half the points coincide: fall back on the mean distance
        median = float(d.mean())
    if median <= 0:
        raise ValueError(
            "all points of real are identical; no bandwidth can be derived from "
            "them. Pass explicit bandwidths."
        )
    return tuple(f * median for f in MEDIAN_FACTORS)


def mmd2(
    generated,
    real,
    *,
    kernel: str = "imq",
    bandwidths="median",
    max_samples: int = 2000,
    seed: int = 0,
) -> float:
    """Squared maximum mean discrepancy between generated and real points (0 means same distribution).

    The unbiased estimate of :func:`aelab.losses.mmd` (it can be slightly
    negative when the distributions match), with the kernel summed over several
    bandwidths. It is computed in float64 after centring both samples on the
    real sample's mean. Centring changes nothing exactly (the kernels depend
    only on differences of points) and, with float64, keeps data far from the
    origin from losing the small distances to rounding.

    Parameters
    ----------
    generated, real : Tensor, array or Dataset, shape (n, d) and (m, d)
        At least 2 samples each.
    kernel : {"imq", "rbf"}
        Kernel family, as in :func:`aelab.losses.mmd`.
    bandwidths : "median", float or sequence of float
        ``"median"`` (default): :func:`median_bandwidths` of ``real``. Numbers are
        passed to :func:`aelab.losses.mmd` as they are.
    max_samples : int
        Each sample is randomly subsampled to at most this many points (the
        cost is quadratic in it).
    seed : int
        Seeds the subsampling.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.randn(500, 2, generator=g)
    >>> abs(mmd2(torch.randn(500, 2, generator=g), real)) < 0.01
    True
    >>> mmd2(torch.randn(500, 2, generator=g) + 2, real) > 0.1
    True
    """
    from aelab.losses import mmd

    real = _as_float64(real, as_matrix("real", real))
    d = real.shape[1]
    generated = _as_float64(generated, as_matrix("generated", generated, d, f"real has {d}"))
    max_samples = check_int("max_samples", max_samples, 2)
    check_int("seed", seed, 0)
    if isinstance(bandwidths, str):
        if bandwidths != "median":
            raise ValueError(
                f"bandwidths must be 'median' or positive numbers, got {bandwidths!r}."
            )
        bandwidths = median_bandwidths(real)
    g = torch.Generator().manual_seed(seed)
    generated = _subsample(generated, max_samples, g)
    real = _subsample(real, max_samples, g)
    centre = real.mean(0)
    return float(mmd(generated - centre, real - centre, kernel=kernel, bandwidths=bandwidths))


@dataclass(frozen=True)
class Coverage:
    """Nearest-neighbour precision and recall of a generated sample (both in [0, 1])."""

    precision: float  # share of generated points within some real point's k-NN radius
    recall: float  # share of real points within some generated point's k-NN radius
    k: int


def _knn_radii(X: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``X`` to its k-th nearest other row, shape (n,)."""
    radii = []
    step = max(1, _CHUNK_ELEMENTS // len(X))
    for chunk in X.split(step):
        d = torch.cdist(chunk, X)  # (c, n); each row's own 0 distance is among them
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside_any_ball(
    points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    """Whether each point lies within distance ``radii[j]`` of some ``centres[j]``, shape (n,)."""
    inside = []
    step = max(1, _CHUNK_ELEMENTS // len(centres))
    for chunk in points.split(step):
        inside.append((torch.cdist(chunk, centres) <= radii).any(1))
    return torch.cat(inside)


def coverage(generated, real, *, k: int = 3) -> Coverage:
    """Nearest-neighbour precision and recall of generated points against real ones.

    Each point's neighbourhood is the ball reaching its ``k``-th nearest
    neighbour within its own sample. Precision is the share of generated
    points inside some real point's ball (are the samples realistic?); recall
    is the share of real points inside some generated point's ball (is all of
    the data covered?). This is the improved precision and recall of
    Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing
    Generative Models", NeurIPS 2019, computed here on the raw features rather
    than on a network's embedding; the paper uses k = 3. Compare samples of
    equal size: the radii shrink as a sample grows.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.randn(300, 2, generator=g)
    >>> coverage(real, real).precision
    1.0
    >>> c = coverage(0.1 * torch.randn(300, 2, generator=g), real)  # collapsed samples
    >>> c.precision > 0.9, c.recall < 0.3
    (True, True)
    """
    real = as_matrix("real", real).double()
    d = real.shape[1]
    generated = as_matrix("generated", generated, d, f"real has {d}").double()
    k = check_positive_int("k", k)
    for name, X in (("generated", generated), ("real", real)):
        if len(X) <= k:
            raise ValueError(
                f"{name} has {len(X)} samples; k={k} nearest neighbours need more "
                f"than k. Use more samples or a smaller k."
            )
    precision = _inside_any_ball(generated, real, _knn_radii(real, k)).double().mean()
    recall = _inside_any_ball(real, generated, _knn_radii(generated, k)).double().mean()
    return Coverage(precision=float(precision), recall=float(recall), k=k)


# the noise-free curve of sklearn.datasets.make_moons (and aelab.data.moons_curve):
# moon 0 is the upper half of the unit circle around (0, 0), moon 1 the lower half
# of the unit circle around (1, 0.5)
MOON_CENTRES = ((0.0, 0.0), (1.0, 0.5))
_MOON_SIDES = (1.0, -1.0)  # sign of y - centre_y on each moon's arc


def _distance_to_half_circle(X: torch.Tensor, centre, side: float) -> torch.Tensor:
    v = X - torch.tensor(centre, dtype=X.dtype)
    on_arc_side = side * v[:, 1] >= 0
    # on the arc's side the nearest point of the full circle lies on the arc;
    # elsewhere the nearest arc point is one of its two ends, (+-1, 0) from the centre
    to_circle = (v.norm(dim=1) - 1).abs()
    ends = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=X.dtype)
    to_ends = torch.cdist(v, ends).min(1).values
    return torch.where(on_arc_side, to_circle, to_ends)


def distance_to_moons(X) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distance of each point to the noise-free two-moons curve, and the nearer moon.

    The curve is that of ``sklearn.datasets.make_moons`` (and
    :func:`aelab.data.moons_curve`): two half circles of radius 1, the upper
    one (label 0) centred at (0, 0), the lower one (label 1) at (1, 0.5). The
    distance is computed in closed form, so it has no resolution error.

    Returns
    -------
    distance : Tensor, shape (n_samples,)
    moon : Tensor of int64, shape (n_samples,)
        0 or 1, the label ``aelab.data.moons`` gives points of the nearer moon.

    Examples
    --------
    >>> distance_to_moons(torch.tensor([[0.0, 1.0], [1.0, -0.5], [0.0, 2.0]]))
    (tensor([0., 0., 1.]), tensor([0, 1, 0]))
    """
    X = as_matrix("X", X, 2, "two moons are 2-D").double()
    per_moon = torch.stack(
        [_distance_to_half_circle(X, c, s) for c, s in zip(MOON_CENTRES, _MOON_SIDES)], 1
    )  # (n, 2)
    distance, moon = per_moon.min(1)
    return distance.float(), moon


def moons_distance(X) -> float:
    """Mean distance of the points ``X`` to the noise-free two-moons curve (0 = exactly on it).

    >>> import aelab
    >>> round(moons_distance(aelab.data.moons_curve()), 6)
    0.0
    """
    return float(distance_to_moons(X)[0].double().mean())


@dataclass(frozen=True)
class SampleQuality:
    """All sample-quality numbers for one generated sample (see the module docstring)."""

    mmd2: float
    precision: float
    recall: float
    moons_distance: float | None  # two moons only
    n_generated: int
    n_real: int

    def to_dict(self) -> dict:
        return asdict(self)


def sample_quality(
    generated,
    real,
    *,
    k: int = 3,
    kernel: str = "imq",
    bandwidths="median",
    moons: bool = False,
    seed: int = 0,
) -> SampleQuality:
    """MMD², k-NN precision and recall, and (``moons=True``) the distance to the moons curve.

    >>> import aelab
    >>> real, fake = aelab.data.moons(300, seed=1).X, aelab.data.moons(300, seed=2).X
    >>> q = sample_quality(fake, real, moons=True)
    >>> q.precision > 0.8 and q.recall > 0.8 and q.moons_distance < 0.1
    True
    """
    generated = as_matrix("generated", generated)
    real = as_matrix("real", real)
    cov = coverage(generated, real, k=k)
    return SampleQuality(
        mmd2=mmd2(generated, real, kernel=kernel, bandwidths=bandwidths, seed=seed),
        precision=cov.precision,
        recall=cov.recall,
        moons_distance=moons_distance(generated) if moons else None,
        n_generated=len(generated),
        n_real=len(real),
    )
