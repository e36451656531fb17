#!/usr/bin/env bash
# Regenerates this report: search-space shrinking on top of uniform sampling on the CPU-sized real CIFAR-10
# configuration (3,000 steps, about 7.7 epochs of 390 steps), 3 seeds each: no shrinking, the angle, accuracy,
# weight-norm and ABS magnitude rules (warm-up 3 epochs, then one op removed per edge each epoch down to 3 per edge: 729 of 15,625
# architectures), ABS's regime with the angle and magnitude rules (one global round after training), few-shot (5 sub-supernets split on edge 0->3 after 3 epochs), angle then few-shot (split
# right after the last round), and few-shot's official protocol (per-cell sampling, split on edge 0->1 at 2.2 of
# the 7.7 epochs, the official 600 of 2,100, with a fresh schedule after it, no clipping). Every run trains the same number of steps and estimates the same 150 sampled
# non-isomorphic architectures against NB201's cifar10-valid ground truth; shrinking runs also estimate up to 300
# non-isomorphic architectures of their final space. From the repository root, with ../shared/data beside it and
# the venv active (two runs at a time, one thread each):
#   bash reports/shrinking-cifar10-cpu/make.sh
set -euo pipefail
here=reports/shrinking-cifar10-cpu
# ONLY="weight-norm magnitude" reruns just those variants and keeps the other committed runs (their code unchanged).
start=$(date +%s)
shrink="--set shrink.warmup_epochs=3.0 --set shrink.shrink_every=1.0 --set shrink.min_ops=3 --set shrink.estimate_space=300"
# ABS's NB201 regime (docs/methods.md): one global round after training (warm-up past the run's 7.7 epochs),
# dropping 20 of 30 ops and keeping at least one per edge, no gradient clipping
abs="--set train.grad_clip=0 --set shrink.mode=global --set shrink.drop=20 --set shrink.min_ops=1 --set shrink.at_end=true --set shrink.warmup_epochs=8.0 --set shrink.max_rounds=1 --set shrink.estimate_space=300"
variants=(
  "none|"
  "angle|--set shrink.rule=angle $shrink"
  "accuracy|--set shrink.rule=accuracy $shrink"
  "weight-norm|--set shrink.rule=weight-norm $shrink"
  "magnitude|--set sampler.name=uniform-alpha --set shrink.rule=magnitude $shrink"
  "abs-angle|--set sampler.name=per-cell --set shrink.rule=angle $abs"
  "abs-magnitude|--set sampler.name=uniform-alpha --set shrink.rule=magnitude $abs"
  "few-shot|--set split.edges=[3] --set split.at_epochs=3.0"
  "angle-few-shot|--set shrink.rule=angle $shrink --set split.edges=[3] --set split.after_shrink=true"
  "few-shot-official|--set sampler.name=per-cell --set sampler.reject_empty_nodes=false --set split.edges=[0] --set split.at_epochs=2.2 --set split.schedule=fresh --set train.grad_clip=0"
)
if [ -n "${ONLY:-}" ]; then
  for v in $ONLY; do rm -rf "$here/runs/$v-seed"*; done
  rm -f "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
else
  rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
fi
for v in "${variants[@]}"; do
  name=${v%%|*}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  for seed in 0 1 2; do echo "$name|$seed|${v#*|}"; done
done |
  OMP_NUM_THREADS=1 xargs -P 2 -I{} sh -c 'IFS="|"; set -- $(echo "{}"); name=$1 seed=$2 opts=$3; IFS=" ";
    nb201-harness run configs/cifar10-cpu-smoke.toml --quiet --out "'"$here"'/runs/$name-seed$seed" \
      --set run.seed=$seed --set forgetting.probe_points=10 $opts > /dev/null'
note="rules (docs/methods.md): weight-norm = ours (L2 norm of op weights, formerly called magnitude); magnitude = ABS's (softmax of alpha trained jointly by uniform-alpha, dropnode_by_magnitude.py); abs-* = ABS's NB201 regime (one global round of 20 after training, no clipping; abs-angle with ABS's per-cell sampling); few-shot and angle-few-shot = ours (edge 0->3, schedule continued); few-shot-official = the official protocol's sampling, edge and fresh schedule (configs/presets/fewshot-nb201.toml, at CPU size)"
note="$note; rows are labelled by variant (runs/VARIANT-seedN), since magnitude and abs-magnitude share a sampler and rule and differ in schedule${NOTE_EXTRA:+; $NOTE_EXTRA}"
if [ -n "${ONLY:-}" ]; then note="$note; rerun for this version: $ONLY; the other variants' runs are the committed ones from an earlier commit (code unchanged for them)"; fi
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Search-space shrinking and few-shot sub-supernets on CPU-sized real CIFAR-10 (3 seeds each)" \
  --command "bash $here/make.sh" --note "$note" --label-by-run-name
