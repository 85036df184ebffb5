"""Image studies of the code space: VAE vs AE, and denoising with and without skips."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from aelab import data, plots, quality
from aelab._checks import check_positive_float, check_positive_int
from aelab._seed import seeded
from aelab.baselines import CodeSampler
from aelab.evaluate import encode, eval_mode, reconstruct, reconstruction_error
from aelab.models import VAE, Autoencoder, ConvAutoencoder
from aelab.studies._base import StudyResult, study
from aelab.studies._common import collapsed, nearest_labels, setting
from aelab.studies.images import (
    code_knn_accuracy,
    image_sizes,
    label_scatter,
    load_images,
    mean_image_mse,
    one_per_class,
    pick_epochs,
    study_device,
    train_each,
)
from aelab.train import TrainConfig, fit, train_vae


@torch.no_grad()
def _decode(model, Z: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model.decode(Z)


def _mse(X_hat: torch.Tensor, X: torch.Tensor) -> float:
    return float(((X_hat - X) ** 2).mean())


# --- vae-vs-ae --------------------------------------------------------------------------------

_VAE_EPOCHS = {("digits", True): 60, ("digits", False): 300,
               ("mnist", True): 5, ("mnist", False): 20}


def _latent_grid(low, high, m: int) -> torch.Tensor:
    """``m * m`` codes on a regular grid, rows from high z2 (top) to low z2, as an image reads."""
    z1 = torch.linspace(low[0], high[0], m)
    z2 = torch.linspace(high[1], low[1], m)
    return torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], -1).reshape(m * m, 2)


def _manifold_figure(panels: dict, image_shape, m: int, title: str):
    """Decoded images over each model's latent grid, axes in latent units (image centres at
    their grid values)."""
    _, H, W = image_shape
    gap = max(1, H // 8)
    fig, axes = plots.new_figure(ncols=len(panels), width=5.0, height=4.8)
    for ax, (name, (images, low, high)) in zip(axes[0], panels.items()):
        mosaic = plots.tile_images(images.reshape(m, m, -1), image_shape, gap=gap)
        sx = (high[0] - low[0]) / (m - 1) / (W + gap)  # latent units per pixel
        sy = (high[1] - low[1]) / (m - 1) / (H + gap)
        left, top = low[0] - W / 2 * sx, high[1] + H / 2 * sy
        extent = (left, left + mosaic.shape[1] * sx, top - mosaic.shape[0] * sy, top)
        image = plots.show_images(ax, mosaic, extent=extent, aspect=sx / sy)  # square pixels
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_title(name)
    fig.colorbar(image, ax=axes[0].tolist(), label="pixel value", shrink=0.8)
    fig.suptitle(title)
    return fig


def _variety(X: torch.Tensor, image_shape) -> tuple[float, float]:
    """How varied and how sharp a set of flat images is.

    Returns the total pixel variance across the images (sum over pixels), and
    the mean squared difference between neighbouring pixels (right and below
    neighbours): smooth, blurred images have little of it.
    """
    C, H, W = (int(v) for v in image_shape)
    images = X.double().reshape(len(X), C, H, W)
    across = float(images.reshape(len(X), -1).var(0, unbiased=False).sum())
    right = (images[..., :, 1:] - images[..., :, :-1]).pow(2).flatten(1)
    down = (images[..., 1:, :] - images[..., :-1, :]).pow(2).flatten(1)
    contrast = float(torch.cat([right, down], 1).mean())
    return across, contrast


def _prior_match(row: dict) -> str:
    """How the VAE's codes (posterior means) compare with its N(0, I) prior, in words."""
    stds = [row["code std z1"], row["code std z2"]]
    means = [row["code mean z1"], row["code mean z2"]]
    if max(stds) < 0.1:
        return ("collapsed onto (almost) one point: the code ignores the input (posterior "
                "collapse)")
    if all(0.5 <= s <= 1.5 for s in stds) and all(abs(m) < 0.3 for m in means):
        return "close to its N(0, I) prior"
    return "not yet close to its N(0, I) prior"


