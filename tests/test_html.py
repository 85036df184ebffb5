import base64
import html
import io
import re

import pytest
from matplotlib.image import imread

import aelab
from aelab._html import history_html, runs_html, study_html
from aelab.studies import StudyResult
from aelab.train import History


def _images(text):
    """The inline PNGs of an HTML fragment, decoded, with their CSS widths."""
    found = re.findall(r'src="data:image/png;base64,([^"]+)"[^>]*style="width:(\d+)px', text)
    return [(imread(io.BytesIO(base64.b64decode(data)), format="png"), int(w)) for data, w in found]


@pytest.fixture(scope="module")
def moons():
    train, test = aelab.data.split(aelab.data.moons(200, seed=0), test_size=0.25, seed=0)
    return train, test


@pytest.fixture(scope="module")
def history(moons):
    train, test = moons
    with aelab.seeded(0):
        model = aelab.Autoencoder(2, 1, hidden_size=16, layers=2)
    return aelab.train_autoencoder(model, train, epochs=12, batch_size=32, lr=3e-3, test=test)


def test_history_html_summarises_the_run(history):
    text = history_html(history)
    assert "Autoencoder(input_size=2, bottleneck_size=1, hidden_size=16, layers=2)" in text
    assert f"final train loss {history.train_loss[-1]:.4g}" in text
    best = min(range(12), key=history.test_loss.__getitem__)
    assert f"Lowest test loss {history.test_loss[best]:.4g} at epoch {best + 1} of 12" in text
    # the table samples epochs 1, 4, 7, 10 and 12, with their losses
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>", text)
    assert rows == ["1", "4", "7", "10", "12"]
    ((image, width),) = _images(text)
    # drawn at 96 dpi and shown at that size, so its text keeps its designed point size
    assert image.shape[1] == width == 576


def test_history_html_untrained_and_other_objectives(moons):
    assert "not trained (0 epochs)" in history_html(History())
    train, _ = moons
    vae = aelab.VAE(2, 1, hidden_size=8, layers=1)
    text = history_html(aelab.train_vae(vae, train, epochs=2, batch_size=50))
    assert "VAE(" in text and "vae loss" in text
    assert "Lowest test loss" not in text  # no test set, no claim about it
    assert len(_images(text)) == 1


def test_html_functions_work_as_repr_html(history):
    # the classes wire them as `_repr_html_ = history_html`: a plain function as a method
    wired = type("WiredHistory", (History,), {"_repr_html_": history_html})
    copy = wired(**history.to_dict())
    assert copy._repr_html_() == history_html(history)


@pytest.fixture(scope="module")
def runs(moons):
    train, test = moons
    fit, validation = aelab.data.split(train, test_size=0.25, seed=1)
    return aelab.sweep(
        lambda hidden_size: aelab.Autoencoder(2, 1, hidden_size, 2),
        fit,
        grid={"hidden_size": [2, 32]},
        seeds=3,
        validation=validation,
        test=test,
        epochs=15,
        batch_size=16,
        lr=3e-3,
    )


def test_runs_html_selects_on_validation_and_reports_test(runs):
    text = html.unescape(runs_html(runs))
    assert "Runs: 6 trials (hidden_size; 3 seeds)." in text
    best = runs.best("val_mse")
    assert f"Lowest mean val_mse: {best.label}, {best.mean:.4g} (95% CI {best.ci_low:.4g}" in text
    chosen = runs.where(**best.setting).summary("test_mse", by=[]).iloc[0]
    assert f"that setting's test_mse is {chosen['mean']:.4g}" in text
    (row,) = best.comparison.itertuples()
    verdict = "Significantly higher val_mse" if row.significant else "Not distinguishable"
    assert verdict in text and f"p_holm {row.p_holm:.2g}" in text
    assert len(re.findall(r"<tr>\s*<td>", text)) == 2  # one row per setting
    assert len(_images(text)) == 1  # the mean and CI per hidden size


def test_runs_html_one_seed_makes_no_comparison(moons):
    train, test = moons
    runs = aelab.sweep(
        lambda lr: aelab.LinearAutoencoder(2, 1),
        train,
        grid={"lr": [1e-3, 1e-2]},
        seeds=1,
        test=test,
        epochs=2,
        batch_size=50,
    )
    text = html.unescape(runs_html(runs))
    assert "One seed per setting: no test can tell the settings apart" in text
    assert "Significantly" not in text and "Not distinguishable" not in text
    assert "Chosen on the test data itself" in text  # no validation set: say it is optimistic


@pytest.fixture(scope="module")
def study():
    return aelab.studies.moons_autoencoder(quick=True, epochs=5)


def test_study_html_shows_answer_findings_table_and_figures(study):
    text = study_html(study)
    assert study.answer and html.escape(study.answer) in text
    for finding in study.findings:
        assert html.escape(finding) in text
    assert "quick settings, seed 0" in text
    assert text.count("<table") == len(study.tables) == 1
    assert len(_images(text)) == len(study.figures) == 2
    assert "<details>" not in text  # two figures and one table: nothing folded


def test_study_html_folds_extra_figures_and_tables_and_escapes(study):
    figures = {f"figure {i}": fig for i, fig in enumerate(3 * list(study.figures.values()))}
    tables = {"first": study.tables["errors"], "second <b>": study.tables["errors"]}
    result = StudyResult("made-up", tables, figures, ["a < b & <script>x</script>"], {}, {}, "")
    text = study_html(result)
    assert "<script>" not in text and "a &lt; b &amp; &lt;script&gt;" in text
    assert "second &lt;b&gt;" in text
    folded = text[text.index("<details><summary>4 more figures") :]
    assert len(_images(text)) == 6 and len(_images(folded)) == 4
    assert "<details><summary>1 more table</summary>" in text


def test_history_runs_and_study_result_render_in_jupyter():
    import aelab
    from aelab.studies import StudyResult

    runs = aelab.sweep(
        lambda: aelab.Autoencoder(2, 1, 8, 1),
        aelab.data.moons(100),
        seeds=2,
        epochs=2,
        batch_size=20,
    )
    result = StudyResult("demo", findings=["codes <spread> evenly"], answer="yes")
    assert "codes &lt;spread&gt; evenly" in result._repr_html_()
    assert runs._repr_html_() == runs_html(runs) and "<table" in runs._repr_html_()
    history = runs.histories[0]
    assert history._repr_html_() == history_html(history) and "<img" in history._repr_html_()
