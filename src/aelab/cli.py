"""The ``aelab`` command line: run studies, list them, train one model, summarise a model.

Only this module prints. Every command prints where it wrote its results.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from aelab import data, models, plots, report
from aelab._seed import seeded
from aelab.checkpoint import load as load_model
from aelab.checkpoint import save
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.models import Autoencoder
from aelab.studies import REGISTRY, StudyResult
from aelab.studies._base import data_studies, parse_setting
from aelab.train import train_autoencoder

BUILTIN_DATA = {
    "moons": lambda n, seed: data.moons(n, noise=0.1, seed=seed),
    "rectangle": lambda n, seed: data.rectangle(n, seed=seed),
    "digits": lambda n, seed: data.digits(),
}


def _new_run_dir(out: str | None) -> Path:
    """A new, empty output folder: ``out`` if given, else runs/<timestamp> (suffixed if taken).

    Checked and created before any training, so a bad ``--out`` costs no work, and
    refused if it already holds files, so two runs' files never mix.
    """
    if out:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out {out!r} is a file; give a folder for the results.")
        if path.is_dir() and any(path.iterdir()):
            raise ValueError(f"--out {out!r} already holds files; choose a new or empty folder "
                             "so that this run's results do not mix with another's.")
    else:
        base = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
        path, i = base, 1
        while path.exists():
            path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _removed_if_empty_on_error(path: Path):
    """Leave no empty output folder behind when a command fails."""
    try:
        yield path
    except BaseException:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


def _check_mnist_files(root) -> None:
    """Fail before any training when an MNIST study would not find its files."""
    if root is None:
        raise ValueError("--dataset mnist needs --mnist-root DIR, the folder with the MNIST IDX files.")
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            data._mnist_file(Path(root), f"{prefix}-{kind}-ubyte")


def _show_progress(args) -> bool | None:
    return True if args.progress else (False if args.no_progress else None)


def cmd_list(args) -> int:
    width = max(len(name) for name in REGISTRY)
    for name, entry in REGISTRY.items():
        print(f"{name:<{width}}  {entry.summary}")
    return 0


def _study_options(func, args) -> dict:
    """``--dataset``/``--mnist-root`` as keyword arguments, for the studies whose signature takes them."""
    import inspect

    dataset = args.dataset or ("mnist" if args.mnist_root else None)
    options = {"dataset": dataset, "mnist_root": args.mnist_root}
    accepted = inspect.signature(func).parameters
    return {k: v for k, v in options.items() if v is not None and k in accepted}


def _default_studies(user_data) -> list[str]:
    """What ``aelab run`` runs when no study is named: every question once (a generic
    study that has a course preset runs as that preset), or, with ``--data``, every
    study that can take the user's data."""
    if user_data is not None:
        kinds = ("any", "image") if user_data.image_shape is not None else ("any",)
        return [n for n in data_studies() if REGISTRY[n].data in kinds]
    presets = {s.preset_of for s in REGISTRY.values()}
    return [n for n in REGISTRY if n not in presets]


def _settings_overrides(names, pairs) -> dict[str, dict]:
    """``--set name=value`` pairs parsed for each chosen study's settings dataclass."""
    overrides = {name: {} for name in names}
    for text in pairs or ():
        for name in names:
            cls = REGISTRY[name].settings
            if cls is None:
                raise ValueError(f"--set {text}: study {name!r} has no settings to set.")
            try:
                key, value = parse_setting(cls, text)
            except ValueError as err:
                raise ValueError(f"--set for study {name!r}: {err}") from None
            overrides[name][key] = value
    return overrides


