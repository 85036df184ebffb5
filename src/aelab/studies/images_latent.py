"""Image studies of the code space: VAE vs AE, and denoising with and without skips.

Both run on images: the course's digits (default), MNIST (``dataset="mnist"``
with ``mnist_root``, the folder of the four IDX files), or a user's
:class:`aelab.data.Dataset` with an ``image_shape`` (``data=``). Every model is
trained by :func:`aelab.sweep` over several seeds, and every comparison is a
:meth:`aelab.Runs.compare` row. The helpers at the top (image splits, code
scatters, decoded latent grids, the convergence check) are shared with
:mod:`aelab.studies.image_reruns`; the splits themselves, the k-NN accuracy of
codes and the device choice come from :mod:`aelab.studies.images`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from scipy import stats

from aelab import data as aedata
from aelab import plots, quality
from aelab._checks import check_int, check_positive_float, check_positive_int
from aelab.baselines import CodeSampler
from aelab.evaluate import encode, eval_mode, reconstruct, reconstruction_error
from aelab.experiments import Runs, compare_sentence, p_value_text, sweep
from aelab.losses import gaussian_kl
from aelab.models import VAE, Autoencoder, ConvAutoencoder
from aelab.studies._base import StudyResult, check_study_data, resolve_settings, study
from aelab.studies._common import mean_predictor_mse
from aelab.studies.images import code_knn_accuracy, study_device, study_splits
from aelab.train import VAE_RECONSTRUCTIONS

# --------------------------------------------------------------------------- shared helpers


def image_splits(
    name: str, data, dataset: str = "digits", mnist_root=None, *, quick: bool = True, seed: int = 0
) -> tuple[aedata.Dataset, aedata.Dataset, aedata.Dataset]:
    """(train, validation, test) images for study ``name``, as :func:`study_splits` gives
    them, after refusing data without an ``image_shape``.

    >>> train, val, test = image_splits("vae-vs-ae", None)
    >>> len(train), len(val), len(test), train.image_shape
    (1077, 360, 360, (1, 8, 8))
    """
    check_study_data(name, "image", data)
    return study_splits(name, data, dataset, mnist_root, quick=quick, seed=seed)


def code_knn_metric(model, context) -> float:
    """A :func:`aelab.sweep` metric: 5-NN label accuracy of test codes from training codes."""
    return code_knn_accuracy(
        encode(model, context.train.X),
        context.train.y,
        encode(model, context.test.X),
        context.test.y,
    )


def decode(model, Z: torch.Tensor, **kwargs) -> torch.Tensor:
    """``model.decode(Z)`` in eval mode without gradients, on the CPU."""
    with torch.no_grad(), eval_mode(model) as device:
        kwargs = {
            k: [t.to(device) for t in v] if isinstance(v, list) else v for k, v in kwargs.items()
        }
        return model.decode(Z.to(device), **kwargs).cpu()


def grid_codes(z1, z2) -> torch.Tensor:
    """Codes on the grid ``z1`` x ``z2``, row-major with the highest z2 in the top row, [m*m, 2]."""
    z1, z2 = torch.as_tensor(z1, dtype=torch.float32), torch.as_tensor(z2, dtype=torch.float32)
    rows, cols = torch.meshgrid(z2.flip(0), z1, indexing="ij")
    return torch.stack([cols, rows], -1).reshape(-1, 2)


def code_range_grid(Z: torch.Tensor, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` evenly spaced values per axis over the 1st to 99th percentile of codes ``Z``."""
    low, high = torch.quantile(Z[:, :2], 0.01, dim=0), torch.quantile(Z[:, :2], 0.99, dim=0)
    return (
        np.linspace(float(low[0]), float(high[0]), m),
        np.linspace(float(low[1]), float(high[1]), m),
    )


def neighbour_msd(images: torch.Tensor, m: int) -> float:
    """Mean squared pixel difference between horizontally or vertically adjacent cells of an
    ``m`` x ``m`` grid of flat images: small for a grid that changes gradually."""
    cells = images.double().reshape(m, m, -1)
    right = (cells[:, 1:] - cells[:, :-1]).pow(2).mean()
    down = (cells[1:] - cells[:-1]).pow(2).mean()
    return float((right + down) / 2)


def grid_panel(ax, images, image_shape, m: int, span, z1=None, z2=None):
    """A decoded ``m`` x ``m`` grid in ``ax``; with ``z1``/``z2`` the ticks give the codes."""
    H, W = image_shape[1:]
    gap = max(1, H // 8)
    shown = plots.show_images(
        ax,
        plots.tile_images(np.asarray(images).reshape(m, m, -1), image_shape, gap=gap),
        value_range=span,
    )
    centres = np.arange(m) * (W + gap) + (W - 1) / 2
    every = max(1, m // 5)
    if z1 is not None:
        ax.set_xticks(centres[::every], [f"{v:.2g}" for v in z1[::every]])
        ax.set_yticks(
            (np.arange(m) * (H + gap) + (H - 1) / 2)[::every],
            [f"{v:.2g}" for v in z2[::-1][::every]],
        )
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("grid column (no code order)")
        ax.set_ylabel("grid row (no code order)")
    return shown


def code_scatter(fig, axes, panels: dict, label_name: str = "label") -> None:
    """One scatter of codes (first two dimensions) per axis, coloured by label when labelled."""
    import matplotlib as mpl
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm

    labelled = [np.asarray(y) for _, y in panels.values() if y is not None]
    labels = np.unique(np.concatenate(labelled)) if labelled else np.array([])
    cmap = mpl.colormaps[
        "tab10" if len(labels) <= 10 else "tab20" if len(labels) <= 20 else "viridis"
    ]
    norm = BoundaryNorm(np.arange(len(labels) + 1) - 0.5, cmap.N) if len(labels) else None
    for ax, (title, (Z, y)) in zip(axes, panels.items()):
        Z = np.asarray(Z)[:5000]
        colour = (
            dict(c=np.searchsorted(labels, np.asarray(y)[:5000]), cmap=cmap, norm=norm)
            if y is not None
            else dict(color="C0")
        )
        ax.scatter(Z[:, 0], Z[:, 1], s=7, alpha=0.75, linewidths=0, **colour)
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    if len(labels):
        bar = fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap),
            ax=list(axes),
            shrink=0.85,
            ticks=np.arange(len(labels)),
            label=label_name,
        )
        bar.ax.set_yticklabels([str(v) for v in labels])


def still_falling(runs: Runs, share: float = 0.1, tol: float = 0.01, floors=None) -> list[int]:
    """Rows of ``runs`` whose validation loss fell by more than ``tol`` of its distance to
    ``floors`` (one per row, default 0: the lowest loss possible) from the previous ``share`` of
    the epochs to the last ``share``: still improving, not converged."""
    rows = []
    for i, history in enumerate(runs.histories):
        loss = np.asarray(history.test_loss if history is not None else [], dtype=float)
        n = max(1, int(round(share * len(loss))))
        if len(loss) < 2 * n:
            continue
        before, last = loss[-2 * n : -n].mean(), loss[-n:].mean()
        if before - last > tol * abs(last - (0.0 if floors is None else floors[i])):
            rows.append(i)
    return rows


