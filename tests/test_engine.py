"""The one engine: its module boundaries, its contract (draw order, divergence rule, devices,
data checks, optimizer settings) and the fallbacks for torch's private functions."""

import ast
import copy
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aelab
import aelab._engine.torch_ops as torch_ops
from aelab import data
from aelab._engine.config import diverged_message, suggested_lr
from aelab.train import (
    Reconstruction,
    TrainConfig,
    TrainingDiverged,
    VAEObjective,
    fit,
    resolve_device,
    train_autoencoder,
)

SRC = Path(aelab.__file__).resolve().parent


def mlp(seed=0, **kwargs):
    with aelab.seeded(seed):
        return aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2, **kwargs)


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.fixture(scope="module")
def rect():
    return data.rectangle(40)


# ------------------------------------------------------------------ module boundaries


def test_entry_points_import_alone_in_fresh_processes():
    # one process per entry point, started together: an import cycle fails the first import
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", f"import {module}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in ("aelab.train", "aelab.ensemble")
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr


# private names imported across modules by files this test does not own; each is a known
# debt, listed so that no new one appears unnoticed
KNOWN_PRIVATE_IMPORTS = {("baselines.py", "aelab.evaluate", "_batched")}


def test_no_module_imports_another_modules_private_names():
    found = set()
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        in_engine = relative.parts[0] == "_engine"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("aelab"):
                continue
            if in_engine and node.module.startswith("aelab._engine"):
                continue  # inside the engine package
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add((str(relative), node.module, alias.name))
    assert found <= KNOWN_PRIVATE_IMPORTS, found - KNOWN_PRIVATE_IMPORTS
    assert not [f for f in found if f[0].startswith(("_engine", "train.py", "ensemble.py"))]


def test_only_torch_ops_calls_private_torch_functions():
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name in ("torch_ops.py", "functional.py"):  # functional.py is not ours
            continue
        text = path.read_text()
        if re.search(r"torch\._fused|torch\.ops\.aten|threshold_backward\.default", text):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


# ------------------------------------------------------------------ private torch fallbacks


