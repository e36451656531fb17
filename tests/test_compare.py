import io
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from harness import compare as C
from harness.forgetting import summarise
from harness.io import write_csv, write_json, write_text
from harness.metrics import ranking_report
from harness.space import Arch

QUERY = "cifar10valid_valid_200"


def make_run(root, name, sampler="uniform", seed=0, noise=5.0, n=60, strategy=None, progress=False,
             constant=False, dataset="cifar10-valid", forgetting=False):
    """A finished run directory shaped like `nb201-harness run` output, with real metrics of fake estimates."""
    rng = np.random.default_rng(seed + 100 * len(name))
    run = root / name
    gt = rng.uniform(40, 94, n).round(3)
    est = np.full(n, 10.0) if constant else (0.2 * gt + rng.normal(0, noise, n)).round(1)
    archs = [Arch.from_index(int(i)).to_str() for i in rng.choice(15625, n, replace=False)]
    write_csv(run / "estimates.csv", pd.DataFrame({"arch": archs, "estimate": est, "loss": rng.uniform(1, 2, n),
                                                   "ground_truth": gt, "nb201_index": np.arange(n)}))
    metrics = {"ranking": ranking_report(est, gt, n_resamples=20, seed=seed),
               "ground_truth": {"query": QUERY, "dataset": dataset, "metric": "valid", "epochs": 200},
               "estimator": {"name": "inherited-weights accuracy", "sampler": {"name": sampler}},
               "environment": {"seed": seed, "device": "cpu"}}
    if strategy:
        metrics["strategy"] = strategy
    if forgetting:  # probes every 10 steps (the same 4 for every seed); probe i is trained before step 20 when even
        probes = pd.DataFrame([{"step": s, "arch": Arch.from_index(i).to_str(), "loss": 1.0,
                                "acc": 50 + i - s / 10 + seed, "ground_truth": 60.0 + 5 * i,
                                "trained": int(s == 20 and i % 2 == 0)}
                               for s in (10, 20, 30) for i in range(4)])
        decay = pd.DataFrame([{"trained_step": 5, "arch": archs[0], "lag": lag, "step": 5 + lag, "loss": 1.0,
                               "acc": 60 - lag, "retrained": 0} for lag in (0, 1, 2)])
        write_csv(run / "probes.csv", probes)
        write_csv(run / "decay.csv", decay)
        metrics["forgetting"] = summarise(probes, decay)
    write_json(run / "metrics.json", metrics)
    tau = metrics["ranking"]["kendall_tau"]["value"]
    write_text(run / "config.toml", f'[run]\nseed = {seed}\n\n[metrics]\nconfidence = 0.95\n\n[sampler]\nname = "{sampler}"\n')
    if progress:
        p = np.linspace(0.1, 1.0, 5)
        write_csv(run / "progress.csv", pd.DataFrame({"step": (p * 1000).astype(int), "progress": p,
                                                      "kendall_tau": tau * np.sqrt(p), "spearman": 1.3 * tau * np.sqrt(p),
                                                      "n_archs": 20}))
    return run


@pytest.fixture
def run_dirs(tmp_path):
    return [make_run(tmp_path, "uniform-s0", "uniform", 0),
            make_run(tmp_path, "uniform-s1", "uniform", 1, noise=8.0),
            make_run(tmp_path, "fairnas-s0", "fairnas", 0, progress=True),
            make_run(tmp_path, "collapsed-s0", "uniform", 0, strategy="uniform-no-bn", constant=True)]


@pytest.fixture
def records(run_dirs):
    return [C.load_run(p) for p in run_dirs]


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())["ranking"]


def test_load_run_reads_a_finished_run(run_dirs):
    rec = C.load_run(run_dirs[2])
    assert (rec.strategy, rec.seed, rec.dataset, rec.query) == ("fairnas", 0, "cifar10-valid", QUERY)
    assert rec.metrics["kendall_tau"]["value"] == pytest.approx(_metrics(run_dirs[2])["kendall_tau"]["value"])
    assert rec.metrics["n_archs"] == 60 and len(rec.estimates) == 60
    assert list(rec.progress["progress"]) == pytest.approx(np.linspace(0.1, 1.0, 5))
    assert C.load_run(run_dirs[0]).progress is None


def test_load_run_prefers_the_strategy_label_and_reads_null_as_nan(run_dirs):
    assert _metrics(run_dirs[3])["kendall_tau"]["value"] is None  # stored as JSON null
    rec = C.load_run(run_dirs[3])
    assert rec.strategy == "uniform-no-bn"  # the top-level label beats the sampler name
    assert math.isnan(rec.metrics["kendall_tau"]["value"]) and math.isnan(rec.metrics["spearman"]["ci_low"])


