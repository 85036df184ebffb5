"""report.html in a real browser: headless Chromium lays it out at 1400 and 420 px wide.

Each width is an iframe of exactly that size in a small harness page (a headless
window cannot be narrower than 500 px); a script in the harness checks the
report inside it and writes its findings into the DOM, which ``--dump-dom``
prints. Skipped, with the reason, when no Chromium is installed (``.ci/run``
installs Debian's ``chromium``).
"""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from aelab import plots, report
from aelab.studies import StudyResult, moons_autoencoder, sheet6_pca

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium on PATH (tried chromium, chromium-browser, "
    "google-chrome); install it with apt-get install chromium",
)

SIZES = ((1400, 900), (420, 900))

HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<pre id="aelab-check"></pre>
<script>
const results = {};
function check(win) {
  const doc = win.document;
  const vw = doc.documentElement.clientWidth, vh = win.innerHeight;
  // inside a scrolling box (a wide table, the narrow contents bar) is not off the page
  const clipped = (el) => {
    for (let a = el.parentElement; a && a !== doc.documentElement; a = a.parentElement) {
      if (win.getComputedStyle(a).overflowX !== "visible") return true;
    }
    return false;
  };
  const overflowing = [];
  for (const el of doc.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if ((r.right > vw + 1 || r.left < -1) && !clipped(el)) {
      overflowing.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""} ` +
                       `${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  const answers = doc.getElementById("answers");
  const first = answers && answers.querySelector("tr");
  return {
    vw, vh, scrollWidth: doc.documentElement.scrollWidth,
    images: [...doc.images].map((im) => ({alt: im.alt, ok: im.complete && im.naturalWidth > 0})),
    overflowing: overflowing.slice(0, 20),
    answersTop: answers ? answers.getBoundingClientRect().top : null,
    firstAnswerBottom: first ? first.getBoundingClientRect().bottom : null,
  };
}
for (const [w, h] of SIZES) {
  const frame = document.createElement("iframe");
  frame.width = w; frame.height = h; frame.style.border = "0";
  frame.addEventListener("load", () => {
    try { results[`${w}x${h}`] = check(frame.contentWindow); }
    catch (err) { results[`${w}x${h}`] = {error: String(err)}; }
    document.getElementById("aelab-check").textContent = JSON.stringify(results);
  });
  frame.src = "PAGE";
  document.body.appendChild(frame);
}
</script></body></html>
"""


def browser_check(page, tmp_path) -> dict:
    """Lay ``page`` out at each of SIZES in headless Chromium; the harness's findings."""
    harness = page.parent / "_harness.html"
    harness.write_text(HARNESS.replace("SIZES", json.dumps(SIZES)).replace("PAGE", page.name))
    done = subprocess.run(
        [
            BROWSER,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--allow-file-access-from-files",  # the harness reads the report in its iframes
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1500,1000",
            "--virtual-time-budget=15000",
            "--dump-dom",
            harness.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    harness.unlink()
    match = re.search(r'<pre id="aelab-check">(.*?)</pre>', done.stdout, re.S)
    assert match and match.group(1), f"the harness wrote nothing: {done.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def wide_table_figure():
    fig, axes = plots.new_figure(ncols=3, width=4.0)
    for i, ax in enumerate(axes[0]):
        ax.plot(np.arange(10), np.arange(10) ** (i + 1), label=f"power {i + 1}")
        ax.set(title=f"panel {i + 1}", xlabel="x", ylabel="y")
        ax.legend()
    fig.suptitle("Three panels side by side")
    return fig


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    odd = StudyResult(
        "odd-tables",
        tables={
            "missing and long names": pd.DataFrame(
                {
                    "a_rather_long_column_name_for_a_metric": [1.0, np.nan, 3.0],
                    "nullable count": pd.array([1, None, 3], dtype="Int64"),
                    "setting": ["hidden_size=16", None, "lr_schedule=cosine"],
                    "p_holm": [0.01, 0.5, pd.NA],
                }
            ),
            "long": pd.DataFrame({"i": range(200), "value": np.linspace(0, 1, 200)}),
        },
        figures={"panels": wide_table_figure()},
        findings=["A finding with a long unbroken token: " + "x" * 120 + "."],
        answer="An answer sentence long enough to wrap on a phone " * 3,
    )
    results = [moons_autoencoder(quick=True, n=300, epochs=20), sheet6_pca(quick=True), odd]
    return report.write(
        results,
        out,
        title="aelab run: three studies, quick settings, seed 0",
        incomplete="3 of 4 studies finished; the run was interrupted.",
        not_run=["moons-mmd"],
    )


@pytest.fixture(scope="module")
def checked(report_page, tmp_path_factory):
    return browser_check(report_page, tmp_path_factory.mktemp("chromium"))


@pytest.mark.parametrize("width, height", SIZES)
def test_every_image_loads(checked, width, height):
    result = checked[f"{width}x{height}"]
    assert "error" not in result, result
    assert len(result["images"]) == 5
    assert [i["alt"] for i in result["images"] if not i["ok"]] == []


@pytest.mark.parametrize("width, height", SIZES)
def test_nothing_overflows_the_page(checked, width, height):
    result = checked[f"{width}x{height}"]
    assert result["vw"] == width  # the iframe is the viewport the report was laid out in
    assert result["overflowing"] == [] and result["scrollWidth"] <= width, result


def test_the_answers_are_visible_without_scrolling(checked):
    result = checked["1400x900"]
    assert 0 <= result["answersTop"] < 900 / 2
    assert result["firstAnswerBottom"] <= 900


def test_the_check_sees_an_overflowing_page(tmp_path):
    """The harness can fail: a 2000-px element and a broken image are reported."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta name="viewport" '
        'content="width=device-width"></head><body><div id="answers"><table><tr>'
        '<td>x</td></tr></table></div><div style="width:2000px">wide</div>'
        '<img alt="missing" src="missing.png"></body></html>'
    )
    result = browser_check(page, tmp_path)["420x900"]
    assert any(item.startswith("div ") for item in result["overflowing"])
    assert result["scrollWidth"] > 420
    assert [i["alt"] for i in result["images"] if not i["ok"]] == ["missing"]
