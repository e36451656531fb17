import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine, TightLayoutEngine
from matplotlib.text import Text

from harness import plots
from harness.metrics import kendall_tau, top_k_count


def _render(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def _check_readable(fig: Figure) -> None:
    """Renders, keeps a tight (or constrained) layout, titles and labels every axes (a colour bar: its label),
    and no visible text under 10pt."""
    assert _render(fig).startswith(b"\x89PNG")
    assert isinstance(fig.get_layout_engine(), (TightLayoutEngine, ConstrainedLayoutEngine))
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            assert ax.get_ylabel()
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert texts and min(t.get_fontsize() for t in texts) >= 10


def _table(rows) -> pd.DataFrame:
    cols = ["strategy", "kendall_tau", "kendall_tau_lo", "kendall_tau_hi", "spearman", "spearman_lo", "spearman_hi"]
    return pd.DataFrame(rows, columns=cols)


def _frame(n=50, seed=0, noise=5.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(40, 94, n)
    return pd.DataFrame({"estimate": 0.3 * gt + rng.normal(0, noise, n), "ground_truth": gt})


def test_bar_correlations_draws_two_bars_per_strategy_with_error_bars():
    table = _table([["uniform", 0.5, 0.4, 0.6, 0.7, 0.6, 0.8],
                    ["fairnas", 0.3, 0.2, 0.35, 0.45, 0.4, 0.5],
                    ["worse", -0.2, -0.35, -0.1, -0.3, -0.45, -0.2]])
    fig = plots.bar_correlations(table)
    (ax,) = fig.axes
    assert len(ax.containers) >= 2
    bars = [p for c in ax.containers if hasattr(c, "patches") for p in c.patches]
    assert len(bars) == 6
    heights = sorted(round(b.get_height(), 6) for b in bars)
    assert heights == sorted([0.5, 0.3, -0.2, 0.7, 0.45, -0.3])
    lo, hi = ax.get_ylim()
    assert lo <= -0.45 and hi >= 0.8  # negative bars and their error bars are in view, 0 too
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.lines)  # the zero line
    assert ax.get_ylabel() == "rank correlation with ground truth"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["uniform", "fairnas", "worse"]
    _check_readable(fig)


def test_bar_correlations_marks_nan_and_handles_a_single_strategy():
    table = _table([["collapsed", math.nan, math.nan, math.nan, math.nan, math.nan, math.nan]])
    fig = plots.bar_correlations(table)
    (ax,) = fig.axes
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 2
    lo, hi = ax.get_ylim()
    assert lo < 0 < hi
    _check_readable(fig)


def test_bar_correlations_rejects_a_table_without_ci_columns():
    with pytest.raises(ValueError, match="kendall_tau_lo"):
        plots.bar_correlations(pd.DataFrame({"strategy": ["a"], "kendall_tau": [0.1], "spearman": [0.2]}))


def test_scatter_grid_has_a_panel_per_run_and_highlights_the_true_top_percent():
    runs = {"uniform seed 0": _frame(50, 0), "uniform seed 1": _frame(50, 1), "fairnas": _frame(80, 2),
            "spos": _frame(30, 3)}
    fig = plots.scatter_grid(runs, top_percent=10)
    assert len(fig.axes) == 4
    for ax, (label, frame) in zip(fig.axes, runs.items()):
        other, top = [c for c in ax.collections if isinstance(c, PathCollection)]
        k = top_k_count(len(frame), 10)
        assert len(top.get_offsets()) == k and len(other.get_offsets()) == len(frame) - k
        # the highlighted points are exactly the k best by ground truth
        assert sorted(top.get_offsets()[:, 0]) == sorted(frame["ground_truth"].nlargest(k))
        tau = kendall_tau(frame["estimate"], frame["ground_truth"])
        assert ax.get_title() == f"{label}  (tau = {tau:.3f})"
        assert ax.get_xlabel() == "ground-truth accuracy (%)" and ax.get_ylabel() == "supernet estimate (%)"
        assert "top 10%" in ax.get_legend().get_texts()[1].get_text()
    _check_readable(fig)


def test_scatter_grid_handles_a_single_run_with_nan_and_constant_estimates():
    frame = _frame(40)
    frame["estimate"] = 10.0  # a collapsed supernet: tau undefined
    frame.loc[3, "ground_truth"] = math.nan
    fig = plots.scatter_grid({"collapsed": frame})
    (ax,) = fig.axes
    assert ax.get_title() == "collapsed  (tau = n/a)"
    other, top = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(other.get_offsets()) + len(top.get_offsets()) == 39  # the NaN row is left out
    _check_readable(fig)


def test_tau_vs_progress_draws_a_line_per_run_and_a_band_when_given():
    p = np.linspace(0.1, 1.0, 10)
    curves = {"uniform": pd.DataFrame({"progress": p, "kendall_tau": 0.6 * p,
                                       "kendall_tau_lo": 0.6 * p - 0.1, "kendall_tau_hi": 0.6 * p + 0.1}),
              "fairnas": pd.DataFrame({"progress": p[::-1], "kendall_tau": np.r_[np.nan, 0.5 * p[1:]]})}
    fig = plots.tau_vs_progress(curves)
    (ax,) = fig.axes
    runs = [line for line in ax.lines if line.get_label() in curves]
    assert [line.get_label() for line in runs] == ["uniform", "fairnas"]
    assert np.all(np.diff(runs[1].get_xdata()) > 0)  # sorted by progress
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # only uniform has a band
    assert ax.get_xlabel() == "training progress (fraction of steps)"
    assert ax.get_xlim()[0] == 0 and 1 <= ax.get_xlim()[1] < 1.05
    _check_readable(fig)


def test_tau_vs_progress_single_point_and_missing_column():
    fig = plots.tau_vs_progress({"only": pd.DataFrame({"progress": [1.0], "kendall_tau": [math.nan]})})
    _check_readable(fig)
    with pytest.raises(ValueError, match="kendall_tau"):
        plots.tau_vs_progress({"bad": pd.DataFrame({"progress": [0.5]})})
    with pytest.raises(ValueError, match="empty"):
        plots.tau_vs_progress({})


def test_plots_leave_no_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.scatter_grid({"a": _frame()})
    plots.bar_correlations(_table([["a", 0.1, 0.0, 0.2, 0.1, 0.0, 0.2]]))
    assert plt.get_fignums() == before


def _probes(n_probes=4, steps=(10, 20, 30), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"step": s, "arch": f"a{i}", "acc": 30 + 10 * i + rng.normal(0, 2), "ground_truth": 60 + 5 * i}
            for s in steps for i in range(n_probes)]
    return pd.DataFrame(rows)


