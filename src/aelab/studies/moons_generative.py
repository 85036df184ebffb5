"""New data from an autoencoder's codes (course sheet 002, tasks 1.3 and 2).

``code-gmm`` (any data; its course preset ``moons-code-gmm`` runs on two moons)
fits a Gaussian mixture to the codes of a trained autoencoder and decodes
samples from it, scored against PCA + GMM and against the data's own held-out
split. ``moons-mmd`` pulls a 2-D code towards N(0, I) with an MMD penalty, sweeps
the penalty's weight and kernel, and compares it with the 1-D bottleneck at equal
optimizer steps; decoded N(0, I) samples are scored like the GMM samples.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning

from aelab import data as datasets
from aelab._checks import check_choice, check_int, check_positive_float, check_positive_int
from aelab.baselines import PCA, CodeSampler
from aelab.evaluate import encode, eval_mode, reconstruct
from aelab.experiments import Runs, compare_sentence, p_value_text, sweep
from aelab.losses import DEFAULT_BANDWIDTHS, KERNELS
from aelab.models import Autoencoder, ResNetAutoencoder
from aelab.plots import new_figure, plain_log_ticks, reconstruction_panel
from aelab.quality import mmd2, sample_quality
from aelab.studies._base import StudyResult, check_study_data, preset, resolve_settings, study
from aelab.studies._common import COLLAPSE_SHARE, check_sequence, split3

# a validation loss whose median still fell by more than this share from the second-last
# tenth of the epochs to the last has not converged: its comparisons are not drawn
STILL_FALLING = 0.05
MEASURES = {"mmd2": True, "precision": False, "recall": False}  # name -> lower is better
NAMES = {
    "mmd2": "MMD² to the test set",
    "precision": "precision",
    "recall": "recall",
    "curve_distance": "distance to the noise-free curve",
}


def _late_drop(model, ctx) -> float:
    """Relative fall of the median validation loss from the second-last tenth of epochs to the
    last (medians: one epoch's loss jumps)."""
    loss = np.asarray(ctx.history.test_loss, dtype=float)
    k = max(1, round(0.1 * len(loss)))
    before = np.median(loss[-2 * k : -k])
    return float(1 - np.median(loss[-k:]) / before) if before > 0 else 0.0


def _per_trial(names, scores) -> dict:
    """Sweep metrics ``name -> f(model, ctx)`` reading one dict that ``scores(model, ctx)``
    computes once per trial (sweep measures one trial at a time)."""
    cache: dict = {}

    def get(model, ctx, name):
        if cache.get("model") is not model:
            cache.update(model=model, scores=scores(model, ctx))
        return cache["scores"][name]

    return {name: (lambda m, c, name=name: get(m, c, name)) for name in names} | {
        "late_drop": _late_drop
    }


def _check_common(s) -> None:
    for name in ("n", "hidden_size", "layers", "epochs", "batch_size"):
        check_positive_int(name, getattr(s, name))
    check_positive_float("noise", s.noise, allow_zero=True)
    check_positive_float("lr", s.lr)
    if s.n < 50:
        raise ValueError(
            f"n must be >= 50 so that each split holds enough points for k-NN "
            f"precision and recall, got {s.n}."
        )
    if s.seeds < 2 or s.epochs < 2:
        raise ValueError(
            f"seeds and epochs must be >= 2 (a CI over seeds; the convergence check "
            f"compares the last tenth of epochs with the one before), got seeds="
            f"{s.seeds}, epochs={s.epochs}."
        )


def _ci(row, fmt: str = ".4f") -> str:
    if row["std"] <= 1e-12 * abs(row["mean"]):  # a fixed reference, e.g. the held-out split
        return f"{row['mean']:{fmt}} (the same for all {int(row['n'])} seeds)"
    return (
        f"{row['mean']:{fmt}} (95% CI {row['ci_low']:{fmt}} to {row['ci_high']:{fmt}}, "
        f"n={int(row['n'])})"
    )


def _unconverged(runs: Runs, quick: bool) -> str | None:
    """The "not converged" sentence when some model's validation loss still falls.

    Still falling: a mean late drop above :data:`STILL_FALLING` whose 95% CI over seeds
    excludes 0. The CI matters: a converged loss near 0 (a 2-D code of 2-D data) or one
    carrying a fresh MMD estimate jumps by tens of percent between epochs (measured).
    """
    drops = runs.summary("late_drop", by="model")
    falling = drops[(drops["mean"] > STILL_FALLING) & (drops["ci_low"] > 0)]
    if falling.empty:
        return None
    worst = falling.loc[falling["mean"].idxmax()]
    return (
        "not converged at quick settings; run --full"
        if quick
        else "not converged at these settings; raise epochs"
    ) + (
        f": the validation loss of {worst['model']} still fell {worst['mean']:.0%} (95% CI "
        f"{worst['ci_low']:.0%} to {worst['ci_high']:.0%} over {int(worst['n'])} seeds) over "
        "the last tenth of the epochs, so no comparison is drawn."
    )


def _direction(row) -> str:
    """How b's mean compares with a's in a compare row: 'lower', 'higher' or 'indistinguishable'."""
    if not row["significant"]:
        return "indistinguishable"
    return "higher" if row["diff"] > 0 else "lower"


def _versus(row, lower_is_better: bool) -> str:
    """'better', 'worse' or 'indistinguishable': setting a of a compare row against b."""
    b = _direction(row)
    return (
        b
        if b == "indistinguishable"
        else ("better" if (b == "higher") == lower_is_better else "worse")
    )


def _sentence(row, metric: str, lower_is_better: bool) -> str:
    row = dict(row, a=row["model_a"], b=row["model_b"])
    return compare_sentence(row, metric, ".4g", lower_is_better)


def _draw_points(ax, real, fake, title: str, fake_label: str, moons: bool) -> None:
    real, fake = np.asarray(real)[:, :2], np.asarray(fake)[:, :2]
    ax.scatter(real[:, 0], real[:, 1], s=6, color="0.7", label="real (test)")
    ax.scatter(fake[:, 0], fake[:, 1], s=6, color="C3", alpha=0.7, label=fake_label)
    if moons:
        curve = datasets.moons_curve(400).numpy()
        for i, part in enumerate((curve[:200], curve[200:])):
            ax.plot(*part.T, color="k", lw=1.0, label=None if i else "noise-free moons")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.legend(fontsize="small", loc="upper right")


def _ci_panel(ax, summaries: dict, title: str, ylabel: str, references=()) -> None:
    """Means with CI error bars per model (one series per summary), and reference lines."""
    for i, (label, summary) in enumerate(summaries.items()):
        x = np.arange(len(summary)) + 0.15 * (i - (len(summaries) - 1) / 2)
        ax.errorbar(
            x,
            summary["mean"],
            yerr=[summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]],
            fmt="o",
            capsize=4,
            label=label,
        )
    for i, (label, value) in enumerate(references):
        ax.axhline(value, color=f"C{i}", ls="--", lw=1, label=label)
    ax.set_xticks(range(len(summary)), summary["model"], rotation=25, ha="right")
    ax.set(title=title, ylabel=ylabel, xlabel="model")
    ax.grid(True, axis="y", alpha=0.3)
    if len(summaries) > 1 or references:
        ax.legend(fontsize="small")


