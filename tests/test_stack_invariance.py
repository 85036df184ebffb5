"""Same seed, same numbers, whatever the stack: a member's weights and History are bit for bit
those it gets alone (train_autoencoder), in a stack of 4 or 70, or among other architectures,
learning rates, seeds and noise levels."""

import copy

import pytest
import torch
import torch.nn.functional as F

import aelab
import aelab._engine.stack as engine_stack
from aelab import data
from aelab.ensemble import train_many
from aelab.train import Reconstruction, TrainConfig, fit, train_autoencoder

EPOCHS = 3
KINDS = ("mlp", "linear", "resnet")


def build(kind: str, seed: int):
    with aelab.seeded(seed):
        if kind == "mlp":
            return aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)
        if kind == "linear":
            return aelab.LinearAutoencoder(2, 1)
        if kind == "resnet":
            return aelab.ResNetAutoencoder(2, 1, hidden_size=8, blocks=1)
        if kind == "wide":  # products with one output column go to MKL (the "pair" kernel)
            return aelab.Autoencoder(2, 1, hidden_size=32, layers=2)
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def rect():
    return data.rectangle(40)


@pytest.fixture(scope="module")
def rect_test():
    return data.rectangle(12, seed=1)


def assert_identical(model, history, ref_model, ref_history):
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
    for field in ("train_loss", "test_loss", "step_loss", "examples_seen"):
        assert getattr(history, field) == getattr(ref_history, field), field
    config = {k: v for k, v in history.config.items() if k != "ensemble_size"}
    assert config == {k: v for k, v in ref_history.config.items() if k != "ensemble_size"}


def alone(kind, train, *, seed=1, lr=3e-3, noise_sigma=None, test=None, batch_size=8):
    model = build(kind, seed)
    history = train_autoencoder(
        model,
        train,
        epochs=EPOCHS,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        noise_sigma=noise_sigma,
        test=test,
        progress=False,
    )
    assert len(history.step_loss) > 0 and history.train_loss[-1] < history.train_loss[0]
    return model, history


def in_stack(
    kind,
    train,
    K,
    position,
    *,
    others=None,
    lrs=None,
    sigmas=None,
    seed=1,
    lr=3e-3,
    noise_sigma=None,
    test=None,
    batch_size=8,
):
    """Train the member (kind, seed, lr, noise) at ``position`` among K models; return it."""
    others = others or [kind] * K
    models = [build(others[k], 100 + k) for k in range(K)]
    seeds = [1000 + k for k in range(K)]
    lrs = list(lrs or [lr] * K)
    sigmas = list(sigmas or [noise_sigma] * K)
    models[position], seeds[position] = build(kind, seed), seed
    lrs[position], sigmas[position] = lr, noise_sigma
    histories = train_many(
        models,
        train,
        epochs=EPOCHS,
        batch_size=batch_size,
        lr=lrs,
        seeds=seeds,
        noise_sigma=sigmas,
        test=test,
        progress=False,
    )
    return models[position], histories[position]


@pytest.mark.parametrize("kernel", ["outer", "prodsum"])
def test_broadcast_kernels_give_the_plain_loops_bits(kernel):
    # large stacks may pick these instead of torch.bmm's plain loop only because they agree
    # bit for bit, signed zeros included
    g = torch.Generator().manual_seed(0)
    for rows, inner, cols in [(8, 1, 10), (8, 2, 20), (2, 8, 21), (3, 5, 11)]:
        if (kernel == "outer") != (inner <= 2):
            continue
        A, B = torch.randn(70, rows, inner, generator=g), torch.randn(70, inner, cols, generator=g)
        A[A.abs() < 0.5] = 0.0
        A[:, 0] = 0.0  # a zero row: its products are +-0, and the loop's sum is +0
        expected = torch.bmm(A, B)
        out = torch.empty(70, cols, rows).transpose(1, 2)  # strided, as gradients are written
        for result in (
            engine_stack.MATMULS[kernel](A, B),
            engine_stack.MATMULS[kernel](A, B, out=out),
        ):
            assert torch.equal(result, expected)
            assert torch.equal(result.signbit(), expected.signbit())
        assert bool((expected == 0).any())  # zeros, some of them signed, were compared