@study("vae-vs-ae", "2-D latent spaces of an AE and a VAE: codes by label, decoded latent grids, "
       "prior samples vs GMM samples")
def vae_vs_ae(quick: bool = True, seed: int = 0, *, dataset: str = "digits", mnist_root=None,
              epochs: int | None = None, beta: float = 1.0, grid_size: int = 12,
              n_samples: int | None = None, device=None, progress=None) -> StudyResult:
    """An autoencoder and a variational autoencoder, both with 2-D codes, side by side.

    Both are MLPs of the same size. The figures show each latent space coloured
    by label, the images decoded over a regular grid of latent values (the
    course's "manifold": the AE's grid spans the 1st to 99th percentile of its
    training codes, the VAE's +-2 standard deviations of its N(0, I) prior),
    and samples: the VAE decodes draws from its prior, the AE decodes draws from
    a Gaussian mixture fitted to its codes (and, for contrast, draws from
    N(0, I), which its decoder was never trained on). Sample quality is measured
    against held-out test images with :func:`aelab.quality.sample_quality`.

    Parameters
    ----------
    beta : float
        Weight of the VAE's KL term (1: the plain VAE).
    grid_size : int
        Images per side of the latent grid.
    n_samples : int, optional
        Generated images per method for the quality numbers; default: the
        test set size (at most 2000).

    Examples
    --------
    >>> result = vae_vs_ae(quick=True)  # doctest: +SKIP
    >>> sorted(result.figures)  # doctest: +SKIP
    ['latent', 'manifold', 'samples']
    """
    beta = check_positive_float("beta", beta, allow_zero=True)
    m = check_positive_int("grid_size", grid_size)
    if m < 2:
        raise ValueError(f"grid_size must be >= 2 (images per side of the latent grid), got {m}.")
    sizes = image_sizes(dataset, quick)
    epochs = pick_epochs(epochs, dataset, quick, _VAE_EPOCHS)
    train, test = load_images(dataset, mnist_root, quick=quick, seed=seed)
    n_samples = check_positive_int("n_samples", n_samples or min(len(test), 2000))
    d, shape = train.n_features, train.image_shape
    layers, lr = 2, 2e-3
    config = dict(dataset=dataset, **{**asdict(sizes), "n_train": len(train), "n_test": len(test)},
                  layers=layers, bottleneck=2, epochs=epochs, lr=lr, beta=beta, grid_size=m,
                  n_samples=n_samples, seed=seed, quick=quick)
    with seeded(seed):
        ae = Autoencoder(d, 2, sizes.hidden_size, layers)
    with seeded(seed):
        vae = VAE(d, 2, sizes.hidden_size, layers)
    common = dict(epochs=epochs, batch_size=sizes.batch_size, lr=lr, seed=seed,
                  device=study_device(device, quick), progress=progress)
    train_each({"AE": ae}, train, **common)
    vae_history = train_each({"VAE": vae}, train, trainer=train_vae, beta=beta, **common)["VAE"]
    config["vae_likelihood"] = vae.likelihood
    models = {"AE": ae, "VAE": vae}
    mse = {name: reconstruction_error(model, test.X) for name, model in models.items()}
    baseline = mean_image_mse(train, test)
    codes = {name: (encode(model, train.X), encode(model, test.X)) for name, model in models.items()}

    # the latent grids: the AE's over where its codes are, the VAE's over where its prior is
    Z_ae = codes["AE"][0]
    ae_low, ae_high = torch.quantile(Z_ae, 0.01, dim=0), torch.quantile(Z_ae, 0.99, dim=0)
    prior = torch.tensor([2.0, 2.0])
    grids = {"AE": (ae_low.tolist(), ae_high.tolist()), "VAE": ((-prior).tolist(), prior.tolist())}
    decoded_grids = {name: _decode(models[name], _latent_grid(low, high, m))
                     for name, (low, high) in grids.items()}

    g = torch.Generator().manual_seed(seed)
    z_prior = torch.randn(n_samples, 2, generator=g)
    sampler = CodeSampler(ae, n_components="bic", random_state=seed).fit(train.X)
    generated = {
        "VAE: prior N(0, I) decoded": _decode(vae, z_prior),
        f"AE: GMM ({sampler.n_components_} comp.) on its codes": sampler.sample(n_samples, seed=seed)[0],
        "AE: N(0, I) decoded": _decode(ae, z_prior),
    }
    real = test.X[:n_samples]  # k-NN radii cost n^2 distances: keep the reference set bounded
    sample_rows = []
    real_variance, real_contrast = _variety(real, shape)
    for name, X_gen in generated.items():
        q = quality.sample_quality(X_gen, real, seed=seed)
        variance, contrast = _variety(X_gen, shape)
        sample_rows.append({"samples": name, "MMD^2 to test images": q.mmd2,
                            "precision": q.precision, "recall": q.recall, "n": q.n_generated,
                            "pixel variance / real's": variance / real_variance,
                            "neighbour-pixel contrast / real's": contrast / real_contrast})
    n_classes = len(train.y.unique())
    grid_classes = {name: len(np.unique(nearest_labels(train, X_grid)))
                    for name, X_grid in decoded_grids.items()}

    latent_rows = []
    for name, (Z_tr, Z_te) in codes.items():
        latent_rows.append({
            "model": name, "test MSE": mse[name],
            "code mean z1": float(Z_tr[:, 0].mean()), "code mean z2": float(Z_tr[:, 1].mean()),
            "code std z1": float(Z_tr[:, 0].std()), "code std z2": float(Z_tr[:, 1].std()),
            "5-NN label accuracy from codes": code_knn_accuracy(Z_tr, train.y, Z_te, test.y),
            "labels seen on the latent grid": grid_classes[name],
        })
    latent = pd.DataFrame(latent_rows)
    samples = pd.DataFrame(sample_rows)

    fig, axes = plots.new_figure(ncols=2, width=5.0, height=4.6)
    label_scatter(fig, axes[0], {f"{name}: codes of {len(test)} test images"
                                 + (" (posterior means)" if name == "VAE" else ""):
                                 (codes[name][1], test.y) for name in models})
    fig.suptitle(f"{train.name}: 2-D latent spaces coloured by label")
    shown = one_per_class(test, 12)
    figures = {
        "latent": fig,
        "manifold": _manifold_figure(
            {"AE: grid over its codes' 1-99% range": (decoded_grids["AE"], *grids["AE"]),
             "VAE: grid over +-2 sd of the prior": (decoded_grids["VAE"], *grids["VAE"])},
            shape, m, title=f"{train.name}: images decoded over a {m}x{m} grid of latent values"),
        "samples": plots.image_grid(
            {"real test images": test.X[shown], **generated}, shape, n=12,
            xlabel="sample", ylabel="source",
            title=f"{train.name}: VAE prior samples next to the AE's GMM samples"),
    }

    by = {r["samples"]: r for r in sample_rows}
    vae_row, gmm_row, ae_prior_row = (by[k] for k in generated)
    lat = {r["model"]: r for r in latent_rows}
    best = min(sample_rows, key=lambda r: r["MMD^2 to test images"])["samples"]
    findings = [
        f"Test reconstruction MSE: AE {mse['AE']:.4f}, VAE {mse['VAE']:.4f} (decoding the "
        f"posterior mean; mean image: {baseline:.4f}). The VAE "
        + (f"pays {mse['VAE'] / mse['AE']:.2f} times the AE's error for its regular code space."
           if mse["VAE"] > mse["AE"] else "reconstructs at least as well as the AE here."),
        f"The VAE's codes have mean ({lat['VAE']['code mean z1']:.2f}, "
        f"{lat['VAE']['code mean z2']:.2f}) and standard deviations "
        f"({lat['VAE']['code std z1']:.2f}, {lat['VAE']['code std z2']:.2f}), "
        + _prior_match(lat["VAE"]) + f"; the AE's have mean ({lat['AE']['code mean z1']:.2f}, "
        f"{lat['AE']['code mean z2']:.2f}) and standard deviations ({lat['AE']['code std z1']:.2f}, "
        f"{lat['AE']['code std z2']:.2f}), set by nothing but reconstruction. A 5-NN vote from "
        f"the 2-D codes finds the right label for {lat['AE']['5-NN label accuracy from codes']:.1%} "
        f"(AE) and {lat['VAE']['5-NN label accuracy from codes']:.1%} (VAE) of the test images.",
        f"Labelled by their nearest training image, the {m * m} images decoded over the latent "
        f"grid show {grid_classes['VAE']} of the {n_classes} labels for the VAE (over +-2 prior "
        f"standard deviations) and {grid_classes['AE']} for the AE (over its codes' 1-99% "
        "range).",
        f"Against {len(real)} held-out test images: VAE prior samples have MMD^2 "
        f"{vae_row['MMD^2 to test images']:.4f} (precision {vae_row['precision']:.2f}, recall "
        f"{vae_row['recall']:.2f}); the AE's GMM samples {gmm_row['MMD^2 to test images']:.4f} "
        f"({gmm_row['precision']:.2f}, {gmm_row['recall']:.2f}); N(0, I) through the AE's decoder "
        f"{ae_prior_row['MMD^2 to test images']:.4f} ({ae_prior_row['precision']:.2f}, "
        f"{ae_prior_row['recall']:.2f}). Closest to the data by MMD^2: {best}.",
    ]
    top_recall = max(r["recall"] for r in sample_rows)
    if top_recall < 0.2:
        variety = [(r["pixel variance / real's"], r["neighbour-pixel contrast / real's"])
                   for r in sample_rows]
        plainer = all(v < 1 and c < 1 for v, c in variety)
        findings.append(
            f"Recall is at most {top_recall:.2f} for every generator: few of the real test images "
            "lie within the 3-NN radius of any generated image. Against the real images, the "
            "generated ones have "
            + ", ".join(f"{v:.0%} of the pixel variance and {c:.0%} of the neighbour-pixel "
                        f"contrast ({r['samples']})" for r, (v, c) in zip(sample_rows, variety))
            + (": all are less varied and smoother than real images." if plainer else "."))
    if vae_history.train_loss[-1] >= vae_history.train_loss[0]:
        findings.append(f"The VAE's loss did not fall ({vae_history.train_loss[0]:.1f} -> "
                        f"{vae_history.train_loss[-1]:.1f}): it did not train; try another lr.")
    for name in models:
        if collapsed(mse[name], baseline):
            findings.append(f"Degenerate: the {name} reconstructs no better than the mean image "
                            f"(MSE {mse[name]:.4f} vs {baseline:.4f}); for the VAE this is "
                            "posterior collapse (its codes carry no information).")
    metrics = {"ae_test_mse": mse["AE"], "vae_test_mse": mse["VAE"], "mean_image_mse": baseline,
               "vae_prior_mmd2": vae_row["MMD^2 to test images"],
               "ae_gmm_mmd2": gmm_row["MMD^2 to test images"],
               "ae_normal_mmd2": ae_prior_row["MMD^2 to test images"],
               "ae_code_knn_accuracy": lat["AE"]["5-NN label accuracy from codes"],
               "vae_code_knn_accuracy": lat["VAE"]["5-NN label accuracy from codes"],
               "ae_grid_labels": grid_classes["AE"], "vae_grid_labels": grid_classes["VAE"],
               "vae_code_std_z1": lat["VAE"]["code std z1"], "vae_code_std_z2": lat["VAE"]["code std z2"]}
    return StudyResult("vae-vs-ae", {"latent spaces": latent, "samples": samples}, figures,
                       findings, config, metrics)


