#!/usr/bin/env bash
# Regenerates this report: run/ (the run directory), results.md (numbers) and wall_time.txt.
# From the repository root, with ../shared/data beside it: bash reports/cifar10-cpu-smoke/make.sh
set -euo pipefail
here=reports/cifar10-cpu-smoke
rm -rf "$here/run"
start=$(date +%s)
nb201-harness run configs/cifar10-cpu-smoke.toml --out "$here/run" --quiet
echo "wall time: $(( $(date +%s) - start )) s on $(nproc) CPU cores" > "$here/wall_time.txt"
python reports/render_run.py "$here/run" > "$here/results.md"
