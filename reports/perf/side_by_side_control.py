"""The control for the side-by-side chunks (harness.estimate.side_by_side): the four 512-image estimation
benchmarks of benchmarks/test_bench_engine.py (64 architectures, track or recalibrate, sample or block, 15 paired
rounds) with side_by_side forced to 1, so the batched engine scores its two chunks one after the other on the
process's threads, as before 664a58b. Run on the same machine and day as the benchmark it controls.

Run from the checkout: ``.venv/bin/python reports/perf/side_by_side_control.py OUT.json`` (about 10 minutes on 2
CPU cores)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import test_bench_engine as bench  # noqa: E402
import harness.estimate as est  # noqa: E402

est.side_by_side = lambda device: 1
results = []
for policy in ("track", "recalibrate"):
    for workload in ("sample", "block"):
        model = bench._model(policy).eval()
        images = bench._batches(512)
        calib = bench._batches(512, seed=1) if policy == "recalibrate" else ()
        archs = bench._workload(workload, 64, seed=512)

        def run(engine):
            return lambda: est.estimate_archs(model, archs, images, calib, progress=False, engine=engine)

        t = bench._paired(run("eager"), run("batched"), 15)
        t.update(bench._device_info(), images=512, bn_policy=policy, workload=workload, archs_per_call=64,
                 side_by_side=1, eager_archs_per_s=64 / t["eager_s"], batched_archs_per_s=64 / t["batched_s"])
        results.append(t)
        print(policy, workload, round(t["speedup_vs_eager"], 2), flush=True)
Path(sys.argv[1]).write_text(json.dumps(results, indent=1) + "\n")