def cmd_run(args) -> int:
    user_data = data.load(args.data) if args.data else None
    names = args.studies or _default_studies(user_data)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"aelab run: unknown study {', '.join(map(repr, unknown))}. Valid names:\n  "
              + "\n  ".join(REGISTRY), file=sys.stderr)
        return 2
    if len(set(names)) != len(names):
        raise ValueError(f"a study is named twice: {' '.join(names)}; name each once.")
    if user_data is not None:
        refusing = [n for n in names if REGISTRY[n].data is None]
        if refusing:
            raise ValueError(f"--data: {', '.join(refusing)} cannot run on your data; studies "
                             f"that can: {', '.join(data_studies())}.")
    show = _show_progress(args)
    options = {name: _study_options(REGISTRY[name].run, args) for name in names}
    if (args.dataset or args.mnist_root) and not any(options.values()):
        print("aelab run: note: --dataset/--mnist-root apply to the image studies only; "
              "none of the chosen studies uses them.", file=sys.stderr)
    if any(o.get("dataset") == "mnist" for o in options.values()):
        _check_mnist_files(args.mnist_root)
    for name, settings in _settings_overrides(names, args.set).items():
        options[name].update(settings)
        if user_data is not None:
            options[name]["data"] = user_data
    with _removed_if_empty_on_error(_new_run_dir(args.out)) as out_dir:
        return _run_studies(names, options, args, show, out_dir)


def _run_studies(names, options, args, show, out_dir) -> int:
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(names, unit="study", disable=not (sys.stderr.isatty() if show is None else show))
    for name in bar:
        bar.set_description(name)
        start = time.perf_counter()
        result = REGISTRY[name].run(quick=not args.full, seed=args.seed, **options[name])
        result.config.setdefault("seconds", round(time.perf_counter() - start, 2))
        results.append(result)
    which = (f"all {len(names)} studies" if not args.studies and not args.data
             else ", ".join(names) if len(names) <= 3 else f"{len(names)} studies")
    settings = "full (course) settings" if args.full else "quick settings"
    path = report.write(results, out_dir, title=f"aelab run: {which}, {settings}, seed {args.seed}")
    print(f"Report: {path.resolve()}")
    return 0


def _train_result(args) -> tuple[StudyResult, object]:
    if args.data in BUILTIN_DATA:
        ds = BUILTIN_DATA[args.data](args.n, args.seed)
    else:
        ds = data.load(args.data)
    train, test = data.split(ds, test_size=0.2, seed=args.seed)
    with seeded(args.seed):
        model = Autoencoder(ds.n_features, args.bottleneck, args.hidden, args.layers)
    history = train_autoencoder(
        model, train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, test=test,
        seed=args.seed, optimizer=args.optimizer, noise_sigma=args.noise_sigma,
        progress=_show_progress(args))
    errors = {"train": reconstruction_error(model, train.X), "test": reconstruction_error(model, test.X)}
    figures = {"loss": plots.loss_curves({ds.name: history},
                                         title=f"{ds.name}: loss per epoch")}
    if ds.n_features == 2:
        figures["reconstruction"] = plots.reconstruction_scatter(
            test.X, reconstruct(model, test.X),
            title=f"{ds.name}: test points and reconstructions")
    table = pd.DataFrame({"split": list(errors), "n_samples": [len(train), len(test)],
                          "reconstruction MSE": list(errors.values())})
    findings = [f"{model.__class__.__name__} {ds.n_features}-{args.bottleneck} with "
                f"{args.layers} hidden layers of {args.hidden} reached test MSE "
                f"{errors['test']:.4g} (train {errors['train']:.4g}) after {args.epochs} epochs "
                f"in {history.seconds[-1] if history.seconds else 0:.1f} s."]
    result = StudyResult(f"train: {ds.name}", {"errors": table}, figures, findings,
                         {**history.config, "data": args.data},
                         {"train_mse": errors["train"], "test_mse": errors["test"]})
    return result, model


def cmd_train(args) -> int:
    with _removed_if_empty_on_error(_new_run_dir(args.out)) as out_dir:
        result, model = _train_result(args)
        model_path = save(model, out_dir / "model.pt")
        path = report.write(result, out_dir, title=f"aelab train: {args.data}")
    print(f"Model: {model_path.resolve()}\nReport: {path.resolve()}")
    return 0


