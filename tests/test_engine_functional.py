"""The vmapped stack (aelab._engine.functional) against a plain autograd loop and autograd.

The oracle is a loop written here: one model at a time, ``torch.optim.Adam``, and the draws
the objectives module documents (per epoch: randperm unless full batch, denoising noise, then
the objective's noise columns), from ``torch.Generator().manual_seed(seed)``. Batched kernels
round differently from single-model ones, so members agree to a tolerance over a few steps,
not bit for bit: ATOL on weights after at most 6 Adam steps (each moves a weight by up to lr).
"""

import copy

import numpy as np
import pytest
import torch

import aelab
from aelab._engine.functional import (
    MemberResult,
    functional_beats_loop,
    stacked_loss_and_grad,
    train_functional,
)
from aelab._engine.objectives import (
    CallableObjective,
    MMDObjective,
    Reconstruction,
    VAEObjective,
)
from aelab.train import TrainConfig

RTOL, ATOL = 1e-5, 5e-6  # float32, <= 6 steps at lr <= 3e-3; measured: <= 2e-7 rel, 7e-7 abs


def _moons():
    return aelab.data.moons(48, seed=3).X  # (48, 2)


def _digits():
    return aelab.data.digits().X[:48]  # (48, 64), in [0, 1]


# name -> (model factory, objective, data, batch size, noise_sigma)
CASES = {
    "mlp": (
        lambda: aelab.Autoencoder(2, 1, hidden_size=8, layers=2),
        Reconstruction(),
        _moons,
        16,
        None,
    ),
    "mlp-denoising": (
        lambda: aelab.Autoencoder(2, 1, hidden_size=8, layers=2),
        Reconstruction(),
        _moons,
        16,
        0.2,
    ),
    "vae": (
        lambda: aelab.VAE(64, 2, hidden_size=16, layers=1),
        VAEObjective(beta=0.5, likelihood="bernoulli"),
        _digits,
        16,
        None,
    ),
    "mmd": (
        lambda: aelab.Autoencoder(2, 2, hidden_size=8, layers=2),
        MMDObjective(weight=2.0, kernel="rbf"),
        _moons,
        16,
        None,
    ),
    "mmd-resnet": (lambda: aelab.ResNetAutoencoder(2, 2, 8, 1), MMDObjective(), _moons, 16, None),
    "conv": (
        lambda: aelab.ConvAutoencoder((1, 8, 8), 4, channels=(4, 8)),
        Reconstruction(),
        _digits,
        16,
        0.3,
    ),
    "conv-skip": (
        lambda: aelab.ConvAutoencoder((1, 8, 8), 4, skip=True, channels=(4, 8)),
        Reconstruction(),
        _digits,
        16,
        0.3,
    ),
    "conv-skip-mmd": (
        lambda: aelab.ConvAutoencoder((1, 8, 8), 4, skip=True, channels=(4, 8)),
        MMDObjective(),
        _digits,
        16,
        None,
    ),
}


