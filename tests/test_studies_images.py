"""The image studies vae-vs-ae and denoising in quick mode (ae-vs-pca and bottleneck:
tests/test_studies_images_pca.py),
on digits and on tiny MNIST-format files, and the CLI options that choose the dataset."""

import gzip
import json
import re
import struct

import numpy as np
import pytest
import torch

from aelab import plots
from aelab.cli import _study_options, build_parser, main
from aelab.studies import REGISTRY, denoising, moons_autoencoder
from aelab.studies import vae_vs_ae
from aelab.studies.images import load_images

STUDIES = {"vae-vs-ae": vae_vs_ae, "denoising": denoising}


def _run(func, **kwargs):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test setting
    try:
        return func(quick=True, seed=0, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results():
    return {}


def _result(results, name):
    if name not in results:
        results[name] = _run(STUDIES[name])
    return results[name]


# --- what every study must deliver -------------------------------------------------------------


def _check_figure(key, fig):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, key
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for ax in axes:
        assert ax.get_title() or suptitle, f"{key}: an axis without a title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"{key}: axis labels missing"
        handles, labels = ax.get_legend_handles_labels()
        if len([lab for lab in labels if not lab.startswith("_")]) > 1:
            assert ax.get_legend() is not None, f"{key}: several series but no legend"


@pytest.mark.parametrize("name", list(STUDIES))
def test_study_delivers_tables_figures_findings_metrics(results, name):
    result = _result(results, name)
    assert name in REGISTRY and REGISTRY[name].run is STUDIES[name]
    assert result.name == name
    assert result.tables and all(len(t) > 0 for t in result.tables.values())
    assert result.figures
    for key, fig in result.figures.items():
        _check_figure(key, fig)
    assert result.findings and all(re.search(r"\d", f) for f in result.findings)
    assert not any("{" in f for f in result.findings), "an unformatted placeholder"
    assert result.metrics and all(v is None or isinstance(v, (int, float))
                                  for v in result.metrics.values())
    json.dumps(result.config)  # plain settings
    assert result.config["dataset"] == "digits" and result.config["quick"] is True


# --- study-specific properties -------------------------------------------------------------


def test_vae_codes_follow_the_prior_more_than_the_ae(results):
    r = _result(results, "vae-vs-ae")
    latent = r.tables["latent spaces"].set_index("model")
    for z in ("z1", "z2"):
        assert 0.5 < latent.loc["VAE", f"code std {z}"] < 1.5
        assert abs(latent.loc["VAE", f"code mean {z}"]) < 0.3
    assert r.metrics["ae_test_mse"] < r.metrics["mean_image_mse"]
    assert len(r.tables["samples"]) == 3
    manifold = r.figures["manifold"]
    assert sum(ax.get_label() != "<colorbar>" for ax in manifold.axes) == 2


def test_vae_recall_finding_rests_on_measured_variety_and_contrast(results):
    r = _result(results, "vae-vs-ae")
    samples = r.tables["samples"]
    variance, contrast = samples["pixel variance / real's"], samples["neighbour-pixel contrast / real's"]
    assert ((variance > 0) & (contrast > 0)).all()
    recall = [f for f in r.findings if f.startswith("Recall is at most")]
    assert len(recall) == (samples["recall"].max() < 0.2)
    for finding in recall:
        for v, c in zip(variance, contrast):
            assert f"{v:.0%} of the pixel variance and {c:.0%} of the neighbour-pixel contrast" in finding
        smoother = "less varied and smoother" in finding
        assert smoother == bool(((variance < 1) & (contrast < 1)).all())


def test_variety_measures_spread_and_sharpness():
    from aelab.studies.images_latent import _variety

    sharp = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])  # 2x2 checkerboards
    flat = torch.full((2, 4), 0.5)
    assert _variety(flat, (1, 2, 2)) == (0.0, 0.0)
    variance, contrast = _variety(sharp, (1, 2, 2))
    assert variance == pytest.approx(4 * 0.25) and contrast == pytest.approx(1.0)


def test_denoising_skips_bypass_the_bottleneck(results):
    r = _result(results, "denoising")
    m = r.metrics
    assert m["skip_mse_b2"] < m["corrupted_mse"]
    # with skips, shrinking the code from 16 to 2 hurts less than without
    assert m["skip_mse_b2"] / m["skip_mse_b16"] < m["conv_mse_b2"] / m["conv_mse_b16"]
    # the code alone cannot carry what the skips carry
    assert m["skip_code_only_mse_b2"] > 2 * m["skip_mse_b2"]
    assert m["conv_code_only_mse_b2"] == pytest.approx(m["conv_mse_b2"])
    assert r.config["sigma"] == 0.3 and r.config["clip"] == [0.0, 1.0]


@pytest.mark.parametrize("name, key", [("denoising", "skips")])
def test_log_axes_are_labelled_with_plain_numbers(results, name, key):
    fig = _result(results, name).figures[key]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if t.get_text()]
    assert len(labels) >= 2
    for text in labels:
        float(text)  # "0.02", not "$\\mathdefault{2\\times10^{-2}}$"


def test_denoising_training_inputs_are_clipped_to_the_data_range():
    from aelab.studies.images_latent import denoising_objective

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x

    torch.manual_seed(0)
    objective = denoising_objective(0.3)
    objective(Spy(), torch.ones(50, 4), torch.ones(50, 4))
    assert seen[0].max() == 1.0 and seen[0].min() < 1.0


# --- helpers --------------------------------------------------------------------------------


def test_image_grid_labels_rows_and_columns():
    fig = plots.image_grid({"a": torch.rand(3, 16), "b": torch.rand(2, 16)}, (1, 4, 4),
                           title="t", n=3, col_labels=["x", "y", "z"], cell_labels={"b": ["1", "2"]},
                           xlabel="cols", ylabel="rows")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert {t.get_text() for t in ax.texts} == {"1", "2"}
    with pytest.raises(ValueError, match="image_shape=\\(1, 3, 3\\) needs 9"):
        plots.image_grid({"a": torch.rand(2, 16)}, (1, 3, 3), title="t")


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of .*'cifar'"):
        load_images("cifar")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz.*t10k-labels"):
        denoising(dataset="mnist", mnist_root=tmp_path / "nowhere")


# --- MNIST files --------------------------------------------------------------------------


def _write_idx(path, array, magic):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """Tiny MNIST-format files: 28x28 images whose bright bar's position encodes the label."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 100), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label:4 + 2 * label, 4:24] = 255
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return root


@pytest.mark.parametrize("name", list(STUDIES))
def test_studies_run_on_mnist_files(mnist_dir, name):
    result = _run(STUDIES[name], dataset="mnist", mnist_root=mnist_dir, epochs=1)
    assert result.config["dataset"] == "mnist"
    assert result.config["n_train"] == 100 and result.config["n_test"] == 40
    for key, fig in result.figures.items():
        _check_figure(key, fig)


def test_cli_missing_mnist_files_say_where_to_put_them(tmp_path, capsys):
    assert main(["run", "denoising", "--mnist-root", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path) in err


def test_cli_passes_dataset_options_only_to_studies_that_take_them(tmp_path):
    args = build_parser().parse_args(["run", "--mnist-root", str(tmp_path)])
    assert _study_options(denoising, args) == {"dataset": "mnist", "mnist_root": str(tmp_path)}
    assert _study_options(moons_autoencoder, args) == {}
    args = build_parser().parse_args(["run", "--dataset", "digits"])
    assert _study_options(vae_vs_ae, args) == {"dataset": "digits"}
