"""The only place aelab calls private torch functions, each with a public fallback.

The hand-written stack calls the kernels behind ``torch.optim.Adam(fused=True)`` and
``SGD(fused=True)`` (``torch._fused_adam_``, ``torch._fused_sgd_``) directly, which saves
the optimizer's per-step bookkeeping (tens of microseconds, a large share of a tiny
step), and ReLU's own backward (``aten.threshold_backward``). At import each is tried
once on a tiny tensor with the very arguments used later; one that is missing or whose
signature changed is replaced by public API: a ``torch.optim`` optimizer over the same
tensors (fused if that works, else foreach), and a ``torch.where`` for ReLU's backward.
So a torch upgrade makes aelab slower, never broken. ``PRIVATE`` says which are in use.

It also reads torch's hook tables (:func:`has_module_hooks`, :func:`has_tensor_hooks`):
a path that does not call a model's modules, or does not run autograd, must leave a
model with hooks to the autograd loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "FUSED_ADAM",
    "FUSED_SGD",
    "THRESHOLD_BACKWARD",
    "PRIVATE",
    "relu_backward",
    "FusedUpdate",
    "has_module_hooks",
    "has_tensor_hooks",
]


def _probe_adam(fn) -> bool:
    p, g = torch.zeros(16), torch.ones(16)
    m, v = torch.zeros(16), torch.zeros(16)
    fn(
        [p],
        [g],
        [m],
        [v],
        [],
        [torch.tensor(1.0)],
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        weight_decay=0.0,
        eps=1e-8,
        amsgrad=False,
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )
    return bool(torch.isfinite(p).all()) and float(p[0]) < 0


def _probe_sgd(fn) -> bool:
    p, g, buf = torch.zeros(16), torch.ones(16), torch.zeros(16)
    fn(
        [p],
        [g],
        [buf],
        weight_decay=0.0,
        momentum=0.5,
        lr=0.1,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        is_first_step=True,
        grad_scale=None,
        found_inf=None,
    )
    return float(p[0]) == float(torch.tensor(-0.1))


def _probe_threshold(fn) -> bool:
    out = fn(torch.ones(4), torch.tensor([1.0, -1.0, 0.0, 2.0]), 0)
    return out.tolist() == [1.0, 0.0, 0.0, 1.0]


def _checked(get, probe, name: str):
    """``get()`` when it exists and passes ``probe``, else None (and a debug log)."""
    try:
        fn = get()
        if probe(fn):
            return fn
    except Exception as error:  # noqa: BLE001 - any failure means: use the public API
        logger.debug("torch private %s unusable (%s); using the public fallback", name, error)
        return None
    logger.debug("torch private %s gave unexpected numbers; using the public fallback", name)
    return None


FUSED_ADAM = _checked(lambda: torch._fused_adam_, _probe_adam, "_fused_adam_")
FUSED_SGD = _checked(lambda: torch._fused_sgd_, _probe_sgd, "_fused_sgd_")
THRESHOLD_BACKWARD = _checked(
    lambda: torch.ops.aten.threshold_backward.default, _probe_threshold, "aten.threshold_backward"
)
PRIVATE = {
    "_fused_adam_": FUSED_ADAM is not None,
    "_fused_sgd_": FUSED_SGD is not None,
    "threshold_backward": THRESHOLD_BACKWARD is not None,
}
_ZERO = torch.tensor(0.0)


def has_module_hooks(model: torch.nn.Module) -> bool:
    """Whether a forward or backward hook would run on ``model``'s modules: one of their
    own, or a global one."""
    tables = torch.nn.modules.module
    if (
        tables._global_forward_hooks
        or tables._global_forward_pre_hooks
        or tables._global_backward_hooks
        or tables._global_backward_pre_hooks
    ):
        return True
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in model.modules()
    )


def has_tensor_hooks(model: torch.nn.Module) -> bool:
    """Whether a parameter of ``model`` has a gradient hook (e.g. one that edits gradients),
    which only autograd runs."""
    return any(
        p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None)
        for p in model.parameters()
    )


def relu_backward(d: torch.Tensor, pre_relu: torch.Tensor) -> torch.Tensor:
    """ReLU's backward: ``d`` where ``pre_relu > 0``, else 0."""
    fn = THRESHOLD_BACKWARD
    if fn is not None:
        return fn(d, pre_relu, 0)
    return torch.where(pre_relu > 0, d, _ZERO.to(d.device, d.dtype))


