"""``nb201-harness regress``: the ranking-regression suite, a statistical test against recorded baselines.

The suite (``tests/regression/suite.toml``) lists entries: a config plus ``--set`` overrides (a strategy,
a shrinking rule) and the guarded metrics of each. ``regress`` trains and scores every entry for the suite's
``ci_seeds`` (k runs), and tests each guarded metric against that entry's baseline (``tests/regression/
ENTRY.json``: the same metric from n >= 10 recorded runs with the suite's ``baseline_seeds``).

The test, per (entry, metric): a pooled-variance two-sample t-test of the k CI values against the n baseline
values (``scipy.stats.ttest_ind``, equal variances: under "nothing changed" both are draws of the same seed
distribution). It is one-sided for metrics with a direction (a ranking can only regress downwards) and
two-sided for sanity metrics (final training loss, mean estimate, forgetting: a change either way means the
pipeline behaves differently). All p-values of one suite run form one family; Holm's step-down procedure
keeps the chance that unchanged code fails anything at or under ``family_alpha`` (0.5%) for normal metrics.

A baseline file (format 2) keeps every recorded run's value, so the test is recomputed from them; ``value``
(their mean) and ``tolerance`` (the drop of a k-run mean that the test would flag at Holm's strictest level,
with the baseline's own spread) are written for readers and pre-flight checks. ``floor`` is what a random
ranking scores in expectation; ``check_not_vacuous`` rejects a baseline whose band reaches it.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .config import load_config, parse_override
from .io import write_json
from .regression import GUARDS, Guard, NotComparableError, RegressionError, _strategy, read_run_metrics, run_value

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "regression" / "suite.toml"
FORMAT = 2
MIN_BASELINE_RUNS = 10


@dataclass
class Entry:
    name: str
    config: str
    sets: list[str]
    metrics: list[str]
    report: list[str] = field(default_factory=list)  # recorded and shown, not tested (e.g. no spread to test)


@dataclass
class Suite:
    path: Path
    family_alpha: float
    baseline_seeds: list[int]
    ci_seeds: list[int]
    entries: list[Entry] = field(default_factory=list)

    def baseline_path(self, entry: Entry) -> Path:
        return self.path.parent / f"{entry.name}.json"

    @property
    def n_tests(self) -> int:
        return sum(len(e.metrics) for e in self.entries)


def _bad(where, message: str):
    raise RegressionError(f"{where}: {message}")


def load_suite(path: str | Path = SUITE) -> Suite:
    """Parse and validate the suite file; every problem is one line naming the key."""
    path = Path(path)
    if not path.is_file():
        _bad(path, "suite file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        _bad(path, f"not valid TOML: {exc}")
    head, rows = data.get("suite"), data.get("entry")
    unknown = set(data) - {"suite", "entry"}
    if unknown or not isinstance(head, dict) or not isinstance(rows, list) or not rows:
        _bad(path, "expected a [suite] table and at least one [[entry]]" + (f"; unknown {sorted(unknown)}" if unknown else ""))
    keys = {"config", "family_alpha", "baseline_seeds", "ci_seeds"}
    if set(head) - keys:
        _bad(path, f"[suite] unknown keys {sorted(set(head) - keys)}; valid: {sorted(keys)}")
    alpha = head.get("family_alpha", 0.01)
    if not isinstance(alpha, float) or not 0 < alpha < 0.5:
        _bad(path, f"[suite] family_alpha must be a number in (0, 0.5), got {alpha!r}")
    seeds = {}
    for key in ("baseline_seeds", "ci_seeds"):
        s = head.get(key)
        if not isinstance(s, list) or not s or not all(type(x) is int and x >= 0 for x in s) or len(set(s)) != len(s):
            _bad(path, f"[suite] {key} must be a list of distinct integers >= 0, got {s!r}")
        seeds[key] = s
    if len(seeds["baseline_seeds"]) < MIN_BASELINE_RUNS or len(seeds["ci_seeds"]) < 2:
        _bad(path, f"[suite] needs >= {MIN_BASELINE_RUNS} baseline_seeds and >= 2 ci_seeds (a spread on both sides)")
    if set(seeds["baseline_seeds"]) & set(seeds["ci_seeds"]):
        _bad(path, "[suite] baseline_seeds and ci_seeds overlap: CI must draw new runs, not repeat recorded ones")
    suite = Suite(path, alpha, seeds["baseline_seeds"], seeds["ci_seeds"])
    for i, row in enumerate(rows):
        where = f"{path} [[entry]] {i + 1}"
        if not isinstance(row, dict) or set(row) - {"name", "config", "set", "metrics", "report"} or "name" not in row:
            _bad(where, "an entry has name, metrics and optionally config, set and report")
        name, metrics, sets, report = row["name"], row.get("metrics"), row.get("set", []), row.get("report", [])
        if not isinstance(name, str) or not name.replace("-", "").isalnum() or name in {e.name for e in suite.entries}:
            _bad(where, f"name must be a unique word of letters, digits and '-', got {name!r}")
        if not isinstance(metrics, list) or not metrics or any(m not in GUARDS for m in metrics):
            _bad(where, f"metrics must be a non-empty list of {', '.join(GUARDS)}; got {metrics!r}")
        if not isinstance(report, list) or any(m not in GUARDS or m in metrics for m in report):
            _bad(where, f"report must list guard names not in metrics; got {report!r}")
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            _bad(where, f"set must be a list of 'section.key=value' strings, got {sets!r}")
        if any(parse_override(s)[:2] == ("run", "seed") for s in sets):
            _bad(where, "set must not fix run.seed: the suite's seeds do")
        config = row.get("config", head.get("config"))
        if not isinstance(config, str):
            _bad(where, "no config: give [suite] config or the entry's config")
        suite.entries.append(Entry(name, config, sets, metrics, report))
    return suite


# ---------------------------------------------------------------- runs

def _config_path(entry: Entry) -> Path:
    p = Path(entry.config)
    return p if p.is_absolute() or p.exists() else ROOT / p


def entry_config(entry: Entry, seed: int):
    return load_config(_config_path(entry), [*entry.sets, f"run.seed={seed}"])


def config_digest(entry: Entry) -> str:
    """sha256 of the entry's resolved config (every key, defaults included; seed 0; paths inside the checkout
    relative to its root, so the digest is the same wherever it lives): a baseline is for exactly this
    experiment, and comments or key order in the file do not matter."""
    cfg = load_config(_config_path(entry), [*entry.sets, "run.seed=0"])
    return hashlib.sha256(cfg.identity_toml(ROOT, digest=True).encode()).hexdigest()


def _run_one(entry: Entry, seed: int, run_dir: Path) -> tuple[str, int, float]:
    import torch

    from .runner import run_experiment

    torch.set_num_threads(1)  # the baselines are recorded with one thread per run
    start = time.perf_counter()
    run_experiment(entry_config(entry, seed), run_dir, progress=False)
    return entry.name, seed, time.perf_counter() - start


def _threads(n: int | None = None) -> int:
    import torch

    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _finished(entry: Entry, seed: int, run_dir: Path) -> bool:
    from .runner import same_identity

    cfg_file = run_dir / "config.toml"
    return ((run_dir / "metrics.json").is_file() and cfg_file.is_file()
            and same_identity(cfg_file.read_text(), entry_config(entry, seed)))


def run_entries(jobs: list[tuple[Entry, int]], out: Path, workers: int = 0, log=print) -> dict[tuple[str, int], Path]:
    """Train and score each (entry, seed) into ``out``/ENTRY/seedS, ``workers`` at a time (0: one per core);
    finished runs of the same config are reused, unfinished ones resumed."""
    dirs = {(e.name, s): out / e.name / f"seed{s}" for e, s in jobs}
    for e, s in jobs:
        entry_config(e, s)  # a bad config fails now, before any training
    todo = [(e, s) for e, s in jobs if not _finished(e, s, dirs[e.name, s])]
    if len(todo) < len(jobs):
        log(f"regress: {len(jobs) - len(todo)} of {len(jobs)} runs finished earlier in {out}; reused")
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo))) if todo else 0
    if todo and workers == 1:  # in this process, one after another
        log(f"regress: {len(todo)} runs, one at a time, 1 thread ...")
        threads = _threads()
        try:
            for e, s in todo:
                name, seed, seconds = _run_one(e, s, dirs[e.name, s])
                log(f"regress: {name} seed {seed}: {seconds:.0f} s")
        finally:
            _threads(threads)
    elif todo:
        log(f"regress: {len(todo)} runs, {workers} at a time, 1 thread each ...")
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, e, s, dirs[e.name, s]) for e, s in todo]
            for fut in as_completed(futures):
                name, seed, seconds = fut.result()
                log(f"regress: {name} seed {seed}: {seconds:.0f} s")
    return dirs


def chance_floor(guard: Guard, run_dir: Path, run_metrics: dict) -> float | None:
    """Expected value of the metric for a random ranking of this run's architectures."""
    if guard.floor == "zero":
        return 0.0
    if guard.floor == "top5":
        return 0.05  # P@top-5%: a random pick of k architectures holds k * 5% true top ones in expectation
    if guard.floor == "regret":
        gt = pd.read_csv(run_dir / "estimates.csv")["ground_truth"].to_numpy(float)
        return float(gt.max() - gt.mean())
    if guard.floor == "space":  # a random space of the same size keeps that fraction of the top 5%
        sh = run_metrics["shrink"]
        return float(sh["space_size"] / sh["known"])
    return None


