#!/usr/bin/env bash
# Regenerates reports/ci-power/: does the CI suite catch each planted bug, how often does it fail unchanged
# code, and how often does it pass a random ranking. Run from a clean checkout with the README's venv:
#     bash reports/ci-power/make.sh [PHASE...]
# RUNS (environment, default runs/regress): run directories of unchanged code for every entry's baseline and CI seeds, as
# `nb201-harness regress --record` and `nb201-harness regress` leave them (finished runs are reused).
# Each patch in patches/ is applied to a fresh worktree of HEAD; there the structural tests
# (tests/test_structural.py) and the suite's uniform entry run on the patched code, and the full suite's
# verdict is taken with the other entries from unchanged code (planted/NAME.json). On 2 cores, from scratch: about
# 45 min for the 45 unchanged runs, 50 min for the planted bugs (5 runs each), 5 min for the analysis.
# Phases (default: all, in this order): baselines, fresh, planted, analyze. `make.sh planted` runs one phase.
# `fresh` times the suite as CI runs it (fresh runs in a temporary folder) and writes wall.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=reports/ci-power
runs=${RUNS:-runs/regress}
runs="$(realpath -m "$runs")"
phases=("${@:-baselines fresh planted analyze}")
phases=(${phases[*]})
want() { [[ " ${phases[*]} " == *" $1 "* ]]; }
py="$PWD/.venv/bin/python"
[ -z "$(git status --porcelain --untracked-files=no)" ] || { echo "make.sh: commit first (patches apply to HEAD)"; exit 2; }

tmp="$(mktemp -d)"
if want baselines; then  # unchanged code: the baseline seeds (reused when recorded) and the CI seeds
  "$py" -m harness.cli regress --record --out "$runs"
  "$py" -m harness.cli regress --out "$runs" || true
fi

if want fresh; then  # the suite as CI runs it: fresh runs, timed
  start=$(date +%s)
  set +e; "$py" -m harness.cli regress --out "$tmp/fresh" > "$here/unchanged.regress.txt" 2>&1; rc=$?; set -e
  echo "{\"seconds\": $(( $(date +%s) - start )), \"runs\": $(find "$tmp/fresh" -name metrics.json | wc -l), \"passed\": $([ $rc = 0 ] && echo true || echo false), \"source\": \"make.sh fresh\"}" > "$here/wall.json"
fi

mkdir -p "$here/planted" "$runs-planted"
want planted && for patch in "$here"/patches/*.patch; do
  name="$(basename "$patch" .patch)"
  wt="$tmp/$name"
  git worktree add -q --detach "$wt" HEAD
  git -C "$wt" apply "$PWD/$patch"
  start=$(date +%s)
  set +e
  (cd "$wt" && PYTHONPATH="$wt" "$py" -m pytest tests/test_structural.py -q -p no:cacheprovider) > "$here/planted/$name.structural.txt" 2>&1
  structural=$?
  (cd "$wt" && PYTHONPATH="$wt" "$py" -m harness.cli regress --entry uniform --out "$runs-planted/$name") \
    > "$here/planted/$name.regress-uniform.txt" 2>&1
  set -e
  echo "{\"structural_tests_failed\": $([ $structural = 0 ] && echo false || echo true), \"seconds\": $(( $(date +%s) - start ))}" \
    > "$here/planted/$name.status.json"
  git worktree remove --force "$wt"
done

if want analyze; then
  # each planted bug's full-suite verdict: its uniform runs, the other entries from unchanged code
  for patch in "$here"/patches/*.patch; do
    name="$(basename "$patch" .patch)"
    PYTHONPATH="$PWD" "$py" "$here/analyze.py" "$runs" --patched "$runs-planted/$name" --entry uniform \
      --status "$here/planted/$name.status.json" --out "$here/planted/$name.json" > /dev/null
  done
  PYTHONPATH="$PWD" "$py" "$here/analyze.py" "$runs" --out "$here/analysis.json"
  PYTHONPATH="$PWD" "$py" "$here/render.py"
fi