def test_probe_accuracy_grid_draws_a_line_per_probe_plus_the_mean_per_panel():
    fig = plots.probe_accuracy_grid({"uniform": _probes(), "fairnas": _probes(3, seed=1)})
    panels = [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]
    assert [ax.get_title() for ax in panels] == ["uniform (4 probes)", "fairnas (3 probes)"]
    assert [len(ax.lines) for ax in panels] == [4 + 1, 3 + 1]
    mean = [line for line in panels[0].lines if line.get_label() == "mean over probes"][0]
    expected = _probes().groupby("step")["acc"].mean()
    assert list(mean.get_ydata()) == pytest.approx(list(expected))
    # probes are coloured by ground truth: the best and the worst probe get different colours
    colours = {tuple(line.get_color()) for line in panels[0].lines if line is not mean}
    assert len(colours) == 4
    assert sum(hasattr(ax, "_colorbar") for ax in fig.axes) == 1
    _check_readable(fig)
    with pytest.raises(ValueError, match="ground_truth"):
        plots.probe_accuracy_grid({"bad": _probes().drop(columns="ground_truth")})


def _drops(x, slope) -> pd.DataFrame:
    x = np.asarray(x, dtype=float)
    return pd.DataFrame({"interval": x, "lag": x, "mean_drop": slope * np.log(x + 1), "std_drop": 1.0, "n": 4})


