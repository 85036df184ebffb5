"""backprop-by-hand and conv-shapes (seed 004 Problems 3, 4): autograd and torch are the oracles."""

import numpy as np
import pytest
import torch
from torch import nn

import aelab
from aelab.studies import REGISTRY
from aelab.studies import course_math as cm

IDS = ["backprop-by-hand", "conv-shapes"]


@pytest.fixture(scope="module")
def results():
    return {name: REGISTRY[name].run(quick=True, seed=0) for name in IDS}


def _rows(table, column, value):
    return table[table[column] == value]


# --- what every study must deliver -----------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_registered_and_exported(name):
    assert REGISTRY[name].summary
    assert getattr(aelab.studies, name.replace("-", "_")) is REGISTRY[name].run


@pytest.mark.parametrize("name", IDS)
def test_figures_are_titled_and_labelled(results, name):
    result = results[name]
    assert result.name == name and result.figures
    for fig in result.figures.values():
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(labels) >= 2


@pytest.mark.parametrize("name", IDS)
def test_no_training_so_quick_and_full_give_the_same_numbers(results, name):
    full = REGISTRY[name].run(quick=False, seed=0)
    assert full.metrics == results[name].metrics
    assert full.config["quick"] is False and "no training" in full.config["note"]


# --- backprop-by-hand --------------------------------------------------------------------------


def test_reproduces_the_course_deltas(results):
    m = results["backprop-by-hand"].metrics
    np.testing.assert_allclose([m["delta3_1"], m["delta3_2"]], [0.74693, -0.33064], atol=1e-5)
    np.testing.assert_allclose([m["delta2_1"], m["delta2_2"]], [0.10790, 0.04613], atol=1e-5)
    deltas = results["backprop-by-hand"].tables["deltas_vs_course"]
    assert deltas["hand - course"].abs().max() < 5e-9  # the course prints 8 decimals


def test_every_hand_value_matches_autograd(results):
    table = results["backprop-by-hand"].tables["backprop"]
    assert len(table) == 27
    assert table["difference"].abs().max() < 1e-10
    assert results["backprop-by-hand"].metrics["max_abs_difference"] < 1e-10


def test_input_gradient_is_wT_delta_not_the_course_x_one_minus_x(results):
    table = results["backprop-by-hand"].tables["input_gradient"]
    correct = _rows(table, "candidate", "(W^2)^T delta^2")
    course = _rows(table, "candidate", "course: (W^2)^T delta^2 * x(1-x)")
    np.testing.assert_allclose(correct["hand"], [0.02541, 0.04081], atol=1e-5)
    np.testing.assert_allclose(course["hand"], [0.00121, 0.00367], atol=1e-5)
    # autograd decides: the equations' dC/dx matches it, the course's does not
    assert correct["difference"].abs().max() < 1e-10
    assert course["difference"].abs().min() > 0.02
    np.testing.assert_allclose(course["hand / autograd"], [0.05 * 0.95, 0.1 * 0.9], rtol=1e-12)


def test_course_pitfall_is_dC_dz1_of_a_sigmoid_input(results):
    pitfalls = results["backprop-by-hand"].tables["course_pitfalls"]
    np.testing.assert_allclose(pitfalls["course"], pitfalls["course printed"], atol=5e-9)
    # the course's number is the gradient for x = sigmoid(z^1), as autograd computes it
    np.testing.assert_allclose(
        pitfalls["course"], pitfalls["autograd dC/dz^1 if x = sigmoid(z^1)"], atol=1e-12
    )
    assert (pitfalls["course - autograd"].abs() > 0.02).all()


def test_findings_carry_the_input_gradients(results):
    findings = " ".join(results["backprop-by-hand"].findings)
    for number in ["0.02541", "0.04081", "0.00121", "0.00367", "0.74693", "0.10790"]:
        assert number in findings


def test_random_networks_depend_on_the_seed_and_match_autograd(results):
    table0 = results["backprop-by-hand"].tables["random_networks"]
    table1 = REGISTRY["backprop-by-hand"].run(seed=1).tables["random_networks"]
    assert len(table0) == cm.N_RANDOM_NETWORKS
    assert set(table0["loss"]) == {"cross_entropy", "mse"}
    assert table0["max |hand - autograd|"].max() < 1e-10
    assert table1["max |hand - autograd|"].max() < 1e-10
    assert table0["widths"].tolist() != table1["widths"].tolist()


# --- conv-shapes -------------------------------------------------------------------------------


def test_course_layers_sizes(results):
    sizes = results["conv-shapes"].tables["sizes"]
    course = sizes.iloc[:4]
    assert course["conv_output_size"].tolist() == [49, 9, 23, 49]
    assert course["torch"].tolist() == [49, 9, 23, 49]
    assert course["course"].tolist() == [49, 9, 23, 49]
    assert sizes["agree"].all()
    assert course["formula"].iloc[1] == "floor((50 + 2*0 - 8)/5) + 1"


def test_course_layers_agree_with_torch_run_here():
    x = torch.randn(1, 1, 50, 50)
    for _, kind, k, s, p, printed in cm.COURSE_LAYERS:
        layer = nn.Conv2d(1, 1, k, stride=s, padding=p) if kind == "conv" else nn.MaxPool2d(k, s, p)
        assert layer(x).shape[-2:] == (printed, printed)
        assert aelab.conv_output_size(50, k, stride=s, padding=p) == printed


def test_maxpool_without_stride_uses_stride_equal_to_kernel(results):
    trap = results["conv-shapes"].tables["course_pitfalls"].iloc[0]
    assert trap["torch MaxPool2d(2)"] == 25 == nn.MaxPool2d(2)(torch.randn(1, 1, 50, 50)).shape[-1]
    assert trap["torch MaxPool2d(2, stride=1)"] == 49
    assert (trap["formula with s=1"], trap["formula with s=2"]) == (49, 25)
    assert results["conv-shapes"].metrics["maxpool2_default_stride_size"] == 25


def test_unused_rows_of_the_strided_conv(results):
    sizes = results["conv-shapes"].tables["sizes"]
    # (50 - 8) mod 5 = 2 input rows never reach the 8x8 kernel at stride 5
    assert sizes["unused rows"].tolist()[:4] == [0, 2, 0, 0]


def test_conv_output_size_agrees_with_torch_on_random_layers():
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 50:
        kind = ("conv", "pool")[checked % 2]
        k, s, d = int(rng.integers(1, 8)), int(rng.integers(1, 5)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k // 2 + 1))  # MaxPool2d allows padding <= kernel_size / 2
        n = int(rng.integers(1, 40))
        if n + 2 * p < d * (k - 1) + 1:
            continue  # the kernel does not fit: conv_output_size raises, torch errors too
        layer = (
            nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
            if kind == "conv"
            else nn.MaxPool2d(k, stride=s, padding=p, dilation=d)
        )
        expected = layer(torch.randn(1, 1, n, n)).shape[-1]
        assert aelab.conv_output_size(n, k, stride=s, padding=p, dilation=d) == expected, (
            kind,
            n,
            k,
            s,
            p,
            d,
        )
        checked += 1
