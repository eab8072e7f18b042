#!/usr/bin/env bash
# One lent-GPU session, as run through the device tool: per-object latency on CUDA (float32, then bf16 autocast),
# then the default weights' training (scripts/train_default.sh) on the GPU with the machine's CPU cores feeding it.
# Everything it makes goes to $OUT (default benchmarks/results/gpu): gpu_bench.md/.log, env.txt, the training logs
# and the exported model.pt / box2mask.pt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
# DataLoader workers pass tensors through shared memory; small VMs mount a small /dev/shm
mount -o remount,size=48G /dev/shm 2>/dev/null || true
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    nproc
    df -h /dev/shm | tail -n 1
    "$PY" -c "import torch, numpy, monai; print('torch', torch.__version__, 'numpy', numpy.__version__, 'monai', monai.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

bench() {  # seconds, arguments...
    local limit=$1
    shift
    timeout "$limit" "$PY" -W ignore benchmarks/bench_propagation.py --device cuda "$@" >> "$OUT/gpu_bench.md" \
        2>> "$OUT/gpu_bench.log" || echo "benchmark $* stopped (exit $?)" | tee -a "$OUT/gpu_bench.log"
    echo >> "$OUT/gpu_bench.md"
}
bench "${BENCH_FP32_SECONDS:-110}" --configs paper light --spans 100 200 50 --repeat 3
bench "${BENCH_AMP_SECONDS:-60}" --amp --configs paper light --spans 100 --repeat 3
cat "$OUT/gpu_bench.md"

RUN_DIR=${RUN_DIR:-/tmp/pam_train} EXPORT_DIR="$OUT" PY="$PY" bash scripts/train_default.sh
status=$?
cp "${RUN_DIR:-/tmp/pam_train}"/propmask.log "${RUN_DIR:-/tmp/pam_train}"/box2mask.log "$OUT/" 2>/dev/null
exit "$status"
