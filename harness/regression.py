"""CI ranking-regression check: compare a finished run's ranking metrics with a committed baseline.

Baseline file (JSON; recorded by ``make_baseline`` + ``write_baseline``, tolerances may be edited by hand)::

    {"format": 1, "description": "uniform sampler, CPU smoke config",
     "ground_truth_query": "cifar10valid_valid_200",  # must equal the run's ground_truth.query
     "n_archs": 150,                                 # must equal the run's ranking.n_archs
     "strategy": "uniform",                          # optional, null: not checked; else must equal the run's
     "metrics": {"kendall_tau": {"value": 0.51, "higher_is_better": true},
                 "regret_top1": {"value": 1.9, "higher_is_better": false, "tolerance": 1.0}},
     "recorded_from": {"git_revision": "...", "device_name": "cpu"}}  # optional provenance, not checked

A baseline recorded from several runs (``--update RUN RUN ...``) holds their mean, their ``runs_std`` and
``n_runs``, and a tolerance of at least ``--sigmas`` (3) times that std; see ``make_baseline``.

``metrics`` selects which metrics of ``harness.metrics`` are checked. A metric regresses when it is worse than its
baseline value by more than its tolerance and improves when it is better by more than that. Its tolerance is its own
``tolerance`` if set, else ``DEFAULT_TOLERANCES`` (regret_top1: 1.0 accuracy point), else ``check_run``'s
``tolerance`` (``--tolerance``). ``higher_is_better`` is fixed by the metric (only regret_top1 is lower-is-better);
the file states it for readers and loading rejects a contradiction. A run of another query, n_archs or strategy
than the baseline's raises ``RegressionError``: not a regression, the numbers are not comparable.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .io import write_json
from .metrics import metric_functions

FORMAT = 1


@dataclass(frozen=True)
class Guard:
    """A metric a baseline can guard: where it lives in metrics.json, which way is worse, and what chance scores."""

    path: str  # dotted key path in metrics.json
    direction: str  # "higher" (higher is better), "lower" (lower is better) or "two-sided" (any change)
    floor: str | None = None  # value of a random ranking: "zero", "top5", "regret" (from estimates.csv), "space"


# Beyond the ranking block: forgetting, shrinking, alpha and sanity metrics (`check` takes the one-sided ones,
# `regress` all of them). The ranking metrics of harness.metrics are guards too (ranking.NAME.value).
GUARDS = {
    "kendall_tau": Guard("ranking.kendall_tau.value", "higher", "zero"),
    "spearman": Guard("ranking.spearman.value", "higher", "zero"),
    "precision_top5pct": Guard("ranking.precision_top5pct.value", "higher", "top5"),
    "regret_top1": Guard("ranking.regret_top1.value", "lower", "regret"),
    "kendall_tau_top10pct": Guard("ranking.kendall_tau_top10pct.value", "higher", "zero"),
    "final_probe_tau": Guard("forgetting.final_probe_tau", "higher", "zero"),
    "mean_forgetting": Guard("forgetting.mean_forgetting", "two-sided"),
    "top5pct_retained": Guard("shrink.top5pct_retained", "higher", "space"),
    "space_regret": Guard("shrink.space_regret", "lower"),
    "tau_in_space": Guard("shrink.ranking_in_space.kendall_tau.value", "higher", "zero"),
    "alpha_tau": Guard("alpha.ranking.kendall_tau.value", "higher", "zero"),
    "final_loss": Guard("train.final_loss", "two-sided"),
    "mean_estimate": Guard("estimate.mean_estimate", "two-sided"),
}
DEFAULT_METRICS = ("kendall_tau", "spearman", "precision_top5pct", "regret_top1")
DEFAULT_TOLERANCES = {"regret_top1": 1.0}  # accuracy points; correlations and precisions live in [-1, 1]
LOWER_IS_BETTER = frozenset({"regret_top1"} | {n for n, g in GUARDS.items() if g.direction == "lower"})
_ENTRY_KEYS = ("value", "higher_is_better", "tolerance", "runs_std", "n_runs")  # the last two: provenance
_REQUIRED = {  # top-level key: (valid?, what is expected)
    "ground_truth_query": (lambda v: isinstance(v, str) and bool(v), "a query name like 'cifar10valid_valid_200'"),
    "n_archs": (lambda v: type(v) is int and v >= 2, "an integer >= 2"),
    "metrics": (lambda v: isinstance(v, dict) and bool(v), 'a non-empty object {metric: {"value": ...}}')}
_EPS = 1e-9  # a change of exactly the tolerance must not regress through round-off (0.51 - 0.46 > 0.05)
_RUN = "run metrics"


class RegressionError(ValueError):
    """The check cannot run: a malformed baseline or run, or a run of another experiment than the baseline's."""


