#!/usr/bin/env bash
# Regenerates reports/unsampled-ops/: [train] unsampled_ops = "skip" (today's zero_grad: ops off the sampled path
# are left alone) against "zero" (PyTorch 1.x's zero_grad, NB201's era: they still get momentum and weight decay),
# on the regression benchmark (configs/regress-digitsm.toml, uniform sampling), one run per seed and mode.
# Run from a checkout with the README's venv:  bash reports/unsampled-ops/make.sh
# RUNS (default runs/unsampled-ops) holds the run directories; finished ones are reused. On 2 cores: about
# 170 s a run (2026-12-07, AVX2), 2 at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="$(realpath -m "${RUNS:-runs/unsampled-ops}")"
py="$PWD/.venv/bin/python"
"$py" -m harness.cli sweep reports/unsampled-ops/sweep.toml --out "$runs" --quiet  # the runs: sweep.toml
"$py" reports/unsampled-ops/analyze.py "$runs" reports/unsampled-ops