# --- code-gmm ---------------------------------------------------------------------------------

GENERATORS = {"ae": "autoencoder + GMM", "pca": "PCA + GMM", "real": "held-out real data"}


@dataclass(frozen=True)
class CodeGmmSettings:
    n: int = 1000  # course data only: moons drawn, split 60/20/20 into train/validation/test
    noise: float = 0.1  # course data only: the course's moons noise
    bottleneck: int = 1  # the course's 1-D code; the PCA baseline keeps as many components
    hidden_size: int = 64  # the course MLP 2-64-64-1-64-64-2
    layers: int = 2
    epochs: int = 150  # 2,700 steps at batch 32: validation loss flat (late drop -0.5% +- 6%)
    batch_size: int = 32
    lr: float = 3e-3
    seeds: int = 5  # the comparison with the baselines is paired over these seeds

    def __post_init__(self):
        _check_common(self)
        check_positive_int("bottleneck", self.bottleneck)

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):
        return cls(n=2000, epochs=300, seeds=10)


def _gmm_metrics(moons: bool) -> dict:
    """Sweep metrics: each generator's sample quality (one trial's samples drawn once, cached)."""
    measures = [*MEASURES, *(["curve_distance"] if moons else [])]

    def scores(model, ctx) -> dict:
        out = {"real": sample_quality(ctx.validation.X, ctx.test.X, moons=moons, seed=ctx.seed)}
        for g, fitted in (("ae", model), ("pca", PCA(model.bottleneck_size).fit(ctx.train.X))):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                sampler = CodeSampler(fitted, random_state=ctx.seed).fit(ctx.train.X)
            out |= {f"{g}_components": sampler.n_components_, f"{g}_unconverged": len(caught)}
            out[g] = sample_quality(
                sampler.sample(len(ctx.test), seed=ctx.seed)[0],
                ctx.test.X,
                moons=moons,
                seed=ctx.seed,
            )
        for g in GENERATORS:
            q = out.pop(g)
            out |= {
                f"{g}_{m}": getattr(q, "moons_distance" if m == "curve_distance" else m)
                for m in measures
            }
        return out

    names = [f"{g}_{m}" for g in GENERATORS for m in measures]
    return _per_trial(
        names + [f"{g}_{x}" for g in ("ae", "pca") for x in ("components", "unconverged")], scores
    )


