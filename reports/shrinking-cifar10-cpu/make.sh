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
# The runs are sweep.toml's (its variants name them): one `nb201-harness sweep`, then reports/make_report.py.
# ONLY="weight-norm magnitude" reruns just those variants and keeps the other committed runs (their code
# unchanged): the sweep skips finished runs.
start=$(date +%s)
if [ -n "${ONLY:-}" ]; then
  for v in $ONLY; do rm -rf "$here/runs/$v-seed"*; done
else
  rm -rf "$here/runs"
fi
rm -f "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
nb201-harness sweep "$here/sweep.toml" --quiet
rm -rf "$here/runs/compare"  # the sweep's own compare output; the report below is this report's
note="rules (docs/methods.md): weight-norm = ours (L2 norm of op weights, formerly called magnitude); magnitude = ABS's (softmax of alpha trained jointly by uniform-alpha, dropnode_by_magnitude.py); abs-* = ABS's NB201 regime (one global round of 20 after training, no clipping; abs-angle with ABS's per-cell sampling); few-shot and angle-few-shot = ours (edge 0->3, schedule continued); few-shot-official = the official protocol's sampling, edge and fresh schedule (configs/presets/fewshot-nb201.toml, at CPU size)"
note="$note; rows are labelled by variant (runs/VARIANT-seedN), since magnitude and abs-magnitude share a sampler and rule and differ in schedule${NOTE_EXTRA:+; $NOTE_EXTRA}"
if [ -n "${ONLY:-}" ]; then note="$note; rerun for this version: $ONLY; the other variants' runs are the committed ones from an earlier commit (code unchanged for them)"; fi
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Search-space shrinking and few-shot sub-supernets on CPU-sized real CIFAR-10 (3 seeds each)" \
  --command "bash $here/make.sh" --note "$note" --label-by-run-name --reference none
