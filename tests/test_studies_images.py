"""What the image studies share: the image grid figure, the dataset errors, and the CLI
options that choose the dataset. (The studies' own tests: test_studies_images_pca.py for
ae-vs-pca and bottleneck, test_studies_images_latent.py for vae-vs-ae, denoising and
image-reruns.)"""

import pytest
import torch

from aelab import plots
from aelab.cli import _study_options, build_parser, main
from aelab.studies import denoising, moons_autoencoder, vae_vs_ae
from aelab.studies.images import load_images


def test_image_grid_labels_rows_and_columns():
    fig = plots.image_grid(
        {"a": torch.rand(3, 16), "b": torch.rand(2, 16)},
        (1, 4, 4),
        title="t",
        n=3,
        col_labels=["x", "y", "z"],
        cell_labels={"b": ["1", "2"]},
        xlabel="cols",
        ylabel="rows",
    )
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


def test_cli_missing_mnist_files_say_where_to_put_them(tmp_path, capsys):
    assert (
        main(["run", "denoising", "--mnist-root", str(tmp_path), "--out", str(tmp_path / "out")])
        == 1
    )
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path) in err


def test_cli_passes_dataset_options_only_to_studies_that_take_them(tmp_path):
    args = build_parser().parse_args(["run", "--mnist-root", str(tmp_path)])
    assert _study_options(denoising, args) == {"dataset": "mnist", "mnist_root": str(tmp_path)}
    assert _study_options(moons_autoencoder, args) == {}
    args = build_parser().parse_args(["run", "--dataset", "digits"])
    assert _study_options(vae_vs_ae, args) == {"dataset": "digits"}
