import base64
import io
import json
from html.parser import HTMLParser

import matplotlib.image as mpimg
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
    evil = StudyResult("<script>alert(1)</script>", {"t": pd.DataFrame({"a<b": ["<i>x</i>"]})},
                       {"f": titled_figure("<b>title</b>")}, ["1 < 2 & <b>bold</b>"],
                       {"key": "<tag>"})
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
        moons_result.metrics["test_mse"])
    assert "torch" in metrics["versions"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_rejects_empty_and_wrong_input(tmp_path):
    with pytest.raises(ValueError, match="results is empty"):
        report.write([], tmp_path)
    with pytest.raises(TypeError, match="StudyResult"):
        report.write(["not a result"], tmp_path)


def test_interrupted_write_leaves_no_report(tmp_path, monkeypatch):
    def boom(fig, dpi=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_png", boom)
    result = StudyResult("x", figures={"f": titled_figure("t")})
    with pytest.raises(KeyboardInterrupt):
        report.write(result, tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_leads_with_each_studys_answer(tmp_path):
    results = [StudyResult("first", findings=["a finding"], answer="answer one, p = 0.01"),
               StudyResult("second", findings=["only a finding"])]
    html = report.write(results, tmp_path).read_text(encoding="utf-8")
    top = html.index('id="answers"')
    assert top < html.index('<section id="first"')
    assert top < html.index("answer one, p = 0.01") < html.index('<section id="first"')
    # without an answer, the first finding stands in for it
    assert html.index("only a finding") < html.index('<section id="second"')
    assert 'name="viewport"' in html