def long_runs(table: pd.DataFrame, columns: dict, name: str) -> Runs:
    """The metric ``columns`` (column -> label) of one table as one column ``value`` with a grid
    name ``name``, so that :meth:`Runs.compare` pairs them by seed."""
    long = table.melt(id_vars=["seed"], value_vars=list(columns), var_name=name, value_name="value")
    long[name] = long[name].map(columns)
    return Runs(long, [None] * len(long), [None] * len(long), [name])


def ci_text(row, fmt: str = ".4f") -> str:
    """``0.0123 (95% CI 0.0110 to 0.0136, 5 seeds)`` from a :meth:`Runs.summary` row."""
    if not row["n"] or math.isnan(row["ci_low"]):
        return f"{row['mean']:{fmt}} ({int(row['n'])} seed{'s' if row['n'] != 1 else ''})"
    return (
        f"{row['mean']:{fmt}} (95% CI {row['ci_low']:{fmt}} to {row['ci_high']:{fmt}}, "
        f"{int(row['n'])} seeds)"
    )


def sentence(row, metric: str, fmt: str = ".4g", lower_is_better: bool = True) -> str:
    """:func:`compare_sentence` of a one-name comparison row, settings named by their values
    ("AE", not "model=AE")."""
    names = [c[:-2] for c in row.index if c.endswith("_a") and c != "mean_a" and c != "n_a"]
    if len(names) == 1:
        row = {**row, "a": str(row[f"{names[0]}_a"]), "b": str(row[f"{names[0]}_b"])}
    return compare_sentence(row, metric, fmt, lower_is_better)


def value_range(ds: aedata.Dataset) -> tuple[float, float]:
    low, high = float(ds.X.min()), float(ds.X.max())
    return (low, high) if high > low else (low, low + 1.0)


def image_settings(cls, quick: bool, dataset: str, mnist: dict, overrides: dict):
    """Settings for the run: MNIST's defaults (when ``dataset="mnist"``) under the user's."""
    pinned = mnist[bool(quick)] if dataset == "mnist" else {}
    return resolve_settings(cls, quick, {**pinned, **overrides})


# --------------------------------------------------------------------------- vae-vs-ae


@dataclass(frozen=True)
class VaeVsAeSettings:
    epochs: int = 40  # quick demo: still falling, so no AE-vs-VAE verdict (measured: 300 needed)
    batch_size: int = 128  # bigger batches than the course's 64: fewer, cheaper steps
    lr: float = 3e-3
    hidden_size: int = 128  # MLP width of both models (the course's MNIST models: 512)
    layers: int = 2  # hidden layers in each encoder and decoder
    beta: float = 1.0  # weight of the VAE's KL term (1: the plain VAE)
    seeds: int = 5  # every comparison is a test over seeds
    grid_size: int = 10  # images per side of the decoded latent grids
    n_reference: int = 2000  # at most this many held-out images to measure samples against
    control_noise: float = 0.1  # the collapsed control: mean image + noise of this x pixel std
    k: int = 10  # k-NN precision/recall: at the paper's 3, recall of blurred decodes is ~0 for all
    still_falling: float = 0.01  # a validation-loss fall over the last 10% of epochs above this
    # share of its distance to the lowest possible loss counts as not converged

    def __post_init__(self):
        for name in ("epochs", "batch_size", "hidden_size", "seeds", "n_reference", "k"):
            check_positive_int(name, getattr(self, name))
        check_int("layers", self.layers, 0)
        check_positive_float("lr", self.lr)
        check_positive_float("beta", self.beta, allow_zero=True)
        check_positive_float("control_noise", self.control_noise, allow_zero=True)
        check_positive_float("still_falling", self.still_falling)
        if check_positive_int("grid_size", self.grid_size) < 2:
            raise ValueError(
                f"grid_size must be >= 2 (images per side of a grid), got {self.grid_size}."
            )
        if self.n_reference <= self.k:
            raise ValueError(
                f"n_reference must be > k={self.k} (k-NN radii need k neighbours), "
                f"got {self.n_reference}."
            )

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(epochs=300, batch_size=64, lr=2e-3, seeds=10)


_VAE_MNIST = {
    True: dict(epochs=5, batch_size=64, hidden_size=256),
    False: dict(epochs=20, batch_size=64, hidden_size=512, lr=1e-3, seeds=5),
}
_GENERATORS = (
    "VAE: prior N(0, I)",
    "AE: GMM on its codes",
    "AE: N(0, I) decoded",
    "control: mean image + noise",
)
CONTROL = _GENERATORS[-1]
REAL = "real validation images"  # what a perfect generator scores


def _gaussian_nll(model, context) -> float:
    """Test negative log-likelihood per image under N(x_hat, s2 I), s2 the validation MSE:
    one likelihood for the AE and the VAE, in nats."""
    d = context.train.n_features
    var = reconstruction_error(model, context.validation.X)
    mse = reconstruction_error(model, context.test.X)
    return 0.5 * d * (math.log(2 * math.pi * var) + mse / var)


def _vae_metrics(m: int) -> dict:
    """The VAE's negative ELBO in its two parts, and the two latent "grids" of the course."""
    quantiles = stats.norm.ppf(np.linspace(0.05, 0.95, m))

    def elbo_parts(model, context):
        with torch.no_grad(), eval_mode(model) as device:
            X = context.test.X.to(device)
            mu, logvar = model.posterior(X)
            g = torch.Generator().manual_seed(context.seed)
            eps = torch.randn(mu.shape, generator=g).to(device)
            out = model.decoder(mu + torch.exp(0.5 * logvar) * eps)
            return (
                float(VAE_RECONSTRUCTIONS[model.likelihood](out, X)),
                float(gaussian_kl(mu, logvar)),
            )

    def random_z(model, context):  # seed 003: torch.randn for every cell of the "grid"
        z = torch.randn(m * m, 2, generator=torch.Generator().manual_seed(context.seed))
        return neighbour_msd(decode(model, z), m)

    return {
        "recon_nll": lambda model, c: elbo_parts(model, c)[0],
        "kl": lambda model, c: elbo_parts(model, c)[1],
        "grid_step": lambda model, c: neighbour_msd(
            decode(model, grid_codes(quantiles, quantiles)), m
        ),
        "random_step": random_z,
    }


