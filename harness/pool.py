"""Several runs at once on one machine, each in its own process: the demo's strategies, the seeds of ``run --seeds``.

On CPU, ``workers`` processes of ``threads`` torch threads each (``cores // workers`` by default) never oversubscribe
the cores. On a GPU the processes share the device: a supernet step there is bound by kernel launches from the host
(reports/perf/README.md), so one run leaves the GPU mostly idle and several runs fill it. Every run is seeded and
resumable, so the worker count changes only the wall time, never a run's numbers.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from . import progress as progress_report
from .config import Config


class RunFailed(Exception):
    """A run (or, from :func:`run_jobs`' callers, several) failed; its traceback is in its run directory.
    ``bug``: the error was not one of the harness's user errors (bad input or environment: ``cli.user_errors``)."""

    def __init__(self, message: str, bug: bool = False):
        super().__init__(message, bug)  # both, so that it pickles back from a worker process
        self.message, self.bug = message, bug

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Job:
    """One run: its name on the progress board, its resolved config and its run directory."""
    name: str
    config: Config
    run_dir: Path


def plan_workers(n_jobs: int, workers: int = 0, threads: int = 0) -> tuple[int, int]:
    """``(workers, threads)``: ``workers`` runs at once (0 = one per CPU core, never more than the jobs), each with
    ``threads`` torch threads (0 = cores // workers, at least 1)."""
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, n_jobs))
    return workers, threads or max(1, cores // workers)


def _run_one(job: Job, threads: int, queue=None) -> tuple[str, float]:
    """One run; in a worker process its progress goes to ``queue`` as (name, phase, done, total)."""
    from .runner import RunDirBusy, run_experiment

    torch.set_num_threads(threads)
    if queue is not None:
        def report(*a):  # best effort: a lost progress queue (a dead Ray actor) must not fail the run
            try:
                queue.put((job.name, *a))
            except Exception:
                pass

        report("starting", 0, 0)
        progress_report.set_sink(progress_report.throttled(report))
    start = time.perf_counter()
    try:
        run_experiment(job.config, job.run_dir, progress=False)
    except RunDirBusy as exc:  # another process's directory: leave it alone
        raise RunFailed(f"{job.name}: {exc}") from None
    except Exception as exc:  # the traceback stays with the run; the pool goes on with the others
        from .cli import user_errors

        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "error.txt").write_text(traceback.format_exc())
        raise RunFailed(f"{job.name}: {type(exc).__name__}: {exc} (traceback in {job.run_dir / 'error.txt'})",
                        bug=not isinstance(exc, user_errors())) from None
    return job.name, time.perf_counter() - start


def _drain(queue, board: progress_report.Board) -> None:
    while True:
        try:
            item = queue.get()
        except Exception:  # the queue itself is gone (a Ray actor that died): no more progress, runs go on
            return
        if item is None:
            return
        board.update(*item)


def run_jobs(jobs: list[Job], workers: int = 0, threads: int = 0, progress: bool = True,
             prefix: str = "run") -> tuple[dict[str, float], dict[str, RunFailed]]:
    """Run (or resume) ``jobs``, ``workers`` at a time in separate processes (:func:`plan_workers`; one worker runs
    them here, one after another). With ``progress`` the board (:class:`harness.progress.Board`: queued, running,
    done and failed runs with an ETA, and each running job's phase, step and ETA) is printed every 5 s. A failed
    run does not stop the others. Returns ``(seconds per finished job, error per failed job)``; an error of the
    pool itself (a worker process that died) counts as a bug of every job it took."""
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be distinct, got {names}")
    workers, threads = plan_workers(len(jobs), workers, threads)
    seconds: dict[str, float] = {}
    errors: dict[str, RunFailed] = {}
    board = progress_report.Board(names, every=5.0 if progress else None, prefix=prefix, workers=workers)
    with board:
        if workers == 1:
            for job in jobs:
                board.update(job.name, "starting", 0, 0)
                progress_report.set_sink(lambda *a, name=job.name: board.update(name, *a))
                try:
                    seconds[job.name] = _run_one(job, threads)[1]
                    board.finish(job.name, seconds[job.name])
                except RunFailed as exc:
                    errors[job.name] = exc
                    board.fail(job.name)
                finally:
                    progress_report.set_sink(None)
        else:
            ctx = mp.get_context("spawn")  # CUDA cannot be shared with forked children
            with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                queue = manager.Queue()
                drain = threading.Thread(target=_drain, args=(queue, board), daemon=True)
                drain.start()
                futures = {pool.submit(_run_one, job, threads, queue): job.name for job in jobs}
                try:
                    for fut in as_completed(futures):
                        try:
                            name, seconds[futures[fut]] = fut.result()
                            board.finish(name, seconds[name])
                        except Exception as exc:  # RunFailed, or a worker that died (BrokenProcessPool)
                            errors[futures[fut]] = exc if isinstance(exc, RunFailed) else \
                                RunFailed(f"{futures[fut]}: {type(exc).__name__}: {exc}", bug=True)
                            board.fail(futures[fut])
                finally:
                    queue.put(None)
                    drain.join()
    for message in errors.values():
        print(f"{prefix}: failed: {message}", file=sys.stderr)
    return seconds, errors
