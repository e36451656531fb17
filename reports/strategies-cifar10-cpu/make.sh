#!/usr/bin/env bash
# Regenerates this report: every registered plan-based sampling strategy, 3 seeds each, on the CPU-sized real CIFAR-10
# configuration at the same compute budget (3,000 forward/backward passes: uniform 3,000 steps, FairNAS 600,
# NSAS with M = 8 333), scored against NB201's cifar10-valid ground truth, with forgetting probes and decay tracers.
# The runs are sweep.toml's: one `nb201-harness sweep`, then reports/make_report.py. From the repository root, with
# ../shared/data beside it and the venv active (two runs at a time, one thread each; about 40 minutes on 2 CPU
# cores):
#   bash reports/strategies-cifar10-cpu/make.sh
set -euo pipefail
here=reports/strategies-cifar10-cpu
# ONLY="nsas nsas-c" reruns just those strategies and keeps the other committed runs (their code unchanged): the
# sweep skips finished runs.
start=$(date +%s)
if [ -n "${ONLY:-}" ]; then
  for s in $ONLY; do rm -rf "$here/runs/$s-seed"*; done
else
  rm -rf "$here/runs"
fi
rm -f "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
nb201-harness sweep "$here/sweep.toml" --quiet
rm -rf "$here/runs/compare"  # the sweep's own compare output; the report below is this report's
note="rules (docs/methods.md): nsas = the official NSAS archive (M 8, k 10, filled from 10 random candidates, replaced from the last 50 sampled, constraint with gradient); nsas-c = official chain-topology sampling (chain 2: edge 3<-0 none); nsas-g = the NSAS_G notebook's compensate rule; nsas-lg = ours (no official code); novelty = the official ENNAS ES update on a 1,000-architecture store; per-cell = ABS's per-cell sampling with the redraw of all-none nodes (forward_dropnode)"
if [ -n "${ONLY:-}" ]; then note="$note; rerun for this version: $ONLY; the other strategies' runs are the committed ones from an earlier commit (code unchanged for them)"; fi
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Sampling strategies on CPU-sized real CIFAR-10 (3 seeds each, equal compute)" \
  --command "bash $here/make.sh" --note "$note"
