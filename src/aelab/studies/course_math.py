"""Seed 004 Problems 3 and 4: backpropagation by hand, and conv/pool output sizes.

Neither study trains anything: quick and full settings compute the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Patch
from torch import nn

from aelab import plots
from aelab._seed import seeded
from aelab.backprop import ACTIVATIONS, LOSSES, backprop_table
from aelab.models import conv_output_size
from aelab.studies._base import StudyResult, study

# --- Problem 3: the 2-2-2 sigmoid network -----------------------------------------------------

# seed 004 Problem 3, as given (course numbering: the input is layer 1, W^2 maps it to layer 2)
COURSE_X = np.array([0.05, 0.1])
COURSE_Y = np.array([0.01, 0.99])
COURSE_WEIGHTS = (np.array([[0.15, 0.25], [0.2, 0.3]]), np.array([[0.4, 0.5], [-0.45, 0.55]]))
COURSE_BIASES = (np.array([0.35, 0.35]), np.array([0.6, 0.6]))
# what the course solution prints (8 decimals): delta3, delta2, and its last step ("delta1"),
# which multiplies (W^2)^T delta^2 by x(1 - x) although the input has no activation
COURSE_DELTAS = {3: np.array([0.74693192, -0.33064048]), 2: np.array([0.10789545, 0.0461271])}
COURSE_LAST_STEP = np.array([0.00120696, 0.00367308])
PRINTED_TOL = 5e-9  # half a unit in the 8th decimal the course prints
MATCH_TOL = 1e-10  # float64 hand vs float64 autograd: agreement means rounding error only
N_RANDOM_NETWORKS = 12  # extra networks (drawn from the seed) checked against autograd the same way
CORRECT = "(W^2)^T delta^2"
COURSE_STEP = "course: (W^2)^T delta^2 * x(1-x)"


def _values(table: pd.DataFrame, quantity: str, layer: int, column: str = "hand") -> np.ndarray:
    return table[(table["quantity"] == quantity) & (table["layer"] == layer)][column].to_numpy()


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.5f}" for v in values) + "]"


def _grad_if_input_were_sigmoid(x, y) -> np.ndarray:
    """autograd's dC/dz^1 if x were a sigmoid output, x = sigma(z^1): what x(1-x) computes."""
    z1 = torch.logit(torch.tensor(x, dtype=torch.float64)).requires_grad_(True)
    a = torch.sigmoid(z1)
    for W, b in zip(COURSE_WEIGHTS, COURSE_BIASES):
        a = torch.sigmoid(torch.tensor(W) @ a + torch.tensor(b))
    torch.nn.functional.binary_cross_entropy(a, torch.tensor(y), reduction="sum").backward()
    return z1.grad.numpy()


