"""train_many: stacked training must give what train_autoencoder gives, model by model."""

import copy

import pytest
import torch
from torch import nn

import aelab
import aelab._engine.stack as engine_stack
from aelab import data
from aelab._engine.stack import Stack, stack_plan
from aelab.ensemble import train_many
from aelab.models import AutoencoderBase, ConvAutoencoder
from aelab.train import TrainConfig, TrainingDiverged, train_autoencoder

EPOCHS = 3  # ensembles match single runs to ~1e-7 over a short horizon; rounding then grows


def build(kind: str, seed: int) -> nn.Module:
    with aelab.seeded(seed):
        if kind == "mlp":
            return aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)
        if kind == "linear":
            return aelab.LinearAutoencoder(2, 1)
        if kind == "resnet":
            return aelab.ResNetAutoencoder(2, 1, hidden_size=8, blocks=1)
    raise AssertionError(kind)


class ShiftedAutoencoder(AutoencoderBase):
    """Overrides forward, so the stacked engine must not take it."""

    def __init__(self):
        super().__init__()
        self.init_args = dict(input_size=2, bottleneck_size=1)
        self.encoder = nn.Linear(2, 1)
        self.decoder = nn.Linear(1, 2)

    def forward(self, x):
        return self.decode(self.encode(x)) + 0.5


@pytest.fixture(scope="module")
def rect():
    return data.rectangle(40)


@pytest.fixture(scope="module")
def rect_test():
    return data.rectangle(12, seed=1)


@torch.no_grad()
def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def assert_same_history(h_many, h_one, tol=1e-6):
    config = dict(h_many.config)
    config.pop("ensemble_size")
    assert config == h_one.config
    assert h_many.examples_seen == h_one.examples_seen
    for field in ("train_loss", "test_loss", "step_loss"):
        many, one = getattr(h_many, field), getattr(h_one, field)
        assert len(many) == len(one)
        assert many == pytest.approx(one, rel=tol, abs=tol)


@pytest.mark.parametrize("kind", ["mlp", "linear", "resnet"])
@pytest.mark.parametrize(
    "options", [{}, {"noise_sigma": 0.2, "lr_schedule": "step"}, {"optimizer": "sgd"}]
)
def test_each_member_trains_as_train_autoencoder_would(kind, options, rect, rect_test):
    seeds, lrs = [3, 4, 5], [1e-3, 5e-3, 1e-3]
    models = [build(kind, s) for s in seeds]
    alone = [copy.deepcopy(m) for m in models]
    histories = train_many(
        models,
        rect,
        epochs=EPOCHS,
        batch_size=8,
        lr=lrs,
        seeds=seeds,
        test=rect_test,
        progress=False,
        **options,
    )
    for model, single, seed, lr, history in zip(models, alone, seeds, lrs, histories):
        expected = train_autoencoder(
            single,
            rect,
            epochs=EPOCHS,
            batch_size=8,
            lr=lr,
            seed=seed,
            test=rect_test,
            progress=False,
            **options,
        )
        assert history.config["ensemble_size"] == 3
        assert_same_history(history, expected)
        assert max_param_diff(model, single) < 1e-6
        assert max_param_diff(model, build(kind, seed)) > 1e-4  # it did train


def test_large_stacks_use_the_broadcast_kernels_and_still_match(rect, rect_test, monkeypatch):
    # from 64 members on, tiny contractions run as broadcast multiply-adds (_outer), which
    # give the plain bmm loop's bits, so the members still match single runs exactly
    used = set()
    real = engine_stack.MATMULS["outer"]
    monkeypatch.setitem(
        engine_stack.MATMULS, "outer", lambda *a, **k: used.add("outer") or real(*a, **k)
    )
    seeds = list(range(70))
    models = [build("mlp", s) for s in seeds]
    alone = [copy.deepcopy(models[i]) for i in (0, 69)]
    histories = train_many(models, rect, epochs=2, batch_size=8, seeds=seeds, test=rect_test)
    assert used == {"outer"}
    for i, single in zip((0, 69), alone):
        expected = train_autoencoder(
            single, rect, epochs=2, batch_size=8, seed=seeds[i], test=rect_test
        )
        assert_same_history(histories[i], expected, tol=0)
        assert max_param_diff(models[i], single) == 0