def _break(run, how):
    if how == "missing":
        return run.parent / "no-such-run", "does not exist"
    if how == "unfinished":
        (run / "metrics.json").unlink()
        return run, "unfinished"
    if how == "bad json":
        (run / "metrics.json").write_text('{"ranking": ')
        return run, "not valid JSON"
    if how == "no dataset":
        data = json.loads((run / "metrics.json").read_text())
        del data["ground_truth"]["dataset"]
        (run / "metrics.json").write_text(json.dumps(data))
        return run, "ground_truth.dataset"
    if how == "no estimates":
        (run / "estimates.csv").unlink()
        return run, "estimates.csv is missing"
    frame = pd.read_csv(run / "estimates.csv").drop(columns=["ground_truth"])
    frame.to_csv(run / "estimates.csv", index=False)
    return run, "lacks columns \\['ground_truth'\\]"


@pytest.mark.parametrize("how", ["missing", "unfinished", "bad json", "no dataset", "no estimates", "no column"])
def test_load_run_errors_name_the_run_and_the_problem(tmp_path, how):
    path, message = _break(make_run(tmp_path, "r"), how)
    with pytest.raises(C.CompareError, match=message) as info:
        C.load_run(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_runs_table_has_one_row_per_run_with_values_and_cis(records, run_dirs):
    table = C.runs_table(records)
    assert len(table) == 4
    for col in ["run", "strategy", "seed", "dataset", "query", "n_archs"]:
        assert col in table.columns
    for m in C.METRICS:
        assert {m, f"{m}_ci_low", f"{m}_ci_high"} <= set(table.columns)
    row = table.set_index("run").loc["uniform-s1"]
    stored = _metrics(run_dirs[1])
    assert row["strategy"] == "uniform" and row["seed"] == 1
    assert row["regret_top1"] == pytest.approx(stored["regret_top1"]["value"])
    assert row["kendall_tau_ci_high"] == pytest.approx(stored["kendall_tau"]["ci_high"])
    assert list(table["strategy"]) == sorted(table["strategy"])


def test_runs_table_tells_apart_run_dirs_with_the_same_name(tmp_path):
    records = [C.load_run(make_run(tmp_path / exp, "run", seed=s)) for s, exp in enumerate(["a", "b"])]
    assert list(C.runs_table(records)["run"]) == ["a/run", "b/run"]


def test_strategy_table_averages_seeds_and_keeps_the_ci_of_single_runs(records):
    table = C.strategy_table(records).set_index("strategy")
    assert sorted(table.index) == ["fairnas", "uniform", "uniform-no-bn"]
    uni = table.loc["uniform"]
    taus = [r.metrics["kendall_tau"]["value"] for r in records if r.strategy == "uniform"]
    assert (uni["n_runs"], uni["seeds"], uni["interval"]) == (2, "0, 1", "mean ± std over seeds")
    assert uni["kendall_tau"] == pytest.approx(np.mean(taus))
    assert uni["kendall_tau_std"] == pytest.approx(np.std(taus, ddof=1))
    assert uni["kendall_tau_lo"] == pytest.approx(np.mean(taus) - np.std(taus, ddof=1))
    assert uni["kendall_tau_hi"] == pytest.approx(np.mean(taus) + np.std(taus, ddof=1))
    fair, entry = table.loc["fairnas"], records[2].metrics["spearman"]
    assert (fair["n_runs"], fair["interval"]) == (1, "95% bootstrap CI")
    assert (fair["spearman"], fair["spearman_lo"], fair["spearman_hi"]) == (entry["value"], entry["ci_low"], entry["ci_high"])
    assert math.isnan(fair["spearman_std"])
    assert math.isnan(table.loc["uniform-no-bn", "kendall_tau"])


def test_to_markdown_lists_every_strategy_with_intervals(records):
    text = C.to_markdown(C.strategy_table(records))
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert lines[0].count("|") == lines[2].count("|")
    for name in ["uniform", "fairnas", "uniform-no-bn"]:
        assert any(f"| {name} |" in line for line in lines)
    uni = next(line for line in lines if line.startswith("| uniform |"))
    tau = C.strategy_table(records).set_index("strategy").loc["uniform"]
    assert f"{tau['kendall_tau']:.3f} ± {tau['kendall_tau_std']:.3f}" in uni
    fair = next(line for line in lines if line.startswith("| fairnas |"))
    m = records[2].metrics["kendall_tau"]
    assert f"{m['value']:.3f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]" in fair
    assert "n/a" in next(line for line in lines if "uniform-no-bn" in line)
    assert "_lo" not in lines[0] and "_std" not in lines[0] and "_ci_low" not in C.to_markdown(C.runs_table(records))


def test_figures_label_seeds_and_add_progress_only_when_present(records):
    figs = C.figures(records)
    assert set(figs) == {"correlations", "scatter", "tau_vs_progress", "rank_agreement"}  # no costs recorded
    titles = [ax.get_title().split("  (")[0] for ax in figs["scatter"].axes]
    assert sorted(titles) == ["fairnas", "uniform seed 0", "uniform seed 1", "uniform-no-bn"]
    bars = [p for c in figs["correlations"].axes[0].containers if hasattr(c, "patches") for p in c.patches]
    assert len(bars) == 2 * 3
    assert [line.get_label() for line in figs["tau_vs_progress"].axes[0].lines if line.get_label() == "fairnas"]
    assert "tau_vs_progress" not in C.figures(records[:2])


def test_write_report_writes_tables_markdown_and_figures(records, tmp_path):
    out = tmp_path / "report"
    paths = C.write_report(records, out)
    names = {p.name for p in paths}
    expected = {"compare.csv", "summary.csv", "summary.md"} | {f"{f}.{x}" for f in C.figures(records)
                                                                for x in ("png", "svg")}
    assert names == expected and {p.name for p in out.iterdir()} == expected  # no temp files left behind
    assert all(p.stat().st_size > 0 for p in paths)
    assert (out / "scatter.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in (out / "correlations.svg").read_text()
    assert len(pd.read_csv(out / "compare.csv")) == 4
    assert pd.read_csv(out / "summary.csv")["n_runs"].sum() == 4
    md = (out / "summary.md").read_text()
    assert all(s in md for s in ["uniform", "fairnas", "uniform-no-bn", "uniform-s1"])


def test_example_run_loads_when_present():
    from pathlib import Path

    run = Path(__file__).resolve().parents[1] / "reports" / "cifar10-cpu-smoke" / "run"
    if not (run / "metrics.json").exists():
        pytest.skip("example run absent")
    rec = C.load_run(run)
    assert rec.strategy == "uniform" and rec.metrics["n_archs"] == len(rec.estimates)


def test_forgetting_columns_tables_and_figures_from_runs_that_measured_it(tmp_path, records):
    runs = [C.load_run(make_run(tmp_path, f"nsas-s{s}", "nsas", s, forgetting=True)) for s in (0, 1)]
    old = records[0]  # a run written before forgetting existed still compares
    table = C.runs_table(runs + [old])
    # accuracy falls 1 point per 10 steps: every untrained consecutive pair drops by 1
    assert table.loc[table["strategy"] == "nsas", "mean_forgetting"].tolist() == pytest.approx([1.0, 1.0])
    assert math.isnan(table.loc[table["run"] == old.name, "mean_forgetting"].iloc[0])
    assert "mean_forgetting" not in C.runs_table([old]).columns
    summary = C.strategy_table(runs)
    assert summary["mean_forgetting"].iloc[0] == pytest.approx(1.0)
    assert summary["final_probe_tau"].iloc[0] == pytest.approx(runs[0].forgetting["final_probe_tau"])
    assert "mean_forgetting" in C.to_markdown(summary)

    tables = C.forgetting_tables(runs + [old])
    assert list(tables["probe_acc"]) == ["nsas (2 seeds)"]  # seeds pooled, the old run left out
    acc = tables["probe_acc"]["nsas (2 seeds)"]
    assert len(acc) == 3 * 4 and acc["acc"].iloc[0] == pytest.approx(50 - 1 + 0.5)  # mean of seeds 0 and 1
    intervals = tables["intervals"]["nsas (2 seeds)"].set_index("interval")
    # odd probes: pairs (10,20) (20,30) (10,30); even probes: only (20,30); two seeds each
    assert intervals.loc[10, "n"] == 2 * (2 * 2 + 2 * 1) and intervals.loc[20, "n"] == 2 * 2
    assert intervals.loc[20, "mean_drop"] == pytest.approx(2.0)
    decay = tables["decay"]["nsas (2 seeds)"]
    assert decay["lag"].tolist() == [1, 2] and decay["mean_drop"].tolist() == pytest.approx([1.0, 2.0])
    tau = tables["probe_tau"]["nsas (2 seeds)"]
    assert tau["progress"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert tau["kendall_tau"].tolist() == pytest.approx([1.0] * 3)  # probes' order matches ground truth
    assert {"kendall_tau_lo", "kendall_tau_hi"} <= set(tau.columns)

    figs = C.figures(runs + [old])
    assert {"forgetting_probe_acc", "forgetting_drop", "forgetting_probe_tau"} <= set(figs)
    assert not {"forgetting_probe_acc", "forgetting_drop", "forgetting_probe_tau"} & set(C.figures([old]))


def test_a_run_too_short_for_decay_tracers_still_compares(tmp_path):
    run = make_run(tmp_path, "short", "uniform", 0, forgetting=True)
    (run / "decay.csv").write_text("trained_step,arch,lag,step,loss,acc,retrained\n")  # header only, as such runs write
    rec = C.load_run(run)
    assert rec.decay is not None and rec.decay.empty
    assert "forgetting_probe_acc" in C.figures([rec])


@pytest.mark.slow  # every figure for twelve strategies (about 12 s); the fast tier stays within 5 minutes
def test_every_figure_for_twelve_strategies_keeps_one_distinct_style_per_strategy(tmp_path):
    """12 strategies, two seeds each, with progress and forgetting: every line of a strategy has the same colour
    and marker in every figure, and no two strategies share a colour."""

    names = [f"strategy{i:02d}" for i in range(12)]
    records = [C.load_run(make_run(tmp_path, f"{n}-s{s}", n, s, progress=True, forgetting=True))
               for n in names for s in (0, 1)]
    figs = C.figures(records)
    assert {"correlations", "scatter", "tau_vs_progress", "forgetting_drop", "forgetting_probe_tau"} <= set(figs)
    seen: dict[str, set] = {}
    for key, fig in figs.items():
        assert fig.savefig(io.BytesIO(), format="png", dpi=40) is None
        for ax in fig.axes:
            for line in ax.get_lines():
                label = line.get_label().split(" (")[0].split(" seed")[0]
                if label in names:
                    seen.setdefault(label, set()).add((to_hex(line.get_color()), line.get_marker()))
    assert set(seen) == set(names)
    assert all(len(styles) == 1 for styles in seen.values()), seen  # one style per strategy, in every figure
    colours = [next(iter(s))[0] for s in seen.values()]
    assert len(set(colours)) == 12


def test_an_outlier_no_longer_squeezes_the_scatter(tmp_path):
    from harness import plots

    rng = np.random.default_rng(0)
    gt = rng.uniform(78, 93, 200)
    frame = pd.DataFrame({"estimate": gt + rng.normal(0, 1, 200), "ground_truth": gt})
    frame.loc[0, ["estimate", "ground_truth"]] = [10.0, 10.0]  # one collapsed architecture
    (ax,) = plots.scatter_grid({"uniform": frame}).axes
    lo, hi = ax.get_xlim()
    assert lo > 70 and hi < 96  # the axes hold the bulk, not the point at 10%
    edge = [c for c in ax.collections if c.get_label().startswith("outside the axes")]
    assert len(edge) == 1 and len(edge[0].get_offsets()) == 1
    assert edge[0].get_offsets()[0][0] == pytest.approx(lo)  # drawn at the edge


def test_empty_panels_say_why(tmp_path):
    from harness import plots

    drops = pd.DataFrame({"interval": [1, 10], "mean_drop": [0.5, 1.0], "std_drop": [0.1, 0.2], "n": [4, 4]})
    fig = plots.forgetting_curves({"uniform": drops}, {})
    right = fig.axes[1]
    assert any("no decay curves" in t.get_text() for t in right.texts) and not right.get_lines()[1:]
    alpha = pd.DataFrame({"epoch": [0, 1], "ground_truth": [float("nan")] * 2, "parameter_free": [0.5, 0.8]})
    fig = plots.alpha_curves({"darts": [{"alpha": alpha, "sharpness": None}]})
    texts = [" ".join(t.get_text() for t in ax.texts) for ax in fig.axes]
    assert "ground-truth table" in texts[0] and texts[1] == "" and "sharpness was not measured" in texts[2]


def test_rank_agreement_and_cost_put_estimators_and_strategies_side_by_side(tmp_path):
    """Kendall tau between two runs' estimates on the architectures both scored (here one is the other reversed
    on the shared ones: -1), and seconds per architecture: an estimator run's own, a supernet's training plus
    estimation over its architectures."""
    a = make_run(tmp_path, "a", strategy="supernet-run", n=30)
    est = pd.read_csv(a / "estimates.csv")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    rev = est.iloc[:20].assign(estimate=-est["estimate"].iloc[:20])  # 20 shared architectures, reversed
    write_csv(b / "estimates.csv", rev)
    m = json.loads((b / "metrics.json").read_text())
    m.update(strategy="synflow", estimator={"name": "synflow", "seconds_per_arch": 0.25})
    (b / "metrics.json").write_text(json.dumps(m))
    ma = json.loads((a / "metrics.json").read_text())
    ma.update(train={"seconds": 100.0}, estimate={"seconds": 20.0, "n_archs": 30})
    (a / "metrics.json").write_text(json.dumps(ma))
    records = [C.load_run(a), C.load_run(b)]
    matrix = C.agreement_matrix(records)
    assert matrix.loc["supernet-run", "synflow"] == pytest.approx(-1.0) and matrix.loc["synflow", "synflow"] == 1.0
    table = C.strategy_table(records).set_index("strategy")
    assert table.loc["synflow", "seconds_per_arch"] == 0.25 and table.loc["supernet-run", "seconds_per_arch"] == 4.0
    assert {"tau_vs_cost", "rank_agreement"} <= set(C.figures(records))
