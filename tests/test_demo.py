"""The offline demo end to end (tiny budget), then `compare` and `check` on its real run directories."""
import json
import shutil

import pandas as pd
import pytest

from harness.cli import main
from harness.demo import DEFAULT, ESTIMATOR_RUNS, EXTRA, all_strategies, demo_config
from harness.samplers import SAMPLERS

pytestmark = pytest.mark.slow  # the demo itself, every strategy end to end (the fast tier skips it)

# 40 passes; digitsm has 56 steps per epoch, so uniform+angle's rounds come at steps 14 and 28; the 200
# architectures are scored on 100 held-out images (the demo's 500 would only make the run longer)
TINY = ["train.max_paths=40", "data.valid_subset=100", "estimate.track_every=20", "estimate.track_archs=12", "metrics.bootstrap=50",
        "estimate.recalib_batches=1", "train.checkpoint_every=20", "forgetting.probe_images=100",
        "forgetting.decay_lags=[1, 2]", "shrink.warmup_epochs=0.25", "shrink.shrink_every=0.25",
        "shrink.score_images=64"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = ["demo", "--out", str(out), "--quiet", "--all"]
    for s in TINY:
        args += ["--set", s]
    assert main(args) == 0
    return out


def test_the_default_set_has_one_strategy_of_each_kind_and_the_baselines():
    trained = [n for n in DEFAULT if n not in ESTIMATOR_RUNS]
    assert set(DEFAULT) <= set(all_strategies()) and len(DEFAULT) == len(set(DEFAULT)) and len(trained) == 5
    samplers = [demo_config(n).sampler["name"] for n in trained]
    assert "uniform" in DEFAULT and "fairnas" in DEFAULT
    assert any(n.startswith("nsas") for n in samplers)
    assert any(SAMPLERS.get(n).differentiable for n in samplers)
    assert any(demo_config(n).shrink.rule != "none" for n in trained)
    assert {"params", "flops", "random", "synflow"} <= set(DEFAULT) & set(ESTIMATOR_RUNS)
    assert all(demo_config(n).estimator["name"] == n for n in ESTIMATOR_RUNS)
    assert all(demo_config(n).estimator["name"] == "supernet" for n in trained)
    assert set(all_strategies()) == set(SAMPLERS.names()) | set(EXTRA) | set(ESTIMATOR_RUNS)


def test_demo_runs_every_strategy_and_writes_the_comparison(demo_dir, capsys):
    assert "uniform+angle" in all_strategies()
    shrink = json.loads((demo_dir / "uniform+angle" / "metrics.json").read_text())["shrink"]
    assert shrink["rounds"] == 2  # 5 -> 3 ops per edge
    for name in ESTIMATOR_RUNS:  # the baselines: scored, not trained
        metrics = json.loads((demo_dir / name / "metrics.json").read_text())
        assert metrics["strategy"] == metrics["estimator"]["name"] == name
        assert metrics["ranking"]["n_archs"] == 200 and not (demo_dir / name / "train_log.csv").exists()
    for name in [n for n in all_strategies() if n not in ESTIMATOR_RUNS]:
        metrics = json.loads((demo_dir / name / "metrics.json").read_text())
        assert metrics["strategy"] == name
        name = demo_config(name).sampler["name"]
        assert metrics["ground_truth"]["query"] == "digitsm_valid_8"
        assert metrics["ranking"]["n_archs"] == 200
        # every strategy gets a budget of 40 forward/backward passes: 40 // (its paths per step) steps, so
        # FairNAS (5 per step) takes 8; NSAS (11 once its archive is full) takes 3, still filling its archive
        train = pd.read_csv(demo_dir / name / "train_log.csv")
        per_step = SAMPLERS.get(name)().paths_per_step
        assert train["step"].iloc[-1] == metrics["train"]["steps"] == 40 // per_step
        assert train["paths"].iloc[-1] == metrics["train"]["paths"] <= 40
        if name in ("uniform", "fairnas", "novelty"):  # constant paths per step: the whole budget
            assert train["paths"].iloc[-1] == 40
        progress = pd.read_csv(demo_dir / name / "progress.csv")
        assert progress["progress"].iloc[-1] == 1.0 and (progress["n_archs"] == 12).all()
        probes = pd.read_csv(demo_dir / name / "probes.csv")
        assert probes["arch"].nunique() == 16 and probes["step"].max() == train["step"].iloc[-1]
        assert metrics["forgetting"]["n_probes"] == 16
    progress = pd.read_csv(demo_dir / "uniform" / "progress.csv")
    assert progress["step"].tolist() == [20, 40] and progress["progress"].tolist() == [0.5, 1.0]
    compare = demo_dir / "compare"
    for f in ("compare.csv", "summary.csv", "summary.md", "correlations.png", "scatter.svg", "tau_vs_progress.png",
              "forgetting_probe_acc.png", "forgetting_drop.svg", "forgetting_probe_tau.png"):
        assert (compare / f).stat().st_size > 0
    summary = pd.read_csv(compare / "summary.csv")
    assert sorted(summary["strategy"]) == sorted(all_strategies())
    # the printed table stays narrow with every strategy in it, and carries each strategy's own numbers
    from harness.compare import load_run, strategy_table
    from harness.demo import compact_table

    table = strategy_table([load_run(demo_dir / n) for n in all_strategies()])
    lines = compact_table(table).splitlines()
    assert len(lines) == 2 + len(all_strategies()) and max(len(line) for line in lines) <= 110
    uniform = json.loads((demo_dir / "uniform" / "metrics.json").read_text())["ranking"]
    row = next(line for line in lines if line.startswith("uniform "))
    assert f"{uniform['kendall_tau']['value']:.3f}" in row and f"{uniform['spearman']['value']:.3f}" in row


def test_demo_does_not_rerun_finished_strategies(demo_dir, capsys):
    before = (demo_dir / "uniform" / "metrics.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(demo_dir), "--quiet", "--strategy", "uniform"]) == 0
    assert (demo_dir / "uniform" / "metrics.json").stat().st_mtime_ns == before
    assert "finished earlier" in capsys.readouterr().err


def test_compare_cli_on_real_runs(demo_dir, tmp_path, capsys):
    run, copy = demo_dir / "uniform", tmp_path / "uniform-copy"
    shutil.copytree(run, copy)  # a second run directory (the same directory twice is refused: one seed each)
    assert main(["compare", str(run), str(copy), "--out", str(tmp_path / "cmp")]) == 0
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
    # a baseline of another query is not comparable: exit 4, neither a pass nor a regression
    data["ground_truth_query"] = "cifar10valid_valid_200"
    baseline.write_text(json.dumps(data))
    assert main(["check", str(run), "--baseline", str(baseline)]) == 4
    # a baseline from several runs (here two strategies stand in for seeds of one experiment, strategy unchecked)
    seeds = [str(demo_dir / s) for s in ("uniform", "fairnas")]
    assert main(["check", *seeds, "--baseline", str(baseline), "--update", "--description", "two runs"]) == 4
    data = json.loads(baseline.read_text())  # not rewritten: two strategies are not one experiment
    assert data["ground_truth_query"] == "cifar10valid_valid_200"
    assert main(["check", str(run), str(run), "--baseline", str(baseline)]) == 2  # check takes one run


def _load_make_report():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "reports" / "make_report.py"
    spec = importlib.util.spec_from_file_location("make_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_reading_compares_strategies_with_uniform_over_seeds(demo_dir):
    from harness.compare import load_run
    make_report = _load_make_report()
    runs = [load_run(demo_dir / n) for n in ("uniform", "fairnas")]
    # one seed each: the tau verdict per run, and no t-test without a seed spread
    text = make_report._reading(runs)
    assert "`uniform` (seed 0): Kendall tau" in text and "one seed: no seed-to-seed spread" in text
    assert "mean forgetting" in text
    # three seeds each, fairnas clearly above uniform: Welch's t-test calls it a difference
    seeded = []
    for name, taus in (("uniform", [0.10, 0.12, 0.11]), ("fairnas", [0.50, 0.52, 0.51])):
        for seed, tau in enumerate(taus):
            r = load_run(demo_dir / name)
            r.seed = seed
            r.metrics["kendall_tau"] = {**r.metrics["kendall_tau"], "value": tau}
            seeded.append(r)
    text = make_report._reading(seeded)
    assert "`fairnas` (3 seeds): Kendall tau 0.510 ± 0.010" in text
    assert "+0.400 against `uniform`" in text and "larger than the seed-to-seed spread" in text
    summary = make_report._summary(seeded)
    assert "`fairnas`'s, 0.510" in summary and "`fairnas` differs from `uniform`" in summary
    assert "weak" not in summary
    # overlapping seeds: within noise
    for r, tau in zip(seeded[3:], [0.05, 0.20, 0.11]):
        r.metrics["kendall_tau"]["value"] = tau
    assert "within the seed-to-seed spread" in make_report._reading(seeded)
    summary = make_report._summary(seeded)
    assert "no strategy differs from `uniform`" in summary and "ranking is weak here" in summary
    # several strategies against uniform are one family: Holm. `fairnas` alone would pass at p < 0.05; with two
    # more strategies compared its adjusted p is 3 x its raw p (the smallest of the three), above 0.05
    from scipy import stats
    base, close = [0.10, 0.12, 0.11], [0.127, 0.137, 0.147]
    p = stats.ttest_ind(close, base, equal_var=False).pvalue
    assert 0.05 / 3 < p < 0.05  # the setting this part is about
    family = []
    for name, taus in (("uniform", base), ("fairnas", close), ("nsas", [0.05, 0.20, 0.11]), ("novelty", base)):
        for seed, tau in enumerate(taus):
            r = load_run(demo_dir / "uniform")
            r.strategy, r.seed = name, seed
            r.metrics["kendall_tau"] = {**r.metrics["kendall_tau"], "value": tau}
            family.append(r)
    summary = make_report._summary(family)
    assert "no strategy differs from `uniform`" in summary and "over the 3 comparisons" in summary
    assert "`fairnas`: p < 0.05 before the correction only" in summary
    text = make_report._reading(family)
    assert f"p = {p:.2f}, Holm-adjusted over the 3 strategies compared with `uniform` p = {3 * p:.2f}" in text
    assert "not a demonstrated difference" in text.split("`fairnas`")[1].split("\n")[0]
    # an undefined test (constant estimates: NaN taus) is left out of the family, not counted as a non-difference
    for r in family:
        if r.strategy == "nsas":
            r.metrics["kendall_tau"]["value"] = float("nan")
    text = make_report._reading(family)
    assert "`nsas` (3 seeds)" in text and "Welch's t-test undefined" in text
    assert f"Holm-adjusted over the 2 strategies compared with `uniform` p = {2 * p:.2f}" in text
    assert "not tested (one seed, or an undefined test): `nsas`" in make_report._summary(family)
    # another reference (the shrinking report tests every rule against `none`, uniform without shrinking)
    for r in family:
        r.strategy = {"uniform": "none"}.get(r.strategy, r.strategy)
    summary = make_report._summary(family, "none")
    assert "over the 2 comparisons with `none`" in summary and "`fairnas`: p < 0.05 before the correction only" in summary
    assert f"compared with `none` p = {2 * p:.2f}" in make_report._reading(family, "none")


def test_report_refuses_a_reference_that_is_not_one_of_its_strategies(demo_dir, tmp_path, monkeypatch, capsys):
    make_report = _load_make_report()
    monkeypatch.setattr("sys.argv", ["make_report.py", str(demo_dir / "uniform"), str(demo_dir / "fairnas"),
                                     "--out", str(tmp_path / "r"), "--title", "t", "--command", "c",
                                     "--wall-seconds", "1", "--reference", "none"])
    with pytest.raises(SystemExit) as exit_:
        make_report.main()
    assert exit_.value.code == 2 and not (tmp_path / "r").exists()
    assert "--reference 'none' is not one of the report's strategies: fairnas, uniform" in capsys.readouterr().err
