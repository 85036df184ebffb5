"""When does the vmapped stack (aelab._engine.functional) beat training one model after another?

Per model and per optimizer step, side by side in one process, interleaved (each repetition
runs every row once, so load from other work hits all rows alike), 1 torch thread:

* ``loop``: one model at a time, by aelab's autograd loop (``aelab._engine.loop``, what the
  dispatcher falls back to): in-memory tensors, a randperm per epoch, the objective's noise
  drawn per epoch, ``Adam(fused=True)``, one host sync per epoch;
* ``functional K=...``: K models in one ``train_functional`` call (setup included).

Each row trains for as many epochs as make about ``--seconds`` of work (from one calibration
call per row, which also warms it up). The table gives medians over repetitions and the ratio
loop / functional as the geometric mean of the per-repetition ratios with its 95% t-interval.
The result decides ``aelab._engine.functional.functional_beats_loop``.

Usage::

    python benchmarks/functional_paths.py                      # all workloads, ~5 minutes
    python benchmarks/functional_paths.py --workloads conv,conv-skip --ks 1,4,16 --reps 3
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import aelab
from aelab._engine.config import History, member_generator
from aelab._engine.functional import train_functional
from aelab._engine.loop import train_loop
from aelab._engine.objectives import MMDObjective, Objective, Reconstruction, VAEObjective
from aelab.train import TrainConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import paired_ratio  # noqa: E402  (benchmarks/ is not a package)


@dataclass(frozen=True)
class PathWorkload:
    name: str
    description: str
    model: Callable[[], torch.nn.Module]
    objective: Objective
    data: Callable[[], torch.Tensor]
    batch_size: int
    lr: float
    noise_sigma: float | None = None

    def config(self, epochs: int, seed: int = 0) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            noise_sigma=self.noise_sigma,
        )


def _digits() -> torch.Tensor:
    return aelab.data.digits().X  # (1797, 64) in [0, 1]


def _moons() -> torch.Tensor:
    return aelab.data.moons(1200, seed=0).X  # moons-mmd full: 2000 points, 60% for training


WORKLOADS = {
    "vae": PathWorkload(
        "vae",
        "VAE 64-128-128-(2+2)-128-128-64 on digits, Bernoulli, batch 64, Adam 1e-3 "
        "(vae-vs-ae's model)",
        lambda: aelab.VAE(64, 2, hidden_size=128, layers=2),
        VAEObjective(beta=1.0, likelihood="bernoulli"),
        _digits,
        64,
        1e-3,
    ),
    "mmd": PathWorkload(
        "mmd",
        "ResNet AE 2-64-2 (2 blocks of width 64) + MMD (IMQ, weight 1) on 1200 moons, "
        "batch 32, Adam 3e-3 (moons-mmd's default model)",
        lambda: aelab.ResNetAutoencoder(2, 2, hidden_size=64, blocks=2),
        MMDObjective(),
        _moons,
        32,
        3e-3,
    ),
    "mmd-mlp": PathWorkload(
        "mmd-mlp",
        "MLP AE 2-64-64-2-64-64-2 + MMD (IMQ, weight 1) on 1200 moons, batch 32, "
        "Adam 3e-3 (moons-mmd with architecture='mlp')",
        lambda: aelab.Autoencoder(2, 2, hidden_size=64, layers=2),
        MMDObjective(),
        _moons,
        32,
        3e-3,
    ),
    "conv": PathWorkload(
        "conv",
        "ConvAutoencoder((1, 8, 8), 2), channels 16-32, denoising sigma 0.3 on digits, "
        "batch 128, Adam 5e-3 (denoising's model)",
        lambda: aelab.ConvAutoencoder((1, 8, 8), 2),
        Reconstruction(),
        _digits,
        128,
        5e-3,
        0.3,
    ),
    "conv-skip": PathWorkload(
        "conv-skip",
        "the same with skip=True",
        lambda: aelab.ConvAutoencoder((1, 8, 8), 2, skip=True),
        Reconstruction(),
        _digits,
        128,
        5e-3,
        0.3,
    ),
}


def loop_train(
    model: torch.nn.Module, X: torch.Tensor, cfg: TrainConfig, objective: Objective
) -> int:
    """aelab's autograd loop (the dispatcher's fallback) for one model; returns its steps."""
    history = History()
    train_loop(model, X, objective, cfg, history, generator=member_generator(cfg.seed, "cpu"))
    return len(history.step_loss)


def run_row(w: PathWorkload, X: torch.Tensor, K: int | None, epochs: int) -> float:
    """Seconds per model per step: K=None is the loop (one model), else train_functional."""
    if K is None:
        model = w.model()
        start = time.perf_counter()
        steps = loop_train(model, X, w.config(epochs), w.objective)
        return (time.perf_counter() - start) / steps
    models = [w.model() for _ in range(K)]
    cfgs = [w.config(epochs, seed) for seed in range(K)]
    start = time.perf_counter()
    results = train_functional(models, X, cfgs, w.objective, progress=False)
    return (time.perf_counter() - start) / (K * len(results[0].step_loss))


def measure(names: list[str], Ks: list[int], reps: int, seconds: float, log) -> dict:
    """{(workload, K or None): [seconds per model-step, one per repetition]}."""
    data = {name: WORKLOADS[name].data() for name in names}
    rows = [(name, K) for name in names for K in [None, *Ks]]
    epochs = {}
    for name, K in rows:  # calibration, and the warm-up of each row's first-call costs
        w = WORKLOADS[name]
        steps_per_epoch = len(data[name]) // w.batch_size
        per_step = run_row(w, data[name], K, 1)
        epochs[name, K] = max(1, min(200, round(seconds / (per_step * (K or 1) * steps_per_epoch))))
    times = {row: [] for row in rows}
    for rep in range(reps):
        for name, K in rows:
            t = run_row(WORKLOADS[name], data[name], K, epochs[name, K])
            times[name, K].append(t)
            log(
                f"rep {rep + 1}/{reps} {name} {'loop' if K is None else f'K={K}'}: "
                f"{t * 1e3:.3f} ms per model-step ({epochs[name, K]} epochs)"
            )
    return times


def report(times: dict, names: list[str], Ks: list[int], reps: int, minutes: float) -> str:
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()} "
        f"({os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end: "
        f"shared with other work), torch {torch.__version__}, 1 torch thread; medians of "
        f"{reps} interleaved repetitions; {minutes:.1f} minutes.",
        "",
        "| workload | K | loop ms per model-step | functional ms per model-step "
        "| loop / functional [95% CI] |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        loop = times[name, None]
        for K in Ks:
            fun = times[name, K]
            ratio, low, high, _ = paired_ratio(loop, fun)
            ci = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
            lines.append(
                f"| {name} | {K} | {statistics.median(loop) * 1e3:.3g} | "
                f"{statistics.median(fun) * 1e3:.3g} | {ratio:.2f}{ci} |"
            )
    lines += ["", "Workloads:", ""] + [f"- {n}: {WORKLOADS[n].description}" for n in names]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--ks", default="1,16,64")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--seconds", type=float, default=0.6, help="about this much work per row and repetition"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = args.workloads.split(",")
    for name in names:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    Ks = [int(k) for k in args.ks.split(",")]
    start = time.perf_counter()
    times = measure(
        names, Ks, args.reps, args.seconds, lambda msg: print(msg, file=sys.stderr, flush=True)
    )
    print(report(times, names, Ks, args.reps, (time.perf_counter() - start) / 60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