@pytest.mark.parametrize(
    "settings",
    [
        dict(optimizer="adam", betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
        dict(optimizer="sgd", momentum=0.9, lr=0.01),
    ],
)
def test_training_runs_without_torchs_private_functions(rect, monkeypatch, settings):
    assert all(torch_ops.PRIVATE.values())  # this torch has them, so the fast path ran before
    expected = mlp()
    h_private = train_autoencoder(expected, rect, epochs=3, batch_size=8, **settings)
    for name in ("FUSED_ADAM", "FUSED_SGD", "THRESHOLD_BACKWARD"):
        monkeypatch.setattr(torch_ops, name, None)
    model = mlp()
    h_public = train_autoencoder(model, rect, epochs=3, batch_size=8, **settings)
    assert h_public.config["path"] == "stack"
    assert h_public.step_loss == pytest.approx(h_private.step_loss, rel=1e-5, abs=1e-7)
    for p, q in zip(model.parameters(), expected.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert not same_weights(model, mlp())  # it trained


def test_relu_backward_fallback_gives_the_same_numbers(monkeypatch):
    g = torch.Generator().manual_seed(0)
    d, pre = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    pre[0, :3] = 0.0  # ReLU's gradient at 0 is 0
    private = torch_ops.relu_backward(d, pre)
    monkeypatch.setattr(torch_ops, "THRESHOLD_BACKWARD", None)
    assert torch.equal(torch_ops.relu_backward(d, pre), private)
    assert torch.equal(private, d * (pre > 0))


# ------------------------------------------------------------------ the draw order


@pytest.mark.parametrize("path", ["loop", "stack"])
def test_each_path_draws_in_the_documented_order_from_the_members_stream(path, monkeypatch):
    # per epoch: randperm, input noise, then the objective's noise (n_used x columns)
    if path == "loop":
        import aelab._engine.dispatch as dispatch

        monkeypatch.setattr(dispatch, "stack_plan", lambda model: None)
    ds = data.Dataset(torch.rand(50, 4, generator=torch.Generator().manual_seed(1)))
    with aelab.seeded(0):
        model = aelab.VAE(4, 2, hidden_size=8, layers=1)
    reference = copy.deepcopy(model)
    objective = VAEObjective(beta=0.5, likelihood="gaussian")
    cfg = TrainConfig(epochs=2, batch_size=16, seed=7, noise_sigma=0.1)
    torch.manual_seed(123)  # the global RNG plays no part
    history = fit(model, ds, objective, cfg, progress=False)
    assert history.config["path"] == path and history.config["objective"] == "vae"

    g = torch.Generator().manual_seed(7)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3, fused=True)
    steps = []
    for _ in range(2):
        target = ds.X[torch.randperm(50, generator=g)[:48]]
        inputs = target + 0.1 * torch.randn(target.shape, generator=g)
        noise = torch.randn(48, 2, generator=g)
        for x, t, z in zip(inputs.split(16), target.split(16), noise.split(16)):
            loss = objective.loss(reference, x, t, z)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps.append(float(loss.detach()))
    if path == "loop":  # the same ops: the same bits
        assert history.step_loss == steps
        assert same_weights(model, reference)
    else:  # the hand-written gradient: the same numbers to float32 rounding
        assert history.step_loss == pytest.approx(steps, rel=1e-5)
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.allclose(p, q, atol=1e-6)


def test_vae_numbers_do_not_depend_on_the_global_rng():
    ds = data.rectangle(32)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        with aelab.seeded(0):
            model = aelab.VAE(2, 1, 8, 1)
        runs.append(aelab.train_vae(model, ds, epochs=2, batch_size=8, seed=3).step_loss)
    assert runs[0] == runs[1]


# ------------------------------------------------------------------ divergence


@pytest.mark.parametrize("lr", [100, 10])
def test_a_finite_blow_up_is_divergence(lr):
    moons = data.moons(64, seed=0)
    with aelab.seeded(0):
        model = aelab.Autoencoder(2, 1)
    before = copy.deepcopy(model)
    with pytest.raises(TrainingDiverged, match=r"epoch 2 of 2 \(lr=\d+\).*try lr=0.001"):
        train_autoencoder(model, moons, epochs=2, batch_size=64, lr=lr, optimizer="sgd")
    assert same_weights(model, before)


def test_a_small_learning_rate_is_not_a_blow_up():
    moons = data.moons(64, seed=0)
    history = train_autoencoder(
        aelab.Autoencoder(2, 1), moons, epochs=2, batch_size=64, lr=0.3, optimizer="sgd"
    )
    assert "diverged" not in history.config


def test_train_many_reports_a_blow_up_and_restores_only_that_member():
    moons = data.moons(64, seed=0)
    models = [mlp(s) for s in range(3)]
    before = copy.deepcopy(models)
    histories = train_many_sgd(models, moons, lr=np.array([0.01, 10.0, 0.01]))
    assert "diverged" in histories[1].config and "ended at" in histories[1].config["diverged"]
    assert len(histories[1].train_loss) == 2  # its epochs were finite; the end blew up
    assert same_weights(models[1], before[1])
    assert all("diverged" not in histories[k].config for k in (0, 2))
    assert not same_weights(models[0], before[0])


def train_many_sgd(models, ds, lr):
    return aelab.train_many(
        models, ds, epochs=2, batch_size=64, lr=lr, optimizer="sgd", on_diverge="restore"
    )


@pytest.mark.parametrize("lr, expected", [(100, 1e-3), (1e-2, 1e-3), (1e-3, 1e-4), (3e-4, 3e-5)])
def test_divergence_suggests_a_real_next_learning_rate(lr, expected):
    assert suggested_lr(lr)[0] == pytest.approx(expected)
    assert f"try lr={expected:g}" in diverged_message(float("nan"), 0, 3, lr)


# ------------------------------------------------------------------ devices and data


def test_devices_this_machine_cannot_train_on_are_refused_before_the_model_moves(rect):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    for device in ("meta", "nonsense", 3.5):
        with pytest.raises(ValueError, match=r"device="):
            resolve_device(device)
    model = mlp()
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match="'meta'"):
        train_autoencoder(model, rect, epochs=1, batch_size=8, device="meta")
    assert same_weights(model, before)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_values_written_into_the_data_are_named_as_bad_data(value):
    train, test = data.rectangle(40), data.rectangle(10, seed=1)
    train.X[3, 1] = value  # after the Dataset checked it
    with pytest.raises(ValueError, match=r"train\.X contains .*clean or impute"):
        train_autoencoder(mlp(), train, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match=r"train\.X contains"):
        aelab.train_many([mlp(0), mlp(1)], train, epochs=1, batch_size=8)
    test.X[0, 0] = value
    with pytest.raises(ValueError, match=r"test\.X contains"):
        aelab.train_vae(
            aelab.VAE(2, 1, 8, 1), data.rectangle(40), epochs=1, batch_size=8, test=test
        )