def vae_vs_ae_run(
    s: VaeVsAeSettings, train, val, test, *, seed: int = 0, device=None, progress=None
) -> Runs:
    """The AEs (stacked) and the VAEs (one by one) of every seed, one row per trial."""
    d = train.n_features

    def build(model):
        return (VAE if model == "VAE" else Autoencoder)(d, 2, s.hidden_size, s.layers)

    metrics = {
        "gauss_nll": _gaussian_nll,
        "code_std": lambda model, c: float(encode(model, c.test.X).std(0).mean()),
    }
    if train.y is not None:
        metrics["knn_accuracy"] = code_knn_metric
    common = dict(
        validation=val,
        test=test,
        seeds=list(range(seed, seed + s.seeds)),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        device=device,
        progress=progress,
    )
    ae = sweep(build, train, grid={"model": ["AE"]}, metrics=metrics, **common)
    vae = sweep(
        build,
        train,
        grid={"model": ["VAE"]},
        objective="vae",
        beta=s.beta,
        metrics={**metrics, **_vae_metrics(s.grid_size)},
        **common,
    )
    return Runs(
        pd.concat([ae.table, vae.table], ignore_index=True),
        ae.models + vae.models,
        ae.histories + vae.histories,
        ["model"],
    )


def _generate(kind: str, model, s: VaeVsAeSettings, train, n: int, seed: int) -> dict:
    """``n`` images from each generator a trained ``kind`` ("AE"/"VAE") model gives; the AE's
    row also brings the collapsed control (one per seed)."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    if kind == "VAE":
        return {_GENERATORS[0]: decode(model, z)}
    sampler = CodeSampler(model, n_components="bic", random_state=seed).fit(train.X)
    noise = torch.randn(n, train.n_features, generator=torch.Generator().manual_seed(seed))
    return {
        _GENERATORS[1]: sampler.sample(n, seed=seed)[0],
        _GENERATORS[2]: decode(model, z),
        CONTROL: train.X.mean(0) + s.control_noise * train.X.std(0) * noise,
    }


def sample_quality(runs: Runs, s: VaeVsAeSettings, train, val, test) -> Runs:
    """MMD^2, precision and recall of every trained generator, of the collapsed control and of
    real validation images, one row per generator and seed, against the same test images."""
    n = min(s.n_reference, len(val), len(test))  # equal sizes: k-NN radii shrink as n grows
    real = test.X[:n]
    rows = []
    for i, row in runs.table.iterrows():
        seed = int(row["seed"])
        generated = _generate(row["model"], runs.models[i], s, train, n, seed)
        if row["model"] == "AE":
            generated[REAL] = val.X[:n]
        for name, X in generated.items():
            q = quality.sample_quality(X, real, k=s.k, seed=seed)
            rows.append(
                {
                    "generator": name,
                    "seed": seed,
                    "mmd2": q.mmd2,
                    "precision": q.precision,
                    "recall": q.recall,
                }
            )
    table = pd.DataFrame(rows)
    return Runs(table, [None] * len(table), [None] * len(table), ["generator"])


def _without(runs: Runs, generator: str) -> Runs:
    keep = np.flatnonzero(runs.table["generator"] != generator)
    return Runs(
        runs.table.iloc[keep],
        [runs.models[i] for i in keep],
        [runs.histories[i] for i in keep],
        runs.grid_names,
    )


def vae_vs_ae_verdicts(runs: Runs, samples: Runs) -> dict:
    """The comparisons the findings rest on (rows of :meth:`Runs.compare`), by name."""
    out = {
        "reconstruction": runs.compare("test_mse", by="model", against={"model": "AE"}).iloc[0],
        "likelihood": runs.compare("gauss_nll", by="model", against={"model": "AE"}).iloc[0],
    }
    if "knn_accuracy" in runs.table:
        out["knn"] = runs.compare(
            "knn_accuracy", by="model", against={"model": "AE"}, lower_is_better=False
        ).iloc[0]
    vae = runs.where(model="VAE").table
    steps = long_runs(
        vae, {"grid_step": "quantile grid", "random_step": "random z per cell"}, "layout"
    )
    out["grid"] = steps.compare("value", against={"layout": "quantile grid"}).iloc[0]
    trained = _without(samples, REAL)
    for metric, lower in (("mmd2", True), ("precision", False), ("recall", False)):
        table = trained.compare(metric, against={"generator": CONTROL}, lower_is_better=lower)
        # the control fails a measure when every trained generator is significantly better
        better = (table["diff"] < 0) if lower else (table["diff"] > 0)
        out[f"{metric}_flags_control"] = bool((better & table["significant"]).all())
    out["best"] = _without(trained, CONTROL).best("mmd2", by="generator")
    return out


def _bernoulli_floor(X: torch.Tensor) -> float:
    """The lowest Bernoulli reconstruction loss of images ``X`` in [0, 1] (nats per image): their
    entropy, reached only by reconstructing every pixel exactly."""
    X = X.double()
    return float(-(torch.xlogy(X, X) + torch.xlogy(1 - X, 1 - X)).sum(1).mean())


def vae_vs_ae_floors(runs: Runs, val) -> list[float]:
    """Per row, the lowest validation loss possible: 0 for the AE's MSE and a Gaussian VAE, the
    images' entropy for a Bernoulli VAE (grey pixels cost nats even when reconstructed)."""
    return [
        _bernoulli_floor(val.X) if getattr(m, "likelihood", None) == "bernoulli" else 0.0
        for m in runs.models
    ]


