"""Datasets and splits.

Every loader returns a :class:`Dataset`: ``X`` a float32 tensor of shape
``[n_samples, n_features]``, ``y`` an integer tensor of labels or ``None``, and
a ``name`` used in figures and reports. Images are stored flat; their shape is
kept in ``image_shape`` so that convolutional models and plots can restore it.
"""

from __future__ import annotations

import gzip
import numbers
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aelab._checks import check_finite, check_positive_float, check_positive_int

__all__ = [
    "Dataset",
    "rectangle",
    "moons",
    "moons_curve",
    "digits",
    "mnist",
    "load",
    "split",
    "corrupt",
]


@dataclass
class Dataset:
    """Data for an autoencoder: inputs ``X`` and optional labels ``y``.

    Parameters
    ----------
    X : Tensor or array, shape (n_samples, n_features)
        Converted to a float32 tensor. NaN or infinite values are rejected.
    y : Tensor or array of int, shape (n_samples,), optional
        Class labels, used for stratified splits and for colouring codes.
    name : str
        Shown in figures and reports.
    image_shape : tuple of int, optional
        ``(channels, height, width)`` when each row of ``X`` is a flattened image.

    Examples
    --------
    >>> ds = Dataset(torch.zeros(3, 2), name="zeros")
    >>> len(ds), ds.n_features
    (3, 2)
    """

    X: torch.Tensor
    y: torch.Tensor | None = None
    name: str = ""
    image_shape: tuple[int, int, int] | None = field(default=None)

    def __post_init__(self):
        X = torch.as_tensor(self.X)
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D [n_samples, n_features], got shape {tuple(X.shape)}; "
                "flatten images with X.reshape(len(X), -1)."
            )
        if len(X) < 1:
            raise ValueError("X must hold at least one sample, got 0 rows.")
        self.X = X.to(torch.float32).contiguous()
        check_finite("X", self.X)
        if self.y is not None:
            if isinstance(self.y, np.ndarray) and self.y.dtype.kind not in "biuf":
                raise TypeError(
                    f"y must hold integer class labels, got dtype {self.y.dtype}; encode other "
                    "labels first, e.g. classes, y = np.unique(y, return_inverse=True)."
                )
            y = torch.as_tensor(self.y)
            if y.ndim != 1 or len(y) != len(self.X):
                raise ValueError(
                    f"y must be 1-D with one label per row of X ({len(self.X)}), "
                    f"got shape {tuple(y.shape)}."
                )
            if y.is_floating_point():
                if not torch.equal(y, y.round()):
                    raise ValueError("y must hold integer class labels, got non-integer values.")
            self.y = y.to(torch.int64)
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
            if len(self.image_shape) != 3 or int(np.prod(self.image_shape)) != self.n_features:
                raise ValueError(
                    f"image_shape must be (channels, height, width) with "
                    f"channels*height*width == n_features ({self.n_features}), "
                    f"got {self.image_shape}."
                )

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def subset(self, index) -> "Dataset":
        """The rows ``index`` (a slice, index tensor or array) as a new Dataset."""
        index = torch.as_tensor(index) if not isinstance(index, slice) else index
        y = None if self.y is None else self.y[index]
        return Dataset(self.X[index], y, self.name, self.image_shape)


def rectangle(n: int, seed: int = 0) -> Dataset:
    """``n`` points uniform on the rectangle [-2, 2] x [-1, 1] (course sheet 6).

    >>> rectangle(100).X.shape
    torch.Size([100, 2])
    """
    check_positive_int("n", n)
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g) * torch.tensor([4.0, 2.0]) - torch.tensor([2.0, 1.0])
    return Dataset(X, name=f"rectangle (n={n})")


def moons(n: int, noise: float = 0.1, seed: int = 0) -> Dataset:
    """scikit-learn's two moons; labels say which moon a point came from.

    >>> moons(200, noise=0.1).y.unique().tolist()
    [0, 1]
    """
    from sklearn.datasets import make_moons

    check_positive_int("n", n)
    noise = check_positive_float("noise", noise, allow_zero=True)
    X, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return Dataset(torch.from_numpy(X), torch.from_numpy(y), name=f"two moons (noise={noise:g})")


