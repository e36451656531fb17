"""``nb201-harness demo``: every registered sampling strategy on the embedded mini-benchmark, offline.

Each strategy trains its own supernet on ``builtin:digitsm`` with ``configs/demo-digitsm.toml`` (one
config; only ``[sampler] name`` changes), estimates the mini-benchmark's architectures with inherited
weights, and is scored against the stand-alone ground truth in ``data/digitsm/``. The runs then go through
``compare``: one table and the plots.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .compare import load_run, strategy_table, to_markdown, write_report
from .config import Config, ConfigError, load_config
from .runner import run_experiment
from .samplers import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo-digitsm.toml"


def demo_config(strategy: str, overrides: list[str] = ()) -> Config:
    """The demo config for one strategy; the ground-truth path is resolved against the repository root."""
    if not DEMO_CONFIG.is_file():
        raise ConfigError(f"{DEMO_CONFIG} is missing: the demo runs from a checkout of the repository "
                          "(pip install -e .), which ships configs/ and data/")
    cfg = load_config(DEMO_CONFIG, [f"sampler.name={strategy!r}", *overrides])
    source = Path(cfg.groundtruth.source)
    if not source.is_absolute() and not source.exists():
        cfg.groundtruth.source = str(ROOT / source)
    cfg.run.name = f"demo-{strategy}"
    return cfg


def run_demo(out: str | Path, strategies: list[str] | None = None, overrides: list[str] = (),
             progress: bool = True) -> tuple[list[Path], str]:
    """Run (or resume) the demo into ``out``/STRATEGY, then write ``out``/compare; returns (paths, Markdown)."""
    out = Path(out)
    names = strategies or SAMPLERS.names()
    run_dirs = []
    for name in names:
        run_dir = out / name
        if (run_dir / "metrics.json").exists():
            print(f"demo: {name}: finished earlier in {run_dir}; not rerun (delete it to rerun)", file=sys.stderr)
        else:
            start = time.perf_counter()
            print(f"demo: {name}: training and estimating ...", file=sys.stderr)
            run_experiment(demo_config(name, overrides), run_dir, progress=progress)
            print(f"demo: {name}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        run_dirs.append(run_dir)
    records = [load_run(d) for d in run_dirs]
    paths = write_report(records, out / "compare")
    return paths, to_markdown(strategy_table(records))