def reference_loop(model, X, cfg, objective):
    """Train ``model`` alone with autograd and torch.optim.Adam; its step losses."""
    g = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n = len(X)
    batch_size = min(cfg.batch_size, n)
    n_used = n - n % batch_size if cfg.drop_last else n
    cols = objective.noise_columns(model)
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g) if batch_size < n else torch.arange(n)
        target = X[order[:n_used]]
        inputs = target
        if cfg.noise_sigma:
            inputs = target + cfg.noise_sigma * torch.randn(target.shape, generator=g)
        noise = torch.randn(n_used, cols, generator=g).split(batch_size) if cols else None
        for s, (x, t) in enumerate(zip(inputs.split(batch_size), target.split(batch_size))):
            loss = objective.loss(model, x, t, noise[s] if cols else None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def _build(factory, K):
    models = []
    for k in range(K):
        with aelab.seeded(100 + k):
            models.append(factory())
    return models


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_members_match_a_plain_loop(case, K):
    factory, objective, data, batch_size, sigma = CASES[case]
    X = data()
    models = _build(factory, K)
    alone = [copy.deepcopy(m) for m in models]
    lrs = [1e-3, 3e-3, 1e-3][:K]  # two rates: members are regrouped, results come back in order
    cfgs = [
        TrainConfig(epochs=2, batch_size=batch_size, lr=lr, seed=7 + k, noise_sigma=sigma)
        for k, lr in enumerate(lrs)
    ]
    results = train_functional(models, X, cfgs, objective)
    assert all(isinstance(r, MemberResult) and r.diverged_epoch is None for r in results)
    for model, reference, cfg, result in zip(models, alone, cfgs, results):
        steps = reference_loop(reference, X, cfg, objective)
        assert len(result.step_loss) == len(steps) == 6
        torch.testing.assert_close(
            torch.tensor(result.step_loss), torch.tensor(steps), rtol=RTOL, atol=ATOL
        )
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=RTOL, atol=ATOL, msg=name)
        # the epoch loss is the batch-size-weighted mean of its steps (equal batches here)
        assert result.train_loss[0] == pytest.approx(sum(steps[:3]) / 3, rel=1e-4)
        assert len(result.seconds) == 2 and result.seconds[0] <= result.seconds[1]


@pytest.mark.parametrize("case", ["mlp", "vae", "mmd", "conv-skip", "conv-skip-mmd"])
def test_stacked_gradients_match_autograd(case):
    factory, objective, data, batch_size, _ = CASES[case]
    X = data()
    K = 3
    models = _build(factory, K)
    g = torch.Generator().manual_seed(0)
    x = X[torch.randint(len(X), (K, batch_size), generator=g)]  # (K, b, d): a batch each
    cols = objective.noise_columns(models[0])
    noise = torch.randn(K, batch_size, cols, generator=g) if cols else None
    values, grads = stacked_loss_and_grad(models, objective, x, x, noise)
    for k, model in enumerate(models):
        loss = objective.loss(model, x[k], x[k], noise[k] if cols else None)
        model.zero_grad()
        loss.backward()
        torch.testing.assert_close(values[k], loss.detach(), rtol=1e-5, atol=1e-6)
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][k], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_per_member_data_full_batch_and_test_loss():
    X = _moons()
    data = torch.stack([X, X.flip(0) * 0.5, X + 1.0])  # (3, n, d): one dataset each
    models = _build(CASES["mlp"][0], 3)
    alone = [copy.deepcopy(m) for m in models]
    cfgs = [TrainConfig(epochs=3, batch_size=100, seed=k) for k in range(3)]  # full batch
    results = train_functional(
        models, data, cfgs, Reconstruction(), test_in=data[:, :10], test_target=data[:, :10]
    )
    for k in range(3):
        steps = reference_loop(alone[k], data[k], cfgs[k], Reconstruction())
        torch.testing.assert_close(
            torch.tensor(results[k].step_loss), torch.tensor(steps), rtol=RTOL, atol=ATOL
        )
        with torch.no_grad():  # the last test loss is the trained model's error on the test rows
            final = torch.nn.functional.mse_loss(models[k](data[k, :10]), data[k, :10])
        assert results[k].test_loss[-1] == pytest.approx(float(final), rel=1e-5)


