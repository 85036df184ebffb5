import pytest
import torch
import torch.nn.functional as F

import aelab
from aelab.evaluate import encode
from aelab.train import MMDObjective


@pytest.fixture(scope="module")
def moons():
    return aelab.data.moons(512, seed=0)


def test_mmd_objective_brings_codes_much_closer_to_standard_normal(moons):
    reference = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    distance = {}
    for weight in (0.0, 1.0):
        with aelab.seeded(0):
            model = aelab.Autoencoder(2, 2, hidden_size=32, layers=2)
        if weight:
            history = aelab.train_mmd_autoencoder(
                model, moons, mmd_weight=weight, epochs=40, batch_size=64, lr=3e-3, progress=False
            )
        else:
            history = aelab.train_autoencoder(
                model, moons, epochs=40, batch_size=64, lr=3e-3, progress=False
            )
        assert history.train_loss[-1] < history.train_loss[0]
        distance[weight] = float(aelab.mmd(encode(model, moons.X), reference))
    assert distance[1.0] < 0.25 * distance[0.0], distance


def test_objective_is_mse_plus_weighted_mmd_to_fresh_normal_samples():
    with aelab.seeded(0):
        model = aelab.ConvAutoencoder((1, 8, 8), 2, skip=True)  # output is not decode(encode(x))
    x = torch.rand(16, 64)
    bandwidths = (0.5, 1.0, 2.0)
    objective = MMDObjective(weight=3.0, kernel="rbf", bandwidths=bandwidths)
    assert objective.noise_columns(model) == 2  # one prior draw per code dimension
    g = torch.Generator().manual_seed(7)
    prior, other = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
    with torch.no_grad():
        loss = objective.loss(model, x, x, prior)
        z = model.encode(x)
        expected = F.mse_loss(model(x), x) + 3.0 * aelab.mmd(z, prior, "rbf", bandwidths)
        assert float(loss) == pytest.approx(float(expected), rel=1e-6)
        # the prior sample is the noise it is given: another draw, another loss
        assert float(objective.loss(model, x, x, other)) != float(loss)


def test_zero_weight_matches_plain_training_in_the_first_epoch(moons):
    runs = []
    for train in (
        aelab.train_autoencoder,
        lambda m, ds, **kw: aelab.train_mmd_autoencoder(m, ds, mmd_weight=0.0, **kw),
    ):
        with aelab.seeded(0):
            model = aelab.ResNetAutoencoder(2, 1, hidden_size=16, blocks=1)
        runs.append(train(model, moons, epochs=1, batch_size=64, seed=2, progress=False).step_loss)
    # equal up to rounding: plain training may take a hand-written backward pass
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_records_settings_and_is_reproducible(moons):
    histories = []
    for _ in range(2):
        with aelab.seeded(0):
            model = aelab.Autoencoder(2, 2, hidden_size=8, layers=1)
        histories.append(
            aelab.train_mmd_autoencoder(
                model,
                moons,
                mmd_weight=2.0,
                kernel="rbf",
                bandwidths=[1, 2],
                epochs=2,
                batch_size=64,
                test=moons,
                seed=4,
                progress=False,
            )
        )
    a, b = histories
    assert a.step_loss == b.step_loss and a.test_loss == b.test_loss
    assert {k: a.config[k] for k in ("objective", "mmd_weight", "kernel", "bandwidths")} == {
        "objective": "mmd",
        "mmd_weight": 2.0,
        "kernel": "rbf",
        "bandwidths": [1.0, 2.0],
    }


def test_default_kernel_and_bandwidths_are_recorded(moons):
    history = aelab.train_mmd_autoencoder(
        aelab.Autoencoder(2, 2, 8, 1),
        moons,
        mmd_weight=1.0,
        epochs=1,
        batch_size=128,
        progress=False,
    )
    assert history.config["kernel"] == "imq"
    assert history.config["bandwidths"] == list(aelab.losses.DEFAULT_BANDWIDTHS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(mmd_weight=1.0, kernel="laplace"),
            r"kernel must be one of \['imq', 'rbf'\], got 'laplace'",
        ),
        (
            dict(mmd_weight=1.0, bandwidths=(1.0, -2.0)),
            "every bandwidth must be a finite number > 0",
        ),
        (dict(mmd_weight=1.0, bandwidths=0), "every bandwidth must be a finite number > 0"),
        (dict(mmd_weight=-0.5), "mmd_weight must be a finite number >= 0, got -0.5"),
        (dict(mmd_weight=1.0, batch_size=1), "at least 2 samples"),
        (dict(mmd_weight=1.0, batch_size=3, drop_last=False), "got a batch of 1"),  # 100 = 33*3 + 1
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"epochs": 1, "batch_size": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        aelab.train_mmd_autoencoder(aelab.Autoencoder(2, 2, 8, 1), aelab.data.moons(100), **kwargs)
