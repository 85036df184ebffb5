"""A self-contained HTML report of study results, plus PNG, CSV and JSON files beside it.

Every file is written to a temporary name and renamed, and report.html is
written last, so an interrupted run never leaves a complete-looking report.
Every string that goes into the HTML is escaped.
"""

from __future__ import annotations

import base64
import io
import json
import math
import platform
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from html import escape
from importlib import metadata
from pathlib import Path

from aelab._files import write_bytes, write_text
from aelab.studies._base import REGISTRY, StudyResult

__all__ = ["write", "library_versions"]

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2.5em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } .findings li { margin: 0.3em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
nav ul { columns: 2; } .wide { overflow-x: auto; } .summary { color: #555; font-style: italic; }
figcaption { color: #777; font-size: 0.8em; }
.answers { background: #f7f9fc; border: 1px solid #cdd7e5; padding: 0.6em 1em; }
.answers th { text-align: left; white-space: nowrap; vertical-align: top; background: none; }
.answers td { text-align: left; } .answer { font-weight: 600; } .answers h2 { margin-top: 0.4em; }
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


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


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


def _section(result: StudyResult, out_dir: Path) -> str:
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
        data = _png(fig)
        write_bytes(out_dir / sid / f"{_slug(key)}.png", data)
        title = fig.axes[0].get_title() if fig.axes else key
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(f'<figure><img alt="{escape(title)}" src="data:image/png;base64,{encoded}">'
                     f"<figcaption>{escape(f'{sid}/{_slug(key)}.png')}</figcaption></figure>")
    for key, table in result.tables.items():
        write_text(out_dir / sid / f"{_slug(key)}.csv", table.to_csv(index=False))
        html_table = table.to_html(index=False, escape=True, border=0, na_rep="–",
                                   float_format=lambda v: f"{v:.4g}")
        parts.append(f'<h3>{escape(key)}</h3><div class="wide">{html_table}</div>')
    config = json.dumps(_jsonable(result.config), indent=1, sort_keys=True)
    parts.append(f"<details><summary>Configuration</summary><pre>{escape(config)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def write(results: StudyResult | Iterable[StudyResult], out_dir, title: str = "aelab report") -> Path:
    """Write ``report.html`` (figures embedded), per-study PNG and CSV files and
    ``metrics.json`` into ``out_dir``; return the path of report.html.

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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = library_versions()
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    sections = [_section(r, out_dir) for r in results]
    metrics = {r.name: _jsonable(r.metrics) for r in results}
    write_text(out_dir / "metrics.json",
               json.dumps({"created": created, "versions": versions, "studies": metrics},
                          indent=2, sort_keys=True))

    answers = "".join(
        f'<tr><th><a href="#{escape(_slug(r.name))}">{escape(r.name)}</a></th>'
        f"<td>{escape(r.answer or (r.findings[0] if r.findings else 'no finding'))}</td></tr>"
        for r in results)
    toc = "".join(f'<li><a href="#{escape(_slug(r.name))}">{escape(r.name)}</a></li>'
                  for r in results)
    version_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
                           for k, v in versions.items())
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p>Created {escape(created)}; {len(results)} {"study" if len(results) == 1 else "studies"}.</p>
<div class="answers" id="answers"><h2>Answers</h2>
<table>{answers}</table></div>
<nav><h2>Contents</h2><ul>{toc}</ul></nav>
{"".join(sections)}
<h2>Library versions</h2><table>{version_rows}</table>
</body></html>
"""
    return write_text(out_dir / "report.html", html)