class NotComparableError(RegressionError):
    """The run and the baseline measure different experiments: neither a pass nor a regression (exit 4)."""


@dataclass(frozen=True)
class MetricBaseline:
    value: float
    higher_is_better: bool
    tolerance: float | None = None  # None: DEFAULT_TOLERANCES, then check_run's tolerance
    n_runs: int | None = None  # runs the value is the mean of (several seeds); None: one run


@dataclass(frozen=True)
class Baseline:
    ground_truth_query: str
    n_archs: int
    metrics: dict[str, MetricBaseline]
    description: str = ""
    strategy: str | None = None


@dataclass(frozen=True)
class Row:
    metric: str
    status: str  # "ok", "improved" or "regressed"
    value: float  # the run's; NaN when missing or null
    baseline: float
    tolerance: float
    higher_is_better: bool
    line: str


@dataclass(frozen=True)
class CheckResult:
    rows: list[Row]

    @property
    def passed(self) -> bool:
        return all(r.status != "regressed" for r in self.rows)

    @property
    def lines(self) -> list[str]:
        return [r.line for r in self.rows]


def _fail(where: str, message: str) -> NoReturn:
    raise RegressionError(f"{where}: {message}")


def _number(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"{what} must be a finite number, got {value!r}")
    return float(value)


def _checkable() -> list[str]:
    """Metrics `check` compares: every ranking metric, and the one-sided guards of the other blocks."""
    return list(metric_functions()) + [n for n, g in GUARDS.items() if g.direction != "two-sided"
                                       and not g.path.startswith("ranking.")]


def _parse_metric(name: str, entry, where: str) -> MetricBaseline:
    valid = _checkable()
    if name not in valid:
        hint = "".join(f" Did you mean {c!r}?" for c in difflib.get_close_matches(name, valid, n=1))
        _fail(where, f"unknown metric {name!r}; valid: {', '.join(valid)}.{hint}")
    if not isinstance(entry, dict) or "value" not in entry or set(entry) - set(_ENTRY_KEYS):
        _fail(where, f"metrics.{name} must be an object with a \"value\" and optionally \"higher_is_better\" and "
                     f"\"tolerance\", like {{\"value\": 0.5}}; got {entry!r}")
    higher = name not in LOWER_IS_BETTER
    if entry.get("higher_is_better", higher) is not higher:
        _fail(where, f"metrics.{name}.higher_is_better is {entry['higher_is_better']!r}, but {name} is "
                     f"{'higher' if higher else 'lower'}-is-better; fix the key or remove it")
    tol = entry.get("tolerance")
    if tol is not None and _number(tol, f"metrics.{name}.tolerance", where) < 0:
        _fail(where, f"metrics.{name}.tolerance must be >= 0, got {tol!r}")
    n_runs = entry.get("n_runs")
    return MetricBaseline(_number(entry["value"], f"metrics.{name}.value", where), higher,
                          None if tol is None else float(tol), n_runs if isinstance(n_runs, int) else None)


