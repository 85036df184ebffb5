import gzip
import json
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

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
    assert (
        main(["train", "--data", str(tmp_path / "line.csv"), "--epochs", "5", "--out", str(out)])
        == 0
    )
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
    monkeypatch.setitem(
        aelab.studies.REGISTRY,
        "moons-autoencoder",
        study.__class__(study.name, study.summary, lambda **k: ran.append(k)),
    )
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
    assert (
        main(
            [
                "run",
                "sheet6-pca",
                "digits-bottleneck",
                "--mnist-root",
                str(tmp_path / "none"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
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
    code = main(
        [
            "run",
            "reproducibility",
            "--data",
            str(csv),
            "--out",
            str(out),
            "--set",
            "runs=3",
            "--set",
            "epochs=10",
        ]
    )
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
    assert (
        main(["run", "moons-autoencoder", "--set", "epochs=3", "--set", "n=200", "--out", str(out)])
        == 0
    )
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


# --------------------------------------------------------------------------- user mistakes


def _write_idx(path, array, magic):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _mnist_folder(root, damage):
    """Four small MNIST IDX files; ``damage`` spoils the training images."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 4, 4)), 2051)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 9, n), 2049)
    images = root / "train-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    if damage == "short header":
        images.write_bytes(gzip.compress(struct.pack(">i", 2051) + b"\0\0"))
    else:  # a gzip stream cut in the middle
        images.write_bytes(whole[: len(whole) // 2])
    return root


def _mistake(tmp_path, case):
    """argv for one user mistake; files it needs are written under tmp_path."""
    if case == "diverging lr":
        return ["train", "--lr", "1e6", "--n", "100", "--epochs", "2"]
    if case == "empty npy":
        np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
        return ["train", "--data", str(tmp_path / "empty.npy")]
    if case == "truncated npz":
        np.savez(tmp_path / "whole.npz", X=np.ones((50, 3)))
        whole = (tmp_path / "whole.npz").read_bytes()
        (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
        return ["train", "--data", str(tmp_path / "cut.npz")]
    if case in ("mnist short header", "mnist truncated gzip"):
        root = _mnist_folder(tmp_path / "mnist", case.split(" ", 1)[1])
        return ["run", "ae-vs-pca", "--mnist-root", str(root)]
    if case == "zip that is not a model":
        with zipfile.ZipFile(tmp_path / "m.pt", "w") as z:
            z.writestr("notes.txt", "hello")
        return ["summary", "--load", str(tmp_path / "m.pt")]
    if case == "model file of text":
        (tmp_path / "m.pt").write_text("not a model")
        return ["encode", "--load", str(tmp_path / "m.pt"), "--data", "x.csv"]
    return {
        "huge hidden": ["train", "--hidden", "100000000"],
        "huge summary": ["summary", "--hidden", "100000000"],
        "huge n": ["train", "--n", "1000000000"],
        "deep layers": ["train", "--layers", "1000000"],
        "n with digits": ["train", "--data", "digits", "--n", "5"],
        "model with load": ["summary", "--load", "m.pt", "--model", "conv"],
        "hidden with linear": ["train", "--model", "linear", "--hidden", "5"],
        "noise with vae": ["train", "--model", "vae", "--noise-sigma", "0.1"],
        "conv on points": ["train", "--model", "conv", "--data", "moons"],
        "label column with moons": ["train", "--label-column", "y"],
        "bad device": ["train", "--device", "nonsense"],
    }[case]


# case -> (exit status, a word the message must hold)
MISTAKES = {
    "diverging lr": (1, "--lr"),
    "empty npy": (1, "empty.npy"),
    "truncated npz": (1, "cut.npz"),
    "mnist short header": (1, "mnist"),
    "mnist truncated gzip": (1, "mnist"),
    "zip that is not a model": (1, "m.pt"),
    "model file of text": (1, "m.pt"),
    "huge hidden": (1, "100000000"),
    "huge summary": (1, "100000000"),
    "huge n": (1, "1,000,000"),
    "deep layers": (1, "--layers"),
    "n with digits": (2, "--n"),
    "model with load": (2, "--model"),
    "hidden with linear": (2, "--hidden"),
    "noise with vae": (2, "--noise-sigma"),
    "conv on points": (2, "image"),
    "label column with moons": (2, "--label-column"),
    "bad device": (2, "nonsense"),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_user_mistake_is_one_line_and_an_exit_status(tmp_path, capsys, case):
    argv = _mistake(tmp_path, case)
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)] if argv[0] in ("train", "run") else argv)
    status, word = MISTAKES[case]
    captured = capsys.readouterr()
    err = captured.err
    assert code == status, err
    assert err.startswith(f"aelab {argv[0]}: error: ") and err.count("\n") == 1, err
    assert word in err and "Traceback" not in err + captured.out
    assert not out.exists()  # nothing trained, or nothing kept from a failed run


def test_debug_shows_the_traceback(capsys):
    argv = ["train", "--model", "linear", "--hidden", "5"]
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("see aelab train --help.")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_on_a_cpu_build_is_a_clear_error(capsys):
    assert main(["train", "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


def test_ctrl_c_and_sigterm_interrupt_cleanly(tmp_path):
    """Through ``python -m aelab``: exit 130 on SIGINT and 143 on SIGTERM, one line, no
    traceback, no output folder left. Both processes run at once to halve the wait."""
    runs = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / f"out-{signum}"
        runs[signum] = (
            out,
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aelab",
                    "train",
                    "--n",
                    "200",
                    "--epochs",
                    "100000",
                    "--no-progress",
                    "--out",
                    str(out),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # a shell's background job inherits an ignored SIGINT; Ctrl-C reaches a
                # foreground one, whose SIGINT is not ignored
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            ),
        )
    deadline = time.monotonic() + 120
    for out, process in runs.values():
        while not (out / ".aelab-lock").exists():  # claimed just before training starts
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
    time.sleep(0.3)
    for signum, (_, process) in runs.items():
        process.send_signal(signum)
    for signum, (out, process) in runs.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], stderr
        assert "Traceback" not in stderr and stderr.strip().count("\n") == 0, stderr
        assert "interrupted" in stderr
        assert not out.exists()  # nothing half-written is left


# --------------------------------------------------------------------------- aelab run


def _fake_studies(monkeypatch, behaviours):
    """Register quick fake studies: name -> a StudyResult, or an exception to raise."""
    from aelab.studies._base import REGISTRY, Study

    def make(name, outcome):
        def run(quick=True, seed=0):
            if isinstance(outcome, BaseException):
                raise outcome
            return aelab.studies.StudyResult(
                name, findings=[f"{name} found {seed + 1}"], metrics={"value": seed + 1}
            )

        return Study(name, f"fake {name}", run)

    for name, outcome in behaviours.items():
        monkeypatch.setitem(REGISTRY, name, make(name, outcome))


@pytest.mark.parametrize(
    "stop, status",
    [
        (KeyboardInterrupt(), 130),
        (__import__("aelab.cli").cli.Terminated(), 143),
        (ValueError("bad settings"), 1),
    ],
)
def test_a_stopped_run_reports_the_studies_that_finished(
    tmp_path, capsys, monkeypatch, stop, status
):
    _fake_studies(monkeypatch, {"fake-a": None, "fake-b": stop, "fake-c": None})
    out = tmp_path / "out"
    # --jobs 1: in this process, where the fake studies are registered
    assert main(["run", "fake-a", "fake-b", "fake-c", "--jobs", "1", "--out", str(out)]) == status
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "incomplete" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["studies"]) == ["fake-a"] and metrics["not_run"] == ["fake-b", "fake-c"]
    html = (out / "report.html").read_text()
    assert html.index("Incomplete report") < html.index('id="answers"')
    assert "fake-b, fake-c" in html and not (out / ".aelab-lock").exists()


def test_run_without_a_terminal_prints_a_line_per_study(tmp_path, capsys, monkeypatch):
    _fake_studies(monkeypatch, {"fake-a": None, "fake-b": None})
    assert main(["run", "fake-a", "fake-b", "--jobs", "1", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^\[1/2\] fake-a \d+\.\d s$", err, re.M)
    assert re.search(r"^\[2/2\] fake-b \d+\.\d s$", err, re.M)


FAST = ["backprop-by-hand", "sheet6-pca", "conv-shapes"]  # real studies of under a second


def _numbers(out: Path) -> dict:
    """metrics.json's studies, and their order in report.html."""
    html = (out / "report.html").read_text()
    order = sorted(FAST, key=lambda name: html.index(f'<section id="{name}"'))
    return {"order": order, "studies": json.loads((out / "metrics.json").read_text())["studies"]}


def test_studies_run_side_by_side_give_the_serial_run_s_report(tmp_path, capsys):
    assert main(["run", *FAST, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main(["run", *FAST, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    err = capsys.readouterr().err
    assert sorted(re.findall(r"^\[\d/3\] (\S+)", err, re.M)) == sorted(FAST * 2)
    serial, parallel = _numbers(tmp_path / "one"), _numbers(tmp_path / "two")
    assert parallel == serial and serial["order"] == FAST
    figures = sorted(p.name for p in (tmp_path / "two" / "sheet6-pca").glob("*.png"))
    assert figures and figures == sorted(
        p.name for p in (tmp_path / "one" / "sheet6-pca").glob("*.png")
    )


def test_a_study_failing_in_a_worker_is_one_line_as_in_a_serial_run(tmp_path, capsys):
    argv = ["run", "moons-autoencoder", "moons-noise-shift", "--set", "lr=1e6"]
    assert main([*argv, "--jobs", "2", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aelab run: error: training loss became nan"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # no study finished: nothing to report


def test_bad_jobs_is_bad_usage(tmp_path, capsys):
    assert main(["run", *FAST, "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err


def test_ctrl_c_stops_the_workers_and_reports_what_finished(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "aelab", "run", "conv-shapes", "moons-reproducibility"]
        + ["--jobs", "2", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = process.stderr.readline()  # the first finished study's line
    assert line.startswith("[1/2] conv-shapes"), line + process.stderr.read()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)  # no worker left running to wait for
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["studies"]) == ["conv-shapes"]
    assert metrics["not_run"] == ["moons-reproducibility"]


def test_only_one_of_many_simultaneous_claims_of_a_folder_wins(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from aelab.cli import _claim

    out = str(tmp_path / "shared")
    barrier = threading.Barrier(8)

    def claim(_):
        barrier.wait()
        try:
            return _claim(out)[0]
        except ValueError as err:
            return str(err)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(claim, range(8)))
    assert sum(isinstance(o, Path) for o in outcomes) == 1
    assert all("in use" in o or "already holds" in o for o in outcomes if isinstance(o, str))


def test_a_second_run_into_a_claimed_folder_fails_clearly(tmp_path, capsys, monkeypatch):
    _fake_studies(monkeypatch, {"fake-a": None})
    out = tmp_path / "out"
    out.mkdir()
    (out / ".aelab-lock").write_text("4242\n")  # as another run holds it
    assert main(["run", "fake-a", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "in use by process 4242" in err and err.count("\n") == 1
    assert not (out / "report.html").exists()


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "argv, seed, threads",
    [
        (["--seed", "3", "run"], 3, None),
        (["run", "--seed", "4"], 4, None),
        (["--seed", "3", "run", "--seed", "5"], 5, None),
        (["--threads", "2", "list"], None, 2),
        (["list", "--threads", "2"], None, 2),
        (["run"], None, None),
    ],
)
def test_global_options_before_or_after_the_command(argv, seed, threads):
    from aelab.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.seed == seed and args.threads == threads


def test_threads_after_the_command_take_effect(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["list", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == (
        f"aelab {aelab.__version__}"
    )
    # python -m aelab runs in test_ctrl_c_and_sigterm_interrupt_cleanly


def test_help_states_the_label_rule_and_thread_default(capsys):
    for command in ("train", "encode"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "labels come only from --label-column" in text
        assert "--threads" in text and "default 1" in text


# ----------------------------------------------------------------- train, encode, reconstruct


def test_train_compares_with_pca_and_the_mean_predictor(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "--n",
                "300",
                "--epochs",
                "40",
                "--bottleneck",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "PCA (1 component)" in printed and "mean predictor" in printed
    metrics = json.loads((out / "metrics.json").read_text())["studies"]["train: moons"]
    # the PCA row is PCA itself on the same split (the oracle), in the same units
    train, test = aelab.data.split(aelab.data.moons(300, seed=0), test_size=0.2, seed=0)
    pca = aelab.PCA(1).fit(train.X)
    assert metrics["pca_test_mse"] == pytest.approx(aelab.reconstruction_error(pca, test.X))
    mean = ((test.X - train.X.mean(0)) ** 2).mean().item()
    assert metrics["mean_test_mse"] == pytest.approx(mean, rel=1e-5)
    assert metrics["test_mse"] < metrics["mean_test_mse"]
    model = aelab.load(out / "model.pt")
    assert metrics["test_mse"] == pytest.approx(aelab.reconstruction_error(model, test.X))
    assert f"{metrics['test_mse']:.3g} vs PCA {metrics['pca_test_mse']:.3g}" in printed


@pytest.mark.parametrize(
    "argv, cls, figures",
    [
        (
            ["--model", "linear", "--data", "rectangle"],
            "LinearAutoencoder",
            {"loss", "reconstruction"},
        ),
        (
            ["--model", "resnet", "--blocks", "1", "--hidden", "8"],
            "ResNetAutoencoder",
            {"loss", "reconstruction", "codes"},
        ),
        (
            ["--model", "vae", "--layers", "1", "--hidden", "8"],
            "VAE",
            {"loss", "reconstruction", "codes"},
        ),
        (
            ["--model", "conv", "--data", "digits", "--bottleneck", "2", "--test-size", "0.5"],
            "ConvAutoencoder",
            {"loss", "images", "codes"},
        ),
    ],
)
def test_train_each_family(tmp_path, capsys, argv, cls, figures):
    out = tmp_path / "out"
    n = [] if "digits" in argv else ["--n", "200"]
    assert main(["train", *argv, *n, "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    assert type(aelab.load(out / "model.pt")).__name__ == cls
    assert {p.stem for p in out.glob("*/*.png")} == figures
    if "--test-size" in argv:
        metrics = json.loads((out / "metrics.json").read_text())["studies"]
        assert next(iter(metrics.values()))["test_mse"] > 0
        assert "0.5" in (out / "report.html").read_text()


def test_label_column_colours_codes_and_encode_reconstruct_round_trip(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, 150)
    X = np.c_[t, 3 * t + 5 + rng.normal(0, 0.01, 150)]
    labels = (t > 0).astype(int)
    csv = tmp_path / "points.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "label": labels}).to_csv(csv, index=False)
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "--data",
                str(csv),
                "--label-column",
                "label",
                "--model",
                "linear",
                "--standardize",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "train-points" / "codes.png").exists()
    assert (out / "model.scaler.json").exists()
    assert (
        main(
            [
                "encode",
                "--load",
                str(out / "model.pt"),
                "--data",
                str(csv),
                "--label-column",
                "label",
                "--out",
                str(tmp_path / "z.csv"),
            ]
        )
        == 0
    )
    codes = pd.read_csv(tmp_path / "z.csv")
    assert list(codes.columns) == ["z1"] and len(codes) == 150
    assert (
        main(
            [
                "reconstruct",
                "--load",
                str(out / "model.pt"),
                "--data",
                str(csv),
                "--label-column",
                "label",
                "--out",
                str(tmp_path / "r.npy"),
            ]
        )
        == 0
    )
    X_hat = np.load(tmp_path / "r.npy")
    # by hand: standardize with the saved scaler, run the model, undo the scaling
    scaler = json.loads((out / "model.scaler.json").read_text())
    mean, scale = np.array(scaler["mean"]), np.array(scaler["scale"])
    model = aelab.load(out / "model.pt")
    with torch.no_grad():
        expected = model(torch.tensor((X - mean) / scale, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(X_hat, expected * scale + mean, rtol=1e-4, atol=1e-4)
    assert np.abs(X_hat - X).max() < 0.5  # a near-line is kept by a 1-D code
    printed = capsys.readouterr().out
    assert str((tmp_path / "r.npy").resolve()) in printed


def test_encode_names_both_widths_and_never_overwrites_by_default(tmp_path, capsys, monkeypatch):
    model = aelab.save(aelab.LinearAutoencoder(2, 1), tmp_path / "m.pt")
    np.save(tmp_path / "wide.npy", np.ones((5, 3)))
    assert main(["encode", "--load", str(model), "--data", str(tmp_path / "wide.npy")]) == 1
    err = capsys.readouterr().err
    assert "3 features" in err and "takes 2" in err and err.count("\n") == 1
    np.save(tmp_path / "ok.npy", np.ones((5, 2)))
    monkeypatch.chdir(tmp_path)
    assert main(["encode", "--load", str(model), "--data", "ok.npy"]) == 0
    assert pd.read_csv(tmp_path / "ok.codes.csv").shape == (5, 1)
    assert main(["encode", "--load", str(model), "--data", "ok.npy"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["encode", "--load", str(model), "--data", "ok.npy", "--out", "z.txt"]) == 2


def test_studies_that_need_labels_are_skipped_or_refused_on_unlabelled_data(tmp_path, capsys):
    from aelab.cli import _default_studies

    X = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
    unlabelled = aelab.data.Dataset(torch.from_numpy(X))
    labelled = aelab.data.Dataset(torch.from_numpy(X), torch.arange(60) % 3)
    assert "bottleneck" in _default_studies(labelled)
    assert "bottleneck" not in _default_studies(unlabelled)
    assert "ae-vs-pca" in _default_studies(unlabelled)
    assert "needs labels" in capsys.readouterr().err  # said, not silently dropped
    path = tmp_path / "x.npy"
    np.save(path, X)
    out = tmp_path / "out"
    assert main(["run", "bottleneck", "--data", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bottleneck needs labels" in err and err.count("\n") == 1
    assert not out.exists()  # refused before any training
