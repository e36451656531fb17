"""Figures for reports: data in, ``matplotlib.figure.Figure`` out; no file writes, no pyplot state.

Figures are built with ``Figure()`` directly (not ``plt.figure``), so they work headless and are
garbage-collected like any object; the caller saves them (``fig.savefig(buf, format="png")``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .metrics import kendall_tau, top_k_count

TITLE_PT, LABEL_PT, TICK_PT = 12, 11, 10
COLORS = {"kendall_tau": "#1f77b4", "spearman": "#ff7f0e"}
NAMES = {"kendall_tau": "Kendall tau", "spearman": "Spearman rho"}
OTHER, TOP = "#9e9e9e", "#d62728"
# tab20's strong shades first, then its light ones: 20 colours; with a marker each, 20 x 10 distinct styles
PALETTE = tuple(colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


class Styles:
    """One colour and marker per strategy, the same in every figure of a report: ``styles(label)`` gives the
    style of the strategy a label starts with (``"uniform seed 1"`` -> ``"uniform"``'s), a new one for a new
    strategy. Strategy i takes colour i of :data:`PALETTE` and marker i + i // 20 of :data:`MARKERS` (both
    cycled), so colours stay distinct up to 20 strategies and (colour, marker) pairs up to 20 x 10."""

    def __init__(self, strategies=()):
        self.styles: dict[str, dict] = {}
        for name in strategies:
            self(name)

    def __call__(self, label: str) -> dict:
        known = [k for k in self.styles if label == k or label.startswith(k + " ")]
        if known:
            return self.styles[max(known, key=len)]
        i = len(self.styles)
        self.styles[label] = {"color": PALETTE[i % len(PALETTE)],
                              "marker": MARKERS[(i + i // len(PALETTE)) % len(MARKERS)]}
        return self.styles[label]


def _empty(ax: Axes, why: str) -> None:
    """Say in the panel why it has nothing to show."""
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=TICK_PT, color="#555555",
            wrap=True)


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    ax.grid(True, axis="y", alpha=0.3)


def _require(data, what: str) -> None:
    if len(data) == 0:
        raise ValueError(f"nothing to plot: {what} is empty")


def _require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")


def _bar_labels(table: pd.DataFrame) -> list[str]:
    labels = table["strategy"].astype(str).str.replace("+", "\n+", regex=False)  # long combined names wrap
    for col in ("dataset", "query"):  # rows of one strategy on several datasets need telling apart
        if col in table.columns and table[col].nunique() > 1:
            labels = labels + "\n" + table[col].astype(str)
    if "n_runs" in table.columns:  # says which bars carry a bootstrap CI and which a spread over seeds
        labels = labels + table["n_runs"].map(lambda n: "\n(1 run)" if n == 1 else f"\n({n} seeds)")
    return list(labels)


def _error_bars(value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    # a percentile CI need not bracket the point value; clip so matplotlib gets non-negative lengths
    return np.vstack([np.clip(value - lo, 0, None), np.clip(hi - value, 0, None)])


def _y_limits(table: pd.DataFrame, metrics) -> tuple[float, float]:
    vals = table[[f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")]].to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    low, high = min(0.0, finite.min(initial=0.0)), max(0.0, finite.max(initial=0.0))
    pad = max(0.05, 0.08 * (high - low))
    return max(low - pad, -1.05), min(high + pad, 1.05)


def _interval_note(table: pd.DataFrame) -> str:
    if "interval" not in table.columns:
        return ""
    return "error bars:\n" + "\n".join(sorted(table["interval"].dropna().astype(str).unique()))


def bar_correlations(table: pd.DataFrame) -> Figure:
    """Grouped bars of Kendall tau and Spearman per strategy; error bars span ``{m}_lo`` .. ``{m}_hi``.

    ``table``: one row per strategy (``compare.strategy_table``), columns ``strategy`` and
    ``kendall_tau``/``spearman`` with ``_lo``/``_hi``. A NaN value draws no bar and is marked "n/a".
    """
    metrics = ("kendall_tau", "spearman")
    _require(table, "the strategy table")
    _require_columns(table, ["strategy"] + [f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")],
                     "the strategy table")
    n, width = len(table), 0.38
    fig = Figure(figsize=(max(6.0, 1.3 * n + 4.0), 4.2), layout="tight")
    ax = fig.add_subplot()
    x = np.arange(n)
    for i, m in enumerate(metrics):
        value = table[m].to_numpy(dtype=float)
        err = _error_bars(value, table[f"{m}_lo"].to_numpy(dtype=float), table[f"{m}_hi"].to_numpy(dtype=float))
        pos = x + (i - 0.5) * width
        ax.bar(pos, np.nan_to_num(value), width, yerr=err, capsize=4, color=COLORS[m], label=NAMES[m],
               error_kw={"elinewidth": 1.2, "ecolor": "#333333"})
        for p in pos[~np.isfinite(value)]:
            ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=TICK_PT, rotation=90)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, _bar_labels(table))
    ax.set_ylim(*_y_limits(table, metrics))
    _style(ax, "Ranking correlation with ground truth per strategy", "sampling strategy",
           "rank correlation with ground truth")
    note = _interval_note(table)
    # outside the axes, so it never hides a bar or an error bar; the tight layout makes room for it
    ax.legend(fontsize=TICK_PT, title=note or None, title_fontsize=TICK_PT, alignment="left",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _finite_pairs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    est, gt = frame["estimate"].to_numpy(dtype=float), frame["ground_truth"].to_numpy(dtype=float)
    keep = np.isfinite(est) & np.isfinite(gt)
    return est[keep], gt[keep]


def _tau_text(est: np.ndarray, gt: np.ndarray) -> str:
    tau = kendall_tau(est, gt) if len(est) >= 2 else float("nan")
    return f"tau = {tau:.3f}" if np.isfinite(tau) else "tau = n/a"


def robust_limits(values: np.ndarray, q: float = 0.02, pad: float = 0.08) -> tuple[float, float]:
    """Axis limits that hold the data inside Tukey's fences (1.5 interquartile ranges beyond the quartiles), and
    at least the q and 1-q quantiles, plus ``pad`` of the span. A lone architecture at 10% no longer squeezes the
    rest into a sliver; points outside are drawn at the edge (:func:`_scatter_panel`)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return 0.0, 1.0
    q1, q3 = np.quantile(v, [0.25, 0.75])
    inside = v[(v >= q1 - 1.5 * (q3 - q1)) & (v <= q3 + 1.5 * (q3 - q1))]
    lo = min(np.quantile(v, q), inside.min())
    hi = max(np.quantile(v, 1 - q), inside.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def _scatter_panel(ax: Axes, label: str, frame: pd.DataFrame, top_percent: float) -> None:
    est, gt = _finite_pairs(frame)
    _style(ax, f"{label}  ({_tau_text(est, gt)})", "ground-truth accuracy (%)", "supernet estimate (%)")
    ax.grid(True, axis="x", alpha=0.3)
    if not len(gt):
        _empty(ax, "no architecture has both an estimate and a ground truth")
        return
    top = np.zeros(len(gt), dtype=bool)
    top[np.argsort(-gt, kind="stable")[:top_k_count(len(gt), top_percent)]] = True
    (x0, x1), (y0, y1) = robust_limits(gt), robust_limits(est)
    x, y = np.clip(gt, x0, x1), np.clip(est, y0, y1)
    out = (x != gt) | (y != est)
    # rasterized points keep the SVG small for all 15,625 architectures; axes and text stay vector
    ax.scatter(x[~top & ~out], y[~top & ~out], s=10, color=OTHER, alpha=0.6, linewidths=0, rasterized=True,
               label="other architectures")
    ax.scatter(x[top & ~out], y[top & ~out], s=14, color=TOP, alpha=0.9, linewidths=0, rasterized=True,
               label=f"ground-truth top {top_percent:g}% ({top.sum()})")
    if out.any():
        ax.scatter(x[out], y[out], s=28, marker="D", facecolors="none", edgecolors=np.where(top[out], TOP, "#444444"),
                   linewidths=1.0, label=f"outside the axes, drawn at the edge ({out.sum()})")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.legend(fontsize=TICK_PT, loc="best", framealpha=0.8)


def scatter_grid(runs: dict[str, pd.DataFrame], top_percent: float = 10) -> Figure:
    """One scatter panel per run: x = ground-truth accuracy, y = supernet estimate (both %).

    ``runs``: label -> frame with columns ``estimate`` and ``ground_truth`` (one row per architecture).
    The ground-truth top-``top_percent``% are drawn in red; rows with NaN are left out.
    """
    _require(runs, "the run dict")
    for label, frame in runs.items():
        _require_columns(frame, ["estimate", "ground_truth"], f"run {label!r}")
    ncols = min(3, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 4.0 * nrows), layout="tight")
    for i, (label, frame) in enumerate(runs.items()):
        _scatter_panel(fig.add_subplot(nrows, ncols, i + 1), label, frame, top_percent)
    return fig


