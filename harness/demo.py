"""``nb201-harness demo``: sampling strategies and reference estimators on the embedded mini-benchmark, offline.

Each strategy trains its own supernet on ``builtin:digitsm`` with ``configs/demo-digitsm.toml`` (one
config; only ``[sampler] name`` changes, plus the shrinking keys of ``uniform+angle``), estimates the
mini-benchmark's architectures with inherited weights, and is scored against the stand-alone ground truth in
``data/digitsm/``. The runs then go through ``compare``: one table and the plots.

By default the demo runs :data:`DEFAULT`, one strategy of each kind, sized to finish in about 3 minutes on 2
cores; ``--all`` runs :func:`all_strategies` (every registered sampler and ``uniform+angle``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .compare import load_run, strategy_table, write_report
from .config import Config, ConfigError, load_config
from .pool import Job, RunFailed, plan_workers, run_jobs
from .samplers import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo-digitsm.toml"
# demo strategies that are more than a sampler name: their extra config keys. Shrinking on digitsm's 56 steps
# per epoch: warm-up 6 epochs, a round every 3, down to 3 ops per edge (rounds at steps 336 and 504 of 1,000)
EXTRA = {"uniform+angle": ["sampler.name='uniform'", "shrink.rule='angle'", "shrink.warmup_epochs=6.0",
                           "shrink.shrink_every=3.0", "shrink.min_ops=3", "shrink.estimate_space=0"]}
# the reference lines every table needs (harness/estimators): the trivial baselines and the cheap zero-cost
# proxies, scored on the stand-alone network at the demo's sizes; no training
ESTIMATOR_RUNS = ["params", "flops", "random", "synflow", "nwot", "snip", "jacob_cov"]
# one strategy of each kind: plain, an NSAS variant, fair, a shrinker and a differentiable one; then the trivial
# baselines and the two cheapest proxies (about 13 s each on 2 cores; snip and jacob_cov come with --all)
DEFAULT = ["uniform", "nsas", "fairnas", "uniform+angle", "darts", "params", "flops", "random", "synflow", "nwot"]


def all_strategies() -> list[str]:
    return [*SAMPLERS.names(), *EXTRA, *ESTIMATOR_RUNS]


def demo_config(strategy: str, overrides: list[str] = ()) -> Config:
    """The demo config for one strategy (its paths resolve against configs/, where the file lives)."""
    if not DEMO_CONFIG.is_file():
        raise ConfigError(f"{DEMO_CONFIG} is missing: the demo runs from a checkout of the repository "
                          "(pip install -e .), which ships configs/ and data/")
    if strategy not in all_strategies():
        raise ConfigError(f"demo strategy {strategy!r} is unknown; valid: {', '.join(all_strategies())}")
    keys = [f"estimator.name={strategy!r}"] if strategy in ESTIMATOR_RUNS else \
        EXTRA.get(strategy, [f"sampler.name={strategy!r}"])
    cfg = load_config(DEMO_CONFIG, [*keys, *overrides])
    cfg.run.name = f"demo-{strategy}"
    return cfg


def run_demo(out: str | Path, strategies: list[str] | None = None, overrides: list[str] = (),
             progress: bool = True, workers: int = 0, threads: int = 0) -> tuple[list[Path], str]:
    """Run (or resume) the demo into ``out``/STRATEGY, then write ``out``/compare; returns (paths, the compact
    table as text).

    ``strategies``: default :data:`DEFAULT`. ``workers`` strategies train at once in separate processes (0 = one
    per CPU core), each with ``threads`` torch threads (0 = cores // workers, at least 1): :mod:`harness.pool`.
    Every run is seeded, so the worker count changes only the wall time. With ``progress`` a line per unfinished
    strategy (phase, step, ETA) is printed every 5 s. The runs go to the config's device (``run.device``, CPU in
    the demo config): with ``--set run.device='cuda'`` the workers share one GPU.
    """
    out = Path(out)
    names = list(dict.fromkeys(strategies or DEFAULT))
    configs = {name: demo_config(name, overrides) for name in names}  # a bad name or override fails now
    todo = [n for n in names if not (out / n / "metrics.json").exists()]
    for name in names:
        if name not in todo:
            print(f"demo: {name}: finished earlier in {out / name}; not rerun (delete it to rerun)", file=sys.stderr)
    if todo:
        workers, threads = plan_workers(len(todo), workers, threads)
        print(f"demo: {len(todo)} strategies ({', '.join(todo)}), {workers} at a time, {threads} thread(s) "
              "each", file=sys.stderr)
        _, errors = run_jobs([Job(n, configs[n], out / n) for n in todo], workers, threads, progress, prefix="demo")
        if errors:
            raise RunFailed(f"{len(errors)} demo run(s) failed: " + "; ".join(map(str, errors.values())),
                            bug=any(e.bug for e in errors.values()))
    run_dirs = [out / n for n in names]
    records = [load_run(d) for d in run_dirs]
    paths = write_report(records, out / "compare")
    return paths, compact_table(strategy_table(records))


COMPACT = ["kendall_tau", "spearman", "precision_top5pct", "regret_top1", "mean_forgetting"]


def compact_table(table) -> str:
    """At most about 110 characters a row: strategy, tau with its CI, Spearman, P@5%, regret, forgetting
    (the full table is compare/summary.md)."""
    width = max([len("strategy"), *(len(s) for s in table["strategy"])])
    head = f"{'strategy':<{width}}  {'tau [CI]':<22} {'Spearman':>8} {'P@5%':>6} {'regret':>7} {'forgetting':>10}"
    lines = [head, "-" * len(head)]
    for _, row in table.iterrows():
        tau = f"{row['kendall_tau']:.3f} [{row['kendall_tau_lo']:.2f}, {row['kendall_tau_hi']:.2f}]" \
            if "kendall_tau_lo" in row else f"{row['kendall_tau']:.3f}"
        cells = [_fmt(row.get(m)) for m in COMPACT[1:]]
        lines.append(f"{row['strategy']:<{width}}  {tau:<22} {cells[0]:>8} {cells[1]:>6} {cells[2]:>7} {cells[3]:>10}")
    return "\n".join(lines)


def _fmt(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.3f}" if value == value else "n/a"
