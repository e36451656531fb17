"""The ranking-regression suite's statistics (harness/suite.py) and its committed baselines."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from harness import suite as S
from harness.regression import RegressionError

COMMITTED = S.load_suite()


def test_holm_step_down_by_hand():
    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops: 0.03 and 0.04 stand
    assert S.holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert S.holm([0.2, 0.3], 0.05) == [False, False]
    assert S.holm([0.001, 0.001], 0.01) == [True, True]


def test_holm_adjusted_p_values_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> made monotone: 0.04 becomes 0.06
    assert S.holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm_adjusted([0.6, 0.7]) == [1.0, 1.0]  # 0.6 * 2 = 1.2, capped at 1; 0.7 then made monotone
    assert S.holm_adjusted([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])  # ties: 0.06, then max(0.04, 0.06)
    for p in ([0.01, 0.04, 0.03, 0.005], [0.02, 0.02, 0.5], [0.001, 0.2, 0.011]):  # the same decisions as holm
        assert [a <= 0.05 for a in S.holm_adjusted(p)] == S.holm(p, 0.05)
    assert S.holm_adjusted([0.04]) == [0.04]  # one test: nothing to correct
    assert S.holm_adjusted([]) == []


def test_pvalue_matches_the_textbook_pooled_t_statistic():
    base, ci = np.array([0.50, 0.52, 0.49, 0.51, 0.53, 0.50, 0.48, 0.52, 0.51, 0.50]), np.array([0.45, 0.47, 0.44])
    n, k = len(base), len(ci)
    sp2 = ((n - 1) * base.var(ddof=1) + (k - 1) * ci.var(ddof=1)) / (n + k - 2)
    t = (ci.mean() - base.mean()) / math.sqrt(sp2 * (1 / n + 1 / k))
    assert S.pvalue(ci, base, "higher") == pytest.approx(stats.t.cdf(t, n + k - 2))
    assert S.pvalue(ci, base, "lower") == pytest.approx(stats.t.sf(t, n + k - 2))
    assert S.pvalue(ci, base, "two-sided") == pytest.approx(2 * stats.t.cdf(t, n + k - 2))


def test_pvalue_edge_cases():
    same = np.full(10, 0.5)
    assert S.pvalue(np.full(3, 0.5), same, "higher") == 1.0
    assert S.pvalue(np.full(3, 0.4), same, "higher") == 0.0  # no spread at all: any drop is certain
    assert S.pvalue(np.full(3, 0.6), same, "higher") == 1.0
    assert S.pvalue(np.full(3, 0.6), same, "two-sided") == 0.0
    assert S.pvalue(np.array([0.5, math.nan, 0.5]), same + np.arange(10) * 1e-3, "higher") == 0.0


def _suite(n_metrics: int, n: int = 10, k: int = 3, alpha: float = 0.01) -> S.Suite:
    suite = S.Suite(COMMITTED.path, alpha, list(range(n)), list(range(100, 100 + k)))
    suite.entries = [S.Entry("e", "c.toml", [], list(S.GUARDS)[:n_metrics])]
    return suite


@pytest.mark.slow  # a simulation of many suite evaluations (about 15 s); the fast tier stays within 5 minutes
def test_family_false_alarm_rate_under_no_change_is_at_most_alpha():
    """Monte Carlo: baseline and CI runs from one normal distribution; a suite of 7 tests fails in <= 1% of
    2,000 simulated suite runs (binomial 99.9% upper margin)."""
    rng, suite, trials = np.random.default_rng(0), _suite(7), 2000
    failures = 0
    for _ in range(trials):
        base = {"e": {"metrics": {m: {"runs": rng.normal(0.5, 0.03, 10).tolist()} for m in suite.entries[0].metrics}}}
        ci = {("e", m): rng.normal(0.5, 0.03, 3).tolist() for m in suite.entries[0].metrics}
        failures += any(t.regressed for t in S.evaluate(suite, base, ci))
    assert failures / trials <= 0.01 + 3.1 * math.sqrt(0.01 * 0.99 / trials)


@pytest.mark.slow  # a simulation (about 4 s); the fast tier stays within 5 minutes
def test_power_formula_matches_simulation():
    """The noncentral-t power of S.power equals the rejection rate of S.pvalue in simulation."""
    rng, s, drop, alpha, trials = np.random.default_rng(1), 0.03, 0.06, 0.01 / 7, 4000
    hits = sum(S.pvalue(rng.normal(0.5 - drop, s, 3), rng.normal(0.5, s, 10), "higher") <= alpha
               for _ in range(trials))
    p = S.power(drop, s, 10, 3, alpha)
    assert 0.2 < p < 0.95  # a regime where the comparison says something
    assert abs(hits / trials - p) < 4 * math.sqrt(p * (1 - p) / trials)


def test_detectable_shift_is_the_edge_of_rejection():
    base = np.random.default_rng(2).normal(0.5, 0.02, 10)
    shift = S.detectable_shift(base, 3, 0.001, "higher")
    # CI runs with the baseline's own spread: just beyond the shift rejects, just inside does not
    ci = base.mean() + (base[:3] - base[:3].mean()) * (base.std(ddof=1) / base[:3].std(ddof=1))
    assert S.pvalue(ci - shift * 1.02, base, "higher") < 0.001 < S.pvalue(ci - shift * 0.98, base, "higher")


def test_check_not_vacuous_flags_a_band_reaching_the_random_value():
    b = {"metrics": {"kendall_tau": {"value": 0.1, "tolerance": 0.12, "runs_std": 0.05, "floor": 0.0},
                     "final_loss": {"value": 0.5, "tolerance": 0.1, "runs_std": 0.0, "floor": None}}}
    problems = S.check_not_vacuous(b)
    assert any("kendall_tau" in p and "random" in p for p in problems)
    assert any("final_loss" in p and "std 0" in p for p in problems)


@pytest.mark.parametrize("text,needle", [
    ("[suite]\nfamily_alpha = 0.01\nbaseline_seeds = [0,1,2]\nci_seeds = [9,10]\n[[entry]]\nname='u'\n"
     "config='c.toml'\nmetrics=['kendall_tau']\n", ">= 10 baseline_seeds"),
    ("[suite]\nbaseline_seeds = [0,1,2,3,4,5,6,7,8,9]\nci_seeds = [9,10]\n[[entry]]\nname='u'\nconfig='c.toml'\n"
     "metrics=['kendall_tau']\n", "overlap"),
    ("[suite]\nbaseline_seeds = [0,1,2,3,4,5,6,7,8,9]\nci_seeds = [19,10]\n[[entry]]\nname='u'\nconfig='c.toml'\n"
     "metrics=['kendal_tau']\n", "metrics must be"),
    ("[suite]\nbogus = 1\n[[entry]]\nname='u'\nmetrics=['kendall_tau']\n", "unknown keys"),
    ("[suite]\nbaseline_seeds = [0,1,2,3,4,5,6,7,8,9]\nci_seeds = [19,10]\n[[entry]]\nname='u'\nconfig='c.toml'\n"
     "metrics=['kendall_tau']\nset=['run.seed=3']\n", "run.seed"),
])
def test_malformed_suite_is_one_clear_error(tmp_path, text, needle):
    (tmp_path / "suite.toml").write_text(text)
    with pytest.raises(RegressionError, match=needle):
        S.load_suite(tmp_path / "suite.toml")


# ------------------------------------------------------------ the committed suite and baselines

def _baselines():
    return {e.name: S.load_baseline(COMMITTED.baseline_path(e), e, COMMITTED) for e in COMMITTED.entries}


def test_every_entry_has_a_baseline_of_at_least_ten_runs_for_its_current_config():
    for name, data in _baselines().items():
        assert data["seeds"] == COMMITTED.baseline_seeds
        for m, b in data["metrics"].items():
            assert b["n_runs"] == len(b["runs"]) >= S.MIN_BASELINE_RUNS, (name, m)
            assert b["value"] == pytest.approx(np.mean(b["runs"])) and b["runs_std"] == pytest.approx(
                np.std(b["runs"], ddof=1))


def test_no_committed_baseline_is_vacuous():
    """No degenerate spread, and no band a random ranking's expected value falls inside."""
    for name, data in _baselines().items():
        assert S.check_not_vacuous(data) == [], name
        for m in COMMITTED.entries[[e.name for e in COMMITTED.entries].index(name)].metrics:
            if S.GUARDS[m].direction != "two-sided":
                assert data["metrics"][m]["floor"] is not None, f"{name}.{m}: one-sided guard without a chance value"


