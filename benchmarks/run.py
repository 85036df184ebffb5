"""How fast aelab trains tiny autoencoders, against the usual ways, in one run.

Rows, on each workload, all under the same torch thread count:

* ``lightning``: a PyTorch Lightning ``Trainer`` (no progress bar, logger or
  checkpoints) over a shuffled ``DataLoader``; skipped when lightning is not
  installed (``pip install lightning`` next to the pinned torch).
* ``plain loop``: the course notebooks' loop: ``DataLoader(shuffle=True,
  drop_last=True)``, ``torch.optim.Adam``, ``loss.item()`` every step.
* ``train_autoencoder``: one model, aelab's trainer.
* ``train_many K=...``: K models of the workload trained together; the time
  reported is per model (the whole run divided by K).
* ``torch.func K=...``: the standard PyTorch way to train K models at once, as a user
  would write it: ``stack_module_state``, ``vmap(grad_and_value(functional_call))``, one
  ``Adam(fused=True)`` over the stacked tensors, each member with its own data order.
* ``train_many K=... (before)``, with ``--baseline REV``: the same, with aelab's
  ``src`` as it was at git revision REV (in a process of its own), timed in the
  same run, interleaved; a section compares the two with confidence intervals.

Workloads: "course" is sheet 6 (100 rectangle points, batch 8, 1000 epochs,
2-20-10-1-10-20-2); "digits" is sklearn's 8x8 digits (1797 x 64, batch 64, 50
epochs, 64-128-128-8-128-128-64). Objectives beyond reconstruction, each with a
plain loop, aelab's one-model function, ``torch.func`` and ``train_many`` rows:
"vae" (vae-vs-ae's VAE on digits), "mmd" (moons-mmd's ResNet autoencoder with
the MMD penalty on 1200 moons), "conv" and "conv-skip" (denoising's conv
autoencoders on digits). Every row is timed ``--reps`` times,
interleaved so that load on a shared machine hits all rows alike; the table
gives medians and ratios to the plain loop. The matmul peak is a 2048x2048
float32 matmul at the same thread count; a K=256 run in a fresh process gives
the peak memory.

Usage::

    python benchmarks/run.py --quick            # smoke run, about a minute; prints the tables
    python benchmarks/run.py --write docs/benchmarks.md   # the full run behind the docs
    python benchmarks/run.py --workloads course --ks 1,64,256 --no-lightning --reps 7 \
        --baseline REV --section invariance --write docs/benchmarks.md   # an engine change
    python benchmarks/run.py --workloads course,vae,mmd --no-lightning --ks 1,64,256 \
        --func-ks 64,256 --epochs-scale 0.1 --reps 2 --section objectives \
        --write docs/benchmarks.md   # the objective workloads and torch.func rows
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import inspect
import io
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

import aelab
from aelab import train_many
from aelab._engine.objectives import MMDObjective, Reconstruction, VAEObjective

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    name: str
    epochs: int
    batch_size: int
    description: str
    lr: float = 1e-3
    noise_sigma: float | None = None  # denoising: inputs corrupted, clean targets
    max_k: int | None = None  # the largest K timed (memory is still probed at the largest --ks)

    def data(self) -> aelab.data.Dataset:
        if self.name == "course":
            return aelab.data.rectangle(100)
        if self.name == "mmd":
            return aelab.data.moons(1200, seed=0)  # moons-mmd full: 60% of 2000 points
        return aelab.data.digits()

    def model(self) -> torch.nn.Module:
        return MODELS[self.name]()

    def objective(self):
        """The loss as an aelab objective (the plain loop and torch.func rows use it)."""
        return OBJECTIVES.get(self.name, Reconstruction())

    def train_kwargs(self) -> dict:
        """The objective's keywords for aelab.train_many and the one-model functions."""
        return {"lr": self.lr, "noise_sigma": self.noise_sigma, **TRAIN_KWARGS.get(self.name, {})}

    def flops_per_model(self, n_samples: int) -> float:
        """Matmul arithmetic of one training run: 2 flops per multiply-add, forward plus
        the two backward products (weights and inputs), so 6 per weight per sample; for the
        objective workloads, torch.utils.flop_counter's count of one step (matmuls and
        convolutions, forward and backward) times the steps."""
        used = n_samples - n_samples % self.batch_size
        if self.name in OBJECTIVES:
            return flops_per_step(self) * (used // self.batch_size) * self.epochs
        weights = sum(
            m.weight.numel() for m in self.model().modules() if isinstance(m, torch.nn.Linear)
        )
        return 6.0 * weights * used * self.epochs


MODELS = {
    "course": lambda: aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2),
    "digits": lambda: aelab.Autoencoder(64, 8, hidden_size=128, layers=2),
    "vae": lambda: aelab.VAE(64, 2, hidden_size=128, layers=2, likelihood="bernoulli"),
    "mmd": lambda: aelab.ResNetAutoencoder(2, 2, hidden_size=64, blocks=2),
    "conv": lambda: aelab.ConvAutoencoder((1, 8, 8), 2),
    "conv-skip": lambda: aelab.ConvAutoencoder((1, 8, 8), 2, skip=True),
}
OBJECTIVES = {
    "vae": VAEObjective(beta=1.0, likelihood="bernoulli"),
    "mmd": MMDObjective(weight=1.0, kernel="imq"),
    "conv": Reconstruction(),
    "conv-skip": Reconstruction(),
}
TRAIN_KWARGS = {
    "vae": {"objective": "vae", "beta": 1.0, "likelihood": "bernoulli"},
    "mmd": {"objective": "mmd", "mmd_weight": 1.0, "kernel": "imq"},
}
ONE_MODEL = {"vae": "train_vae", "mmd": "train_mmd_autoencoder"}  # else train_autoencoder

