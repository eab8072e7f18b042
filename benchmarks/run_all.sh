#!/usr/bin/env bash
# Run every benchmark with the settings used for benchmarks/RESULTS.md; outputs go to benchmarks/results/.
# Each waits (up to WAIT seconds) for other processes to leave the CPU idle before it starts, and reports how much
# CPU other processes took while it ran.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
WAIT=${WAIT:-600}
OUT=benchmarks/results
mkdir -p "$OUT"
run() {  # name, command...
    local name=$1; shift
    echo "== $name ($(date -u +%H:%M:%S))" >&2
    "$PY" -W ignore "$@" --threads "$THREADS" --wait-quiet "$WAIT" > "$OUT/$name.md" 2> "$OUT/$name.log"
}
run propagation_light benchmarks/bench_propagation.py --configs light --spans 20 50 100 200 --repeat 3
run propagation_paper benchmarks/bench_propagation.py --configs paper --spans 20 50 100 200 --repeat 1
run peers benchmarks/bench_peers.py
run backends benchmarks/bench_backends.py --configs light paper --repeat 3
run training benchmarks/bench_training.py --configs light paper --iterations 3
run segment_folder benchmarks/bench_segment_folder.py --cases 8 --size 256 --span 40 --repeat 2
"$PY" -W ignore benchmarks/check_equivalence.py > "$OUT/equivalence.txt" 2> "$OUT/equivalence.log"
echo "== done ($(date -u +%H:%M:%S))" >&2
