import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from aelab.sklearn import MODELS, AutoencoderOutlierDetector, AutoencoderTransformer

# few epochs keep the ~45 checks per estimator fast; they test the API, not the fit.
# "linear" shares every code path with "mlp" but the model it builds
CHECKED = [AutoencoderTransformer(model=m, epochs=5) for m in MODELS if m != "linear"] + [
    AutoencoderOutlierDetector(epochs=5),
    AutoencoderOutlierDetector(model="vae", epochs=5),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _plane(n=200, noise=0.05, seed=0):
    """Points near a 2-D plane in 5-D: two codes reconstruct them almost exactly."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 2))
    W = rng.normal(size=(2, 5))
    return Z @ W + noise * rng.normal(size=(n, 5))


def test_pipeline_on_digits_beats_chance():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    pipe = make_pipeline(
        StandardScaler(),
        AutoencoderTransformer(bottleneck_size=8, epochs=20, random_state=0),
        LogisticRegression(max_iter=1000),
    )
    accuracy = pipe.fit(X_train, y_train).score(X_test, y_test)
    # chance is 0.1 for ten balanced classes; 8 codes keep most of the digit identity
    assert accuracy > 0.6


def test_grid_search_in_parallel_prefers_the_wider_bottleneck():
    X = _plane(n=120)
    search = GridSearchCV(
        AutoencoderTransformer(epochs=40, random_state=0),
        {"bottleneck_size": [1, 2]},
        cv=2,
        n_jobs=2,
    )
    search.fit(X)
    # the data are 2-D plus noise: one code loses a whole direction, two lose only noise
    assert search.best_params_ == {"bottleneck_size": 2}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > 3 * scores[0]  # negative MSE: closer to 0 is better


def test_linear_model_matches_pca():
    X = _plane(n=300, noise=0.1)
    ae = AutoencoderTransformer(
        model="linear",
        bottleneck_size=2,
        standardize=False,
        epochs=150,
        batch_size=32,
        lr=1e-2,
        random_state=0,
    ).fit(X)
    pca = PCA(2).fit(X)
    pca_mse = np.mean((X - pca.inverse_transform(pca.transform(X))) ** 2)
    # PCA is the best linear 2-D reconstruction: the linear AE reaches it, never beats it
    assert -ae.score(X) == pytest.approx(pca_mse, rel=0.05)
    assert -ae.score(X) >= pca_mse * (1 - 1e-4)


def test_transform_shapes_dtypes_and_roundtrip():
    X = _plane()
    ae = AutoencoderTransformer(bottleneck_size=2, epochs=30, random_state=0).fit(X)
    Z = ae.transform(X)
    assert Z.shape == (200, 2) and Z.dtype == np.float64
    assert ae.transform(X.astype(np.float32)).dtype == np.float32
    X_hat = ae.inverse_transform(Z)
    assert X_hat.shape == X.shape
    assert ae.score(X) == pytest.approx(-np.mean((X - X_hat) ** 2))
    assert ae.history_.epochs == 30
    with pytest.raises(ValueError, match="n_components_ = 2"):
        ae.inverse_transform(np.zeros((3, 3)))


def test_set_output_pandas_names_the_codes():
    X = pd.DataFrame(_plane(n=50), columns=list("abcde"))
    ae = AutoencoderTransformer(bottleneck_size=3, epochs=2, random_state=0)
    out = ae.set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == [f"autoencodertransformer{i}" for i in range(3)]
    assert list(ae.feature_names_in_) == list("abcde")


@pytest.mark.parametrize("model", MODELS)
def test_random_state_fixes_the_fit(model):
    X = _plane(n=60)

    def codes(random_state):
        est = AutoencoderTransformer(
            model=model, epochs=3, batch_size=16, random_state=random_state
        )
        return est.fit_transform(X)

    np.testing.assert_array_equal(codes(1), codes(1))
    assert not np.allclose(codes(1), codes(2))


def test_not_fitted_error_before_fit():
    X = _plane(n=10)
    ae = AutoencoderTransformer()
    for method in (ae.transform, ae.inverse_transform, ae.score):
        with pytest.raises(NotFittedError):
            method(X)
    detector = AutoencoderOutlierDetector()
    for method in (detector.predict, detector.decision_function, detector.score_samples):
        with pytest.raises(NotFittedError):
            method(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"model": "pca"}, "'model' parameter of AutoencoderTransformer must be a str among"),
        ({"bottleneck_size": 0}, "'bottleneck_size' parameter .* range \\[1, inf\\). Got 0"),
        ({"lr": -1.0}, "'lr' parameter"),
        ({"standardize": "yes"}, "'standardize' parameter"),
        ({"bottleneck_size": 6}, "bottleneck_size=6 must not exceed .*n_features = 5"),
        ({"model": "mmd", "batch_size": 1}, "batch_size=1 is too small for model='mmd'"),
        ({"device": "gpu0"}, "device must be None or a torch device .* got 'gpu0'"),
    ],
)
def test_bad_parameters_are_named_in_fit(params, match):
    X = _plane(n=20)
    ae = AutoencoderTransformer(epochs=1, **params)  # __init__ stores, fit validates
    with pytest.raises(ValueError, match=match):
        ae.fit(X)


def test_detector_finds_planted_outliers():
    rng = np.random.default_rng(1)
    X = _plane(n=300, noise=0.05)
    outliers = rng.choice(len(X), 15, replace=False)
    # off the plane: the same norm as typical points, a direction the codes cannot hold
    X[outliers] += 3 * rng.normal(size=(15, 5))
    detector = AutoencoderOutlierDetector(
        bottleneck_size=2, contamination=0.05, epochs=60, random_state=0
    )
    labels = detector.fit_predict(X)
    assert set(np.unique(labels)) == {-1, 1}
    assert (labels == -1).sum() == 15  # the contamination share of the training data
    found = np.intersect1d(np.flatnonzero(labels == -1), outliers)
    assert len(found) >= 13
    scores = detector.score_samples(X)
    assert np.all(scores <= 0)  # minus a squared error
    np.testing.assert_allclose(detector.decision_function(X), scores - detector.offset_)
    inliers = np.setdiff1d(np.arange(len(X)), outliers)
    assert np.median(scores[inliers]) > np.median(scores[outliers])


@pytest.mark.parametrize("contamination", [0.0, 0.6, "auto"])
def test_detector_contamination_range(contamination):
    detector = AutoencoderOutlierDetector(contamination=contamination, epochs=1)
    with pytest.raises(ValueError, match="'contamination' parameter"):
        detector.fit(_plane(n=20))
