"""Compare finished runs: read run directories, build per-run and per-strategy tables, figures.

Everything here is pure except ``write_report``, which the CLI calls to write the report atomically.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import forgetting, plots
from .io import atomic_write, write_csv, write_text
from .metrics import kendall_tau

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

METRICS = ("kendall_tau", "spearman", "precision_top5pct", "regret_top1")
ESTIMATE_COLUMNS = ("arch", "estimate", "ground_truth")
PROGRESS_COLUMNS = ("progress", "kendall_tau")
PROBE_COLUMNS = ("step", "arch", "acc", "ground_truth", "trained")
DECAY_COLUMNS = ("trained_step", "arch", "lag", "step", "acc", "retrained")
# Columns from metrics.json blocks other than "ranking" (absent in runs that did not measure them, and in older
# runs): column -> (block, key path). A column appears in the tables when some run has its block.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mean_forgetting": ("forgetting", ("mean_forgetting",)),
    "final_probe_tau": ("forgetting", ("final_probe_tau",)),
    "space_size": ("shrink", ("space_size",)),
    "top1pct_retained": ("shrink", ("top1pct_retained",)),
    "top5pct_retained": ("shrink", ("top5pct_retained",)),
    "space_regret": ("shrink", ("space_regret",)),
    "op_score_tau": ("shrink", ("op_score_tau_first_round",)),
    "tau_in_space": ("shrink", ("ranking_in_space", "kendall_tau", "value")),
    "alpha_tau": ("alpha", ("ranking", "kendall_tau", "value")),
    "alpha_spearman": ("alpha", ("ranking", "spearman", "value")),
    "derived_acc": ("alpha", ("derived", "ground_truth")),
    "parameter_free": ("alpha", ("derived", "parameter_free_fraction")),
    "sharpness_last": ("alpha", ("sharpness", "last")),
    "seconds_per_arch": ("cost", ("seconds_per_arch",)),
}
SHRINK_LOG_COLUMNS = ("round", "epoch", "edge", "op", "score", "removed")
GROUP = ["strategy", "dataset", "query"]
SPREAD = "mean ± std over seeds"


class CompareError(ValueError):
    """A run directory cannot be compared (missing, unfinished or malformed)."""


@dataclass
class RunRecord:
    """One finished run. ``metrics``: ``{name: {"value", "ci_low", "ci_high"}}`` with NaN for null, plus n_archs."""

    path: Path
    strategy: str
    seed: int
    dataset: str
    query: str
    metrics: dict
    estimates: pd.DataFrame = field(repr=False)
    progress: pd.DataFrame | None = field(default=None, repr=False)
    probes: pd.DataFrame | None = field(default=None, repr=False)  # probes.csv (forgetting probes)
    decay: pd.DataFrame | None = field(default=None, repr=False)  # decay.csv (decay tracers)
    forgetting: dict | None = field(default=None, repr=False)  # metrics.json "forgetting"
    shrink: dict | None = field(default=None, repr=False)  # metrics.json "shrink" (search-space shrinking)
    shrink_log: pd.DataFrame | None = field(default=None, repr=False)  # shrink.csv
    alpha: dict | None = field(default=None, repr=False)  # metrics.json "alpha" (differentiable strategies)
    alpha_log: pd.DataFrame | None = field(default=None, repr=False)  # alpha.csv
    sharpness: pd.DataFrame | None = field(default=None, repr=False)  # sharpness.csv
    confidence: float = 0.95  # of the bootstrap CIs, from config.toml [metrics]
    cost: dict | None = field(default=None, repr=False)  # {"seconds_per_arch": ...}: see _cost

    @property
    def name(self) -> str:
        return self.path.name


# ---------------------------------------------------------------- reading

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompareError(f"{path} is not valid JSON ({exc}); the run may have been written by a broken tool") from exc


def _field(data: dict, dotted: str, where: Path):
    node = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise CompareError(f"{where} lacks '{dotted}'; expected a metrics.json written by `nb201-harness run`")
        node = node[key]
    return node


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _ranking(metrics: dict, where: Path) -> dict:
    ranking = _field(metrics, "ranking", where)
    out = {}
    for name, entry in ranking.items():
        if isinstance(entry, dict):
            out[name] = {k: _nan(entry.get(k)) for k in ("value", "ci_low", "ci_high")}
    for name in METRICS:
        if name not in out:
            raise CompareError(f"{where} lacks ranking metric '{name}'; it has {sorted(out)}")
    out["n_archs"] = int(_field(metrics, "ranking.n_archs", where))
    return out


def _read_csv(path: Path, columns, required: bool = True) -> pd.DataFrame | None:
    if not path.exists():
        if required:
            raise CompareError(f"{path} is missing; a finished run has estimates.csv next to metrics.json")
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CompareError(f"{path} is not a readable CSV file ({exc})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CompareError(f"{path} lacks columns {missing}; it has {list(frame.columns)}")
    for col in columns:  # an empty table (a run too short for any decay tracer) has no dtype to check
        if col != "arch" and len(frame) and not pd.api.types.is_numeric_dtype(frame[col]):
            raise CompareError(f"{path}: column '{col}' must be numeric")
    return frame


def _confidence(run_dir: Path) -> float:
    path = run_dir / "config.toml"
    if not path.exists():
        return 0.95  # the config default
    try:
        return float(tomllib.loads(path.read_text()).get("metrics", {}).get("confidence", 0.95))
    except (tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise CompareError(f"{path} is not a valid config ({exc})") from exc


def _cost(metrics: dict) -> dict | None:
    """Seconds per architecture of the run's estimator: an estimator run's own figure; for a supernet, its
    training plus estimation seconds over the architectures it estimated (the whole cost of its ranking)."""
    est = metrics.get("estimator") or {}
    if "seconds_per_arch" in est:
        return {"seconds_per_arch": est["seconds_per_arch"]}
    train, estimate = metrics.get("train") or {}, metrics.get("estimate") or {}
    if "seconds" in train and "seconds" in estimate and estimate.get("n_archs"):
        return {"seconds_per_arch": (train["seconds"] + estimate["seconds"]) / estimate["n_archs"]}
    return None


def load_run(path: str | Path) -> RunRecord:
    """Read a finished run directory (metrics.json, estimates.csv, config.toml; optional progress.csv,
    probes.csv and decay.csv)."""
    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run directory {path} does not exist" if not path.exists()
                           else f"{path} is not a directory; give the run directory that holds metrics.json")
    if not (path / "metrics.json").exists() and not (path / "config.toml").exists():
        raise CompareError(f"{path} has no metrics.json and no config.toml: it is not a run directory of this "
                           "harness; give the folder `nb201-harness run --out` wrote")
    if not (path / "metrics.json").exists():
        raise CompareError(f"{path} has no metrics.json: the run is unfinished (or crashed). Resume it with "
                           f"`nb201-harness run {path / 'config.toml'} --out {path}` or leave it out")
    where = path / "metrics.json"
    metrics = _read_json(where)
    strategy = metrics.get("strategy") or _field(metrics, "estimator.sampler.name", where)
    return RunRecord(
        path=path, strategy=str(strategy), seed=int(_field(metrics, "environment.seed", where)),
        dataset=str(_field(metrics, "ground_truth.dataset", where)),
        query=str(_field(metrics, "ground_truth.query", where)), metrics=_ranking(metrics, where),
        estimates=_read_csv(path / "estimates.csv", ESTIMATE_COLUMNS),
        progress=_read_csv(path / "progress.csv", PROGRESS_COLUMNS, required=False),
        probes=_read_csv(path / "probes.csv", PROBE_COLUMNS, required=False),
        decay=_read_csv(path / "decay.csv", DECAY_COLUMNS, required=False),
        forgetting=metrics.get("forgetting"), shrink=metrics.get("shrink"),
        shrink_log=_read_csv(path / "shrink.csv", SHRINK_LOG_COLUMNS, required=False), confidence=_confidence(path),
        alpha=metrics.get("alpha"), alpha_log=_read_csv(path / "alpha.csv", ("epoch", "parameter_free"), False),
        sharpness=_read_csv(path / "sharpness.csv", ("epoch", "eigenvalue"), required=False), cost=_cost(metrics))


# ---------------------------------------------------------------- tables

def _run_names(records: list[RunRecord]) -> list[str]:
    names = [r.name for r in records]
    if len(set(names)) < len(names):  # e.g. every run dir called "run": add the parent to tell them apart
        names = [f"{r.path.parent.name}/{r.name}" for r in records]
    return names


def _extra(record: RunRecord, column: str) -> float:
    block, path = EXTRAS[column]
    node = getattr(record, block)
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return _nan(node)


def _extra_columns(records: list[RunRecord]) -> list[str]:
    return [c for c, (block, _) in EXTRAS.items() if any(getattr(r, block) for r in records)]


def runs_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run: run, strategy, seed, dataset, query, n_archs, then ``{m}``, ``{m}_ci_low``, ``{m}_ci_high``,
    then the :data:`EXTRAS` columns of the blocks some run has (forgetting, shrinking; NaN for runs without)."""
    if not records:
        raise CompareError("no runs to compare")
    extras = _extra_columns(records)
    rows = []
    for name, r in zip(_run_names(records), records):
        row = {"run": name, "strategy": r.strategy, "seed": r.seed, "dataset": r.dataset, "query": r.query,
               "n_archs": r.metrics["n_archs"], "confidence": r.confidence}
        for m in METRICS:
            entry = r.metrics[m]
            row.update({m: entry["value"], f"{m}_ci_low": entry["ci_low"], f"{m}_ci_high": entry["ci_high"]})
        row.update({c: _extra(r, c) for c in extras})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(GROUP + ["seed", "run"], kind="stable", ignore_index=True)