def run_code_gmm(s: CodeGmmSettings, train, val, test, seeds, moons: bool, progress=None) -> Runs:
    """One sweep over seeds: train the autoencoder, score its GMM samples and the baselines'."""
    if s.bottleneck >= train.n_features:
        raise ValueError(
            f"bottleneck must be smaller than the data's {train.n_features} "
            f"features, got {s.bottleneck}."
        )
    runs = sweep(
        lambda: Autoencoder(train.n_features, s.bottleneck, s.hidden_size, s.layers),
        train,
        validation=val,
        test=test,
        seeds=seeds,
        metrics=_gmm_metrics(moons),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        progress=progress,
    )
    runs.table["model"] = "autoencoder"
    return runs


def by_generator(runs: Runs) -> Runs:
    """The quality numbers one row per (generator, seed), for tests paired by seed."""
    t = runs.table
    parts = [
        pd.DataFrame(
            {
                "model": label,
                "seed": t["seed"],
                **{m: t[f"{g}_{m}"] for m in NAMES if f"{g}_{m}" in t},
            }
        )
        for g, label in GENERATORS.items()
    ]
    long = pd.concat(parts, ignore_index=True)
    return Runs(long, [None] * len(long), [None] * len(long), ["model"])


def code_gmm_verdicts(runs: Runs, s: CodeGmmSettings, quick: bool = True) -> dict:
    """Computed verdicts: convergence, and the autoencoder's samples against each reference."""
    quality = by_generator(runs)
    verdicts = {"unconverged": _unconverged(runs, quick)}
    for m, lower in MEASURES.items():
        c = quality.compare(m, against={"model": GENERATORS["ae"]}, lower_is_better=lower)
        for _, row in c.iterrows():
            g = next(k for k, v in GENERATORS.items() if v == row["model_b"])
            verdicts[f"{m}_vs_{g}"] = _versus(row, lower)
            verdicts[f"{m}_vs_{g}_row"] = row
    return verdicts


def code_gmm_findings(runs: Runs, s: CodeGmmSettings, quick: bool = True) -> tuple[list[str], str]:
    """Sentences and the one-line answer, computed from the sweep's table."""
    t, v, quality = runs.table, code_gmm_verdicts(runs, s, quick), by_generator(runs)
    n = len(t)
    found = [
        f"Over {n} seeds the autoencoder reaches test MSE "
        f"{_ci(runs.summary('test_mse', by=[]).iloc[0])}; BIC chose a median of "
        f"{t['ae_components'].median():g} mixture component(s) for its codes (range "
        f"{t['ae_components'].min():g} to {t['ae_components'].max():g}) and "
        f"{t['pca_components'].median():g} for PCA's."
    ]
    for m in [m for m in NAMES if m in quality.table]:
        summary = quality.summary(m, by="model")
        found.append(
            f"{NAMES[m][0].upper() + NAMES[m][1:]} of decoded samples: "
            + "; ".join(f"{r['model']} {_ci(r)}" for _, r in summary.iterrows())
            + "."
        )
        if m in MEASURES and not v["unconverged"]:
            found += [
                _sentence(v[f"{m}_vs_{g}_row"], NAMES[m], MEASURES[m]) for g in ("pca", "real")
            ]
    if v["unconverged"]:
        found.insert(0, v["unconverged"][0].upper() + v["unconverged"][1:])
    elif v["precision_vs_real"] != "worse" and v["recall_vs_real"] == "worse":
        found.append(
            f"So the decoded samples are at least as close to real points as held-out "
            f"data (precision) but cover less of the data (recall): decoding a "
            f"{s.bottleneck}-D code puts them on the decoder's {s.bottleneck}-D image, "
            f"not across the spread around it."
        )
    collapsed = int((t["test_mse"] >= COLLAPSE_SHARE * t["mean_mse"]).sum())
    unconverged = int(t["ae_unconverged"].sum() + t["pca_unconverged"].sum())
    if collapsed or unconverged:
        found.append(
            f"{collapsed} of {n} autoencoders collapsed to the mean; {unconverged} "
            "chosen mixtures did not converge in EM."
        )
    ae = quality.summary("mmd2", by="model").iloc[0]
    word = {
        "better": "lower than",
        "worse": "higher than",
        "indistinguishable": "indistinguishable from",
    }
    if v["unconverged"]:
        answer = f"{v['unconverged'].split(':')[0].capitalize()} (GMM samples' MMD² {_ci(ae)})."
    else:
        pca, real = v["mmd2_vs_pca_row"], v["mmd2_vs_real_row"]
        answer = (
            f"Decoded GMM samples of the autoencoder's codes reach MMD² {_ci(ae)} to the "
            f"test set, {word[v['mmd2_vs_pca']]} PCA + GMM's {pca['mean_b']:.4f} (Holm "
            f"{p_value_text(pca['p_holm'])}) and {word[v['mmd2_vs_real']]} held-out real "
            f"data's {real['mean_b']:.4f} (Holm {p_value_text(real['p_holm'])}), "
            f"paired over {n} seeds."
        )
    return found, answer


