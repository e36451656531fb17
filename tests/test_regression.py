import copy
import json
import math
from pathlib import Path

import pytest

from harness import regression as R
from harness.io import write_json


# shaped like reports/cifar10-cpu-smoke/run/metrics.json (sections the check does not read are trimmed)
RUN = {
    "ranking": {
        "kendall_tau": {"value": 0.51, "ci_low": 0.40, "ci_high": 0.61},
        "spearman": {"value": 0.68, "ci_low": 0.57, "ci_high": 0.77},
        "pearson": {"value": 0.62, "ci_low": 0.50, "ci_high": 0.72},
        "precision_top1pct": {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0},
        "precision_top5pct": {"value": 0.25, "ci_low": 0.0, "ci_high": 0.5},
        "precision_top10pct": {"value": 0.2, "ci_low": 0.0, "ci_high": 0.4},
        "regret_top1": {"value": 1.9467, "ci_low": 1.4247, "ci_high": 9.244},
        "kendall_tau_top10pct": {"value": 0.314, "ci_low": -0.133, "ci_high": 0.673},
        "n_archs": 150,
    },
    "ground_truth": {"source": "../shared/data/nb201/nb201_groundtruth.csv", "query": "cifar10valid_valid_200",
                     "dataset": "cifar10-valid", "metric": "valid", "epochs": 200, "seeds": "mean"},
    "estimator": {"name": "inherited-weights accuracy", "bn_policy": "recalibrate", "sampler": {"name": "uniform"}},
    "environment": {"harness": "0.1.0", "torch": "2.13.0+cpu", "device_name": "cpu", "seed": 0,
                    "git_revision": "f55f19e60e169ac16b0df3d970373e39e29157c4"},
}


def run_with(**values):
    """A copy of RUN with some ranking values replaced (None: stored as JSON null)."""
    run = copy.deepcopy(RUN)
    for name, value in values.items():
        run["ranking"][name]["value"] = value
    return run


@pytest.fixture
def baseline():
    return R.baseline_from_dict(R.make_baseline(RUN, "uniform smoke"))


def row(result, metric):
    return next(r for r in result.rows if r.metric == metric)


def test_default_baseline_selects_default_metrics_with_regret_tolerance():
    data = R.make_baseline(RUN, "uniform smoke")
    assert list(data["metrics"]) == list(R.DEFAULT_METRICS)
    assert data["metrics"]["regret_top1"] == {"value": 1.9467, "higher_is_better": False, "tolerance": 1.0}
    assert "tolerance" not in data["metrics"]["kendall_tau"]  # follows --tolerance
    assert (data["ground_truth_query"], data["n_archs"], data["strategy"]) == ("cifar10valid_valid_200", 150, "uniform")


def test_run_equal_to_baseline_passes(baseline):
    result = R.check_run(RUN, baseline)
    assert result.passed
    assert [r.status for r in result.rows] == ["ok"] * 4
    assert all(line.startswith("ok ") for line in result.lines)


def test_drop_beyond_tolerance_fails_naming_the_metric(baseline):
    result = R.check_run(run_with(kendall_tau=0.41), baseline, tolerance=0.05)
    assert not result.passed
    assert row(result, "kendall_tau").status == "regressed"
    assert [r.metric for r in result.rows if r.status == "regressed"] == ["kendall_tau"]
    assert "REGRESSED kendall_tau: 0.410 < baseline 0.510 - tolerance 0.050 (fell by 0.100)" in result.lines


@pytest.mark.parametrize("tau", [0.47, 0.46])  # 0.46: exactly the tolerance, which round-off must not tip over
def test_drop_within_tolerance_passes(baseline, tau):
    result = R.check_run(run_with(kendall_tau=tau), baseline, tolerance=0.05)
    assert result.passed
    assert row(result, "kendall_tau").status == "ok"


def test_tolerance_argument_widens_the_band(baseline):
    assert R.check_run(run_with(kendall_tau=0.41), baseline, tolerance=0.2).passed


def test_regret_is_lower_is_better_with_its_own_tolerance(baseline):
    worse = R.check_run(run_with(regret_top1=1.9467 + 1.5), baseline)
    assert not worse.passed
    r = row(worse, "regret_top1")
    assert (r.status, r.tolerance) == ("regressed", 1.0)
    assert r.line == "REGRESSED regret_top1: 3.447 > baseline 1.947 + tolerance 1.000 (rose by 1.500)"
    # 0.8 points worse is within regret's 1.0 tolerance although far beyond --tolerance 0.05
    assert R.check_run(run_with(regret_top1=1.9467 + 0.8), baseline).passed
    better = R.check_run(run_with(regret_top1=0.0), baseline)
    assert better.passed and row(better, "regret_top1").status == "improved"


def test_improvement_passes_and_is_reported(baseline):
    result = R.check_run(run_with(spearman=0.79), baseline)
    assert result.passed
    r = row(result, "spearman")
    assert r.status == "improved"
    assert r.line == "improved spearman: 0.790 > baseline 0.680 + 0.050 (by 0.110); consider --update"


