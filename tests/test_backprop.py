"""backprop_table: hand-computed backpropagation against torch.autograd as the oracle."""

import numpy as np
import pandas as pd
import pytest
import torch

import aelab
from aelab.backprop import ACTIVATIONS, backprop_table

# seed 004 Problem 3: the 2-2-2 sigmoid network, as the course writes it (column vectors)
COURSE = dict(
    weights=[[[0.15, 0.25], [0.2, 0.3]], [[0.4, 0.5], [-0.45, 0.55]]],
    biases=[[[0.35], [0.35]], [[0.6], [0.6]]],
    x=[[0.05], [0.1]],
    y=[[0.01], [0.99]],
)


def _values(table, quantity, layer, column="hand"):
    rows = table[(table["quantity"] == quantity) & (table["layer"] == layer)]
    return rows[column].to_numpy()


def _random_network(rng, widths):
    weights = [
        rng.normal(0, 1 / np.sqrt(n_in), size=(n_out, n_in))
        for n_in, n_out in zip(widths[:-1], widths[1:])
    ]
    # positive biases keep most ReLU units alive, so most gradients are not zero
    biases = [rng.uniform(0.1, 0.5, size=n) for n in widths[1:]]
    return weights, biases, rng.normal(size=widths[0])


def test_exported_from_the_package():
    assert aelab.backprop_table is backprop_table
    assert "backprop_table" in aelab.__all__


def test_course_network_reproduces_the_course_deltas():
    table = backprop_table(**COURSE)
    assert list(table.columns) == ["quantity", "layer", "index", "hand", "autograd", "difference"]
    np.testing.assert_allclose(_values(table, "delta", 3), [0.74693192, -0.33064048], atol=1e-8)
    np.testing.assert_allclose(_values(table, "delta", 2), [0.10789545, 0.0461271], atol=1e-8)
    np.testing.assert_allclose(_values(table, "dC/dx", 1), [0.02540974, 0.04081199], atol=1e-8)
    assert table["difference"].abs().max() < 1e-12


def test_sigmoid_cross_entropy_output_delta_is_a_minus_y():
    table = backprop_table(**COURSE)
    a3 = _values(table, "a", 3)
    np.testing.assert_allclose(_values(table, "delta", 3), a3 - np.array([0.01, 0.99]), atol=1e-15)


def test_every_quantity_is_present_once_per_layer():
    weights, biases, x = _random_network(np.random.default_rng(0), [3, 4, 5, 2])
    table = backprop_table(weights, biases, x, y=[0.2, 0.7])
    counts = table.groupby(["quantity", "layer"]).size().to_dict()
    assert counts == {
        ("z", 2): 4,
        ("z", 3): 5,
        ("z", 4): 2,
        ("a", 2): 4,
        ("a", 3): 5,
        ("a", 4): 2,
        ("C", 4): 1,
        ("delta", 2): 4,
        ("delta", 3): 5,
        ("delta", 4): 2,
        ("dC/dW", 2): 12,
        ("dC/dW", 3): 20,
        ("dC/dW", 4): 10,
        ("dC/db", 2): 4,
        ("dC/db", 3): 5,
        ("dC/db", 4): 2,
        ("dC/dx", 1): 3,
    }
    # W index is "row,column", 1-based as in the course's w_jk
    assert table[(table["quantity"] == "dC/dW") & (table["layer"] == 2)]["index"].iloc[1] == "1,2"


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("widths", [[3, 2], [2, 4, 3], [4, 5, 3, 2], [3, 6, 5, 4, 2]])
def test_random_networks_match_autograd(widths, activation, loss):
    rng = np.random.default_rng(len(widths) * 100 + ACTIVATIONS.index(activation))
    weights, biases, x = _random_network(rng, widths)
    acts = [activation] * (len(widths) - 2) + ["sigmoid" if loss == "cross_entropy" else activation]
    y = rng.uniform(0, 1, size=widths[-1])
    table = backprop_table(weights, biases, x, y, activation=acts, loss=loss)
    assert table["difference"].abs().max() < 1e-10
    assert np.isfinite(table[["hand", "autograd"]].to_numpy()).all()
    # not all-zero gradients: the check compared something (a dead ReLU layer may zero dC/dx)
    assert table[table["quantity"] == "dC/dW"]["hand"].abs().max() > 1e-6
    if activation != "relu":
        assert table[table["quantity"] == "dC/dx"]["hand"].abs().max() > 1e-6


