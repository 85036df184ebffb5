"""Sample-quality measures against brute force, aelab.losses.mmd and known cases."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons

import aelab
from aelab.losses import mmd
from aelab.quality import (
    coverage,
    distance_to_moons,
    median_bandwidths,
    mmd2,
    moons_distance,
    sample_quality,
)


def _normal(n, d=2, seed=0, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g) + shift


# --- MMD² --------------------------------------------------------------------------------------


def test_mmd2_of_equal_samples_is_about_zero_and_grows_with_the_difference():
    real = _normal(400)
    # the unbiased estimate of a sample against itself is -2 (mean k(x, x) - mean k(x, x')) / n:
    # slightly negative, bounded by 2 * 5 bandwidths / 400 = 0.025
    assert -0.02 < mmd2(real, real) <= 0
    assert abs(mmd2(_normal(400, seed=1), real)) < 0.02
    shifted = [mmd2(_normal(400, seed=1, shift=s), real) for s in (0.5, 1.0, 2.0)]
    assert 0.02 < shifted[0] < shifted[1] < shifted[2]
    assert mmd2(_normal(400, seed=1, scale=0.3), real) > 0.05  # a collapsed sample is caught


def test_mmd2_is_aelab_mmd_with_median_bandwidths():
    x, y = _normal(300, d=3, seed=1), _normal(200, d=3, seed=2, shift=0.3)
    for kernel in ("imq", "rbf"):
        expected = float(mmd(x, y, kernel=kernel, bandwidths=median_bandwidths(y)))
        assert mmd2(x, y, kernel=kernel) == pytest.approx(expected, rel=1e-5)
        assert mmd2(x, y, kernel=kernel, bandwidths=(0.5, 1.0)) == pytest.approx(
            float(mmd(x, y, kernel=kernel, bandwidths=(0.5, 1.0))), rel=1e-5
        )


def test_mmd2_keeps_its_precision_far_from_the_origin():
    x, y = _normal(300, seed=1, shift=0.2), _normal(300, seed=2)
    # float64 oracle on the same (float32) points, with the same bandwidths
    oracle = float(
        mmd((x + 1000).double(), (y + 1000).double(), bandwidths=median_bandwidths(y + 1000))
    )
    assert mmd2(x + 1000, y + 1000) == pytest.approx(oracle, rel=1e-6)
    # and shifting both samples changes nothing (float32 arithmetic was off by ~30% here)
    assert mmd2(x + 1000, y + 1000) == pytest.approx(mmd2(x, y), rel=1e-3)
    # float64 input keeps its digits even where float32 cannot hold them (spacing 1 at 1e7)
    x64, y64 = x.double(), y.double()
    assert mmd2(x64 + 1e7, y64 + 1e7) == pytest.approx(mmd2(x64, y64), rel=1e-6)
    assert mmd2((x64 + 1e7).numpy(), (y64 + 1e7).numpy()) == pytest.approx(mmd2(x64, y64), rel=1e-6)


def test_median_bandwidths_make_mmd2_scale_free():
    x, y = _normal(300, seed=1, shift=0.4), _normal(300, seed=2)
    assert mmd2(100 * x, 100 * y) == pytest.approx(mmd2(x, y), rel=1e-4)
    median = float(torch.pdist(y.double()).median())
    assert median_bandwidths(y) == pytest.approx(tuple(f * median for f in (0.25, 0.5, 1, 2, 4)))


def test_mmd2_subsamples_reproducibly():
    x, y = _normal(600, seed=1, shift=0.3), _normal(500, seed=2)
    assert mmd2(x, y, max_samples=100, seed=3) == mmd2(x, y, max_samples=100, seed=3)
    assert mmd2(x, y, max_samples=100, seed=3) != mmd2(x, y, max_samples=100, seed=4)


def test_mmd2_bad_input():
    real = _normal(50)
    with pytest.raises(
        ValueError, match="generated has 3 features per sample, expected 2; real has 2"
    ):
        mmd2(_normal(50, d=3), real)
    with pytest.raises(
        ValueError, match="bandwidths must be 'median' or positive numbers, got 'mean'"
    ):
        mmd2(real, real, bandwidths="mean")
    with pytest.raises(ValueError, match="kernel must be one of"):
        mmd2(real, real, kernel="linear")
    with pytest.raises(ValueError, match="all points of real are identical"):
        mmd2(real, torch.ones(10, 2))


# --- k-NN precision and recall -------------------------------------------------------------------


def _brute_force_coverage(generated, real, k):
    def radii(X):
        d = np.linalg.norm(X[:, None] - X[None], axis=2)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(points, centres, r):
        d = np.linalg.norm(points[:, None] - centres[None], axis=2)
        return np.mean([(d[i] <= r).any() for i in range(len(points))])

    return inside(generated, real, radii(real)), inside(real, generated, radii(generated))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_coverage_matches_brute_force(k):
    generated, real = _normal(120, seed=1, shift=1.5, scale=0.5), _normal(150, seed=2)
    precision, recall = _brute_force_coverage(generated.double().numpy(), real.double().numpy(), k)
    c = coverage(generated, real, k=k)
    assert (c.precision, c.recall, c.k) == (pytest.approx(precision), pytest.approx(recall), k)
    assert 0 < c.precision < 1 and 0 < c.recall < 1


def test_coverage_known_cases():
    real = _normal(300)
    assert coverage(real, real) == coverage(real.numpy(), real)
    assert (coverage(real, real).precision, coverage(real, real).recall) == (1.0, 1.0)
    collapsed = coverage(_normal(300, seed=1, scale=0.1), real)
    assert collapsed.precision > 0.9 and collapsed.recall < 0.3
    far = coverage(_normal(300, seed=1, shift=20.0), real)
    assert (far.precision, far.recall) == (0.0, 0.0)


def test_coverage_bad_input():
    with pytest.raises(
        ValueError, match="real has 3 samples; k=3 nearest neighbours need more than k"
    ):
        coverage(_normal(10), _normal(3))
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        coverage(_normal(10), _normal(10), k=0)
    with pytest.raises(ValueError, match="generated must be 2-D"):
        coverage(torch.zeros(10), _normal(10))


# --- distance to the two-moons curve -------------------------------------------------------------


def test_distance_to_moons_is_exact_against_a_dense_curve():
    points = torch.rand(500, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [4.0, 3.0]
    ) - torch.tensor([1.5, 1.25])
    curve = aelab.data.moons_curve(40_000)  # spacing pi / 19999 = 1.6e-4 along each moon
    brute, brute_moon = torch.cdist(points.double(), curve.double()).min(1)
    exact, moon = distance_to_moons(points)
    gap = brute - exact.double()
    assert gap.min() > -1e-5 and gap.max() < 1e-4  # points can only be further from a sampled curve
    clear = (brute_moon // 20_000) == moon
    assert clear.float().mean() > 0.99  # disagreements only where both moons are equally near


def test_distance_to_moons_labels_like_make_moons():
    X, y = make_moons(400, noise=0.0, random_state=0)
    distance, moon = distance_to_moons(X)
    assert distance.max() < 1e-6
    # the moons do not intersect, so a noise-free point's nearer moon is its own
    assert torch.equal(moon, torch.from_numpy(y))


def test_moons_distance_grows_with_noise():
    values = [
        moons_distance(aelab.data.moons(1000, noise=s, seed=0)) for s in (0.0, 0.05, 0.1, 0.2)
    ]
    assert values[0] < 1e-6
    assert values[1] < values[2] < values[3]
    # Gaussian noise of sd s moves a point off a (locally straight) curve by |N(0, s^2)| on average
    assert values[1] == pytest.approx(0.05 * np.sqrt(2 / np.pi), rel=0.15)


def test_distance_to_moons_needs_2d_points():
    with pytest.raises(
        ValueError, match="X has 3 features per sample, expected 2; two moons are 2-D"
    ):
        distance_to_moons(torch.zeros(4, 3))


# --- everything at once ------------------------------------------------------------------------


def test_sample_quality_collects_all_measures():
    real, fake = aelab.data.moons(300, seed=1), aelab.data.moons(200, seed=2).X
    q = sample_quality(fake, real, moons=True)
    assert q.mmd2 == pytest.approx(mmd2(fake, real))
    c = coverage(fake, real)
    assert (q.precision, q.recall) == (c.precision, c.recall)
    assert q.moons_distance == pytest.approx(moons_distance(fake))
    assert (q.n_generated, q.n_real) == (200, 300)
    assert sample_quality(fake, real).moons_distance is None
    assert set(q.to_dict()) == {
        "mmd2",
        "precision",
        "recall",
        "moons_distance",
        "n_generated",
        "n_real",
    }
