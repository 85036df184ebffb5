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

Workloads: "course" is sheet 6 (100 rectangle points, batch 8, 1000 epochs,
2-20-10-1-10-20-2); "digits" is sklearn's 8x8 digits (1797 x 64, batch 64, 50
epochs, 64-128-128-8-128-128-64). Every row is timed ``--reps`` times,
interleaved so that load on a shared machine hits all rows alike; the table
gives medians and ratios to the plain loop. The matmul peak is a 2048x2048
float32 matmul at the same thread count; a K=256 run in a fresh process gives
the peak memory.

Usage::

    python benchmarks/run.py --quick            # smoke run, about a minute; prints the tables
    python benchmarks/run.py --write docs/benchmarks.md   # the full run behind the docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import aelab
from aelab.ensemble import train_many

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    name: str
    epochs: int
    batch_size: int
    description: str

    def data(self) -> aelab.data.Dataset:
        return aelab.data.rectangle(100) if self.name == "course" else aelab.data.digits()

    def model(self) -> torch.nn.Module:
        if self.name == "course":
            return aelab.Autoencoder.from_widths([20, 10], bottleneck_size=1, input_size=2)
        return aelab.Autoencoder(64, 8, hidden_size=128, layers=2)

    def flops_per_model(self, n_samples: int) -> float:
        """Matmul arithmetic of one training run: 2 flops per multiply-add, forward plus
        the two backward products (weights and inputs), so 6 per weight per sample."""
        weights = sum(m.weight.numel() for m in self.model().modules()
                      if isinstance(m, torch.nn.Linear))
        used = n_samples - n_samples % self.batch_size
        return 6.0 * weights * used * self.epochs


COURSE = "100 rectangle points, batch 8, 2-20-10-1-10-20-2, Adam lr 1e-3"
DIGITS = "sklearn digits (1797 x 64), batch 64, 64-128-128-8-128-128-64, Adam lr 1e-3"


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [Workload("course", 50, 8, COURSE), Workload("digits", 3, 64, DIGITS)]
    return [Workload("course", 1000, 8, COURSE), Workload("digits", 50, 64, DIGITS)]


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
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    with Timer() as timer:
        for _ in range(w.epochs):
            for (x,) in loader:
                optimizer.zero_grad()
                loss = F.mse_loss(model(x), x)
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
    trainer = L.Trainer(max_epochs=w.epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    module = Module(w.model())
    with Timer() as timer:
        trainer.fit(module, loader)
    return timer.per()


def run_train_autoencoder(w: Workload, ds) -> float:
    model = w.model()
    with Timer() as timer:
        aelab.train_autoencoder(model, ds, epochs=w.epochs, batch_size=w.batch_size,
                                progress=False)
    return timer.per()


def run_train_many(w: Workload, ds, K: int) -> float:
    models = [w.model() for _ in range(K)]
    with Timer() as timer:
        train_many(models, ds, epochs=w.epochs, batch_size=w.batch_size, progress=False)
    return timer.per(K)


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


def memory_probe(workload: str, K: int) -> None:
    """Child process: resident memory (MiB) with data and K models built, and its peak while
    training them for 2 epochs. (ru_maxrss would not do: it survives exec from the parent.)"""
    w = next(w for w in workloads(quick=False) if w.name == workload)
    ds = w.data()
    models = [w.model() for _ in range(K)]
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    train_many(models, ds, epochs=2, batch_size=w.batch_size, progress=False)
    print(json.dumps({"before": before, "after": _status_mib("VmHWM")}))


def peak_memory(workload: str, K: int) -> tuple[float, float]:
    """(RSS once data and K models exist, peak RSS while training them), in MiB."""
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", workload, str(K)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return found["before"], found["after"]


# ---------------------------------------------------------------- the run


def measure(w: Workload, Ks: list[int], reps: int, with_lightning: bool, log) -> dict:
    ds = w.data()
    rows = {}
    if with_lightning:
        rows["lightning"] = lambda: run_lightning(w, ds)
    rows["plain loop"] = lambda: run_plain_loop(w, ds)
    rows["train_autoencoder"] = lambda: run_train_autoencoder(w, ds)
    for K in Ks:
        rows[f"train_many K={K}"] = (lambda K=K: run_train_many(w, ds, K))
    warm = Workload(w.name, 1, w.batch_size, w.description)  # first calls pay for lazy setup
    if with_lightning:
        run_lightning(warm, ds)
    run_plain_loop(warm, ds)
    run_train_autoencoder(warm, ds)
    run_train_many(warm, ds, 2)
    walls = {name: [] for name in rows}
    cpus = {name: [] for name in rows}
    for rep in range(reps):
        for name, fn in rows.items():
            wall, cpu = fn()
            walls[name].append(wall)
            cpus[name].append(cpu)
            log(f"{w.name} rep {rep + 1}/{reps}: {name}: {wall:.3f} s per model ({cpu:.3f} s CPU)")
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name]))
            for name in rows}