def test_a_random_ranking_fails_the_committed_suite():
    """CI runs whose one-sided metrics sit at the random-ranking value (with the baseline's own spread) fail."""
    base, rng = _baselines(), np.random.default_rng(3)
    for e in COMMITTED.entries:
        values = {}
        for f in COMMITTED.entries:
            for m in f.metrics:
                b = base[f.name]["metrics"][m]
                centre = b["floor"] if f.name == e.name and S.GUARDS[m].direction != "two-sided" else b["value"]
                values[f.name, m] = (centre + rng.normal(0, b["runs_std"], len(COMMITTED.ci_seeds))).tolist()
        tests = S.evaluate(COMMITTED, base, values)
        assert any(t.regressed for t in tests if t.entry == e.name), e.name


def test_recorded_runs_pass_against_themselves_in_leave_three_out():
    """No recorded baseline run is an outlier the test would flag: each 3 runs against the other 7."""
    for name, data in _baselines().items():
        for m, b in data["metrics"].items():
            runs = np.array(b["runs"])
            d = S.GUARDS[m].direction
            for i in range(0, len(runs) - 2, 3):
                ci, rest = runs[i:i + 3], np.delete(runs, range(i, i + 3))
                assert S.pvalue(ci, rest, d) > COMMITTED.family_alpha / COMMITTED.n_tests, (name, m, i)


