"""Generating two moons from an autoencoder (course sheet 002, tasks 1.3 and 2).

moons-code-gmm fits a Gaussian mixture to the 1-D codes and decodes samples
from it; moons-mmd trains a 2-D bottleneck whose codes an MMD penalty pulls
towards N(0, I), so that decoded normal samples are new data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning

from aelab import data
from aelab._seed import seeded
from aelab.baselines import CodeSampler
from aelab.evaluate import encode, eval_mode, reconstruct, reconstruction_error
from aelab.losses import mmd
from aelab.models import ResNetAutoencoder
from aelab.plots import new_figure
from aelab.quality import distance_to_moons, sample_quality
from aelab.studies._base import StudyResult, study
from aelab.studies._common import collapsed, mean_predictor_mse, setting, train_stack
from aelab.studies.moons import (
    build_mlp,
    draw_moons_curve,
    draw_reconstruction,
    finish_plane,
    moons_data,
    moons_test,
)
from aelab.train import train_autoencoder, train_mmd_autoencoder

# a fresh real sample, the reference for what "as good as real data" scores, comes from here
REFERENCE_SEED_OFFSET = 20_000
# optimizer steps of moons-autoencoder's quick run (800 training points in batches of 32,
# 150 epochs): enough for a 1-D bottleneck MLP to come close to its best, so moons-mmd's
# 1-D baseline gets as many
BASELINE_STEPS = 800 // 32 * 150
FAR = "share farther than 3 noise std from curve"


def _quality_row(source: str, generated, real, seed: int, noise: float, **extra) -> dict:
    q = sample_quality(generated, real, moons=True, seed=seed)
    far = float((distance_to_moons(generated)[0] > 3 * noise).float().mean())
    return {"points": source, **extra, "MMD² to test set": q.mmd2, "precision": q.precision,
            "recall": q.recall, "mean distance to noise-free curve": q.moons_distance,
            FAR: far}


def _draw_samples(ax, real, fake, title: str, fake_label: str) -> None:
    real, fake = np.asarray(real), np.asarray(fake)
    ax.scatter(real[:, 0], real[:, 1], s=6, color="0.7", label="real (test)", zorder=1)
    ax.scatter(fake[:, 0], fake[:, 1], s=6, color="C3", alpha=0.7, label=fake_label, zorder=2)
    draw_moons_curve(ax)
    finish_plane(ax, title)


# --- moons-code-gmm -------------------------------------------------------------------------


def _components(k: int) -> str:
    return f"{k} component" + ("" if k == 1 else "s")


def _fit_sampler(model, X, n_components, seed: int, caught: list[str]) -> CodeSampler:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", ConvergenceWarning)
        sampler = CodeSampler(model, n_components=n_components, random_state=seed).fit(X)
    caught.extend(str(w.message) for w in record if issubclass(w.category, ConvergenceWarning))
    return sampler


@study("moons-code-gmm",
       "1-D codes of two moons: histogram, Gaussian mixture (BIC), decoded samples and their quality")
def moons_code_gmm(quick: bool = True, seed: int = 0, *, progress=None, n_train: int | None = None,
                   n_test: int | None = None, epochs: int | None = None,
                   batch_size: int | None = None, noise: float = 0.1, lr: float = 3e-3,
                   hidden_size: int = 32, layers: int = 2, n_components="bic") -> StudyResult:
    """Fit a Gaussian mixture to the 1-D codes of a trained autoencoder and sample from it.

    The mixture's number of components is chosen by BIC (``n_components="bic"``).
    Synthetic points (mixture samples, decoded) are compared with held-out real
    points by MMD², k-NN precision/recall and their distance to the noise-free
    curve, next to three references: a single Gaussian on the codes, the test
    set's own reconstructions, and a fresh real sample.

    Examples
    --------
    >>> r = moons_code_gmm(quick=True, epochs=2)
    >>> "synthetic" in r.figures
    True
    """
    n_train = setting("n_train", n_train, quick, 400, 2000)
    n_test = setting("n_test", n_test, quick, 500, 2000)
    epochs = setting("epochs", epochs, quick, 200, 1000)
    batch_size = setting("batch_size", batch_size, quick, 64, 32)
    config = dict(quick=quick, seed=seed, n_train=n_train, n_test=n_test, epochs=epochs,
                  batch_size=batch_size, noise=noise, lr=lr, hidden_size=hidden_size,
                  layers=layers, n_components=n_components, optimizer="adam")
    train, test = moons_data(n_train, noise, seed), moons_test(n_test, noise, seed)
    model = build_mlp(hidden_size, layers, seed)
    train_autoencoder(model, train, epochs=epochs, batch_size=batch_size, lr=lr, test=test,
                      seed=seed, device="cpu", progress=progress)
    test_mse = reconstruction_error(model, test.X)

    caught: list[str] = []
    gmm = _fit_sampler(model, train.X, n_components, seed, caught)
    single = _fit_sampler(model, train.X, 1, seed, caught)
    X_gmm, _ = gmm.sample(n_test, seed=seed)
    X_single, _ = single.sample(n_test, seed=seed)
    X_rec = reconstruct(model, test.X)
    how = "BIC" if n_components == "bic" else "fixed"
    reference = data.moons(n_test, noise=noise, seed=seed + REFERENCE_SEED_OFFSET).X
    rows = [
        _quality_row(f"decoded GMM samples ({_components(gmm.n_components_)}, {how})", X_gmm,
                     test.X, seed, noise, components=gmm.n_components_),
        _quality_row("decoded samples of one Gaussian", X_single, test.X, seed, noise,
                     components=1),
        _quality_row("reconstructed test points", X_rec, test.X, seed, noise,
                     components=np.nan),
        _quality_row("fresh real sample (reference)", reference, test.X, seed, noise,
                     components=np.nan),
    ]
    quality = pd.DataFrame(rows)
    bic = pd.DataFrame({"components": list(gmm.bic_), "BIC": list(gmm.bic_.values())})
    bic["chosen"] = bic["components"] == gmm.n_components_

    codes = gmm.codes_[:, 0].numpy()
    labels = train.y.numpy()
    fig_codes, axs = new_figure(1, 1, width=7.0, height=4.2)
    ax = axs[0, 0]
    bins = np.linspace(codes.min(), codes.max(), 50)
    ax.hist([codes[labels == 0], codes[labels == 1]], bins=bins, stacked=True, density=True,
            color=["C0", "C1"], alpha=0.6, label=["codes of moon 0", "codes of moon 1"])
    span = codes.max() - codes.min()
    grid = torch.linspace(codes.min() - 0.1 * span, codes.max() + 0.1 * span, 500)[:, None]
    g = gmm.gmm_
    order = np.argsort(g.means_[:, 0])
    for j, k in enumerate(order):
        sd = float(np.sqrt(g.covariances_.reshape(g.n_components, -1)[k, 0]))
        part = g.weights_[k] * np.exp(-0.5 * ((grid[:, 0].numpy() - g.means_[k, 0]) / sd) ** 2) / (
            sd * np.sqrt(2 * np.pi))
        ax.plot(grid[:, 0], part, color="0.35", lw=0.8, ls="--",
                label="weighted components" if j == 0 else None)
    ax.plot(grid[:, 0], gmm.density(grid), color="C3", lw=2,
            label=f"mixture density ({_components(gmm.n_components_)})")
    ax.set_xlabel("code z (bottleneck value)")
    ax.set_ylabel("density")
    ax.set_title(f"Histogram of the {len(codes)} training codes and the fitted Gaussian mixture")
    ax.legend(fontsize="small")

    fig_bic, axb = new_figure(1, 1, width=5.5, height=3.8)
    ax = axb[0, 0]
    ax.plot(bic["components"], bic["BIC"], marker="o", color="C0", label="BIC of each fit")
    ax.scatter([gmm.n_components_], [gmm.bic_[gmm.n_components_]], s=160, facecolors="none",
               edgecolors="C3", lw=2, label=f"chosen: {_components(gmm.n_components_)}", zorder=3)
    ax.set_xticks(bic["components"])
    ax.set_xlabel("number of mixture components")
    ax.set_ylabel("BIC (lower is better)")
    ax.set_title("Choosing the mixture size by BIC")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")

    fig_syn, axs2 = new_figure(2, 1, width=5.5, height=4.5)
    for ax, X_fake, row, label in zip(axs2.flat, (X_gmm, X_rec), (rows[0], rows[2]),
                                      ("synthetic", "reconstructed")):
        _draw_samples(ax, test.X, X_fake,
                      f"{row['points']}\nMMD² {row['MMD² to test set']:.4f}, precision "
                      f"{row['precision']:.2f}, recall {row['recall']:.2f}", label)
    fig_syn.suptitle(f"{n_test} points decoded from mixture samples (left) and from the test "
                     "points' own codes (right), over the real test points")

    g_row, s_row, rec_row, ref_row = rows
    others = sorted(gmm.bic_, key=gmm.bic_.get)[1:]  # the candidates BIC ranked behind the choice
    findings = [
        (f"BIC chose {_components(gmm.n_components_)} for the {len(codes)} training codes "
         f"(BIC {gmm.bic_[gmm.n_components_]:.1f} against {gmm.bic_[others[0]]:.1f} for "
         f"{_components(others[0])}, the next best)" if others else
         f"The mixture has a fixed {_components(gmm.n_components_)} (BIC "
         f"{gmm.bic_[gmm.n_components_]:.1f}) for the {len(codes)} training codes")
        + f"; the autoencoder's test MSE is {test_mse:.4f}.",
        f"Decoded GMM samples: MMD² to the test set {g_row['MMD² to test set']:.4f}, precision "
        f"{g_row['precision']:.2f}, recall {g_row['recall']:.2f}; a fresh real sample scores "
        f"{ref_row['MMD² to test set']:.4f}, {ref_row['precision']:.2f} and {ref_row['recall']:.2f}, "
        f"the test set's own reconstructions {rec_row['MMD² to test set']:.4f}, "
        f"{rec_row['precision']:.2f} and {rec_row['recall']:.2f}"
        + (": the decoded points lie on the decoder's thin curve and do not cover the noise's "
           "spread across it." if g_row["recall"] < 0.5 * ref_row["recall"] else "."),
        f"Synthetic points lie {g_row['mean distance to noise-free curve']:.3f} from the noise-free "
        f"curve on average (real points {ref_row['mean distance to noise-free curve']:.3f}, "
        f"reconstructions {rec_row['mean distance to noise-free curve']:.3f}); "
        f"{g_row[FAR]:.1%} of them are farther than {3 * noise:g} (3 noise std) from it, against "
        f"{ref_row[FAR]:.1%} of real points and {rec_row[FAR]:.1%} of reconstructions.",
        (f"BIC's choice is already a single Gaussian, so the one-Gaussian row of the table "
         f"(MMD² {s_row['MMD² to test set']:.4f}) repeats it."
         if gmm.n_components_ == 1 else
         f"One Gaussian instead of the mixture gives MMD² {s_row['MMD² to test set']:.4f} "
         f"(precision {s_row['precision']:.2f}, recall {s_row['recall']:.2f}, "
         f"{s_row[FAR]:.1%} farther than {3 * noise:g} from the curve)."),
    ]
    if caught:
        findings.append(f"{len(caught)} mixture fit(s) did not converge: {caught[0]}")
    if collapsed(test_mse, mean_predictor_mse(test.X)):
        findings.append(f"The autoencoder collapsed (test MSE {test_mse:.3f}, about the data's "
                        "variance): its codes carry no information, so neither do the samples.")
    metrics = {"test_mse": test_mse, "n_components": int(gmm.n_components_),
               "gmm_mmd2": float(g_row["MMD² to test set"]), "gmm_precision": float(g_row["precision"]),
               "gmm_recall": float(g_row["recall"]),
               "gmm_curve_distance": float(g_row["mean distance to noise-free curve"]),
               "reference_mmd2": float(ref_row["MMD² to test set"]),
               "single_gaussian_mmd2": float(s_row["MMD² to test set"])}
    return StudyResult("moons-code-gmm", {"sample quality": quality, "BIC": bic},
                       {"codes": fig_codes, "bic": fig_bic, "synthetic": fig_syn}, findings,
                       config, metrics)


# --- moons-mmd ------------------------------------------------------------------------------


def _normal_circles(ax) -> None:
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2, 3):
        ax.plot(r * np.cos(t), r * np.sin(t), color="k", lw=0.8, ls="--",
                label="N(0, I): 1, 2, 3 std circles" if r == 1 else None)


@study("moons-mmd",
       "2-D bottleneck + MMD to N(0, I) (ResNet) on two moons: error vs 1-D, codes, decoded normals")
def moons_mmd(quick: bool = True, seed: int = 0, *, progress=None, n_train: int | None = None,
              n_test: int | None = None, epochs: int | None = None,
              batch_size: int | None = None, noise: float = 0.1, lr: float = 3e-3,
              hidden_size: int = 64, blocks: int | None = None, mmd_weight: float = 1.0,
              kernel: str = "imq", bandwidths=(0.25, 0.5, 1.0, 2.0, 4.0),
              mlp_hidden_size: int = 32, mlp_layers: int = 2, mlp_epochs: int | None = None,
              mlp_batch_size: int = 32) -> StudyResult:
    """A ResNet autoencoder with a 2-D code pulled to N(0, I) by MMD, against a 1-D bottleneck.

    Three models train on the same data: the ResNet with the MMD penalty, the
    same ResNet without it (``mmd_weight=0``: what the penalty costs and buys),
    and the 1-D-bottleneck MLP of the course's first task. For each: test MSE,
    MMD² of the test codes to N(0, I), and the quality of decoded N(0, I) samples.

    The 1-D MLP is the baseline the 2-D code is measured against, so it is
    trained to near its best: in batches of ``mlp_batch_size`` for
    ``mlp_epochs`` epochs, by default (quick) as many optimizer steps as
    moons-autoencoder's quick run, else ``epochs``. A 2-D code for 2-D data is
    no bottleneck (the model can approach the identity), so its lower error is
    expected; what the MMD penalty buys is a code distribution one can sample.

    Examples
    --------
    >>> r = moons_mmd(quick=True, epochs=2)
    >>> len(r.tables["models"])
    3
    """
    n_train = setting("n_train", n_train, quick, 400, 2000)
    n_test = setting("n_test", n_test, quick, 500, 2000)
    epochs = setting("epochs", epochs, quick, 40, 1000)
    batch_size = setting("batch_size", batch_size, quick, 100, 128)
    blocks = blocks if blocks is not None else (2 if quick else 4)
    bandwidths = tuple(float(b) for b in bandwidths)
    mlp_batch_size = setting("mlp_batch_size", mlp_batch_size, quick, 32, 32)
    steps_per_epoch = max(1, n_train // mlp_batch_size)  # full batches only (drop_last)
    mlp_epochs = setting("mlp_epochs", mlp_epochs, quick,
                         math.ceil(BASELINE_STEPS / steps_per_epoch), epochs)
    config = dict(quick=quick, seed=seed, n_train=n_train, n_test=n_test, epochs=epochs,
                  batch_size=batch_size, noise=noise, lr=lr, hidden_size=hidden_size,
                  blocks=blocks, mmd_weight=mmd_weight, kernel=kernel, bandwidths=list(bandwidths),
                  mlp_hidden_size=mlp_hidden_size, mlp_layers=mlp_layers, mlp_epochs=mlp_epochs,
                  mlp_batch_size=mlp_batch_size, optimizer="adam")
    train, test = moons_data(n_train, noise, seed), moons_test(n_test, noise, seed)
    common = dict(epochs=epochs, batch_size=batch_size, lr=lr, test=test, seed=seed,
                  device="cpu", progress=progress)

    with seeded(seed):
        resnet_mmd = ResNetAutoencoder(2, 2, hidden_size, blocks)
    with seeded(seed):
        resnet_plain = ResNetAutoencoder(2, 2, hidden_size, blocks)
    mlp_1d = build_mlp(mlp_hidden_size, mlp_layers, seed)
    histories = [train_mmd_autoencoder(resnet_mmd, train, mmd_weight=mmd_weight, kernel=kernel,
                                       bandwidths=bandwidths, **common)]
    histories += train_stack([resnet_plain], train, test=test, epochs=epochs,
                             batch_size=batch_size, lr=lr, seeds=[seed], on_diverge="restore",
                             progress=progress)
    histories += train_stack([mlp_1d], train, test=test, epochs=mlp_epochs,
                             batch_size=mlp_batch_size, lr=lr, seeds=[seed], on_diverge="restore",
                             progress=progress)

    models = {
        f"ResNet, bottleneck 2, MMD weight {mmd_weight:g}": resnet_mmd,
        "ResNet, bottleneck 2, no MMD": resnet_plain,
        f"MLP 2-{'-'.join([str(mlp_hidden_size)] * mlp_layers)}-1, bottleneck 1": mlp_1d,
    }
    g = torch.Generator().manual_seed(seed)
    prior = {d: torch.randn(n_test, d, generator=g) for d in (1, 2)}
    rows, samples, codes = [], {}, {}
    for (name, model), history in zip(models.items(), histories):
        z = encode(model, test.X)
        codes[name] = z
        d = z.shape[1]
        with torch.no_grad(), eval_mode(model) as device:
            X_new = model.decode(prior[d].to(device)).cpu()
        samples[name] = X_new
        q = sample_quality(X_new, test.X, moons=True, seed=seed)
        test_mse = reconstruction_error(model, test.X)
        rows.append({"model": name, "bottleneck": d, "epochs": history.epochs,
                     "optimizer steps": len(history.step_loss),
                     "train MSE": reconstruction_error(model, train.X),
                     "test MSE": test_mse,
                     "MMD² codes vs N(0, I)": float(mmd(z, prior[d], kernel=kernel,
                                                        bandwidths=bandwidths)),
                     "code mean norm": float(z.mean(0).norm()),
                     "code std (per dim)": ", ".join(f"{v:.2f}" for v in z.std(0).tolist()),
                     "decoded N(0, I): MMD² to test": q.mmd2,
                     "decoded N(0, I): precision": q.precision,
                     "decoded N(0, I): recall": q.recall,
                     "decoded N(0, I): distance to curve": q.moons_distance,
                     "collapsed": collapsed(test_mse, mean_predictor_mse(test.X))})
    table = pd.DataFrame(rows)
    r_mmd, r_plain, r_1d = rows
    real = data.moons(n_test, noise=noise, seed=seed + REFERENCE_SEED_OFFSET).X
    reference = sample_quality(real, test.X, moons=True, seed=seed)
    names = list(models)

    fig_rec, axs = new_figure(2, 1, width=5.5, height=4.5)
    for ax, name, row in zip(axs.flat, (names[0], names[2]), (r_mmd, r_1d)):
        draw_reconstruction(ax, test.X, reconstruct(models[name], test.X),
                            f"{name}\ntest MSE {row['test MSE']:.4f}")
    fig_rec.suptitle("Reconstructed vs original test points: 2-D code with MMD vs 1-D code")

    fig_codes, axc = new_figure(2, 1, width=5.0, height=4.6)
    labels = test.y.numpy()
    for ax, name, row in zip(axc.flat, names[:2], rows[:2]):
        z = codes[name].numpy()
        for k in (0, 1):
            ax.scatter(z[labels == k, 0], z[labels == k, 1], s=6, color=f"C{k}", alpha=0.7,
                       label=f"codes of moon {k}")
        _normal_circles(ax)
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{name}\nMMD² of codes to N(0, I): {row['MMD² codes vs N(0, I)']:.4f}")
        ax.legend(fontsize="small", loc="upper right")
    fig_codes.suptitle("Test codes against the standard normal N(0, I)")

    fig_syn, axs2 = new_figure(2, 1, width=5.5, height=4.5)
    for ax, name, row in zip(axs2.flat, names[:2], rows[:2]):
        _draw_samples(ax, test.X, samples[name],
                      f"{name}\nMMD² {row['decoded N(0, I): MMD² to test']:.4f}, precision "
                      f"{row['decoded N(0, I): precision']:.2f}, recall "
                      f"{row['decoded N(0, I): recall']:.2f}", "decoded N(0, I) samples")
    fig_syn.suptitle(f"{n_test} standard-normal codes decoded, over the real test points")

    ratio = r_1d["test MSE"] / max(r_mmd["test MSE"], 1e-12)
    floor = noise**2 / 2  # what the best 1-D curve still pays: the noise across it
    below = [n for n, r in (("with MMD", r_mmd), ("without MMD", r_plain)) if r["test MSE"] < floor]
    who = "both 2-D ResNets are" if len(below) == 2 else f"the 2-D ResNet {''.join(below)} is"
    findings = [
        f"With a 2-D code and the MMD penalty the test MSE is {r_mmd['test MSE']:.4f} after "
        f"{r_mmd['optimizer steps']} optimizer steps, {ratio:.1f}x "
        f"{'lower' if ratio > 1 else 'higher'} than the 1-D bottleneck MLP's "
        f"{r_1d['test MSE']:.4f} after {r_1d['optimizer steps']} steps"
        + (" (at least as many as moons-autoencoder's quick run)"
           if r_1d["optimizer steps"] >= BASELINE_STEPS else "")
        + "; without MMD the 2-D ResNet reaches "
        f"{r_plain['test MSE']:.4f}. A 2-D code for 2-D data is no bottleneck: the model can "
        "approach the identity, so a lower error than the 1-D code's is no achievement"
        + (f" ({who} below the noise floor σ²/2 = {floor:.4f} that any 1-D curve pays: "
           f"{'they reconstruct' if len(below) == 2 else 'it reconstructs'} the noise across "
           "the moons too)"
           if below else "")
        + "; what the MMD penalty is for is the distribution of the codes, below.",
        f"MMD² of the test codes to N(0, I): {r_mmd['MMD² codes vs N(0, I)']:.4f} with the penalty "
        f"vs {r_plain['MMD² codes vs N(0, I)']:.4f} without (code std per dim "
        f"{r_mmd['code std (per dim)']} vs {r_plain['code std (per dim)']}).",
        f"Decoded N(0, I) samples: MMD² to the test set {r_mmd['decoded N(0, I): MMD² to test']:.4f}, "
        f"precision {r_mmd['decoded N(0, I): precision']:.2f}, recall "
        f"{r_mmd['decoded N(0, I): recall']:.2f}, mean distance to the noise-free curve "
        f"{r_mmd['decoded N(0, I): distance to curve']:.3f}; through the decoder trained without "
        f"MMD: MMD² {r_plain['decoded N(0, I): MMD² to test']:.4f}, precision "
        f"{r_plain['decoded N(0, I): precision']:.2f}, recall "
        f"{r_plain['decoded N(0, I): recall']:.2f}. A fresh real sample scores MMD² "
        f"{reference.mmd2:.4f}, precision {reference.precision:.2f}, recall "
        f"{reference.recall:.2f} and lies {reference.moons_distance:.3f} from the curve.",
    ]
    n_collapsed = int(table["collapsed"].sum())
    if n_collapsed:
        findings.append(f"{n_collapsed} of {len(table)} models collapsed to predicting the mean: "
                        + ", ".join(table.loc[table["collapsed"], "model"]) + ".")
    metrics = {"mmd_test_mse": float(r_mmd["test MSE"]), "plain_test_mse": float(r_plain["test MSE"]),
               "bottleneck1_test_mse": float(r_1d["test MSE"]),
               "mmd_code_mmd2": float(r_mmd["MMD² codes vs N(0, I)"]),
               "plain_code_mmd2": float(r_plain["MMD² codes vs N(0, I)"]),
               "mmd_sample_mmd2": float(r_mmd["decoded N(0, I): MMD² to test"]),
               "mmd_sample_precision": float(r_mmd["decoded N(0, I): precision"]),
               "mmd_sample_recall": float(r_mmd["decoded N(0, I): recall"])}
    return StudyResult("moons-mmd", {"models": table},
                       {"reconstruction": fig_rec, "codes": fig_codes, "samples": fig_syn},
                       findings, config, metrics)
