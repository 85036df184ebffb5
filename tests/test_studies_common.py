"""The helpers every study module shares (aelab.studies._common) and the plot helpers they use."""

import numpy as np
import pytest
import torch

import aelab
from aelab import plots
from aelab.studies import _common as common
from aelab.studies import sheet6 as s6


def test_setting_takes_the_given_value_or_the_quick_or_full_default():
    assert common.setting("epochs", None, True, 100, 1000) == 100
    assert common.setting("epochs", None, False, 100, 1000) == 1000
    assert common.setting("epochs", 7, False, 100, 1000) == 7
    with pytest.raises(ValueError, match="n_runs must be an int >= 2, got 1"):
        common.setting("n_runs", 1, True, 4, 10, minimum=2)
    with pytest.raises(TypeError, match="epochs must be an int, got 2.5"):
        common.setting("epochs", 2.5, True, 100, 1000)
    assert common.setting_list("sizes", None, False, [1], [2, 3]) == [2, 3]
    assert common.setting_list("sizes", (5,), True, [1], [2, 3]) == [5]
    with pytest.raises(ValueError, match="sizes must list at least one value"):
        common.setting_list("sizes", [], True, [1], [2])


def test_study_settings_are_checked_the_same_way_everywhere():
    # an epochs of 0 used to fall back silently to the default in some studies
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        s6.sheet6_architectures(quick=True, epochs=0)
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        aelab.studies.ae_vs_pca(quick=True, epochs=0)


def test_mean_predictor_and_collapse_threshold():
    X = aelab.data.rectangle(500, seed=0).X
    floor = common.mean_predictor_mse(X)
    assert floor == pytest.approx(float(X.var(0, unbiased=False).mean()))
    # another set's mean costs more than X's own (its own mean is the least-squares constant)
    other = X + torch.tensor([0.5, 0.0])
    assert common.mean_predictor_mse(X, mean_of=other) == pytest.approx(floor + 0.25 / 2, rel=1e-5)
    assert common.COLLAPSE_SHARE == 0.9
    assert common.collapsed(floor, floor) and common.collapsed(0.9 * floor, floor)
    assert not common.collapsed(0.89 * floor, floor)


def test_train_stack_gives_each_model_its_own_seed_and_data():
    small, large = aelab.data.rectangle(16, seed=0), aelab.data.rectangle(24, seed=1)
    models = [s6.build("PCA-like", s) for s in (0, 1, 2)]
    alone = s6.build("PCA-like", 2)
    histories = common.train_stack(models, [small, small, large], seeds=[5, 6, 7], epochs=3,
                                   batch_size=8, lr=1e-3)
    assert [h.config["seed"] for h in histories] == [5, 6, 7]
    assert [h.config["n_train"] for h in histories] == [16, 16, 24]
    assert all(h.epochs == 3 for h in histories)
    # the same as training that model on its own
    reference = aelab.train_autoencoder(alone, large, epochs=3, batch_size=8, seed=7, device="cpu")
    assert histories[2].train_loss == pytest.approx(reference.train_loss, rel=1e-5)


def test_decoded_curve_spans_the_codes_of_the_data():
    model = aelab.LinearAutoencoder(2, 1)
    X = aelab.data.rectangle(50, seed=0).X
    z = common.codes(model, X)
    low, high = common.code_interval(model, X)
    assert (low, high) == pytest.approx((z.min(), z.max()))
    wide = common.code_interval(model, X, widen=0.5)
    assert wide[1] - wide[0] == pytest.approx(2 * (high - low))
    curve = common.decoded_curve(model, X, steps=11)
    assert curve.shape == (11, 2)
    # a linear decoder draws a straight segment from decode(low) to decode(high)
    assert common.curve_length(curve) == pytest.approx(float((curve[-1] - curve[0]).norm()), rel=1e-5)
    assert common.curve_length(torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])) == pytest.approx(6.0)


def test_nearest_labels_names_the_closest_training_point():
    train = aelab.data.Dataset(torch.tensor([[0.0, 0.0], [10.0, 0.0]]), torch.tensor([3, 7]), "two")
    assert common.nearest_labels(train, [[1.0, 0.0], [9.0, 1.0]]).tolist() == [3, 7]


def test_plain_log_ticks_writes_plain_numbers_and_labels_short_axes():
    fig, axes = plots.new_figure()
    ax = axes[0, 0]
    ax.plot([1, 2], [0.02, 0.05])
    ax.set_yscale("log")
    plots.plain_log_ticks(ax)
    ax.set_ylim(0.015, 0.06)  # set after the call: the formatter reads the limits when drawing
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
    assert labels and all("10^" not in lab and "times" not in lab for lab in labels)
    assert {"0.02", "0.03", "0.05"} <= set(labels)
    ax.set_ylim(1e-5, 1.0)  # five decades: no minor labels, plain majors
    fig.canvas.draw()
    assert not [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
    assert "0.001" in [t.get_text() for t in ax.get_yticklabels()]
    with pytest.raises(ValueError, match="axis must be 'x', 'y' or 'both'"):
        plots.plain_log_ticks(ax, axis="z")


def test_reconstruction_panel_draws_both_sets_and_checks_shapes():
    X, X_hat = np.random.default_rng(0).normal(size=(2, 20, 2))
    fig = plots.reconstruction_scatter(X, X_hat, title="t", max_lines=5)
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.collections] == ["original", "reconstructed"]
    assert len(ax.lines) == 5 and ax.get_legend() is not None
    with pytest.raises(ValueError, match="same shape"):
        plots.reconstruction_panel(ax, X, X_hat[:3])
