"""The MMD objective on the hand-written stack: its gradient against autograd, its training
against the autograd loop, and a member's bits whatever shares its stack."""

import copy

import pytest
import torch

import aelab
import aelab._engine.dispatch as dispatch
from aelab import data
from aelab._engine.stack import StackMMD, _mmd_and_grad, _piece_mmd
from aelab.losses import mmd

KERNELS = ("imq", "rbf")


def build(kind: str, seed: int):
    with aelab.seeded(seed):
        if kind == "resnet":
            return aelab.ResNetAutoencoder(2, 2, 8, 1)
        return aelab.Autoencoder(2, 2, 8, 1)


@pytest.fixture(scope="module")
def moons():
    ds = data.moons(120, noise=0.1, seed=0)
    return data.split(ds, test_size=0.25, seed=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_mmd_value_and_gradient_match_the_loss_and_autograd(kernel):
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(3, 10, 2, generator=g), torch.randn(3, 12, 2, generator=g) + 0.5
    spec = StackMMD([1.0] * 3, kernel, (0.5, 1.0, 2.0))
    prior = _piece_mmd(None, y, [(0, 12)], spec)[0]
    value, grad = _mmd_and_grad(z, y, spec, prior)
    for k in range(3):
        leaf = z[k].clone().requires_grad_()
        expected = mmd(leaf, y[k], kernel, (0.5, 1.0, 2.0))
        expected.backward()
        assert float(value[k]) == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-7)
        assert torch.allclose(grad[k], leaf.grad, rtol=1e-4, atol=1e-6)
        assert float(leaf.grad.abs().max()) > 1e-3  # a gradient that could be wrong


def test_pieces_of_one_size_are_measured_like_each_piece_alone():
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(2, 17, 2, generator=g), torch.randn(2, 17, 2, generator=g)
    spec = StackMMD([1.0, 1.0], "imq", (1.0,))
    spans = [(0, 6), (6, 12), (12, 17)]  # two runs: pieces of 6 and one of 5
    both = _piece_mmd(z, y, spans, spec) + _piece_mmd(None, y, spans, spec)
    for p, (a, b) in enumerate(spans):
        for k in range(2):
            expected = float(mmd(z[k, a:b], y[k, a:b], "imq", (1.0,)))
            assert float(both[p, k]) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def _stack_then_loop(models, train, options, monkeypatch):
    """Train ``models`` with ``train_many``, copies of them on the autograd loop, and check
    that both give the same numbers to float32 rounding; the stacked Histories."""
    alone = copy.deepcopy(models)
    stacked = aelab.train_many(models, train, **options)
    assert [h.config["path"] for h in stacked] == ["stack"] * len(models)
    _without_the_stack(monkeypatch)
    looped = aelab.train_many(alone, train, **options)
    assert [h.config["path"] for h in looped] == ["loop"] * len(models)
    for a, b, m, n in zip(stacked, looped, models, alone):
        assert a.step_loss == pytest.approx(b.step_loss, rel=1e-4, abs=1e-6)
        assert a.test_loss == pytest.approx(b.test_loss, rel=1e-4, abs=1e-6)
        for p, q in zip(m.parameters(), n.parameters()):
            assert torch.allclose(p, q, rtol=1e-3, atol=1e-5)
    return stacked


def _assert_the_same_bits(history, model, ref_history, ref_model, stack_size):
    """A stack member's History and weights are bit for bit those it got alone."""
    assert history.config["ensemble_size"] == stack_size
    assert history.step_loss == ref_history.step_loss
    assert history.test_loss == ref_history.test_loss
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref_model.parameters()))


def _without_the_stack(monkeypatch):
    """Send every member through the autograd loop (no plan, no vmap)."""
    monkeypatch.setattr(dispatch, "stack_plan", lambda model: None)
    monkeypatch.setattr(dispatch, "vmap_path", lambda group: None)


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd_members_train_on_the_stack_as_the_autograd_loop_trains_them(
    kind, kernel, moons, monkeypatch
):
    train, test = moons
    options = dict(
        epochs=4,
        batch_size=16,
        lr=3e-3,
        objective="mmd",
        mmd_weight=[0.5, 5.0],
        kernel=kernel,
        seeds=[0, 1],
        test=test,
        noise_sigma=[None, 0.1],  # a denoising member draws its input noise first
    )
    models = [build(kind, 0), build(kind, 1)]
    stacked = _stack_then_loop(models, train, options, monkeypatch)
    assert stacked[0].step_loss != pytest.approx(stacked[1].step_loss, rel=1e-3)


def test_an_mmd_member_is_bitwise_the_same_alone_and_in_any_stack(moons):
    train, test = moons
    options = dict(epochs=3, batch_size=16, objective="mmd", test=test)
    [lone] = [build("resnet", 2)]
    [ref] = aelab.train_many([lone], train, mmd_weight=2.0, seeds=[7], **options)
    peers = [build("resnet", s) for s in (0, 1, 2, 3, 4)]
    histories = aelab.train_many(
        peers, train, mmd_weight=[1.0, 10.0, 2.0, 0.1, 2.0], seeds=[3, 4, 7, 5, 6], **options
    )
    _assert_the_same_bits(histories[2], peers[2], ref, lone, stack_size=5)