def test_vae_test_loss_uses_the_seeded_test_draw():
    X = _digits()
    objective = VAEObjective(likelihood="bernoulli")
    models = _build(CASES["vae"][0], 2)
    cfgs = [TrainConfig(epochs=1, batch_size=16, seed=k) for k in range(2)]
    results = train_functional(models, X, cfgs, objective, test_in=X[:20], test_target=X[:20])
    for k, model in enumerate(models):  # member k's "test-noise" stream, as the loop draws
        seed = int(np.random.SeedSequence([k, *b"test-noise"]).generate_state(1)[0])
        eps = torch.randn(20, 2, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = objective.loss(model, X[:20], X[:20], eps)
        assert results[k].test_loss[0] == pytest.approx(float(expected), rel=1e-5)


def test_a_diverging_member_keeps_its_weights_and_the_others_go_on():
    X = _moons()
    models = _build(CASES["mlp"][0], 3)
    before = [copy.deepcopy(m.state_dict()) for m in models]
    alone = copy.deepcopy(models[2])
    cfgs = [
        TrainConfig(epochs=3, batch_size=16, lr=lr, seed=k)
        for k, lr in enumerate([1e-3, 1e12, 1e-3])
    ]
    results = train_functional(models, X, cfgs, Reconstruction())
    assert results[1].diverged_epoch is not None and results[1].diverged_epoch < 3
    assert len(results[1].train_loss) == results[1].diverged_epoch
    for name, value in models[1].state_dict().items():
        assert torch.equal(value, before[1][name])
    assert results[0].diverged_epoch is None and len(results[0].train_loss) == 3
    steps = reference_loop(alone, X, cfgs[2], Reconstruction())
    torch.testing.assert_close(
        torch.tensor(results[2].step_loss[:3]), torch.tensor(steps[:3]), rtol=RTOL, atol=ATOL
    )


def test_freeze_and_sgd_schedule():
    X = _moons()
    models = _build(CASES["mlp"][0], 2)
    decoders = [copy.deepcopy(m.decoder.state_dict()) for m in models]
    encoders = [copy.deepcopy(m.encoder.state_dict()) for m in models]
    cfgs = [
        TrainConfig(
            epochs=4,
            batch_size=16,
            lr=0.05,
            seed=k,
            optimizer="sgd",
            momentum=0.9,
            lr_schedule="step",
            freeze="decoder",
        )
        for k in range(2)
    ]
    train_functional(models, X, cfgs, Reconstruction())
    for m, dec, enc in zip(models, decoders, encoders):
        assert all(torch.equal(v, dec[k]) for k, v in m.decoder.state_dict().items())
        assert not all(torch.equal(v, enc[k]) for k, v in m.encoder.state_dict().items())


def test_bad_input():
    X = _moons()
    models = _build(CASES["mlp"][0], 2)
    cfgs = [TrainConfig(epochs=1, batch_size=16, seed=k) for k in range(2)]
    with pytest.raises(ValueError, match="cfgs\\[1\\].batch_size=8 differs"):
        train_functional(
            models, X, [cfgs[0], TrainConfig(epochs=1, batch_size=8)], Reconstruction()
        )
    with pytest.raises(ValueError, match="cfgs has length 1 but there are 2 models"):
        train_functional(models, X, cfgs[:1], Reconstruction())
    with pytest.raises(ValueError, match="one architecture"):
        train_functional(
            [models[0], aelab.Autoencoder(2, 1, hidden_size=4, layers=2)], X, cfgs, Reconstruction()
        )
    with pytest.raises(ValueError, match="K=2"):
        train_functional(models, torch.zeros(3, 10, 2), cfgs, Reconstruction())
    with pytest.raises(TypeError, match="objective"):
        train_functional(models, X, cfgs, lambda m, x, t: 0)


def test_dispatch_rule():
    mlp, vae = aelab.Autoencoder(2, 2, 8, 2), aelab.VAE(64, 2, 16, 1)
    conv, skip = aelab.ConvAutoencoder((1, 8, 8), 4), aelab.ConvAutoencoder((1, 8, 8), 4, skip=True)
    assert functional_beats_loop(mlp, MMDObjective(), 1) is False  # a lone model: the loop
    assert functional_beats_loop(mlp, MMDObjective(), 64) is True
    assert functional_beats_loop(vae, VAEObjective(), 64) is True
    assert functional_beats_loop(mlp, MMDObjective(), 4) is False
    assert functional_beats_loop(conv, Reconstruction(), 8) is False  # convs: from K=16
    assert functional_beats_loop(conv, Reconstruction(), 16) is True
    assert functional_beats_loop(skip, Reconstruction(), 16) is True
    # cannot stack the same way: sampling inside forward, dropout, an unknown objective
    assert functional_beats_loop(vae, Reconstruction(), 64) is False
    dropout = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert functional_beats_loop(dropout, Reconstruction(), 64) is False
    assert functional_beats_loop(mlp, CallableObjective(fn=lambda m, x, t: 0), 64) is False
