"""The vmapped stack: K models of one architecture trained at once with ``torch.func``.

Any model and any :class:`~aelab._engine.objectives.Objective` stack here: the
members' weights are stacked (``torch.func.stack_module_state``), one step is
``vmap(grad_and_value(loss over functional_call))`` over a wrapper module whose
forward is ``objective.loss(model, x, target, noise)`` (so a VAE's ``posterior``
or a skip model's ``forward_with_code`` work as they do alone), and one fused
Adam or SGD call updates every member's stacked tensors. Members with different
learning rates are sorted into runs of equal rate, each an optimizer parameter
group over a view of the stack, so the update is torch's own fused kernel with
each member's rate. Randomness is drawn outside ``vmap`` from each member's own
``torch.Generator().manual_seed(cfg.seed)``, in the order the objectives module
documents (``randperm`` -- skipped for full-batch training, as every path does --,
then the denoising noise, then the objective's noise columns), so a member's
draws do not depend on its stack.

Numbers. A member matches a plain autograd loop with the same draws and
``torch.optim.Adam`` to float32 rounding, not bit for bit: batched kernels round
differently from single-model ones. tests/test_engine_functional.py measured
at most 2e-7 relative on step losses and 7e-7 absolute on weights after 6 steps
(MLP, ResNet, VAE, MMD, conv and conv-with-skip), and checks 1e-5 / 5e-6.

When it pays (``functional_beats_loop``), measured 2026-12-03 by
``benchmarks/functional_paths.py`` on this 2-core machine (x86_64, torch 2.13.0
CPU, 1 torch thread) while other work ran: time per model and step of the
autograd loop (one model after another, fused Adam; run A: the same loop written
in the benchmark, B and C: ``aelab._engine.loop``) over this path's, the
geometric mean of paired, interleaved repetitions with its 95% t-interval.
Run A: load average 1.9-3.4, 5 repetitions; B: load 5.7-8.9, 5; C: load
4.9-6.5, 7. Setup (stacking, the optimizer) is included.

====================  =================  =================  =================
workload, K           run A              run B              run C
====================  =================  =================  =================
VAE, 1                0.38 [0.29, 0.51]  0.37 [0.31, 0.45]
VAE, 4                1.01 [0.68, 1.50]  1.01 [0.92, 1.10]
VAE, 8                                   1.52 [1.31, 1.77]
VAE, 16               2.07 [1.69, 2.55]  2.22 [1.57, 3.13]
VAE, 64               2.66 [2.15, 3.30]  2.52 [1.90, 3.35]
MMD ResNet, 1         0.27 [0.21, 0.35]  0.34 [0.26, 0.43]
MMD ResNet, 4         0.98 [0.61, 1.59]  1.12 [0.82, 1.53]
MMD ResNet, 8                            1.75 [1.09, 2.79]
MMD ResNet, 16        2.35 [1.68, 3.29]  3.97 [2.33, 6.79]
MMD ResNet, 64        5.48 [3.43, 8.73]  7.48 [4.29, 13.0]
MMD MLP, 4            1.24 [1.03, 1.50]  1.51 [1.26, 1.80]
MMD MLP, 8                               2.52 [2.18, 2.92]
MMD MLP, 64           6.93 [4.00, 12.0]  7.48 [5.98, 9.35]
conv, 1               0.57 [0.40, 0.82]  0.70 [0.58, 0.85]  0.65 [0.56, 0.75]
conv, 4               0.97 [0.67, 1.41]  1.27 [1.05, 1.55]  1.21 [0.99, 1.47]
conv, 16              0.99 [0.64, 1.53]  1.72 [1.39, 2.13]  1.54 [1.10, 2.14]
conv, 64              0.79 [0.61, 1.03]  1.64 [1.37, 1.96]  1.39 [0.87, 2.22]
conv + skips, 4       1.10 [0.85, 1.41]  1.28 [1.04, 1.57]  1.20 [1.08, 1.34]
conv + skips, 16      1.58 [1.26, 1.97]  2.01 [1.27, 3.18]  1.59 [1.47, 1.72]
conv + skips, 64      1.71 [1.04, 2.80]  1.90 [1.13, 3.19]  1.54 [1.35, 1.76]
====================  =================  =================  =================

Workloads: VAE 64-128-128-(2+2)-128-128-64 on digits, batch 64; MMD (IMQ) with
moons-mmd's ResNet autoencoder (2 blocks of width 64) or MLP 2-64-64-2-64-64-2 on
1200 moons, batch 32; ConvAutoencoder((1, 8, 8), 2) with channels 16-32 on
digits, denoising, batch 128. The rule (``MIN_K``): a lone model keeps the loop
(the vmapped step costs 1.4-3.7x a plain one); Linear/ResNet models stack from
K = 8, where every run that measured it found the stack faster; conv autoencoders
from K = 16: with skips the stack was faster in all three runs, without skips in
the two loaded runs, and no different (0.99, interval 0.64-1.53) in the lightest
one, so the stack costs nothing measurable there either. Per model, K = 64 was no
faster than K = 16 for conv models. The vmapped stack is far from the hardware's
limit for these tiny models: stacked, the VAE computed 27-34% of the matmul peak
and the MMD model 1-2% (docs/benchmarks.md: overhead per op, not arithmetic, sets
their pace).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from aelab._engine.config import (
    SCHEDULES,
    TrainConfig,
    derived_seed,
    fixed_draw,
    member_generator,
    part,
    progress_bar,
    reinitialize,
)
from aelab._engine.loop import make_optimizer
from aelab._engine.objectives import Objective, pieces

__all__ = ["MemberResult", "train_functional", "functional_beats_loop", "stacked_loss_and_grad"]

PER_MEMBER = ("lr", "seed")  # the only TrainConfig fields that may differ within a stack


@dataclass
class MemberResult:
    """One member's record; lists stop before the epoch where its loss stopped being finite."""

    train_loss: list[float] = field(default_factory=list)  # per epoch: batch-size-weighted mean
    test_loss: list[float] = field(default_factory=list)  # per epoch, after its updates
    step_loss: list[float] = field(default_factory=list)  # per optimizer step, on its batch
    seconds: list[float] = field(default_factory=list)  # cumulative wall seconds per epoch
    diverged_epoch: int | None = None  # 0-based epoch whose loss (or final weights) went bad


