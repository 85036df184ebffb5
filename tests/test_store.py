"""The sweep results store and the executors: resume after a kill, equal results on every
executor, a Dask worker lost mid-sweep, and the store's errors."""

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

import aelab
from aelab import store as store_module
from aelab.experiments import Runs
from aelab.store import ResultsStore

# one definition for the sweep a child process runs and this process checks against
SWEEP_MODULE = textwrap.dedent("""
    import sys, time
    import aelab

    def mlp(hidden_size):
        return aelab.Autoencoder(2, 1, hidden_size, 1)

    def run(store=None, progress=None, executor="local", grid=None, keep_models=True):
        train, test = aelab.data.split(aelab.data.moons(96, seed=0), seed=0)
        return aelab.sweep(mlp, train, test=test, grid=grid or {"hidden_size": [3, 4, 5, 6, 7, 8]},
                           seeds=3, stack_size=3, epochs=4, batch_size=16, device="cpu",
                           store=store, progress=progress, executor=executor,
                           keep_models=keep_models)

    def slow_progress(p):  # a stack is stored before this runs: print, then give time to kill
        if p.stack_trials:
            print("stored", p.done, flush=True)
            time.sleep(0.4)

    if __name__ == "__main__":
        run(store=sys.argv[1], progress=slow_progress)
        print("finished", flush=True)
""")


