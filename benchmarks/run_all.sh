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
# These write their own markdown (and state the CPU load they ran under) instead of waiting for a quiet CPU.
"$PY" -W ignore benchmarks/bench_startup.py --repeat 2 --threads "$THREADS" --size 256 --output "$OUT/startup_run.md"
"$PY" -W ignore benchmarks/bench_large_image.py --threads "$THREADS" --output "$OUT/large_image_run.md"
"$PY" -W ignore benchmarks/bench_cross_image.py --threads "$THREADS" --axes 2 0 1 --out "$OUT/cross_image_run.md"
"$PY" -W ignore benchmarks/bench_interactive.py --sets atlas generated --volumes 1 --axes 2 0 1 --threads "$THREADS" \
    --csv "$OUT/interactive_run.csv" > "$OUT/interactive_run.md"
echo "== done ($(date -u +%H:%M:%S))" >&2
