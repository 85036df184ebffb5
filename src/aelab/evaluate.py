"""Metrics of trained models."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from aelab._checks import check_finite, check_int, check_positive_float, check_positive_int


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for the block (restoring its mode after); yields its device."""
    if not isinstance(model, nn.Module):  # e.g. aelab.PCA: no train/eval modes, lives on the CPU
        yield torch.device("cpu")
        return
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters(), torch.empty(0)).device  # CPU for a parameter-free module
    finally:
        model.train(was_training)


def _batched(fn, model: nn.Module, X, batch_size: int) -> torch.Tensor:
    """``fn`` over batches of ``X`` on the model's device, without gradients, results on the CPU."""
    X = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad(), eval_mode(model) as device:
        return torch.cat([fn(x.to(device)).cpu() for x in X.split(batch_size)])


def encode(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Codes ``model.encode(X)`` in eval mode, on the CPU."""
    return _batched(model.encode, model, X, batch_size)


def reconstruct(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Reconstructions ``model(X)`` in eval mode, on the CPU."""
    return _batched(model, model, X, batch_size)


def _check_model(model) -> None:
    if not callable(model):
        raise TypeError(
            f"model must be a model (a torch.nn.Module such as aelab.Autoencoder) or a "
            f"fitted aelab.PCA, got {type(model).__name__}."
        )


def model_input(model, X) -> torch.Tensor:
    """``X`` (tensor, array or Dataset) checked as input for ``model``: a finite float32 CPU matrix
    with the model's width; ``[n, C, H, W]`` images are accepted (and flattened) for image models."""
    image_shape = getattr(model, "image_shape", None)
    if isinstance(X, torch.Tensor) and X.ndim == 4 and image_shape is not None:
        if tuple(X.shape[1:]) != tuple(image_shape):
            C, H, W = image_shape
            raise ValueError(
                f"X has shape {tuple(X.shape)}; the model takes images [n, {C}, {H}, "
                f"{W}] or flat rows [n, {C * H * W}] (its image_shape is "
                f"{tuple(image_shape)})."
            )
        X = X.reshape(len(X), -1)
    size = model_input_size(model)
    return as_matrix("X", X, size, f"the model's input_size is {size}")


def reconstruction_errors(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Per-sample mean squared error of ``model(X)`` against ``X``, shape [n_samples].

    ``X`` is a tensor, array or :class:`aelab.data.Dataset` of shape
    ``[n_samples, n_features]`` (or ``[n, C, H, W]`` for an image model), finite.
    """
    _check_model(model)
    X = model_input(model, X)
    return _batched(lambda x: ((model(x) - x) ** 2).flatten(1).mean(1), model, X, batch_size)


def reconstruction_error(model: nn.Module, X) -> float:
    """Mean squared error per sample, averaged over samples.

    Parameters
    ----------
    model : aelab model (any ``nn.Module`` mapping ``X`` to its reconstruction) or fitted aelab.PCA
    X : Tensor, array or Dataset, shape (n_samples, n_features)
        At least one sample, finite, as wide as the model's input; an image model
        also takes ``[n, C, H, W]``.

    >>> import aelab
    >>> reconstruction_error(aelab.LinearAutoencoder(2, 2), torch.zeros(4, 2)) >= 0
    True
    """
    return float(reconstruction_errors(model, X).mean())


# --- shared argument handling for metrics and baselines -------------------------------------


def as_matrix(name: str, X, n_features: int | None = None, fix: str = "") -> torch.Tensor:
    """``X`` (a Dataset, tensor or array) as a finite float32 CPU tensor [n_samples, n_features].

    ``n_features``, when given, is the width ``X`` must have; ``fix`` is appended
    to that error to say where the expected width comes from.
    """
    from aelab.data import Dataset

    if isinstance(X, Dataset):
        X = X.X
    try:
        X = torch.as_tensor(X)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be a tensor, a numeric array or an aelab.data.Dataset, "
            f"got {type(X).__name__}."
        ) from err
    if X.dtype == torch.bool or X.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [n_samples, n_features], got shape {tuple(X.shape)}; "
            "reshape a single sample with x[None] and images with X.reshape(len(X), -1)."
        )
    if len(X) < 1:
        raise ValueError(f"{name} must hold at least one sample, got 0 rows.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features per sample, expected {n_features}"
            f"{'; ' + fix if fix else ''}."
        )
    X = X.detach().to("cpu", torch.float32)
    check_finite(name, X)
    return X


def model_input_size(model) -> int | None:
    """The number of input features ``model`` expects, when it says so (None otherwise)."""
    size = getattr(model, "init_args", {}).get("input_size")
    return size if size is not None else getattr(model, "n_features_in_", None)


# --- classifier agreement and the random-forest report ---------------------------------------


def _check_classifier(clf) -> None:
    if not callable(getattr(clf, "predict", None)):
        raise TypeError(
            f"clf must be a fitted classifier with a predict() method, got {type(clf).__name__}."
        )
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if isinstance(clf, BaseEstimator):
        try:
            check_is_fitted(clf)
        except NotFittedError:  # a ValueError, reworded to name the argument
            raise NotFittedError(
                f"clf is not fitted: {type(clf).__name__} needs clf.fit(X_train, "
                "y_train) before classifier_agreement."
            ) from None


def classifier_agreement(clf, X, X_hat) -> float:
    """Share of points where a fitted classifier gives ``X_hat`` the same label as ``X``.

    With ``X_hat`` the reconstructions of ``X``, this measures how much of what
    the classifier sees survives the autoencoder, whether or not its labels are right.

    Parameters
    ----------
    clf : fitted classifier
        Anything with ``predict`` (e.g. sklearn's RandomForestClassifier).
    X, X_hat : Tensor, array or Dataset, shape (n_samples, n_features)
        Originals and their reconstructions (or any paired points), same shape.

    Examples
    --------
    >>> import aelab
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> ds = aelab.data.moons(100)
    >>> clf = KNeighborsClassifier().fit(ds.X, ds.y)
    >>> classifier_agreement(clf, ds.X, ds.X)
    1.0
    """
    _check_classifier(clf)
    width = getattr(clf, "n_features_in_", None)
    fix = f"clf was fitted on {width}"
    X = as_matrix("X", X, width, fix)
    X_hat = as_matrix("X_hat", X_hat, width, fix)
    if X.shape != X_hat.shape:
        raise ValueError(
            f"X and X_hat must have the same shape (one reconstruction per point), "
            f"got {tuple(X.shape)} and {tuple(X_hat.shape)}."
        )
    same = np.asarray(clf.predict(X.numpy())) == np.asarray(clf.predict(X_hat.numpy()))
    return float(same.mean())


@dataclass
class ForestReport:
    """What a random forest trained on real data says about test, reconstructed and synthetic data.

    Confusion matrices have one row per true label and one column per predicted
    label, both in the order of ``labels``.
    """

    labels: list  # the classes, in the order of the confusion matrices and synthetic_counts
    accuracy_test: float
    accuracy_reconstructed: (
        float  # true labels of the test set vs predictions on its reconstruction
    )
    agreement: float  # share of test points whose reconstruction gets the same predicted label
    confusion_test: np.ndarray
    confusion_reconstructed: np.ndarray
    synthetic_counts: np.ndarray | None  # how many synthetic points got each label
    classifier: object = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-able numbers (the classifier left out)."""
        out = {k: v for k, v in self.__dict__.items() if k != "classifier"}
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}


def _check_labelled(name: str, ds):
    from aelab.data import Dataset

    if not isinstance(ds, Dataset):
        raise TypeError(
            f"{name} must be an aelab.data.Dataset with labels, got {type(ds).__name__}."
        )
    if ds.y is None:
        raise ValueError(
            f"{name} has no labels (y is None); a classifier needs labelled data, "
            "e.g. aelab.data.digits()."
        )
    return ds


def forest_report(
    train,
    test,
    X_hat_test,
    synthetic=None,
    *,
    seed: int = 0,
    n_estimators: int = 100,
    n_jobs: int = 1,
) -> ForestReport:
    """Train sklearn's RandomForestClassifier on ``train`` and judge test, reconstructed and synthetic data.

    Parameters
    ----------
    train, test : Dataset
        Labelled data; the forest is fitted on ``train``.
    X_hat_test : Tensor or array, shape like ``test.X``
        The model's reconstructions of ``test.X``.
    synthetic : Tensor or array, shape (n, n_features), optional
        Generated points (e.g. from :class:`aelab.CodeSampler`); only their
        predicted labels are counted, as they have no true ones.
    seed : int
        The forest's random_state.
    n_estimators, n_jobs : int
        Passed to RandomForestClassifier.

    Examples
    --------
    >>> import aelab
    >>> train, test = aelab.data.split(aelab.data.digits(), seed=0)
    >>> r = forest_report(train, test, test.X, n_estimators=20)
    >>> r.agreement, r.accuracy_test == r.accuracy_reconstructed
    (1.0, True)
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import confusion_matrix

    _check_labelled("train", train)
    _check_labelled("test", test)
    d = train.n_features
    X_test = as_matrix("test", test, d, f"train has {d}")
    X_hat = as_matrix("X_hat_test", X_hat_test, d, f"train has {d}")
    if len(X_hat) != len(X_test):
        raise ValueError(
            f"X_hat_test must hold one reconstruction per test point ({len(X_test)}), "
            f"got {len(X_hat)} rows."
        )
    if synthetic is not None:
        synthetic = as_matrix("synthetic", synthetic, d, f"train has {d}")
    check_int("seed", seed, 0)
    clf = RandomForestClassifier(
        n_estimators=check_positive_int("n_estimators", n_estimators),
        random_state=seed,
        n_jobs=n_jobs,
    )
    clf.fit(train.X.numpy(), train.y.numpy())
    labels = np.union1d(clf.classes_, test.y.numpy())  # a test-only class still gets a row
    y_true = test.y.numpy()
    pred_test = clf.predict(X_test.numpy())
    pred_hat = clf.predict(X_hat.numpy())
    counts = None
    if synthetic is not None:
        pred_syn = clf.predict(synthetic.numpy())
        counts = (pred_syn[:, None] == labels[None, :]).sum(0)
    return ForestReport(
        labels=labels.tolist(),
        accuracy_test=float((pred_test == y_true).mean()),
        accuracy_reconstructed=float((pred_hat == y_true).mean()),
        agreement=float((pred_test == pred_hat).mean()),
        confusion_test=confusion_matrix(y_true, pred_test, labels=labels),
        confusion_reconstructed=confusion_matrix(y_true, pred_hat, labels=labels),
        synthetic_counts=counts,
        classifier=clf,
    )


# --- reconstruction error with a bootstrap confidence interval -------------------------------


class MeanCI(NamedTuple):
    """A mean and its bootstrap confidence interval; unpacks as ``mean, low, high``."""

    mean: float
    low: float
    high: float


def bootstrap_ci(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> MeanCI:
    """Percentile bootstrap confidence interval of the mean of ``values`` (1-D).

    :func:`scipy.stats.bootstrap` resamples ``values`` with replacement ``n_boot``
    times; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the resampled means (Efron & Tibshirani, "An Introduction to
    the Bootstrap", 1993, ch. 13).

    >>> bootstrap_ci(torch.ones(10))
    MeanCI(mean=1.0, low=1.0, high=1.0)
    """
    from scipy import stats

    values = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
    if len(values) < 1:
        raise ValueError("values must hold at least one number, got none.")
    check_finite("values", values)
    n_boot = check_positive_int("n_boot", n_boot)
    level = check_positive_float("level", level)
    if not level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level}.")
    check_int("seed", seed, 0)
    x = values.numpy()
    batch = max(1, 2**22 // len(x))  # resamples drawn at once, bounding the index matrix's memory
    ci = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        rng=seed,
        batch=batch,
    ).confidence_interval
    return MeanCI(float(x.mean()), float(ci.low), float(ci.high))


def reconstruction_error_ci(
    model, X, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> MeanCI:
    """Mean per-sample reconstruction error (as :func:`reconstruction_error`) with a bootstrap CI.

    The interval says how much the mean would move on another test set of the
    same size from the same distribution; it does not cover training randomness
    (compare seeds for that).

    Parameters
    ----------
    model : aelab model or fitted aelab.PCA
    X : Tensor, array or Dataset, shape (n_samples, n_features)
    n_boot : int
        Bootstrap resamples.
    level : float
        Coverage of the interval, in (0, 1).
    seed : int
        Seeds the resampling.

    Returns
    -------
    MeanCI
        ``(mean, low, high)``.

    Examples
    --------
    >>> import aelab
    >>> ds = aelab.data.moons(200)
    >>> mean, low, high = reconstruction_error_ci(aelab.PCA(1).fit(ds), ds)
    >>> low < mean < high
    True
    """
    size = model_input_size(model)
    X = as_matrix("X", X, size, f"the model's input_size is {size}")
    return bootstrap_ci(reconstruction_errors(model, X), n_boot=n_boot, level=level, seed=seed)