@pytest.mark.parametrize("value", [None, math.nan, "missing"])
def test_undefined_run_metric_is_a_regression(baseline, value):
    run = run_with(kendall_tau=value)
    if value == "missing":
        del run["ranking"]["kendall_tau"]
    result = R.check_run(run, baseline)
    assert not result.passed
    r = row(result, "kendall_tau")
    assert r.status == "regressed" and math.isnan(r.value)
    assert r.line.startswith("REGRESSED kendall_tau:") and "null/NaN" in r.line


def test_run_from_json_null_fails(tmp_path, baseline):
    write_json(tmp_path / "run" / "metrics.json", run_with(spearman=math.nan))  # stored as null
    assert not R.check_run(R.read_run_metrics(tmp_path / "run"), baseline).passed


@pytest.mark.parametrize("change, expected", [
    (lambda m: m["ground_truth"].update(query="cifar100_valid_200"), "ground-truth query 'cifar100_valid_200'"),
    (lambda m: m["ranking"].update(n_archs=100), "n_archs 100, baseline 150"),
    (lambda m: m["estimator"]["sampler"].update(name="fairnas"), "strategy 'fairnas', baseline 'uniform'"),
])
def test_incomparable_run_is_an_error_not_a_regression(baseline, change, expected):
    run = copy.deepcopy(RUN)
    change(run)
    with pytest.raises(R.RegressionError, match="--update") as err:
        R.check_run(run, baseline)
    assert expected in str(err.value)


def test_update_round_trip_keeps_selection_and_tolerances(tmp_path):
    path = tmp_path / "ci" / "baseline.json"
    first = R.make_baseline(RUN, "uniform smoke")
    first["metrics"]["kendall_tau"]["tolerance"] = 0.08  # hand-tuned
    del first["metrics"]["precision_top5pct"]  # deselected by hand
    R.write_baseline(path, first)
    newer = run_with(kendall_tau=0.55, regret_top1=1.2)
    R.write_baseline(path, R.make_baseline(newer, "", previous=R.load_baseline(path)))
    loaded = R.load_baseline(path)
    assert list(loaded.metrics) == ["kendall_tau", "spearman", "regret_top1"]
    assert {k: m.value for k, m in loaded.metrics.items()} == {"kendall_tau": 0.55, "spearman": 0.68,
                                                                "regret_top1": 1.2}
    assert {k: m.tolerance for k, m in loaded.metrics.items()} == {"kendall_tau": 0.08, "spearman": None,
                                                                    "regret_top1": 1.0}
    assert loaded.description == "uniform smoke" and loaded.n_archs == 150
    assert json.loads(path.read_text())["recorded_from"]["git_revision"].startswith("f55f19e")
    assert R.check_run(newer, loaded).passed
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_per_metric_tolerance_in_file_overrides_the_argument(baseline):
    data = R.make_baseline(RUN, "smoke", tolerance=0.2)
    assert data["metrics"]["kendall_tau"]["tolerance"] == 0.2 and data["metrics"]["regret_top1"]["tolerance"] == 1.0
    assert R.check_run(run_with(kendall_tau=0.41), R.baseline_from_dict(data), tolerance=0.05).passed


def test_cannot_record_an_undefined_metric():
    with pytest.raises(R.RegressionError, match="cannot record kendall_tau"):
        R.make_baseline(run_with(kendall_tau=None), "collapsed")


def test_write_baseline_refuses_an_invalid_baseline(tmp_path):
    bad = R.make_baseline(RUN, "x")
    bad["metrics"]["kendall_tau"]["value"] = "high"
    with pytest.raises(R.RegressionError, match="must be a finite number"):
        R.write_baseline(tmp_path / "b.json", bad)
    assert not (tmp_path / "b.json").exists()


def _valid():
    return R.make_baseline(RUN, "smoke")


def _edit(fn):
    data = _valid()
    fn(data)
    return json.dumps(data)


