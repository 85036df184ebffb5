"""Studies on a bottleneck's size: AE vs PCA (``ae-vs-pca``) and what a classifier still
recognises in the reconstructions (``bottleneck``, course preset ``digits-bottleneck``).

Both run on any :class:`aelab.data.Dataset` (``data=``; ``bottleneck`` needs labels), on
scikit-learn's 8x8 digits (the default), or on MNIST (``dataset="mnist"`` with
``mnist_root``, the folder of the four IDX files). Image figures (reconstructions,
decoded grids, synthetic digits) are drawn only when the data carry an ``image_shape``.
Every model is trained by :func:`aelab.sweep` over several seeds; every comparison is a
:meth:`aelab.Runs.compare` row.

The helpers :func:`image_sizes`, :func:`load_images`, :func:`study_device` and
:func:`label_scatter` are also used by :mod:`aelab.studies.cnn_classifier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from scipy import stats

from aelab import data, plots
from aelab._checks import check_choice, check_int, check_positive_float, check_positive_int
from aelab.baselines import PCA, CodeSampler
from aelab.evaluate import encode, eval_mode, reconstruct
from aelab.experiments import Runs, p_value_text, sweep
from aelab.models import Autoencoder
from aelab.studies._base import StudyResult, check_study_data, preset, resolve_settings, study
from aelab.studies._common import (
    check_sequence,
    collapsed,
    mean_predictor_mse,
    nearest_labels,
    split3,
)

DATASETS = ("digits", "mnist")


@dataclass(frozen=True)
class ImageSizes:
    """Data and model sizes for one dataset at quick or full settings."""

    n_train: int | None  # training images used; None: all (digits: 1437, MNIST: 60,000)
    n_test: int | None  # test images used; None: all (digits: 360, MNIST: 10,000)
    hidden_size: int  # MLP width: the course's MNIST models are 784-512-...
    batch_size: int


# digits is small enough to use whole even in quick runs (few epochs keep them
# fast); quick MNIST runs subsample so that a study still takes seconds
SIZES = {
    ("digits", True): ImageSizes(None, None, hidden_size=128, batch_size=64),
    ("digits", False): ImageSizes(None, None, hidden_size=128, batch_size=64),
    ("mnist", True): ImageSizes(2000, 500, hidden_size=256, batch_size=64),
    ("mnist", False): ImageSizes(None, None, hidden_size=512, batch_size=64),
}


def image_sizes(dataset: str, quick: bool) -> ImageSizes:
    check_choice("dataset", dataset, DATASETS)
    return SIZES[dataset, bool(quick)]


def _subsample(ds: data.Dataset, n: int | None, seed: int) -> data.Dataset:
    if n is None or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    return ds.subset(torch.randperm(len(ds), generator=g)[:n].sort().values)


def _mnist_root_needed() -> ValueError:
    return ValueError(
        "dataset='mnist' needs mnist_root, the folder holding the four MNIST IDX files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        "and t10k-labels-idx1-ubyte.gz (gzipped or not); on the command line: --mnist-root DIR."
    )


def _digits_only(mnist_root) -> ValueError:
    return ValueError(
        f"mnist_root={str(mnist_root)!r} was given but dataset='digits'; pass "
        "dataset='mnist' (on the command line: --dataset mnist) to use it."
    )


def load_images(
    dataset: str = "digits", mnist_root=None, *, quick: bool = True, seed: int = 0
) -> tuple[data.Dataset, data.Dataset]:
    """``(train, test)`` images for a study: digits split 80/20, or MNIST's own train and test files.

    Quick settings use a random subsample of MNIST (see :data:`SIZES`).

    Raises
    ------
    ValueError
        For an unknown ``dataset``, or ``dataset="mnist"`` without ``mnist_root``.
    FileNotFoundError
        When an MNIST file is missing; the message names the four files and the folder.
    """
    sizes = image_sizes(dataset, quick)
    if dataset == "digits":
        if mnist_root is not None:
            raise _digits_only(mnist_root)
        train, test = data.split(data.digits(), test_size=0.2, seed=seed)
    else:
        if mnist_root is None:
            raise _mnist_root_needed()
        train = data.mnist(mnist_root, train=True)
        test = data.mnist(mnist_root, train=False)
    return _subsample(train, sizes.n_train, seed), _subsample(test, sizes.n_test, seed + 1)


def study_device(device, quick: bool):
    """Quick runs stay on the CPU (tiny models are faster there); full runs use CUDA when present."""
    return device if device is not None else ("cpu" if quick else None)


def mean_image_mse(train: data.Dataset, test: data.Dataset) -> float:
    """Test MSE of always predicting the mean training image: what a collapsed model scores."""
    return mean_predictor_mse(test.X, mean_of=train.X)


def code_knn_accuracy(Z_train, y_train, Z_test, y_test, k: int = 5) -> float:
    """Share of test codes whose k nearest training codes vote for their true label.

    A number for "do the classes form clusters in code space?".
    """
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(Z_train)))
    knn.fit(np.asarray(Z_train), np.asarray(y_train))
    return float((knn.predict(np.asarray(Z_test)) == np.asarray(y_test)).mean())


def one_per_class(ds: data.Dataset, n: int = 10) -> torch.Tensor:
    """Indices of the first image of each label (then further images), ``n`` in all."""
    if ds.y is None:
        return torch.arange(min(n, len(ds)))
    firsts = [int((ds.y == label).nonzero()[0]) for label in ds.y.unique()]
    rest = [i for i in range(len(ds)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:n])


def label_scatter(
    fig,
    axes,
    panels: dict,
    *,
    label_name: str = "digit label",
    xlabel: str = "$z_1$",
    ylabel: str = "$z_2$",
    max_points: int = 5000,
) -> None:
    """One scatter of 2-D codes per axis, coloured by class label, with one shared colour bar.

    ``panels`` maps a panel title to ``(Z, y)``; only the first two code
    dimensions are drawn.
    """
    import matplotlib as mpl
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm

    labels = np.unique(np.concatenate([np.asarray(y) for _, y in panels.values()]))
    cmap = mpl.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    norm = BoundaryNorm(np.arange(len(labels) + 1) - 0.5, cmap.N)
    for ax, (title, (Z, y)) in zip(axes, panels.items()):
        Z, y = np.asarray(Z)[:max_points], np.asarray(y)[:max_points]
        colour_index = np.searchsorted(labels, y)
        ax.scatter(
            Z[:, 0], Z[:, 1], c=colour_index, cmap=cmap, norm=norm, s=7, alpha=0.75, linewidths=0
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=list(axes),
        shrink=0.85,
        ticks=np.arange(len(labels)),
        label=label_name,
    )
    bar.ax.set_yticklabels([str(label) for label in labels])


# --- shared by ae-vs-pca and bottleneck ---------------------------------------------------------

# images used from MNIST's training and test files: quick runs subsample so they take seconds
MNIST_IMAGES = {True: (2000, 500), False: (None, None)}
LATE_SHARE = 0.1  # convergence is judged on the last 10% of the epochs
NOT_CONVERGED = "not converged at these settings; run --full"


def study_splits(
    name: str, data_, dataset: str = "digits", mnist_root=None, *, quick: bool = True, seed: int = 0
):
    """(train, validation, test) for study ``name``: select on validation, report on test.

    The user's ``data_`` (any :class:`aelab.data.Dataset`) or digits are split
    60/20/20 (:func:`split3`); MNIST's training file is split 80/20 into train and
    validation and its test file is the test set (quick runs use 2000 and 500 random
    images of them).

    >>> train, val, test = study_splits("ae-vs-pca", None)
    >>> len(train), len(val), len(test), train.image_shape
    (1077, 360, 360, (1, 8, 8))
    """
    data_ = check_study_data(name, "any", data_)
    check_choice("dataset", dataset, DATASETS)
    if data_ is not None:
        if dataset != "digits" or mnist_root is not None:
            raise ValueError(
                f"study {name!r} got data= and also dataset={dataset!r}, "
                f"mnist_root={mnist_root!r}; give one source of data."
            )
        return split3(data_, seed=seed)
    if dataset == "digits":
        if mnist_root is not None:
            raise _digits_only(mnist_root)
        return split3(data.digits(), seed=seed)
    if mnist_root is None:
        raise _mnist_root_needed()
    n_train, n_test = MNIST_IMAGES[bool(quick)]
    rest = _subsample(data.mnist(mnist_root, train=True), n_train, seed)
    train, val = data.split(rest, test_size=0.2, seed=seed)
    return train, val, _subsample(data.mnist(mnist_root, train=False), n_test, seed + 1)


def _settings(cls, quick: bool, dataset: str, mnist: dict, overrides: dict):
    """``cls``'s quick or full settings, MNIST's defaults (for ``dataset="mnist"``) under the
    user's ``overrides``."""
    pinned = mnist[bool(quick)] if dataset == "mnist" else {}
    return resolve_settings(cls, quick, {**pinned, **overrides})


