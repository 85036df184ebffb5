import pytest
import torch

import aelab
from aelab import data
from aelab.train import SCHEDULES, TrainingDiverged, resolve_device, train_autoencoder


def small_model(seed=0, **kwargs):
    with aelab.seeded(seed):
        return aelab.Autoencoder(2, 1, hidden_size=16, layers=2, **kwargs)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.fixture(scope="module")
def moons():
    return data.split(data.moons(120, seed=0), test_size=20, seed=0)


def test_history_has_one_entry_per_epoch_and_per_step(moons):
    train, test = moons
    h = train_autoencoder(small_model(), train, epochs=3, batch_size=8, test=test)
    steps = len(train) // 8  # drop_last, as the courses' DataLoader
    assert len(h.train_loss) == len(h.test_loss) == len(h.seconds) == 3
    assert len(h.step_loss) == 3 * steps
    assert h.examples_seen == [steps * 8 * (i + 1) for i in range(3)]
    assert all(a < b for a, b in zip(h.seconds, h.seconds[1:]))
    assert h.config["batch_size"] == 8 and h.config["model"] == "Autoencoder"
    # the epoch loss is the mean of that epoch's step losses
    assert h.train_loss[1] == pytest.approx(sum(h.step_loss[steps : 2 * steps]) / steps)


def test_full_batch_is_one_step_per_epoch(moons):
    train, _ = moons
    h = train_autoencoder(small_model(), train, epochs=4, batch_size=10_000, optimizer="sgd")
    assert len(h.step_loss) == 4 and h.examples_seen[-1] == 4 * len(train)
    assert h.step_loss == h.train_loss


def test_training_reduces_the_loss(moons):
    train, test = moons
    model = small_model()
    before = aelab.reconstruction_error(model, test.X)
    h = train_autoencoder(model, train, epochs=40, batch_size=16, lr=1e-2, test=test)
    after = aelab.reconstruction_error(model, test.X)
    assert after < 0.3 * before
    assert h.test_loss[-1] == pytest.approx(after, rel=1e-5)


def test_same_seed_is_bit_identical_and_leaves_global_rng_alone(moons):
    train, _ = moons
    state = torch.get_rng_state()
    a, b, c = small_model(), small_model(), small_model()
    ha = train_autoencoder(a, train, epochs=3, batch_size=8, seed=1, noise_sigma=0.1)
    hb = train_autoencoder(b, train, epochs=3, batch_size=8, seed=1, noise_sigma=0.1)
    hc = train_autoencoder(c, train, epochs=3, batch_size=8, seed=2, noise_sigma=0.1)
    assert torch.equal(torch.get_rng_state(), state)
    assert ha.step_loss == hb.step_loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ha.step_loss != hc.step_loss


