"""K conv autoencoders trained as one model of grouped convolutions.

A :class:`~aelab.models.ConvAutoencoder` is strided convolutions, one Linear layer to
the code and one back, and transposed convolutions (with U-Net skips, optionally).
K of them with one architecture are one model in which every convolution has
``groups=K`` (member k's channels are block k), the two Linear layers are batched
products, and a skip concatenates each member's own maps. The input holds each
member's own batch in its channels, so each member keeps its own data order and input
noise, drawn from its own stream in the engine's documented order. One autograd pass
and one fused optimizer step serve every member; losses are per member, so a member's
gradients are its own. Measured through ``train_many`` against the autograd loop one
model after another (digits' ``ConvAutoencoder((1, 8, 8), 2)`` with skips, denoising,
one thread, CPU time): 1.6-1.8x at 5 members and 1.7-1.9x at 10 (batch 64), and in
docs/benchmarks.md 1.8x (1.5x with skips) at 16 (batch 128).

Grouped kernels round differently from single ones, so members match the loop to
float32 rounding, not bit for bit. Members must share every setting (the learning rate
too: it is one optimizer over shared tensors) and train on the reconstruction loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import nn

from aelab._engine.config import SCHEDULES, TrainConfig, epoch_mean, progress_bar
from aelab._engine.loop import make_optimizer
from aelab._engine.objectives import Objective, Reconstruction
from aelab._engine.torch_ops import has_module_hooks
from aelab.models.conv import ConvAutoencoder

__all__ = ["groupable", "train_grouped", "MIN_MEMBERS"]

# below this many members the loop keeps them (1.6-1.8x at 5; a pair was not measured)
MIN_MEMBERS = 3


def groupable(models: Sequence[nn.Module], objective: Objective, cfgs: Sequence[TrainConfig]):
    """Whether these members (one architecture, shared settings) can train grouped."""
    first = models[0]
    return (
        len(models) >= MIN_MEMBERS
        and type(first) is ConvAutoencoder
        and type(objective) is Reconstruction
        and len({c.lr for c in cfgs}) == 1
        and all(p.dtype == torch.float32 for p in first.parameters())
        and all(p.requires_grad for m in models for p in m.parameters())
        and not any(has_module_hooks(m) for m in models)  # the grouped model calls none
    )


def _conv(layers: Sequence[nn.Module], transposed: bool) -> nn.Module:
    """One grouped (transposed) convolution holding each member's layer as a block."""
    a = layers[0]
    K = len(layers)
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    extra = dict(output_padding=a.output_padding) if transposed else {}
    out = cls(
        a.in_channels * K,
        a.out_channels * K,
        a.kernel_size,
        a.stride,
        a.padding,
        groups=K,
        **extra,
    ).to(a.weight.device)
    with torch.no_grad():
        out.weight.copy_(torch.cat([layer.weight for layer in layers]))
        out.bias.copy_(torch.cat([layer.bias for layer in layers]))
    return out


class _Linear(nn.Module):
    """K Linear layers as one batched product: (K, B, in) -> (K, B, out)."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().T for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach()[None] for layer in layers]))

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class _Grouped(nn.Module):
    """K ConvAutoencoders of one architecture as one model; see the module docstring."""

    def __init__(self, models: Sequence[ConvAutoencoder]):
        super().__init__()
        self.K = len(models)
        first = models[0]
        self.image_shape = first.image_shape
        self.skip = first.skip
        self.down = nn.ModuleList(
            _conv([m.encoder.down[i][0] for m in models], False)
            for i in range(len(first.encoder.down))
        )
        self.to_code = _Linear([m.encoder.to_code[1] for m in models])
        self.from_code = _Linear([m.decoder.from_code[0] for m in models])
        self.map_shape = tuple(first.decoder.from_code[2].unflattened_size)
        self.up = nn.ModuleList(
            _conv([_first_conv(m.decoder.up[j]) for m in models], True)
            for j in range(len(first.decoder.up))
        )
        self.relu_after = [isinstance(level, nn.Sequential) for level in first.decoder.up]
        self.models = list(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, C*H*W) member batches -> (K, B, C*H*W) reconstructions."""
        K, B = x.shape[:2]
        C, H, W = self.image_shape
        h = x.reshape(K, B, C, H, W).transpose(0, 1).reshape(B, K * C, H, W)
        skips = []
        for conv in self.down:
            h = torch.relu(conv(h))
            skips.append(h)
        skips.pop()
        z = self.to_code(h.reshape(B, K, -1).transpose(0, 1))  # (K, B, code)
        h = torch.relu(self.from_code(z))  # (K, B, c * h * w)
        c, hh, ww = self.map_shape
        h = h.transpose(0, 1).reshape(B, K * c, hh, ww)
        for j, (conv, relu) in enumerate(zip(self.up, self.relu_after)):
            if self.skip and j > 0:  # each member's [h, skip], channels first
                s = skips[-j]
                h = torch.cat(
                    [h.reshape(B, K, -1, *h.shape[2:]), s.reshape(B, K, -1, *s.shape[2:])], 2
                ).reshape(B, -1, *h.shape[2:])
            h = conv(h)
            if relu:
                h = torch.relu(h)
        return h.reshape(B, K, -1).transpose(0, 1)

    @torch.no_grad()
    def write_back(self, members: Sequence[int]) -> None:
        """Copy members' weights back into their models."""
        for k in members:
            m = self.models[k]
            for i, conv in enumerate(self.down):
                _copy_block(conv, m.encoder.down[i][0], k)
            m.encoder.to_code[1].weight.copy_(self.to_code.weight[k].T)
            m.encoder.to_code[1].bias.copy_(self.to_code.bias[k, 0])
            m.decoder.from_code[0].weight.copy_(self.from_code.weight[k].T)
            m.decoder.from_code[0].bias.copy_(self.from_code.bias[k, 0])
            for j, conv in enumerate(self.up):
                _copy_block(conv, _first_conv(m.decoder.up[j]), k)