COURSE = "100 rectangle points, batch 8, 2-20-10-1-10-20-2, Adam lr 1e-3"
DIGITS = "sklearn digits (1797 x 64), batch 64, 64-128-128-8-128-128-64, Adam lr 1e-3"
VAE = (
    "VAE 64-128-128-(2+2)-128-128-64 on digits (1797 x 64), Bernoulli likelihood, beta 1, "
    "batch 64, Adam lr 1e-3 (vae-vs-ae's model)"
)
MMD = (
    "ResNet autoencoder 2-2 (2 blocks of width 64) + MMD to N(0, I) (IMQ, weight 1) on 1200 "
    "moons, batch 32, Adam lr 3e-3 (moons-mmd's model)"
)
CONV = (
    "ConvAutoencoder((1, 8, 8), 2), channels 16-32, denoising at sigma 0.3 on digits, "
    "batch 128, Adam lr 5e-3 (denoising's model)"
)


def workloads(quick: bool, scale: float = 1.0) -> list[Workload]:
    """Every workload; ``scale`` multiplies the epochs (at least 1)."""
    if quick:
        found = [
            Workload("course", 50, 8, COURSE),
            Workload("digits", 3, 64, DIGITS),
            Workload("vae", 1, 64, VAE),
            Workload("mmd", 1, 32, MMD, lr=3e-3),
            Workload("conv", 1, 128, CONV, lr=5e-3, noise_sigma=0.3, max_k=64),
            Workload(
                "conv-skip", 1, 128, CONV + ", with skips", lr=5e-3, noise_sigma=0.3, max_k=64
            ),
        ]
    else:
        found = [
            Workload("course", 1000, 8, COURSE),
            Workload("digits", 50, 64, DIGITS),
            Workload("vae", 10, 64, VAE),
            Workload("mmd", 10, 32, MMD, lr=3e-3),
            Workload("conv", 5, 128, CONV, lr=5e-3, noise_sigma=0.3, max_k=64),
            Workload(
                "conv-skip", 5, 128, CONV + ", with skips", lr=5e-3, noise_sigma=0.3, max_k=64
            ),
        ]
    return [dataclasses.replace(w, epochs=max(1, round(w.epochs * scale))) for w in found]


def flops_per_step(w: Workload) -> float:
    """Flops torch counts for one training step of one model (forward and backward)."""
    model, objective = w.model(), w.objective()
    x = w.data().X[: w.batch_size]
    columns = objective.noise_columns(model)
    noise = torch.randn(len(x), columns) if columns else None
    with FlopCounterMode(display=False) as counter:
        objective.loss(model, x, x, noise).backward()
    return float(counter.get_total_flops())


