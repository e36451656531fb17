#!/usr/bin/env bash
# Regenerates the estimators report (README.md, table/, runs/): every estimator other than the supernet on a
# seeded 1,000 of NB201's non-isomorphic architectures, seeds 0-2, on the CPU-sized real CIFAR-10 configuration
# (configs/cifar10-cpu-smoke.toml: the network at C=8, N=2, 16x16, real CIFAR-10 from ../shared/data), scored
# against cifar10-valid 200-epoch accuracy. The 1,000 are drawn with the config's sample seed, so their first 150
# are exactly the 150 architectures of reports/strategies-cifar10-cpu; the report also scores the estimators on
# those 150 and puts them in one table with that report's supernet runs (make_estimators.py checks this).
# From the repository root, with ../shared/data beside it and the venv active (two runs at a time, one thread
# each; about 40 minutes on 2 CPU cores):
#   bash reports/estimators-cifar10/make.sh
set -euo pipefail
here=reports/estimators-cifar10
start=$(date +%s)
rm -rf "$here/runs" "$here/runs-full" "$here/table"
nb201-harness sweep "$here/sweep.toml" --quiet  # CPU-sized network: every estimator that does not train
# NB201's full network (configs/estimators-cifar10.toml: C=16, N=5, 32x32; the same 1,000 architectures), for the
# baselines and the proxies cheap enough there on 2 CPU cores (the others take 0.3-1.8 s per architecture)
nb201-harness sweep "$here/sweep-full.toml" --quiet
rm -rf "$here/runs/compare" "$here/runs-full/compare"  # the sweeps' own compare output
python "$here/make_estimators.py" --runs "$here/runs" --full-runs "$here/runs-full" \
  --supernets reports/strategies-cifar10-cpu/runs \
  --naslib "$here/naslib-agreement.json" --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --command "bash $here/make.sh"