class FusedUpdate:
    """One Adam or SGD update of groups of tensors, given their gradients.

    ``groups``: dicts with ``params`` and ``grads`` (lists of tensors, updated and read
    in place) and the group's ``lr``, ``weight_decay``, ``betas``, ``eps`` and
    ``momentum``. :meth:`step` takes each group's learning rate for this step and the
    step's count from :meth:`counts`. The private kernels' path keeps its own moment
    tensors and passes step counts made once per epoch; the fallback is a
    ``torch.optim`` optimizer over the same tensors.
    """

    def __init__(self, groups: Sequence[dict], optimizer: str, device: torch.device):
        self.adam = optimizer == "adam"
        self.groups = list(groups)
        self.device = device
        self.n_steps = 0
        kernel = FUSED_ADAM if self.adam else FUSED_SGD
        self.kernel = kernel
        self._optimizer = None
        if kernel is None:
            self._optimizer = self._public_optimizer()
            return
        for group in self.groups:  # moments: the caller's tensors, or new ones
            n_state = 2 if self.adam else (1 if group["momentum"] else 0)
            if len(group.get("state") or []) < n_state:
                group["state"] = [
                    [torch.zeros_like(p) for p in group["params"]] for _ in range(n_state)
                ]

    def _public_optimizer(self) -> torch.optim.Optimizer:
        param_groups = []
        for group in self.groups:
            for p, g in zip(group["params"], group["grads"]):
                p.grad = g  # the gradient tensors are written in place every step
            settings = dict(lr=group["lr"], weight_decay=group["weight_decay"])
            if self.adam:
                settings.update(betas=group["betas"], eps=group["eps"])
            else:
                settings.update(momentum=group["momentum"])
            param_groups.append({"params": group["params"], **settings})
        cls = torch.optim.Adam if self.adam else torch.optim.SGD
        for flavour in ({"fused": True}, {"foreach": True}, {"foreach": False}):
            try:
                optimizer = cls(param_groups, **flavour)
                logger.debug("stack optimizer: public torch.optim.%s(%s)", cls.__name__, flavour)
                return optimizer
            except (RuntimeError, TypeError, ValueError):
                continue
        raise RuntimeError(f"no usable torch.optim.{cls.__name__} here")  # not reached in practice

    def counts(self, steps: int) -> list:
        """The step counters of the next ``steps`` steps, made in one op, not one per step."""
        if not self.adam or self._optimizer is not None:
            return [None] * steps
        counts = torch.arange(
            self.n_steps + 1, self.n_steps + steps + 1, dtype=torch.float32, device=self.device
        )
        return list(counts.unbind())

    def step(self, lrs_now: Sequence[float], count) -> None:
        if self._optimizer is not None:
            for group, lr in zip(self._optimizer.param_groups, lrs_now):
                group["lr"] = lr
            self._optimizer.step()
            self.n_steps += 1
            return
        for group, lr in zip(self.groups, lrs_now):
            params = group["params"]
            if self.adam:
                m, v = group["state"]
                beta1, beta2 = group["betas"]
                self.kernel(
                    params,
                    group["grads"],
                    m,
                    v,
                    [],
                    [count] * len(params),
                    lr=lr,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    amsgrad=False,
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )
            else:
                self.kernel(
                    params,
                    group["grads"],
                    group["state"][0] if group["momentum"] else [],
                    weight_decay=group["weight_decay"],
                    momentum=group["momentum"],
                    lr=lr,
                    dampening=0.0,
                    nesterov=False,
                    maximize=False,
                    is_first_step=self.n_steps == 0,
                    grad_scale=None,
                    found_inf=None,
                )
        self.n_steps += 1