# ---------------------------------------------------------------- the test

def pvalue(ci: np.ndarray, base: np.ndarray, direction: str) -> float:
    """p-value of "the CI runs are worse than (or, two-sided, differ from) the baseline runs"."""
    if np.isnan(ci).any():
        return 0.0  # an undefined metric (a constant estimator's tau) is a regression
    n, k = len(base), len(ci)
    sp = math.sqrt((((base - base.mean()) ** 2).sum() + ((ci - ci.mean()) ** 2).sum()) / (n + k - 2))
    diff = ci.mean() - base.mean()
    if sp <= 1e-12 * max(1.0, abs(base.mean())):  # no spread at all (up to round-off): any difference is certain
        worse = diff != 0 if direction == "two-sided" else (diff < 0) == (direction == "higher") and diff != 0
        return 0.0 if worse else 1.0
    alt = {"higher": "less", "lower": "greater", "two-sided": "two-sided"}[direction]
    return float(stats.ttest_ind(ci, base, equal_var=True, alternative=alt).pvalue)


def holm_adjusted(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values: hypothesis i is rejected at family-wise error alpha iff its value is
    <= alpha (the k-th smallest p times (m - k + 1), made monotone, capped at 1). The p-values must be finite:
    leave an undefined test out of the family."""
    order = np.argsort(pvalues, kind="stable")
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted


def holm(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected with family-wise error <= alpha. For finite p-values the
    same decisions as ``holm_adjusted(p) <= alpha`` (up to float rounding at the boundary); a NaN p-value reached
    in the step-down is rejected, as the suite counts an undefined metric as a regression."""
    order = np.argsort(pvalues, kind="stable")
    reject = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        reject[i] = True
    return reject


def detectable_shift(base: np.ndarray, k: int, alpha: float, direction: str) -> float:
    """Shift of a k-run mean flagged at level ``alpha`` with the baseline's spread (Holm's strictest level)."""
    n, s = len(base), float(np.std(base, ddof=1))
    q = alpha / 2 if direction == "two-sided" else alpha
    return float(stats.t.ppf(1 - q, n + k - 2) * s * math.sqrt(1 / n + 1 / k))


def power(drop: float, s: float, n: int, k: int, alpha: float) -> float:
    """Power of the one-sided pooled t-test at level ``alpha`` to flag a true mean drop ``drop`` (noncentral t)."""
    df, nc = n + k - 2, drop / (s * math.sqrt(1 / n + 1 / k))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, nc))


