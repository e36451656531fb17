"""Sweeps: one study (a base config times a grid of settings) described in one file, run anywhere, resumed, and
compared as a whole. ``nb201-harness sweep SWEEP.toml [--engine local|ray] [--address ADDR] [--out DIR]``.

A sweep file::

    base = "configs/demo-digitsm.toml"   # the run config every run starts from (relative to this file)
    out = "runs/my-sweep"                # where the runs go (--out overrides; relative to the current folder)
    name = "{sampler.name}-seed{run.seed}"   # optional: run directory names from the variant and grid values

    [set]                                # overrides every run gets (any key `run --set` takes)
    "train.max_paths" = 300

    [grid]                               # every combination of these values is one run
    "sampler.name" = ["uniform", "fairnas"]
    "run.seed" = [0, 1]

    [variants.angle]                     # optional: named bundles of settings, each crossed with the grid
    "shrink.rule" = "angle"              # (a variant may override [set], not the grid)
    [variants.none]                      # an empty one: [set] alone

    [resources]                          # what each run asks for
    cpus = 1                             # torch threads per run (local) / Ray's num_cpus
    gpus = 0                             # Ray's num_gpus, fractions allowed (0.25: four runs share a GPU)

Each run's directory is named after its variant and grid values in grid order (``name-uniform_seed-0``;
``angle_name-uniform_seed-0`` with variants; or by the ``name`` template, whose fields are ``{variant}`` and the
grid keys, every name distinct; ``/`` makes subfolders), so a rerun finds it:
finished runs are skipped, interrupted ones resume from their checkpoint, and the sweep ends with
``nb201-harness compare`` over every finished run in ``OUT/compare``. Engines: ``local`` (the default) runs the
runs in a process pool on this machine (:mod:`harness.pool`); ``ray`` runs each as a Ray task with its resource
request on a running Ray cluster (``ray start``; ``pip install -e '.[ray]'``).
"""
from __future__ import annotations

import itertools
import os
import re
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from .config import Config, ConfigError, load_config