def vae_vs_ae_findings(
    runs: Runs, samples: Runs, s: VaeVsAeSettings, mean_mse: float, n_real: int, floors=None
) -> tuple[list[str], str]:
    v = vae_vs_ae_verdicts(runs, samples)
    quality_of = {
        m: samples.summary(m, by="generator").set_index("generator")
        for m in ("mmd2", "precision", "recall")
    }
    grid = v["grid"]
    trained = [g for g in _GENERATORS[:-1] if g in quality_of["mmd2"].index]
    control = (
        f"A collapsed control (the mean image + {s.control_noise:g} x each pixel's standard "
        f"deviation of noise) against {n_real} held-out images: precision "
        f"{quality_of['precision'].loc[CONTROL, 'mean']:.2f}, recall "
        f"{quality_of['recall'].loc[CONTROL, 'mean']:.2f}, MMD^2 "
        f"{quality_of['mmd2'].loc[CONTROL, 'mean']:.4f} (trained generators: MMD^2 "
        f"{min(quality_of['mmd2'].loc[trained, 'mean']):.4f} to "
        f"{max(quality_of['mmd2'].loc[trained, 'mean']):.4f}; real validation images "
        f"{quality_of['mmd2'].loc[REAL, 'mean']:.4f}). "
        + "; ".join(
            f"{m} {'rejects' if v[f'{m}_flags_control'] else 'does not reject'} it"
            for m in ("mmd2", "precision", "recall")
        )
        + f" (rejects: every trained generator significantly better, Holm-corrected paired "
        f"t-tests over {s.seeds} seeds)."
    )
    pitfall = (
        f'Course pitfall (seed 003): its VAE "grid" decodes a fresh random z in every cell. '
        f"Neighbouring cells then differ by {grid['mean_b']:.4f} (mean squared pixel "
        f"difference) against {grid['mean_a']:.4f} on a real grid over the prior's 5-95% "
        f"quantiles: " + sentence(grid, "neighbour difference")
    )
    falling = still_falling(runs, tol=s.still_falling, floors=floors)
    if falling:
        names = sorted({runs.table.loc[i, "model"] for i in falling})
        text = (
            f"Not converged at these settings; run --full: the validation loss of "
            f"{len(falling)} of {len(runs)} models ({', '.join(names)}) still fell by more "
            f"than {s.still_falling:.0%} (of its distance to the lowest possible loss) over "
            f"the last 10% of the {s.epochs} epochs, so no AE-vs-VAE comparison is drawn."
        )
        return [text, control, pitfall], text
    summary = {
        m: runs.summary(m, by="model").set_index("model")
        for m in ("test_mse", "gauss_nll", "code_std")
    }
    vae = runs.where(model="VAE").summary
    kl, rec, best = vae("kl").iloc[0], vae("recon_nll").iloc[0], v["best"]
    findings = [
        sentence(v["reconstruction"], "test reconstruction MSE")
        + f" Predicting the mean image scores {mean_mse:.4f}.",
        f"The VAE's negative ELBO on test images splits into a reconstruction term of "
        f"{ci_text(rec, '.2f')} nats per image and a KL term of {ci_text(kl, '.2f')} nats "
        f"(weight beta = {s.beta:g}): the KL is what shaping the code like N(0, I) costs. "
        f"Under one likelihood for both models (Gaussian, variance fitted on the validation "
        f"images), the VAE's reconstructions change the negative log-likelihood by "
        f"{v['likelihood']['diff']:+.1f} nats per image against the AE's: "
        + sentence(v["likelihood"], "reconstruction NLL (nats per image)", ".1f"),
        f"The VAE's codes of test images have a standard deviation of "
        f"{ci_text(summary['code_std'].loc['VAE'], '.2f')} per dimension (its prior: 1); the "
        f"AE's {ci_text(summary['code_std'].loc['AE'], '.2f')}, set by reconstruction alone.",
        f"Samples against {n_real} held-out images, MMD^2 (lower is closer): "
        + "; ".join(f"{g} {ci_text(quality_of['mmd2'].loc[g], '.4f')}" for g in trained)
        + f". Closest: {best.setting['generator']}"
        + (
            f", indistinguishable from {', '.join(b['generator'] for b in best.indistinguishable)}"
            if best.indistinguishable
            else " (every other significantly farther)"
        )
        + ".",
        control,
        pitfall,
    ]
    if "knn" in v:
        findings.append(
            sentence(
                v["knn"], "5-NN label accuracy from the 2-D codes", ".3f", lower_is_better=False
            )
        )
    answer = (
        f"VAE vs AE over {s.seeds} seeds: test MSE {v['reconstruction']['mean_b']:.4f} vs "
        f"{v['reconstruction']['mean_a']:.4f} ("
        + ("significant, " if v["reconstruction"]["significant"] else "indistinguishable, ")
        + f"Holm-corrected {p_value_text(v['reconstruction']['p_holm'])}); the VAE's KL "
        f"costs {kl['mean']:.2f} nats (95% CI {kl['ci_low']:.2f} to {kl['ci_high']:.2f}); "
        f"closest samples by MMD^2: {best.setting['generator']}."
    )
    return findings, answer


def _bars(ax, summary: pd.DataFrame, key: str, title: str, xlabel: str) -> None:
    """Means with their 95% CI as error bars, one horizontal bar per row of a
    :meth:`Runs.summary` (first row on top), labelled by its ``key`` column."""
    y = np.arange(len(summary))
    mean = summary["mean"].to_numpy(float)
    err = np.abs(summary[["ci_low", "ci_high"]].to_numpy(float).T - mean)
    ax.barh(y, mean, color=[f"C{i}" for i in y], xerr=np.nan_to_num(err), capsize=4)
    ax.set_yticks(y, [str(v) for v in summary[key]])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)


def vae_vs_ae_figures(runs: Runs, samples: Runs, s: VaeVsAeSettings, train, test) -> dict:
    first = {kind: runs.where(model=kind).models[0] for kind in ("AE", "VAE")}
    m, shape, span = s.grid_size, train.image_shape, value_range(train)
    fig, axes = plots.new_figure(ncols=2, width=5.0, height=4.6)
    code_scatter(
        fig,
        axes[0],
        {
            "AE: codes of test images": (encode(first["AE"], test.X), test.y),
            "VAE: codes of test images (posterior means)": (encode(first["VAE"], test.X), test.y),
        },
    )
    fig.suptitle(f"{train.name}: 2-D latent spaces (first seed)")
    figures = {"latent": fig}

    z_ae = code_range_grid(encode(first["AE"], train.X), m)
    q = stats.norm.ppf(np.linspace(0.05, 0.95, m))
    random_z = torch.randn(
        m * m, 2, generator=torch.Generator().manual_seed(int(runs.table["seed"].iloc[0]))
    )
    fig, axes = plots.new_figure(ncols=3, width=4.6, height=4.8)
    panels = [
        ("AE: grid over its codes' 1-99% range", first["AE"], grid_codes(*z_ae), z_ae),
        ("VAE: grid over the prior's 5-95% quantiles", first["VAE"], grid_codes(q, q), (q, q)),
        ("VAE, course 003: random z in every cell", first["VAE"], random_z, (None, None)),
    ]
    for ax, (title, model, Z, (z1, z2)) in zip(axes[0], panels):
        image = grid_panel(ax, decode(model, Z), shape, m, span, z1, z2)
        ax.set_title(title, fontsize="medium")
    fig.colorbar(image, ax=axes[0].tolist(), label="pixel value", shrink=0.8)
    fig.suptitle(
        f"{train.name}: images decoded over {m}x{m} latent grids (left, middle) and "
        "the course's random-z 'grid' (right)"
    )
    figures["manifold"] = fig

    seed = int(runs.table["seed"].iloc[0])
    rows = {"real test images": test.X}
    for kind in ("VAE", "AE"):
        rows.update(_generate(kind, first[kind], s, train, 12, seed))
    figures["samples"] = plots.image_grid(
        rows,
        shape,
        n=12,
        xlabel="sample",
        ylabel="source",
        value_range=span,
        title=f"{train.name}: generated images beside real ones (first seed)",
    )

    fig, axes = plots.new_figure(ncols=3, width=5.4, height=3.8)
    order = [g for g in (*_GENERATORS, REAL) if g in set(samples.table["generator"])]
    for ax, (metric, what) in zip(
        axes[0],
        [
            ("mmd2", "MMD^2 to held-out images"),
            ("precision", f"{s.k}-NN precision"),
            ("recall", f"{s.k}-NN recall"),
        ],
    ):
        summary = samples.summary(metric, by="generator").set_index("generator").loc[order]
        _bars(
            ax,
            summary.reset_index(),
            "generator",
            what,
            {
                "mmd2": "MMD^2 (lower: closer to the data)",
                "precision": "share of samples near a real image",
                "recall": "share of real images near a sample",
            }[metric],
        )

    fig.suptitle(
        f"{train.name}: sample quality, mean and 95% CI over {s.seeds} seeds; the "
        "control is a collapsed generator"
    )
    figures["quality"] = fig
    return figures


