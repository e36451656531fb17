"""Live progress of long jobs (the demo's strategies, a sweep's runs): a phase, a count and an ETA per job, and
how many are queued, running, done and failed, with an ETA for all of them.

The training loop and the estimation call :func:`advance`; :func:`begin` opens a phase with its total. Nothing
is shown unless a *sink* is set (:func:`set_sink`): the demo sets one per job, in-process or in a worker
process, and a :class:`Board` in the main process prints its summary and a line per running job every few
seconds, from a thread, so a line comes even while a phase reports nothing (data loading, a shrink round).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

Sink = Callable[[str, int, int], None]  # (phase, done, total)
_sink: Sink | None = None
_phase: list = [None, 0]  # current phase name, its total


def set_sink(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def begin(phase: str, total: int, done: int = 0) -> None:
    _phase[:] = [phase, int(total)]
    if _sink is not None:
        _sink(phase, int(done), int(total))


def advance(done: int) -> None:
    if _sink is not None and _phase[0] is not None:
        _sink(_phase[0], int(done), _phase[1])


def throttled(sink: Sink, every: float = 0.5) -> Sink:
    """``sink`` called at most every ``every`` seconds, and always at a phase's start and end."""
    last = [0.0, None]

    def call(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != last[1] or done >= total or now - last[0] >= every:
            last[:] = [now, phase]
            sink(phase, done, total)

    return call


class Board:
    """The status of named jobs; while running (a context manager), every ``every`` seconds it prints a summary
    (``Q queued, R running, D done, F failed``, with an ETA for all of them once one has finished: the mean time
    of the finished jobs for each one left, spread over ``workers``, and at least what the longest running job
    still needs), then one line per running job:
    ``NAME  PHASE  DONE/TOTAL  ETA`` with the ETA of its phase from the rate so far, and the queued jobs' names."""

    def __init__(self, names: list[str], every: float | None = 5.0, stream: TextIO | None = None,
                 prefix: str = "demo", workers: int = 1):
        """``every = None``: no periodic lines (only :meth:`finish`'s); ``stream``: default the current stderr."""
        self.names, self.every, self.prefix, self.workers = list(names), every, prefix, max(1, workers)
        self.stream = sys.stderr if stream is None else stream
        self.state: dict[str, dict] = {n: {"phase": "queued", "done": 0, "total": 0} for n in names}
        self.lock, self.stop_event = threading.Lock(), threading.Event()
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def update(self, name: str, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        with self.lock:
            st = self.state[name]
            if st["phase"] in ("done", "failed"):  # a late report from the job's process
                return
            st.setdefault("started", now)
            if st["phase"] != phase:
                st.update(phase=phase, since=now, first=done)
            st.update(done=done, total=total, at=now)

    def finish(self, name: str, seconds: float) -> None:
        with self.lock:
            self.state[name].update(phase="done", seconds=seconds)
        self._print(f"{self.prefix}: {name}: done in {seconds:.0f} s")

    def fail(self, name: str) -> None:
        with self.lock:
            self.state[name].update(phase="failed")
        self._print(f"{self.prefix}: {name}: failed")

    def summary(self) -> str:
        """``Q queued, R running, D done, F failed`` and the ETA of the whole set (see the class)."""
        now = time.monotonic()
        with self.lock:
            states = list(self.state.values())
        count = {k: sum(st["phase"] == k for st in states) for k in ("queued", "done", "failed")}
        running = [st for st in states if st["phase"] not in count]
        text = (f"{count['queued']} queued, {len(running)} running, {count['done']} done, {count['failed']} failed")
        took = [st["seconds"] for st in states if "seconds" in st]
        if not running and not count["queued"]:
            return text
        if not took:
            return text + ", ETA once a job has finished"
        mean = sum(took) / len(took)
        rest = [max(0.0, mean - (now - st["started"])) for st in running]
        # the work left spread over the workers, but never less than the longest running job still needs
        eta = max((count["queued"] * mean + sum(rest)) / self.workers, max(rest, default=0.0))
        return text + f", ETA {eta:.0f} s (mean of {len(took)} finished: {mean:.0f} s)"

    def lines(self) -> list[str]:
        now, width = time.monotonic(), max(len(n) for n in self.names)
        out, queued = [self.summary()], []
        with self.lock:
            for name in self.names:
                st = self.state[name]
                if st["phase"] in ("done", "failed"):
                    continue
                if st["phase"] == "queued":
                    queued.append(name)
                    continue
                text = f"{name:<{width}}  {st['phase']:<8}"
                if st["total"]:
                    text += f" {st['done']:>5}/{st['total']:<5}"
                    moved, spent = st["done"] - st.get("first", 0), st.get("at", now) - st.get("since", now)
                    if moved > 0 and spent > 0:
                        text += f"  ETA {max(0.0, (st['total'] - st['done']) * spent / moved):4.0f} s"
                out.append(text)
        if queued:
            out.append(f"queued: {', '.join(queued)}")
        return out

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.every):
            lines = self.lines()
            self._print(f"{self.prefix} [{time.monotonic() - self.start:4.0f} s]: " + lines[0]
                        + "".join(f"\n{' ' * (len(self.prefix) + 10)}{line}" for line in lines[1:]))

    def __enter__(self) -> "Board":
        if self.every is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join()
