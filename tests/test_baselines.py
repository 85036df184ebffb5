"""PCA against scikit-learn and the course's eigendecomposition; CodeSampler against known mixtures."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.exceptions import NotFittedError
from torch import nn

import aelab
from aelab import PCA, CodeSampler
from aelab.quality import distance_to_moons


def _anisotropic(n=200, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])[:d]
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    return (torch.randn(n, d, generator=g) * scales) @ rotation + torch.arange(d)


def _signs(ours: torch.Tensor, theirs: np.ndarray) -> torch.Tensor:
    """Per-component sign that best aligns our components with the oracle's."""
    return torch.sign((ours.double() * torch.from_numpy(theirs)).sum(1))


# --- PCA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 6])
def test_pca_matches_sklearn(k):
    X = _anisotropic()
    ours = PCA(k).fit(X)
    theirs = SklearnPCA(k, svd_solver="full").fit(X.double().numpy())
    signs = _signs(ours.components_, theirs.components_)
    assert signs.abs().min() == 1
    torch.testing.assert_close(
        ours.components_.double() * signs[:, None],
        torch.from_numpy(theirs.components_),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        ours.mean_.double(), torch.from_numpy(theirs.mean_), atol=1e-5, rtol=0
    )
    for attr in ("explained_variance_", "explained_variance_ratio_", "singular_values_"):
        torch.testing.assert_close(
            getattr(ours, attr).double(),
            torch.from_numpy(getattr(theirs, attr)),
            rtol=1e-5,
            atol=1e-6,
        )
    Z = ours.transform(X)
    torch.testing.assert_close(
        Z.double() * signs,
        torch.from_numpy(theirs.transform(X.double().numpy())),
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(
        ours.inverse_transform(Z).double(),
        torch.from_numpy(theirs.inverse_transform(theirs.transform(X.double().numpy()))),
        atol=1e-4,
        rtol=0,
    )
    assert ours.n_components_ == k and ours.n_features_in_ == 6 and ours.n_samples_ == 200


def test_pca_is_deterministic_and_signed_by_largest_entry():
    X = _anisotropic()
    a, b = PCA(3).fit(X), PCA(3).fit(X.flip(0))  # row order changes nothing
    torch.testing.assert_close(a.components_, b.components_, atol=1e-5, rtol=0)
    biggest = a.components_.abs().argmax(1)
    assert (a.components_[torch.arange(3), biggest] > 0).all()


def test_pca_eigendecomposition_route_of_the_course_gives_the_same_subspace():
    # the course notebook: covariance matrix, eigendecomposition, sort by decreasing eigenvalue
    X = _anisotropic().double()
    centred = X - X.mean(0)
    covariance = centred.T @ centred / (len(X) - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = torch.argsort(eigenvalues, descending=True)
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    for k in (1, 2, 4):
        V = eigenvectors[:, :k]  # (d, k)
        pca = PCA(k).fit(X)
        W = pca.components_.double().T  # (d, k)
        torch.testing.assert_close(W @ W.T, V @ V.T, atol=1e-5, rtol=0)  # same projection
        torch.testing.assert_close(
            pca.explained_variance_.double(), eigenvalues[:k], rtol=1e-5, atol=0
        )


def test_pca_reconstruction_error_is_the_discarded_variance():
    X = _anisotropic()
    n, d = X.shape
    full = PCA(6).fit(X).explained_variance_.double()
    for k in (1, 3, 5):
        pca = PCA(k).fit(X)
        expected = float(full[k:].sum()) * (n - 1) / n / d  # per-feature mean over samples
        assert pca.reconstruction_error(X) == pytest.approx(expected, rel=1e-4)
        assert pca.reconstruction_errors(X).shape == (n,)
        # the package-wide metric treats a fitted PCA like a model
        assert aelab.reconstruction_error(pca, X) == pytest.approx(
            pca.reconstruction_error(X), rel=1e-6
        )
    assert PCA(6).fit(X).reconstruction_error(X) < 1e-8


def test_pca_model_like_aliases_and_inputs():
    ds = aelab.data.moons(100)
    pca = PCA(1)
    assert pca.fit(ds) is pca  # a Dataset is accepted and fit returns self
    torch.testing.assert_close(pca.encode(ds.X), pca.transform(ds.X.numpy()))
    torch.testing.assert_close(pca(ds.X), pca.decode(pca.encode(ds.X)))
    assert pca.transform(ds.X).dtype == torch.float32
    assert repr(pca) == "PCA(n_components=1)"


def test_pca_bad_input():
    X = _anisotropic(n=20, d=3)
    PCA(0)  # __init__ only stores
    with pytest.raises(ValueError, match="n_components must be an int >= 1, got 0"):
        PCA(0).fit(X)
    with pytest.raises(TypeError, match="n_components must be an int"):
        PCA(1.5).fit(X)
    with pytest.raises(ValueError, match=r"min\(n_samples, n_features\) = min\(20, 3\) = 3, got 4"):
        PCA(4).fit(X)
    with pytest.raises(ValueError, match=r"min\(2, 3\) = 2, got 3"):
        PCA(3).fit(X[:2])
    with pytest.raises(ValueError, match="at least 2 samples"):
        PCA(1).fit(X[:1])
    with pytest.raises(NotFittedError, match="PCA is not fitted yet; call PCA.fit"):
        PCA(1).transform(X)
    with pytest.raises(NotFittedError, match="not fitted"):
        PCA(1).inverse_transform(torch.zeros(2, 1))
    pca = PCA(2).fit(X)
    with pytest.raises(
        ValueError, match="X has 4 features per sample, expected 3; the PCA was fitted on 3"
    ):
        pca.transform(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="Z has 3 features per sample, expected 2"):
        pca.inverse_transform(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="X must be 2-D"):
        pca.transform(torch.zeros(3))
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"X contains 1 NaN .*first at index \(3, 1\)"):
        PCA(1).fit(bad)
    with pytest.raises(TypeError, match="X must be a tensor, a numeric array"):
        PCA(1).fit("data")


# --- CodeSampler -------------------------------------------------------------------------------


def _identity_model(d=2):
    """A linear autoencoder whose code is the input itself, so the mixture is fitted to the data."""
    model = aelab.LinearAutoencoder(d, d)
    with torch.no_grad():
        for layer in (model.encoder, model.decoder):
            layer.weight.copy_(torch.eye(d))
            layer.bias.zero_()
    return model


MEANS = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])