@study(
    "vae-vs-ae",
    "2-D latent spaces of an AE and a VAE: codes, decoded latent grids, sample "
    "quality against a collapsed control, the KL cost",
    settings=VaeVsAeSettings,
    data="image",
)
def vae_vs_ae(
    quick: bool = True,
    seed: int = 0,
    data=None,
    *,
    dataset: str = "digits",
    mnist_root=None,
    device=None,
    progress=None,
    **overrides,
) -> StudyResult:
    """An autoencoder and a variational autoencoder with 2-D codes, over several seeds.

    Both are MLPs of the same size, trained by :func:`aelab.sweep` (the VAE with
    :func:`aelab.train_vae`). The study compares their reconstructions, splits
    the VAE's negative ELBO into its reconstruction and KL terms, and compares
    the reconstruction likelihood of both models under one Gaussian likelihood.
    It measures samples (VAE: prior draws; AE: a GMM on its codes, and N(0, I)
    decoded) against held-out images by MMD^2 and k-NN precision and recall, next
    to a collapsed control (the mean image plus a little noise) that a useful
    measure must reject. It draws the decoded latent grids, and the course's
    random-z "grid" beside a real one.

    Parameters
    ----------
    quick : bool
        :meth:`VaeVsAeSettings.quick` or :meth:`VaeVsAeSettings.full` settings.
    seed : int
        The data split and the first of the seeds.
    data : Dataset, optional
        The user's images (with ``image_shape``); default the course's digits.
    dataset, mnist_root
        ``"digits"`` or ``"mnist"`` (with the folder of the MNIST files).
    **overrides
        Fields of :class:`VaeVsAeSettings`, e.g. ``seeds=10``.

    Examples
    --------
    >>> result = vae_vs_ae(quick=True, epochs=2, seeds=2)  # doctest: +SKIP
    >>> sorted(result.figures)  # doctest: +SKIP
    ['latent', 'manifold', 'quality', 'samples']
    """
    train, val, test = image_splits("vae-vs-ae", data, dataset, mnist_root, quick=quick, seed=seed)
    s = image_settings(
        VaeVsAeSettings, quick, dataset if data is None else "user", _VAE_MNIST, overrides
    )
    if s.seeds < 2:
        raise ValueError(
            f"seeds must be >= 2 for vae-vs-ae (its findings are tests over seeds), got {s.seeds}."
        )
    runs = vae_vs_ae_run(
        s, train, val, test, seed=seed, device=study_device(device, quick), progress=progress
    )
    samples = sample_quality(runs, s, train, val, test)
    mean_mse = mean_predictor_mse(test.X, mean_of=train.X)
    n_real = min(s.n_reference, len(val), len(test))
    floors = vae_vs_ae_floors(runs, val)
    findings, answer = vae_vs_ae_findings(runs, samples, s, mean_mse, n_real, floors)
    by_model = {
        m: runs.summary(m, by="model").set_index("model")["mean"] for m in ("test_mse", "gauss_nll")
    }
    by_gen = {
        m: samples.summary(m, by="generator").set_index("generator")["mean"]
        for m in ("mmd2", "precision", "recall")
    }
    verdicts = vae_vs_ae_verdicts(runs, samples)
    metrics = {
        "ae_test_mse": by_model["test_mse"]["AE"],
        "vae_test_mse": by_model["test_mse"]["VAE"],
        "mean_image_mse": mean_mse,
        "vae_kl": runs.where(model="VAE").table["kl"].mean(),
        "vae_recon_nll": runs.where(model="VAE").table["recon_nll"].mean(),
        "nll_change": by_model["gauss_nll"]["VAE"] - by_model["gauss_nll"]["AE"],
        **{
            f"{m}_{k}": by_gen[m][g]
            for m in by_gen
            for k, g in zip(
                ("vae_prior", "ae_gmm", "ae_normal", "control", "real"), (*_GENERATORS, REAL)
            )
        },
        **{
            f"{m}_flags_control": verdicts[f"{m}_flags_control"]
            for m in ("mmd2", "precision", "recall")
        },
        "grid_step": runs.where(model="VAE").table["grid_step"].mean(),
        "random_step": runs.where(model="VAE").table["random_step"].mean(),
        "converged": not still_falling(runs, tol=s.still_falling, floors=floors),
    }
    tables = {
        "trials": runs.table,
        "models": pd.concat(
            [
                runs.summary(m, by="model").assign(metric=m)
                for m in ["test_mse", "gauss_nll", "code_std"]
                + (["knn_accuracy"] if train.y is not None else [])
            ]
        ),
        "samples": pd.concat(
            [
                samples.summary(m, by="generator").assign(metric=m)
                for m in ("mmd2", "precision", "recall")
            ]
        ),
    }
    config = {
        **asdict(s),
        "dataset": dataset if data is None else train.name,
        "quick": quick,
        "seed": seed,
        "n_train": len(train),
        "n_validation": len(val),
        "n_test": len(test),
        "n_reference": n_real,
        "bottleneck": 2,
        "vae_likelihood": runs.where(model="VAE").models[0].likelihood,
    }
    return StudyResult(
        "vae-vs-ae",
        tables,
        vae_vs_ae_figures(runs, samples, s, train, test),
        findings,
        config,
        {k: float(v) for k, v in metrics.items()},
        answer=answer,
    )


# --------------------------------------------------------------------------- denoising


@dataclass(frozen=True)
class DenoisingSettings:
    sigma: float = 0.3  # standard deviation of the Gaussian noise (the course's randn * 0.3)
    bottlenecks: tuple[int, ...] = (2,)  # code sizes; the first is shown, two compare the skips
    epochs: int = 20  # digits, batch 128: every model beats the noisy input (measured: 5 of 5)
    batch_size: int = 128  # conv steps on 8x8 maps cost overhead: fewer, bigger batches
    lr: float = 5e-3
    hidden_size: int = 128  # MLP AE width (the course's MNIST models: 512)
    seeds: int = 5  # every comparison is a test over seeds
    still_falling: float = 0.01  # a validation-loss fall over the last 10% of epochs above this
    # share of the loss counts as still improving (reported; the gate is beating the noisy input)

    def __post_init__(self):
        check_positive_float("sigma", self.sigma)
        check_positive_float("still_falling", self.still_falling)
        for name in ("epochs", "batch_size", "hidden_size", "seeds"):
            check_positive_int(name, getattr(self, name))
        check_positive_float("lr", self.lr)
        if isinstance(self.bottlenecks, (str, bytes)) or not isinstance(self.bottlenecks, Sequence):
            raise TypeError(
                f"bottlenecks must be a sequence of code sizes, got "
                f"{self.bottlenecks!r}; e.g. bottlenecks=(2, 16)."
            )
        if not self.bottlenecks:
            raise ValueError(
                f"bottlenecks must list at least one code size, got "
                f"{self.bottlenecks!r}; e.g. bottlenecks=(2, 16)."
            )
        for i, b in enumerate(self.bottlenecks):
            check_positive_int(f"bottlenecks[{i}]", b)
        if len(set(self.bottlenecks)) != len(self.bottlenecks):
            raise ValueError(
                f"bottlenecks lists a size twice: {self.bottlenecks!r}; list each code size once."
            )

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(bottlenecks=(2, 16), epochs=100, batch_size=64, lr=2e-3)