def _random_networks(seed: int, n: int) -> pd.DataFrame:
    """One row per random network: widths, activations, loss, largest |hand - autograd|."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        widths = [int(w) for w in rng.integers(1, 6, size=int(rng.integers(2, 6)))]
        activation = ACTIVATIONS[i % len(ACTIVATIONS)]
        loss = LOSSES[(i // len(ACTIVATIONS)) % len(LOSSES)]
        # cross-entropy needs outputs in (0, 1): a sigmoid output layer
        output = "sigmoid" if loss == "cross_entropy" else activation
        acts = [activation] * (len(widths) - 2) + [output]
        weights = [
            rng.normal(0, 1 / np.sqrt(a), size=(b, a)) for a, b in zip(widths[:-1], widths[1:])
        ]
        biases = [rng.normal(0, 0.5, size=b) for b in widths[1:]]
        table = backprop_table(
            weights,
            biases,
            rng.normal(size=widths[0]),
            rng.uniform(0, 1, size=widths[-1]),
            activation=acts,
            loss=loss,
        )
        rows.append(
            {
                "widths": "-".join(map(str, widths)),
                "layers": len(widths) - 1,
                "activations": "/".join(acts),
                "loss": loss,
                "values checked": len(table),
                "max |hand - autograd|": float(table["difference"].abs().max()),
            }
        )
    return pd.DataFrame(rows)


def _course_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The deltas beside the course's print, and the input-gradient candidates beside autograd."""
    deltas = pd.DataFrame(
        [
            {
                "quantity": f"delta^{layer}",
                "index": i + 1,
                "hand": hand,
                "autograd": auto,
                "course printed": printed[i],
                "hand - course": hand - printed[i],
            }
            for layer, printed in COURSE_DELTAS.items()
            for i, (hand, auto) in enumerate(
                zip(_values(table, "delta", layer), _values(table, "delta", layer, "autograd"))
            )
        ]
    )
    grad = _values(table, "dC/dx", 1, "autograd")
    correct = _values(table, "dC/dx", 1)  # (W^2)^T delta^2, by the equations
    candidates = {CORRECT: correct, COURSE_STEP: correct * COURSE_X * (1 - COURSE_X)}
    input_gradient = pd.DataFrame(
        [
            {
                "candidate": name,
                "index": i + 1,
                "hand": v[i],
                "autograd": grad[i],
                "difference": v[i] - grad[i],
                "hand / autograd": v[i] / grad[i],
            }
            for name, v in candidates.items()
            for i in range(len(v))
        ]
    )
    course = candidates[COURSE_STEP]
    pitfalls = pd.DataFrame(
        {
            "pitfall": "x(1-x) applied at the input, which has no activation",
            "index": np.arange(1, len(course) + 1),
            "course": course,
            "course printed": COURSE_LAST_STEP,
            "correct (W^2)^T delta^2": correct,
            "autograd dC/dx": grad,
            "course - autograd": course - grad,
            "autograd dC/dz^1 if x = sigmoid(z^1)": _grad_if_input_were_sigmoid(COURSE_X, COURSE_Y),
        }
    )
    return {
        "deltas_vs_course": deltas,
        "input_gradient": input_gradient,
        "course_pitfalls": pitfalls,
    }


def _backprop_findings(table, tables, random_networks, seed) -> list[str]:
    max_diff = float(table["difference"].abs().max())
    course_gap = float(tables["deltas_vs_course"]["hand - course"].abs().max())
    agree = "agrees with" if max_diff <= MATCH_TOL else "DIFFERS from"
    reproduce = "reproduce" if course_gap <= PRINTED_TOL else "do NOT reproduce"
    findings = [
        f"By the backpropagation equations delta^3 = a^3 - y = {_fmt(_values(table, 'delta', 3))} "
        f"and delta^2 = (W^3)^T delta^3 * a^2(1-a^2) = {_fmt(_values(table, 'delta', 2))}: these "
        f"{reproduce} the course's printed values (largest gap {course_gap:.1e}; it prints 8 "
        f"decimals). Each of the {len(table)} hand-computed values (z, a, C, deltas, weight, bias "
        f"and input gradients) {agree} torch.autograd in float64 (largest |difference| "
        f"{max_diff:.1e}, tolerance {MATCH_TOL:g}).",
    ]
    cand = tables["input_gradient"]
    value = {name: rows["hand"].to_numpy() for name, rows in cand.groupby("candidate")}
    grad = cand[cand["candidate"] == CORRECT]["autograd"].to_numpy()
    gap = {name: float(np.max(np.abs(v - grad))) for name, v in value.items()}
    matches = sorted(name for name, g in gap.items() if g <= MATCH_TOL)
    if matches == [CORRECT]:
        ratio = grad / value[COURSE_STEP]
        findings.append(
            f"The gradient with respect to the input is (W^2)^T delta^2 = {_fmt(value[CORRECT])}: "
            f"autograd's dC/dx is {_fmt(grad)} (largest |difference| {gap[CORRECT]:.1e}). The "
            f"course's last step multiplies by x(1-x) = {_fmt(COURSE_X * (1 - COURSE_X))} and gets "
            f"{_fmt(value[COURSE_STEP])}, {ratio[0]:.1f} and {ratio[1]:.1f} times smaller than "
            f"autograd's (gap up to {gap[COURSE_STEP]:.4f}). Why: the input layer has no "
            "activation, a^1 = x, so z^2 = W^2 x + b^2 and the chain rule ends at "
            "dC/dx = (W^2)^T delta^2; x(1-x) is sigma'(z) of a sigmoid unit, and the input "
            "has none."
        )
    else:
        findings.append(
            f"Against autograd's dC/dx = {_fmt(grad)}, (W^2)^T delta^2 = {_fmt(value[CORRECT])} is "
            f"off by {gap[CORRECT]:.1e} and the course's x(1-x) version by {gap[COURSE_STEP]:.1e}; "
            f"within {MATCH_TOL:g}: {', '.join(matches) or 'neither'}."
        )
    pitfalls = tables["course_pitfalls"]
    as_if = pitfalls["autograd dC/dz^1 if x = sigmoid(z^1)"].to_numpy()
    sigmoid_gap = float(np.max(np.abs(pitfalls["course"].to_numpy() - as_if)))
    if sigmoid_gap <= MATCH_TOL:
        findings.append(
            f"Course pitfall: its numbers {_fmt(pitfalls['course'])} are what autograd gives for "
            f"dC/dz^1 if x were itself the output of a sigmoid, x = sigma(z^1) (|difference| "
            f"{sigmoid_gap:.1e}): the step for a hidden sigmoid layer, applied to an input that "
            "has no sigmoid. This network has no delta^1."
        )
    random_max = float(random_networks["max |hand - autograd|"].max())
    widths = random_networks["widths"].str.split("-").explode().astype(int)
    findings.append(
        f"On {len(random_networks)} random networks (seed {seed}; "
        f"{random_networks['layers'].min()} to {random_networks['layers'].max()} layers of "
        f"{widths.min()} to {widths.max()} units; "
        f"{', '.join(ACTIVATIONS)}; both losses) the largest |hand - autograd| over "
        f"{int(random_networks['values checked'].sum())} values is {random_max:.1e}"
        + (
            ": the equations hold beyond the course's network."
            if random_max <= MATCH_TOL
            else f", above the {MATCH_TOL:g} tolerance: see the random_networks table."
        )
    )
    return findings