@dataclass
class Test:
    entry: str
    metric: str
    direction: str
    baseline_mean: float
    baseline_std: float
    ci_values: list[float]
    p: float
    regressed: bool = False


def evaluate(suite: Suite, baselines: dict[str, dict], ci_values: dict[tuple[str, str], list[float]]) -> list[Test]:
    """Every (entry, metric) test of one suite run with Holm's correction; pure, for simulations too."""
    tests = []
    for e in suite.entries:
        for m in e.metrics:
            runs = np.asarray(baselines[e.name]["metrics"][m]["runs"], float)
            ci = np.asarray(ci_values[e.name, m], float)
            d = GUARDS[m].direction
            tests.append(Test(e.name, m, d, float(runs.mean()), float(runs.std(ddof=1)), list(ci), pvalue(ci, runs, d)))
    for t, r in zip(tests, holm([t.p for t in tests], suite.family_alpha)):
        t.regressed = r
    return tests


def table(tests: list[Test]) -> str:
    rows = [{"entry": t.entry, "metric": t.metric, "test": {"higher": "lower?", "lower": "higher?"}.get(t.direction, "differs?"),
             "baseline mean ± std": f"{t.baseline_mean:.4g} ± {t.baseline_std:.2g}",
             "CI runs": ", ".join(f"{v:.4g}" for v in t.ci_values),
             "CI mean": f"{np.mean(t.ci_values):.4g}", "p": f"{t.p:.2g}",
             "verdict": "REGRESSED" if t.regressed else "ok"} for t in tests]
    cols = list(rows[0]) if rows else []
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(r.values()) + " |" for r in rows])