def code_gmm_figures(runs: Runs, train, test, moons: bool) -> dict:
    model, seed = runs.models[0], int(runs.table["seed"].iloc[0])
    ae = CodeSampler(model, random_state=seed)
    pca = CodeSampler(PCA(model.bottleneck_size).fit(train.X), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted in the findings
        ae.fit(train.X), pca.fit(train.X)
    fig_codes, axs = new_figure(1, 1, width=7.0, height=4.2)
    ax, z = axs[0, 0], ae.codes_[:, 0].numpy()
    ax.hist(z, bins=50, density=True, color="C0", alpha=0.5, label="training codes")
    grid = np.linspace(z.min() - 0.1 * np.ptp(z), z.max() + 0.1 * np.ptp(z), 500)
    g = ae.gmm_  # the mixture's marginal on the first code dimension
    sd = np.sqrt(g.covariances_.reshape(g.n_components, -1)[:, 0])
    density = (
        g.weights_
        * np.exp(-0.5 * ((grid[:, None] - g.means_[:, 0]) / sd) ** 2)
        / (sd * np.sqrt(2 * np.pi))
    ).sum(1)
    ax.plot(grid, density, color="C3", lw=2, label=f"mixture density ({g.n_components} components)")
    ax.set(
        xlabel="code z (first dimension)",
        ylabel="density",
        title=f"Histogram of {len(z)} training codes and the fitted Gaussian mixture (seed {seed})",
    )
    ax.legend(fontsize="small")
    quality = by_generator(runs)
    fig_q, axq = new_figure(3, 1, width=4.2, height=4.0)
    for ax, m in zip(axq.flat, MEASURES):
        _ci_panel(
            ax,
            {"mean and 95% CI": quality.summary(m, by="model")},
            f"{NAMES[m]} ({'lower' if MEASURES[m] else 'higher'} is better)",
            NAMES[m],
        )
    fig_q.suptitle(
        f"Quality of {len(test)} decoded samples against the test set, over {len(runs)} seeds"
    )
    fig_s, axs = new_figure(2, 1, width=5.5, height=4.5)
    for ax, sampler, label in zip(axs.flat, (ae, pca), ("autoencoder + GMM", "PCA + GMM")):
        _draw_points(
            ax,
            test.X,
            sampler.sample(len(test), seed=seed)[0],
            f"{label} (seed {seed})",
            "decoded samples",
            moons,
        )
    fig_s.suptitle(
        "Decoded mixture samples over the real test points"
        + ("" if train.n_features == 2 else " (first two features)")
    )
    return {"codes": fig_codes, "quality": fig_q, "synthetic": fig_s}


@study(
    "code-gmm",
    "Gaussian mixture on an autoencoder's codes: decoded samples scored against "
    "PCA + GMM and held-out data",
    settings=CodeGmmSettings,
    data="any",
)
def code_gmm(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """Fit a Gaussian mixture (BIC) to an autoencoder's codes and score its decoded samples.

    Over ``seeds`` trainings the decoded samples are scored against the test split
    (MMD², k-NN precision and recall; on two moons also the distance to the
    noise-free curve) next to PCA + GMM with as many components and the
    validation split itself, with paired tests over the seeds. ``data`` is any
    :class:`aelab.data.Dataset` (None: the course's two moons); ``overrides`` are
    fields of :class:`CodeGmmSettings`.

    Examples
    --------
    >>> r = code_gmm(quick=True, epochs=4, seeds=2)
    >>> sorted(r.figures)
    ['codes', 'quality', 'synthetic']
    """
    s = resolve_settings(CodeGmmSettings, quick, overrides)
    data = check_study_data("code-gmm", "any", data)
    moons = data is None
    ds = datasets.moons(s.n, noise=s.noise, seed=seed) if moons else data
    train, val, test = split3(ds, seed=seed)
    runs = run_code_gmm(s, train, val, test, [seed + i for i in range(s.seeds)], moons, progress)
    findings, answer = code_gmm_findings(runs, s, quick)
    summary = by_generator(runs)
    tables = {
        "sample quality": pd.concat(
            [
                summary.summary(m, by="model").assign(measure=NAMES[m])
                for m in NAMES
                if m in summary.table
            ]
        ),
        "trials": runs.table,
    }
    metrics = {
        f"{g}_{m}": float(runs.table[f"{g}_{m}"].mean()) for g in GENERATORS for m in MEASURES
    } | {"test_mse": float(runs.table["test_mse"].mean())}
    return StudyResult(
        "code-gmm",
        tables,
        code_gmm_figures(runs, train, test, moons),
        findings,
        asdict(s) | {"seed": seed, "quick": quick, "data": ds.name},
        metrics,
        answer,
    )


moons_code_gmm = preset(
    "moons-code-gmm",
    "code-gmm",
    "1-D codes of two moons: histogram, Gaussian mixture (BIC), decoded samples and their quality",
)


# --- moons-mmd --------------------------------------------------------------------------------

ONE_D, NO_MMD = "1-D bottleneck", "2-D without MMD"


@dataclass(frozen=True)
class MoonsMmdSettings:
    n: int = 400  # moons drawn, split 60/20/20 into train/validation/test
    noise: float = 0.1  # the course trains this task at noise 0.1
    weights: tuple[float, ...] = (1.0, 10.0)  # MMD weights swept, each with every kernel
    kernels: tuple[str, ...] = ("imq", "rbf")  # the two kernel families the course names
    bandwidths: tuple[float, ...] = DEFAULT_BANDWIDTHS  # 5, each twice the next (course: 3 to 7)
    architecture: str = "resnet"  # 2-D models: "resnet" or "mlp"; the course found ResNets better
    res_hidden_size: int = 64  # width inside each residual block, wider than the data
    blocks: int = 2
    hidden_size: int = 64  # the 1-D bottleneck (and a 2-D "mlp"): task 1's 2-64-64-1-64-64-2
    layers: int = 2
    epochs: int = 10  # quick: 70 steps, not converged (full settings take ~50 s)
    batch_size: int = 32  # every model: same data, epochs and batches, so equal optimizer steps
    lr: float = 3e-3
    seeds: int = 5  # settings are compared paired over these seeds

    def __post_init__(self):
        _check_common(self)
        check_positive_int("res_hidden_size", self.res_hidden_size)
        check_int("blocks", self.blocks, 0)
        check_choice("architecture", self.architecture, ("resnet", "mlp"))
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (MMD compares pairs), got {self.batch_size}."
            )
        for name in ("weights", "kernels", "bandwidths"):
            check_sequence(name, getattr(self, name), repr(getattr(type(self), name, None)))
            if not getattr(self, name):
                raise ValueError(
                    f"{name} must list at least one value, got {getattr(self, name)!r}."
                )
        for w in self.weights:
            check_positive_float("weights", w)
        for k in self.kernels:
            check_choice("kernels", k, tuple(KERNELS))
        for h in self.bandwidths:
            check_positive_float("bandwidths", h)

    @classmethod
    def quick(cls):
        return cls()

    @classmethod
    def full(cls):  # 5,550 steps: the 1-D bottleneck's late drop 0.2% +- 3% over 10 seeds
        return cls(n=2000, weights=(0.1, 1.0, 10.0), epochs=150, seeds=10)


def _label(bottleneck, objective, weight, kernel) -> str:
    if bottleneck == 1:
        return ONE_D
    return NO_MMD if objective == "reconstruction" else f"2-D + MMD {weight:g} ({kernel.upper()})"


def _subset(runs: Runs, mask) -> Runs:
    index = np.flatnonzero(np.asarray(mask))
    return Runs(
        runs.table.iloc[index],
        [runs.models[i] for i in index],
        [runs.histories[i] for i in index],
        runs.grid_names,
    )


def _decode_normal(model, n: int, generator) -> torch.Tensor:
    with torch.no_grad(), eval_mode(model) as device:
        z = torch.randn(n, model.bottleneck_size, generator=generator)
        return model.decode(z.to(device)).cpu()


def _mmd_metrics() -> dict:
    """Sweep metrics: codes against N(0, I), decoded N(0, I) samples against held-out moons."""

    def scores(model, ctx) -> dict:
        g = torch.Generator().manual_seed(ctx.seed)
        z = encode(model, ctx.test.X)
        # one fixed measuring kernel for every setting, whatever kernel it trained with
        out = {
            "code_mmd2": mmd2(
                z,
                torch.randn(z.shape, generator=g),
                kernel="imq",
                bandwidths=DEFAULT_BANDWIDTHS,
                seed=ctx.seed,
            ),
            "val_sample_mmd2": mmd2(
                _decode_normal(model, len(ctx.validation), g), ctx.validation.X, seed=ctx.seed
            ),
        }
        for who, X in (
            ("sample", _decode_normal(model, len(ctx.test), g)),
            ("real", ctx.validation.X),
        ):
            q = sample_quality(X, ctx.test.X, moons=True, seed=ctx.seed)
            out |= {
                f"{who}_mmd2": q.mmd2,
                f"{who}_precision": q.precision,
                f"{who}_recall": q.recall,
                f"{who}_curve_distance": q.moons_distance,
            }
        return out

    return _per_trial(
        ["code_mmd2", "val_sample_mmd2"] + [f"{w}_{m}" for w in ("sample", "real") for m in NAMES],
        scores,
    )


def run_mmd(s: MoonsMmdSettings, train, val, test, seeds, progress=None) -> Runs:
    """One sweep: the 1-D bottleneck, the 2-D model without and with MMD (weights x kernels)."""

    def build(bottleneck):
        if bottleneck == 1 or s.architecture == "mlp":
            return Autoencoder(2, bottleneck, s.hidden_size, s.layers)
        return ResNetAutoencoder(2, 2, s.res_hidden_size, s.blocks)

    grid = [
        {"bottleneck": 1, "objective": "reconstruction"},
        {"bottleneck": 2, "objective": "reconstruction"},
    ]
    grid += [
        {
            "bottleneck": 2,
            "objective": "mmd",
            "mmd_weight": w,
            "kernel": k,
            "bandwidths": s.bandwidths,
        }
        for w in s.weights
        for k in s.kernels
    ]
    runs = sweep(
        build,
        train,
        grid=grid,
        validation=val,
        test=test,
        seeds=seeds,
        metrics=_mmd_metrics(),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        progress=progress,
    )
    t = runs.table
    t["model"] = [
        _label(*row) for row in zip(t["bottleneck"], t["objective"], t["mmd_weight"], t["kernel"])
    ]
    return runs


def _chosen(runs: Runs):
    """The MMD setting whose decoded N(0, I) samples are closest to the validation split."""
    return _subset(runs, runs.table["objective"] == "mmd").best("val_sample_mmd2", by="model")


def _tally(rows: pd.DataFrame) -> str:
    """'lower for 3 of 4 (...; ratio ..., largest Holm p ...)' from compare rows by verdict."""
    parts = []
    for verdict in ("lower", "indistinguishable", "higher"):
        hit = rows[rows["verdict"] == verdict]
        if len(hit):
            p, which = (
                (hit["p_holm"].max(), "largest")
                if verdict != "indistinguishable"
                else (hit["p_holm"].min(), "smallest")
            )
            parts.append(
                f"{verdict} for {len(hit)} of {len(rows)} ({', '.join(hit['model_b'])}: "
                f"{hit['ratio'].min():.2g} to {hit['ratio'].max():.2g} times the "
                f"reference, {which} Holm-corrected {p_value_text(p)})"
            )
    return "; ".join(parts)


def mmd_verdicts(runs: Runs, s: MoonsMmdSettings, quick: bool = True) -> dict:
    """Computed verdicts: equal steps, convergence, 2-D vs 1-D, MMD vs none, the chosen setting."""
    t = runs.table
    v = {"steps": sorted(t["steps"].unique().tolist()), "unconverged": _unconverged(runs, quick)}
    # the 2-D models' verdicts against the reference (a): lower means the 2-D model's is lower
    mse = runs.compare("test_mse", by="model", against={"model": ONE_D})
    mse["verdict"] = [_direction(r) for _, r in mse.iterrows()]
    pairs = _subset(runs, t["bottleneck"] == 2).compare("code_mmd2", by="model", against="all")
    vs_none = pairs[pairs["model_a"] == NO_MMD].copy()
    vs_none["verdict"] = [_direction(r) for _, r in vs_none.iterrows()]
    best = _chosen(runs)
    chosen = best.setting["model"]
    pair = _subset(runs, t["model"].isin([chosen, NO_MMD]))
    return v | {
        "mse": mse,
        "code_vs_none": vs_none,
        "code_pairs": pairs,
        "best": best,
        "chosen": chosen,
        "chosen_mse": mse.set_index("model_b").loc[chosen],
        "samples": {
            m: pair.compare(
                f"sample_{m}", by="model", against={"model": chosen}, lower_is_better=MEASURES[m]
            ).iloc[0]
            for m in MEASURES
        },
    }


def mmd_findings(runs: Runs, s: MoonsMmdSettings, quick: bool = True) -> tuple[list[str], str]:
    """Sentences and the one-line answer, computed from the sweep's table."""
    t, v = runs.table, mmd_verdicts(runs, s, quick)
    seeds, late = t["seed"].nunique(), v["unconverged"]
    found = [
        f"All {len(t)} trials took {v['steps'][0]:,} optimizer steps: the compared models "
        "had equal optimizer steps."
        if len(v["steps"]) == 1
        else "Optimizer steps differ between trials: "
        + "; ".join(f"{m} {sorted(g.unique())}" for m, g in t.groupby("model", sort=False)["steps"])
    ]
    if late:
        found.append(late[0].upper() + late[1:])
    for metric, what in (
        ("test_mse", "Test MSE"),
        ("code_mmd2", "MMD² of test codes to N(0, I) (IMQ kernel, bandwidths 0.25 to 4)"),
    ):
        found.append(
            f"{what}: "
            + "; ".join(
                f"{r['model']} {_ci(r)}" for _, r in runs.summary(metric, by="model").iterrows()
            )
            + "."
        )
    if not late:
        found.append(
            f"Against the 1-D bottleneck's test MSE (paired t over {seeds} seeds, Holm "
            f"over {len(v['mse'])} models): " + _tally(v["mse"]) + "."
        )
        found.append(
            f"MMD² of codes to N(0, I) against the 2-D model without MMD (Holm over all "
            f"{len(v['code_pairs'])} pairs of 2-D models): " + _tally(v["code_vs_none"]) + "."
        )
        pairs = v["code_pairs"]
        for w in sorted(set(t.loc[t["objective"] == "mmd", "mmd_weight"])):
            both = {_label(2, "mmd", w, k) for k in ("imq", "rbf")}
            found += [
                _sentence(r, "code MMD²", True)
                for _, r in pairs.iterrows()
                if {r["model_a"], r["model_b"]} == both
            ]
    best = v["best"]
    same = ", ".join(str(x["model"]) for x in best.indistinguishable) or "none"
    found.append(
        f"Chosen on validation (lowest MMD² of decoded N(0, I) samples to the "
        f"validation split): {v['chosen']}; indistinguishable from it at {seeds} seeds "
        f"(paired t, Holm-corrected): {same}."
    )
    chosen = runs.where(model=v["chosen"])
    found.append(
        f"Decoded N(0, I) samples of {v['chosen']} on the test split: "
        + "; ".join(
            f"{NAMES[m]} {_ci(chosen.summary(f'sample_{m}', by=[]).iloc[0])}" for m in NAMES
        )
        + "; the validation split itself scores "
        + ", ".join(f"{NAMES[m]} {t[f'real_{m}'].mean():.4f}" for m in NAMES)
        + "."
    )
    if not late:
        found += [_sentence(v["samples"][m], f"sample {NAMES[m]}", MEASURES[m]) for m in MEASURES]
    mse_row = v["chosen_mse"]
    head = (
        f"at {v['steps'][0]:,} equal optimizer steps"
        if len(v["steps"]) == 1
        else "at unequal optimizer steps"
    )
    sample = chosen.summary("sample_precision", by=[]).iloc[0]
    recall = chosen.summary("sample_recall", by=[]).iloc[0]
    if late:
        answer = (
            f"{late.split(':')[0].capitalize()} ({v['chosen']} test MSE "
            f"{mse_row['mean_b']:.4f} vs "
            f"{mse_row['mean_a']:.4f} for the 1-D bottleneck, {seeds} seeds)."
        )
    else:
        word = {
            "lower": "lower than",
            "higher": "higher than",
            "indistinguishable": "indistinguishable from",
        }[mse_row["verdict"]]
        weight, kernel = t.loc[t["model"] == v["chosen"], ["mmd_weight", "kernel"]].iloc[0]
        answer = (
            f"{head.capitalize()}, the 2-D code with MMD weight {weight:g} and the "
            f"{kernel.upper()} kernel (chosen on "
            f"validation) has test MSE {mse_row['mean_b']:.4f}, {word} the 1-D "
            f"bottleneck's {mse_row['mean_a']:.4f} ({mse_row['ratio']:.2g} times; "
            f"paired t over {seeds} seeds, Holm "
            f"{p_value_text(mse_row['p_holm'])}); its decoded N(0, I) samples reach "
            f"precision {_ci(sample, '.2f')} and recall {_ci(recall, '.2f')}, against "
            f"{t['real_precision'].mean():.2f} and {t['real_recall'].mean():.2f} for "
            "held-out real data."
        )
    return found, answer


def _normal_circles(ax) -> None:
    angle = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2, 3):
        ax.plot(
            r * np.cos(angle),
            r * np.sin(angle),
            color="k",
            lw=0.8,
            ls="--",
            label="N(0, I): 1, 2, 3 std" if r == 1 else None,
        )