def test_members_with_other_kernels_take_other_stacks(moons):
    train, _ = moons
    models = [build("mlp", s) for s in range(4)]
    histories = aelab.train_many(
        models,
        train,
        epochs=1,
        batch_size=16,
        objective="mmd",
        kernel=["imq", "rbf", "imq", "rbf"],
    )
    assert [h.config["kernel"] for h in histories] == ["imq", "rbf", "imq", "rbf"]
    assert [h.config["ensemble_size"] for h in histories] == [2, 2, 2, 2]


# ------------------------------------------------------------------ the VAE


def vae(seed: int, likelihood="gaussian"):
    with aelab.seeded(seed):
        return aelab.VAE(4, 2, 8, 1, likelihood=likelihood)


@pytest.fixture(scope="module")
def cube():
    """120 samples of 4 features in [0, 1] (a Bernoulli VAE's data), split 90/30."""
    X = torch.rand(120, 4, generator=torch.Generator().manual_seed(0))
    return data.Dataset(X[:90]), data.Dataset(X[90:])


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_the_vae_gradients_of_a_lone_stack_match_autograd(likelihood):
    from functools import partial

    from aelab._engine.objectives import VAEObjective
    from aelab._engine.stack import Stack, stack_plan
    from aelab.train import TrainConfig

    model, beta, rows = vae(3, likelihood), 0.7, 6
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, rows, 4, generator=g)
    eps = torch.randn(1, rows, 2, generator=g)
    cfg = TrainConfig(epochs=1, batch_size=rows)
    stack = Stack([stack_plan(model)], [cfg], torch.device("cpu"), vae=True)
    batch = stack.batch(rows)
    stack.eps = eps
    y = stack.forward(torch.cat([x, torch.ones(1, rows, 1)], -1), batch)
    dy = (torch.sigmoid(y) - x) / rows if likelihood == "bernoulli" else 2 * (y - x) / rows
    kl_weight = torch.tensor(beta / rows).view(1, 1, 1)
    hook = partial(stack.through_draw, rows=rows, kl_weight=kl_weight)
    stack.backward(dy, torch.cat([x, torch.ones(1, rows, 1)], -1), None, batch, hook)
    VAEObjective(beta=beta, likelihood=likelihood).loss(model, x[0], x[0], eps[0]).backward()
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for l, layer in enumerate(layers):
        grad_weight, grad_bias = stack.weight_and_bias(l, 0, grad=True)
        assert torch.allclose(grad_weight, layer.weight.grad, rtol=1e-4, atol=1e-6)
        assert torch.allclose(grad_bias, layer.bias.grad, rtol=1e-4, atol=1e-6)
    assert float(layers[0].weight.grad.abs().max()) > 1e-4  # the encoder got a gradient


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vaes_train_on_the_stack_as_the_autograd_loop_trains_them(likelihood, cube, monkeypatch):
    train, test = cube
    options = dict(
        epochs=4,
        batch_size=16,
        lr=3e-3,
        objective="vae",
        beta=[1.0, 0.25],
        likelihood=likelihood,
        seeds=[0, 1],
        test=test,
        noise_sigma=[None, 0.05],
    )
    models = [vae(0, likelihood), vae(1, likelihood)]
    _stack_then_loop(models, train, options, monkeypatch)
    assert models[0].likelihood == likelihood  # kept by the model, as the loop keeps it


def test_a_vae_member_is_bitwise_the_same_alone_and_in_any_stack(cube):
    train, test = cube
    options = dict(epochs=3, batch_size=16, objective="vae", test=test)
    lone = vae(2)
    [ref] = aelab.train_many([lone], train, beta=0.5, seeds=[7], **options)
    peers = [vae(s) for s in range(5)]
    histories = aelab.train_many(
        peers, train, beta=[1.0, 2.0, 0.5, 0.1, 0.5], seeds=[3, 4, 7, 5, 6], **options
    )
    _assert_the_same_bits(histories[2], peers[2], ref, lone, stack_size=5)


def test_a_vae_under_another_objective_does_not_stack(cube):
    train, _ = cube
    [history] = aelab.train_many([vae(0)], train, epochs=1, batch_size=16)
    assert history.config["path"] != "stack"  # its forward samples from torch's own stream


@pytest.mark.parametrize(
    "objective, kind", [("mmd", "resnet"), ("vae", "gaussian"), ("vae", "bernoulli")]
)
def test_the_stacks_final_loss_is_the_objective_on_the_training_set(
    objective, kind, moons, cube, monkeypatch
):
    from aelab._engine.loop import evaluate_loss

    seen = {}
    real = dispatch._final_check

    def spy(m, device, baselines):
        seen[id(m.model)] = (m.final_loss, m)
        return real(m, device, baselines)

    monkeypatch.setattr(dispatch, "_final_check", spy)
    if objective == "mmd":
        train = moons[0]
        models = [build(kind, 0), build(kind, 1)]
        options = dict(mmd_weight=[1.0, 10.0])
    else:
        train = cube[0]
        models = [vae(0, kind), vae(1, kind)]
        options = dict(beta=[1.0, 0.3], likelihood=kind)
    histories = aelab.train_many(
        models, train, epochs=2, batch_size=16, objective=objective, seeds=[0, 1], **options
    )
    assert [h.config["path"] for h in histories] == ["stack", "stack"]
    for model in models:
        final, member = seen[id(model)]
        X = member.train.X
        noise = dispatch._final_noise(member, torch.device("cpu"))
        expected = evaluate_loss(model, member.objective, X, X, noise, chunk=16)
        assert final == pytest.approx(expected, rel=1e-5)
