import numpy as np
import pytest
from scipy import stats

from harness import metrics as M


def test_correlations_match_scipy_and_extremes():
    rng = np.random.default_rng(0)
    g = rng.normal(size=200)
    e = g + rng.normal(size=200)
    assert M.kendall_tau(e, g) == pytest.approx(stats.kendalltau(e, g).statistic)
    assert M.spearman(e, g) == pytest.approx(stats.spearmanr(e, g).statistic)
    assert M.pearson(e, g) == pytest.approx(stats.pearsonr(e, g).statistic)
    assert M.kendall_tau(g, g) == pytest.approx(1.0)
    assert M.kendall_tau(-g, g) == pytest.approx(-1.0)


def test_kendall_tau_b_handles_ties():
    e = np.array([1, 1, 2, 3])
    g = np.array([1, 2, 3, 4])
    # tau-b = (C - D) / sqrt((n0 - t_e) * (n0 - t_g)) with C=5, D=0, n0=6, t_e=1
    assert M.kendall_tau(e, g) == pytest.approx(5 / np.sqrt(5 * 6))


def test_precision_regret_and_top_tau_on_a_crafted_ranking():
    g = np.arange(100, dtype=float)  # true best is index 99
    e = g.copy()
    e[99], e[98] = -1.0, 1000.0  # the estimator misses the best, picks the second best
    assert M.precision_at_top(e, g, 1) == 0.0  # top-1 set {98} vs {99}
    assert M.precision_at_top(e, g, 5) == pytest.approx(4 / 5)
    assert M.precision_at_top(e, g, 10) == pytest.approx(9 / 10)
    assert M.regret(e, g) == pytest.approx(1.0)
    assert M.regret(g, g) == 0.0
    # within the true top 10% (indices 90..99) one arch is ranked last: 9 discordant pairs of 45
    assert M.kendall_tau_top(e, g, 10) == pytest.approx((36 - 9) / 45)


def test_report_has_every_metric_with_a_ci_that_brackets_it():
    rng = np.random.default_rng(1)
    g = rng.normal(size=150)
    e = g + rng.normal(size=150)
    rep = M.ranking_report(e, g, n_resamples=300, seed=0)
    assert set(rep) == {"kendall_tau", "spearman", "pearson", "precision_top1pct", "precision_top5pct",
                        "precision_top10pct", "regret_top1", "kendall_tau_top10pct", "n_archs"}
    for name in ("kendall_tau", "spearman", "pearson"):
        assert rep[name]["ci_low"] < rep[name]["value"] < rep[name]["ci_high"]
    wide = M.bootstrap_ci(M.kendall_tau, e[:30], g[:30], n_resamples=300)
    assert wide[1] - wide[0] > rep["kendall_tau"]["ci_high"] - rep["kendall_tau"]["ci_low"]
    assert M.ranking_report(e, g, n_resamples=300, seed=0) == rep  # seeded


@pytest.mark.parametrize("e, g, msg", [([1, 2], [1, 2, 3], "aligned"), ([1, np.nan], [1, 2], "finite"),
                                       ([1], [1], "at least 2")])
def test_bad_inputs_are_rejected(e, g, msg):
    with pytest.raises(ValueError, match=msg):
        M.kendall_tau(e, g)


def test_constant_estimator_gives_undefined_correlation_and_null_json(tmp_path):
    import json

    from harness.io import write_json

    g = np.arange(10.0)
    e = np.full(10, 42.0)
    assert np.isnan(M.kendall_tau(e, g)) and np.isnan(M.spearman(e, g)) and np.isnan(M.pearson(e, g))
    assert M.regret(e, g) == pytest.approx(4.5)  # a random pick among all 10 tied: 9 - mean(0..9)
    write_json(tmp_path / "m.json", {"tau": M.kendall_tau(e, g), "ok": 1.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"tau": None, "ok": 1.5}


def test_ties_are_resolved_in_expectation_not_by_input_order():
    # by hand: n = 20, top 5% = 1 architecture, top 10% = 2. The estimator ties items 0..3 at its top; the true
    # best is item 2 and the true second item 19. A random order of the tie puts item 2 first with probability 1/4.
    g = np.arange(20, dtype=float)
    g[2], g[19] = 100.0, 50.0
    e = np.zeros(20)
    e[:4] = 7.0
    assert M.precision_at_top(e, g, 5) == pytest.approx(1 / 4)
    # top 2 of the estimator: 2 of the 4 tied, each in with probability 1/2; true top 2 = {2, 19}: only item 2
    # can be hit, so the expected overlap is 1/2 of 2 slots
    assert M.precision_at_top(e, g, 10) == pytest.approx(0.5 / 2)
    # regret: best 100 minus the mean truth of the tied top {0: 0, 1: 1, 2: 100, 3: 3}
    assert M.regret(e, g) == pytest.approx(100 - (0 + 1 + 100 + 3) / 4)
    # the same numbers whatever the input order
    perm = np.random.default_rng(0).permutation(20)
    assert M.precision_at_top(e[perm], g[perm], 5) == pytest.approx(1 / 4)
    assert M.regret(e[perm], g[perm]) == pytest.approx(M.regret(e, g))


def test_ties_in_the_ground_truth_share_the_top_slots():
    # true values tie 3 ways at the top; the estimator picks item 0 alone: it is in the true top-1 w.p. 1/3
    g = np.array([5.0, 5.0, 5.0] + [0.0] * 17)
    e = np.arange(20, dtype=float)[::-1].copy()
    assert M.precision_at_top(e, g, 5) == pytest.approx(1 / 3)
    assert M.regret(e, g) == 0.0
    assert M.top_inclusion(np.array([3.0, 1.0, 1.0, 1.0, 0.0]), 2).tolist() == pytest.approx([1, 1 / 3, 1 / 3, 1 / 3, 0])


def test_undefined_scores_rank_last_and_tied():
    out = M.undefined_last([3.0, float("nan"), 1.0, float("inf")])
    assert out.tolist() == [3.0, 0.0, 1.0, 0.0]  # one below the lowest defined score, 1.0
    assert M.undefined_last([float("nan")] * 2).tolist() == [0.0, 0.0]
    assert M.undefined_last([2.0, 5.0]).tolist() == [2.0, 5.0]
