"""Our estimators on the architectures NASLib recorded zero-cost scores for (CIFAR-10; a seeded 150 of its ~725),
each through `nb201-harness run configs/estimators-cifar10.toml`, against NASLib's recorded values and against
cifar10-valid 200-epoch accuracy. Writes naslib-agreement.json next to this file. From the repository root with
the venv active and the shared data beside the checkout (about 25 minutes on 2 CPU cores):
    python reports/estimators-cifar10/naslib_agreement.py [--runs DIR]
With --runs, the run directories are kept in DIR, and runs already finished there are read, not rerun.
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from harness.space import EDGES, OPS, Arch  # noqa: E402

NASLIB = ROOT.parent / "shared" / "data" / "nb201" / "sources" / "naslib_zc_nasbench201_partial__6639fd15.json"
NL_OPS = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]  # NASLib's op indices
NL_EDGES = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]  # NASLib's edge order
# ours -> NASLib's key (None: NASLib's file has no such score)
NAMES = {"params": "params", "flops": "flops", "synflow": "synflow", "snip": "snip", "grasp": "grasp",
         "fisher": "fisher", "grad_norm": "grad_norm", "jacob_cov": "jacov", "nwot": "nwot", "plain": "plain",
         "l2_norm": "l2_norm", "epe_nas": "epe_nas", "zen": None, "nb201-12ep": None, "random": None, "vote": None}


def arch(key: str) -> str:
    ops = dict(zip(NL_EDGES, (int(t) for t in key.strip("()").split(","))))
    return Arch(tuple(OPS.index(NL_OPS[ops[e]]) for e in EDGES)).to_str()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", help="keep the run directories here (finished ones are reused)")
    args = parser.parse_args()
    data = json.loads(NASLIB.read_text())["cifar10"]
    keys = random.Random(0).sample(sorted(data), 150)
    archs = [arch(k) for k in keys]
    out = {"n_archs": len(archs), "naslib_file": NASLIB.name, "config": "configs/estimators-cifar10.toml",
           "seed": 0, "estimators": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for ours, theirs in NAMES.items():
            run = Path(args.runs or tmp) / ours
            if not (run / "metrics.json").exists():
                subprocess.run([sys.executable, "-m", "harness.cli", "run", str(ROOT / "configs/estimators-cifar10.toml"),
                                "--set", f"estimator.name={ours}", "--set", "estimate.archs='list'",
                                "--set", f"estimate.arch_list={json.dumps(archs)}", "--out", str(run), "--quiet"],
                               check=True, capture_output=True, cwd=ROOT)
            est = pd.read_csv(run / "estimates.csv")
            m = json.loads((run / "metrics.json").read_text())
            row = {"kendall_tau": m["ranking"]["kendall_tau"], "spearman": m["ranking"]["spearman"],
                   "seconds_per_arch": m["estimator"]["seconds_per_arch"], "undefined": m["estimator"]["undefined"]}
            if theirs:
                t = [data[k].get(theirs, {}).get("score") for k in keys]
                ok = [i for i, v in enumerate(t) if v is not None and v > -1e7 and pd.notna(est["estimate"][i])]
                row["spearman_with_naslib"] = float(spearmanr(est["estimate"].to_numpy()[ok], [t[i] for i in ok]).statistic)
                row["naslib_kendall_tau"] = float(kendalltau([t[i] for i in ok], est["ground_truth"].to_numpy()[ok]).statistic)
                row["n_compared"] = len(ok)
            out["estimators"][ours] = row
            print(ours, {k: v for k, v in row.items() if not isinstance(v, dict)}, flush=True)
    (Path(__file__).parent / "naslib-agreement.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