class _LossModule(nn.Module):
    """``forward`` is the objective's loss of the wrapped model: what functional_call runs."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x, target, noise):
        return self.objective.loss(self.model, x, target, noise)


def _member_loss(model: nn.Module, objective: Objective):
    """``(base, loss)``: ``loss(trainable, fixed, x, target, noise)`` is one member's objective
    with its weights given as dicts (names prefixed ``model.``), for vmap over the stack."""
    base = copy.deepcopy(model).to("meta")  # the architecture only; weights come from the stack
    base.train()
    wrapper = _LossModule(base, objective)

    def loss(trainable, fixed, x, target, noise):
        return functional_call(wrapper, (trainable, fixed), (x, target, noise))

    return base, loss


def stacked_loss_and_grad(
    models: Sequence[nn.Module],
    objective: Objective,
    x: torch.Tensor,
    target: torch.Tensor,
    noise: torch.Tensor | None = None,
):
    """Each member's loss (K,) and gradients {name: (K, ...)} on its own batch ``x[k]``,
    ``target[k]``, ``noise[k]``: the step :func:`train_functional` takes, without the update."""
    params, buffers = stack_module_state(list(models))
    params = {f"model.{k}": v.detach() for k, v in params.items()}
    buffers = {f"model.{k}": v for k, v in buffers.items()}
    _, loss = _member_loss(models[0], objective)
    grads, values = vmap(grad_and_value(loss), in_dims=(0, 0, 0, 0, None if noise is None else 0))(
        params, buffers, x, target, noise
    )
    return values, {k.removeprefix("model."): g for k, g in grads.items()}


# --------------------------------------------------------------------------- checks


def _check_models(models) -> list[nn.Module]:
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
        raise TypeError(
            f"models must be a non-empty list of torch.nn.Module, got "
            f"{type(models).__name__}; pass [model] for one model."
        )
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(m).__name__}.")
    first = models[0]
    shapes = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    for i, m in enumerate(models[1:], 1):
        other = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        if type(m) is not type(first) or other != shapes:
            raise ValueError(
                f"models[{i}] ({type(m).__name__}) does not have the architecture of models[0] "
                f"({type(first).__name__}): train_functional stacks models of one architecture "
                "only; group the models by architecture and call it once per group."
            )
    devices = {p.device for m in models for p in m.parameters()}
    if len(devices) > 1:
        raise ValueError(
            f"models must all be on one device, got {sorted(map(str, devices))}; "
            "move them with model.to(device)."
        )
    if not devices:
        raise ValueError("models have no parameters to train.")
    return list(models)


def _check_configs(cfgs, K: int) -> list:
    if isinstance(cfgs, TrainConfig) or not isinstance(cfgs, Sequence):
        raise TypeError(
            f"cfgs must be a list of {K} aelab.train.TrainConfig (one per model), "
            f"got {type(cfgs).__name__}."
        )
    if len(cfgs) != K:
        raise ValueError(
            f"cfgs has length {len(cfgs)} but there are {K} models; give one TrainConfig per model."
        )
    for i, c in enumerate(cfgs):
        if not isinstance(c, TrainConfig):
            raise TypeError(
                f"cfgs[{i}] must be an aelab.train.TrainConfig, got {type(c).__name__}."
            )
    names = [f.name for f in dataclasses.fields(cfgs[0]) if f.name not in PER_MEMBER]
    for i, c in enumerate(cfgs[1:], 1):
        for name in names:
            if getattr(c, name) != getattr(cfgs[0], name):
                raise ValueError(
                    f"cfgs[{i}].{name}={getattr(c, name)!r} differs from cfgs[0].{name}="
                    f"{getattr(cfgs[0], name)!r}; within one stack only {' and '.join(PER_MEMBER)} "
                    "may differ: group the models by the other settings and call "
                    "train_functional once per group."
                )
    return list(cfgs)


def _check_data(name: str, X, K: int, device, n_features: int | None = None) -> torch.Tensor:
    if not isinstance(X, torch.Tensor) or not X.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point torch.Tensor, got "
            f"{type(X).__name__ if not isinstance(X, torch.Tensor) else X.dtype}."
        )
    if X.ndim not in (2, 3) or (X.ndim == 3 and X.shape[0] != K) or X.shape[-2] < 1:
        raise ValueError(
            f"{name} must be (n, features), shared by all members, or (K, n, "
            f"features) with K={K}, one dataset per member, and n >= 1; got shape "
            f"{tuple(X.shape)}."
        )
    if n_features is not None and X.shape[-1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[-1]} features but the training data has {n_features}."
        )
    return X.to(device)


# --------------------------------------------------------------------------- training


def train_functional(
    models: Sequence[nn.Module],
    X: torch.Tensor,
    cfgs: Sequence,
    objective: Objective,
    *,
    test_in: torch.Tensor | None = None,
    test_target: torch.Tensor | None = None,
    progress: bool | None = None,
    desc: str = "",
) -> list[MemberResult]:
    """Train K models of one architecture together on ``objective``; weights written back.

    Parameters
    ----------
    models : list of nn.Module
        K models of one architecture (same class, same parameter shapes) on one device.
    X : Tensor
        Training data, ``(n, features)`` shared by every member, or ``(K, n, features)``.
    cfgs : list of aelab.train.TrainConfig
        One per model. Only ``lr`` and ``seed`` may differ between members (ValueError
        otherwise). ``freeze``: that part, and any parameter with
        ``requires_grad=False``, stays fixed. ``reinit``: that part is re-initialised from
        the member's "reinit" stream first (as aelab's other paths do; doing it twice gives
        the same weights).
    objective : Objective
        The loss, e.g. ``Reconstruction()``, ``VAEObjective(beta=1.0)``, ``MMDObjective()``.
    test_in, test_target : Tensor, optional
        Held-out inputs (already corrupted, for denoising) and targets, shaped like ``X``;
        evaluated after every epoch. An objective's noise for them is drawn once per member
        from its "test-noise" stream, the same every epoch, as the loop does.
    progress : bool, optional
        A progress bar over epochs; by default only when stderr is a terminal.
    desc : str
        The progress bar's label.

    Returns
    -------
    list of MemberResult
        One per model, in order. A member whose loss became NaN or infinite gets
        ``diverged_epoch`` and keeps the weights it had before training; the others
        are unaffected. Models' train/eval modes are left as they were.

    Examples
    --------
    >>> import aelab
    >>> from aelab.train import TrainConfig
    >>> from aelab._engine.objectives import Reconstruction
    >>> models = [aelab.Autoencoder(2, 1, hidden_size=8, layers=1) for _ in range(3)]
    >>> cfgs = [TrainConfig(epochs=2, batch_size=25, seed=s) for s in range(3)]
    >>> results = train_functional(models, aelab.data.moons(100).X, cfgs, Reconstruction())
    >>> [len(r.train_loss) for r in results], [len(r.step_loss) for r in results]
    ([2, 2, 2], [8, 8, 8])
    """
    models = _check_models(models)
    K = len(models)
    cfgs = _check_configs(cfgs, K)
    if not isinstance(objective, Objective):
        raise TypeError(
            f"objective must be an aelab objective (Reconstruction, VAEObjective, "
            f"MMDObjective), got {type(objective).__name__}."
        )
    device = next(models[0].parameters()).device
    X = _check_data("X", X, K, device)
    if (test_in is None) != (test_target is None):
        raise ValueError("give test_in and test_target together, or neither.")
    if test_in is not None:
        test_in = _check_data("test_in", test_in, K, device, X.shape[-1])
        test_target = _check_data("test_target", test_target, K, device, X.shape[-1])
        if test_in.shape[-2] != test_target.shape[-2]:
            raise ValueError(
                f"test_in has {test_in.shape[-2]} samples but test_target has "
                f"{test_target.shape[-2]}."
            )
    # members with equal learning rates next to each other: one optimizer group per rate
    order = sorted(range(K), key=lambda k: cfgs[k].lr)

    def permuted(t):
        return t if t is None or t.ndim == 2 else t[order]

    results = _train_sorted(
        [models[k] for k in order],
        permuted(X),
        [cfgs[k] for k in order],
        objective,
        permuted(test_in),
        permuted(test_target),
        progress,
        desc,
    )
    out: list[MemberResult | None] = [None] * K
    for position, k in enumerate(order):
        out[k] = results[position]
    return out


def _train_sorted(models, X, cfgs, objective, test_in, test_target, progress, desc):
    cfg = cfgs[0]
    K = len(models)
    device = X.device
    shared = X.ndim == 2
    n, d = X.shape[-2:]
    batch_size = min(cfg.batch_size, n)
    n_used = n - n % batch_size if cfg.drop_last else n
    full_batch = batch_size >= n
    sizes = [len(s) for s in torch.arange(n_used).split(batch_size)]
    E, S = cfg.epochs, len(sizes)
    cols = objective.noise_columns(models[0])
    fork_devices = [device] if device.type == "cuda" else []

    starts = models
    if cfg.reinit is not None:
        starts = []
        for m, c in zip(models, cfgs):
            part(m, cfg.reinit)  # ValueError when there is no such part
            m = copy.deepcopy(m)  # the caller's model keeps its weights until training succeeds
            # a stream of its own, as in aelab.train.fit: reusing the seed would redraw the
            # weights of a model built under that seed and re-initialise nothing
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(derived_seed(c.seed, "reinit"))
                reinitialize(part(m, cfg.reinit))
            starts.append(m)
    params, buffers = stack_module_state(starts)  # (K, ...) copies
    params = {f"model.{k}": v.detach() for k, v in params.items()}
    buffers = {f"model.{k}": v for k, v in buffers.items()}
    if cfg.freeze is not None:
        part(models[0], cfg.freeze)  # ValueError when there is no such part
    frozen = f"model.{cfg.freeze}." if cfg.freeze else None
    flags = {f"model.{k}": p.requires_grad for k, p in models[0].named_parameters()}
    trainable = {
        k: v for k, v in params.items() if flags[k] and not (frozen and k.startswith(frozen))
    }
    fixed = {**{k: v for k, v in params.items() if k not in trainable}, **buffers}
    if not trainable:
        raise ValueError("the model has no trainable parameters (is everything frozen?).")

    base, member_loss = _member_loss(models[0], objective)
    with_noise = cols > 0
    noise_dim = 0 if with_noise else None
    step = vmap(grad_and_value(member_loss), in_dims=(0, 0, 0, 0, noise_dim))

    # optimizer: one parameter group per run of equal learning rates, over views of the stack
    lrs = [c.lr for c in cfgs]
    runs = []  # (first member, end, lr)
    for k, lr in enumerate(lrs):
        if runs and runs[-1][2] == lr:
            runs[-1] = (runs[-1][0], k + 1, lr)
        else:
            runs.append((k, k + 1, lr))
    views = []  # (name, first, end, view)
    groups = []
    for first, end, lr in runs:
        group = []
        for name, tensor in trainable.items():
            view = tensor if (first, end) == (0, K) else tensor[first:end]
            views.append((name, first, end, view))
            group.append(view)
        groups.append({"params": group, "lr": lr})
    optimizer = make_optimizer(groups, cfg)  # each group's lr overrides cfg.lr
    scheduler = SCHEDULES[cfg.lr_schedule](optimizer, E) if cfg.lr_schedule else None

    generators = [member_generator(c.seed, device) for c in cfgs]
    perm = torch.arange(n, device=device).repeat(K, 1)  # (K, n); full batch keeps this order
    in_noise = torch.empty(K, n_used, d, dtype=X.dtype, device=device) if cfg.noise_sigma else None
    obj_noise = torch.empty(K, n_used, cols, dtype=X.dtype, device=device) if with_noise else None
    members = torch.arange(K, device=device).view(K, 1)

    test_step = test_noise = None
    if test_in is not None:
        n_test = test_in.shape[-2]
        test_pieces = pieces(n_test, objective.pairwise, cfg.batch_size)
        test_dim = None if test_in.ndim == 2 else 0
        test_step = vmap(member_loss, in_dims=(0, 0, test_dim, test_dim, noise_dim))
        if with_noise:
            test_noise = torch.stack(
                [fixed_draw(c.seed, "test-noise", n_test, cols, device, X.dtype) for c in cfgs]
            )  # (K, n_test, cols): the same draw every epoch

    step_loss = torch.empty(E, S, K, dtype=X.dtype, device=device)
    test_loss = torch.empty(E, K, dtype=X.dtype, device=device) if test_in is not None else None
    seconds: list[float] = []
    bar = progress_bar(E, progress, desc or type(models[0]).__name__)
    start = time.perf_counter()
    epochs_run = 0
    for epoch in bar:
        for k, g in enumerate(generators):  # the documented draw order, member by member
            if not full_batch:
                torch.randperm(n, generator=g, out=perm[k])
            if in_noise is not None:
                torch.randn(n_used, d, generator=g, out=in_noise[k])
            if obj_noise is not None:
                torch.randn(n_used, cols, generator=g, out=obj_noise[k])
        idx = perm[:, :n_used]
        target = X[idx] if shared else X[members, idx]  # (K, n_used, d)
        inputs = target if in_noise is None else target + cfg.noise_sigma * in_noise
        xs, ts = inputs.split(batch_size, 1), target.split(batch_size, 1)
        ns = obj_noise.split(batch_size, 1) if with_noise else [None] * S
        for s in range(S):
            grads, loss = step(trainable, fixed, xs[s], ts[s], ns[s])
            for name, first, end, view in views:
                g = grads[name]
                view.grad = g if g.shape[0] == end - first else g[first:end]
            optimizer.step()
            step_loss[epoch, s] = loss
        if scheduler is not None:
            scheduler.step()
        if test_step is not None:
            base.eval()
            with torch.no_grad():  # a pairwise objective in pieces (aelab._engine.objectives)
                total = 0.0
                for first, stop in test_pieces:
                    rows = slice(first, stop)
                    loss = test_step(
                        trainable,
                        fixed,
                        test_in[..., rows, :],
                        test_target[..., rows, :],
                        None if test_noise is None else test_noise[:, rows],
                    )
                    total = total + loss * (stop - first)
                test_loss[epoch] = total / n_test if len(test_pieces) > 1 else loss
            base.train()
        seconds.append(time.perf_counter() - start)
        epochs_run = epoch + 1
        alive = torch.isfinite(step_loss[epoch]).all(0)
        if not bool(alive.any()):  # the epoch's one host sync: stop when every member is lost
            break
        if not bar.disable:
            bar.set_postfix(loss=f"{float(step_loss[epoch].mean()):.4g}", refresh=False)
    bar.close()
    for group in optimizer.param_groups:  # the last step's gradients: nothing keeps them
        for p in group["params"]:
            p.grad = None

    weights = torch.tensor(sizes, dtype=torch.float64, device=device).view(S, 1) / n_used
    losses = step_loss[:epochs_run].double()  # (E, S, K)
    train_loss = (losses * weights).sum(1)  # (E, K): step losses weighted by batch size
    ok = [epochs_run] * K  # per member, the epochs before its loss stopped being finite
    bad = ~torch.isfinite(train_loss)
    if epochs_run and bool(bad.any()):
        ok = torch.where(bad.any(0), bad.to(torch.int8).argmax(0), epochs_run).tolist()
    if epochs_run:
        # an epoch's loss is measured before its updates: a blow-up in the last epoch shows
        # only in the weights (and the test loss)
        finite = torch.ones(K, dtype=torch.bool, device=device)
        for tensor in trainable.values():
            finite &= tensor.flatten(1).isfinite().all(1)
        if test_loss is not None:
            finite &= torch.isfinite(test_loss[epochs_run - 1])
        for k in (~finite).nonzero().flatten().tolist():
            ok[k] = min(ok[k], epochs_run - 1)
    step_lists = losses.permute(2, 0, 1).reshape(K, -1).tolist()
    train_lists = train_loss.T.tolist()
    test_lists = test_loss[:epochs_run].double().T.tolist() if test_loss is not None else None

    results = []
    with torch.no_grad():
        for k, model in enumerate(models):
            e = ok[k]
            results.append(
                MemberResult(
                    train_loss=train_lists[k][:e],
                    test_loss=test_lists[k][:e] if test_lists else [],
                    step_loss=step_lists[k][: e * S],
                    seconds=seconds[:e],
                    diverged_epoch=e if e < E else None,
                )
            )
            if e < E:
                continue  # a diverged member keeps the weights it had before training
            state = {**params, **buffers}
            for name, tensor in model.state_dict(keep_vars=True).items():
                tensor.copy_(state[f"model.{name}"][k])
    return results


# --------------------------------------------------------------------------- dispatch


# Modules whose forward draws random numbers or updates running statistics: under vmap the
# first raises (randomness="error") and the second cannot update a stacked buffer in place.
_UNSTACKABLE = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
# the smallest K from which the stack measured faster than the loop (module docstring)
MIN_K = {"mlp": 8, "conv": 16}


def _family(model: nn.Module) -> str:
    return "conv" if any(isinstance(m, _CONVS) for m in model.modules()) else "mlp"


def functional_beats_loop(model: nn.Module, objective: Objective, K: int) -> bool:
    """Whether K members of ``model``'s architecture under ``objective`` train faster with
    :func:`train_functional` than one after another in the autograd loop.

    False whenever the stack cannot train them the same way: an objective other than
    aelab's three (its randomness is not drawn outside the loss), a model that samples in
    its own forward (a VAE under plain reconstruction), dropout or normalisation layers.
    Otherwise the measured rule of the module docstring: models of Linear (and residual)
    layers from ``MIN_K["mlp"]`` = 8 members, models with convolutions from
    ``MIN_K["conv"]`` = 16.

    >>> import aelab
    >>> from aelab._engine.objectives import MMDObjective
    >>> model = aelab.Autoencoder(2, 2, hidden_size=64, layers=2)
    >>> [functional_beats_loop(model, MMDObjective(), K) for K in (1, 64)]
    [False, True]
    """
    from aelab._engine.objectives import MMDObjective, Reconstruction, VAEObjective

    if type(objective) not in (Reconstruction, VAEObjective, MMDObjective):
        return False
    if type(objective) is Reconstruction and callable(getattr(model, "reparameterize", None)):
        return False  # a VAE's forward samples in train mode
    if any(isinstance(m, _UNSTACKABLE) for m in model.modules()):
        return False
    threshold = MIN_K[_family(model)]
    return threshold is not None and K >= threshold
