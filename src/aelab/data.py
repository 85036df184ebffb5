"""Datasets and splits.

Every loader returns a :class:`Dataset`: ``X`` a float32 tensor of shape
``[n_samples, n_features]``, ``y`` an integer tensor of labels or ``None``, and
a ``name`` used in figures and reports. Images are stored flat; their shape is
kept in ``image_shape`` so that convolutional models and plots can restore it.
"""

from __future__ import annotations

import csv
import gzip
import math
import numbers
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aelab._checks import (
    check_finite,
    check_image_shape,
    check_positive_float,
    check_positive_int,
)

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
        X = _as_real_tensor("X", self.X)
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D [n_samples, n_features], got shape {tuple(X.shape)}; "
                "flatten images with X.reshape(len(X), -1)."
            )
        if len(X) < 1:
            raise ValueError("X must hold at least one sample, got 0 rows.")
        if X.shape[1] < 1:
            raise ValueError(f"X must have at least one feature, got shape {tuple(X.shape)}.")
        check_finite("X", X)
        self.X = X.to(torch.float32).contiguous()
        if not torch.isfinite(self.X).all():  # finite before, infinite in float32: too large
            first = tuple(int(i) for i in (~torch.isfinite(self.X)).nonzero()[0])
            raise ValueError(
                f"X has values beyond float32's range (+-3.4e38), the first at index "
                f"{first}; rescale the data."
            )
        if self.y is not None:
            self.y = _as_labels(self.y, len(self.X))
        if self.image_shape is not None:
            self.image_shape = check_image_shape(self.image_shape)
            if math.prod(self.image_shape) != self.n_features:
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

    def subset(self, index) -> Dataset:
        """The rows ``index`` (a slice, index tensor or array) as a new Dataset."""
        index = torch.as_tensor(index) if not isinstance(index, slice) else index
        y = None if self.y is None else self.y[index]
        return Dataset(self.X[index], y, self.name, self.image_shape)


def _as_real_tensor(name: str, X) -> torch.Tensor:
    """``X`` as a tensor of real numbers (bool, int or float), detached from any autograd graph."""
    if isinstance(X, torch.Tensor):
        X = X.detach()  # a graph attached to the data would be kept alive and trained through
    else:
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as err:  # ragged nested lists
            raise TypeError(
                f"{name} must be a tensor or a numeric array, got {type(X).__name__} ({err})."
            ) from None
        if X.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must hold real numbers, got dtype {X.dtype}; convert it "
                "first, e.g. np.asarray(X, dtype=float)."
            )
        X = torch.as_tensor(X)
    if X.is_complex():
        raise TypeError(
            f"{name} must hold real numbers, got dtype {X.dtype}; keep X.real and "
            "X.imag as separate features if both matter."
        )
    return X


_INT64_LIMIT = 2.0**63  # labels must lie in [-2**63, 2**63)


