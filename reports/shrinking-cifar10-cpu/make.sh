#!/usr/bin/env bash
# Regenerates this report: search-space shrinking on top of uniform sampling on the CPU-sized real CIFAR-10
# configuration (3,000 steps, about 7.7 epochs of 390 steps), 3 seeds each: no shrinking, the angle, accuracy and
# magnitude rules (warm-up 3 epochs, then one op removed per edge each epoch down to 3 per edge: 729 of 15,625
# architectures), few-shot (5 sub-supernets split on edge 0->3 after 3 epochs), and angle then few-shot (split
# right after the last round). Every run trains the same number of steps and estimates the same 150 sampled
# non-isomorphic architectures against NB201's cifar10-valid ground truth; shrinking runs also estimate up to 300
# non-isomorphic architectures of their final space. From the repository root, with ../shared/data beside it and
# the venv active (two runs at a time, one thread each):
#   bash reports/shrinking-cifar10-cpu/make.sh
set -euo pipefail
here=reports/shrinking-cifar10-cpu
rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
start=$(date +%s)
shrink="--set shrink.warmup_epochs=3.0 --set shrink.shrink_every=1.0 --set shrink.min_ops=3 --set shrink.estimate_space=300"
variants=(
  "none|"
  "angle|--set shrink.rule=angle $shrink"
  "accuracy|--set shrink.rule=accuracy $shrink"
  "magnitude|--set shrink.rule=magnitude $shrink"
  "few-shot|--set split.edges=[3] --set split.at_epochs=3.0"
  "angle-few-shot|--set shrink.rule=angle $shrink --set split.edges=[3] --set split.after_shrink=true"
)
for v in "${variants[@]}"; do for seed in 0 1 2; do echo "${v%%|*}|$seed|${v#*|}"; done; done |
  OMP_NUM_THREADS=1 xargs -P 2 -I{} sh -c 'IFS="|"; set -- $(echo "{}"); name=$1 seed=$2 opts=$3; IFS=" ";
    nb201-harness run configs/cifar10-cpu-smoke.toml --quiet --out "'"$here"'/runs/$name-seed$seed" \
      --set run.seed=$seed --set forgetting.probe_points=10 $opts > /dev/null'
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Search-space shrinking and few-shot sub-supernets on CPU-sized real CIFAR-10 (3 seeds each)" \
  --command "bash $here/make.sh"