def late_fall(history) -> float:
    """Relative fall of the validation loss over the last 10% of the epochs; NaN when too short.

    Compares the median loss of the last 5% of the epochs with that of the window as
    long that ends 10% of the epochs earlier (medians: one epoch's loss jumps).

    >>> from aelab.train import History
    >>> late_fall(History(test_loss=[4.0] * 18 + [2.0] * 2))  # halved in the last 10%
    0.5
    """
    loss = np.asarray(getattr(history, "test_loss", None) or [], dtype=float)
    k = max(1, round(LATE_SHARE * len(loss)))
    w = max(1, k // 2)
    if len(loss) < k + w:
        return float("nan")
    return float(1.0 - np.median(loss[-w:]) / np.median(loss[-k - w : -k]))


def versus_reference(
    runs: Runs, metric: str, reference, by: str = "bottleneck", alpha: float = 0.05
) -> pd.DataFrame:
    """Each setting's seeds against a reference measured once, by :meth:`Runs.compare`.

    Parameters
    ----------
    runs : Runs
    metric : str
    reference : float, dict of setting -> float, or 1-D array
        A fixed number per setting (PCA's test MSE): the seeds' differences from it are
        compared with a setting of zeros on the same seeds, a paired t-test against zero,
        which is the one-sample t-test. An array holds the reference's own observations
        (the forest's 0/1 correctness on each real test image): Welch's t-test of the
        seeds' values against them, which counts the reference's sampling error too
        (observations that are all equal are that fixed number).
    by : str
    alpha : float

    Returns
    -------
    pandas.DataFrame
        One row per setting: ``mean``, ``ci_low``, ``ci_high``, ``n`` of ``metric`` over
        seeds, the ``reference`` (its mean), ``difference``, ``test``, ``p``, and
        ``p_holm``, ``significant`` (Holm-corrected over the settings together).

    Examples
    --------
    >>> table = pd.DataFrame({"bottleneck": [2] * 5, "seed": range(5),
    ...                       "test_mse": [1.0, 1.1, 0.9, 1.05, 0.95]})
    >>> runs = Runs(table, [None] * 5, [None] * 5, ["bottleneck"])
    >>> row = versus_reference(runs, "test_mse", {2: 2.0}).iloc[0]
    >>> bool(row["significant"]), round(float(row["difference"]), 2), row["test"]
    (True, -1.0, 'paired t')
    >>> versus_reference(runs, "test_mse", np.array([0.0, 2.0] * 20)).iloc[0]["test"]
    'Welch t'
    """
    t = runs.table
    keys = list(dict.fromkeys(t[by]))
    if isinstance(reference, np.ndarray) and np.ptp(reference) == 0:
        reference = float(reference.ravel()[0])  # observations without spread: a fixed number
    if isinstance(reference, np.ndarray):
        sample = reference.astype(float).ravel()
        means = {k: float(sample.mean()) for k in keys}
        values = pd.DataFrame({by: t[by].astype(object), "seed": t["seed"], "value": t[metric]})
        # negative ids: no seed is shared with the runs, so compare() uses Welch's test
        ref_rows = pd.DataFrame(
            {by: "reference", "seed": -1 - np.arange(len(sample)), "value": sample}
        )
    else:
        means = {
            k: float(reference[k] if isinstance(reference, Mapping) else reference) for k in keys
        }
        values = pd.DataFrame(
            {by: t[by].astype(object), "seed": t["seed"], "value": t[metric] - t[by].map(means)}
        )
        ref_rows = pd.DataFrame({by: "reference", "seed": t["seed"].unique(), "value": 0.0})
    both = pd.concat([values, ref_rows], ignore_index=True)
    pseudo = Runs(both, [None] * len(both), [None] * len(both), [by])
    tests = pseudo.compare("value", against={by: "reference"}, alpha=alpha).set_index(f"{by}_b")
    out = runs.summary(metric, by=by).set_index(by)
    out["reference"] = [means[k] for k in out.index]
    out["difference"] = out["mean"] - out["reference"]
    for column in ("test", "p", "p_holm", "significant"):
        out[column] = [tests.loc[k, column] if k in tests.index else np.nan for k in out.index]
    out["significant"] = out["significant"].fillna(False).astype(bool)
    return out.reset_index()


def _verdict(
    row, converged: bool, lower: str, higher: str, same: str, higher_is_better: bool
) -> str:
    """The words for one :func:`versus_reference` row. While the model is still improving
    only a verdict in its favour stands (more training can only strengthen it); any other
    is withheld."""
    ahead = row["significant"] and (row["difference"] > 0) == higher_is_better
    if not (converged or ahead):
        return NOT_CONVERGED
    if not row["significant"]:
        return same
    return lower if row["difference"] < 0 else higher


def _ci(mean, low, high, fmt: str = ".4f") -> str:
    return f"{mean:{fmt}} (95% CI {low:{fmt}} to {high:{fmt}})"


def _converged(runs: Runs, still_falling: float) -> pd.Series:
    """Per bottleneck: the median late fall of the validation loss is below ``still_falling``."""
    falls = runs.table.groupby("bottleneck")["late_fall"].median()
    return falls.lt(still_falling)  # NaN (too few epochs to tell) counts as not converged


def _median_run(runs: Runs, bottleneck: int):
    """(model, seed) of the run with the median validation MSE at ``bottleneck``: the one shown."""
    part = runs.where(bottleneck=bottleneck)
    order = np.argsort(part.table["val_mse"].to_numpy())
    i = int(order[(len(order) - 1) // 2])
    return part.models[i], int(part.table["seed"].iloc[i])


def _decode(model, Z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), eval_mode(model) as device:
        return model.decode(Z.to(device)).cpu()


def _grid_panel(ax, images: torch.Tensor, image_shape, m: int, span: float, names) -> None:
    """``m * m`` decoded images on a grid of ±``span`` standard deviations, axes in those units."""
    _, H, W = image_shape
    gap = max(1, H // 8)
    mosaic = plots.tile_images(images.reshape(m, m, -1), image_shape, gap=gap)
    step = 2 * span / (m - 1)
    sx, sy = step / (W + gap), step / (H + gap)  # grid units per pixel
    left, top = -span - W / 2 * sx, span + H / 2 * sy
    plots.show_images(
        ax,
        mosaic,
        extent=(left, left + mosaic.shape[1] * sx, top - mosaic.shape[0] * sy, top),
        aspect=sx / sy,
    )
    ax.set_xlabel(f"{names[0]} (standard deviations)")
    ax.set_ylabel(f"{names[1]} (standard deviations)")


def _grid_units(m: int, span: float) -> torch.Tensor:
    """``m * m`` points of [-span, span]^2, row-major with the highest second value on top."""
    t = torch.linspace(-span, span, m)
    second, first = torch.meshgrid(t.flip(0), t, indexing="ij")
    return torch.stack([first, second], -1).reshape(m * m, 2)


def _scatter_panel(fig, axes, panels: dict, label_name: str) -> None:
    """Codes per panel, coloured by label when there are labels."""
    if all(y is not None for _, y in panels.values()):
        label_scatter(fig, axes, panels, label_name=label_name)
        return
    for ax, (title, (Z, _)) in zip(axes, panels.items()):
        ax.scatter(np.asarray(Z)[:5000, 0], np.asarray(Z)[:5000, 1], s=7, alpha=0.6)
        ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$")
        ax.grid(True, alpha=0.3)


# --- ae-vs-pca ------------------------------------------------------------------------------------


def elbow(sizes, errors, variance: float, min_gain: float) -> int | None:
    """The smallest size after which one more code dimension removes less than ``min_gain``
    of the variance; None when every step still gains more.

    The gain per dimension between neighbouring sizes tried is
    ``(errors[i] - errors[i + 1]) / (sizes[i + 1] - sizes[i]) / variance``. It
    depends only on the sizes around the elbow, so adding larger sizes never
    moves an elbow already found (it can only find one where there was none);
    a finer grid of sizes can.

    >>> elbow([2, 4, 8, 16], [0.05, 0.03, 0.02, 0.018], variance=0.07, min_gain=0.02)
    8
    >>> elbow([2, 4, 8], [0.05, 0.03, 0.02], variance=0.07, min_gain=0.02) is None
    True
    """
    order = np.argsort(np.asarray(sizes))
    sizes = np.asarray(sizes)[order]
    errors = np.asarray(errors, dtype=float)[order]
    gain = -np.diff(errors) / np.diff(sizes) / variance
    below = np.flatnonzero(gain < min_gain)
    return int(sizes[below[0]]) if len(below) else None


@dataclass(frozen=True)
class AeVsPcaSettings:
    bottlenecks: tuple[int, ...] = (2, 4, 8, 12, 16, 20)  # code sizes (sizes >= the data's
    # dimension are skipped); full: every size 2..20, as in the course (seed 003, Q3)
    hidden_size: int = 128  # one hidden layer each side: 64-128-b-128-64 on digits
    epochs: int = 60  # digits: the validation MSE falls <= 2.5% over the last 6 epochs and
    # every verdict matches the full settings' (at 40 epochs b=20 still fell 4.9% and read
    # "indistinguishable" where full settings find the AE lower)
    batch_size: int = 128
    lr: float = 5e-3  # Adam; 1e-3 (the course's) needs several times the epochs
    seeds: int = 5  # the AE's spread, compared with the deterministic PCA
    min_gain: float = 0.02  # elbow rule: one more code dimension must remove at least this
    # share of the data's variance (the mean-image MSE) to be worth it
    still_falling: float = 0.03  # validation MSE fall over the last 10% of epochs above which
    # a size counts as not converged (a verdict more training could overturn is withheld)
    grid_size: int = 9  # images per side of the decoded grids
    grid_span: float = 2.0  # decoded grids reach this many standard deviations from the centre

    def __post_init__(self):
        check_sequence("bottlenecks", self.bottlenecks, "(2, 8)")
        if not self.bottlenecks:
            raise ValueError("bottlenecks must list at least two code sizes, got none.")
        for i, b in enumerate(self.bottlenecks):
            check_positive_int(f"bottlenecks[{i}]", b)
        if len(set(self.bottlenecks)) < 2:
            raise ValueError(
                f"bottlenecks must list at least two different sizes (an elbow "
                f"needs a curve), got {self.bottlenecks}."
            )
        for name in ("hidden_size", "epochs", "batch_size", "seeds"):
            check_positive_int(name, getattr(self, name))
        for name in ("lr", "min_gain", "still_falling", "grid_span"):
            check_positive_float(name, getattr(self, name))
        check_int("grid_size", self.grid_size, 2)

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(bottlenecks=tuple(range(2, 21)), hidden_size=512, epochs=200, lr=2e-3, seeds=10)


# MNIST: 784 pixels, many more images; the course trains 784-512-b-512-784 for 20 epochs
_PCA_MNIST = {True: dict(hidden_size=256, epochs=20), False: dict(hidden_size=512, epochs=20)}


def _knn_metric(model, context) -> float:
    """5-NN label accuracy of the test codes from the training codes."""
    return code_knn_accuracy(
        encode(model, context.train.X),
        context.train.y,
        encode(model, context.test.X),
        context.test.y,
    )


def _pca_row(train, val, test, b: int) -> dict:
    pca = PCA(b).fit(train.X)
    row = {
        "bottleneck": b,
        "train_mse": pca.reconstruction_error(train.X),
        "val_mse": pca.reconstruction_error(val.X),
        "test_mse": pca.reconstruction_error(test.X),
        "explained_variance": float(pca.explained_variance_ratio_.sum()),
        "mean_val_mse": mean_image_mse(train, val),
        "mean_test_mse": mean_image_mse(train, test),
    }
    if train.y is not None:
        row["knn_accuracy"] = code_knn_accuracy(
            pca.transform(train.X), train.y, pca.transform(test.X), test.y
        )
    return row


def run_ae_vs_pca(
    s: AeVsPcaSettings, train, val, test, seed: int = 0, device=None, progress=None
) -> tuple[Runs, pd.DataFrame]:
    """The AE at every bottleneck over ``s.seeds`` seeds (one sweep), and PCA at each size."""
    d = train.n_features
    runs = sweep(
        lambda bottleneck: Autoencoder(d, bottleneck, s.hidden_size, 1),
        train,
        grid={"bottleneck": list(s.bottlenecks)},
        seeds=list(range(seed, seed + s.seeds)),
        validation=val,
        test=test,
        device=device,
        progress=progress,
        metrics={"knn_accuracy": _knn_metric} if train.y is not None else None,
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
    )
    runs.table["late_fall"] = [late_fall(h) for h in runs.histories]
    return runs, pd.DataFrame([_pca_row(train, val, test, b) for b in s.bottlenecks])


def ae_vs_pca_table(runs: Runs, pca: pd.DataFrame, s: AeVsPcaSettings) -> pd.DataFrame:
    """Per bottleneck: the AE's test MSE over seeds against PCA's, tested, with the verdict."""
    v = versus_reference(runs, "test_mse", dict(zip(pca["bottleneck"], pca["test_mse"])))
    val = runs.summary("val_mse", by="bottleneck").set_index("bottleneck")["mean"]
    converged = _converged(runs, s.still_falling)
    p = pca.set_index("bottleneck")
    v["verdict"] = [
        _verdict(
            r,
            bool(converged[r["bottleneck"]]),
            "AE lower",
            "PCA lower",
            "indistinguishable",
            higher_is_better=False,
        )
        for _, r in v.iterrows()
    ]
    return pd.DataFrame(
        {
            "bottleneck": v["bottleneck"],
            "AE val MSE": v["bottleneck"].map(val),
            "PCA val MSE": v["bottleneck"].map(p["val_mse"]),
            "AE test MSE": v["mean"],
            "ci_low": v["ci_low"],
            "ci_high": v["ci_high"],
            "seeds": v["n"],
            "PCA test MSE": v["reference"],
            "AE / PCA": v["mean"] / v["reference"],
            "p_holm": v["p_holm"],
            "significant": v["significant"],
            "converged": v["bottleneck"].map(converged).astype(bool),
            "verdict": v["verdict"],
            "PCA explained variance (train)": v["bottleneck"].map(p["explained_variance"]),
        }
    )


def ae_vs_pca_elbows(runs: Runs, pca: pd.DataFrame, s: AeVsPcaSettings) -> pd.DataFrame:
    """The elbow of each method's mean validation curve (:func:`elbow`), with its test MSE,
    and for the AE how many seeds' own curves give the same elbow."""
    variance = float(pca["mean_val_mse"].iloc[0])
    val = runs.summary("val_mse", by="bottleneck")
    test = runs.summary("test_mse", by="bottleneck").set_index("bottleneck")
    per_seed = [
        elbow(part["bottleneck"], part["val_mse"], variance, s.min_gain)
        for _, part in runs.table.groupby("seed")
    ]
    ae = elbow(val["bottleneck"], val["mean"], variance, s.min_gain)
    # the elbow depends only on the sizes up to the one after it: those must have converged
    converged = _converged(runs, s.still_falling)
    sizes = sorted(converged.index)
    upto = sizes if ae is None else sizes[: sizes.index(ae) + 2]
    rows = [
        {
            "method": "AE",
            "elbow": ae,
            "test MSE at the elbow": None if ae is None else test.loc[ae, "mean"],
            "ci_low": None if ae is None else test.loc[ae, "ci_low"],
            "ci_high": None if ae is None else test.loc[ae, "ci_high"],
            "seeds with this elbow": sum(e == ae for e in per_seed),
            "seeds": len(per_seed),
            "per-seed elbows": ", ".join(str(e) for e in per_seed),
            "converged": bool(converged[upto].all()),
        }
    ]
    p = pca.set_index("bottleneck")
    pe = elbow(pca["bottleneck"], pca["val_mse"], variance, s.min_gain)
    rows.append(
        {
            "method": "PCA",
            "elbow": pe,
            "test MSE at the elbow": None if pe is None else p.loc[pe, "test_mse"],
            "converged": True,
        }
    )
    return pd.DataFrame(rows)


def ae_vs_pca_findings(runs: Runs, pca: pd.DataFrame, s: AeVsPcaSettings) -> tuple[list[str], str]:
    """Sentences computed from the runs and PCA's numbers, and the one-line answer."""
    table, elbows = ae_vs_pca_table(runs, pca, s), ae_vs_pca_elbows(runs, pca, s)
    first, last = table.iloc[0], table.iloc[-1]
    groups = {
        v: table.loc[table["verdict"] == v, "bottleneck"].tolist()
        for v in dict.fromkeys(table["verdict"])
    }
    n = int(table["seeds"].min())

    def size(r):
        return (
            f"at bottleneck {r['bottleneck']} the AE's test MSE is "
            f"{_ci(r['AE test MSE'], r['ci_low'], r['ci_high'])}, {r['AE / PCA']:.2f} times "
            f"PCA's {r['PCA test MSE']:.4f} ({r['verdict']}, Holm-corrected "
            f"{p_value_text(r['p_holm'])})"
        )

    findings = [
        f"AE ({n} seeds) against PCA (deterministic) per bottleneck, by a one-sample t-test of "
        f"the AE's seeds against PCA's test MSE, Holm-corrected over the {len(table)} sizes: "
        + "; ".join(f"{v} at {b}" for v, b in groups.items())
        + ". In detail, "
        + size(first)
        + "; "
        + size(last)
        + "."
    ]
    variance = float(pca["mean_val_mse"].iloc[0])
    ae, pc = elbows.iloc[0], elbows.iloc[1]
    rule = (
        f"Elbow rule (independent of the largest size tried): the smallest size after which "
        f"one more code dimension lowers the validation MSE by less than {s.min_gain:.0%} of "
        f"the data's variance (mean-image MSE {variance:.4f}), per dimension between "
        "neighbouring sizes tried. "
    )
    if not ae["converged"]:
        ae_short = f"AE {NOT_CONVERGED}"
        ae_text = (
            f"{ae_short} (its validation MSE still fell by more than "
            f"{s.still_falling:.0%} over the last 10% of epochs)"
        )
    elif pd.isna(ae["elbow"]):
        ae_short = ae_text = "AE: no size tried meets the rule"
    else:
        agree = f"{int(ae['seeds with this elbow'])} of {int(ae['seeds'])} seeds"
        ae_short = f"AE {int(ae['elbow'])} ({agree})"
        ae_text = (
            f"AE: {int(ae['elbow'])} ({agree}' own curves agree; per seed "
            f"{ae['per-seed elbows']}), test MSE there "
            + _ci(ae["test MSE at the elbow"], ae["ci_low"], ae["ci_high"])
        )
    if pd.isna(pc["elbow"]):
        pca_short = pca_text = "PCA: no size tried meets the rule"
    else:
        share = pca.set_index("bottleneck").loc[int(pc["elbow"]), "explained_variance"]
        pca_short = f"PCA {int(pc['elbow'])}"
        pca_text = (
            f"PCA: {int(pc['elbow'])}, test MSE there {pc['test MSE at the elbow']:.4f}; "
            f"its first {int(pc['elbow'])} components explain {share:.1%} of the "
            "training variance"
        )
    findings.append(rule + ae_text + "; " + pca_text + ".")
    if "knn_accuracy" in runs.table and "knn_accuracy" in pca:
        b = int(first["bottleneck"])
        k = versus_reference(
            runs.where(bottleneck=b),
            "knn_accuracy",
            float(pca.set_index("bottleneck").loc[b, "knn_accuracy"]),
        ).iloc[0]
        words = _verdict(
            k,
            True,
            "lower for the AE",
            "higher for the AE",
            "indistinguishable",
            higher_is_better=True,
        )
        findings.append(
            f"Do the labels form clusters in the {b}-D code? The 5-nearest-neighbour label "
            f"accuracy of test codes is {_ci(k['mean'], k['ci_low'], k['ci_high'], '.1%')} for "
            f"the AE and {k['reference']:.1%} for PCA: {words} (one-sample t-test over "
            f"{int(k['n'])} seeds, {p_value_text(k['p'])})."
        )
    bad = [
        b
        for b, m in zip(table["bottleneck"], table["AE test MSE"])
        if collapsed(m, float(pca["mean_test_mse"].iloc[0]))
    ]
    if bad:
        findings.append(
            f"Degenerate: the AE at bottleneck {bad} reconstructs no better than "
            "predicting the mean; train longer or with another learning rate."
        )
    answer = (
        f"At bottleneck {first['bottleneck']} the AE's test MSE is "
        f"{_ci(first['AE test MSE'], first['ci_low'], first['ci_high'])} vs PCA's "
        f"{first['PCA test MSE']:.4f} ({first['verdict']}, {p_value_text(first['p_holm'])}"
        f", {n} seeds); elbow (<{s.min_gain:.0%} of the variance per extra dimension): "
        f"{ae_short}, {pca_short}."
    )
    return findings, answer


def _error_figure(table: pd.DataFrame, elbows: pd.DataFrame, mean_mse: float, name: str):
    fig, axes = plots.new_figure(width=7.0, height=4.6)
    ax = axes[0, 0]
    b = table["bottleneck"].to_numpy()
    mean = table["AE test MSE"].to_numpy()
    ax.errorbar(
        b,
        mean,
        yerr=[mean - table["ci_low"], table["ci_high"] - mean],
        marker="o",
        ms=4,
        capsize=3,
        color="C0",
        label=f"MLP AE (mean, 95% CI over {int(table['seeds'].min())} seeds)",
    )
    ax.plot(b, table["PCA test MSE"], marker="^", ms=4, color="C1", label="PCA")
    ax.axhline(mean_mse, color="0.4", ls="--", lw=1, label="predicting the mean")
    for i, (method, column) in enumerate((("AE", "AE test MSE"), ("PCA", "PCA test MSE"))):
        e = elbows.set_index("method").loc[method, "elbow"]
        if not pd.isna(e):
            y = table.set_index("bottleneck").loc[int(e), column]
            ax.plot(
                [e],
                [y],
                marker="*",
                ms=16,
                ls="none",
                color=f"C{i}",
                markeredgecolor="k",
                label=f"{method} elbow ({int(e)}, rule on validation MSE)",
            )
    ax.set_yscale("log")
    plots.plain_log_ticks(ax)
    ax.set_xticks(b)
    ax.set_xlabel("bottleneck size (code dimensions)")
    ax.set_ylabel("test reconstruction MSE (log scale)")
    ax.set_title(f"{name}: test reconstruction error vs bottleneck size")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def _latent_views(runs: Runs, s: AeVsPcaSettings, train, test, label_name: str):
    """PCA's 2-D view (components scaled by their standard deviations) beside the AE's at
    bottleneck 2: test codes by label and, for images, decoded grids (seed 003, Q2)."""
    pca = PCA(2).fit(train.X)
    scale = pca.explained_variance_.sqrt()
    views = {
        "PCA: first two components": (
            pca.transform(test.X),
            lambda t: pca.decode(t * scale),
            ("component 1", "component 2"),
        )
    }
    if 2 in s.bottlenecks:
        model, seed = _median_run(runs, 2)
        Z = encode(model, train.X)
        mu, sd = Z.mean(0), Z.std(0)
        views = {
            f"AE, bottleneck 2, seed {seed}": (
                encode(model, test.X),
                lambda t: _decode(model, mu + t * sd),
                ("$z_1$", "$z_2$"),
            ),
            **views,
        }
    image = train.image_shape is not None
    fig, axes = plots.new_figure(ncols=len(views), nrows=1 + image, width=5.0, height=4.6)
    _scatter_panel(
        fig, axes[0], {f"{k}: test codes": (v[0], test.y) for k, v in views.items()}, label_name
    )
    for ax, (_, _, names) in zip(axes[0], views.values()):
        ax.set(xlabel=names[0], ylabel=names[1])
    if image:
        m = s.grid_size
        for ax, (title, (_, decode, names)) in zip(axes[1], views.items()):
            _grid_panel(
                ax, decode(_grid_units(m, s.grid_span)), train.image_shape, m, s.grid_span, names
            )
            ax.set_title(f"{title.split(':')[0]}: decoded grid")
    fig.suptitle(
        f"{train.name}: PCA's view beside the AE's\n(AE: the seed with the median "
        f"validation MSE; grids span ±{s.grid_span:g} standard deviations)"
    )
    return fig


def _reconstruction_grid(runs: Runs, train, test, sizes):
    shown = one_per_class(test)
    rows = {"original": test.X[shown]}
    for b in sizes:
        model, _ = _median_run(runs, b)
        rows[f"AE, b={b}"] = reconstruct(model, test.X[shown])
        rows[f"PCA, b={b}"] = PCA(b).fit(train.X).reconstruct(test.X[shown])
    labels = [str(int(v)) for v in test.y[shown]] if test.y is not None else None
    return plots.image_grid(
        rows,
        train.image_shape,
        col_labels=labels,
        xlabel="test image" + (" (true label)" if labels else ""),
        ylabel="method, bottleneck size b",
        title=f"{train.name}: reconstructions by the AE and PCA",
    )


@study(
    "ae-vs-pca",
    "Reconstruction error vs bottleneck size for an MLP AE (over seeds) and "
    "PCA, elbows by a stated rule, and PCA's 2-D view beside the AE's",
    settings=AeVsPcaSettings,
    data="any",
)
def ae_vs_pca(
    quick: bool = True,
    seed: int = 0,
    data=None,
    *,
    dataset: str = "digits",
    mnist_root=None,
    device=None,
    progress=None,
    **overrides,
) -> StudyResult:
    """Test reconstruction error against code size: an MLP autoencoder over seeds vs PCA.

    The AE (one hidden layer each side, the course's 784-512-b-512-784 on MNIST)
    is trained at every bottleneck size over several seeds by one
    :func:`aelab.sweep`; PCA is fitted on the same training split. Per size the
    AE's seeds are tested against PCA's (deterministic) error; the elbow of each
    curve is picked on validation data by :func:`elbow` and its test error
    reported. PCA's view (issue 11, seed 003 Q2): the test set in its first two
    components coloured by label, and images decoded over a grid of those
    components scaled by their standard deviations, beside the AE's at bottleneck 2.

    Parameters
    ----------
    quick : bool
        Quick settings (seconds) or the course's (``False``).
    seed : int
        The data split; the AE seeds are ``seed .. seed + seeds - 1``.
    data : aelab.data.Dataset, optional
        Any data (default: digits); labels colour the code scatters, an
        ``image_shape`` adds the image figures.
    dataset, mnist_root
        ``"digits"`` or ``"mnist"`` (with the folder of the MNIST files).
    **overrides
        Fields of :class:`AeVsPcaSettings`, e.g. ``epochs=100``.

    Examples
    --------
    >>> result = ae_vs_pca(quick=True, bottlenecks=(2, 4), epochs=2, seeds=2)  # doctest: +SKIP
    >>> list(result.tables)  # doctest: +SKIP
    ['errors', 'elbows']
    """
    train, val, test = study_splits("ae-vs-pca", data, dataset, mnist_root, quick=quick, seed=seed)
    s = _settings(
        AeVsPcaSettings, quick, dataset if data is None else "user", _PCA_MNIST, overrides
    )
    sizes = tuple(sorted({b for b in s.bottlenecks if b < min(train.n_features, len(train))}))
    if len(sizes) < 2:
        raise ValueError(
            f"bottlenecks={s.bottlenecks}: at least two sizes must be smaller than "
            f"the data's {train.n_features} features; pass bottlenecks=(1, 2, ...)."
        )
    s = replace(s, bottlenecks=sizes)
    runs, pca = run_ae_vs_pca(s, train, val, test, seed, study_device(device, quick), progress)
    table, elbows = ae_vs_pca_table(runs, pca, s), ae_vs_pca_elbows(runs, pca, s)
    findings, answer = ae_vs_pca_findings(runs, pca, s)
    label_name = "digit label" if data is None else "label"
    figures = {
        "error_vs_bottleneck": _error_figure(
            table, elbows, float(pca["mean_test_mse"].iloc[0]), train.name
        ),
        "latent_views": _latent_views(runs, s, train, test, label_name),
    }
    if train.image_shape is not None:  # the smallest size and the first elbow (or the middle)
        found = elbows["elbow"].dropna()
        other = int(found.iloc[0]) if len(found) else sizes[len(sizes) // 2]
        figures["reconstructions"] = _reconstruction_grid(
            runs, train, test, sorted({sizes[0], other})
        )
    config = asdict(s) | dict(
        dataset=dataset if data is None else "user",
        quick=quick,
        seed=seed,
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        layers=1,
        elbow_rule=f"smallest size after which one more "
        f"dimension removes < {s.min_gain:.0%} of the variance",
    )
    metrics = {"mean_image_mse": float(pca["mean_test_mse"].iloc[0])}
    for _, r in table.iterrows():
        metrics[f"ae_test_mse_b{r['bottleneck']}"] = float(r["AE test MSE"])
        metrics[f"pca_test_mse_b{r['bottleneck']}"] = float(r["PCA test MSE"])
    for _, r in elbows.iterrows():
        metrics[f"{r['method'].lower()}_elbow"] = None if pd.isna(r["elbow"]) else int(r["elbow"])
    return StudyResult(
        "ae-vs-pca",
        {"errors": table, "elbows": elbows, "PCA": pca},
        figures,
        findings,
        config,
        metrics,
        answer=answer,
    )


# --- bottleneck (course preset: digits-bottleneck) ------------------------------------------------


@dataclass(frozen=True)
class BottleneckSettings:
    bottlenecks: tuple[int, ...] = (2, 4, 8)  # the course's sizes (seed 002, task 3)
    hidden_size: int = 128  # MLP width, 64-128-128-b-128-128-64 on digits
    layers: int = 2  # hidden layers each side (the course's task-1 model, reused)
    epochs: int = 60  # digits at batch 64: the validation MSE falls <= 2% over the last 6
    # epochs (at 40: 4% at b=8); the verdicts match the full settings'
    batch_size: int = 64
    lr: float = 3e-3  # Adam; the course's 1e-3 needs several times the epochs
    seeds: int = 5  # every comparison is a test over seeds
    n_estimators: int = 100  # trees of the random forest (scikit-learn's default)
    n_synthetic: int = 200  # samples decoded from each code mixture, per seed
    still_falling: float = 0.03  # validation MSE fall over the last 10% of epochs above which
    # a size counts as not converged (a verdict more training could overturn is withheld)

    def __post_init__(self):
        check_sequence("bottlenecks", self.bottlenecks, "(2, 8)")
        if not self.bottlenecks:
            raise ValueError("bottlenecks must list at least one code size, got none.")
        for i, b in enumerate(self.bottlenecks):
            check_positive_int(f"bottlenecks[{i}]", b)
        for name in ("hidden_size", "epochs", "batch_size", "seeds", "n_estimators", "n_synthetic"):
            check_positive_int(name, getattr(self, name))
        check_int("layers", self.layers, 0)
        for name in ("lr", "still_falling"):
            check_positive_float(name, getattr(self, name))

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(epochs=300, seeds=10, n_synthetic=1000)


_BOTTLENECK_MNIST = {
    True: dict(hidden_size=256, epochs=10),
    False: dict(hidden_size=512, epochs=20),
}
_MEASURES = (
    "forest_accuracy",
    "forest_agreement",
    "synthetic_nearest",
    "synthetic_confidence",
    "knn_accuracy",
)


def _binomial(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(int(k), int(n)).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def _forest_measures(forest, train, test, n_synthetic: int):
    """Sweep metrics reading one trial's model through the forest trained on real images.

    ``forest_accuracy``: accuracy on the reconstructed test set; ``forest_agreement``:
    share of reconstructions given the original's label; ``synthetic_nearest``: share of
    digits decoded from a Gaussian mixture on the codes (one component per class) whose
    forest label is the label of the nearest real training image (what they look
    like); ``synthetic_confidence``: the forest's mean top class probability on them.
    """
    pred_test = forest.predict(test.X.numpy())
    n_classes = len(np.unique(train.y.numpy()))
    cache: dict = {}

    def measure(model, context) -> dict:
        key = id(model)
        if key not in cache:
            X_hat = reconstruct(model, test.X).numpy()
            pred = forest.predict(X_hat)
            sampler = CodeSampler(
                model, n_components=min(n_classes, len(train)), random_state=context.seed
            ).fit(train.X)
            X_syn = sampler.sample(n_synthetic, seed=context.seed)[0].numpy()
            proba = forest.predict_proba(X_syn)
            cache[key] = {
                "forest_accuracy": float((pred == test.y.numpy()).mean()),
                "forest_agreement": float((pred == pred_test).mean()),
                "synthetic_nearest": float(
                    (forest.classes_[proba.argmax(1)] == nearest_labels(train, X_syn)).mean()
                ),
                "synthetic_confidence": float(proba.max(1).mean()),
                "knn_accuracy": _knn_metric(model, context),
            }
        return cache[key]

    return {
        name: (lambda model, context, name=name: measure(model, context)[name])
        for name in _MEASURES
    }


def run_bottleneck(
    s: BottleneckSettings, train, val, test, seed: int = 0, device=None, progress=None
) -> tuple[Runs, dict, object]:
    """One sweep over the bottleneck sizes and seeds, measured by a random forest trained once
    on the real training data; returns the runs, the real-data reference numbers and the forest."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(s.n_estimators, random_state=seed, n_jobs=1)
    forest.fit(train.X.numpy(), train.y.numpy())
    proba = forest.predict_proba(test.X.numpy())
    pred = forest.classes_[proba.argmax(1)]
    y_test = test.y.numpy()
    d = train.n_features
    runs = sweep(
        lambda bottleneck: Autoencoder(d, bottleneck, s.hidden_size, s.layers),
        train,
        grid={"bottleneck": list(s.bottlenecks)},
        seeds=list(range(seed, seed + s.seeds)),
        validation=val,
        test=test,
        device=device,
        progress=progress,
        metrics=_forest_measures(forest, train, test, s.n_synthetic),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
    )
    runs.table["late_fall"] = [late_fall(h) for h in runs.histories]
    reference = {
        "n_test": len(test),
        "correct_test": int((pred == y_test).sum()),
        # the course pitfall: the same forest scored on the images it was trained on
        "n_train": len(train),
        "correct_train": int((forest.predict(train.X.numpy()) == train.y.numpy()).sum()),
        # per real test image, to test against with their sampling error
        "real_correct": (pred == y_test).astype(float),
        "real_nearest": (pred == nearest_labels(train, test.X.numpy())).astype(float),
        "real_confidence": proba.max(1),
        "chance": float(np.unique(y_test, return_counts=True)[1].max() / len(y_test)),
        "mean_test_mse": mean_image_mse(train, test),
    }
    reference["real_accuracy"] = reference["correct_test"] / len(test)
    return runs, reference, forest


def bottleneck_tables(runs: Runs, ref: dict, s: BottleneckSettings) -> dict[str, pd.DataFrame]:
    """The forest on reconstructions vs real images, the synthetic samples vs real images
    (each per bottleneck, tested over seeds), and the course pitfall."""
    converged = _converged(runs, s.still_falling)
    mse = runs.summary("test_mse", by="bottleneck").set_index("bottleneck")
    acc = versus_reference(runs, "forest_accuracy", np.asarray(ref["real_correct"]))
    agree = runs.summary("forest_agreement", by="bottleneck").set_index("bottleneck")
    low, high = _binomial(ref["correct_test"], ref["n_test"])
    b = acc["bottleneck"]
    forest = pd.DataFrame(
        {
            "bottleneck": b,
            "test MSE": b.map(mse["mean"]),
            "MSE ci_low": b.map(mse["ci_low"]),
            "MSE ci_high": b.map(mse["ci_high"]),
            "share of variance lost": b.map(mse["mean"]) / ref["mean_test_mse"],
            "forest accuracy on reconstructions": acc["mean"],
            "ci_low": acc["ci_low"],
            "ci_high": acc["ci_high"],
            "seeds": acc["n"],
            "forest accuracy on real test images": acc["reference"],
            "real ci_low": low,
            "real ci_high": high,
            "p_holm": acc["p_holm"],
            "significant": acc["significant"],
            "converged": b.map(converged).astype(bool),
            "verdict": [
                _verdict(
                    r,
                    bool(converged[r["bottleneck"]]),
                    "lower on reconstructions",
                    "higher on reconstructions",
                    "indistinguishable",
                    True,
                )
                for _, r in acc.iterrows()
            ],
            "same label as the original": b.map(agree["mean"]),
            "agreement ci_low": b.map(agree["ci_low"]),
            "agreement ci_high": b.map(agree["ci_high"]),
        }
    )
    near = versus_reference(runs, "synthetic_nearest", np.asarray(ref["real_nearest"]))
    sure = versus_reference(runs, "synthetic_confidence", np.asarray(ref["real_confidence"]))
    synthetic = pd.DataFrame(
        {
            "bottleneck": near["bottleneck"],
            "samples per seed": s.n_synthetic,
            "forest label = nearest training label": near["mean"],
            "ci_low": near["ci_low"],
            "ci_high": near["ci_high"],
            "same on real test images": near["reference"],
            "p_holm": near["p_holm"],
            "verdict": [
                _verdict(
                    r,
                    bool(converged[r["bottleneck"]]),
                    "lower than on real images",
                    "higher than on real images",
                    "indistinguishable",
                    True,
                )
                for _, r in near.iterrows()
            ],
            "forest mean top probability": sure["mean"],
            "its ci_low": sure["ci_low"],
            "its ci_high": sure["ci_high"],
            "on real test images": sure["reference"],
            "top probability p_holm": sure["p_holm"],
        }
    )
    rows = []
    for where, k, n in (
        ("training images (the course's score)", ref["correct_train"], ref["n_train"]),
        ("held-out test images", ref["correct_test"], ref["n_test"]),
    ):
        low, high = _binomial(k, n)
        rows.append(
            {
                "forest scored on": where,
                "correct": k,
                "images": n,
                "accuracy": k / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    pitfalls = pd.DataFrame(rows)
    pitfalls["Fisher exact p (train vs test)"] = stats.fisher_exact(
        [[r["correct"], r["images"] - r["correct"]] for r in rows]
    ).pvalue
    return {"errors and forest": forest, "synthetic": synthetic, "course pitfalls": pitfalls}


def bottleneck_findings(runs: Runs, ref: dict, s: BottleneckSettings) -> tuple[list[str], str]:
    """Sentences computed from the runs and the real-data references, and the answer."""
    t = bottleneck_tables(runs, ref, s)
    forest, synthetic, pit = t["errors and forest"], t["synthetic"], t["course pitfalls"]
    n = int(forest["seeds"].min())
    real = _ci(
        ref["real_accuracy"], forest["real ci_low"].iloc[0], forest["real ci_high"].iloc[0], ".1%"
    )
    findings = [
        "Test reconstruction MSE (mean over seeds): "
        + "; ".join(
            f"{_ci(r['test MSE'], r['MSE ci_low'], r['MSE ci_high'])} at bottleneck "
            f"{r['bottleneck']} ({r['share of variance lost']:.0%} of the variance lost)"
            for _, r in forest.iterrows()
        )
        + f"; predicting the mean scores {ref['mean_test_mse']:.4f}.",
        f"A random forest trained on the {ref['n_train']} real training images labels "
        f"{real} of the {ref['n_test']} real test images correctly (exact binomial CI). On the "
        f"reconstructed test images ({n} seeds; Welch t-test of the seeds' accuracies against "
        f"the {ref['n_test']} real images' correctness, so that both samples' errors count, "
        "Holm-corrected over sizes): "
        + "; ".join(
            f"{_ci(r['forest accuracy on reconstructions'], r['ci_low'], r['ci_high'], '.1%')}"
            f" at bottleneck {r['bottleneck']}, {r['verdict']} "
            f"({p_value_text(r['p_holm'])}), same label as the original for "
            f"{r['same label as the original']:.1%}"
            for _, r in forest.iterrows()
        )
        + ".",
        f"Synthetic samples ({s.n_synthetic} per seed, decoded from a Gaussian mixture on the "
        "codes): the forest's label is the label of the nearest real training image (what the "
        "sample looks like) for "
        + "; ".join(
            f"{_ci(r['forest label = nearest training label'], r['ci_low'], r['ci_high'], '.1%')}"
            f" at bottleneck {r['bottleneck']} ({r['verdict']}, "
            f"{p_value_text(r['p_holm'])})"
            for _, r in synthetic.iterrows()
        )
        + f"; on the real test images {synthetic['same on real test images'].iloc[0]:.1%} "
        "(Welch t-tests, Holm-corrected over sizes). The forest's mean top class probability "
        "on them: "
        + ", ".join(f"{r['forest mean top probability']:.2f}" for _, r in synthetic.iterrows())
        + f" (real test images: {synthetic['on real test images'].iloc[0]:.2f}).",
    ]
    if "knn_accuracy" in runs.table and 2 in set(forest["bottleneck"]):
        k = versus_reference(runs.where(bottleneck=2), "knn_accuracy", ref["chance"]).iloc[0]
        words = _verdict(
            k, True, "below chance", "above chance", "indistinguishable from chance", True
        )
        findings.append(
            f"In the 2-D code, the 5 nearest training codes vote for the right label for "
            f"{_ci(k['mean'], k['ci_low'], k['ci_high'], '.1%')} of the test images: {words} "
            f"(the most common label's share, {ref['chance']:.1%}; {p_value_text(k['p'])})."
        )
    tr, te = pit.iloc[0], pit.iloc[1]
    p = float(pit["Fisher exact p (train vs test)"].iloc[0])
    findings.append(
        f"Course pitfall, scoring the forest on its training images: {tr['accuracy']:.1%} "
        f"({tr['correct']}/{tr['images']}) against {te['accuracy']:.1%} "
        f"({te['correct']}/{te['images']}) on held-out test images; "
        + (
            f"the training score is {100 * (tr['accuracy'] - te['accuracy']):.1f} points "
            f"{'higher' if tr['accuracy'] > te['accuracy'] else 'lower'}"
            if p < 0.05
            else "the two are indistinguishable"
        )
        + f" (Fisher's exact test, {p_value_text(p)}). Only held-out images measure accuracy."
    )
    if not forest["converged"].all():
        falling = forest.loc[~forest["converged"], "bottleneck"].tolist()
        findings.append(
            f"Not converged at bottleneck {falling}: the validation MSE still fell "
            f"by more than {s.still_falling:.0%} over the last 10% of epochs; "
            "verdicts that more training could overturn are withheld (run --full)."
        )
    bad = [
        r["bottleneck"]
        for _, r in forest.iterrows()
        if collapsed(r["test MSE"], ref["mean_test_mse"])
    ]
    if bad:
        findings.append(
            f"Degenerate: the models at bottleneck {bad} reconstruct no better than "
            "predicting the mean; train longer or with another learning rate."
        )
    answer = (
        f"The forest labels {ref['real_accuracy']:.1%} of real test images correctly; on "
        "reconstructions "
        + ", ".join(
            f"{r['forest accuracy on reconstructions']:.1%} (CI {r['ci_low']:.1%} to "
            f"{r['ci_high']:.1%}) at bottleneck {r['bottleneck']} ({r['verdict']})"
            for _, r in forest.iterrows()
        )
        + f", {n} seeds."
    )
    return findings, answer


def _samples(model, seed: int, train, n: int):
    """The synthetic samples the metrics measured for this model and seed (same mixture, same draw)."""
    k = min(len(np.unique(train.y.numpy())), len(train))
    return (
        CodeSampler(model, n_components=k, random_state=seed).fit(train.X).sample(n, seed=seed)[0]
    )


def _accuracy_figure(forest_table: pd.DataFrame, ref: dict, name: str):
    fig, axes = plots.new_figure(ncols=2, width=5.2, height=4.3)
    t = forest_table
    b = t["bottleneck"].to_numpy()
    n = int(t["seeds"].min())

    def bars(ax, mean, low, high, **kwargs):
        mean = np.asarray(mean, dtype=float)
        ax.errorbar(
            b,
            mean,
            yerr=[mean - np.asarray(low), np.asarray(high) - mean],
            capsize=3,
            marker="o",
            ms=4,
            **kwargs,
        )

    ax = axes[0, 0]
    bars(
        ax,
        t["test MSE"],
        t["MSE ci_low"],
        t["MSE ci_high"],
        color="C0",
        label=f"autoencoder (mean, 95% CI, {n} seeds)",
    )
    ax.axhline(ref["mean_test_mse"], color="0.4", ls="--", lw=1, label="predicting the mean")
    ax.set(
        xlabel="bottleneck size",
        ylabel="test reconstruction MSE",
        title="Reconstruction error",
        xticks=b,
        ylim=(0, None),
    )
    ax.legend(fontsize="small")
    ax = axes[0, 1]
    bars(
        ax,
        t["forest accuracy on reconstructions"],
        t["ci_low"],
        t["ci_high"],
        color="C1",
        label="accuracy on reconstructions",
    )
    bars(
        ax,
        t["same label as the original"],
        t["agreement ci_low"],
        t["agreement ci_high"],
        color="C2",
        label="same label as for the original",
    )
    ax.axhspan(
        t["real ci_low"].iloc[0],
        t["real ci_high"].iloc[0],
        color="0.85",
        label="accuracy on real test images (95% CI)",
    )
    ax.axhline(ref["real_accuracy"], color="0.3", lw=1)
    bottom = min(t["ci_low"].min(), t["agreement ci_low"].min(), t["real ci_low"].iloc[0])
    ax.set(
        xlabel="bottleneck size",
        ylabel="share of test images",
        xticks=b,
        ylim=(max(0.0, bottom - 0.05), 1.005),
        title="Random forest trained on real images",
    )
    ax.legend(fontsize="small", loc="lower right")
    fig.suptitle(f"{name}: what a bottleneck keeps (error bars: 95% CI over {n} seeds)")
    return fig


def _bottleneck_figures(
    runs: Runs, tables: dict, ref: dict, forest, s, train, test, label_name: str
) -> dict:
    from sklearn.metrics import confusion_matrix

    sizes = list(tables["errors and forest"]["bottleneck"])
    shown = {b: _median_run(runs, b) for b in sizes}
    figures = {
        "errors_and_accuracy": _accuracy_figure(tables["errors and forest"], ref, train.name)
    }
    y_test = test.y.numpy()
    labels = np.union1d(forest.classes_, y_test)
    matrices = {
        "real test images": confusion_matrix(y_test, forest.predict(test.X.numpy()), labels=labels)
    }
    for b, (model, _) in shown.items():
        matrices[f"reconstructed, b={b}"] = confusion_matrix(
            y_test, forest.predict(reconstruct(model, test.X).numpy()), labels=labels
        )
    figures["confusion"] = plots.confusion_matrices(
        matrices,
        labels.tolist(),
        title=f"Random forest trained on {len(train)} real images: "
        "real and reconstructed test images (the median-validation-MSE seed of each size)",
    )
    if 2 in shown:
        model, seed = shown[2]
        fig, axes = plots.new_figure(width=6.2, height=5.0)
        label_scatter(
            fig,
            axes[0],
            {
                f"{test.name}: 2-D codes of {len(test)} test images (seed {seed})": (
                    encode(model, test.X),
                    test.y,
                )
            },
            label_name=label_name,
        )
        figures["codes_2d"] = fig
    samples = {b: _samples(model, seed, train, s.n_synthetic) for b, (model, seed) in shown.items()}
    width = 0.8 / len(samples)
    fig, axes = plots.new_figure(width=7.5, height=4.0)
    ax = axes[0, 0]
    for i, (b, X_syn) in enumerate(samples.items()):
        share = (forest.predict(X_syn.numpy())[:, None] == labels[None, :]).mean(0)
        ax.bar(
            np.arange(len(labels)) + (i - (len(samples) - 1) / 2) * width,
            share,
            width,
            color=f"C{i}",
            label=f"mixture samples, bottleneck {b}",
        )
    real = (y_test[:, None] == labels[None, :]).mean(0)
    ax.step(
        np.arange(len(labels) + 1) - 0.5,
        np.r_[real, real[-1]],
        where="post",
        color="k",
        lw=1.2,
        label="true labels of the test set",
    )
    ax.set_xticks(np.arange(len(labels)), [str(c) for c in labels])
    ax.set(
        xlabel="label given by the random forest",
        ylabel="share of samples",
        title=f"The forest's labels for {s.n_synthetic} synthetic samples per size",
    )
    ax.legend(fontsize="small")
    figures["synthetic_labels"] = fig
    if train.image_shape is None:
        return figures
    first = one_per_class(test)
    rows, cells = {"original": test.X[first]}, {}
    for b, (model, _) in shown.items():
        rows[f"bottleneck {b}"] = reconstruct(model, test.X[first])
        cells[f"bottleneck {b}"] = [str(v) for v in forest.predict(rows[f"bottleneck {b}"].numpy())]
    figures["reconstructions"] = plots.image_grid(
        rows,
        train.image_shape,
        col_labels=[str(int(v)) for v in test.y[first]],
        cell_labels=cells,
        ylabel="bottleneck size",
        xlabel="test image (true label); red: the forest's label for the reconstruction",
        title=f"{train.name}: test images and their reconstructions",
    )
    n_show = 12
    syn_rows, syn_cells = {}, {}
    for b, X_syn in samples.items():
        proba = forest.predict_proba(X_syn[:n_show].numpy())
        syn_rows[f"bottleneck {b}"] = X_syn[:n_show]
        syn_cells[f"bottleneck {b}"] = [
            f"{forest.classes_[i]} {p:.0%}" for i, p in zip(proba.argmax(1), proba.max(1))
        ]
    figures["synthetic"] = plots.image_grid(
        syn_rows,
        train.image_shape,
        n=n_show,
        cell_labels=syn_cells,
        col_labels=range(1, n_show + 1),
        ylabel="Gaussian mixture on the codes",
        xlabel="synthetic sample; red: the forest's label and its probability",
        title="Synthetic samples decoded from Gaussian-mixture samples of the codes",
    )
    return figures


@study(
    "bottleneck",
    "Bottleneck sizes judged by a random forest: its accuracy on "
    "reconstructions and on mixture-sampled data vs real data, codes by label",
    settings=BottleneckSettings,
    data="any",
    labels=True,
)
def bottleneck(
    quick: bool = True,
    seed: int = 0,
    data=None,
    *,
    dataset: str = "digits",
    mnist_root=None,
    device=None,
    progress=None,
    **overrides,
) -> StudyResult:
    """MLP autoencoders at several bottleneck sizes, judged by a random forest (seed 002, task 3).

    A RandomForestClassifier trained once on the real training data labels the
    real test set, each seed's reconstructed test set, and samples decoded from a
    Gaussian mixture fitted to each seed's codes (one component per class).
    Reconstructions are tested against the real images' accuracy over seeds; a
    sample counts as recognised when the forest gives it the label of the nearest
    real training image (what it looks like), and that share is tested against
    the same share on real test images. The course pitfall of scoring the forest
    on its own training images is run and shown beside the held-out score.

    Parameters
    ----------
    quick : bool
        Quick settings (seconds) or the full ones (``False``).
    seed : int
        The data split and the forest; the AE seeds are ``seed .. seed + seeds - 1``.
    data : aelab.data.Dataset, optional
        Any labelled data (default: digits); an ``image_shape`` adds the image figures.
    dataset, mnist_root
        ``"digits"`` or ``"mnist"`` (with the folder of the MNIST files).
    **overrides
        Fields of :class:`BottleneckSettings`, e.g. ``bottlenecks=(2, 16)``.

    Examples
    --------
    >>> result = bottleneck(quick=True, epochs=2, seeds=2)  # doctest: +SKIP
    >>> sorted(result.tables)  # doctest: +SKIP
    ['course pitfalls', 'errors and forest', 'synthetic']
    """
    train, val, test = study_splits("bottleneck", data, dataset, mnist_root, quick=quick, seed=seed)
    if train.y is None:
        raise ValueError(
            f"study 'bottleneck' asks whether a classifier still recognises the "
            f"reconstructions, so it needs labels: data.y is None for "
            f"{train.name!r}; save them as 'y' in an .npz or a 'label' CSV column, "
            "or run 'ae-vs-pca' on unlabelled data."
        )
    s = _settings(
        BottleneckSettings, quick, dataset if data is None else "user", _BOTTLENECK_MNIST, overrides
    )
    too_big = [b for b in s.bottlenecks if b > train.n_features]
    if too_big:
        raise ValueError(
            f"bottlenecks={s.bottlenecks}: sizes {too_big} exceed the data's "
            f"{train.n_features} features; choose sizes <= {train.n_features}."
        )
    runs, ref, forest = run_bottleneck(
        s, train, val, test, seed, study_device(device, quick), progress
    )
    tables = bottleneck_tables(runs, ref, s)
    findings, answer = bottleneck_findings(runs, ref, s)
    figures = _bottleneck_figures(
        runs, tables, ref, forest, s, train, test, "digit label" if data is None else "label"
    )
    config = asdict(s) | dict(
        dataset=dataset if data is None else "user",
        quick=quick,
        seed=seed,
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
    )
    metrics = {
        "forest_accuracy_test": ref["real_accuracy"],
        "forest_accuracy_train": ref["correct_train"] / ref["n_train"],
        "mean_image_mse": ref["mean_test_mse"],
    }
    for _, r in tables["errors and forest"].iterrows():
        b = r["bottleneck"]
        metrics[f"test_mse_b{b}"] = float(r["test MSE"])
        metrics[f"forest_accuracy_reconstructed_b{b}"] = float(
            r["forest accuracy on reconstructions"]
        )
        metrics[f"forest_agreement_b{b}"] = float(r["same label as the original"])
    for _, r in tables["synthetic"].iterrows():
        metrics[f"synthetic_nearest_label_b{r['bottleneck']}"] = float(
            r["forest label = nearest training label"]
        )
    return StudyResult("bottleneck", tables, figures, findings, config, metrics, answer=answer)


digits_bottleneck = preset(
    "digits-bottleneck",
    "bottleneck",
    "Digits at bottleneck 2, 4, 8: "
    "reconstructions, random-forest labels with CIs over seeds, codes by "
    "label, GMM-sampled digits (seed 002, task 3)",
)