# --model name -> builder from the parsed arguments; conv takes --image-shape, not --input-size
SUMMARY_MODELS = {
    "autoencoder": lambda a: models.Autoencoder(a.input_size, a.bottleneck, a.hidden, a.layers),
    "linear": lambda a: models.LinearAutoencoder(a.input_size, a.bottleneck),
    "resnet": lambda a: models.ResNetAutoencoder(a.input_size, a.bottleneck, a.hidden, a.blocks),
    "conv": lambda a: models.ConvAutoencoder(a.image_shape, a.bottleneck, skip=a.skip),
    "vae": lambda a: models.VAE(a.input_size, a.bottleneck, a.hidden, a.layers),
}


def cmd_summary(args) -> int:
    from aelab.summary import summary

    if args.load:
        model = load_model(args.load)
    else:
        model = SUMMARY_MODELS[args.model](args)
    shape = getattr(model, "image_shape", None) or (model.input_size,)
    print(summary(model, shape))
    return 0


# --------------------------------------------------------------------------- aelab sweep

# [model] family -> the class and the arguments a config may set (input_size comes from the data)
SWEEP_FAMILIES = {
    "autoencoder": (models.Autoencoder, {"bottleneck_size": int, "hidden_size": int,
                                         "layers": int}),
    "linear": (models.LinearAutoencoder, {"bottleneck_size": int}),
    "resnet": (models.ResNetAutoencoder, {"bottleneck_size": int, "hidden_size": int,
                                          "blocks": int}),
    "vae": (models.VAE, {"bottleneck_size": int, "hidden_size": int, "layers": int}),
}
# training settings a config may set, in [training] or as [grid] lists
SWEEP_TRAINING = {"epochs": int, "batch_size": int, "lr": float, "optimizer": str,
                  "momentum": float, "weight_decay": float, "lr_schedule": str,
                  "noise_sigma": float, "objective": str, "beta": float, "likelihood": str,
                  "mmd_weight": float, "kernel": str}
SWEEP_DATA = {"name": str, "file": str, "n": int, "noise": float, "seed": int, "test": float,
              "validation": float, "split_seed": int}
SWEEP_METRICS = ("train_mse", "val_mse", "test_mse", "mean_mse", "pca_mse")
SWEEP_REPORT = {"select": str, "metrics": list}
SWEEP_TOP = {"title": str, "seeds": int, "stack_size": int, "keep_models": bool,
             "model": dict, "data": dict, "grid": dict, "training": dict, "report": dict}
_SWEEP_REQUIRED = {"model": "family = " + " | ".join(SWEEP_FAMILIES) + " and its fixed arguments",
                   "data": "name = moons | rectangle | digits, or file = PATH",
                   "grid": "name = [values, ...] lines"}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               list: "a list", dict: "a table"}


