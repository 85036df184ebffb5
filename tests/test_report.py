import base64
import io
import json
import os
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from aelab import plots, report
from aelab.studies import StudyResult, moons_autoencoder


def titled_figure(title):
    fig, axes = plots.new_figure()
    axes[0, 0].plot([0, 1], [1, 0])
    axes[0, 0].set(title=title, xlabel="x", ylabel="y")
    return fig


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def decode_image(src):
    assert src.startswith("data:image/png;base64,")
    return mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")


@pytest.fixture(scope="module")
def moons_result():
    return moons_autoencoder(quick=True, n=300, epochs=20)


def test_moons_study_returns_tables_figures_and_numeric_findings(moons_result):
    r = moons_result
    assert not r.tables["errors"].empty
    assert set(r.figures) == {"loss", "reconstruction"}
    for fig in r.figures.values():
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert ax.get_legend() is not None
    assert all(any(ch.isdigit() for ch in f) for f in r.findings)
    assert f"{r.metrics['test_mse']:.4f}" in r.findings[0]


def test_report_embeds_every_figure_and_escapes_text(tmp_path, moons_result):
    evil = StudyResult(
        "<script>alert(1)</script>",
        {"t": pd.DataFrame({"a<b": ["<i>x</i>"]})},
        {"f": titled_figure("<b>title</b>")},
        ["1 < 2 & <b>bold</b>"],
        {"key": "<tag>"},
    )
    path = report.write([moons_result, evil], tmp_path)
    html = path.read_text(encoding="utf-8")
    assert "<script>" not in html and "<b>bold</b>" not in html and "<i>x</i>" not in html
    parsed = parse(path)
    assert parsed.sections[:2] == ["moons-autoencoder", "script-alert-1-script"]
    assert len(parsed.images) == 3
    for src in parsed.images:
        assert decode_image(src).shape[0] > 100
    assert (tmp_path / "moons-autoencoder" / "loss.png").stat().st_size > 1000
    assert pd.read_csv(tmp_path / "moons-autoencoder" / "errors.csv").shape[0] == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["studies"]["moons-autoencoder"]["test_mse"] == pytest.approx(
        moons_result.metrics["test_mse"]
    )
    assert "torch" in metrics["versions"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_rejects_empty_and_wrong_input(tmp_path):
    with pytest.raises(ValueError, match="results is empty"):
        report.write([], tmp_path)
    with pytest.raises(TypeError, match="StudyResult"):
        report.write(["not a result"], tmp_path)


def test_interrupted_write_leaves_no_report(tmp_path, monkeypatch):
    def boom(fig):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_render", boom)
    result = StudyResult("x", figures={"f": titled_figure("t")})
    with pytest.raises(KeyboardInterrupt):
        report.write(result, tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_leads_with_each_studys_answer(tmp_path):
    results = [
        StudyResult("first", findings=["a finding"], answer="answer one, p = 0.01"),
        StudyResult("second", findings=["only a finding"]),
    ]
    html = report.write(results, tmp_path).read_text(encoding="utf-8")
    top = html.index('id="answers"')
    assert top < html.index('<section id="first"')
    assert top < html.index("answer one, p = 0.01") < html.index('<section id="first"')
    # without an answer, the first finding stands in for it
    assert html.index("only a finding") < html.index('<section id="second"')
    assert 'name="viewport"' in html


def test_tables_show_missing_values_as_a_dash_and_long_tables_in_part(tmp_path):
    table = pd.DataFrame(
        {
            "x": [1.0, np.nan],
            "count": pd.array([1, None], dtype="Int64"),
            "name": ["a", None],
            "p": [0.5, pd.NA],
        }
    )
    long = pd.DataFrame({"i": range(report.MAX_TABLE_ROWS + 25)})
    html = report.write(StudyResult("t", {"missing": table, "long": long}), tmp_path).read_text(
        encoding="utf-8"
    )
    start = html.index('<section id="t">')
    body = html[start : html.index("</section>", start)]
    assert "&lt;NA&gt;" not in body and "nan" not in body and "None" not in body
    assert body.count('<td class="num">–</td>') == 4
    assert '<td class="num">1</td>' in body  # the Int64 count keeps its integer form
    assert body.count("<tr>") == 1 + 2 + 1 + report.MAX_TABLE_ROWS  # header rows + rows
    assert f"First {report.MAX_TABLE_ROWS} of {len(long)} rows" in body
    assert '<a href="t/long.csv">' in body
    assert pd.read_csv(tmp_path / "t" / "long.csv").shape[0] == len(long)


def test_each_figure_is_embedded_small_and_linked_to_its_full_size_png(tmp_path):
    fig = titled_figure("a figure")
    path = report.write(StudyResult("s", figures={"f": fig}), tmp_path)
    html = path.read_text(encoding="utf-8")
    assert '<a href="s/f.png"' in html
    full = mpimg.imread(tmp_path / "s" / "f.png")
    src = parse(path).images[0]
    small = decode_image(src)
    # drawn 5 x 4 inches: the file at FILE_DPI, the embedded image at one pixel per CSS px
    assert full.shape[:2] == (4 * report.FILE_DPI, 5 * report.FILE_DPI)
    assert small.shape[:2] == (4 * report.EMBED_DPI, 5 * report.EMBED_DPI)
    assert f'width="{5 * report.EMBED_DPI}" height="{4 * report.EMBED_DPI}"' in html
    embedded = len(base64.b64decode(src.split(",", 1)[1]))
    assert embedded < (tmp_path / "s" / "f.png").stat().st_size / 2


def test_an_incomplete_report_says_so_at_the_top(tmp_path):
    path = report.write(
        [StudyResult("done", findings=["f"])],
        tmp_path,
        incomplete="1 of 3 studies finished; the run was interrupted.",
        not_run=["later", "last"],
    )
    html = path.read_text(encoding="utf-8")
    assert html.index("Incomplete report") < html.index('id="answers"')
    assert "Not run: later, last." in html
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["not_run"] == ["later", "last"] and "interrupted" in metrics["incomplete"]
    with pytest.raises(ValueError, match="needs incomplete="):
        report.write(StudyResult("x"), tmp_path / "b", not_run=["y"])
    with pytest.raises(TypeError, match="not_run"):
        report.write(StudyResult("x"), tmp_path / "c", incomplete="why", not_run="y")


def test_report_and_metrics_are_never_one_without_the_other(tmp_path, monkeypatch):
    """Interrupted between the two renames: metrics.json is taken back."""
    import aelab._files

    real_replace = aelab._files.os.replace

    def replace(src, dst):
        if str(dst).endswith("report.html"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(aelab._files.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        report.write(StudyResult("x", findings=["f"]), tmp_path)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "metrics.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    report.write(StudyResult("x", findings=["f"]), tmp_path)
    assert (tmp_path / "report.html").exists() and (tmp_path / "metrics.json").exists()


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this system")


@needs_fork
def test_figures_drawn_in_the_background_are_the_same_bytes(tmp_path):
    result = StudyResult("s", figures={"a": titled_figure("one"), "b": titled_figure("two")})
    with report.BackgroundRenderer() as renderer:
        renderer.submit(result)
        background = report.write(result, tmp_path / "bg", renderer=renderer)
        assert renderer._pngs == {} and renderer._jobs == []  # every PNG was taken
    alone = report.write(result, tmp_path / "alone")
    assert parse(background).images == parse(alone).images
    for name in ("a", "b"):
        assert (tmp_path / "bg" / "s" / f"{name}.png").read_bytes() == (
            tmp_path / "alone" / "s" / f"{name}.png"
        ).read_bytes()


@needs_fork
def test_a_failed_background_child_leaves_the_drawing_to_write(tmp_path, monkeypatch):
    parent, draw = os.getpid(), report._pngs

    def fails_in_the_child(fig):
        if os.getpid() != parent:
            raise RuntimeError("child failed")
        return draw(fig)

    monkeypatch.setattr(report, "_pngs", fails_in_the_child)
    result = StudyResult("s", figures={"a": titled_figure("one")})
    renderer = report.BackgroundRenderer()
    renderer.submit(result)
    folder = renderer._dir
    assert renderer.take(result.figures["a"]) is None  # the child wrote nothing
    path = report.write(result, tmp_path, renderer=renderer)
    assert len(parse(path).images) == 1 and (tmp_path / "s" / "a.png").exists()
    renderer.close()
    assert not os.path.exists(folder)


def test_background_renderer_refuses_wrong_input(tmp_path):
    with pytest.raises(TypeError, match="enabled"):
        report.BackgroundRenderer(enabled="yes")
    with report.BackgroundRenderer(enabled=False) as renderer:
        with pytest.raises(TypeError, match="StudyResult"):
            renderer.submit("not a result")
        renderer.submit(StudyResult("s", figures={"a": titled_figure("one")}))
        assert renderer._jobs == []  # disabled: write() draws everything
    with pytest.raises(TypeError, match="renderer"):
        report.write(StudyResult("s"), tmp_path, renderer="fork")