def test_cross_entropy_with_a_tanh_output_uses_the_general_output_error():
    # outputs in (0, 1) from tanh: delta^L = dC/da * f'(z) without the sigmoid shortcut
    weights = [np.array([[0.3, -0.2], [0.1, 0.4]])]
    table = backprop_table(
        weights, [[0.2, 0.3]], x=[0.5, 0.7], y=[0.0, 1.0], activation="tanh", loss="cross_entropy"
    )
    a = _values(table, "a", 2)
    z = _values(table, "z", 2)
    expected = (a - [0.0, 1.0]) / (a * (1 - a)) * (1 - np.tanh(z) ** 2)
    np.testing.assert_allclose(_values(table, "delta", 2), expected, rtol=1e-12)
    assert table["difference"].abs().max() < 1e-10


def test_mse_is_half_the_sum_of_squares():
    table = backprop_table([[[1.0]]], [[0.0]], x=[2.0], y=[0.5], activation="identity", loss="mse")
    assert _values(table, "C", 2)[0] == pytest.approx(0.5 * 1.5**2)
    assert _values(table, "delta", 2)[0] == pytest.approx(1.5)
    assert _values(table, "dC/dx", 1)[0] == pytest.approx(1.5)


def test_relu_derivative_at_zero_agrees_with_torch():
    table = backprop_table(
        [[[1.0, -1.0]], [[2.0]]],
        [[0.0], [0.1]],
        x=[0.5, 0.5],
        y=[1.0],
        activation=["relu", "sigmoid"],
    )
    assert _values(table, "z", 2)[0] == 0.0
    assert table["difference"].abs().max() < 1e-12


def test_does_not_change_torch_global_state():
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    backprop_table(**COURSE)
    assert torch.rand(1) == before
    assert torch.get_default_dtype() == torch.float32


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=[0.05, 0.1, 0.2]), r"layer 2.*\(2, 2\).*x has shape \(3,\)"),
        (dict(y=[0.5, 0.5, 0.5]), r"output layer 3.*y has shape \(3,\).*\(2, 2\)"),
        (
            dict(weights=[[[0.15, 0.25], [0.2, 0.3]], [[0.4, 0.5, 0.1]]]),
            r"layer 3.*weights\[1\].*\(1, 3\).*\(2, 2\)",
        ),
        (dict(biases=[[0.35, 0.35], [0.6, 0.6, 0.6]]), r"layer 3.*biases\[1\].*\(3,\).*\(2, 2\)"),
        (dict(biases=[[0.35, 0.35]]), r"biases has 1 entries but weights has 2"),
        (dict(weights=[[0.15, 0.25], [0.2, 0.3]]), r"weights\[0\].*2-D.*wrap it in a list"),
        (dict(x=[[0.05, 0.1], [0.1, 0.2]]), r"x must be one input example.*\(2, 2\)"),
        (dict(x=[0.05, float("nan")]), r"x contains NaN"),
        (
            dict(activation="softplus"),
            r"activation must be one of.*'identity'.*'relu'.*'sigmoid'.*'tanh'.*'softplus'",
        ),
        (dict(activation=["sigmoid"]), r"activation has 1 names but the network has 2 layers"),
        (dict(activation=["sigmoid", "gelu"]), r"activation\[1\] must be one of.*'relu'"),
        (dict(loss="hinge"), r"loss must be one of.*'cross_entropy'.*'mse'"),
        (dict(y=[0.5, 1.5]), r"cross_entropy.*targets y in \[0, 1\].*1\.5"),
        (
            dict(activation=["sigmoid", "identity"]),
            r"cross_entropy.*\(0, 1\).*'identity'.*loss='mse'",
        ),
    ],
)
def test_bad_input_raises_naming_the_problem(kwargs, match):
    args = {**COURSE, **kwargs}
    with pytest.raises(ValueError, match=match):
        backprop_table(**args)


def test_weights_not_a_list_is_a_type_error():
    with pytest.raises(TypeError, match="weights must be a list"):
        backprop_table(3.0, [[0.1]], x=[1.0], y=[1.0])
    with pytest.raises(TypeError, match=r"weights\[0\] \(W\^2\) must be an array of numbers"):
        backprop_table([["a", "b"]], [[0.1]], x=[1.0], y=[1.0])


def test_returns_a_dataframe_with_float_columns():
    table = backprop_table(**COURSE)
    assert isinstance(table, pd.DataFrame)
    assert all(table[c].dtype == np.float64 for c in ["hand", "autograd", "difference"])
