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
* ``train_many K=... (before)``, with ``--baseline REV``: the same, with the
  engine (``src/aelab/ensemble.py``) as it was at git revision REV, timed in the
  same run, interleaved; a section compares the two with confidence intervals.

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
    python benchmarks/run.py --workloads course --ks 1,64,256 --no-lightning --reps 7 \
        --baseline REV --section invariance --write docs/benchmarks.md   # an engine change
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

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


def run_train_many(w: Workload, ds, K: int, engine=None) -> float:
    models = [w.model() for _ in range(K)]
    fn = train_many if engine is None else engine.train_many
    with Timer() as timer:
        fn(models, ds, epochs=w.epochs, batch_size=w.batch_size, progress=False)
    return timer.per(K)


BEFORE = " (before)"  # suffix of the rows timed with the --baseline engine


def load_engine(rev: str) -> types.ModuleType:
    """``src/aelab/ensemble.py`` as it was at git revision ``rev``, as a module of its own (it
    imports the rest of aelab as it is now)."""
    source = subprocess.run(["git", "show", f"{rev}:src/aelab/ensemble.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(f"aelab_ensemble_before_{abs(hash(rev))}")
    module.__file__ = f"{rev}:src/aelab/ensemble.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


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


def measure(w: Workload, Ks: list[int], reps: int, with_lightning: bool, log,
            baseline=None) -> dict:
    """Per row, the wall and CPU seconds per model of each repetition (lists, in rep order)."""
    ds = w.data()
    rows = {}
    if with_lightning:
        rows["lightning"] = lambda: run_lightning(w, ds)
    rows["plain loop"] = lambda: run_plain_loop(w, ds)
    rows["train_autoencoder"] = lambda: run_train_autoencoder(w, ds)
    for K in Ks:
        rows[f"train_many K={K}"] = (lambda K=K: run_train_many(w, ds, K))
        if baseline is not None:
            rows[f"train_many K={K}{BEFORE}"] = (lambda K=K: run_train_many(w, ds, K, baseline))
    warm = Workload(w.name, 1, w.batch_size, w.description)  # first calls pay for lazy setup
    if with_lightning:
        run_lightning(warm, ds)
    run_plain_loop(warm, ds)
    run_train_autoencoder(warm, ds)
    run_train_many(warm, ds, 2)
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
    lines = [f"Per model, `train_many` now against the engine at `{rev}`, interleaved in the "
             f"same run, {reps} paired repetitions. Ratios are after/before: the geometric mean "
             "over repetitions with its 95% t-interval, and the paired t-test's p-value on log "
             "times.", "",
             "| K | wall before | wall after | wall ratio [95% CI] | p | CPU before | CPU after "
             "| CPU ratio [95% CI] | p |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for K in Ks:
        now, then = raw.get(f"train_many K={K}"), raw.get(f"train_many K={K}{BEFORE}")
        if now is None or then is None:
            continue
        cells = []
        for i in (0, 1):  # wall, CPU
            ratio, low, high, p = paired_ratio(now[i], then[i])
            cells += [fmt_seconds(statistics.median(then[i])),
                      fmt_seconds(statistics.median(now[i])),
                      f"{ratio:.3f} [{low:.3f}, {high:.3f}]", f"{p:.2g}"]
            if i == 1:
                verdicts.append(f"- K={K}, CPU time: {verdict(low, high)}; the change is "
                                + ("significant" if p < 0.05 else "not significant")
                                + f" at the 5% level (p={p:.2g}, n={reps}).")
        lines.append(f"| {K} | " + " | ".join(cells) + " |")
    return lines + [""] + verdicts + [""]


def report(results: dict, args, peak: float, memory: dict, wall: float) -> str:
    lines = []
    raw_results = results
    results = {name: {row: (statistics.median(w), statistics.median(c))
                      for row, (w, c) in rows.items()} for name, rows in results.items()}
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
        if args.baseline:
            lines += comparison(raw_results[w.name], args.Ks, args.baseline, args.reps)
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
    parser.add_argument("--section", default="",
                        help="name of the generated section to replace (default: the main one)")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also time train_many with src/aelab/ensemble.py as it was at git "
                             "revision REV, interleaved, and compare (rows marked 'before')")
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
    args.Ks = Ks
    baseline = load_engine(args.baseline) if args.baseline else None
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
    results = {w.name: measure(w, Ks, args.reps, with_lightning, log, baseline) for w in chosen}
    memory = {}
    if not args.quick:
        for name in results:
            memory[(name, max(Ks))] = peak_memory(name, max(Ks))
            log(f"memory {name} K={max(Ks)}: {memory[(name, max(Ks))]}")
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
