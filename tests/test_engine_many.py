"""train_many takes every option of the single-model functions, per model where it can differ,
and splits mixed calls into groups whose members train as they would alone."""

import copy

import numpy as np
import pytest
import torch

import aelab
from aelab import data
from aelab.train import MMDObjective, train_autoencoder

EPOCHS = 2


def mlp(seed=0):
    with aelab.seeded(seed):
        return aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def without(config, *keys):
    return {k: v for k, v in config.items() if k not in keys}


@pytest.fixture(scope="module")
def rect():
    return data.rectangle(40)


def test_per_member_optimizer_settings_stack_and_match_single_runs(rect):
    # numpy arrays and tensors wherever a per-model sequence is accepted
    K = 4
    options = dict(
        lr=np.array([1e-3, 3e-3, 1e-3, 3e-3]),
        weight_decay=torch.tensor([0.0, 0.01, 0.01, 0.0]),
        betas=[(0.9, 0.999), (0.5, 0.9), (0.9, 0.999), (0.8, 0.99)],
        eps=np.array([1e-8, 1e-6, 1e-8, 1e-8]),
        noise_sigma=[0.1, 0.1, None, None],
        freeze=[None, "encoder", None, None],
        reinit=[None, None, "decoder", None],
        lr_schedule=[None, "step", "cosine", None],
    )
    models = [mlp(s) for s in range(K)]
    alone = copy.deepcopy(models)
    seeds = np.arange(10, 10 + K)
    histories = aelab.train_many(
        models, rect, epochs=EPOCHS, batch_size=8, seeds=seeds, test=rect, **options
    )
    assert all(h.config["path"] == "stack" for h in histories)
    # noisy and clean members draw different streams, a frozen encoder is another plan;
    # learning-rate schedules differ per member inside one stack
    assert [h.config["ensemble_size"] for h in histories] == [1, 1, 2, 2]
    for k in range(K):
        single = {
            name: (values[k].item() if hasattr(values[k], "item") else values[k])
            for name, values in options.items()
        }
        expected = train_autoencoder(
            alone[k], rect, epochs=EPOCHS, batch_size=8, seed=int(seeds[k]), test=rect, **single
        )
        assert histories[k].step_loss == expected.step_loss
        assert histories[k].test_loss == expected.test_loss
        assert without(histories[k].config, "ensemble_size") == expected.config
        assert same_weights(models[k], alone[k])
        assert type(histories[k].config["lr"]) is float  # no numpy scalars in the record


def test_sgd_momentum_per_member_in_one_stack(rect):
    models = [mlp(s) for s in range(3)]
    alone = copy.deepcopy(models)
    momenta = [0.0, 0.9, 0.5]
    histories = aelab.train_many(
        models, rect, epochs=EPOCHS, batch_size=8, lr=0.01, optimizer="sgd", momentum=momenta
    )
    assert [h.config["ensemble_size"] for h in histories] == [3, 3, 3]
    for k, momentum in enumerate(momenta):
        expected = train_autoencoder(
            alone[k],
            rect,
            epochs=EPOCHS,
            batch_size=8,
            lr=0.01,
            seed=k,
            optimizer="sgd",
            momentum=momentum,
        )
        assert histories[k].step_loss == expected.step_loss
        assert same_weights(models[k], alone[k])


def test_vae_mmd_and_conv_models_in_one_call(rect):
    images = data.Dataset(torch.rand(40, 16, generator=torch.Generator().manual_seed(0)))
    with aelab.seeded(0):
        models = [
            aelab.VAE(2, 1, 8, 1),
            aelab.VAE(2, 1, 8, 1),
            aelab.Autoencoder(2, 2, 8, 1),
            aelab.ConvAutoencoder((1, 4, 4), 2),
            mlp(1),
            aelab.VAE(2, 1, 8, 1),
        ]
    alone = copy.deepcopy(models)
    trains = [rect, rect, rect, images, rect, rect]
    objective = ["vae", "vae", "mmd", MMDObjective(weight=0.5), "reconstruction", "vae"]
    histories = aelab.train_many(
        models,
        trains,
        epochs=EPOCHS,
        batch_size=8,
        objective=objective,
        beta=[1.0, 0.5, 1.0, 1.0, 1.0, 1.0],
        mmd_weight=2.0,
        kernel="rbf",
        bandwidths=[1.0, 2.0],
        seeds=[0, 1, 2, 3, 4, 5],
        test=[rect, rect, rect, images, rect, rect],
    )
    paths = [h.config["path"] for h in histories]
    # MLPs stack under reconstruction and MMD, VAEs under their own objective; conv does not
    assert [paths[k] for k in (0, 1, 2, 4, 5)] == ["stack"] * 5
    assert paths[3] in ("vmap", "loop")
    assert paths[0] == paths[5]  # one group: same architecture, objective and settings
    assert [h.config["objective"] for h in histories] == [
        "vae",
        "vae",
        "mmd",
        "mmd",
        "reconstruction",
        "vae",
    ]
    assert histories[1].config["beta"] == 0.5 and histories[2].config["kernel"] == "rbf"
    assert histories[3].config["mmd_weight"] == 0.5  # the instance's own settings
    assert models[0].likelihood == "gaussian"  # resolved, and kept by the model
    assert all(len(h.train_loss) == len(h.test_loss) == EPOCHS for h in histories)
    # each member trains as the single-model function trains it: exactly on the loop path,
    # to float32 rounding on the vmapped one and on the stack (MMD's hand-written gradient)
    expected = [
        aelab.train_vae(alone[0], rect, epochs=EPOCHS, batch_size=8, seed=0, test=rect),
        aelab.train_vae(alone[1], rect, beta=0.5, epochs=EPOCHS, batch_size=8, seed=1, test=rect),
        aelab.train_mmd_autoencoder(
            alone[2],
            rect,
            mmd_weight=2.0,
            kernel="rbf",
            bandwidths=[1.0, 2.0],
            epochs=EPOCHS,
            batch_size=8,
            seed=2,
            test=rect,
        ),
        aelab.train_mmd_autoencoder(
            alone[3], images, mmd_weight=0.5, epochs=EPOCHS, batch_size=8, seed=3, test=images
        ),
        None,
        aelab.train_vae(alone[5], rect, epochs=EPOCHS, batch_size=8, seed=5, test=rect),
    ]
    for k, single in enumerate(expected):
        if single is None:
            continue
        tolerance = 0 if paths[k] == "loop" else 1e-5
        assert histories[k].step_loss == pytest.approx(single.step_loss, rel=tolerance)
        assert histories[k].test_loss == pytest.approx(single.test_loss, rel=tolerance)
        for p, q in zip(models[k].parameters(), alone[k].parameters()):
            assert torch.allclose(p, q, rtol=0, atol=tolerance)