def _hand_vs_autograd_figure(table: pd.DataFrame):
    fig, axes = plots.new_figure(width=6.0, height=5.0)
    ax = axes[0, 0]
    # hollow markers, largest first, so that coinciding values (delta^l = dC/db^l) stay visible
    markers = "osD^vPX"
    for i, (quantity, rows) in enumerate(table.groupby("quantity", sort=False)):
        ax.scatter(
            rows["hand"],
            rows["autograd"],
            s=150 - 18 * i,
            marker=markers[i % len(markers)],
            facecolors="none",
            edgecolors=f"C{i}",
            linewidths=1.5,
            label=quantity,
            zorder=3,
        )
    values = table[["hand", "autograd"]].to_numpy()
    lim = np.array([values.min(), values.max()])
    lim += np.array([-0.1, 0.1]) * (lim[1] - lim[0])
    ax.plot(lim, lim, color="0.6", lw=1, zorder=1, label="hand = autograd")
    ax.set_xlabel("hand (backpropagation equations, float64 numpy)")
    ax.set_ylabel("torch.autograd (float64)")
    ax.legend(title="quantity", fontsize=9)
    ax.set_title(
        f"Seed 004 Problem 3: {len(table)} values, hand vs autograd\n"
        f"largest |difference| {table['difference'].abs().max():.1e}"
    )
    return fig


def _input_gradient_figure(input_gradient: pd.DataFrame):
    fig, axes = plots.new_figure(width=6.0, height=4.5)
    ax = axes[0, 0]
    by = {name: rows["hand"].to_numpy() for name, rows in input_gradient.groupby("candidate")}
    grad = input_gradient[input_gradient["candidate"] == CORRECT]["autograd"].to_numpy()
    index = np.arange(len(grad))
    series = [
        ("torch.autograd dC/dx", grad, "0.3"),
        (CORRECT, by[CORRECT], "C0"),
        (COURSE_STEP, by[COURSE_STEP], "C3"),
    ]
    width = 0.26
    for k, (label, values, color) in enumerate(series):
        bars = ax.bar(index + (k - 1) * width, values, width, label=label, color=color)
        ax.bar_label(bars, fmt="%.5f", fontsize=8, padding=2)
    ax.set_xticks(index, [f"x_{i + 1} = {x:g}" for i, x in enumerate(COURSE_X)])
    ax.set_xlabel("input component")
    ax.set_ylabel("gradient of the loss C")
    ax.margins(y=0.15)
    ax.legend(fontsize=9, loc="upper left")
    ratio = grad / by[COURSE_STEP]
    ax.set_title(
        "Seed 004 Problem 3: gradient of C with respect to the input x\n"
        "the course's x(1-x) factor makes it "
        + " and ".join(f"{r:.1f}x" for r in ratio)
        + " too small"
    )
    return fig


