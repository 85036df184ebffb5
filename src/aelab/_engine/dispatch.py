"""Which path trains which members, and everything around the paths that they share.

Members are grouped by what can share a path and a stack, and each group takes one
path:

* ``"stack"``: the hand-written stack (:mod:`aelab._engine.stack`), for Linear/ReLU/
  residual autoencoders under the reconstruction or the MMD objective, and MLP VAEs
  under the VAE objective;
* ``"grouped"``: conv autoencoders under reconstruction as one model of grouped
  convolutions (:mod:`aelab._engine.grouped`), from 3 members sharing every setting;
* ``"vmap"``: the ``torch.func`` stack of :mod:`aelab._engine.functional`, when that
  module exists, for other groups (other conv groups, custom models); see
  :func:`vmap_path` for the hook that decides;
* ``"loop"``: the autograd loop (:mod:`aelab._engine.loop`), one member after another.

Around every path this module does the same things in the same way: re-initialise
and freeze parts, seed each member's streams, corrupt the test set once, apply the
one divergence rule (the final-loss check included), restore diverged or
interrupted members, and record the path in ``History.config["path"]`` (and at
DEBUG level in the log).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from aelab._engine.config import (
    History,
    TrainConfig,
    TrainingDiverged,
    blew_up,
    check_data,
    derived_seed,
    diverged_message,
    fixed_draw,
    member_generator,
    part,
    reinitialize,
    resolve_device,
    run_config,
)
from aelab._engine.grouped import groupable, train_grouped
from aelab._engine.loop import evaluate_loss, train_loop
from aelab._engine.objectives import (
    CallableObjective,
    MMDObjective,
    Objective,
    Reconstruction,
    VAEObjective,
)
from aelab._engine.stack import (
    StackMMD,
    StackVAE,
    chunks,
    optimizer_key,
    signature,
    stack_plan,
    train_stack,
)
from aelab._engine.torch_ops import has_tensor_hooks
from aelab.data import Dataset
from aelab.models.vae import VAE

logger = logging.getLogger(__name__)

__all__ = [
    "Member",
    "train_members",
    "fit",
    "PATHS",
    "ON_DIVERGE",
    "vmap_path",
    "FINAL_CHECK_ROWS",
    "as_objective",
]

PATHS = ("stack", "grouped", "vmap", "loop")
ON_DIVERGE = ("raise", "restore")
# the final-loss check evaluates the training set in pieces of at least this many rows
FINAL_CHECK_ROWS = 1024
# settings every member of one stack (of either kind) shares; the rest may differ per member
_SHARED = ("epochs", "batch_size", "drop_last", "optimizer")
_VMAP_SHARED = tuple(f.name for f in fields(TrainConfig) if f.name not in ("lr", "seed"))


@dataclass
class Member:
    """One model to train, with its data, settings and objective."""

    model: nn.Module
    train: Dataset
    test: Dataset | None
    cfg: TrainConfig
    objective: Objective
    history: History | None = None
    diverged: str | None = None
    final_loss: float | None = None  # on the whole training set, when the path computed it
    plan: tuple | None = None
    grad_flags: list = field(default_factory=list)


def as_objective(objective) -> Objective:
    """An :class:`Objective`, or a plain ``fn(model, x, target)`` wrapped as one."""
    if isinstance(objective, Objective):
        return objective
    if callable(objective):
        return CallableObjective(fn=objective)
    raise TypeError(
        f"objective must be an aelab Objective or a callable "
        f"(model, x, target) -> loss, got {type(objective).__name__}."
    )


# ------------------------------------------------------------------ the vmap hook


def _functional():
    """:mod:`aelab._engine.functional`, or None while it does not exist."""
    try:
        return importlib.import_module("aelab._engine.functional")
    except ModuleNotFoundError as error:
        if error.name != "aelab._engine.functional":
            raise  # the module exists but something it imports does not: say so
        return None


def vmap_path(members: Sequence[Member]):
    """THE DISPATCH HOOK for the ``"vmap"`` path: the functional module when it should train
    this group (one the hand-written stack cannot plan), else None (the loop trains it).

    :mod:`aelab._engine.functional` must exist and define ``train_functional``; its
    ``functional_beats_loop(model, objective, K) -> bool`` (measured there) decides, and
    without it any group of two or more members takes it (a lone member gains nothing
    from stacking and keeps the autograd loop).
    """
    functional = _functional()
    if functional is None or not hasattr(functional, "train_functional"):
        return None
    beats = getattr(functional, "functional_beats_loop", None)
    if beats is None:
        return functional if len(members) >= 2 else None
    return functional if beats(members[0].model, members[0].objective, len(members)) else None


# ------------------------------------------------------------------ grouping


def _architecture(model: nn.Module) -> tuple:
    """What must agree for two models to share a vmapped stack."""
    return (
        type(model),
        tuple(
            (name, tuple(p.shape), p.dtype, p.requires_grad) for name, p in model.named_parameters()
        ),
        tuple((name, tuple(b.shape)) for name, b in model.named_buffers()),
    )


def _hashable(objective: Objective):
    """The objective itself when it can be a dict key (frozen dataclasses), else its id."""
    try:
        hash(objective)
    except TypeError:
        return ("id", id(objective))
    return objective


def _stack_objective(objective: Objective):
    """What members of one hand-written stack share of their objective: the kind, for MMD
    the kernel and bandwidths (the weight may differ per member), for a VAE the likelihood
    (beta may differ)."""
    if type(objective) is MMDObjective:
        return ("mmd", objective.kernel, objective.bandwidths)
    if type(objective) is VAEObjective:
        return ("vae", objective.likelihood)
    return ("reconstruction",)


def _data_key(m: Member, shared=_SHARED) -> tuple:
    shape = tuple(m.train.X.shape)
    test = None if m.test is None else tuple(m.test.X.shape)
    return shape, test, tuple(getattr(m.cfg, k) for k in shared)


def _groups(members: list[Member]) -> list[tuple[str, list[Member]]]:
    """(path, members) for every group, in order of first appearance."""
    keyed: dict[tuple, list[Member]] = {}
    for i, m in enumerate(members):
        if m.plan is not None:
            key = (
                "stack",
                signature(m.plan),
                _data_key(m),
                bool(m.cfg.noise_sigma),
                _stack_objective(m.objective),
            )
        elif has_tensor_hooks(m.model):  # functional_call would bypass them: autograd only
            key = ("loop", i)
        else:
            # the vmapped stack shares every setting but the learning rate and the seed
            key = (
                "other",
                _architecture(m.model),
                _hashable(m.objective),
                _data_key(m, _VMAP_SHARED),
            )
        keyed.setdefault(key, []).append(m)
    groups = []
    for key, group in keyed.items():
        if key[0] == "stack":
            groups.append(("stack", group))
        elif key[0] == "other" and groupable(
            [m.model for m in group], group[0].objective, [m.cfg for m in group]
        ):
            groups.append(("grouped", group))
        elif key[0] == "other" and vmap_path(group) is not None:
            groups.append(("vmap", group))
        else:
            groups.extend(("loop", [m]) for m in group)
    return groups


def _as_stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One tensor when every member shares it, else a stack with a leading member axis."""
    first = tensors[0]
    if all(t is first for t in tensors):
        return first
    return torch.stack(tensors)


