#!/usr/bin/env bash
# Regenerates this report: every registered sampling strategy, 3 seeds each, on the CPU-sized real CIFAR-10
# configuration at the same compute budget (3,000 forward/backward passes: uniform 3,000 steps, FairNAS 600,
# NSAS 272), scored against NB201's cifar10-valid ground truth, with forgetting probes and decay tracers.
# From the repository root, with ../shared/data beside it and the venv active (two runs at a time, one
# thread each; about 40 minutes on 2 CPU cores):
#   bash reports/strategies-cifar10-cpu/make.sh
set -euo pipefail
here=reports/strategies-cifar10-cpu
rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
start=$(date +%s)
strategies=$(python -c "from harness.samplers import SAMPLERS; print(' '.join(SAMPLERS.names()))")
for s in $strategies; do for seed in 0 1 2; do echo "$s $seed"; done; done |
  OMP_NUM_THREADS=1 xargs -P 2 -n 2 sh -c 'nb201-harness run configs/cifar10-cpu-smoke.toml --quiet \
    --out "'"$here"'/runs/$0-seed$1" --set sampler.name=$0 --set run.seed=$1 \
    --set train.max_steps=0 --set train.max_paths=3000 --set forgetting.probe_points=15 > /dev/null'
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Sampling strategies on CPU-sized real CIFAR-10 (3 seeds each, equal compute)" \
  --command "bash $here/make.sh"
