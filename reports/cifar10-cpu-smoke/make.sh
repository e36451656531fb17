#!/usr/bin/env bash
# Regenerates this report (run directory, comparison table, plots, README) from scratch.
# From the repository root, with ../shared/data beside it and the venv active:
#   bash reports/cifar10-cpu-smoke/make.sh
set -euo pipefail
here=reports/cifar10-cpu-smoke
rm -rf "$here/run" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
start=$(date +%s)
nb201-harness run configs/cifar10-cpu-smoke.toml --out "$here/run" --quiet
python reports/make_report.py "$here/run" --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "CPU-sized run on real CIFAR-10 against NB201's ground truth" \
  --command "bash $here/make.sh"