def mmd_figures(runs: Runs, chosen: str, test) -> dict:
    fig_m, axm = new_figure(3, 1, width=3.8, height=4.4)  # fits a report column
    ci = {
        m: runs.summary(m, by="model")
        for m in ("test_mse", "code_mmd2", "sample_precision", "sample_recall")
    }
    _ci_panel(
        axm[0, 0], {"mean and 95% CI": ci["test_mse"]}, "Test reconstruction error", "test MSE"
    )
    axm[0, 0].set_yscale("log")
    plain_log_ticks(axm[0, 0])
    _ci_panel(
        axm[0, 1],
        {"mean and 95% CI": ci["code_mmd2"]},
        "Codes against N(0, I)",
        "MMD² of test codes to N(0, I)",
    )
    _ci_panel(
        axm[0, 2],
        {"precision": ci["sample_precision"], "recall": ci["sample_recall"]},
        "Decoded N(0, I) samples vs test set",
        "share (k-NN, k = 3)",
        [
            (f"held-out real data, {m}", runs.table[f"real_{m}"].mean())
            for m in ("precision", "recall")
        ],
    )
    fig_m.suptitle(
        f"Every model at {runs.table['steps'].iloc[0]:,} optimizer steps; "
        f"95% CIs over {runs.table['seed'].nunique()} seeds"
    )
    first = runs.table["seed"].min()
    model = {
        m: runs.models[
            runs.table.index[(runs.table["model"] == m) & (runs.table["seed"] == first)][0]
        ]
        for m in (chosen, NO_MMD, ONE_D)
    }
    fig_s, axs = new_figure(2, 3, width=5.2, height=4.6)
    labels = test.y.numpy()
    for col, name in enumerate((chosen, ONE_D)):
        reconstruction_panel(
            axs[0, col], test.X, reconstruct(model[name], test.X), original_label="original (test)"
        )
        axs[0, col].set_title(f"{name}: reconstructions")
        axs[0, col].legend(fontsize="small", loc="upper right")
    for col, name in enumerate((chosen, NO_MMD)):
        ax, z = axs[1, col], encode(model[name], test.X).numpy()
        for k in (0, 1):
            ax.scatter(
                z[labels == k, 0],
                z[labels == k, 1],
                s=6,
                color=f"C{k}",
                alpha=0.7,
                label=f"codes of moon {k}",
            )
        _normal_circles(ax)
        ax.set(xlabel="$z_1$", ylabel="$z_2$", title=f"{name}: test codes")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize="small", loc="upper right")
        X_new = _decode_normal(model[name], len(test), torch.Generator().manual_seed(int(first)))
        _draw_points(
            axs[2, col], test.X, X_new, f"{name}: decoded N(0, I) samples", "decoded N(0, I)", True
        )
    fig_s.suptitle(f"Seed {first}: reconstructions, codes and decoded standard-normal samples")
    return {"metrics": fig_m, "one seed": fig_s}


