"""scikit-learn estimators: an autoencoder as a transformer, and as an outlier detector.

Both train an aelab model with aelab's own training functions, so they fit in
a ``Pipeline`` and a ``GridSearchCV`` like any scikit-learn estimator:

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.datasets import load_digits
>>> X, y = load_digits(return_X_y=True)
>>> pipe = make_pipeline(AutoencoderTransformer(bottleneck_size=8, epochs=5, random_state=0),
...                      LogisticRegression(max_iter=500))
>>> pipe.fit(X, y).score(X, y) > 0.5
True

They follow scikit-learn's conventions: ``__init__`` only stores its
arguments, ``fit`` validates them (``InvalidParameterError``, a ``ValueError``
naming the parameter and what it allows), learned state ends in ``_``, and
``random_state`` fixes the initial weights, the data order and any sampling.
Training runs on ``device``; the fitted model is kept on the CPU, so a fitted
estimator pickles and transforms anywhere.

This module needs scikit-learn >= 1.6 (``validate_data`` and ``__sklearn_tags__``).
"""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OutlierMixin,
    TransformerMixin,
)
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError as error:  # scikit-learn < 1.6 has neither it nor __sklearn_tags__
    import sklearn

    raise ImportError(
        f"aelab.sklearn needs scikit-learn >= 1.6, found {sklearn.__version__}; "
        "upgrade with: pip install 'scikit-learn>=1.6'"
    ) from error

from aelab import (
    VAE,
    Autoencoder,
    LinearAutoencoder,
    ResNetAutoencoder,
    seeded,
    train_autoencoder,
    train_mmd_autoencoder,
    train_vae,
)
from aelab.data import Dataset

__all__ = ["AutoencoderTransformer", "AutoencoderOutlierDetector"]

MODELS = ("mlp", "linear", "resnet", "vae", "mmd")
# float32 is what the models compute in; float64 is what scikit-learn passes by default
_DTYPES = [np.float64, np.float32]


# ---- the work, shared by both estimators: private functions over a fitted estimator


def _build(model: str, n_features: int, bottleneck_size: int, hidden_size: int, layers: int):
    """The untrained aelab model of family ``model``; ``layers`` is ResNet's number of blocks."""
    builders = {
        "mlp": lambda: Autoencoder(n_features, bottleneck_size, hidden_size, layers),
        "mmd": lambda: Autoencoder(n_features, bottleneck_size, hidden_size, layers),
        "linear": lambda: LinearAutoencoder(n_features, bottleneck_size),
        "resnet": lambda: ResNetAutoencoder(n_features, bottleneck_size, hidden_size, layers),
        "vae": lambda: VAE(n_features, bottleneck_size, hidden_size, layers),
    }
    return builders[model]()


def _train(est, model, data: Dataset, seed: int):
    """Train ``model`` in place with the objective of ``est.model``; returns the History."""
    common = dict(
        epochs=est.epochs,
        batch_size=est.batch_size,
        lr=est.lr,
        seed=seed,
        device=est.device,
        progress=False,
    )
    trainers = {
        "mlp": lambda: train_autoencoder(model, data, **common),
        "linear": lambda: train_autoencoder(model, data, **common),
        "resnet": lambda: train_autoencoder(model, data, **common),
        "vae": lambda: train_vae(model, data, beta=est.beta, **common),
        "mmd": lambda: train_mmd_autoencoder(model, data, mmd_weight=est.mmd_weight, **common),
    }
    return trainers[est.model]()


def _as_tensor(X: np.ndarray) -> torch.Tensor:
    # a copy: scikit-learn passes read-only arrays, which torch.as_tensor warns about
    return torch.from_numpy(np.array(X, dtype=np.float32, copy=True))


def _infer(model, method: str, X: np.ndarray) -> np.ndarray:
    """``model.<method>(X)`` in eval mode, computed in float64, as a float64 array.

    In float32, a row's result can change in the last bit with the batch it is
    computed in (matrix kernels differ by shape); scikit-learn expects a row's
    code or score not to depend on which other rows came with it.
    """
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        x = torch.from_numpy(np.array(X, dtype=np.float64, copy=True))
        return getattr(model64, method)(x).numpy()


def _check_device(device) -> None:
    if device is None:
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be None or a torch device such as 'cpu' or 'cuda', got {device!r}."
        ) from None


