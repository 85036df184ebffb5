"""The hand-written stack: K models of one Linear/ReLU/residual plan trained at once.

The models of the studies are tiny, so a training step costs framework
overhead (tens of microseconds per op), not arithmetic. This module removes
that overhead twice over:

* **Stacking.** ``K`` models of one architecture become one stack: layer ``l``
  of every member lives in one tensor of shape ``(K, in + 1, out)`` (or its
  transpose) holding weight and bias, so activations carry a column of ones
  and one batched matmul computes weight and bias gradients together. A step
  runs each op once for all ``K`` members, and one fused Adam (or SGD) call
  updates every member. Each member keeps its own data order, input noise,
  optimizer settings and state, and every layout and kernel choice depends on
  the shapes only, never on ``K``: at a fixed torch thread count a member's
  weights and History are bit for bit those it gets alone, whatever else shares
  its stack.
* **A hand-written step.** Forward and backward of Linear/ReLU chains (with
  optional residual blocks) are written out as batched matmuls, with no
  autograd graph, no ``Optimizer.step`` bookkeeping and no host sync inside
  an epoch; tiny steps run on one thread, since a second one mostly
  spin-waits. A lone model (``train_autoencoder``) is a stack with ``K = 1``.

It trains the reconstruction objective, and the MMD objective (whose gradient w.r.t.
the codes is written out too, and joins the backward pass at the encoder's last
layer). Which models can be stacked is
decided by :data:`EMITTERS`, a dict from module type to a function that appends
the module's ops to a plan; registering an emitter there is how a new model
family (built from the same ops) joins.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aelab._engine.config import (
    History,
    LrSchedule,
    TrainConfig,
    TrainingDiverged,
    diverged_message,
    progress_bar,
)
from aelab._engine.objectives import pieces
from aelab._engine.torch_ops import (
    FusedUpdate,
    has_module_hooks,
    has_tensor_hooks,
    relu_backward,
)
from aelab.losses import squared_distances
from aelab.models._base import AutoencoderBase
from aelab.models.resnet import ResidualBlock
from aelab.models.vae import VAE

__all__ = [
    "EMITTERS",
    "MATMULS",
    "Stack",
    "StackMMD",
    "StackVAE",
    "stack_plan",
    "signature",
    "train_stack",
    "chunks",
    "optimizer_key",
    "STACK_BYTES",
    "EPOCH_GATHER_BYTES",
    "PARALLEL_MACS",
]

# above this many bytes, a stack gathers each batch on its own instead of a whole epoch at once
EPOCH_GATHER_BYTES = 64 * 2**20
# a stack's weights, gradients and Adam state stay within this many bytes, so that they
# stay in cache between steps: for the digits model (64-128-128-8-128-128-64) a step per
# member was measured ~25% faster with 8-16 members per stack than with 64 or 256
STACK_BYTES = 12 * 2**20


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _Op:
    """One Linear layer of a plan, with what happens around it."""

    layer: nn.Linear
    relu: bool = False  # ReLU applied to this layer's output (after any residual add)
    res_start: bool = False  # this layer's input is saved as a residual skip
    res_end: bool = False  # the saved skip is added to this layer's output
    code: bool = False  # the encoder's last layer: its output is the code


Emitter = Callable[[nn.Module, list], bool]


def _emit(module: nn.Module, ops: list) -> bool:
    emitter = EMITTERS.get(type(module))  # (stack_plan has refused models with hooks)
    return emitter is not None and emitter(module, ops)


def _emit_linear(layer: nn.Linear, ops: list) -> bool:
    if layer.bias is None or layer.weight.requires_grad != layer.bias.requires_grad:
        return False
    ops.append(_Op(layer))
    return True


def _emit_relu(module: nn.ReLU, ops: list) -> bool:
    if not ops or ops[-1].relu:
        return False
    ops[-1] = replace(ops[-1], relu=True)
    return True


def _emit_sequential(seq: nn.Sequential, ops: list) -> bool:
    return all(_emit(m, ops) for m in seq)


def _emit_residual(block: ResidualBlock, ops: list) -> bool:
    start = len(ops)
    if not _emit(block.f, ops) or len(ops) == start:
        return False
    inner = ops[start:]
    if any(op.res_start or op.res_end for op in inner) or inner[-1].relu:
        return False  # nested blocks are not supported; f must end in a Linear layer
    if inner[0].layer.in_features != inner[-1].layer.out_features:
        return False
    ops[start] = replace(ops[start], res_start=True)
    ops[-1] = replace(ops[-1], res_end=True)
    return True


EMITTERS: dict[type, Emitter] = {
    nn.Sequential: _emit_sequential,
    nn.Linear: _emit_linear,
    nn.ReLU: _emit_relu,
    ResidualBlock: _emit_residual,
}
"""Module types the stacked engine can train, each with a function that appends its ops.