ENGINES = ("local", "ray")
KEYS = {"base", "out", "name", "set", "grid", "variants", "resources"}
RESOURCES = {"cpus", "gpus"}


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its stable name, its resolved config and its directory."""
    name: str
    config: Config
    run_dir: Path


@dataclass
class Sweep:
    path: Path
    base: Path
    out: Path
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)  # name -> {key: value}
    name: str = ""  # run directory name template ("" = variant and grid values, see run_name)
    cpus: int = 1
    gpus: float = 0.0

    def runs(self, out: Path | None = None) -> list[SweepRun]:
        """Every combination of the grid, in grid order, with its config checked (all before any run starts)."""
        out = Path(out) if out is not None else self.out
        keys = list(self.grid)
        runs = []
        for variant, *values in itertools.product(self.variants or [None], *(self.grid[k] for k in keys)):
            combo = dict(zip(keys, values))
            if self.name:
                fields = {"variant": variant or "", **combo}
                name = re.sub(r"\{([^{}]+)\}", lambda m: _slug(fields[m.group(1)]), self.name)
            else:
                name = "_".join(n for n in (variant, run_name(combo) if combo else None) if n) or "run"
            settings = {**self.fixed, **(self.variants[variant] if variant else {}), **combo}
            overrides = [_override(k, v) for k, v in settings.items()]
            try:
                cfg = load_config(self.base, overrides)
            except ConfigError as exc:
                raise ConfigError(f"{self.path}: run {name}: {exc}") from None
            runs.append(SweepRun(name, cfg, out / name))
        if len({r.name for r in runs}) != len(runs):
            raise ConfigError(f"{self.path}: name = {self.name!r} gives two runs one directory; name every grid key "
                              "and {variant} in it")
        return runs


def run_name(combo: dict) -> str:
    """``{"sampler.name": "uniform", "run.seed": 0}`` -> ``name-uniform_seed-0`` (file-name safe)."""
    if not combo:
        return "run"
    return "_".join(f"{k.split('.')[-1]}-{_slug(v)}" for k, v in combo.items())


def _toml(value) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _slug(value) -> str:
    text = value if isinstance(value, str) else _toml(value)
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "+", text).strip("+") or "empty"
    return slug.replace(".", "+") if slug in (".", "..") else slug  # never a path step out of OUT


def _override(key: str, value) -> str:
    """``key=value`` as ``run --set`` takes it (the value in TOML)."""
    return f"{key}={_toml(value)}"


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (one-line :class:`ConfigError` for anything wrong)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a valid sweep file ({exc})") from None
    if unknown := sorted(set(data) - KEYS):
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a sweep file has {sorted(KEYS)}")
    if not isinstance(data.get("base"), str) or not data["base"]:
        raise ConfigError(f"{path}: 'base' must name the run config every run starts from")
    base = (path.parent / data["base"]).resolve()
    if not base.is_file():
        raise ConfigError(f"{path}: base config {base} does not exist")
    fixed, grid, variants, resources = (data.get(k, {}) for k in ("set", "grid", "variants", "resources"))
    for what, table in (("set", fixed), ("grid", grid), ("variants", variants), ("resources", resources)):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{what}] must be a table")
    for name, settings in variants.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: [variants.{name}] must be a table of settings")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", name):
            raise ConfigError(f"{path}: variant name {name!r}: use letters, digits, '.', '+' and '-' (it names "
                              "run directories)")
        if both := sorted(set(settings) & set(grid)):
            raise ConfigError(f"{path}: [variants.{name}] sets {both}, which [grid] varies; give each key once")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: [grid] {key!r} must be a non-empty list of values")
        if len({_slug(v) for v in values}) != len(values):
            raise ConfigError(f"{path}: [grid] {key!r} repeats a value (or two values share a run name): {values}")
    if both := sorted(set(fixed) & set(grid)):
        raise ConfigError(f"{path}: {both} are both in [set] and [grid]; give each key once")
    if unknown := sorted(set(resources) - RESOURCES):
        raise ConfigError(f"{path}: unknown [resources] key(s) {unknown}; valid: {sorted(RESOURCES)}")
    cpus, gpus = resources.get("cpus", 1), resources.get("gpus", 0)
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise ConfigError(f"{path}: [resources] cpus = {cpus!r}: must be an integer >= 1")
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not 0 <= gpus:
        raise ConfigError(f"{path}: [resources] gpus = {gpus!r}: must be a number >= 0 (fractions share a GPU)")
    out = Path(data.get("out") or f"runs/{path.stem}")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: name = {name!r}: must be a template such as \"{{variant}}-seed{{run.seed}}\"")
    fields = {"variant", *grid} if variants else set(grid)
    if unknown := sorted(set(re.findall(r"\{([^{}]*)\}", name)) - fields):
        raise ConfigError(f"{path}: name template field(s) {unknown}; valid: {sorted(fields)}")
    literal = re.sub(r"\{[^{}]*\}", "x", name)
    if name and not (re.fullmatch(r"[A-Za-z0-9.+_/-]*", literal) and all(
            part not in ("", ".", "..") for part in literal.split("/"))):
        raise ConfigError(f"{path}: name = {name!r}: outside its fields use letters, digits, '.', '+', '_', '-' "
                          "and '/' between non-empty folder names")
    return Sweep(path, base, out, dict(fixed), dict(grid), {n: dict(v) for n, v in variants.items()}, name,
                 int(cpus), float(gpus))


def status(run: SweepRun) -> str:
    """``done`` (finished, same config), ``resume`` (unfinished), ``new`` (or ``reuse``: a failed start's
    leftovers); ConfigError if the directory holds a run of another config (the sweep file changed under it) or
    another process is writing it (:func:`harness.runner.run_dir_lock`)."""
    from .runner import RunDirError, check_run_dir, finished_config_differs, run_dir_holder

    d = run.run_dir
    if (d / "metrics.json").exists():
        if not (differ := finished_config_differs(d, run.config)):
            return "done"
        raise ConfigError(f"{d} holds a finished run of another config ({'; '.join(differ[:4])}"
                          f"{'; ...' if len(differ) > 4 else ''}); the sweep changed since it ran. Give the sweep "
                          "another --out, or remove that directory")
    try:
        state = check_run_dir(d, run.config)
    except RunDirError as exc:
        raise ConfigError(str(exc)) from None
    if state != "new" and (holder := run_dir_holder(d)):
        raise ConfigError(f"{d} is being written by another process (pid and host: {holder}), perhaps a worker "
                          "of an interrupted sweep; wait for it or stop it, then rerun the sweep")
    return state


def _ray_task(job, threads: int, queue):
    from .pool import _run_one

    return _run_one(job, threads, queue)


def run_ray(jobs: list, cpus: int, gpus: float, address: str | None, progress: bool) -> tuple[dict, dict]:
    """Each job as a Ray task asking for ``cpus`` CPUs and ``gpus`` GPUs on the cluster at ``address`` (or the Ray
    instance this process already started), with the same progress board as the local engine (the tasks report
    through a Ray queue). Returns ``(seconds per finished job, RunFailed per failed job)``."""
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise ConfigError("--engine ray needs Ray, an optional extra: pip install -e '.[ray]' (then start a cluster "
                          "with `ray start --head`)") from None
    from . import progress as progress_report
    from .pool import RunFailed, _drain

    if not ray.is_initialized():
        try:
            ray.init(address=address or "auto", log_to_driver=False)
        except ConnectionError as exc:
            raise ConfigError(f"--engine ray: no Ray cluster at {address or 'auto'} ({exc}); start one with "
                              "`ray start --head` or give --address") from None
    total = ray.cluster_resources()
    slots = int(total.get("CPU", 1) // cpus)
    if gpus:
        slots = min(slots, int(total.get("GPU", 0) // gpus))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_ray_task)
    queue = Queue()
    board = progress_report.Board([job.name for job in jobs], every=5.0 if progress else None, prefix="sweep",
                                  workers=max(1, slots))
    drain = threading.Thread(target=_drain, args=(queue, board), daemon=True)
    pending = {task.remote(job, cpus, queue): job.name for job in jobs}
    seconds, errors = {}, {}
    with board:
        drain.start()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                ref = done[0]
                name = pending.pop(ref)
                try:
                    seconds[name] = ray.get(ref)[1]
                    board.finish(name, seconds[name])
                except RunFailed as exc:
                    errors[name] = exc
                    board.fail(name)
                except Exception as exc:  # Ray wraps a task's exception; unwrap RunFailed, else it is a bug
                    cause = getattr(exc, "cause", None)
                    errors[name] = cause if isinstance(cause, RunFailed) else RunFailed(
                        f"{name}: {type(exc).__name__}: {exc}", bug=True)
                    board.fail(name)
        finally:
            try:
                queue.put(None)
            except Exception:  # the queue actor died; the drain thread has stopped on its own
                pass
            drain.join(timeout=30)
    for message in errors.values():
        print(f"sweep: failed: {message}", file=sys.stderr)
    return seconds, errors


def run_sweep(sweep: Sweep, out: Path | None = None, engine: str = "local", address: str | None = None,
              progress: bool = True) -> tuple[list[SweepRun], dict]:
    """Run every unfinished run of ``sweep`` (finished ones are skipped, interrupted ones resume), then
    ``compare`` over all finished runs into ``OUT/compare``. Returns ``(runs, RunFailed per failed run)``."""
    from .compare import load_run, write_report
    from .pool import Job, run_jobs

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}; valid: {', '.join(ENGINES)}")
    runs = sweep.runs(out)
    todo = [r for r in runs if status(r) != "done"]  # every directory checked before anything runs
    jobs = [Job(r.name, r.config, r.run_dir) for r in todo]
    errors: dict = {}
    if jobs and engine == "local":
        workers = max(1, min(len(jobs), (os.cpu_count() or 1) // sweep.cpus))  # cpus threads each
        _, errors = run_jobs(jobs, workers=workers, threads=sweep.cpus, progress=progress, prefix="sweep")
    elif jobs:
        _, errors = run_ray(jobs, sweep.cpus, sweep.gpus, address, progress)
    finished = [r for r in runs if r.name not in errors and (r.run_dir / "metrics.json").exists()]
    if finished:
        write_report([load_run(r.run_dir) for r in finished], (Path(out) if out is not None else sweep.out) / "compare")
    return runs, errors