def test_lists_of_datasets_per_model_lr_and_noise(rect_test):
    trains = [data.rectangle(40, seed=s) for s in range(3)] + [data.rectangle(24, seed=9)]
    lrs, sigmas, seeds = [1e-3, 2e-3, 1e-3, 1e-3], [0.1, 0.3, None, 0.1], [7, 8, 9, 10]
    models = [build("mlp", s) for s in range(4)]
    alone = [copy.deepcopy(m) for m in models]
    histories = train_many(
        models,
        trains,
        epochs=EPOCHS,
        batch_size=8,
        lr=lrs,
        seeds=seeds,
        noise_sigma=sigmas,
        test=[rect_test] * 4,
        progress=False,
    )
    # noisy and clean runs draw different random streams, and data sizes differ: three stacks
    assert [h.config["ensemble_size"] for h in histories] == [2, 2, 1, 1]
    for i, (model, single) in enumerate(zip(models, alone)):
        expected = train_autoencoder(
            single,
            trains[i],
            epochs=EPOCHS,
            batch_size=8,
            lr=lrs[i],
            seed=seeds[i],
            noise_sigma=sigmas[i],
            test=rect_test,
            progress=False,
        )
        assert_same_history(histories[i], expected)
        assert max_param_diff(model, single) < 1e-6


def test_models_that_cannot_be_stacked_train_one_by_one(rect):
    models = [
        build("mlp", 0),
        ShiftedAutoencoder(),
        build("linear", 1),
        build("mlp", 2),
        aelab.VAE(2, 1, 8, 1),
    ]
    alone = [copy.deepcopy(m) for m in models]
    histories = train_many(
        models, rect, epochs=2, batch_size=8, seeds=[0, 1, 2, 3, 4], progress=False
    )
    assert [h.config["ensemble_size"] for h in histories] == [2, 1, 1, 2, 1]
    for seed, (model, single, history) in enumerate(zip(models, alone, histories)):
        expected = train_autoencoder(
            single, rect, epochs=2, batch_size=8, seed=seed, progress=False
        )
        assert_same_history(history, expected)
        assert max_param_diff(model, single) < 1e-6


def test_large_stacks_are_split_into_chunks_that_fit_in_cache(rect, monkeypatch):
    n_params = sum(p.numel() for p in build("mlp", 0).parameters())
    monkeypatch.setattr(engine_stack, "STACK_BYTES", int(2.5 * 16 * n_params))
    models = [build("mlp", s) for s in range(5)]
    alone = [copy.deepcopy(m) for m in models]
    histories = train_many(models, rect, epochs=2, batch_size=8, progress=False)
    assert [h.config["ensemble_size"] for h in histories] == [3, 3, 3, 2, 2]
    for seed, (model, single, history) in enumerate(zip(models, alone, histories)):
        expected = train_autoencoder(
            single, rect, epochs=2, batch_size=8, seed=seed, progress=False
        )
        assert_same_history(history, expected)
        assert max_param_diff(model, single) < 1e-6


def test_default_seeds_are_distinct_and_the_run_is_reproducible(rect):
    first = [build("mlp", 0) for _ in range(3)]  # same weights: only the data order differs
    second = copy.deepcopy(first)
    h1 = train_many(first, rect, epochs=2, batch_size=8, progress=False)
    h2 = train_many(second, rect, epochs=2, batch_size=8, progress=False)
    assert [h.config["seed"] for h in h1] == [0, 1, 2]
    assert h1[0].step_loss != h1[1].step_loss
    assert [h.step_loss for h in h1] == [h.step_loss for h in h2]
    assert all(max_param_diff(a, b) == 0 for a, b in zip(first, second))


def test_zero_epochs_and_per_step_gathering(rect, monkeypatch):
    models = [build("mlp", s) for s in range(2)]
    before = copy.deepcopy(models)
    histories = train_many(models, rect, epochs=0, batch_size=8, progress=False)
    assert all(h.train_loss == [] and h.step_loss == [] for h in histories)
    assert all(max_param_diff(m, b) == 0 for m, b in zip(models, before))
    # large data sets gather each batch on its own instead of a whole epoch at once
    whole_epoch = train_many(models, rect, epochs=2, batch_size=8, progress=False)
    monkeypatch.setattr(engine_stack, "EPOCH_GATHER_BYTES", 0)
    per_step = train_many(before, rect, epochs=2, batch_size=8, progress=False)
    assert [h.step_loss for h in per_step] == [h.step_loss for h in whole_epoch]
    assert all(max_param_diff(m, b) == 0 for m, b in zip(models, before))


def test_a_diverging_member_is_restored_and_reported(rect):
    models = [build("mlp", s) for s in range(3)]
    initial = [copy.deepcopy(m) for m in models]
    histories = train_many(
        models,
        rect,
        epochs=3,
        batch_size=8,
        lr=[1e-3, 1e30, 1e-3],
        progress=False,
        on_diverge="restore",
    )
    assert (
        "diverged" in histories[1].config
        and "lower the learning rate" in histories[1].config["diverged"]
    )
    assert len(histories[1].train_loss) < 3
    assert max_param_diff(models[1], initial[1]) == 0
    assert "diverged" not in histories[0].config and len(histories[0].train_loss) == 3
    assert max_param_diff(models[0], initial[0]) > 1e-4