@pytest.mark.parametrize("text, expected", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "a baseline is a JSON object"),
    (_edit(lambda d: d.update(format=2)), "unknown baseline format 2"),
    (_edit(lambda d: d.pop("format")), 'no "format" key'),
    (_edit(lambda d: d.pop("n_archs")), "missing keys ['n_archs']"),
    (_edit(lambda d: d.update(n_archs="150")), "n_archs must be an integer"),
    (_edit(lambda d: d.update(metrics={})), "metrics must be a non-empty object"),
    (_edit(lambda d: d["metrics"]["kendall_tau"].update(value="0.5")), "metrics.kendall_tau.value must be a finite"),
    (_edit(lambda d: d["metrics"]["kendall_tau"].update(value=None)), "metrics.kendall_tau.value must be a finite"),
    (_edit(lambda d: d["metrics"]["regret_top1"].update(tolerance=-1)), "tolerance must be >= 0"),
    (_edit(lambda d: d["metrics"]["regret_top1"].update(higher_is_better=True)), "regret_top1 is lower-is-better"),
    (_edit(lambda d: d["metrics"]["spearman"].update(tolerence=0.1)), "metrics.spearman must be an object"),
    (_edit(lambda d: d["metrics"].update(kendal_tau={"value": 0.5})), "Did you mean 'kendall_tau'?"),
])
def test_malformed_baseline_gives_a_clear_error(tmp_path, text, expected):
    path = tmp_path / "baseline.json"
    path.write_text(text)
    with pytest.raises(R.RegressionError) as err:
        R.load_baseline(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_unknown_metric_error_lists_valid_names(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(_edit(lambda d: d["metrics"].update(ndcg={"value": 0.5})))
    with pytest.raises(R.RegressionError, match="unknown metric 'ndcg'; valid: kendall_tau, spearman, pearson"):
        R.load_baseline(path)


def test_missing_baseline_suggests_update(tmp_path):
    with pytest.raises(R.RegressionError, match="does not exist.*--update"):
        R.load_baseline(tmp_path / "nope.json")


def test_read_run_metrics_rejects_unfinished_and_malformed_runs(tmp_path):
    with pytest.raises(R.RegressionError, match="does not exist"):
        R.read_run_metrics(tmp_path / "nowhere")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(R.RegressionError, match="no metrics.json: the run is unfinished"):
        R.read_run_metrics(tmp_path / "unfinished")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text('{"ranking": ')
    with pytest.raises(R.RegressionError, match="not valid JSON"):
        R.read_run_metrics(tmp_path / "broken")
    write_json(tmp_path / "odd" / "metrics.json", {"ranking": {"n_archs": 3}})
    with pytest.raises(R.RegressionError, match="lacks 'ground_truth.query'"):
        R.read_run_metrics(tmp_path / "odd")


def test_baseline_from_several_runs_records_their_mean_and_a_spread_based_tolerance():
    taus = [0.20, 0.30, 0.25, 0.33]
    runs = [run_with(kendall_tau=t) for t in taus]
    data = R.make_baseline(runs, "four seeds")
    entry = data["metrics"]["kendall_tau"]
    std = float(__import__("numpy").std(taus, ddof=1))
    assert entry["value"] == pytest.approx(sum(taus) / 4) and entry["n_runs"] == 4
    assert entry["runs_std"] == pytest.approx(std) and entry["tolerance"] == pytest.approx(3 * std)
    assert data["metrics"]["spearman"]["tolerance"] == 0.05  # identical runs: the usual floor, not 0
    assert data["metrics"]["regret_top1"]["tolerance"] == 1.0
    assert len(data["recorded_from"]) == 4
    base = R.baseline_from_dict(data)
    for run in runs:  # every recorded run passes (none lies more than 1.5 std from the mean of 4)
        assert R.check_run(run, base).passed
    low = entry["value"] - entry["tolerance"] - 0.01
    assert not R.check_run(run_with(kendall_tau=low), base).passed
    assert R.baseline_from_dict(json.loads(json.dumps(data))) == base  # round trip through the file format


def test_baseline_runs_must_be_one_experiment():
    other = copy.deepcopy(RUN)
    other["ground_truth"]["query"] = "cifar10_test_200"
    with pytest.raises(R.RegressionError, match="ground-truth query"):
        R.make_baseline([RUN, other], "mixed")
    with pytest.raises(R.RegressionError, match="no runs"):
        R.make_baseline([], "none")


def test_check_covers_alpha_shrinking_and_forgetting_metrics():
    run = copy.deepcopy(RUN)
    run["alpha"] = {"ranking": {"kendall_tau": {"value": 0.20}}}
    run["shrink"] = {"space_regret": 1.5, "top5pct_retained": 0.4}
    run["forgetting"] = {"final_probe_tau": 0.6}
    data = R.make_baseline(RUN, "x")
    data["metrics"] = {"alpha_tau": {"value": 0.35, "tolerance": 0.05},
                       "space_regret": {"value": 0.5, "tolerance": 0.5, "higher_is_better": False},
                       "top5pct_retained": {"value": 0.45, "tolerance": 0.1},
                       "final_probe_tau": {"value": 0.62, "tolerance": 0.05}}
    result = R.check_run(run, R.baseline_from_dict(data))
    assert {r.metric: r.status for r in result.rows} == {"alpha_tau": "regressed", "space_regret": "regressed",
                                                         "top5pct_retained": "ok", "final_probe_tau": "ok"}
    del run["alpha"]  # a run without the block: the metric is undefined, which is a regression
    assert row(R.check_run(run, R.baseline_from_dict(data)), "alpha_tau").status == "regressed"
    data["metrics"] = {"mean_forgetting": {"value": 1.0}}  # two-sided sanity metrics are regress's, not check's
    with pytest.raises(R.RegressionError, match="unknown metric 'mean_forgetting'"):
        R.baseline_from_dict(data)
