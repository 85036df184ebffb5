"""Baselines an autoencoder is measured against: PCA, and a Gaussian mixture on its code space.

:class:`PCA` is the linear baseline (the subspace a linear autoencoder learns);
:class:`CodeSampler` turns any model with ``encode``/``decode`` into a
generator by fitting scikit-learn's ``GaussianMixture`` to its codes and
decoding samples drawn from the mixture.

Both follow scikit-learn's conventions: ``__init__`` only stores its
arguments, ``fit`` validates them and returns ``self``, and learned state ends
in ``_``. Using either before ``fit`` raises scikit-learn's ``NotFittedError``
(a ``ValueError``).
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
import torch

from aelab._checks import check_choice, check_int, check_positive_int
from aelab.evaluate import _batched, as_matrix, encode, model_input_size

__all__ = ["PCA", "CodeSampler"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")  # sklearn GaussianMixture's choices
MAX_BIC_COMPONENTS = 10  # "bic" tries 1..10 mixture components


def _check_fitted(estimator, attribute: str) -> None:
    # sklearn is imported where it is used: importing it costs `import aelab` about a second
    from sklearn.exceptions import NotFittedError

    if not hasattr(estimator, attribute):
        name = type(estimator).__name__
        raise NotFittedError(f"This {name} is not fitted yet; call {name}.fit(X) before using it.")


def _flip_signs(Vt: torch.Tensor) -> torch.Tensor:
    """Make the largest-magnitude entry of each row positive, so that fits are deterministic.

    Singular vectors are defined only up to sign; this is the convention of
    scikit-learn's ``svd_flip(u_based_decision=False)``.
    """
    biggest = Vt.abs().argmax(dim=1)  # (k,)
    signs = torch.sign(Vt[torch.arange(len(Vt)), biggest])
    signs[signs == 0] = 1
    return Vt * signs[:, None]


class PCA:
    """Principal component analysis by singular value decomposition of the centred data, in torch.

    The SVD runs in float64 (the small trailing singular values of nearly
    low-rank data, such as digits, lose their accuracy in float32); learned
    state and outputs are float32 CPU tensors, like every dataset in aelab.
    Each component is signed so that its largest-magnitude entry is positive.

    ``encode``/``decode``/``__call__`` are aliases of ``transform``/
    ``inverse_transform``/reconstruction, so a fitted PCA can stand in for a
    model wherever aelab only needs those (:class:`CodeSampler`,
    :func:`aelab.reconstruction_error`, :func:`aelab.evaluate.reconstruction_error_ci`).

    Parameters
    ----------
    n_components : int
        Number of principal components kept, 1 <= n_components <= min(n_samples, n_features).

    Attributes
    ----------
    components_ : Tensor, shape (n_components, n_features)
        Orthonormal principal axes, by decreasing explained variance.
    mean_ : Tensor, shape (n_features,)
        Per-feature mean of the training data.
    explained_variance_ : Tensor, shape (n_components,)
        Variance of the training data along each component (denominator n_samples - 1).
    explained_variance_ratio_ : Tensor, shape (n_components,)
        ``explained_variance_`` as a share of the total variance.
    singular_values_ : Tensor, shape (n_components,)
        The singular values of the centred training data for the kept components.
    n_components_, n_features_in_, n_samples_ : int

    Examples
    --------
    >>> import aelab
    >>> pca = aelab.PCA(1).fit(aelab.data.rectangle(500).X)
    >>> pca.components_.abs().round().tolist()   # the long side of the rectangle
    [[1.0, 0.0]]
    >>> z = pca.transform(torch.zeros(3, 2))      # (3, 1) codes
    >>> pca.inverse_transform(z).shape
    torch.Size([3, 2])
    """

    def __init__(self, n_components: int):
        self.n_components = n_components

    def __repr__(self) -> str:
        return f"PCA(n_components={self.n_components!r})"

    def fit(self, X) -> PCA:
        """Learn the mean and principal axes of ``X`` (tensor, array or Dataset, [n_samples, n_features])."""
        X = as_matrix("X", X)
        n_samples, n_features = X.shape
        k = check_positive_int("n_components", self.n_components)
        if n_samples < 2:
            raise ValueError("X must hold at least 2 samples to estimate a variance, got 1.")
        if k > min(n_samples, n_features):
            raise ValueError(
                f"n_components must be between 1 and min(n_samples, n_features) = "
                f"min({n_samples}, {n_features}) = {min(n_samples, n_features)}, got {k}; "
                "choose fewer components."
            )
        X64 = X.double()
        mean = X64.mean(0)
        _, S, Vt = torch.linalg.svd(X64 - mean, full_matrices=False)  # S (r,), Vt (r, d)
        Vt = _flip_signs(Vt[:k])
        variance = S**2 / (n_samples - 1)
        total = variance.sum()
        ratio = variance[:k] / total if total > 0 else torch.zeros(k, dtype=torch.float64)
        self.mean_ = mean.float()
        self.components_ = Vt.float().contiguous()
        self.explained_variance_ = variance[:k].float()
        self.explained_variance_ratio_ = ratio.float()
        self.singular_values_ = S[:k].float()
        self.n_components_ = k
        self.n_features_in_ = n_features
        self.n_samples_ = n_samples
        return self

    def transform(self, X) -> torch.Tensor:
        """Coordinates of ``X`` along the principal axes, shape (n_samples, n_components)."""
        _check_fitted(self, "components_")
        X = as_matrix("X", X, self.n_features_in_, f"the PCA was fitted on {self.n_features_in_}")
        return (X - self.mean_) @ self.components_.T

    def inverse_transform(self, Z) -> torch.Tensor:
        """Points in input space with coordinates ``Z``, shape (n_samples, n_features)."""
        _check_fitted(self, "components_")
        Z = as_matrix("Z", Z, self.n_components_, f"the PCA has {self.n_components_} components")
        return Z @ self.components_ + self.mean_

    def fit_transform(self, X) -> torch.Tensor:
        return self.fit(X).transform(X)

    def reconstruct(self, X) -> torch.Tensor:
        """Projection of ``X`` onto the principal subspace, in input coordinates."""
        return self.inverse_transform(self.transform(X))

    def reconstruction_errors(self, X) -> torch.Tensor:
        """Per-sample mean squared error of the projection, shape (n_samples,), as for autoencoders."""
        X = as_matrix("X", X)
        return ((self.reconstruct(X) - X) ** 2).mean(1)

    def reconstruction_error(self, X) -> float:
        """Mean squared error per sample, averaged over samples (as :func:`aelab.reconstruction_error`)."""
        return float(self.reconstruction_errors(X).mean())

    # model-like aliases, so that a fitted PCA can stand in for an autoencoder
    encode = transform
    decode = inverse_transform
    __call__ = reconstruct


def _check_model(model) -> None:
    for method in ("encode", "decode"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                f"model must have encode() and decode() methods (an aelab model or a "
                f"fitted aelab.PCA), got {type(model).__name__} without {method}()."
            )


def _check_n_components(value):
    if value == "bic" and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"n_components must be 'bic' or an int >= 1, got {value!r}.")
    return check_positive_int("n_components", value)


def _check_random_state(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"random_state must be None or an int >= 0, got {value!r}; "
            "pass an int for reproducible mixtures and samples."
        )
    return check_int("random_state", value, 0)


class CodeSampler:
    """A generator from any autoencoder: a Gaussian mixture fitted to its codes, then decoded.

    ``fit(X)`` encodes ``X`` with the model (in eval mode, without gradients)
    and fits scikit-learn's ``GaussianMixture`` to the codes; ``sample(n)``
    draws codes from the mixture and decodes them. A VAE's ``encode`` returns
    the posterior mean, so for a VAE the mixture is fitted to those means.

    Parameters
    ----------
    model : aelab model or fitted PCA
        Anything with ``encode`` and ``decode``; it is not changed or trained.
    n_components : "bic" or int
        Mixture components. ``"bic"`` fits 1..10 components (at most n_samples)
        and keeps the one with the lowest Bayesian information criterion.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Passed to ``GaussianMixture``.
    random_state : int or None
        Seeds the mixture's initialisation and the sampler's own random stream:
        the same seed gives the same fit and the same sequence of samples.

    Attributes
    ----------
    gmm_ : sklearn.mixture.GaussianMixture
        The selected fitted mixture.
    n_components_ : int
        Its number of components.
    bic_ : dict of int -> float
        BIC of every mixture that was fitted, by number of components (for a BIC curve).
    codes_ : Tensor, shape (n_samples, bottleneck_size)
        The codes the mixture was fitted to (for a histogram under the fitted density).

    Examples
    --------
    >>> import aelab
    >>> ds = aelab.data.moons(200)
    >>> pca = aelab.PCA(1).fit(ds.X)
    >>> sampler = aelab.CodeSampler(pca, n_components=2, random_state=0).fit(ds.X)
    >>> X_new, z = sampler.sample(5)
    >>> X_new.shape, z.shape
    (torch.Size([5, 2]), torch.Size([5, 1]))
    """

    def __init__(
        self,
        model,
        n_components="bic",
        covariance_type: str = "full",
        random_state: int | None = None,
    ):
        self.model = model
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.random_state = random_state

    def __repr__(self) -> str:
        return (
            f"CodeSampler({type(self.model).__name__}, n_components={self.n_components!r}, "
            f"covariance_type={self.covariance_type!r}, random_state={self.random_state!r})"
        )

    def fit(self, X) -> CodeSampler:
        """Encode ``X`` (tensor, array or Dataset) and fit the mixture to its codes."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        _check_model(self.model)
        n_components = _check_n_components(self.n_components)
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        random_state = _check_random_state(self.random_state)
        size = model_input_size(self.model)
        X = as_matrix("X", X, size, f"the model's input_size is {size}")
        if len(X) < 2:
            raise ValueError(f"X must hold at least 2 samples to fit a mixture, got {len(X)}.")
        codes = encode(self.model, X)
        if codes.ndim != 2 or len(codes) != len(X):
            raise ValueError(
                f"model.encode must return codes of shape [n_samples, bottleneck_size], "
                f"got {tuple(codes.shape)} for {len(X)} samples."
            )
        codes = as_matrix("the model's codes", codes)
        n_samples = len(codes)
        if n_components == "bic":
            candidates = range(1, min(MAX_BIC_COMPONENTS, n_samples) + 1)
        elif n_components > n_samples:
            raise ValueError(
                f"n_components ({n_components}) must not exceed the number of samples "
                f"({n_samples}); use fewer components or more data."
            )
        else:
            candidates = [n_components]

        Z = codes.double().numpy()
        fits, bic = {}, {}
        # non-converged candidates that BIC rejects are irrelevant; only the chosen one is warned about
        # one BLAS thread: the matrices are tiny (code-sized), and extra threads only spin-wait
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in candidates:
                gmm = GaussianMixture(
                    k, covariance_type=self.covariance_type, random_state=random_state
                ).fit(Z)
                fits[k], bic[k] = gmm, float(gmm.bic(Z))
        best = min(bic, key=bic.get)
        if not fits[best].converged_:
            warnings.warn(
                f"the Gaussian mixture with {best} components did not converge in "
                f"{fits[best].max_iter} EM iterations; its samples may be poor. Try another "
                "random_state, covariance_type='diag', or a fixed n_components.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.gmm_ = fits[best]
        self.n_components_ = best
        self.bic_ = bic
        self.codes_ = codes
        self._rng = np.random.RandomState(random_state)
        return self

    def sample_codes(self, n_samples: int, seed: int | None = None) -> torch.Tensor:
        """``n_samples`` codes drawn from the mixture, in random order, float32 [n_samples, bottleneck]."""
        _check_fitted(self, "gmm_")
        n_samples = check_positive_int("n_samples", n_samples)
        if seed is not None:
            check_int("seed", seed, 0)
        rng = self._rng if seed is None else np.random.RandomState(seed)
        # GaussianMixture.sample re-seeds from its random_state on every call (so every call
        # would return the same points) and returns them grouped by component: draw from our
        # own stream instead, and shuffle so that the first few samples are a fair sample.
        from threadpoolctl import threadpool_limits

        gmm = copy.copy(self.gmm_)
        gmm.random_state = rng
        with threadpool_limits(1):
            Z, _ = gmm.sample(n_samples)
        Z = Z[rng.permutation(n_samples)]
        return torch.from_numpy(Z).to(torch.float32)

    def sample(self, n_samples: int, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw codes from the mixture and decode them.

        Parameters
        ----------
        n_samples : int
            Number of synthetic points.
        seed : int, optional
            Seed for just this draw. By default the draw continues the sampler's
            own stream (seeded by ``random_state``), so successive calls differ.

        Returns
        -------
        X_new : Tensor, shape (n_samples, n_features)
            The decoded synthetic points (float32, CPU).
        z : Tensor, shape (n_samples, bottleneck_size)
            Their codes.
        """
        z = self.sample_codes(n_samples, seed)
        X_new = _batched(self.model.decode, self.model, z, 4096)
        return X_new, z

    def score_samples(self, Z) -> torch.Tensor:
        """Log-density of the fitted mixture at codes ``Z``, shape (n_samples,).

        For a 1-D code, ``score_samples(grid).exp()`` over a grid is the curve to
        draw over a density-normalised histogram of ``codes_``.
        """
        _check_fitted(self, "gmm_")
        d = self.codes_.shape[1]
        Z = as_matrix("Z", Z, d, f"the model's codes have {d} dimensions")
        return torch.from_numpy(self.gmm_.score_samples(Z.double().numpy())).to(torch.float32)

    def density(self, Z) -> torch.Tensor:
        """Density of the fitted mixture at codes ``Z``: ``score_samples(Z).exp()``."""
        return self.score_samples(Z).exp()
