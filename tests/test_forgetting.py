"""Forgetting probes, decay tracers and the derived metrics, on hand-made numbers and a scripted evaluator."""
import random

import numpy as np
import pandas as pd
import pytest

from harness.forgetting import (DECAY_COLUMNS, PROBE_COLUMNS, ForgettingMonitor, choose_probes, decay_curve, schedule,
                                forgetting_by_interval, forgetting_pairs, probe_tau, summarise)
from harness.space import Arch

A, B, C = Arch([3] * 6), Arch([2] * 6), Arch([1] * 6)


def test_probes_are_one_per_ground_truth_stratum_and_seeded():
    archs = [Arch.from_index(i) for i in range(100)]
    truth = np.random.default_rng(0).uniform(0, 100, 100)
    chosen = choose_probes(archs, truth, 10, random.Random(0))
    ranks = np.argsort(np.argsort(truth))
    assert [int(ranks[i]) // 10 for i in chosen] == list(range(10))  # one from each decile, lowest first
    assert chosen == choose_probes(archs, truth, 10, random.Random(0))
    assert chosen != choose_probes(archs, truth, 10, random.Random(1))
    with pytest.raises(ValueError, match="cannot choose 11"):
        choose_probes(archs[:10], truth[:10], 11, random.Random(0))


def probe_frame(rows):
    return pd.DataFrame([dict(zip(PROBE_COLUMNS, r)) for r in rows], columns=PROBE_COLUMNS)


def test_forgetting_skips_intervals_in_which_the_probe_was_trained():
    # probe A: 80 -> 70 -> (trained in between) 90 -> 85 ; probe B: 50 -> 52 -> 52 -> 40
    probes = probe_frame([
        (10, "A", 0, 80, 90, 0), (20, "A", 0, 70, 90, 0), (30, "A", 0, 90, 90, 2), (40, "A", 0, 85, 90, 0),
        (10, "B", 0, 50, 60, 0), (20, "B", 0, 52, 60, 0), (30, "B", 0, 52, 60, 0), (40, "B", 0, 40, 60, 0),
    ])
    pairs = forgetting_pairs(probes)
    a = pairs[pairs["arch"] == "A"]
    # A's pairs may not span step 30 (trained in (20, 30]): only 10->20 and 30->40
    assert sorted(zip(a["start"], a["interval"], a["drop"])) == [(10, 10, 10.0), (30, 10, 5.0)]
    assert len(pairs[pairs["arch"] == "B"]) == 6  # every pair of B's 4 rows
    by = forgetting_by_interval(probes).set_index("interval")
    assert by.loc[10, "n"] == 5 and by.loc[10, "mean_drop"] == pytest.approx((10 + 5 - 2 + 0 + 12) / 5)
    assert by.loc[30, "mean_drop"] == pytest.approx(10.0) and by.loc[30, "n"] == 1  # B: 50 -> 40
    summary = summarise(probes, pd.DataFrame(columns=DECAY_COLUMNS))
    assert summary["mean_forgetting"] == pytest.approx(5.0) and summary["n_probes"] == 2
    assert summary["decay"] == []


def test_probe_tau_ranks_probe_accuracy_against_ground_truth():
    probes = probe_frame([(1, "A", 0, 10, 1, 0), (1, "B", 0, 20, 2, 0), (1, "C", 0, 30, 3, 0),
                          (2, "A", 0, 30, 1, 0), (2, "B", 0, 20, 2, 0), (2, "C", 0, 10, 3, 0)])
    tau = probe_tau(probes)
    assert tau["step"].tolist() == [1, 2] and tau["kendall_tau"].tolist() == pytest.approx([1.0, -1.0])
    assert summarise(probes, pd.DataFrame(columns=DECAY_COLUMNS))["final_probe_tau"] == pytest.approx(-1.0)


def test_decay_curve_is_the_drop_from_right_after_training():
    decay = pd.DataFrame([dict(zip(DECAY_COLUMNS, r)) for r in [
        (10, "A", 0, 10, 0, 90, 0), (10, "A", 1, 11, 0, 85, 0), (10, "A", 5, 15, 0, 80, 1),
        (20, "B", 0, 20, 0, 60, 0), (20, "B", 1, 21, 0, 61, 0), (20, "B", 5, 25, 0, 50, 0)]])
    curve = decay_curve(decay).set_index("lag")
    assert curve.loc[1, "mean_drop"] == pytest.approx((5 - 1) / 2)
    assert curve.loc[5, "mean_drop"] == pytest.approx((10 + 10) / 2)
    assert curve.loc[5, "retrained_fraction"] == 0.5 and curve.loc[1, "n"] == 2


def test_monitor_schedules_probes_and_tracers():
    seen = []

    def evaluate(archs):
        seen.append(list(archs))
        return [(1.0, 50.0 + len(seen)) for _ in archs]

    mon = ForgettingMonitor(evaluate, [A, B], [10.0, 20.0], probe_every=4, decay_every=3, decay_lags=[1, 2],
                            total_steps=10)
    plans = {s: [C] for s in range(1, 11)}
    plans[2], plans[5] = [A, C], [B]
    used = [mon.after_step(s, plans[s]) for s in range(1, 11)]
    probes, decay = mon.frames()
    assert probes["step"].tolist() == [4, 4, 8, 8, 10, 10]
    assert probes["trained"].tolist() == [1, 0, 0, 1, 0, 0]  # A trained at step 2, B at step 5
    # tracers start at steps 3, 6 (9 + 2 > 10 would not finish); scored at lags 0, 1, 2
    assert list(zip(decay["trained_step"], decay["lag"], decay["step"])) == [
        (3, 0, 3), (3, 1, 4), (3, 2, 5), (6, 0, 6), (6, 1, 7), (6, 2, 8)]
    assert decay["arch"].tolist() == [C.to_str()] * 6 and decay["retrained"].tolist() == [0, 1, 1, 0, 1, 2]  # step 5 trained B only
    assert used == [s in (3, 4, 5, 6, 7, 8, 10) for s in range(1, 11)]
    assert seen[1] == [A, B, C]  # step 4: probes and the due tracer in one evaluation
    # the state round-trips mid-run
    other = ForgettingMonitor(evaluate, [A, B], [10.0, 20.0], 4, 3, [1, 2], 10)
    other.load_state_dict(mon.state_dict())
    assert other.frames()[0].equals(probes) and other.trained_ == mon.trained_


def test_schedule_spreads_probes_and_tracers_over_the_run():
    from harness.config import ForgettingSection

    assert schedule(ForgettingSection(), 1000) == (50, 90)  # 20 probe points; 10 tracers in the first 900 steps
    assert schedule(ForgettingSection(probe_every=7, decay_every=3), 1000) == (7, 3)
    assert schedule(ForgettingSection(), 90) == (4, 0)  # no tracer could reach lag 100
    assert schedule(ForgettingSection(probes=0, decay_tracers=0), 1000) == (0, 0)
    assert schedule(ForgettingSection(decay_lags=[]), 1000)[1] == 0
