"""train_autoencoder's hand-written step must train exactly like the autograd loop it replaces."""

import copy

import pytest
import torch
import torch.nn.functional as F

import aelab
from aelab import data
from aelab.train import Reconstruction, TrainConfig, TrainingDiverged, fit


def autograd_objective(model, x, target):
    # same loss as Reconstruction(), but a plain callable: fit takes the generic autograd loop
    return F.mse_loss(model(x), target)


def build(kind: str):
    with aelab.seeded(0):
        if kind == "mlp":
            return aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)
        if kind == "linear":
            return aelab.LinearAutoencoder(2, 1)
        return aelab.ResNetAutoencoder(2, 1, hidden_size=8, blocks=1)


@pytest.fixture(scope="module")
def rect():
    return data.rectangle(40)


@torch.no_grad()
def max_param_diff(a, b) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kind", ["mlp", "linear", "resnet"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"noise_sigma": 0.2, "lr_schedule": "cosine", "weight_decay": 0.01},
        {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01},
        {"freeze": "encoder"},
        {"reinit": "decoder", "lr_schedule": "step"},
        {"batch_size": 64},  # full batch
        {"batch_size": 16, "drop_last": False},  # a smaller last batch
    ],
)
def test_hand_written_step_matches_the_autograd_loop(kind, options, rect):
    settings = dict(epochs=4, batch_size=8, seed=3) | options
    cfg = TrainConfig(**settings)
    fast, slow = build(kind), build(kind)
    test = data.rectangle(12, seed=1)
    h_fast = fit(fast, rect, Reconstruction(), cfg, test=test, progress=False)
    h_slow = fit(slow, rect, autograd_objective, cfg, test=test, progress=False)
    assert max_param_diff(fast, slow) < 1e-6
    assert max_param_diff(fast, build(kind)) > 1e-4  # it trained
    assert h_fast.examples_seen == h_slow.examples_seen
    assert (h_fast.config["path"], h_slow.config["path"]) == ("stack", "loop")
    differ = ("path", "objective")  # the paths, and a plain callable is a "custom" objective
    assert {k: v for k, v in h_fast.config.items() if k not in differ} == {
        k: v for k, v in h_slow.config.items() if k not in differ
    }
    for field in ("train_loss", "test_loss", "step_loss"):
        fast_values, slow_values = getattr(h_fast, field), getattr(h_slow, field)
        assert len(fast_values) == len(slow_values) > 0
        assert fast_values == pytest.approx(slow_values, rel=1e-5, abs=1e-6)
    if options.get("freeze") == "encoder":
        assert max_param_diff(fast.encoder, build(kind).encoder) == 0
        assert all(p.requires_grad for p in fast.parameters())


def test_fast_path_is_bit_reproducible_and_leaves_global_state_alone(rect):
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    first, second = build("mlp"), build("mlp")
    h1 = aelab.train_autoencoder(
        first, rect, epochs=3, batch_size=8, seed=5, noise_sigma=0.1, progress=False
    )
    h2 = aelab.train_autoencoder(
        second, rect, epochs=3, batch_size=8, seed=5, noise_sigma=0.1, progress=False
    )
    assert h1.step_loss == h2.step_loss and h1.train_loss == h2.train_loss
    assert max_param_diff(first, second) == 0
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads
    assert not first.training  # eval mode after training, as the autograd loop leaves it


def test_fast_path_restores_threads_after_running_single_threaded(rect):
    torch.set_num_threads(2)  # the autouse fixture restores the original count afterwards
    aelab.train_autoencoder(build("mlp"), rect, epochs=1, batch_size=8, progress=False)
    assert torch.get_num_threads() == 2


def test_fast_path_divergence_restores_the_weights(rect):
    model = build("mlp")
    before = copy.deepcopy(model)
    with pytest.raises(TrainingDiverged, match=r"in epoch 1 of 3 \(lr=1e\+30\)"):
        aelab.train_autoencoder(model, rect, epochs=3, batch_size=8, lr=1e30, progress=False)
    assert max_param_diff(model, before) == 0


def test_other_models_keep_the_autograd_loop(rect):
    vae = aelab.VAE(2, 1, 8, 1)
    history = aelab.train_autoencoder(vae, rect, epochs=2, batch_size=8, progress=False)
    assert len(history.step_loss) == 10 and history.train_loss[-1] > 0