def fmt_seconds(s: float) -> str:
    return f"{s:.3g} s" if s >= 0.01 else f"{s * 1000:.3g} ms"


def report(results: dict, args, peak: float, memory: dict, wall: float) -> str:
    lines = []
    for w in workloads(args.quick):
        if w.name not in results:
            continue
        med = results[w.name]
        base_wall, base_cpu = med["plain loop"]
        flops = w.flops_per_model(len(w.data()))
        lines += [f"### {w.name}: {w.description}, {w.epochs} epochs", "",
                  "| way of training | wall seconds per model | speed-up over the plain loop "
                  "| CPU seconds per model | speed-up in CPU time | fraction of matmul peak |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, (t, cpu) in med.items():
            share = flops / t / 1e9 / peak
            lines.append(f"| {name} | {fmt_seconds(t)} | {base_wall / t:.1f}x | {fmt_seconds(cpu)} "
                         f"| {base_cpu / cpu:.1f}x | {share * 100:.2g}% |")
        lines += ["", f"One {w.name} run is {flops / 1e9:.3g} GFLOP of matmul arithmetic "
                      f"(6 flops per weight per sample), {flops / 1e9 / peak * 1000:.3g} ms at the "
                      "measured peak.", ""]
    if memory:
        lines += ["### Memory (resident set of a fresh process, 2 epochs of train_many)", "",
                  "| workload | K | with data and models built | peak while training "
                  "| added by training |", "|---|---:|---:|---:|---:|"]
        for (name, K), (before, after) in memory.items():
            lines.append(f"| {name} | {K} | {before:.0f} MiB | {after:.0f} MiB | "
                         f"{after - before:.0f} MiB |")
        lines.append("")
    targets = []
    course = results.get("course")
    if course and not args.quick:
        base = course["plain loop"][0]
        for name, goal in [("train_autoencoder", 4), ("train_many K=64", 100),
                           ("train_many K=256", 150)]:
            if name in course:
                ratio = base / course[name][0]
                verdict = "met" if ratio >= goal else "NOT met"
                targets.append(f"- {name}: {ratio:.1f}x faster than the plain loop in wall time "
                               f"(target {goal}x): {verdict}.")
    head = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()} "
        f"({os.cpu_count()} CPU cores, shared with other work), Python "
        f"{platform.python_version()}, torch {torch.__version__}, {args.threads} torch "
        f"thread(s) for every row; float32 matmul peak at that thread count: {peak:.0f} GFLOP/s "
        f"(2048x2048). No GPU. Medians of {args.reps} interleaved runs per row; "
        f"the whole benchmark took {wall / 60:.1f} minutes.",
        "",
    ]
    return "\n".join(head + lines + (["Targets (course workload):", ""] + targets + [""]
                                     if targets else []))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (about a minute)")
    parser.add_argument("--reps", type=int, default=None, help="runs per row (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every row (default 1: on shared 2-core machines "
                             "a second thread mostly spin-waits on tiny ops)")
    parser.add_argument("--ks", default=None, help="comma-separated K values for train_many "
                        "(default 1,8,64,256; quick 1,8,64)")
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning rows")
    parser.add_argument("--workloads", default="course,digits", help="comma-separated subset")
    parser.add_argument("--write", type=Path, default=None,
                        help="write the results as a Markdown section into this file")
    parser.add_argument("--memory-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        name, K = args.memory_probe
        memory_probe(name, int(K))
        return 0
    args.reps = args.reps or (1 if args.quick else 3)
    Ks = [int(k) for k in args.ks.split(",")] if args.ks else ([1, 8, 64] if args.quick
                                                                   else [1, 8, 64, 256])
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
    chosen = [w for w in workloads(args.quick) if w.name in args.workloads.split(",")]
    results = {w.name: measure(w, Ks, args.reps, with_lightning, log) for w in chosen}
    memory = {}
    if not args.quick:
        for name in results:
            memory[(name, max(Ks))] = peak_memory(name, max(Ks))
            log(f"memory {name} K={max(Ks)}: {memory[(name, max(Ks))]}")
    text = report(results, args, peak, memory, time.perf_counter() - start)
    print(text)
    if args.write:
        write_section(args.write, text)
        log(f"wrote {args.write}")
    return 0


BEGIN, END = "<!-- benchmarks/run.py: begin -->", "<!-- benchmarks/run.py: end -->"


def write_section(path: Path, text: str) -> None:
    """Replace the generated section of ``path`` (between the markers), keeping the prose."""
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
