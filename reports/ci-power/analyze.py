"""False-alarm rate, random-ranking detection and power of the ranking-regression suite, from recorded runs.

    python reports/ci-power/analyze.py RUNS_DIR --out reports/ci-power/analysis.json

RUNS_DIR holds ENTRY/seedS run directories of unchanged code for every suite entry, for the baseline seeds
and the CI seeds (15 per entry with 10 + 5); ``nb201-harness regress --record`` and ``regress`` write them.

- **False alarms, derived from recorded runs**: every way of splitting an entry's 15 runs into 10 "baseline"
  and 5 "CI" runs is one suite run of unchanged code (the seed is the only thing that differs). The j-th split
  is applied to every entry at once and tested with the suite's own ``evaluate`` (Holm over all tests), so
  each of the C(15, 5) = 3,003 splits is one full-suite verdict. The splits share runs, so they are not
  independent draws; the rate is an estimate with that caveat, next to the exact normal-theory value (Holm
  keeps the family at <= family_alpha).
- **Random ranking**: for each entry in turn, its 5 CI runs' estimates are replaced by random permutations of
  the architectures' ground truth (an estimator that knows nothing), their ranking metrics recomputed with
  harness.metrics, every other metric kept, and the suite evaluated against the committed baselines;
  10,000 simulated suite runs per entry.
- **Power**: the chance that the suite flags a true drop of 0.1 Kendall tau in the mean of 5 CI runs
  (one-sided pooled t-test, noncentral t, at Holm's strictest level alpha/m, i.e. the worst case), and the
  drop detected with 80% power, from each baseline's measured spread.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness import metrics as M
from harness import suite as S
from harness.io import write_json
from harness.regression import read_run_metrics, run_value

RANKING = {"kendall_tau": M.kendall_tau, "spearman": M.spearman,
           "precision_top5pct": lambda e, g: M.precision_at_top(e, g, 5), "regret_top1": M.regret}


def _values(entries: list[S.Entry], runs: Path, seeds: list[int]) -> dict:
    """{(entry, metric): [value per seed]} from the run directories."""
    out = {}
    for e in entries:
        ms = [read_run_metrics(runs / e.name / f"seed{s}") for s in seeds]
        for m in e.metrics:
            out[e.name, m] = [run_value(r, m) for r in ms]
    return out


def false_alarms(suite: S.Suite, runs: Path) -> dict:
    seeds = suite.baseline_seeds + suite.ci_seeds
    vals = _values(suite.entries, runs, seeds)
    k, fails, by_test = len(suite.ci_seeds), 0, {}
    splits = list(itertools.combinations(range(len(seeds)), k))
    for ci in splits:
        rest = [i for i in range(len(seeds)) if i not in ci]
        base = {e.name: {"metrics": {m: {"runs": [vals[e.name, m][i] for i in rest]} for m in e.metrics}}
                for e in suite.entries}
        tests = S.evaluate(suite, base, {key: [v[i] for i in ci] for key, v in vals.items()})
        fails += any(t.regressed for t in tests)
        for t in tests:
            by_test[f"{t.entry}.{t.metric}"] = by_test.get(f"{t.entry}.{t.metric}", 0) + t.regressed
    # one-sided 95% upper bound (Clopper-Pearson) on the per-suite-run false-alarm rate
    upper = float(stats.beta.ppf(0.95, fails + 1, len(splits) - fails)) if fails < len(splits) else 1.0
    return {"suite_runs": len(splits), "failed": fails, "rate": fails / len(splits), "upper95_if_independent": upper,
            "failures_by_test": {k: v for k, v in by_test.items() if v}, "normal_theory_bound": suite.family_alpha}


def random_ranking(suite: S.Suite, runs: Path, baselines: dict, trials: int = 10000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ci_vals = _values(suite.entries, runs, suite.ci_seeds)
    gts = {e.name: [pd.read_csv(runs / e.name / f"seed{s}" / "estimates.csv")["ground_truth"].to_numpy(float)
                    for s in suite.ci_seeds] for e in suite.entries}
    out = {}
    for e in suite.entries:
        ranked = [m for m in e.metrics if m in RANKING or m == "alpha_tau"]  # what an estimate ranking decides
        if not ranked:
            continue
        caught = 0
        for _ in range(trials):
            values = dict(ci_vals)
            sims = {m: [] for m in ranked}
            for gt in gts[e.name]:
                est = rng.permutation(gt)  # a ranking that knows nothing; same values, so the same ties
                for m in ranked:
                    sims[m].append(RANKING.get(m, M.kendall_tau)(est, gt))
            for m in ranked:
                values[e.name, m] = sims[m]
            caught += any(t.regressed for t in S.evaluate(suite, baselines, values))
        out[e.name] = {"trials": trials, "caught": caught, "rate": caught / trials, "metrics_randomised": ranked}
    return out


def benchmark(suite: S.Suite, runs: Path, entry: str = "uniform") -> dict:
    """Issue-14 targets for uniform on the benchmark, over all recorded runs of unchanged code: Kendall tau mean and
    std over seeds, the inherited-vs-stand-alone gap, and the ground truth's own seed-to-seed tau (the ceiling)."""
    seeds = suite.baseline_seeds + suite.ci_seeds
    taus, within, gaps = [], [], []
    for s in seeds:
        d = runs / entry / f"seed{s}"
        taus.append(run_value(read_run_metrics(d), "kendall_tau"))
        f = pd.read_csv(d / "estimates.csv")
        gap = f["ground_truth"] - f["estimate"]
        within.append(float((gap.abs() <= 15).mean()))
        gaps.append(float(gap.median()))
    e = next(x for x in suite.entries if x.name == entry)
    gt = pd.read_csv(S.entry_config(e, 0).groundtruth.source)
    cols = sorted(c for c in gt.columns if c.startswith("digitsm_valid_8_seed"))
    ceiling = M.kendall_tau(gt[cols[0]].to_numpy(float), gt[cols[1]].to_numpy(float))
    return {"entry": entry, "seeds": seeds, "kendall_tau": taus, "tau_mean": float(np.mean(taus)),
            "tau_std": float(np.std(taus, ddof=1)), "fraction_within_15_points": within,
            "median_gap_points": gaps, "ground_truth_seed_tau": ceiling, "ground_truth_seed_columns": cols}


