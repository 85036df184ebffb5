"""Rich display in Jupyter: compact, self-contained HTML for History, Runs and StudyResult.

Each function returns one ``<div>``: a summary line, the findings, the key
table and the figures inline as base64 PNG. The classes use them as their
``_repr_html_`` (``_repr_html_ = history_html`` in the class body), so this
module imports only the standard library at the top: matplotlib, pandas and
:mod:`aelab.plots` are loaded when a result is first displayed.

Every string from a result goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape

__all__ = ["history_html", "runs_html", "study_html"]

# CSS pixels are 1/96 inch: at this dpi a figure shows at the size it was designed
# for, so its 10-point text is 13 px on screen, legible without zooming
_DPI = 96
_VISIBLE_FIGURES = 2  # the rest of a study's figures fold under <details>
_MAX_ROWS = 20
# History.config["objective"] -> what its loss is, for the axis label
_LOSS_NAMES = {"reconstruction": "MSE", "vae": "negative ELBO", "mmd": "MSE + weighted MMD²"}
_STYLE = (
    "<style>.aelab-result{font-family:system-ui,sans-serif;line-height:1.4;max-width:1000px}"
    ".aelab-result .aelab-summary{font-weight:600;margin:0.3em 0}"
    ".aelab-result ul{margin:0.3em 0 0.6em;padding-left:1.4em}"
    ".aelab-result img{max-width:100%;height:auto;display:block;margin:0.4em 0}"
    ".aelab-result table{font-size:0.85em}</style>"
)


# ---------------------------------------------------------------- building blocks


def _figure(fig, alt: str) -> str:
    """``fig`` as an inline PNG at its own size (shrunk only to fit a narrower column)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    width = round(fig.get_figwidth() * _DPI)
    return (
        f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
        f'style="width:{width}px;max-width:100%;height:auto">'
    )


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(df) -> str:
    """A DataFrame as a compact HTML table: 4 significant digits, blanks for missing values."""
    return df.to_html(
        index=False,
        border=0,
        max_rows=_MAX_ROWS,
        na_rep="",
        float_format=lambda v: f"{v:.4g}",
        classes="aelab-table",
    )


def _list(items) -> str:
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{escape(str(item))}</li>" for item in items) + "</ul>"


def _block(summary: str, findings=(), tables=(), figures=(), folded_figures=()) -> str:
    """The one layout: summary, findings, tables, visible figures, then folded ones."""
    parts = [
        _STYLE,
        '<div class="aelab-result">',
        f'<p class="aelab-summary">{escape(summary)}</p>',
    ]
    parts.append(_list(findings))
    parts.extend(tables)
    parts.extend(figures)
    if folded_figures:
        parts.append(
            f"<details><summary>{len(folded_figures)} more "
            f"figure{'s' if len(folded_figures) > 1 else ''}</summary>"
            + "".join(folded_figures)
            + "</details>"
        )
    parts.append("</div>")
    return "".join(parts)


