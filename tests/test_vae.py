import pytest
import torch

import aelab
from aelab import VAE
from aelab.losses import bernoulli_reconstruction, gaussian_kl, gaussian_reconstruction
from aelab.train import VAEObjective


def _points(n=64, d=6, shift=0.0):
    g = torch.Generator().manual_seed(0)
    return aelab.data.Dataset(torch.rand(n, d, generator=g) + shift)


def test_encoder_outputs_mean_and_logvar():
    model = VAE(6, 2, hidden_size=8, layers=1)
    x = torch.randn(5, 6)
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == (5, 2)
    assert torch.equal(model.encode(x), mu)
    assert torch.equal(torch.cat([mu, logvar], 1), model.encoder(x))


def test_reparameterize_has_the_posterior_moments():
    mu, logvar = (
        torch.tensor([[1.0, -2.0]]),
        torch.tensor([[0.0, 2 * torch.log(torch.tensor(3.0))]]),
    )
    z = VAE.reparameterize(mu.expand(20000, 2), logvar.expand(20000, 2))
    assert torch.allclose(z.mean(0), mu[0], atol=0.06)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 3.0]), atol=0.06)


def test_reparameterize_passes_gradients():
    mu, logvar = torch.zeros(4, 2, requires_grad=True), torch.zeros(4, 2, requires_grad=True)
    VAE.reparameterize(mu, logvar).sum().backward()
    assert torch.equal(mu.grad, torch.ones(4, 2)) and logvar.grad.abs().sum() > 0


def test_forward_samples_in_train_mode_and_uses_the_mean_in_eval_mode():
    model = VAE(6, 2, hidden_size=8, layers=1)
    x = torch.randn(5, 6)
    model.eval()
    assert torch.equal(model(x), model.decode(model.encode(x)))
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_bernoulli_decode_applies_sigmoid_and_sample_draws_from_the_prior():
    model = VAE(6, 2, hidden_size=8, layers=1, likelihood="bernoulli")
    z = torch.randn(5, 2)
    assert torch.equal(model.decode(z), torch.sigmoid(model.decoder(z)))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    samples = model.sample(7, generator=g1)
    assert samples.shape == (7, 6) and not samples.requires_grad
    assert torch.equal(samples, model.decode(torch.randn(7, 2, generator=g2)))
    gaussian = VAE(6, 2, hidden_size=8, layers=1, likelihood="gaussian")
    assert torch.equal(gaussian.decode(z), gaussian.decoder(z))


def test_vae_kl_equals_torch_distributions():
    model = VAE(6, 3, hidden_size=8, layers=1)
    with torch.no_grad():
        mu, logvar = model.posterior(torch.randn(10, 6) * 3)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, prior).sum(1).mean()
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    "likelihood, reconstruction",
    [("gaussian", gaussian_reconstruction), ("bernoulli", bernoulli_reconstruction)],
)
def test_objective_is_reconstruction_plus_beta_kl(likelihood, reconstruction):
    model = VAE(6, 2, hidden_size=8, layers=1, likelihood=likelihood)
    x = torch.rand(8, 6)
    objective = VAEObjective(beta=2.5, likelihood=likelihood)
    assert objective.noise_columns(model) == 2  # one standard normal per code dimension
    eps = torch.randn(8, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        loss = objective.loss(model, x, x, eps)
        mu, logvar = model.posterior(x)
        out = model.decoder(mu + torch.exp(0.5 * logvar) * eps)
        expected = reconstruction(out, x) + 2.5 * gaussian_kl(mu, logvar)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_train_vae_lowers_the_negative_elbo_and_records_settings():
    train, test = aelab.data.split(aelab.data.digits(), test_size=0.2, seed=0)
    with aelab.seeded(0):
        model = VAE(64, 2, hidden_size=64, layers=1)
    history = aelab.train_vae(
        model, train, beta=0.5, epochs=10, batch_size=64, lr=3e-3, test=test, progress=False
    )
    assert history.train_loss[-1] < 0.9 * history.train_loss[0]
    assert len(history.test_loss) == 10
    assert history.config["beta"] == 0.5 and history.config["objective"] == "vae"
    assert history.config["likelihood"] == "bernoulli"  # digits lie in [0, 1]
    assert model.likelihood == "bernoulli" and model.init_args["likelihood"] == "bernoulli"
    assert history.config["model_args"]["likelihood"] == "bernoulli"
    samples = model.sample(5)
    assert ((samples > 0) & (samples < 1)).all()


def test_train_vae_is_reproducible():
    ds = _points()
    losses = []
    for _ in range(2):
        with aelab.seeded(1):
            model = VAE(6, 2, hidden_size=8, layers=1)
        losses.append(
            aelab.train_vae(model, ds, epochs=2, batch_size=16, seed=3, progress=False).step_loss
        )
    assert losses[0] == losses[1]


def test_auto_picks_gaussian_outside_unit_interval_and_keeps_it_on_save(tmp_path):
    model = VAE(6, 2, hidden_size=8, layers=1)
    history = aelab.train_vae(model, _points(shift=-0.5), epochs=1, batch_size=16, progress=False)
    assert history.config["likelihood"] == "gaussian" and model.likelihood == "gaussian"
    assert aelab.load(aelab.save(model, tmp_path / "vae.pt")).likelihood == "gaussian"
    # once chosen, "auto" keeps the model's likelihood even for [0, 1] data
    aelab.train_vae(model, _points(), epochs=1, batch_size=16, progress=False)
    assert model.likelihood == "gaussian"


def test_explicit_likelihood_overrides_auto():
    model = VAE(6, 2, hidden_size=8, layers=1)
    history = aelab.train_vae(
        model, _points(), likelihood="gaussian", epochs=1, batch_size=16, progress=False
    )
    assert history.config["likelihood"] == "gaussian" == model.likelihood


def test_bad_vae_arguments():
    model = VAE(6, 2, hidden_size=8, layers=1)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got -1.0"):
        aelab.train_vae(model, _points(), beta=-1.0, epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        aelab.train_vae(model, _points(), likelihood="poisson", epochs=1, batch_size=16)
    with pytest.raises(ValueError, match=r"needs train data in \[0, 1\], got values in"):
        aelab.train_vae(model, _points(shift=-0.5), likelihood="bernoulli", epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE(6, 2, likelihood="normal")
    with pytest.raises(TypeError, match="train_vae needs an aelab.VAE"):
        aelab.train_vae(aelab.Autoencoder(6, 2), _points(), epochs=1, batch_size=16)
    assert model.likelihood == "auto"  # failed calls leave the model as it was
    bernoulli = VAE(6, 2, hidden_size=8, layers=1, likelihood="bernoulli")
    with pytest.raises(
        ValueError, match="was built \\(or already trained\\) with likelihood='bernoulli'"
    ):
        aelab.train_vae(bernoulli, _points(), likelihood="gaussian", epochs=1, batch_size=16)