_DENOISING_MNIST = {
    True: dict(epochs=3, batch_size=64, lr=2e-3, hidden_size=256),
    False: dict(epochs=10, batch_size=64, lr=1e-3, hidden_size=512),
}
MODELS = ("MLP AE", "conv AE", "conv AE + skips")
SKIP = MODELS[2]
# decoder inputs of the skip model: the metric column -> what the decoder is given
ABLATIONS = {
    "denoise_mse": "own code and skips",
    "mean_skips_mse": "skips at their training mean",
    "code_swap_mse": "another image's code",
    "zero_skips_mse": "zeroed skips (never seen)",
}


def _parts(model, X: torch.Tensor):
    """The code of ``X`` and, for a skip model, its skip feature maps (else None), on the CPU."""
    with torch.no_grad(), eval_mode(model) as device:
        if getattr(model, "skip", False):
            z, skips = model.encode_with_skips(X.to(device))
            return z.cpu(), [t.cpu() for t in skips]
        return model.encode(X.to(device)).cpu(), None


def _decode_parts(model, z, skips) -> torch.Tensor:
    return decode(model, z, skips=skips) if skips is not None else decode(model, z)


def _mse(X_hat: torch.Tensor, X: torch.Tensor) -> float:
    return float(((X_hat - X) ** 2).mean())


def _denoising_metrics(s: DenoisingSettings, noisy: dict, train, test, seed: int) -> dict:
    """Denoising errors on one fixed corruption, and what the skip model's decoder does with
    other inputs: skips at their mean over the noisy training images, another image's code
    (a derangement of the test set), zeroed skips."""
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    other = torch.empty_like(order)
    other[order] = order.roll(1)  # every image gets the code of another one

    def ablation(kind):
        def metric(model, context):
            z, skips = _parts(model, noisy["test"])
            if skips is not None and kind == "mean_skips":
                means = [t.mean(0, keepdim=True) for t in _parts(model, noisy["train"])[1]]
                skips = [m.expand_as(t) for m, t in zip(means, skips)]
            elif skips is not None and kind == "zero_skips":
                skips = [torch.zeros_like(t) for t in skips]
            elif kind == "code_swap":
                z = z[other]
            return _mse(_decode_parts(model, z, skips), test.X)

        return metric

    metrics = {
        "denoise_val": lambda model, c: _mse(reconstruct(model, noisy["val"]), c.validation.X),
        "denoise_mse": lambda model, c: _mse(reconstruct(model, noisy["test"]), test.X),
        **{f"{kind}_mse": ablation(kind) for kind in ("mean_skips", "code_swap", "zero_skips")},
    }
    if train.y is not None:
        metrics["knn_accuracy"] = lambda model, c: code_knn_accuracy(
            _parts(model, noisy["train"])[0], train.y, _parts(model, noisy["test"])[0], test.y
        )
    return metrics


def denoising_run(
    s: DenoisingSettings,
    train,
    val,
    test,
    noisy: dict,
    *,
    seed: int = 0,
    device=None,
    progress=None,
) -> Runs:
    """Every model at every bottleneck and seed, trained on freshly corrupted inputs."""
    d, shape = train.n_features, train.image_shape

    def build(model, bottleneck):
        if model == "MLP AE":
            return Autoencoder(d, bottleneck, s.hidden_size, 2)
        return ConvAutoencoder(shape, bottleneck, skip=model == SKIP)

    return sweep(
        build,
        train,
        validation=val,
        test=test,
        grid={"model": list(MODELS), "bottleneck": list(s.bottlenecks)},
        seeds=list(range(seed, seed + s.seeds)),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        noise_sigma=s.sigma,
        metrics=_denoising_metrics(s, noisy, train, test, seed),
        device=device,
        progress=progress,
    )


def wrong_code(runs: Runs, noisy_test: torch.Tensor, test) -> pd.DataFrame:
    """Course pitfall (seed 004): the skip model's decoder fed the conv AE's code instead of
    its own, with its own skips; one row per seed and bottleneck."""
    rows = []
    table = runs.table
    for (seed, b), part in table.groupby(["seed", "bottleneck"]):
        model = {name: runs.models[i] for i, name in zip(part.index, part["model"])}
        z, skips = _parts(model[SKIP], noisy_test)
        z_conv = _parts(model["conv AE"], noisy_test)[0]
        rows.append(
            {
                "seed": seed,
                "bottleneck": b,
                "right": _mse(decode(model[SKIP], z, skips=skips), test.X),
                "wrong": _mse(decode(model[SKIP], z_conv, skips=skips), test.X),
            }
        )
    return pd.DataFrame(rows)


def denoising_verdicts(
    runs: Runs, pitfall: pd.DataFrame, corrupted_mse: float, tol: float = 0.01
) -> dict:
    """The comparisons the denoising findings rest on, by name."""
    b0 = runs.table["bottleneck"].iloc[0]
    errors = runs.summary("denoise_mse", by=["model", "bottleneck"])
    out = {
        "b0": b0,
        "errors": errors,
        "not_beating": errors[~(errors["ci_high"] < corrupted_mse)],
        "falling": still_falling(runs, tol=tol),
    }
    at_b0 = runs.where(bottleneck=b0)
    out["best"] = at_b0.best("denoise_val", by="model")
    out["ranking"] = at_b0.compare("denoise_mse", by="model", against=out["best"].setting)
    skip = at_b0.where(model=SKIP).table
    out["ablations"] = (
        long_runs(skip, ABLATIONS, "input")
        .compare("value", against={"input": ABLATIONS["denoise_mse"]})
        .set_index("input_b", drop=False)
    )
    out["ablation_means"] = skip[list(ABLATIONS)].mean()
    out["wrong_code"] = (
        long_runs(
            pitfall[pitfall["bottleneck"] == b0],
            {"right": "its own code", "wrong": "the conv AE's code"},
            "code",
        )
        .compare("value", against={"code": "its own code"})
        .iloc[0]
    )
    bottlenecks = sorted(runs.table["bottleneck"].unique())
    if len(bottlenecks) > 1:
        wide = runs.table.pivot_table(
            index=["model", "seed"], columns="bottleneck", values="denoise_mse"
        ).reset_index()
        wide["ratio"] = wide[b0] / wide[max(bottlenecks)]
        ratios = Runs(
            wide[["model", "seed", "ratio"]], [None] * len(wide), [None] * len(wide), ["model"]
        )
        out["ratios"] = ratios.summary("ratio").set_index("model")
        out["ratio_test"] = ratios.compare("ratio", against={"model": SKIP}).set_index(
            "model_b", drop=False
        )
    if "knn_accuracy" in runs.table:
        out["knn"] = at_b0.best("knn_accuracy", by="model", lower_is_better=False)
    return out


