#!/usr/bin/env bash
# Regenerates this report: the offline demo on the digitsm mini-benchmark, first as the README's first command
# runs it (the default set, timed: the README's demo time is this measurement), then --all, which adds every
# other registered strategy to the same run directory (the default set's finished runs are kept). Then the
# comparison table, plots and README over all of them. From the repository root with the venv active, on an
# otherwise idle machine:
#   bash reports/demo/make.sh
set -euo pipefail
here=reports/demo
rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
default_set=$(python -c "from harness.demo import DEFAULT; print(', '.join(DEFAULT))")
start=$(date +%s)
nb201-harness demo --out "$here/runs" --quiet
default_seconds=$(( $(date +%s) - start ))
nb201-harness demo --out "$here/runs" --quiet --all
python reports/make_report.py $(dirname "$here"/runs/*/metrics.json) --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Offline demo: every sampling strategy and the reference estimators on the digitsm mini-benchmark" \
  --command "bash $here/make.sh" --note "the default demo (nb201-harness demo: ${default_set}; 2 workers x 1 thread) took ${default_seconds} s; then --all added the rest (and the proxies snip and jacob_cov). Rules (docs/methods.md): nsas = the official NSAS archive (M 8, k 10, filled from 10 random candidates, replaced from the last 50 sampled, constraint with gradient); nsas-c = official chain-topology sampling (chain 2: edge 3<-0 none); nsas-g = the NSAS_G notebook's compensate rule; nsas-lg = ours (no official code); novelty = the official ENNAS ES update on a 1,000-architecture store; per-cell = ABS's per-cell sampling; uniform-alpha = ABS's jointly trained alpha (no shrinking here); uniform+angle = uniform with the angle shrinker (rounds at steps 336 and 504, down to 3 ops per edge)"
