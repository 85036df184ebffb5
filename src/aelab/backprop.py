"""Backpropagation by hand for a small fully connected network, checked against autograd.

The four equations of backpropagation (Nielsen, *Neural Networks and Deep Learning*, ch. 2,
the notation of the course sheets) computed in float64 numpy, value by value, beside what
``torch.autograd`` gets for the same network:

- forward: ``z^l = W^l a^(l-1) + b^l``, ``a^l = f(z^l)``;
- output error: ``delta^L = dC/da^L * f'(z^L)`` (``a^L - y`` for a sigmoid output with
  cross-entropy);
- backwards: ``delta^l = ((W^(l+1))^T delta^(l+1)) * f'(z^l)``;
- gradients: ``dC/dW^l = delta^l (a^(l-1))^T``, ``dC/db^l = delta^l``, and, because the
  input layer has no activation (``a^1 = x``), ``dC/dx = (W^2)^T delta^2``.

Layers are numbered as in the course: the input is layer 1, so ``weights[0]`` is ``W^2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from aelab._checks import check_choice

__all__ = ["backprop_table", "ACTIVATIONS", "LOSSES"]


def _sigmoid(z):
    # exp(-log(1 + e^-z)): no overflow warning for large |z|, unlike 1 / (1 + exp(-z))
    return np.exp(-np.logaddexp(0.0, -z))


# name -> (f(z), f'(z)) in numpy, and the independent torch function autograd differentiates
_NUMPY_ACTIVATIONS = {
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    # relu'(0) = 0, as torch takes it
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
    "identity": (lambda z: z, np.ones_like),
}
_TORCH_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
}
ACTIVATIONS = tuple(_NUMPY_ACTIVATIONS)

# name -> (C(a, y), dC/da) in numpy, and the torch loss autograd differentiates.
# cross_entropy: C = -sum_j [y_j log a_j + (1 - y_j) log(1 - a_j)], binary cross-entropy
#   summed over the outputs (the course's C for one example, n = 1).
# mse: C = 0.5 * sum_j (a_j - y_j)^2, so that dC/da = a - y without a factor 2.
_NUMPY_LOSSES = {
    "cross_entropy": (
        lambda a, y: float(-np.sum(y * np.log(a) + (1 - y) * np.log(1 - a))),
        lambda a, y: (a - y) / (a * (1 - a)),
    ),
    "mse": (lambda a, y: float(0.5 * np.sum((a - y) ** 2)), lambda a, y: a - y),
}
_TORCH_LOSSES = {
    "cross_entropy": lambda a, y: F.binary_cross_entropy(a, y, reduction="sum"),
    "mse": lambda a, y: 0.5 * F.mse_loss(a, y, reduction="sum"),
}
LOSSES = tuple(_NUMPY_LOSSES)

COLUMNS = ["quantity", "layer", "index", "hand", "autograd", "difference"]


def backprop_table(weights, biases, x, y, activation="sigmoid", loss: str = "cross_entropy"):
    """Every value of one backpropagation pass, by hand and by ``torch.autograd``.

    Computes in float64 numpy, by the backpropagation equations, each layer's ``z^l`` and
    ``a^l``, the loss ``C``, each ``delta^l = dC/dz^l`` (output layer first, then backwards),
    the gradients ``dC/dW^l`` and ``dC/db^l``, and the gradient with respect to the input
    ``dC/dx = (W^2)^T delta^2``; then runs the same network in float64 torch and takes the
    same numbers from autograd, so each hand value sits beside its oracle.

    Parameters
    ----------
    weights : sequence of 2-D array-likes
        ``W^2, ..., W^L`` (course numbering: the input is layer 1). ``W^l`` has shape
        ``(n_l, n_(l-1))`` so that ``z^l = W^l a^(l-1) + b^l``; one matrix is a network with
        no hidden layer.
    biases : sequence of array-likes
        ``b^2, ..., b^L``, each of shape ``(n_l,)`` or the column ``(n_l, 1)``.
    x : array-like
        One input example, shape ``(n_1,)`` or ``(n_1, 1)``.
    y : array-like
        Its target, shape ``(n_L,)`` or ``(n_L, 1)``; in [0, 1] for cross-entropy.
    activation : str or sequence of str
        One of ``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"identity"`` for every layer, or one
        name per layer (e.g. ``["relu", "sigmoid"]``).
    loss : {"cross_entropy", "mse"}
        ``"cross_entropy"``: ``C = -sum_j [y_j log a_j + (1 - y_j) log(1 - a_j)]``, binary
        cross-entropy summed over the outputs as in the course; it needs outputs in (0, 1),
        e.g. a sigmoid output layer, for which ``delta^L = a^L - y``.
        ``"mse"``: ``C = 0.5 * sum_j (a_j - y_j)^2`` (the half makes ``dC/da = a - y``).

    Returns
    -------
    pandas.DataFrame
        One row per scalar, columns ``quantity`` (``"z"``, ``"a"``, ``"C"``, ``"delta"``,
        ``"dC/dW"``, ``"dC/db"``, ``"dC/dx"``), ``layer`` (course numbering; 1 is the input),
        ``index`` (1-based, ``"j"`` or ``"j,k"`` for ``W_jk``; empty for ``C``), ``hand``,
        ``autograd`` and ``difference = hand - autograd``.

    Raises
    ------
    ValueError
        Shapes that do not chain (naming the layer and both shapes), an unknown activation
        or loss (listing the allowed ones), non-finite values, or outputs outside (0, 1)
        for cross-entropy.

    Examples
    --------
    One sigmoid neuron: z^2 = 0.5 - 0.4 + 0.1 = 0.2, a^2 = sigmoid(0.2) = 0.5498, so with
    cross-entropy delta^2 = a^2 - y = -0.4502.

    >>> table = backprop_table([[[0.5, -0.2]]], [[0.1]], x=[1.0, 2.0], y=[1.0])
    >>> table.query("quantity == 'delta'")[["layer", "hand"]].round(4).to_dict("list")
    {'layer': [2], 'hand': [-0.4502]}
    >>> bool(table["difference"].abs().max() < 1e-12)
    True
    """
    import pandas as pd  # imported on use so that `import aelab` stays light

    Ws, bs, x, y = _validated_network(weights, biases, x, y)
    acts = _validated_activations(activation, len(Ws))
    check_choice("loss", loss, LOSSES)
    hand = _by_hand(Ws, bs, x, y, acts, loss)
    auto = _by_autograd(Ws, bs, x, y, acts, loss)
    rows = []
    for quantity, layer, values in hand:
        oracle = auto[(quantity, layer)]
        for idx in np.ndindex(values.shape):
            label = ",".join(str(i + 1) for i in idx)
            rows.append((quantity, layer, label, float(values[idx]), float(oracle[idx])))
    table = pd.DataFrame(rows, columns=COLUMNS[:-1])
    table["difference"] = table["hand"] - table["autograd"]
    return table


# --- the two computations --------------------------------------------------------------------


def _by_hand(Ws, bs, x, y, acts, loss):
    """[(quantity, layer, float64 array)] in table order, by the backpropagation equations."""
    out = []
    zs, activations = [], [x]  # activations[0] = a^1 = x: the input layer has no activation
    for layer, (W, b, act) in enumerate(zip(Ws, bs, acts), start=2):
        f, _ = _NUMPY_ACTIVATIONS[act]
        z = W @ activations[-1] + b
        zs.append(z)
        activations.append(f(z))
        out += [("z", layer, z), ("a", layer, activations[-1])]
    a_L = activations[-1]
    if loss == "cross_entropy":
        _check_cross_entropy_domain(a_L, y, acts[-1])
    cost, dC_da = _NUMPY_LOSSES[loss]
    out.append(("C", len(Ws) + 1, np.array(cost(a_L, y))))

    # delta^L: with a sigmoid output and cross-entropy, sigma'(z) cancels the 1/(a(1-a))
    # of dC/da, leaving a - y (the course's simplification, also exact when a(1-a) underflows)
    if loss == "cross_entropy" and acts[-1] == "sigmoid":
        delta = a_L - y
    else:
        delta = dC_da(a_L, y) * _NUMPY_ACTIVATIONS[acts[-1]][1](zs[-1])
    deltas = [delta]
    for i in range(len(Ws) - 2, -1, -1):  # delta^l from delta^(l+1), output to first hidden
        deltas.insert(0, (Ws[i + 1].T @ deltas[0]) * _NUMPY_ACTIVATIONS[acts[i]][1](zs[i]))
    out += [("delta", i + 2, deltas[i]) for i in reversed(range(len(Ws)))]
    for i, d in enumerate(deltas):
        out += [("dC/dW", i + 2, np.outer(d, activations[i])), ("dC/db", i + 2, d)]
    # z^2 = W^2 x + b^2 and x enters through no activation, so the chain stops at W^2
    out.append(("dC/dx", 1, Ws[0].T @ deltas[0]))
    return out


def _by_autograd(Ws, bs, x, y, acts, loss):
    """{(quantity, layer): float64 array} for the same network, from torch.autograd."""

    def leaf(v):
        return torch.tensor(v, dtype=torch.float64, requires_grad=True)

    W_t, b_t, x_t = [leaf(W) for W in Ws], [leaf(b) for b in bs], leaf(x)
    got, zs = {}, []
    a = x_t
    for layer, (W, b, act) in enumerate(zip(W_t, b_t, acts), start=2):
        z = W @ a + b
        z.retain_grad()  # delta^l is dC/dz^l, a non-leaf gradient
        zs.append(z)
        a = _TORCH_ACTIVATIONS[act](z)
        got[("z", layer)], got[("a", layer)] = z, a
    cost = _TORCH_LOSSES[loss](a, torch.tensor(y, dtype=torch.float64))
    got[("C", len(Ws) + 1)] = cost
    cost.backward()
    for layer, (z, W, b) in enumerate(zip(zs, W_t, b_t), start=2):
        got[("delta", layer)], got[("dC/dW", layer)], got[("dC/db", layer)] = z.grad, W.grad, b.grad
    got[("dC/dx", 1)] = x_t.grad
    return {key: value.detach().numpy() for key, value in got.items()}


# --- input checks ----------------------------------------------------------------------------


def _as_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers, got {value!r} ({err}).") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} contains NaN or infinite values: {arr.tolist()}; pass finite numbers."
        )
    return arr


def _as_vector(name: str, value, what: str) -> np.ndarray:
    """A 1-D float64 vector from ``(n,)`` or a course-style column ``(n, 1)``."""
    arr = _as_array(name, value)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be {what}, shape (n,) or (n, 1), got shape {arr.shape}.")
    return arr


def _validated_network(weights, biases, x, y):
    for name, seq in (("weights", weights), ("biases", biases)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, (Sequence, np.ndarray)):
            raise TypeError(
                f"{name} must be a list with one entry per layer, got {type(seq).__name__}."
            )
    if len(weights) == 0:
        raise ValueError("weights is empty; pass at least one matrix W^2.")
    if len(biases) != len(weights):
        raise ValueError(
            f"biases has {len(biases)} entries but weights has {len(weights)}; "
            "pass one bias vector per weight matrix."
        )
    x = _as_vector("x", x, "one input example")
    y = _as_vector("y", y, "one target vector")
    Ws, bs = [], []
    fan_in, source = x.shape[0], f"x has shape {x.shape}"
    for i, (W, b) in enumerate(zip(weights, biases)):
        layer = i + 2
        W = _as_array(f"weights[{i}] (W^{layer})", W)
        if W.ndim != 2:
            hint = " If weights is a single matrix, wrap it in a list: [W]." if W.ndim == 1 else ""
            raise ValueError(
                f"layer {layer}: weights[{i}] (W^{layer}) must be a 2-D matrix, "
                f"got shape {W.shape}.{hint}"
            )
        if W.shape[1] != fan_in:
            raise ValueError(
                f"layer {layer}: weights[{i}] (W^{layer}) has shape {W.shape} but "
                f"{source}; W^{layer} needs {fan_in} columns."
            )
        b = _as_vector(f"biases[{i}] (b^{layer})", b, f"a vector of {W.shape[0]}")
        if b.shape[0] != W.shape[0]:
            raise ValueError(
                f"layer {layer}: biases[{i}] (b^{layer}) has shape {b.shape} but "
                f"weights[{i}] (W^{layer}) has shape {W.shape}; b^{layer} needs "
                f"{W.shape[0]} entries."
            )
        Ws.append(W)
        bs.append(b)
        fan_in, source = W.shape[0], f"W^{layer} (weights[{i}]) has shape {W.shape}"
    if y.shape[0] != fan_in:
        raise ValueError(
            f"output layer {len(Ws) + 1}: y has shape {y.shape} but {source}; "
            f"y needs {fan_in} entries."
        )
    return Ws, bs, x, y


def _validated_activations(activation, n_layers: int) -> list[str]:
    if isinstance(activation, str):
        return [check_choice("activation", activation, ACTIVATIONS)] * n_layers
    if not isinstance(activation, Sequence):
        raise TypeError(f"activation must be a name or a list of names, got {activation!r}.")
    if len(activation) != n_layers:
        raise ValueError(
            f"activation has {len(activation)} names but the network has {n_layers} "
            "layers; pass one name, or one per weight matrix."
        )
    return [check_choice(f"activation[{i}]", a, ACTIVATIONS) for i, a in enumerate(activation)]


def _check_cross_entropy_domain(a_L, y, output_activation: str) -> None:
    if np.any((y < 0) | (y > 1)):
        raise ValueError(
            f"loss='cross_entropy' needs targets y in [0, 1], got y = {y.tolist()}; "
            "use loss='mse' for other targets."
        )
    if np.any((a_L <= 0) | (a_L >= 1)):
        raise ValueError(
            f"loss='cross_entropy' needs outputs a^L strictly inside (0, 1), but the "
            f"'{output_activation}' output layer gave {a_L.tolist()}; use a 'sigmoid' "
            "output layer or loss='mse'."
        )
