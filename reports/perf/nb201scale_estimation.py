"""Batched against eager estimation at NB201 scale (C=16, N=5, 32x32) on CPU: 512 images, track BN, a seeded sample
of 64 non-isomorphic architectures (two chunks of 32), 3 paired rounds after a warm-up, with the benchmarks'
helpers (benchmarks/test_bench_engine.py). Too slow for a benchmark on 2 cores (about 9 minutes).

Run from the checkout: ``.venv/bin/python reports/perf/nb201scale_estimation.py OUT.json``"""
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ["NB201_BENCH_SCALE"] = "nb201"
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import test_bench_engine as bench  # noqa: E402
from harness.estimate import estimate_archs  # noqa: E402

assert (bench.C, bench.N, bench.RES) == (16, 5, 32)
model = bench._model("track").eval()
images = bench._batches(512)
archs = bench._workload("sample", 64, 512)


def run(engine):
    return lambda: estimate_archs(model, archs, images, (), progress=False, engine=engine)


result = bench._paired(run("eager"), run("batched"), 3)
result.update(bench._device_info(), archs=len(archs), images=512, bn_policy="track", workload="sample")
Path(sys.argv[1]).write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result))