def tau_vs_progress(curves: dict[str, pd.DataFrame], title: str = "Ranking correlation during supernet training",
                    ylabel: str = "Kendall tau with ground truth (probe set)", styles: Styles | None = None) -> Figure:
    """Kendall tau on a probe set against training progress, one line per run (or per strategy).

    ``curves``: label -> frame with ``progress`` (0..1) and ``kendall_tau``; optional
    ``kendall_tau_lo``/``kendall_tau_hi`` are drawn as a shaded band. NaN points leave a gap.
    """
    _require(curves, "the curve dict")
    styles = styles or Styles()
    fig = Figure(figsize=(6.4, 4.2), layout="tight")
    ax = fig.add_subplot()
    for label, frame in curves.items():
        _require_columns(frame, ["progress", "kendall_tau"], f"curve {label!r}")
        frame = frame.sort_values("progress")
        x = frame["progress"].to_numpy(dtype=float)
        (line,) = ax.plot(x, frame["kendall_tau"].to_numpy(dtype=float), markersize=4, label=label, **styles(label))
        if {"kendall_tau_lo", "kendall_tau_hi"} <= set(frame.columns):
            ax.fill_between(x, frame["kendall_tau_lo"].to_numpy(dtype=float),
                            frame["kendall_tau_hi"].to_numpy(dtype=float), color=line.get_color(), alpha=0.2,
                            linewidth=0)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(0, 1.02)  # a little room so the point at progress 1.0 is not cut in half
    _style(ax, title, "training progress (fraction of steps)", ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=TICK_PT - (2 if len(curves) > 8 else 0), loc="best", ncols=1 + len(curves) // 9)
    return fig


def probe_accuracy_grid(panels: dict[str, pd.DataFrame], cmap: str = "viridis") -> Figure:
    """Each probe architecture's accuracy with the shared weights over training steps, one panel per strategy.

    ``panels``: label -> frame with ``step``, ``arch``, ``acc`` (%) and ``ground_truth`` (%), one row per
    probe and step (seeds already averaged). A probe's line is coloured by its ground-truth accuracy; the
    black line is the mean over probes. Dips in a line are forgetting; rises without training are transfer.
    """
    _require(panels, "the panel dict")
    for label, frame in panels.items():
        _require_columns(frame, ["step", "arch", "acc", "ground_truth"], f"probes of {label!r}")
    truth = np.concatenate([f["ground_truth"].to_numpy(dtype=float) for f in panels.values()])
    truth = truth[np.isfinite(truth)]
    norm = Normalize(*(truth.min(), truth.max()) if len(truth) else (0.0, 100.0))
    colours = colormaps[cmap]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.6 * ncols + 1.2, 3.8 * nrows), layout="constrained")
    axes = []
    for i, (label, frame) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        axes.append(ax)
        for _, rows in frame.sort_values("step").groupby("arch", sort=False):
            ax.plot(rows["step"], rows["acc"], linewidth=1.0, alpha=0.85,
                    color=colours(norm(float(rows["ground_truth"].iloc[0]))))
        mean = frame.groupby("step")["acc"].mean()
        ax.plot(mean.index, mean.to_numpy(), color="black", linewidth=2.2, label="mean over probes")
        _style(ax, f"{label} ({frame['arch'].nunique()} probes)", "training step", "probe accuracy (%)")
        ax.legend(fontsize=TICK_PT, loc="lower right")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=colours), ax=axes, shrink=0.9)
    bar.set_label("probe's ground-truth accuracy (%)", fontsize=LABEL_PT)
    fig.suptitle("Probe architectures during supernet training (shared weights)", fontsize=TITLE_PT)
    return fig