def _noise_sentence(
    s: DenoisingSettings, noise_var: float, n_values: int, corrupted_mse: float
) -> str:
    return (
        f'Course pitfall (seed 004): its "Gaussian noise with variance 0.3" is randn * 0.3, '
        f"noise of standard deviation {s.sigma:g}. The noise added here has a measured "
        f"variance of {noise_var:.4f} over {n_values:,} pixel values (sigma^2 = "
        f"{s.sigma**2:.4f}), and the noisy input's MSE is {corrupted_mse:.4f}; read as "
        f"variance {s.sigma:g}, the standard deviation would be {math.sqrt(s.sigma):.3f} and "
        f"the noisy input's MSE about {s.sigma:g}."
    )


def denoising_findings(
    runs: Runs,
    pitfall: pd.DataFrame,
    s: DenoisingSettings,
    corrupted_mse: float,
    mean_mse: float,
    noise_var: float,
    n_values: int,
) -> tuple[list[str], str]:
    v = denoising_verdicts(runs, pitfall, corrupted_mse, s.still_falling)
    b0, noise = v["b0"], _noise_sentence(s, noise_var, n_values, corrupted_mse)
    if len(v["not_beating"]):
        slow = ", ".join(
            f"{r['model']} at bottleneck {r['bottleneck']} ({r['mean']:.4f})"
            for _, r in v["not_beating"].iterrows()
        )
        verb = "does" if len(v["not_beating"]) == 1 else "do"
        text = (
            f"Not converged at these settings; run --full: {slow} {verb} not beat the noisy "
            f"input (MSE {corrupted_mse:.4f}) with the whole 95% CI after {s.epochs} epochs. "
            "No comparison is drawn."
        )
        return [text, noise], text
    errors = v["errors"][v["errors"]["bottleneck"] == b0].set_index("model")
    best, ablations, means = v["best"], v["ablations"], v["ablation_means"]
    own, alone = means["denoise_mse"], means["mean_skips_mse"]
    share = (mean_mse - alone) / (mean_mse - own) if mean_mse > own else float("nan")
    swap = ablations.loc[ABLATIONS["code_swap_mse"]]
    findings = [
        f"At bottleneck {b0}, test MSE of the outputs against the clean images: "
        + "; ".join(f"{m} {ci_text(errors.loc[m])}" for m in MODELS)
        + f". The noisy input scores {corrupted_mse:.4f}, the mean image {mean_mse:.4f}. Best "
        f"on the validation images: {best.setting['model']}.",
        *(sentence(row, "test MSE") for _, row in v["ranking"].iterrows()),
        f"With its skips held at their mean over the noisy training images, the skip model's "
        f"{b0}-number code alone gives {alone:.4f}, against {own:.4f} with its own skips and "
        f"{mean_mse:.4f} for the mean image: the code alone recovers "
        + (f"{share:.0%}" if share == share else "none")
        + " of the improvement over the mean image.",
        f"Another image's code with this image's skips gives {swap['mean_b']:.4f} "
        f"({swap['ratio'] - 1:+.0%}): " + sentence(swap, "test MSE"),
        f"Zeroed skips (the old ablation: an input the decoder never saw in training) give "
        f"{means['zero_skips_mse']:.4f}, "
        + ("worse" if means["zero_skips_mse"] > mean_mse else "better")
        + f" than the mean image ({mean_mse:.4f}): that measures the decoder's reaction to an "
        "unseen input, not what the code carries.",
        f"Course pitfall (seed 004): its skip decoder is fed embedded_cae, the conv AE's code, "
        f"with the skip model's own skips. That gives {v['wrong_code']['mean_b']:.4f} against "
        f"{v['wrong_code']['mean_a']:.4f} with its own code: "
        + sentence(v["wrong_code"], "test MSE"),
        noise,
    ]
    if "ratios" in v:
        ratios = v["ratios"]
        findings.append(
            f"Shrinking the code from {max(runs.table['bottleneck'])} to {b0} numbers multiplies "
            "the error by "
            + "; ".join(f"{ci_text(ratios.loc[m], '.2f')} for the {m}" for m in MODELS)
            + ". "
            + " ".join(sentence(r, "error ratio", ".2f") for _, r in v["ratio_test"].iterrows())
        )
    if "knn" in v:
        knn = v["knn"]
        findings.append(
            f"A 5-NN vote from the codes of noisy test images finds the right label most often "
            f"for the {knn.setting['model']} ({knn.mean:.3f}, 95% CI {knn.ci_low:.3f} to "
            f"{knn.ci_high:.3f})"
            + (
                f", indistinguishable from {', '.join(b['model'] for b in knn.indistinguishable)}"
                if knn.indistinguishable
                else ""
            )
            + "."
        )
    if v["falling"]:
        findings.append(
            f"Caveat: the validation loss of {len(v['falling'])} of {len(runs)} "
            f"models still fell by more than {s.still_falling:.0%} over the last 10% "
            f"of the {s.epochs} epochs: more epochs may still lower the errors "
            "above."
        )
    answer = (
        f"Denoising sigma {s.sigma:g} at bottleneck {b0} over {s.seeds} seeds: "
        f"{best.setting['model']} is best on validation, test MSE "
        f"{ci_text(errors.loc[best.setting['model']])} vs {corrupted_mse:.4f} for the "
        f"noisy input; another image's code changes the skip model's error by "
        f"{swap['ratio'] - 1:+.0%} ({p_value_text(swap['p_holm'])})."
    )
    return findings, answer