def _config_line(lines: list[str], table: str | None, key: str | None) -> int | None:
    """The line where ``[table] key = ...`` (or the ``[table]`` header) is written."""
    import re

    current = None
    for number, line in enumerate(lines, 1):
        header = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if header and not line.lstrip().startswith("[["):
            current = header.group(1)
            if key is None and current == table:
                return number
            continue
        if key is not None and current == table and re.match(
                rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return None


def _is_type(value, kind) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


class _SweepConfig:
    """A parsed ``aelab sweep`` config file; every mistake names its key, line and what is
    allowed. See examples/sweep.toml."""

    def __init__(self, path):
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"sweep config {str(path)!r} does not exist.")
        text = self.path.read_text(encoding="utf-8")
        self.lines = text.splitlines()
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{self.path}: not valid TOML: {err}.") from None
        self.raw = raw
        self._keys(None, raw, SWEEP_TOP)
        for table, needs in _SWEEP_REQUIRED.items():
            if table not in raw:
                raise self.error(None, table, f"the [{table}] table is missing", needs)
        model, data_cfg = raw["model"], raw["data"]
        family = model.get("family")
        if family not in SWEEP_FAMILIES:
            raise self.error("model", "family", "missing" if family is None else
                             f"unknown family {family!r}", ", ".join(SWEEP_FAMILIES))
        self.cls, model_args = SWEEP_FAMILIES[family]
        self.model_args = model_args
        self.fixed = {k: v for k, v in model.items() if k != "family"}
        self._keys("model", self.fixed, model_args, f"family {family!r} takes")
        self._keys("data", data_cfg, SWEEP_DATA)
        self.training = dict(raw.get("training", {}))
        self._keys("training", self.training, SWEEP_TRAINING)
        if family == "vae":
            self.training.setdefault("objective", "vae")
        grid = raw["grid"]
        if not grid:
            raise self.error("grid", None, "the grid is empty",
                             "at least one name = [values] line; names: "
                             + self._allowed_text("grid"))
        grid_types = {**model_args, **SWEEP_TRAINING}
        for name, values in grid.items():
            if name not in grid_types:
                raise self.error("grid", name, "not a model argument or training setting",
                                 self._allowed_text("grid"))
            if not isinstance(values, list) or not values:
                raise self.error("grid", name, f"must be a non-empty list of values, got "
                                 f"{values!r}", f"e.g. {name} = [{values!r}]" if not isinstance(
                                     values, list) else "at least one value")
            for value in values:
                if not _is_type(value, grid_types[name]):
                    raise self.error("grid", name, f"holds {value!r}",
                                     f"a list of {_TYPE_WORDS[grid_types[name]]}s")
            both = "model" if name in self.fixed else "training" if name in self.training else None
            if both:
                raise self.error("grid", name, f"is also set in [{both}]",
                                 "set each name in one place")
        self.grid = grid
        seeds = raw.get("seeds", 5)
        if isinstance(seeds, int) and seeds < 1:
            raise self.error(None, "seeds", f"must be >= 1, got {seeds}", "a count of seeds >= 1")
        self.seeds = seeds
        self.stack_size = raw.get("stack_size", None)
        if self.stack_size is not None and self.stack_size < 1:
            raise self.error(None, "stack_size", f"must be >= 1, got {self.stack_size}",
                             "an integer >= 1")
        self.keep_models = raw.get("keep_models", False)
        report_cfg = raw.get("report", {})
        self._keys("report", report_cfg, SWEEP_REPORT)
        self.select = report_cfg.get("select", "val_mse")
        self.metrics = report_cfg.get("metrics", ["test_mse"])
        for key, names in (("select", [self.select]), ("metrics", self.metrics)):
            bad = [m for m in names if m not in SWEEP_METRICS]
            if bad or not names:
                raise self.error("report", key, f"unknown metric {bad[0]!r}" if bad else
                                 "is empty", ", ".join(SWEEP_METRICS))
        self.title = raw.get("title", self.path.stem)
        self._load_data(data_cfg)

    # ---- checks

    def error(self, table, key, problem, allowed) -> ValueError:
        line = _config_line(self.lines, table, key)
        where = f"line {line}" if line else "line unknown"
        name = f"[{table}] {key}" if table and key else f"[{table}]" if table else key
        return ValueError(f"{self.path}, {where}: {name}: {problem}; allowed: {allowed}.")

    def _allowed_text(self, table) -> str:
        if table == "grid":
            return (f"lists of the model's arguments ({', '.join(self.model_args)}) or of "
                    f"training settings ({', '.join(SWEEP_TRAINING)})")
        return _SWEEP_REQUIRED[table]

    def _keys(self, table, values: dict, allowed: dict, what: str = "") -> None:
        for key, value in values.items():
            if key not in allowed:
                raise self.error(table, key, "unknown key",
                                 f"{what} {', '.join(allowed)}".strip())
            kind = allowed[key]
            if kind is object:
                continue
            if key == "seeds" and table is None and isinstance(value, list):
                if not value or not all(_is_type(s, int) and s >= 0 for s in value):
                    raise self.error(None, key, f"holds {value!r}",
                                     "a count, or a non-empty list of integers >= 0")
                continue
            if not _is_type(value, kind):
                raise self.error(table, key, f"must be {_TYPE_WORDS[kind]}, got {value!r}",
                                 _TYPE_WORDS[kind])

    # ---- data and model

    def _load_data(self, cfg: dict) -> None:
        if ("name" in cfg) == ("file" in cfg):
            raise self.error("data", None, "give exactly one of name and file",
                             self._allowed_text("data"))
        seed = cfg.get("seed", 0)
        if "file" in cfg:
            extra = [k for k in ("n", "noise") if k in cfg]
            if extra:
                raise self.error("data", extra[0], "only applies to built-in data",
                                 "file, seed, test, validation, split_seed")
            ds = data.load(self.path.parent / cfg["file"])
        else:
            name = cfg["name"]
            if name not in BUILTIN_DATA:
                raise self.error("data", "name", f"unknown data {name!r}",
                                 f"{', '.join(BUILTIN_DATA)}, or file = PATH")
            if name == "moons":
                ds = data.moons(cfg.get("n", 500), noise=cfg.get("noise", 0.1), seed=seed)
            elif name == "rectangle":
                ds = data.rectangle(cfg.get("n", 500), seed=seed)
            else:
                ds = data.digits()
        for key in ("test", "validation"):
            share = cfg.get(key, 0.2)
            if not 0 < share < 1:
                raise self.error("data", key, f"must be a share between 0 and 1, got {share}",
                                 "0 < share < 1")
        split_seed = cfg.get("split_seed", 0)
        rest, self.test = data.split(ds, test_size=cfg.get("test", 0.2), seed=split_seed)
        self.train, self.validation = data.split(rest, test_size=cfg.get("validation", 0.2),
                                                 seed=split_seed)
        self.input_size = ds.n_features
        self.data_name = ds.name or cfg.get("name", cfg.get("file"))

    def factory(self, **grid_args):
        """One trial's model: the family with its fixed arguments and the grid's."""
        return self.cls(input_size=self.input_size, **{**self.fixed, **grid_args})