def _as_labels(y, n: int) -> torch.Tensor:
    """``y`` as an int64 tensor of one class label per sample, refusing what would not survive."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu()
        y = (y.float() if y.dtype == torch.bfloat16 else y).numpy()  # numpy has no bfloat16
    try:
        y = np.asarray(y)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"y must hold integer class labels, got {type(y).__name__} ({err})."
        ) from None
    if (
        y.dtype.kind == "O"
        and y.size
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in y.ravel())
    ):
        raise ValueError(
            "y holds labels beyond int64's range (+-9.2e18); number the classes "
            "0..k-1, e.g. classes, y = np.unique(y, return_inverse=True)."
        )
    if y.dtype.kind not in "biuf":
        raise TypeError(
            f"y must hold integer class labels, got dtype {y.dtype}; encode other "
            "labels first, e.g. classes, y = np.unique(y, return_inverse=True)."
        )
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"y must be 1-D with one label per row of X ({n}), got shape {y.shape}.")
    if y.dtype.kind == "f":
        y = y.astype(np.float64)  # float16 cannot even hold the int64 bounds compared below
        if np.isnan(y).any():
            raise ValueError(
                f"y holds NaN at index {int(np.flatnonzero(np.isnan(y))[0])}; give "
                "every sample a label, or leave y out."
            )
        if not np.array_equal(y, np.round(y)):
            raise ValueError("y must hold integer class labels, got non-integer values.")
        if y.size and not (-_INT64_LIMIT <= y.min() and y.max() < _INT64_LIMIT):
            raise ValueError(
                "y holds labels beyond int64's range (+-9.2e18); number the classes "
                "0..k-1, e.g. classes, y = np.unique(y, return_inverse=True)."
            )
    elif y.dtype == np.uint64 and y.size and y.max() > np.iinfo(np.int64).max:
        raise ValueError(
            "y holds labels beyond int64's range (+-9.2e18); number the classes "
            "0..k-1, e.g. classes, y = np.unique(y, return_inverse=True)."
        )
    return torch.from_numpy(y.astype(np.int64))


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


# deflate cannot compress better than about 1032:1; a gzip that claims more is damaged or hostile
_MAX_DEFLATE_RATIO = 1032


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file's array, its header read and checked against the file before the body is.

    The body is read only up to the size the header declares, so a small
    gzip that would inflate to gigabytes costs no more than the header says
    (and a header that says more than the file can hold is refused first).
    """
    size = path.stat().st_size
    gz = path.suffix == ".gz"
    if gz:
        with open(path, "rb") as raw:  # the gzip trailer: uncompressed size modulo 2**32 (RFC 1952)
            raw.seek(max(size - 4, 0))
            declared = struct.unpack("<I", raw.read(4).rjust(4, b"\0"))[0]
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise ValueError(f"{path} is too short to be an IDX file ({len(head)} bytes).")
            found = struct.unpack(">i", head)[0]
            if found != magic:
                raise ValueError(
                    f"{path} has IDX magic number {found}, expected {magic} "
                    f"({'images' if magic == _IDX_IMAGES else 'labels'}); is it the right file?"
                )
            ndim = magic & 0xFF
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise ValueError(
                    f"{path} has a short IDX header: {4 + len(raw_dims)} bytes, "
                    f"expected {4 + 4 * ndim}; the file is truncated."
                )
            dims = struct.unpack(f">{ndim}i", raw_dims)
            if min(dims) < 0:
                raise ValueError(
                    f"{path} has negative sizes {dims} in its IDX header; the file is damaged."
                )
            n_values = math.prod(dims)
            total = 4 + 4 * ndim + n_values
            if not gz and total != size:
                raise ValueError(
                    f"{path} is {size} bytes, but its IDX header {dims} says "
                    f"{total}; the file is truncated or damaged."
                )
            if gz and (total > _MAX_DEFLATE_RATIO * size + 1024 or declared != total % 2**32):
                raise ValueError(
                    f"{path}: its IDX header {dims} says {total:,} bytes, which does not fit a "
                    f"gzip file of {size:,} bytes (its trailer says {declared:,}); the file is truncated "
                    "or damaged. Download it again."
                )
            body = f.read(n_values)  # at most what the header declares
            if len(body) != n_values:
                raise ValueError(
                    f"{path} holds {len(body)} values, its header {dims} says "
                    f"{n_values}; the file is truncated."
                )
            if f.read(1):
                raise ValueError(
                    f"{path} holds more data than its IDX header {dims} says; is it the right file?"
                )
    except (EOFError, OSError, zlib.error) as err:  # a truncated or corrupt gzip stream
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"{path} could not be read: {err}; the file is truncated or damaged. Download it again."
        ) from None
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


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


# column names that usually hold labels: suggested in a warning, never taken silently
_LABEL_NAMES = ("y", "label", "labels", "target", "class")
# cells read as missing (pandas' default NA markers, compared in lower case after stripping)
_MISSING = frozenset(
    {
        "",
        "#n/a",
        "#n/a n/a",
        "#na",
        "-1.#ind",
        "-1.#qnan",
        "-nan",
        "1.#ind",
        "1.#qnan",
        "<na>",
        "n/a",
        "na",
        "null",
        "nan",
        "none",
    }
)


def _numbers(cells: np.ndarray) -> np.ndarray:
    """Cells (strings) as float64, NaN where a cell is not a number or is a missing marker."""
    import pandas as pd

    flat = pd.to_numeric(pd.Series(cells.ravel(), dtype=object), errors="coerce")
    return flat.to_numpy(dtype=np.float64).reshape(cells.shape)


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in _MISSING