def moons_curve(n: int = 400) -> torch.Tensor:
    """The noise-free two-moons curve as ``n`` points (both moons), float32 [n, 2]."""
    t = torch.linspace(0, np.pi, n // 2, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], 1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    return torch.cat([upper, lower]).to(torch.float32)


def digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits: 1797 images, X scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset(
        torch.from_numpy(d.data / 16.0),
        torch.from_numpy(d.target),
        name="digits (8x8)",
        image_shape=(1, 8, 8),
    )


_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # magic numbers of the IDX file format


def _mnist_file(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file {stem}.gz (or {stem}) not found in {str(root)!r}. Put the four IDX files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz (gzipped or not) in that folder."
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path} is too short to be an IDX file ({len(data)} bytes).")
    found = struct.unpack(">i", data[:4])[0]
    if found != magic:
        raise ValueError(
            f"{path} has IDX magic number {found}, expected {magic} "
            f"({'images' if magic == _IDX_IMAGES else 'labels'}); is it the right file?"
        )
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {body.size} values, its header says {dims}.")
    return body.reshape(dims)


def mnist(root, train: bool = True) -> Dataset:
    """MNIST from local IDX files (gzipped or raw) in ``root``; X scaled to [0, 1].

    Nothing is downloaded: missing files raise ``FileNotFoundError`` naming the
    expected file names.
    """
    root = Path(root)
    prefix = "train" if train else "t10k"
    images = _read_idx(_mnist_file(root, f"{prefix}-images-idx3-ubyte"), _IDX_IMAGES)
    labels = _read_idx(_mnist_file(root, f"{prefix}-labels-idx1-ubyte"), _IDX_LABELS)
    if len(images) != len(labels):
        raise ValueError(f"MNIST {prefix}: {len(images)} images but {len(labels)} labels.")
    n, h, w = images.shape
    X = torch.from_numpy(images.reshape(n, h * w).astype(np.float32) / 255.0)
    return Dataset(
        X,
        torch.from_numpy(labels.astype(np.int64)),
        name=f"MNIST {'train' if train else 'test'}",
        image_shape=(1, h, w),
    )


_LABEL_COLUMNS = ("y", "label", "labels", "target", "class")


def _load_csv(path: Path):
    import pandas as pd

    with open(path) as f:
        first = f.readline().strip().split(",")
    try:
        [float(v) for v in first]
        has_header = False
    except ValueError:
        has_header = True
    frame = pd.read_csv(path, header=0 if has_header else None)
    label_cols = [c for c in frame.columns if str(c).strip().lower() in _LABEL_COLUMNS]
    y = frame.pop(label_cols[0]).to_numpy() if label_cols else None
    non_numeric = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ValueError(
            f"{path}: columns {non_numeric} are not numeric; a CSV needs numeric feature "
            f"columns and at most one label column named one of {list(_LABEL_COLUMNS)}."
        )
    return frame.to_numpy(dtype=np.float64), y


def _load_npz(path: Path):
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if "X" in keys:
            return archive["X"], archive["y"] if "y" in keys else None
        if len(keys) == 1:
            return archive[keys[0]], None
    raise ValueError(f"{path}: an .npz needs an array named 'X' (and optionally 'y'), found {keys}.")


def _load_npy(path: Path):
    return np.load(path, allow_pickle=False), None


_LOADERS = {".csv": _load_csv, ".npz": _load_npz, ".npy": _load_npy}


def load(path) -> Dataset:
    """Load user data from ``.npy``, ``.npz`` (arrays ``X`` and optional ``y``) or ``.csv``.

    A CSV may have a header; a column named ``y``, ``label``, ``target`` or
    ``class`` becomes the labels. Labels that are not numbers (``"cat"``,
    ``"dog"``) are numbered 0, 1, ... in sorted order of their names:
    ``np.unique`` of the original labels lists the names by number. Arrays with
    more than two dimensions are treated as images: ``[n, H, W]`` or
    ``[n, C, H, W]``, flattened, with ``image_shape`` kept. Pickled objects are
    never loaded.
    """
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ValueError(
            f"path {str(path)!r} has suffix {path.suffix!r}; allowed: {sorted(_LOADERS)}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist.")
    X, y = loader(path)
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}.")
    image_shape = None
    if X.ndim == 1:
        X = X[:, None]
    elif X.ndim == 3:
        image_shape = (1, *X.shape[1:])
    elif X.ndim == 4:
        image_shape = tuple(X.shape[1:])
    elif X.ndim != 2:
        raise ValueError(f"{path}: X has {X.ndim} dimensions; allowed 1 to 4.")
    X = X.reshape(len(X), -1).astype(np.float32)
    y = None if y is None else torch.as_tensor(_encode_labels(path, y))
    return Dataset(torch.from_numpy(X), y, name=path.stem, image_shape=image_shape)


