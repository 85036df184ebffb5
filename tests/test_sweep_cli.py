"""aelab sweep CONFIG.toml: the example runs and resumes, --status, config errors by line."""

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

import aelab
from aelab.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweep.toml"

SMALL = """\
title = "small"
seeds = 3
stack_size = 3

[model]
family = "autoencoder"
bottleneck_size = 1
layers = 1

[data]
name = "moons"
n = 120

[grid]
hidden_size = [4, 8]
lr = [0.003, 0.03]

[training]
epochs = 3
batch_size = 16
"""


def write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(EXAMPLE), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "Trained 30 trials, reused 0" in printed.out
    folder = next(p for p in out.iterdir() if p.is_dir())
    table = pd.read_csv(folder / "trials.csv")
    assert len(table) == 30 and set(table["hidden_size"]) == {8, 32}
    assert {"error-vs-hidden_size.png", "error-vs-lr.png"} <= {p.name for p in folder.iterdir()}
    assert (out / "sweep.sqlite").is_file() and (out / "report.html").is_file()
    # without a terminal: one line per finished stack (two stacks of 15: one per width)
    assert len(re.findall(r"trials trained \(stack of 15", printed.err)) == 2


def test_rerun_with_the_store_trains_nothing_and_gives_the_same_table(tmp_path, capsys):
    config, store = write(tmp_path, SMALL), tmp_path / "s.sqlite"
    assert (
        main(
            [
                "sweep",
                str(config),
                "--store",
                str(store),
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "sweep",
                str(config),
                "--store",
                str(store),
                "--out",
                str(tmp_path / "b"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Trained 12 trials, reused 0" in out and "Trained 0 trials, reused 12" in out
    a, b = (pd.read_csv(tmp_path / x / "sweep-small" / "trials.csv") for x in "ab")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        aelab.Runs.load(store).table.drop(columns="seconds"),
        a.drop(columns="seconds"),
        check_dtype=False,
    )


def test_status_says_what_is_done_and_missing(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    train = aelab.data.moons(64)

    def stop_after_first_stack(p):
        if p.stack_trials:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aelab.sweep(
            lambda hidden_size: aelab.Autoencoder(2, 1, hidden_size, 1),
            train,
            grid={"hidden_size": [4, 8]},
            seeds=2,
            stack_size=2,
            epochs=1,
            batch_size=32,
            store=store,
            progress=stop_after_first_stack,
        )
    assert main(["sweep", "--status", str(store)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"2 of 4 trials of its last sweep done, 2 missing", out)
    assert "missing hidden_size=8: seeds 0, 1" in out


@pytest.mark.parametrize(
    "edit, match",
    [
        (("layers = 1", "layer = 1"), r"line 8: \[model\] layer: unknown key; allowed: .*layers"),
        (("layers = 1", 'layers = "one"'), r"line 8: \[model\] layers: must be an integer"),
        (("hidden_size = [4, 8]\nlr = [0.003, 0.03]", ""), r"line 14: \[grid\]: the grid is empty"),
        (("lr = [0.003, 0.03]", "lr = 0.003"), r"line 16: \[grid\] lr: must be a non-empty list"),
        (("lr = [0.003, 0.03]", "lr = []"), r"line 16: \[grid\] lr: must be a non-empty list"),
        (
            ("lr = [0.003, 0.03]", "learning_rate = [0.1]"),
            r"line 16: \[grid\] learning_rate: not a model argument or training setting; "
            r"allowed: .*hidden_size.*lr",
        ),
        (("epochs = 3", "epochs = 3.5"), r"line 19: \[training\] epochs: must be an integer"),
        (("seeds = 3", "seeds = 0"), r"line 2: seeds: must be >= 1"),
        (('name = "moons"', 'name = "spirals"'), r"line 11: \[data\] name: unknown data"),
        (('family = "autoencoder"', 'family = "gan"'), r"line 6: \[model\] family: unknown"),
        (("stack_size = 3", "stacks = 3"), r"line 3: stacks: unknown key; allowed: title, seeds"),
        (("[training]", "[training]\n[training]"), r"not valid TOML"),
        (
            ("n = 120", 'n = 120\nlabel_column = "y"'),
            r"line 13: \[data\] label_column: only applies to data from a file",
        ),
    ],
)
def test_config_mistakes_name_the_key_and_line(tmp_path, capsys, edit, match):
    config = write(tmp_path, SMALL.replace(*edit))
    assert main(["sweep", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert err.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "out").exists()  # nothing trained, no folder left behind


def test_a_missing_dask_install_is_one_line_saying_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    config = write(tmp_path, SMALL)
    assert (
        main(["sweep", str(config), "--executor", "dask-local:2", "--out", str(tmp_path / "out")])
        == 1
    )
    assert "pip install aelab[dask]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_status_or_config_is_required(tmp_path, capsys):
    assert main(["sweep"]) == 1
    assert "needs CONFIG.toml" in capsys.readouterr().err
    assert main(["sweep", "--status", str(tmp_path / "none.sqlite")]) == 1
    assert "does not exist" in capsys.readouterr().err
