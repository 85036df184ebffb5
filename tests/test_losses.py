import math

import numpy as np
import pytest
import torch

import aelab
from aelab.losses import (
    DEFAULT_BANDWIDTHS,
    bernoulli_reconstruction,
    gaussian_kl,
    gaussian_reconstruction,
    mmd,
    mse_reconstruction,
)


def _direct_mmd(x, y, kernel, bandwidths):
    """The U-statistic written out pair by pair, O(n^2) Python loops."""

    def k(a, b):
        d2 = float(((a - b) ** 2).sum())
        if kernel == "rbf":
            return sum(math.exp(-d2 / (2 * h * h)) for h in bandwidths)
        return sum(h * h / (h * h + d2) for h in bandwidths)

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("bandwidths", [None, (0.7,), [0.5, 3.0]])
def test_mmd_equals_direct_computation(kernel, bandwidths):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(17, 3, generator=g, dtype=torch.float64)
    y = torch.randn(11, 3, generator=g, dtype=torch.float64) * 1.5 + 0.3
    expected = _direct_mmd(x, y, kernel, bandwidths or DEFAULT_BANDWIDTHS)
    assert float(mmd(x, y, kernel, bandwidths)) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_mmd_float32_matches_float64():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, 2, generator=g), torch.randn(30, 2, generator=g) + 1
    assert float(mmd(x, y)) == pytest.approx(float(mmd(x.double(), y.double())), abs=1e-5)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_is_symmetric(kernel):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(25, 4, generator=g), torch.randn(31, 4, generator=g) * 2
    assert float(mmd(x, y, kernel)) == pytest.approx(float(mmd(y, x, kernel)), abs=1e-6)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_averages_zero_for_one_distribution(kernel):
    # unbiased: single estimates scatter around 0 (some negative), their mean is ~0
    g = torch.Generator().manual_seed(4)
    values = torch.stack(
        [
            mmd(torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g), kernel)
            for _ in range(200)
        ]
    )
    shifted = float(
        mmd(torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g) + 0.5, kernel)
    )
    assert (values < 0).any()
    assert abs(float(values.mean())) < 4 * float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean())) < 0.05 * shifted


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_grows_with_shift(kernel):
    g = torch.Generator().manual_seed(5)
    x, e = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
    values = [float(mmd(x, e + torch.tensor([s, 0.0]), kernel)) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] < 0.02 < values[1]


def test_mmd_is_differentiable():
    x = torch.randn(20, 2, requires_grad=True)
    mmd(x, torch.randn(20, 2) + 1).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_mmd_is_exported():
    assert aelab.mmd is mmd


def test_default_bandwidths_double():
    b = DEFAULT_BANDWIDTHS
    assert 3 <= len(b) <= 7
    assert all(h2 == 2 * h1 for h1, h2 in zip(b, b[1:]))


@pytest.mark.parametrize("kernel", ["gauss", "RBF", None])
def test_mmd_rejects_unknown_kernel(kernel):
    with pytest.raises(ValueError, match=r"kernel must be one of \['imq', 'rbf'\]"):
        mmd(torch.randn(5, 2), torch.randn(5, 2), kernel=kernel)


@pytest.mark.parametrize("bandwidths", [0, -1.0, (1.0, 0.0), [float("nan")], (), "1"])
def test_mmd_rejects_bad_bandwidths(bandwidths):
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(torch.randn(5, 2), torch.randn(5, 2), bandwidths=bandwidths)


def test_mmd_promotes_integer_samples_to_float():
    # integer inputs used to cast the bandwidths to int (0.25 -> 0) and return NaN
    x = torch.tensor([[0, 1], [2, 0], [1, 1], [3, 2]])
    y = torch.tensor([[1, 1], [0, 0], [2, 2]])
    value = mmd(x, y)
    assert value.dtype == torch.get_default_dtype()
    assert float(value) == pytest.approx(
        _direct_mmd(x.double(), y.double(), "imq", DEFAULT_BANDWIDTHS), rel=1e-6
    )


def test_mmd_accepts_bandwidths_as_arrays_and_numpy_numbers():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(9, 2, generator=g), torch.randn(8, 2, generator=g) + 0.5
    expected = float(mmd(x, y, bandwidths=(0.5, 3.0)))
    for bandwidths in (
        np.array([0.5, 3.0]),
        np.array([0.5, 3.0], dtype=np.float32),
        [np.float32(0.5), np.int64(3)],
        torch.tensor([0.5, 3.0]),
    ):
        assert float(mmd(x, y, bandwidths=bandwidths)) == pytest.approx(expected, rel=1e-6)
    assert float(mmd(x, y, bandwidths=np.float64(0.5))) == pytest.approx(
        float(mmd(x, y, bandwidths=0.5)), rel=1e-6
    )
    with pytest.raises(ValueError, match=r"bandwidths must be 1-D, got an array of shape \(2, 1\)"):
        mmd(x, y, bandwidths=np.array([[0.5], [3.0]]))
    with pytest.raises(ValueError, match="every bandwidth must be a finite number > 0"):
        mmd(x, y, bandwidths=np.array([0.5, -1.0]))


def test_mmd_rejects_bad_samples():
    with pytest.raises(ValueError, match="same number of features"):
        mmd(torch.randn(5, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd(torch.randn(1, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"2-D \[n_samples, n_features\]"):
        mmd(torch.randn(5), torch.randn(5, 2))


def test_gaussian_kl_equals_torch_distributions():
    g = torch.Generator().manual_seed(6)
    mu, logvar = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(expected), rel=1e-5)


def test_gaussian_reconstruction_is_gaussian_nll_up_to_a_constant():
    g = torch.Generator().manual_seed(7)
    x_hat, x = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    nll = -torch.distributions.Normal(x_hat, math.sqrt(0.5)).log_prob(x).sum(1).mean()
    constant = 5 * 0.5 * math.log(math.pi)  # d/2 log(2 pi sigma^2) with sigma^2 = 1/2
    assert float(gaussian_reconstruction(x_hat, x)) == pytest.approx(
        float(nll) - constant, rel=1e-5
    )


def test_bernoulli_reconstruction_is_bernoulli_nll():
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(6, 5, generator=g) * 3
    x = (torch.rand(6, 5, generator=g) > 0.5).float()
    nll = -torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(1).mean()
    assert float(bernoulli_reconstruction(logits, x)) == pytest.approx(float(nll), rel=1e-5)


def test_mse_reconstruction_is_mean_over_elements():
    assert float(mse_reconstruction(torch.full((2, 4), 3.0), torch.ones(2, 4))) == 4.0


# --- issue 14, item 6: mmd refuses data it cannot give a number for -------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["x", "y"])
def test_mmd_refuses_nan_and_inf(bad, which):
    x, y = torch.randn(5, 2), torch.randn(6, 2)
    (x if which == "x" else y)[2, 1] = bad
    with pytest.raises(ValueError, match=f"{which} contains"):
        mmd(x, y)


def test_mmd_refuses_complex_and_overflowing_samples():
    with pytest.raises(TypeError, match="x must hold real numbers, got dtype torch.complex64"):
        mmd(torch.zeros(3, 2, dtype=torch.complex64), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="squared distances overflow float32"):
        mmd(torch.full((3, 2), 1e30), torch.zeros(3, 2))
    # the same samples in float64 are fine
    assert torch.isfinite(
        mmd(torch.full((3, 2), 1e30, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64))
    )
