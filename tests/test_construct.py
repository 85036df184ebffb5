import numpy as np
import pytest
import torch

import aelab
from aelab.construct import construction_width, memorizing_autoencoder


def mse(model, X):
    """Mean squared reconstruction error, computed in the model's own dtype."""
    dtype = next(model.parameters()).dtype
    X = torch.as_tensor(X).to(dtype)
    with torch.no_grad():
        return float(((model(X) - X) ** 2).mean())


def uniform_points(n, d, seed):
    return np.random.default_rng(seed).uniform(-2, 2, (n, d))


@pytest.mark.parametrize("n", [2, 5, 64, 200])
@pytest.mark.parametrize("d", [2, 3, 8])
def test_float64_construction_reconstructs_random_points_exactly(n, d):
    X = uniform_points(n, d, seed=n * 10 + d)
    model = memorizing_autoencoder(X, dtype=torch.float64)
    assert mse(model, X) < 1e-12
    # each point individually, not only on average
    with torch.no_grad():
        err = (model(torch.as_tensor(X)) - torch.as_tensor(X)).abs().max()
    assert float(err) < 1e-8


@pytest.mark.parametrize("n, bound", [(2, 1e-12), (5, 1e-12), (64, 1e-7), (200, 1e-5)])
@pytest.mark.parametrize("d", [2, 3, 8])
def test_float32_construction_reaches_the_documented_precision(n, d, bound):
    X = uniform_points(n, d, seed=n * 10 + d)
    model = memorizing_autoencoder(X)
    assert next(model.parameters()).dtype == torch.float32
    assert aelab.reconstruction_error(model, torch.as_tensor(X, dtype=torch.float32)) < bound


def test_rectangle_64_points_on_a_2_64_1_64_2_net():
    X = aelab.data.rectangle(64).X
    model32 = memorizing_autoencoder(X, hidden_size=64)
    model64 = memorizing_autoencoder(X, hidden_size=64, dtype=torch.float64)
    for model in (model32, model64):
        assert isinstance(model, aelab.Autoencoder)
        assert model.init_args == dict(input_size=2, bottleneck_size=1, hidden_size=64, layers=1)
    assert aelab.reconstruction_error(model32, X) < 1e-8
    assert mse(model64, X) < 1e-20


def test_encoder_is_a_linear_projection_onto_codes_in_minus_one_one():
    X = torch.as_tensor(uniform_points(50, 3, seed=1))
    model = memorizing_autoencoder(X, dtype=torch.float64)
    with torch.no_grad():
        z = model.encode(X)[:, 0]
        # linear everywhere, also far outside the data:
        # encode(a + b) = encode(a) + encode(b) - encode(0)
        a = 10 * torch.randn(20, 3, dtype=torch.float64)
        b = 10 * torch.randn(20, 3, dtype=torch.float64)
        zero = torch.zeros(1, 3, dtype=torch.float64)
        lhs = model.encode(a + b)
        rhs = model.encode(a) + model.encode(b) - model.encode(zero)
    assert torch.allclose(lhs, rhs, atol=1e-10)
    assert float(z.min()) == pytest.approx(-1.0) and float(z.max()) == pytest.approx(1.0)
    assert len(torch.unique(z)) == len(X)


def test_decoder_interpolates_linearly_between_neighbouring_codes():
    X = torch.as_tensor(uniform_points(6, 2, seed=2))
    model = memorizing_autoencoder(X, dtype=torch.float64)
    with torch.no_grad():
        z = model.encode(X)[:, 0]
        order = torch.argsort(z)
        z0, z1 = z[order[2]], z[order[3]]
        mid = model.decode(((z0 + z1) / 2).reshape(1, 1))[0]
    assert torch.allclose(mid, (X[order[2]] + X[order[3]]) / 2, atol=1e-12)


@pytest.mark.parametrize(
    "n, d, expected", [(2, 1, 2), (2, 784, 2), (3, 2, 2), (64, 2, 63), (200, 8, 199)]
)
def test_construction_width(n, d, expected):
    assert construction_width(n, d) == expected


