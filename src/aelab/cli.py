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