# --- denoising --------------------------------------------------------------------------------

# (dataset, quick) -> (epochs, batch_size, lr); the course trains MNIST for 10 epochs in
# batches of 64. Quick digits runs take larger batches: the conv models' steps on 8x8 maps
# cost per-op overhead, not arithmetic, so fewer, bigger steps are faster.
_DENOISING = {("digits", True): (20, 128, 5e-3), ("digits", False): (100, 64, 2e-3),
              ("mnist", True): (3, 64, 2e-3), ("mnist", False): (10, 64, 1e-3)}
_CLIP = (0.0, 1.0)  # the data range of digits and MNIST


def denoising_objective(sigma: float, clip=_CLIP):
    """MSE between ``model(x + noise)`` and the clean ``x``, the noisy input clipped to ``clip``.

    The noise is drawn afresh for every batch from torch's global RNG, which
    :func:`aelab.train.fit` seeds, so runs are reproducible. (The trainer's own
    ``noise_sigma`` does not clip, and noise that leaves [0, 1] is noise no real
    image shows.)
    """

    def objective(model, x, target):
        noisy = (x + sigma * torch.randn_like(x)).clamp(*clip)
        return F.mse_loss(model(noisy), target)

    return objective


def _train_denoiser(model, train, *, sigma, epochs, batch_size, lr, seed, device, progress):
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return fit(model, train, denoising_objective(sigma), cfg, device=device, progress=progress,
               extra_config={"objective": "denoising", "noise_sigma": sigma, "clip": list(_CLIP)})


