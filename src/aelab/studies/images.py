"""Image studies on digits (or MNIST): bottleneck sizes with a random forest, and AE vs PCA.

Every image study takes ``dataset="digits"`` (scikit-learn's 8x8 digits, the
default) or ``dataset="mnist"`` with ``mnist_root``, the folder holding the four
MNIST IDX files. The helpers here (loading, sizes, code scatter plots, the
elbow estimate) are shared with :mod:`aelab.studies.images_latent`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from aelab import data, plots
from aelab._checks import check_choice, check_positive_int
from aelab._seed import seeded
from aelab.baselines import PCA, CodeSampler
from aelab.evaluate import classifier_agreement, encode, reconstruct, reconstruction_error
from aelab.models import Autoencoder, LinearAutoencoder
from aelab.studies._base import StudyResult, study
from aelab.studies._common import collapsed, mean_predictor_mse, nearest_labels, setting
from aelab.train import train_autoencoder

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


def load_images(dataset: str = "digits", mnist_root=None, *, quick: bool = True,
                seed: int = 0) -> tuple[data.Dataset, data.Dataset]:
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
            raise ValueError(f"mnist_root={str(mnist_root)!r} was given but dataset='digits'; "
                             "pass dataset='mnist' (on the command line: --dataset mnist) to use it.")
        train, test = data.split(data.digits(), test_size=0.2, seed=seed)
    else:
        if mnist_root is None:
            raise ValueError(
                "dataset='mnist' needs mnist_root, the folder holding the four MNIST IDX files "
                "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
                "and t10k-labels-idx1-ubyte.gz (gzipped or not); on the command line: "
                "--mnist-root DIR.")
        train = data.mnist(mnist_root, train=True)
        test = data.mnist(mnist_root, train=False)
    return _subsample(train, sizes.n_train, seed), _subsample(test, sizes.n_test, seed + 1)


def pick_epochs(epochs: int | None, dataset: str, quick: bool, table: dict) -> int:
    """``epochs`` if given, else the study's default for ``dataset`` from ``table``,
    which maps ``(dataset, quick)`` to epochs."""
    return setting("epochs", epochs, quick, table[dataset, True], table[dataset, False])


def study_device(device, quick: bool):
    """Quick runs stay on the CPU (tiny models are faster there); full runs use CUDA when present."""
    return device if device is not None else ("cpu" if quick else None)


def train_each(models: dict, train: data.Dataset, *, trainer=train_autoencoder, **kwargs) -> dict:
    """Train each model in turn (in place) and move it to the CPU; returns label -> History.

    The models of an image study differ in shape (bottleneck sizes,
    architectures), so ``aelab.train_many``, which stacks models of one shape,
    does not apply; this is the one place to change if that ever changes.
    """
    histories = {}
    for label, model in models.items():
        histories[label] = trainer(model, train, **kwargs)
        model.cpu()
    return histories


def mean_image_mse(train: data.Dataset, test: data.Dataset) -> float:
    """Test MSE of always predicting the mean training image: what a collapsed model scores."""
    return mean_predictor_mse(test.X, mean_of=train.X)


def code_knn_accuracy(Z_train, y_train, Z_test, y_test, k: int = 5) -> float:
    """Share of test codes whose k nearest training codes vote for their true label.

    A number for "do the classes form clusters in code space?".
    """
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k).fit(np.asarray(Z_train), np.asarray(y_train))
    return float((knn.predict(np.asarray(Z_test)) == np.asarray(y_test)).mean())


def elbow(x, y) -> int | None:
    """Index of the elbow of a falling curve, or None when it has none.

    Both axes are scaled to [0, 1] and the elbow is the point farthest below
    the chord from the first to the last point: the idea of "kneedle"
    (Satopaa et al., 2011). The perpendicular distance to a fixed chord is
    proportional to the vertical one, so the vertical gap is used. A curve
    that does not fall overall, or never lies below its chord (straight or
    concave), has no elbow.

    >>> elbow([1, 2, 3, 4, 5], [10, 2, 1, 0.5, 0])
    1
    >>> elbow([1, 2, 3], [3, 2, 1]) is None
    True
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or x[-1] == x[0] or y[-1] >= y[0]:
        return None
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y.min()) / (y.max() - y.min())
    below_chord = yn[0] + (yn[-1] - yn[0]) * xn - yn
    best = int(np.argmax(below_chord))
    return best if below_chord[best] > 1e-9 else None