@study(
    "backprop-by-hand",
    "Seed 004 Problem 3: deltas of a 2-2-2 sigmoid network by hand vs autograd; the x(1-x) pitfall",
)
def backprop_by_hand(quick: bool = True, seed: int = 0) -> StudyResult:
    """Backpropagate the course's 2-2-2 network by hand, check every value with autograd.

    Reproduces delta^3 and delta^2 of seed 004 Problem 3, computes the gradient with
    respect to the input, ``(W^2)^T delta^2``, and the course's last step, which multiplies
    it by ``x(1 - x)``; autograd decides which one is the gradient. Nothing is trained, so
    ``quick`` changes nothing; ``seed`` draws the extra random networks on which the same
    equations are checked against autograd.

    Examples
    --------
    >>> result = backprop_by_hand()
    >>> sorted(result.figures)
    ['hand_vs_autograd', 'input_gradient']
    >>> round(result.metrics["delta2_1"], 5), round(result.metrics["delta2_2"], 5)
    (0.1079, 0.04613)
    """
    table = backprop_table(
        list(COURSE_WEIGHTS),
        list(COURSE_BIASES),
        COURSE_X,
        COURSE_Y,
        activation="sigmoid",
        loss="cross_entropy",
    )
    tables = _course_tables(table)
    random_networks = _random_networks(seed, N_RANDOM_NETWORKS)
    findings = _backprop_findings(table, tables, random_networks, seed)
    figures = {
        "hand_vs_autograd": _hand_vs_autograd_figure(table),
        "input_gradient": _input_gradient_figure(tables["input_gradient"]),
    }

    cand = tables["input_gradient"]
    metrics = {
        "max_abs_difference": float(table["difference"].abs().max()),
        "max_gap_to_course_print": float(tables["deltas_vs_course"]["hand - course"].abs().max()),
        "random_networks_max_abs_difference": float(random_networks["max |hand - autograd|"].max()),
        **{
            f"input_gradient_max_gap_{key}": float(
                cand[cand["candidate"] == name]["difference"].abs().max()
            )
            for key, name in (("correct", CORRECT), ("course", COURSE_STEP))
        },
        **{
            f"delta{layer}_{i + 1}": float(v)
            for layer in (3, 2)
            for i, v in enumerate(_values(table, "delta", layer))
        },
        **{f"dC_dx_{i + 1}": float(v) for i, v in enumerate(_values(table, "dC/dx", 1))},
        **{
            f"course_x1mx_{i + 1}": float(v)
            for i, v in enumerate(cand[cand["candidate"] == COURSE_STEP]["hand"])
        },
    }
    config = {
        "quick": quick,
        "seed": seed,
        "random_networks": N_RANDOM_NETWORKS,
        "network": "2-2-2, sigmoid, binary cross-entropy (seed 004 Problem 3)",
        "note": "no training: quick and full settings compute the same numbers; the seed "
        "only draws the extra random networks",
    }
    tables.update(backprop=table, random_networks=random_networks)
    return StudyResult("backprop-by-hand", tables, figures, findings, config, metrics)


# --- Problem 4: output sizes of conv and pooling layers ---------------------------------------