@pytest.mark.parametrize(
    "name, value",
    [
        ("lr", [1e-3] * 3),
        ("seeds", np.arange(1)),
        ("noise_sigma", torch.tensor([0.1, 0.2, 0.3])),
        ("weight_decay", [0.0] * 3),
        ("betas", [(0.9, 0.999)] * 3),
        ("eps", [1e-8] * 3),
        ("momentum", [0.0] * 3),
        ("optimizer", ["adam"] * 3),
        ("freeze", [None] * 3),
        ("reinit", [None]),
        ("objective", ["reconstruction"] * 3),
        ("beta", [1.0] * 3),
        ("mmd_weight", [1.0] * 3),
        ("bandwidths", [[1.0], [2.0], [3.0]]),
        ("test", [data.rectangle(4)] * 3),
    ],
)
def test_a_per_member_option_of_the_wrong_length_names_itself(rect, name, value):
    expected_length = len(value)
    with pytest.raises(
        ValueError,
        match=rf"^{name} has {expected_length} entries but there "
        rf"are 2 models",
    ):
        aelab.train_many([mlp(0), mlp(1)], rect, epochs=1, batch_size=8, **{name: value})


def test_shared_options_are_not_mistaken_for_per_member_lists(rect):
    # a pair of betas and a flat list of bandwidths are one value for every model
    histories = aelab.train_many(
        [mlp(0), mlp(1)],
        rect,
        epochs=1,
        batch_size=8,
        betas=np.array([0.8, 0.99]),
        objective="mmd",
        bandwidths=[0.5, 1.0, 2.0],
        mmd_weight=0.1,
    )
    assert all(h.config["betas"] == (0.8, 0.99) for h in histories)
    assert all(h.config["bandwidths"] == [0.5, 1.0, 2.0] for h in histories)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(objective="gan"), ValueError, r"objective must be one of"),
        (dict(objective="vae"), TypeError, r"^models\[0\]: objective='vae' needs an aelab.VAE"),
        (
            dict(momentum=[0.0, 1.5], optimizer="sgd"),
            ValueError,
            r"^models\[1\]: momentum must be a number in \[0, 1\), got 1.5",
        ),
        (dict(objective="mmd", batch_size=1), ValueError, "at least 2 samples"),
        (dict(betas="fast"), TypeError, "betas must be one value or a list"),
    ],
)
def test_bad_options_raise_clear_errors(rect, kwargs, error, match):
    settings = dict(epochs=1, batch_size=8) | kwargs
    with pytest.raises(error, match=match):
        aelab.train_many([mlp(0), mlp(1)], rect, **settings)


def test_models_with_tensor_hooks_keep_autograd(rect):
    # a gradient hook runs only under autograd: such a model takes the loop, never a stack
    with aelab.seeded(0):
        models = [aelab.Autoencoder(2, 2, 8, 1) for _ in range(3)]
    models[0].encoder[0].weight.register_hook(torch.zeros_like)
    before = models[0].encoder[0].weight.detach().clone()
    histories = aelab.train_many(models, rect, epochs=1, batch_size=8, objective="mmd")
    assert histories[0].config["path"] == "loop"
    assert torch.equal(models[0].encoder[0].weight, before)  # the hook zeroed its gradient
    assert histories[1].config["path"] == histories[2].config["path"]
