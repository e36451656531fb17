#!/usr/bin/env bash
# Regenerates this report: every registered plan-based sampling strategy, 3 seeds each, on the CPU-sized real CIFAR-10
# configuration at the same compute budget (3,000 forward/backward passes: uniform 3,000 steps, FairNAS 600,
# NSAS with M = 8 333), scored against NB201's cifar10-valid ground truth, with forgetting probes and decay tracers.
# From the repository root, with ../shared/data beside it and the venv active (two runs at a time, one
# thread each; about 40 minutes on 2 CPU cores):
#   bash reports/strategies-cifar10-cpu/make.sh
set -euo pipefail
here=reports/strategies-cifar10-cpu
# ONLY="nsas nsas-c" reruns just those strategies and keeps the other committed runs (their code unchanged).
start=$(date +%s)
if [ -n "${ONLY:-}" ]; then
  strategies="$ONLY"
  for s in $strategies; do rm -rf "$here/runs/$s-seed"*; done
  rm -f "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
else
  rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
  strategies=$(python -c "from harness.samplers import SAMPLERS
print(' '.join(n for n in SAMPLERS.names() if not SAMPLERS.get(n).differentiable))")
fi
for s in $strategies; do for seed in 0 1 2; do echo "$s $seed"; done; done |
  OMP_NUM_THREADS=1 xargs -P 2 -n 2 sh -c 'nb201-harness run configs/cifar10-cpu-smoke.toml --quiet \
    --out "'"$here"'/runs/$0-seed$1" --set sampler.name=$0 --set run.seed=$1 \
    --set train.max_steps=0 --set train.max_paths=3000 --set forgetting.probe_points=15 > /dev/null'
note="rules (docs/methods.md): nsas = the official NSAS archive (M 8, k 10, filled from 10 random candidates, replaced from the last 50 sampled, constraint with gradient); nsas-c = official chain-topology sampling (chain 2: edge 3<-0 none); nsas-g = the NSAS_G notebook's compensate rule; nsas-lg = ours (no official code); novelty = the official ENNAS ES update on a 1,000-architecture store; per-cell = ABS's per-cell sampling with the redraw of all-none nodes (forward_dropnode)"
if [ -n "${ONLY:-}" ]; then note="$note; rerun for this version: $ONLY; the other strategies' runs are the committed ones from an earlier commit (code unchanged for them)"; fi
python reports/make_report.py "$here"/runs/* --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Sampling strategies on CPU-sized real CIFAR-10 (3 seeds each, equal compute)" \
  --command "bash $here/make.sh" --note "$note"