def one_per_class(ds: data.Dataset, n: int = 10) -> torch.Tensor:
    """Indices of the first image of each label (then further images), ``n`` in all."""
    if ds.y is None:
        return torch.arange(min(n, len(ds)))
    firsts = [int((ds.y == label).nonzero()[0]) for label in ds.y.unique()]
    rest = [i for i in range(len(ds)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:n])


def label_scatter(fig, axes, panels: dict, *, label_name: str = "digit label",
                  xlabel: str = "$z_1$", ylabel: str = "$z_2$", max_points: int = 5000) -> None:
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
        ax.scatter(Z[:, 0], Z[:, 1], c=colour_index, cmap=cmap, norm=norm, s=7, alpha=0.75,
                   linewidths=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), shrink=0.85,
                       ticks=np.arange(len(labels)), label=label_name)
    bar.ax.set_yticklabels([str(label) for label in labels])


# --- digits-bottleneck --------------------------------------------------------------------------

_AGREEMENT = "agreement with the forest's labels on the originals"
_BOTTLENECK_EPOCHS = {("digits", True): 40, ("digits", False): 300,
                      ("mnist", True): 5, ("mnist", False): 20}


def _synthetic_table(clf, train, samples: dict, test_proba: np.ndarray) -> pd.DataFrame:
    """Per bottleneck: how sure the forest is about the synthetic digits and whether its label
    matches the label of the nearest real training image (what the image most looks like)."""
    rows = []
    for b, X_syn in samples.items():
        proba = clf.predict_proba(X_syn.numpy())
        labels = clf.classes_[proba.argmax(1)]
        counts = np.bincount(np.searchsorted(clf.classes_, labels), minlength=len(clf.classes_))
        rows.append({
            "bottleneck": b,
            "n_synthetic": len(X_syn),
            "forest: mean max class probability": float(proba.max(1).mean()),
            "forest: share with max probability > 0.5": float((proba.max(1) > 0.5).mean()),
            "forest label = nearest training image's label": float(
                (labels == nearest_labels(train, X_syn.numpy())).mean()),
            "most common forest label": int(clf.classes_[counts.argmax()]),
            "its share": float(counts.max() / counts.sum()),
            "labels never given": int((counts == 0).sum()),
        })
    rows.append({
        "bottleneck": "real test images",
        "n_synthetic": len(test_proba),
        "forest: mean max class probability": float(test_proba.max(1).mean()),
        "forest: share with max probability > 0.5": float((test_proba.max(1) > 0.5).mean()),
    })
    table = pd.DataFrame(rows)
    counts = ["most common forest label", "labels never given"]
    table[counts] = table[counts].astype("Int64")  # integers, blank in the real-images row
    return table