def power_table(suite: S.Suite, baselines: dict) -> list[dict]:
    alpha, k = suite.family_alpha / suite.n_tests, len(suite.ci_seeds)
    rows = []
    for e in suite.entries:
        for m in e.metrics:
            b = baselines[e.name]["metrics"][m]
            s, n = b["runs_std"], b["n_runs"]
            d = S.GUARDS[m].direction
            a = alpha / 2 if d == "two-sided" else alpha
            row = {"entry": e.name, "metric": m, "direction": d, "mean": b["value"], "std": s, "n": n,
                   "detectable_shift": b["tolerance"]}
            # smallest shift found with 80% power (bisection on the noncentral-t power)
            lo, hi = 0.0, 20 * s + 1e-9
            for _ in range(60):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if S.power(mid, s, n, k, a) < 0.8 else (lo, mid)
            row["shift_at_80pct_power"] = hi
            if m in ("kendall_tau", "alpha_tau", "tau_in_space"):
                row["power_for_tau_drop_0.1"] = S.power(0.1, s, n, k, a)
            rows.append(row)
    return rows


def planted_verdict(suite: S.Suite, baselines: dict, patched: Path, unchanged: Path, entries: list[str]) -> dict:
    """The full suite's verdict when ``entries`` ran on patched code (runs in ``patched``) and every other entry
    is taken from unchanged code's CI runs: conservative, since a bug in shared code would move those too."""
    values = _values(suite.entries, unchanged, suite.ci_seeds)
    values.update(_values([e for e in suite.entries if e.name in entries], patched, suite.ci_seeds))
    tests = S.evaluate(suite, baselines, values)
    return {"failed": any(t.regressed for t in tests), "regressed": [f"{t.entry}.{t.metric}" for t in tests if t.regressed],
            "table": S.table(tests)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs")
    p.add_argument("--out", required=True)
    p.add_argument("--trials", type=int, default=10000)
    p.add_argument("--patched", help="with --entry: runs of patched code; writes that verdict instead")
    p.add_argument("--entry", action="append")
    p.add_argument("--status", help="with --patched: make.sh's status JSON of that patch (structural tests, time)")
    args = p.parse_args()
    suite, runs = S.load_suite(), Path(args.runs)
    baselines = {e.name: S.load_baseline(suite.baseline_path(e), e, suite) for e in suite.entries}
    if args.patched:
        verdict = planted_verdict(suite, baselines, Path(args.patched), runs, args.entry)
        if args.status:
            verdict.update(json.loads(Path(args.status).read_text()))
        write_json(args.out, verdict)
        print(verdict["table"])
        print("suite", "FAILED" if verdict["failed"] else "passed", verdict["regressed"])
        return
    result = {"suite": str(suite.path.relative_to(S.ROOT)), "n_tests": suite.n_tests,
              "n_baseline": len(suite.baseline_seeds), "k_ci": len(suite.ci_seeds),
              "family_alpha": suite.family_alpha, "holm_strictest_alpha": suite.family_alpha / suite.n_tests,
              "benchmark": benchmark(suite, runs), "false_alarms": false_alarms(suite, runs),
              "random_ranking": random_ranking(suite, runs, baselines, args.trials),
              "power": power_table(suite, baselines)}
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "power"}, indent=1))
    for r in result["power"]:
        print({k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