def test_divergence_raises_and_restores_every_model(rect):
    models = [build("mlp", 0), build("linear", 1), build("mlp", 2)]
    initial = [copy.deepcopy(m) for m in models]
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        train_many(models, rect, epochs=3, batch_size=8, lr=[1e-3, 1e-3, 1e30], progress=False)
    assert all(max_param_diff(m, i) == 0 for m, i in zip(models, initial))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(seeds=[0, 1]), ValueError, r"seeds has 2 entries but there are 3 models"),
        (dict(lr=[1e-3] * 4), ValueError, r"lr has 4 entries but there are 3 models"),
        (dict(lr=[1e-3, -1.0, 1e-3]), ValueError, r"lr\[1\] must be a finite number > 0"),
        (dict(noise_sigma=[0.1]), ValueError, r"noise_sigma has 1 entries"),
        (dict(on_diverge="ignore"), ValueError, r"on_diverge must be one of"),
        (dict(optimizer="lbfgs"), ValueError, r"optimizer must be one of"),
        (dict(epochs=-1), ValueError, r"epochs must be an int >= 0"),
        (dict(lr="fast"), TypeError, r"lr must be one value or a list"),
    ],
)
def test_bad_arguments_raise_clear_errors(rect, kwargs, error, match):
    args = dict(epochs=1, batch_size=8) | kwargs
    with pytest.raises(error, match=match):
        train_many([build("mlp", s) for s in range(3)], rect, **args)


def test_bad_model_lists_raise_clear_errors(rect):
    model = build("mlp", 0)
    with pytest.raises(ValueError, match="models is empty"):
        train_many([], rect, epochs=1, batch_size=8)
    with pytest.raises(TypeError, match=r"wrap a single model as \[model\]"):
        train_many(model, rect, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="same model object more than once"):
        train_many([model, model], rect, epochs=1, batch_size=8)
    with pytest.raises(TypeError, match=r"models\[1\] must be a torch.nn.Module"):
        train_many([model, "model"], rect, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="train has 3 entries but there are 1 models"):
        train_many([model], [rect] * 3, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match=r"train\[0\] has 3 features per sample"):
        train_many([model], [data.Dataset(torch.zeros(4, 3))], epochs=1, batch_size=8)


def test_stack_plan_takes_linear_relu_and_residual_models_only():
    assert [op.relu for op in stack_plan(build("mlp", 0))] == [True, True, False, True, True, False]
    assert len(stack_plan(build("linear", 0))) == 2
    resnet = stack_plan(build("resnet", 0))
    assert [(op.res_start, op.res_end) for op in resnet] == [
        (True, False),
        (False, True),
        (False, False),
        (False, False),
        (True, False),
        (False, True),
    ]
    assert stack_plan(ShiftedAutoencoder()) is None
    vae = stack_plan(aelab.VAE(4, 3, 8, 1))  # 4-8-(3 + 3) | 3-8-4: the head feeds a draw
    assert [op.code for op in vae] == [False, True, False, False]
    assert vae[1].layer.out_features == 2 * vae[2].layer.in_features == 6
    assert stack_plan(ConvAutoencoder((1, 8, 8), 2)) is None
    hooked = build("mlp", 0)
    hooked.encoder[0].register_forward_hook(lambda *args: None)
    assert stack_plan(hooked) is None
    assert stack_plan(build("mlp", 0).double()) is None


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_hand_written_backward_matches_autograd(kind):
    models = [build(kind, s) for s in range(3)]
    plans = [stack_plan(m) for m in models]
    stack = Stack(plans, [TrainConfig(epochs=1, batch_size=5)] * 3, torch.device("cpu"))
    x = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0))
    x_aug = torch.cat([x, torch.ones(3, 5, 1)], -1)
    acts = stack.activations(5)
    y = stack.forward(x_aug, acts)
    stack.backward(2 * (y - x) / x[0].numel(), x_aug, x_aug.transpose(1, 2), acts)

    loss = sum(nn.functional.mse_loss(m(x[k]), x[k]) for k, m in enumerate(models))
    loss.backward()
    for k, model in enumerate(models):
        assert torch.allclose(y[k], model(x[k]), atol=1e-6)
        for l, op in enumerate(plans[k]):
            grad_weight, grad_bias = stack.weight_and_bias(l, k, grad=True)
            assert torch.allclose(grad_weight, op.layer.weight.grad, atol=1e-6)
            assert torch.allclose(grad_bias, op.layer.bias.grad, atol=1e-6)