def _first_conv(level: nn.Module) -> nn.Module:
    return level[0] if isinstance(level, nn.Sequential) else level


def _copy_block(grouped: nn.Module, layer: nn.Module, k: int) -> None:
    rows = layer.weight.shape[0]
    layer.weight.copy_(grouped.weight[k * rows : (k + 1) * rows])
    n = layer.bias.shape[0]
    layer.bias.copy_(grouped.bias[k * n : (k + 1) * n])


def train_grouped(
    models,
    X: torch.Tensor,
    cfgs: Sequence[TrainConfig],
    objective: Objective,
    *,
    generators: Sequence[torch.Generator],
    test_in=None,
    test_target=None,
    progress=None,
    desc="",
) -> list:
    """Train ``models`` (see :func:`groupable`) in place on ``X`` ((n, d) shared or (K, n, d));
    return each member's record. Per epoch each member draws ``randperm(n)`` (none for a full
    batch) and then its input noise from its generator, as the autograd loop does. A member
    whose loss stops being finite keeps its weights from before the call (its record says
    where); the others are written back."""
    from aelab._engine.functional import MemberResult  # the vmapped stack's record

    K, cfg = len(models), cfgs[0]
    device = X.device
    n, d = X.shape[-2:]
    batch_size = min(cfg.batch_size, n)
    n_used = n - n % batch_size if cfg.drop_last else n
    full_batch = batch_size >= n
    sizes = [len(t) for t in torch.arange(n_used).split(batch_size)]
    net = _Grouped(models)
    optimizer = make_optimizer(list(net.parameters()), cfg)
    scheduler = SCHEDULES[cfg.lr_schedule](optimizer, cfg.epochs) if cfg.lr_schedule else None
    members = torch.arange(K, device=device).view(K, 1)
    perm = torch.arange(n, device=device).repeat(K, 1)
    results = [MemberResult() for _ in range(K)]
    E, S = cfg.epochs, len(sizes)
    step_loss = torch.empty(E, S, K, device=device)
    test_loss = torch.empty(E, K, device=device) if test_in is not None else None
    if test_in is not None:
        test_in = test_in if test_in.ndim == 3 else test_in.expand(K, -1, -1)
        test_target = test_target if test_target.ndim == 3 else test_target.expand(K, -1, -1)
    seconds: list[float] = []
    start = time.perf_counter()
    bar = progress_bar(E, progress, desc or f"{type(models[0]).__name__} x{K} (grouped)")
    net.train()
    for epoch in bar:
        noise = []
        for k, g in enumerate(generators):  # the documented order, member by member
            if not full_batch:
                torch.randperm(n, generator=g, out=perm[k])
            if cfgs[k].noise_sigma:
                noise.append(
                    torch.randn(n_used, d, generator=g, device=device, dtype=X.dtype)
                    * cfgs[k].noise_sigma
                )
            else:
                noise.append(None)
        idx = perm[:, :n_used]
        target = X[idx] if X.ndim == 2 else X[members, idx]  # (K, n_used, d)
        inputs = target
        if any(z is not None for z in noise):  # members without noise add zeros
            zeros = torch.zeros_like(target[0])
            inputs = target + torch.stack([zeros if z is None else z for z in noise])
        for s, (x, t) in enumerate(zip(inputs.split(batch_size, 1), target.split(batch_size, 1))):
            losses = (net(x) - t).square().mean((1, 2))  # (K,): each member's own loss
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            step_loss[epoch, s] = losses.detach()
        if scheduler is not None:
            scheduler.step()
        if test_loss is not None:
            with torch.no_grad():
                test_loss[epoch] = (net(test_in) - test_target).square().mean((1, 2))
        seconds.append(time.perf_counter() - start)
    bar.close()
    steps = step_loss.permute(2, 0, 1).reshape(K, E * S).tolist()
    tests = test_loss.T.tolist() if test_loss is not None else None
    finite = [all(bool(torch.isfinite(p).all()) for p in _member_views(net, k)) for k in range(K)]
    ok = []
    for k, result in enumerate(results):
        epochs = [epoch_mean(steps[k][e * S : (e + 1) * S], sizes, n_used) for e in range(E)]
        bad = next((e for e, v in enumerate(epochs) if not math.isfinite(v)), None)
        if bad is None and E and (not finite[k] or (tests and not math.isfinite(tests[k][-1]))):
            bad = E - 1
        e = E if bad is None else bad
        result.train_loss = epochs[:e]
        result.step_loss = steps[k][: e * S]
        result.test_loss = tests[k][:e] if tests else []
        result.seconds = seconds[:e]
        result.diverged_epoch = bad
        if bad is None:
            ok.append(k)
    net.write_back(ok)
    return results


def _member_views(net: _Grouped, k: int) -> list[torch.Tensor]:
    """Member k's blocks of every grouped parameter."""
    views = []
    for conv in [*net.down, *net.up]:
        rows = conv.weight.shape[0] // net.K
        views += [conv.weight[k * rows : (k + 1) * rows], conv.bias.view(net.K, -1)[k]]
    for lin in (net.to_code, net.from_code):
        views += [lin.weight[k], lin.bias[k]]
    return views
