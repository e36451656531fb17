"""The offline demo end to end (tiny budget), then `compare` and `check` on its real run directories."""
import json

import pandas as pd
import pytest

from harness.cli import main
from harness.samplers import SAMPLERS

TINY = ["train.max_steps=40", "estimate.track_every=20", "estimate.track_archs=12", "metrics.bootstrap=50",
        "estimate.recalib_batches=1", "train.checkpoint_every=20"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = ["demo", "--out", str(out), "--quiet"]
    for s in TINY:
        args += ["--set", s]
    assert main(args) == 0
    return out


def test_demo_runs_every_strategy_and_writes_the_comparison(demo_dir, capsys):
    for name in SAMPLERS.names():
        metrics = json.loads((demo_dir / name / "metrics.json").read_text())
        assert metrics["strategy"] == name
        assert metrics["ground_truth"]["query"] == "digitsm_valid_8"
        assert metrics["ranking"]["n_archs"] == 200
        progress = pd.read_csv(demo_dir / name / "progress.csv")
        assert progress["step"].tolist() == [20, 40] and progress["progress"].tolist() == [0.5, 1.0]
        assert (progress["n_archs"] == 12).all()
    compare = demo_dir / "compare"
    for f in ("compare.csv", "summary.csv", "summary.md", "correlations.png", "scatter.svg", "tau_vs_progress.png"):
        assert (compare / f).stat().st_size > 0
    summary = pd.read_csv(compare / "summary.csv")
    assert sorted(summary["strategy"]) == SAMPLERS.names()


def test_demo_does_not_rerun_finished_strategies(demo_dir, capsys):
    before = (demo_dir / "uniform" / "metrics.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(demo_dir), "--quiet", "--strategy", "uniform"]) == 0
    assert (demo_dir / "uniform" / "metrics.json").stat().st_mtime_ns == before
    assert "finished earlier" in capsys.readouterr().err


def test_compare_cli_on_real_runs(demo_dir, tmp_path, capsys):
    run = demo_dir / "uniform"
    assert main(["compare", str(run), str(run), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "uniform" in printed and "mean ± std" in printed  # two runs of one strategy aggregate
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert len(table) == 2
    assert main(["compare", str(tmp_path / "nope")]) == 2


def test_check_cli_passes_then_fails_when_a_metric_drops(demo_dir, tmp_path, capsys):
    run = demo_dir / "uniform"
    baseline = tmp_path / "base.json"
    assert main(["check", str(run), "--baseline", str(baseline), "--update", "--description", "test"]) == 0
    assert main(["check", str(run), "--baseline", str(baseline)]) == 0
    assert "check passed" in capsys.readouterr().out
    # the run's Kendall tau now sits 0.2 below the recorded one: a regression beyond the 0.05 tolerance
    data = json.loads(baseline.read_text())
    data["metrics"]["kendall_tau"]["value"] += 0.2
    baseline.write_text(json.dumps(data))
    assert main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED kendall_tau" in out and "check FAILED" in out
    assert main(["check", str(run), "--baseline", str(baseline), "--tolerance", "0.5"]) == 0
    # a baseline of another query is not comparable: exit 2, not a pass
    data["ground_truth_query"] = "cifar10valid_valid_200"
    baseline.write_text(json.dumps(data))
    assert main(["check", str(run), "--baseline", str(baseline)]) == 2
