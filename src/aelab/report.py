"""A self-contained HTML report of study results, plus PNG, CSV and JSON files beside it.

The report opens with each study's answer, keeps its table of contents in reach
(a sticky side bar on wide screens, a sticky bar on narrow ones), shows each
figure at the size it was drawn for, capped by the column, and links it to a
sharper full-size PNG beside the report. Figures are embedded as palette PNGs,
so the file stays self-contained and small.

Every file is written to a temporary name and renamed; report.html and
metrics.json are renamed together (metrics.json first, and removed again if
report.html cannot follow), so an interrupted run never leaves a
complete-looking report, nor one of the two without the other. Every string
that goes into the HTML is escaped.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import numbers
import os
import pickle
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from html import escape
from importlib import metadata
from pathlib import Path

from aelab._files import atomic_path, write_bytes, write_text
from aelab.studies._base import REGISTRY, StudyResult

__all__ = ["write", "library_versions", "BackgroundRenderer", "RenderedFigure", "prerender"]

# Embedded figures: one pixel per CSS pixel (96 per inch, the browser's own scale), so
# that a figure drawn 6 inches wide shows 6 CSS inches wide and its 10-point text at
# 13 px, unless the column is narrower. The linked PNG files (150 dpi) are sharper,
# for zooming; the embedded image is scaled down from them.
EMBED_DPI = 96
FILE_DPI = 150
# The widest the main column gets (1400 px layout, less 2 x 1.2em padding, the 13.5em
# contents bar and the 2em gap, at 16 px an em, and the image's border), rounded
# down: a figure wider than this at EMBED_DPI is shrunk, and its text with it.
COLUMN_PX = 1100
MAX_TABLE_ROWS = 40  # longer tables show their first rows; the CSV beside it has all
# zlib level of the full-size PNG files: 3 encodes them about a third faster than the
# default 6 for files about 6% larger (measured on the quick run's 51 figures). The
# embedded images keep the default: their size is the report's.
FILE_PNG_LEVEL = 3
# How long write() waits for a BackgroundRenderer child (a study's figures take seconds)
CHILD_TIMEOUT_S = 300.0

_CSS = """
* { box-sizing: border-box; }
html { scroll-padding-top: 3.2em; }
body { font-family: system-ui, sans-serif; margin: 0; color: #222; line-height: 1.45; }
.layout { display: grid; grid-template-columns: 13.5em minmax(0, 1fr); gap: 2em;
          max-width: 1400px; margin: 0 auto; padding: 0 1.2em; }
main { min-width: 0; padding-bottom: 3em; }
nav.toc { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto;
          padding: 1em 0; font-size: 0.85em; }
nav.toc ol { list-style: none; padding: 0; margin: 0; }
nav.toc li { margin: 0.15em 0; } nav.toc a { color: #245; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; } nav.toc .toc-title { font-weight: 600; }
h1 { border-bottom: 2px solid #444; font-size: 1.6em; margin: 0.6em 0 0.2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2.2em; }
p, li, figcaption, h1, h2, h3, .answers td { overflow-wrap: anywhere; }
.meta { color: #555; margin: 0.2em 0 0.8em; }
.incomplete { background: #fff3cd; border: 1px solid #e0b400; padding: 0.6em 1em;
              margin: 0.6em 0; }
.answers { background: #f7f9fc; border: 1px solid #cdd7e5; padding: 0.3em 1em 0.6em; }
.answers h2 { margin: 0.3em 0; border: none; font-size: 1.2em; }
.answers table { margin: 0; font-size: 0.92em; }
.answers th { text-align: left; white-space: nowrap; vertical-align: top; background: none;
              overflow-wrap: normal; }
.answers td { text-align: left; } .answers th, .answers td { border: none;
              border-top: 1px solid #dde3ec; padding: 0.3em 0.6em 0.3em 0; }
.answer { font-weight: 600; } .summary { color: #555; font-style: italic; }
figure { margin: 0.8em 0; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #666; font-size: 0.8em; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.4em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; }
th { background: #f0f0f0; white-space: nowrap; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { text-align: left; } .rows { color: #666; font-size: 0.85em; }
.findings li { margin: 0.3em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.top { font-size: 0.85em; }
@media (max-width: 900px) {
  .layout { display: block; padding: 0 0.7em; }
  nav.toc { position: sticky; top: 0; z-index: 1; background: #fff; max-height: none;
            padding: 0.4em 0; border-bottom: 1px solid #ccc; overflow-x: auto;
            white-space: nowrap; }
  nav.toc ol, nav.toc li { display: inline; } nav.toc li { margin-right: 0.9em; }
  .answers th, .answers td { display: block; white-space: normal; border: none;
                             padding: 0.1em 0; }
  .answers tr { display: block; border-top: 1px solid #dde3ec; padding: 0.3em 0; }
}
"""

_PACKAGES = ("aelab", "torch", "numpy", "scikit-learn", "matplotlib", "pandas")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a run's numbers depend on."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "item"


def _render(fig):
    """``fig`` drawn once at FILE_DPI, as an RGB PIL image.

    ``savefig`` draws a figure with a layout engine twice (once to lay it out,
    once to paint it); a canvas draw runs the layout inside its one pass, which
    gives the same pixels for a figure not drawn before, in about half the time.
    The figure keeps its own canvas and dpi.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas, dpi = fig.canvas, fig.dpi
    try:
        agg = FigureCanvasAgg(fig)
        fig.set_dpi(FILE_DPI)
        agg.draw()
        rgba = np.asarray(agg.buffer_rgba())
    finally:
        fig.set_dpi(dpi)
        fig.set_canvas(canvas)
    # figures are opaque: the alpha channel holds nothing
    return Image.fromarray(rgba[..., :3].copy(), mode="RGB")


def _pngs(fig) -> tuple[bytes, bytes, int, int]:
    """The full-size PNG (FILE_DPI), the embedded one (EMBED_DPI, a 256-colour palette
    PNG: plots have few colours, text stays sharp) and the embedded one's width and height.

    The embedded image is scaled down from the one rendering, not drawn again.
    """
    from PIL import Image

    image = _render(fig)
    full = io.BytesIO()
    image.save(full, format="PNG", compress_level=FILE_PNG_LEVEL)
    scale = EMBED_DPI / FILE_DPI
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.LANCZOS)
    palette = small.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG")
    return (full.getvalue(), out.getvalue(), *size)


@dataclass(frozen=True)
class RenderedFigure:
    """A figure already drawn to the PNGs the report uses (picklable, unlike many figures):
    what :func:`prerender` puts in place of each figure of a result."""

    title: str
    full: bytes  # the full-size PNG file (FILE_DPI)
    small: bytes  # the embedded PNG (EMBED_DPI)
    width: int  # the embedded PNG's size in pixels
    height: int


def _figure_title(fig, key: str) -> str:
    return fig.get_suptitle() or (fig.axes[0].get_title() if fig.axes else "") or key


def prerender(result: StudyResult) -> StudyResult:
    """``result`` with every figure drawn once into a :class:`RenderedFigure`: it can then
    cross a process boundary (``aelab run --jobs``), and :func:`write` embeds the same bytes
    it would have drawn.

    Examples
    --------
    >>> from aelab.plots import new_figure
    >>> fig, axes = new_figure()
    >>> _ = axes[0, 0].set_title("a figure")
    >>> done = prerender(StudyResult("one figure", figures={"panel": fig}))
    >>> done.figures["panel"].title, done.figures["panel"].full[:4]
    ('a figure', b'\\x89PNG')
    """
    if not isinstance(result, StudyResult):
        raise TypeError(f"result must be a StudyResult, got {type(result).__name__}.")
    figures = {
        key: fig
        if isinstance(fig, RenderedFigure)
        else RenderedFigure(_figure_title(fig, key), *_pngs(fig))
        for key, fig in result.figures.items()
    }
    return replace(result, figures=figures)


class BackgroundRenderer:
    """Draw study figures' PNGs in child processes while the caller goes on computing.

    Drawing a figure is Python work that would otherwise wait for the report;
    :meth:`submit` forks a child that draws one result's figures (the same
    drawing code, so the same bytes as :func:`write` alone) and :func:`write`
    takes what the children finished, drawing any figure whose child failed,
    was interrupted or never ran. Where ``os.fork`` does not exist, or with
    ``enabled=False``, :meth:`submit` does nothing and :func:`write` draws
    everything itself. Use it as a context manager: leaving the block stops
    children still running and removes their files.

    Submit a result only once its figures are final: a child draws them as they
    are at :meth:`submit`.

    Parameters
    ----------
    enabled : bool
        False: draw nothing in the background.

    Examples
    --------
    >>> import tempfile
    >>> from aelab.plots import new_figure
    >>> from aelab.studies import StudyResult
    >>> fig, axes = new_figure()
    >>> _ = axes[0, 0].set_title("a figure")
    >>> result = StudyResult("one figure", figures={"panel": fig})
    >>> with BackgroundRenderer() as renderer:
    ...     renderer.submit(result)
    ...     path = write(result, tempfile.mkdtemp(), renderer=renderer)
    >>> (path.parent / "one-figure" / "panel.png").exists()
    True
    """

    def __init__(self, enabled: bool = True):
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False, got {enabled!r}.")
        self.enabled = enabled and hasattr(os, "fork")
        self._dir: str | None = None
        self._jobs: list[tuple[int, str, list]] = []  # (pid, result file, figures)
        self._pngs: dict[int, tuple] = {}  # id(figure) -> what _pngs returned

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, result: StudyResult) -> None:
        """Start drawing ``result``'s figures in a child process (when enabled)."""
        if not isinstance(result, StudyResult):
            raise TypeError(f"result must be a StudyResult, got {type(result).__name__}.")
        figures = [f for f in result.figures.values() if not isinstance(f, RenderedFigure)]
        if not self.enabled or not figures:
            return
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="aelab-figures-")
        path = os.path.join(self._dir, f"{len(self._jobs)}.pickle")
        # the child must not inherit, and later repeat, output still in the buffers
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns that fork in a threaded process may deadlock the child;
            # this child only draws with matplotlib and PIL and exits with os._exit, and
            # one that hangs is killed after CHILD_TIMEOUT_S (its figures drawn here).
            warnings.filterwarnings("ignore", "This process .* fork", DeprecationWarning)
            try:
                pid = os.fork()
            except OSError:  # no process to spare (ulimit): write() draws them
                return
        if pid == 0:  # the child: draw, write, exit without running the parent's cleanup
            code = 1
            try:
                # the parent's handlers raise exceptions meant to unwind the parent
                for signum in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(ValueError):  # not the main thread
                        signal.signal(signum, signal.SIG_DFL)
                pngs = [_pngs(fig) for fig in figures]
                with open(path + ".tmp", "wb") as f:
                    pickle.dump(pngs, f, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(path + ".tmp", path)
                code = 0
            finally:
                os._exit(code)
        self._jobs.append((pid, path, figures))

    def take(self, fig):
        """``fig``'s PNGs as drawn by a child (waiting for it), or None: draw it yourself."""
        for i, (_, _, figures) in enumerate(self._jobs):
            if any(f is fig for f in figures):
                self._collect(i)
                break
        return self._pngs.pop(id(fig), None)

    def _collect(self, i: int) -> None:
        pid, path, figures = self._jobs.pop(i)
        # a child that hangs (a lock held at fork time) is killed, and its figures drawn here
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return
                time.sleep(0.02)
        # a child that failed or was killed wrote nothing: its figures are drawn in process
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError):
            with open(path, "rb") as f:
                pngs = pickle.load(f)
            if len(pngs) == len(figures):
                self._pngs.update({id(fig): p for fig, p in zip(figures, pngs)})

    def close(self) -> None:
        """Stop the children still running and remove their files."""
        for pid, _, _ in self._jobs:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self._jobs.clear()
        self._pngs.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _jsonable(value):
    """Plain JSON values; NaN/inf become None so the file stays valid JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _is_missing(value) -> bool:
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _cell(value) -> tuple[str, str]:
    """A table cell's text and class: numbers right-aligned with 4 significant digits,
    missing values as a dash (never ``<NA>`` or ``nan``)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if _is_missing(value):
        return "–", "num"
    if isinstance(value, bool):
        return ("yes" if value else "no"), "text"
    if isinstance(value, numbers.Integral):
        return f"{value:,}" if abs(value) >= 100_000 else str(value), "num"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isinf(value):
            return ("∞" if value > 0 else "−∞"), "num"
        return f"{value:.4g}", "num"
    return str(value), "text"


def _table_html(table, csv_name: str) -> str:
    """``table`` as HTML: one-line headers, at most MAX_TABLE_ROWS rows (the CSV has all)."""
    shown = table.head(MAX_TABLE_ROWS)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in table.columns)
    rows = []
    for values in shown.itertuples(index=False, name=None):
        cells = (_cell(v) for v in values)
        rows.append(
            "<tr>"
            + "".join(f'<td class="{kind}">{escape(text)}</td>' for text, kind in cells)
            + "</tr>"
        )
    note = ""
    if len(table) > len(shown):
        note = (
            f'<p class="rows">First {len(shown)} of {len(table):,} rows; all are in '
            f'<a href="{escape(csv_name)}">{escape(csv_name)}</a>.</p>'
        )
    return (
        f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
        f"</tbody></table></div>{note}"
    )


def _figure_html(fig, key: str, sid: str, out_dir: Path, renderer=None) -> str:
    name = f"{sid}/{_slug(key)}.png"
    if isinstance(fig, RenderedFigure):  # drawn by prerender, in a worker
        full, small, width, height, title = fig.full, fig.small, fig.width, fig.height, fig.title
    else:
        pngs = renderer.take(fig) if renderer is not None else None
        full, small, width, height = pngs if pngs is not None else _pngs(fig)
        title = _figure_title(fig, key)
    write_bytes(out_dir / name, full)
    encoded = base64.b64encode(small).decode("ascii")
    return (
        f'<figure><a href="{escape(name)}" title="full-size PNG">'
        f'<img alt="{escape(title)}" width="{width}" height="{height}" '
        f'src="data:image/png;base64,{encoded}"></a>'
        f'<figcaption><a href="{escape(name)}">{escape(name)}</a> (full size)</figcaption>'
        "</figure>"
    )


def _section(result: StudyResult, out_dir: Path, renderer=None) -> str:
    sid = _slug(result.name)
    parts = [f'<section id="{escape(sid)}"><h2>{escape(result.name)}</h2>']
    if result.name in REGISTRY:
        parts.append(f'<p class="summary">{escape(REGISTRY[result.name].summary)}</p>')
    if result.answer:
        parts.append(f'<p class="answer">{escape(result.answer)}</p>')
    if result.findings:
        items = "".join(f"<li>{escape(str(f))}</li>" for f in result.findings)
        parts.append(f'<h3>Findings</h3><ul class="findings">{items}</ul>')
    for key, fig in result.figures.items():
        parts.append(_figure_html(fig, key, sid, out_dir, renderer))
    for key, table in result.tables.items():
        csv_name = f"{sid}/{_slug(key)}.csv"
        write_text(out_dir / csv_name, table.to_csv(index=False))
        parts.append(f"<h3>{escape(key)}</h3>{_table_html(table, csv_name)}")
    config = json.dumps(_jsonable(result.config), indent=1, sort_keys=True)
    parts.append(f"<details><summary>Configuration</summary><pre>{escape(config)}</pre></details>")
    parts.append('<p class="top"><a href="#top">↑ back to the answers</a></p></section>')
    return "\n".join(parts)


def _write_together(html_path: Path, html: str, json_path: Path, json_text: str) -> None:
    """Write both files under temporary names, then rename metrics.json and report.html;
    if report.html's rename does not happen, metrics.json is removed again."""
    json_renamed = []
    try:
        with contextlib.ExitStack() as stack:
            html_tmp = stack.enter_context(atomic_path(html_path))
            # runs after metrics.json's rename (or its failure), before report.html's
            stack.push(lambda exc_type, exc, tb: json_renamed.append(exc_type is None))
            json_tmp = stack.enter_context(atomic_path(json_path))
            json_tmp.write_text(json_text, encoding="utf-8")
            html_tmp.write_text(html, encoding="utf-8")
    except BaseException:
        if json_renamed and json_renamed[0]:
            json_path.unlink(missing_ok=True)
        raise


def write(
    results: StudyResult | Iterable[StudyResult],
    out_dir,
    title: str = "aelab report",
    *,
    incomplete: str = "",
    not_run: Sequence[str] = (),
    renderer: BackgroundRenderer | None = None,
) -> Path:
    """Write ``report.html`` (figures embedded), per-study PNG and CSV files and
    ``metrics.json`` into ``out_dir``; return the path of report.html.

    Parameters
    ----------
    results : StudyResult or iterable of StudyResult
    out_dir : str or Path
        Created if missing.
    title : str
    incomplete : str
        When not empty, the report is marked incomplete at the top with this
        sentence (e.g. why the run stopped); metrics.json says so too.
    not_run : sequence of str
        The studies that did not run, listed in that mark.
    renderer : BackgroundRenderer, optional
        Takes the figures' PNGs from it where its children drew them (the
        same bytes, drawn while the caller computed); draws the rest.

    Examples
    --------
    >>> import tempfile
    >>> from aelab.studies import StudyResult
    >>> write(StudyResult("empty"), tempfile.mkdtemp()).name
    'report.html'
    """
    results = [results] if isinstance(results, StudyResult) else list(results)
    if not results:
        raise ValueError("results is empty; pass at least one StudyResult.")
    for r in results:
        if not isinstance(r, StudyResult):
            raise TypeError(f"results must hold StudyResult objects, got {type(r).__name__}.")
    if not isinstance(incomplete, str):
        raise TypeError(f"incomplete must be a str, got {type(incomplete).__name__}.")
    if isinstance(not_run, str) or not all(isinstance(n, str) for n in not_run):
        raise TypeError(f"not_run must be a sequence of study names (str), got {not_run!r}.")
    not_run = list(not_run)
    if renderer is not None and not isinstance(renderer, BackgroundRenderer):
        raise TypeError(
            f"renderer must be a BackgroundRenderer or None, got {type(renderer).__name__}."
        )
    if not_run and not incomplete:
        raise ValueError(
            f"not_run={not_run!r} needs incomplete=, the sentence that says why "
            "those studies did not run."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = library_versions()
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    sections = [_section(r, out_dir, renderer) for r in results]
    metrics = {
        "created": created,
        "versions": versions,
        "studies": {r.name: _jsonable(r.metrics) for r in results},
    }
    if incomplete:
        metrics.update(incomplete=incomplete, not_run=not_run)

    answers = "".join(
        f'<tr><th><a href="#{escape(_slug(r.name))}">{escape(r.name)}</a></th>'
        f"<td>{escape(r.answer or (r.findings[0] if r.findings else 'no finding'))}</td></tr>"
        for r in results
    )
    toc = "".join(
        f'<li><a href="#{escape(_slug(r.name))}">{escape(r.name)}</a></li>' for r in results
    )
    banner = ""
    if incomplete:
        missing = f" Not run: {', '.join(escape(n) for n in not_run)}." if not_run else ""
        banner = (
            f'<div class="incomplete" id="incomplete"><strong>Incomplete report.</strong> '
            f"{escape(incomplete)}{missing}</div>"
        )
    version_rows = "".join(
        f'<tr><th>{escape(k)}</th><td class="text">{escape(v)}</td></tr>'
        for k, v in versions.items()
    )
    count = f"{len(results)} {'study' if len(results) == 1 else 'studies'}"
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>
<style>{_CSS}</style></head><body>
<div class="layout">
<nav class="toc" aria-label="Contents"><ol>
<li class="toc-title"><a href="#top">Answers</a></li>{toc}
<li><a href="#versions">Library versions</a></li></ol></nav>
<main id="top">
<h1>{escape(title)}</h1>
<p class="meta">Created {escape(created)}; {count}. Each figure links to its full-size PNG;
each table's CSV and metrics.json are beside this file.</p>
{banner}
<div class="answers" id="answers"><h2>Answers</h2>
<table>{answers}</table></div>
{"".join(sections)}
<section id="versions"><h2>Library versions</h2>
<div class="wide"><table>{version_rows}</table></div></section>
</main></div>
</body></html>
"""
    html_path = out_dir / "report.html"
    _write_together(
        html_path, html, out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True)
    )
    return html_path