def _mixture_data(n_per=300, std=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([m + std * torch.randn(n_per, 2, generator=g) for m in MEANS])


def test_code_sampler_recovers_the_means_of_a_known_mixture():
    sampler = CodeSampler(_identity_model(), random_state=0).fit(_mixture_data())
    assert sampler.n_components_ == 3
    assert sorted(sampler.bic_) == list(range(1, 11))
    assert min(sampler.bic_, key=sampler.bic_.get) == 3
    found = torch.from_numpy(sampler.gmm_.means_).float()
    nearest = torch.cdist(MEANS, found).min(1)
    assert nearest.indices.unique().numel() == 3  # one fitted mean per true mean
    assert nearest.values.max() < 0.1
    # samples follow the mixture: about a third near each true mean
    X_new, z = sampler.sample(3000)
    share = torch.bincount(torch.cdist(z, MEANS).argmin(1), minlength=3) / 3000.0
    assert (share - 1 / 3).abs().max() < 0.05
    torch.testing.assert_close(X_new, z)  # the identity decoder


def test_code_sampler_sampling_is_reproducible_shuffled_and_decoded():
    X = _mixture_data()
    model = _identity_model()
    a = CodeSampler(model, n_components=3, random_state=1).fit(X)
    b = CodeSampler(model, n_components=3, random_state=1).fit(X)
    assert list(a.bic_) == [3] and a.n_components_ == 3
    first_a, first_b = a.sample(50), b.sample(50)
    torch.testing.assert_close(first_a[1], first_b[1])  # same seed, same samples
    assert not torch.equal(a.sample(50)[1], first_a[1])  # the stream moves on
    torch.testing.assert_close(a.sample(20, seed=5)[1], b.sample(20, seed=5)[1])
    # sklearn returns samples grouped by component; ours are shuffled
    components = torch.cdist(first_a[1][:12], MEANS).argmin(1)
    assert components.unique().numel() > 1
    # decoding is the model's decoder
    pca = PCA(1).fit(X)
    X_new, z = CodeSampler(pca, n_components=2, random_state=0).fit(X).sample(10)
    assert X_new.shape == (10, 2) and z.shape == (10, 1) and X_new.dtype == torch.float32
    torch.testing.assert_close(X_new, pca.decode(z))


def test_code_sampler_density_integrates_to_one():
    ds = aelab.data.moons(300)
    sampler = CodeSampler(PCA(1).fit(ds), random_state=0).fit(ds)
    assert sampler.codes_.shape == (300, 1)
    grid = torch.linspace(-8, 8, 4001)[:, None]
    density = sampler.density(grid)
    assert float(torch.trapezoid(density, grid[:, 0])) == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(sampler.score_samples(grid).exp(), density)


@pytest.fixture(scope="module")
def moons_ae():
    torch.set_num_threads(1)
    train = aelab.data.moons(2000, seed=0)
    with aelab.seeded(0):
        model = aelab.Autoencoder(2, 1, 32, 2)
    aelab.train_autoencoder(model, train, epochs=60, batch_size=64, lr=3e-3, seed=0)
    return model, train


def test_code_sampler_samples_from_a_moons_autoencoder_lie_on_both_moons(moons_ae):
    model, train = moons_ae
    X_new, z = CodeSampler(model, random_state=0).fit(train).sample(1000)
    distance, moon = distance_to_moons(X_new)
    assert float(distance.mean()) < 0.1  # measured 0.035; the data's noise is 0.1
    share = float(moon.float().mean())
    assert 0.3 < share < 0.7  # both moons, in about equal measure
    # and each moon is covered along its length, not just at one spot
    curve = aelab.data.moons_curve(200)
    reached = torch.cdist(curve, X_new).min(1).values < 0.15
    assert reached[:100].float().mean() > 0.8 and reached[100:].float().mean() > 0.8
    # the linear baseline's samples lie on a line: much further from the moons
    pca_samples, _ = CodeSampler(PCA(1).fit(train), random_state=0).fit(train).sample(1000)
    assert float(distance_to_moons(pca_samples)[0].mean()) > 2 * float(distance.mean())


def test_code_sampler_works_with_a_vae_and_leaves_the_model_alone():
    with aelab.seeded(0):
        vae = aelab.VAE(2, 2, 16, 1)
    vae.train()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    sampler = CodeSampler(vae, n_components=2, random_state=0).fit(aelab.data.moons(100))
    X_new, z = sampler.sample(7)
    assert X_new.shape == (7, 2) and z.shape == (7, 2)
    with torch.no_grad():
        torch.testing.assert_close(X_new, vae.eval().decode(z))
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in before.items())