@pytest.fixture(scope="module")
def definition(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweepdef") / "sweep_definition.py"
    path.write_text(SWEEP_MODULE)
    spec = importlib.util.spec_from_file_location("sweep_definition", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.path = path
    return module


@pytest.fixture(scope="module")
def uninterrupted(definition):
    return definition.run()


def same_table(a: Runs, b: Runs) -> None:
    pd.testing.assert_frame_equal(a.table.drop(columns="seconds"), b.table.drop(columns="seconds"))


def same_weights(a: Runs, b: Runs) -> None:
    for m, n in zip(a.models, b.models):
        for p, q in zip(m.state_dict().values(), n.state_dict().values()):
            assert torch.equal(p, q)


def test_resume_after_sigkill_trains_only_what_is_missing(definition, uninterrupted, tmp_path):
    path = tmp_path / "sweep.sqlite"
    with subprocess.Popen(
        [sys.executable, str(definition.path), str(path)], stdout=subprocess.PIPE, text=True
    ) as child:
        for line in child.stdout:  # kill the coordinator after its second stored stack
            if line.startswith("stored") and int(line.split()[1]) >= 6:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with ResultsStore(path, writable=False) as opened:
        stored = opened.n_trials()
    assert 6 <= stored < 18 and stored % 3 == 0  # whole stacks only: one transaction each

    resumed = definition.run(store=path)
    assert (resumed.trained, resumed.reused) == (18 - stored, stored)
    same_table(resumed, uninterrupted)
    same_weights(resumed, uninterrupted)
    loaded = Runs.load(path)
    pd.testing.assert_frame_equal(loaded.table, resumed.table)
    same_weights(loaded, uninterrupted)
    assert loaded.histories[4].train_loss == uninterrupted.histories[4].train_loss

    again = definition.run(store=path)  # all done: nothing trains
    assert (again.trained, again.reused) == (0, 18)
    pd.testing.assert_frame_equal(again.table, resumed.table)


def test_a_changed_grid_reuses_the_trials_it_shares(definition, tmp_path):
    path = tmp_path / "sweep.sqlite"
    first = definition.run(store=path, grid={"hidden_size": [3, 4]}, keep_models=False)
    assert (first.trained, first.reused) == (6, 0) and first.models == [None] * 6
    wider = definition.run(store=path, grid={"hidden_size": [4, 5, 3]}, keep_models=False)
    assert (wider.trained, wider.reused) == (3, 6)
    assert list(wider.table["hidden_size"]) == [4] * 3 + [5] * 3 + [3] * 3
    pd.testing.assert_frame_equal(
        wider.where(hidden_size=3).table.drop(columns="seconds"),
        first.where(hidden_size=3).table.drop(columns="seconds"),
    )
    with ResultsStore(path, writable=False) as opened:
        status = opened.status()
    assert (status["n_trials"], status["done"], status["missing"]) == (9, 9, [])
    assert Runs.load(path).models[0] is None  # weights were not kept


def test_processes_equal_in_process(definition, uninterrupted):
    runs = definition.run(executor="processes:2")
    same_table(runs, uninterrupted)
    same_weights(runs, uninterrupted)


# torch's thread pool has run and a tqdm bar has left its monitor thread behind, as in any
# session that trained before: the workers still fork, at once, and give the same numbers
FORKED = textwrap.dedent("""
    import sys, threading
    import pandas as pd, torch, tqdm
    sys.path.insert(0, sys.argv[1])
    import sweep_definition as d
    from aelab import experiments, store

    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)
    tqdm.tqdm(range(1), disable=True)
    assert "tqdm_monitor" in [t.name for t in threading.enumerate()]
    local = d.run()
    forked = []
    fork_workers = store._fork_workers
    store._fork_workers = lambda *a: forked.append(1) or fork_workers(*a)
    experiments._run_here = None  # the workers answer at once: the coordinator never trains
    runs = d.run(executor="processes:2")
    pd.testing.assert_frame_equal(
        runs.table.drop(columns="seconds"), local.table.drop(columns="seconds"))
    for m, n in zip(runs.models, local.models):
        assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(),
                                                    n.state_dict().values()))
    print("forked", len(forked))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork on Linux only")
def test_processes_fork_their_workers_when_no_other_thread_runs(definition):
    child = subprocess.run(
        [sys.executable, "-c", FORKED, str(definition.path.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == ["forked", "1"]


def test_workers_do_not_fork_while_another_thread_runs():
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not store_module.can_fork()
        with store_module.open_executor("processes:2") as plan:
            assert plan.helps  # a forkserver's workers take seconds: the coordinator trains
    finally:
        stop.set()
        other.join()


def test_dask_local_equals_in_process(definition, uninterrupted):
    import multiprocessing

    pytest.importorskip("distributed")
    runs = definition.run(executor="dask-local:2")
    same_table(runs, uninterrupted)
    same_weights(runs, uninterrupted)
    # its workers, forked or not, are gone (joblib's loky pool, which an earlier test's
    # GridSearchCV(n_jobs=2) may have left for reuse, is not the sweep's)
    left = [p for p in multiprocessing.active_children() if type(p).__name__ != "LokyProcess"]
    assert not left


def test_killing_a_dask_worker_loses_nothing(definition, uninterrupted, tmp_path):
    distributed = pytest.importorskip("distributed")
    import dask

    # nannies, as dask-local:N has when it cannot fork its workers, starting them from a
    # server that has imported aelab: seconds faster than spawn
    with (
        dask.config.set(store_module._nanny_settings(dask)),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        killed = []

        def kill_one_worker(p):
            if p.stack_trials and not killed:  # stacks are still queued on both workers
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        runs = definition.run(
            store=tmp_path / "sweep.sqlite",
            progress=kill_one_worker,
            executor=client.get_executor(),
        )
    assert killed and runs.trained == 18
    same_table(runs, uninterrupted)
    same_weights(runs, uninterrupted)


# --------------------------------------------------------------------------- the store file


def test_keys_follow_the_trial_not_the_grid():
    a = aelab.data.Dataset(torch.zeros(4, 2))
    b = aelab.data.Dataset(torch.zeros(4, 2), y=torch.tensor([0, 1, 0, 1]))
    assert store_module.fingerprint(a) != store_module.fingerprint(b)
    key = store_module.trial_key({"class": "m", "args": {"h": 4}}, {"lr": 1e-3}, "d", 0)
    assert key == store_module.trial_key({"args": {"h": 4}, "class": "m"}, {"lr": 1e-3}, "d", 0)
    assert key != store_module.trial_key({"class": "m", "args": {"h": 4}}, {"lr": 1e-3}, "d", 1)


def test_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "sweep.sqlite"
    ResultsStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    db.close()
    with pytest.raises(ValueError, match="schema version 99; this aelab reads version 1"):
        ResultsStore(path)
    with pytest.raises(ValueError, match="schema version 99"):
        Runs.load(path)


def test_files_that_are_not_stores_are_refused(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an aelab results store"):
        ResultsStore(text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(ValueError, match="not an aelab results store"):
        ResultsStore(other)
    with pytest.raises(ValueError, match="is a folder"):
        ResultsStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Runs.load(tmp_path / "absent.sqlite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_store_is_refused_for_writing_but_loads(definition, tmp_path):
    path = tmp_path / "sweep.sqlite"
    definition.run(store=path, grid={"hidden_size": [3]})
    path.chmod(0o444)
    try:
        with pytest.raises(PermissionError, match="read-only"):
            definition.run(store=path, grid={"hidden_size": [3]})
        assert len(Runs.load(path).table) == 3
    finally:
        path.chmod(0o644)


def test_sqlite_write_errors_are_explained(tmp_path):
    opened = ResultsStore(tmp_path / "s.sqlite")
    error = opened._write_error(sqlite3.OperationalError("attempt to write a readonly database"))
    assert isinstance(error, PermissionError) and "read-only" in str(error)
    assert "locked by another process" in str(
        opened._write_error(sqlite3.OperationalError("database is locked"))
    )
    opened.close()


# --------------------------------------------------------------------------- executors


@pytest.mark.parametrize(
    "spec, match",
    [
        ("threads:2", "not one aelab knows"),
        ("processes:0", "N must be a whole number >= 1"),
        ("dask-local:two", "N must be a whole number >= 1"),
        ("dask", "not one aelab knows"),
    ],
)
def test_bad_executor_specs_are_named(definition, spec, match):
    with pytest.raises(ValueError, match=match):
        definition.run(executor=spec)


def test_without_dask_the_error_says_how_to_install_it(definition, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ImportError, match=r"pip install aelab\[dask\]"):
        definition.run(executor="dask-local:2")


def test_a_dask_address_that_does_not_answer_fails_fast(definition, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(store_module, "DASK_CONNECT_S", 1.0)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="no Dask scheduler answered at 'tcp://127.0.0.1:9'"):
        definition.run(executor="dask:tcp://127.0.0.1:9", grid={"hidden_size": [3]})
    assert time.perf_counter() - start < 10


def test_models_start_from_the_weights_seeded_builds_give(definition):
    train = aelab.data.moons(64)
    runs = aelab.sweep(
        definition.mlp,
        train,
        grid={"hidden_size": [3, 5]},
        seeds=[4, 9],
        epochs=0,
        batch_size=16,
        device="cpu",
    )  # epochs=0: nothing trains
    for model, (width, seed) in zip(runs.models, [(3, 4), (3, 9), (5, 4), (5, 9)]):
        with aelab.seeded(seed):
            expected = definition.mlp(width)
        for p, q in zip(model.state_dict().values(), expected.state_dict().values()):
            assert torch.equal(p, q)


def test_frozen_layers_stay_frozen_in_workers(definition):
    def model(frozen):  # the same class and init_args, frozen or not: one worker, one pool
        built = definition.mlp(4)
        built.encoder.requires_grad_(not frozen)
        return built

    train = aelab.data.moons(64)
    kwargs = dict(
        grid={"frozen": [False, True, False]}, seeds=2, epochs=2, batch_size=16, device="cpu"
    )
    local = aelab.sweep(model, train, **kwargs)
    pooled = aelab.sweep(model, train, executor="processes:1", **kwargs)
    same_table(local, pooled)
    same_weights(local, pooled)
    with aelab.seeded(0):
        start = model(True)
    assert torch.equal(pooled.models[2].encoder[0].weight, start.encoder[0].weight)
    assert not torch.equal(pooled.models[0].encoder[0].weight, start.encoder[0].weight)


def test_a_dead_worker_process_is_one_clear_error_and_the_rerun_resumes(definition, tmp_path):
    import concurrent.futures
    import multiprocessing

    path = tmp_path / "sweep.sqlite"
    context = multiprocessing.get_context(store_module._start_method())
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        killed = []

        def kill_a_worker(p):
            if p.stack_trials and not killed:
                killed.append(next(iter(pool._processes)))
                os.kill(killed[0], signal.SIGKILL)

        with pytest.raises(store_module.WorkerLost, match="rerun the same sweep"):
            definition.run(store=path, executor=pool, progress=kill_a_worker)
    with ResultsStore(path, writable=False) as opened:
        stored = opened.n_trials()
    assert 3 <= stored < 18
    resumed = definition.run(store=path)
    assert (resumed.trained, resumed.reused) == (18 - stored, stored)


# --------------------------------------------------------------------------- where models are built


def test_stack_errors_equal_reconstruction_error_bit_for_bit():
    train, test = aelab.data.split(aelab.data.moons(64, seed=0), seed=0)
    with aelab.seeded(1):
        model = aelab.Autoencoder(2, 1, 6, 1).train()
    errors = store_module.reconstruction_errors(model, {"train_mse": train, "test_mse": test})
    assert errors == {
        "train_mse": aelab.reconstruction_error(model, train.X),
        "test_mse": aelab.reconstruction_error(model, test.X),
    }
    assert model.training  # its mode is given back


@pytest.fixture(scope="module")
def one_worker():
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context(store_module._start_method())
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        yield pool


def test_workers_build_the_models_and_the_coordinator_only_when_it_must(
    definition, uninterrupted, one_worker, monkeypatch, caplog
):
    built = []
    original = store_module.build_models
    monkeypatch.setattr(
        store_module,
        "build_models",  # counts builds in this process only
        lambda *a: built.append(len(a[1])) or original(*a),
    )
    caplog.set_level("INFO", logger="aelab.experiments")
    runs = definition.run(executor=one_worker)
    assert built == [1] * 6  # each stack's first model, for the worker to check its own
    assert "building the models here" not in caplog.text
    assert isinstance(runs.models, store_module.LazyModels)  # rebuilt here when looked at
    same_table(runs, uninterrupted)
    same_weights(runs, uninterrupted)

    # a factory the worker cannot load: the coordinator builds and sends the models
    monkeypatch.setattr(store_module, "factory_bytes", lambda factory: b"not a pickle")
    built.clear()
    runs = definition.run(executor=one_worker)
    assert "does not build here" in caplog.text
    assert built[:2] == [1, 1] and sum(built[2:]) == 18  # two stacks went out before
    same_table(runs, uninterrupted)
    same_weights(runs, uninterrupted)


def test_a_worker_that_builds_other_weights_trains_the_coordinators(one_worker, caplog):
    # _pid_model shifts a weight in any process but ours: the worker's models differ
    train = aelab.data.moons(64)
    kwargs = dict(grid={"pid": [os.getpid()]}, seeds=2, epochs=1, batch_size=16, device="cpu")
    caplog.set_level("INFO", logger="aelab.experiments")
    local = aelab.sweep(_pid_model, train, **kwargs)
    remote = aelab.sweep(_pid_model, train, executor=one_worker, **kwargs)
    assert "other initial weights" in caplog.text
    same_table(local, remote)
    same_weights(local, remote)


def _pid_model(pid):
    model = aelab.LinearAutoencoder(2, 1)
    if os.getpid() != pid:
        with torch.no_grad():
            model.encoder.bias.add_(1.0)
    return model


def test_the_coordinator_trains_while_the_workers_start(definition, uninterrupted, monkeypatch):
    import concurrent.futures
    import contextlib
    import pickle
    import queue
    import threading

    class SlowToStart(concurrent.futures.Executor):
        """Runs pickled copies of its calls, one at a time, from a second after it starts."""

        def __init__(self):
            self.calls, self.ran = queue.SimpleQueue(), 0
            threading.Timer(1.0, self.work).start()

        def submit(self, fn, *args):
            future = concurrent.futures.Future()
            self.calls.put((future, fn, pickle.dumps(args)))
            return future

        def work(self):
            while (call := self.calls.get()) is not None:
                future, fn, args = call
                if future.set_running_or_notify_cancel():
                    future.set_result(fn(*pickle.loads(args)))
                    self.ran += 1

        def shutdown(self, wait=True, **kwargs):
            self.calls.put(None)

    executor = SlowToStart()

    @contextlib.contextmanager
    def slow_plan(spec):
        yield store_module.ExecutorPlan(executor, 2, 1, True, "slow", helps=True)

    here = []
    original = aelab.experiments._run_here
    monkeypatch.setattr(store_module, "open_executor", slow_plan)
    monkeypatch.setattr(aelab.experiments, "_run_here", lambda *a: here.append(1) or original(*a))
    try:
        runs = definition.run(executor="processes:2")
    finally:
        executor.shutdown()
    assert len(here) >= 1 and executor.ran >= 2 and len(here) + executor.ran == 6
    same_table(runs, uninterrupted)
    same_weights(runs, uninterrupted)


def test_metrics_on_workers_equal_metrics_in_process(definition, one_worker):
    train = aelab.data.moons(64)
    kwargs = dict(
        grid={"hidden_size": [3, 5]},
        seeds=2,
        stack_size=2,
        epochs=2,
        batch_size=16,
        device="cpu",
        keep_models=False,
        metrics={"w": lambda model, context: model.encoder[0].weight.detach().sum().item()},
    )
    local = aelab.sweep(definition.mlp, train, **kwargs)
    remote = aelab.sweep(definition.mlp, train, executor=one_worker, **kwargs)
    same_table(local, remote)
    assert remote.models == [None] * 4


def test_the_forkserver_preloads_the_main_script_by_its_module_name(tmp_path, monkeypatch):
    import types

    script = tmp_path / "my_sweep_script.py"
    script.write_text("import aelab\n")
    main = types.ModuleType("__main__")
    main.__file__, main.__spec__ = str(script), None
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert store_module._main_module() is None  # its folder is not on the path
    monkeypatch.syspath_prepend(str(tmp_path))
    assert store_module._main_module() == "my_sweep_script"
    shadowing = tmp_path / "json.py"  # would import the standard library's json instead
    shadowing.write_text("")
    main.__file__ = str(shadowing)
    assert store_module._main_module() is None
