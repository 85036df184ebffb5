"""vae-vs-ae, denoising and image-reruns: quick runs on a tiny user image file, the findings'
verdicts on hand-made numbers, the course pitfalls by number, and bad input."""

import gzip
import importlib
import json
import math
import re
import struct

import numpy as np
import pandas as pd
import pytest
import torch

from aelab import data
from aelab.experiments import Runs
from aelab.studies import REGISTRY, denoising, image_reruns, vae_vs_ae
from aelab.studies import images_latent as latent

# the package's name image_reruns is the study function; the module is imported by its path
reruns_module = importlib.import_module("aelab.studies.image_reruns")
STUDIES = {"vae-vs-ae": vae_vs_ae, "denoising": denoising, "image-reruns": image_reruns}
# small enough for seconds; the seeds are the fewest each study accepts
TINY = {
    "vae-vs-ae": dict(epochs=8, seeds=2),
    "denoising": dict(epochs=8, seeds=2, lr=1e-2, batch_size=32),
    "image-reruns": dict(epochs=8, seeds=3, grid_size=4),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """100 8x8 images: a bright bar whose row encodes one of four classes, plus a little noise."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 0.1, size=(100, 8, 8))
    for i in range(100):
        X[i, 2 * (i % 4) : 2 * (i % 4) + 2, 1:7] = 0.9
    path = tmp_path_factory.mktemp("user") / "bars.npy"
    np.save(path, X.astype(np.float32))
    return data.load(path)


@pytest.fixture(scope="module")
def results(images):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test setting
    try:
        return {
            name: func(quick=True, seed=0, data=images, **TINY[name])
            for name, func in STUDIES.items()
        }
    finally:
        torch.set_num_threads(threads)


def _check_figure(key, fig):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, key
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for ax in axes:
        assert ax.get_title() or suptitle, f"{key}: an axis without a title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"{key}: axis labels missing"
        labels = [lab for lab in ax.get_legend_handles_labels()[1] if not lab.startswith("_")]
        if len(labels) > 1:
            assert ax.get_legend() is not None, f"{key}: several series but no legend"


@pytest.mark.parametrize("name", list(STUDIES))
def test_study_runs_on_a_user_image_file(results, images, name):
    result = results[name]
    assert REGISTRY[name].run is STUDIES[name] and REGISTRY[name].data == "image"
    assert result.name == name and result.answer
    assert result.config["dataset"] == "bars" and result.config["quick"] is True
    assert result.config["n_train"] + result.config["n_validation"] + result.config["n_test"] == 100
    json.dumps(result.config)
    assert result.findings and all(re.search(r"\d", f) for f in result.findings)
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.metrics.values())
    for key, fig in result.figures.items():
        _check_figure(key, fig)
    trials = result.tables[{"image-reruns": "runs"}.get(name, "trials")]
    assert sorted(trials["seed"].unique()) == list(range(TINY[name]["seeds"]))


@pytest.mark.parametrize("func", list(STUDIES.values()))
def test_non_image_data_is_refused_naming_image_shape(func):
    flat = data.Dataset(torch.rand(50, 4), name="table")
    with pytest.raises(ValueError, match="image_shape"):
        func(data=flat)


@pytest.mark.parametrize(
    "func, bad, match",
    [
        (vae_vs_ae, dict(epochs=0), "epochs"),
        (vae_vs_ae, dict(grid_size=1), "grid_size"),
        (vae_vs_ae, dict(n_reference=5), "n_reference"),
        (vae_vs_ae, dict(seeds=1), "seeds"),
        (denoising, dict(bottlenecks=()), "bottlenecks"),
        (denoising, dict(sigma=0.0), "sigma"),
        (denoising, dict(bottlenecks=(2, 2)), "twice"),
        (image_reruns, dict(seeds=2), "seeds"),
        (image_reruns, dict(lr=0.0), "lr"),
        (vae_vs_ae, dict(epoch=5), "valid settings: epochs, batch_size"),
    ],
)
def test_bad_settings_are_refused(func, bad, match):
    with pytest.raises(ValueError, match=match):
        func(**bad)


def test_data_and_dataset_are_not_both_taken(images):
    with pytest.raises(ValueError, match="one source of"):
        denoising(data=images, dataset="mnist")
    with pytest.raises(ValueError, match="needs mnist_root.*--mnist-root"):
        vae_vs_ae(dataset="mnist")
    with pytest.raises(ValueError, match="dataset='digits'"):
        image_reruns(mnist_root="somewhere")


# --- course pitfalls, by number ----------------------------------------------------------


def test_the_random_z_grid_of_course_003_jumps_between_neighbours(results):
    m = results["vae-vs-ae"].metrics
    # a real grid over the prior's quantiles changes gradually; random z per cell does not
    assert m["random_step"] > 2 * m["grid_step"]


def test_the_collapsed_control_and_real_images_frame_the_sample_quality(results):
    samples = results["vae-vs-ae"].tables["samples"]
    mmd2 = samples[samples["metric"] == "mmd2"].set_index("generator")["mean"]
    assert mmd2[latent.CONTROL] > mmd2[latent.REAL]
    assert set(mmd2.index) == {*latent._GENERATORS, latent.REAL}


def test_denoising_noise_is_a_standard_deviation_not_a_variance(results):
    m = results["denoising"].metrics
    # 20 test images of 64 pixels: the variance is estimated within about 6% (one sd)
    assert m["noise_variance"] == pytest.approx(0.3**2, rel=0.2)
    assert m["corrupted_mse"] == pytest.approx(m["noise_variance"], rel=0.01)
    assert m["corrupted_mse"] < 0.3 / 2  # what "variance 0.3" would give


def test_denoising_wrong_code_and_ablations(results):
    m = results["denoising"].metrics
    # the right code through the skip model is the skip model's own output
    assert m["skip_right_code_mse"] == pytest.approx(m["skip_mse_b2"], rel=1e-6)
    # seed 004 decodes the conv AE's code through the skip model: worse on every seed
    pitfall = results["denoising"].tables["wrong code (course 004)"]
    assert len(pitfall) == 2 and (pitfall["wrong"] > pitfall["right"]).all()
    # zeroed skips, never seen in training, are worse than skips held at their mean
    assert m["skip_zero_skips_mse"] > m["skip_mean_skips_mse"]


def test_ablations_change_only_what_they_say():
    torch.manual_seed(0)
    model = latent.ConvAutoencoder((1, 8, 8), 2, skip=True)
    plain = latent.ConvAutoencoder((1, 8, 8), 2)
    X = torch.rand(6, 64)
    train = data.Dataset(torch.rand(20, 64), image_shape=(1, 8, 8))
    test = data.Dataset(X, image_shape=(1, 8, 8))
    noisy = {"test": X, "val": X, "train": train.X}
    metrics = latent._denoising_metrics(latent.DenoisingSettings(), noisy, train, test, 0)
    own = metrics["denoise_mse"](model, None)
    for name in ("mean_skips_mse", "code_swap_mse", "zero_skips_mse"):
        assert metrics[name](model, None) != own
    # without skips only the code swap changes anything
    own = metrics["denoise_mse"](plain, None)
    assert metrics["mean_skips_mse"](plain, None) == pytest.approx(own)
    assert metrics["zero_skips_mse"](plain, None) == pytest.approx(own)


def test_neighbour_difference_and_grid_layout():
    z = latent.grid_codes([0.0, 1.0, 2.0], [10.0, 20.0])
    assert z[:3].tolist() == [[0.0, 20.0], [1.0, 20.0], [2.0, 20.0]]  # top row: highest z2
    smooth = torch.arange(9.0)[:, None].repeat(1, 4)  # cells 0..8, rows of 3
    assert latent.neighbour_msd(smooth, 3) == pytest.approx((1 + 9) / 2)


def test_still_falling_measures_the_last_tenth_against_its_floor():
    class H:
        def __init__(self, loss):
            self.test_loss = loss

    flat, falling = [1.0] * 20, list(np.linspace(2.0, 1.0, 20))
    runs = Runs(pd.DataFrame({"seed": [0, 1]}), [None, None], [H(flat), H(falling)], [])
    assert latent.still_falling(runs) == [1]
    # near its floor, a fall that is small next to the loss is large next to what is left
    near = [10.2] * 18 + [10.1, 10.1]
    runs = Runs(pd.DataFrame({"seed": [0]}), [None], [H(near)], [])
    assert latent.still_falling(runs) == [] and latent.still_falling(runs, floors=[10.0]) == [0]


# --- findings: verdicts follow the numbers -------------------------------------------------


def _noise(i):
    """Five small, distinct deviations for the i-th series (paired differences vary)."""
    return np.random.default_rng(i).normal(0, 1e-3, 5)


def _vae_tables(ae_mse, vae_mse, control_mmd):
    rows = [
        {
            "model": m,
            "seed": s,
            "test_mse": mse + _noise(i)[s],
            "gauss_nll": -10 + 100 * (mse + _noise(i)[s]),
            "code_std": 1.0,
            "kl": 3.0 + _noise(i)[s],
            "recon_nll": 20.0 + _noise(i)[s],
            "grid_step": 0.01 + _noise(i)[s] / 10,
            "random_step": 0.08 + _noise(i + 5)[s] / 10,
        }
        for i, (m, mse) in enumerate((("AE", ae_mse), ("VAE", vae_mse)))
        for s in range(5)
    ]
    runs = Runs(pd.DataFrame(rows), [None] * 10, [None] * 10, ["model"])
    mmd = dict(zip((*latent._GENERATORS, latent.REAL), (0.3, 0.1, 0.15, control_mmd, 0.0)))
    samples = [
        {"generator": g, "seed": s, "mmd2": v + _noise(i)[s] / 5, "precision": 1.0, "recall": 0.0}
        for i, (g, v) in enumerate(mmd.items())
        for s in range(5)
    ]
    return runs, Runs(pd.DataFrame(samples), [None] * 25, [None] * 25, ["generator"])


def test_vae_vs_ae_verdicts_follow_the_numbers():
    runs, samples = _vae_tables(0.030, 0.040, 1.4)
    v = latent.vae_vs_ae_verdicts(runs, samples)
    assert v["reconstruction"]["significant"] and v["reconstruction"]["diff"] > 0
    assert v["mmd2_flags_control"] and not v["precision_flags_control"]
    assert v["best"].setting == {"generator": latent._GENERATORS[1]}
    assert v["grid"]["significant"]
    findings, answer = latent.vae_vs_ae_findings(runs, samples, latent.VaeVsAeSettings(), 0.07, 360)
    assert len(findings) == 6 and answer

    runs, samples = _vae_tables(0.040, 0.040, 0.05)  # equal errors; a control that looks fine
    v = latent.vae_vs_ae_verdicts(runs, samples)
    assert not v["reconstruction"]["significant"]
    assert not v["mmd2_flags_control"]


def _denoising_tables(skip_mse, swap_mse, wrong_mse):
    rows = []
    for i, (model, mse) in enumerate(
        (("MLP AE", 0.045), ("conv AE", 0.05), (latent.SKIP, skip_mse))
    ):
        for s in range(5):
            swap = swap_mse if model == latent.SKIP else 0.1
            rows.append(
                {
                    "model": model,
                    "bottleneck": 2,
                    "seed": s,
                    "denoise_val": mse + _noise(i)[s],
                    "denoise_mse": mse + _noise(i)[s],
                    "mean_skips_mse": 0.06 + _noise(i + 3)[s],
                    "code_swap_mse": swap + _noise(i + 6)[s],
                    "zero_skips_mse": 0.18,
                }
            )
    runs = Runs(pd.DataFrame(rows), [None] * 15, [None] * 15, ["model", "bottleneck"])
    pitfall = pd.DataFrame(
        {
            "seed": range(5),
            "bottleneck": 2,
            "right": skip_mse + _noise(2),
            "wrong": wrong_mse + _noise(9),
        }
    )
    return runs, pitfall


def test_denoising_verdicts_follow_the_numbers():
    runs, pitfall = _denoising_tables(0.026, 0.035, 0.06)
    v = latent.denoising_verdicts(runs, pitfall, corrupted_mse=0.09)
    assert len(v["not_beating"]) == 0 and v["best"].setting == {"model": latent.SKIP}
    assert v["ablations"].loc["another image's code", "significant"]
    assert v["wrong_code"]["significant"] and v["wrong_code"]["diff"] > 0
    findings, _ = latent.denoising_findings(
        runs, pitfall, latent.DenoisingSettings(), 0.09, 0.074, 0.09, 1000
    )
    assert len(findings) > 2

    runs, pitfall = _denoising_tables(0.026, 0.026, 0.026)  # the code carries nothing
    v = latent.denoising_verdicts(runs, pitfall, corrupted_mse=0.09)
    assert not v["ablations"].loc["another image's code", "significant"]
    assert not v["wrong_code"]["significant"]

    v = latent.denoising_verdicts(runs, pitfall, corrupted_mse=0.04)  # the noisy input wins
    assert set(v["not_beating"]["model"]) == {"MLP AE", "conv AE"}
    findings, answer = latent.denoising_findings(
        runs, pitfall, latent.DenoisingSettings(), 0.04, 0.074, 0.09, 1000
    )
    assert len(findings) == 2 and answer == findings[0]  # no comparison drawn


def test_reruns_verdicts_follow_the_numbers():
    runs = Runs(
        pd.DataFrame({"seed": [0, 1, 2], "test_mse": [0.030, 0.031, 0.032]}),
        [None] * 3,
        [None] * 3,
        [],
    )

    def aligned(between, to_pca):
        return pd.DataFrame(
            {"kind": ["run vs run"] * 3 + ["run vs PCA"] * 3, "disparity": [*between, *to_pca]}
        )

    v = reruns_module.verdicts(runs, aligned([0.1, 0.2, 0.15], [0.5, 0.6, 0.7]), 0.001)
    assert v["errors_differ"] and v["closer_than_pca"]
    v = reruns_module.verdicts(runs, aligned([0.1, 0.8, 0.15], [0.5, 0.6, 0.7]), 0.4)
    assert not v["errors_differ"] and not v["closer_than_pca"]


def test_reruns_alignment_is_zero_for_the_same_layout(results, images):
    table = results["image-reruns"].tables["procrustes"]
    assert (table["kind"] == "run vs run").sum() == 3 and (table["kind"] == "run vs PCA").sum() == 3
    assert table["disparity"].between(0, 1).all()
    model = latent.Autoencoder(64, 2, 8, 1)
    same = Runs(pd.DataFrame({"seed": [0, 1]}), [model, model], [None, None], [])
    disparity = reruns_module.alignment(same, images, images)["disparity"]
    assert disparity.iloc[0] == pytest.approx(0, abs=1e-9)


# --- MNIST files --------------------------------------------------------------------------


def _write_idx(path, array, magic):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_denoising_runs_on_mnist_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    result = denoising(dataset="mnist", mnist_root=tmp_path, epochs=1, seeds=2)
    assert result.config["dataset"] == "mnist" and result.config["n_test"] == 30
    assert result.config["n_train"] + result.config["n_validation"] == 60
    assert result.config["hidden_size"] == 256  # MNIST's quick default, under the user's
