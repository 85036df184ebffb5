"""image-reruns: how much does one rerun of the image autoencoder change (course 003, Q1)?

The course ran its bottleneck-2 MNIST autoencoder three times and compared the
pictures by eye. This study trains the same autoencoder with several seeds
(:func:`aelab.sweep`, stacked), draws each run's codes and decoded latent grid
side by side, and measures the change instead of judging pictures: the spread
of the test error and of the 5-NN label accuracy of the codes over the runs
(CI over seeds), a Friedman test of whether the runs' per-image errors differ,
and the Procrustes disparity between the runs' code layouts
(:func:`scipy.spatial.procrustes`: 0 means the same layout up to shift,
rotation, reflection and scale; 1 means nothing in common), with the share of
nearest neighbours the runs' codes keep in common beside it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import procrustes

from aelab import plots
from aelab._checks import check_int, check_positive_float, check_positive_int
from aelab.baselines import PCA
from aelab.evaluate import encode, reconstruction_errors
from aelab.experiments import Runs, p_value_text, sweep
from aelab.models import Autoencoder
from aelab.studies._base import StudyResult, study
from aelab.studies._common import mean_predictor_mse
from aelab.studies.images import study_device
from aelab.studies.images_latent import (
    ci_text,
    code_knn_metric,
    code_range_grid,
    code_scatter,
    decode,
    grid_codes,
    grid_panel,
    image_settings,
    image_splits,
    still_falling,
    value_range,
)


@dataclass(frozen=True)
class RerunSettings:
    seeds: int = 3  # the course's three runs (full: 5); >= 3 for the Friedman test
    epochs: int = 150  # digits, batch 128: the validation MSE is flat from ~150 epochs (measured)
    batch_size: int = 128
    lr: float = 3e-3
    hidden_size: int = 128  # MLP width (the course's MNIST model: 512)
    layers: int = 2  # hidden layers in the encoder and in the decoder
    grid_size: int = 10  # images per side of each run's decoded latent grid
    still_falling: float = 0.02  # a validation-MSE fall over the last 10% of epochs above this
    # share of it counts as not converged (1% flags 150-epoch runs within 1% of 300 epochs')

    def __post_init__(self):
        if check_int("seeds", self.seeds, 1) < 3:
            raise ValueError(
                f"seeds must be >= 3 (runs to compare; the Friedman test needs "
                f"three), got {self.seeds}."
            )
        for name in ("epochs", "batch_size", "hidden_size"):
            check_positive_int(name, getattr(self, name))
        check_int("layers", self.layers, 0)
        check_positive_float("lr", self.lr)
        check_positive_float("still_falling", self.still_falling)
        if check_positive_int("grid_size", self.grid_size) < 2:
            raise ValueError(f"grid_size must be >= 2, got {self.grid_size}.")

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(seeds=5, epochs=300, batch_size=64, lr=2e-3)


_MNIST = {
    True: dict(epochs=5, batch_size=64, hidden_size=256),
    False: dict(epochs=20, batch_size=64, lr=1e-3, hidden_size=512),
}


def run(s: RerunSettings, train, val, test, *, seed: int = 0, device=None, progress=None) -> Runs:
    """The bottleneck-2 autoencoder once per seed."""
    metrics = {"knn_accuracy": code_knn_metric} if train.y is not None else {}
    return sweep(
        lambda: Autoencoder(train.n_features, 2, s.hidden_size, s.layers),
        train,
        validation=val,
        test=test,
        seeds=list(range(seed, seed + s.seeds)),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        metrics=metrics,
        device=device,
        progress=progress,
    )


def _neighbours(Z: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows (indices), [n, k]."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z, return_distance=False)[:, 1:]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of a point's neighbours in ``a`` that are also its neighbours in ``b``."""
    return float((a[:, :, None] == b[:, None, :]).any(2).mean())


def alignment(runs: Runs, train, test, k: int = 10) -> pd.DataFrame:
    """For every pair of runs, and each run against the first two principal components (a
    reference layout): the Procrustes disparity of the test codes, and the share of each test
    image's ``k`` nearest neighbours in code space that the two layouts share (any warp that
    keeps neighbourhoods keeps it)."""
    codes = {
        f"seed {sd}": encode(m, test.X).double().numpy()
        for sd, m in zip(runs.table["seed"], runs.models)
    }
    pca = PCA(2).fit(train.X).transform(test.X).double().numpy()
    k = min(k, len(test) - 1)
    near = {name: _neighbours(Z, k) for name, Z in [*codes.items(), ("PCA", pca)]}
    pairs = [(a, b, "run vs run") for a, b in itertools.combinations(codes, 2)]
    pairs += [(a, "PCA", "run vs PCA") for a in codes]
    return pd.DataFrame(
        [
            {
                "a": a,
                "b": b,
                "kind": kind,
                "disparity": procrustes({**codes, "PCA": pca}[b], codes[a])[2],
                "neighbour_overlap": _overlap(near[a], near[b]),
                "k": k,
            }
            for a, b, kind in pairs
        ]
    )


