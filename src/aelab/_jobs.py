"""Studies side by side in worker processes, for ``aelab run --jobs N``.

Each study is independent of the others, and every study trains its models on one
torch thread (tiny models: a second thread mostly spin-waits), so a run on N cores
finishes up to N times sooner when N studies run at once, each in a process of its
own. A worker runs one study at a time and renders its figures to PNG there
(:func:`aelab.report.prerender`), so that what comes back pickles cheaply and the
figures' drawing is spread over the workers too. A study's numbers do not depend on
where it ran: each worker runs torch on the same thread count as a serial run.

Workers fork from this process when no other thread runs (they start at once, with
everything imported), else from a forkserver that has imported the studies once, and
are terminated when the run stops early: a failed study, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["StudyFailed", "default_jobs", "run_parallel", "run_study"]


class StudyFailed(RuntimeError):
    """A study raised in a worker an exception that could not be sent back as it was."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")


@dataclass
class _Done:
    index: int
    result: object = None  # a StudyResult with rendered figures
    seconds: float = 0.0
    error: BaseException | None = None  # what the study raised
    trace: str = ""  # where, in the worker


def default_jobs(threads: int, studies: int) -> int:
    """Worker processes for ``studies`` studies of ``threads`` torch threads each: as many
    as fit on this process's cores, at most one per study."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(studies, cores // max(1, threads)))


def _start(threads: int) -> None:
    """Worker initializer: the run's torch thread count; Ctrl-C goes to the parent only
    (it terminates the workers), and termination exits through Python, so that what the
    study registered for clean-up (joblib's semaphores) is cleaned up."""
    import signal
    import sys

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    torch.set_num_threads(threads)


def run_study(name: str, kwargs: dict):
    """``(result, seconds)`` of study ``name`` run here with ``kwargs``; the seconds are
    also kept in the result's config."""
    from aelab.studies import REGISTRY

    start = time.perf_counter()
    result = REGISTRY[name].run(**kwargs)
    seconds = time.perf_counter() - start
    result.config.setdefault("seconds", round(seconds, 2))
    return result, seconds


def _run_one(index: int, name: str, kwargs: dict) -> _Done:
    from aelab import report

    try:
        result, seconds = run_study(name, kwargs)
        return _Done(index, report.prerender(result), seconds)
    except Exception as err:  # noqa: BLE001 - sent back, raised in the parent
        try:  # as it is, so that the parent reports it as a serial run would
            pickle.loads(pickle.dumps(err))
        except Exception:  # noqa: BLE001 - anything that does not survive the trip
            err = StudyFailed(type(err).__name__, str(err))
        return _Done(index, error=err, trace=traceback.format_exc())


def run_parallel(
    names: Sequence[str], kwargs: Sequence[dict], jobs: int, threads: int
) -> Iterator[tuple[int, object, float]]:
    """Run study ``names[i]`` with ``kwargs[i]`` in ``jobs`` worker processes; yield
    ``(i, result, seconds)`` as each finishes. A study that raises stops the run: the
    workers are terminated and its exception is raised here, with the study's name as
    ``err.study`` and the worker's traceback as ``err.worker_trace`` (a
    :class:`StudyFailed` when the exception could not be sent back); so they are when
    the caller stops iterating (Ctrl-C, SIGTERM, an error of its own)."""
    context = _context()
    results: queue.SimpleQueue = queue.SimpleQueue()
    finished = False
    pool = context.Pool(jobs, initializer=_start, initargs=(threads,))
    try:
        for i, (name, kw) in enumerate(zip(names, kwargs)):
            pool.apply_async(
                _run_one,
                (i, name, kw),
                callback=results.put,
                error_callback=lambda err, i=i: results.put(_Done(i, error=err)),
            )
        pool.close()
        for _ in names:
            done = _wait(results)
            if done.error is not None:
                done.error.study, done.error.worker_trace = names[done.index], done.trace
                raise done.error
            yield done.index, done.result, done.seconds
        finished = True
    finally:
        if not finished:  # stopped early: the studies still running are not waited for
            pool.terminate()
        pool.join()


def _wait(results: queue.SimpleQueue) -> _Done:
    # short timeouts: a signal handler (Ctrl-C, SIGTERM) runs between them
    while True:
        try:
            return results.get(timeout=0.2)
        except queue.Empty:
            continue


def _context():
    """Fork from this process when that is safe (:func:`aelab.store.can_fork`: workers
    start at once, with everything imported), else a forkserver that has imported the
    studies (spawn where there is none)."""
    from aelab.store import can_fork

    if can_fork():
        return multiprocessing.get_context("fork")
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["aelab.studies", "aelab.report", "aelab._jobs"])
    return context
