"""Conv autoencoders trained as one model of grouped convolutions, against the loop."""

import copy

import pytest
import torch

import aelab
import aelab._engine.dispatch as dispatch
from aelab import data


@pytest.fixture(scope="module")
def images():
    X = torch.rand(96, 16, generator=torch.Generator().manual_seed(0))
    return data.Dataset(X[:64], image_shape=(1, 4, 4)), data.Dataset(X[64:], image_shape=(1, 4, 4))


def conv(seed, skip):
    with aelab.seeded(seed):
        return aelab.ConvAutoencoder((1, 4, 4), 2, channels=(4, 8), skip=skip)


@pytest.mark.parametrize("skip", [False, True])
def test_grouped_members_train_as_the_autograd_loop_trains_them(skip, images, monkeypatch):
    train, test = images
    options = dict(epochs=3, batch_size=16, lr=5e-3, seeds=[0, 1, 2], test=test, noise_sigma=0.2)
    models = [conv(s, skip) for s in range(3)]
    alone = copy.deepcopy(models)
    grouped = aelab.train_many(models, train, **options)
    assert [h.config["path"] for h in grouped] == ["grouped"] * 3
    monkeypatch.setattr(dispatch, "groupable", lambda *args: False)
    monkeypatch.setattr(dispatch, "vmap_path", lambda group: None)
    looped = aelab.train_many(alone, train, **options)
    assert [h.config["path"] for h in looped] == ["loop"] * 3
    for a, b, m, n in zip(grouped, looped, models, alone):
        assert a.step_loss == pytest.approx(b.step_loss, rel=1e-5)
        assert a.test_loss == pytest.approx(b.test_loss, rel=1e-5)
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        for p, q in zip(m.parameters(), n.parameters()):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)
    assert grouped[0].step_loss != pytest.approx(grouped[1].step_loss, rel=1e-3)  # own seeds


def test_pairs_and_other_learning_rates_are_not_grouped(images):
    train, _ = images
    pair = aelab.train_many([conv(0, False), conv(1, False)], train, epochs=1, batch_size=16)
    assert {h.config["path"] for h in pair} <= {"vmap", "loop"}
    trio = aelab.train_many(
        [conv(s, False) for s in range(3)], train, epochs=1, batch_size=16, lr=[1e-3, 2e-3, 1e-3]
    )
    assert "grouped" not in {h.config["path"] for h in trio}  # one optimizer: one lr


@pytest.mark.parametrize("hook", ["forward", "backward-pre", "global"])
def test_a_model_with_module_hooks_is_not_grouped(images, hook):
    # the grouped model calls none of the members' modules: their hooks would not run
    train, _ = images
    models = [conv(s, False) for s in range(3)]
    calls = []
    handle = None
    if hook == "forward":
        models[1].encoder.register_forward_hook(lambda *args: calls.append(1))
    elif hook == "backward-pre":
        models[1].decoder.register_full_backward_pre_hook(lambda *args: calls.append(1))
    else:
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: calls.append(1))
    try:
        histories = aelab.train_many(models, train, epochs=1, batch_size=16)
    finally:
        if handle is not None:
            handle.remove()
    assert "grouped" not in {h.config["path"] for h in histories}
    assert calls  # the hook ran