def baseline_from_dict(data, where: str = "baseline") -> Baseline:
    """Validate a parsed baseline file (format in the module docstring); ``where`` names it in errors."""
    if not isinstance(data, dict):
        _fail(where, f"a baseline is a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        found = f"unknown baseline format {data['format']!r}" if "format" in data else "no \"format\" key"
        _fail(where, f"{found}; this harness reads format {FORMAT}. Re-record the baseline with --update")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        _fail(where, f"missing keys {missing}; the format is described in harness/regression.py")
    for key, (valid, expected) in _REQUIRED.items():
        if not valid(data[key]):
            _fail(where, f"{key} must be {expected}, got {data[key]!r}")
    strategy, description = data.get("strategy"), data.get("description", "")
    if not isinstance(strategy, (str, type(None))) or not isinstance(description, str):
        _fail(where, "strategy must be a string or null, and description a string")
    metrics = {k: _parse_metric(k, v, where) for k, v in data["metrics"].items()}
    return Baseline(data["ground_truth_query"], data["n_archs"], metrics, description, strategy)


def load_baseline(path: str | Path) -> Baseline:
    path = Path(path)
    if not path.is_file():
        raise RegressionError(f"baseline {path} does not exist or is not a file; record one from a good run with "
                              f"`nb201-harness check RUN_DIR --baseline {path} --update`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegressionError(f"baseline {path} is not valid JSON ({exc})") from exc
    return baseline_from_dict(data, str(path))


def write_baseline(path: str | Path, baseline: dict) -> Path:
    """Validate, then write atomically: an interrupted or bad --update never leaves a broken baseline for CI."""
    baseline_from_dict(baseline, f"baseline to write to {path}")
    return write_json(path, baseline)


def _dig(data, dotted: str, where: str):
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            _fail(where, f"lacks '{dotted}'; expected the metrics.json of a finished `nb201-harness run`")
        data = data[key]
    return data


def _strategy(run_metrics: dict) -> str | None:
    sampler = (run_metrics.get("estimator") or {}).get("sampler") or {}
    return run_metrics.get("strategy") or sampler.get("name")


def run_value(run_metrics: dict, name: str) -> float:
    """A metric of a run's metrics.json: a ranking metric (``ranking.NAME.value``) or a guard's path; NaN when
    null (undefined, e.g. a constant estimator's tau) or absent (a block the run did not measure)."""
    path = GUARDS[name].path if name in GUARDS else f"ranking.{name}.value"
    node = run_metrics
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    numeric = isinstance(node, (int, float)) and not isinstance(node, bool)
    return float(node) if numeric and math.isfinite(node) else math.nan


def read_run_metrics(run_dir: str | Path) -> dict:
    """The parsed metrics.json of a finished run directory."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise RegressionError(f"run directory {run_dir} does not exist" if not Path(run_dir).exists() else
                              f"{run_dir} has no metrics.json: the run is unfinished or crashed (metrics.json is "
                              "written last); check a finished run")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegressionError(f"{path} is not valid JSON ({exc})") from exc
    for key in ("ranking.n_archs", "ground_truth.query"):
        _dig(data, key, str(path))
    return data


def _check_comparable(run_metrics: dict, baseline: Baseline) -> None:
    query, n = _dig(run_metrics, "ground_truth.query", _RUN), _dig(run_metrics, "ranking.n_archs", _RUN)
    strategy, diffs = _strategy(run_metrics), []
    if query != baseline.ground_truth_query:
        diffs.append(f"ground-truth query {query!r}, baseline {baseline.ground_truth_query!r}")
    if n != baseline.n_archs:
        diffs.append(f"n_archs {n}, baseline {baseline.n_archs}")
    if baseline.strategy is not None and strategy != baseline.strategy:
        diffs.append(f"strategy {strategy!r}, baseline {baseline.strategy!r}")
    if diffs:
        raise NotComparableError("the run and the baseline measure different things (run has " + "; ".join(diffs)
                              + "), so their metrics are not comparable. If the change is deliberate, re-record "
                              "the baseline with --update")


def check_update(runs: list[dict], previous: Baseline | None, description: str | None, force: bool) -> None:
    """Refuse an ``--update`` that would falsify the baseline's metadata: runs of another strategy, benchmark or
    architecture set (unless ``force``, with a new ``description``), or a kept description that no longer fits
    (the number of runs changed)."""
    if previous is None:
        return
    try:
        for run in runs:
            _check_comparable(run, previous)
    except NotComparableError as exc:
        if not force:
            raise NotComparableError(f"{exc}. To replace it with a baseline of another experiment, pass --force "
                                     "and a new --description") from None
        if not description:
            raise RegressionError("--update --force replaces the baseline with another experiment's: give a new "
                                  "--description saying what it is") from None
        return
    before = {m.n_runs or 1 for m in previous.metrics.values()}
    if not description and before != {len(runs)}:
        raise RegressionError(f"the baseline's description is about {before.pop()} run(s) and this update uses "
                              f"{len(runs)}; give a --description for the new baseline")


def _compare(name: str, value: float, base: MetricBaseline, tol: float) -> Row:
    b, higher = base.value, base.higher_is_better
    if not math.isfinite(value):
        line = f"REGRESSED {name}: the run's value is missing or null/NaN (undefined); baseline {b:.3f}"
        return Row(name, "regressed", value, b, tol, higher, line)
    gain = (value - b) if higher else (b - value)  # > 0: better
    slack = tol + _EPS * max(1.0, abs(b))
    status = "regressed" if gain < -slack else "improved" if gain > slack else "ok"
    op, pm, verb = ("<", "-", "fell by") if (status == "regressed") == higher else (">", "+", "rose by")
    if status == "ok":
        line = f"ok {name}: {value:.3f} within baseline {b:.3f} ± {tol:.3f}"
    elif status == "regressed":
        line = f"REGRESSED {name}: {value:.3f} {op} baseline {b:.3f} {pm} tolerance {tol:.3f} ({verb} {-gain:.3f})"
    else:
        line = f"improved {name}: {value:.3f} {op} baseline {b:.3f} {pm} {tol:.3f} (by {gain:.3f}); consider --update"
    return Row(name, status, value, b, tol, higher, line)


def check_run(run_metrics: dict, baseline: Baseline, tolerance: float = 0.05) -> CheckResult:
    """Compare every baseline metric with the run's; ``tolerance`` is for metrics with no tolerance of their own."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise RegressionError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    _check_comparable(run_metrics, baseline)
    _dig(run_metrics, "ranking", _RUN)
    rows = []
    for name, base in baseline.metrics.items():
        tol = base.tolerance if base.tolerance is not None else DEFAULT_TOLERANCES.get(name, tolerance)
        rows.append(_compare(name, run_value(run_metrics, name), base, tol))
    return CheckResult(rows)


def make_baseline(runs: dict | list[dict], description: str, previous: Baseline | None = None,
                  tolerance: float | None = None, sigmas: float = 3.0) -> dict:
    """A baseline dict from one run or several runs of the same experiment (seeds, machines), for --update.

    Keeps ``previous``'s metric selection, per-metric tolerances and (if ``description`` is empty) description;
    without ``previous``: ``DEFAULT_METRICS``. ``tolerance``, if given, is written for metrics with no tolerance of
    their own, which then no longer follow ``--tolerance``.

    With several runs the value is their mean, and the tolerance is at least ``sigmas`` times their standard
    deviation (ddof=1; written as ``runs_std`` with ``n_runs``). A single CPU run's ranking moves with the seed and
    the machine (CPU kernels round differently), so a tolerance below that spread fails on the next machine while
    nothing regressed. For n runs none lies more than (n-1)/sqrt(n) std from their mean, so each run recorded
    passes with ``sigmas`` >= that.
    """
    runs = [runs] if isinstance(runs, dict) else list(runs)
    if not runs:
        raise RegressionError("no runs to record a baseline from")
    first = runs[0]
    for other in runs[1:]:
        _check_comparable(other, baseline_from_dict(make_baseline(first, "", previous), "the first run"))
    metrics = {}
    for name in (previous.metrics if previous else DEFAULT_METRICS):
        values = [run_value(r, name) for r in runs]
        if not all(math.isfinite(v) for v in values):
            raise RegressionError(f"cannot record {name} as a baseline: a run's value is missing or null/NaN; "
                                  f"record from runs where it is defined, or drop {name} from the baseline")
        tol = previous.metrics[name].tolerance if previous and len(runs) == 1 else None
        tol = DEFAULT_TOLERANCES.get(name, tolerance) if tol is None else tol
        metrics[name] = {"value": sum(values) / len(values), "higher_is_better": name not in LOWER_IS_BETTER}
        if len(runs) > 1:
            std = math.sqrt(sum((v - metrics[name]["value"]) ** 2 for v in values) / (len(values) - 1))
            tol = max(tol if tol is not None else 0.05, sigmas * std)
            metrics[name].update(runs_std=std, n_runs=len(runs))
        if tol is not None:
            metrics[name]["tolerance"] = float(tol)
    provenance = [{k: (r.get("environment") or {})[k] for k in ("git_revision", "device_name", "torch", "seed")
                   if k in (r.get("environment") or {})} for r in runs]
    return {"format": FORMAT, "description": description or (previous.description if previous else ""),
            "ground_truth_query": _dig(first, "ground_truth.query", _RUN),
            "n_archs": int(_dig(first, "ranking.n_archs", _RUN)), "strategy": _strategy(first),
            "metrics": metrics, "recorded_from": provenance[0] if len(runs) == 1 else provenance}