def _title(fig, default: str) -> str:
    """The figure's title for alt text: its suptitle, else its first axes' title."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return suptitle.get_text()
    for ax in fig.axes:
        if ax.get_title():
            return ax.get_title()
    return default


# ---------------------------------------------------------------- History


def history_html(history) -> str:
    """HTML for an :class:`aelab.History`: what was trained, the losses, the loss curves.

    Parameters
    ----------
    history : aelab.History

    Returns
    -------
    str

    Examples
    --------
    >>> import aelab
    >>> model = aelab.LinearAutoencoder(2, 1)
    >>> history = aelab.train_autoencoder(model, aelab.data.moons(64), epochs=2, batch_size=32)
    >>> "LinearAutoencoder" in history_html(history)
    True
    """
    import pandas as pd

    from aelab import plots

    config = history.config or {}
    name = config.get("model", "model")
    args = ", ".join(f"{k}={v}" for k, v in (config.get("model_args") or {}).items())
    model = f"{name}({args})"
    epochs = len(history.train_loss)
    if epochs == 0:
        return _block(f"{model}: not trained (0 epochs).")
    trained_on = f" on {config['n_train']:,} samples" if config.get("n_train") else ""
    seconds = f", {history.seconds[-1]:.2g} s" if history.seconds else ""
    summary = (
        f"{model} trained {epochs} epoch{'s' if epochs > 1 else ''}{trained_on} "
        f"({config.get('objective', 'reconstruction')} loss, lr {config.get('lr', '?')}, "
        f"batch {config.get('batch_size', '?')}{seconds}): "
        f"final train loss {history.train_loss[-1]:.4g}"
        + (f", test loss {history.test_loss[-1]:.4g}." if history.test_loss else ".")
    )
    findings = []
    if history.test_loss:
        best = min(range(epochs), key=history.test_loss.__getitem__)
        findings.append(
            f"Lowest test loss {history.test_loss[best]:.4g} at epoch {best + 1} of {epochs}"
            + (
                " (the last: more epochs may still help)."
                if best == epochs - 1
                else f"; the last epoch's is {history.test_loss[-1] / history.test_loss[best]:.3g}"
                " times that."
            )
        )
    # a few epochs along the way, not every one: first, quarters, last
    rows = sorted({0, epochs // 4, epochs // 2, (3 * epochs) // 4, epochs - 1})
    table = pd.DataFrame(
        {
            "epoch": [r + 1 for r in rows],
            "train loss": [history.train_loss[r] for r in rows],
            **({"test loss": [history.test_loss[r] for r in rows]} if history.test_loss else {}),
            **(
                {"examples seen": [history.examples_seen[r] for r in rows]}
                if len(history.examples_seen) == epochs
                else {}
            ),
        }
    )
    objective = config.get("objective", "reconstruction")
    losses = [*history.train_loss, *history.test_loss]
    figure = plots.loss_curves(
        {name: history},
        title=f"{name}: loss per epoch",
        loss=_LOSS_NAMES.get(objective, objective),
        log=all(v > 0 for v in losses),  # an MMD estimate can make the loss negative
    )
    return _block(summary, findings, [_table(table)], [_figure(figure, "loss per epoch")])


# ---------------------------------------------------------------- Runs


def _runs_metric(table) -> tuple[str | None, str | None]:
    """(metric to select on, metric to report on): validation then test, else train."""

    def present(name):
        return name in table and table[name].notna().any()

    if present("val_mse"):
        return "val_mse", "test_mse" if present("test_mse") else None
    for name in ("test_mse", "train_mse"):
        if present(name):
            return name, None
    return None, None


def _ci(row) -> str:
    if not math.isfinite(row["ci_low"]):
        return f"{row['mean']:.4g} (n={int(row['n'])}: no confidence interval from one seed)"
    return (
        f"{row['mean']:.4g} (95% CI {row['ci_low']:.4g} to {row['ci_high']:.4g}, "
        f"n={int(row['n'])} seeds)"
    )


def _runs_findings(runs, select: str, report: str | None) -> list[str]:
    summary = runs.summary(select)
    if summary["n"].sum() == 0:
        return [f"No trial has a finite {select}: all {len(runs)} diverged."]
    findings = []
    diverged = int(summary["n_diverged"].sum())
    if diverged:
        findings.append(f"{diverged} of {len(runs)} trials diverged and are left out.")
    if len(summary) == 1:
        findings.append(f"Mean {select}: {_ci(summary.iloc[0])}.")
        if report is not None:
            findings.append(f"Mean {report}: {_ci(runs.summary(report).iloc[0])}.")
        return findings
    best = runs.best(select)
    findings.append(
        f"Lowest mean {select}: {best.label}, "
        + _ci({"mean": best.mean, "ci_low": best.ci_low, "ci_high": best.ci_high, "n": best.n})
        + "."
    )
    tested = best.comparison
    if tested is not None and len(tested):
        tested = tested.dropna(subset=["p_holm"])
    if tested is None or tested.empty:
        findings.append(
            "One seed per setting: no test can tell the settings apart; sweep with seeds >= 2."
        )
        return findings + _chosen(runs, best, select, report)
    how = f"{' and '.join(sorted(set(tested['test'])))} tests over seeds, Holm-corrected"
    same, worse = tested[~tested["significant"]], tested[tested["significant"]]
    if len(same):
        findings.append(f"Not distinguishable from it ({how}, alpha 0.05): {_pairs(same)}.")
    if len(worse):
        findings.append(f"Significantly higher {select} ({how}, alpha 0.05): {_pairs(worse)}.")
    return findings + _chosen(runs, best, select, report)


def _pairs(rows) -> str:
    return "; ".join(f"{row.b} (p_holm {row.p_holm:.2g}, n={row.n_b})" for row in rows.itertuples())


def _chosen(runs, best, select: str, report: str | None) -> list[str]:
    """The chosen setting's numbers on the data it was not chosen on."""
    if report is not None:
        chosen = runs.where(**best.setting).summary(report, by=[]).iloc[0]
        return [f"Chosen on {select}, that setting's {report} is {_ci(chosen)}."]
    if select == "test_mse":
        return [
            "Chosen on the test data itself, so the best mean is optimistic; pass "
            "validation= to sweep to select on separate data."
        ]
    return []