class _SweepBar:
    """Sweep progress: a bar of trials (done / to do, with an ETA) on a terminal, else one
    line per finished stack; nothing with --no-progress."""

    def __init__(self, show: bool | None):
        self.bar_wanted = sys.stderr.isatty() if show is None else show
        self.quiet = show is False
        self.bar = None

    def __call__(self, p) -> None:
        from aelab.store import eta_seconds

        if self.quiet:
            return
        if p.stack_trials == 0:
            print(f"aelab sweep: {p.total} trials; {p.reused} already in the store, "
                  f"{p.to_train} to train", file=sys.stderr, flush=True)
            if self.bar_wanted and p.to_train:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=p.to_train, unit="trial", desc="trials", file=sys.stderr)
            return
        if self.bar is not None:
            self.bar.update(p.stack_trials)
            return
        eta = eta_seconds(p.trained, p.to_train, p.elapsed)
        print(f"aelab sweep: {p.trained}/{p.to_train} trials trained (stack of "
              f"{p.stack_trials} in {p.stack_seconds:.1f} s); {p.elapsed:.0f} s elapsed, "
              f"ETA {eta:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sweep_figure(runs, best, name: str, metrics: list[str]):
    """``metrics`` against grid value ``name``, the other names held at the best setting."""
    import numpy as np

    from aelab.experiments import setting_label

    others = {k: v for k, v in best.setting.items() if k != name}
    part = runs.where(**others) if others else runs
    fig, axes = plots.new_figure(width=6.0, height=4.2)
    ax = axes[0, 0]
    values = list(dict.fromkeys(runs.table[name].tolist()))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    for i, metric in enumerate(metrics):
        s = part.summary(metric, by=[name])
        x = s[name].to_numpy(float) if numeric else np.array(
            [values.index(v) for v in s[name]], dtype=float)
        low = s["mean"] - s["ci_low"].fillna(s["mean"])
        high = s["ci_high"].fillna(s["mean"]) - s["mean"]
        ax.errorbar(x + (0 if numeric else 0.08 * i), s["mean"], yerr=[low, high], marker="o",
                    capsize=3, label=f"{metric} (mean, 95% CI over seeds)")
    if numeric and min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_xscale("log")
        plots.plain_log_ticks(ax, "x")
    if not numeric:
        ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(name)
    ax.set_ylabel("mean squared error")
    held = setting_label(others) if others else "no other grid names"
    ax.set_title(f"Error against {name}\n(others at the best setting: {held})", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _sweep_result(runs, cfg: _SweepConfig, executor, store) -> StudyResult:
    """The sweep as a report: error against each grid name, the best setting and those
    indistinguishable from it, the table."""
    from aelab.experiments import p_value_text
    select, metrics = cfg.select, cfg.metrics
    best = runs.best(select)
    seeds = f"{best.n} seeds"
    ci = "95% CI"
    first = (f"Best by {select}: {best.label}, {select} {best.mean:.4g} ({ci} "
             f"{best.ci_low:.4g} to {best.ci_high:.4g}, {seeds})")
    chosen = runs.where(**best.setting) if best.setting else runs
    for metric in metrics:
        if metric == select:
            continue
        s = chosen.summary(metric, by=[]).iloc[0]
        first += f"; its {metric} is {s['mean']:.4g} ({ci} {s['ci_low']:.4g} to {s['ci_high']:.4g})"
    findings = [first + "."]
    comparison = best.comparison if best.comparison is not None else None
    n_other = 0 if comparison is None else len(comparison)
    if n_other == 0:
        findings.append("The grid has one setting, so there is nothing to compare it with.")
    elif best.indistinguishable:
        same = comparison[~comparison["significant"]].sort_values("p_holm", ascending=False)
        listed = "; ".join(f"{r['b']} ({p_value_text(r['p_holm'])})" for _, r in
                           same.head(5).iterrows())
        more = f"; and {len(same) - 5} more" if len(same) > 5 else ""
        findings.append(
            f"{len(same)} of {n_other} other settings cannot be told apart from it in {select} "
            f"at 5% (Holm-corrected t-tests over the seeds they share): {listed}{more}.")
    else:
        findings.append(
            f"All {n_other} other settings have a higher {select} than it at 5% (Holm-corrected "
            f"t-tests over the seeds they share; largest p = "
            f"{comparison['p_holm'].max():.2g}).")
    diverged = int(runs.table["diverged"].sum())
    if diverged:
        findings.append(f"{diverged} of {len(runs)} trials diverged; they are kept with NaN "
                        "errors and left out of the means.")
    figures = {}
    for name in runs.grid_names:
        if runs.table[name].nunique(dropna=False) > 1:
            figures[f"error vs {name}"] = _sweep_figure(runs, best, name,
                                                        list(dict.fromkeys([select, *metrics])))
    summary = runs.summary(metrics[0])
    tables = {"trials": runs.table, f"summary of {metrics[0]}": summary}
    if comparison is not None and n_other:
        tables[f"{select} against the best"] = comparison
    config = {"config": str(cfg.path), **cfg.raw, "executor": str(executor), "store": str(store),
              "trained": runs.trained, "reused": runs.reused}
    result_metrics = {"trials": len(runs), "trained": runs.trained, "reused": runs.reused,
                      f"best_{select}": best.mean, "indistinguishable": len(best.indistinguishable)}
    return StudyResult(f"sweep: {cfg.title}", tables, figures, findings, config, result_metrics,
                       answer=findings[0])


def _sweep_status(path) -> int:
    from aelab.experiments import setting_label
    from aelab.store import ResultsStore

    with ResultsStore(path, writable=False) as store:
        status = store.status()
    if status["definition"] is None:
        print(f"{path}: an aelab store with no sweep recorded yet.")
        return 0
    missing = status["missing"]
    print(f"{path}: {status['done']} of {status['n_trials']} trials of its last sweep done, "
          f"{len(missing)} missing; {status['stored']} trials stored in all, from "
          f"{status['stacks']} stacks (last finished {status['last_finished'] or 'never'}).")
    by_setting: dict[str, list[int]] = {}
    for params, seed in missing:
        by_setting.setdefault(setting_label(params), []).append(seed)
    for i, (label, seeds) in enumerate(by_setting.items()):
        if i == 20:
            print(f"  ... and {len(by_setting) - 20} more settings")
            break
        print(f"  missing {label}: seed{'s' if len(seeds) > 1 else ''} "
              f"{', '.join(map(str, seeds))}")
    return 0


def _remove_if_no_trials(store: Path) -> None:
    """Delete a store this run created when it holds no finished trial."""
    from aelab.store import ResultsStore

    with contextlib.suppress(OSError, ValueError):
        with ResultsStore(store, writable=False) as opened:
            empty = opened.n_trials() == 0
        if empty:
            for path in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
                path.unlink(missing_ok=True)


def cmd_sweep(args) -> int:
    if args.status:
        if args.config:
            raise ValueError("give CONFIG.toml to run a sweep, or --status FILE to look at a "
                             "store, not both.")
        return _sweep_status(args.status)
    if not args.config:
        raise ValueError("aelab sweep needs CONFIG.toml (see examples/sweep.toml), or "
                         "--status FILE.")
    from aelab.experiments import sweep
    from aelab.store import WorkerLost

    cfg = _SweepConfig(args.config)
    with _removed_if_empty_on_error(_new_run_dir(args.out)) as out_dir:
        store = Path(args.store) if args.store else out_dir / "sweep.sqlite"
        bar = _SweepBar(_show_progress(args))
        options = {} if cfg.stack_size is None else {"stack_size": cfg.stack_size}
        try:
            runs = sweep(cfg.factory, cfg.train, validation=cfg.validation, test=cfg.test,
                         grid=cfg.grid, seeds=cfg.seeds, store=store, executor=args.executor,
                         progress=bar, keep_models=cfg.keep_models, device="cpu",
                         **options, **cfg.training)
        except WorkerLost as err:
            bar.close()
            print(f"aelab sweep: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            bar.close()
            print(f"\naelab sweep: interrupted; finished stacks are in {store.resolve()}; run "
                  f"the same command with --store {store} to resume.", file=sys.stderr)
            return 130
        except BaseException as err:
            if not args.store:  # nothing of this run is worth keeping in its output folder
                _remove_if_no_trials(store)
            if isinstance(err, ImportError):  # the Dask extra is missing: say how to install it
                raise ValueError(str(err)) from None
            raise
        finally:
            bar.close()
        result = _sweep_result(runs, cfg, args.executor, store)
        path = report.write(result, out_dir, title=f"aelab sweep: {cfg.title}")
    print(f"Trained {runs.trained} trials, reused {runs.reused} from the store.\n"
          f"Store: {store.resolve()}\nReport: {path.resolve()}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="output folder (default: a new runs/<timestamp>)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help="always show progress bars")
    bar.add_argument("--no-progress", action="store_true", help="never show progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aelab", description="Autoencoder experiments: run studies, train models, get reports.")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads for torch (default 1: aelab's models are tiny, and a second thread "
             "mostly spin-waits, which on a busy machine slows small convolutions many-fold)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run studies (all by default) and write one HTML report",
                       description="Run the named studies (all when none is named) in quick "
                                   "settings, or the course sizes with --full.")
    p.add_argument("studies", nargs="*", metavar="STUDY", help="study ids (see `aelab list`)")
    p.add_argument("--full", action="store_true", help="the course sizes instead of quick settings")
    p.add_argument("--dataset", choices=["digits", "mnist"], default=None,
                   help="images for the image studies (default digits; mnist needs --mnist-root)")
    p.add_argument("--mnist-root", metavar="DIR",
                   help="folder with the MNIST IDX files train-images-idx3-ubyte.gz, "
                        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                        "t10k-labels-idx1-ubyte.gz (gzipped or not); implies --dataset mnist")
    p.add_argument("--data", metavar="FILE",
                   help="run on your data (.npy/.npz/.csv); without STUDY names, runs every "
                        "study that takes it")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a study setting (repeatable), e.g. --set seeds=10; an "
                        "unknown name lists the valid ones")
    _add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="list the studies", description="List the studies.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train one autoencoder and write its report",
                       description="Train an MLP autoencoder on a built-in dataset "
                                   f"({', '.join(BUILTIN_DATA)}) or a .npy/.npz/.csv file.")
    p.add_argument("--data", default="moons",
                   help=f"{' | '.join(BUILTIN_DATA)} | PATH (default moons)")
    p.add_argument("--n", type=int, default=1000, help="points for moons/rectangle (default 1000)")
    p.add_argument("--bottleneck", type=int, default=1, help="bottleneck size (default 1)")
    p.add_argument("--hidden", type=int, default=64, help="hidden layer width (default 64)")
    p.add_argument("--layers", type=int, default=2, help="hidden layers per side (default 2)")
    p.add_argument("--epochs", type=int, default=200, help="epochs (default 200)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--noise-sigma", type=float, default=None,
                   help="train as a denoising AE with this input noise")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("summary", help="print a model's layers, output shapes and parameter counts",
                       description="Print each layer's output shape and parameter count, with "
                                   "the total, for a model built from these options or loaded "
                                   "from a file saved by `aelab train`.")
    p.add_argument("--model", default="autoencoder", choices=list(SUMMARY_MODELS),
                   help="model family (default autoencoder)")
    p.add_argument("--load", metavar="PATH", help="summarise a saved model file instead")
    p.add_argument("--input-size", type=int, default=2, help="features per sample (default 2)")
    p.add_argument("--image-shape", type=int, nargs=3, default=[1, 8, 8], metavar=("C", "H", "W"),
                   help="conv only: image shape (default 1 8 8)")
    p.add_argument("--bottleneck", type=int, default=1, help="bottleneck size (default 1)")
    p.add_argument("--hidden", type=int, default=64, help="hidden layer width (default 64)")
    p.add_argument("--layers", type=int, default=2,
                   help="hidden layers per side, autoencoder and vae (default 2)")
    p.add_argument("--blocks", type=int, default=2, help="resnet only: residual blocks (default 2)")
    p.add_argument("--skip", action="store_true", help="conv only: U-Net-style skip connections")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("sweep", help="train a grid of settings x seeds from a TOML config, "
                                     "resumably; report the best setting with CIs",
                       description="Run the sweep a TOML config describes (see "
                                   "examples/sweep.toml), writing every finished stack of "
                                   "trials to a results store; rerun with the same --store to "
                                   "train only what is missing. Or, with --status FILE, say "
                                   "what a store has done and what is missing.")
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the sweep's config file")
    p.add_argument("--store", metavar="FILE",
                   help="results store (SQLite) to write and resume from (default: "
                        "sweep.sqlite in the output folder)")
    p.add_argument("--executor", default="local", metavar="EXECUTOR",
                   help="where stacks train: local (default), processes:N, dask:ADDRESS or "
                        "dask-local:N (the last two need pip install aelab[dask])")
    p.add_argument("--status", metavar="FILE",
                   help="print what the store FILE has done and what is missing, and exit")
    p.add_argument("--out", help="output folder for the report (default: a new runs/<timestamp>)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true",
                     help="always draw the progress bar (default: on a terminal only; "
                          "otherwise one line per finished stack)")
    bar.add_argument("--no-progress", action="store_true", help="print no progress")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as err:
        print(f"aelab {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