# ------------------------------------------------------------------ per member


def _prepare(m: Member, device: torch.device) -> None:
    """Move, re-initialise and freeze; remember the requires_grad flags to restore."""
    model, cfg = m.model, m.cfg
    frozen = part(model, cfg.freeze) if cfg.freeze else None
    if cfg.reinit:
        target = part(model, cfg.reinit)
        # a stream of its own: reusing cfg.seed would redraw exactly the weights of a model
        # that was built under the same seed, and re-initialise nothing
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(derived_seed(cfg.seed, "reinit"))
            reinitialize(target)
    m.grad_flags = [p.requires_grad for p in model.parameters()]
    if frozen is not None:
        frozen.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters (is everything frozen?).")
    # a VAE stacks under its own objective only (under another, its forward samples from
    # torch's global stream, and its decode applies the likelihood's link)
    is_vae = type(model) is VAE
    if is_vae:
        stackable = type(m.objective) is VAEObjective
    else:
        stackable = type(m.objective) in (Reconstruction, MMDObjective)
    m.plan = stack_plan(model) if stackable else None


def _test_inputs(m: Member, device: torch.device):
    """(inputs, targets, objective noise) of the member's test set, fixed for all epochs:
    the corruption (denoising) from the member's "test" stream, the objective's noise from
    its "test-noise" stream (see :mod:`aelab._engine.objectives`)."""
    if m.test is None:
        return None, None, None
    target = m.test.X.to(device)
    inputs = target
    g = member_generator(m.cfg.seed, device, "test")
    if m.cfg.noise_sigma:  # one fixed corruption, so the test curve is not noisy
        inputs = target + m.cfg.noise_sigma * torch.randn(
            target.shape, device=device, generator=g, dtype=target.dtype
        )
    columns = m.objective.noise_columns(m.model)
    noise = None
    if columns:  # a stream of its own: independent of the corruption
        noise = fixed_draw(m.cfg.seed, "test-noise", len(target), columns, device, target.dtype)
    return inputs, target, noise


