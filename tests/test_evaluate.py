"""Classifier agreement, the random-forest report and bootstrap intervals, against hand-computed oracles."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

import aelab
from aelab.evaluate import (
    MeanCI,
    as_matrix,
    bootstrap_ci,
    classifier_agreement,
    encode,
    forest_report,
    reconstruction_error,
    reconstruction_error_ci,
    reconstruction_errors,
)
from aelab.plots import confusion_matrices, forest_report_figure


@pytest.fixture(scope="module")
def digits_split():
    return aelab.data.split(aelab.data.digits(), test_size=0.2, seed=0)


@pytest.fixture(scope="module")
def digits_forest(digits_split):
    train, _ = digits_split
    return RandomForestClassifier(n_estimators=30, random_state=0).fit(
        train.X.numpy(), train.y.numpy()
    )


# --- classifier agreement ----------------------------------------------------------------------


def test_agreement_is_one_for_identical_inputs_and_drops_under_noise(digits_split, digits_forest):
    _, test = digits_split
    assert classifier_agreement(digits_forest, test.X, test.X.clone()) == 1.0
    agreement = [
        classifier_agreement(digits_forest, test.X, aelab.data.corrupt(test.X, s, seed=1))
        for s in (0.1, 0.3, 0.6)
    ]
    assert 1.0 > agreement[0] > agreement[1] > agreement[2]
    noisy = aelab.data.corrupt(test.X, 0.3, seed=1)
    expected = (
        digits_forest.predict(test.X.numpy()) == digits_forest.predict(noisy.numpy())
    ).mean()
    assert agreement[1] == pytest.approx(expected)


def test_agreement_counts_label_changes_not_accuracy():
    # a fixed rule on the sign of the first feature: agreement is the share of unchanged signs
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0], [-2.0, 0.0]])
    clf = LogisticRegression().fit(X.numpy(), [1, 0, 1, 0])
    X_hat = X * torch.tensor([[1.0], [1.0], [-1.0], [1.0]])  # flip one point's sign
    assert classifier_agreement(clf, X, X_hat) == 0.75


def test_agreement_bad_input(digits_forest):
    X = torch.zeros(5, 64)
    with pytest.raises(NotFittedError):
        classifier_agreement(RandomForestClassifier(), X, X)
    with pytest.raises(TypeError, match="clf must be a fitted classifier with a predict"):
        classifier_agreement(object(), X, X)
    with pytest.raises(
        ValueError, match=r"X and X_hat must have the same shape.*\(5, 64\) and \(4, 64\)"
    ):
        classifier_agreement(digits_forest, X, X[:4])


# --- random-forest report ----------------------------------------------------------------------


def test_forest_report_numbers_agree_with_each_other(digits_split):
    train, test = digits_split
    noisy = aelab.data.corrupt(test.X, 0.3, seed=1)
    synthetic = torch.rand(50, 64, generator=torch.Generator().manual_seed(0))
    r = forest_report(train, test, noisy, synthetic, n_estimators=30)
    assert r.labels == list(range(10))
    n = len(test)
    for matrix, accuracy in (
        (r.confusion_test, r.accuracy_test),
        (r.confusion_reconstructed, r.accuracy_reconstructed),
    ):
        assert matrix.shape == (10, 10) and matrix.sum() == n
        assert np.trace(matrix) / n == pytest.approx(accuracy)
        assert (matrix.sum(1) == np.bincount(test.y.numpy())).all()  # rows are true labels
    assert r.accuracy_test > 0.9 and r.accuracy_reconstructed < r.accuracy_test
    assert r.agreement == pytest.approx(classifier_agreement(r.classifier, test.X, noisy))
    assert r.synthetic_counts.sum() == 50
    assert (
        r.synthetic_counts == np.bincount(r.classifier.predict(synthetic.numpy()), minlength=10)
    ).all()
    d = r.to_dict()
    assert "classifier" not in d and d["confusion_test"] == r.confusion_test.tolist()


def test_forest_report_of_a_perfect_reconstruction(digits_split):
    train, test = digits_split
    r = forest_report(train, test, test.X, n_estimators=10, seed=3)
    assert r.agreement == 1.0 and r.accuracy_reconstructed == r.accuracy_test
    assert (r.confusion_test == r.confusion_reconstructed).all()
    assert r.synthetic_counts is None


def test_forest_report_bad_input(digits_split):
    train, test = digits_split
    with pytest.raises(ValueError, match="train has no labels"):
        forest_report(aelab.data.Dataset(train.X), test, test.X)
    with pytest.raises(TypeError, match="test must be an aelab.data.Dataset"):
        forest_report(train, test.X, test.X)
    with pytest.raises(ValueError, match="X_hat_test must hold one reconstruction per test point"):
        forest_report(train, test, test.X[:10])
    with pytest.raises(ValueError, match="synthetic has 2 features per sample, expected 64"):
        forest_report(train, test, test.X, torch.zeros(5, 2))


def test_forest_figures_are_titled_and_labelled(digits_split):
    train, test = digits_split
    r = forest_report(train, test, test.X, torch.rand(20, 64), n_estimators=10)
    fig = forest_report_figure(r)
    assert (
        isinstance(fig, Figure)
        and "100.0% of reconstructions keep their label" in fig._suptitle.get_text()
    )
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    for ax in panels:
        assert ax.get_xlabel() == "predicted label" and ax.get_ylabel()
    fig = confusion_matrices({"a": r.confusion_test, "b": r.confusion_reconstructed}, r.labels)
    assert [ax.get_title() for ax in fig.axes[:2]] == [
        f"a (accuracy {r.accuracy_test:.1%})",
        f"b (accuracy {r.accuracy_test:.1%})",
    ]
    with pytest.raises(ValueError, match=r"has shape \(2, 2\), expected \(10, 10\)"):
        confusion_matrices({"a": np.eye(2)}, r.labels)


# --- reconstruction error with a bootstrap interval ----------------------------------------------


def test_bootstrap_ci_matches_the_normal_approximation():
    values = torch.distributions.Exponential(1.0).sample((2000,))
    mean, low, high = bootstrap_ci(values, n_boot=2000, seed=0)
    half_width = 1.96 * float(values.double().std()) / np.sqrt(len(values))
    assert mean == pytest.approx(float(values.double().mean()))
    assert low < mean < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (mean - low) == pytest.approx(half_width, rel=0.2)  # roughly symmetric at n = 2000
    wider = bootstrap_ci(values, n_boot=2000, level=0.99, seed=0)
    assert wider.low < low and wider.high > high


def test_bootstrap_ci_is_reproducible_and_seeded():
    values = torch.rand(300, generator=torch.Generator().manual_seed(0))
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)
    assert bootstrap_ci(torch.full((7,), 2.5)) == MeanCI(2.5, 2.5, 2.5)


def test_reconstruction_error_ci_brackets_the_mean_error():
    ds = aelab.data.moons(400)
    with aelab.seeded(0):
        model = aelab.Autoencoder(2, 1, 16, 1)
    ci = reconstruction_error_ci(model, ds, n_boot=500)
    assert isinstance(ci, MeanCI)
    assert ci.mean == pytest.approx(aelab.reconstruction_error(model, ds.X), rel=1e-6)
    assert ci.low < ci.mean < ci.high
    # a fitted PCA stands in for a model
    pca = aelab.PCA(1).fit(ds)
    assert reconstruction_error_ci(pca, ds.X).mean == pytest.approx(pca.reconstruction_error(ds.X))
    torch.testing.assert_close(reconstruction_errors(pca, ds.X), pca.reconstruction_errors(ds.X))
    torch.testing.assert_close(encode(pca, ds.X), pca.transform(ds.X))


def test_reconstruction_error_ci_bad_input():
    model = aelab.LinearAutoencoder(2, 1)
    X = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="level must be in \\(0, 1\\), e.g. 0.95, got 1.0"):
        reconstruction_error_ci(model, X, level=1.0)
    with pytest.raises(ValueError, match="level must be a finite number > 0"):
        reconstruction_error_ci(model, X, level=0)
    with pytest.raises(ValueError, match="n_boot must be an int >= 1, got 0"):
        reconstruction_error_ci(model, X, n_boot=0)
    with pytest.raises(
        ValueError, match="X has 3 features per sample, expected 2; the model's input_size is 2"
    ):
        reconstruction_error_ci(model, torch.zeros(10, 3))


def test_as_matrix_accepts_common_inputs_and_rejects_the_rest():
    expected = torch.tensor([[1.0, 2.0]])
    for X in (
        [[1, 2]],
        np.array([[1.0, 2.0]]),
        torch.tensor([[1, 2]]),
        aelab.data.Dataset(expected),
    ):
        out = as_matrix("X", X)
        assert out.dtype == torch.float32 and torch.equal(out, expected)
    with pytest.raises(TypeError, match="X must hold real numbers, got dtype torch.bool"):
        as_matrix("X", torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="X must hold at least one sample"):
        as_matrix("X", torch.zeros(0, 2))
    with pytest.raises(ValueError, match="X contains 0 NaN and 1 infinite"):
        as_matrix("X", torch.tensor([[1.0, float("inf")]]))


# --- issue 14, item 6: metrics check the data they are given --------------------------------------


@pytest.mark.parametrize(
    "X, error, match",
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), ValueError, "X contains 1 NaN"),
        (torch.tensor([[0.0, float("inf")]]), ValueError, "X contains 0 NaN and 1 infinite"),
        (torch.zeros(0, 2), ValueError, "X must hold at least one sample, got 0 rows"),
        (
            torch.zeros(3, 2, 2),
            ValueError,
            r"X must be 2-D \[n_samples, n_features\], got shape \(3, 2, 2\)",
        ),
        (torch.zeros(3, 1, 2), ValueError, "X must be 2-D"),
        (torch.zeros(3, 2, dtype=torch.complex64), TypeError, "X must hold real numbers"),
        (
            torch.zeros(3, 5),
            ValueError,
            "X has 5 features per sample, expected 2; the model's input_size",
        ),
        ("abc", TypeError, "X must be a tensor, a numeric array or an aelab.data.Dataset"),
    ],
)
def test_reconstruction_error_checks_its_input(X, error, match):
    model = aelab.LinearAutoencoder(2, 1)
    with pytest.raises(error, match=match):
        reconstruction_error(model, X)
    with pytest.raises(error, match=match):
        reconstruction_errors(model, X)


def test_reconstruction_error_accepts_a_dataset_arrays_and_images():
    ds = aelab.data.moons(40)
    model = aelab.LinearAutoencoder(2, 1)
    expected = reconstruction_error(model, ds.X)
    assert reconstruction_error(model, ds) == expected
    assert reconstruction_error(model, ds.X.numpy()) == expected
    conv = aelab.ConvAutoencoder((1, 4, 4), 2)
    images = torch.rand(5, 1, 4, 4)
    assert reconstruction_error(conv, images) == pytest.approx(
        reconstruction_error(conv, images.reshape(5, 16))
    )
    with pytest.raises(ValueError, match=r"X has shape \(5, 1, 4, 5\); .*\[n, 1, 4, 4\]"):
        reconstruction_error(conv, torch.rand(5, 1, 4, 5))
    with pytest.raises(TypeError, match="model must be a model .* got str"):
        reconstruction_error("model", ds.X)


def test_classifier_agreement_checks_widths_and_fitting_in_aelab_words():
    from sklearn.neighbors import KNeighborsClassifier

    ds = aelab.data.moons(40)
    clf = KNeighborsClassifier().fit(ds.X, ds.y)
    with pytest.raises(
        ValueError, match="X has 5 features per sample, expected 2; clf was fitted on 2"
    ):
        classifier_agreement(clf, torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="clf is not fitted"):
        classifier_agreement(KNeighborsClassifier(), ds.X, ds.X)
    with pytest.raises(ValueError, match="X_hat contains 2 NaN"):
        classifier_agreement(
            clf, ds.X, torch.where(torch.arange(40)[:, None] == 3, float("nan"), ds.X)
        )
    assert classifier_agreement(clf, ds, ds.X) == 1.0
