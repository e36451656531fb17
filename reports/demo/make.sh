#!/usr/bin/env bash
# Regenerates this report: the offline demo (every registered strategy on the digitsm mini-benchmark),
# its comparison table, plots and README. From the repository root with the venv active:
#   bash reports/demo/make.sh
set -euo pipefail
here=reports/demo
rm -rf "$here/runs" "$here"/*.png "$here"/*.svg "$here"/*.csv "$here"/*.md
start=$(date +%s)
nb201-harness demo --out "$here/runs" --quiet
python reports/make_report.py $(dirname "$here"/runs/*/metrics.json) --out "$here" --wall-seconds $(( $(date +%s) - start )) \
  --title "Offline demo: every sampling strategy on the digitsm mini-benchmark" \
  --command "bash $here/make.sh" --note "rules (docs/methods.md): nsas = the official NSAS archive (M 8, k 10, filled from 10 random candidates, replaced from the last 50 sampled, constraint with gradient); nsas-c = official chain-topology sampling (chain 2: edge 3<-0 none); nsas-g = the NSAS_G notebook's compensate rule; nsas-lg = ours (no official code); novelty = the official ENNAS ES update on a 1,000-architecture store"