def _fit_autoencoder(est, X, y=None):
    """Validate ``est``'s parameters and ``X``, train its model; sets the fitted attributes."""
    est._validate_params()
    _check_device(est.device)
    # the MMD estimate compares pairs of codes, so every batch needs two samples
    min_samples = 2 if est.model == "mmd" else 1
    X = validate_data(est, X, dtype=_DTYPES, ensure_min_samples=min_samples)
    n_features = X.shape[1]
    if est.bottleneck_size > n_features:
        raise ValueError(
            f"bottleneck_size={est.bottleneck_size} must not exceed the number of input features "
            f"(n_features = {n_features}): an autoencoder compresses; choose "
            f"bottleneck_size <= {n_features}."
        )
    if est.model == "mmd" and est.batch_size < 2:
        raise ValueError(
            f"batch_size={est.batch_size} is too small for model='mmd': the MMD "
            "estimate needs at least 2 samples per batch; use batch_size >= 2."
        )
    # one draw from random_state seeds everything: weights, data order, sampling in the loss
    seed = int(check_random_state(est.random_state).randint(np.iinfo(np.int32).max))
    est.scaler_ = StandardScaler().fit(X) if est.standardize else None
    X_model = est.scaler_.transform(X) if est.standardize else X
    with seeded(seed):
        model = _build(est.model, n_features, est.bottleneck_size, est.hidden_size, est.layers)
    est.history_ = _train(est, model, Dataset(_as_tensor(X_model)), seed)
    est.model_ = model.cpu()
    est.n_components_ = est.bottleneck_size
    return X_model


def _scaled(est, X) -> np.ndarray:
    """``X`` validated against the fitted width, in the model's (standardized) units."""
    check_is_fitted(est, "model_")
    X = validate_data(est, X, dtype=_DTYPES, reset=False)
    return (est.scaler_.transform(X) if est.scaler_ is not None else X), X.dtype