# ---------------------------------------------------------------- the ways of training
# each returns (wall-clock seconds, CPU seconds of this process) per model


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def per(self, k: int = 1) -> tuple[float, float]:
        return self.wall / k, self.cpu / k


def run_plain_loop(w: Workload, ds) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    model = w.model()
    loader = DataLoader(TensorDataset(ds.X), batch_size=w.batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=w.lr)
    losses = []
    if w.name not in OBJECTIVES:
        with Timer() as timer:
            for _ in range(w.epochs):
                for (x,) in loader:
                    optimizer.zero_grad()
                    loss = F.mse_loss(model(x), x)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
        return timer.per()
    objective = w.objective()
    columns = objective.noise_columns(model)
    with Timer() as timer:
        for _ in range(w.epochs):
            for (x,) in loader:  # the notebooks draw the noise where it is used
                inputs = x + w.noise_sigma * torch.randn_like(x) if w.noise_sigma else x
                eps = torch.randn(len(x), columns) if columns else None
                optimizer.zero_grad()
                loss = objective.loss(model, inputs, x, eps)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    return timer.per()


def lightning_available() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def run_lightning(w: Workload, ds) -> float:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            (x,) = batch
            return F.mse_loss(self.model(x), x)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    loader = DataLoader(TensorDataset(ds.X), batch_size=w.batch_size, shuffle=True, drop_last=True)
    trainer = L.Trainer(
        max_epochs=w.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module = Module(w.model())
    with Timer() as timer:
        trainer.fit(module, loader)
    return timer.per()


def one_model_name(w: Workload) -> str:
    return ONE_MODEL.get(w.name, "train_autoencoder")


def run_train_autoencoder(w: Workload, ds) -> float:
    """aelab's one-model function for the workload's objective (train_vae, ...)."""
    model = w.model()
    kwargs = {k: v for k, v in w.train_kwargs().items() if k != "objective"}
    if w.name not in OBJECTIVES:
        kwargs = {}  # the course and digits rows as they always ran: every default
    with Timer() as timer:
        getattr(aelab, one_model_name(w))(
            model, ds, epochs=w.epochs, batch_size=w.batch_size, progress=False, **kwargs
        )
    return timer.per()


def train_many_takes_objectives() -> bool:
    return "objective" in inspect.signature(train_many).parameters


class _Loss(torch.nn.Module):
    """``forward`` is the objective's loss of ``model``, for functional_call."""

    def __init__(self, model, objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x, target, noise):
        return self.objective.loss(self.model, x, target, noise)


def torch_func_ensemble(models: list[torch.nn.Module], w: Workload, ds, epochs: int) -> None:
    """The standard torch.func ensemble, as a user would write it: stacked weights,
    vmap(grad_and_value(functional_call)), one fused Adam over the stacked tensors; each
    member has its own data order and noise (from torch's global generator)."""
    K = len(models)
    objective = w.objective()
    columns = objective.noise_columns(models[0])
    X = ds.X
    n = len(X)
    n_used = n - n % w.batch_size
    if True:  # (the body as a user would write it, unindented)
        params, buffers = stack_module_state(models)
        params = {k: v.detach() for k, v in params.items()}  # leaves the optimizer updates
        base = _Loss(copy.deepcopy(models[0]).to("meta"), objective)

        def loss(p, b, x, target, noise):
            return functional_call(
                base,
                ({f"model.{k}": v for k, v in p.items()}, {f"model.{k}": v for k, v in b.items()}),
                (x, target, noise),
            )

        step = vmap(grad_and_value(loss), in_dims=(0, 0, 0, 0, 0 if columns else None))
        optimizer = torch.optim.Adam(list(params.values()), lr=w.lr, fused=True)
        losses = []
        for _ in range(epochs):
            order = torch.rand(K, n).argsort(1)[:, :n_used]  # a permutation per member
            target = X[order]  # (K, n_used, d)
            inputs = target + w.noise_sigma * torch.randn_like(target) if w.noise_sigma else target
            noise = (
                torch.randn(K, n_used, columns).split(w.batch_size, 1)
                if columns
                else [None] * (n_used // w.batch_size)
            )
            for x, t, e in zip(inputs.split(w.batch_size, 1), target.split(w.batch_size, 1), noise):
                grads, values = step(params, buffers, x, t, e)
                for name, p in params.items():
                    p.grad = grads[name]
                optimizer.step()
                losses.append(values)
            torch.stack(losses[-(n_used // w.batch_size) :]).tolist()  # one host sync per epoch


def run_torch_func(w: Workload, ds, K: int) -> tuple[float, float]:
    models = [w.model() for _ in range(K)]
    with Timer() as timer:
        torch_func_ensemble(models, w, ds, w.epochs)
    return timer.per(K)


def run_train_many(
    w: Workload, ds, K: int, baseline: Baseline | None = None
) -> tuple[float, float]:
    if baseline is not None:
        return baseline.time_train_many(w, K)
    models = [w.model() for _ in range(K)]
    kwargs = w.train_kwargs() if w.name in OBJECTIVES else {}
    with Timer() as timer:
        histories = train_many(
            models, ds, epochs=w.epochs, batch_size=w.batch_size, progress=False, **kwargs
        )
    PATHS_TAKEN[w.name, K] = histories[0].config.get("path", "?")
    return timer.per(K)


PATHS_TAKEN: dict = {}  # (workload, K) -> the path train_many's dispatcher chose


BEFORE = " (before)"  # suffix of the rows timed with the --baseline engine


class Baseline:
    """aelab's ``src`` as it was at git revision ``rev``, in a process of its own that times
    ``train_many`` on request, so that its rows interleave with today's. (The two versions
    cannot share one process: their modules have the same names.) The process runs this
    script with the old ``src`` first on its path, so REV must have the names this script
    imports (any revision with ``aelab._engine``)."""

    def __init__(self, rev: str, threads: int):
        self.rev = rev
        self.dir = Path(tempfile.mkdtemp(prefix="aelab-baseline-"))
        found = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True)
        if found.returncode:
            shutil.rmtree(self.dir, ignore_errors=True)
            why = found.stderr.decode(errors="replace").strip()
            raise ValueError(f"--baseline {rev!r}: git archive failed: {why}")
        archive = found.stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self.dir, filter="data")
        env = {**os.environ, "PYTHONPATH": str(self.dir / "src")}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--threads", str(threads), "--serve-baseline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        reply = self.process.stdout.readline().strip()
        if reply != "ready":
            raise RuntimeError(f"--baseline {rev}: its aelab did not load ({reply or 'no reply'})")

    def time_train_many(self, w: Workload, K: int) -> tuple[float, float]:
        """Wall and CPU seconds per model of ``train_many`` on ``K`` models of ``w``."""
        self.process.stdin.write(json.dumps([dataclasses.asdict(w), K]) + "\n")
        self.process.stdin.flush()
        wall, cpu = json.loads(self.process.stdout.readline())
        return wall, cpu

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def serve_baseline() -> None:
    """The --baseline process: one JSON request ``[workload fields, K]`` per line in, one
    ``[wall, cpu]`` per line out."""
    print("ready", flush=True)
    data = {}
    for line in sys.stdin:
        fields, K = json.loads(line)
        w = Workload(**fields)
        if w.name not in data:
            data[w.name] = w.data()
        print(json.dumps(run_train_many(w, data[w.name], K)), flush=True)


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


# ---------------------------------------------------------------- peak memory, in a fresh process


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_epochs(w: Workload) -> int:
    """Epochs of a memory probe: 2, or 1 for the objective workloads (the peak comes in the
    first epoch, and a conv epoch at K=256 takes most of a minute here)."""
    return 1 if w.name in OBJECTIVES else 2


def memory_probe(workload: str, K: int, way: str = "train_many") -> None:
    """Child process: resident memory (MiB) with data and K models built, and its peak while
    training them (``way``: "train_many" or "torch.func") for :func:`memory_epochs`.
    (ru_maxrss would not do: it survives exec from the parent.)"""
    w = next(w for w in workloads(quick=False) if w.name == workload)
    ds = w.data()
    models = [w.model() for _ in range(K)]
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    if way == "torch.func":
        torch_func_ensemble(models, w, ds, memory_epochs(w))
    else:
        kwargs = w.train_kwargs() if w.name in OBJECTIVES else {}
        train_many(
            models, ds, epochs=memory_epochs(w), batch_size=w.batch_size, progress=False, **kwargs
        )
    print(json.dumps({"before": before, "after": _status_mib("VmHWM")}))


def peak_memory(workload: str, K: int, way: str = "train_many") -> tuple[float, float]:
    """(RSS once data and K models exist, peak RSS while training them), in MiB."""
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", workload, str(K), way],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return found["before"], found["after"]


# ---------------------------------------------------------------- the run


def measure(
    w: Workload,
    Ks: list[int],
    reps: int,
    with_lightning: bool,
    log,
    baseline=None,
    func_Ks: list[int] = (),
) -> dict:
    """Per row, the wall and CPU seconds per model of each repetition (lists, in rep order)."""
    ds = w.data()
    rows = {}
    with_lightning = with_lightning and w.name not in OBJECTIVES
    with_many = w.name not in OBJECTIVES or train_many_takes_objectives()
    if with_lightning:
        rows["lightning"] = lambda: run_lightning(w, ds)
    rows["plain loop"] = lambda: run_plain_loop(w, ds)
    rows[one_model_name(w)] = lambda: run_train_autoencoder(w, ds)
    for K in Ks:
        if (w.max_k is not None and K > w.max_k) or not with_many:
            continue
        rows[f"train_many K={K}"] = lambda K=K: run_train_many(w, ds, K)
        if baseline is not None:
            rows[f"train_many K={K}{BEFORE}"] = lambda K=K: run_train_many(w, ds, K, baseline)
    for K in func_Ks:
        if w.max_k is None or K <= w.max_k:
            rows[f"torch.func K={K}"] = lambda K=K: run_torch_func(w, ds, K)
    warm = dataclasses.replace(w, epochs=1)  # first calls pay for lazy setup
    if with_lightning:
        run_lightning(warm, ds)
    run_plain_loop(warm, ds)
    run_train_autoencoder(warm, ds)
    if with_many:
        run_train_many(warm, ds, 2)
    if func_Ks:
        run_torch_func(warm, ds, 2)
    if baseline is not None:
        run_train_many(warm, ds, 2, baseline)
    walls = {name: [] for name in rows}
    cpus = {name: [] for name in rows}
    for rep in range(reps):
        for name, fn in rows.items():
            wall, cpu = fn()
            walls[name].append(wall)
            cpus[name].append(cpu)
            log(f"{w.name} rep {rep + 1}/{reps}: {name}: {wall:.3f} s per model ({cpu:.3f} s CPU)")
    return {name: (walls[name], cpus[name]) for name in rows}


def paired_ratio(after: list[float], before: list[float]) -> tuple[float, float, float, float]:
    """Geometric mean of after/before over paired repetitions, its 95% t-interval, and the
    two-sided paired t-test p-value on log times (H0: same time)."""
    logs = np.log(np.asarray(after)) - np.log(np.asarray(before))
    mean = float(logs.mean())
    if len(logs) < 2 or float(logs.std(ddof=1)) == 0.0:
        return math.exp(mean), math.nan, math.nan, math.nan
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=mean, scale=stats.sem(logs))
    p = float(stats.ttest_rel(np.log(after), np.log(before)).pvalue)
    return math.exp(mean), math.exp(low), math.exp(high), p


def verdict(low: float, high: float, limit: float = 1.15) -> str:
    """What the interval says about the cost against ``limit`` (after/before)."""
    if math.isnan(low):
        return "too few repetitions to say"
    if high < limit:
        return f"less than {limit - 1:.0%} slower (the whole interval is below {limit:g}x)"
    if low > limit:
        return f"more than {limit - 1:.0%} slower (the whole interval is above {limit:g}x)"
    return f"the interval straddles {limit:g}x: not resolved at this many repetitions"


def fmt_seconds(s: float) -> str:
    return f"{s:.3g} s" if s >= 0.01 else f"{s * 1000:.3g} ms"


def comparison(raw: dict, Ks: list[int], rev: str, reps: int) -> list[str]:
    """The before/after rows of one workload as a Markdown table with paired statistics."""
    lines = [
        f"Per model, `train_many` now against the engine at `{rev}`, interleaved in the "
        f"same run, {reps} paired repetitions. Ratios are after/before: the geometric mean "
        "over repetitions with its 95% t-interval, and the paired t-test's p-value on log "
        "times.",
        "",
        "| K | wall before | wall after | wall ratio [95% CI] | p | CPU before | CPU after "
        "| CPU ratio [95% CI] | p |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for K in Ks:
        now, then = raw.get(f"train_many K={K}"), raw.get(f"train_many K={K}{BEFORE}")
        if now is None or then is None:
            continue
        cells = []
        for i in (0, 1):  # wall, CPU
            ratio, low, high, p = paired_ratio(now[i], then[i])
            cells += [
                fmt_seconds(statistics.median(then[i])),
                fmt_seconds(statistics.median(now[i])),
                f"{ratio:.3f} [{low:.3f}, {high:.3f}]",
                f"{p:.2g}",
            ]
            if i == 1:
                verdicts.append(
                    f"- K={K}, CPU time: {verdict(low, high)}; the change is "
                    + ("significant" if p < 0.05 else "not significant")
                    + f" at the 5% level (p={p:.2g}, n={reps})."
                )
        lines.append(f"| {K} | " + " | ".join(cells) + " |")
    return lines + [""] + verdicts + [""]


def report(results: dict, args, peak: float, memory: dict, wall: float) -> str:
    lines = []
    raw_results = results
    results = {
        name: {row: (statistics.median(w), statistics.median(c)) for row, (w, c) in rows.items()}
        for name, rows in results.items()
    }
    for w in workloads(args.quick, args.epochs_scale):
        if w.name not in results:
            continue
        med = results[w.name]
        base_wall, base_cpu = med["plain loop"]
        flops = w.flops_per_model(len(w.data()))
        lines += [f"### {w.name}: {w.description}, {w.epochs} epochs", ""]
        if w.name in OBJECTIVES and not train_many_takes_objectives():
            lines += ["No train_many rows: this aelab.train_many has no `objective` keyword.", ""]
        lines += [
            "| way of training | wall seconds per model | speed-up over the plain loop "
            "| CPU seconds per model | speed-up in CPU time | fraction of matmul peak |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, (t, cpu) in med.items():
            share = flops / t / 1e9 / peak
            label = name
            if name.startswith("train_many K=") and w.name in OBJECTIVES:
                label += f" ({PATHS_TAKEN.get((w.name, int(name.split('=')[1])), '?')})"
            lines.append(
                f"| {label} | {fmt_seconds(t)} | {base_wall / t:.1f}x | "
                f"{fmt_seconds(cpu)} | {base_cpu / cpu:.1f}x | {share * 100:.2g}% |"
            )
        how = (
            "counted by torch.utils.flop_counter for one step: matmuls and convolutions, "
            "forward and backward"
            if w.name in OBJECTIVES
            else "6 flops per weight per sample"
        )
        lines += [
            "",
            f"One {w.name} run is {flops / 1e9:.3g} GFLOP of matmul arithmetic "
            f"({how}), {flops / 1e9 / peak * 1000:.3g} ms at the measured peak.",
            "",
        ]
        if w.name in OBJECTIVES:
            lines += [
                "The path train_many's dispatcher chose is in brackets: 'stack' is the "
                "hand-written step of aelab._engine.stack, 'grouped' one model of grouped "
                "convolutions (aelab._engine.grouped), 'vmap' is "
                "aelab._engine.functional, 'loop' the autograd loop one model after "
                "another.",
                "",
            ]
        if args.baseline:
            lines += comparison(raw_results[w.name], args.Ks, args.baseline, args.reps)
    if memory:
        lines += [
            "### Memory (resident set of a fresh process)",
            "",
            "| workload | way | K | epochs | with data and models built | peak while "
            "training | added by training |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        by_name = {w.name: w for w in workloads(args.quick, args.epochs_scale)}
        for (name, K, way), (before, after) in memory.items():
            lines.append(
                f"| {name} | {way} | {K} | {memory_epochs(by_name[name])} | "
                f"{before:.0f} MiB | {after:.0f} MiB | {after - before:.0f} MiB |"
            )
        lines.append("")
    targets = []
    course = results.get("course")
    if course and not args.quick and args.epochs_scale == 1:  # targets of the full workload
        base = course["plain loop"][0]
        for name, goal in [
            ("train_autoencoder", 4),
            ("train_many K=64", 100),
            ("train_many K=256", 150),
        ]:
            if name in course:
                ratio = base / course[name][0]
                verdict = "met" if ratio >= goal else "NOT met"
                targets.append(
                    f"- {name}: {ratio:.1f}x faster than the plain loop in wall time "
                    f"(target {goal}x): {verdict}."
                )
    if not args.quick:
        targets += objective_targets(raw_results)
    load = ""
    if getattr(args, "load_start", None) is not None:
        load = (
            f" (load average {args.load_start:.1f} at the start, {os.getloadavg()[0]:.1f} "
            "at the end)"
        )
    head = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()} "
        f"({os.cpu_count()} CPU cores, shared with other work{load}), Python "
        f"{platform.python_version()}, torch {torch.__version__}, {args.threads} torch "
        f"thread(s) for every row; float32 matmul peak at that thread count: {peak:.0f} GFLOP/s "
        f"(2048x2048). No GPU. Medians of {args.reps} interleaved runs per row; "
        f"the whole benchmark took {wall / 60:.1f} minutes.",
        "",
    ]
    return "\n".join(head + lines + (["Targets:", ""] + targets + [""] if targets else []))


def _speedup(raw: dict, base: str, row: str) -> str:
    """base/row in wall time: the geometric mean over paired repetitions, with its 95%
    t-interval (or the range, under 3 repetitions)."""
    ratio, low, high, _ = paired_ratio(raw[base][0], raw[row][0])
    if len(raw[base][0]) >= 3 and not math.isnan(low):
        return f"{ratio:.1f}x [95% CI {low:.1f}, {high:.1f}]"
    each = [b / r for b, r in zip(raw[base][0], raw[row][0])]
    return f"{ratio:.1f}x (repetitions: {', '.join(f'{x:.1f}x' for x in each)})"


def objective_targets(raw: dict) -> list[str]:
    """Issue 12's targets that this run measured, each with its spread."""
    out = []
    course = raw.get("course", {})
    if "train_many K=256" in course and "torch.func K=256" in course:
        out.append(
            f"- course, K=256: train_many per model against torch.func: "
            f"{_speedup(course, 'torch.func K=256', 'train_many K=256')} faster "
            "(target 3x)."
        )
    for name in ("vae", "mmd"):
        rows = raw.get(name, {})
        if "train_many K=64" in rows:
            out.append(
                f"- {name}, K=64: train_many per model against the plain loop: "
                f"{_speedup(rows, 'plain loop', 'train_many K=64')}; against "
                f"{ONE_MODEL[name]}: {_speedup(rows, ONE_MODEL[name], 'train_many K=64')} "
                "(target 20x against one at a time with autograd)."
            )
    for name in ("conv", "conv-skip"):
        rows = raw.get(name, {})
        if "train_many K=16" in rows:
            out.append(
                f"- {name}, K=16: train_many took the "
                f"'{PATHS_TAKEN.get((name, 16), '?')}' path; per model against the "
                f"plain loop: {_speedup(rows, 'plain loop', 'train_many K=16')}, against "
                f"train_autoencoder: "
                f"{_speedup(rows, 'train_autoencoder', 'train_many K=16')}; torch.func "
                "K=16 against the plain loop: "
                + (
                    _speedup(rows, "plain loop", "torch.func K=16")
                    if "torch.func K=16" in rows
                    else "not measured"
                )
                + " (target: faster than the loop, or the fallback takes the loop)."
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (about a minute)")
    parser.add_argument("--reps", type=int, default=None, help="runs per row (default 3; quick 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every row (default 1: on shared 2-core machines "
        "a second thread mostly spin-waits on tiny ops)",
    )
    parser.add_argument(
        "--ks",
        default=None,
        help="comma-separated K values for train_many (default 1,8,64,256; quick 1,8,64)",
    )
    parser.add_argument(
        "--func-ks",
        default=None,
        help="comma-separated K values for the torch.func rows, or 'none' "
        "(default: the largest --ks from 8 on; each costs minutes at the "
        "course's 1000 epochs)",
    )
    parser.add_argument(
        "--memory-k",
        type=int,
        default=None,
        help="K of the peak-memory probes (default: the largest --ks)",
    )
    parser.add_argument(
        "--epochs-scale",
        type=float,
        default=1.0,
        help="multiply every workload's epochs by this (at least 1 epoch); "
        "times are per model, so ratios stay comparable",
    )
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning rows")
    parser.add_argument(
        "--workloads",
        default="course,digits",
        help="comma-separated subset of course,digits,vae,mmd,conv,conv-skip",
    )
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        help="write the results as a Markdown section into this file",
    )
    parser.add_argument(
        "--section",
        default="",
        help="name of the generated section to replace (default: the main one)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also time train_many with aelab's src as it was at git revision REV "
        "(in a process of its own), interleaved, and compare (rows marked 'before')",
    )
    parser.add_argument("--memory-probe", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.serve_baseline:
        serve_baseline()
        return 0
    if args.memory_probe:
        name, K, *way = args.memory_probe
        memory_probe(name, int(K), *way)
        return 0
    args.load_start = os.getloadavg()[0]
    args.reps = args.reps or (1 if args.quick else 3)
    Ks = (
        [int(k) for k in args.ks.split(",")]
        if args.ks
        else ([1, 8, 64] if args.quick else [1, 8, 64, 256])
    )
    args.Ks = Ks
    if args.func_ks == "none":
        func_Ks = []
    else:
        func_Ks = (
            [int(k) for k in args.func_ks.split(",")]
            if args.func_ks
            else [k for k in Ks if k >= 8][-1:]
        )
    known = [w.name for w in workloads(args.quick)]
    for name in args.workloads.split(","):
        if name not in known:
            parser.error(f"--workloads: unknown workload {name!r}; choose from {', '.join(known)}")
    try:
        baseline = Baseline(args.baseline, args.threads) if args.baseline else None
    except ValueError as err:
        parser.error(str(err))
    with_lightning = not args.no_lightning and lightning_available()
    if not with_lightning:
        print("lightning is not installed (or --no-lightning): skipping its rows", file=sys.stderr)
    warnings.filterwarnings("ignore")  # Lightning's advice about DataLoader workers and the like
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    peak = matmul_gflops()
    log(f"matmul peak: {peak:.0f} GFLOP/s")
    chosen = [
        w for w in workloads(args.quick, args.epochs_scale) if w.name in args.workloads.split(",")
    ]
    try:
        results = {
            w.name: measure(w, Ks, args.reps, with_lightning, log, baseline, func_Ks)
            for w in chosen
        }
    finally:
        if baseline is not None:
            baseline.close()
    memory = {}
    if not args.quick:
        for w in chosen:
            ways = []
            if w.name not in OBJECTIVES or train_many_takes_objectives():
                ways.append("train_many")
            if func_Ks:
                ways.append("torch.func")
            K = args.memory_k or max(Ks)
            for way in ways:
                memory[w.name, K, way] = peak_memory(w.name, K, way)
                log(f"memory {w.name} {way} K={K}: {memory[w.name, K, way]}")
    text = report(results, args, peak, memory, time.perf_counter() - start)
    print(text)
    if args.write:
        write_section(args.write, text, args.section)
        log(f"wrote {args.write}")
    return 0


def markers(section: str = "") -> tuple[str, str]:
    name = f"benchmarks/run.py{' ' + section if section else ''}"
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


BEGIN, END = markers()


def write_section(path: Path, text: str, section: str = "") -> None:
    """Replace a generated section of ``path`` (between its markers), keeping the prose."""
    BEGIN, END = markers(section)
    old = path.read_text() if path.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    before, rest = old.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{before}{BEGIN}\n{text.rstrip()}\n{END}{after}")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