def _code_only(model, X: torch.Tensor) -> torch.Tensor:
    """Reconstruction from the code alone: a skip model decodes with zeroed skips."""
    return _decode(model, encode(model, X))


def _skip_figure(table: pd.DataFrame, corrupted_mse: float, baseline: float, title: str):
    fig, axes = plots.new_figure(width=7.0, height=4.4)
    ax = axes[0, 0]
    bottlenecks = sorted(table["bottleneck"].unique())
    models = list(dict.fromkeys(table["model"]))
    width = 0.8 / len(bottlenecks)
    for i, b in enumerate(bottlenecks):
        part = table[table["bottleneck"] == b].set_index("model").loc[models]
        x = np.arange(len(models)) + (i - (len(bottlenecks) - 1) / 2) * width
        ax.bar(x, part["test MSE (noisy in, clean target)"], width, color=f"C{i}",
               label=f"bottleneck {b}")
        ax.scatter(x, part["test MSE from the code alone"], marker="_", s=300, color="k",
                   zorder=3, label="from the code alone (skips zeroed)" if i == 0 else None)
    ax.axhline(corrupted_mse, color="C3", ls="--", lw=1, label="the corrupted input itself")
    ax.axhline(baseline, color="0.4", ls=":", lw=1, label="predicting the mean image")
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_yscale("log")
    plots.plain_log_ticks(ax)
    ax.set_xlabel("model")
    ax.set_ylabel("test MSE against the clean images (log scale)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3, which="both")
    return fig


@study("denoising", "Denoising (sigma 0.3): MLP AE, conv AE and conv AE with skips: outputs, "
       "errors, embeddings, and what skips do to the bottleneck")
def denoising(quick: bool = True, seed: int = 0, *, dataset: str = "digits", mnist_root=None,
              sigma: float = 0.3, bottlenecks=(2, 16), epochs: int | None = None, device=None,
              progress=None) -> StudyResult:
    """Three denoising autoencoders: an MLP, a convolutional one, and a convolutional one with skips.

    Each is trained to map images corrupted by Gaussian noise (``sigma``,
    clipped to the data range [0, 1], drawn afresh every batch) to the clean
    images, at each bottleneck size. Evaluated on one fixed corruption of the
    test images against the clean ones: the outputs, the errors, the 2-D
    embeddings coloured by label, and, by comparing bottleneck sizes and
    decoding the code alone, how much information the skips carry around the
    bottleneck.

    Parameters
    ----------
    sigma : float
        Standard deviation of the noise (the course: 0.3).
    bottlenecks : sequence of int
        Code sizes; the first is the one shown (2 gives the 2-D embeddings).
    epochs : int, optional
        Overrides the default training length.

    Examples
    --------
    >>> result = denoising(quick=True)  # doctest: +SKIP
    >>> sorted(result.figures)  # doctest: +SKIP
    ['embeddings', 'outputs', 'skips']
    """
    sigma = check_positive_float("sigma", sigma)
    bottlenecks = [check_positive_int("bottlenecks[i]", b) for b in bottlenecks]
    if not bottlenecks:
        raise ValueError("bottlenecks must name at least one code size, got none.")
    sizes = image_sizes(dataset, quick)
    default_epochs, batch_size, lr = _DENOISING[dataset, bool(quick)]
    epochs = setting("epochs", epochs, quick, default_epochs, default_epochs)
    train, test = load_images(dataset, mnist_root, quick=quick, seed=seed)
    d, shape = train.n_features, train.image_shape
    config = dict(dataset=dataset, **{**asdict(sizes), "n_train": len(train), "n_test": len(test),
                                      "batch_size": batch_size},
                  mlp_layers=2, conv_channels=[16, 32], bottlenecks=bottlenecks, epochs=epochs,
                  lr=lr, sigma=sigma, clip=list(_CLIP), seed=seed, quick=quick,
                  noise="Gaussian, clipped to [0, 1], drawn afresh for every training batch; "
                        "one fixed draw for the test set")
    builders = {"MLP AE": lambda b: Autoencoder(d, b, sizes.hidden_size, 2),
                "conv AE": lambda b: ConvAutoencoder(shape, b),
                "conv AE + skips": lambda b: ConvAutoencoder(shape, b, skip=True)}
    models = {}
    for b in bottlenecks:
        for name, build in builders.items():
            with seeded(seed):
                models[name, b] = build(b)
    train_each(models, train, trainer=_train_denoiser, sigma=sigma, epochs=epochs,
               batch_size=batch_size, lr=lr, seed=seed,
               device=study_device(device, quick), progress=progress)

    noisy = data.corrupt(test.X, sigma, seed=seed, clip=_CLIP)
    corrupted_mse = _mse(noisy, test.X)
    baseline = mean_image_mse(train, test)
    outputs, rows = {}, []
    noisy_train = data.corrupt(train.X, sigma, seed=seed + 1, clip=_CLIP)
    for (name, b), model in models.items():
        outputs[name, b] = reconstruct(model, noisy)
        row = {"model": name, "bottleneck": b,
               "test MSE (noisy in, clean target)": _mse(outputs[name, b], test.X),
               "test MSE on clean inputs": reconstruction_error(model, test.X),
               "test MSE from the code alone": _mse(_code_only(model, noisy), test.X)}
        if b == bottlenecks[0]:
            row["5-NN label accuracy from codes"] = code_knn_accuracy(
                encode(model, noisy_train), train.y, encode(model, noisy), test.y)
        rows.append(row)
    table = pd.DataFrame(rows)
    table = pd.concat([table, pd.DataFrame([
        {"model": "the corrupted input itself", "test MSE (noisy in, clean target)": corrupted_mse},
        {"model": "predicting the mean image", "test MSE (noisy in, clean target)": baseline}])],
        ignore_index=True)
    table["bottleneck"] = table["bottleneck"].astype("Int64")  # blank for the two baselines

    b0 = bottlenecks[0]
    shown = one_per_class(test)
    grid_rows = {"original": test.X[shown], f"corrupted (MSE {corrupted_mse:.3f})": noisy[shown]}
    err = {(r["model"], r["bottleneck"]): r["test MSE (noisy in, clean target)"] for r in rows}
    for name in builders:
        grid_rows[f"{name}, b={b0} (MSE {err[name, b0]:.3f})"] = outputs[name, b0][shown]
    figures = {"outputs": plots.image_grid(
        grid_rows, shape, col_labels=[str(int(v)) for v in test.y[shown]],
        xlabel="test image (true label)", ylabel="input and each model's output",
        title=f"{train.name}: denoising noise of sigma {sigma:g} at bottleneck {b0}")}
    if b0 >= 2:
        fig, axes = plots.new_figure(ncols=len(builders), width=4.4, height=4.2)
        label_scatter(fig, axes[0], {f"{name}": (encode(models[name, b0], noisy), test.y)
                                     for name in builders})
        fig.suptitle(f"{train.name}: codes of the {len(test)} corrupted test images, bottleneck {b0}"
                     + (" (first two of its dimensions)" if b0 > 2 else ""))
        figures["embeddings"] = fig
    figures["skips"] = _skip_figure(
        table.dropna(subset=["bottleneck"]).astype({"bottleneck": int}), corrupted_mse, baseline,
        title=f"{train.name}: denoising error by model and bottleneck size")

    code_only = {(r["model"], r["bottleneck"]): r["test MSE from the code alone"] for r in rows}
    findings = [
        f"At bottleneck {b0}, test MSE against the clean images: "
        + ", ".join(f"{name} {err[name, b0]:.4f}" for name in builders)
        + f"; the corrupted input itself is at {corrupted_mse:.4f} and the mean image at "
        f"{baseline:.4f}. "
        + ("Every model removes noise." if all(err[n, b0] < corrupted_mse for n in builders) else
           "Not every model beats the corrupted input: "
           + ", ".join(f"the {n} ({err[n, b0]:.4f})" for n in builders
                       if err[n, b0] >= corrupted_mse)
           + f" does not after {epochs} epochs."),
    ]
    if len(bottlenecks) > 1:
        b1 = bottlenecks[-1]
        ratio = {name: err[name, b0] / err[name, b1] for name in builders}
        findings.append(
            f"Shrinking the code from {b1} to {b0} numbers multiplies the error by "
            f"{ratio['MLP AE']:.2f} for the MLP AE, {ratio['conv AE']:.2f} for the conv AE and "
            f"{ratio['conv AE + skips']:.2f} for the conv AE with skips: "
            + ("with skips, information bypasses the bottleneck, so the error depends much less "
               "on the code size." if ratio["conv AE + skips"] < min(ratio["MLP AE"], ratio["conv AE"])
               else "here the skips did not make the error less dependent on the code size."))
    findings.append(
        f"Decoding the skip model's {b0}-number code alone (skip features zeroed) gives MSE "
        f"{code_only['conv AE + skips', b0]:.4f}, against {err['conv AE + skips', b0]:.4f} with "
        f"the skips and {baseline:.4f} for the mean image: "
        + ("the decoder depends on the skip features, the code alone does not carry the image; "
           if collapsed(code_only["conv AE + skips", b0], baseline) else
           "the code carries part of the image, the skips the rest; ")
        + f"the conv AE without skips scores {code_only['conv AE', b0]:.4f} from its code "
        "(its whole output).")
    if b0 >= 2:
        knn = {r["model"]: r["5-NN label accuracy from codes"] for r in rows if r["bottleneck"] == b0}
        findings.append(
            f"A 5-NN vote from the {b0}-D codes of corrupted test images finds the right label "
            f"for " + ", ".join(f"{knn[n]:.1%} ({n})" for n in builders)
            + f": {max(knn, key=knn.get)} has the most label-structured code.")
    bad = [f"{n} at {b}" for (n, b), e in err.items() if collapsed(e, baseline)]
    if bad:
        findings.append("Degenerate: " + ", ".join(bad) + " reconstruct no better than the mean "
                        "image; train longer or with another seed.")
    metrics = {"corrupted_mse": corrupted_mse, "mean_image_mse": baseline}
    for (name, b), e in err.items():
        key = {"MLP AE": "mlp", "conv AE": "conv", "conv AE + skips": "skip"}[name]
        metrics[f"{key}_mse_b{b}"] = e
        metrics[f"{key}_code_only_mse_b{b}"] = code_only[name, b]
    return StudyResult("denoising", {"errors": table}, figures, findings, config, metrics)
