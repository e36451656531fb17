"""``nb201-harness demo``: every registered sampling strategy on the embedded mini-benchmark, offline.

Each strategy trains its own supernet on ``builtin:digitsm`` with ``configs/demo-digitsm.toml`` (one
config; only ``[sampler] name`` changes), estimates the mini-benchmark's architectures with inherited
weights, and is scored against the stand-alone ground truth in ``data/digitsm/``. The runs then go through
``compare``: one table and the plots.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from .compare import load_run, strategy_table, to_markdown, write_report
from .config import Config, ConfigError, load_config
from .runner import run_experiment
from .samplers import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo-digitsm.toml"


def demo_config(strategy: str, overrides: list[str] = ()) -> Config:
    """The demo config for one strategy (its paths resolve against configs/, where the file lives)."""
    if not DEMO_CONFIG.is_file():
        raise ConfigError(f"{DEMO_CONFIG} is missing: the demo runs from a checkout of the repository "
                          "(pip install -e .), which ships configs/ and data/")
    cfg = load_config(DEMO_CONFIG, [f"sampler.name={strategy!r}", *overrides])
    cfg.run.name = f"demo-{strategy}"
    return cfg


def _run_one(name: str, run_dir: Path, overrides: list[str], progress: bool, threads: int = 0) -> tuple[str, float]:
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    run_experiment(demo_config(name, overrides), run_dir, progress=progress)
    return name, time.perf_counter() - start


def run_demo(out: str | Path, strategies: list[str] | None = None, overrides: list[str] = (),
             progress: bool = True, workers: int = 0) -> tuple[list[Path], str]:
    """Run (or resume) the demo into ``out``/STRATEGY, then write ``out``/compare; returns (paths, Markdown).

    ``workers`` strategies train at once in separate processes (0 = one per CPU core, at most 2 threads
    each); every run is seeded, so the worker count changes only the wall time.
    """
    out = Path(out)
    names = strategies or SAMPLERS.names()
    for name in names:
        demo_config(name, overrides)  # a bad override fails now, not in a worker
    todo = [n for n in names if not (out / n / "metrics.json").exists()]
    for name in names:
        if name not in todo:
            print(f"demo: {name}: finished earlier in {out / name}; not rerun (delete it to rerun)", file=sys.stderr)
    cores = os.cpu_count() or 1
    workers = min(workers or cores, len(todo)) if todo else 0
    if workers <= 1:
        for name in todo:
            print(f"demo: {name}: training and estimating ...", file=sys.stderr)
            _, seconds = _run_one(name, out / name, list(overrides), progress)
            print(f"demo: {name}: done in {seconds:.0f} s", file=sys.stderr)
    else:
        threads = max(1, cores // workers)
        print(f"demo: {len(todo)} strategies, {workers} at a time ({threads} thread(s) each) ...", file=sys.stderr)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, n, out / n, list(overrides), False, threads) for n in todo]
            for fut in as_completed(futures):
                name, seconds = fut.result()
                print(f"demo: {name}: done in {seconds:.0f} s", file=sys.stderr)
    run_dirs = [out / n for n in names]
    records = [load_run(d) for d in run_dirs]
    paths = write_report(records, out / "compare")
    return paths, to_markdown(strategy_table(records))
