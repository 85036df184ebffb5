import json
import re

import numpy as np
import pytest

import aelab
from aelab.cli import main


def report_path(output):
    match = re.search(r"Report: (\S+report\.html)", output)
    assert match, output
    return match.group(1)


def test_list_names_every_study(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in aelab.studies.REGISTRY:
        assert name in out


def test_run_one_study_writes_report_under_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "moons-autoencoder", "--seed", "1"]) == 0
    path = report_path(capsys.readouterr().out)
    assert path.startswith(str(tmp_path / "runs"))
    metrics = json.loads((tmp_path / "runs").glob("*/metrics.json").__next__().read_text())
    assert metrics["studies"]["moons-autoencoder"]["test_mse"] > 0


def test_unknown_study_is_bad_usage_with_a_suggestion(capsys):
    assert main(["run", "no-such-study"]) == 2
    err = capsys.readouterr().err
    assert "no-such-study" in err and "aelab list" in err and err.count("\n") == 1
    assert main(["run", "sheet6-pcaa"]) == 2
    assert "did you mean sheet6-pca" in capsys.readouterr().err


def test_train_on_a_user_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, 200)
    np.savetxt(tmp_path / "line.csv", np.c_[t, 2 * t], delimiter=",", header="a,b", comments="")
    out = tmp_path / "out"
    assert main(["train", "--data", str(tmp_path / "line.csv"), "--epochs", "5",
                 "--out", str(out)]) == 0
    assert (out / "report.html").exists() and (out / "model.pt").exists()
    model = aelab.load(out / "model.pt")
    assert model.init_args["input_size"] == 2


def test_train_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--bottleneck", "3", "--out", str(tmp_path)]) == 1
    assert "bottleneck_size (3) must not exceed input_size (2)" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    assert "--full" in capsys.readouterr().out


def test_a_bad_out_fails_before_any_training(tmp_path, capsys, monkeypatch):
    ran = []
    study = aelab.studies.REGISTRY["moons-autoencoder"]
    monkeypatch.setitem(aelab.studies.REGISTRY, "moons-autoencoder",
                        study.__class__(study.name, study.summary, lambda **k: ran.append(k)))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["run", "moons-autoencoder", "--out", str(a_file)]) == 1
    assert "is a file" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "old.html").write_text("old")
    assert main(["run", "moons-autoencoder", "--out", str(busy)]) == 1
    assert "already holds files" in capsys.readouterr().err
    assert ran == []


def test_missing_mnist_files_fail_before_any_training_and_leave_no_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "sheet6-pca", "digits-bottleneck", "--mnist-root", str(tmp_path / "none"),
                 "--out", str(out)]) == 1
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", "digits-bottleneck", "--dataset", "mnist", "--out", str(out)]) == 2
    assert "needs --mnist-root" in capsys.readouterr().err


def test_a_failed_train_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--epochs", "-1", "--out", str(out)]) == 1
    assert "epochs must be an int >= 0, got -1" in capsys.readouterr().err
    assert not out.exists()


def test_image_options_without_image_studies_are_noted(tmp_path, capsys):
    assert main(["run", "sheet6-pca", "--dataset", "digits", "--out", str(tmp_path / "o")]) == 0
    assert "apply to the image studies only" in capsys.readouterr().err


def write_points_csv(path, n=120, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    X = np.column_stack([np.cos(t), np.sin(t)]) + rng.normal(0, 0.05, (n, 2))
    np.savetxt(path, X, delimiter=",", header="a,b", comments="")
    return path


def test_run_on_user_data_with_set(tmp_path, capsys):
    csv = write_points_csv(tmp_path / "points.csv")
    out = tmp_path / "out"
    code = main(["run", "reproducibility", "--data", str(csv), "--out", str(out),
                 "--set", "runs=3", "--set", "epochs=10"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert "reproducibility" in metrics["studies"]


def test_data_with_a_study_tied_to_its_data_names_those_that_can(tmp_path, capsys):
    csv = write_points_csv(tmp_path / "points.csv")
    assert main(["run", "sheet6-pca", "--data", str(csv), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "sheet6-pca" in err and "hyperparameters" in err and "ae-vs-pca" in err
    assert not (tmp_path / "o").exists()


def test_set_checks_names_and_types_against_the_settings(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["run", "moons-autoencoder", "--set", "widthh=3", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "widthh" in err and "hidden_size" in err and "epochs" in err
    assert main(["run", "moons-autoencoder", "--set", "epochs=many", "--out", out]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["run", "moons-autoencoder", "--set", "epochs=0", "--out", out]) == 1
    assert "epochs" in capsys.readouterr().err


def test_set_overrides_the_setting(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "moons-autoencoder", "--set", "epochs=3", "--set", "n=200",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["studies"]["moons-autoencoder"]["epochs"] == 3


def test_a_study_named_twice_is_an_error(tmp_path, capsys):
    assert main(["run", "sheet6-pca", "sheet6-pca", "--out", str(tmp_path / "o")]) == 2
    assert "named twice" in capsys.readouterr().err


def test_run_without_names_runs_each_question_once():
    from aelab.cli import _default_studies

    names = _default_studies(None)
    assert "moons-hyperparameters" in names and "hyperparameters" not in names
    assert "ae-vs-pca" in names and len(names) == len(set(names))
    image = aelab.data.digits()
    points = aelab.data.moons(50)
    assert "denoising" in _default_studies(image)
    assert "denoising" not in _default_studies(points)
    assert "hyperparameters" in _default_studies(points)