def denoising_figures(
    runs: Runs,
    pitfall: pd.DataFrame,
    s: DenoisingSettings,
    train,
    test,
    noisy_test,
    corrupted_mse: float,
    mean_mse: float,
) -> dict:
    b0, span = runs.table["bottleneck"].iloc[0], value_range(train)
    first = {m: runs.where(model=m, bottleneck=b0).models[0] for m in MODELS}
    shown = torch.arange(min(10, len(test)))
    literal = aedata.corrupt(test.X[shown], math.sqrt(s.sigma), seed=0)
    rows = {
        "original": test.X[shown],
        f"noisy, sigma {s.sigma:g} (variance {s.sigma**2:.2g})": noisy_test[shown],
        f"'variance {s.sigma:g}' taken literally: sigma {math.sqrt(s.sigma):.2f}": literal,
    }
    for m in MODELS:
        rows[f"{m}, b={b0}"] = reconstruct(first[m], noisy_test[shown])
    figures = {
        "outputs": plots.image_grid(
            rows,
            train.image_shape,
            n=len(shown),
            value_range=span,
            col_labels=None if test.y is None else [str(int(v)) for v in test.y[shown]],
            xlabel="test image" + ("" if test.y is None else " (label)"),
            ylabel="input and each model's output (first seed)",
            title=f"{train.name}: denoising noise of sigma {s.sigma:g}",
        )
    }

    fig, axes = plots.new_figure(ncols=2, width=6.0, height=3.6)
    errors = runs.summary("denoise_mse", by=["model", "bottleneck"])
    errors["model, bottleneck"] = [
        f"{m}, b={b}" for m, b in zip(errors["model"], errors["bottleneck"])
    ]
    _bars(
        axes[0, 0],
        errors,
        "model, bottleneck",
        "Denoising error by model",
        "test MSE against the clean images",
    )
    skip = runs.where(model=SKIP, bottleneck=b0).table
    inputs = long_runs(
        skip.merge(pitfall[pitfall["bottleneck"] == b0][["seed", "wrong"]], on="seed"),
        {**ABLATIONS, "wrong": "the conv AE's code (course 004)"},
        "decoder input",
    )
    _bars(
        axes[0, 1],
        inputs.summary("value"),
        "decoder input",
        f"Skip model (b={b0}): what its decoder is given",
        "test MSE against the clean images",
    )
    for ax in axes[0]:
        ax.axvline(corrupted_mse, color="C3", ls="--", lw=1, label="the noisy input itself")
        ax.axvline(mean_mse, color="0.3", ls=":", lw=1.5, label="predicting the mean image")
        ax.legend(fontsize="small")
    fig.suptitle(f"{train.name}: mean and 95% CI over {s.seeds} seeds")
    figures["errors"] = fig

    if b0 >= 2:  # a scatter needs two code dimensions
        fig, axes = plots.new_figure(ncols=len(MODELS), width=4.4, height=4.2)
        code_scatter(fig, axes[0], {m: (_parts(first[m], noisy_test)[0], test.y) for m in MODELS})
        fig.suptitle(
            f"{train.name}: codes of the noisy test images, bottleneck {b0}"
            + (" (first two dimensions)" if b0 > 2 else "")
            + ", first seed"
        )
        figures["embeddings"] = fig
    return figures


@study(
    "denoising",
    "Denoising: MLP AE, conv AE and conv AE with skips; what the skips carry "
    "(mean-skip and code-swap ablations); the course's wrong code and noise variance",
    settings=DenoisingSettings,
    data="image",
)
def denoising(
    quick: bool = True,
    seed: int = 0,
    data=None,
    *,
    dataset: str = "digits",
    mnist_root=None,
    device=None,
    progress=None,
    **overrides,
) -> StudyResult:
    """Three denoising autoencoders over several seeds: an MLP, a conv AE, a conv AE with skips.

    Each is trained by :func:`aelab.sweep` to map images plus Gaussian noise of
    standard deviation ``sigma`` (drawn afresh every epoch, as the course's
    ``randn * 0.3``, not clipped) to the clean images, at each bottleneck size,
    and evaluated on one fixed corruption of the test images. For the skip
    model it measures what the code carries: its decoder fed skips held at
    their training mean, another image's code with this image's skips, and
    zeroed skips; and it runs the course's two slips: decoding the conv AE's
    code through the skip model, and calling a standard deviation a variance.

    Parameters
    ----------
    quick : bool
        :meth:`DenoisingSettings.quick` or :meth:`DenoisingSettings.full` settings.
    seed : int
        The data split, the fixed test corruption and the first of the seeds.
    data : Dataset, optional
        The user's images (with ``image_shape``); default the course's digits.
    dataset, mnist_root
        ``"digits"`` or ``"mnist"`` (with the folder of the MNIST files).
    **overrides
        Fields of :class:`DenoisingSettings`, e.g. ``bottlenecks=(2, 16)``.

    Examples
    --------
    >>> result = denoising(quick=True, epochs=2, seeds=2)  # doctest: +SKIP
    >>> sorted(result.figures)  # doctest: +SKIP
    ['embeddings', 'errors', 'outputs']
    """
    train, val, test = image_splits("denoising", data, dataset, mnist_root, quick=quick, seed=seed)
    s = image_settings(
        DenoisingSettings, quick, dataset if data is None else "user", _DENOISING_MNIST, overrides
    )
    if s.seeds < 2:
        raise ValueError(
            f"seeds must be >= 2 for denoising (its findings are tests over seeds), got {s.seeds}."
        )
    s = replace(s, bottlenecks=tuple(int(b) for b in s.bottlenecks))
    noisy = {
        name: aedata.corrupt(ds.X, s.sigma, seed=seed + i)
        for i, (name, ds) in enumerate([("test", test), ("val", val), ("train", train)])
    }
    runs = denoising_run(
        s, train, val, test, noisy, seed=seed, device=study_device(device, quick), progress=progress
    )
    pitfall = wrong_code(runs, noisy["test"], test)
    corrupted_mse = _mse(noisy["test"], test.X)
    mean_mse = mean_predictor_mse(test.X, mean_of=train.X)
    noise = noisy["test"] - test.X
    noise_var = float(noise.double().var())
    findings, answer = denoising_findings(
        runs, pitfall, s, corrupted_mse, mean_mse, noise_var, noise.numel()
    )
    errors = runs.summary("denoise_mse", by=["model", "bottleneck"])
    metrics = {
        "corrupted_mse": corrupted_mse,
        "mean_image_mse": mean_mse,
        "noise_variance": noise_var,
        "noise_sigma": s.sigma,
        "every_model_beats_noisy": bool((errors["ci_high"] < corrupted_mse).all()),
    }
    for _, row in errors.iterrows():
        key = {"MLP AE": "mlp", "conv AE": "conv", SKIP: "skip"}[row["model"]]
        metrics[f"{key}_mse_b{row['bottleneck']}"] = row["mean"]
    skip = runs.where(model=SKIP, bottleneck=s.bottlenecks[0]).table
    metrics.update({f"skip_{col}": skip[col].mean() for col in ABLATIONS if col != "denoise_mse"})
    b0 = pitfall[pitfall["bottleneck"] == s.bottlenecks[0]]
    metrics.update(skip_right_code_mse=b0["right"].mean(), skip_wrong_code_mse=b0["wrong"].mean())
    tables = {"trials": runs.table, "errors": errors, "wrong code (course 004)": pitfall}
    config = {
        **asdict(s),
        "bottlenecks": list(s.bottlenecks),
        "dataset": dataset if data is None else train.name,
        "quick": quick,
        "seed": seed,
        "n_train": len(train),
        "n_validation": len(val),
        "n_test": len(test),
        "noise": "Gaussian, not clipped, drawn afresh every epoch; one fixed draw for the "
        "validation and test images",
    }
    return StudyResult(
        "denoising",
        tables,
        denoising_figures(runs, pitfall, s, train, test, noisy["test"], corrupted_mse, mean_mse),
        findings,
        config,
        {k: float(v) for k, v in metrics.items()},
        answer=answer,
    )
