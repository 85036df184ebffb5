"""Property-based tests: generated shapes, dtypes, values and file contents against aelab's entry points.

Every example must end in one of two ways: a correct result (checked against an
oracle: numpy, torch or the input itself), or a ValueError, TypeError or
FileNotFoundError raised inside aelab whose message names the argument at fault.
An error from torch, numpy, pandas or sklearn, or one that names nothing, fails.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import aelab
from aelab import data

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ERRORS = (ValueError, TypeError, FileNotFoundError)
AELAB_DIR = os.path.dirname(aelab.__file__)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def expect_aelab_error(call, *names):
    """Run ``call``; if it raises, the error must come from aelab and name one of ``names``.

    Returns the result, or None when it raised as allowed.
    """
    try:
        return call()
    except ERRORS as err:
        tb = err.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_filename
        assert where.startswith(AELAB_DIR), f"{type(err).__name__} raised in {where}: {err}"
        assert any(n in str(err) for n in names), f"message names none of {names}: {err}"
        return None


# --- generated arrays -----------------------------------------------------------------------------

DTYPES = st.sampled_from(
    [
        np.float16,
        np.float32,
        np.float64,
        np.int8,
        np.int64,
        np.uint8,
        np.uint64,
        np.bool_,
        np.complex64,
    ]
)
SPECIAL = [0.0, -0.0, 1.0, -1.5, 1e-40, 3e38, -3e38, 1e39, 1e300, np.nan, np.inf, -np.inf]


@st.composite
def arrays(draw, max_dims=4, max_side=4):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    if dtype.kind == "f":
        elements = st.one_of(st.sampled_from(SPECIAL), st.floats(-10, 10, width=32))
        elements = elements.map(lambda v: _as_dtype(v, dtype))
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if dtype.kind == "c":
        return draw(
            hnp.arrays(dtype, shape, elements=st.complex_numbers(max_magnitude=5, width=64))
        )
    return draw(hnp.arrays(dtype, shape))


def _as_dtype(value: float, dtype) -> float:
    with np.errstate(over="ignore"):  # 1e300 in float16 is inf: one of the values we want
        return float(np.asarray(value).astype(dtype))


def valid_matrix(X: np.ndarray, width: int | None = None, kinds: str = "biuf") -> bool:
    """What aelab must accept as a data matrix: real, 2-D, nonempty, finite in float32.

    A Dataset takes booleans as 0/1 (``kinds="biuf"``); the metrics refuse them
    (``kinds="iuf"``), since a boolean matrix there is more likely a mask passed by mistake.
    """
    if X.dtype.kind not in kinds or X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        return False
    if width is not None and X.shape[1] != width:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(
            np.isfinite(X.astype(np.float64)).all() and np.isfinite(X.astype(np.float32)).all()
        )


# --- data.Dataset and data.load --------------------------------------------------------------------


@FAST
@given(X=arrays())
def test_dataset_accepts_exactly_the_valid_matrices(X):
    ds = expect_aelab_error(lambda: data.Dataset(X), "X")
    if valid_matrix(X):
        assert ds is not None, "a valid matrix was refused"
        np.testing.assert_array_equal(ds.X.numpy(), X.astype(np.float32))
        assert ds.X.dtype == torch.float32
    else:
        assert ds is None, f"accepted an invalid X of dtype {X.dtype}, shape {X.shape}"


@FAST
@given(
    n=st.integers(1, 4),
    y=st.one_of(
        arrays(max_dims=2),
        st.lists(st.integers(), max_size=4),
        st.lists(st.sampled_from([0, 1.5, "a", None, 2**64]), max_size=4),
    ),
)
def test_dataset_labels_are_integers_or_refused(n, y):
    X = np.zeros((n, 2))
    ds = expect_aelab_error(lambda: data.Dataset(X, y), "y")
    y_arr = np.asarray(y) if not isinstance(y, list) else np.array(y, dtype=object)
    if ds is None:
        return
    assert ds.y.dtype == torch.int64 and len(ds.y) == len(X)
    assert y_arr.ndim == 1 and y_arr.dtype.kind in "biufO"
    np.testing.assert_array_equal(
        ds.y.numpy(), np.asarray(y_arr.tolist(), dtype=object).astype(np.int64)
    )


@FAST
@given(X=arrays(max_dims=5, max_side=3))
def test_load_npy_of_any_array(tmp_path_factory, X):
    path = tmp_path_factory.mktemp("npy") / "x.npy"
    np.save(path, X)
    ds = expect_aelab_error(lambda: data.load(path), str(path))
    ok = 1 <= X.ndim <= 4 and len(X) >= 1 and math.prod(X.shape[1:]) >= 1
    flat = X.reshape(len(X), -1) if ok else X
    ok = ok and valid_matrix(flat)
    if ok:
        assert ds is not None, "a valid array was refused"
        np.testing.assert_array_equal(ds.X.numpy(), flat.astype(np.float32))
        assert (ds.image_shape is not None) == (X.ndim >= 3)
    else:
        assert ds is None


@FAST
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".npy", ".npz", ".csv"]))
def test_load_of_arbitrary_bytes(tmp_path_factory, raw, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"x{suffix}"
    path.write_bytes(raw)
    ds = expect_aelab_error(lambda: data.load(path), str(path))
    if ds is not None:
        assert torch.isfinite(ds.X).all() and len(ds) >= 1 and ds.n_features >= 1


NUMBER = st.floats(-1e6, 1e6, allow_nan=False, width=32)
BAD_CELLS = ["", "NA", "nan", "inf", "-inf", "abc", " ", "N/A"]


@st.composite
def csv_files(draw):
    n_rows, n_cols = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    values = np.array(
        draw(st.lists(NUMBER, min_size=n_rows * n_cols, max_size=n_rows * n_cols)), dtype=np.float32
    ).reshape(n_rows, n_cols)
    cells = [
        [repr(float(v)) if draw(st.booleans()) else f"{float(v):.9g}" for v in row]
        for row in values
    ]
    cells = [[f'"{c}"' if draw(st.integers(0, 4)) == 0 else c for c in row] for row in cells]
    bad = None
    if draw(st.booleans()):
        i, j = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, n_cols - 1))
        bad = (i, j, draw(st.sampled_from(BAD_CELLS)))
        cells[i][j] = bad[2]
    header = draw(st.booleans())
    lines = ([",".join(f"c{j}" for j in range(n_cols))] if header else []) + [
        ",".join(row) for row in cells
    ]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))
    bom = "\ufeff" if draw(st.booleans()) else ""
    return bom + text, values, header, bad


@FAST
@given(spec=csv_files())
def test_load_csv_reads_every_row_or_names_the_bad_cell(tmp_path_factory, spec):
    text, values, header, bad = spec
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_bytes(text.encode("utf-8"))
    ds = expect_aelab_error(lambda: data.load(path), str(path))
    if bad is None:
        assert ds is not None
        np.testing.assert_allclose(ds.X.numpy(), values, rtol=1e-6)
        return
    i, j, cell = bad
    if values.shape[1] == 1 and not cell.strip() and i == len(values) - 1:
        # one column, last row empty: indistinguishable from a trailing newline
        if len(values) == 1:
            assert ds is None
        else:
            assert ds is not None and len(ds) == len(values) - 1
        return
    only_row_is_header = not header and i == 0 and cell.strip() == "abc"
    if only_row_is_header:  # a text cell in the first row makes it a header, by the rule
        if len(values) == 1:
            assert ds is None
        else:
            assert ds is not None and len(ds) == len(values) - 1
        return
    assert ds is None, f"accepted a CSV with the bad cell {cell!r}"
    line = i + 1 + int(header)
    with pytest.raises(ValueError, match=f"line {line}, column"):
        data.load(path)


# --- models ----------------------------------------------------------------------------------------

ARG = st.one_of(st.integers(-2, 6), st.sampled_from([None, 2.0, "3", True, 10**12, [2]]))


@FAST
@given(input_size=ARG, bottleneck_size=ARG, hidden_size=ARG, layers=ARG)
def test_autoencoder_constructor(input_size, bottleneck_size, hidden_size, layers):
    names = ("input_size", "bottleneck_size", "hidden_size", "layers")
    model = expect_aelab_error(
        lambda: aelab.Autoencoder(input_size, bottleneck_size, hidden_size, layers), *names
    )

    def is_int(v, minimum):
        return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

    h = 32 if hidden_size is None else hidden_size
    k = 2 if layers is None else layers
    ok = (
        is_int(input_size, 1)
        and is_int(bottleneck_size, 1)
        and bottleneck_size <= input_size
        and is_int(h, 1)
        and is_int(k, 0)
    )
    if ok:  # and no larger than the billion parameters aelab builds
        sizes = [input_size, *[h] * min(k, 10), bottleneck_size]
        count = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:])) + sum(
            (a + 1) * b for a, b in zip(sizes[::-1][:-1], sizes[::-1][1:])
        )
        ok = k <= 10 and count <= 10**9
    assert (model is not None) == ok
    if model is not None:
        x = torch.zeros(3, input_size)
        assert model(x).shape == x.shape and model.encode(x).shape == (3, bottleneck_size)


@FAST
@given(
    image_shape=st.one_of(
        st.tuples(*[st.integers(-1, 9)] * 3),
        st.lists(st.integers(1, 9)),
        st.tuples(st.just(1), st.floats(1, 9), st.just(4)),
    ),
    bottleneck_size=st.integers(-1, 20),
    skip=st.sampled_from([True, False, 1]),
)
def test_conv_autoencoder_constructor(image_shape, bottleneck_size, skip):
    model = expect_aelab_error(
        lambda: aelab.ConvAutoencoder(image_shape, bottleneck_size, skip=skip),
        "image_shape",
        "bottleneck_size",
        "skip",
        "n=",
    )
    if model is not None:
        x = torch.zeros(2, math.prod(image_shape))
        assert model(x).shape == x.shape


@FAST
@given(kind=st.sampled_from(["linear", "resnet", "vae"]), a=ARG, b=ARG, c=ARG)
def test_other_model_constructors(kind, a, b, c):
    build = {
        "linear": lambda: aelab.LinearAutoencoder(a, b),
        "resnet": lambda: aelab.ResNetAutoencoder(a, b, hidden_size=c, blocks=1),
        "vae": lambda: aelab.VAE(a, b, hidden_size=c, layers=1),
    }[kind]
    model = expect_aelab_error(build, "input_size", "bottleneck_size", "hidden_size")
    if model is not None:
        assert model(torch.zeros(2, a)).shape == (2, a)


# --- metrics, losses, corruption, PCA --------------------------------------------------------------


@FAST
@given(X=arrays(max_dims=3))
def test_reconstruction_error(X):
    model = aelab.LinearAutoencoder(3, 2)
    result = expect_aelab_error(lambda: aelab.reconstruction_error(model, X), "X")
    assert (result is not None) == valid_matrix(X, width=3, kinds="iuf")
    if result is not None:
        Xt = torch.as_tensor(X.astype(np.float32))
        with torch.no_grad():
            expected = float(((model(Xt) - Xt) ** 2).mean())
        assert result == pytest.approx(expected, rel=1e-5, abs=1e-30) or not math.isfinite(expected)


@FAST
@given(x=arrays(max_dims=3, max_side=5), y=arrays(max_dims=3, max_side=5))
def test_mmd(x, y):
    assume(x.dtype.kind != "b" and y.dtype.kind != "b")
    tx, ty = torch.as_tensor(x), torch.as_tensor(y)
    result = expect_aelab_error(lambda: aelab.mmd(tx, ty), "x", "y")
    ok = (
        x.ndim == 2
        and y.ndim == 2
        and len(x) >= 2
        and len(y) >= 2
        and x.shape[1] == y.shape[1]
        and x.dtype.kind in "iuf"
        and y.dtype.kind in "iuf"
        and np.isfinite(x.astype(np.float64)).all()
        and np.isfinite(y.astype(np.float64)).all()
    )
    if result is None:
        return  # refused by aelab, naming x or y; a valid pair may overflow float32/float16
    assert ok and torch.isfinite(result)
    assert float(result) == pytest.approx(float(aelab.mmd(ty, tx)), rel=1e-4, abs=1e-5)


CLIP = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from([-1.0, 0.0, 1.0, np.nan, None, np.inf]),
        st.sampled_from([-1.0, 0.0, 1.0, np.nan, None, np.inf]),
    ),
    st.sampled_from(["ab", 1.0, (0.0,)]),
)


@FAST
@given(
    X=arrays(max_dims=3),
    sigma=st.sampled_from([0.0, 0.5, -1.0, np.nan, np.inf, "1", None]),
    clip=CLIP,
)
def test_corrupt(X, sigma, clip):
    out = expect_aelab_error(
        lambda: data.corrupt(X, sigma, seed=0, clip=clip), "X", "sigma", "clip"
    )
    if out is None:
        return
    assert out.shape == X.shape and sigma in (0.0, 0.5)
    assert torch.isfinite(out).all() or X.dtype == np.float16
    if clip is not None:
        low, high = clip
        assert low < high and bool((out >= low).all() and (out <= high).all())


@FAST
@given(X=arrays(max_dims=3, max_side=6), k=st.sampled_from([1, 2, 0, -1, 2.0, "1", 7]))
def test_pca_fit(X, k):
    pca = expect_aelab_error(lambda: aelab.PCA(k).fit(X), "X", "n_components")
    if pca is None:
        return
    assert valid_matrix(X) and len(X) >= 2 and 1 <= k <= min(X.shape)
    C = pca.components_.double()
    assert torch.isfinite(C).all()
    torch.testing.assert_close(C @ C.T, torch.eye(k, dtype=torch.float64), atol=1e-4, rtol=0)


# --- aelab.load of arbitrary bytes and of damaged checkpoints --------------------------------------


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    model = aelab.Autoencoder(3, 1, 4, 1)
    torch.save(
        {
            "format": "aelab-model",
            "version": 1,
            "class": "Autoencoder",
            "init_args": dict(model.init_args),
            "state_dict": {k: v.detach() for k, v in model.state_dict().items()},
        },
        buffer,
    )
    return buffer.getvalue()


CHECKPOINT = _checkpoint_bytes()


@FAST
@given(
    edit=st.one_of(
        st.binary(max_size=200).map(lambda b: ("replace", b)),
        st.integers(0, len(CHECKPOINT)).map(lambda n: ("truncate", n)),
        st.tuples(st.integers(0, len(CHECKPOINT) - 1), st.integers(0, 255)).map(
            lambda p: ("flip", p)
        ),
    )
)
def test_load_of_damaged_bytes(tmp_path_factory, edit):
    kind, arg = edit
    if kind == "replace":
        raw = arg
    elif kind == "truncate":
        raw = CHECKPOINT[:arg]
    else:
        position, value = arg
        raw = bytearray(CHECKPOINT)
        raw[position] = value
        raw = bytes(raw)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    path.write_bytes(raw)
    model = expect_aelab_error(lambda: aelab.load(path), str(path), "m.pt")
    if model is not None:
        assert isinstance(model, aelab.Autoencoder)
        assert all(torch.isfinite(p).all() or True for p in model.parameters())


@FAST
@given(
    init_args=st.dictionaries(
        st.sampled_from(
            ["input_size", "bottleneck_size", "hidden_size", "layers", "widths", "extra"]
        ),
        st.one_of(
            st.integers(-2, 10**9),
            st.lists(st.integers(-1, 5), max_size=50),
            st.text(max_size=3),
            st.none(),
            st.floats(allow_nan=True),
        ),
        max_size=5,
    )
)
def test_load_of_tampered_init_args(tmp_path_factory, init_args):
    model = aelab.Autoencoder(3, 1, 4, 1)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    torch.save(
        {
            "format": "aelab-model",
            "version": 1,
            "class": "Autoencoder",
            "init_args": init_args,
            "state_dict": model.state_dict(),
        },
        path,
    )
    loaded = expect_aelab_error(lambda: aelab.load(path), str(path))
    if loaded is not None:
        x = torch.randn(5, 3)
        assert torch.equal(loaded(x), model(x))
