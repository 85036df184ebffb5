"""cnn-classifier: a small CNN on digits or MNIST, its confusions, its features vs an AE's code.

The course (Problem 4.2) trains a CNN on MNIST, reads the confusion matrix
("1 and 7 are confused, ... 9 and 3") and compares the 2-D code of an
autoencoder with the classifier's features by eye. Here the classifier's
epoch is chosen on a validation split of the training images, everything is
reported on the test images, the confused pairs are counted from the matrix,
and the two 2-D views are compared by the label accuracy of a 5-nearest-
neighbour vote, with a paired exact test for the difference.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from aelab import data, plots
from aelab._checks import check_int, check_positive_float
from aelab._seed import seeded
from aelab.baselines import PCA
from aelab.evaluate import encode, eval_mode
from aelab.models import ConvAutoencoder, conv_output_size
from aelab.studies._base import StudyResult, resolve_settings, study
from aelab.studies.images import image_sizes, label_scatter, load_images, study_device
from aelab.train import TrainingDiverged, resolve_device, train_autoencoder

__all__ = ["SmallCNN", "cnn_classifier", "confused_pairs"]

KNN_K = 5  # neighbours in the label vote on 2-D codes, as in the other image studies
COURSE_PAIRS = ((1, 7), (3, 9))  # the pairs the course saw confused on MNIST


# --- the classifier -------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Two 3x3 convolutions (padding 1), each with ReLU and 2x2 max-pooling, then two linear layers.

    ``encode`` returns the penultimate features (the hidden linear layer after
    its ReLU); ``forward`` returns the class logits computed from them. Input
    can be flat ``[n, C*H*W]`` (as :class:`aelab.data.Dataset` stores images)
    or ``[n, C, H, W]``.

    Parameters
    ----------
    image_shape : (int, int, int)
        ``(channels, height, width)``; each pooling halves height and width
        (rounding down), so they must be at least 4.
    n_classes : int
    channels : (int, int)
        Feature maps of the two convolutions.
    hidden_size : int
        Width of the penultimate layer.

    Examples
    --------
    >>> model = SmallCNN((1, 8, 8), n_classes=10)
    >>> model(torch.zeros(3, 64)).shape, model.encode(torch.zeros(3, 64)).shape
    (torch.Size([3, 10]), torch.Size([3, 64]))
    """

    def __init__(self, image_shape, n_classes: int, channels=(16, 32), hidden_size: int = 64):
        super().__init__()
        c, h, w = (check_int(f"image_shape[{i}]", s, 1) for i, s in enumerate(image_shape))
        n_classes = check_int("n_classes", n_classes, 2)
        c1, c2 = (check_int(f"channels[{i}]", k, 1) for i, k in enumerate(channels))
        hidden_size = check_int("hidden_size", hidden_size, 1)
        if h < 4 or w < 4:
            raise ValueError(
                f"image_shape must have height and width >= 4 (two 2x2 poolings), "
                f"got {tuple(image_shape)}."
            )
        self.image_shape = (c, h, w)
        # a padded 3x3 convolution keeps the size; each 2x2 pooling halves it
        for _ in range(2):
            h, w = conv_output_size(h, 2, 2), conv_output_size(w, 2, 2)
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),  # (n, c2 * h * w)
        )
        self.hidden = nn.Sequential(nn.Linear(c2 * h * w, hidden_size), nn.ReLU())
        self.head = nn.Linear(hidden_size, n_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.features(x.reshape(-1, *self.image_shape)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))


