"""reports/unsampled-ops: per-seed metrics of both modes, paired and Welch tests, results.json and README table."""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from harness.regression import read_run_metrics, run_value

METRICS = ["kendall_tau", "spearman", "final_probe_tau", "final_loss", "mean_estimate"]
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
seeds = sorted({p.name for m in ("skip", "zero") for p in (runs / m).glob("seed*") if (p / "metrics.json").exists()})
seeds = [s for s in seeds if all((runs / m / s / "metrics.json").exists() for m in ("skip", "zero"))]
result = {"seeds": [int(s[4:]) for s in seeds], "config": "configs/regress-digitsm.toml (uniform)", "metrics": {}}
for name in METRICS:
    v = {m: np.array([run_value(read_run_metrics(runs / m / s), name) for s in seeds]) for m in ("skip", "zero")}
    diff = v["zero"] - v["skip"]
    paired = stats.ttest_rel(v["zero"], v["skip"])
    welch = stats.ttest_ind(v["zero"], v["skip"], equal_var=False)
    result["metrics"][name] = {
        "skip": v["skip"].tolist(), "zero": v["zero"].tolist(),
        "skip_mean": float(v["skip"].mean()), "skip_std": float(v["skip"].std(ddof=1)),
        "zero_mean": float(v["zero"].mean()), "zero_std": float(v["zero"].std(ddof=1)),
        "mean_difference": float(diff.mean()), "difference_std": float(diff.std(ddof=1)),
        "paired_t_p": float(paired.pvalue), "welch_p": float(welch.pvalue)}
(out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"{len(seeds)} seeds: {result['seeds']}")
print("| metric | skip (mean ± std) | zero (mean ± std) | zero − skip | paired t p | Welch p |")
print("|---|---|---|---|---|---|")
for name, r in result["metrics"].items():
    print(f"| {name} | {r['skip_mean']:.3f} ± {r['skip_std']:.3f} | {r['zero_mean']:.3f} ± {r['zero_std']:.3f} | "
          f"{r['mean_difference']:+.3f} ± {r['difference_std']:.3f} | {r['paired_t_p']:.3g} | {r['welch_p']:.3g} |")
