#!/usr/bin/env bash
# PAM latency for a 100-slice object with the package as it was at REV (default: before the issue-7 speed-ups) and
# as it is now, same benchmark code, same machine; outputs benchmarks/results/before_*.md and after_*.md.
# The old package is extracted with `git archive` into a temporary folder (the work tree is not touched).
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:-469a068e2145a66990782ff7d7e25fc8cd64c586}
PY=$(pwd)/${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
WAIT=${WAIT:-600}
OUT=$(pwd)/benchmarks/results
OLD=$(mktemp -d)
trap 'rm -rf "$OLD"' EXIT
git archive "$REV" pam_monai | tar -x -C "$OLD"
cp -r benchmarks "$OLD/"
for config in light paper; do
    repeat=$([ "$config" = light ] && echo 3 || echo 1)
    echo "== $config before ($(date -u +%H:%M:%S))" >&2
    (cd "$OLD" && PYTHONPATH="$OLD" "$PY" -W ignore benchmarks/bench_propagation.py --configs "$config" --spans 100 \
        --repeat "$repeat" --threads "$THREADS" --wait-quiet "$WAIT" > "$OUT/before_$config.md" 2> "$OUT/before_$config.log")
    echo "== $config after ($(date -u +%H:%M:%S))" >&2
    "$PY" -W ignore benchmarks/bench_propagation.py --configs "$config" --spans 100 --repeat "$repeat" \
        --threads "$THREADS" --wait-quiet "$WAIT" > "$OUT/after_$config.md" 2> "$OUT/after_$config.log"
done
