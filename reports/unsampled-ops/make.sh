#!/usr/bin/env bash
# Regenerates reports/unsampled-ops/: [train] unsampled_ops = "skip" (today's zero_grad: ops off the sampled path
# are left alone) against "zero" (PyTorch 1.x's zero_grad, NB201's era: they still get momentum and weight decay),
# on the regression benchmark (configs/regress-digitsm.toml, uniform sampling), one run per seed and mode.
# Run from a checkout with the README's venv:  bash reports/unsampled-ops/make.sh   (SEEDS default 1000..1009)
# RUNS (default runs/unsampled-ops) holds the run directories; finished ones are reused. On 2 cores: about
# 95 s a run, 2 at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="$(realpath -m "${RUNS:-runs/unsampled-ops}")"
seeds=(${SEEDS:-1000 1001 1002 1003 1004 1005 1006 1007 1008 1009})
py="$PWD/.venv/bin/python"
for mode in skip zero; do
  printf '%s\n' "${seeds[@]}" | xargs -P 2 -I{} sh -c \
    "[ -f '$runs/$mode/seed{}/metrics.json' ] || OMP_NUM_THREADS=1 '$py' -m harness.cli run configs/regress-digitsm.toml \
       --set run.seed={} --set train.unsampled_ops=\"'$mode'\" --out '$runs/$mode/seed{}' --quiet > /dev/null"
done
"$py" reports/unsampled-ops/analyze.py "$runs" reports/unsampled-ops
