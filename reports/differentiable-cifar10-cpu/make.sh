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
start=$(date +%s)
nb201-harness sweep "$here/sweep.toml" --quiet  # the runs: sweep.toml
rm -rf "$here/runs/compare"  # the sweep's own compare output; the report below is this report's
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Differentiable search (DARTS, GDAS, SD-DARTS) against uniform sampling on CPU-sized real CIFAR-10" \
  --command "bash $here/make.sh"
