"""The helpers every study module shares (aelab.studies._common) and the plot helpers they use."""

import numpy as np
import pytest
import torch

import aelab
from aelab import plots
from aelab.studies import _common as common
from aelab.studies import sheet6 as s6


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
    assert common.curve_length(curve) == pytest.approx(
        float((curve[-1] - curve[0]).norm()), rel=1e-5
    )
    assert common.curve_length(torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])) == pytest.approx(
        6.0
    )


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


# --- issue 14, item 8: zero is a value, never "the default" ------------------------------------------


def _settings_classes():
    import dataclasses

    from aelab.studies._base import REGISTRY

    seen = {}
    for study in REGISTRY.values():
        if study.settings is not None:
            seen.setdefault(study.settings.__name__, study.settings)
    assert len(seen) >= 10
    return [seen[k] for k in sorted(seen)], dataclasses


def test_every_numeric_setting_keeps_zero_or_refuses_it_by_name():
    import typing

    classes, dataclasses = _settings_classes()
    checked = 0
    for cls in classes:
        hints = typing.get_type_hints(cls)
        base = cls.quick()
        for f in dataclasses.fields(cls):
            kinds = {hints[f.name], *typing.get_args(hints[f.name])}
            if not kinds & {int, float}:
                continue
            checked += 1
            try:
                s = dataclasses.replace(base, **{f.name: 0})
            except (ValueError, TypeError) as err:
                assert f.name in str(err), (cls.__name__, f.name, str(err))
            else:  # accepted: it must be used as 0, not swapped for a default
                assert getattr(s, f.name) == 0, (cls.__name__, f.name)
    assert checked > 40


def test_every_sequence_setting_refuses_a_bare_number_by_name():
    import typing

    classes, dataclasses = _settings_classes()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        base = cls.quick()
        for f in dataclasses.fields(cls):
            if typing.get_origin(hints[f.name]) not in (tuple, list):
                continue
            with pytest.raises((TypeError, ValueError), match=f.name):
                dataclasses.replace(base, **{f.name: 3})


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(n=0, epochs=1), "n"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0, epochs=1), "batch_size"),
    ],
)
def test_moons_autoencoder_refuses_zero_by_name(overrides, name):
    from aelab.studies import moons_autoencoder

    with pytest.raises(ValueError, match=rf"{name} must be an int >= 1, got 0"):
        moons_autoencoder(**overrides)