def _label_histogram(clf, samples: dict, test_y, title: str):
    fig, axes = plots.new_figure(width=7.5, height=4.0)
    ax = axes[0, 0]
    classes = clf.classes_
    width = 0.8 / len(samples)
    for i, (b, X_syn) in enumerate(samples.items()):
        labels = clf.predict(X_syn.numpy())
        share = (labels[:, None] == classes[None, :]).mean(0)
        ax.bar(np.arange(len(classes)) + (i - (len(samples) - 1) / 2) * width, share, width,
               color=f"C{i}", label=f"GMM samples, bottleneck {b}")
    real = (np.asarray(test_y)[:, None] == classes[None, :]).mean(0)
    ax.step(np.arange(len(classes) + 1) - 0.5, np.r_[real, real[-1]], where="post", color="k",
            lw=1.2, label="true labels of the test set")
    ax.set_xticks(np.arange(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("label given by the random forest")
    ax.set_ylabel("share of samples")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


@study("digits-bottleneck", "Digits at bottleneck 2, 4, 8: reconstructions, random-forest labels, "
       "codes by label, GMM-sampled digits")
def digits_bottleneck(quick: bool = True, seed: int = 0, *, dataset: str = "digits",
                      mnist_root=None, bottlenecks=(2, 4, 8), epochs: int | None = None,
                      n_synthetic: int = 200, n_estimators: int = 100, device=None,
                      progress=None) -> StudyResult:
    """MLP autoencoders at several bottleneck sizes on digits, judged by a random forest.

    For each bottleneck size: the test reconstruction error and images; a
    RandomForestClassifier trained on the real training images labels the test
    set and each reconstructed test set (accuracy, agreement with its own labels
    on the originals, confusion matrices); the 2-D codes coloured by label; and
    a Gaussian mixture fitted to each code space generates synthetic digits,
    which the forest labels (histogram), with numbers saying how sure it is and
    whether its labels match the nearest real training image's.

    Parameters
    ----------
    quick : bool
        Few epochs (seconds); ``False`` trains for the full settings.
    seed : int
        Data split, model initialisation, training, forest and mixtures.
    dataset : {"digits", "mnist"}
    mnist_root : str or Path, optional
        Folder with the MNIST IDX files (``dataset="mnist"``).
    bottlenecks : sequence of int
        Code sizes; the 2-D codes are drawn for size 2 when it is among them.
    epochs : int, optional
        Overrides the default training length.
    n_synthetic : int
        Digits sampled from each mixture.

    Examples
    --------
    >>> result = digits_bottleneck(quick=True)  # doctest: +SKIP
    >>> result.metrics["forest_accuracy_test"] > 0.9  # doctest: +SKIP
    True
    """
    bottlenecks = [check_positive_int("bottlenecks[i]", b) for b in bottlenecks]
    if not bottlenecks:
        raise ValueError("bottlenecks must name at least one code size, got none.")
    n_synthetic = check_positive_int("n_synthetic", n_synthetic)
    sizes = image_sizes(dataset, quick)
    epochs = pick_epochs(epochs, dataset, quick, _BOTTLENECK_EPOCHS)
    train, test = load_images(dataset, mnist_root, quick=quick, seed=seed)
    d, shape = train.n_features, train.image_shape
    config = dict(dataset=dataset, bottlenecks=bottlenecks, layers=2,
                  **{**asdict(sizes), "n_train": len(train), "n_test": len(test)}, epochs=epochs, lr=3e-3, n_synthetic=n_synthetic,
                  n_estimators=n_estimators, seed=seed, quick=quick)

    models = {}
    for b in bottlenecks:
        with seeded(seed):
            models[b] = Autoencoder(d, b, sizes.hidden_size, 2)
    histories = train_each(models, train, epochs=epochs, batch_size=sizes.batch_size, lr=3e-3,
                           seed=seed, device=study_device(device, quick), progress=progress)
    X_hat = {b: reconstruct(m, test.X) for b, m in models.items()}
    mse = {b: reconstruction_error(m, test.X) for b, m in models.items()}
    baseline = mean_image_mse(train, test)

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import confusion_matrix

    # one forest for every comparison (aelab.evaluate.forest_report would refit it per size)
    clf = RandomForestClassifier(n_estimators=check_positive_int("n_estimators", n_estimators),
                                 random_state=seed, n_jobs=1 if quick else -1)
    clf.fit(train.X.numpy(), train.y.numpy())
    y_test = test.y.numpy()
    test_proba = clf.predict_proba(test.X.numpy())
    pred_test = clf.classes_[test_proba.argmax(1)]
    accuracy_test = float((pred_test == y_test).mean())
    labels = np.union1d(clf.classes_, y_test)
    confusions = {"test set": confusion_matrix(y_test, pred_test, labels=labels)}
    forest_rows = []
    for b in bottlenecks:
        pred_hat = clf.predict(X_hat[b].numpy())
        confusions[f"reconstructed, bottleneck {b}"] = confusion_matrix(y_test, pred_hat,
                                                                        labels=labels)
        forest_rows.append({
            "bottleneck": b,
            "test MSE": mse[b],
            "share of variance lost": mse[b] / baseline,
            "forest accuracy on reconstructions": float((pred_hat == y_test).mean()),
            _AGREEMENT: classifier_agreement(clf, test.X, X_hat[b]),
            "final train loss": histories[b].train_loss[-1],
        })
    errors = pd.DataFrame(forest_rows)

    samplers, samples = {}, {}
    for b, model in models.items():
        samplers[b] = CodeSampler(model, n_components="bic", random_state=seed).fit(train.X)
        samples[b] = samplers[b].sample(n_synthetic, seed=seed)[0]
    synthetic = _synthetic_table(clf, train, samples, test_proba)

    shown = one_per_class(test)
    rows = {"original": test.X[shown]}
    cells = {}
    for b in bottlenecks:
        key = f"bottleneck {b}"
        rows[key] = X_hat[b][shown]
        cells[key] = [str(v) for v in clf.predict(X_hat[b][shown].numpy())]
    figures = {
        "reconstructions": plots.image_grid(
            rows, shape, col_labels=[str(int(v)) for v in test.y[shown]], cell_labels=cells,
            xlabel="test image (true label); red: the forest's label for the reconstruction",
            ylabel="bottleneck size",
            title=f"{train.name}: test images and their reconstructions"),
        "confusion": plots.confusion_matrices(
            confusions, labels.tolist(),
            title=f"Random forest trained on {len(train)} real images: test set and reconstructions"),
    }
    n_show = 12
    syn_rows, syn_cells = {}, {}
    for b, X_syn in samples.items():
        key = f"bottleneck {b} ({samplers[b].n_components_} comp.)"
        syn_rows[key] = X_syn[:n_show]
        proba = clf.predict_proba(X_syn[:n_show].numpy())
        syn_cells[key] = [f"{clf.classes_[i]} {p:.0%}" for i, p in
                          zip(proba.argmax(1), proba.max(1))]
    figures["synthetic"] = plots.image_grid(
        syn_rows, shape, n=n_show, cell_labels=syn_cells, col_labels=range(1, n_show + 1),
        xlabel="synthetic sample; red: the forest's label and its probability",
        ylabel="Gaussian mixture on the codes",
        title="Synthetic digits decoded from GMM samples of the codes")
    figures["synthetic_labels"] = _label_histogram(
        clf, samples, test.y, title=f"The forest's labels for {n_synthetic} synthetic digits per size")

    findings = [
        "Test reconstruction MSE is "
        + ", ".join(f"{mse[b]:.4f} at bottleneck {b}" for b in bottlenecks)
        + f" (predicting the mean image: {baseline:.4f}); bottleneck {bottlenecks[-1]} loses "
        f"{100 * mse[bottlenecks[-1]] / baseline:.1f}% of the test variance, bottleneck "
        f"{bottlenecks[0]} {100 * mse[bottlenecks[0]] / baseline:.1f}%.",
        f"A random forest trained on the {len(train)} training images labels {accuracy_test:.1%} "
        f"of the {len(test)} test images correctly; on the reconstructions its accuracy is "
        + ", ".join(f"{r['forest accuracy on reconstructions']:.1%} (bottleneck {r['bottleneck']})"
                    for r in forest_rows)
        + ", and it gives the reconstruction the same label as the original for "
        + ", ".join(f"{r[_AGREEMENT]:.1%}"
                    for r in forest_rows) + " of the test images.",
    ]
    worst_b = bottlenecks[0]
    off = confusions[f"reconstructed, bottleneck {worst_b}"].copy()
    np.fill_diagonal(off, 0)
    i, j = np.unravel_index(off.argmax(), off.shape)
    if off[i, j] > 0:
        findings.append(
            f"The most frequent mistake on bottleneck-{worst_b} reconstructions: {off[i, j]} "
            f"test images of a {labels[i]} are labelled {labels[j]} (on the originals: "
            f"{confusions['test set'][i, j]}).")
    metrics = {"forest_accuracy_test": accuracy_test, "mean_image_mse": baseline}
    if 2 in models:
        Z_train, Z_test = encode(models[2], train.X), encode(models[2], test.X)
        knn = code_knn_accuracy(Z_train, train.y, Z_test, test.y)
        fig, axes = plots.new_figure(width=6.2, height=5.0)
        label_scatter(fig, axes[0], {f"{test.name}: 2-D codes of {len(test)} test images":
                                     (Z_test, test.y)})
        figures["codes_2d"] = fig
        findings.append(
            f"In the 2-D code space, the 5 nearest training codes vote for the right label for "
            f"{knn:.1%} of the test images (chance: {1 / len(labels):.0%}): the digits form "
            f"{'clear' if knn > 0.8 else 'partly overlapping' if knn > 0.5 else 'mostly mixed'} "
            "clusters.")
        metrics["code2_knn_accuracy"] = knn
    real_sure = float((test_proba.max(1) > 0.5).mean())
    for row in synthetic.to_dict("records")[:-1]:
        b, sure, match = row["bottleneck"], row["forest: share with max probability > 0.5"], \
            row["forest label = nearest training image's label"]
        # "what the images show" is measured by the label of the nearest real training image
        if match >= 0.75 and sure >= 0.5 * real_sure:
            verdict = "mostly match what the images show"
        elif sure < 0.5 * real_sure:
            verdict = "often do not match what the images show: the forest is unsure of many samples"
        else:
            verdict = ("often do not match what the images show: for many samples it names "
                       "another digit than the nearest real image's")
        findings.append(
            f"Bottleneck {b}: of {n_synthetic} digits sampled from a {samplers[b].n_components_}-"
            f"component mixture, the forest is sure (max class probability > 0.5) of "
            f"{sure:.0%} (real test images: {real_sure:.0%}) and its label equals the label of "
            f"the nearest real training image for {match:.0%}; "
            + (f"all {len(clf.classes_)} labels occur. " if row["labels never given"] == 0 else
               f"{int(row['labels never given'])} of {len(clf.classes_)} labels never occur. ")
            + f"The forest's labels {verdict}.")
        metrics[f"synthetic_sure_share_b{b}"] = sure
        metrics[f"synthetic_nearest_label_agreement_b{b}"] = match
    bad = [b for b in bottlenecks if collapsed(mse[b], baseline)]
    if bad:
        findings.append(f"Degenerate: the model(s) at bottleneck {bad} reconstruct no better than "
                        "the mean image; train longer or with another seed.")
    for r in forest_rows:
        b = r["bottleneck"]
        metrics[f"test_mse_b{b}"] = r["test MSE"]
        metrics[f"forest_accuracy_reconstructed_b{b}"] = r["forest accuracy on reconstructions"]
        metrics[f"forest_agreement_b{b}"] = r[_AGREEMENT]
    tables = {"errors and forest": errors, "synthetic digits": synthetic}
    return StudyResult("digits-bottleneck", tables, figures, findings, config, metrics)


# --- ae-vs-pca ------------------------------------------------------------------------------------

_PCA_EPOCHS = {("digits", True): 30, ("digits", False): 200,
               ("mnist", True): 3, ("mnist", False): 20}


def _error_curve_figure(bottlenecks, curves: dict, elbows: dict, title: str):
    fig, axes = plots.new_figure(width=7.0, height=4.6)
    ax = axes[0, 0]
    markers = {"MLP AE": "o", "linear AE": "s", "PCA": "^"}
    for i, (name, errors) in enumerate(curves.items()):
        k = elbows[name]
        label = f"{name} (elbow at {bottlenecks[k]})" if k is not None else f"{name} (no elbow)"
        ax.plot(bottlenecks, errors, marker=markers.get(name, "o"), ms=4, color=f"C{i}",
                label=label)
        if k is not None:
            ax.plot([bottlenecks[k]], [errors[k]], marker="*", ms=16, color=f"C{i}",
                    markeredgecolor="k", ls="none")
    ax.set_yscale("log")
    plots.plain_log_ticks(ax)
    ax.set_xticks(bottlenecks)
    ax.set_xlabel("bottleneck size (code dimensions)")
    ax.set_ylabel("test reconstruction MSE (log scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(title="star: elbow (kneedle)", fontsize="small")
    return fig


@study("ae-vs-pca", "Test reconstruction error vs bottleneck size 2..20: MLP AE, linear AE and "
       "PCA, with elbow estimates")
def ae_vs_pca(quick: bool = True, seed: int = 0, *, dataset: str = "digits", mnist_root=None,
              bottlenecks=None, epochs: int | None = None, device=None,
              progress=None) -> StudyResult:
    """Reconstruction error against code size for an MLP autoencoder, a linear one and PCA.

    The MLP autoencoder follows the course (one hidden layer each side: 784-512-b-512-784
    on MNIST, 64-128-b-128-64 on digits). PCA is fitted on the training images;
    its subspace is the best any linear autoencoder can reach on them, so the
    linear AE's gap to PCA *on the training images* is training that has not
    finished (on test images either can be ahead by chance). The elbow of each
    curve is estimated with :func:`elbow` (kneedle).

    Parameters
    ----------
    bottlenecks : sequence of int, optional
        Default 2, 4, 8, 12, 16, 20 (quick) or every size 2..20 (full).
    epochs : int, optional
        Overrides the default training length.

    Examples
    --------
    >>> result = ae_vs_pca(quick=True)  # doctest: +SKIP
    >>> list(result.tables)  # doctest: +SKIP
    ['errors', 'elbows']
    """
    if bottlenecks is None:
        bottlenecks = (2, 4, 8, 12, 16, 20) if quick else tuple(range(2, 21))
    bottlenecks = sorted(check_positive_int("bottlenecks[i]", b) for b in bottlenecks)
    if len(bottlenecks) < 1:
        raise ValueError("bottlenecks must name at least one code size, got none.")
    sizes = image_sizes(dataset, quick)
    epochs = pick_epochs(epochs, dataset, quick, _PCA_EPOCHS)
    train, test = load_images(dataset, mnist_root, quick=quick, seed=seed)
    d, shape = train.n_features, train.image_shape
    lr = {"MLP AE": 2e-3, "linear AE": 1e-2}  # the linear model tolerates (and needs) a larger step
    config = dict(dataset=dataset, n_train=len(train), n_test=len(test), bottlenecks=bottlenecks,
                  hidden_size=sizes.hidden_size, layers=1, batch_size=sizes.batch_size,
                  epochs=epochs, lr=lr, seed=seed, quick=quick,
                  elbow="kneedle: point farthest below the chord, both axes scaled to [0, 1]")
    dev = study_device(device, quick)
    errors = {"MLP AE": [], "linear AE": [], "PCA": []}
    train_errors = {"linear AE": [], "PCA": []}  # the linear AE's optimum is PCA's on train only
    pca_variance = []
    reconstructions = {}
    shown = one_per_class(test)
    grid_sizes = sorted({bottlenecks[0], bottlenecks[len(bottlenecks) // 2]})
    for b in bottlenecks:
        with seeded(seed):
            models = {"MLP AE": Autoencoder(d, b, sizes.hidden_size, 1),
                      "linear AE": LinearAutoencoder(d, b)}
        for name, model in models.items():
            train_each({name: model}, train, epochs=epochs, batch_size=sizes.batch_size,
                       lr=lr[name], seed=seed, device=dev, progress=progress)
            errors[name].append(reconstruction_error(model, test.X))
        train_errors["linear AE"].append(reconstruction_error(models["linear AE"], train.X))
        pca = PCA(b).fit(train.X)
        models["PCA"] = pca
        errors["PCA"].append(pca.reconstruction_error(test.X))
        train_errors["PCA"].append(pca.reconstruction_error(train.X))
        pca_variance.append(float(pca.explained_variance_ratio_.sum()))
        if b in grid_sizes:
            for name, model in models.items():
                reconstructions[f"{name}, b={b}"] = reconstruct(model, test.X[shown]) \
                    if name != "PCA" else model.reconstruct(test.X[shown])
    baseline = mean_image_mse(train, test)
    elbows = {name: elbow(bottlenecks, e) for name, e in errors.items()}
    table = pd.DataFrame({"bottleneck": bottlenecks,
                          **{f"{name} test MSE": e for name, e in errors.items()},
                          "MLP AE / PCA": np.array(errors["MLP AE"]) / np.array(errors["PCA"]),
                          "linear AE / PCA": np.array(errors["linear AE"]) / np.array(errors["PCA"]),
                          **{f"{name} train MSE": e for name, e in train_errors.items()},
                          "linear AE / PCA (train)": (np.array(train_errors["linear AE"])
                                                      / np.array(train_errors["PCA"])),
                          "PCA explained variance (train)": pca_variance})
    elbow_rows = []
    for name, k in elbows.items():
        elbow_rows.append({"method": name,
                           "elbow bottleneck": bottlenecks[k] if k is not None else None,
                           "test MSE at the elbow": errors[name][k] if k is not None else None,
                           f"test MSE at {bottlenecks[0]}": errors[name][0],
                           f"test MSE at {bottlenecks[-1]}": errors[name][-1]})
    elbow_table = pd.DataFrame(elbow_rows)

    mlp_ratio = table["MLP AE / PCA"].to_numpy()
    lin_ratio = table["linear AE / PCA"].to_numpy()
    lin_train = table["linear AE / PCA (train)"].to_numpy()
    lo, hi = int(np.argmin(lin_train)), int(np.argmax(lin_train))
    better = [b for b, r in zip(bottlenecks, mlp_ratio) if r < 1]
    findings = [
        f"At bottleneck {bottlenecks[0]} the MLP AE's test MSE is {errors['MLP AE'][0]:.4f}, "
        f"{mlp_ratio[0]:.2f} times PCA's {errors['PCA'][0]:.4f}; at {bottlenecks[-1]} it is "
        f"{errors['MLP AE'][-1]:.4f}, {mlp_ratio[-1]:.2f} times PCA's {errors['PCA'][-1]:.4f}. "
        + (f"The MLP AE beats PCA at all {len(bottlenecks)} sizes." if len(better) == len(bottlenecks)
           else f"The MLP AE beats PCA at bottleneck sizes {better}." if better else
           f"The MLP AE does not beat PCA at any size after {epochs} epochs.")
        + f" Predicting the mean image scores {baseline:.4f}.",
        f"On the {len(train)} training images the linear AE's error is {lin_train[lo]:.3f} "
        f"(bottleneck {bottlenecks[lo]}) to {lin_train[hi]:.3f} (bottleneck {bottlenecks[hi]}) "
        "times PCA's. PCA's subspace is the least squared error any linear code of that size "
        "can reach on these images, so "
        + ("the linear AE has (almost) converged to it"
           if lin_train[hi] < 1.05 else
           f"the excess is training the linear AE has not finished in {epochs} epochs")
        + f". On the test images the ratio is {lin_ratio.min():.3f} to {lin_ratio.max():.3f}"
        + (": below 1 somewhere, since PCA's subspace is fitted to the training images, not "
           "the test images." if lin_ratio.min() < 1 else "."),
        "Elbow estimates (the point farthest below the chord from the first to the last point, "
        "both axes scaled linearly to [0, 1], the kneedle idea): "
        + "; ".join(f"{name} at bottleneck {bottlenecks[k]} (MSE {errors[name][k]:.4f})"
                    if k is not None else f"{name}: none (the curve is not convex)"
                    for name, k in elbows.items())
        + (f". PCA's first {bottlenecks[elbows['PCA']]} components explain "
           f"{pca_variance[elbows['PCA']]:.1%} of the training variance."
           if elbows["PCA"] is not None else "."),
    ]
    bad = [b for b, e in zip(bottlenecks, errors["MLP AE"]) if collapsed(e, baseline)]
    if bad:
        findings.append(f"Degenerate: the MLP AE at bottleneck {bad} reconstructs no better than "
                        "the mean image.")
    figures = {
        "error_vs_bottleneck": _error_curve_figure(
            bottlenecks, errors, elbows,
            title=f"{train.name}: test reconstruction error vs bottleneck size"),
        "reconstructions": plots.image_grid(
            {"original": test.X[shown], **reconstructions}, shape,
            col_labels=[str(int(v)) for v in test.y[shown]], xlabel="test image (true label)",
            ylabel="method, bottleneck size b",
            title=f"{train.name}: reconstructions by MLP AE, linear AE and PCA"),
    }
    metrics = {"mean_image_mse": baseline}
    for name, key in (("MLP AE", "mlp"), ("linear AE", "linear"), ("PCA", "pca")):
        k = elbows[name]
        metrics[f"{key}_elbow"] = bottlenecks[k] if k is not None else None
        metrics[f"{key}_mse_b{bottlenecks[0]}"] = errors[name][0]
        metrics[f"{key}_mse_b{bottlenecks[-1]}"] = errors[name][-1]
    metrics["linear_over_pca_train_max"] = float(lin_train[hi])
    return StudyResult("ae-vs-pca", {"errors": table, "elbows": elbow_table}, figures, findings,
                       config, metrics)