@torch.no_grad()
def _logits(model: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    with eval_mode(model) as device:
        return torch.cat([model(x.to(device)).cpu() for x in X.split(batch_size)])


def _loss_and_accuracy(model, X, target) -> tuple[float, float]:
    logits = _logits(model, X)
    return (
        float(F.cross_entropy(logits, target)),
        float((logits.argmax(1) == target).float().mean()),
    )


def _train_classifier(
    model,
    fit: data.Dataset,
    val: data.Dataset,
    target_fit,
    target_val,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device,
    progress,
) -> tuple[pd.DataFrame, int]:
    """Adam on cross-entropy for ``epochs`` epochs; keeps the weights of the epoch with the lowest
    validation loss. Returns the per-epoch table and that epoch (1-based).

    ``aelab.train`` trains on reconstruction (its objectives see no labels), so the
    classifier has this short loop of its own, with the same habits: data as tensors,
    one index permutation per epoch from a generator seeded with ``seed``.
    """
    from tqdm.auto import tqdm

    device = resolve_device(device)
    model.to(device)
    X, y = fit.X.to(device), target_fit.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    rows, best_loss, best_epoch, best_state = [], math.inf, 0, None
    for epoch in tqdm(range(epochs), desc="SmallCNN", disable=not show, leave=False, unit="epoch"):
        model.train()
        losses = []
        for index in torch.randperm(len(X), generator=generator).to(device).split(batch_size):
            loss = F.cross_entropy(model(X[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach() * len(index))
        train_loss = float(torch.stack(losses).sum()) / len(X)  # the epoch's one host sync
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"the classifier's training loss became {train_loss} in epoch "
                f"{epoch + 1} (lr={lr}); lower the learning rate."
            )
        val_loss, val_accuracy = _loss_and_accuracy(model, val.X, target_val)
        if not math.isfinite(val_loss):
            raise TrainingDiverged(
                f"the classifier's validation loss became {val_loss} in epoch "
                f"{epoch + 1} (lr={lr}); lower the learning rate."
            )
        rows.append(
            {
                "epoch": epoch + 1,
                "train cross-entropy": train_loss,
                "validation cross-entropy": val_loss,
                "validation accuracy": val_accuracy,
            }
        )
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.cpu().eval()
    return pd.DataFrame(rows), best_epoch


# --- numbers from the confusion matrix and the codes ------------------------------------------


def confused_pairs(matrix, labels, top: int = 3) -> pd.DataFrame:
    """The ``top`` most-confused label pairs of a confusion matrix (rows: true, columns: predicted).

    A pair's count is symmetric: test images of ``a`` labelled ``b`` plus those
    of ``b`` labelled ``a``; its share is that count over all off-diagonal
    counts (all errors). Pairs are ranked by count, ties by label order; pairs
    never confused are left out.

    Examples
    --------
    >>> C = np.array([[5, 2, 0], [1, 7, 0], [0, 3, 4]])
    >>> confused_pairs(C, [0, 1, 2])[["pair", "count", "share of errors"]].to_dict("list")
    {'pair': ['0/1', '1/2'], 'count': [3, 3], 'share of errors': [0.5, 0.5]}
    """
    C = np.asarray(matrix)
    if C.ndim != 2 or C.shape != (len(labels), len(labels)):
        raise ValueError(
            f"matrix must be square with one row per label ({len(labels)}), got shape {C.shape}."
        )
    both = C + C.T
    i, j = np.triu_indices(len(C), 1)
    counts = both[i, j]
    errors = int(C.sum() - np.trace(C))
    order = np.lexsort((j, i, -counts))  # by count (descending), then by label order
    rows = []
    for k in order[:top]:
        if counts[k] == 0:
            break
        a, b = labels[i[k]], labels[j[k]]
        rows.append(
            {
                "pair": f"{a}/{b}",
                "label a": a,
                "label b": b,
                "a labelled b": int(C[i[k], j[k]]),
                "b labelled a": int(C[j[k], i[k]]),
                "count": int(counts[k]),
                "share of errors": counts[k] / errors,
            }
        )
    columns = [
        "pair",
        "label a",
        "label b",
        "a labelled b",
        "b labelled a",
        "count",
        "share of errors",
    ]
    return pd.DataFrame(rows, columns=columns)


def _pair_counts(C: np.ndarray) -> np.ndarray:
    """The symmetric confusion count of every unordered label pair, flat."""
    return (C + C.T)[np.triu_indices(len(C), 1)]


def _pair_standing(C: np.ndarray, labels, a, b) -> tuple[int, int] | None:
    """``(count, pairs with a larger count)`` for the pair a/b; None if a label is absent."""
    labels = list(labels)
    if a not in labels or b not in labels:
        return None
    i, j = labels.index(a), labels.index(b)
    count = int(C[i, j] + C[j, i])
    return count, int((_pair_counts(C) > count).sum())


def _wilson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _knn_correct(Z_fit, y_fit, Z_test, y_test, k: int = KNN_K) -> np.ndarray:
    """Per test point: whether the ``k`` nearest fitting points vote for its label."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k).fit(np.asarray(Z_fit), np.asarray(y_fit))
    return knn.predict(np.asarray(Z_test)) == np.asarray(y_test)


def _mcnemar_exact(a_right: np.ndarray, b_right: np.ndarray) -> tuple[int, int, float]:
    """Discordant counts (only a right, only b right) and the exact McNemar p-value (two-sided
    binomial test of the discordant pairs against 1/2)."""
    from scipy.stats import binomtest

    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


# --- figures ----------------------------------------------------------------------------------


def _confusion_figure(C, labels, title: str):
    fig = plots.confusion_matrices({"test set": C}, labels, title=title)
    fig.set_size_inches(6.4, 5.4)  # ~700 px wide in the report: counts stay readable
    return fig


def _training_figure(table: pd.DataFrame, best_epoch: int, title: str):
    fig, axes = plots.new_figure(width=6.4, height=4.0)
    ax = axes[0, 0]
    ax.plot(table["epoch"], table["train cross-entropy"], marker="o", ms=3, label="training part")
    ax.plot(
        table["epoch"], table["validation cross-entropy"], marker="o", ms=3, label="validation part"
    )
    ax.axvline(
        best_epoch,
        color="k",
        ls=":",
        lw=1,
        label=f"kept: epoch {best_epoch} (lowest validation loss)",
    )
    ax.set_yscale("log")
    plots.plain_log_ticks(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (log scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


def _codes_figure(panels: dict, title: str):
    fig, axes = plots.new_figure(ncols=2, width=4.6, height=4.4)
    label_scatter(fig, axes[0], panels)
    axes[0, 1].set_xlabel("principal component 1")
    axes[0, 1].set_ylabel("principal component 2")
    fig.suptitle(title)
    return fig


# --- the study ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CNNSettings:
    """Training settings (digits by default; MNIST has its own, see :data:`_MNIST`)."""

    epochs: int = 12  # classifier epochs at most; the one with the lowest validation loss is kept
    ae_epochs: int = 15  # the 2-D autoencoder's training length
    batch_size: int = 64  # the course's 64
    lr: float = 3e-3  # Adam, for both models
    val_share: float = 0.2  # of the training images, held out to choose the classifier's epoch

    def __post_init__(self):
        for name in ("epochs", "ae_epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_positive_float("lr", self.lr)
        if not 0 < self.val_share < 1:
            raise ValueError(f"val_share must be in (0, 1), got {self.val_share!r}.")

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(epochs=60, ae_epochs=200, lr=1e-3)


_MNIST = {  # quick, full; the course: 10 epochs of batches of 64 on MNIST's 60,000 images
    True: CNNSettings(epochs=4, ae_epochs=4, lr=2e-3, val_share=0.1),
    False: CNNSettings(epochs=10, ae_epochs=10, lr=1e-3, val_share=0.1),
}


def _settings(dataset: str, quick: bool, overrides: dict) -> CNNSettings:
    s = resolve_settings(CNNSettings, quick, overrides)  # checks the names and values
    if dataset != "mnist":
        return s
    return replace(_MNIST[bool(quick)], **{k: v for k, v in overrides.items() if v is not None})


def _verdict(p: float, acc_ae: float, acc_cnn: float) -> str:
    if p >= 0.05:
        return "no difference is detected at the 5% level"
    better = "the CNN's PCA'd features" if acc_cnn > acc_ae else "the autoencoder's code"
    return f"the {KNN_K}-NN vote is right more often on {better} (significant at the 5% level)"


@study(
    "cnn-classifier",
    "A small CNN on digits (or MNIST): test accuracy, confusion matrix, "
    "most-confused pairs, its PCA'd features vs a 2-D autoencoder code",
    settings=CNNSettings,
)
def cnn_classifier(
    quick: bool = True,
    seed: int = 0,
    *,
    dataset: str = "digits",
    mnist_root=None,
    progress=None,
    **overrides,
) -> StudyResult:
    """A small CNN classifier, its confusions, and its features next to an autoencoder's 2-D code.

    The CNN (:class:`SmallCNN`) is trained on part of the training images; the
    epoch with the lowest cross-entropy on the rest (the validation part) is
    kept. On the test images: accuracy with a 95% Wilson interval, the
    confusion matrix, and the three most-confused label pairs. A convolutional
    autoencoder with a 2-number code is trained on the same training part; its
    test codes and the CNN's penultimate features reduced to 2-D by PCA (fitted
    on the training part) are compared by how often the 5 nearest training
    points vote for the right label, with an exact McNemar test over the test
    images for the difference.

    Parameters
    ----------
    quick : bool
        Quick settings (seconds; MNIST subsampled to 2,000/500 images) or the course's sizes.
    seed : int
        Seeds the splits, the weights and the data order.
    dataset : {"digits", "mnist"}
        scikit-learn's 8x8 digits, or MNIST from ``mnist_root``.
    mnist_root : str or Path, optional
        The folder holding the four MNIST IDX files (needs ``dataset="mnist"``).
    **overrides
        Fields of :class:`CNNSettings`, e.g. ``epochs=3`` (the classifier's most
        epochs) or ``ae_epochs=3``.
    progress : bool, optional
        Progress bars over epochs; by default only when stderr is a terminal.

    Examples
    --------
    >>> result = cnn_classifier(quick=True)  # doctest: +SKIP
    >>> sorted(result.figures)  # doctest: +SKIP
    ['codes_2d', 'confusion', 'training']
    """
    seed = check_int("seed", seed, 0)
    image_sizes(dataset, quick)  # checks dataset before anything is loaded
    defaults = _settings(dataset, quick, overrides)
    epochs_cnn, epochs_ae = defaults.epochs, defaults.ae_epochs
    train, test = load_images(dataset, mnist_root, quick=quick, seed=seed)
    fit, val = data.split(train, test_size=defaults.val_share, seed=seed)
    shape = train.image_shape
    classes = np.unique(np.concatenate([train.y.numpy(), test.y.numpy()]))
    labels = classes.tolist()

    def targets(ds):  # class indices 0..n_classes-1 for cross-entropy
        return torch.from_numpy(np.searchsorted(classes, ds.y.numpy()))

    device = study_device(None, quick)
    with seeded(seed):
        cnn = SmallCNN(shape, len(classes))
        ae = ConvAutoencoder(shape, 2)
    history, best_epoch = _train_classifier(
        cnn,
        fit,
        val,
        targets(fit),
        targets(val),
        epochs=epochs_cnn,
        batch_size=defaults.batch_size,
        lr=defaults.lr,
        seed=seed,
        device=device,
        progress=progress,
    )
    train_autoencoder(
        ae,
        fit,
        epochs=epochs_ae,
        batch_size=defaults.batch_size,
        lr=defaults.lr,
        seed=seed,
        device=device,
        progress=progress,
    )
    ae.cpu()

    # --- the classifier on the test images
    from sklearn.metrics import confusion_matrix

    y_test = test.y.numpy()
    predicted = classes[_logits(cnn, test.X).argmax(1).numpy()]
    n_test, n_right = len(test), int((predicted == y_test).sum())
    accuracy = n_right / n_test
    ci = _wilson(n_right, n_test)
    C = confusion_matrix(y_test, predicted, labels=classes)
    pairs = confused_pairs(C, labels)
    n_errors = n_test - n_right
    val_accuracy = float(history.loc[best_epoch - 1, "validation accuracy"])

    # --- the 2-D views: the AE's code and the CNN's penultimate features through PCA
    y_fit = fit.y.numpy()
    Z_fit, Z_test = encode(ae, fit.X), encode(ae, test.X)
    pca = PCA(2).fit(encode(cnn, fit.X))
    P_fit, P_test = pca.transform(encode(cnn, fit.X)), pca.transform(encode(cnn, test.X))
    ae_right = _knn_correct(Z_fit, y_fit, Z_test, y_test)
    cnn_right = _knn_correct(P_fit, y_fit, P_test, y_test)
    only_ae, only_cnn, p = _mcnemar_exact(ae_right, cnn_right)
    knn_rows = []
    for name, right in (
        ("autoencoder 2-D code", ae_right),
        ("CNN penultimate features, PCA to 2-D", cnn_right),
    ):
        low, high = _wilson(int(right.sum()), n_test)
        knn_rows.append(
            {
                "representation": name,
                f"{KNN_K}-NN label accuracy": float(right.mean()),
                "ci_low": low,
                "ci_high": high,
                "n_test": n_test,
            }
        )
    knn = pd.DataFrame(knn_rows)
    acc_ae, acc_cnn = float(ae_right.mean()), float(cnn_right.mean())

    # --- findings, each from the numbers above
    findings = [
        f"The CNN, kept at epoch {best_epoch} of {epochs_cnn} (lowest validation cross-entropy; "
        f"validation accuracy {val_accuracy:.1%} on {len(val)} images), labels {n_right} of "
        f"{n_test} test images correctly: accuracy {accuracy:.1%} (95% Wilson CI "
        f"{ci[0]:.1%} to {ci[1]:.1%}; chance {1 / len(classes):.0%}).",
    ]
    if len(pairs):
        last = int(pairs["count"].iloc[-1])
        tied = int((_pair_counts(C) == last).sum()) - int((pairs["count"] == last).sum())
        findings.append(
            f"Most-confused pairs among the {n_errors} test errors (a labelled b + b labelled a): "
            + "; ".join(
                f"{r['pair']}: {r['count']} ({r['a labelled b']} + {r['b labelled a']}, "
                f"{r['share of errors']:.0%} of the errors)"
                for r in pairs.to_dict("records")
            )
            + (
                f"; {tied} more {'pair has' if tied == 1 else 'pairs have'} {last} too (ties are "
                "listed by label order)."
                if tied
                else "."
            )
        )
    else:
        findings.append(
            f"The CNN makes no error on the {n_test} test images, so no pair is confused."
        )
    course = [(a, b, _pair_standing(C, labels, a, b)) for a, b in COURSE_PAIRS]
    course = [(a, b, r) for a, b, r in course if r is not None]
    if course and n_errors:
        n_pairs = len(classes) * (len(classes) - 1) // 2
        findings.append(
            "The pairs the course saw confused on MNIST: "
            + "; ".join(
                f"{a}/{b}: {count} error{'' if count == 1 else 's'} here ({more} of the "
                f"{n_pairs} pairs have more)"
                for a, b, (count, more) in course
            )
            + "."
        )
    findings.append(
        f"{KNN_K}-NN label accuracy on the {n_test} test images (fitted on the {len(fit)} training "
        f"codes): the autoencoder's 2-D code {acc_ae:.1%} (95% CI {knn_rows[0]['ci_low']:.1%} to "
        f"{knn_rows[0]['ci_high']:.1%}), the CNN's penultimate features reduced to 2-D by PCA "
        f"{acc_cnn:.1%} ({knn_rows[1]['ci_low']:.1%} to {knn_rows[1]['ci_high']:.1%}). Exact "
        f"McNemar test: {only_ae} images right only with the AE code, {only_cnn} only with the "
        f"CNN features, p = {p:.2g}; {_verdict(p, acc_ae, acc_cnn)}."
    )

    figures = {
        "confusion": _confusion_figure(
            C, labels, title=f"{test.name}: CNN on {n_test} test images (rows: true label)"
        ),
        "codes_2d": _codes_figure(
            {
                f"autoencoder 2-D code ({KNN_K}-NN {acc_ae:.0%})": (Z_test, y_test),
                f"CNN features, PCA 2-D ({KNN_K}-NN {acc_cnn:.0%})": (P_test, y_test),
            },
            title=f"{test.name}: {n_test} test images in two 2-D views",
        ),
        "training": _training_figure(
            history, best_epoch, title=f"{train.name}: CNN cross-entropy per epoch"
        ),
    }
    matrix = pd.DataFrame(
        C,
        index=pd.Index(labels, name="true label"),
        columns=pd.Index(labels, name="predicted label"),
    )
    tables = {
        "classifier training": history,
        "confusion matrix": matrix,
        "most-confused pairs": pairs,
        "code k-NN": knn,
    }
    config = dict(
        dataset=dataset,
        quick=quick,
        seed=seed,
        n_train=len(train),
        n_fit=len(fit),
        n_val=len(val),
        n_test=n_test,
        **{**asdict(defaults), "epochs": epochs_cnn, "ae_epochs": epochs_ae},
        classifier="SmallCNN: conv3x3(16)-pool-conv3x3(32)-pool-linear(64)-linear",
        autoencoder="ConvAutoencoder, code size 2",
        selection="the epoch with the lowest validation cross-entropy",
        knn_k=KNN_K,
    )
    metrics = {
        "test_accuracy": accuracy,
        "test_accuracy_ci_low": ci[0],
        "test_accuracy_ci_high": ci[1],
        "chosen_epoch": best_epoch,
        "validation_accuracy": val_accuracy,
        "test_errors": n_errors,
        "knn_accuracy_ae_code": acc_ae,
        "knn_accuracy_cnn_pca": acc_cnn,
        "knn_mcnemar_p": p,
    }
    for k, r in enumerate(pairs.to_dict("records"), 1):
        metrics[f"confused_pair_{k}_count"] = r["count"]
    return StudyResult("cnn-classifier", tables, figures, findings, config, metrics)