# ------------------------------------------------------------------ optimizer settings


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(momentum=1.0, optimizer="sgd"), r"momentum must be a number in \[0, 1\), got 1.0"),
        (dict(momentum=-0.1, optimizer="sgd"), "momentum must be a finite number >= 0"),
        (dict(betas=(0.9, 1.0)), r"betas must hold two numbers in \[0, 1\)"),
        (dict(betas=0.9), r"betas must be a pair"),
        (dict(eps=0.0), "eps must be a finite number > 0"),
        (dict(betas=(0.5, 0.9), optimizer="sgd"), "betas=.* only applies to optimizer='adam'"),
    ],
)
def test_optimizer_settings_are_validated(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(epochs=1, batch_size=8, **kwargs)


def test_betas_and_eps_change_training_and_are_recorded(rect):
    default = train_autoencoder(mlp(), rect, epochs=2, batch_size=8)
    custom = train_autoencoder(mlp(), rect, epochs=2, batch_size=8, betas=(0.5, 0.9), eps=1e-4)
    assert custom.config["betas"] == (0.5, 0.9) and custom.config["eps"] == 1e-4
    assert custom.step_loss[0] == default.step_loss[0]  # same start
    assert custom.step_loss[-1] != default.step_loss[-1]


def test_the_path_is_logged_at_debug_level(rect, caplog):
    with caplog.at_level(logging.DEBUG, logger="aelab._engine.dispatch"):
        train_autoencoder(mlp(), rect, epochs=1, batch_size=8)
        # a lone conv model keeps the autograd loop
        images = data.Dataset(torch.rand(16, 16, generator=torch.Generator().manual_seed(0)))
        train_autoencoder(aelab.ConvAutoencoder((1, 4, 4), 2), images, epochs=1, batch_size=8)
    messages = [r.getMessage() for r in caplog.records]
    assert any("path 'stack'" in m for m in messages)
    assert any("path 'loop'" in m for m in messages)


def test_reconstruction_gradients_of_a_lone_stack_match_autograd():
    from aelab._engine.stack import Stack, stack_plan

    model = mlp(3)
    stack = Stack([stack_plan(model)], [TrainConfig(epochs=1, batch_size=6)], torch.device("cpu"))
    x = torch.randn(1, 6, 2, generator=torch.Generator().manual_seed(2))
    x_aug = torch.cat([x, torch.ones(1, 6, 1)], -1)
    batch = stack.batch(6)
    y = stack.forward(x_aug, batch)
    stack.backward(2 * (y - x) / x[0].numel(), x_aug, None, batch)
    Reconstruction().loss(model, x[0], x[0]).backward()
    for l, layer in enumerate(m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        grad_weight, grad_bias = stack.weight_and_bias(l, 0, grad=True)
        assert torch.allclose(grad_weight, layer.weight.grad, atol=1e-6)
        assert torch.allclose(grad_bias, layer.bias.grad, atol=1e-6)


def test_the_stacks_final_loss_is_the_models_error_on_its_training_set(rect, monkeypatch):
    import aelab._engine.dispatch as dispatch

    seen = {}
    real = dispatch._final_check
    monkeypatch.setattr(
        dispatch,
        "_final_check",
        lambda m, device, baselines: (
            seen.setdefault(id(m.model), m.final_loss) and real(m, device, baselines)
        ),
    )
    models = [mlp(0), mlp(1)]
    aelab.train_many(models, rect, epochs=2, batch_size=16, drop_last=False)
    for model in models:  # 40 samples in batches of 16, 16 and 8: every sample counts
        assert seen[id(model)] == pytest.approx(aelab.reconstruction_error(model, rect.X), rel=1e-5)


def test_members_sharing_their_data_compute_its_mean_predictor_loss_once(rect, monkeypatch):
    from aelab._engine.objectives import Reconstruction

    calls = []
    real = Reconstruction.baseline_loss
    monkeypatch.setattr(
        Reconstruction, "baseline_loss", lambda self, X: calls.append(X) or real(self, X)
    )
    aelab.train_many([mlp(k) for k in range(4)], rect, epochs=1, batch_size=8)
    assert len(calls) == 1
    calls.clear()
    other = data.rectangle(40, seed=1)
    aelab.train_many([mlp(k) for k in range(4)], [rect, other, rect, other], epochs=1, batch_size=8)
    assert len(calls) == 2