@study(
    "moons-mmd",
    "2-D code + MMD to N(0, I) on two moons, weight and kernel swept: error vs "
    "the 1-D bottleneck at equal steps, codes, decoded normals",
    settings=MoonsMmdSettings,
)
def moons_mmd(
    quick: bool = True, seed: int = 0, data=None, progress=None, **overrides
) -> StudyResult:
    """A 2-D code pulled to N(0, I) by MMD, against the 1-D bottleneck at equal optimizer steps.

    One sweep trains, over ``seeds``: the 1-D-bottleneck MLP of task 1, the 2-D
    model without the penalty, and the 2-D model with MMD at every weight and
    kernel in the settings, all for the same epochs and batches of the same data.
    Each is scored by test MSE, MMD² of its test codes to N(0, I), and the quality
    of decoded N(0, I) samples. The MMD setting is chosen on the validation split.
    Comparisons are drawn only when no model's validation loss is still falling
    (quick settings are not converged and say so). Full settings train 80 models
    for 5,550 steps, stacked: about 50 s of one core.
    ``overrides`` are fields of :class:`MoonsMmdSettings`.

    Examples
    --------
    >>> r = moons_mmd(quick=True, epochs=2, seeds=2, weights=(1.0,), kernels=("imq",))
    >>> sorted(r.tables["summary"]["model"])
    ['1-D bottleneck', '2-D + MMD 1 (IMQ)', '2-D without MMD']
    """
    s = resolve_settings(MoonsMmdSettings, quick, overrides)
    check_study_data("moons-mmd", None, data)  # the question is about two moons: refuses data
    train, val, test = split3(datasets.moons(s.n, noise=s.noise, seed=seed), seed=seed)
    runs = run_mmd(s, train, val, test, [seed + i for i in range(s.seeds)], progress)
    findings, answer = mmd_findings(runs, s, quick)
    chosen = _chosen(runs).setting["model"]
    metrics_ = ("test_mse", "code_mmd2", *(f"sample_{m}" for m in NAMES), "steps")
    summary = runs.table.groupby("model", sort=False)[list(metrics_)].mean().reset_index()
    metrics = {
        f"{m}_{key}": float(summary.set_index("model").loc[name, m])
        for key, name in (("1d", ONE_D), ("none", NO_MMD), ("chosen", chosen))
        for m in ("test_mse", "code_mmd2", "sample_precision", "sample_recall")
    }
    return StudyResult(
        "moons-mmd",
        {"summary": summary, "trials": runs.table.drop(columns="bandwidths")},
        mmd_figures(runs, chosen, test),
        findings,
        asdict(s) | {"seed": seed, "quick": quick, "chosen": chosen},
        metrics,
        answer,
    )