def _read_csv_rows(path: Path) -> tuple[list[list[str]], list[int]]:
    """Rows of a UTF-8 CSV (a byte-order mark is dropped) and their line numbers.

    Blank lines are skipped, except in a one-column file, where a blank line is
    an empty cell; trailing newlines are dropped either way.
    """
    rows, lines, blank = [], [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
                blank.append(not row or (len(row) == 1 and not row[0].strip()))
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 CSV."
        ) from None
    except csv.Error as err:
        raise ValueError(f"{path} is not a readable CSV: {err}.") from None
    while blank and blank[-1]:  # trailing newlines
        rows.pop(), lines.pop(), blank.pop()
    first = next((r for r, b in zip(rows, blank) if not b), None)
    if first is not None and len(first) == 1:
        # one column: a blank line is an empty cell, a missing value, not a line to skip
        rows = [r if r else [""] for r in rows]
    else:
        rows = [r for r, b in zip(rows, blank) if not b]
        lines = [n for n, b in zip(lines, blank) if not b]
    if not rows:
        raise ValueError(f"{path} is empty: a CSV needs at least one row of numbers.")
    width = len(rows[0])
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise ValueError(
                f"{path}: line {line} has {len(row)} fields, expected {width} "
                f"(as line {lines[0]}); give every row the same columns."
            )
    return rows, lines


def _is_int_text(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _resolve_label_column(path: Path, label_column, header: list[str] | None) -> int:
    if isinstance(label_column, bool) or not isinstance(label_column, (str, numbers.Integral)):
        raise TypeError(
            f"label_column must be a column name (str) or a 0-based column position "
            f"(int), got {label_column!r} ({type(label_column).__name__})."
        )
    if isinstance(label_column, str):
        # a name first (a header may name a column "3"), else an integer is a position: the
        # command line passes every label column as text
        names = [h.strip() for h in header] if header is not None else []
        if label_column.strip() not in names and _is_int_text(label_column):
            return int(label_column)
        if header is None:
            raise ValueError(
                f"label_column {label_column!r} names a column, but {path} has no "
                "header row; give the column's 0-based position instead."
            )
        if label_column.strip() not in names:
            raise ValueError(
                f"label_column {label_column!r} is not a column of {path}; its "
                f"columns are {', '.join(map(repr, names))}."
            )
        return names.index(label_column.strip())
    return int(label_column)


def _load_csv(path: Path, label_column=None):
    """Features and labels from a CSV; see :func:`load` for the rules."""
    rows, lines = _read_csv_rows(path)
    width = len(rows[0])
    # one rule: the first row is a header if any of its cells is text (not a number, not missing)
    first = np.array(rows[0], dtype=object)
    header = (
        rows[0]
        if any(np.isnan(_numbers(first)) & ~np.vectorize(_is_missing, otypes=[bool])(first))
        else None
    )
    header = [h.strip() for h in header] if header is not None else None
    body, body_lines = (rows[1:], lines[1:]) if header is not None else (rows, lines)
    if not body:
        raise ValueError(f"{path} has a header but no data rows.")
    cells = np.array(body, dtype=object)  # (n, width) strings
    n = len(cells)
    columns = list(range(width))

    def where(i: int, j: int) -> str:
        return (
            f"line {body_lines[i]}, column {header[j]!r}"
            if header
            else f"line {body_lines[i]}, column {j + 1}"
        )

    # a pandas index column (to_csv's default): unnamed, holding 0..n-1 in order
    if header is not None and width > 1 and header[0] in ("", "Unnamed: 0"):
        index = _numbers(cells[:, 0])
        if np.array_equal(index, np.arange(n)):
            warnings.warn(
                f"{path}: the first column is unnamed and holds 0..{n - 1}, a pandas index "
                "column (DataFrame.to_csv writes one unless index=False); it was dropped.",
                UserWarning,
                stacklevel=3,
            )
            columns = columns[1:]

    y = None
    if label_column is not None:
        j = _resolve_label_column(path, label_column, header)
        if not -width <= j < width:
            raise ValueError(
                f"label_column {label_column} is out of range for {path}, which has "
                f"{width} columns (positions 0..{width - 1}, or negative from the end)."
            )
        j %= width
        if j not in columns:
            raise ValueError(
                f"label_column {label_column!r} is the dropped index column of {path}."
            )
        columns.remove(j)
        labels = cells[:, j]
        missing = [i for i, v in enumerate(labels) if _is_missing(v)]
        if missing:
            raise ValueError(
                f"{path}: {len(missing)} labels are missing (the first at "
                f"{where(missing[0], j)}); give every row a label, or drop the labels."
            )
        as_numbers = _numbers(labels)
        y = as_numbers if not np.isnan(as_numbers).any() else np.array([v.strip() for v in labels])
    if not columns:
        raise ValueError(f"{path} has no feature columns left besides the labels.")

    X = _numbers(cells[:, columns])
    bad = ~np.isfinite(X)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])  # the first bad cell, in reading order
        j, cell = columns[k], cells[i, columns[k]]
        if np.isinf(X[i, k]):
            raise ValueError(
                f"{path}: an infinite value ({cell.strip()!r}) at {where(i, j)} "
                f"({int(bad.sum())} bad cells in all); clean the data first."
            )
        if _is_missing(cell):
            raise ValueError(
                f"{path}: a missing value ({cell!r}) at {where(i, j)} "
                f"({int(bad.sum())} bad cells in all); fill or drop the rows with "
                "missing values first."
            )
        hint = ""
        if header is not None:
            hint = (
                f" If column {header[j]!r} holds labels, pass label_column={header[j]!r} "
                f"(aelab --label-column {header[j]})."
            )
        raise ValueError(
            f"{path}: {cell!r} at {where(i, j)} is not a number; every feature "
            f"column must be numeric.{hint}"
        )
    if label_column is None and header is not None:
        for j in columns:
            if header[j].lower() in _LABEL_NAMES and np.array_equal(
                X[:, columns.index(j)], np.round(X[:, columns.index(j)])
            ):
                warnings.warn(
                    f"{path}: column {header[j]!r} holds whole numbers and is read as a "
                    f"feature; if it holds labels, pass label_column={header[j]!r} "
                    f"(aelab --label-column {header[j]}).",
                    UserWarning,
                    stacklevel=3,
                )
    return X, y