def per_image_test(runs: Runs, test) -> tuple[float, float]:
    """Friedman test of the runs' per-image test errors (images are the blocks): (statistic, p)."""
    errors = [reconstruction_errors(m, test.X).double().numpy() for m in runs.models]
    result = stats.friedmanchisquare(*errors)
    return float(result.statistic), float(result.pvalue)


def verdicts(runs: Runs, aligned: pd.DataFrame, friedman_p: float, tol: float = 0.01) -> dict:
    """The numbers the findings turn into words: spreads, the Friedman verdict, the layouts."""
    disparity = aligned.groupby("kind")["disparity"]
    overlap = (
        aligned.groupby("kind")["neighbour_overlap"].mean()
        if "neighbour_overlap" in aligned
        else None
    )
    between, to_pca = (
        aligned[aligned["kind"] == k]["disparity"].to_numpy() for k in ("run vs run", "run vs PCA")
    )
    return {
        "errors_differ": bool(friedman_p < 0.05),
        "mse": runs.summary("test_mse").iloc[0],
        "knn": runs.summary("knn_accuracy").iloc[0] if "knn_accuracy" in runs.table else None,
        "disparity": disparity.agg(["mean", "min", "max"]),
        "overlap": overlap,
        # every pair of runs closer to each other than any run is to PCA's layout
        "closer_than_pca": bool(between.max() < to_pca.min()),
        "falling": still_falling(runs, tol=tol),
    }


def findings(
    runs: Runs,
    aligned: pd.DataFrame,
    friedman: tuple[float, float],
    n_images: int,
    mean_mse: float,
    s: RerunSettings,
) -> tuple[list[str], str]:
    v = verdicts(runs, aligned, friedman[1], s.still_falling)
    n = len(runs)
    if v["falling"]:
        text = (
            f"Not converged at these settings; run --full: the validation loss of "
            f"{len(v['falling'])} of {n} runs still fell by more than "
            f"{s.still_falling:.0%} over the last 10% of the {s.epochs} epochs. No "
            "comparison is drawn."
        )
        return [text], text
    mse, table = v["mse"], runs.table
    d = v["disparity"]
    lines = [
        f"Test MSE over {n} runs: {ci_text(mse)}, from {table['test_mse'].min():.4f} to "
        f"{table['test_mse'].max():.4f} (run-to-run coefficient of variation "
        f"{mse['std'] / mse['mean']:.1%}; the mean image scores {mean_mse:.4f}).",
        "Per test image, the runs' errors "
        + ("differ" if v["errors_differ"] else "are indistinguishable")
        + f" (Friedman test over {n_images} images and {n} runs, chi^2 = {friedman[0]:.1f}, "
        f"{p_value_text(friedman[1])}).",
        f"Procrustes disparity of the test codes (0: the same layout up to shift, rotation, "
        f"reflection and scale; 1: nothing in common): between runs "
        f"{d.loc['run vs run', 'mean']:.3f} on average (from {d.loc['run vs run', 'min']:.3f} "
        f"to {d.loc['run vs run', 'max']:.3f} over {n * (n - 1) // 2} pairs); each run against "
        f"PCA's first two components {d.loc['run vs PCA', 'mean']:.3f} on average. "
        + (
            "Every pair of runs is closer to each other than any run is to PCA."
            if v["closer_than_pca"]
            else "Some pair of runs is at least as far apart as a run is from PCA's layout."
        ),
    ]
    if v["overlap"] is not None:
        k = int(aligned["k"].iloc[0])
        lines.append(
            f"Of each test image's {k} nearest neighbours in code space, two runs share "
            f"{v['overlap']['run vs run']:.0%} on average, a run and PCA "
            f"{v['overlap']['run vs PCA']:.0%} (by chance: {k / (n_images - 1):.0%})."
        )
    if v["knn"] is not None:
        knn = v["knn"]
        lines.insert(
            1,
            f"5-NN label accuracy from the 2-D codes: {ci_text(knn, '.3f')}, from "
            f"{table['knn_accuracy'].min():.3f} to {table['knn_accuracy'].max():.3f}.",
        )
    answer = (
        f"Over {n} reruns of the bottleneck-2 AE, test MSE {ci_text(mse)}; per-image errors "
        + ("differ" if v["errors_differ"] else "are indistinguishable")
        + f" (Friedman test over {n_images} images, {p_value_text(friedman[1])}); "
        "Procrustes disparity between runs "
        f"{d.loc['run vs run', 'mean']:.3f} on average."
    )
    return lines, answer