def _new_history(m: Member, device, path: str, size: int) -> History:
    return History(
        config=run_config(
            m.cfg,
            m.model,
            len(m.train),
            device,
            **m.objective.config(),
            path=path,
            ensemble_size=size,
        )
    )


def _final_noise(m: Member, device) -> torch.Tensor:
    """The objective's draws for the final-loss check, from the member's "final" stream."""
    X, columns = m.train.X, m.objective.noise_columns(m.model)
    return fixed_draw(m.cfg.seed, "final", len(X), columns, device, X.dtype)


def _final_check(m: Member, device, baselines: dict) -> str | None:
    """The final-loss half of the divergence rule: the message, or None when it passed.
    ``baselines`` keeps each (objective, training tensor)'s mean-predictor loss: members
    that share their data compute it once."""
    cfg, history = m.cfg, m.history
    if not cfg.epochs or not history.step_loss:
        return None
    X = m.train.X.to(device)
    final = m.final_loss
    if final is None:
        columns = m.objective.noise_columns(m.model)
        noise = _final_noise(m, device) if columns else None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(derived_seed(cfg.seed, "final"))
            # an objective that compares samples (MMD) costs rows^2 per piece: measure it
            # in pieces of the batch size it was trained on, as its steps saw it
            pairwise = m.objective.pairwise
            chunk = cfg.batch_size if pairwise else max(cfg.batch_size, FINAL_CHECK_ROWS)
            final = evaluate_loss(m.model, m.objective, X, X, noise, chunk=chunk)
    initial = history.step_loss[0]  # the loss at the initial weights, on the first batch
    key = (_hashable(m.objective), id(m.train.X))
    if key not in baselines:
        baselines[key] = m.objective.baseline_loss(X)
    baseline = baselines[key]
    if baseline is None:  # an objective without a known mean predictor: the initial loss only
        baseline = initial
    if not blew_up(final, initial, baseline):
        return None
    return diverged_message(final, cfg.epochs - 1, cfg.epochs, cfg.lr, final=(initial, baseline))


# ------------------------------------------------------------------ the paths