def test_forgetting_curves_has_an_interval_and_a_decay_panel_with_a_line_per_strategy():
    intervals = {"uniform": _drops([10, 20, 40], 1.0), "nsas": _drops([10, 20], 0.5)}
    decay = {"uniform": _drops([1, 2, 5, 10], 0.8)}
    fig = plots.forgetting_curves(intervals, decay)
    left, right = fig.axes
    assert [line.get_label() for line in left.lines if not line.get_label().startswith("_")] == ["uniform", "nsas"]
    assert list(left.lines[0].get_xdata()) == [10, 20, 40]
    assert list(right.lines[0].get_ydata()) == pytest.approx(0.8 * np.log([2, 3, 6, 11]))
    assert left.get_xscale() == right.get_xscale() == "log"
    assert "forgotten" in left.get_ylabel() and "steps" in right.get_xlabel()
    _check_readable(fig)
    # only one kind of data: still a figure; none: an error
    _check_readable(plots.forgetting_curves({}, decay))
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.forgetting_curves({}, {})
    with pytest.raises(ValueError, match="mean_drop"):
        plots.forgetting_curves({"bad": pd.DataFrame({"interval": [1]})}, {})


def _shrink_log(seed: int = 0) -> pd.DataFrame:
    """Three per-edge rounds at epochs 1, 2, 3 that remove each edge's lowest-scored op (scores: op index + noise)."""
    rng = np.random.default_rng(seed)
    rows, alive = [], {e: list(range(5)) for e in range(6)}
    for r, epoch in enumerate((1.0, 2.0, 3.0), start=1):
        for e in range(6):
            scores = {o: o + rng.normal(0, 0.1) for o in alive[e]}
            low = min(scores, key=scores.get)
            rows += [{"round": r, "epoch": epoch, "edge": e, "op": o, "score": v, "removed": o == low}
                     for o, v in scores.items()]
            alive[e].remove(low)
    return pd.DataFrame(rows)


def test_alive_ops_grid_marks_removal_epochs_and_survivors():
    fig = plots.alive_ops_grid({"uniform+angle": _shrink_log(0), "uniform+magnitude": _shrink_log(1)})
    _check_readable(fig)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 30 and texts.count("alive") == 12  # 2 of 5 ops survive on each of 6 edges
    assert sorted({t for t in texts if t != "alive"}) == ["1.0", "2.0", "3.0"]


def test_op_score_trajectories_draw_every_op_of_every_edge():
    fig = plots.op_score_trajectories({"uniform+angle": _shrink_log(0), "fairnas+angle": _shrink_log(2)})
    _check_readable(fig)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("edge")]
    assert len(panels) == 12
    first = panels[0]
    lines = [ln for ln in first.lines if ln.get_linestyle() != "None"]
    assert len(lines) == 5  # one line per op of edge 0->1
    assert sum(len(ln.get_xdata()) for ln in first.lines if ln.get_marker() == "x") == 3  # three removals


def test_retention_bars_skip_strategies_that_did_not_shrink():
    cols = {"strategy": ["uniform", "uniform+angle", "uniform+magnitude"], "n_runs": [3, 3, 3],
            "interval": ["mean ± std over seeds"] * 3}
    for c, vals in {"top1pct_retained": [np.nan, 0.4, 0.1], "top5pct_retained": [np.nan, 0.5, 0.2],
                    "space_regret": [np.nan, 0.3, 2.5]}.items():
        cols.update({c: vals, f"{c}_lo": [v - 0.05 for v in vals], f"{c}_hi": [v + 0.05 for v in vals]})
    fig = plots.retention_bars(pd.DataFrame(cols))
    _check_readable(fig)
    left, right = fig.axes
    assert [round(p.get_height(), 6) for p in left.patches] == [0.4, 0.1, 0.5, 0.2]
    assert [round(p.get_height(), 6) for p in right.patches] == [0.3, 2.5]
    names = [t.get_text().replace("\n+", "+").split("\n")[0] for t in right.get_xticklabels()]
    assert names == ["uniform+angle", "uniform+magnitude"]  # wrapped at "+" so long names do not collide


def test_styles_give_distinct_colours_to_20_strategies_and_distinct_pairs_to_200():
    styles = plots.Styles([f"s{i:03d}" for i in range(200)])
    values = list(styles.styles.values())
    assert len({v["color"] for v in values[:20]}) == 20
    assert len({(v["color"], v["marker"]) for v in values}) == 200
    assert styles("s003 seed 2") is styles("s003") and styles("s003 (2 seeds)") is styles("s003")