def _summarise(group: pd.DataFrame) -> dict:
    n = len(group)
    row = {"n_runs": n, "seeds": ", ".join(str(s) for s in sorted(group["seed"]))}
    row["interval"] = f"{group['confidence'].iloc[0] * 100:g}% bootstrap CI" if n == 1 else SPREAD
    for m in METRICS:
        values = group[m].to_numpy(dtype=float)
        if n == 1:
            mean, std, lo, hi = values[0], math.nan, group[f"{m}_ci_low"].iloc[0], group[f"{m}_ci_high"].iloc[0]
        else:
            # NaN propagates: a seed whose ranking is undefined makes the mean undefined, not silently dropped
            mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
            lo, hi = mean - std, mean + std
        row.update({m: mean, f"{m}_lo": float(lo), f"{m}_hi": float(hi), f"{m}_std": std})
    for m in EXTRAS:  # no CI per run: one run shows its value, several mean ± std
        if m in group.columns:
            values = group[m].to_numpy(dtype=float)
            std = float(np.std(values, ddof=1)) if n > 1 else math.nan
            mean = float(np.mean(values))
            row.update({m: mean, f"{m}_lo": mean - std, f"{m}_hi": mean + std, f"{m}_std": std})
    return row


def strategy_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per (strategy, dataset, query): n_runs, seeds, interval, ``{m}``, ``{m}_lo``, ``{m}_hi``, ``{m}_std``.

    One run: the value and its bootstrap CI (std NaN). Several: mean, std (ddof=1) and mean ± std.
    """
    runs = runs_table(records)
    rows = [{**dict(zip(GROUP, key)), **_summarise(g)} for key, g in runs.groupby(GROUP, sort=True)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Markdown

def _num(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def _short(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}"


def _cell(row: pd.Series, m: str, lo: str, hi: str, std: str | None) -> str:
    if std is not None and math.isfinite(row[std]):
        return f"{_num(row[m])} ± {_num(row[std])}"
    if not (math.isfinite(row[lo]) or math.isfinite(row[hi])):
        return _num(row[m])
    return f"{_num(row[m])} [{_short(row[lo])}, {_short(row[hi])}]"


def _interval_columns(table: pd.DataFrame, m: str):
    if f"{m}_ci_low" in table.columns:
        return f"{m}_ci_low", f"{m}_ci_high", None
    if f"{m}_lo" in table.columns:
        return f"{m}_lo", f"{m}_hi", f"{m}_std" if f"{m}_std" in table.columns else None
    return None


def _plain(value) -> str:
    text = _num(value) if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``runs_table`` or ``strategy_table``.

    A metric with interval columns becomes one cell: ``0.512 [0.44, 0.58]`` (CI) or ``0.512 ± 0.031`` (std).
    """
    merged, helpers = {}, set()
    for m in table.columns:
        cols = _interval_columns(table, m)
        if cols is not None:
            merged[m] = cols
            helpers.update(c for c in cols if c)
    helpers.add("confidence")
    columns = [c for c in table.columns if c not in helpers]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in table.iterrows():
        cells = [_cell(row, c, *merged[c]) if c in merged else _plain(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- figures and report

def _labels(records: list[RunRecord]) -> list[str]:
    counts = pd.Series([r.strategy for r in records]).value_counts()
    labels = [r.strategy + (f" seed {r.seed}" if counts[r.strategy] > 1 else "") for r in records]
    clash = pd.Series(labels).duplicated(keep=False)  # same strategy and seed on several datasets, or a re-run
    return [f"{lab} ({name})" if dup else lab for lab, name, dup in zip(labels, _run_names(records), clash)]


def _by_strategy(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs grouped by (strategy, dataset, query), labelled by strategy (plus dataset when several)."""
    several = len({(r.dataset, r.query) for r in records}) > 1
    groups: dict[str, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: (r.strategy, r.dataset, r.query, r.seed)):
        groups.setdefault(r.strategy + (f" ({r.dataset}, {r.query})" if several else ""), []).append(r)
    return groups


def _seeds(runs: list[RunRecord]) -> str:
    return f" ({len(runs)} seeds)" if len(runs) > 1 else ""


def forgetting_tables(records: list[RunRecord]) -> dict[str, dict[str, pd.DataFrame]]:
    """Per strategy (seeds pooled) the data of the forgetting figures; only runs with probes.csv count.

    ``probe_acc``: step, arch, acc, ground_truth (mean over seeds); ``intervals``: interval, mean_drop,
    std_drop, n; ``decay``: lag, mean_drop, std_drop, n, retrained_fraction; ``probe_tau``: progress
    (step / last probe step), kendall_tau and, with several seeds, kendall_tau_lo/hi = mean -+ std.
    """
    out: dict[str, dict[str, pd.DataFrame]] = {"probe_acc": {}, "intervals": {}, "decay": {}, "probe_tau": {}}
    for label, runs in _by_strategy(records).items():
        runs = [r for r in runs if r.probes is not None]
        if not runs:
            continue
        label += _seeds(runs)
        probes = [r.probes for r in runs if not r.probes.empty]
        if probes:
            pooled = pd.concat(probes)
            out["probe_acc"][label] = pooled.groupby(["step", "arch"], as_index=False)[["acc", "ground_truth"]].mean()
            out["intervals"][label] = forgetting.aggregate_drops(
                pd.concat([forgetting.forgetting_pairs(p) for p in probes]), "interval")
            taus = []
            for p in probes:
                tau = forgetting.probe_tau(p)
                taus.append(tau.assign(progress=tau["step"] / tau["step"].max()))
            g = pd.concat(taus).groupby("progress")["kendall_tau"]
            curve = pd.DataFrame({"kendall_tau": g.mean()})
            if len(probes) > 1:
                curve["kendall_tau_lo"] = g.mean() - g.std(ddof=1)
                curve["kendall_tau_hi"] = g.mean() + g.std(ddof=1)
            out["probe_tau"][label] = curve.reset_index()
        decays = [forgetting.decay_drops(r.decay) for r in runs if r.decay is not None and not r.decay.empty]
        if decays:
            out["decay"][label] = forgetting.aggregate_drops(pd.concat(decays), "lag")
    return out


def figures(records: list[RunRecord]) -> dict[str, Figure]:
    """``correlations`` and ``scatter`` always; ``tau_vs_progress`` when some run has progress.csv;
    ``forgetting_probe_acc``, ``forgetting_drop`` and ``forgetting_probe_tau`` when some run has probes.csv;
    ``shrink_alive``, ``shrink_scores`` and ``shrink_retention`` when some run shrank its space (shrink.csv);
    ``alpha_search`` (derived architecture and sharpness per epoch) when some run is differentiable (alpha.csv)."""
    labels = _labels(records)
    styles = plots.Styles(sorted({r.strategy for r in records}))  # one colour and marker per strategy throughout
    figs = {"correlations": plots.bar_correlations(strategy_table(records)),
            "scatter": plots.scatter_grid({lab: r.estimates for lab, r in zip(labels, records)})}
    curves = {lab: r.progress for lab, r in zip(labels, records) if r.progress is not None}
    if curves:
        figs["tau_vs_progress"] = plots.tau_vs_progress(curves, styles=styles)
    tables = forgetting_tables(records)
    if tables["probe_acc"]:
        figs["forgetting_probe_acc"] = plots.probe_accuracy_grid(tables["probe_acc"])
    if tables["intervals"] or tables["decay"]:
        figs["forgetting_drop"] = plots.forgetting_curves(tables["intervals"], tables["decay"], styles)
    if tables["probe_tau"]:
        figs["forgetting_probe_tau"] = plots.tau_vs_progress(
            tables["probe_tau"], title="Probe ranking during supernet training (mean ± std over seeds)",
            ylabel="Kendall tau of probes with ground truth", styles=styles)
    logs = {label + (f" (seed {runs[0].seed})" if len(runs) > 1 else ""): runs[0].shrink_log
            for label, runs in _by_strategy(records).items()
            if runs[0].shrink_log is not None and not runs[0].shrink_log.empty}
    if logs:  # one run per strategy (its lowest seed): decisions differ between seeds, averaging would hide them
        figs["shrink_alive"] = plots.alive_ops_grid(logs)
        figs["shrink_scores"] = plots.op_score_trajectories(logs)
        figs["shrink_retention"] = plots.retention_bars(strategy_table(records))
    table = strategy_table(records)
    if "seconds_per_arch" in table.columns and table["seconds_per_arch"].notna().sum() >= 2:
        figs["tau_vs_cost"] = plots.tau_vs_cost(table)
    if len(_by_strategy(records)) >= 2:
        figs["rank_agreement"] = plots.rank_agreement(agreement_matrix(records))
    searched = {label: [{"alpha": r.alpha_log, "sharpness": r.sharpness} for r in runs]
                for label, runs in _by_strategy(records).items() if runs[0].alpha_log is not None}
    if searched:
        figs["alpha_search"] = plots.alpha_curves(searched, styles)
    return figs


def agreement_matrix(records: list[RunRecord]) -> pd.DataFrame:
    """Kendall tau between the estimates of every two strategies (each one's lowest-seed run) over the
    architectures both scored: how much two estimators agree with each other, not with the ground truth."""
    firsts = {label: runs[0].estimates.set_index("arch")["estimate"] for label, runs in _by_strategy(records).items()}
    names = list(firsts)
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for a in names:
        for b in names:
            both = pd.concat([firsts[a], firsts[b]], axis=1, join="inner").dropna()
            if len(both) >= 2:
                out.loc[a, b] = kendall_tau(both.iloc[:, 0].to_numpy(dtype=float), both.iloc[:, 1].to_numpy(dtype=float))
    return out


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def _figure_bytes(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150)
    return buf.getvalue()


EXPLAIN = {  # one sentence per column group, shown when the tables have it
    "mean_forgetting": "mean_forgetting: mean accuracy drop in points of a forgetting probe between consecutive probe "
                       "points at which it was not trained (positive = forgotten); final_probe_tau: Kendall tau of "
                       "the probes' supernet accuracy with ground truth at the end of training. ",
    "space_size": "space_size: architectures left after shrinking; top{1,5}pct_retained: fraction of the true top "
                  "1%/5% still in it; space_regret: global best minus best in the space (points); op_score_tau: the "
                  "rule's op scores against true op importance at round 1; tau_in_space: ranking within the space. ",
    "alpha_tau": "alpha_tau, alpha_spearman: the alpha-score estimator (sum of log-softmax(alpha) over the "
                 "architecture's ops) on the same architectures; derived_acc: true accuracy of the derived (argmax "
                 "alpha) architecture; parameter_free: its share of none/skip/pool edges; sharpness_last: largest "
                 "Hessian eigenvalue of the search loss w.r.t. alpha at the end. ",
}


def _summary_markdown(records: list[RunRecord]) -> str:
    runs = runs_table(records)
    notes = "".join(text for column, text in EXPLAIN.items() if column in runs.columns)
    return ("# Strategy comparison\n\n"
            f"{len(records)} runs. One run per strategy: value with its bootstrap CI over architectures; "
            f"several seeds: {SPREAD} (std with ddof=1). regret_top1 is in accuracy points. {notes}\n\n"
            "## Per strategy\n\n" + to_markdown(strategy_table(records)) + "\n## Per run\n\n" + to_markdown(runs))


def write_report(records: list[RunRecord], out_dir: str | Path) -> list[Path]:
    """Write compare.csv, summary.csv, summary.md and every figure as PNG and SVG (atomic); returns the paths."""
    out = Path(out_dir)
    paths = [write_csv(out / "compare.csv", runs_table(records)),
             write_csv(out / "summary.csv", strategy_table(records)),
             write_text(out / "summary.md", _summary_markdown(records))]
    for name, fig in figures(records).items():
        for fmt in ("png", "svg"):
            paths.append(write_bytes(out / f"{name}.{fmt}", _figure_bytes(fig, fmt)))
    return paths