def _check_npy_header(path: Path, f, available: int, what: str) -> None:
    """Refuse an .npy header whose declared array is larger than the bytes that follow it."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(f)
        shape, _, dtype = (
            npy_format.read_array_header_1_0(f)
            if version == (1, 0)
            else npy_format.read_array_header_2_0(f)
        )
    except (ValueError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: {what} is not a valid .npy array ({err}).") from None
    declared = math.prod(shape) * dtype.itemsize
    if declared > available - f.tell():
        raise ValueError(
            f"{path}: {what} declares shape {shape} ({declared:,} bytes of "
            f"{dtype}) but holds {max(available - f.tell(), 0):,}; the file is "
            "truncated or damaged."
        )


def _load_npz(path: Path, label_column=None):
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
                    raise ValueError(
                        f"{path}: member {info.filename!r} claims {info.file_size:,} "
                        f"bytes from {info.compress_size:,} compressed; damaged."
                    )
                if info.filename.endswith(".npy"):
                    with zf.open(info) as f:
                        _check_npy_header(path, f, info.file_size, f"array {info.filename[:-4]!r}")
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "X" in keys:
                X = archive["X"]
            elif len(keys) == 1:
                X = archive[keys[0]]
            else:
                raise ValueError(
                    f"{path}: an .npz needs an array named 'X' (and optionally 'y'), found {keys}."
                )
            if label_column is not None:
                if not isinstance(label_column, str):
                    raise TypeError(
                        f"label_column must name an array of the .npz, got "
                        f"{label_column!r} ({type(label_column).__name__})."
                    )
                if label_column not in keys or label_column == "X":
                    raise ValueError(
                        f"label_column {label_column!r} is not an array of {path} "
                        f"besides X; its arrays are {sorted(keys)}."
                    )
                return X, archive[label_column]
            if "y" in keys and "X" in keys:
                return X, archive["y"]
            suggest = [k for k in keys if k.lower() in _LABEL_NAMES and k != "X"]
            if suggest:
                warnings.warn(
                    f"{path}: array {suggest[0]!r} is not read as labels; pass "
                    f"label_column={suggest[0]!r} if it holds them.",
                    UserWarning,
                    stacklevel=3,
                )
            return X, None
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path} is not a readable .npz archive ({err}); the file is truncated or damaged."
        ) from None


def _load_npy(path: Path, label_column=None):
    if label_column is not None:
        raise ValueError(
            f"label_column={label_column!r} does not apply to a .npy file, which "
            "holds one array; save X and y together with np.savez(path, X=X, y=y)."
        )
    with open(path, "rb") as f:
        _check_npy_header(path, f, os.path.getsize(path), "the file")
    return np.load(path, allow_pickle=False), None


_LOADERS = {".csv": _load_csv, ".npz": _load_npz, ".npy": _load_npy}


def load(path, *, label_column: str | int | None = None) -> Dataset:
    """Load user data from ``.npy``, ``.npz`` (arrays ``X`` and optional ``y``) or ``.csv``.

    **CSV.** UTF-8 (a byte-order mark is fine). The first row is a header if
    any of its cells is text, that is neither a number (quoted numbers are
    numbers) nor a missing-value marker; otherwise it is data. Every cell of a
    feature column must be a finite number: a missing value (an empty cell,
    ``NA``, ``nan``, ...) or text is an error naming its line and column. An
    unnamed first column holding 0..n-1 (what ``DataFrame.to_csv`` writes) is
    dropped with a warning.

    **Labels** come only from ``label_column``: a column name (CSV with a
    header), a 0-based column position (any CSV), or an array name (.npz). An
    .npz with arrays ``X`` and ``y`` takes ``y`` as labels. A CSV column named
    like a label column (``y``, ``label``, ``target``, ``class``) is a feature
    unless ``label_column`` names it; a warning suggests it when it holds
    whole numbers. Labels that are not numbers (``"cat"``, ``"dog"``) are
    numbered 0, 1, ... in sorted order of their names.

    **Arrays** with more than two dimensions are images: ``[n, H, W]`` or
    ``[n, C, H, W]``, flattened, with ``image_shape`` kept. Complex data are
    refused; pickled objects are never loaded.

    Parameters
    ----------
    path : str or Path
    label_column : str or int, optional
        Where the labels are; None (default): no labels, except an .npz's ``y``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "points.csv"
    >>> _ = path.write_text("x,y,label\\n0.5,1.0,0\\n1.5,2.0,1\\n")
    >>> ds = load(path, label_column="label")
    >>> ds.X.tolist(), ds.y.tolist()
    ([[0.5, 1.0], [1.5, 2.0]], [0, 1])
    """
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ValueError(
            f"path {str(path)!r} has suffix {path.suffix!r}; allowed: {sorted(_LOADERS)}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist.")
    X, y = loader(path, label_column)
    X = np.asarray(X)
    if X.dtype.kind == "c":
        raise TypeError(
            f"{path}: X holds complex numbers (dtype {X.dtype}); aelab takes real "
            "data: keep X.real and X.imag as separate features if both matter."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}.")
    image_shape = None
    if X.ndim == 0:
        raise ValueError(f"{path}: X is a single number (0-D); save an array of samples.")
    if X.ndim == 1:
        X = X[:, None]
    elif X.ndim == 3:
        image_shape = (1, *X.shape[1:])
    elif X.ndim == 4:
        image_shape = tuple(X.shape[1:])
    elif X.ndim != 2:
        raise ValueError(f"{path}: X has {X.ndim} dimensions; allowed 1 to 4.")
    if len(X) < 1:
        raise ValueError(f"{path}: X must hold at least one sample, got shape {X.shape}.")
    if math.prod(X.shape[1:]) < 1:
        raise ValueError(f"{path}: X must have at least one feature, got shape {X.shape}.")
    X = X.reshape(len(X), -1)
    if not X.flags.writeable:  # arrays from an .npz are read-only; torch wants its own memory
        X = X.copy()
    y = None if y is None else _encode_labels(path, y)
    try:
        return Dataset(torch.from_numpy(X), y, name=path.stem, image_shape=image_shape)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path}: {err}") from None


def _encode_labels(path: Path, y) -> np.ndarray:
    """Numeric labels as they are; other labels (strings) as 0..k-1 in sorted order of the names."""
    y = np.asarray(y)
    # a CSV reads a missing label as NaN, in a float column or among strings
    if y.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(y)).tolist()
    elif y.dtype.kind == "O":
        missing = [
            i for i, v in enumerate(y.ravel()) if v is None or (isinstance(v, float) and v != v)
        ]
    else:
        missing = []
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} labels are missing (the first at row index "
            f"{missing[0]}, counting from 0); give every row a label, or drop the labels."
        )
    if y.dtype.kind in "biuf":
        return y.copy()  # arrays from an .npz are read-only; torch wants its own memory
    if y.dtype.kind == "O":
        y = y.astype(str)
    if y.dtype.kind not in "US":
        raise ValueError(f"{path}: labels must be numbers or strings, got dtype {y.dtype}.")
    _, codes = np.unique(y, return_inverse=True)
    return codes.reshape(y.shape).astype(np.int64)


def _check_clip(clip) -> tuple[float, float] | None:
    if clip is None:
        return None
    if (
        isinstance(clip, (str, bytes))
        or not isinstance(clip, Sequence)
        or len(clip) != 2
        or not all(isinstance(c, numbers.Real) and not isinstance(c, bool) for c in clip)
    ):
        raise TypeError(
            f"clip must be (low, high), two numbers, or None, got {clip!r}; e.g. "
            "clip=(0, 1) for images. For one bound use +-inf: (0, float('inf'))."
        )
    low, high = float(clip[0]), float(clip[1])
    if not low < high:  # also false when either is NaN
        raise ValueError(
            f"clip must be (low, high) with low < high, got {tuple(clip)!r}; "
            "e.g. clip=(0, 1) for images."
        )
    return low, high


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
        raise TypeError(
            f"test_size must be a fraction in (0, 1) or a count of samples, "
            f"got {test_size!r} ({type(test_size).__name__})."
        )
    if isinstance(test_size, numbers.Integral):
        test_size = int(test_size)
        if not 1 <= test_size < n:
            raise ValueError(f"test_size as a count must be in [1, {n - 1}], got {test_size}.")
        n_test = test_size
    else:
        # numpy floats as the decimal they print as: float(np.float32(0.2)) is 0.2000000030,
        # which train_test_split would round up to one test sample more than 0.2 gives
        test_size = (
            float(str(test_size)) if isinstance(test_size, np.floating) else float(test_size)
        )
        if not 0 < test_size < 1:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}.")
        n_test = int(np.ceil(test_size * n))  # as train_test_split rounds it
    stratify = None
    if ds.y is not None:
        labels, counts = ds.y.unique(return_counts=True)
        n_smallest = min(n_test, n - n_test)
        if counts.min() < 2:
            single = labels[counts < 2].tolist()
            warnings.warn(
                f"split did not stratify: classes {single} have a single member, which "
                "cannot be on both sides; the split is random.",
                UserWarning,
                stacklevel=2,
            )
        elif len(labels) > n_smallest:
            warnings.warn(
                f"split did not stratify: {len(labels)} classes do not fit in "
                f"{n_smallest} {'test' if n_test <= n - n_test else 'training'} samples; "
                "the split is random. Use a larger test_size for a stratified split.",
                UserWarning,
                stacklevel=2,
            )
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
        raise TypeError(
            "X must be a tensor or a numeric array, got a Dataset; pass its X: "
            "corrupt(ds.X, sigma)."
        )
    if not isinstance(X, torch.Tensor):
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as err:  # ragged nested lists
            raise TypeError(
                f"X must be a tensor or a numeric array, got {type(X).__name__} ({err})."
            ) from None
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"X must be a tensor or a numeric array, got {type(X).__name__} of "
                f"dtype {array.dtype}; corrupt takes real numbers."
            )
        check_finite("X", torch.from_numpy(array.astype(np.float64)))
        with np.errstate(over="ignore"):
            array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise ValueError(
                "X has values beyond float32's range (+-3.4e38); pass a float64 "
                "tensor to keep them, or rescale the data."
            )
        X = torch.from_numpy(array)
    elif X.is_complex():
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}.")
    elif not X.is_floating_point():
        X = X.to(torch.float32)
    check_finite("X", X.detach())
    clip = _check_clip(clip)
    g = torch.Generator(device=X.device).manual_seed(seed)
    noisy = X + sigma * torch.randn(X.shape, generator=g, device=X.device, dtype=X.dtype)
    return noisy if clip is None else noisy.clamp(*clip)