def _run_stack(group: list[Member], device, progress, on_diverge) -> None:
    group = sorted(group, key=lambda m: optimizer_key(m.cfg))  # one optimizer group per key
    n_params = sum(p.numel() for p in group[0].model.parameters())
    for chunk_ in chunks(group, n_params):
        K = len(chunk_)
        X, test_in, test_target, test_noise = _group_data(chunk_, device)
        mmd = vae = None
        first = chunk_[0].objective
        if type(first) is MMDObjective:
            mmd = StackMMD([m.objective.weight for m in chunk_], first.kernel, first.bandwidths)
        elif type(first) is VAEObjective:
            vae = StackVAE([m.objective.beta for m in chunk_], first.likelihood)
        final_noise = None
        if mmd or vae:
            final_noise = torch.stack([_final_noise(m, device) for m in chunk_])
        histories = [_new_history(m, device, "stack", K) for m in chunk_]
        generators = [member_generator(m.cfg.seed, device) for m in chunk_]
        desc = f"{type(chunk_[0].model).__name__} x{K}"
        logger.debug("path 'stack': %s", desc)
        for m in chunk_:
            m.model.train()
        diverged, final = train_stack(
            [m.plan for m in chunk_],
            X,
            [m.cfg for m in chunk_],
            histories,
            generators=generators,
            test_in=test_in,
            test_target=test_target,
            progress=progress,
            desc=desc,
            on_diverge=on_diverge,
            mmd=mmd,
            vae=vae,
            test_noise=test_noise,
            final_noise=final_noise,
        )
        for m, history, message, loss in zip(chunk_, histories, diverged, final):
            m.model.eval()
            m.history, m.diverged, m.final_loss = history, message, loss


def _group_data(group: list[Member], device):
    """The group's training data, and its test inputs, targets and objective noise (None
    without a test set; the noise None when the objective draws none), each one tensor
    when shared."""
    X = _as_stack([m.train.X for m in group]).to(device)
    tests = [_test_inputs(m, device) for m in group]
    test_in = test_target = test_noise = None
    if tests[0][0] is not None:
        test_in = _as_stack([t[0] for t in tests]) if len(group) > 1 else tests[0][0]
        test_target = _as_stack([m.test.X for m in group]).to(device)
        if tests[0][2] is not None:
            test_noise = torch.stack([t[2] for t in tests])
    return X, test_in, test_target, test_noise


def _run_grouped(group: list[Member], device, progress, on_diverge) -> None:
    K = len(group)
    X, test_in, test_target, _ = _group_data(group, device)
    desc = f"{type(group[0].model).__name__} x{K} (grouped)"
    logger.debug("path 'grouped': %s", desc)
    results = train_grouped(
        [m.model for m in group],
        X,
        [m.cfg for m in group],
        group[0].objective,
        generators=[member_generator(m.cfg.seed, device) for m in group],
        test_in=test_in,
        test_target=test_target,
        progress=progress,
        desc=desc,
    )
    _record_results(group, results, "grouped", device, on_diverge)


def _run_vmap(group: list[Member], functional, device, progress, on_diverge) -> None:
    K = len(group)
    X, test_in, test_target, _ = _group_data(group, device)
    desc = f"{type(group[0].model).__name__} x{K} (vmap)"
    logger.debug("path 'vmap': %s", desc)
    results = functional.train_functional(
        [m.model for m in group],
        X,
        [m.cfg for m in group],
        group[0].objective,
        test_in=test_in,
        test_target=test_target,
        progress=progress,
        desc=desc,
    )
    _record_results(group, results, "vmap", device, on_diverge)