def _squared_errors(est, X_model: np.ndarray) -> np.ndarray:
    """Per-sample mean squared reconstruction error, in the model's units, float64."""
    X_hat = _infer(est.model_, "forward", X_model)
    return ((np.asarray(X_model, dtype=np.float64) - X_hat) ** 2).mean(axis=1)


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """An autoencoder as a scikit-learn transformer: ``transform`` gives its codes.

    Parameters
    ----------
    model : {"mlp", "linear", "resnet", "vae", "mmd"}, default="mlp"
        The model family and its objective: "mlp" (:class:`aelab.Autoencoder`),
        "linear" (:class:`aelab.LinearAutoencoder`, the PCA-like model) and
        "resnet" (:class:`aelab.ResNetAutoencoder`) are trained on reconstruction
        error; "vae" is :class:`aelab.VAE` trained on the negative ELBO (its codes
        are the posterior means); "mmd" is the MLP trained on reconstruction plus
        ``mmd_weight`` times the MMD of its codes to N(0, I).
    bottleneck_size : int, default=2
        Code dimension, at most the number of features.
    hidden_size : int, default=64
        Width of the hidden layers (unused by "linear").
    layers : int, default=2
        Hidden layers of the encoder (mirrored in the decoder); residual blocks
        for "resnet"; unused by "linear". ``layers=0`` is a linear encoder.
    epochs : int, default=100
        Passes over the training data.
    batch_size : int, default=64
        Samples per optimizer step; at least the number of samples is full-batch.
    lr : float, default=1e-3
        Adam's learning rate.
    standardize : bool, default=True
        Train on features scaled to mean 0 and variance 1 (the scaler is fitted
        on the training data); codes, reconstructions and scores are computed
        through it, and ``inverse_transform`` returns the original units.
    mmd_weight : float, default=1.0
        Weight of the MMD term for ``model="mmd"``.
    beta : float, default=1.0
        Weight of the KL term for ``model="vae"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the data order and any sampling in the loss:
        an int gives the same fit every time.
    device : str, torch.device or None, default=None
        Where to train: None is CUDA when available, else the CPU. The fitted
        model is kept on the CPU.

    Attributes
    ----------
    model_ : torch.nn.Module
        The trained aelab model (on the CPU).
    history_ : aelab.History
        Its training history.
    scaler_ : StandardScaler or None
        The fitted scaler when ``standardize=True``.
    n_components_ : int
        Number of code dimensions (the output width of ``transform``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5))
    >>> ae = AutoencoderTransformer(bottleneck_size=2, epochs=5, random_state=0).fit(X)
    >>> ae.transform(X).shape, ae.inverse_transform(ae.transform(X)).shape
    ((200, 2), (200, 5))
    >>> ae.get_feature_names_out().tolist()
    ['autoencodertransformer0', 'autoencodertransformer1']
    >>> ae.score(X) < 0  # the negative reconstruction MSE
    True
    """

    _parameter_constraints: dict = {
        "model": [StrOptions(set(MODELS))],
        "bottleneck_size": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "layers": [Interval(Integral, 0, None, closed="left")],
        "epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "mmd_weight": [Interval(Real, 0, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [None, str, torch.device],
    }

    def __init__(
        self,
        model="mlp",
        bottleneck_size=2,
        hidden_size=64,
        layers=2,
        epochs=100,
        batch_size=64,
        lr=1e-3,
        standardize=True,
        mmd_weight=1.0,
        beta=1.0,
        random_state=None,
        device=None,
    ):
        self.model = model
        self.bottleneck_size = bottleneck_size
        self.hidden_size = hidden_size
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.standardize = standardize
        self.mmd_weight = mmd_weight
        self.beta = beta
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        """Train the autoencoder on ``X`` (``y`` is ignored); returns ``self``."""
        _fit_autoencoder(self, X, y)
        return self

    def transform(self, X):
        """The codes of ``X``, shape (n_samples, n_components_), in ``X``'s float dtype."""
        X_model, dtype = _scaled(self, X)
        return _infer(self.model_, "encode", X_model).astype(dtype)

    def inverse_transform(self, X):
        """Decode codes ``X`` (n_samples, n_components_) back to the original feature units."""
        check_is_fitted(self, "model_")
        Z = check_array(X, dtype=_DTYPES)
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {Z.shape[1]} features, but inverse_transform expects codes "
                f"of width n_components_ = {self.n_components_}."
            )
        X_hat = _infer(self.model_, "decode", Z)
        if self.scaler_ is not None:
            X_hat = self.scaler_.inverse_transform(X_hat)
        return X_hat.astype(Z.dtype)

    def score(self, X, y=None):
        """Negative mean squared reconstruction error of ``X``, in its original units.

        Higher is better, as for every scikit-learn score, so ``GridSearchCV``
        picks the setting that reconstructs held-out data best.
        """
        X_hat = self.inverse_transform(self.transform(X))
        X = validate_data(self, X, dtype=_DTYPES, reset=False)
        return -float(np.mean((np.asarray(X, dtype=np.float64) - X_hat) ** 2))

    @property
    def _n_features_out(self):
        # read by ClassNamePrefixFeaturesOutMixin.get_feature_names_out
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class AutoencoderOutlierDetector(OutlierMixin, BaseEstimator):
    """Outlier detection by reconstruction error: points the autoencoder reconstructs badly.

    An autoencoder trained on (mostly normal) data reconstructs points like
    them well and unusual points badly. ``score_samples`` is minus each
    point's mean squared reconstruction error (in standardized units when
    ``standardize=True``), so higher means more normal, as in scikit-learn;
    ``offset_`` is the training scores' ``contamination`` quantile, so that
    ``decision_function = score_samples - offset_`` is negative for outliers
    and ``predict`` marks the ``contamination`` share of the training data as
    outliers (-1), the rest as inliers (+1).

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of outliers in the training data; sets ``offset_``.
    model, bottleneck_size, hidden_size, layers, epochs, batch_size, lr, \
standardize, mmd_weight, beta, random_state, device
        As in :class:`AutoencoderTransformer`.

    Attributes
    ----------
    offset_ : float
        The threshold on ``score_samples``.
    model_, history_, scaler_, n_components_, n_features_in_, feature_names_in_
        As in :class:`AutoencoderTransformer`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = rng.uniform(-1, 1, size=(300, 1))
    >>> X = np.hstack([t, 2 * t, -t]) + 0.01 * rng.normal(size=(300, 3))  # a line in 3-D
    >>> X[:5] += [1, 0, 1]  # five points moved off the line
    >>> det = AutoencoderOutlierDetector(model="linear", bottleneck_size=1, contamination=0.02,
    ...                                  epochs=50, lr=1e-2, random_state=0)
    >>> outliers = np.flatnonzero(det.fit_predict(X) == -1)
    >>> outliers.tolist()[:5], len(outliers)  # the five, and one more: 2% of 300 is 6
    ([0, 1, 2, 3, 4], 6)
    """

    _parameter_constraints: dict = {
        **AutoencoderTransformer._parameter_constraints,
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        model="mlp",
        bottleneck_size=2,
        hidden_size=64,
        layers=2,
        epochs=100,
        batch_size=64,
        lr=1e-3,
        standardize=True,
        mmd_weight=1.0,
        beta=1.0,
        contamination=0.1,
        random_state=None,
        device=None,
    ):
        self.model = model
        self.bottleneck_size = bottleneck_size
        self.hidden_size = hidden_size
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.standardize = standardize
        self.mmd_weight = mmd_weight
        self.beta = beta
        self.contamination = contamination
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        """Train the autoencoder on ``X`` and set ``offset_``; returns ``self``."""
        X_model = _fit_autoencoder(self, X, y)
        self.offset_ = float(
            np.percentile(-_squared_errors(self, X_model), 100 * self.contamination)
        )
        return self

    def score_samples(self, X):
        """Minus each sample's mean squared reconstruction error: higher is more normal."""
        X_model, _ = _scaled(self, X)
        return -_squared_errors(self, X_model)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """-1 for outliers, +1 for inliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)