@pytest.mark.parametrize("n, d", [(2, 2), (3, 1), (64, 2), (17, 5)])
def test_default_width_is_the_construction_width(n, d):
    X = uniform_points(n, d, seed=3)
    model = memorizing_autoencoder(X)
    assert model.init_args == dict(
        input_size=d, bottleneck_size=1, hidden_size=construction_width(n, d), layers=1
    )
    assert mse(model, X) < 1e-6


def test_minimal_width_is_enough_and_one_less_is_refused():
    X = uniform_points(30, 2, seed=4)
    assert mse(memorizing_autoencoder(X, hidden_size=29, dtype=torch.float64), X) < 1e-12
    with pytest.raises(ValueError, match=r"hidden_size=28 .*needs hidden_size >= 29"):
        memorizing_autoencoder(X, hidden_size=28)


def test_accepts_datasets_tensors_arrays_and_integer_points():
    ds = aelab.data.moons(40)
    assert mse(memorizing_autoencoder(ds), ds.X) < 1e-6
    grid = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 3]])  # integer points
    assert mse(memorizing_autoencoder(grid, dtype=torch.float64), grid) < 1e-20


def test_caller_random_state_is_left_alone_and_result_is_deterministic():
    X = uniform_points(20, 2, seed=5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = memorizing_autoencoder(X)
    assert torch.equal(torch.rand(3), expected)
    b = memorizing_autoencoder(X)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_saved_and_loaded_model_keeps_its_reconstruction(tmp_path):
    X = aelab.data.rectangle(16).X
    model = memorizing_autoencoder(X)
    aelab.save(model, tmp_path / "m.pt")
    loaded = aelab.load(tmp_path / "m.pt")
    assert aelab.reconstruction_error(loaded, X) == aelab.reconstruction_error(model, X)


@pytest.mark.parametrize(
    "points, error, match",
    [
        (np.zeros((1, 2)), ValueError, "at least 2 rows"),
        (np.zeros(5), ValueError, r"2-D \(n, d\)"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), ValueError, "NaN"),
        (np.array([[0.0, 1.0], [np.inf, 0.0]]), ValueError, "infinite"),
        (
            np.array([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0]]),
            ValueError,
            r"duplicate rows \[0, 2\].*no projection separates",
        ),
        (np.array([[True, False], [False, True]]), TypeError, "real numbers"),
        ([["a", "b"], ["c", "d"]], TypeError, "points must be"),
    ],
)
def test_bad_points_raise(points, error, match):
    with pytest.raises(error, match=match):
        memorizing_autoencoder(points)


def test_points_distinct_only_in_float64_are_refused_in_float32():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0 + 1e-12, 1.0]])
    assert mse(memorizing_autoencoder(X, dtype=torch.float64), X) < 1e-20
    with pytest.raises(ValueError, match="duplicate rows"):
        memorizing_autoencoder(X)  # float32 rounds rows 1 and 2 to the same point


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(hidden_size=1), ValueError, r"hidden_size=1 .*>= 4"),
        (dict(hidden_size=0), ValueError, "hidden_size must be an int >= 1"),
        (dict(hidden_size=4.0), TypeError, "hidden_size must be an int"),
        (dict(dtype=torch.float16), ValueError, "dtype must be one of"),
    ],
)
def test_bad_options_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        memorizing_autoencoder(uniform_points(5, 2, seed=6), **kwargs)


@pytest.mark.parametrize(
    "n, d, error, match",
    [
        (1, 2, ValueError, "n must be an int >= 2, got 1"),
        (5, 0, ValueError, "d must be an int >= 1, got 0"),
        (5.0, 2, TypeError, "n must be an int"),
    ],
)
def test_construction_width_bad_input(n, d, error, match):
    with pytest.raises(error, match=match):
        construction_width(n, d)


def test_public_names():
    assert aelab.memorizing_autoencoder is memorizing_autoencoder
    assert aelab.construction_width is construction_width
    assert {"memorizing_autoencoder", "construction_width"} <= set(aelab.__all__)