def _runs_figure(runs, metric: str, summary):
    """Mean and 95% CI of ``metric`` per value of the one grid setting."""
    from aelab import plots

    name = runs.grid_names[0]
    fig, axes = plots.new_figure(width=5.5, height=3.6)
    ax = axes[0, 0]
    x = range(len(summary))
    mean = summary["mean"].to_numpy(dtype=float)
    low = mean - summary["ci_low"].to_numpy(dtype=float)
    high = summary["ci_high"].to_numpy(dtype=float) - mean
    ax.errorbar(x, mean, yerr=[low, high], fmt="o", capsize=4, color="C0")
    ax.set_xticks(list(x), [_number(v) for v in summary[name]])
    n = int(summary["n"].max())
    ax.set(
        xlabel=name,
        ylabel=f"{metric} (mean, 95% CI)",
        title=f"{metric} by {name} (mean and 95% CI over {n} seed{'s' if n > 1 else ''})",
    )
    ax.grid(True, alpha=0.3)
    return fig


def runs_html(runs) -> str:
    """HTML for :class:`aelab.Runs`: the trials, the best setting with its uncertainty, a table.

    Selects on ``val_mse`` and reports ``test_mse`` when the sweep had a
    validation set; else summarises ``test_mse`` (or ``train_mse``). With one
    grid setting, a figure shows the mean and 95% CI per value.

    Parameters
    ----------
    runs : aelab.Runs

    Returns
    -------
    str

    Examples
    --------
    >>> import aelab
    >>> runs = aelab.sweep(lambda: aelab.LinearAutoencoder(2, 1), aelab.data.moons(64),
    ...                    seeds=2, epochs=1, batch_size=32)
    >>> "2 trials" in runs_html(runs)
    True
    """
    table = runs.table
    seeds = sorted(table["seed"].unique().tolist()) if "seed" in table else []
    grid = ", ".join(runs.grid_names) or "no grid"
    summary = (
        f"Runs: {len(runs)} trials ({grid}; {len(seeds)} seed{'s' if len(seeds) != 1 else ''})"
        + (f", {runs.missing} not finished" if getattr(runs, "missing", 0) else "")
        + (f", store {runs.store}" if getattr(runs, "store", None) else "")
        + "."
    )
    if len(runs) == 0:
        return _block(summary)
    select, report = _runs_metric(table)
    if select is None:
        return _block(summary, tables=[_table(table)])
    findings = _runs_findings(runs, select, report)
    stats = runs.summary(select)
    if not stats["n_diverged"].any():
        stats = stats.drop(columns="n_diverged")
    stats = stats.rename(columns={c: f"{select} {c}" for c in ("mean", "std", "ci_low", "ci_high")})
    if report is not None:  # the number a reader reports, beside the one settings were chosen on
        stats[f"{report} mean"] = runs.summary(report)["mean"].to_numpy()
    figures = []
    if len(runs.grid_names) == 1 and len(stats) > 1:
        figures.append(_figure(_runs_figure(runs, select, runs.summary(select)), select))
    return _block(summary, findings, [_table(stats)], figures)


# ---------------------------------------------------------------- StudyResult


def study_html(result) -> str:
    """HTML for a :class:`aelab.studies.StudyResult`: its answer, findings, key table, figures.

    The first table is the key table (the rest fold under ``<details>``); the
    first figures show inline at their designed size, the others fold too.

    Parameters
    ----------
    result : StudyResult

    Returns
    -------
    str

    Examples
    --------
    >>> import aelab
    >>> result = aelab.studies.conv_shapes()
    >>> result.findings[0] in study_html(result)
    True
    """
    config = result.config or {}
    settings = []
    if "quick" in config:
        settings.append("quick settings" if config["quick"] else "full settings")
    if "seed" in config:
        settings.append(f"seed {config['seed']}")
    head = f"{result.name}" + (f" ({', '.join(settings)})" if settings else "")
    summary = f"{head}: {result.answer}" if result.answer else head
    tables = [f"<p><b>{escape(name)}</b></p>" + _table(df) for name, df in result.tables.items()]
    if len(tables) > 1:
        tables = [
            tables[0],
            f"<details><summary>{len(tables) - 1} more table{'s' if len(tables) > 2 else ''}"
            f"</summary>{''.join(tables[1:])}</details>",
        ]
    figures = [_figure(fig, _title(fig, name)) for name, fig in result.figures.items()]
    return _block(
        summary,
        result.findings,
        tables,
        figures[:_VISIBLE_FIGURES],
        figures[_VISIBLE_FIGURES:],
    )