@pytest.mark.parametrize("with_test", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_a_member_is_bitwise_the_same_alone_and_in_any_stack(
    kind, with_test, rect, rect_test, monkeypatch
):
    test = rect_test if with_test else None
    used = set()  # K >= 64 multiplies tiny products with broadcast kernels of the same bits
    for name in ("outer",):
        real = engine_stack.MATMULS[name]
        monkeypatch.setitem(
            engine_stack.MATMULS,
            name,
            lambda *a, _r=real, _n=name, **k: used.add(_n) or _r(*a, **k),
        )
    ref = alone(kind, rect, test=test)
    model, history = in_stack(kind, rect, 4, 2, test=test)
    assert history.config["ensemble_size"] == 4
    assert_identical(model, history, *ref)
    # 70 members: other seeds and learning rates (three optimizer groups), the member mid-stack
    lrs = [(1e-3, 3e-3, 1e-2)[k % 3] for k in range(70)]
    model, history = in_stack(kind, rect, 70, 41, lrs=lrs, test=test)
    assert history.config["ensemble_size"] == 70
    assert_identical(model, history, *ref)
    assert used  # the >= 64 kernels ran
    # mixed: other architectures (other stacks), noise levels, learning rates and seeds
    ref = alone(kind, rect, noise_sigma=0.1, test=test)
    others = ["mlp", "linear", "resnet", kind, kind, kind, "mlp"]
    sigmas = [0.3, None, 0.2, 0.2, None, 0.05, 0.1]
    model, history = in_stack(
        kind,
        rect,
        7,
        5,
        others=others,
        sigmas=sigmas,
        lrs=[1e-2, 1e-3, 5e-3, 1e-3, 3e-3, 3e-3, 1e-3],
        noise_sigma=0.1,
        test=test,
    )
    noisy_peers = sum(o == kind and bool(s) for o, s in zip(others, sigmas))  # target included
    assert history.config["ensemble_size"] == noisy_peers >= 2
    assert_identical(model, history, *ref)


def test_invariance_holds_on_two_threads(monkeypatch):
    # tiny steps run on one thread whatever the setting; force these onto two, where MKL's
    # single-matrix kernel differs from its batched one and a lone member runs as a pair
    monkeypatch.setattr(engine_stack, "PARALLEL_MACS", 0)
    torch.set_num_threads(2)  # the autouse fixture restores the original count
    pairs = []
    real = engine_stack.MATMULS["pair"]
    monkeypatch.setitem(
        engine_stack.MATMULS, "pair", lambda *a, **k: pairs.append(1) or real(*a, **k)
    )
    train, test = data.rectangle(32), data.rectangle(16, seed=1)
    ref = alone("wide", train, test=test, batch_size=16)
    assert pairs
    model, history = in_stack(
        "wide",
        train,
        4,
        3,
        lrs=[3e-3, 1e-3, 1e-2, 3e-3],
        sigmas=[0.2, None, None, None],
        test=test,
        batch_size=16,
    )
    assert_identical(model, history, *ref)


def test_matrix_vector_products_of_a_lone_model_match_its_stack(rect_test):
    # one thread: MKL still rounds a lone matrix-vector product differently from a batched one
    train = data.rectangle(64)
    ref = alone("wide", train, test=rect_test, batch_size=32)
    model, history = in_stack("wide", train, 3, 1, test=rect_test, batch_size=32)
    assert_identical(model, history, *ref)


def test_padded_batches_per_step_gathering_and_chunks_change_no_bits(rect, rect_test, monkeypatch):
    # batches of 7 get a zero row so that every member's products start on 16-byte boundaries
    stack = engine_stack.Stack(
        [engine_stack.stack_plan(build("mlp", 0))],
        [TrainConfig(epochs=1, batch_size=7)],
        torch.device("cpu"),
    )
    assert stack.padded_rows(7) == 8 and stack.padded_rows(8) == 8
    ref = alone("mlp", rect, test=rect_test, batch_size=7, noise_sigma=0.1)
    # large data sets gather each batch on its own; large stacks are split into chunks
    monkeypatch.setattr(engine_stack, "EPOCH_GATHER_BYTES", 0)
    n_params = sum(p.numel() for p in build("mlp", 0).parameters())
    monkeypatch.setattr(engine_stack, "STACK_BYTES", int(5.5 * 16 * n_params))
    model, history = in_stack(
        "mlp",
        rect,
        11,
        9,
        test=rect_test,
        batch_size=7,
        noise_sigma=0.1,
        sigmas=[0.1, 0.2] * 5 + [0.1],
    )
    assert history.config["ensemble_size"] == 5  # chunks of 6 and 5 members
    assert_identical(model, history, *ref)
    model, history = in_stack("mlp", rect, 11, 9, test=rect_test, batch_size=7)
    ref = alone("mlp", rect, test=rect_test, batch_size=7)
    assert_identical(model, history, *ref)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_batches_still_train_like_the_autograd_loop(kind):
    # the zero rows of a padded batch add nothing: same numbers as autograd to rounding
    def autograd_objective(model, x, target):
        return F.mse_loss(model(x), target)

    train, test = data.rectangle(43), data.rectangle(9, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=5, seed=3, drop_last=False, noise_sigma=0.1)
    fast, slow = build(kind, 0), build(kind, 0)
    before = copy.deepcopy(fast)
    h_fast = fit(fast, train, Reconstruction(), cfg, test=test, progress=False)
    h_slow = fit(slow, train, autograd_objective, cfg, test=test, progress=False)
    with torch.no_grad():
        for p, q, r in zip(fast.parameters(), slow.parameters(), before.parameters()):
            assert float((p - q).abs().max()) < 1e-6
            assert not torch.equal(p, r)  # it trained
    for field in ("train_loss", "test_loss", "step_loss"):
        assert getattr(h_fast, field) == pytest.approx(getattr(h_slow, field), rel=1e-5, abs=1e-6)