# ---------------------------------------------------------------- baselines

def load_baseline(path: Path, entry: Entry, suite: Suite) -> dict:
    if not path.is_file():
        _bad(path, f"no baseline for entry {entry.name!r}; record one with `nb201-harness regress --record "
                   f"--entry {entry.name}`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _bad(path, f"not valid JSON ({exc})")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        _bad(path, f"not a suite baseline (format {FORMAT}); re-record it with `regress --record --entry {entry.name}`")
    if data.get("config_sha256") != config_digest(entry):
        raise NotComparableError(f"{path}: recorded for another config or overrides than entry {entry.name!r} now "
                                 f"has; the numbers are not comparable. Re-record it deliberately with "
                                 f"`regress --record --entry {entry.name}`")
    metrics = data.get("metrics")
    for m in entry.metrics:
        runs = (metrics or {}).get(m, {}).get("runs") if isinstance((metrics or {}).get(m), dict) else None
        if not isinstance(runs, list) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in runs):
            _bad(path, f"metrics.{m}.runs must list the recorded runs' finite values; re-record the baseline")
        if len(runs) < MIN_BASELINE_RUNS:
            _bad(path, f"metrics.{m} has {len(runs)} runs; a baseline needs >= {MIN_BASELINE_RUNS}")
    return data


def check_not_vacuous(data: dict) -> list[str]:
    """Problems that make a baseline guard nothing: no spread (a degenerate test), or a band that reaches what a
    random ranking scores, i.e. the k-run mean of a random estimator would pass."""
    problems = []
    for m, b in data["metrics"].items():
        if b["runs_std"] == 0:
            problems.append(f"{m}: the recorded runs do not vary (std 0); the t-test is degenerate")
        d, floor = GUARDS[m].direction, b.get("floor")
        if floor is None or d == "two-sided":
            continue
        edge = b["value"] - b["tolerance"] if d == "higher" else b["value"] + b["tolerance"]
        if (edge <= floor) if d == "higher" else (edge >= floor):
            problems.append(f"{m}: detection edge {edge:.4g} reaches the random-ranking value {floor:.4g}")
    return problems