def test_baseline_for_another_config_is_refused(tmp_path):
    e = COMMITTED.entries[0]
    data = json.loads(COMMITTED.baseline_path(e).read_text())
    data["config_sha256"] = "0" * 64
    (tmp_path / "b.json").write_text(json.dumps(data))
    with pytest.raises(RegressionError, match="another config"):
        S.load_baseline(tmp_path / "b.json", e, COMMITTED)


@pytest.mark.slow
def test_regress_records_passes_and_catches_a_planted_fault_end_to_end(tmp_path, monkeypatch, capsys):
    """A tiny suite through the CLI: --record writes a baseline of 10 runs, an unchanged rerun exits 0, and
    80% of the correct answers dropped in estimation (a planted fault) exit 1 naming mean_estimate."""
    import torch

    from harness import estimate as E
    from harness.cli import main

    gt = S.ROOT / "data" / "digitsm" / "digitsm_gt.csv"
    archs = json.dumps(__import__("pandas").read_csv(gt)["arch"].iloc[:4].tolist())
    sets = ["train.max_paths=30", "forgetting.probes=0", "forgetting.decay_tracers=0", "estimate.archs='list'",
            f"estimate.arch_list={archs}", "metrics.bootstrap=0", "train.log_every=10", "data.valid_subset=200"]
    (tmp_path / "suite.toml").write_text(
        "[suite]\nconfig = '%s'\nbaseline_seeds = [0,1,2,3,4,5,6,7,8,9]\nci_seeds = [100, 101]\n"
        "[[entry]]\nname = 'tiny'\nset = %s\nmetrics = ['mean_estimate', 'final_loss']\n"
        % (S.ROOT / "configs" / "regress-digitsm.toml", json.dumps(sets)))
    args = ["regress", "--suite", str(tmp_path / "suite.toml"), "--out", str(tmp_path / "runs"), "--workers", "1"]
    assert main([*args, "--record"]) == 0
    data = json.loads((tmp_path / "tiny.json").read_text())
    assert data["metrics"]["mean_estimate"]["n_runs"] == 10 and data["seeds"] == list(range(10))
    assert main(args) == 0
    assert "regress passed" in capsys.readouterr().out

    def lowered(real):  # (correct, loss sum, count) per architecture: 80% of the correct answers lost
        return lambda *a, **k: real(*a, **k) * torch.tensor([0.2, 1.0, 1.0])

    for engine in ("evaluate_arch", "evaluate_paths"):  # whichever estimation engine the run uses
        monkeypatch.setattr(E, engine, lowered(getattr(E, engine)))
    assert main([*args[:-4], "--out", str(tmp_path / "faulty"), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "regress FAILED" in out and "| tiny | mean_estimate |" in out and "REGRESSED" in out


def test_a_key_added_after_recording_keeps_the_digest_only_at_its_old_behaviour():
    """[train] unsampled_ops came after the baselines: at "skip" (what every run did before) the digest is the
    recorded one; "zero" is another experiment and changes it."""
    e = COMMITTED.entries[0]
    recorded = json.loads(COMMITTED.baseline_path(e).read_text())["config_sha256"]
    assert S.config_digest(e) == recorded
    other = S.Entry(e.name, e.config, [*e.sets, "train.unsampled_ops='zero'"], e.metrics, e.report)
    assert S.config_digest(other) != recorded