COURSE_INPUT_SIZE = 50
# (label, kind, kernel_size, stride, padding, the size the course prints), on a 50x50 input
COURSE_LAYERS = (
    ("Conv2d(1, 1, 4, stride=1, padding=1)", "conv", 4, 1, 1, 49),
    ("Conv2d(1, 1, 8, stride=5)", "conv", 8, 5, 0, 9),
    ("MaxPool2d(10, stride=2, padding=2)", "pool", 10, 2, 2, 23),
    ("MaxPool2d(2, stride=1)", "pool", 2, 1, 0, 49),
)
# kind -> layer; stride=None leaves torch's own default (1 for Conv2d, kernel_size for MaxPool2d)
_LAYERS = {
    "conv": lambda k, s, p: nn.Conv2d(1, 1, k, padding=p, **({} if s is None else {"stride": s})),
    "pool": lambda k, s, p: nn.MaxPool2d(k, padding=p, **({} if s is None else {"stride": s})),
}


def _torch_output_size(kind: str, kernel_size: int, stride, padding: int, n: int) -> int:
    """Side of the feature map torch returns for an ``n`` x ``n`` input."""
    with torch.no_grad():
        out = _LAYERS[kind](kernel_size, stride, padding)(torch.randn(1, 1, n, n))  # (B, C, H, W)
    return int(out.shape[-1])


def _formula(n, k, s, p):
    return f"floor(({n} + 2*{p} - {k})/{s}) + 1"


def _sizes_figure(sizes: pd.DataFrame, n: int):
    fig, axes = plots.new_figure(width=7.5, height=4.5)
    ax = axes[0, 0]
    pos = np.arange(len(sizes))
    colors = {"conv": "C0", "pool": "C1"}
    bars = ax.bar(
        pos, sizes["conv_output_size"], color=[colors[k] for k in sizes["kind"]], width=0.6
    )
    ax.bar_label(bars, fontsize=10, padding=6)
    ax.scatter(
        pos,
        sizes["torch"],
        marker="D",
        s=40,
        color="k",
        zorder=3,
        label=f"torch: output side for a {n}x{n} tensor",
    )
    ax.axhline(n, color="0.5", ls="--", lw=1, label=f"input size {n}")
    handles, _ = ax.get_legend_handles_labels()
    handles = [
        Patch(color=colors["conv"], label="conv_output_size: Conv2d"),
        Patch(color=colors["pool"], label="conv_output_size: MaxPool2d"),
        *handles,
    ]
    ticks = [
        label.replace(", stride", ",\nstride").replace(" (", "\n(") for label in sizes["layer"]
    ]
    ax.set_xticks(pos, ticks, fontsize=8)
    ax.set_xlabel("layer applied to the input")
    ax.set_ylabel("output height = width")
    ax.set_ylim(0, n * 1.25)
    ax.legend(handles=handles, fontsize=8, loc="upper right", ncols=2)
    ax.set_title(f"Seed 004 Problem 4: feature-map size after each layer ({n}x{n} input)")
    return fig


def _conv_findings(sizes: pd.DataFrame, trap: pd.Series, n: int) -> list[str]:
    course = sizes.iloc[: len(COURSE_LAYERS)]
    n_agree = int(course["agree"].sum())
    n_course = int((course["torch"] == course["course"]).sum())
    findings = [
        "Output size per side: out = floor((n + 2p - k)/s) + 1 (n input, k kernel, s stride, "
        "p padding). "
        + "; ".join(
            f"{r['layer']}: {r['formula']} = {r['conv_output_size']}" for _, r in course.iterrows()
        )
        + f". Running a {n}x{n} tensor through each torch layer gives "
        + ", ".join(str(v) for v in course["torch"])
        + f": {n_agree} of {len(course)} agree with aelab.conv_output_size and {n_course} of "
        f"{len(course)} with the sizes the course prints.",
    ]
    unused = course[course["unused rows"] > 0]
    if len(unused):
        findings.append(
            "The floor discards input the kernel never reaches: "
            + "; ".join(
                f"{r['layer']} leaves (n + 2p - k) mod s = {r['unused rows']} row(s) and "
                f"column(s) of the {'padded ' if r['padding'] else ''}input unused at the "
                "bottom and right"
                for _, r in unused.iterrows()
            )
            + "."
        )
    got, s1, s2 = trap["torch MaxPool2d(2)"], trap["formula with s=1"], trap["formula with s=2"]
    which = (
        "stride = kernel_size = 2"
        if got == s2 != s1
        else "stride 1"
        if got == s1
        else "neither stride 1 nor 2"
    )
    findings.append(
        f"Course pitfall: nn.MaxPool2d(2) with no stride, run on {n}x{n}, gives {got}x{got}, "
        f"matching the formula with {which} ({_formula(n, 2, 2, 0)} = {s2}; with s=1 it is {s1}). "
        f"Write stride=1, as the course does, to keep {s1}; aelab.conv_output_size's own "
        "stride default is 1, so pass the stride to it as well."
    )
    return findings