def make_baseline(suite: Suite, entry: Entry, dirs: dict[tuple[str, int], Path], description: str = "") -> dict:
    runs = [read_run_metrics(dirs[entry.name, s]) for s in suite.baseline_seeds]
    first_dir = dirs[entry.name, suite.baseline_seeds[0]]
    alpha = suite.family_alpha / suite.n_tests
    metrics = {}
    for m in entry.metrics:
        values = np.array([run_value(r, m) for r in runs])
        if np.isnan(values).any():
            _bad(first_dir.parent, f"cannot record {m}: undefined in some run; drop it from the entry")
        g = GUARDS[m]
        metrics[m] = {"value": float(values.mean()), "runs_std": float(values.std(ddof=1)), "n_runs": len(values),
                      "direction": g.direction, "higher_is_better": g.direction == "higher",
                      "tolerance": detectable_shift(values, len(suite.ci_seeds), alpha, g.direction),
                      "floor": chance_floor(g, first_dir, runs[0]), "runs": values.tolist()}
    recorded = {}
    for m in entry.report:
        values = np.array([run_value(r, m) for r in runs])
        recorded[m] = {"value": float(np.mean(values)), "runs_std": float(np.std(values, ddof=1)), "runs": values.tolist()}
    env = runs[0].get("environment") or {}
    return {"format": FORMAT, "entry": entry.name, "description": description or f"{entry.name}: {entry.config} "
            f"with {entry.sets or 'no overrides'}", "config": entry.config, "set": entry.sets,
            "config_sha256": config_digest(entry), "seeds": suite.baseline_seeds, "threads_per_run": 1,
            "strategy": _strategy(runs[0]), "ground_truth_query": runs[0]["ground_truth"]["query"],
            "n_archs": runs[0]["ranking"]["n_archs"], "ci_seeds": suite.ci_seeds,
            "holm_strictest_alpha": alpha, "metrics": metrics, "recorded_not_tested": recorded,
            "recorded_from": dict({k: env.get(k) for k in ("git_revision", "torch", "device_name")},
                                  cpu_model=_cpu_model(), cores=os.cpu_count())}


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)


# ---------------------------------------------------------------- the command

def regress(out: Path, suite_path: Path = SUITE, only: list[str] | None = None, record: bool = False,
            workers: int = 0, log=lambda s: print(s, file=sys.stderr)) -> tuple[bool, str]:
    """Run the suite (or, with ``record``, its baseline seeds) and return (passed, Markdown table)."""
    suite = load_suite(suite_path)
    names = [e.name for e in suite.entries]
    for n in only or []:
        if n not in names:
            _bad(suite.path, f"no entry {n!r}; entries: {', '.join(names)}")
    entries = [e for e in suite.entries if not only or e.name in only]
    seeds = suite.baseline_seeds if record else suite.ci_seeds
    baselines = {} if record else {e.name: load_baseline(suite.baseline_path(e), e, suite) for e in entries}
    start = time.perf_counter()
    dirs = run_entries([(e, s) for e in entries for s in seeds], out, workers, log)
    if record:
        lines = []
        for e in entries:
            data = make_baseline(suite, e, dirs)
            problems = check_not_vacuous(data)
            if problems:
                _bad(suite.baseline_path(e), "not written, it would guard nothing: " + "; ".join(problems))
            write_json(suite.baseline_path(e), data)
            lines += [f"| {e.name} | {m} | {b['value']:.4g} | {b['runs_std']:.2g} | {b['tolerance']:.3g} |"
                      for m, b in data["metrics"].items()]
        head = "| entry | metric | mean | std | detectable shift |\n|---|---|---|---|---|\n"
        return True, head + "\n".join(lines) + f"\n\n{len(dirs)} runs, {time.perf_counter() - start:.0f} s"
    if only:  # a subset is tested as its own family
        suite.entries = entries
    values = {}
    for e in entries:
        runs = [read_run_metrics(dirs[e.name, s]) for s in seeds]
        for m in e.metrics:
            values[e.name, m] = [run_value(r, m) for r in runs]
    tests = evaluate(suite, baselines, values)
    passed = not any(t.regressed for t in tests)
    shown = []
    for e in entries:
        runs = [read_run_metrics(dirs[e.name, s]) for s in seeds]
        for m in e.report:
            b = baselines[e.name].get("recorded_not_tested", {}).get(m, {})
            v = [run_value(r, m) for r in runs]
            shown.append(f"| {e.name} | {m} | {b.get('value', math.nan):.4g} ± {b.get('runs_std', math.nan):.2g} | "
                         f"{', '.join(f'{x:.4g}' for x in v)} |")
    if shown:
        extra = "\n\nRecorded and shown, not tested (suite.toml says why):\n\n| entry | metric | baseline mean ± std | CI runs |\n|---|---|---|---|\n"
        tests_text = table(tests) + extra + "\n".join(shown)
    else:
        tests_text = table(tests)
    summary = (f"\n\n{len(tests)} tests (pooled t-test, one-sided unless 'differs?', Holm at family alpha "
               f"{suite.family_alpha}), {len(seeds)} CI seeds {seeds} per entry; {time.perf_counter() - start:.0f} s")
    return passed, tests_text + summary