def _drop_panel(ax: Axes, curves: dict[str, pd.DataFrame], by: str, styles: Styles, why: str) -> None:
    if not curves:
        _empty(ax, why)
    for label, frame in curves.items():
        _require_columns(frame, [by, "mean_drop", "std_drop", "n"], f"curve {label!r}")
        frame = frame.sort_values(by)
        x, y = frame[by].to_numpy(dtype=float), frame["mean_drop"].to_numpy(dtype=float)
        sem = frame["std_drop"].to_numpy(dtype=float) / np.sqrt(np.maximum(frame["n"].to_numpy(dtype=float), 1))
        (line,) = ax.plot(x, y, markersize=4, label=label, **styles(label))
        ax.fill_between(x, y - np.nan_to_num(sem), y + np.nan_to_num(sem), color=line.get_color(), alpha=0.15,
                        linewidth=0)
    ax.axhline(0, color="black", linewidth=0.8)
    if curves:
        ax.set_xscale("log")
    ax.grid(True, axis="x", alpha=0.3)


def forgetting_curves(intervals: dict[str, pd.DataFrame], decay: dict[str, pd.DataFrame],
                      styles: Styles | None = None) -> Figure:
    """Forgetting against time, one line per strategy; bands are +- one standard error.

    Left, ``intervals``: label -> frame with ``interval`` (steps), ``mean_drop``, ``std_drop``, ``n``: a probe's
    accuracy drop over an interval in which it was not trained. Right, ``decay``: label -> frame with ``lag``
    (steps) and the same columns: an architecture's drop from right after it was trained to ``lag`` steps
    later. Drops are in accuracy points, positive = forgotten. Either dict may be empty, not both.
    """
    if not intervals and not decay:
        raise ValueError("nothing to plot: no forgetting intervals and no decay curves")
    styles = styles or Styles()
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _drop_panel(left, intervals, "interval", styles, "no probe intervals: no run had forgetting probes "
                "([forgetting] probes = 0)")
    _style(left, "Probes: drop while not trained", "interval without training the probe (steps, log)",
           "accuracy drop (points; + = forgotten)")
    _drop_panel(right, decay, "lag", styles, "no decay curves: no run had decay tracers "
                "([forgetting] decay_tracers = 0)")
    _style(right, "Just-trained architecture: decay", "steps after it was trained (log)",
           "accuracy drop (points; + = forgotten)")
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    handles, labels = (left if intervals else right).get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=TICK_PT, loc="outside right center")
    fig.suptitle("Multi-model forgetting in the shared weights", fontsize=TITLE_PT)
    return fig