class _NoDecode(nn.Module):
    def encode(self, x):
        return x


def test_code_sampler_bad_input():
    X = _mixture_data(n_per=10)
    model = _identity_model()
    CodeSampler(model, n_components=0)  # __init__ only stores
    cases = [
        (dict(n_components=0), ValueError, "n_components must be an int >= 1, got 0"),
        (
            dict(n_components="aic"),
            TypeError,
            "n_components must be 'bic' or an int >= 1, got 'aic'",
        ),
        (dict(n_components=2.0), TypeError, "n_components must be 'bic' or an int"),
        (
            dict(n_components=31),
            ValueError,
            r"n_components \(31\) must not exceed the number of samples \(30\)",
        ),
        (dict(covariance_type="bogus"), ValueError, "covariance_type must be one of"),
        (dict(random_state=-1), ValueError, "random_state must be an int >= 0"),
        (dict(random_state="a"), TypeError, "random_state must be None or an int"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            CodeSampler(model, **kwargs).fit(X)
    with pytest.raises(
        TypeError, match="model must have encode\\(\\) and decode\\(\\).*without decode"
    ):
        CodeSampler(_NoDecode()).fit(X)
    with pytest.raises(
        ValueError, match="X has 3 features per sample, expected 2; the model's input_size is 2"
    ):
        CodeSampler(model).fit(torch.zeros(10, 3))
    with pytest.raises(NotFittedError, match="CodeSampler is not fitted yet"):
        CodeSampler(model).sample(5)
    with pytest.raises(NotFittedError, match="not fitted"):
        CodeSampler(model).score_samples(torch.zeros(2, 2))
    sampler = CodeSampler(model, n_components=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="n_samples must be an int >= 1, got 0"):
        sampler.sample(0)
    with pytest.raises(ValueError, match="Z has 1 features per sample, expected 2"):
        sampler.score_samples(torch.zeros(4, 1))


def test_code_sampler_fit_follows_the_data_rules():
    model = _identity_model()
    X = _mixture_data(n_per=10)
    X_nan = X.clone()
    X_nan[4, 0] = float("nan")
    cases = [
        (X_nan, ValueError, "X contains 1 NaN"),
        (X[:1], ValueError, "X must hold at least 2 samples to fit a mixture, got 1"),
        (X[:0], ValueError, "X must hold at least one sample"),
        (X[None], ValueError, "X must be 2-D"),
        (X.to(torch.complex64), TypeError, "X must hold real numbers"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            CodeSampler(model).fit(bad)
    assert (
        CodeSampler(model, n_components=2, random_state=0).fit(aelab.data.Dataset(X)).n_components_
        == 2
    )


def test_code_sampler_refuses_codes_that_are_not_finite():
    class Exploding(nn.Module):
        init_args = {"input_size": 2}

        def encode(self, x):
            return x * float("inf")

        def decode(self, z):
            return z

    with pytest.raises(ValueError, match="the model's codes contain"):
        CodeSampler(Exploding()).fit(torch.ones(10, 2))
