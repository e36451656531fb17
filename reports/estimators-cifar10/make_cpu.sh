#!/usr/bin/env bash
# Regenerates cpu/: every estimator other than the supernet on the CPU-sized real CIFAR-10 configuration of
# reports/strategies-cifar10-cpu (configs/cifar10-cpu-smoke.toml: the same 150 sampled non-isomorphic
# architectures, the network at C=8, N=2, 16x16), seeds 0-2, then one comparison with that report's supernet runs
# (3 seeds of each plan-based strategy), so estimators and strategies sit in one table. From the repository
# root, with ../shared/data beside it and the venv active (two runs at a time, one thread each):
#   bash reports/estimators-cifar10/make_cpu.sh
set -euo pipefail
here=reports/estimators-cifar10
start=$(date +%s)
rm -rf "$here/cpu-runs" "$here/cpu"
estimators=$(python -c "from harness.estimators import ESTIMATORS
print(' '.join(n for n in ESTIMATORS.names() if not ESTIMATORS.get(n).trains))")
for e in $estimators; do for seed in 0 1 2; do echo "$e $seed"; done; done |
  OMP_NUM_THREADS=1 xargs -P 2 -n 2 sh -c 'nb201-harness run configs/cifar10-cpu-smoke.toml --quiet \
    --out "'"$here"'/cpu-runs/$0-seed$1" --set estimator.name=$0 --set run.seed=$1 > /dev/null'
python reports/make_report.py "$here"/cpu-runs/* reports/strategies-cifar10-cpu/runs/* --out "$here/cpu" \
  --wall-seconds $(( $(date +%s) - start )) \
  --title "Estimators and sampling strategies on CPU-sized real CIFAR-10 (3 seeds each)" \
  --command "bash $here/make_cpu.sh" \
  --note "estimators (harness/estimators, docs/methods.md) score the network at initialisation or look up NB201's 12-epoch table; params, flops and nb201-12ep do not depend on the seed, so their three runs are equal; the supernet rows are the runs committed in reports/strategies-cifar10-cpu (3,000 forward/backward passes each)"