SHORT_OPS = ("none", "skip", "1x1 conv", "3x3 conv", "3x3 pool")  # NB201's ops, in NB201 order
EDGE_NAMES = ("0->1", "0->2", "1->2", "0->3", "1->3", "2->3")


def _grid(fig: Figure, n: int, ncols: int = 3) -> list[Axes]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    return [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]


def alive_ops_grid(logs: dict[str, pd.DataFrame], cmap: str = "plasma") -> Figure:
    """Which ops each shrinking run removed and when: one heat-map per label, edges x ops. A cell shows the
    epoch at which the op was removed (coloured by it) or "alive" if it survived to the end.

    ``logs``: label -> a run's ``shrink.csv`` (``round``, ``epoch``, ``edge``, ``op``, ``removed``).
    """
    _require(logs, "the shrink-log dict")
    for label, log in logs.items():
        _require_columns(log, ["epoch", "edge", "op", "removed"], f"shrink log of {label!r}")
    removed = pd.concat([log[log["removed"].astype(bool)] for log in logs.values()])
    norm = Normalize(*(removed["epoch"].min(), removed["epoch"].max()) if len(removed) else (0.0, 1.0))
    colours = colormaps[cmap]
    ncols = min(3, len(logs))
    fig = Figure(figsize=(4.4 * ncols + 1.2, 3.6 * math.ceil(len(logs) / ncols)), layout="constrained")
    axes = _grid(fig, len(logs))
    for ax, (label, log) in zip(axes, logs.items()):
        grid = np.full((len(EDGE_NAMES), len(SHORT_OPS)), np.nan)
        for _, r in log[log["removed"].astype(bool)].iterrows():
            grid[int(r["edge"]), int(r["op"])] = float(r["epoch"])
        ax.imshow(np.ma.masked_invalid(grid), cmap=colours, norm=norm, aspect="auto")
        ax.set_facecolor("#d9f0d3")  # alive cells show the background
        for (e, o), epoch in np.ndenumerate(grid):
            text = "alive" if math.isnan(epoch) else f"{epoch:.1f}"
            dark = not math.isnan(epoch) and norm(epoch) < 0.6
            ax.text(o, e, text, ha="center", va="center", fontsize=TICK_PT,
                    color="white" if dark else "black", fontweight="bold" if math.isnan(epoch) else "normal")
        ax.set_xticks(range(len(SHORT_OPS)), SHORT_OPS, rotation=30)
        ax.set_yticks(range(len(EDGE_NAMES)), EDGE_NAMES)
        _style(ax, label, "operation", "edge (node -> node)")
        ax.grid(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=colours), ax=axes, shrink=0.9)
    bar.set_label("removed at epoch", fontsize=LABEL_PT)
    fig.suptitle("Search-space shrinking: when each op was removed (green = alive at the end)", fontsize=TITLE_PT)
    return fig