def figures(runs: Runs, s: RerunSettings, train, test) -> dict:
    n, m, span = len(runs), s.grid_size, value_range(train)
    fig, axes = plots.new_figure(ncols=n, nrows=2, width=3.8, height=3.8)
    code_scatter(
        fig,
        axes[0],
        {
            f"seed {sd}: test codes (MSE {mse:.4f})": (encode(model, test.X), test.y)
            for sd, mse, model in zip(runs.table["seed"], runs.table["test_mse"], runs.models)
        },
    )
    for ax, sd, model in zip(axes[1], runs.table["seed"], runs.models):
        z1, z2 = code_range_grid(encode(model, train.X), m)
        image = grid_panel(
            ax, decode(model, grid_codes(z1, z2)), train.image_shape, m, span, z1, z2
        )
        ax.set_title(f"seed {sd}: decoded grid over its codes' 1-99% range", fontsize="small")
    fig.colorbar(image, ax=axes[1].tolist(), label="pixel value", shrink=0.8)
    fig.suptitle(f"{train.name}: bottleneck-2 autoencoder, {n} runs that differ only in the seed")
    return {"runs": fig}


@study(
    "image-reruns",
    "The bottleneck-2 image AE rerun with several seeds: codes and decoded "
    "grids side by side, and the run-to-run change measured",
    settings=RerunSettings,
    data="image",
)
def image_reruns(
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
    """Rerun the image autoencoder with bottleneck 2 and measure how much the runs differ.

    Parameters
    ----------
    quick : bool
        :meth:`RerunSettings.quick` (3 runs) or :meth:`RerunSettings.full` (5 runs).
    seed : int
        The data split and the first of the seeds.
    data : Dataset, optional
        The user's images (with ``image_shape``); default the course's digits.
    dataset, mnist_root
        ``"digits"`` or ``"mnist"`` (with the folder of the MNIST files).
    **overrides
        Fields of :class:`RerunSettings`, e.g. ``seeds=5``.

    Examples
    --------
    >>> result = image_reruns(quick=True, epochs=2)  # doctest: +SKIP
    >>> sorted(result.figures)  # doctest: +SKIP
    ['runs']
    """
    train, val, test = image_splits(
        "image-reruns", data, dataset, mnist_root, quick=quick, seed=seed
    )
    s = image_settings(RerunSettings, quick, dataset if data is None else "user", _MNIST, overrides)
    runs = run(
        s, train, val, test, seed=seed, device=study_device(device, quick), progress=progress
    )
    aligned = alignment(runs, train, test)
    friedman = per_image_test(runs, test)
    mean_mse = mean_predictor_mse(test.X, mean_of=train.X)
    lines, answer = findings(runs, aligned, friedman, len(test), mean_mse, s)
    v = verdicts(runs, aligned, friedman[1], s.still_falling)
    metrics = {
        "test_mse_mean": v["mse"]["mean"],
        "test_mse_std": v["mse"]["std"],
        "test_mse_ci_low": v["mse"]["ci_low"],
        "test_mse_ci_high": v["mse"]["ci_high"],
        "friedman_p": friedman[1],
        "errors_differ": v["errors_differ"],
        "disparity_mean": v["disparity"].loc["run vs run", "mean"],
        "disparity_pca_mean": v["disparity"].loc["run vs PCA", "mean"],
        "mean_image_mse": mean_mse,
        "converged": not v["falling"],
    }
    if v["overlap"] is not None:
        metrics["neighbour_overlap_mean"] = v["overlap"]["run vs run"]
    if v["knn"] is not None:
        metrics.update(knn_accuracy_mean=v["knn"]["mean"], knn_accuracy_std=v["knn"]["std"])
    config = {
        **asdict(s),
        "bottleneck": 2,
        "dataset": dataset if data is None else train.name,
        "quick": quick,
        "seed": seed,
        "n_train": len(train),
        "n_validation": len(val),
        "n_test": len(test),
    }
    return StudyResult(
        "image-reruns",
        {"runs": runs.table, "procrustes": aligned},
        figures(runs, s, train, test),
        lines,
        config,
        {k: float(v) for k, v in metrics.items()},
        answer=answer,
    )