def _encode_labels(path: Path, y) -> np.ndarray:
    """Numeric labels as they are; other labels (strings) as 0..k-1 in sorted order of the names."""
    y = np.asarray(y)
    # a CSV reads a missing label as NaN, in a float column or among strings
    if y.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(y)).tolist()
    elif y.dtype.kind == "O":
        missing = [i for i, v in enumerate(y.ravel())
                   if v is None or (isinstance(v, float) and v != v)]
    else:
        missing = []
    if missing:
        raise ValueError(f"{path}: {len(missing)} labels are missing (the first at row index "
                         f"{missing[0]}, counting from 0); give every row a label, or drop the labels.")
    if y.dtype.kind in "biuf":
        return y.copy()  # arrays from an .npz are read-only; torch wants its own memory
    if y.dtype.kind == "O":
        y = y.astype(str)
    if y.dtype.kind not in "US":
        raise ValueError(f"{path}: labels must be numbers or strings, got dtype {y.dtype}.")
    _, codes = np.unique(y, return_inverse=True)
    return codes.reshape(y.shape).astype(np.int64)


def split(ds: Dataset, test_size: float | int = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split into (train, test); stratified by label when labels exist.

    ``test_size`` is a fraction in (0, 1) (any real number, e.g. ``np.float32(0.2)``)
    or a number of samples (any integer). When stratifying is impossible (a class
    with a single member, or more classes than one side of the split can hold)
    the split is random and a ``UserWarning`` says why.

    >>> train, test = split(moons(100), test_size=0.2)
    >>> len(train), len(test)
    (80, 20)
    """
    from sklearn.model_selection import train_test_split

    n = len(ds)
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a count of samples, "
                        f"got {test_size!r} ({type(test_size).__name__}).")
    if isinstance(test_size, numbers.Integral):
        test_size = int(test_size)
        if not 1 <= test_size < n:
            raise ValueError(f"test_size as a count must be in [1, {n - 1}], got {test_size}.")
        n_test = test_size
    else:
        # numpy floats as the decimal they print as: float(np.float32(0.2)) is 0.2000000030,
        # which train_test_split would round up to one test sample more than 0.2 gives
        test_size = float(str(test_size)) if isinstance(test_size, np.floating) else float(test_size)
        if not 0 < test_size < 1:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}.")
        n_test = int(np.ceil(test_size * n))  # as train_test_split rounds it
    stratify = None
    if ds.y is not None:
        labels, counts = ds.y.unique(return_counts=True)
        n_smallest = min(n_test, n - n_test)
        if counts.min() < 2:
            single = labels[counts < 2].tolist()
            warnings.warn(f"split did not stratify: classes {single} have a single member, which "
                          "cannot be on both sides; the split is random.", UserWarning, stacklevel=2)
        elif len(labels) > n_smallest:
            warnings.warn(f"split did not stratify: {len(labels)} classes do not fit in "
                          f"{n_smallest} {'test' if n_test <= n - n_test else 'training'} samples; "
                          "the split is random. Use a larger test_size for a stratified split.",
                          UserWarning, stacklevel=2)
        else:
            stratify = ds.y.numpy()
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=test_size, random_state=seed, stratify=stratify
    )
    return ds.subset(np.sort(train_idx)), ds.subset(np.sort(test_idx))


def corrupt(X: torch.Tensor, sigma: float, seed: int = 0, clip: tuple[float, float] | None = None):
    """``X`` plus Gaussian noise of standard deviation ``sigma`` (for denoising).

    ``X`` may be a tensor (its float dtype and device are kept) or any numeric
    array-like (converted to float32). ``clip=(low, high)`` clamps the result to
    the data range, e.g. ``(0, 1)`` for images.

    >>> corrupt(torch.zeros(2, 3), sigma=0.0).abs().sum().item()
    0.0
    """
    sigma = check_positive_float("sigma", sigma, allow_zero=True)
    if isinstance(X, Dataset):
        raise TypeError("X must be a tensor or a numeric array, got a Dataset; pass its X: "
                        "corrupt(ds.X, sigma).")
    if not isinstance(X, torch.Tensor):
        try:
            X = torch.as_tensor(X, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"X must be a tensor or a numeric array, got {type(X).__name__} "
                            f"({err}).") from None
    elif not X.is_floating_point():
        X = X.to(torch.float32)
    g = torch.Generator(device=X.device).manual_seed(seed)
    noisy = X + sigma * torch.randn(X.shape, generator=g, device=X.device, dtype=X.dtype)
    return noisy if clip is None else noisy.clamp(*clip)
