#!/usr/bin/env bash
# Regenerates this report: differentiable search (darts, gdas, sd-darts; 3 seeds each) against uniform single-path
# sampling at the same budget on the CPU-sized real CIFAR-10 configuration
# (configs/cifar10-cpu-smoke.toml at 1,000 weight steps, about 2.6 epochs of 390 steps: every method takes the
# same number of SGD steps on the same training batches; the differentiable ones also take one alpha step per
# weight step on the search half). alpha is recorded every quarter epoch, the sharpness (top Hessian eigenvalue of
# the search loss w.r.t. alpha, 256 search images, at most 10 power iterations) every half epoch. Forgetting probes
# are off (they would double the CPU time). Every run estimates the same 150 sampled
# non-isomorphic architectures with inherited weights against NB201's cifar10-valid ground truth. From the
# repository root, with ../shared/data beside it and the venv active (two runs at a time, one thread each):
#   bash reports/differentiable-cifar10-cpu/make.sh
set -euo pipefail
here=reports/differentiable-cifar10-cpu
rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
mkdir -p "$here/runs"
logs="$(mktemp -d)"
start=$(date +%s)
common="--set train.max_steps=1000 --set forgetting.probes=0 --set forgetting.decay_tracers=0 \
  --set search.alpha_every=0.25 --set search.sharpness_iters=10"
variants=(
  "sd-darts|1 2 0|--set sampler.name=sd-darts --set search.sharpness_every=0.5"
  "darts|0 1 2|--set sampler.name=darts --set search.sharpness_every=0.5"
  "gdas|0 1 2|--set sampler.name=gdas --set search.sharpness_every=0.5"
  "uniform|0 1 2|"
)
for v in "${variants[@]}"; do IFS="|" read -r name seeds opts <<< "$v"
  for seed in $seeds; do echo "$name|$seed|$opts"; done; done |
  OMP_NUM_THREADS=1 xargs -P 2 -I{} sh -c 'IFS="|"; set -- $(echo "{}"); name=$1 seed=$2 opts=$3; IFS=" ";
    nb201-harness run configs/cifar10-cpu-smoke.toml --quiet --out "'"$here"'/runs/$name-seed$seed" \
      --set run.seed=$seed '"$common"' $opts > "'"$logs"'/$name-seed$seed.log" 2>&1'
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Differentiable search (DARTS, GDAS, SD-DARTS) against uniform sampling on CPU-sized real CIFAR-10" \
  --command "bash $here/make.sh"