def _record_results(group: list[Member], results, path: str, device, on_diverge) -> None:
    """Each member's History from its record (a :class:`functional.MemberResult`)."""
    K = len(group)
    for m, result in zip(group, results):
        m.model.eval()
        history = _new_history(m, device, path, K)
        E = m.cfg.epochs
        e = E if result.diverged_epoch is None else result.diverged_epoch
        n = len(m.train)
        batch_size = min(m.cfg.batch_size, n)
        n_used = n - n % batch_size if m.cfg.drop_last else n
        steps = -(-n_used // batch_size)
        history.train_loss.extend(result.train_loss[:e])
        history.test_loss.extend(result.test_loss[:e])
        history.step_loss.extend(result.step_loss[: e * steps])
        history.seconds.extend(result.seconds[:e])
        history.examples_seen.extend(n_used * (i + 1) for i in range(e))
        m.history = history
        if result.diverged_epoch is not None:
            loss = result.train_loss[e] if e < len(result.train_loss) else float("nan")
            m.diverged = diverged_message(loss, e, E, m.cfg.lr)
            if on_diverge == "raise":
                raise TrainingDiverged(m.diverged)


def _run_loop(m: Member, device, progress, on_diverge) -> None:
    m.history = history = _new_history(m, device, "loop", 1)
    test_in, test_target, test_noise = _test_inputs(m, device)
    logger.debug("path 'loop': %s", type(m.model).__name__)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(m.cfg.seed)
        try:
            train_loop(
                m.model,
                m.train.X.to(device),
                m.objective,
                m.cfg,
                history,
                generator=member_generator(m.cfg.seed, device),
                test_in=test_in,
                test_target=test_target,
                test_noise=test_noise,
                progress=progress,
                desc=type(m.model).__name__,
            )
        except TrainingDiverged as error:
            if on_diverge == "raise":
                raise
            m.model.eval()
            m.diverged = str(error)  # train_members restores its weights


# ------------------------------------------------------------------ the entry


def train_members(
    members: list[Member], *, device: torch.device, progress=None, on_diverge: str = "raise"
) -> list[History]:
    """Train every member in place, each group on its path; their Histories in order.

    ``on_diverge="raise"``: the first divergence restores every model to its weights
    before the call and raises :class:`TrainingDiverged`; ``"restore"``: a diverged
    member alone goes back to its weights before the call, its History keeps the epochs
    before the divergence and ``config["diverged"]`` holds the message. Any other
    exception (or an interrupt) restores every model and propagates.
    """
    saved = [{k: v.detach().clone() for k, v in m.model.state_dict().items()} for m in members]
    prepared: list[Member] = []
    try:
        for m in members:
            m.model.to(device)
            _prepare(m, device)
            prepared.append(m)
        for path, group in _groups(members):
            if path == "stack":
                _run_stack(group, device, progress, on_diverge)
            elif path == "grouped":
                _run_grouped(group, device, progress, on_diverge)
            elif path == "vmap":
                _run_vmap(group, vmap_path(group), device, progress, on_diverge)
            else:
                _run_loop(group[0], device, progress, on_diverge)
        baselines: dict = {}  # members keep their data alive here, so ids are not reused
        for m, state in zip(members, saved):
            if m.diverged is None:
                m.diverged = _final_check(m, device, baselines)
                if m.diverged is not None and on_diverge == "raise":
                    raise TrainingDiverged(m.diverged)
            if m.diverged is not None:
                m.model.load_state_dict(state)
                m.history.config["diverged"] = m.diverged
            else:
                m.objective.finish(m.model, m.history)
    except BaseException:  # diverged, bad input or interrupted: leave every model as it was
        for m, state in zip(members, saved):
            m.model.load_state_dict(state)
        raise
    finally:
        for m in prepared:
            for p, flag in zip(m.model.parameters(), m.grad_flags):
                p.requires_grad_(flag)
    return [m.history for m in members]


def fit(
    model: nn.Module,
    train: Dataset,
    objective,
    cfg: TrainConfig,
    *,
    test: Dataset | None = None,
    device=None,
    progress=None,
    extra_config: dict | None = None,
) -> History:
    """Train one model in place on ``objective`` (an :class:`Objective`, or a plain
    ``fn(model, x, target) -> loss``); raise :class:`TrainingDiverged` when it diverges.

    The engine behind :func:`aelab.train_autoencoder`, ``train_vae`` and
    ``train_mmd_autoencoder``: a group of one, on the path it would take in
    :func:`aelab.train_many`, with the same numbers. The caller's global RNG state is
    left untouched.
    """
    check_data("train", train, model)
    if test is not None:
        check_data("test", test, model)
    device = resolve_device(device)
    member = Member(model, train, test, cfg, as_objective(objective))
    [history] = train_members([member], device=device, progress=progress, on_diverge="raise")
    history.config.pop("ensemble_size")
    history.config.update(extra_config or {})
    return history