def op_score_trajectories(logs: dict[str, pd.DataFrame]) -> Figure:
    """Each alive op's score at every shrink round, one row of panels per label and one panel per edge; an x
    marks the round that removed the op. Scores are in the rule's own unit (angle: radians; accuracy: %;
    magnitude: weight norm), so compare lines within a row.
    """
    _require(logs, "the shrink-log dict")
    fig = Figure(figsize=(2.9 * len(EDGE_NAMES) + 1.6, 2.9 * len(logs) + 0.6), layout="constrained")
    rows = fig.subfigures(len(logs), 1, squeeze=False)[:, 0]
    for sub, (label, log) in zip(rows, logs.items()):
        _require_columns(log, ["epoch", "edge", "op", "score", "removed"], f"shrink log of {label!r}")
        sub.suptitle(label, fontsize=TITLE_PT)
        for e, name in enumerate(EDGE_NAMES):
            ax = sub.add_subplot(1, len(EDGE_NAMES), e + 1)
            for o, op_name in enumerate(SHORT_OPS):
                op_rows = log[(log["edge"] == e) & (log["op"] == o)].sort_values("epoch")
                if not op_rows.empty:
                    ax.plot(op_rows["epoch"], op_rows["score"], marker="o", markersize=3, color=f"C{o}")
                    gone = op_rows[op_rows["removed"].astype(bool)]
                    ax.plot(gone["epoch"], gone["score"], "x", color="black", markersize=8, markeredgewidth=2)
            _style(ax, f"edge {name}", "epoch", "op score")
            ax.grid(True, axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", color=f"C{o}", label=n) for o, n in enumerate(SHORT_OPS)]
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", markeredgewidth=2, label="removed"))
    fig.legend(handles=handles, fontsize=TICK_PT, loc="outside right center")
    fig.suptitle("Op scores at each shrink round (higher = more important; x = removed)", fontsize=TITLE_PT)
    return fig


def retention_bars(table: pd.DataFrame) -> Figure:
    """Per strategy that shrank: the fraction of the true top-1% and top-5% architectures still in the final
    space (left) and the space regret in accuracy points (right); error bars ``_lo`` .. ``_hi``.

    ``table``: ``compare.strategy_table`` rows; strategies without shrinking (NaN) are left out.
    """
    cols = ("top1pct_retained", "top5pct_retained", "space_regret")
    _require_columns(table, ["strategy"] + [f"{c}{s}" for c in cols for s in ("", "_lo", "_hi")], "the strategy table")
    table = table[table["top1pct_retained"].notna()].reset_index(drop=True)
    _require(table, "the strategies that shrank")
    fig = Figure(figsize=(max(9.0, 2.2 * len(table) + 4.0), 4.4), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    x, width = np.arange(len(table)), 0.38
    for i, (c, name) in enumerate((("top1pct_retained", "true top 1%"), ("top5pct_retained", "true top 5%"))):
        v = table[c].to_numpy(dtype=float)
        err = _error_bars(v, table[f"{c}_lo"].to_numpy(dtype=float), table[f"{c}_hi"].to_numpy(dtype=float))
        left.bar(x + (i - 0.5) * width, np.nan_to_num(v), width, yerr=np.nan_to_num(err), capsize=4,
                 label=name, color=f"C{i + 2}")
    if "space_size" in table.columns:  # what a space of that size drawn at random (ops per edge) keeps on average
        share = float(table["space_size"].median()) / 15625
        left.axhline(share, color="black", linestyle="--", linewidth=1, label=f"random space of that size ({share:.1%})")
    left.set_ylim(0, 1.05)
    left.set_xticks(x, _bar_labels(table))
    _style(left, "Top architectures kept in the final space", "strategy", "fraction still in the space")
    left.legend(fontsize=TICK_PT)
    v = table["space_regret"].to_numpy(dtype=float)
    err = _error_bars(v, table["space_regret_lo"].to_numpy(dtype=float), table["space_regret_hi"].to_numpy(dtype=float))
    right.bar(x, np.nan_to_num(v), 0.55, yerr=np.nan_to_num(err), capsize=4, color="C4")
    right.set_xticks(x, _bar_labels(table))
    right.set_ylim(bottom=0)  # regret cannot be negative; a mean - std below 0 is cut off
    _style(right, "Space regret: global best minus best in the space", "strategy", "accuracy points")
    if "interval" in table.columns:
        fig.suptitle(f"Quality of the shrunk space ({_interval_note(table).replace(chr(10), ' ')})", fontsize=TITLE_PT)
    return fig


ALPHA_PANELS = (("ground_truth", "alpha", "True accuracy of the derived architecture", "NB201 accuracy (%)",
                 "no data: no derived architecture is in the ground-truth table"),
                ("parameter_free", "alpha", "Parameter-free ops in the derived architecture",
                 "share of edges (none, skip, pool)", "no data: no alpha was recorded"),
                ("eigenvalue", "sharpness", "Sharpness of the search loss w.r.t. alpha",
                 "largest Hessian eigenvalue", "no data: sharpness was not measured\n([search] sharpness_every = 0)"))


def alpha_curves(runs: dict[str, list[dict[str, pd.DataFrame | None]]], styles: Styles | None = None) -> Figure:
    """Differentiable search during training, one line per strategy (mean over its seeds, band = min..max):
    the derived architecture's true accuracy, its parameter-free share (DARTS's collapse) and the sharpness.

    ``runs``: label -> one dict per seed with ``alpha`` (alpha.csv: epoch, ground_truth, parameter_free) and
    ``sharpness`` (sharpness.csv: epoch, eigenvalue; None when not measured). Seeds share the schedule."""
    _require(runs, "the run dict")
    styles = styles or Styles()
    fig = Figure(figsize=(15, 4.2), layout="tight")
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for ax, (column, source, title, ylabel, why) in zip(axes, ALPHA_PANELS):
        for label, seeds in runs.items():
            frames = [s[source] for s in seeds if s.get(source) is not None and len(s[source])]
            if not frames:
                continue
            for f in frames:
                _require_columns(f, ["epoch", column], f"{source} of {label!r}")
            table = pd.concat([f.set_index("epoch")[column].rename(i) for i, f in enumerate(frames)], axis=1)
            table = table.sort_index().astype(float)
            if not table.notna().any().any():
                continue
            x = table.index.to_numpy(dtype=float)
            (line,) = ax.plot(x, table.mean(axis=1).to_numpy(), markersize=3, **styles(label),
                              label=f"{label} ({len(frames)} seed{'s' if len(frames) > 1 else ''})")
            if len(frames) > 1:
                ax.fill_between(x, table.min(axis=1).to_numpy(), table.max(axis=1).to_numpy(),
                                color=line.get_color(), alpha=0.15, linewidth=0)
        _style(ax, title, "epoch", ylabel)
        ax.grid(True, axis="x", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=TICK_PT - 1, loc="best")
        else:
            _empty(ax, why)
    return fig


def tau_vs_cost(table: pd.DataFrame) -> Figure:
    """Kendall tau (with its interval) against seconds per architecture (log scale), one point per strategy:
    what a ranking costs. ``table``: ``compare.strategy_table`` with ``seconds_per_arch``."""
    _require_columns(table, ["strategy", "kendall_tau", "kendall_tau_lo", "kendall_tau_hi", "seconds_per_arch"],
                     "the strategy table")
    rows = table[np.isfinite(table["seconds_per_arch"].to_numpy(dtype=float))]
    fig = Figure(figsize=(7.0, 4.6), layout="tight")
    ax = fig.add_subplot()
    cost = np.maximum(rows["seconds_per_arch"].to_numpy(dtype=float), 1e-6)  # a table lookup costs ~0 s
    tau = rows["kendall_tau"].to_numpy(dtype=float)
    err = _error_bars(tau, rows["kendall_tau_lo"].to_numpy(dtype=float), rows["kendall_tau_hi"].to_numpy(dtype=float))
    ax.errorbar(cost, tau, yerr=err, fmt="o", capsize=3, color=COLORS["kendall_tau"])
    for c, t, name in zip(cost, tau, rows["strategy"]):
        ax.annotate(name, (c, t), textcoords="offset points", xytext=(4, 4), fontsize=TICK_PT)
    ax.set_xscale("log")
    ax.axhline(0, color="black", linewidth=0.8)
    _style(ax, "Ranking quality against cost", "seconds per architecture (log; supernet: training + estimation)",
           "Kendall tau with ground truth")
    return fig


def rank_agreement(matrix: pd.DataFrame, cmap: str = "RdBu_r") -> Figure:
    """Heatmap of Kendall tau between the estimates of every two strategies (``compare.agreement_matrix``)."""
    _require(matrix, "the agreement matrix")
    n = len(matrix)
    fig = Figure(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n), layout="tight")
    ax = fig.add_subplot()
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap=cmap, vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            v = matrix.iat[i, j]
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=TICK_PT - 1)
    ax.set_xticks(range(n), matrix.columns, rotation=60, ha="right")
    ax.set_yticks(range(n), matrix.index)
    fig.colorbar(image, ax=ax, label="Kendall tau between estimates")
    ax.set_title("Rank agreement between estimators")
    return fig