Types are matched exactly (a subclass may change ``forward``). An emitter
returns False when the module cannot be expressed as Linear layers with
ReLUs and residual skips; the model then trains the ordinary way.
"""


def stack_plan(model: nn.Module) -> tuple[_Op, ...] | None:
    """The model as a chain of stackable ops, or None when it cannot be stacked.

    Stackable: an :class:`~aelab.models.AutoencoderBase` that keeps the base
    ``encode``/``decode``/``forward`` (or an :class:`~aelab.models.VAE`, whose encoder
    ends in the ``(mu, logvar)`` head: twice the decoder's input width) and whose
    encoder and decoder are built from
    the module types in :data:`EMITTERS` (the MLP, linear and ResNet autoencoders),
    with float32 parameters on one device and no hooks.

    >>> from aelab import Autoencoder
    >>> len(stack_plan(Autoencoder.from_widths([20, 10], 1, 2)))  # 2-20-10-1-10-20-2
    6
    """
    if not isinstance(model, AutoencoderBase):
        return None
    cls = type(model)
    vae = cls is VAE
    if not vae and (cls.forward, cls.encode, cls.decode) != (
        AutoencoderBase.forward,
        AutoencoderBase.encode,
        AutoencoderBase.decode,
    ):
        return None
    if has_module_hooks(model) or has_tensor_hooks(model):
        return None  # the stack calls no module and runs no autograd
    ops: list[_Op] = []
    encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
    if not isinstance(encoder, nn.Module) or not isinstance(decoder, nn.Module):
        return None
    if not _emit(encoder, ops) or not ops:
        return None
    ops[-1] = replace(ops[-1], code=True)
    if not _emit(decoder, ops) or ops[-1].code or ops[-1].relu:
        return None
    params = list(model.parameters())
    if len(params) != 2 * len(ops) or len({(p.device, p.dtype) for p in params}) != 1:
        return None  # parameters outside the chain, or mixed devices/dtypes
    if params[0].dtype != torch.float32:
        return None
    for a, b in zip(ops[:-1], ops[1:]):
        head = vae and a.code  # (mu, logvar) -> a draw of z
        if a.layer.out_features != (2 if head else 1) * b.layer.in_features:
            return None
        if head and (a.relu or a.res_end or b.res_start):
            return None
    return tuple(ops)


def signature(plan: Sequence[_Op]) -> tuple:
    """What must agree for two models to share a stack."""
    return tuple(
        (
            op.layer.in_features,
            op.layer.out_features,
            op.relu,
            op.res_start,
            op.res_end,
            op.code,
            op.layer.weight.requires_grad,
        )
        for op in plan
    )


def optimizer_key(cfg: TrainConfig) -> tuple:
    """The optimizer settings a member may hold apart from its stack: one parameter group
    (one kernel call, one learning-rate schedule) per distinct key."""
    return (cfg.lr, cfg.lr_schedule or "", cfg.weight_decay, cfg.momentum, cfg.betas, cfg.eps)


# --------------------------------------------------------------------------- the stack


# Why a member's numbers cannot depend on its stack. A member must train bit for bit as it
# would alone, whatever K and whoever shares its stack; three things in torch's CPU kernels
# would otherwise make that fail, and the layout below is built around them.
#
# * MKL's matrix kernels round differently depending on where a matrix starts in memory:
#   moving an operand 1-3 floats off a 64-byte boundary changed the product's bits for 30%
#   of the shapes and layouts tried, moving it by 4, 8 or 12 floats never did (measured with
#   MKL 2024.2 on its AVX, AVX2 and AVX-512 code paths). So every member's
#   slice of every operand of a product that goes to MKL starts on a 16-byte boundary, as a
#   lone model's does: member strides are multiples of _ALIGN floats, and a batch gets a few
#   zero rows when its size would break that (see Stack.padded_rows).
# * torch's fused Adam and SGD kernels update a tensor in vectors of up to 16 floats and its
#   last numel % 16 elements one by one, and the two paths round differently (measured: ~11%
#   of Adam's second moments). So each member's block of each layer holds a multiple of _VEC
#   floats (weight, bias, then zero padding): every element takes the vector path, however the
#   members are grouped into optimizer calls.
# * Different kernels for one product round differently, so which kernel multiplies which
#   shapes must not depend on K, except between kernels that give the same bits (_matmul_kind).
#
# Reductions are per member over that member's own contiguous rows (vector_norm over a
# member's last two dims runs the same loop for every output), and losses are averaged over
# an epoch by explicit sums in step order, not by a reduction whose layout depends on K.
_ALIGN = 4  # floats: 16 bytes
_VEC = 16  # floats: the widest vector torch's fused optimizer kernels use (AVX-512)

# torch hands a batched product of fewer than 400 multiply-adds per matrix to a plain loop
# (one per member, 0.2-0.6 us each here; MKL takes larger ones). With 256 members a
# contraction over 1 or 2 ran 1.6-3.7x faster as broadcast multiplies and adds in the loop's
# own order, which give the loop's very bits (_outer), and a product with a larger output
# 1.5x faster as one broadcast product summed in that order (_prodsum).
_LOOP_MACS = 400


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _goes_to_mkl(rows: int, inner: int, cols: int) -> bool:
    """Whether torch.bmm hands these products to MKL (else to its plain loop)."""
    return rows * inner * cols >= _LOOP_MACS


def _matmul_kind(K: int, rows: int, inner: int, cols: int, threads: int = 1) -> str:
    """How to multiply K (rows x inner) by (inner x cols) matrices on ``threads`` threads.

    The choice may depend on K only between kernels that give the same bits: "outer" and
    "prodsum" do the plain loop's arithmetic in its order, and "pair" runs a lone member
    through MKL's batched kernel as a stack of two, as every larger stack runs: MKL's
    single-matrix kernel rounds differently for matrix-vector shapes, and on more than one
    thread for many shapes, while its batched kernel gave a member the same bits at every
    position tried in stacks of 2, 5 and 70 (measured).
    """
    mkl = _goes_to_mkl(rows, inner, cols)
    if not mkl and inner <= 2 and K >= 64:  # measured: below 64 members the loop wins
        return "outer"
    if not mkl and inner > 2 and rows * cols >= 32 and K >= 128:  # and here below 128
        return "prodsum"
    if mkl and K == 1 and (rows == 1 or cols == 1 or threads > 1):
        return "pair"
    return "bmm"


def _outer(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A @ B with the bits of torch's plain bmm loop, which sums ``0 + a_0 b_0 + a_1 b_1 ...``
    in order: each product rounded on its own (addcmul would fuse it), then the sum."""
    a_cols, b_rows = A.split(1, 2), B.split(1, 1)
    result = torch.mul(a_cols[0], b_rows[0], out=out)
    for a, b in zip(a_cols[1:], b_rows[1:]):
        result.add_(a * b)
    return result.add_(_ZERO)  # the loop's leading 0 + turns a -0.0 into +0.0


def _prodsum(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A @ B with the plain loop's bits: all products in one broadcast op (K, rows, inner,
    cols), then summed over inner in order."""
    products = (A.unsqueeze(3) * B.unsqueeze(1)).unbind(2)
    result = torch.add(products[0], products[1], out=out)
    for p in products[2:]:
        result.add_(p)
    return result.add_(_ZERO)


_ZERO = torch.tensor(0.0)


def _pair(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A @ B for a stack of one, computed as a stack of two copies of it (see _matmul_kind)."""
    result = torch.bmm(A.expand(2, -1, -1), B.expand(2, -1, -1))[:1]
    return result if out is None else out.copy_(result)


MATMULS = {"bmm": torch.bmm, "outer": _outer, "prodsum": _prodsum, "pair": _pair}


def _aligned_zeros(K: int, rows: int, cols: int, device) -> torch.Tensor:
    """A zero (K, rows, cols) tensor whose members start on 16-byte boundaries."""
    stride = _round_up(rows * cols, _ALIGN)
    return torch.zeros(K * stride, device=device).as_strided((K, rows, cols), (stride, cols, 1))


class _Layer(NamedTuple):
    """What one layer's forward and backward need for one batch size, looked up once."""

    matmul: Callable  # forward product: a (K, B, in + 1) @ weight -> (K, B, out)
    weight: torch.Tensor  # (K, in + 1, out), possibly a transposed view
    out: torch.Tensor | None  # (K, B, out) view of the next layer's input buffer; None: last
    buf_in: torch.Tensor | None  # (K, B, out + 1) the same buffer's next-layer input view;
    # the buffer is (K, B, width of the next layer): outputs, a column of ones, zeros
    relu: bool
    res_start: bool
    res_end: bool
    grad_matmul: Callable | None  # None: frozen layer
    grad: torch.Tensor  # where the weight gradient goes: all of G[l], or its real part
    grad_padded: bool  # the gradient product runs over the padded width (it goes to MKL)
    grad_in: torch.Tensor | None  # this layer's input as that product takes it (layer 0: None)
    by_row: bool
    input_matmul: Callable | None  # None: no gradient w.r.t. this layer's input is needed
    input_weight: torch.Tensor  # (K, out, in)
    head: bool  # a VAE's (mu, logvar) layer: its output is not the next layer's input


class _Batch(NamedTuple):
    """The per-layer buffers for one batch size, and the rows they hold."""

    rows: int  # samples in the batch
    padded: int  # rows computed: the samples, then zero rows (see Stack.padded_rows)
    layers: list[_Layer]
    x: torch.Tensor  # (K, padded, width of layer 0) input buffer for callers with plain inputs


class Stack:
    """K models with one plan, as stacked tensors, with a hand-written step.

    Layer l's weight and bias are one tensor ``P[l]`` per member, the bias as an
    extra input row (or column), so that inputs ``x_aug`` ending in a column of
    ones give ``h = x_aug @ [W | b].T``: one matmul for weight and bias in the
    forward pass and one for both gradients. ``P[l]`` is stored as
    ``(K, width, out)`` or as ``(K, out, width)``, whichever puts the longer side
    last in the weight-gradient product (MKL's tiny-matrix kernels run up to 2x
    faster with a long last side). ``width`` is ``in + 1`` padded with zero rows so
    that a member's block is a multiple of 16 floats, and a layer's input buffer has
    that width too: inputs, a column of ones, zeros. All ``P[l]`` are views into one
    flat buffer, as are their gradients ``G[l]``, so one fused optimizer call
    updates everything. Every layout choice depends on the shapes only, never on
    K, so that each member's arithmetic is the same in any stack (see above).
    """

    def __init__(
        self,
        plans: Sequence[Sequence[_Op]],
        cfgs: Sequence[TrainConfig],
        device: torch.device,
        threads: int | None = None,
        vae: bool = False,
    ):
        first = plans[0]
        self.K = K = len(plans)
        # a VAE: the code layer is the (mu, logvar) head, and the decoder takes a draw
        # z = mu + exp(logvar / 2) * eps, with eps (K, rows, code size) set before each forward
        self.vae = vae
        self.eps: torch.Tensor | None = None
        self._head: tuple[torch.Tensor, torch.Tensor] | None = None  # (mu|logvar, std)
        self.device = device
        # the torch thread count its steps will run on (it picks kernels for a lone member)
        self.threads = torch.get_num_threads() if threads is None else threads
        self.relu = [op.relu for op in first]
        self.res_start = [op.res_start for op in first]
        self.res_end = [op.res_end for op in first]
        # the layer whose output is the code (MMD's gradient joins the backward pass there)
        self.code = next((l for l, op in enumerate(first) if op.code), None)
        self.trainable = [op.layer.weight.requires_grad for op in first]
        self.sizes = [(op.layer.in_features, op.layer.out_features) for op in first]
        self.n_layers = len(first)
        # (K, out, width) when the input side is longer: the gradient is then d.T @ a
        self.by_row = [i + 1 > o for i, o in self.sizes]
        self.widths = [self._width(i, o, first=l == 0) for l, (i, o) in enumerate(self.sizes)]
        counts = [K * w * o for w, (_, o) in zip(self.widths, self.sizes)]
        self.param = torch.zeros(sum(counts), device=device)  # padding stays 0
        self.grad = torch.zeros_like(self.param)
        self.P, self.G, self.forward_op, self.backward_op = [], [], [], []
        offset = 0
        for (i, o), w, count, by_row in zip(self.sizes, self.widths, counts, self.by_row):
            shape = (K, o, w) if by_row else (K, w, o)
            P = self.param[offset : offset + count].view(shape)
            self.P.append(P)
            self.G.append(self.grad[offset : offset + count].view(shape))
            # forward: a (K, B, in + 1) @ (K, in + 1, out); backward: d (K, B, out) @ (K, out, in)
            self.forward_op.append(P[:, :, : i + 1].transpose(1, 2) if by_row else P[:, : i + 1])
            self.backward_op.append(P[:, :, :i] if by_row else P[:, :i].transpose(1, 2))
            offset += count
        with torch.no_grad():
            for k, plan in enumerate(plans):
                for l, op in enumerate(plan):
                    W, b = self.weight_and_bias(l, k)
                    W.copy_(op.layer.weight)
                    b.copy_(op.layer.bias)
        trainable = [l for l in range(self.n_layers) if self.trainable[l]]
        self.first_trainable = trainable[0] if trainable else self.n_layers
        self._batches: dict[int, _Batch] = {}  # per batch size
        # per layer, the last forward's output before its ReLU: where the ReLU let through
        self._masks: list[torch.Tensor | None] = [None] * self.n_layers
        self._init_optimizer(cfgs, trainable)

    @staticmethod
    def _width(i: int, o: int, first: bool) -> int:
        """A layer's padded input width: ``in + 1`` or more, so that a member's block of weights
        is a multiple of _VEC floats (and, for layer 0, so that every batch of the epoch tensor
        starts on a 16-byte boundary)."""
        w = i + 1
        while (w * o) % _VEC or (first and w % _ALIGN):
            w += 1
        return w

    def weight_and_bias(
        self, l: int, k: int, grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of member k's layer l (or of its gradient) as nn.Linear holds them:
        (out, in) and (out,)."""
        P = (self.G if grad else self.P)[l][k]
        i = self.sizes[l][0]
        return (P[:, :i], P[:, i]) if self.by_row[l] else (P[:i].T, P[i])

    def finite(self) -> torch.Tensor:
        """(K,) bool: whether all of a member's weights and biases are finite."""
        rows = [
            P[:, :, : i + 1] if by_row else P[:, : i + 1]
            for P, (i, _), by_row in zip(self.P, self.sizes, self.by_row)
        ]
        return torch.stack([r.isfinite().flatten(1).all(1) for r in rows]).all(0)

    # ---- optimizer: the fused kernels torch.optim calls, without its per-step bookkeeping

    def _init_optimizer(self, cfgs: Sequence[TrainConfig], trainable):
        first = cfgs[0]
        self.adam = first.optimizer == "adam"
        n_state = 2 if self.adam else (1 if any(c.momentum for c in cfgs) else 0)
        state = [torch.zeros_like(self.param) for _ in range(n_state)]
        offsets = [sum(P.numel() for P in self.P[:l]) for l in range(self.n_layers)]
        state_views = [
            [buf[offset : offset + P.numel()].view_as(P) for offset, P in zip(offsets, self.P)]
            for buf in state
        ]
        # members with equal optimizer settings are adjacent (dispatch sorts them), so each
        # run of equal settings is one parameter group: one kernel call per distinct setting.
        # Every member's block is a multiple of _VEC floats, so the grouping changes no bits.
        keys = [optimizer_key(c) for c in cfgs]
        groups = []
        start = 0
        for end in range(1, self.K + 1):
            if end < self.K and keys[end] == keys[start]:
                continue
            if start == 0 and end == self.K and len(trainable) == self.n_layers:
                # one tensor for everything: the cheapest kernel call
                params, grads, bufs = [self.param], [self.grad], [[buf] for buf in state]
            else:
                params = [self.P[l][start:end] for l in trainable]
                grads = [self.G[l][start:end] for l in trainable]
                bufs = [[views[l][start:end] for l in trainable] for views in state_views]
            cfg = cfgs[start]
            groups.append(
                dict(
                    params=params,
                    grads=grads,
                    state=bufs,
                    lr=cfg.lr,
                    weight_decay=cfg.weight_decay,
                    momentum=cfg.momentum,
                    betas=cfg.betas,
                    eps=cfg.eps,
                    schedule=LrSchedule(cfg.lr, cfg.lr_schedule, first.epochs),
                )
            )
            start = end
        self.groups = groups
        self.optimizer = FusedUpdate(groups, first.optimizer, self.device)

    def step_counts(self, steps: int) -> list:
        """The optimizer's step counters for the next ``steps`` steps, made in one op."""
        return self.optimizer.counts(steps)

    def update(self, lrs_now: Sequence[float], step_count) -> None:
        self.optimizer.step(lrs_now, step_count)

    # ---- forward and backward

    def padded_rows(self, rows: int) -> int:
        """The rows to compute for a batch of ``rows`` samples: ``rows``, or a few more (zero
        rows, at most 3) where a product that goes to MKL would otherwise put some members'
        outputs or gradients off a 16-byte boundary. Depends on the shapes only."""
        padded = rows
        while not all(
            (padded * o) % _ALIGN == 0 and (padded * i) % _ALIGN == 0
            for i, o in self.sizes
            if _goes_to_mkl(padded, i + 1, o)
        ):
            padded += 1
        return padded

    def batch(self, rows: int) -> _Batch:
        """Per layer, the buffers (``(K, padded, width)``: outputs, a column of ones, zeros) and
        product kinds for batches of ``rows`` samples, made on first use."""
        found = self._batches.get(rows)
        if found is not None:
            return found
        K, B = self.K, self.padded_rows(rows)
        layers = []
        buf = None  # the previous layer's output buffer
        for l, (i, o) in enumerate(self.sizes):
            by_row = self.by_row[l]
            padded = self.grad_padded(l, B)
            grad = (
                self.G[l]
                if padded
                else (self.G[l][:, :, : i + 1] if by_row else self.G[l][:, : i + 1])
            )
            grad_in = None
            if l > 0:
                a = buf if padded else buf[:, :, : i + 1]
                grad_in = a if by_row else a.transpose(1, 2)
            buf = buf_in = None
            if l < self.n_layers - 1:
                nxt = self.sizes[l + 1][0]  # o, or half of it after a VAE's head
                buf = _aligned_zeros(K, B, self.widths[l + 1], self.device)
                buf[:, :, nxt] = 1.0
                buf_in = buf[:, :, : nxt + 1]
            width = self.widths[l] if padded else i + 1
            T = self.threads
            grad_kind = (
                _matmul_kind(K, o, B, width, T) if by_row else _matmul_kind(K, width, B, o, T)
            )
            layers.append(
                _Layer(
                    matmul=MATMULS[_matmul_kind(K, B, i + 1, o, T)],
                    weight=self.forward_op[l],
                    out=None if buf is None else buf[:, :, :nxt],
                    buf_in=buf_in,
                    relu=self.relu[l],
                    res_start=self.res_start[l],
                    res_end=self.res_end[l],
                    grad_matmul=MATMULS[grad_kind] if self.trainable[l] else None,
                    grad=grad,
                    grad_padded=padded,
                    grad_in=grad_in,
                    by_row=by_row,
                    input_matmul=(
                        MATMULS[_matmul_kind(K, B, o, i, T)] if l > self.first_trainable else None
                    ),
                    input_weight=self.backward_op[l],
                    head=self.vae and l == self.code,
                )
            )
        x = _aligned_zeros(K, B, self.widths[0], self.device)
        x[:, :, self.sizes[0][0]] = 1.0
        found = self._batches[rows] = _Batch(rows, B, layers, x)
        return found

    def activations(self, rows: int) -> _Batch:
        """Alias of :meth:`batch`."""
        return self.batch(rows)

    def grad_padded(self, l: int, padded_rows: int) -> bool:
        """Whether layer l's weight-gradient product runs over its padded width: when it goes
        to MKL, which needs the whole contiguous G[l] (aligned members) as its output."""
        i, o = self.sizes[l]
        return _goes_to_mkl(i + 1, padded_rows, o)

    def inputs(self, x: torch.Tensor, sizes: Sequence[int]) -> tuple[list, list]:
        """Layer 0's operands for consecutive batches of padded rows ``sizes`` in ``x`` (K, rows,
        width): the forward inputs (K, B, in + 1) and the weight-gradient operands, as views."""
        i = self.sizes[0][0]
        real = x[:, :, : i + 1]
        forward = real.split(sizes, 1)
        if not self.trainable[0]:
            return forward, [None] * len(sizes)
        splits = {}

        def operands(padded):  # every batch's operand, over the padded width or the real one
            if padded not in splits:
                a = x if padded else real
                splits[padded] = (
                    a.split(sizes, 1) if self.by_row[0] else a.transpose(1, 2).split(sizes, 2)
                )
            return splits[padded]

        return forward, [operands(self.grad_padded(0, size))[s] for s, size in enumerate(sizes)]

    def _padded_input(self, x: torch.Tensor, batch: _Batch) -> torch.Tensor:
        """``x`` as the batch's padded (K, padded, width) input: plain (K, rows, in + 1) inputs
        are copied into the batch's input buffer."""
        if x.shape[1:] == batch.x.shape[1:]:
            return x
        batch.x[:, : x.shape[1], : x.shape[2]] = x
        return batch.x

    def forward(self, x: torch.Tensor, batch: _Batch) -> torch.Tensor:
        """Outputs for inputs ``x``: (K, rows, d) for (K, rows, d + 1) inputs ending in a column
        of ones; (K, padded, d), pad rows included, for inputs already padded to the batch's
        (K, padded, width of layer 0) with zeros."""
        plain = x.shape[1:] != batch.x.shape[1:]
        x = self._padded_input(x, batch)
        y = self._forward(x[:, :, : self.sizes[0][0] + 1], batch.layers)
        return y[:, : batch.rows] if plain else y

    def backward(
        self,
        dy: torch.Tensor,
        x: torch.Tensor,
        xT: torch.Tensor | None,
        batch: _Batch,
        code_hook: Callable | None = None,
    ) -> None:
        """Fill ``G`` with the gradients of sum_k loss_k, given ``dy`` = d(sum loss)/d(output)
        for the batch's rows (K, rows, d) or for all its padded rows (zero beyond ``rows``),
        and the inputs ``x`` as given to :meth:`forward` (``xT`` is unused); ``code_hook`` as
        in :meth:`_backward`."""
        x = self._padded_input(x, batch)
        if dy.shape[1] != batch.padded:
            dy = torch.cat([dy, dy.new_zeros(self.K, batch.padded - dy.shape[1], dy.shape[2])], 1)
        self._backward(dy, self.inputs(x, [batch.padded])[1][0], batch.layers, code_hook)

    def _forward(self, a: torch.Tensor, layers: list[_Layer]) -> torch.Tensor:
        """Outputs (K, B, d) for layer 0's inputs ``a`` (K, B, in + 1), pad rows included."""
        masks = self._masks
        skip = None
        for l, layer in enumerate(layers):
            if layer.res_start:
                skip = a
            h = layer.matmul(a, layer.weight)  # (K, B, out)
            out = layer.out
            if out is None:  # the output layer
                return h.add_(skip[:, :, :-1]) if layer.res_end else h
            if layer.head:  # z = mu + exp(logvar / 2) * eps for the rows eps covers
                c = out.shape[2]
                std = h[:, :, c:].mul(0.5).exp_()
                rows = self.eps.shape[1]
                torch.addcmul(h[:, :rows, :c], std[:, :rows], self.eps, out=out[:, :rows])
                self._head = (h, std)
                a = layer.buf_in
                continue
            if layer.res_end:
                torch.add(h, skip[:, :, :-1], out=out)
                if layer.relu:
                    out.clamp_min_(0.0)
                masks[l] = out
            else:
                if layer.relu:
                    torch.clamp_min(h, 0.0, out=out)
                else:
                    out.copy_(h)
                masks[l] = h  # contiguous: ReLU's backward runs ~4x faster on it than on out
            a = layer.buf_in
        raise AssertionError("unreachable")

    def kl(self, rows: int) -> torch.Tensor:
        """(K,) the last forward's mean KL(q(z | x) || N(0, I)) over its first ``rows`` rows."""
        h, std = self._head
        c = h.shape[2] // 2
        mu, logvar = h[:, :rows, :c], h[:, :rows, c:]
        terms = (1 + logvar - mu.square() - std[:, :rows].square()).sum((1, 2))
        return terms.mul_(-0.5 / rows)

    def through_draw(self, dz: torch.Tensor, rows: int, kl_weight: torch.Tensor) -> torch.Tensor:
        """The gradient w.r.t. the head's (mu, logvar) (K, B, 2 c), zero in pad rows, given
        ``dz`` w.r.t. the last draw z and ``kl_weight`` (K, 1, 1) = beta / rows::

            d/d mu     = dz + beta mu / rows
            d/d logvar = dz eps std / 2 + beta (std^2 - 1) / (2 rows)
        """
        h, std = self._head
        c = dz.shape[2]
        out = torch.zeros_like(h)
        mu, s, g = h[:, :rows, :c], std[:, :rows], dz[:, :rows]
        torch.addcmul(g, mu, kl_weight, out=out[:, :rows, :c])
        lv = out[:, :rows, c:]
        torch.mul(g, self.eps, out=lv)
        lv.mul_(s).add_(s.square().sub_(1).mul_(kl_weight)).mul_(0.5)
        return out

    def codes(self, batch: _Batch) -> torch.Tensor:
        """The codes of the last forward pass over ``batch``: (K, padded, code size), a view."""
        return batch.layers[self.code].out

    def _backward(
        self,
        dy: torch.Tensor,
        grad_in0: torch.Tensor | None,
        layers: list[_Layer],
        code_hook: Callable | None = None,
    ) -> None:
        """Fill ``G`` given ``dy`` = d(sum loss)/d(output) (K, B, d), zero in pad rows, and
        layer 0's weight-gradient operand (from :meth:`inputs`); ``code_hook(d)`` maps the
        gradient w.r.t. the decoder's input (K, B, code size) to the one w.r.t. the code
        layer's output: it adds a loss term on the codes (MMD), or goes back through a
        VAE's draw."""
        masks = self._masks
        d = dy
        skip_grad = None
        for l in range(self.n_layers - 1, self.first_trainable - 1, -1):
            layer = layers[l]
            if layer.res_end:
                skip_grad = d
            if layer.grad_matmul is not None:  # weight and bias gradients at once
                a_in = layer.grad_in if l > 0 else grad_in0
                if layer.by_row:
                    layer.grad_matmul(d.transpose(1, 2), a_in, out=layer.grad)
                else:
                    layer.grad_matmul(a_in, d, out=layer.grad)
            if layer.input_matmul is None:
                break
            d = layer.input_matmul(d, layer.input_weight)  # d loss / d (layer l's input)
            if layer.res_start:
                d = d.add_(skip_grad)
            if code_hook is not None and l - 1 == self.code:
                d = code_hook(d)
            if layers[l - 1].relu:
                d = relu_backward(d, masks[l - 1])

    def write_back(self, plans: Sequence[Sequence[_Op]], members: Sequence[int]) -> None:
        with torch.no_grad():
            for k in members:
                for l, op in enumerate(plans[k]):
                    W, b = self.weight_and_bias(l, k)
                    op.layer.weight.copy_(W)
                    op.layer.bias.copy_(b)


# --------------------------------------------------------------------------- the epoch loop


# below this many multiply-adds per member and step, ops are too small to split across
# threads: a second OpenMP thread mostly spin-waits (measured: 3-10x slower steps on 2 cores).
# Decided per member, never per stack, so that a member runs on as many threads in any stack.
PARALLEL_MACS = 4_000_000


@contextlib.contextmanager
def _threads_for(macs_per_member_step: int):
    """Run tiny steps on one thread, restoring the caller's thread count afterwards."""
    threads = torch.get_num_threads()
    if macs_per_member_step >= PARALLEL_MACS or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _augment(X: torch.Tensor, width: int, rows: int) -> torch.Tensor:
    """``X`` (..., n, d) as (..., rows, width): each row ``[x, 1, 0, ...]``, then zero rows."""
    n, d = X.shape[-2:]
    out = torch.zeros(*X.shape[:-2], rows, width, dtype=X.dtype, device=X.device)
    out[..., :n, :d] = X
    out[..., :n, d] = 1.0
    return out


def _epoch_losses(losses: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """(E, S, K) step losses -> (E, K) float64 epoch means, weighting step s by ``weights[s]``
    and summing in step order: elementwise, so a member's sum is the same in any stack."""
    losses = losses.double()
    total = losses[:, 0] * weights[0]
    for s in range(1, losses.shape[1]):
        total += losses[:, s] * weights[s]
    return total


class StackMMD(NamedTuple):
    """The MMD objective of a stack (:class:`~aelab._engine.objectives.MMDObjective`): the
    kernel and bandwidths its members share, and each member's weight."""

    weights: Sequence[float]
    kernel: str
    bandwidths: Sequence[float]


class StackVAE(NamedTuple):
    """The VAE objective of a stack (:class:`~aelab._engine.objectives.VAEObjective`): the
    likelihood its members share, and each member's beta."""

    betas: Sequence[float]
    likelihood: str  # "gaussian" or "bernoulli"


@functools.lru_cache(maxsize=16)
def _squared_bandwidths(bandwidths: tuple, dtype, device) -> torch.Tensor:
    """(B, 1, 1, 1) squared bandwidths, made once (every step's kernels need them)."""
    return torch.tensor(bandwidths, dtype=dtype, device=device).square().view(-1, 1, 1, 1)


def _kernel_sums(a: torch.Tensor, b: torch.Tensor, mmd: StackMMD, slopes: bool):
    """The kernel summed over the bandwidths between the rows of ``a`` (K, n, c) and ``b``
    (K, m, c): values (K, n, m) and, with ``slopes``, their derivative w.r.t. the squared
    distance. The bandwidths are the leading axis, so that summing over them adds whole
    blocks."""
    h2 = _squared_bandwidths(tuple(mmd.bandwidths), a.dtype, a.device)
    d2 = squared_distances(a, b)  # as aelab.losses.mmd computes them
    if mmd.kernel == "imq":  # h^2 / (h^2 + d2); slope -h^2 / (h^2 + d2)^2 = -k / (h^2 + d2)
        t = d2 + h2
        k = h2 / t
        total = k.sum(0)
        return total, (k.div_(t).sum(0).neg_() if slopes else None)
    scale = -0.5 / h2  # rbf: exp(-d2 / (2 h^2)); slope -k / (2 h^2)
    k = torch.exp(d2 * scale)
    return k.sum(0), (k.mul_(scale).sum(0) if slopes else None)


def _within(k: torch.Tensor) -> torch.Tensor:
    """(K,) the mean of a (K, n, n) kernel sum over its pairs i != j."""
    n = k.shape[1]
    return (k.sum((1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)) / (n * (n - 1))


def _mmd_and_grad(z: torch.Tensor, y: torch.Tensor, mmd: StackMMD, prior_term: torch.Tensor):
    """Per member, the unbiased MMD^2 between codes ``z`` (K, n, c) and prior draws ``y``
    (K, m, c) (:func:`aelab.losses.mmd`), given the prior's own term (K,), and its gradient
    w.r.t. ``z`` (K, n, c).

    With ``kappa`` the kernel sum and ``kappa'`` its slope in the squared distance::

        d MMD^2 / d z_i = 4 / (n (n - 1)) sum_j kappa'(|z_i - z_j|^2) (z_i - z_j)
                        - 4 / (n m) sum_j kappa'(|z_i - y_j|^2) (z_i - y_j)

    and ``sum_j A_ij (z_i - y_j) = z_i sum_j A_ij - (A y)_i``.
    """
    n, m = z.shape[1], y.shape[1]
    k_zz, s_zz = _kernel_sums(z, z, mmd, slopes=True)
    k_zy, s_zy = _kernel_sums(z, y, mmd, slopes=True)
    value = _within(k_zz) + prior_term - 2 * k_zy.mean((1, 2))
    grad = (z * s_zz.sum(2, keepdim=True)).sub_(torch.bmm(s_zz, z)).mul_(4 / (n * (n - 1)))
    pull = (z * s_zy.sum(2, keepdim=True)).sub_(torch.bmm(s_zy, y)).mul_(4 / (n * m))
    return value, grad.sub_(pull)


# the MMD of pieces is measured for this many floats of (bandwidths, members, pieces, rows,
# rows) kernel values at a time
_MMD_FLOATS = 2**16


def _runs(spans) -> list[list[int]]:
    """Consecutive row pieces ``(start, stop)`` of one size, as [first row, size, pieces]."""
    runs: list[list[int]] = []
    for a, b in spans:
        if runs and runs[-1][1] == b - a and runs[-1][0] + runs[-1][1] * runs[-1][2] == a:
            runs[-1][2] += 1
        else:
            runs.append([a, b - a, 1])
    return runs


def _shares(spans, n: int, device) -> torch.Tensor:
    """(pieces, 1) each row piece's share of the ``n`` rows: its weight in the mean."""
    return torch.tensor([(b - a) / n for a, b in spans], device=device).view(-1, 1)


def _piece_mmd(z: torch.Tensor | None, y: torch.Tensor, spans, mmd: StackMMD) -> torch.Tensor:
    """(pieces, K): per row piece ``spans`` of ``y`` (K, n, c), the MMD^2 terms that involve
    ``z`` (K, n, c), or with ``z`` None the prior's own term. Consecutive pieces of one size
    are measured as one batch."""
    K, n, c = y.shape
    out = torch.empty(len(spans), K, dtype=y.dtype, device=y.device)
    piece = 0
    for first, size, count in _runs(spans):
        rows = slice(first, first + size * count)
        per = max(1, _MMD_FLOATS // (count * size * size * len(mmd.bandwidths)))
        for k in range(0, K, per):
            members = slice(k, k + per)
            yp = y[members, rows].reshape(-1, size, c)  # (members x pieces, size, c)
            if z is None:
                value = _within(_kernel_sums(yp, yp, mmd, slopes=False)[0])
            else:
                zp = z[members, rows].reshape(-1, size, c)
                value = _within(_kernel_sums(zp, zp, mmd, slopes=False)[0])
                value -= 2 * _kernel_sums(zp, yp, mmd, slopes=False)[0].mean((1, 2))
            out[piece : piece + count, members] = value.view(-1, count).T
        piece += count
    return out


def train_stack(
    plans,
    X,
    cfgs: Sequence[TrainConfig],
    histories: list[History],
    *,
    generators,
    test_in=None,
    test_target=None,
    progress=None,
    desc="stack",
    on_diverge="raise",
    mmd: StackMMD | None = None,
    vae: StackVAE | None = None,
    test_noise=None,
    final_noise=None,
) -> list[str | None]:
    """Train the members of one stack; append to their Histories; write weights back.

    ``X`` is (n, d), shared by all members, or (K, n, d), one dataset each;
    ``test_in``/``test_target`` likewise (n_test rows), or None. ``cfgs`` are the
    members' settings: epochs, batch size, drop_last and optimizer agree; learning
    rate and its schedule, noise level and the other optimizer settings may differ.
    ``generators`` gives each member's random stream; per epoch a member draws
    ``randperm(n)`` (none for a full batch) and then its input noise, exactly as the
    autograd loop does. Returns, per member, None or the message
    of the epoch where its loss stopped being finite (with ``on_diverge="restore"``;
    with ``"raise"`` that raises :class:`TrainingDiverged` and no model changes), and
    per member its final loss on the whole training set (None without epochs).
    A member's weights and History are the same, bit for bit, in any stack (at a
    fixed torch thread count).

    ``mmd`` adds each member's weighted MMD^2 between its codes and N(0, I) draws to its
    loss (drawn per epoch after the input noise: ``n_used x code size`` numbers);
    ``vae`` trains VAEs (plans with a ``(mu, logvar)`` head) on the negative ELBO, with
    one reparameterised draw per sample from the same ``n_used x code size`` numbers.
    ``test_noise`` (n_test or K, n_test, code size) is then the test set's fixed draw, and
    ``final_noise`` (K, n, code size) the final-loss check's (without it, the final loss is
    left to the caller: None).
    """
    K = len(plans)
    cfg = cfgs[0]
    lrs = [c.lr for c in cfgs]
    sigmas = [c.noise_sigma or 0.0 for c in cfgs]
    device = X.device
    shared = X.ndim == 2
    n, d = X.shape[-2:]
    batch_size = min(cfg.batch_size, n)
    n_used = n - n % batch_size if cfg.drop_last else n
    full_batch = batch_size >= n
    sizes = [len(s) for s in torch.arange(n_used).split(batch_size)]
    macs_per_member_step = batch_size * sum(
        op.layer.in_features * op.layer.out_features for op in plans[0]
    )
    threads = torch.get_num_threads() if macs_per_member_step >= PARALLEL_MACS else 1
    stack = Stack(plans, cfgs, device, threads, vae=vae is not None)
    width = stack.widths[0]
    batches = [stack.batch(size) for size in sizes]
    padded = [b.padded for b in batches]
    starts = [sum(padded[:s]) for s in range(len(sizes))]  # row of each batch in the epoch
    rows = sum(padded)
    pad_rows = rows != n_used
    noisy = any(sigmas)
    sigma = torch.tensor(sigmas, dtype=X.dtype, device=device).view(K, 1, 1) if noisy else None

    # the data with a zero row at index n: the rows that pad a batch gather it
    X_aug = _augment(X, width, n + 1)  # (n + 1, width) or (K, n + 1, width)
    real_rows = None  # where the epoch's n_used samples sit among its padded rows
    if pad_rows:
        real_rows = torch.cat(
            [torch.arange(start, start + size, device=device) for start, size in zip(starts, sizes)]
        )
    order_pad = None
    if pad_rows:  # the indices that pad each batch, inserted after its samples
        order_pad = [
            torch.full((K, p - s), n, dtype=torch.long, device=device)
            for s, p in zip(sizes, padded)
        ]

    def epoch_order(idx):  # (K, n_used) sample indices -> (K, rows), pad rows -> the zero row
        if not pad_rows:
            return idx
        pieces = []
        for first, size, pad in zip(range(0, n_used, batch_size), sizes, order_pad):
            pieces += [idx[:, first : first + size], pad]
        return torch.cat(pieces, 1)

    if full_batch:
        idx = epoch_order(torch.arange(n, device=device).expand(K, n))
        clean = X_aug[idx] if shared else X_aug[torch.arange(K, device=device).view(K, 1), idx]
    epoch_bytes = K * rows * width * X.element_size()
    per_step_gather = not full_batch and not noisy and epoch_bytes > EPOCH_GATHER_BYTES
    perm = torch.empty(K, n, dtype=torch.long, device=device)
    perm_rows = perm.unbind(0)
    noise = torch.empty(K, n_used, d, dtype=X.dtype, device=device) if noisy else None
    noise_rows = noise.unbind(0) if noisy else None
    noise_at = torch.zeros(K, rows, d, dtype=X.dtype, device=device) if noisy and pad_rows else None
    members = torch.arange(K, device=device).view(K, 1)
    E, S = cfg.epochs, len(sizes)
    # the objective's N(0, I) numbers: prior draws (MMD) or the draws' eps (VAE)
    drawn = mmd is not None or vae is not None
    if drawn:
        c = stack.sizes[stack.code + 1][0]
        prior = torch.empty(K, n_used, c, dtype=X.dtype, device=device)
        prior_rows, prior_batches = prior.unbind(0), prior.split(batch_size, 1)
    step_extra = None  # (E, S, K) each step's loss beyond the squared error's norm
    if mmd is not None:
        mmd_weight = torch.tensor(mmd.weights, dtype=X.dtype, device=device)  # (K,)
        grad_weight = mmd_weight.view(K, 1, 1)
        batch_spans = [(s * batch_size, s * batch_size + size) for s, size in enumerate(sizes)]
        step_extra = torch.empty(E, S, K, device=device)
    bernoulli = vae is not None and vae.likelihood == "bernoulli"
    if vae is not None:
        beta = torch.tensor(vae.betas, dtype=X.dtype, device=device)  # (K,)
        kl_weights = [(beta / size).view(K, 1, 1) for size in sizes]
        step_extra = torch.empty(E, S, K, device=device)
    # every step's per-member error norm stays on the device until training ends: the
    # Histories are built once, at the end, not member by member after every epoch
    step_norm = torch.zeros(E, S, K, device=device)
    # the squared error: a mean over elements, or for a Gaussian VAE summed over features
    # (a Bernoulli VAE's cross-entropy goes to step_extra); d(loss)/d(output) = scale * diff
    per_row = 1 if vae is not None else d
    inv_count = torch.tensor(
        [0.0 if bernoulli else 1.0 / (s * per_row) for s in sizes], device=device
    ).view(S, 1)
    weights = [s / n_used for s in sizes]
    # 0-d tensors: an op with a Python float costs ~3x one with a tensor on tiny inputs
    scales = [
        torch.tensor((1.0 if bernoulli else 2.0) / (s * per_row), device=device) for s in sizes
    ]
    test_loss = None
    if test_in is not None:
        n_test = test_in.shape[-2]
        test_batch = stack.batch(n_test)
        test_aug = _augment(test_in, width, test_batch.padded)
        test_x = test_batch.x  # aligned members
        test_x.copy_(test_aug if test_aug.ndim == 3 else test_aug.expand(K, *test_aug.shape))
        test_a = stack.inputs(test_x, [test_batch.padded])[0][0]
        test_target = test_target if test_target.ndim == 3 else test_target.expand(K, -1, -1)
        test_count = n_test * per_row
        test_loss = torch.empty(E, K, device=device)
        if vae is not None:
            test_eps = test_noise if test_noise.ndim == 3 else test_noise.expand(K, -1, -1)
        if mmd is not None:
            test_prior = test_noise if test_noise.ndim == 3 else test_noise.expand(K, -1, -1)
            test_spans = pieces(n_test, True, cfg.batch_size)  # (see objectives.pieces)
            # each piece's weight in the mean, and the prior's own terms: fixed
            test_weights = _shares(test_spans, n_test, device)
            test_prior_term = (_piece_mmd(None, test_prior, test_spans, mmd) * test_weights).sum(0)

    def step_losses(epochs):  # epochs' (..., S, K) losses: squared error (+ the rest)
        mse = step_norm[epochs].square() * inv_count
        return mse if step_extra is None else mse + step_extra[epochs]

    bar = progress_bar(E, progress, desc=desc)
    seconds = []
    start = time.perf_counter()
    with torch.no_grad(), _threads_for(macs_per_member_step):
        for epoch in bar:
            if not full_batch:
                for g, row in zip(generators, perm_rows):
                    torch.randperm(n, generator=g, out=row)
                idx = epoch_order(perm[:, :n_used])
                if not per_step_gather:
                    clean = X_aug[idx] if shared else X_aug[members, idx]  # (K, rows, width)
            inputs = clean if not per_step_gather else None
            if noisy:
                for g, row in zip(generators, noise_rows):
                    torch.randn(n_used, d, generator=g, out=row)
                inputs = clean.clone()
                if pad_rows:  # each sample's noise to its row; pad rows get + 0
                    noise_at[:, real_rows] = noise
                    torch.add(clean[:, :, :d], noise_at * sigma, out=inputs[:, :, :d])
                else:
                    torch.add(clean[:, :n_used, :d], noise * sigma, out=inputs[:, :n_used, :d])
            if drawn:  # the objective's draws, after the input noise
                for g, row in zip(generators, prior_rows):
                    torch.randn(n_used, c, generator=g, out=row)
            if mmd is not None:  # the prior's own MMD^2 terms, for the steps' losses: at once
                prior_terms = _piece_mmd(None, prior, batch_spans, mmd)  # (S, K)
            lrs_now = [group["schedule"].current() for group in stack.groups]
            counts = stack.step_counts(S) if stack.adam else [None] * S
            norm_rows = step_norm[epoch].unbind(0)
            if not per_step_gather:
                forward_in, grad_in = stack.inputs(inputs, padded)
                # contiguous: strided targets slow every step's sub
                targets = clean[:, :, :d].contiguous().split(padded, 1)
            for s, batch in enumerate(batches):
                if per_step_gather:
                    rows_s = idx[:, starts[s] : starts[s] + batch.padded]
                    x = X_aug[rows_s] if shared else X_aug[members, rows_s]
                    (a, *_), (a_grad, *_) = stack.inputs(x, [batch.padded])
                    t = x[:, :, :d]
                else:
                    a, a_grad, t = forward_in[s], grad_in[s], targets[s]
                if vae is not None:
                    stack.eps = prior_batches[s]
                y = stack._forward(a, batch.layers)
                rows_ = batch.rows
                if bernoulli:  # y holds logits: the cross-entropy, and sigmoid(y) - t
                    bce = _cross_entropy(y[:, :rows_], t[:, :rows_])
                    diff = torch.sigmoid(y).sub_(t)
                else:
                    diff = y.sub_(t)
                real = diff
                if batch.padded != rows_:
                    diff[:, rows_:] = 0.0  # pad rows add nothing to any gradient
                    real = diff[:, :rows_]
                if not bernoulli:
                    torch.linalg.vector_norm(real, dim=(1, 2), out=norm_rows[s])
                hook = None
                if mmd is not None:
                    z = stack.codes(batch)[:, :rows_].contiguous()
                    value, code_grad = _mmd_and_grad(z, prior_batches[s], mmd, prior_terms[s])
                    torch.mul(value, mmd_weight, out=step_extra[epoch, s])
                    hook = functools.partial(_add_rows, code_grad.mul_(grad_weight))
                elif vae is not None:
                    extra = stack.kl(rows_).mul_(beta)
                    if bernoulli:
                        extra.add_(bce.div_(rows_))
                    step_extra[epoch, s] = extra
                    hook = functools.partial(
                        stack.through_draw, rows=rows_, kl_weight=kl_weights[s]
                    )
                # d(reconstruction) at the output; d(MMD), or d(KL) and the draw, at the codes
                stack._backward(diff.mul_(scales[s]), a_grad, batch.layers, hook)
                stack.update(lrs_now, counts[s])
            for group in stack.groups:
                group["schedule"].advance()
            if test_loss is not None:
                if vae is not None:
                    stack.eps = test_eps
                y = stack._forward(test_a, test_batch.layers)[:, :n_test]
                if bernoulli:
                    torch.div(_cross_entropy(y, test_target), n_test, out=test_loss[epoch])
                else:
                    torch.div(
                        torch.linalg.vector_norm(y.sub_(test_target), dim=(1, 2)).square_(),
                        test_count,
                        out=test_loss[epoch],
                    )
                if vae is not None:
                    test_loss[epoch].add_(stack.kl(n_test).mul_(beta))
                if mmd is not None:
                    z = stack.codes(test_batch)[:, :n_test]
                    test_mmd = (_piece_mmd(z, test_prior, test_spans, mmd) * test_weights).sum(0)
                    test_mmd += test_prior_term
                    test_loss[epoch].add_(test_mmd.mul_(mmd_weight))
            seconds.append(time.perf_counter() - start)
            if on_diverge == "raise":  # one small host sync per epoch
                finite = step_losses(epoch).isfinite().all(0)
                if not bool(finite.all()):
                    k = int((~finite).nonzero()[0])
                    loss = _epoch_losses(step_losses(slice(epoch, epoch + 1)), weights)[0, k]
                    raise TrainingDiverged(diverged_message(float(loss), epoch, E, lrs[k]))
            if not bar.disable:
                loss = _epoch_losses(step_losses(slice(epoch, epoch + 1)), weights)
                bar.set_postfix(loss=f"{float(loss.mean()):.4g}", refresh=False)
        final_loss = [None] * K
        if E and (final_noise is not None or not drawn):
            final_loss = _final_losses(stack, X_aug, X, batch_size, final_noise, mmd, vae)
    bar.close()

    losses = step_losses(slice(None))  # (E, S, K)
    train_loss = _epoch_losses(losses, weights)  # (E, K)
    step_loss = losses.permute(2, 0, 1).reshape(K, E * S).tolist()
    bad = ~torch.isfinite(train_loss)
    ok_epochs = [E] * K  # per member, the epochs before its loss stopped being finite
    if E and bool(bad.any()):
        ok_epochs = torch.where(bad.any(0), bad.double().argmax(0), E).tolist()
    train_loss_lists = train_loss.T.tolist()
    test_loss_lists = test_loss.T.tolist() if test_loss is not None else None
    # an epoch's training loss is measured before its updates, so a blow-up in the last
    # epoch shows only in the weights (and the test loss): check them once, here
    blown_up = set()
    if E:
        finite = stack.finite()
        if test_loss is not None:
            finite &= torch.isfinite(test_loss[-1])
        blown_up = {k for k in (~finite).nonzero().flatten().tolist() if ok_epochs[k] == E}
        if blown_up and on_diverge == "raise":
            k = min(blown_up)
            raise TrainingDiverged(diverged_message(float("nan"), E - 1, E, lrs[k]))
        for k in blown_up:
            ok_epochs[k] = E - 1
    diverged: list[str | None] = [None] * K
    for k, history in enumerate(histories):
        e = ok_epochs[k]
        if e < E:
            loss = float("nan") if k in blown_up else train_loss_lists[k][e]
            diverged[k] = diverged_message(loss, e, E, lrs[k])
        history.step_loss.extend(step_loss[k][: e * S])
        history.train_loss.extend(train_loss_lists[k][:e])
        history.examples_seen.extend(n_used * (i + 1) for i in range(e))
        if test_loss_lists is not None:
            history.test_loss.extend(test_loss_lists[k][:e])
        history.seconds.extend(seconds[:e])
    stack.write_back(plans, [k for k in range(K) if diverged[k] is None])
    return diverged, final_loss


def _add_rows(grad: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``d`` with ``grad`` added to its first rows (a loss term's gradient at the codes)."""
    d[:, : grad.shape[1]].add_(grad)
    return d


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(K,) binary cross-entropy from logits, summed over each member's rows and features."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum((1, 2))


def _final_losses(
    stack: Stack,
    X_aug: torch.Tensor,
    X: torch.Tensor,
    batch_size: int,
    noise: torch.Tensor | None = None,
    mmd: StackMMD | None = None,
    vae: StackVAE | None = None,
) -> list[float]:
    """Each member's loss on all its training samples (clean inputs) with its final weights,
    for the divergence rule: stacked forward passes over the data in batches. The MMD and
    VAE objectives take ``noise`` (K, n, code size), their draws for it; MMD is measured in
    the pieces of :func:`~aelab._engine.objectives.pieces`, as the autograd loop does."""
    K = stack.K
    n, d = X.shape[-2:]
    total = torch.zeros(K, dtype=torch.float64, device=X.device)
    codes = torch.empty(K, n, noise.shape[2], device=X.device) if mmd is not None else None
    if vae is not None:
        beta = torch.tensor(vae.betas, dtype=torch.float64, device=X.device)
    for first in range(0, n, batch_size):
        rows = min(batch_size, n - first)
        x = X_aug[..., first : first + rows, : d + 1]
        x = x if x.ndim == 3 else x.expand(K, rows, d + 1)
        target = X[..., first : first + rows, :]
        batch = stack.batch(rows)
        if vae is not None:
            stack.eps = noise[:, first : first + rows]
        y = stack.forward(x, batch)
        if vae is not None and vae.likelihood == "bernoulli":
            total += _cross_entropy(y, target.expand(K, -1, -1)).double()
        else:
            total += y.sub_(target).square().sum((1, 2), dtype=torch.float64)
        if vae is not None:
            total += stack.kl(rows).double() * rows * beta
        if codes is not None:
            codes[:, first : first + rows] = stack.codes(batch)[:, :rows]
    if vae is not None:  # summed over features, averaged over samples
        return (total / n).tolist()
    loss = total / (n * d)
    if mmd is not None:
        spans = pieces(n, True, batch_size)
        share = _shares(spans, n, X.device)
        terms = _piece_mmd(codes, noise, spans, mmd) + _piece_mmd(None, noise, spans, mmd)
        weight = torch.tensor(mmd.weights, dtype=torch.float64, device=X.device)
        loss += (terms * share).sum(0).double() * weight
    return loss.tolist()


# --------------------------------------------------------------------------- grouping


def chunks(members: list[int], n_params: int) -> list[list[int]]:
    """``members`` in near-equal consecutive chunks whose weights, gradients and Adam state
    stay within ``STACK_BYTES``."""
    per_member = 4 * n_params * 4  # float32 weights, gradients and two Adam moments
    n_chunks = -(-len(members) * per_member // STACK_BYTES)  # ceil
    n_chunks = max(1, min(n_chunks, len(members)))
    size = -(-len(members) // n_chunks)
    return [members[i : i + size] for i in range(0, len(members), size)]