def test_sgd_with_momentum_and_bad_momentum_for_adam(moons):
    train, _ = moons
    h = train_autoencoder(
        small_model(), train, epochs=2, batch_size=8, optimizer="sgd", momentum=0.9, lr=1e-2
    )
    assert h.config["momentum"] == 0.9 and len(h.train_loss) == 2
    with pytest.raises(ValueError, match="momentum=0.9 only applies to optimizer='sgd'"):
        train_autoencoder(small_model(), train, epochs=1, batch_size=8, momentum=0.9)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("step", [1.0, 1.0, 0.1, 0.01]),
        ("cosine", [1.0, 0.8535534, 0.5, 0.1464466]),
    ],
)
def test_lr_schedules(name, expected):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = SCHEDULES[name](opt, 4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs == pytest.approx(expected, rel=1e-5)


def test_schedule_changes_training(moons):
    train, _ = moons
    plain = train_autoencoder(small_model(), train, epochs=4, batch_size=8)
    stepped = train_autoencoder(small_model(), train, epochs=4, batch_size=8, lr_schedule="step")
    assert plain.step_loss[:24] == stepped.step_loss[:24]  # identical before the first milestone
    assert plain.step_loss[-1] != stepped.step_loss[-1]


def test_denoising_corrupts_inputs_but_not_targets():
    ds = data.Dataset(torch.randn(64, 2))
    clean = aelab.LinearAutoencoder(2, 2)
    noisy = aelab.LinearAutoencoder(2, 2)
    noisy.load_state_dict(clean.state_dict())
    h_clean = train_autoencoder(clean, ds, epochs=60, batch_size=64, lr=0.05, test=ds)
    h_noisy = train_autoencoder(
        noisy, ds, epochs=60, batch_size=64, lr=0.05, test=ds, noise_sigma=0.5
    )
    assert h_clean.train_loss[-1] < 0.01  # a 2-2 linear AE learns the identity
    assert h_noisy.train_loss[-1] > 0.05  # it cannot undo the noise
    assert h_noisy.test_loss[-1] > 0.05  # the test inputs are corrupted too, the targets clean


def test_freeze_keeps_a_part_fixed_and_restores_requires_grad(moons):
    train, _ = moons
    model = small_model()
    decoder_before, encoder_before = params(model.decoder), params(model.encoder)
    train_autoencoder(model, train, epochs=2, batch_size=8, freeze="decoder")
    assert all(torch.equal(p, q) for p, q in zip(decoder_before, model.decoder.parameters()))
    assert all(not torch.equal(p, q) for p, q in zip(encoder_before, model.encoder.parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_reinit_really_reinitialises_every_encoder_layer(moons):
    train, _ = moons
    model = small_model()
    encoder_before, decoder_before = params(model.encoder), params(model.decoder)
    train_autoencoder(model, train, epochs=0, batch_size=8, reinit="encoder")
    assert all(not torch.equal(p, q) for p, q in zip(encoder_before, model.encoder.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(decoder_before, model.decoder.parameters()))
    twin = small_model()
    train_autoencoder(twin, train, epochs=0, batch_size=8, reinit="encoder")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


def test_divergence_names_the_epoch_and_restores_the_weights(moons):
    train, _ = moons
    model = small_model()
    before = params(model)
    with pytest.raises(TrainingDiverged, match=r"epoch \d+ of 50 .*lower the learning rate"):
        train_autoencoder(model, train, epochs=50, batch_size=8, lr=1e6, optimizer="sgd")
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(epochs=-1), ValueError, "epochs must be an int >= 0, got -1"),
        (dict(batch_size=0), ValueError, "batch_size must be an int >= 1, got 0"),
        (dict(lr=0.0), ValueError, "lr must be a finite number > 0"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of .*'rmsprop'"),
        (dict(lr_schedule="linear"), ValueError, "lr_schedule must be one of .*'linear'"),
        (dict(freeze="middle"), ValueError, "freeze must be one of"),
        (dict(noise_sigma=-0.1), ValueError, "noise_sigma must be a finite number >= 0"),
        (dict(epochs=1.5), TypeError, "epochs must be an int"),
    ],
)
def test_bad_arguments_raise_clear_errors(moons, kwargs, error, match):
    train, _ = moons
    settings = dict(epochs=1, batch_size=8) | kwargs
    with pytest.raises(error, match=match):
        train_autoencoder(small_model(), train, **settings)


def test_data_of_the_wrong_width_names_both_sizes():
    with pytest.raises(ValueError, match="3 features per sample but the model's input_size is 2"):
        train_autoencoder(small_model(), data.Dataset(torch.zeros(10, 3)), epochs=1, batch_size=2)
    with pytest.raises(TypeError, match="must be an aelab.data.Dataset"):
        train_autoencoder(small_model(), torch.zeros(10, 2), epochs=1, batch_size=2)


def test_default_device_and_progress_bar(moons, capsys):
    assert resolve_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    train, _ = moons
    train_autoencoder(small_model(), train, epochs=2, batch_size=8, progress=False)
    assert capsys.readouterr().err == ""
    train_autoencoder(small_model(), train, epochs=2, batch_size=8, progress=True)
    assert "epoch" in capsys.readouterr().err
    train_autoencoder(small_model(), train, epochs=2, batch_size=8)  # stderr is not a terminal
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("noise_sigma", [None, 0.2])
def test_a_test_set_never_changes_training(moons, noise_sigma):
    train, test = moons
    a, b = small_model(), small_model()
    train_autoencoder(a, train, epochs=3, batch_size=8, noise_sigma=noise_sigma)
    train_autoencoder(b, train, epochs=3, batch_size=8, noise_sigma=noise_sigma, test=test)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_test_set_never_changes_vae_or_mmd_training(moons):
    train, test = moons
    with aelab.seeded(0):
        a, b = aelab.VAE(2, 1, 8, 1), aelab.VAE(2, 1, 8, 1)
        c, d = aelab.Autoencoder(2, 1, 8, 1), aelab.Autoencoder(2, 1, 8, 1)
    b.load_state_dict(a.state_dict())
    d.load_state_dict(c.state_dict())
    aelab.train_vae(a, train, epochs=2, batch_size=16)
    aelab.train_vae(b, train, epochs=2, batch_size=16, test=test)
    aelab.train_mmd_autoencoder(c, train, mmd_weight=1.0, epochs=2, batch_size=16)
    aelab.train_mmd_autoencoder(d, train, mmd_weight=1.0, epochs=2, batch_size=16, test=test)
    for x, y in [(a, b), (c, d)]:
        assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))


@pytest.mark.parametrize("layers", [2, 0])
def test_a_blow_up_in_the_last_epoch_is_caught_and_undone(layers):
    ds = data.Dataset(torch.randn(100, 2))
    with aelab.seeded(0):
        model = aelab.Autoencoder(2, 1, 8, layers)
    before = params(model)
    with pytest.raises(TrainingDiverged, match="epoch 1 of 1"):
        train_autoencoder(model, ds, epochs=1, batch_size=100, lr=1e30, optimizer="sgd", test=ds)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_autograd_path_catches_a_last_epoch_blow_up_too():
    ds = data.Dataset(torch.rand(64, 4))
    with aelab.seeded(0):
        vae = aelab.VAE(4, 2, 8, 1)
    before = params(vae)
    with pytest.raises(TrainingDiverged, match="epoch 1 of 1"):
        aelab.train_vae(vae, ds, epochs=1, batch_size=64, lr=1e30, optimizer="sgd", test=ds)
    assert all(torch.equal(p, q) for p, q in zip(before, vae.parameters()))


def test_an_interrupted_run_leaves_the_model_as_it_was(moons):
    train, _ = moons
    model = small_model()
    before = params(model)
    calls = 0

    def interrupting_objective(m, x, t):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return torch.nn.functional.mse_loss(m(x), t)

    cfg = aelab.TrainConfig(epochs=3, batch_size=8, reinit="encoder")
    with pytest.raises(KeyboardInterrupt):
        aelab.train.fit(model, train, interrupting_objective, cfg)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_train_autoencoder_takes_the_hand_written_step_for_mlps(moons):
    train, _ = moons
    history = train_autoencoder(small_model(), train, epochs=1, batch_size=8)
    assert history.config["path"] == "stack"
    with aelab.seeded(0):
        hooked = aelab.Autoencoder(2, 1, 8, 1)
    hooked.encoder[0].weight.register_hook(lambda g: torch.zeros_like(g))
    before = hooked.encoder[0].weight.detach().clone()
    history = train_autoencoder(hooked, train, epochs=1, batch_size=8)
    assert history.config["path"] == "loop"  # a tensor hook needs autograd, which honours it
    assert torch.equal(before, hooked.encoder[0].weight)