@study(
    "conv-shapes",
    "Seed 004 Problem 4: output sizes of four conv/pool layers on 50x50, "
    "formula vs torch; the stride trap",
)
def conv_shapes(quick: bool = True, seed: int = 0) -> StudyResult:
    """Output sizes of the course's four layers by ``floor((n + 2p - k)/s) + 1`` and by torch.

    Each layer of seed 004 Problem 4 is applied to a 50 x 50 input; the size comes from
    :func:`aelab.conv_output_size` and from running a tensor through the torch layer. The
    trap: ``nn.MaxPool2d(2)`` without a stride uses ``stride = kernel_size``. Nothing is
    trained, so ``quick`` changes nothing; ``seed`` sets the random input and layer weights,
    which do not change sizes.

    Examples
    --------
    >>> result = conv_shapes()
    >>> result.tables["sizes"]["torch"].tolist()
    [49, 9, 23, 49, 25]
    """
    n = COURSE_INPUT_SIZE
    # the trap runs as a fifth layer so that table and figure show it; its stride is torch's
    # default, which the formula column states as kernel_size = 2
    layers = [*COURSE_LAYERS, ("MaxPool2d(2) (stride omitted)", "pool", 2, None, 0, None)]
    rows = []
    with seeded(seed):
        for label, kind, k, s, p, printed in layers:
            s_used = k if s is None else s
            rows.append(
                {
                    "layer": label,
                    "kind": kind,
                    "kernel_size": k,
                    "stride": s_used,
                    "padding": p,
                    "formula": _formula(n, k, s_used, p),
                    "conv_output_size": conv_output_size(n, k, stride=s_used, padding=p),
                    "torch": _torch_output_size(kind, k, s, p, n),
                    "course": printed,
                    "unused rows": (n + 2 * p - k) % s_used,
                }
            )
        stride_1 = _torch_output_size("pool", 2, 1, 0, n)
    sizes = pd.DataFrame(rows)
    sizes["course"] = sizes["course"].astype("Int64")  # the trap row has no course value
    sizes["agree"] = sizes["conv_output_size"] == sizes["torch"]
    trap = pd.DataFrame(
        [
            {
                "pitfall": "MaxPool2d(2) without stride: torch's default stride is kernel_size",
                "torch MaxPool2d(2)": int(sizes["torch"].iloc[-1]),
                "torch MaxPool2d(2, stride=1)": stride_1,
                "formula with s=1": conv_output_size(n, 2, stride=1),
                "formula with s=2": conv_output_size(n, 2, stride=2),
            }
        ]
    )
    findings = _conv_findings(sizes, trap.iloc[0], n)
    course = sizes.iloc[: len(COURSE_LAYERS)]
    metrics = {f"size_{i + 1}": int(v) for i, v in enumerate(course["torch"])}
    metrics.update(
        {
            "maxpool2_default_stride_size": int(sizes["torch"].iloc[-1]),
            "n_agree_with_torch": int(course["agree"].sum()),
            "n_agree_with_course": int((course["torch"] == course["course"]).sum()),
        }
    )
    config = {
        "quick": quick,
        "seed": seed,
        "input_size": n,
        "note": "no training: quick and full settings compute the same numbers; the seed "
        "only sets the random input and layer weights, which do not change sizes",
    }
    return StudyResult(
        "conv-shapes",
        {"sizes": sizes, "course_pitfalls": trap},
        {"sizes": _sizes_figure(sizes, n)},
        findings,
        config,
        metrics,
    )
